//! A fake of Anthropic's Messages API (`POST /v1/messages`), written from the
//! public API reference.
//!
//! It checks what the real API checks (the `x-api-key` and `anthropic-version`
//! headers, the body's required fields, roles, content block shapes, unknown
//! fields, the pairing of `tool_use` and `tool_result`, thinking constraints)
//! and answers 400/401 with Anthropic's error shape when something is off, so a
//! translation bug fails a test instead of passing silently.
//!
//! Answers are deterministic: a text reply quoting the last user text; a
//! `tool_use` block when the request offers tools and the last user turn is
//! text; a schema-shaped JSON text under `output_config.format`; a thinking
//! block first when thinking is enabled. Streams follow the documented event
//! sequence, with tool input sent in `input_json_delta` pieces and usage
//! carrying the cache fields.

use crate::common::{bind_local, FaultQueue, Recorder, Server};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    /// The parsed body, or `Null` if it was not JSON.
    pub body: Value,
    pub raw: Bytes,
}

/// A way to make the next request go wrong, consumed by that request (after
/// the header checks, before body validation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and raw body; `retry_after` adds the header.
    Error {
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// Start a stream, then send an `error` event of this type and close.
    /// Non-stream requests get the error type's documented status instead.
    StreamError { error_type: String, message: String },
    /// Start a stream and close it before `message_stop`.
    TruncateStream,
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn error_body(error_type: &str, message: &str) -> String {
    json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    })
    .to_string()
}

/// The error type and a representative message the reference documents for a status.
pub fn documented_error(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request_error", "max_tokens: Field required"),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API.",
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => (
            "not_found_error",
            "The requested resource could not be found.",
        ),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        504 => ("timeout_error", "Request timed out."),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    }
}

/// The status the reference documents for an error type.
pub fn status_for_error_type(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

struct Shared {
    api_key: String,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<Fault>,
    counter: AtomicU64,
}

/// A running fake. Dropping it stops the server.
pub struct FakeAnthropic {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0` and serves on the current tokio runtime; requests must
/// carry `x-api-key: <api_key>`.
pub async fn start(api_key: &str) -> std::io::Result<FakeAnthropic> {
    FakeAnthropic::start(api_key).await
}

impl FakeAnthropic {
    pub async fn start(api_key: &str) -> std::io::Result<FakeAnthropic> {
        let listener = bind_local().await?;
        Self::start_on(listener, api_key).await
    }

    /// Serves on a listener the caller bound (the `fake-providers` binary binds
    /// the address it was given). Besides the Messages API, every fake answers
    /// `GET /__requests` with what it recorded, as a JSON array of
    /// `{method, path, query, headers, body}`, for tests in another process.
    pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeAnthropic> {
        let shared = Arc::new(Shared {
            api_key: api_key.to_string(),
            requests: Recorder::new(),
            faults: FaultQueue::new(),
            counter: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/__requests", get(recorded))
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let server = Server::spawn(listener, app)?;
        Ok(FakeAnthropic { shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v1`, the shape of Anthropic's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr())
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
    /// carries `retry-after: 1`, as the real API's rate limiter sends).
    pub fn set_next_documented_error(&self, status: u16) {
        let (ty, message) = documented_error(status);
        self.push_fault(Fault::Error {
            status,
            body: error_body(ty, message),
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

pub(crate) fn respond(status: u16, content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(
        "request-id",
        HeaderValue::from_static("req_011CSHoEeqs5C35K2UUqR7Fy"),
    );
    r
}

pub(crate) fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    respond(
        status,
        "application/json",
        Body::from(error_body(error_type, message)),
    )
}

fn invalid(message: impl AsRef<str>) -> Response {
    error_response(400, "invalid_request_error", message.as_ref())
}

impl RecordedRequest {
    /// `{method, path, query, headers, body}`; repeated headers are joined
    /// with `, `. `query` is always null: the Messages API takes none.
    pub fn to_json(&self) -> Value {
        crate::common::request_json(&self.method, &self.path, None, &self.headers, &self.body)
    }
}

/// `GET /__requests`: everything recorded so far, oldest first.
async fn recorded(State(shared): State<Arc<Shared>>) -> Response {
    let all = shared.requests.to_json(RecordedRequest::to_json);
    respond(200, "application/json", Body::from(all.to_string()))
}

async fn not_found() -> Response {
    error_response(404, "not_found_error", "Not found")
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.requests.push(RecordedRequest {
        method: "POST".to_string(),
        path: "/v1/messages".to_string(),
        headers: headers.clone(),
        body: body.clone(),
        raw: raw.clone(),
    });

    match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        None => return error_response(401, "authentication_error", "x-api-key header is required"),
        Some(k) if k != shared.api_key => {
            return error_response(401, "authentication_error", "invalid x-api-key")
        }
        Some(_) => {}
    }
    if headers.get("anthropic-version").is_none() {
        return invalid("anthropic-version: header is required");
    }
    let json_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return invalid("content-type: must be application/json");
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
        return invalid("There was an error parsing the body. Make sure it is valid JSON.");
    }
    if let Err(message) = validate(&body) {
        return invalid(message);
    }
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    if let (
        false,
        Some(Fault::StreamError {
            error_type,
            message,
        }),
    ) = (stream, &fault)
    {
        return error_response(status_for_error_type(error_type), error_type, message);
    }
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let reply = plan_reply(&body, n);
    if stream {
        let events = stream_events(&reply, fault.as_ref());
        let mut r = respond(
            200,
            "text/event-stream; charset=utf-8",
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
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "output_config",
    "container",
    "context_management",
    "mcp_servers",
];

fn extra_keys(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) if path.is_empty() => Err(format!("{k}: Extra inputs are not permitted")),
        Some(k) => Err(format!("{path}.{k}: Extra inputs are not permitted")),
        None => Ok(()),
    }
}

pub(crate) fn validate(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("body: Input should be a valid dictionary")?;
    extra_keys(obj, TOP_LEVEL, "")?;
    match obj.get("model") {
        None => return Err("model: Field required".into()),
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => return Err("model: Input should be a valid string".into()),
    }
    let max_tokens = match obj.get("max_tokens") {
        None => return Err("max_tokens: Field required".into()),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 => n,
            Some(_) => return Err("max_tokens: Input should be greater than or equal to 1".into()),
            None => return Err("max_tokens: Input should be a valid integer".into()),
        },
    };
    if let Some(stream) = obj.get("stream") {
        if !stream.is_boolean() {
            return Err("stream: Input should be a valid boolean".into());
        }
    }
    validate_system(obj.get("system"))?;
    validate_messages(obj.get("messages"))?;
    let temperature = range(obj, "temperature", 0.0, 1.0)?;
    let top_p = range(obj, "top_p", 0.0, 1.0)?;
    if let Some(k) = obj.get("top_k") {
        if k.as_u64().is_none() {
            return Err("top_k: Input should be a valid integer".into());
        }
    }
    if let Some(stops) = obj.get("stop_sequences") {
        let ok = stops
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return Err("stop_sequences: Input should be a valid list of strings".into());
        }
    }
    if let Some(meta) = obj.get("metadata") {
        let m = meta
            .as_object()
            .ok_or("metadata: Input should be a valid dictionary")?;
        extra_keys(m, &["user_id"], "metadata")?;
        if m.get("user_id")
            .is_some_and(|u| !u.is_string() && !u.is_null())
        {
            return Err("metadata.user_id: Input should be a valid string".into());
        }
    }
    let tool_names = validate_tools(obj.get("tools"))?;
    let forced = validate_tool_choice(obj.get("tool_choice"), &tool_names)?;
    if let Some(thinking) = obj.get("thinking") {
        let t = thinking
            .as_object()
            .ok_or("thinking: Input should be a valid dictionary")?;
        match t.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                let budget = t
                    .get("budget_tokens")
                    .and_then(Value::as_i64)
                    .ok_or("thinking.enabled.budget_tokens: Field required")?;
                if budget < 1024 {
                    return Err("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into());
                }
                if budget >= max_tokens {
                    return Err("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size".into());
                }
                thinking_constraints(temperature, top_p, obj.get("top_k"), forced)?;
            }
            Some("adaptive") => thinking_constraints(temperature, top_p, obj.get("top_k"), forced)?,
            Some("disabled") => {}
            _ => return Err("thinking.type: Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'".into()),
        }
    }
    if let Some(oc) = obj.get("output_config") {
        let oc = oc
            .as_object()
            .ok_or("output_config: Input should be a valid dictionary")?;
        extra_keys(oc, &["format", "effort"], "output_config")?;
        if let Some(format) = oc.get("format") {
            if format.get("type").and_then(Value::as_str) != Some("json_schema") {
                return Err("output_config.format.type: Input should be 'json_schema'".into());
            }
            if !format.get("schema").is_some_and(Value::is_object) {
                return Err("output_config.format.schema: Field required".into());
            }
        }
    }
    Ok(())
}

fn thinking_constraints(
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<&Value>,
    forced_tool: bool,
) -> Result<(), String> {
    if temperature.is_some_and(|t| t != 1.0) {
        return Err("`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility".into());
    }
    if top_p.is_some_and(|p| p < 0.95) {
        return Err(
            "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
                .into(),
        );
    }
    if top_k.is_some() {
        return Err("`top_k` must be unset when thinking is enabled.".into());
    }
    if forced_tool {
        return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
    }
    Ok(())
}

fn range(obj: &Map<String, Value>, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, String> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            Some(_) => Err(format!("{key}: Input should be less than or equal to {hi}")),
            None => Err(format!("{key}: Input should be a valid number")),
        },
    }
}

fn validate_system(system: Option<&Value>) -> Result<(), String> {
    match system {
        None | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(format!("system.{j}.type: Input should be 'text'"));
                }
                validate_block(b, "user", &format!("system.{j}"))?;
            }
            Ok(())
        }
        Some(_) => Err("system: Input should be a valid string or a list of text blocks".into()),
    }
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

fn validate_messages(messages: Option<&Value>) -> Result<(), String> {
    let messages = match messages {
        None => return Err("messages: Field required".into()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("messages: Input should be a valid list".into()),
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let last = messages.len() - 1;
    // tool_use ids of the previous assistant turn, awaiting their results.
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let obj = m
            .as_object()
            .ok_or(format!("messages.{i}: Input should be a valid dictionary"))?;
        extra_keys(obj, &["role", "content"], &format!("messages.{i}"))?;
        let role = match obj.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant")) => r,
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ))
            }
        };
        let blocks: Vec<Value> = match obj.get("content") {
            None => return Err(format!("messages.{i}.content: Field required")),
            Some(Value::String(s)) => {
                if s.is_empty() && !(role == "assistant" && i == last) {
                    return Err("messages: text content blocks must be non-empty".into());
                }
                vec![json!({"type": "text", "text": s})]
            }
            Some(Value::Array(a)) => {
                if a.is_empty() && !(role == "assistant" && i == last) {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
                for (j, b) in a.iter().enumerate() {
                    validate_block(b, role, &format!("messages.{i}.content.{j}"))?;
                }
                a.clone()
            }
            Some(_) => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid string or list"
                ))
            }
        };

        if role == "user" {
            let mut seen_other = false;
            let mut answered = HashSet::new();
            for (j, b) in blocks.iter().enumerate() {
                if block_type(b) != "tool_result" {
                    seen_other = true;
                    continue;
                }
                if seen_other {
                    return Err(format!(
                        "messages.{i}.content.{j}: tool_result blocks must come before any other content in a user message"
                    ));
                }
                let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                if !pending.iter().any(|p| p == id) {
                    return Err(format!(
                        "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    ));
                }
                answered.insert(id.to_string());
            }
            if let Some(missing) = pending.iter().find(|p| !answered.contains(p.as_str())) {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
                ));
            }
            pending.clear();
        } else {
            if let Some(missing) = pending.first() {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
                ));
            }
            // Consecutive assistant turns are combined by the API, so ids accumulate.
            pending.extend(
                blocks
                    .iter()
                    .filter(|b| block_type(b) == "tool_use")
                    .filter_map(|b| b.get("id").and_then(Value::as_str).map(str::to_string)),
            );
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

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_block(b: &Value, role: &str, path: &str) -> Result<(), String> {
    let obj = b
        .as_object()
        .ok_or(format!("{path}: Input should be a valid dictionary"))?;
    let ty = block_type(b);
    let user_only = ["image", "document", "tool_result"];
    let assistant_only = ["tool_use", "thinking", "redacted_thinking"];
    if role == "assistant" && user_only.contains(&ty) {
        return Err(format!(
            "{path}: `{ty}` blocks are not allowed in assistant messages"
        ));
    }
    if role == "user" && assistant_only.contains(&ty) {
        return Err(format!(
            "{path}: `{ty}` blocks are not allowed in user messages"
        ));
    }
    match ty {
        "text" => {
            extra_keys(obj, &["type", "text", "cache_control", "citations"], path)?;
            match obj.get("text").and_then(Value::as_str) {
                Some("") => Err("messages: text content blocks must be non-empty".into()),
                Some(_) => Ok(()),
                None => Err(format!("{path}.text: Field required")),
            }
        }
        "image" => {
            extra_keys(obj, &["type", "source", "cache_control"], path)?;
            let source = obj
                .get("source")
                .ok_or(format!("{path}.source: Field required"))?;
            match source.get("type").and_then(Value::as_str) {
                Some("base64") => {
                    let mt = source.get("media_type").and_then(Value::as_str).unwrap_or("");
                    if !IMAGE_MEDIA_TYPES.contains(&mt) {
                        return Err(format!("{path}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"));
                    }
                    let data = source.get("data").and_then(Value::as_str).unwrap_or("");
                    if !is_base64(data) {
                        return Err(format!("{path}.source.base64.data: The image data is not valid base64"));
                    }
                    Ok(())
                }
                Some("url") => {
                    let url = source.get("url").and_then(Value::as_str).unwrap_or("");
                    if url.starts_with("https://") || url.starts_with("http://") {
                        Ok(())
                    } else {
                        Err(format!("{path}.source.url.url: Input should be a valid URL"))
                    }
                }
                _ => Err(format!("{path}.source.type: Input tag does not match any of the expected tags: 'base64', 'url', 'file'")),
            }
        }
        "document" => {
            extra_keys(obj, &["type", "source", "title", "context", "citations", "cache_control"], path)?;
            let source = obj
                .get("source")
                .ok_or(format!("{path}.source: Field required"))?;
            match source.get("type").and_then(Value::as_str) {
                Some("base64") if source.get("media_type").and_then(Value::as_str) == Some("application/pdf") => Ok(()),
                Some("text" | "url" | "content" | "file") => Ok(()),
                _ => Err(format!("{path}.source: Input should be a valid document source")),
            }
        }
        "tool_use" => {
            extra_keys(obj, &["type", "id", "name", "input", "cache_control"], path)?;
            if !obj.get("id").and_then(Value::as_str).is_some_and(valid_id) {
                return Err(format!("{path}.id: String should match pattern '^[a-zA-Z0-9_-]+$'"));
            }
            if !obj.get("name").is_some_and(Value::is_string) {
                return Err(format!("{path}.name: Field required"));
            }
            if !obj.get("input").is_some_and(Value::is_object) {
                return Err(format!("{path}.input: Input should be a valid dictionary"));
            }
            Ok(())
        }
        "tool_result" => {
            extra_keys(obj, &["type", "tool_use_id", "content", "is_error", "cache_control"], path)?;
            if !obj.get("tool_use_id").and_then(Value::as_str).is_some_and(valid_id) {
                return Err(format!("{path}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'"));
            }
            match obj.get("content") {
                None | Some(Value::String(_)) => Ok(()),
                Some(Value::Array(parts)) => {
                    for (k, p) in parts.iter().enumerate() {
                        let pt = block_type(p);
                        if !matches!(pt, "text" | "image" | "document" | "search_result") {
                            return Err(format!("{path}.content.{k}.type: Input tag '{pt}' found using 'type' does not match any of the expected tags: 'text', 'image', 'search_result', 'document'"));
                        }
                        validate_block(p, "user", &format!("{path}.content.{k}"))?;
                    }
                    Ok(())
                }
                Some(_) => Err(format!("{path}.content: Input should be a valid string or list")),
            }
        }
        "thinking" => {
            extra_keys(obj, &["type", "thinking", "signature"], path)?;
            if obj.get("thinking").is_some_and(Value::is_string)
                && obj.get("signature").is_some_and(Value::is_string)
            {
                Ok(())
            } else {
                Err(format!("{path}: thinking blocks need `thinking` and `signature`"))
            }
        }
        "redacted_thinking" => {
            extra_keys(obj, &["type", "data"], path)?;
            Ok(())
        }
        other => Err(format!(
            "{path}.type: Input tag '{other}' found using 'type' does not match any of the expected tags"
        )),
    }
}

fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate_tools(tools: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(tools) = tools else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or("tools: Input should be a valid list")?;
    let mut names = Vec::with_capacity(tools.len());
    for (k, t) in tools.iter().enumerate() {
        let path = format!("tools.{k}");
        let obj = t
            .as_object()
            .ok_or(format!("{path}: Input should be a valid dictionary"))?;
        extra_keys(
            obj,
            &[
                "name",
                "description",
                "input_schema",
                "cache_control",
                "strict",
                "type",
            ],
            &path,
        )?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or(format!("{path}.name: Field required"))?;
        if !valid_tool_name(name) {
            return Err(format!(
                "{path}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            ));
        }
        let schema = obj
            .get("input_schema")
            .ok_or(format!("{path}.input_schema: Field required"))?;
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(format!(
                "{path}.input_schema.type: Input should be 'object'"
            ));
        }
        if obj.get("description").is_some_and(|d| !d.is_string()) {
            return Err(format!(
                "{path}.description: Input should be a valid string"
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!(
                "tools: Tool names must be unique, found duplicate `{name}`"
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Returns whether the choice forces a tool call.
fn validate_tool_choice(choice: Option<&Value>, tools: &[String]) -> Result<bool, String> {
    let Some(choice) = choice else {
        return Ok(false);
    };
    let obj = choice
        .as_object()
        .ok_or("tool_choice: Input should be a valid dictionary")?;
    if tools.is_empty() {
        return Err("tool_choice: tool_choice may only be specified while providing tools.".into());
    }
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
    match ty {
        "auto" | "any" => extra_keys(obj, &["type", "disable_parallel_tool_use"], "tool_choice")?,
        "none" => extra_keys(obj, &["type"], "tool_choice")?,
        "tool" => {
            extra_keys(obj, &["type", "name", "disable_parallel_tool_use"], "tool_choice")?;
            let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
            if !tools.iter().any(|t| t == name) {
                return Err(format!("tool_choice.tool.name: Tool '{name}' not found in provided tools"));
            }
        }
        _ => return Err("tool_choice.type: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'".into()),
    }
    if obj
        .get("disable_parallel_tool_use")
        .is_some_and(|v| !v.is_boolean())
    {
        return Err(
            "tool_choice.disable_parallel_tool_use: Input should be a valid boolean".into(),
        );
    }
    Ok(ty == "any" || ty == "tool")
}

// ---------------------------------------------------------------------------
// Deterministic answers
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum ReplyBlock {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Reply {
    id: String,
    model: String,
    blocks: Vec<ReplyBlock>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    input_tokens: u64,
    cache_read: u64,
    cache_creation: u64,
    output_tokens: u64,
}

impl Reply {
    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        })
    }

    pub(crate) fn to_json(&self) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| match b {
                ReplyBlock::Thinking {
                    thinking,
                    signature,
                } => {
                    json!({"type": "thinking", "thinking": thinking, "signature": signature})
                }
                ReplyBlock::Text(t) => json!({"type": "text", "text": t}),
                ReplyBlock::ToolUse { id, name, input } => {
                    json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
            })
            .collect();
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": self.usage(self.output_tokens),
        })
    }
}

/// Rough token estimate: four characters a token, as Anthropic's docs suggest.
fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// Input tokens split into (uncached, cache reads): everything up to the last
/// `cache_control` breakpoint counts as read from the cache.
fn input_usage(body: &Value) -> (u64, u64) {
    let mut pieces: Vec<&Value> = Vec::new();
    if let Some(Value::Array(s)) = body.get("system") {
        pieces.extend(s.iter());
    } else if let Some(s) = body.get("system") {
        pieces.push(s);
    }
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        for m in msgs {
            match m.get("content") {
                Some(Value::Array(blocks)) => pieces.extend(blocks.iter()),
                Some(other) => pieces.push(other),
                None => {}
            }
        }
    }
    let mut total = 0usize;
    let mut cached = 0usize;
    for p in pieces {
        total += p.to_string().len();
        if p.get("cache_control").is_some() {
            cached = total;
        }
    }
    let total = tokens(total);
    let cached = if cached == 0 {
        0
    } else {
        tokens(cached).min(total)
    };
    (total - cached, cached)
}

/// The minimal instance a schema describes, so tool inputs and JSON answers validate.
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
        "array" => {
            let item = schema
                .get("items")
                .map_or(Value::Null, |i| instance(i, name));
            Value::Array(vec![item])
        }
        "integer" => json!(42),
        "number" => json!(21.5),
        "boolean" => json!(true),
        "null" => Value::Null,
        _ if name.contains("location") || name.contains("city") => json!("San Francisco, CA"),
        _ => json!(format!("example {name}").trim().to_string()),
    }
}

/// What the last user turn said, and what it contained besides text.
struct LastUser {
    text: String,
    images: usize,
    documents: usize,
    tool_results: Vec<String>,
}

fn last_user(body: &Value) -> LastUser {
    let mut out = LastUser {
        text: String::new(),
        images: 0,
        documents: 0,
        tool_results: Vec::new(),
    };
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        });
    let Some(last) = last else {
        return out;
    };
    match last.get("content") {
        Some(Value::String(s)) => out.text = s.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for b in blocks {
                match block_type(b) {
                    "text" => texts.push(
                        b.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ),
                    "image" => out.images += 1,
                    "document" => out.documents += 1,
                    "tool_result" => out.tool_results.push(match b.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(parts)) => parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join(" "),
                        _ => String::new(),
                    }),
                    _ => {}
                }
            }
            out.text = texts.join(" ");
        }
        _ => {}
    }
    out
}

pub(crate) fn plan_reply(body: &Value, n: u64) -> Reply {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(1);
    let (input_tokens, cache_read) = input_usage(body);
    let user = last_user(body);
    let mut blocks = Vec::new();

    let thinking_on = body
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled");
    if thinking_on {
        blocks.push(ReplyBlock::Thinking {
            thinking: "The user wants a short answer. Let me think about it step by step.".into(),
            signature: format!("EqQBCgIYAhIMfake{n:04}signatureGgxBdjrkzLoky3dl1pkiMOYds"),
        });
    }

    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let choice = body.get("tool_choice");
    let choice_type = choice
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("auto");
    let answering_user_text = user.tool_results.is_empty() && !user.text.is_empty();
    let forced = matches!(choice_type, "any" | "tool");
    let format_schema = body
        .get("output_config")
        .and_then(|o| o.get("format"))
        .and_then(|f| f.get("schema"));

    let mut stop_reason = "end_turn";
    let mut stop_sequence = None;
    if let Some(schema) = format_schema {
        blocks.push(ReplyBlock::Text(instance(schema, "").to_string()));
    } else if !tools.is_empty() && choice_type != "none" && (answering_user_text || forced) {
        let tool = match choice_type {
            "tool" => {
                let name = choice.and_then(|c| c.get("name")).and_then(Value::as_str);
                tools
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == name)
                    .or(tools.first())
            }
            _ => tools.first(),
        };
        if let Some(tool) = tool {
            let name = tool
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !forced {
                blocks.push(ReplyBlock::Text(format!(
                    "I'll use the {name} tool to help with that."
                )));
            }
            let input = instance(tool.get("input_schema").unwrap_or(&Value::Null), "");
            blocks.push(ReplyBlock::ToolUse {
                id: format!("toolu_01Fake{n:018}"),
                name,
                input,
            });
            stop_reason = "tool_use";
        }
    }
    if blocks
        .iter()
        .all(|b| matches!(b, ReplyBlock::Thinking { .. }))
    {
        let mut text = if !user.tool_results.is_empty() {
            format!(
                "Based on the tool results: {}",
                user.tool_results.join("; ")
            )
        } else {
            format!("Hello from fake Claude! You said: {}", user.text)
        };
        if user.images > 0 {
            text.push_str(&format!(" (I see {} image(s).)", user.images));
        }
        if user.documents > 0 {
            text.push_str(&format!(" (I read {} document(s).)", user.documents));
        }
        let stops = body.get("stop_sequences").and_then(Value::as_array);
        let hit = stops
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|s| text.find(s).map(|at| (at, s)))
            .min();
        if let Some((at, s)) = hit {
            text.truncate(at);
            stop_reason = "stop_sequence";
            stop_sequence = Some(s.to_string());
        }
        // One word per token keeps max_tokens observable in tests.
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        if words.len() as u64 > max_tokens {
            text = words[..max_tokens as usize].concat().trim_end().to_string();
            stop_reason = "max_tokens";
        }
        blocks.push(ReplyBlock::Text(text));
    }

    let output_tokens = blocks
        .iter()
        .map(|b| match b {
            ReplyBlock::Text(t) => t.split_whitespace().count() as u64,
            ReplyBlock::Thinking { thinking, .. } => tokens(thinking.len()),
            ReplyBlock::ToolUse { input, .. } => tokens(input.to_string().len()),
        })
        .sum::<u64>()
        .max(1);
    Reply {
        id: format!("msg_01Fake{n:018}"),
        model,
        blocks,
        stop_reason,
        stop_sequence,
        input_tokens,
        cache_read,
        cache_creation: 0,
        output_tokens,
    }
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

fn event(name: &str, data: &Value) -> Bytes {
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

pub(crate) fn stream_events(reply: &Reply, fault: Option<&Fault>) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = reply.to_json();
    if let Some(m) = start.as_object_mut() {
        m.insert("content".into(), json!([]));
        m.insert("stop_reason".into(), Value::Null);
        m.insert("stop_sequence".into(), Value::Null);
        m.insert("usage".into(), reply.usage(1));
    }
    out.push(event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    ));

    let cut_after_first_delta = matches!(
        fault,
        Some(Fault::StreamError { .. } | Fault::TruncateStream)
    );
    for (index, block) in reply.blocks.iter().enumerate() {
        let (start_block, deltas): (Value, Vec<Value>) = match block {
            ReplyBlock::Thinking {
                thinking,
                signature,
            } => {
                let mut d: Vec<Value> = pieces(thinking, 24)
                    .into_iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .collect();
                d.push(json!({"type": "signature_delta", "signature": signature}));
                (json!({"type": "thinking", "thinking": ""}), d)
            }
            ReplyBlock::Text(text) => (
                json!({"type": "text", "text": ""}),
                text.split_inclusive(' ')
                    .collect::<Vec<_>>()
                    .chunks(2)
                    .map(|c| json!({"type": "text_delta", "text": c.concat()}))
                    .collect(),
            ),
            ReplyBlock::ToolUse { id, name, input } => {
                let mut d = vec![json!({"type": "input_json_delta", "partial_json": ""})];
                let json_text = input.to_string();
                d.extend(
                    pieces(&json_text, 7)
                        .into_iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p})),
                );
                (
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    d,
                )
            }
        };
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start_block}),
        ));
        if index == 0 {
            out.push(event("ping", &json!({"type": "ping"})));
        }
        for delta in deltas {
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
            if cut_after_first_delta {
                if let Some(Fault::StreamError {
                    error_type,
                    message,
                }) = fault
                {
                    out.push(event(
                        "error",
                        &json!({"type": "error", "error": {"type": error_type, "message": message}}),
                    ));
                }
                return out;
            }
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            "usage": {"output_tokens": reply.output_tokens},
        }),
    ));
    out.push(event("message_stop", &json!({"type": "message_stop"})));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ok_body() -> Value {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello, Claude"}],
        })
    }

    fn with(mut body: Value, key: &str, v: Value) -> Value {
        body.as_object_mut().unwrap().insert(key.into(), v);
        body
    }

    #[test]
    fn documented_minimal_request_is_valid() {
        validate(&ok_body()).unwrap();
    }

    #[test]
    fn validation_matches_the_reference() {
        let mut no_max = ok_body();
        no_max.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(validate(&no_max).unwrap_err(), "max_tokens: Field required");
        let cases = [
            with(ok_body(), "frequency_penalty", json!(0.5)),
            with(ok_body(), "max_tokens", json!(0)),
            with(ok_body(), "temperature", json!(1.5)),
            with(
                ok_body(),
                "messages",
                json!([{"role": "system", "content": "x"}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "user", "content": "x", "name": "bob"}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "user", "content": [{"type": "text", "text": ""}]}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]),
            ),
            with(
                ok_body(),
                "messages",
                json!([
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
                    {"role": "user", "content": "no result"},
                ]),
            ),
            with(
                ok_body(),
                "messages",
                json!([
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
                    {"role": "user", "content": [
                        {"type": "text", "text": "first"},
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"},
                    ]},
                ]),
            ),
            with(ok_body(), "tool_choice", json!({"type": "auto"})),
            with(
                ok_body(),
                "thinking",
                json!({"type": "enabled", "budget_tokens": 2048}),
            ),
        ];
        for body in cases {
            assert!(validate(&body).is_err(), "should be rejected: {body}");
        }
    }

    #[test]
    fn a_tool_round_trip_is_valid() {
        let body = with(
            ok_body(),
            "messages",
            json!([
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "b"}]},
                    {"type": "text", "text": "thanks"},
                ]},
            ]),
        );
        let body = with(
            body,
            "tools",
            json!([{"name": "f", "input_schema": {"type": "object"}}]),
        );
        validate(&body).unwrap();
    }

    #[test]
    fn tool_requests_get_a_schema_shaped_tool_use() {
        let body = with(
            ok_body(),
            "tools",
            json!([{"name": "get_weather", "input_schema": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            }}]),
        );
        let reply = plan_reply(&body, 1).to_json();
        assert_eq!(reply["stop_reason"], "tool_use");
        assert_eq!(reply["content"][0]["type"], "text");
        assert_eq!(
            reply["content"][1]["input"],
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );
    }

    #[test]
    fn stream_reassembles_to_the_non_stream_reply() {
        let body = with(
            ok_body(),
            "tools",
            json!([{"name": "f", "input_schema": {
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]),
        );
        let reply = plan_reply(&body, 7);
        let events = stream_events(&reply, None);
        let mut text = String::new();
        let mut args = String::new();
        let mut names = Vec::new();
        for e in &events {
            let s = std::str::from_utf8(e).unwrap();
            let (head, data) = s.split_once("\ndata: ").unwrap();
            names.push(head.trim_start_matches("event: ").to_string());
            let v: Value = serde_json::from_str(data.trim_end()).unwrap();
            if let Some(t) = v["delta"]["text"].as_str() {
                text.push_str(t);
            }
            if let Some(p) = v["delta"]["partial_json"].as_str() {
                args.push_str(p);
            }
        }
        assert_eq!(names.first().unwrap(), "message_start");
        assert_eq!(names[2], "ping");
        assert_eq!(names.last().unwrap(), "message_stop");
        let full = reply.to_json();
        assert_eq!(text, full["content"][0]["text"].as_str().unwrap());
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            full["content"][1]["input"]
        );
    }

    #[test]
    fn stop_sequences_and_max_tokens_shape_the_text() {
        let body = with(ok_body(), "stop_sequences", json!(["Claude"]));
        let reply = plan_reply(&body, 1).to_json();
        assert_eq!(reply["stop_reason"], "stop_sequence");
        assert_eq!(reply["stop_sequence"], "Claude");
        assert_eq!(reply["content"][0]["text"], "Hello from fake ");
        let reply = plan_reply(&with(ok_body(), "max_tokens", json!(2)), 1).to_json();
        assert_eq!(reply["stop_reason"], "max_tokens");
        assert_eq!(reply["content"][0]["text"], "Hello from");
    }

    #[test]
    fn cache_breakpoints_report_cache_reads() {
        let body = with(
            ok_body(),
            "system",
            json!([{"type": "text", "text": "x".repeat(4000), "cache_control": {"type": "ephemeral"}}]),
        );
        let reply = plan_reply(&body, 1).to_json();
        assert!(reply["usage"]["cache_read_input_tokens"].as_u64().unwrap() >= 1000);
        assert!(reply["usage"]["input_tokens"].as_u64().unwrap() < 100);
    }
}
