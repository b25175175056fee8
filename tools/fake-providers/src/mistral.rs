//! A fake of Mistral AI's API (`https://api.mistral.ai/v1`) and of Mistral OCR
//! as Azure AI Foundry serves it, written from the public API references.
//!
//! Mistral (`Authorization: Bearer <key>`):
//!
//! - `POST /v1/chat/completions`, streaming or not; a stream's last chunk
//!   carries `usage` (Mistral reports it without being asked), then
//!   `data: [DONE]`.
//! - `POST /v1/fim/completions` (Codestral fill-in-the-middle: `prompt` +
//!   `suffix`, answered in the chat completion shape, as Mistral does).
//! - `POST /v1/embeddings`, `POST /v1/moderations` (`{model, input}` →
//!   `{id, model, results: [{categories, category_scores}]}` with Mistral's
//!   category names: the 2411 set, or the 2603 set for a `…-2603` model),
//!   `POST /v1/ocr` (`document_url` / `image_url`, http(s) or base64 `data:`
//!   URLs → `{pages, model, document_annotation, usage_info}`) and
//!   `POST /v1/audio/transcriptions` (multipart).
//!
//! Like the real API it refuses fields it does not know with 422 "Extra inputs
//! are not permitted" in Mistral's validation shape
//! (`{"object":"error","message":{"detail":[{"type","loc","msg","input"}]},...}`),
//! so a translation that adds `stream_options` or leaks an OpenAI-only field
//! fails a test.
//!
//! Azure AI Foundry (`api-key: <key>` or `Authorization: Bearer <key>`):
//! `POST /providers/mistral/azure/ocr` on the same server, and
//! `POST /v1/ocr` on a fake started with [`start_azure_serverless`]. Azure's
//! OCR cannot fetch URLs, so only base64 `data:` documents are accepted there.
//!
//! Moderation is keyword-driven and deterministic (see [`moderate`]); OCR
//! "reads" a document as a markdown page that names its source.

use crate::common::{bearer, bind_local, read_multipart, respond, FaultQueue, Recorder, Server};
use crate::stability::decode_base64;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The categories of `mistral-moderation-2411` (and `-latest`).
pub const CATEGORIES_2411: &[&str] = &[
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous_and_criminal_content",
    "selfharm",
    "health",
    "financial",
    "law",
    "pii",
];

/// The categories of `mistral-moderation-2603`.
pub const CATEGORIES_2603: &[&str] = &[
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous",
    "criminal",
    "selfharm",
    "health",
    "financial",
    "law",
    "pii",
    "jailbreaking",
];

/// A flagged category's score; unflagged ones get [`LOW_SCORE`].
pub const HIGH_SCORE: f64 = 0.9921875;
pub const LOW_SCORE: f64 = 0.000_976_562_5;

/// The chat reply starts with this, then quotes the last user text.
pub const REPLY_PREFIX: &str = "Bonjour from fake Mistral! You said: ";

/// One request as the fake received it; a multipart upload's body is an
/// object of its fields (a file part as `"<file NAME TYPE N bytes>"`).
pub use crate::common::RecordedRequest;

/// A way to make the next request go wrong, consumed by that request after
/// the auth check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and raw body.
    Error { status: u16, body: String },
    /// Start a stream and close it before its last chunk and `[DONE]`.
    TruncateStream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// Mistral's API under `/v1`, plus Foundry's `/providers/mistral/azure/ocr`.
    Mistral,
    /// An Azure serverless Mistral OCR deployment: `/v1/ocr`, Azure's rules.
    AzureServerless,
}

struct Shared {
    api_key: String,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<Fault>,
    counter: AtomicU64,
}

/// A running fake. Dropping it stops the server.
pub struct FakeMistral {
    shared: Arc<Shared>,
    server: Server,
}

/// Mistral's API and Foundry's OCR route on `127.0.0.1:0`, both taking `api_key`.
pub async fn start(api_key: &str) -> std::io::Result<FakeMistral> {
    start_on(bind_local().await?, api_key).await
}

/// [`start`] on a listener the caller bound; also answers `GET /__requests`.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeMistral> {
    serve(listener, api_key, Flavor::Mistral)
}

/// An Azure serverless Mistral OCR endpoint (`POST /v1/ocr`, Azure's auth,
/// inline documents only).
pub async fn start_azure_serverless(api_key: &str) -> std::io::Result<FakeMistral> {
    serve(bind_local().await?, api_key, Flavor::AzureServerless)
}

fn serve(listener: TcpListener, api_key: &str, flavor: Flavor) -> std::io::Result<FakeMistral> {
    let shared = Arc::new(Shared {
        api_key: api_key.to_string(),
        requests: Recorder::new(),
        faults: FaultQueue::new(),
        counter: AtomicU64::new(0),
    });
    let router = match flavor {
        Flavor::Mistral => Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/fim/completions", post(fim))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/moderations", post(moderations))
            .route("/v1/ocr", post(ocr))
            .route("/v1/audio/transcriptions", post(transcriptions))
            .route("/providers/mistral/azure/ocr", post(azure_ocr)),
        Flavor::AzureServerless => Router::new().route("/v1/ocr", post(azure_ocr)),
    };
    let app = router
        .route("/__requests", get(recorded))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(FakeMistral { shared, server })
}

impl FakeMistral {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v1`, the shape of `https://api.mistral.ai/v1`
    /// (and of an Azure serverless endpoint's `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr())
    }

    /// `http://127.0.0.1:PORT/models`, the shape of a Foundry resource's model
    /// inference base URL (`https://{resource}.services.ai.azure.com/models`).
    pub fn foundry_base_url(&self) -> String {
        format!("http://{}/models", self.addr())
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// The next request gets this status and raw body.
    pub fn set_next_error(&self, status: u16, body: impl Into<String>) {
        self.push_fault(Fault::Error {
            status,
            body: body.into(),
        });
    }

    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults.push(fault);
    }
}

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

fn json_response(status: u16, v: &Value) -> Response {
    respond(status, "application/json", v.to_string())
}

/// Mistral's plain error: `{"object":"error","message","type","param","code"}`.
pub fn error_body(message: &str) -> String {
    json!({"object": "error", "message": message, "type": "invalid_request_error", "param": null, "code": null})
        .to_string()
}

/// Mistral's validation error (HTTP 422).
pub fn validation_body(kind: &str, loc: &[&str], msg: &str, input: &Value) -> String {
    json!({
        "object": "error",
        "message": {"detail": [{"type": kind, "loc": loc, "msg": msg, "input": input}]},
        "type": "invalid_request_error",
        "param": null,
        "code": null,
    })
    .to_string()
}

fn invalid_field(kind: &str, field: &str, msg: &str, input: &Value) -> Response {
    respond(
        422,
        "application/json",
        validation_body(kind, &["body", field], msg, input),
    )
}

fn bad_request(message: &str) -> Response {
    respond(400, "application/json", error_body(message))
}

async fn recorded(State(shared): State<Arc<Shared>>) -> Response {
    let all = shared.requests.to_json(RecordedRequest::to_json);
    respond(200, "application/json", all.to_string())
}

async fn not_found() -> Response {
    json_response(404, &json!({"detail": "Not Found"}))
}

/// Records a JSON request and runs the checks every Mistral endpoint shares:
/// the key, a queued fault, a JSON object with only `allowed` fields and a
/// string `model`.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    raw: &Bytes,
    allowed: &[&str],
) -> Result<Map<String, Value>, Box<Response>> {
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    shared
        .requests
        .record("POST", uri, headers, body.clone(), raw);
    if bearer(headers) != Some(shared.api_key.as_str()) {
        return Err(Box::new(json_response(
            401,
            &json!({"message": "Unauthorized", "request_id": "c0ffee00c0ffee00c0ffee00c0ffee00"}),
        )));
    }
    check_body(shared, body, allowed)
}

fn check_body(
    shared: &Shared,
    body: Value,
    allowed: &[&str],
) -> Result<Map<String, Value>, Box<Response>> {
    if let Some(fault) = shared.faults.pop() {
        match fault {
            Fault::Error { status, body } => {
                return Err(Box::new(respond(status, "application/json", body)))
            }
            Fault::TruncateStream => shared.faults.push(Fault::TruncateStream),
        }
    }
    let Value::Object(obj) = body else {
        return Err(Box::new(respond(
            422,
            "application/json",
            validation_body(
                "model_attributes_type",
                &["body"],
                "Input should be a valid dictionary or object to extract fields from",
                &Value::Null,
            ),
        )));
    };
    for (k, v) in &obj {
        if !allowed.contains(&k.as_str()) {
            return Err(Box::new(invalid_field(
                "extra_forbidden",
                k,
                "Extra inputs are not permitted",
                v,
            )));
        }
    }
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(obj),
        Some(v) => Err(Box::new(invalid_field(
            "string_type",
            "model",
            "Input should be a valid string",
            v,
        ))),
        None => Err(Box::new(invalid_field(
            "missing",
            "model",
            "Field required",
            &Value::Null,
        ))),
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn next_id(shared: &Shared, prefix: &str) -> String {
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{prefix}{n:032x}")
}

const CREATED: u64 = 1_735_689_600;

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "prediction",
    "parallel_tool_calls",
    "prompt_mode",
    "safe_prompt",
    "metadata",
];

/// The text of a message's `content` (a string or text chunks).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let req = match admit(&shared, &headers, &uri, &raw, CHAT_FIELDS) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let Some(Value::Array(messages)) = req.get("messages") else {
        return invalid_field("missing", "messages", "Field required", &Value::Null);
    };
    if messages.is_empty() {
        return bad_request("Messages must not be empty");
    }
    let mut prompt_words = 0;
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "user" | "assistant" | "tool") => {}
            _ => {
                return respond(
                    422,
                    "application/json",
                    validation_body(
                        "union_tag_invalid",
                        &["body", "messages", &i.to_string()],
                        "Input tag does not match any of the expected tags: 'assistant', 'system', 'tool', 'user'",
                        m,
                    ),
                )
            }
        }
        prompt_words += words(&content_text(m.get("content").unwrap_or(&Value::Null)));
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let reply = format!("{REPLY_PREFIX}{last_user}");
    let usage = json!({
        "prompt_tokens": prompt_words,
        "completion_tokens": words(&reply),
        "total_tokens": prompt_words + words(&reply),
    });
    let id = next_id(&shared, "");
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_response(
            200,
            &json!({
                "id": id,
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": reply, "tool_calls": null, "prefix": false},
                    "finish_reason": "stop",
                }],
                "usage": usage,
            }),
        );
    }
    let chunk = |delta: Value, finish: Value, usage: Option<&Value>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if let (Some(u), Some(obj)) = (usage, c.as_object_mut()) {
            obj.insert("usage".into(), u.clone());
        }
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut frames = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
        None,
    )];
    let pieces: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    let last = pieces.len().saturating_sub(1);
    let truncate = shared.faults.pop() == Some(Fault::TruncateStream);
    for (i, piece) in pieces.into_iter().enumerate() {
        if i == last {
            if truncate {
                break;
            }
            frames.push(chunk(
                json!({"content": piece}),
                json!("stop"),
                Some(&usage),
            ));
        } else {
            frames.push(chunk(json!({"content": piece}), Value::Null, None));
        }
    }
    if !truncate {
        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
    let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
    let mut r = respond(200, "text/event-stream", Body::from_stream(stream));
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r
}

// ---------------------------------------------------------------------------
// Fill-in-the-middle
// ---------------------------------------------------------------------------

/// What the fake "writes" between a FIM prompt and suffix.
pub fn fim_text(prompt: &str, suffix: &str) -> String {
    format!(
        "/* {} chars before, {} after */",
        prompt.len(),
        suffix.len()
    )
}

async fn fim(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let fields = &[
        "model",
        "prompt",
        "suffix",
        "temperature",
        "top_p",
        "max_tokens",
        "min_tokens",
        "stream",
        "stop",
        "random_seed",
        "metadata",
    ];
    let req = match admit(&shared, &headers, &uri, &raw, fields) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    if !model.starts_with("codestral") {
        return bad_request(&format!(
            "Invalid model: {model} does not support fill-in-the-middle"
        ));
    }
    let Some(prompt) = req.get("prompt").and_then(Value::as_str) else {
        return invalid_field("missing", "prompt", "Field required", &Value::Null);
    };
    let suffix = req
        .get("suffix")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let text = fim_text(prompt, suffix);
    let prompt_tokens = words(prompt) + words(suffix);
    json_response(
        200,
        &json!({
            "id": next_id(&shared, ""),
            "object": "chat.completion",
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": words(&text), "total_tokens": prompt_tokens + words(&text)},
            "created": CREATED,
            "choices": [{
                "index": 0,
                "message": {"content": text, "tool_calls": null, "prefix": false, "role": "assistant"},
                "finish_reason": "stop",
            }],
        }),
    )
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let fields = &[
        "model",
        "input",
        "encoding_format",
        "output_dimension",
        "output_dtype",
        "metadata",
    ];
    let req = match admit(&shared, &headers, &uri, &raw, fields) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(v) => {
            return invalid_field("string_type", "input", "Input should be a valid string", v)
        }
        None => return invalid_field("missing", "input", "Field required", &Value::Null),
    };
    match req.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => {}
        Some(other) => {
            return invalid_field(
                "enum",
                "encoding_format",
                "Input should be 'float' (this fake does not produce base64 vectors)",
                &json!(other),
            )
        }
    }
    let tokens: u64 = inputs.iter().map(|s| words(s)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.len() as f64;
            json!({"object": "embedding", "embedding": [0.25, -0.5, n / 100.0, i as f64], "index": i})
        })
        .collect();
    json_response(
        200,
        &json!({
            "id": next_id(&shared, "emb-"),
            "object": "list",
            "data": data,
            "model": req.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        }),
    )
}

// ---------------------------------------------------------------------------
// Moderations
// ---------------------------------------------------------------------------

/// Which of `categories` a text trips, by keyword: `kill`/`hurt you` →
/// violence, `hate` → hate, `nude` → sexual, `hurt myself` → self-harm,
/// `steal`/`bomb` → dangerous and criminal, `lawyer`/`sue` → law, `diagnose`
/// → health, `invest` → financial, `phone number` → pii, `ignore previous
/// instructions` → jailbreaking.
pub fn moderate(text: &str, categories: &[&str]) -> Vec<&'static str> {
    const RULES: &[(&[&str], &[&str])] = &[
        (&["kill", "hurt you"], &["violence_and_threats"]),
        (&["hate"], &["hate_and_discrimination"]),
        (&["nude"], &["sexual"]),
        (&["hurt myself"], &["selfharm"]),
        (
            &["steal", "bomb"],
            &["dangerous_and_criminal_content", "criminal"],
        ),
        (&["bomb"], &["dangerous"]),
        (&["lawyer", "sue "], &["law"]),
        (&["diagnose"], &["health"]),
        (&["invest"], &["financial"]),
        (&["phone number"], &["pii"]),
        (&["ignore previous instructions"], &["jailbreaking"]),
    ];
    let t = text.to_lowercase();
    RULES
        .iter()
        .filter(|(words, _)| words.iter().any(|w| t.contains(w)))
        .flat_map(|(_, hits)| hits.iter().copied())
        .filter(|name| categories.contains(name))
        .collect()
}

async fn moderations(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let req = match admit(
        &shared,
        &headers,
        &uri,
        &raw,
        &["model", "input", "metadata"],
    ) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    if !model.starts_with("mistral-moderation") {
        return bad_request(&format!("Invalid model: {model}"));
    }
    let texts: Vec<&str> = match req.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).collect()
        }
        Some(v) => {
            return invalid_field("string_type", "input", "Input should be a valid string", v)
        }
        None => return invalid_field("missing", "input", "Field required", &Value::Null),
    };
    let categories = if model.ends_with("2603") {
        CATEGORIES_2603
    } else {
        CATEGORIES_2411
    };
    let results: Vec<Value> = texts
        .iter()
        .map(|t| {
            let hits = moderate(t, categories);
            let mut cats = Map::new();
            let mut scores = Map::new();
            for c in categories {
                let flagged = hits.contains(c);
                cats.insert((*c).into(), Value::Bool(flagged));
                scores.insert(
                    (*c).into(),
                    json!(if flagged { HIGH_SCORE } else { LOW_SCORE }),
                );
            }
            json!({"categories": cats, "category_scores": scores})
        })
        .collect();
    json_response(
        200,
        &json!({"id": next_id(&shared, ""), "model": model, "results": results}),
    )
}

// ---------------------------------------------------------------------------
// OCR
// ---------------------------------------------------------------------------

const OCR_FIELDS: &[&str] = &[
    "model",
    "id",
    "document",
    "pages",
    "include_image_base64",
    "image_limit",
    "image_min_size",
    "bbox_annotation_format",
    "document_annotation_format",
    "table_format",
    "extract_header",
    "extract_footer",
];

/// A document's source: an http(s) URL, or a decoded base64 data URL.
enum Source {
    Url(String),
    Inline { media_type: String, bytes: usize },
}

fn document_source(doc: Option<&Value>) -> Result<Source, Box<Response>> {
    let Some(doc) = doc.and_then(Value::as_object) else {
        return Err(Box::new(invalid_field(
            "missing",
            "document",
            "Field required",
            &Value::Null,
        )));
    };
    let kind = doc
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("document_url");
    let url = match (kind, doc.get(kind)) {
        ("document_url", Some(Value::String(u))) => u.as_str(),
        // An image chunk's URL may also be `{url, detail}`.
        ("image_url", Some(Value::String(u))) => u.as_str(),
        ("image_url", Some(Value::Object(o))) => o.get("url").and_then(Value::as_str).unwrap_or_default(),
        ("document_url" | "image_url", v) => {
            return Err(Box::new(invalid_field(
                "missing",
                "document",
                &format!("Field required: `{kind}`"),
                v.unwrap_or(&Value::Null),
            )))
        }
        (other, _) => {
            return Err(Box::new(invalid_field(
                "union_tag_invalid",
                "document",
                &format!("Input tag '{other}' does not match any of the expected tags: 'document_url', 'file', 'image_url'"),
                &Value::Object(doc.clone()),
            )))
        }
    };
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, payload)) = rest.split_once(',') else {
            return Err(Box::new(bad_request("Invalid data URL")));
        };
        let mut params = meta.split(';');
        let media_type = params.next().unwrap_or_default().to_string();
        if !params.any(|p| p.eq_ignore_ascii_case("base64")) {
            return Err(Box::new(bad_request("Data URLs must be base64-encoded")));
        }
        let Some(bytes) = decode_base64(payload) else {
            return Err(Box::new(bad_request(
                "Invalid base64 data in the document URL",
            )));
        };
        return Ok(Source::Inline {
            media_type,
            bytes: bytes.len(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Source::Url(url.to_string()));
    }
    Err(Box::new(bad_request(
        "Invalid document URL: expected an http(s) URL or a base64 data URL",
    )))
}

fn ocr_answer(req: &Map<String, Value>, source: &Source, model: &str) -> Value {
    let (markdown, size) = match source {
        Source::Url(u) => (format!("# Fake OCR\n\nRead from {u}."), Value::Null),
        Source::Inline { media_type, bytes } => (
            format!("# Fake OCR\n\nRead an inline {media_type} document of {bytes} bytes."),
            json!(bytes),
        ),
    };
    let images = if req.get("include_image_base64").and_then(Value::as_bool) == Some(true) {
        json!([{
            "id": "img-0.jpeg",
            "top_left_x": 10, "top_left_y": 20, "bottom_right_x": 110, "bottom_right_y": 220,
            "image_base64": format!("data:image/png;base64,{}", crate::stability::PNG_1X1_BASE64),
        }])
    } else {
        json!([])
    };
    json!({
        "pages": [{
            "index": 0,
            "markdown": markdown,
            "images": images,
            "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
        }],
        "model": model,
        "document_annotation": null,
        "usage_info": {"pages_processed": 1, "doc_size_bytes": size},
    })
}

async fn ocr(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let req = match admit(&shared, &headers, &uri, &raw, OCR_FIELDS) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    if !model.starts_with("mistral-ocr") {
        return bad_request(&format!("Invalid model: {model}"));
    }
    let source = match document_source(req.get("document")) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    json_response(
        200,
        &ocr_answer(&req, &source, &format!("{model}-completion")),
    )
}

/// Azure AI Foundry's Mistral OCR: Azure's key headers, inline documents only.
async fn azure_ocr(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared
        .requests
        .record("POST", &uri, &headers, body.clone(), &raw);
    let key = headers.get("api-key").and_then(|v| v.to_str().ok());
    if key != Some(shared.api_key.as_str()) && bearer(&headers) != Some(shared.api_key.as_str()) {
        return json_response(
            401,
            &json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
        );
    }
    let req = match check_body(&shared, body, OCR_FIELDS) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    if !(model.starts_with("mistral-document-ai") || model.starts_with("mistral-ocr")) {
        return json_response(
            404,
            &json!({"error": {"code": "DeploymentNotFound", "message": format!("The API deployment for this resource does not exist: {model}")}}),
        );
    }
    let source = match document_source(req.get("document")) {
        Ok(Source::Url(_)) => {
            return bad_request("Document URLs are not supported by this deployment; send the document as a base64 data URL")
        }
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    json_response(200, &ocr_answer(&req, &source, model))
}

// ---------------------------------------------------------------------------
// Transcriptions
// ---------------------------------------------------------------------------

const TRANSCRIPTION_FIELDS: &[&str] = &[
    "model",
    "file",
    "file_url",
    "file_id",
    "language",
    "temperature",
    "stream",
    "timestamp_granularities",
    "diarize",
    "context_bias",
];

async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let parts = read_multipart(&headers, &raw, "expected multipart/form-data");
    let mut fields = Map::new();
    if let Ok(parts) = &parts {
        for p in parts {
            let value = match &p.filename {
                Some(name) => format!(
                    "<file {name} {} {} bytes>",
                    p.content_type.as_deref().unwrap_or("-"),
                    p.data.len()
                ),
                None => String::from_utf8_lossy(&p.data).into_owned(),
            };
            fields.insert(p.name.clone(), Value::String(value));
        }
    }
    shared
        .requests
        .record("POST", &uri, &headers, Value::Object(fields.clone()), &raw);
    if bearer(&headers) != Some(shared.api_key.as_str()) {
        return json_response(
            401,
            &json!({"message": "Unauthorized", "request_id": "c0ffee"}),
        );
    }
    if let Err(e) = parts {
        return bad_request(&format!("Invalid multipart body: {e}"));
    }
    let req = match check_body(&shared, Value::Object(fields.clone()), TRANSCRIPTION_FIELDS) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !["file", "file_url", "file_id"]
        .iter()
        .any(|f| req.contains_key(*f))
    {
        return bad_request("One of file, file_url or file_id must be provided");
    }
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    let text = "Bonjour, this is the fake Mistral transcript.";
    json_response(
        200,
        &json!({
            "model": model,
            "text": text,
            "language": req.get("language").cloned().unwrap_or(json!("en")),
            "segments": [],
            "usage": {"prompt_audio_seconds": 2, "prompt_tokens": 4, "total_tokens": 4 + words(text), "completion_tokens": words(text)},
        }),
    )
}
