//! Cohere's v2 Embed (`POST /v2/embed`) and Rerank (`POST /v2/rerank`) APIs,
//! on the same fake as the Chat API, written from the v2 API reference.
//!
//! Embed requires `model` and `input_type` (one of the documented types) and
//! exactly one of `texts` (1 to 96) or `inputs`; `embedding_types` picks which
//! arrays the answer holds (`float` by default); `output_dimension` is only for
//! `embed-v4.0` (256, 512, 1024, 1536). Rerank takes `documents` as strings
//! only, an optional `top_n` and `max_tokens_per_doc`, and never returns
//! documents. Unknown fields are refused, as on the chat route. Answers:
//! `{id, embeddings: {<type>: [...]}, texts, meta: {api_version, billed_units:
//! {input_tokens}}, response_type: "embeddings_by_type"}` and `{id, results:
//! [{index, relevance_score}], meta: {api_version, billed_units:
//! {search_units}}}`, vectors and scores from [`crate::vectors`], one token per
//! word, one search unit per 100 documents.

use super::{bearer, error_response, invalid, respond, Fault, RecordedRequest, Shared};
use crate::common::{is_json, raw_content_type, unknown_key};
use crate::vectors::{base64_f32, embedding, rank, tokens};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Embed models and their default dimension.
const EMBED_MODELS: &[(&str, usize)] = &[
    ("embed-v4.0", 1536),
    ("embed-english-v3.0", 1024),
    ("embed-multilingual-v3.0", 1024),
    ("embed-english-light-v3.0", 384),
    ("embed-multilingual-light-v3.0", 384),
];

const RERANK_MODELS: &[&str] = &[
    "rerank-v4.0-pro",
    "rerank-v4.0-fast",
    "rerank-v3.5",
    "rerank-english-v3.0",
    "rerank-multilingual-v3.0",
];

const EMBED_FIELDS: &[&str] = &[
    "texts",
    "images",
    "model",
    "input_type",
    "inputs",
    "max_tokens",
    "output_dimension",
    "embedding_types",
    "truncate",
    "priority",
];
const RERANK_FIELDS: &[&str] = &[
    "model",
    "query",
    "documents",
    "top_n",
    "max_tokens_per_doc",
    "priority",
];

const INPUT_TYPES: &[&str] = &[
    "search_document",
    "search_query",
    "classification",
    "clustering",
    "image",
];
const EMBEDDING_TYPES: &[&str] = &["float", "int8", "uint8", "binary", "ubinary", "base64"];

/// Records the request and applies auth, content type and queued faults.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    raw: &Bytes,
    fields: &[&str],
) -> Result<Map<String, Value>, Box<Response>> {
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    shared.requests.push(RecordedRequest {
        method: "POST".to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: body.clone(),
        raw: raw.clone(),
    });
    match bearer(headers) {
        None => return Err(Box::new(error_response(401, "no api key supplied"))),
        Some(k) if k != shared.api_key => {
            return Err(Box::new(error_response(401, "invalid api token")))
        }
        Some(_) => {}
    }
    if !is_json(headers) {
        return Err(Box::new(invalid("content-type must be application/json")));
    }
    match shared.faults.pop() {
        Some(Fault::Error {
            status,
            body,
            retry_after,
        }) => {
            let mut r = respond(status, raw_content_type(&body), Body::from(body));
            if let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            return Err(Box::new(r));
        }
        Some(Fault::StreamError { message }) => {
            return Err(Box::new(error_response(500, &message)))
        }
        Some(Fault::TruncateStream) | None => {}
    }
    let Value::Object(obj) = body else {
        return Err(Box::new(invalid("cannot parse the request body as JSON")));
    };
    if let Some(k) = unknown_key(&obj, fields) {
        return Err(Box::new(invalid(format!(
            "unknown field: parameter {k} is not a valid field"
        ))));
    }
    Ok(obj)
}

fn not_found(model: &str) -> Response {
    error_response(
        404,
        &format!("model '{model}' not found, make sure the correct model ID was used and that you have access to the model."),
    )
}

/// A fresh response id; a counter of its own, so chat replies stay as they were.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("5a3e7a92-09c1-4d2c-b0c5-{n:012x}")
}

pub(super) async fn embed(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let obj = match admit(&shared, &headers, &uri, &raw, EMBED_FIELDS) {
        Ok(obj) => obj,
        Err(r) => return *r,
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        _ => return invalid("model is required"),
    };
    let Some(&(_, default_dims)) = EMBED_MODELS.iter().find(|(m, _)| *m == model) else {
        return not_found(model);
    };
    match obj.get("input_type").and_then(Value::as_str) {
        Some(t) if INPUT_TYPES.contains(&t) => {}
        Some(_) => {
            return invalid(format!(
                "input_type must be one of {}",
                INPUT_TYPES.join(", ")
            ))
        }
        None => return invalid("input_type is required for embed models v3 and higher"),
    }
    if obj.contains_key("images") || obj.contains_key("inputs") {
        // Image and mixed inputs exist but no test needs them.
        return invalid("this fake embeds `texts` only");
    }
    let texts: Vec<String> = match obj.get("texts") {
        Some(Value::Array(t)) if t.iter().all(Value::is_string) => t
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => return invalid("texts must be a list of strings"),
        None => return invalid("one of texts, images or inputs must be specified"),
    };
    if texts.is_empty() || texts.len() > 96 {
        return invalid("texts must contain between 1 and 96 items");
    }
    let types: Vec<String> = match obj.get("embedding_types") {
        None | Some(Value::Null) => vec!["float".to_string()],
        Some(Value::Array(t))
            if !t.is_empty()
                && t.iter()
                    .all(|x| x.as_str().is_some_and(|s| EMBEDDING_TYPES.contains(&s))) =>
        {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        }
        Some(_) => {
            return invalid(format!(
                "embedding_types must be a list of {}",
                EMBEDDING_TYPES.join(", ")
            ))
        }
    };
    let dims = match obj.get("output_dimension") {
        None | Some(Value::Null) => default_dims,
        Some(d) if model == "embed-v4.0" => match d.as_u64() {
            Some(n @ (256 | 512 | 1024 | 1536)) => n as usize,
            _ => return invalid("output_dimension must be one of 256, 512, 1024, 1536"),
        },
        Some(_) => return invalid(format!("output_dimension is not supported for {model}")),
    };
    match obj.get("truncate") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if ["NONE", "START", "END"].contains(&t.as_str()) => {}
        Some(_) => return invalid("truncate must be one of NONE, START, END"),
    }
    let vectors: Vec<Vec<f64>> = texts.iter().map(|t| embedding(t, dims)).collect();
    let mut embeddings = Map::new();
    for kind in &types {
        let values: Value = match kind.as_str() {
            "float" => json!(vectors),
            "base64" => Value::from(vectors.iter().map(|v| base64_f32(v)).collect::<Vec<_>>()),
            // Quantized types exist but no test needs them.
            other => return invalid(format!("embedding type {other} is not served by this fake")),
        };
        embeddings.insert(kind.clone(), values);
    }
    let billed: u64 = texts.iter().map(|t| tokens(t)).sum();
    let answer = json!({
        "id": request_id(),
        "embeddings": embeddings,
        "texts": texts,
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"input_tokens": billed},
        },
        "response_type": "embeddings_by_type",
    });
    respond(200, "application/json", Body::from(answer.to_string()))
}

pub(super) async fn rerank(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let obj = match admit(&shared, &headers, &uri, &raw, RERANK_FIELDS) {
        Ok(obj) => obj,
        Err(r) => return *r,
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        _ => return invalid("model is required"),
    };
    if !RERANK_MODELS.contains(&model) {
        return not_found(model);
    }
    let query = match obj.get("query") {
        Some(Value::String(q)) if !q.is_empty() => q.clone(),
        _ => return invalid("query must be a non-empty string"),
    };
    let documents: Vec<String> = match obj.get("documents") {
        Some(Value::Array(d)) if !d.is_empty() && d.iter().all(Value::is_string) => d
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::Array(d)) if d.is_empty() => return invalid("documents must not be empty"),
        _ => return invalid("documents must be a list of strings"),
    };
    let top_n = match obj.get("top_n") {
        None | Some(Value::Null) => documents.len(),
        Some(n) => match n.as_u64() {
            Some(n) if n >= 1 => n as usize,
            _ => return invalid("top_n must be a positive integer"),
        },
    };
    if obj
        .get("max_tokens_per_doc")
        .is_some_and(|m| m.as_u64().is_none_or(|m| m < 1))
    {
        return invalid("max_tokens_per_doc must be a positive integer");
    }
    let results: Vec<Value> = rank(&query, &documents)
        .into_iter()
        .take(top_n)
        .map(|(index, score)| json!({"index": index, "relevance_score": score}))
        .collect();
    let answer = json!({
        "results": results,
        "id": request_id(),
        "meta": {
            "api_version": {"version": "2", "is_experimental": false},
            "billed_units": {"search_units": documents.len().div_ceil(100)},
        },
    });
    respond(200, "application/json", Body::from(answer.to_string()))
}
