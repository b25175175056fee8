//! Rate limits: requests and tokens per minute, per key, per model group and
//! for the whole proxy.
//!
//! Three scopes, each with an optional `rpm` and `tpm`:
//! - **key**: `[[keys]].rpm` / `.tpm`, read off the request (`caller.limits`) and
//!   counted under `caller.key_id` (a stable, non-secret id);
//! - **model group**: `[rate_limit].rpm` / `.tpm`, one counter per client-facing
//!   group name (`req.model`), the reference's "limits applied to each model";
//! - **global**: `[rate_limit].global_rpm` / `.global_tpm`, one counter in all.
//!
//! A request is admitted only if every applicable scope admits it, and then it is
//! counted in all of them at once (a request refused by one scope is counted
//! nowhere).
//!
//! **Requests** count 1 each at admission, and stay counted whatever happens next.
//!
//! **Tokens** cannot be known before the upstream answers, so admission reserves
//! `estimated_prompt_tokens + max_tokens` (or [`DEFAULT_MAX_TOKENS`] when the
//! client set none) and settlement trues the reservation up to the real usage:
//! the reservation is taken back and the upstream's `usage.total_tokens` is
//! counted at the moment the request settles (the end of the stream, for
//! streams). A cached answer counts no tokens; a request that failed without the
//! upstream reporting usage counts none either; a successful answer whose usage
//! is unknown (a stream the client left early, a provider that reports none)
//! keeps the estimate.
//!
//! **Token admission never rejects on an estimate alone**: a request is admitted
//! when the tokens already used or reserved in the window are *below* the limit,
//! even if its own reservation would go past it. Estimates are rough (four bytes
//! of JSON per token, `max_tokens` as if always used up), and refusing a request
//! that fits an empty window would make a small `tpm` unusable. The reservation
//! still stops concurrent requests from all slipping through together, and the
//! true-up makes the next request pay for what this one really used.
//!
//! Over a limit the answer is a 429 `rate_limit_exceeded` naming the limit (which
//! scope, rpm or tpm, its value and its config field; a key is named by its id,
//! never the key itself) with a `Retry-After` of the seconds until enough of the
//! window has expired for the request to be admitted, rounded up, at least 1.
//!
//! Admitted requests get OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
//! headers for the tightest applicable limit of each kind (the one with the least
//! remaining fraction). `reset` is the time until that window is back to its
//! initial, empty state, in OpenAI's format (`250ms`, `1s`, `1m0.25s`). No limit,
//! no headers.
//!
//! Counters live behind [`RateLimitStore`]; [`MemoryRateLimitStore`] keeps them
//! in process with one short `std::sync::Mutex` section per scope and no lock
//! held across an `.await`.

use crate::pipeline::{ChatRequest, ChatResponse, Outcome};
use http::{HeaderMap, HeaderName, HeaderValue};
use liter_llm_config::Config;
use liter_llm_protocol::{ApiError, ErrorKind};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// The length of every rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Tokens reserved for the completion when the client set no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 256;

const SLOT_NANOS: u64 = 250_000_000;
/// 60 s of 250 ms slots, plus the slot being filled.
const SLOTS: u64 = WINDOW.as_secs() * 4 + 1;

pub static LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
pub static REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
pub static RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
pub static LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
pub static REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
pub static RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

// ---------------------------------------------------------------------------
// The window
// ---------------------------------------------------------------------------

/// Capacity left in a window after an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining(pub u64);

/// How long until a window would admit what it just refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

/// Where an amount was recorded, so it can be taken back later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

/// A 60-second sliding window with a limit: a ring of 241 slots of 250 ms, each
/// holding what was recorded during it, plus a running total.
///
/// Accuracy: an amount recorded at time `t` is counted until the end of its slot
/// plus 60 s, that is for more than 60 s and at most 60.25 s. So the window never
/// admits more than `limit` in any 60-second interval (it errs on the strict
/// side, by at most 250 ms of hold), and every wait it reports — `Retry-After`,
/// reset times — is exact for that rule, to the nanosecond. Memory is fixed:
/// about 2 KiB per window whatever the traffic.
///
/// Time is `tokio::time::Instant`, so tests can pause and advance it. Not
/// synchronised: wrap it in a `Mutex` to share it.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    limit: u64,
    origin: Instant,
    /// Absolute index of the newest slot (slot `k` spans `origin + k * 250ms`).
    head: u64,
    total: u64,
    slots: Box<[u64]>,
}

impl SlidingWindow {
    pub fn new(limit: u64, now: Instant) -> SlidingWindow {
        SlidingWindow {
            limit,
            origin: now,
            head: 0,
            total: 0,
            slots: vec![0; SLOTS as usize].into_boxed_slice(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// What the window holds now.
    pub fn peek(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.total
    }

    /// `limit - peek`, never below zero.
    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.limit.saturating_sub(self.peek(now))
    }

    /// Strict admission: `amount` fits under the limit. An `amount` above the
    /// limit never fits; its wait is the time until the window is empty.
    pub fn check(&mut self, now: Instant, amount: u64) -> Result<(), RetryAfter> {
        self.advance(now);
        if self.total.saturating_add(amount) <= self.limit {
            Ok(())
        } else {
            Err(RetryAfter(
                self.wait_until_at_most(now, self.limit.saturating_sub(amount)),
            ))
        }
    }

    /// Lenient admission: anything at all is left (`peek < limit`), however much
    /// the caller is about to record.
    pub fn check_headroom(&mut self, now: Instant) -> Result<(), RetryAfter> {
        self.advance(now);
        if self.total < self.limit {
            Ok(())
        } else {
            Err(RetryAfter(
                self.wait_until_at_most(now, self.limit.saturating_sub(1)),
            ))
        }
    }

    /// [`check`](Self::check), then [`record`](Self::record).
    pub fn try_acquire(&mut self, now: Instant, amount: u64) -> Result<Remaining, RetryAfter> {
        self.check(now, amount)?;
        self.record(now, amount);
        Ok(Remaining(self.limit.saturating_sub(self.total)))
    }

    /// Count `amount` now, whatever the limit.
    pub fn record(&mut self, now: Instant, amount: u64) -> Mark {
        self.advance(now);
        // A `now` older than the head (taken before another thread moved the
        // window on) lands in the newest slot: held a little longer, never less.
        let slot = &mut self.slots[(self.head % SLOTS) as usize];
        *slot = slot.saturating_add(amount);
        self.total = self.total.saturating_add(amount);
        Mark(self.head)
    }

    /// Take back up to `amount` recorded at `mark`, if that slot is still in the
    /// window (once it has expired there is nothing left to take back).
    pub fn release(&mut self, now: Instant, mark: Mark, amount: u64) {
        self.advance(now);
        if mark.0 + SLOTS <= self.head || mark.0 > self.head {
            return;
        }
        let slot = &mut self.slots[(mark.0 % SLOTS) as usize];
        let taken = amount.min(*slot);
        *slot -= taken;
        self.total -= taken;
    }

    /// Time until everything now in the window has expired (zero when empty).
    pub fn reset_after(&mut self, now: Instant) -> Duration {
        self.advance(now);
        if self.total == 0 {
            return Duration::ZERO;
        }
        let oldest = self.oldest();
        let mut k = self.head;
        while k > oldest && self.slots[(k % SLOTS) as usize] == 0 {
            k -= 1;
        }
        self.expiry(k).saturating_duration_since(now)
    }

    /// Time until the window holds at most `target` (call after `advance`).
    fn wait_until_at_most(&self, now: Instant, target: u64) -> Duration {
        if self.total <= target {
            return Duration::ZERO;
        }
        let need = self.total - target;
        let mut freed = 0u64;
        for k in self.oldest()..=self.head {
            freed += self.slots[(k % SLOTS) as usize];
            if freed >= need {
                return self.expiry(k).saturating_duration_since(now);
            }
        }
        self.expiry(self.head).saturating_duration_since(now)
    }

    fn oldest(&self) -> u64 {
        (self.head + 1).saturating_sub(SLOTS)
    }

    /// The instant slot `k` stops counting.
    fn expiry(&self, k: u64) -> Instant {
        self.origin + Duration::from_nanos((k + SLOTS).saturating_mul(SLOT_NANOS))
    }

    fn index(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos / u128::from(SLOT_NANOS)).unwrap_or(u64::MAX / 2)
    }

    fn advance(&mut self, now: Instant) {
        let idx = self.index(now);
        if idx <= self.head {
            return;
        }
        if idx - self.head >= SLOTS {
            self.slots.fill(0);
            self.total = 0;
        } else {
            for k in self.head + 1..=idx {
                let slot = &mut self.slots[(k % SLOTS) as usize];
                self.total -= *slot;
                *slot = 0;
            }
        }
        self.head = idx;
    }
}

// ---------------------------------------------------------------------------
// What a store is asked, and answers
// ---------------------------------------------------------------------------

/// Which counter a limit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    /// One virtual key, by `caller.key_id`.
    Key,
    /// One model group, by client-facing name.
    Model,
    /// The whole proxy.
    Global,
}

/// Requests or tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Requests,
    Tokens,
}

/// Per-minute limits of one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl ScopeLimits {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }
}

/// One scope of a plan.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub kind: ScopeKind,
    /// The key id, the group name, or `""` for the global scope.
    pub id: &'a str,
    pub limits: ScopeLimits,
}

/// What one request asks of the store: count one request, and reserve `tokens`,
/// in every listed scope (in this order: key, model, global; absent scopes have
/// no limit for this request).
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    pub scopes: [Option<Scope<'a>>; 3],
    pub tokens: u64,
}

impl Plan<'_> {
    pub fn is_empty(&self) -> bool {
        self.scopes.iter().all(Option::is_none)
    }

    /// Whether any scope limits tokens (and so needs a settlement).
    pub fn limits_tokens(&self) -> bool {
        self.scopes.iter().flatten().any(|s| s.limits.tpm.is_some())
    }
}

/// A limit's state after an admission, as the response headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    pub limit: u64,
    pub remaining: u64,
    /// Until the window is empty again.
    pub reset: Duration,
}

impl LimitState {
    /// Keep the tighter of `current` and `candidate`: the smaller remaining
    /// fraction, then the smaller remaining count, then the later reset.
    pub fn keep_tightest(current: &mut Option<LimitState>, candidate: LimitState) {
        let tighter = match current {
            None => true,
            Some(c) => {
                let lhs = u128::from(candidate.remaining) * u128::from(c.limit.max(1));
                let rhs = u128::from(c.remaining) * u128::from(candidate.limit.max(1));
                lhs < rhs
                    || (lhs == rhs
                        && (candidate.remaining, std::cmp::Reverse(candidate.reset))
                            < (c.remaining, std::cmp::Reverse(c.reset)))
            }
        };
        if tighter {
            *current = Some(candidate);
        }
    }
}

/// An admission: what to settle later, and the tightest limits for the headers.
#[derive(Debug)]
pub struct Admitted<T> {
    /// `Some` when tokens were reserved and must be trued up at settlement.
    pub ticket: Option<T>,
    pub requests: Option<LimitState>,
    pub tokens: Option<LimitState>,
}

/// A refusal: the limit that binds longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub scope: ScopeKind,
    pub dimension: Dimension,
    pub limit: u64,
    /// Counted in the window at the time of the refusal.
    pub used: u64,
    /// Until every refusing scope would admit the request.
    pub retry_after: Duration,
}

impl Denied {
    /// Merge refusals from several scopes: the longest wait wins, since the
    /// request needs every scope to admit it.
    pub fn keep_longest(current: &mut Option<Denied>, candidate: Denied) {
        if current.is_none_or(|c| candidate.retry_after > c.retry_after) {
            *current = Some(candidate);
        }
    }
}

/// Where the counters live. The in-memory store answers at once; a networked
/// store (Redis, PostgreSQL) can do its I/O in `acquire`. `settle` is called from
/// a settlement hook, which cannot wait: a networked store queues or spawns the
/// write itself.
pub trait RateLimitStore: Send + Sync + 'static {
    /// What an admission needs at settlement (the reserved slots, say).
    type Ticket: Send + 'static;

    /// Check every scope of `plan`; if all admit, count one request and reserve
    /// `plan.tokens` in each, atomically with respect to other acquisitions.
    /// Requests are admitted strictly (`used + 1 <= rpm`), tokens leniently
    /// (`used < tpm`, see the module docs). The ticket is `Some` exactly when
    /// some scope limits tokens.
    fn acquire(
        &self,
        plan: &Plan<'_>,
        now: Instant,
    ) -> impl Future<Output = Result<Admitted<Self::Ticket>, Denied>> + Send;

    /// True up: take back the reservation and count `tokens` actually used.
    fn settle(&self, ticket: Self::Ticket, tokens: u64, now: Instant);
}

// ---------------------------------------------------------------------------
// In-memory store
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Counters {
    requests: Option<SlidingWindow>,
    tokens: Option<SlidingWindow>,
}

impl Counters {
    /// Make sure a window exists for each limit, at the current limit value.
    fn prepare(&mut self, limits: ScopeLimits, now: Instant) {
        fn ensure(w: &mut Option<SlidingWindow>, limit: Option<u64>, now: Instant) {
            if let Some(limit) = limit {
                match w {
                    Some(w) => w.set_limit(limit),
                    None => *w = Some(SlidingWindow::new(limit, now)),
                }
            }
        }
        ensure(&mut self.requests, limits.rpm, now);
        ensure(&mut self.tokens, limits.tpm, now);
    }

    fn is_idle(&mut self, now: Instant) -> bool {
        self.requests.as_mut().is_none_or(|w| w.peek(now) == 0)
            && self.tokens.as_mut().is_none_or(|w| w.peek(now) == 0)
    }
}

type Cell = Arc<Mutex<Counters>>;

fn lock(cell: &Cell) -> MutexGuard<'_, Counters> {
    // The counters are plain numbers: a panic mid-update cannot break an invariant
    // we rely on for safety, so a poisoned lock is still used.
    cell.lock().unwrap_or_else(|p| p.into_inner())
}

/// Named counters (keys, or model groups). Entries idle for a whole window are
/// swept when the table grows, so client-chosen names cannot grow it forever.
#[derive(Debug)]
struct Table {
    map: RwLock<HashMap<Box<str>, Cell>>,
    sweep_at: AtomicUsize,
}

const SWEEP_MIN: usize = 1024;

impl Default for Table {
    fn default() -> Self {
        Table {
            map: RwLock::new(HashMap::new()),
            sweep_at: AtomicUsize::new(SWEEP_MIN),
        }
    }
}

impl Table {
    fn get(&self, id: &str, now: Instant) -> Cell {
        if let Some(cell) = self.map.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            return cell.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(cell) = map.get(id) {
            return cell.clone();
        }
        if map.len() >= self.sweep_at.load(Ordering::Relaxed) {
            // An entry still referenced by an unsettled ticket is kept.
            map.retain(|_, cell| Arc::strong_count(cell) > 1 || !lock(cell).is_idle(now));
            self.sweep_at
                .store((map.len() * 2).max(SWEEP_MIN), Ordering::Relaxed);
        }
        let cell = Cell::default();
        map.insert(id.into(), cell.clone());
        cell
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Counters in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryRateLimitStore {
    keys: Table,
    models: Table,
    global: Cell,
}

impl MemoryRateLimitStore {
    pub fn new() -> MemoryRateLimitStore {
        MemoryRateLimitStore::default()
    }

    fn cell(&self, scope: &Scope<'_>, now: Instant) -> Cell {
        match scope.kind {
            ScopeKind::Key => self.keys.get(scope.id, now),
            ScopeKind::Model => self.models.get(scope.id, now),
            ScopeKind::Global => self.global.clone(),
        }
    }

    /// The synchronous core of [`RateLimitStore::acquire`].
    pub fn acquire_now(
        &self,
        plan: &Plan<'_>,
        now: Instant,
    ) -> Result<Admitted<MemoryTicket>, Denied> {
        let cells: [Option<(Cell, ScopeLimits, ScopeKind)>; 3] = plan
            .scopes
            .map(|s| s.map(|s| (self.cell(&s, now), s.limits, s.kind)));
        // Locks are always taken in plan order (key, model, global), so two
        // acquisitions cannot deadlock.
        let mut guards: [Option<MutexGuard<'_, Counters>>; 3] = [None, None, None];
        for (guard, cell) in guards.iter_mut().zip(&cells) {
            if let Some((cell, limits, _)) = cell {
                let mut g = lock(cell);
                g.prepare(*limits, now);
                *guard = Some(g);
            }
        }
        let mut denied = None;
        for (guard, cell) in guards.iter_mut().zip(&cells) {
            let (Some(g), Some((_, _, kind))) = (guard, cell) else {
                continue;
            };
            if let Some(w) = g.requests.as_mut() {
                if let Err(RetryAfter(wait)) = w.check(now, 1) {
                    let d = Denied {
                        scope: *kind,
                        dimension: Dimension::Requests,
                        limit: w.limit(),
                        used: w.total,
                        retry_after: wait,
                    };
                    Denied::keep_longest(&mut denied, d);
                }
            }
            if let Some(w) = g.tokens.as_mut() {
                if let Err(RetryAfter(wait)) = w.check_headroom(now) {
                    let d = Denied {
                        scope: *kind,
                        dimension: Dimension::Tokens,
                        limit: w.limit(),
                        used: w.total,
                        retry_after: wait,
                    };
                    Denied::keep_longest(&mut denied, d);
                }
            }
        }
        if let Some(d) = denied {
            return Err(d);
        }
        let mut admitted = Admitted {
            ticket: None,
            requests: None,
            tokens: None,
        };
        let mut held: [Option<(Cell, Mark)>; 3] = [None, None, None];
        for ((guard, cell), held) in guards.iter_mut().zip(&cells).zip(held.iter_mut()) {
            let (Some(g), Some((cell, _, _))) = (guard, cell) else {
                continue;
            };
            if let Some(w) = g.requests.as_mut() {
                w.record(now, 1);
                let state = LimitState {
                    limit: w.limit(),
                    remaining: w.remaining(now),
                    reset: w.reset_after(now),
                };
                LimitState::keep_tightest(&mut admitted.requests, state);
            }
            if let Some(w) = g.tokens.as_mut() {
                let mark = w.record(now, plan.tokens);
                *held = Some((cell.clone(), mark));
                let state = LimitState {
                    limit: w.limit(),
                    remaining: w.remaining(now),
                    reset: w.reset_after(now),
                };
                LimitState::keep_tightest(&mut admitted.tokens, state);
            }
        }
        drop(guards);
        if held.iter().any(Option::is_some) {
            admitted.ticket = Some(MemoryTicket {
                held,
                reserved: plan.tokens,
            });
        }
        Ok(admitted)
    }

    /// The tokens and requests counted now for a key id, if it has counters.
    #[cfg(test)]
    fn key_usage(&self, id: &str, now: Instant) -> (u64, u64) {
        let cell = self.keys.get(id, now);
        let mut g = lock(&cell);
        (
            g.requests.as_mut().map_or(0, |w| w.peek(now)),
            g.tokens.as_mut().map_or(0, |w| w.peek(now)),
        )
    }
}

/// The token windows a request reserved in.
#[derive(Debug)]
pub struct MemoryTicket {
    held: [Option<(Cell, Mark)>; 3],
    reserved: u64,
}

impl RateLimitStore for MemoryRateLimitStore {
    type Ticket = MemoryTicket;

    fn acquire(
        &self,
        plan: &Plan<'_>,
        now: Instant,
    ) -> impl Future<Output = Result<Admitted<MemoryTicket>, Denied>> + Send {
        std::future::ready(self.acquire_now(plan, now))
    }

    fn settle(&self, ticket: MemoryTicket, tokens: u64, now: Instant) {
        for (cell, mark) in ticket.held.iter().flatten() {
            let mut g = lock(cell);
            if let Some(w) = g.tokens.as_mut() {
                w.release(now, *mark, ticket.reserved);
                if tokens > 0 {
                    w.record(now, tokens);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The layer
// ---------------------------------------------------------------------------

/// The limits that come from `[rate_limit]` (per-key limits come with each request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Applied to each model group separately.
    pub model: ScopeLimits,
    pub global: ScopeLimits,
    /// Completion tokens reserved when the client set no `max_tokens`.
    pub default_max_tokens: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            model: ScopeLimits::default(),
            global: ScopeLimits::default(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

impl RateLimitSettings {
    /// Read and validate `[rate_limit]` and the `[[keys]]` limits. `Ok(None)`
    /// when no limit of any kind is configured.
    pub fn from_config(config: &Config) -> Result<Option<RateLimitSettings>, String> {
        fn at_least_one(field: &str, v: Option<u64>) -> Result<Option<u64>, String> {
            match v {
                Some(0) => Err(format!("`{field}` must be at least 1")),
                v => Ok(v),
            }
        }
        let mut settings = RateLimitSettings::default();
        if let Some(rl) = &config.rate_limit {
            settings.model.rpm = at_least_one("rate_limit.rpm", rl.rpm)?;
            settings.model.tpm = at_least_one("rate_limit.tpm", rl.tpm)?;
            settings.global.rpm = at_least_one("rate_limit.global_rpm", rl.global_rpm)?;
            settings.global.tpm = at_least_one("rate_limit.global_tpm", rl.global_tpm)?;
        }
        let mut any_key = false;
        for (i, k) in config.keys.iter().enumerate() {
            any_key |= at_least_one(&format!("keys[{i}].rpm"), k.rpm)?.is_some();
            any_key |= at_least_one(&format!("keys[{i}].tpm"), k.tpm)?.is_some();
        }
        if settings.model.is_empty() && settings.global.is_empty() && !any_key {
            return Ok(None);
        }
        Ok(Some(settings))
    }
}

struct Shared<St> {
    store: St,
    settings: RateLimitSettings,
}

/// Enforces rpm/tpm per key, per model group and globally. See the module docs.
pub struct RateLimitLayer<St: RateLimitStore = MemoryRateLimitStore> {
    shared: Arc<Shared<St>>,
}

impl<St: RateLimitStore> Clone for RateLimitLayer<St> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<St: RateLimitStore> std::fmt::Debug for RateLimitLayer<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer<MemoryRateLimitStore> {
    /// Check the settings without building anything (for `config check`).
    pub fn validate(config: &Config) -> Result<(), String> {
        RateLimitSettings::from_config(config).map(|_| ())
    }

    /// An in-memory rate limiter, or `None` when neither `[rate_limit]` nor any
    /// `[[keys]]` `rpm`/`tpm` is set. Errors name the offending field.
    pub fn from_config(config: &Config) -> Result<Option<RateLimitLayer>, String> {
        Ok(RateLimitSettings::from_config(config)?
            .map(|s| RateLimitLayer::new(MemoryRateLimitStore::new(), s)))
    }
}

impl<St: RateLimitStore> RateLimitLayer<St> {
    pub fn new(store: St, settings: RateLimitSettings) -> RateLimitLayer<St> {
        RateLimitLayer {
            shared: Arc::new(Shared { store, settings }),
        }
    }

    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<S, St: RateLimitStore> Layer<S> for RateLimitLayer<St> {
    type Service = RateLimitService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around the rest of the pipeline.
pub struct RateLimitService<S, St: RateLimitStore = MemoryRateLimitStore> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S: Clone, St: RateLimitStore> Clone for RateLimitService<S, St> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<St: RateLimitStore> Shared<St> {
    fn plan<'a>(&self, req: &'a ChatRequest) -> Plan<'a> {
        let key = req
            .caller
            .limits
            .as_deref()
            .map(|l| ScopeLimits {
                rpm: l.rpm,
                tpm: l.tpm,
            })
            .filter(|l| !l.is_empty());
        let model = Some(self.settings.model).filter(|l| !l.is_empty());
        let global = Some(self.settings.global).filter(|l| !l.is_empty());
        Plan {
            scopes: [
                key.map(|limits| Scope {
                    kind: ScopeKind::Key,
                    id: &req.caller.key_id,
                    limits,
                }),
                model.map(|limits| Scope {
                    kind: ScopeKind::Model,
                    id: &req.model,
                    limits,
                }),
                global.map(|limits| Scope {
                    kind: ScopeKind::Global,
                    id: "",
                    limits,
                }),
            ],
            tokens: req
                .estimated_prompt_tokens
                .saturating_add(req.max_tokens.unwrap_or(self.settings.default_max_tokens)),
        }
    }
}

/// Tokens to charge for a settled request whose reservation was `reserved`.
fn charged_tokens(outcome: &Outcome, reserved: u64) -> u64 {
    if outcome.cached {
        return 0;
    }
    match outcome.usage {
        Some(usage) => usage.total(),
        // The upstream answered but its usage is unknown (a stream cut before the
        // usage chunk, a provider that reports none): keep the estimate.
        None if (200..300).contains(&outcome.status) => reserved,
        // Failed before the upstream counted anything.
        None => 0,
    }
}

fn denied_error(d: &Denied, req: &ChatRequest) -> ApiError {
    let (unit, short) = match d.dimension {
        Dimension::Requests => ("requests", "rpm"),
        Dimension::Tokens => ("tokens", "tpm"),
    };
    let (who, field) = match d.scope {
        ScopeKind::Key => (
            format!("key `{}`", req.caller.key_id),
            format!("keys[].{short}"),
        ),
        ScopeKind::Model => (
            format!("model group `{}`", req.model),
            format!("rate_limit.{short}"),
        ),
        ScopeKind::Global => (
            "this proxy (global limit)".to_string(),
            format!("rate_limit.global_{short}"),
        ),
    };
    let secs = retry_after_secs(d.retry_after);
    let mut msg = format!(
        "rate limit exceeded: {who} allows {} {unit} per minute ({field}), ",
        d.limit
    );
    match d.dimension {
        Dimension::Requests => {
            let _ = write!(msg, "all used in the last 60 s");
        }
        Dimension::Tokens => {
            let _ = write!(msg, "and {} are used or reserved in the last 60 s", d.used);
        }
    }
    let _ = write!(msg, "; retry after {secs} s");
    ApiError::new(ErrorKind::RateLimited, msg)
        .with_code("rate_limit_exceeded")
        .with_retry_after(secs)
}

/// Whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A duration in OpenAI's `x-ratelimit-reset-*` format (Go's duration syntax,
/// to the millisecond, rounded up): `0s`, `250ms`, `1s`, `1.5s`, `1m0.25s`, `6m0s`.
pub fn format_reset(d: Duration) -> String {
    // Written digit by digit: this runs twice for every rate-limited answer,
    // and the formatting machinery cost more than the rest of the header work.
    let ms = u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    let mut out = String::with_capacity(16);
    if ms < 1000 {
        push_digits(&mut out, ms);
        out.push_str(if ms == 0 { "s" } else { "ms" });
        return out;
    }
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (mins, rest) = (rest / 60_000, rest % 60_000);
    let (secs, frac) = (rest / 1000, rest % 1000);
    if hours > 0 {
        push_digits(&mut out, hours);
        out.push('h');
    }
    if hours > 0 || mins > 0 {
        push_digits(&mut out, mins);
        out.push('m');
    }
    push_digits(&mut out, secs);
    if frac > 0 {
        out.push('.');
        let digits = [frac / 100, frac / 10 % 10, frac % 10];
        let keep = if digits[2] > 0 {
            3
        } else if digits[1] > 0 {
            2
        } else {
            1
        };
        for d in &digits[..keep] {
            out.push(char::from(b'0' + *d as u8));
        }
    }
    out.push('s');
    out
}

fn push_digits(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or_default());
}

fn set_headers(h: &mut HeaderMap, state: &LimitState, names: [&HeaderName; 3]) {
    h.insert(names[0].clone(), HeaderValue::from(state.limit));
    h.insert(names[1].clone(), HeaderValue::from(state.remaining));
    if let Ok(v) = HeaderValue::from_str(&format_reset(state.reset)) {
        h.insert(names[2].clone(), v);
    }
}

impl<S, St> Service<ChatRequest> for RateLimitService<S, St>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = ApiError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    St: RateLimitStore,
{
    type Response = ChatResponse;
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, ApiError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let inner = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, inner);
        let shared = self.shared.clone();
        Box::pin(async move {
            let plan = shared.plan(&req);
            if plan.is_empty() {
                return inner.call(req).await;
            }
            let reserved = plan.tokens;
            let admitted = match shared.store.acquire(&plan, Instant::now()).await {
                Ok(a) => a,
                Err(d) => return Err(denied_error(&d, &req)),
            };
            if let Some(ticket) = admitted.ticket {
                // Registered before the inner call: a JSON answer settles inside it.
                let hook_shared = shared.clone();
                req.settlement.on_settle(move |outcome| {
                    hook_shared.store.settle(
                        ticket,
                        charged_tokens(outcome, reserved),
                        Instant::now(),
                    );
                });
            }
            let mut resp = inner.call(req).await?;
            let h = resp.headers_mut();
            if let Some(s) = &admitted.requests {
                set_headers(
                    h,
                    s,
                    [&LIMIT_REQUESTS, &REMAINING_REQUESTS, &RESET_REQUESTS],
                );
            }
            if let Some(s) = &admitted.tokens {
                set_headers(h, s, [&LIMIT_TOKENS, &REMAINING_TOKENS, &RESET_TOKENS]);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::pipeline::{CacheDirectives, Caller, GatewayBody, KeyLimits, Settlement, Usage};
    use bytes::Bytes;
    use serde_json::json;
    use tower::ServiceExt;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    // ---- the window -------------------------------------------------------

    #[tokio::test(start_paused = true)]
    async fn window_forgets_an_amount_after_60_to_60_25_seconds() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(10, t0);
        w.record(t0 + secs(0.1), 3);
        assert_eq!(w.peek(t0 + secs(30.0)), 3);
        assert_eq!(
            w.peek(t0 + secs(60.1)),
            3,
            "still held at 60 s after the event"
        );
        assert_eq!(w.peek(t0 + secs(60.2499)), 3);
        assert_eq!(
            w.peek(t0 + secs(60.25)),
            0,
            "gone at the end of its slot plus 60 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn window_slides_instead_of_resetting_every_minute() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(2, t0);
        assert_eq!(w.try_acquire(t0, 1), Ok(Remaining(1)));
        assert_eq!(w.try_acquire(t0 + secs(30.0), 1), Ok(Remaining(0)));
        // Full: the first request frees its place at 60.25 s.
        assert_eq!(
            w.try_acquire(t0 + secs(45.0), 1),
            Err(RetryAfter(secs(15.25)))
        );
        assert_eq!(w.try_acquire(t0 + secs(60.25), 1), Ok(Remaining(0)));
        // A fixed window would have reset at 60 s; this one still holds the 30 s request.
        assert_eq!(
            w.try_acquire(t0 + secs(61.0), 1),
            Err(RetryAfter(secs(29.25)))
        );
        assert_eq!(w.try_acquire(t0 + secs(90.25), 1), Ok(Remaining(0)));
    }

    #[tokio::test(start_paused = true)]
    async fn window_wait_is_until_enough_has_expired() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(100, t0);
        w.record(t0, 30);
        w.record(t0 + secs(10.0), 50);
        w.record(t0 + secs(20.0), 40);
        let now = t0 + secs(25.0);
        // Strict: 50 more needs the window at 50 or less, so 70 must expire: the
        // 30 (at 60.25 s) and the 50 (at 70.25 s).
        assert_eq!(w.check(now, 50), Err(RetryAfter(secs(45.25))));
        // Headroom: below 100 once the first 30 expire.
        assert_eq!(w.check_headroom(now), Err(RetryAfter(secs(35.25))));
        assert_eq!(w.check_headroom(t0 + secs(60.25)), Ok(()));
        assert_eq!(w.peek(t0 + secs(60.25)), 90);
    }

    #[tokio::test(start_paused = true)]
    async fn window_release_takes_back_a_reservation_only_while_it_is_counted() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(1000, t0);
        let a = w.record(t0, 100);
        let b = w.record(t0 + secs(1.0), 200);
        w.record(t0 + secs(1.1), 5); // same 250 ms slot as `b`
        w.release(t0 + secs(2.0), a, 100);
        assert_eq!(w.peek(t0 + secs(2.0)), 205);
        // Releasing more than the slot holds takes only what is there.
        w.release(t0 + secs(3.0), b, 10_000);
        assert_eq!(w.peek(t0 + secs(3.0)), 0);
        // After expiry the ring position is reused (slot 16 at 4 s, slot 257 at
        // 64.25 s): a late release must not touch the new amount.
        let c = w.record(t0 + secs(4.0), 50);
        w.record(t0 + secs(64.3), 7);
        w.release(t0 + secs(64.3), c, 50);
        assert_eq!(w.peek(t0 + secs(64.3)), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn window_reset_is_the_time_until_it_is_empty() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(10, t0);
        assert_eq!(w.reset_after(t0), Duration::ZERO);
        w.record(t0, 1);
        w.record(t0 + secs(10.1), 1);
        assert_eq!(w.reset_after(t0 + secs(20.0)), secs(50.25));
        // The second amount's slot began at 10 s: it leaves at 70.25 s.
        assert_eq!(w.reset_after(t0 + secs(60.3)), secs(9.95));
        assert_eq!(w.reset_after(t0 + secs(70.3)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn window_strict_check_refuses_more_than_the_limit_and_headroom_admits_it() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(100, t0);
        assert!(w.check(t0, 101).is_err());
        assert_eq!(w.check_headroom(t0), Ok(()));
    }

    #[test]
    fn reset_format_is_openais() {
        assert_eq!(format_reset(Duration::ZERO), "0s");
        assert_eq!(format_reset(Duration::from_micros(1)), "1ms");
        assert_eq!(format_reset(Duration::from_millis(250)), "250ms");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_reset(Duration::from_millis(60_250)), "1m0.25s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_reset(Duration::from_millis(5_002)), "5.002s");
        assert_eq!(format_reset(Duration::from_secs(3_661)), "1h1m1s");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn tightest_limit_is_the_least_remaining_fraction() {
        let mut t = None;
        let st = |limit, remaining| LimitState {
            limit,
            remaining,
            reset: Duration::ZERO,
        };
        LimitState::keep_tightest(&mut t, st(1000, 500)); // 50 %
        LimitState::keep_tightest(&mut t, st(10, 3)); // 30 %
        LimitState::keep_tightest(&mut t, st(100, 40)); // 40 %
        assert_eq!(t, Some(st(10, 3)));
        // Equal fractions: the smaller count.
        LimitState::keep_tightest(&mut t, st(100, 30));
        assert_eq!(t, Some(st(10, 3)));
        LimitState::keep_tightest(&mut t, st(20, 6));
        assert_eq!(t, Some(st(10, 3)));
        LimitState::keep_tightest(&mut t, st(5, 0));
        assert_eq!(t, Some(st(5, 0)));
    }

    // ---- the service ------------------------------------------------------

    fn request(
        key: &str,
        limits: Option<KeyLimits>,
        model: &str,
        est: u64,
        max_tokens: Option<u64>,
    ) -> ChatRequest {
        ChatRequest {
            endpoint: crate::pipeline::Endpoint::ChatCompletions,
            body_format: Default::default(),
            expects_json: true,
            body: Bytes::from_static(b"{}"),
            model: model.to_string(),
            model_span: (0, 0),
            stream: false,
            include_usage: false,
            max_tokens,
            caller: Caller {
                key_id: Arc::from(key),
                limits: limits.map(Arc::new),
            },
            request_id: "req".to_string(),
            deadline: Instant::now() + Duration::from_secs(600),
            cache: CacheDirectives::default(),
            estimated_prompt_tokens: est,
            settlement: Settlement::new(),
        }
    }

    fn key_limits(rpm: Option<u64>, tpm: Option<u64>) -> Option<KeyLimits> {
        Some(KeyLimits {
            rpm,
            tpm,
            ..KeyLimits::default()
        })
    }

    fn usage(total: u64) -> Usage {
        Usage {
            prompt_tokens: total / 2,
            completion_tokens: total - total / 2,
            ..Usage::default()
        }
    }

    /// What the inner service does with each request.
    #[derive(Clone, Copy)]
    enum Answer {
        /// A JSON answer with this usage, settled before returning.
        Json(u64),
        /// A stream: returned at once, settled later by the test.
        Stream,
        /// A cache hit with this (original) usage.
        Cached(u64),
        /// Fails before the upstream counts anything, as dispatch does.
        Fail,
    }

    type Pending = Arc<Mutex<Vec<Settlement>>>;

    fn stack(
        settings: RateLimitSettings,
        answer: Arc<Mutex<Answer>>,
        pending: Pending,
    ) -> (RateLimitLayer, crate::pipeline::ChatService) {
        let layer = RateLimitLayer::new(MemoryRateLimitStore::new(), settings);
        let inner = tower::service_fn(move |req: ChatRequest| {
            let answer = *answer.lock().unwrap();
            let pending = pending.clone();
            async move {
                let s = &req.settlement;
                match answer {
                    Answer::Json(total) => {
                        s.update(|o| {
                            o.status = 200;
                            o.usage = Some(usage(total));
                            o.completed = true;
                        });
                        s.settle();
                    }
                    Answer::Stream => {
                        s.update(|o| o.status = 200);
                        pending.lock().unwrap().push(s.clone());
                    }
                    Answer::Cached(total) => {
                        s.update(|o| {
                            o.status = 200;
                            o.usage = Some(usage(total));
                            o.cached = true;
                            o.completed = true;
                        });
                        s.settle();
                    }
                    Answer::Fail => {
                        s.update(|o| o.status = 502);
                        s.settle();
                        return Err(ApiError::new(ErrorKind::BadGateway, "upstream down"));
                    }
                }
                Ok(http::Response::new(GatewayBody::full("{}")))
            }
        });
        let svc = crate::pipeline::ChatService::new(layer.layer(inner));
        (layer, svc)
    }

    struct Harness {
        layer: RateLimitLayer,
        svc: tower::util::BoxCloneSyncService<ChatRequest, ChatResponse, ApiError>,
        answer: Arc<Mutex<Answer>>,
        pending: Pending,
    }

    impl Harness {
        fn new(settings: RateLimitSettings) -> Harness {
            let answer = Arc::new(Mutex::new(Answer::Json(10)));
            let pending = Pending::default();
            let (layer, svc) = stack(settings, answer.clone(), pending.clone());
            Harness {
                layer,
                svc,
                answer,
                pending,
            }
        }

        fn answer(&self, a: Answer) {
            *self.answer.lock().unwrap() = a;
        }

        async fn call(&self, req: ChatRequest) -> Result<ChatResponse, ApiError> {
            self.svc.clone().oneshot(req).await
        }

        /// End the oldest open stream with this outcome.
        fn finish_stream(&self, usage_total: Option<u64>) {
            let s = self.pending.lock().unwrap().remove(0);
            s.update(|o| {
                o.usage = usage_total.map(usage);
                o.completed = usage_total.is_some();
            });
            s.settle();
        }

        fn key_usage(&self, id: &str) -> (u64, u64) {
            self.layer.store().key_usage(id, Instant::now())
        }
    }

    fn header(resp: &ChatResponse, name: &HeaderName) -> Option<String> {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn num(resp: &ChatResponse, name: &HeaderName) -> u64 {
        header(resp, name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .parse()
            .unwrap()
    }

    fn settings(model: ScopeLimits, global: ScopeLimits) -> RateLimitSettings {
        RateLimitSettings {
            model,
            global,
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }

    fn rpm(n: u64) -> ScopeLimits {
        ScopeLimits {
            rpm: Some(n),
            tpm: None,
        }
    }

    fn tpm(n: u64) -> ScopeLimits {
        ScopeLimits {
            rpm: None,
            tpm: Some(n),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn key_rpm_over_the_limit_is_a_429_naming_the_limit_not_the_key() {
        let h = Harness::new(RateLimitSettings::default());
        let limits = || key_limits(Some(2), None);
        let r1 = h
            .call(request("kid-1", limits(), "gpt-4o", 10, None))
            .await
            .unwrap();
        assert_eq!(
            (num(&r1, &LIMIT_REQUESTS), num(&r1, &REMAINING_REQUESTS)),
            (2, 1)
        );
        tokio::time::advance(secs(1.0)).await;
        let r2 = h
            .call(request("kid-1", limits(), "gpt-4o", 10, None))
            .await
            .unwrap();
        assert_eq!(num(&r2, &REMAINING_REQUESTS), 0);
        assert_eq!(
            header(&r2, &LIMIT_TOKENS),
            None,
            "no token limit, no token headers"
        );
        tokio::time::advance(secs(1.0)).await;
        let e = h
            .call(request("kid-1", limits(), "gpt-4o", 10, None))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.status().as_u16(), 429);
        assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
        // The first request (t=0, slot 0) leaves the window at 60.25 s; now is 2 s.
        assert_eq!(e.retry_after_secs, Some(59));
        assert!(e.message.contains("key `kid-1`"), "{}", e.message);
        assert!(
            e.message.contains("2 requests per minute (keys[].rpm)"),
            "{}",
            e.message
        );
        // Another key is not affected.
        h.call(request("kid-2", limits(), "gpt-4o", 10, None))
            .await
            .unwrap();
        // The refused request was not counted.
        assert_eq!(h.key_usage("kid-1").0, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_accurate_and_the_request_passes_when_it_elapses() {
        let h = Harness::new(settings(rpm(1), ScopeLimits::default()));
        h.call(request("a", None, "m", 1, None)).await.unwrap();
        tokio::time::advance(secs(20.5)).await;
        let e = h.call(request("a", None, "m", 1, None)).await.unwrap_err();
        // 60.25 - 20.5 = 39.75 s, rounded up.
        assert_eq!(e.retry_after_secs, Some(40));
        tokio::time::advance(secs(39.7)).await;
        assert!(
            h.call(request("a", None, "m", 1, None)).await.is_err(),
            "not yet"
        );
        tokio::time::advance(secs(0.05)).await;
        h.call(request("a", None, "m", 1, None)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn tpm_reserves_the_estimate_then_trues_up_to_a_streams_usage_when_it_settles() {
        let h = Harness::new(RateLimitSettings::default());
        let limits = || key_limits(None, Some(1000));
        h.answer(Answer::Stream);
        let r1 = h
            .call(request("k", limits(), "m", 10, Some(40)))
            .await
            .unwrap();
        // Reserved: 10 prompt + 40 max_tokens.
        assert_eq!(num(&r1, &REMAINING_TOKENS), 950);
        assert_eq!(h.key_usage("k").1, 50);
        tokio::time::advance(secs(5.0)).await;
        h.finish_stream(Some(300));
        assert_eq!(
            h.key_usage("k").1,
            300,
            "the reservation is replaced by the real usage"
        );
        // The stream's tokens count against the next request.
        h.answer(Answer::Json(20));
        let r2 = h
            .call(request("k", limits(), "m", 10, Some(40)))
            .await
            .unwrap();
        assert_eq!(num(&r2, &REMAINING_TOKENS), 1000 - 300 - 50);
        assert_eq!(h.key_usage("k").1, 320);
        // A big stream pushes the key over its limit.
        h.answer(Answer::Stream);
        h.call(request("k", limits(), "m", 10, Some(40)))
            .await
            .unwrap();
        h.finish_stream(Some(900));
        let e = h
            .call(request("k", limits(), "m", 10, Some(40)))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(
            e.message.contains("1000 tokens per minute (keys[].tpm)"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("1220 are used or reserved"),
            "{}",
            e.message
        );
        // The 300 settled at 5 s leave at 65.25 s, which brings the key below its limit.
        assert_eq!(e.retry_after_secs, Some(61));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_whose_estimate_alone_exceeds_tpm_is_admitted_into_an_empty_window() {
        let h = Harness::new(settings(tpm(100), ScopeLimits::default()));
        h.answer(Answer::Json(150));
        let r = h.call(request("k", None, "m", 500, None)).await.unwrap();
        assert_eq!(num(&r, &REMAINING_TOKENS), 0);
        assert_eq!(num(&r, &LIMIT_TOKENS), 100);
        let e = h
            .call(request("k", None, "m", 1, Some(1)))
            .await
            .unwrap_err();
        assert!(
            e.message
                .contains("model group `m` allows 100 tokens per minute (rate_limit.tpm)"),
            "{}",
            e.message
        );
        assert!(e.message.contains("150 are used"), "{}", e.message);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_request_releases_its_token_reservation_but_counts_as_a_request() {
        let h = Harness::new(RateLimitSettings::default());
        let limits = || key_limits(Some(10), Some(1000));
        h.answer(Answer::Fail);
        let e = h
            .call(request("k", limits(), "m", 100, Some(100)))
            .await
            .unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::BadGateway,
            "the inner error passes through"
        );
        assert_eq!(h.key_usage("k"), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_cut_before_its_usage_keeps_the_estimate() {
        let h = Harness::new(RateLimitSettings::default());
        h.answer(Answer::Stream);
        h.call(request(
            "k",
            key_limits(None, Some(1000)),
            "m",
            30,
            Some(70),
        ))
        .await
        .unwrap();
        h.finish_stream(None);
        assert_eq!(h.key_usage("k").1, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_answer_counts_the_request_but_no_tokens() {
        let h = Harness::new(RateLimitSettings::default());
        h.answer(Answer::Cached(500));
        let r = h
            .call(request(
                "k",
                key_limits(Some(5), Some(1000)),
                "m",
                30,
                Some(70),
            ))
            .await
            .unwrap();
        assert_eq!(num(&r, &REMAINING_REQUESTS), 4);
        assert_eq!(h.key_usage("k"), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn model_group_limits_are_per_group_and_shared_across_keys() {
        let h = Harness::new(settings(rpm(2), ScopeLimits::default()));
        h.call(request("a", None, "gpt-4o", 1, None)).await.unwrap();
        h.call(request("b", None, "gpt-4o", 1, None)).await.unwrap();
        let e = h
            .call(request("c", None, "gpt-4o", 1, None))
            .await
            .unwrap_err();
        assert!(
            e.message
                .contains("model group `gpt-4o` allows 2 requests per minute (rate_limit.rpm)"),
            "{}",
            e.message
        );
        // Another group has its own counter.
        let r = h.call(request("a", None, "claude", 1, None)).await.unwrap();
        assert_eq!(num(&r, &REMAINING_REQUESTS), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_limit_is_shared_by_every_group_and_key() {
        let h = Harness::new(settings(
            ScopeLimits::default(),
            ScopeLimits {
                rpm: Some(2),
                tpm: Some(10_000),
            },
        ));
        h.call(request("a", None, "gpt-4o", 1, None)).await.unwrap();
        h.call(request("b", None, "claude", 1, None)).await.unwrap();
        let e = h
            .call(request("c", None, "mistral", 1, None))
            .await
            .unwrap_err();
        assert!(
            e.message.contains(
                "this proxy (global limit) allows 2 requests per minute (rate_limit.global_rpm)"
            ),
            "{}",
            e.message
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_by_one_scope_counts_nothing_in_the_others() {
        let h = Harness::new(settings(rpm(1), ScopeLimits::default()));
        let limits = || key_limits(Some(10), Some(1000));
        h.call(request("k", limits(), "m", 10, Some(10)))
            .await
            .unwrap();
        assert_eq!(h.key_usage("k"), (1, 10));
        assert!(h
            .call(request("k", limits(), "m", 10, Some(10)))
            .await
            .is_err());
        assert_eq!(h.key_usage("k"), (1, 10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_wait_wins_when_several_limits_refuse() {
        let h = Harness::new(settings(rpm(1), rpm(2)));
        h.call(request("k", None, "m", 1, None)).await.unwrap();
        tokio::time::advance(secs(10.0)).await;
        h.call(request("k", None, "other", 1, None)).await.unwrap();
        tokio::time::advance(secs(1.0)).await;
        // Group `other` frees up at 70.25 s, the global window at 60.25 s.
        let e = h
            .call(request("k", None, "other", 1, None))
            .await
            .unwrap_err();
        assert_eq!(e.retry_after_secs, Some(60));
        assert!(e.message.contains("model group `other`"), "{}", e.message);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_report_the_tightest_limit_of_each_kind() {
        let h = Harness::new(settings(
            rpm(4),
            ScopeLimits {
                rpm: Some(100),
                tpm: Some(300),
            },
        ));
        let r = h
            .call(request(
                "k",
                key_limits(Some(10), Some(1000)),
                "m",
                10,
                Some(40),
            ))
            .await
            .unwrap();
        // Requests: key 9/10, group 3/4, global 99/100 → the group.
        assert_eq!(header(&r, &LIMIT_REQUESTS).as_deref(), Some("4"));
        assert_eq!(header(&r, &REMAINING_REQUESTS).as_deref(), Some("3"));
        assert_eq!(header(&r, &RESET_REQUESTS).as_deref(), Some("1m0.25s"));
        // Tokens: key 950/1000, global 250/300 → global.
        assert_eq!(header(&r, &LIMIT_TOKENS).as_deref(), Some("300"));
        assert_eq!(header(&r, &REMAINING_TOKENS).as_deref(), Some("250"));
        assert_eq!(header(&r, &RESET_TOKENS).as_deref(), Some("1m0.25s"));
    }

    #[tokio::test(start_paused = true)]
    async fn no_applicable_limit_means_no_headers() {
        // Only key limits configured; this caller (the master key, say) has none.
        let h = Harness::new(RateLimitSettings::default());
        let r = h
            .call(request("master", None, "m", 10, None))
            .await
            .unwrap();
        for name in [
            &LIMIT_REQUESTS,
            &REMAINING_REQUESTS,
            &RESET_REQUESTS,
            &LIMIT_TOKENS,
            &REMAINING_TOKENS,
            &RESET_TOKENS,
        ] {
            assert!(r.headers().get(name).is_none(), "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counters_are_swept_when_the_table_grows() {
        let store = MemoryRateLimitStore::new();
        let now = Instant::now();
        for i in 0..SWEEP_MIN {
            let id = format!("model-{i}");
            let plan = Plan {
                scopes: [
                    None,
                    Some(Scope {
                        kind: ScopeKind::Model,
                        id: &id,
                        limits: rpm(5),
                    }),
                    None,
                ],
                tokens: 0,
            };
            store.acquire_now(&plan, now).unwrap();
        }
        assert_eq!(store.models.len(), SWEEP_MIN);
        let later = now + secs(61.0);
        let plan = Plan {
            scopes: [
                None,
                Some(Scope {
                    kind: ScopeKind::Model,
                    id: "fresh",
                    limits: rpm(5),
                }),
                None,
            ],
            tokens: 0,
        };
        store.acquire_now(&plan, later).unwrap();
        assert_eq!(store.models.len(), 1);
    }

    fn config(v: serde_json::Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn from_config_builds_only_when_some_limit_is_set() {
        assert!(RateLimitLayer::from_config(&Config::default())
            .unwrap()
            .is_none());
        assert!(
            RateLimitLayer::from_config(&config(json!({"rate_limit": {}})))
                .unwrap()
                .is_none()
        );
        let c = config(json!({"rate_limit": {"rpm": 5, "global_tpm": 100}}));
        let l = RateLimitLayer::from_config(&c).unwrap().unwrap();
        assert_eq!(l.shared.settings.model, rpm(5));
        assert_eq!(l.shared.settings.global, tpm(100));
        let c = config(json!({"keys": [{"key": "sk-a", "tpm": 7}]}));
        assert!(RateLimitLayer::from_config(&c).unwrap().is_some());
    }

    #[test]
    fn from_config_rejects_zero_limits_naming_the_field() {
        let e = RateLimitLayer::from_config(&config(json!({"rate_limit": {"global_rpm": 0}})))
            .unwrap_err();
        assert_eq!(e, "`rate_limit.global_rpm` must be at least 1");
        let e = RateLimitLayer::from_config(&config(
            json!({"keys": [{"key": "a"}, {"key": "b", "rpm": 0}]}),
        ))
        .unwrap_err();
        assert_eq!(e, "`keys[1].rpm` must be at least 1");
    }
}
