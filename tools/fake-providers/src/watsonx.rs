//! A fake of IBM watsonx.ai chat with its own IBM Cloud IAM token endpoint,
//! following IBM's published API references:
//!
//! - `POST /identity/token` is IAM: the form must carry
//!   `grant_type=urn:ibm:params:oauth:grant-type:apikey` and the `apikey` this
//!   fake was started with. It answers `{access_token, refresh_token,
//!   token_type, expires_in, expiration, scope}` (the lifetime is settable, so
//!   tests can watch a token expire) or IAM's
//!   `{"errorCode","errorMessage","context"}` with 400.
//! - `POST /ml/v1/text/chat?version=YYYY-MM-DD` and `/ml/v1/text/chat_stream`
//!   need `Authorization: Bearer <token>` with a token this fake issued and that
//!   has not expired (else 401 `authentication_token_expired` /
//!   `authorization_rejected`), a `version`, a known `model_id`, and exactly
//!   one of `project_id` (the fake's project) and `space_id`. Bodies are
//!   checked field by field: unknown fields, bad roles, content parts other
//!   than text and base64 `image_url`, a `tool` turn answering no call,
//!   `tool_choice_option` outside `none|auto|required`, and out-of-range values
//!   are 400 `json_validation_error`. Errors use watsonx's envelope
//!   `{"errors":[{"code","message","more_info"}],"trace","status_code"}`.
//! - Answers look like the reference's examples: `id`, `model_id`, `model`,
//!   `choices`, `created`, `model_version`, `created_at`, `usage`. Streams are
//!   `id: N` / `event: message` / `data: <chunk>` events ending with a
//!   `choices: []` chunk that carries the usage, and no `[DONE]`.
//!
//! Answers are deterministic: a tool call of the first (or the named) tool when
//! tools are offered and the last turn is the user's (unless
//! `tool_choice_option` is `none`); after a tool result, text quoting it;
//! otherwise text quoting the last user text and counting its images.

use crate::common::{
    self, bind_local, is_json, query_param, unix_now, FaultQueue, Recorder, Server,
};
use crate::oauth::{form_json, form_value, is_form, parse_form, IssuedTokens, TokenProblem};
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// IAM's usual token lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;

/// Models this fake serves (a few of watsonx.ai's chat models).
pub const MODELS: &[&str] = &[
    "ibm/granite-3-3-8b-instruct",
    "ibm/granite-4-h-small",
    "meta-llama/llama-3-3-70b-instruct",
    "meta-llama/llama-3-2-11b-vision-instruct",
    "mistralai/mistral-small-3-1-24b-instruct-2503",
];

const MORE_INFO: &str = "https://cloud.ibm.com/apidocs/watsonx-ai";

/// One request as the fake received it; for token requests the body is the
/// form as an object of strings.
pub use crate::common::RecordedRequest;

/// A failure for the next IAM token request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFault {
    /// 500 from IAM.
    ServerError,
    /// 400 `BXNIM0415E` "Provided API key could not be found.", as for a deleted key.
    KeyNotFound,
}

/// A failure for the next chat request (after the token check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFault {
    /// 429 with watsonx's rate-limit error.
    RateLimited,
    /// Streams: the first chunks, then `event: error`.
    ErrorMidStream,
    /// Streams: the first chunks, then a clean end of body.
    Truncated,
}

struct Shared {
    api_key: String,
    project_id: String,
    tokens: IssuedTokens,
    requests: Recorder<RecordedRequest>,
    token_requests: Recorder<RecordedRequest>,
    token_faults: FaultQueue<TokenFault>,
    faults: FaultQueue<ChatFault>,
    counter: AtomicU64,
}

/// A running fake. Dropping it stops the server.
pub struct FakeWatsonx {
    shared: Arc<Shared>,
    server: Server,
}

/// Starts a fake on `127.0.0.1:<free port>` that exchanges `api_key` for tokens
/// and serves `project_id` (any `space_id` is accepted).
pub async fn start(api_key: &str, project_id: &str) -> std::io::Result<FakeWatsonx> {
    start_on(bind_local().await?, api_key, project_id).await
}

/// Serves on a listener the caller bound. Besides the API, `GET /__requests`
/// lists the chat requests and `GET /__token_requests` the IAM requests, as
/// JSON arrays of `{method, path, query, headers, body}`.
pub async fn start_on(
    listener: TcpListener,
    api_key: &str,
    project_id: &str,
) -> std::io::Result<FakeWatsonx> {
    let shared = Arc::new(Shared {
        api_key: api_key.to_string(),
        project_id: project_id.to_string(),
        tokens: IssuedTokens::new(
            "eyJraWQiOiJmYWtlLXdhdHNvbngi.fake-iam-token-",
            DEFAULT_TOKEN_TTL_SECS,
        ),
        requests: Recorder::new(),
        token_requests: Recorder::new(),
        token_faults: FaultQueue::new(),
        faults: FaultQueue::new(),
        counter: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/identity/token", post(iam_token))
        .route("/ml/v1/text/chat", post(chat))
        .route("/ml/v1/text/chat_stream", post(chat))
        .route("/__requests", get(recorded))
        .route("/__token_requests", get(recorded_tokens))
        .fallback(not_found)
        .with_state(shared.clone());
    let server = Server::spawn(listener, app)?;
    Ok(FakeWatsonx { shared, server })
}

impl FakeWatsonx {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// What a model's `base_url` is: the regional host, `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The IAM token endpoint (`watsonx_iam_url`).
    pub fn iam_url(&self) -> String {
        format!("http://{}/identity/token", self.addr())
    }

    /// Chat requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// IAM requests, oldest first (successful or not).
    pub fn token_requests(&self) -> Vec<RecordedRequest> {
        self.shared.token_requests.all()
    }

    /// How many access tokens were issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens.count()
    }

    /// The lifetime (`expires_in`) of tokens issued from now on.
    pub fn set_token_ttl(&self, secs: u64) {
        self.shared.tokens.set_ttl(secs);
    }

    pub fn fail_next_token(&self, fault: TokenFault) {
        self.shared.token_faults.push(fault);
    }

    pub fn fail_next(&self, fault: ChatFault) {
        self.shared.faults.push(fault);
    }
}

// ------------------------------------------------------------------ helpers

fn json_response(status: u16, body: &Value) -> Response {
    common::json_response(status, body.to_string())
}

/// watsonx's error envelope.
pub fn error_body(status: u16, code: &str, message: &str) -> Value {
    json!({
        "errors": [{"code": code, "message": message, "more_info": MORE_INFO}],
        "trace": "3f1c0a4e8d2b4c6f9a7e5d3b1c0f8e6a",
        "status_code": status,
    })
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json_response(status, &error_body(status, code, message))
}

fn invalid(message: impl AsRef<str>) -> Response {
    error(
        400,
        "json_validation_error",
        &format!("Json document validation error: {}", message.as_ref()),
    )
}

async fn recorded(State(s): State<Arc<Shared>>) -> Response {
    json_response(200, &s.requests.to_json(RecordedRequest::to_json))
}

async fn recorded_tokens(State(s): State<Arc<Shared>>) -> Response {
    json_response(200, &s.token_requests.to_json(RecordedRequest::to_json))
}

async fn not_found(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.requests
        .record(method.as_str(), &uri, &headers, Value::Null, &Bytes::new());
    error(404, "not_found", "Not Found")
}

// --------------------------------------------------------------------- IAM

fn iam_error(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({
            "errorCode": code,
            "errorMessage": message,
            "context": {"requestId": "fake-iam-request", "requestType": "incoming.Identity_Token"},
        }),
    )
}

async fn iam_token(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let as_json = form_json(form.as_deref());
    s.token_requests
        .record(method.as_str(), &uri, &headers, as_json, &body);
    if !is_form(&headers) {
        return iam_error(
            400,
            "BXNIM0109E",
            "Property missing or empty. Property name: 'grant_type'",
        );
    }
    let Some(form) = form else {
        return iam_error(400, "BXNIM0109E", "Malformed request body.");
    };
    if let Some(fault) = s.token_faults.pop() {
        return match fault {
            TokenFault::ServerError => iam_error(500, "BXNIM0105E", "Internal server error."),
            TokenFault::KeyNotFound => {
                iam_error(400, "BXNIM0415E", "Provided API key could not be found.")
            }
        };
    }
    match form_value(&form, "grant_type") {
        Some("urn:ibm:params:oauth:grant-type:apikey") => {}
        Some(_) => return iam_error(400, "BXNIM0104E", "Grant type is not supported."),
        None => {
            return iam_error(
                400,
                "BXNIM0109E",
                "Property missing or empty. Property name: 'grant_type'",
            )
        }
    }
    match form_value(&form, "apikey") {
        Some(k) if k == s.api_key => {}
        Some(_) => return iam_error(400, "BXNIM0415E", "Provided API key could not be found."),
        None => {
            return iam_error(
                400,
                "BXNIM0109E",
                "Property missing or empty. Property name: 'apikey'",
            )
        }
    }
    let (access_token, expires_in) = s.tokens.issue();
    json_response(
        200,
        &json!({
            "access_token": access_token,
            "refresh_token": "not_supported",
            "ims_user_id": 12345678,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "expiration": unix_now() + expires_in,
            "scope": "ibm openid",
        }),
    )
}

// -------------------------------------------------------------- validation

const TOP_LEVEL: &[&str] = &[
    "model_id",
    "model",
    "project_id",
    "space_id",
    "messages",
    "tools",
    "tool_choice_option",
    "tool_choice",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "temperature",
    "top_p",
    "time_limit",
    "context",
    "include_reasoning",
    "reasoning_effort",
    "chat_template_kwargs",
    "repetition_penalty",
    "length_penalty",
];

fn extra(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "Additional properties are not allowed ('{k}' was unexpected){}",
            if at.is_empty() {
                String::new()
            } else {
                format!(" at '{at}'")
            }
        )),
        None => Ok(()),
    }
}

fn range(obj: &Map<String, Value>, key: &str, lo: f64, hi: f64) -> Result<(), String> {
    match obj.get(key) {
        None => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(()),
            _ => Err(format!("'{key}' must be a number between {lo} and {hi}")),
        },
    }
}

fn is_data_url(url: &str) -> bool {
    url.strip_prefix("data:image/")
        .and_then(|rest| rest.split_once(";base64,"))
        .is_some_and(|(_, data)| {
            !data.is_empty()
                && data
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        })
}

fn validate_user_content(content: Option<&Value>, at: &str) -> Result<(), String> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(Value::Array(parts)) if !parts.is_empty() => {
            for (i, p) in parts.iter().enumerate() {
                let pat = format!("{at}.content[{i}]");
                let obj = p
                    .as_object()
                    .ok_or_else(|| format!("'{pat}' must be an object"))?;
                match obj.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        extra(obj, &["type", "text"], &pat)?;
                        if !obj.get("text").is_some_and(Value::is_string) {
                            return Err(format!("'text' is a required property at '{pat}'"));
                        }
                    }
                    Some("image_url") => {
                        extra(obj, &["type", "image_url"], &pat)?;
                        let img = obj
                            .get("image_url")
                            .and_then(Value::as_object)
                            .ok_or_else(|| format!("'image_url' is a required property at '{pat}'"))?;
                        extra(img, &["url", "detail"], &format!("{pat}.image_url"))?;
                        let url = img.get("url").and_then(Value::as_str).unwrap_or("");
                        if !is_data_url(url) {
                            return Err(format!(
                                "'{pat}.image_url.url' must be a base64 data URL (data:image/<type>;base64,<data>)"
                            ));
                        }
                        if let Some(d) = img.get("detail") {
                            if !matches!(d.as_str(), Some("auto" | "low" | "high")) {
                                return Err(format!("'{pat}.image_url.detail' must be auto, low or high"));
                            }
                        }
                    }
                    other => {
                        return Err(format!(
                            "'{}' is not one of ['text', 'image_url', 'video_url', 'input_audio'] at '{pat}.type'",
                            other.unwrap_or("")
                        ))
                    }
                }
            }
            Ok(())
        }
        _ => Err(format!(
            "'content' at '{at}' must be a non-empty string or array"
        )),
    }
}

/// Checks the messages; returns the tool call ids the assistant made.
fn validate_messages(messages: Option<&Value>) -> Result<(), String> {
    let messages = messages
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("'messages' is a required property and must be a non-empty array")?;
    let mut calls: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let obj = m
            .as_object()
            .ok_or_else(|| format!("'{at}' must be an object"))?;
        match obj.get("role").and_then(Value::as_str) {
            Some("system") => {
                extra(obj, &["role", "content", "name"], &at)?;
                if !obj.get("content").is_some_and(Value::is_string) {
                    return Err(format!("'content' at '{at}' must be a string"));
                }
            }
            Some("user") => {
                extra(obj, &["role", "content", "name"], &at)?;
                validate_user_content(obj.get("content"), &at)?;
            }
            Some("assistant") => {
                extra(obj, &["role", "content", "tool_calls", "name", "refusal"], &at)?;
                if let Some(c) = obj.get("content") {
                    if !c.is_string() {
                        return Err(format!("'content' at '{at}' must be a string"));
                    }
                }
                let tcs = obj.get("tool_calls").and_then(Value::as_array);
                if obj.get("content").is_none() && tcs.is_none_or(Vec::is_empty) {
                    return Err(format!("'{at}' needs 'content' or 'tool_calls'"));
                }
                for (j, tc) in tcs.into_iter().flatten().enumerate() {
                    let tat = format!("{at}.tool_calls[{j}]");
                    let o = tc.as_object().ok_or_else(|| format!("'{tat}' must be an object"))?;
                    extra(o, &["id", "type", "function"], &tat)?;
                    let id = o
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("'id' is a required property at '{tat}'"))?;
                    if o.get("type").and_then(Value::as_str) != Some("function") {
                        return Err(format!("'{tat}.type' must be 'function'"));
                    }
                    let f = o
                        .get("function")
                        .and_then(Value::as_object)
                        .ok_or_else(|| format!("'function' is a required property at '{tat}'"))?;
                    extra(f, &["name", "arguments"], &format!("{tat}.function"))?;
                    if !f.get("name").is_some_and(Value::is_string) {
                        return Err(format!("'name' is a required property at '{tat}.function'"));
                    }
                    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
                    if serde_json::from_str::<Value>(args).is_err() {
                        return Err(format!("'{tat}.function.arguments' must be a JSON string"));
                    }
                    calls.push(id.to_string());
                }
            }
            Some("tool") => {
                extra(obj, &["role", "content", "tool_call_id"], &at)?;
                if !obj.get("content").is_some_and(Value::is_string) {
                    return Err(format!("'content' at '{at}' must be a string"));
                }
                let id = obj
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("'tool_call_id' is a required property at '{at}'"))?;
                if !calls.iter().any(|c| c == id) {
                    return Err(format!(
                        "'{at}.tool_call_id' `{id}` answers no tool call of an earlier assistant message"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "'{}' is not one of ['system', 'user', 'assistant', 'tool', 'control'] at '{at}.role'",
                    other.unwrap_or("")
                ))
            }
        }
    }
    Ok(())
}

fn validate_tools(obj: &Map<String, Value>) -> Result<Vec<Value>, String> {
    let tools = match obj.get("tools") {
        None => return Ok(Vec::new()),
        Some(t) => t.as_array().ok_or("'tools' must be an array")?,
    };
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let o = t
            .as_object()
            .ok_or_else(|| format!("'{at}' must be an object"))?;
        extra(o, &["type", "function"], &at)?;
        if o.get("type").and_then(Value::as_str) != Some("function") {
            return Err(format!("'{at}.type' must be 'function'"));
        }
        let f = o
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("'function' is a required property at '{at}'"))?;
        extra(
            f,
            &["name", "description", "parameters", "strict"],
            &format!("{at}.function"),
        )?;
        if f.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("'name' is a required property at '{at}.function'"));
        }
        if f.get("parameters").is_some_and(|p| !p.is_object()) {
            return Err(format!("'{at}.function.parameters' must be an object"));
        }
        out.push(Value::Object(f.clone()));
    }
    Ok(out)
}

// ----------------------------------------------------------------- answers

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn example_args(schema: &Value) -> Value {
    let mut args = Map::new();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in required {
        let value = match schema["properties"][name]["type"]
            .as_str()
            .unwrap_or("string")
        {
            "integer" | "number" => json!(1),
            "boolean" => json!(true),
            "array" => json!([]),
            "object" => json!({}),
            _ => json!("fake"),
        };
        args.insert(name.to_string(), value);
    }
    Value::Object(args)
}

enum Reply {
    Text(String),
    Call {
        id: String,
        name: String,
        arguments: String,
    },
}

fn plan(req: &Value, tools: &[Value], n: u64) -> Reply {
    let messages = req["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let last = messages.last().unwrap_or(&Value::Null);
    let option = req["tool_choice_option"].as_str().unwrap_or("auto");
    let named = req["tool_choice"]["function"]["name"].as_str();
    if last["role"] == "user" && !tools.is_empty() && option != "none" {
        let tool = named
            .and_then(|n| tools.iter().find(|t| t["name"] == n))
            .or(tools.first());
        if let Some(t) = tool {
            return Reply::Call {
                id: format!("chatcmpl-tool-fake{n:06}"),
                name: t["name"].as_str().unwrap_or("f").to_string(),
                arguments: example_args(&t["parameters"]).to_string(),
            };
        }
    }
    if last["role"] == "tool" {
        let id = last["tool_call_id"].as_str().unwrap_or("");
        let name = messages
            .iter()
            .filter_map(|m| m["tool_calls"].as_array())
            .flatten()
            .find(|c| c["id"] == id)
            .and_then(|c| c["function"]["name"].as_str())
            .unwrap_or("?");
        return Reply::Text(format!(
            "The function {name} returned {}.",
            last["content"].as_str().unwrap_or("")
        ));
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap_or(&Value::Null);
    let (text, images) = match &last_user["content"] {
        Value::String(s) => (s.clone(), 0),
        Value::Array(parts) => (
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            parts.iter().filter(|p| p["type"] == "image_url").count(),
        ),
        _ => (String::new(), 0),
    };
    let mut reply = format!("Hello from fake watsonx! You said: {text}");
    if images > 0 {
        reply.push_str(&format!(" (I see {images} image(s).)"));
    }
    Reply::Text(reply)
}

fn prompt_tokens(req: &Value) -> u64 {
    let mut total = 0;
    for m in req["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        total += match &m["content"] {
            Value::String(s) => words(s),
            Value::Array(parts) => parts
                .iter()
                .map(|p| p["text"].as_str().map_or(1, words))
                .sum(),
            _ => 0,
        };
    }
    total.max(1)
}

struct Answer {
    id: String,
    model: String,
    created: u64,
    reply: Reply,
    /// The text after `max_tokens`, and whether that limit cut it.
    cut: bool,
    prompt_tokens: u64,
}

impl Answer {
    fn text(&self) -> Option<&str> {
        match &self.reply {
            Reply::Text(t) => Some(t),
            Reply::Call { .. } => None,
        }
    }

    fn completion_tokens(&self) -> u64 {
        match &self.reply {
            Reply::Text(t) => words(t).max(1),
            Reply::Call { arguments, .. } => 5 + words(arguments),
        }
    }

    fn finish_reason(&self) -> &'static str {
        match (&self.reply, self.cut) {
            (Reply::Call { .. }, _) => "tool_calls",
            (_, true) => "length",
            _ => "stop",
        }
    }

    fn usage(&self) -> Value {
        let c = self.completion_tokens();
        json!({
            "completion_tokens": c,
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": c + self.prompt_tokens,
        })
    }

    fn envelope(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "model_id": self.model,
            "model": self.model,
            "choices": choices,
            "created": self.created,
            "model_version": "3.3.0",
            "created_at": "2025-06-12T21:45:35.150Z",
        })
    }

    fn response(&self) -> Value {
        let message = match &self.reply {
            Reply::Text(t) => json!({"role": "assistant", "content": t}),
            Reply::Call {
                id,
                name,
                arguments,
            } => json!({
                "role": "assistant",
                "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}],
            }),
        };
        let mut v = self.envelope(
            "chat.completion",
            json!([{"index": 0, "message": message, "finish_reason": self.finish_reason()}]),
        );
        v["usage"] = self.usage();
        v["system"] = json!({"warnings": [{
            "message": "This model is a Non-IBM Product governed by a third-party license that may impose use restrictions and other obligations.",
            "id": "disclaimer_warning",
        }]});
        v
    }

    /// The stream's chunks: role, the text in pieces (or the call's name then
    /// its arguments), the finish, and the usage with `choices: []`.
    fn chunks(&self) -> Vec<Value> {
        let choice = |delta: Value, finish: Option<&str>| json!([{"index": 0, "finish_reason": finish, "delta": delta}]);
        let mut out = vec![self.envelope(
            "chat.completion.chunk",
            choice(json!({"role": "assistant", "content": ""}), None),
        )];
        match &self.reply {
            Reply::Text(_) => {
                let text = self.text().unwrap_or("");
                let pieces: Vec<&str> = text.split_inclusive(' ').collect();
                for piece in pieces.chunks(2) {
                    out.push(self.envelope(
                        "chat.completion.chunk",
                        choice(json!({"content": piece.concat()}), None),
                    ));
                }
                out.push(self.envelope(
                    "chat.completion.chunk",
                    choice(json!({"content": ""}), Some(self.finish_reason())),
                ));
            }
            Reply::Call {
                id,
                name,
                arguments,
            } => {
                out.push(self.envelope(
                    "chat.completion.chunk",
                    choice(
                        json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                        None,
                    ),
                ));
                out.push(self.envelope(
                    "chat.completion.chunk",
                    choice(
                        json!({"tool_calls": [{"index": 0, "function": {"name": "", "arguments": arguments}}]}),
                        Some("tool_calls"),
                    ),
                ));
            }
        }
        let mut last = self.envelope("chat.completion.chunk", json!([]));
        last["usage"] = self.usage();
        out.push(last);
        out
    }
}

// -------------------------------------------------------------------- chat

fn token_error(problem: TokenProblem) -> Response {
    match problem {
        TokenProblem::Missing => error(
            401,
            "authorization_rejected",
            "Authorization header is missing or is not a Bearer token",
        ),
        TokenProblem::Unknown => error(
            401,
            "authentication_token_not_valid",
            "Failed to authenticate the request due to invalid token",
        ),
        TokenProblem::Expired => error(
            401,
            "authentication_token_expired",
            "Failed to authenticate the request due to an expired token",
        ),
    }
}

async fn chat(
    State(s): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.requests
        .record(method.as_str(), &uri, &headers, req.clone(), &body);
    let stream = uri.path().ends_with("/chat_stream");
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let Err(problem) = s.tokens.check(auth) {
        return token_error(problem);
    }
    let version_ok = query_param(query.as_deref(), "version").is_some_and(|v| {
        v.len() == 10
            && v.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    });
    if !version_ok {
        return error(
            400,
            "invalid_request_entity",
            "Missing or invalid query parameter 'version'; expected a date YYYY-MM-DD",
        );
    }
    if !is_json(&headers) {
        return error(
            415,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
    }
    let Some(obj) = req.as_object() else {
        return invalid("the request body is not a JSON object");
    };
    if let Err(m) = extra(obj, TOP_LEVEL, "") {
        return invalid(m);
    }
    let model = match obj.get("model_id").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => return invalid("'model_id' is a required property"),
    };
    match (obj.get("project_id"), obj.get("space_id")) {
        (Some(Value::String(p)), None) if *p == s.project_id => {}
        (Some(Value::String(p)), None) => {
            return error(
                403,
                "authorization_rejected",
                &format!("You are not a member of project '{p}'"),
            )
        }
        (None, Some(Value::String(_))) => {}
        (Some(_), Some(_)) => return invalid("only one of 'project_id' and 'space_id' may be set"),
        _ => return invalid("either 'project_id' or 'space_id' is required"),
    }
    if !MODELS.contains(&model.as_str()) {
        return error(
            404,
            "model_not_supported",
            &format!("Model '{model}' is not supported"),
        );
    }
    let fault = s.faults.pop();
    if fault == Some(ChatFault::RateLimited) {
        return error(
            429,
            "too_many_requests",
            "This request exceeds the rate limit of your plan",
        );
    }
    if let Err(m) = validate_messages(obj.get("messages")) {
        return invalid(m);
    }
    let tools = match validate_tools(obj) {
        Ok(t) => t,
        Err(m) => return invalid(m),
    };
    if let Some(opt) = obj.get("tool_choice_option") {
        if !matches!(opt.as_str(), Some("none" | "auto" | "required")) {
            return invalid("'tool_choice_option' is not one of ['none', 'auto', 'required']");
        }
        if obj.contains_key("tool_choice") {
            return invalid("'tool_choice' and 'tool_choice_option' are mutually exclusive");
        }
    }
    if let Some(tc) = obj.get("tool_choice") {
        let name = tc["function"]["name"].as_str();
        if tc["type"] != "function" || !name.is_some_and(|n| tools.iter().any(|t| t["name"] == n)) {
            return invalid("'tool_choice' must name one of the request's tools");
        }
    }
    let checks = [
        range(obj, "temperature", 0.0, 2.0),
        range(obj, "top_p", 0.0, 1.0),
        range(obj, "frequency_penalty", -2.0, 2.0),
        range(obj, "presence_penalty", -2.0, 2.0),
        range(obj, "max_tokens", 0.0, 1e9),
        range(obj, "max_completion_tokens", 0.0, 1e9),
    ];
    if let Some(Err(m)) = checks.into_iter().find(Result::is_err) {
        return invalid(m);
    }
    if let Some(stop) = obj.get("stop") {
        if !stop
            .as_array()
            .is_some_and(|a| a.len() <= 4 && a.iter().all(Value::is_string))
        {
            return invalid("'stop' must be an array of at most 4 strings");
        }
    }

    let n = s.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let mut reply = plan(&req, &tools, n);
    let max = obj
        .get("max_tokens")
        .or_else(|| obj.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .filter(|m| *m > 0);
    let mut cut = false;
    if let (Reply::Text(t), Some(max)) = (&mut reply, max) {
        if words(t) > max {
            *t = t
                .split_whitespace()
                .take(max as usize)
                .collect::<Vec<_>>()
                .join(" ");
            cut = true;
        }
    }
    let answer = Answer {
        id: format!("chatcmpl-fakewx{n:08x}"),
        model,
        created: unix_now(),
        reply,
        cut,
        prompt_tokens: prompt_tokens(&req),
    };
    if !stream {
        return json_response(200, &answer.response());
    }
    let mut chunks = answer.chunks();
    let mut tail: Option<Value> = None;
    match fault {
        Some(ChatFault::Truncated) => chunks.truncate(2),
        Some(ChatFault::ErrorMidStream) => {
            chunks.truncate(2);
            tail = Some(error_body(500, "internal_error", "Model inference failed"));
        }
        _ => {}
    }
    let mut events: Vec<Bytes> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| Bytes::from(format!("id: {}\nevent: message\ndata: {c}\n\n", i + 1)))
        .collect();
    if let Some(t) = tail {
        events.push(Bytes::from(format!(
            "id: {}\nevent: error\ndata: {t}\n\n",
            events.len() + 1
        )));
    }
    let mut r = Response::new(Body::from_stream(futures_util::stream::iter(
        events.into_iter().map(Ok::<Bytes, Infallible>),
    )));
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked_like_the_reference() {
        let ok = json!([
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ]);
        validate_messages(Some(&ok)).unwrap();
        let bad = [
            json!([{"role": "developer", "content": "s"}]),
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]),
            json!([{"role": "tool", "tool_call_id": "nope", "content": "r"}]),
            json!([{"role": "system", "content": [{"type": "text", "text": "s"}]}]),
            json!([{"role": "user", "content": "x", "extra": 1}]),
        ];
        for b in bad {
            assert!(validate_messages(Some(&b)).is_err(), "{b}");
        }
    }
}
