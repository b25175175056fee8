//! Settlement: what a request finally cost, reported once, after the last byte.
//!
//! Layers register hooks on the way in (a rate limiter's token true-up, a
//! budget's reservation release, a span's end). The core fills in the outcome and
//! settles: at once for a JSON answer, when the stream ends (or the client
//! leaves) for a stream. Hooks run exactly once, in registration order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Token usage as OpenAI reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// How a request ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: u16,
    pub usage: Option<Usage>,
    /// USD, from the price table; 0 when the price is unknown or the answer was cached.
    pub cost_usd: f64,
    /// `false` when a stream was cut (client left, upstream failed, timeout).
    pub completed: bool,
    pub cached: bool,
    /// The deployment that answered, `<name>#<index>`.
    pub deployment_id: Option<String>,
    pub provider: Option<&'static str>,
    pub upstream_model: Option<String>,
    /// The model the upstream reported in its answer.
    pub response_model: Option<String>,
    pub finish_reasons: Vec<String>,
    /// OpenAI error type, when the request failed.
    pub error_type: Option<String>,
    pub attempts: u32,
    /// Why a fallback was used, e.g. `gpt-4o: 503 from gpt-4o#0`.
    pub fallback_reason: Option<String>,
    pub time_to_first_byte: Option<Duration>,
    /// Time spent waiting on upstreams, retries and backoff included (to the
    /// response headers for streams; to the end of the body for JSON answers).
    pub upstream_wait: Duration,
}

type Hook = Box<dyn FnOnce(&Outcome) + Send>;

#[derive(Default)]
struct State {
    outcome: Outcome,
    hooks: Vec<Hook>,
    settled: bool,
}

/// Shared between the layers and the response body of one request.
#[derive(Default, Clone)]
pub struct Settlement {
    inner: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Settlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settlement").finish_non_exhaustive()
    }
}

impl Settlement {
    pub fn new() -> Settlement {
        Settlement::default()
    }

    /// Run `hook` at settlement, or now if the request has already settled.
    pub fn on_settle(&self, hook: impl FnOnce(&Outcome) + Send + 'static) {
        let mut state = self.lock();
        if state.settled {
            let outcome = state.outcome.clone();
            drop(state);
            hook(&outcome);
        } else {
            state.hooks.push(Box::new(hook));
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Outcome)) {
        f(&mut self.lock().outcome);
    }

    pub fn outcome(&self) -> Outcome {
        self.lock().outcome.clone()
    }

    pub fn upstream_wait(&self) -> Duration {
        self.lock().outcome.upstream_wait
    }

    pub fn is_settled(&self) -> bool {
        self.lock().settled
    }

    /// Run every hook once; later calls do nothing. Hooks run outside the lock so
    /// they may read the settlement themselves.
    pub fn settle(&self) {
        let (hooks, outcome) = {
            let mut state = self.lock();
            if state.settled {
                return;
            }
            state.settled = true;
            if state.hooks.is_empty() {
                // Nothing to tell (no layer is configured): skip copying the outcome.
                return;
            }
            (std::mem::take(&mut state.hooks), state.outcome.clone())
        };
        for hook in hooks {
            hook(&outcome);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A hook that panicked poisons nothing we rely on: the state is plain data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn hooks_run_once_in_order_with_the_final_outcome() {
        let s = Settlement::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let seen = seen.clone();
            s.on_settle(move |o| {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, o.status))
            });
        }
        s.update(|o| o.status = 200);
        s.settle();
        s.settle();
        assert_eq!(
            *seen.lock().unwrap_or_else(|p| p.into_inner()),
            vec![(0, 200), (1, 200), (2, 200)]
        );
    }

    #[test]
    fn late_hook_runs_immediately() {
        let s = Settlement::new();
        s.settle();
        let n = Arc::new(AtomicU32::new(0));
        let n2 = n.clone();
        s.on_settle(move |_| {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
