//! A tiny per-thread PRNG: fault injection and request ids only need "random enough",
//! and a thread-local avoids contention on the hot path.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

thread_local! {
    // `RandomState` is keyed from OS randomness, which saves a dependency for seeding.
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0x6d6f_636b_u64));
}

pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        splitmix64(next)
    })
}

/// Uniform in `[0, 1)`.
pub(crate) fn next_f64() -> f64 {
    // The top 53 bits fill an f64 mantissa exactly.
    (next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// FNV-1a, used to derive deterministic embeddings from input text.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
