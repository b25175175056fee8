//! What the embedding and rerank fakes (Cohere, Voyage, Jina) share: the
//! deterministic vectors and relevance scores they answer with, so a test can
//! compute the expected answer for any text, and the server the Voyage and
//! Jina fakes both are: the same two routes, the request log, the faults and
//! the checks every request goes through ([`serve`], [`Api`]).
//!
//! Vector components are multiples of 1/1024 in `[-0.5, 0.5)`: exact in `f32`
//! and `f64` and printed exactly in JSON, so a float answer and the same answer
//! as OpenAI base64 (`f32` little-endian) decode to identical numbers.

use crate::common::{
    bearer, is_json, json_response, raw_response, unknown_key, FaultQueue, Recorder, Server,
};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use crate::common::RecordedRequest;

/// Makes the next request fail; consumed by that request after the auth check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and raw body; `retry_after` adds the header.
    Error {
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The fakes' embedding of `text`: `dims` components, a pure function of the
/// text, so different texts get different vectors and order mix-ups show.
pub fn embedding(text: &str, dims: usize) -> Vec<f64> {
    let seed = fnv1a(text.as_bytes());
    (0..dims as u64)
        .map(|j| {
            let k = splitmix(seed ^ j.wrapping_mul(0x2545_f491_4f6c_dd1d)) % 1024;
            (k as f64 - 512.0) / 1024.0
        })
        .collect()
}

/// The fakes' token count: one token per whitespace-separated word, at least one.
pub fn tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How relevant `document` is to `query`: the share of the document's words
/// that appear in the query, smoothed into `(0, 1)`.
pub fn relevance(query: &str, document: &str) -> f64 {
    let q = words(query);
    let d = words(document);
    let hits = d.iter().filter(|w| q.contains(w)).count();
    (hits as f64 + 1.0) / (d.len() as f64 + 2.0)
}

/// Document indexes with their scores, most relevant first; ties keep input order.
pub fn rank(query: &str, documents: &[String]) -> Vec<(usize, f64)> {
    let mut ranked: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| (i, relevance(query, d)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
}

/// The token count of a rerank request, as Voyage defines it: the query once
/// per document plus every document.
pub fn rerank_tokens(query: &str, documents: &[String]) -> u64 {
    documents.iter().map(|d| tokens(query) + tokens(d)).sum()
}

/// A vector as OpenAI-style base64: its components as `f32` little-endian.
pub fn base64_f32(vector: &[f64]) -> String {
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|x| (*x as f32).to_le_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// OpenAI-shaped `data[]` for `inputs`, in order: `{object: "embedding",
/// index, embedding}`, the vector as floats or as [`base64_f32`].
pub fn embedding_data(inputs: &[String], dims: usize, base64: bool) -> Vec<Value> {
    inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embedding(text, dims);
            let embedding = if base64 {
                Value::from(base64_f32(&vector))
            } else {
                Value::from(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect()
}

/// The `{"detail": "..."}` error body of the FastAPI services (Voyage, Jina).
pub fn detail_body(detail: &str) -> String {
    json!({ "detail": detail }).to_string()
}

/// The answer for a queued [`Fault::Error`].
pub(crate) fn fault_response(fault: &Fault) -> Response {
    let Fault::Error {
        status,
        body,
        retry_after,
    } = fault;
    let mut r = raw_response(*status, body);
    if let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    r
}

// ---------------------------------------------------------------------------
// The Voyage and Jina server
// ---------------------------------------------------------------------------

/// Why a request was turned away before its endpoint saw it.
pub(crate) enum Refused<'a> {
    /// No `Authorization: Bearer` key.
    NoKey,
    /// A key other than the fake's.
    WrongKey,
    /// A `Content-Type` other than JSON.
    NotJson,
    /// A body that is not a JSON object.
    NotObject,
    /// A body field the endpoint does not list.
    Unknown(&'a str),
}

/// An endpoint's answer to a request body that passed [`admit`]; `Err` is the
/// refusal to send instead.
pub(crate) type Answer = fn(&Map<String, Value>) -> Result<Value, Box<Response>>;

/// What makes a fake Voyage or Jina: how it words a refusal, the fields each
/// endpoint takes, and its answers.
pub(crate) struct Api {
    pub refuse: fn(Refused<'_>) -> Response,
    pub embed_fields: &'static [&'static str],
    pub rerank_fields: &'static [&'static str],
    pub embed: Answer,
    pub rerank: Answer,
}

struct Shared {
    api_key: String,
    api: Api,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<Fault>,
}

/// A running Voyage or Jina fake. Dropping it stops the server.
pub struct VectorFake {
    shared: Arc<Shared>,
    server: Server,
}

/// Serves `POST /v1/embeddings` and `POST /v1/rerank` as `api` says, plus
/// `GET /__requests` with what was recorded; requests must carry
/// `Authorization: Bearer <api_key>`.
pub(crate) fn serve(listener: TcpListener, api_key: &str, api: Api) -> std::io::Result<VectorFake> {
    let shared = Arc::new(Shared {
        api_key: api_key.to_string(),
        api,
        requests: Recorder::new(),
        faults: FaultQueue::new(),
    });
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/rerank", post(rerank))
        .route("/__requests", get(recorded))
        .fallback(|| async { json_response(404, detail_body("Not Found")) })
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(VectorFake { shared, server })
}

impl VectorFake {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v1`, the shape of the provider's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr())
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// The next request gets this status and raw body (429 adds `retry-after: 1`).
    pub fn set_next_error(&self, status: u16, body: impl Into<String>) {
        self.shared.faults.push(Fault::Error {
            status,
            body: body.into(),
            retry_after: (status == 429).then_some(1),
        });
    }
}

async fn recorded(State(shared): State<Arc<Shared>>) -> Response {
    let all = shared.requests.to_json(RecordedRequest::to_json);
    json_response(200, all.to_string())
}

/// Records the request and runs the checks every endpoint shares, in order:
/// the key, a queued fault, a JSON object with only `fields`. `Err` is the
/// answer to send instead.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    raw: &Bytes,
    fields: &[&str],
) -> Result<Map<String, Value>, Box<Response>> {
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    shared
        .requests
        .record("POST", uri, headers, body.clone(), raw);
    let refuse = |why| Box::new((shared.api.refuse)(why));
    match bearer(headers) {
        None => return Err(refuse(Refused::NoKey)),
        Some(k) if k != shared.api_key => return Err(refuse(Refused::WrongKey)),
        Some(_) => {}
    }
    if let Some(fault) = shared.faults.pop() {
        return Err(Box::new(fault_response(&fault)));
    }
    if !is_json(headers) {
        return Err(refuse(Refused::NotJson));
    }
    let Value::Object(obj) = body else {
        return Err(refuse(Refused::NotObject));
    };
    if let Some(k) = unknown_key(&obj, fields) {
        return Err(refuse(Refused::Unknown(k)));
    }
    Ok(obj)
}

fn answer(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    raw: &Bytes,
    fields: &[&str],
    answer: Answer,
) -> Response {
    match admit(shared, headers, uri, raw, fields).and_then(|obj| answer(&obj)) {
        Ok(v) => json_response(200, v.to_string()),
        Err(r) => *r,
    }
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let api = &shared.api;
    answer(&shared, &headers, &uri, &raw, api.embed_fields, api.embed)
}

async fn rerank(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let api = &shared.api;
    answer(&shared, &headers, &uri, &raw, api.rerank_fields, api.rerank)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_exact_and_text_specific() {
        let a = embedding("alpha", 16);
        assert_eq!(a, embedding("alpha", 16));
        assert_ne!(a, embedding("beta", 16));
        assert!(a.iter().all(|x| (-0.5..0.5).contains(x)));
        assert!(a.iter().all(|x| f64::from(*x as f32) == *x));
    }

    #[test]
    fn relevance_prefers_documents_sharing_query_words() {
        let docs = vec![
            "Paris is in France".to_string(),
            "The capital of France is Paris".to_string(),
            "Bananas are yellow".to_string(),
        ];
        let ranked = rank("capital of France", &docs);
        assert_eq!(ranked[0].0, 1);
        assert_eq!(ranked[2].0, 2);
        assert!(ranked.iter().all(|(_, s)| *s > 0.0 && *s < 1.0));
    }
}
