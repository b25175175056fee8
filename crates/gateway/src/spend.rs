//! Spend records: one per finished request, written off the hot path.
//!
//! A request's settlement hook builds a [`SpendRecord`] and hands it to
//! [`SpendLog::record`], which only does a non-blocking `try_send` on a bounded
//! channel. One writer task, started with the log at startup, drains the
//! channel in batches into every [`SpendSink`]. When the channel is full the
//! record is dropped and counted ([`SpendSummary::dropped`]): a slow sink never
//! slows or blocks a request.
//!
//! The log always keeps a [`MemorySpendSink`] (the last N records and running
//! totals per key and per model group), which is what [`SpendLog::recent`] and
//! [`SpendLog::totals`] read. Durable sinks (PostgreSQL, in a later issue)
//! are passed to [`SpendLog::start`] and receive the same batches.

use crate::pipeline::{ChatRequest, Outcome};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// What one finished request used and cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRecord {
    pub request_id: String,
    /// When the request finished (its last byte, for a stream), Unix milliseconds.
    pub unix_ms: u64,
    /// The caller's non-secret key id (`master`, `anonymous` or a digest prefix).
    #[serde(serialize_with = "ser_arc_str")]
    pub key_id: Arc<str>,
    /// The client-facing model name (group) the request asked for.
    pub model_group: String,
    pub deployment_id: Option<String>,
    pub provider: Option<&'static str>,
    pub upstream_model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    /// Answered from the proxy's response cache.
    pub cached: bool,
    pub status: u16,
    /// `false` when a stream was cut short.
    pub completed: bool,
}

fn ser_arc_str<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

impl SpendRecord {
    /// The record for a request that asked for `model_group` and ended as `outcome`.
    pub fn new(
        request_id: String,
        key_id: Arc<str>,
        model_group: String,
        outcome: &Outcome,
    ) -> SpendRecord {
        let u = outcome.usage.unwrap_or_default();
        SpendRecord {
            request_id,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            key_id,
            model_group,
            deployment_id: outcome.deployment_id.clone(),
            provider: outcome.provider,
            upstream_model: outcome.upstream_model.clone(),
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.cached_tokens,
            cache_write_tokens: u.cache_write_tokens,
            reasoning_tokens: u.reasoning_tokens,
            cost_usd: if outcome.cost_usd.is_finite() {
                outcome.cost_usd
            } else {
                0.0
            },
            cached: outcome.cached,
            status: outcome.status,
            completed: outcome.completed,
        }
    }
}

/// Where batches of spend records go. Implementations are called from the one
/// writer task, never from a request.
pub trait SpendSink: Send + Sync + 'static {
    /// Store a batch, in order. An error is logged and the batch is not retried.
    fn write<'a>(
        &'a self,
        batch: &'a [SpendRecord],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Running totals for one key, one model group, or everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SpendTotals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

impl SpendTotals {
    fn add(&mut self, r: &SpendRecord) {
        self.requests += 1;
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.cost_usd += r.cost_usd;
    }
}

/// Totals since startup (not only the records still in the ring).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpendSummary {
    pub overall: SpendTotals,
    pub by_key: BTreeMap<String, SpendTotals>,
    pub by_model: BTreeMap<String, SpendTotals>,
    /// Records dropped because the channel was full (or no writer was running).
    pub dropped: u64,
}

/// Keys beyond this many distinct names are counted under [`OTHER`], so a
/// client inventing model names cannot grow the totals without bound.
const MAX_NAMES: usize = 10_000;
const OTHER: &str = "(other)";

#[derive(Default)]
struct Memory {
    ring: VecDeque<SpendRecord>,
    overall: SpendTotals,
    by_key: HashMap<Arc<str>, SpendTotals>,
    by_model: HashMap<String, SpendTotals>,
}

/// The last `capacity` records and running totals, in memory.
pub struct MemorySpendSink {
    capacity: usize,
    inner: Mutex<Memory>,
}

impl MemorySpendSink {
    pub fn new(capacity: usize) -> MemorySpendSink {
        MemorySpendSink {
            capacity,
            inner: Mutex::new(Memory::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add records (the sink's work, also usable without the writer task).
    pub fn push(&self, batch: &[SpendRecord]) {
        let mut m = self.lock();
        for r in batch {
            m.overall.add(r);
            let m = &mut *m;
            if let Some(t) = m.by_key.get_mut(&r.key_id) {
                t.add(r);
            } else {
                let k: Arc<str> = if m.by_key.len() < MAX_NAMES {
                    r.key_id.clone()
                } else {
                    Arc::from(OTHER)
                };
                m.by_key.entry(k).or_default().add(r);
            }
            if let Some(t) = m.by_model.get_mut(&r.model_group) {
                t.add(r);
            } else {
                let k = if m.by_model.len() < MAX_NAMES {
                    r.model_group.clone()
                } else {
                    OTHER.to_string()
                };
                m.by_model.entry(k).or_default().add(r);
            }
            if self.capacity > 0 {
                if m.ring.len() == self.capacity {
                    m.ring.pop_front();
                }
                m.ring.push_back(r.clone());
            }
        }
    }

    /// The latest `n` records, newest first.
    pub fn recent(&self, n: usize) -> Vec<SpendRecord> {
        self.lock().ring.iter().rev().take(n).cloned().collect()
    }

    /// Running totals (`dropped` is left 0: the log fills it in).
    pub fn totals(&self) -> SpendSummary {
        let m = self.lock();
        SpendSummary {
            overall: m.overall,
            by_key: m.by_key.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            by_model: m.by_model.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            dropped: 0,
        }
    }
}

impl SpendSink for MemorySpendSink {
    fn write<'a>(
        &'a self,
        batch: &'a [SpendRecord],
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        self.push(batch);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Sizes of the spend log.
#[derive(Debug, Clone, Copy)]
pub struct SpendOptions {
    /// Records that may wait for the writer; more are dropped and counted.
    pub channel_capacity: usize,
    /// Records the in-memory sink keeps for [`SpendLog::recent`].
    pub keep_recent: usize,
    /// Records handed to the sinks at once, at most.
    pub max_batch: usize,
}

impl Default for SpendOptions {
    fn default() -> Self {
        SpendOptions {
            channel_capacity: 4096,
            keep_recent: 1000,
            max_batch: 256,
        }
    }
}

enum Msg {
    Record(SpendRecord),
    Flush(oneshot::Sender<()>),
}

/// The per-process spend log: a channel to one writer task.
pub struct SpendLog {
    tx: mpsc::Sender<Msg>,
    memory: Arc<MemorySpendSink>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for SpendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendLog")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SpendLog {
    /// Create the log and start its writer task on the current tokio runtime.
    /// Call it once at startup, inside the runtime. Outside a runtime (e.g.
    /// `config check`) no writer runs and every record counts as dropped. The
    /// writer ends when the log is dropped.
    pub fn start(options: SpendOptions, sinks: Vec<Arc<dyn SpendSink>>) -> Arc<SpendLog> {
        let (tx, rx) = mpsc::channel(options.channel_capacity.max(1));
        let memory = Arc::new(MemorySpendSink::new(options.keep_recent));
        let mut all: Vec<Arc<dyn SpendSink>> = vec![memory.clone()];
        all.extend(sinks);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(writer(rx, all, options.max_batch.max(1)));
            }
            Err(_) => tracing::debug!("no async runtime: spend records will not be written"),
        }
        Arc::new(SpendLog {
            tx,
            memory,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queue a record; never waits. A full channel drops the record and counts it.
    pub fn record(&self, rec: SpendRecord) {
        if self.tx.try_send(Msg::Record(rec)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Register a settlement hook on `req` that records its spend when it finishes.
    pub fn track(self: &Arc<Self>, req: &ChatRequest) {
        let log = self.clone();
        let request_id = req.request_id.clone();
        let key_id = req.caller.key_id.clone();
        let model = req.model.clone();
        req.settlement.on_settle(move |outcome| {
            log.record(SpendRecord::new(request_id, key_id, model, outcome));
        });
    }

    /// The latest `n` written records, newest first.
    pub fn recent(&self, n: usize) -> Vec<SpendRecord> {
        self.memory.recent(n)
    }

    /// Totals of every written record, and the number dropped.
    pub fn totals(&self) -> SpendSummary {
        let mut s = self.memory.totals();
        s.dropped = self.dropped();
        s
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Wait until every record queued before this call has reached the sinks
    /// (for tests and shutdown; returns at once if no writer runs).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// After a batch the writer waits this long before taking the next one, so
/// records arriving meanwhile are taken together. Without the pause the writer
/// was woken for nearly every record: at tens of thousands of requests per
/// second that is a cross-thread wake-up (a system call, often an
/// inter-processor interrupt) per request, for work a batch does at once.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(5);

async fn writer(mut rx: mpsc::Receiver<Msg>, sinks: Vec<Arc<dyn SpendSink>>, max_batch: usize) {
    let mut msgs = Vec::with_capacity(max_batch);
    let mut batch = Vec::with_capacity(max_batch);
    let mut waiting = Vec::new();
    let mut pause = false;
    loop {
        if pause {
            tokio::time::sleep(COALESCE).await;
        }
        let taken = rx.recv_many(&mut msgs, max_batch).await;
        if taken == 0 {
            break;
        }
        // A full batch means more are queued: take them without pausing.
        pause = taken < max_batch;
        for m in msgs.drain(..) {
            match m {
                Msg::Record(r) => batch.push(r),
                Msg::Flush(done) => waiting.push(done),
            }
        }
        if !batch.is_empty() {
            for sink in &sinks {
                if let Err(e) = sink.write(&batch).await {
                    tracing::warn!(error = %e, records = batch.len(), "spend sink failed to store a batch");
                }
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::pipeline::Usage;

    fn rec(key: &str, model: &str, cost: f64) -> SpendRecord {
        let outcome = Outcome {
            status: 200,
            usage: Some(Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                ..Usage::default()
            }),
            cost_usd: cost,
            completed: true,
            ..Outcome::default()
        };
        SpendRecord::new("req".into(), Arc::from(key), model.into(), &outcome)
    }

    #[tokio::test]
    async fn records_reach_the_memory_sink_with_totals_per_key_and_model() {
        let log = SpendLog::start(SpendOptions::default(), Vec::new());
        log.record(rec("k1", "gpt-4o", 0.5));
        log.record(rec("k1", "mini", 0.25));
        log.record(rec("k2", "gpt-4o", 1.0));
        log.flush().await;
        let t = log.totals();
        assert_eq!(t.overall.requests, 3);
        assert_eq!(t.overall.cost_usd, 1.75);
        assert_eq!(t.overall.prompt_tokens, 30);
        assert_eq!(t.by_key["k1"].cost_usd, 0.75);
        assert_eq!(t.by_key["k2"].requests, 1);
        assert_eq!(t.by_model["gpt-4o"].cost_usd, 1.5);
        assert_eq!(t.dropped, 0);
        let recent = log.recent(2);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].key_id.as_ref(), "k2", "newest first");
        assert_eq!(recent[1].model_group, "mini");
    }

    #[tokio::test]
    async fn the_ring_keeps_only_the_last_records_but_totals_keep_everything() {
        let log = SpendLog::start(
            SpendOptions {
                keep_recent: 3,
                ..SpendOptions::default()
            },
            Vec::new(),
        );
        for i in 0..10 {
            log.record(rec("k", &format!("m{i}"), 1.0));
        }
        log.flush().await;
        let r = log.recent(100);
        assert_eq!(
            r.iter().map(|r| r.model_group.as_str()).collect::<Vec<_>>(),
            ["m9", "m8", "m7"]
        );
        assert_eq!(log.totals().overall.requests, 10);
    }

    struct Stuck(tokio::sync::Semaphore);

    impl SpendSink for Stuck {
        fn write<'a>(
            &'a self,
            _batch: &'a [SpendRecord],
        ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
            Box::pin(async move {
                let _p = self.0.acquire().await;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_full_channel_drops_and_counts_instead_of_blocking() {
        let stuck = Arc::new(Stuck(tokio::sync::Semaphore::new(0)));
        let log = SpendLog::start(
            SpendOptions {
                channel_capacity: 4,
                keep_recent: 100,
                max_batch: 1,
            },
            vec![stuck.clone()],
        );
        // The writer takes one record and hangs in the stuck sink; 4 more fill
        // the channel; the rest are dropped. `record` never waits.
        log.record(rec("k", "m", 1.0));
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for _ in 0..20 {
            log.record(rec("k", "m", 1.0));
        }
        assert_eq!(log.dropped(), 16);
        stuck.0.add_permits(1000);
        log.flush().await;
        let t = log.totals();
        assert_eq!(t.overall.requests, 5);
        assert_eq!(t.dropped, 16);
    }

    #[test]
    fn without_a_runtime_records_are_dropped_not_blocked() {
        let log = SpendLog::start(SpendOptions::default(), Vec::new());
        log.record(rec("k", "m", 1.0));
        assert_eq!(log.dropped(), 1);
    }

    #[tokio::test]
    async fn track_records_a_stream_when_it_settles() {
        let log = SpendLog::start(SpendOptions::default(), Vec::new());
        let settlement = crate::pipeline::Settlement::new();
        let req = ChatRequest {
            endpoint: crate::pipeline::Endpoint::ChatCompletions,
            body_format: Default::default(),
            expects_json: true,
            body: bytes::Bytes::new(),
            model: "gpt-4o".into(),
            model_span: (0, 0),
            stream: true,
            include_usage: false,
            max_tokens: None,
            caller: crate::pipeline::Caller {
                key_id: Arc::from("key-1"),
                limits: None,
            },
            request_id: "r-1".into(),
            deadline: tokio::time::Instant::now(),
            cache: Default::default(),
            estimated_prompt_tokens: 1,
            settlement: settlement.clone(),
        };
        log.track(&req);
        log.flush().await;
        assert!(log.recent(10).is_empty(), "nothing before the stream ends");
        settlement.update(|o| {
            o.status = 200;
            o.usage = Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 8,
                ..Usage::default()
            });
            o.cost_usd = 0.25;
            o.completed = true;
            o.provider = Some("openai");
        });
        settlement.settle();
        log.flush().await;
        let r = log.recent(10);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].request_id, "r-1");
        assert_eq!(r[0].key_id.as_ref(), "key-1");
        assert_eq!(r[0].completion_tokens, 8);
        assert_eq!(r[0].cost_usd, 0.25);
        assert_eq!(r[0].provider, Some("openai"));
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(json["key_id"], "key-1");
    }
}
