//! Exact-match response cache (`[cache]`).
//!
//! The key is a SHA-256 over an endpoint tag, the scope (the caller's key id, or
//! nothing when `scope = "shared"`), the model group and the request body in a
//! canonical form: parsed, object keys sorted at every depth, no whitespace, and
//! without `user`, `stream` and `stream_options`. Field order, formatting and the
//! end user's id therefore do not split entries, and a streaming request can be
//! answered from an entry a non-streaming request stored.
//!
//! Only complete 2xx JSON answers are stored. Streamed answers pass through
//! unstored (the stream is the client's, byte for byte; a stream request is
//! only ever *answered* from the cache). A streaming request that matches an
//! entry gets the cached `chat.completion` replayed as OpenAI
//! `chat.completion.chunk` frames ending in `data: [DONE]`.
//!
//! On a hit the inner service is not called, so this layer settles the request
//! itself: `cached = true`, the cached usage, `cost_usd = 0`. Every response that
//! passes through carries `x-cache: HIT` or `x-cache: MISS`.
//!
//! Client `Cache-Control` (parsed by the proxy into [`CacheDirectives`]):
//! `no-cache` skips the lookup (the answer may still be stored), `no-store` keeps
//! the answer out of the cache (a stored answer may still be served).
//!
//! [`CacheDirectives`]: crate::pipeline::CacheDirectives

use crate::pipeline::{ChatRequest, ChatResponse, Endpoint, GatewayBody, Usage};
use crate::tap::read_answer;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderName, HeaderValue};
use liter_llm_config::{CacheScope, Config};
use liter_llm_protocol::ApiError;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// `HIT` when the answer came from the cache, `MISS` otherwise.
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
pub static HIT: HeaderValue = HeaderValue::from_static("HIT");
pub static MISS: HeaderValue = HeaderValue::from_static("MISS");

/// The endpoint tag of chat completions in the key. Completions and embeddings
/// will use their own tags through the same key function.
pub const CHAT_COMPLETIONS: &str = "chat.completions";

/// Top-level request fields that do not change the answer.
const IGNORED_FIELDS: [&str; 3] = ["user", "stream", "stream_options"];

/// A cache key: SHA-256 of the canonical request and its scope.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// Lower-case hex, for stores that key by string.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

/// Feeds everything written to it into a hasher, so the canonical form is never
/// materialised.
struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hash_field(h: &mut Sha256, bytes: &[u8]) {
    // Length-prefixed, so no choice of key id or model name can collide with another.
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Write `v` with object keys sorted at every depth and no whitespace. The order
/// is imposed here rather than relied on from `serde_json::Map`, which keeps
/// insertion order when any crate in the build enables `preserve_order`.
fn write_canonical(w: &mut impl io::Write, v: &Value) -> io::Result<()> {
    match v {
        Value::Object(m) => write_object(w, m, &[]),
        Value::Array(a) => {
            w.write_all(b"[")?;
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                write_canonical(w, item)?;
            }
            w.write_all(b"]")
        }
        scalar => serde_json::to_writer(&mut *w, scalar).map_err(io::Error::from),
    }
}

fn write_object(w: &mut impl io::Write, m: &Map<String, Value>, skip: &[&str]) -> io::Result<()> {
    let mut entries: Vec<(&String, &Value)> = m
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .collect();
    // Stable sort: linear on already sorted input (the default `BTreeMap`).
    entries.sort_by(|a, b| a.0.cmp(b.0));
    w.write_all(b"{")?;
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *w, k).map_err(io::Error::from)?;
        w.write_all(b":")?;
        write_canonical(w, v)?;
    }
    w.write_all(b"}")
}

/// The key of a request body, or `None` when the body is not a JSON object
/// (such a request bypasses the cache).
///
/// `scope` is the caller's key id for per-key entries, `None` for shared ones.
pub fn cache_key(
    endpoint: &str,
    scope: Option<&str>,
    model: &str,
    body: &[u8],
) -> Option<CacheKey> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let mut h = Sha256::new();
    h.update(b"liter-llm/cache/v1");
    hash_field(&mut h, endpoint.as_bytes());
    match scope {
        Some(key_id) => {
            h.update([1u8]);
            hash_field(&mut h, key_id.as_bytes());
        }
        None => h.update([0u8]),
    }
    hash_field(&mut h, model.as_bytes());
    write_object(&mut HashWriter(&mut h), obj, &IGNORED_FIELDS).ok()?;
    Some(CacheKey(h.finalize().into()))
}

/// A stored answer: what is needed to answer again without the upstream.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    /// The `chat.completion` JSON exactly as it was sent to the first client.
    pub body: Bytes,
    pub content_type: HeaderValue,
    pub usage: Option<Usage>,
    pub response_model: Option<String>,
    pub finish_reasons: Vec<String>,
}

impl CachedAnswer {
    /// The answer in `resp`, if it is a complete, successful JSON answer.
    pub fn capture(resp: &ChatResponse) -> Option<CachedAnswer> {
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.body().as_bytes()?;
        // The same reader the core meters JSON answers with; `None` means not JSON.
        let (usage, response_model, finish_reasons) = read_answer(body)?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/json"));
        Some(CachedAnswer {
            body: body.clone(),
            content_type,
            usage,
            response_model,
            finish_reasons,
        })
    }
}

/// Where cached answers live. A store never fails a request: a networked store
/// that cannot be reached reports a miss and drops the write (and logs it).
///
/// The futures are `Send` and borrow only `self` and the key, so a networked
/// store (Redis, in a later issue) can await its I/O; the in-memory store
/// returns ready futures and never allocates for them.
pub trait CacheStore: Send + Sync + 'static {
    /// The live entry for `key` (an expired entry is never returned), marking it
    /// as recently used.
    fn get(&self, key: &CacheKey) -> impl Future<Output = Option<Arc<CachedAnswer>>> + Send;

    /// Store `answer` under `key` for `ttl`, replacing any entry there.
    fn put(
        &self,
        key: CacheKey,
        answer: Arc<CachedAnswer>,
        ttl: Duration,
    ) -> impl Future<Output = ()> + Send;
}

const NIL: usize = usize::MAX;

struct Entry {
    key: CacheKey,
    value: Arc<CachedAnswer>,
    /// `None`: the TTL is too large to represent, so it never expires.
    expires: Option<Instant>,
}

struct Slot {
    entry: Option<Entry>,
    prev: usize,
    next: usize,
}

/// A least-recently-used map: a `HashMap` to slot indices and a doubly linked
/// list threaded through a slab of slots by index (most recent at `head`).
/// Hand-written rather than the `lru` crate to keep the dependency set (and
/// `unsafe` code) unchanged; every operation is O(1).
struct Lru {
    map: HashMap<CacheKey, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    capacity: usize,
}

impl Lru {
    fn new(capacity: usize) -> Lru {
        Lru {
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.max(1),
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next].prev = prev;
        }
        self.slots[i].prev = NIL;
        self.slots[i].next = NIL;
    }

    fn push_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        if self.head != NIL {
            self.slots[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn remove(&mut self, i: usize) {
        self.unlink(i);
        if let Some(entry) = self.slots[i].entry.take() {
            self.map.remove(&entry.key);
        }
        self.free.push(i);
    }

    fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Arc<CachedAnswer>> {
        let i = *self.map.get(key)?;
        let expired = self.slots[i]
            .entry
            .as_ref()
            .is_none_or(|e| e.expires.is_some_and(|t| t <= now));
        if expired {
            self.remove(i);
            return None;
        }
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        self.slots[i].entry.as_ref().map(|e| e.value.clone())
    }

    fn put(&mut self, key: CacheKey, value: Arc<CachedAnswer>, expires: Option<Instant>) {
        if let Some(&i) = self.map.get(&key) {
            self.slots[i].entry = Some(Entry {
                key,
                value,
                expires,
            });
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            return;
        }
        while self.map.len() >= self.capacity && self.tail != NIL {
            self.remove(self.tail);
        }
        let slot = Slot {
            entry: Some(Entry {
                key,
                value,
                expires,
            }),
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.map.insert(key, i);
        self.push_front(i);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The in-memory store: one true LRU behind a `std::sync::Mutex`, held only for
/// the O(1) map and list update (never across an `.await`).
pub struct MemoryCacheStore {
    lru: Mutex<Lru>,
}

impl MemoryCacheStore {
    pub fn new(max_entries: usize) -> MemoryCacheStore {
        MemoryCacheStore {
            lru: Mutex::new(Lru::new(max_entries)),
        }
    }

    /// Entries held, expired ones not yet evicted included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // The LRU's invariants hold between statements that cannot panic.
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CacheStore for MemoryCacheStore {
    fn get(&self, key: &CacheKey) -> impl Future<Output = Option<Arc<CachedAnswer>>> + Send {
        let now = Instant::now();
        std::future::ready(self.lock().get(key, now))
    }

    fn put(
        &self,
        key: CacheKey,
        answer: Arc<CachedAnswer>,
        ttl: Duration,
    ) -> impl Future<Output = ()> + Send {
        let expires = Instant::now().checked_add(ttl);
        self.lock().put(key, answer, expires);
        std::future::ready(())
    }
}

struct Shared<St> {
    store: St,
    ttl: Duration,
    scope: CacheScope,
}

/// The response cache as a tower layer.
pub struct CacheLayer<St: CacheStore = MemoryCacheStore> {
    shared: Arc<Shared<St>>,
}

impl<St: CacheStore> Clone for CacheLayer<St> {
    fn clone(&self) -> Self {
        CacheLayer {
            shared: self.shared.clone(),
        }
    }
}

impl CacheLayer<MemoryCacheStore> {
    /// `Ok(None)` without a `[cache]` section; an error naming the field when the
    /// section is invalid.
    pub fn from_config(config: &Config) -> Result<Option<CacheLayer>, String> {
        let Some(section) = config.cache.as_ref() else {
            return Ok(None);
        };
        if section.max_entries < 1 {
            return Err("`cache.max_entries` must be at least 1".to_string());
        }
        if section.ttl_seconds < 1 {
            return Err("`cache.ttl_seconds` must be at least 1".to_string());
        }
        match section.backend.as_str() {
            "memory" => {}
            "redis" => {
                return Err("cache backend `redis` is not available in this build yet".to_string())
            }
            other => return Err(format!("`cache.backend` must be `memory` (got `{other}`)")),
        }
        if !section.backend_config.is_empty() {
            let fields: Vec<&str> = section.backend_config.keys().map(String::as_str).collect();
            return Err(format!(
                "`cache.backend_config` must be empty for the `memory` backend (found {})",
                fields.join(", ")
            ));
        }
        let max_entries = usize::try_from(section.max_entries).unwrap_or(usize::MAX);
        Ok(Some(CacheLayer::with_store(
            MemoryCacheStore::new(max_entries),
            Duration::from_secs(section.ttl_seconds),
            section.scope,
        )))
    }
}

impl<St: CacheStore> CacheLayer<St> {
    pub fn with_store(store: St, ttl: Duration, scope: CacheScope) -> CacheLayer<St> {
        CacheLayer {
            shared: Arc::new(Shared { store, ttl, scope }),
        }
    }

    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<S, St: CacheStore> Layer<S> for CacheLayer<St> {
    type Service = CacheService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

pub struct CacheService<S, St: CacheStore = MemoryCacheStore> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S: Clone, St: CacheStore> Clone for CacheService<S, St> {
    fn clone(&self) -> Self {
        CacheService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<St: CacheStore> Shared<St> {
    fn key(&self, req: &ChatRequest) -> Option<CacheKey> {
        let scope = match self.scope {
            CacheScope::Key => Some(&*req.caller.key_id),
            CacheScope::Shared => None,
        };
        cache_key(req.endpoint.name(), scope, &req.model, &req.body)
    }
}

impl<S, St> Service<ChatRequest> for CacheService<S, St>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = ApiError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    St: CacheStore,
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
        // A hit on a stream is replayed as chat chunks, which only chat clients expect.
        let lookup =
            !req.cache.no_cache && (!req.stream || req.endpoint == Endpoint::ChatCompletions);
        // Streamed answers are not stored: only complete JSON answers are.
        let may_store = !req.cache.no_store && !req.stream;
        let key = if lookup || may_store {
            shared.key(&req)
        } else {
            None
        };
        Box::pin(async move {
            if let (Some(key), true) = (key, lookup) {
                if let Some(hit) = shared.store.get(&key).await {
                    if let Some(resp) = answer_from_cache(&hit, &req) {
                        return Ok(resp);
                    }
                }
            }
            let mut resp = inner.call(req).await?;
            if let (Some(key), true) = (key, may_store) {
                if let Some(answer) = CachedAnswer::capture(&resp) {
                    shared.store.put(key, Arc::new(answer), shared.ttl).await;
                }
            }
            resp.headers_mut().insert(X_CACHE.clone(), MISS.clone());
            Ok(resp)
        })
    }
}

/// The response for a hit, settled; `None` when the entry cannot answer this
/// request (a stream asked for, but the entry is not a chat completion).
fn answer_from_cache(hit: &CachedAnswer, req: &ChatRequest) -> Option<ChatResponse> {
    let (body, content_type) = if req.stream {
        (
            replay_as_stream(&hit.body, req.include_usage)?,
            HeaderValue::from_static("text/event-stream"),
        )
    } else {
        (hit.body.clone(), hit.content_type.clone())
    };
    let mut resp = http::Response::new(GatewayBody::Full(Some(body)));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, content_type);
    if req.stream {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    h.insert(X_CACHE.clone(), HIT.clone());
    req.settlement.update(|o| {
        o.status = resp.status().as_u16();
        o.usage = hit.usage;
        o.cost_usd = 0.0;
        o.completed = true;
        o.cached = true;
        o.response_model.clone_from(&hit.response_model);
        o.finish_reasons.clone_from(&hit.finish_reasons);
        o.attempts = 0;
    });
    // The inner service is not called, so nobody else will settle this request.
    req.settlement.settle();
    Some(resp)
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a Value,
    object: &'static str,
    created: &'a Value,
    model: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a Value>,
    choices: &'a [ChoiceOut<'a>],
    /// `Some(null)` on every chunk but the last when the client asked for usage,
    /// as OpenAI sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Value>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: &'a Value,
    delta: DeltaOut<'a>,
    logprobs: Option<&'a Value>,
    finish_reason: Option<&'a Value>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a Value>,
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// A cached `chat.completion` as the SSE frames OpenAI would have streamed: per
/// choice a role chunk, a content chunk, refusal / function call / tool call
/// chunks when present, a finish chunk; then the usage chunk when the client
/// asked for it (`stream_options.include_usage`), then `data: [DONE]`.
pub fn replay_as_stream(body: &[u8], include_usage: bool) -> Option<Bytes> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let obj = answer.as_object()?;
    let choices = obj.get("choices")?.as_array()?;
    let null = Value::Null;
    let empty = Value::String(String::new());
    let assistant = Value::String("assistant".to_string());
    let stop = Value::String("stop".to_string());
    let zero = Value::from(0u64);
    let head =
        |choices: &[ChoiceOut<'_>], usage: Option<&Value>, out: &mut Vec<u8>| -> Option<()> {
            let chunk = ChunkOut {
                id: obj.get("id").unwrap_or(&null),
                object: "chat.completion.chunk",
                created: obj.get("created").unwrap_or(&zero),
                model: obj.get("model").unwrap_or(&null),
                service_tier: non_null(obj.get("service_tier")),
                system_fingerprint: non_null(obj.get("system_fingerprint")),
                choices,
                usage,
            };
            out.extend_from_slice(b"data: ");
            serde_json::to_writer(&mut *out, &chunk).ok()?;
            out.extend_from_slice(b"\n\n");
            Some(())
        };
    let pending_usage = include_usage.then_some(&null);
    let mut out = Vec::with_capacity(body.len() * 2 + 512);
    // Tool calls in a message carry no `index`; in a stream every one must.
    let indexed_tools: Vec<Option<Value>> = choices
        .iter()
        .map(|choice| {
            let calls = choice
                .get("message")
                .and_then(|m| m.get("tool_calls"))
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())?;
            let indexed = calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    let mut call = call.clone();
                    if let Some(m) = call.as_object_mut() {
                        m.insert("index".to_string(), Value::from(i as u64));
                    }
                    call
                })
                .collect();
            Some(Value::Array(indexed))
        })
        .collect();
    let positions: Vec<Value> = (0..choices.len()).map(|i| Value::from(i as u64)).collect();
    for (pos, choice) in choices.iter().enumerate() {
        let index = choice.get("index").unwrap_or(&positions[pos]);
        let message = choice.get("message");
        let field = |name: &str| non_null(message.and_then(|m| m.get(name)));
        let content = field("content");
        let frame = |delta: DeltaOut<'_>,
                     logprobs: Option<&Value>,
                     finish: Option<&Value>,
                     out: &mut Vec<u8>| {
            let c = [ChoiceOut {
                index,
                delta,
                logprobs,
                finish_reason: finish,
            }];
            head(&c, pending_usage, out)
        };
        frame(
            DeltaOut {
                role: Some(&assistant),
                content: Some(if content.is_some_and(Value::is_string) {
                    &empty
                } else {
                    &null
                }),
                ..DeltaOut::default()
            },
            None,
            None,
            &mut out,
        )?;
        if let Some(text) = content.filter(|c| c.as_str().is_none_or(|s| !s.is_empty())) {
            let delta = DeltaOut {
                content: Some(text),
                ..DeltaOut::default()
            };
            frame(delta, non_null(choice.get("logprobs")), None, &mut out)?;
        }
        if let Some(refusal) = field("refusal") {
            let delta = DeltaOut {
                refusal: Some(refusal),
                ..DeltaOut::default()
            };
            frame(delta, None, None, &mut out)?;
        }
        if let Some(call) = field("function_call") {
            let delta = DeltaOut {
                function_call: Some(call),
                ..DeltaOut::default()
            };
            frame(delta, None, None, &mut out)?;
        }
        if let Some(tools) = indexed_tools[pos].as_ref() {
            let delta = DeltaOut {
                tool_calls: Some(tools),
                ..DeltaOut::default()
            };
            frame(delta, None, None, &mut out)?;
        }
        let finish = non_null(choice.get("finish_reason")).unwrap_or(&stop);
        frame(DeltaOut::default(), None, Some(finish), &mut out)?;
    }
    if include_usage {
        head(&[], Some(obj.get("usage").unwrap_or(&null)), &mut out)?;
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Some(Bytes::from(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::pipeline::{CacheDirectives, Caller, Settlement};
    use liter_llm_config::CacheSection;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17},"system_fingerprint":"fp_x"}"#;

    const UPSTREAM_STREAM: &[u8] = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

    fn request(body: &str) -> ChatRequest {
        let v: Value = serde_json::from_str(body).unwrap();
        ChatRequest {
            endpoint: crate::pipeline::Endpoint::ChatCompletions,
            body_format: Default::default(),
            expects_json: true,
            body: Bytes::copy_from_slice(body.as_bytes()),
            model: v["model"].as_str().unwrap_or("gpt-4o").to_string(),
            model_span: (0, 0),
            stream: v["stream"] == json!(true),
            include_usage: v["stream_options"]["include_usage"] == json!(true),
            max_tokens: None,
            caller: Caller {
                key_id: Arc::from("key-a"),
                limits: None,
            },
            request_id: "req-1".to_string(),
            deadline: Instant::now() + Duration::from_secs(60),
            cache: CacheDirectives::default(),
            estimated_prompt_tokens: 10,
            settlement: Settlement::new(),
        }
    }

    fn chat(content: &str) -> String {
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).to_string()
    }

    fn stream_chat(content: &str, include_usage: bool) -> String {
        json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": content}],
            "stream": true,
            "stream_options": {"include_usage": include_usage},
        })
        .to_string()
    }

    /// An upstream that counts its calls and answers like the core does: a JSON
    /// answer settled at once, or a stream left for the body to settle.
    fn upstream(
        status: u16,
        answer: &'static str,
    ) -> (
        impl Service<ChatRequest, Response = ChatResponse, Error = ApiError, Future = impl Send>
            + Clone
            + Send,
        Arc<AtomicUsize>,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let svc = tower::service_fn(move |req: ChatRequest| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if req.stream {
                    let frames = Bytes::from_static(UPSTREAM_STREAM);
                    // A live stream's bytes, buffered: `SseRelay` needs the core's
                    // meter, and the cache only looks at `req.stream` anyway.
                    let mut resp = http::Response::new(GatewayBody::Full(Some(frames)));
                    resp.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                    return Ok(resp);
                }
                let mut resp = http::Response::new(GatewayBody::full(answer));
                *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let (usage, model, reasons) = read_answer(answer.as_bytes()).unwrap_or_default();
                req.settlement.update(|o| {
                    o.status = status;
                    o.usage = usage;
                    o.cost_usd = 0.25;
                    o.completed = true;
                    o.response_model = model;
                    o.finish_reasons = reasons;
                    o.attempts = 1;
                });
                req.settlement.settle();
                Ok(resp)
            }
        });
        (svc, calls)
    }

    fn layer(max_entries: usize, ttl_secs: u64, scope: CacheScope) -> CacheLayer {
        CacheLayer::with_store(
            MemoryCacheStore::new(max_entries),
            Duration::from_secs(ttl_secs),
            scope,
        )
    }

    fn x_cache(resp: &ChatResponse) -> &str {
        resp.headers()
            .get(&X_CACHE)
            .and_then(|v| v.to_str().ok())
            .expect("x-cache header")
    }

    fn body(resp: &ChatResponse) -> Bytes {
        resp.body().as_bytes().expect("a buffered body").clone()
    }

    fn key(scope: Option<&str>, model: &str, body: &str) -> CacheKey {
        cache_key(CHAT_COMPLETIONS, scope, model, body.as_bytes()).unwrap()
    }

    #[test]
    fn key_ignores_field_order_whitespace_user_and_stream_fields() {
        let base = key(
            Some("k"),
            "gpt-4o",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
        );
        let reordered = key(
            Some("k"),
            "gpt-4o",
            "{ \"temperature\" : 0.5,\n  \"messages\": [ {\"content\": \"hi\", \"role\": \"user\"} ],\n  \"model\": \"gpt-4o\" }",
        );
        let with_user_and_stream = key(
            Some("k"),
            "gpt-4o",
            r#"{"user":"alice","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o","temperature":0.5}"#,
        );
        assert_eq!(base, reordered);
        assert_eq!(base, with_user_and_stream);
    }

    #[test]
    fn key_differs_by_model_group_scope_endpoint_and_content() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        let base = key(Some("k"), "gpt-4o", body);
        assert_ne!(base, key(Some("k"), "gpt-4o-mini", body), "model group");
        assert_ne!(base, key(Some("other"), "gpt-4o", body), "caller key");
        assert_ne!(base, key(None, "gpt-4o", body), "shared scope");
        let other_endpoint = cache_key("embeddings", Some("k"), "gpt-4o", body.as_bytes()).unwrap();
        assert_ne!(base, other_endpoint, "endpoint tag");
        let other_content = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"ho"}]}"#;
        assert_ne!(base, key(Some("k"), "gpt-4o", other_content), "content");
        // A nested `user` is content, not the end-user id.
        let nested_user =
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi","user":"x"}]}"#;
        assert_ne!(base, key(Some("k"), "gpt-4o", nested_user), "nested user");
        // Scope and model are length-prefixed, so they cannot bleed into each other.
        assert_ne!(key(Some("ab"), "c", body), key(Some("a"), "bc", body));
        assert_eq!(key(Some("k"), "gpt-4o", body).to_hex().len(), 64);
    }

    #[test]
    fn non_object_body_has_no_key() {
        assert!(cache_key(CHAT_COMPLETIONS, None, "m", b"not json").is_none());
        assert!(cache_key(CHAT_COMPLETIONS, None, "m", b"[1,2]").is_none());
    }

    #[tokio::test]
    async fn second_identical_request_is_a_hit_and_inner_is_called_once() {
        let (inner, calls) = upstream(200, ANSWER);
        let svc = layer(8, 60, CacheScope::Key).layer(inner);

        let first = svc.clone().oneshot(request(&chat("hi"))).await.unwrap();
        assert_eq!(x_cache(&first), "MISS");
        assert_eq!(body(&first), ANSWER.as_bytes());

        let hooks = Arc::new(AtomicUsize::new(0));
        let req = request(&chat("hi"));
        let settlement = req.settlement.clone();
        let h = hooks.clone();
        settlement.on_settle(move |o| {
            assert!(o.cached);
            h.fetch_add(1, Ordering::SeqCst);
        });
        let second = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(x_cache(&second), "HIT");
        assert_eq!(
            body(&second),
            ANSWER.as_bytes(),
            "the cached answer is byte-identical"
        );
        assert_eq!(
            second.headers().get(CONTENT_TYPE).unwrap(),
            "application/json"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "upstream called once");

        assert!(settlement.is_settled(), "a hit settles the request itself");
        assert_eq!(hooks.load(Ordering::SeqCst), 1);
        let o = settlement.outcome();
        assert!(o.cached && o.completed);
        assert_eq!(o.status, 200);
        assert_eq!(o.cost_usd, 0.0);
        assert_eq!(o.attempts, 0);
        assert_eq!(
            o.usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 5,
                ..Usage::default()
            })
        );
        assert_eq!(o.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(o.finish_reasons, vec!["stop".to_string()]);
    }

    #[tokio::test]
    async fn reordered_body_with_another_user_hits_the_same_entry() {
        let (inner, calls) = upstream(200, ANSWER);
        let svc = layer(8, 60, CacheScope::Key).layer(inner);
        let a = r#"{"model":"gpt-4o","user":"alice","messages":[{"role":"user","content":"hi"}]}"#;
        let b = "{\"messages\": [{\"content\": \"hi\", \"role\": \"user\"}],\n \"user\": \"bob\", \"model\": \"gpt-4o\"}";
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(a)).await.unwrap()),
            "MISS"
        );
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(b)).await.unwrap()),
            "HIT"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn key_scope_separates_callers_and_shared_scope_does_not() {
        for (scope, expect_b) in [(CacheScope::Key, "MISS"), (CacheScope::Shared, "HIT")] {
            let (inner, calls) = upstream(200, ANSWER);
            let svc = layer(8, 60, scope).layer(inner);
            assert_eq!(
                x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
                "MISS"
            );
            let mut other = request(&chat("hi"));
            other.caller.key_id = Arc::from("key-b");
            assert_eq!(
                x_cache(&svc.clone().oneshot(other).await.unwrap()),
                expect_b,
                "{scope:?}"
            );
            assert_eq!(
                x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
                "HIT"
            );
            let expected_calls = if expect_b == "HIT" { 1 } else { 2 };
            assert_eq!(calls.load(Ordering::SeqCst), expected_calls, "{scope:?}");
        }
    }

    #[tokio::test]
    async fn different_model_group_misses() {
        let (inner, calls) = upstream(200, ANSWER);
        let svc = layer(8, 60, CacheScope::Shared).layer(inner);
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "MISS"
        );
        let mut other = request(&chat("hi"));
        other.model = "gpt-4o-mini".to_string();
        assert_eq!(x_cache(&svc.clone().oneshot(other).await.unwrap()), "MISS");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    fn answer(tag: &str) -> Arc<CachedAnswer> {
        Arc::new(CachedAnswer {
            body: Bytes::from(tag.to_string()),
            content_type: HeaderValue::from_static("application/json"),
            usage: None,
            response_model: None,
            finish_reasons: Vec::new(),
        })
    }

    fn k(n: u8) -> CacheKey {
        CacheKey([n; 32])
    }

    async fn held(store: &MemoryCacheStore, n: u8) -> Option<String> {
        store
            .get(&k(n))
            .await
            .map(|a| String::from_utf8(a.body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn lru_evicts_the_least_recently_used_entry() {
        let ttl = Duration::from_secs(60);
        let store = MemoryCacheStore::new(3);
        for n in 1..=3 {
            store.put(k(n), answer(&n.to_string()), ttl).await;
        }
        // Touch 1, so 2 is now the least recently used.
        assert_eq!(held(&store, 1).await.as_deref(), Some("1"));
        store.put(k(4), answer("4"), ttl).await;
        assert_eq!(store.len(), 3);
        assert_eq!(held(&store, 2).await, None, "2 was least recently used");
        // Order of use now (oldest first): 3, 1, 4.
        store.put(k(5), answer("5"), ttl).await;
        assert_eq!(held(&store, 3).await, None);
        // Replacing an entry refreshes it without growing the cache.
        store.put(k(1), answer("1b"), ttl).await;
        assert_eq!(store.len(), 3);
        store.put(k(6), answer("6"), ttl).await;
        assert_eq!(
            held(&store, 4).await,
            None,
            "4 was oldest after 1 was replaced"
        );
        assert_eq!(held(&store, 1).await.as_deref(), Some("1b"));
        assert_eq!(held(&store, 5).await.as_deref(), Some("5"));
        assert_eq!(held(&store, 6).await.as_deref(), Some("6"));

        let one = MemoryCacheStore::new(1);
        one.put(k(1), answer("1"), ttl).await;
        one.put(k(2), answer("2"), ttl).await;
        assert_eq!(held(&one, 1).await, None);
        assert_eq!(held(&one, 2).await.as_deref(), Some("2"));
        assert_eq!(one.len(), 1);
    }

    #[tokio::test]
    async fn lru_through_the_service_with_two_entries() {
        let (inner, calls) = upstream(200, ANSWER);
        let svc = layer(2, 60, CacheScope::Key).layer(inner);
        let send = |content: &'static str| {
            let svc = svc.clone();
            async move { x_cache(&svc.oneshot(request(&chat(content))).await.unwrap()).to_string() }
        };
        assert_eq!(send("a").await, "MISS");
        assert_eq!(send("b").await, "MISS");
        assert_eq!(send("a").await, "HIT");
        assert_eq!(send("c").await, "MISS"); // evicts b
        assert_eq!(send("a").await, "HIT");
        assert_eq!(send("b").await, "MISS"); // evicts c
        assert_eq!(send("c").await, "MISS");
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_never_served() {
        let (inner, calls) = upstream(200, ANSWER);
        let cache = layer(8, 10, CacheScope::Key);
        let svc = cache.clone().layer(inner);
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "MISS"
        );
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "HIT"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "MISS"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The miss stored a fresh answer with a fresh TTL.
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "HIT"
        );

        // An expired entry is dropped when it is looked up.
        let store = MemoryCacheStore::new(4);
        store.put(k(1), answer("1"), Duration::from_secs(1)).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(held(&store, 1).await, None);
        assert!(store.is_empty());
        // A TTL too large for the clock never expires rather than panicking.
        store.put(k(2), answer("2"), Duration::MAX).await;
        assert_eq!(held(&store, 2).await.as_deref(), Some("2"));
    }

    #[tokio::test]
    async fn no_cache_skips_the_lookup_but_stores_the_answer() {
        let (inner, calls) = upstream(200, ANSWER);
        let svc = layer(8, 60, CacheScope::Key).layer(inner);
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "MISS"
        );
        let mut no_cache = request(&chat("hi"));
        no_cache.cache.no_cache = true;
        assert_eq!(
            x_cache(&svc.clone().oneshot(no_cache).await.unwrap()),
            "MISS"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "no-cache went to the upstream"
        );

        let mut fresh = request(&chat("fresh"));
        fresh.cache.no_cache = true;
        assert_eq!(x_cache(&svc.clone().oneshot(fresh).await.unwrap()), "MISS");
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("fresh"))).await.unwrap()),
            "HIT",
            "a no-cache answer is still stored"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn no_store_answers_are_not_stored_but_may_be_served() {
        let (inner, calls) = upstream(200, ANSWER);
        let svc = layer(8, 60, CacheScope::Key).layer(inner);
        let mut no_store = request(&chat("hi"));
        no_store.cache.no_store = true;
        assert_eq!(
            x_cache(&svc.clone().oneshot(no_store).await.unwrap()),
            "MISS"
        );
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "MISS"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the no-store answer was not stored"
        );
        let mut no_store = request(&chat("hi"));
        no_store.cache.no_store = true;
        assert_eq!(
            x_cache(&svc.clone().oneshot(no_store).await.unwrap()),
            "HIT"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn non_2xx_answers_are_not_stored() {
        const ERROR: &str = r#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#;
        let (inner, calls) = upstream(400, ERROR);
        let svc = layer(8, 60, CacheScope::Key).layer(inner);
        for _ in 0..2 {
            let resp = svc.clone().oneshot(request(&chat("hi"))).await.unwrap();
            assert_eq!(resp.status(), 400);
            assert_eq!(x_cache(&resp), "MISS");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Nor are errors, or 200s that are not JSON.
        let failing = tower::service_fn(|_req: ChatRequest| async {
            Err::<ChatResponse, _>(ApiError::new(
                liter_llm_protocol::ErrorKind::BadGateway,
                "down",
            ))
        });
        let cache = layer(8, 60, CacheScope::Key);
        let err = cache
            .clone()
            .layer(failing)
            .oneshot(request(&chat("hi")))
            .await
            .unwrap_err();
        assert_eq!(err.status(), 502);
        let (garbage, _) = upstream(200, "not json");
        let resp = cache
            .clone()
            .layer(garbage)
            .oneshot(request(&chat("hi")))
            .await
            .unwrap();
        assert_eq!(x_cache(&resp), "MISS");
        assert!(cache.store().is_empty());
    }

    #[tokio::test]
    async fn streamed_answers_pass_through_and_are_not_stored() {
        let (inner, calls) = upstream(200, ANSWER);
        let cache = layer(8, 60, CacheScope::Key);
        let svc = cache.clone().layer(inner);
        let req = request(&stream_chat("hi", true));
        let settlement = req.settlement.clone();
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(x_cache(&resp), "MISS");
        assert_eq!(
            body(&resp).as_ref(),
            UPSTREAM_STREAM,
            "the stream is passed through"
        );
        assert!(
            !settlement.is_settled(),
            "the cache leaves a live stream to the core"
        );
        // The core settles when the stream ends.
        settlement.update(|o| {
            o.status = 200;
            o.completed = true;
            o.usage = Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
                ..Usage::default()
            });
        });
        settlement.settle();
        assert!(cache.store().is_empty());
        let again = svc
            .clone()
            .oneshot(request(&stream_chat("hi", true)))
            .await
            .unwrap();
        assert_eq!(x_cache(&again), "MISS");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// Split SSE frames, check each is an OpenAI chunk, and put the answer back together:
    /// per choice index (role, content, refusal, tool calls as (id, name, arguments), finish reason).
    #[allow(clippy::type_complexity)]
    fn reassemble(
        sse: &[u8],
    ) -> (
        Vec<(
            String,
            String,
            String,
            Vec<(String, String, String)>,
            String,
        )>,
        Option<Value>,
    ) {
        let text = std::str::from_utf8(sse).unwrap();
        assert!(
            text.ends_with("data: [DONE]\n\n"),
            "ends with [DONE]: {text}"
        );
        let events: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(events.last(), Some(&"data: [DONE]"));
        let mut choices: Vec<(
            String,
            String,
            String,
            Vec<(String, String, String)>,
            String,
        )> = Vec::new();
        let mut usage = None;
        for event in &events[..events.len() - 1] {
            let json = event.strip_prefix("data: ").expect("data: prefix");
            assert!(!json.contains('\n'), "one line per event");
            let chunk: Value = serde_json::from_str(json).unwrap();
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert!(
                chunk["id"].is_string() && chunk["created"].is_u64() && chunk["model"].is_string()
            );
            let list = chunk["choices"].as_array().expect("choices array");
            if list.is_empty() {
                assert!(
                    chunk["usage"].is_object(),
                    "a chunk without choices is the usage chunk"
                );
                assert!(usage.is_none(), "one usage chunk");
                usage = Some(chunk["usage"].clone());
                continue;
            }
            assert!(usage.is_none(), "usage comes last");
            for c in list {
                let i = c["index"].as_u64().expect("index") as usize;
                assert!(c["delta"].is_object(), "delta object");
                assert!(c.get("finish_reason").is_some() && c.get("logprobs").is_some());
                if choices.len() <= i {
                    choices.resize_with(i + 1, Default::default);
                }
                let slot = &mut choices[i];
                assert!(slot.4.is_empty(), "nothing after the finish chunk");
                let d = &c["delta"];
                if let Some(r) = d["role"].as_str() {
                    slot.0.push_str(r);
                }
                if let Some(t) = d["content"].as_str() {
                    slot.1.push_str(t);
                }
                if let Some(t) = d["refusal"].as_str() {
                    slot.2.push_str(t);
                }
                for call in d["tool_calls"].as_array().into_iter().flatten() {
                    let ti = call["index"].as_u64().expect("tool call index") as usize;
                    if slot.3.len() <= ti {
                        slot.3.resize_with(ti + 1, Default::default);
                    }
                    let t = &mut slot.3[ti];
                    t.0.push_str(call["id"].as_str().unwrap_or(""));
                    t.1.push_str(call["function"]["name"].as_str().unwrap_or(""));
                    t.2.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
                }
                if let Some(f) = c["finish_reason"].as_str() {
                    slot.4 = f.to_string();
                }
            }
            if let Some(u) = chunk.get("usage") {
                assert!(u.is_null(), "usage is null before the last chunk");
            }
        }
        (choices, usage)
    }

    #[test]
    fn replay_framing_is_valid_openai_chunks_and_reassembles_the_answer() {
        eprintln!(
            "{}",
            String::from_utf8_lossy(&replay_as_stream(ANSWER.as_bytes(), true).unwrap())
        );
        let (choices, usage) = reassemble(&replay_as_stream(ANSWER.as_bytes(), true).unwrap());
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0].0, "assistant");
        assert_eq!(choices[0].1, "Hello there, friend.");
        assert_eq!(choices[0].4, "stop");
        assert_eq!(usage.unwrap()["total_tokens"], 17);

        let plain = replay_as_stream(ANSWER.as_bytes(), false).unwrap();
        let text = std::str::from_utf8(&plain).unwrap();
        assert!(
            !text.contains("\"usage\""),
            "no usage unless asked for: {text}"
        );
        let (choices, usage) = reassemble(&plain);
        assert!(usage.is_none());
        assert_eq!(choices[0].1, "Hello there, friend.");

        // Several choices, tool calls, a refusal, and content with characters to escape.
        let complex = json!({
            "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}
                ]}, "finish_reason": "tool_calls"},
                {"index": 1, "message": {"role": "assistant", "content": "line 1\n\"data: [DONE]\"\n\u{e9}"}, "finish_reason": "length"},
                {"index": 2, "message": {"role": "assistant", "content": null, "refusal": "I can't."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        })
        .to_string();
        let sse = replay_as_stream(complex.as_bytes(), false).unwrap();
        let (choices, _) = reassemble(&sse);
        assert_eq!(choices.len(), 3);
        assert_eq!(choices[0].1, "");
        assert_eq!(
            choices[0].3,
            vec![
                (
                    "call_1".into(),
                    "weather".into(),
                    "{\"city\":\"Paris\"}".into()
                ),
                ("call_2".into(), "time".into(), "{}".into())
            ]
        );
        assert_eq!(choices[0].4, "tool_calls");
        assert_eq!(choices[1].1, "line 1\n\"data: [DONE]\"\n\u{e9}");
        assert_eq!(choices[1].4, "length");
        assert_eq!(choices[2].2, "I can't.");
        assert_eq!(choices[2].4, "stop");

        assert!(
            replay_as_stream(b"{\"error\":{}}", false).is_none(),
            "not a chat completion"
        );
        assert!(replay_as_stream(b"nope", false).is_none());
    }

    #[tokio::test]
    async fn streaming_request_is_replayed_from_a_cached_json_answer() {
        let (inner, calls) = upstream(200, ANSWER);
        let svc = layer(8, 60, CacheScope::Key).layer(inner);
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "MISS"
        );
        for include_usage in [true, false] {
            let req = request(&stream_chat("hi", include_usage));
            let settlement = req.settlement.clone();
            let resp = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(x_cache(&resp), "HIT");
            assert_eq!(
                resp.headers().get(CONTENT_TYPE).unwrap(),
                "text/event-stream"
            );
            let (choices, usage) = reassemble(&body(&resp));
            assert_eq!(choices[0].1, "Hello there, friend.");
            assert_eq!(usage.is_some(), include_usage);
            assert!(settlement.is_settled());
            let o = settlement.outcome();
            assert!(o.cached && o.completed);
            assert_eq!(o.cost_usd, 0.0);
            assert_eq!(o.usage.map(|u| u.total()), Some(17));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn entry_that_cannot_be_replayed_as_a_stream_goes_to_the_upstream() {
        let (inner, calls) = upstream(200, r#"{"object":"list","data":[]}"#);
        let svc = layer(8, 60, CacheScope::Key).layer(inner);
        assert_eq!(
            x_cache(&svc.clone().oneshot(request(&chat("hi"))).await.unwrap()),
            "MISS"
        );
        let resp = svc
            .clone()
            .oneshot(request(&stream_chat("hi", false)))
            .await
            .unwrap();
        assert_eq!(x_cache(&resp), "MISS");
        assert_eq!(body(&resp).as_ref(), UPSTREAM_STREAM);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    fn config(f: impl FnOnce(&mut CacheSection)) -> Config {
        let mut section = CacheSection::default();
        f(&mut section);
        Config {
            cache: Some(section),
            ..Config::default()
        }
    }

    fn config_error(f: impl FnOnce(&mut CacheSection)) -> String {
        match CacheLayer::from_config(&config(f)) {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn from_config_builds_only_when_configured_and_validates_fields() {
        assert!(CacheLayer::from_config(&Config::default())
            .unwrap()
            .is_none());
        assert!(CacheLayer::from_config(&config(|_| {})).unwrap().is_some());
        let shared = CacheLayer::from_config(&config(|c| c.scope = CacheScope::Shared))
            .unwrap()
            .unwrap();
        assert_eq!(shared.shared.scope, CacheScope::Shared);
        assert_eq!(shared.shared.ttl, Duration::from_secs(300));

        assert!(config_error(|c| c.max_entries = 0).contains("`cache.max_entries`"));
        assert!(config_error(|c| c.ttl_seconds = 0).contains("`cache.ttl_seconds`"));
        assert_eq!(
            config_error(|c| c.backend = "redis".into()),
            "cache backend `redis` is not available in this build yet"
        );
        let e = config_error(|c| c.backend = "memcached".into());
        assert!(
            e.contains("`cache.backend`") && e.contains("memcached"),
            "{e}"
        );
        let e = config_error(|c| {
            c.backend_config = serde_json::from_value(json!({"url": "redis://x"})).unwrap();
        });
        assert!(
            e.contains("`cache.backend_config`") && e.contains("url"),
            "{e}"
        );
    }
}
