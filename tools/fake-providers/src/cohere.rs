//! A fake of Cohere's v2 Chat API (`POST /v2/chat`), written from the public
//! API reference.
//!
//! It checks what the real API checks (the `Authorization: Bearer` key, the
//! body's required fields, roles, content item shapes, value ranges, that a
//! `tool` message answers a call the assistant made) and answers 400/401/404
//! with Cohere's error shape (`{"id","message"}`) when something is off. It is
//! stricter than the real API in one way: fields the reference does not list
//! are refused, so a translation that leaks an OpenAI field (`top_p`, `stop`,
//! `user`) fails a test instead of passing silently.
//!
//! Answers are deterministic: a text reply quoting the last user text (and
//! counting its images); a tool call with a `tool_plan` when the request offers
//! tools and the last turn is the user's (or `tool_choice` is `REQUIRED`);
//! a schema-shaped JSON text under `response_format`; a thinking block first
//! when `thinking` is enabled. Usage reports `billed_units` and, larger by
//! Cohere's prompt template, `tokens`. Streams follow the documented event
//! sequence (`message-start`, `content-*`, `tool-plan-delta`, `tool-call-*`,
//! `message-end`), each as `event: <type>` plus `data: <json>`.

mod endpoints;

use crate::common::{bind_local, FaultQueue, Recorder, Server};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Extra prompt tokens Cohere's template adds: `tokens.input_tokens` exceeds
/// `billed_units.input_tokens` by this much, as in the reference's examples.
pub const TEMPLATE_TOKENS: u64 = 200;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    /// The parsed body, or `Null` if it was not JSON.
    pub body: Value,
    pub raw: Bytes,
}

/// A way to make the next request go wrong, consumed by that request (after
/// the auth check, before body validation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and raw body; `retry_after` adds the header.
    Error {
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// Start a stream, then end it with `message-end` whose `finish_reason` is
    /// `ERROR` and whose `delta.error` is this message. Non-stream requests get
    /// a 500 with the message instead.
    StreamError { message: String },
    /// Start a stream and close it before `message-end`.
    TruncateStream,
}

/// Cohere's error body: `{"id","message"}`.
pub fn error_body(message: &str) -> String {
    json!({"id": "5a3e7a92-09c1-4d2c-b0c5-3f1e0d6b4a11", "message": message}).to_string()
}

/// A representative message the reference documents for a status.
pub fn documented_error(status: u16) -> &'static str {
    match status {
        400 => "invalid request: message must be at least 1 token long or tool results must be specified.",
        401 => "invalid api token",
        402 => "Please add a payment method to your account to continue.",
        404 => "model 'command-z' not found, make sure the correct model ID was used and that you have access to the model.",
        422 => "unprocessable entity: the request could not be processed.",
        429 => "You are using a Trial key, which is limited to 10 API calls / minute. You can continue to use the Trial key for free or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'. Contact us on 'https://discord.gg/XW44jPfYJu' or email us at support@cohere.com with any questions",
        499 => "request cancelled by the client",
        503 => "service unavailable, please try again later",
        504 => "gateway timeout, please try again later",
        _ => "internal server error, this has been reported to our developers",
    }
}

struct Shared {
    api_key: String,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<Fault>,
    counter: AtomicU64,
}

/// A running fake. Dropping it stops the server.
pub struct FakeCohere {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0` and serves on the current tokio runtime; requests must
/// carry `Authorization: Bearer <api_key>`.
pub async fn start(api_key: &str) -> std::io::Result<FakeCohere> {
    let listener = bind_local().await?;
    start_on(listener, api_key).await
}

/// Serves on a listener the caller bound (the `fake-providers` binary binds
/// the address it was given). Besides `POST /v2/chat` (and `/v2/embed`,
/// `/v2/rerank`, see the `endpoints` module) it answers
/// `GET /__requests` with what it recorded, as a JSON array of
/// `{method, path, query, headers, body}`, for tests in another process.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeCohere> {
    let shared = Arc::new(Shared {
        api_key: api_key.to_string(),
        requests: Recorder::new(),
        faults: FaultQueue::new(),
        counter: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v2/chat", post(chat))
        .route("/v2/embed", post(endpoints::embed))
        .route("/v2/rerank", post(endpoints::rerank))
        .route("/__requests", get(recorded))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(FakeCohere { shared, server })
}

impl FakeCohere {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v2`, the shape of Cohere's v2 base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v2", self.addr())
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// The next request gets this status and raw body.
    pub fn set_next_error(&self, status: u16, body: impl Into<String>) {
        self.push_fault(Fault::Error {
            status,
            body: body.into(),
            retry_after: None,
        });
    }

    /// The next request gets the documented error for `status` (429 also
    /// carries `retry-after: 1`).
    pub fn set_next_documented_error(&self, status: u16) {
        self.push_fault(Fault::Error {
            status,
            body: error_body(documented_error(status)),
            retry_after: (status == 429).then_some(1),
        });
    }

    /// Queue a fault; each request consumes one.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults.push(fault);
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

fn respond(status: u16, content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(
        "x-trial-endpoint-call-limit",
        HeaderValue::from_static("40"),
    );
    r
}

fn error_response(status: u16, message: &str) -> Response {
    respond(status, "application/json", Body::from(error_body(message)))
}

fn invalid(message: impl AsRef<str>) -> Response {
    error_response(400, &format!("invalid request: {}", message.as_ref()))
}

impl RecordedRequest {
    /// `{method, path, query, headers, body}`; repeated headers are joined with `, `.
    pub fn to_json(&self) -> Value {
        crate::common::request_json(
            &self.method,
            &self.path,
            self.query.as_deref(),
            &self.headers,
            &self.body,
        )
    }
}

/// `GET /__requests`: everything recorded so far, oldest first.
async fn recorded(State(shared): State<Arc<Shared>>) -> Response {
    let all = shared.requests.to_json(RecordedRequest::to_json);
    respond(200, "application/json", Body::from(all.to_string()))
}

async fn not_found() -> Response {
    error_response(404, "404 page not found")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The models this fake knows: Command and Aya families.
fn known_model(model: &str) -> bool {
    model.starts_with("command") || model.starts_with("c4ai-aya")
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.requests.push(RecordedRequest {
        method: "POST".to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: body.clone(),
        raw: raw.clone(),
    });

    match bearer(&headers) {
        None => return error_response(401, "no api key supplied"),
        Some(k) if k != shared.api_key => return error_response(401, "invalid api token"),
        Some(_) => {}
    }
    let json_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return invalid("content-type must be application/json");
    }

    let fault = shared.faults.pop();
    if let Some(Fault::Error {
        status,
        body,
        retry_after,
    }) = &fault
    {
        let content_type = if serde_json::from_str::<Value>(body).is_ok() {
            "application/json"
        } else {
            "text/html"
        };
        let mut r = respond(*status, content_type, Body::from(body.clone()));
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        return r;
    }

    if body.is_null() {
        return invalid("cannot parse the request body as JSON");
    }
    if let Err(message) = validate(&body) {
        return invalid(message);
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if !known_model(model) {
        return error_response(
            404,
            &format!("model '{model}' not found, make sure the correct model ID was used and that you have access to the model."),
        );
    }
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    if let (false, Some(Fault::StreamError { message })) = (stream, &fault) {
        return error_response(500, message);
    }
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let reply = plan_reply(&body, n);
    if stream {
        let events = stream_events(&reply, fault.as_ref());
        let mut r = respond(
            200,
            "text/event-stream",
            Body::from_stream(futures_util::stream::iter(
                events.into_iter().map(Ok::<Bytes, Infallible>),
            )),
        );
        r.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        r
    } else {
        respond(
            200,
            "application/json",
            Body::from(reply.to_json().to_string()),
        )
    }
}

// ---------------------------------------------------------------------------
// Validation, as the reference describes the request
// ---------------------------------------------------------------------------

const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "stream",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "priority",
];

fn extra_keys(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) if path.is_empty() => {
            Err(format!("unknown field: parameter {k} is not a valid field"))
        }
        Some(k) => Err(format!(
            "unknown field: parameter {path}.{k} is not a valid field"
        )),
        None => Ok(()),
    }
}

fn number_in(
    obj: &Map<String, Value>,
    key: &str,
    lo: f64,
    hi: Option<f64>,
) -> Result<Option<f64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let x = v.as_f64().ok_or(format!("{key} must be a number"))?;
            if x < lo || hi.is_some_and(|h| x > h) {
                return Err(match hi {
                    Some(h) => format!("{key} must be between {lo} and {h}, inclusive"),
                    None => format!("{key} must be at least {lo}"),
                });
            }
            Ok(Some(x))
        }
    }
}

fn validate(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("body must be a JSON object")?;
    extra_keys(obj, TOP_LEVEL, "")?;
    match obj.get("model") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => return Err("model must be a string".into()),
        None => return Err("model is required".into()),
    }
    if obj.get("stream").is_some_and(|s| !s.is_boolean()) {
        return Err("stream must be a boolean".into());
    }
    let tool_names = validate_tools(obj.get("tools"))?;
    validate_messages(obj.get("messages"))?;
    match obj.get("tool_choice") {
        None => {}
        Some(Value::String(c)) if c == "REQUIRED" && tool_names.is_empty() => {
            return Err("tool_choice REQUIRED requires tools to be specified".into());
        }
        Some(Value::String(c)) if c == "REQUIRED" || c == "NONE" => {}
        Some(_) => return Err("tool_choice must be one of REQUIRED, NONE".into()),
    }
    if obj.get("strict_tools").is_some_and(|s| !s.is_boolean()) {
        return Err("strict_tools must be a boolean".into());
    }
    if let Some(m) = obj.get("max_tokens") {
        if m.as_u64().is_none_or(|n| n < 1) {
            return Err("max_tokens must be a positive integer".into());
        }
    }
    number_in(obj, "temperature", 0.0, None)?;
    number_in(obj, "p", 0.01, Some(0.99))?;
    number_in(obj, "frequency_penalty", 0.0, Some(1.0))?;
    number_in(obj, "presence_penalty", 0.0, Some(1.0))?;
    if let Some(k) = obj.get("k") {
        if k.as_u64().is_none_or(|k| k > 500) {
            return Err("k must be an integer between 0 and 500, inclusive".into());
        }
    }
    if obj.get("seed").is_some_and(|s| s.as_i64().is_none()) {
        return Err("seed must be an integer".into());
    }
    if let Some(stops) = obj.get("stop_sequences") {
        let list = stops
            .as_array()
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or("stop_sequences must be a list of strings")?;
        if list.len() > 5 {
            return Err("stop_sequences can have at most 5 items".into());
        }
    }
    if let Some(rf) = obj.get("response_format") {
        let rf = rf.as_object().ok_or("response_format must be an object")?;
        extra_keys(rf, &["type", "json_schema"], "response_format")?;
        match rf.get("type").and_then(Value::as_str) {
            Some("text") if rf.contains_key("json_schema") => {
                return Err("response_format.json_schema must not be set when type is text".into())
            }
            Some("text" | "json_object") => {}
            _ => return Err("response_format.type must be one of text, json_object".into()),
        }
        if rf.get("json_schema").is_some_and(|s| !s.is_object()) {
            return Err("response_format.json_schema must be an object".into());
        }
    }
    if let Some(t) = obj.get("thinking") {
        let t = t.as_object().ok_or("thinking must be an object")?;
        extra_keys(t, &["type", "token_budget"], "thinking")?;
        match t.get("type").and_then(Value::as_str) {
            Some("enabled" | "disabled") => {}
            _ => return Err("thinking.type must be one of enabled, disabled".into()),
        }
        if t.get("token_budget")
            .is_some_and(|b| b.as_u64().is_none_or(|b| b < 1))
        {
            return Err("thinking.token_budget must be a positive integer".into());
        }
    }
    if let Some(mode) = obj.get("safety_mode") {
        if !matches!(mode.as_str(), Some("CONTEXTUAL" | "STRICT" | "OFF")) {
            return Err("safety_mode must be one of CONTEXTUAL, STRICT, OFF".into());
        }
    }
    Ok(())
}

fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_tools(tools: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(tools) = tools else {
        return Ok(Vec::new());
    };
    let tools = tools.as_array().ok_or("tools must be a list")?;
    let mut names = Vec::with_capacity(tools.len());
    for (k, t) in tools.iter().enumerate() {
        let path = format!("tools[{k}]");
        let obj = t.as_object().ok_or(format!("{path} must be an object"))?;
        extra_keys(obj, &["type", "function"], &path)?;
        if obj.get("type").and_then(Value::as_str) != Some("function") {
            return Err(format!("{path}.type must be function"));
        }
        let f = obj
            .get("function")
            .and_then(Value::as_object)
            .ok_or(format!("{path}.function is required"))?;
        extra_keys(
            f,
            &["name", "description", "parameters"],
            &format!("{path}.function"),
        )?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or(format!("{path}.function.name is required"))?;
        if !valid_tool_name(name) {
            return Err(format!("{path}.function.name must match ^[a-zA-Z0-9_-]+$"));
        }
        if f.get("description").is_some_and(|d| !d.is_string()) {
            return Err(format!("{path}.function.description must be a string"));
        }
        let params = f
            .get("parameters")
            .ok_or(format!("{path}.function.parameters is required"))?;
        if params.get("type").and_then(Value::as_str) != Some("object") {
            return Err(format!(
                "{path}.function.parameters must be a JSON schema of type object"
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("duplicate tool name: {name}"));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

fn item_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

/// A string, or a non-empty list of items whose types are in `allowed`.
fn validate_content(
    content: Option<&Value>,
    allowed: &[&str],
    path: &str,
    required: bool,
) -> Result<(), String> {
    let items = match content {
        None | Some(Value::Null) if !required => return Ok(()),
        None | Some(Value::Null) => return Err(format!("{path} is required")),
        Some(Value::String(_)) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(format!(
                "{path} must be a string or a list of content items"
            ))
        }
    };
    for (j, item) in items.iter().enumerate() {
        let p = format!("{path}[{j}]");
        let obj = item.as_object().ok_or(format!("{p} must be an object"))?;
        let ty = item_type(item);
        if !allowed.contains(&ty) {
            return Err(format!(
                "{p}.type must be one of {}, got '{ty}'",
                allowed.join(", ")
            ));
        }
        match ty {
            "text" => {
                extra_keys(obj, &["type", "text"], &p)?;
                if !obj.get("text").is_some_and(Value::is_string) {
                    return Err(format!("{p}.text is required"));
                }
            }
            "thinking" => {
                extra_keys(obj, &["type", "thinking"], &p)?;
                if !obj.get("thinking").is_some_and(Value::is_string) {
                    return Err(format!("{p}.thinking is required"));
                }
            }
            "image_url" => {
                extra_keys(obj, &["type", "image_url"], &p)?;
                let image = obj
                    .get("image_url")
                    .and_then(Value::as_object)
                    .ok_or(format!("{p}.image_url is required"))?;
                extra_keys(image, &["url", "detail"], &format!("{p}.image_url"))?;
                let url = image
                    .get("url")
                    .and_then(Value::as_str)
                    .ok_or(format!("{p}.image_url.url is required"))?;
                validate_image_url(url, &format!("{p}.image_url.url"))?;
                if let Some(d) = image.get("detail") {
                    if !matches!(d.as_str(), Some("auto" | "low" | "high")) {
                        return Err(format!(
                            "{p}.image_url.detail must be one of auto, low, high"
                        ));
                    }
                }
            }
            "document" => {
                extra_keys(obj, &["type", "document"], &p)?;
                if !obj
                    .get("document")
                    .and_then(|d| d.get("data"))
                    .is_some_and(|d| d.is_string() || d.is_object())
                {
                    return Err(format!("{p}.document.data is required"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

const IMAGE_MEDIA_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn validate_image_url(url: &str, path: &str) -> Result<(), String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or(format!("{path}: invalid data URI"))?;
        let media_type = meta.split(';').next().unwrap_or("");
        if !meta.ends_with(";base64") {
            return Err(format!("{path}: data URIs must be base64 encoded"));
        }
        if !IMAGE_MEDIA_TYPES.contains(&media_type) {
            return Err(format!(
                "{path}: unsupported image type '{media_type}', supported types are PNG, JPEG, WEBP and GIF"
            ));
        }
        if !is_base64(data) {
            return Err(format!("{path}: the image data is not valid base64"));
        }
        Ok(())
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(format!("{path} must be a base64 data URI or a web URL"))
    }
}

fn validate_messages(messages: Option<&Value>) -> Result<(), String> {
    let messages = match messages {
        None => return Err("messages is required".into()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("messages must be a list".into()),
    };
    if messages.is_empty() {
        return Err("messages must not be empty".into());
    }
    // Ids of tool calls made so far, and those already answered.
    let mut calls: HashSet<String> = HashSet::new();
    let mut answered: HashSet<String> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let obj = m.as_object().ok_or(format!("{path} must be an object"))?;
        let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
        let content = obj.get("content");
        let content_path = format!("{path}.content");
        match role {
            "system" => {
                extra_keys(obj, &["role", "content"], &path)?;
                validate_content(content, &["text"], &content_path, true)?;
            }
            "user" => {
                extra_keys(obj, &["role", "content"], &path)?;
                validate_content(
                    content,
                    &["text", "image_url", "document"],
                    &content_path,
                    true,
                )?;
            }
            "assistant" => {
                extra_keys(
                    obj,
                    &["role", "content", "tool_calls", "tool_plan", "citations"],
                    &path,
                )?;
                validate_content(content, &["text", "thinking"], &content_path, false)?;
                let tool_calls = obj.get("tool_calls").and_then(Value::as_array);
                let has_content = match content {
                    Some(Value::String(s)) => !s.is_empty(),
                    Some(Value::Array(a)) => !a.is_empty(),
                    _ => false,
                };
                if !has_content && tool_calls.is_none_or(Vec::is_empty) {
                    return Err(format!(
                        "{path}: an assistant message must have content or tool_calls"
                    ));
                }
                if obj.get("tool_plan").is_some_and(|p| !p.is_string()) {
                    return Err(format!("{path}.tool_plan must be a string"));
                }
                for (k, call) in tool_calls.into_iter().flatten().enumerate() {
                    let p = format!("{path}.tool_calls[{k}]");
                    let c = call.as_object().ok_or(format!("{p} must be an object"))?;
                    extra_keys(c, &["id", "type", "function"], &p)?;
                    let id = c
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .ok_or(format!("{p}.id is required"))?;
                    if c.get("type").and_then(Value::as_str) != Some("function") {
                        return Err(format!("{p}.type must be function"));
                    }
                    let f = c
                        .get("function")
                        .and_then(Value::as_object)
                        .ok_or(format!("{p}.function is required"))?;
                    extra_keys(f, &["name", "arguments"], &format!("{p}.function"))?;
                    if !f.get("name").is_some_and(Value::is_string) {
                        return Err(format!("{p}.function.name is required"));
                    }
                    let args = f
                        .get("arguments")
                        .and_then(Value::as_str)
                        .ok_or(format!("{p}.function.arguments must be a string"))?;
                    if !serde_json::from_str::<Value>(args).is_ok_and(|v| v.is_object()) {
                        return Err(format!(
                            "{p}.function.arguments must be a JSON object encoded as a string"
                        ));
                    }
                    calls.insert(id.to_string());
                }
            }
            "tool" => {
                extra_keys(obj, &["role", "tool_call_id", "content"], &path)?;
                let id = obj
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or(format!("{path}.tool_call_id is required"))?;
                if !calls.contains(id) {
                    return Err(format!(
                        "{path}: tool_call_id '{id}' does not match any tool call in a previous assistant message"
                    ));
                }
                if !answered.insert(id.to_string()) {
                    return Err(format!(
                        "{path}: tool_call_id '{id}' already has a tool result"
                    ));
                }
                validate_content(content, &["text", "document"], &content_path, true)?;
            }
            other => {
                return Err(format!(
                    "{path}.role must be one of system, user, assistant, tool, got '{other}'"
                ))
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Deterministic answers
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

#[derive(Clone, Debug)]
struct Reply {
    id: String,
    thinking: Option<String>,
    text: Option<String>,
    tool_plan: Option<String>,
    tool_calls: Vec<ToolCall>,
    finish_reason: &'static str,
    billed_input: u64,
    output: u64,
}

impl Reply {
    fn usage(&self) -> Value {
        json!({
            "billed_units": {"input_tokens": self.billed_input, "output_tokens": self.output},
            "tokens": {
                "input_tokens": self.billed_input + TEMPLATE_TOKENS,
                "output_tokens": self.output,
            },
        })
    }

    fn to_json(&self) -> Value {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        let mut content = Vec::new();
        if let Some(t) = &self.thinking {
            content.push(json!({"type": "thinking", "thinking": t}));
        }
        if let Some(t) = &self.text {
            content.push(json!({"type": "text", "text": t}));
        }
        if !content.is_empty() {
            message.insert("content".into(), Value::Array(content));
        }
        if let Some(plan) = &self.tool_plan {
            message.insert("tool_plan".into(), json!(plan));
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        json!({
            "id": self.id,
            "finish_reason": self.finish_reason,
            "message": message,
            "usage": self.usage(),
        })
    }
}

/// Rough token estimate: four characters a token.
fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// The minimal instance a schema describes, so tool arguments and JSON answers validate.
fn instance(schema: &Value, name: &str) -> Value {
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return instance(first, name);
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(types)) => types.iter().find_map(Value::as_str).unwrap_or("string"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), instance(v, k));
                }
            }
            Value::Object(out)
        }
        "array" => Value::Array(vec![schema
            .get("items")
            .map_or(Value::Null, |i| instance(i, name))]),
        "integer" => json!(42),
        "number" => json!(21.5),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ if name.contains("location") || name.contains("city") => json!("Toronto"),
        _ => json!(format!("example {name}").trim().to_string()),
    }
}

fn content_text(content: Option<&Value>) -> (String, usize) {
    match content {
        Some(Value::String(s)) => (s.clone(), 0),
        Some(Value::Array(items)) => {
            let texts: Vec<&str> = items
                .iter()
                .filter(|i| item_type(i) == "text")
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .collect();
            let images = items.iter().filter(|i| item_type(i) == "image_url").count();
            (texts.join(" "), images)
        }
        _ => (String::new(), 0),
    }
}

fn plan_reply(body: &Value, n: u64) -> Reply {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let billed_input = tokens(
        messages
            .iter()
            .map(|m| m.get("content").map_or(0, |c| c.to_string().len()))
            .sum(),
    );
    // The tool results that end the conversation, if it ends with any.
    let trailing_results: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        .map(|m| content_text(m.get("content")).0)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let (user_text, images) = content_text(last_user.and_then(|m| m.get("content")));

    let mut reply = Reply {
        id: format!("c14c80c3-18eb-4519-9460-{n:012x}"),
        thinking: None,
        text: None,
        tool_plan: None,
        tool_calls: Vec::new(),
        finish_reason: "COMPLETE",
        billed_input,
        output: 0,
    };
    let thinking_on = body
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        == Some("enabled");
    if thinking_on {
        reply.thinking = Some("The user wants a short answer. Let me think it through.".into());
    }

    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let choice = body.get("tool_choice").and_then(Value::as_str);
    let wants_tool = !tools.is_empty()
        && choice != Some("NONE")
        && (trailing_results.is_empty() || choice == Some("REQUIRED"));
    let format = body.get("response_format");
    if let Some(tool) = tools.first().filter(|_| wants_tool) {
        let f = tool.get("function").unwrap_or(&Value::Null);
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let args = instance(f.get("parameters").unwrap_or(&Value::Null), "");
        reply.tool_plan = Some(format!("I will use the {name} tool to help with that."));
        reply.tool_calls.push(ToolCall {
            id: format!("{name}_{:012x}", n * 7919),
            name,
            arguments: serde_json::to_string_pretty(&args).unwrap_or_else(|_| "{}".into()),
        });
        reply.finish_reason = "TOOL_CALL";
    } else if format.and_then(|f| f.get("type")).and_then(Value::as_str) == Some("json_object") {
        let text = match format.and_then(|f| f.get("json_schema")) {
            Some(schema) => instance(schema, ""),
            None => json!({"answer": format!("You said: {user_text}")}),
        };
        reply.text = Some(text.to_string());
    } else {
        let mut text = if trailing_results.is_empty() {
            format!("Hello from fake Cohere! You said: {user_text}")
        } else {
            format!("Based on the tool results: {}", trailing_results.join("; "))
        };
        if images > 0 && trailing_results.is_empty() {
            text.push_str(&format!(" (I see {images} image(s).)"));
        }
        let stops = body.get("stop_sequences").and_then(Value::as_array);
        let hit = stops
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|s| text.find(s))
            .min();
        if let Some(at) = hit {
            text.truncate(at);
            reply.finish_reason = "STOP_SEQUENCE";
        }
        // One word per token keeps max_tokens observable in tests.
        let max_tokens = body.get("max_tokens").and_then(Value::as_u64);
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        if let Some(max) = max_tokens.filter(|m| words.len() as u64 > *m) {
            text = words[..max as usize].concat().trim_end().to_string();
            reply.finish_reason = "MAX_TOKENS";
        }
        reply.text = Some(text);
    }
    let words = |s: &Option<String>| s.as_deref().map_or(0, |t| t.split_whitespace().count());
    reply.output = (words(&reply.thinking)
        + words(&reply.text)
        + words(&reply.tool_plan)
        + reply
            .tool_calls
            .iter()
            .map(|c| tokens(c.arguments.len()) as usize)
            .sum::<usize>())
    .max(1) as u64;
    reply
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

fn event(data: &Value) -> Bytes {
    let name = data.get("type").and_then(Value::as_str).unwrap_or("");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Splits at char boundaries into pieces of about `size` bytes.
fn pieces(s: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in s.char_indices() {
        if i - start >= size {
            out.push(&s[start..i]);
            start = i;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn stream_events(reply: &Reply, fault: Option<&Fault>) -> Vec<Bytes> {
    let mut out = vec![event(&json!({
        "id": reply.id,
        "type": "message-start",
        "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}},
    }))];
    // Every piece after message-start, so a fault can cut in after the first one.
    let mut body: Vec<Value> = Vec::new();
    let mut index = 0;
    if let Some(t) = &reply.thinking {
        body.push(json!({"type": "content-start", "index": index,
            "delta": {"message": {"content": {"type": "thinking", "thinking": ""}}}}));
        for p in pieces(t, 16) {
            body.push(json!({"type": "content-delta", "index": index,
                "delta": {"message": {"content": {"thinking": p}}}}));
        }
        body.push(json!({"type": "content-end", "index": index}));
        index += 1;
    }
    if let Some(t) = &reply.text {
        body.push(json!({"type": "content-start", "index": index,
            "delta": {"message": {"content": {"type": "text", "text": ""}}}}));
        for p in t.split_inclusive(' ').collect::<Vec<_>>().chunks(2) {
            body.push(json!({"type": "content-delta", "index": index,
                "delta": {"message": {"content": {"text": p.concat()}}}}));
        }
        body.push(json!({"type": "content-end", "index": index}));
    }
    if let Some(plan) = &reply.tool_plan {
        for p in plan.split_inclusive(' ') {
            body.push(json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": p}}}));
        }
    }
    for (i, call) in reply.tool_calls.iter().enumerate() {
        body.push(
            json!({"type": "tool-call-start", "index": i, "delta": {"message": {"tool_calls": {
                "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""},
            }}}}),
        );
        for p in pieces(&call.arguments, 7) {
            body.push(json!({"type": "tool-call-delta", "index": i,
                "delta": {"message": {"tool_calls": {"function": {"arguments": p}}}}}));
        }
        body.push(json!({"type": "tool-call-end", "index": i}));
    }
    let cut = matches!(
        fault,
        Some(Fault::StreamError { .. } | Fault::TruncateStream)
    );
    for (k, piece) in body.iter().enumerate() {
        out.push(event(piece));
        if cut && k >= 1 {
            if let Some(Fault::StreamError { message }) = fault {
                out.push(event(&json!({"type": "message-end", "delta": {
                    "error": message,
                    "finish_reason": "ERROR",
                    "usage": reply.usage(),
                }})));
            }
            return out;
        }
    }
    out.push(event(&json!({
        "type": "message-end",
        "delta": {"finish_reason": reply.finish_reason, "usage": reply.usage()},
    })));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ok_body() -> Value {
        json!({
            "model": "command-a-03-2025",
            "messages": [{"role": "user", "content": "Tell me about LLMs"}],
            "stream": false,
        })
    }

    fn with(mut body: Value, key: &str, v: Value) -> Value {
        body.as_object_mut().unwrap().insert(key.into(), v);
        body
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}])
    }

    #[test]
    fn documented_minimal_request_is_valid() {
        validate(&ok_body()).unwrap();
    }

    #[test]
    fn validation_matches_the_reference() {
        let mut no_model = ok_body();
        no_model.as_object_mut().unwrap().remove("model");
        assert_eq!(validate(&no_model).unwrap_err(), "model is required");
        let cases = [
            with(ok_body(), "top_p", json!(0.5)),
            with(ok_body(), "stop", json!(["x"])),
            with(ok_body(), "user", json!("u")),
            with(ok_body(), "p", json!(1.0)),
            with(ok_body(), "k", json!(501)),
            with(ok_body(), "frequency_penalty", json!(-0.1)),
            with(ok_body(), "max_tokens", json!(0)),
            with(ok_body(), "tool_choice", json!("required")),
            with(ok_body(), "tool_choice", json!("REQUIRED")),
            with(ok_body(), "response_format", json!({"type": "json_schema"})),
            with(
                ok_body(),
                "thinking",
                json!({"type": "enabled", "budget_tokens": 10}),
            ),
            with(ok_body(), "messages", json!([])),
            with(
                ok_body(),
                "messages",
                json!([{"role": "developer", "content": "x"}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "user", "content": [{"type": "image", "url": "https://x/y.png"}]}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "tool", "tool_call_id": "x", "content": "r"}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "user", "content": "q"}, {"role": "assistant"}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]),
            ),
            with(
                ok_body(),
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            ),
            with(
                ok_body(),
                "tools",
                json!([{"name": "f", "parameter_definitions": {}}]),
            ),
        ];
        for body in cases {
            assert!(validate(&body).is_err(), "should be rejected: {body}");
        }
    }

    #[test]
    fn a_tool_round_trip_is_valid() {
        let body = with(
            with(
                ok_body(),
                "messages",
                json!([
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "q"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]},
                    {"role": "assistant", "content": "Checking.", "tool_calls": [
                        {"id": "get_weather_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Oslo\"}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "get_weather_1", "content": "3C"},
                ]),
            ),
            "tools",
            weather(),
        );
        validate(&body).unwrap();
        let reply = plan_reply(&body, 1).to_json();
        assert_eq!(reply["finish_reason"], "COMPLETE");
        assert_eq!(
            reply["message"]["content"][0]["text"],
            "Based on the tool results: 3C"
        );
    }

    #[test]
    fn tool_requests_get_a_planned_schema_shaped_call() {
        let body = with(ok_body(), "tools", weather());
        let reply = plan_reply(&body, 1).to_json();
        assert_eq!(reply["finish_reason"], "TOOL_CALL");
        assert!(reply["message"].get("content").is_none());
        assert!(reply["message"]["tool_plan"].is_string());
        let call = &reply["message"]["tool_calls"][0];
        assert!(call["id"].as_str().unwrap().starts_with("get_weather_"));
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"location": "Toronto"}));
        let none = with(
            with(ok_body(), "tools", weather()),
            "tool_choice",
            json!("NONE"),
        );
        assert_eq!(plan_reply(&none, 1).to_json()["finish_reason"], "COMPLETE");
    }

    #[test]
    fn usage_bills_less_than_the_model_saw() {
        let u = plan_reply(&ok_body(), 1).to_json()["usage"].clone();
        assert_eq!(
            u["tokens"]["input_tokens"].as_u64().unwrap(),
            u["billed_units"]["input_tokens"].as_u64().unwrap() + TEMPLATE_TOKENS
        );
        assert_eq!(u["billed_units"]["output_tokens"], 10);
    }

    #[test]
    fn stream_reassembles_to_the_non_stream_reply() {
        let body = with(ok_body(), "tools", weather());
        for body in [ok_body(), body] {
            let reply = plan_reply(&body, 3);
            let full = reply.to_json();
            let mut text = String::new();
            let mut plan = String::new();
            let mut args = String::new();
            let mut names = Vec::new();
            for e in stream_events(&reply, None) {
                let s = std::str::from_utf8(&e).unwrap();
                let (head, data) = s.split_once("\ndata: ").unwrap();
                let v: Value = serde_json::from_str(data.trim_end()).unwrap();
                assert_eq!(head.trim_start_matches("event: "), v["type"]);
                names.push(v["type"].as_str().unwrap().to_string());
                let m = &v["delta"]["message"];
                text.push_str(m["content"]["text"].as_str().unwrap_or(""));
                plan.push_str(m["tool_plan"].as_str().unwrap_or(""));
                args.push_str(
                    m["tool_calls"]["function"]["arguments"]
                        .as_str()
                        .unwrap_or(""),
                );
                if v["type"] == "message-end" {
                    assert_eq!(v["delta"]["finish_reason"], full["finish_reason"]);
                    assert_eq!(v["delta"]["usage"], full["usage"]);
                }
            }
            assert_eq!(names.first().unwrap(), "message-start");
            assert_eq!(names.last().unwrap(), "message-end");
            assert_eq!(
                text,
                full["message"]["content"][0]["text"].as_str().unwrap_or("")
            );
            assert_eq!(plan, full["message"]["tool_plan"].as_str().unwrap_or(""));
            assert_eq!(
                args,
                full["message"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap_or("")
            );
        }
    }

    #[test]
    fn stop_sequences_and_max_tokens_shape_the_text() {
        let body = with(ok_body(), "stop_sequences", json!(["Cohere"]));
        let reply = plan_reply(&body, 1).to_json();
        assert_eq!(reply["finish_reason"], "STOP_SEQUENCE");
        assert_eq!(reply["message"]["content"][0]["text"], "Hello from fake ");
        let reply = plan_reply(&with(ok_body(), "max_tokens", json!(2)), 1).to_json();
        assert_eq!(reply["finish_reason"], "MAX_TOKENS");
        assert_eq!(reply["message"]["content"][0]["text"], "Hello from");
    }

    #[test]
    fn faults_cut_the_stream() {
        let reply = plan_reply(&ok_body(), 1);
        let cut = stream_events(&reply, Some(&Fault::TruncateStream));
        assert!(cut.len() < stream_events(&reply, None).len());
        assert!(!String::from_utf8_lossy(cut.last().unwrap()).contains("message-end"));
        let err = stream_events(
            &reply,
            Some(&Fault::StreamError {
                message: "boom".into(),
            }),
        );
        let last = String::from_utf8_lossy(err.last().unwrap()).to_string();
        assert!(last.contains("\"finish_reason\":\"ERROR\"") && last.contains("boom"));
    }
}
