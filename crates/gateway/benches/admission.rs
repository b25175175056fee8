//! Per-request admission work: a rate-limit window check and a price lookup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use liter_llm_gateway::layers::ratelimit::SlidingWindow;
use liter_llm_gateway::pipeline::Usage;
use liter_llm_gateway::pricing::{cost, PriceTable};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut window = SlidingWindow::new(u64::MAX / 2, tokio::time::Instant::now());
    c.bench_function("ratelimit/sliding_window_try_acquire", |b| {
        b.iter(|| {
            window
                .try_acquire(tokio::time::Instant::now(), black_box(1))
                .is_ok()
        })
    });
    let table = PriceTable::builtin().unwrap();
    c.bench_function("pricing/lookup", |b| {
        b.iter(|| {
            table
                .lookup(black_box("openai"), black_box("gpt-4o-2024-08-06"))
                .is_some()
        })
    });
    let prices = table.lookup("openai", "gpt-4o").unwrap();
    let usage = Usage {
        prompt_tokens: 1200,
        completion_tokens: 300,
        cached_tokens: 200,
        ..Usage::default()
    };
    c.bench_function("pricing/cost", |b| {
        b.iter(|| cost(black_box(&prices), black_box(&usage)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
