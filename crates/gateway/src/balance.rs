//! Choosing a deployment: strategies, cooldown and health.
//!
//! Each deployment carries a little runtime state (in-flight count, latency
//! average, recent failures, cooldown deadline, probe health). Reads on the hot
//! path are atomics; the failure log takes a short mutex only when a request fails.

use crate::layers::ratelimit::SlidingWindow;
use crate::router::Deployment;
use liter_llm_config::Strategy;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Milliseconds since the process's first use of this clock; fits in an atomic.
fn now_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// The longest cooldown an upstream's `Retry-After` can impose.
pub const MAX_HINTED_COOLDOWN: Duration = Duration::from_secs(300);

/// How failures turn into cooldown.
#[derive(Debug, Clone, Copy)]
pub struct CooldownPolicy {
    pub enabled: bool,
    pub duration: Duration,
    pub allowed_fails: u32,
    pub window: Duration,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            enabled: true,
            duration: Duration::from_secs(30),
            allowed_fails: 3,
            window: Duration::from_secs(60),
        }
    }
}

/// Result of the last health probe.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub healthy: bool,
    pub checked_unix: u64,
    pub latency_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct DeploymentState {
    in_flight: AtomicU64,
    /// Exponentially weighted time to first byte, microseconds; 0 = no sample yet.
    ewma_ttfb_us: AtomicU64,
    /// `now_ms()` until which the deployment rests; 0 = not cooling.
    cooldown_until_ms: AtomicU64,
    /// A half-open probe request is in flight after a cooldown.
    probing: AtomicBool,
    failures: Mutex<VecDeque<Instant>>,
    /// Set by health probes; `true` until a probe says otherwise.
    unhealthy: AtomicBool,
    probe: Mutex<Option<ProbeReport>>,
    /// The deployment's own rpm/tpm, when its entry sets them.
    windows: Option<Mutex<Windows>>,
}

#[derive(Debug)]
struct Windows {
    rpm: Option<SlidingWindow>,
    tpm: Option<SlidingWindow>,
}

/// Decrements the in-flight count when the request is over (for a stream, when
/// the stream ends).
pub struct InFlight(Arc<Deployment>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DeploymentState {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn ewma_ttfb(&self) -> Option<Duration> {
        match self.ewma_ttfb_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Remaining cooldown, if cooling.
    pub fn cooldown_remaining(&self) -> Option<Duration> {
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        let now = now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    pub fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
    }

    pub fn probe_report(&self) -> Option<ProbeReport> {
        self.probe.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_probe(&self, report: ProbeReport) {
        self.unhealthy.store(!report.healthy, Ordering::Relaxed);
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }

    /// May this deployment take a request now? After a cooldown has expired,
    /// exactly one request (the half-open probe) is let through until it reports.
    fn admit(&self) -> bool {
        if !self.is_healthy() {
            return false;
        }
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        let open = until == 0
            || (until <= now_ms()
                && self
                    .probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok());
        open && self.take_capacity()
    }

    /// Count one request against the deployment's own rpm, if it has room for
    /// it under its rpm and tpm (tokens are counted when the answer is in).
    fn take_capacity(&self) -> bool {
        let Some(windows) = &self.windows else {
            return true;
        };
        let mut w = windows.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let tokens_ok = w.tpm.as_mut().is_none_or(|t| t.check_headroom(now).is_ok());
        let requests_ok = w.rpm.as_mut().is_none_or(|r| r.check(now, 1).is_ok());
        if !(tokens_ok && requests_ok) {
            drop(w);
            // A half-open probe that found no room gives its turn back.
            self.probing.store(false, Ordering::Release);
            return false;
        }
        if let Some(r) = w.rpm.as_mut() {
            r.record(now, 1);
        }
        true
    }

    /// Time until this deployment's own limits admit a request again, if they are full.
    pub fn limit_wait(&self) -> Option<Duration> {
        let windows = self.windows.as_ref()?;
        let mut w = windows.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let rpm = w
            .rpm
            .as_mut()
            .and_then(|r| r.check(now, 1).err())
            .map(|e| e.0);
        let tpm = w
            .tpm
            .as_mut()
            .and_then(|t| t.check_headroom(now).err())
            .map(|e| e.0);
        rpm.into_iter().chain(tpm).max()
    }

    /// Count tokens the deployment served against its own tpm.
    pub fn record_tokens(&self, tokens: u64) {
        if let Some(windows) = &self.windows {
            let mut w = windows.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = w.tpm.as_mut() {
                t.record(tokio::time::Instant::now(), tokens);
            }
        }
    }

    /// A deployment with its own `rpm` / `tpm` (from its `[[models]]` entry).
    pub fn with_limits(rpm: Option<u64>, tpm: Option<u64>) -> DeploymentState {
        let now = tokio::time::Instant::now();
        let windows = (rpm.is_some() || tpm.is_some()).then(|| {
            Mutex::new(Windows {
                rpm: rpm.map(|l| SlidingWindow::new(l, now)),
                tpm: tpm.map(|l| SlidingWindow::new(l, now)),
            })
        });
        DeploymentState {
            windows,
            ..DeploymentState::default()
        }
    }

    pub fn record_success(&self, ttfb: Duration) {
        let sample = ttfb.as_micros().max(1) as u64;
        let old = self.ewma_ttfb_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 4 + sample) / 5
        };
        self.ewma_ttfb_us.store(new.max(1), Ordering::Relaxed);
        if self.cooldown_until_ms.load(Ordering::Relaxed) != 0 {
            // The half-open probe succeeded: the deployment is back.
            self.cooldown_until_ms.store(0, Ordering::Relaxed);
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
        self.probing.store(false, Ordering::Release);
    }

    /// Count a retryable failure. `retry_after` (from a 429/503) sets the
    /// cooldown directly; otherwise `allowed_fails` within the window does.
    /// Returns whether the deployment is now cooling.
    pub fn record_failure(&self, policy: &CooldownPolicy, retry_after: Option<Duration>) -> bool {
        if !policy.enabled {
            return false;
        }
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        let cool_for = match retry_after {
            // A provider's hint is trusted only so far: a day-long (or absurd)
            // Retry-After would bench the deployment with no way back but a
            // restart, so after the cap a half-open probe asks again.
            Some(d) => Some(d.min(MAX_HINTED_COOLDOWN)),
            None if was_probe => Some(policy.duration),
            None => {
                let now = Instant::now();
                let mut log = self.failures.lock().unwrap_or_else(|p| p.into_inner());
                while log
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > policy.window)
                {
                    log.pop_front();
                }
                log.push_back(now);
                (log.len() as u32 >= policy.allowed_fails).then_some(policy.duration)
            }
        };
        match cool_for {
            Some(d) => {
                let for_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
                self.cooldown_until_ms
                    .store(now_ms().saturating_add(for_ms), Ordering::Relaxed);
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                true
            }
            None => false,
        }
    }
}

/// Why nothing could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Every deployment is cooling; the shortest remaining cooldown.
    Cooling(Duration),
    /// Every deployment failed its health probe.
    Unhealthy,
    /// Every deployment is at its own rpm/tpm; the shortest wait.
    AtCapacity(Duration),
}

/// Pick a deployment among `candidates` not yet tried in this request. When all
/// have been tried, tried ones are eligible again (retries cycle the group).
pub fn pick(
    strategy: Strategy,
    candidates: &[Arc<Deployment>],
    tried: &[usize],
    rr_counter: &AtomicU64,
    cost_of: &dyn Fn(&Deployment) -> f64,
) -> Result<(usize, InFlight), Unavailable> {
    // The common single-deployment group needs no ordering and no allocation.
    if candidates.len() == 1 {
        return admit_first(candidates, std::iter::once(0));
    }
    let order = strategy_order(strategy, candidates, tried, rr_counter, cost_of);
    admit_first(candidates, order)
}

/// Candidates in the order the strategy prefers; already-tried ones last.
fn strategy_order(
    strategy: Strategy,
    candidates: &[Arc<Deployment>],
    tried: &[usize],
    rr_counter: &AtomicU64,
    cost_of: &dyn Fn(&Deployment) -> f64,
) -> Vec<usize> {
    let untried: Vec<usize> = (0..candidates.len())
        .filter(|i| !tried.contains(i))
        .collect();
    let pool: Vec<usize> = if untried.is_empty() {
        (0..candidates.len()).collect()
    } else {
        untried
    };
    let mut order: Vec<usize> = match strategy {
        Strategy::RoundRobin => {
            let start = rr_counter.fetch_add(1, Ordering::Relaxed) as usize;
            (0..pool.len())
                .map(|k| pool[(start + k) % pool.len()])
                .collect()
        }
        Strategy::Weighted => weighted_order(candidates, &pool),
        Strategy::LeastInFlight => sorted_by(
            &pool,
            |i| candidates[i].state.in_flight() as f64,
            rr_counter,
        ),
        Strategy::LowestLatency => sorted_by(
            &pool,
            // Unmeasured deployments go first so every one gets sampled.
            |i| {
                candidates[i]
                    .state
                    .ewma_ttfb()
                    .map_or(0.0, |d| d.as_secs_f64())
            },
            rr_counter,
        ),
        Strategy::LowestCost => sorted_by(&pool, |i| cost_of(&candidates[i]), rr_counter),
    };
    // Anything outside the pool (already tried) is a last resort.
    let rest: Vec<usize> = (0..candidates.len())
        .filter(|i| !order.contains(i))
        .collect();
    order.extend(rest);
    order
}

/// The first deployment in `order` that admits the request, or why none did.
fn admit_first(
    candidates: &[Arc<Deployment>],
    order: impl IntoIterator<Item = usize>,
) -> Result<(usize, InFlight), Unavailable> {
    for i in order {
        let d = &candidates[i];
        if d.state.admit() {
            d.state.in_flight.fetch_add(1, Ordering::Relaxed);
            return Ok((i, InFlight(d.clone())));
        }
    }
    let shortest = candidates
        .iter()
        .filter_map(|d| d.state.cooldown_remaining())
        .min();
    let full = candidates.iter().filter_map(|d| d.state.limit_wait()).min();
    if let (None, Some(wait)) = (shortest, full) {
        return Err(Unavailable::AtCapacity(wait));
    }
    match shortest {
        Some(d) => Err(Unavailable::Cooling(d)),
        None if candidates.iter().all(|d| !d.state.is_healthy()) => Err(Unavailable::Unhealthy),
        // A half-open probe is already in flight for every cooled deployment.
        None => Err(Unavailable::Cooling(Duration::from_secs(1))),
    }
}

/// Ties broken by rotating the start, so equal deployments share load.
fn sorted_by(pool: &[usize], key: impl Fn(usize) -> f64, rr: &AtomicU64) -> Vec<usize> {
    let start = rr.fetch_add(1, Ordering::Relaxed) as usize;
    let mut rotated: Vec<usize> = (0..pool.len())
        .map(|k| pool[(start + k) % pool.len()])
        .collect();
    rotated.sort_by(|a, b| key(*a).total_cmp(&key(*b)));
    rotated
}

fn weighted_order(candidates: &[Arc<Deployment>], pool: &[usize]) -> Vec<usize> {
    let mut remaining: Vec<usize> = pool.to_vec();
    let mut order = Vec::with_capacity(pool.len());
    while !remaining.is_empty() {
        let total: u64 = remaining
            .iter()
            .map(|i| u64::from(candidates[*i].weight))
            .sum();
        let mut roll = if total == 0 {
            0
        } else {
            fastrand::u64(0..total)
        };
        let mut chosen = 0;
        for (k, i) in remaining.iter().enumerate() {
            let w = u64::from(candidates[*i].weight);
            if roll < w {
                chosen = k;
                break;
            }
            roll -= w;
        }
        order.push(remaining.remove(chosen));
    }
    order
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_retry_after_cools_for_the_cap_not_forever() {
        let state = DeploymentState::default();
        let policy = CooldownPolicy::default();
        assert!(state.record_failure(&policy, Some(Duration::from_secs(u64::MAX / 2))));
        let left = state.cooldown_remaining().unwrap();
        assert!(left <= MAX_HINTED_COOLDOWN, "{left:?}");
        assert!(
            left > MAX_HINTED_COOLDOWN - Duration::from_secs(5),
            "{left:?}"
        );
    }
}
