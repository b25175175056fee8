//! A fake of Ollama's native chat API (`POST /api/chat`), written from
//! Ollama's API reference (docs/api.md and its OpenAPI document).
//!
//! - Auth: with an empty key the fake is a local server and the request must
//!   carry no `Authorization` at all; with a key it is Ollama's cloud API and
//!   needs `Authorization: Bearer <key>` (else 401 `{"error":"unauthorized"}`).
//! - The body is checked against `ChatRequest`: only its fields (`model`,
//!   `messages`, `tools`, `format`, `options`, `stream`, `think`,
//!   `keep_alive`, `logprobs`, `top_logprobs`); messages with roles `system`,
//!   `user`, `assistant`, `tool`, string `content`, `images` as bare base64
//!   strings, `tool_calls` as `{function:{name, arguments: object}}`,
//!   `tool_name` on tool results; `format` `"json"` or a schema object;
//!   `options` from the Modelfile parameters with their types. Anything else
//!   is 400 `{"error": …}`, as Ollama answers. A model named `missing…` is not
//!   pulled: 404 `model "…" not found, try pulling it first`.
//! - `stream` defaults to true, as in Ollama: NDJSON
//!   (`application/x-ndjson`), one chunk per word (thinking first when `think`
//!   is on, a tool call in one chunk), then a final `done: true` object with
//!   `done_reason` and the durations and counts. With `stream: false`, one
//!   object.
//!
//! Replies are deterministic: a tool call of the first tool when tools are
//! offered and the last turn is the user's (the required arguments set to the
//! user's last word); after a tool result, text naming the tool and quoting
//! it; with `format`, JSON (`{"answer": …}`, or an object following the
//! schema's properties); otherwise text quoting the last user text and
//! counting its images. `num_predict` cuts words (`done_reason: "length"`),
//! `stop` cuts at the first stop string. Tokens are words.
//! `GET /__requests` reports what was received; `POST /__fault` queues a
//! fault (see [`OllamaFault::from_json`]).

use crate::common::{bind_local, request_json, FaultQueue, Recorder, Server};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The parsed body, or `Null` if it was not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// `{method, path, query, headers, body}`.
    pub fn to_json(&self) -> Value {
        request_json(&self.method, &self.path, None, &self.headers, &self.body)
    }
}

/// A way to make the next `/api/chat` request go wrong, consumed by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OllamaFault {
    /// Answer with this status and `{"error": message}`.
    Error { status: u16, message: String },
    /// A stream sends its first chunk, then a line `{"error": message}`, as
    /// Ollama reports a failure once streaming has begun.
    StreamError { message: String },
    /// A stream that closes after its first two chunks, before `done`.
    Truncate,
}

impl OllamaFault {
    /// The `POST /__fault` body: `{"kind":"error","status":500,"message":"…"}`,
    /// `{"kind":"stream_error","message":"…"}` or `{"kind":"truncate"}`.
    pub fn from_json(v: &Value) -> Option<OllamaFault> {
        let message = || v.get("message").and_then(Value::as_str).map(str::to_string);
        match v.get("kind").and_then(Value::as_str)? {
            "error" => Some(OllamaFault::Error {
                status: v
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())?,
                message: message()?,
            }),
            "stream_error" => Some(OllamaFault::StreamError {
                message: message()?,
            }),
            "truncate" => Some(OllamaFault::Truncate),
            _ => None,
        }
    }
}

struct Shared {
    api_key: String,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<OllamaFault>,
}

/// A running fake. Dropping it stops the server.
pub struct FakeOllama {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0`; an empty `api_key` makes it a local server.
pub async fn start(api_key: &str) -> std::io::Result<FakeOllama> {
    start_on(bind_local().await?, api_key).await
}

/// Serves on `listener`.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeOllama> {
    let shared = Arc::new(Shared {
        api_key: api_key.to_string(),
        requests: Recorder::new(),
        faults: FaultQueue::new(),
    });
    let app = Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(FakeOllama { shared, server })
}

impl FakeOllama {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, the server root (`/api/chat` is under it).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Every API request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    pub fn push_fault(&self, fault: OllamaFault) {
        self.shared.faults.push(fault);
    }
}

fn respond(status: u16, content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}

fn error(status: u16, message: &str) -> Response {
    respond(
        status,
        "application/json; charset=utf-8",
        Body::from(json!({ "error": message }).to_string()),
    )
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if method == Method::GET && path == "/__requests" {
        let all = shared.requests.to_json(RecordedRequest::to_json);
        return respond(200, "application/json", Body::from(all.to_string()));
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if method == Method::POST && path == "/__fault" {
        return match OllamaFault::from_json(&body) {
            Some(f) => {
                shared.faults.push(f);
                respond(204, "application/json", Body::empty())
            }
            None => error(400, "unknown fault; see OllamaFault::from_json"),
        };
    }
    shared.requests.push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    if path != "/api/chat" {
        return respond(404, "text/plain", Body::from("404 page not found"));
    }
    if method != Method::POST {
        return respond(405, "text/plain", Body::from("405 method not allowed"));
    }
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let authorized = if shared.api_key.is_empty() {
        auth.is_none()
    } else {
        auth == Some(format!("Bearer {}", shared.api_key).as_str())
    };
    if !authorized {
        return error(401, "unauthorized");
    }
    if body.is_null() {
        return error(400, "invalid character looking for beginning of value");
    }
    if let Err(message) = validate(&body) {
        return error(400, &message);
    }
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if model.starts_with("missing") {
        return error(
            404,
            &format!("model \"{model}\" not found, try pulling it first"),
        );
    }
    match shared.faults.pop() {
        Some(OllamaFault::Error { status, message }) => error(status, &message),
        fault => {
            let reply = plan_reply(&body);
            // Ollama streams unless told not to.
            if body.get("stream").and_then(Value::as_bool) == Some(false) {
                respond(
                    200,
                    "application/json; charset=utf-8",
                    Body::from(reply.whole(&model).to_string()),
                )
            } else {
                let lines = reply.lines(&model, fault.as_ref());
                respond(
                    200,
                    "application/x-ndjson",
                    Body::from_stream(futures_util::stream::iter(
                        lines.into_iter().map(Ok::<Bytes, Infallible>),
                    )),
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Validation, as ChatRequest describes the body
// ---------------------------------------------------------------------------

const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "tools",
    "format",
    "options",
    "stream",
    "think",
    "keep_alive",
    "logprobs",
    "top_logprobs",
];

/// Modelfile parameters the fake knows, with their JSON types.
const OPTIONS: &[(&str, &str)] = &[
    ("num_keep", "int"),
    ("seed", "int"),
    ("num_predict", "int"),
    ("top_k", "int"),
    ("top_p", "float"),
    ("min_p", "float"),
    ("typical_p", "float"),
    ("repeat_last_n", "int"),
    ("temperature", "float"),
    ("repeat_penalty", "float"),
    ("presence_penalty", "float"),
    ("frequency_penalty", "float"),
    ("stop", "strings"),
    ("num_ctx", "int"),
    ("num_batch", "int"),
    ("num_gpu", "int"),
    ("main_gpu", "int"),
    ("num_thread", "int"),
];

fn validate(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("request body must be an object")?;
    if let Some(k) = obj.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(format!("json: unknown field \"{k}\""));
    }
    if !obj.get("model").is_some_and(Value::is_string) {
        return Err("model is required".into());
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages must be an array")?;
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"]
            .as_str()
            .ok_or(format!("messages[{i}]: role is required"))?;
        if !matches!(role, "system" | "user" | "assistant" | "tool") {
            return Err(format!("messages[{i}]: invalid role \"{role}\""));
        }
        let allowed = [
            "role",
            "content",
            "thinking",
            "images",
            "tool_calls",
            "tool_name",
        ];
        if let Some(k) = m
            .as_object()
            .and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
        {
            return Err(format!("messages[{i}]: json: unknown field \"{k}\""));
        }
        if !m.get("content").is_none_or(Value::is_string) {
            return Err(format!(
                "json: cannot unmarshal array into Go struct field Message.messages.content of type string (messages[{i}])"
            ));
        }
        for img in m["images"].as_array().into_iter().flatten() {
            let ok = img
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Err(format!("messages[{i}]: illegal base64 data in images"));
            }
        }
        for call in m["tool_calls"].as_array().into_iter().flatten() {
            if !call["function"]["name"].is_string() || !call["function"]["arguments"].is_object() {
                return Err(format!(
                    "messages[{i}]: tool_calls need function.name and object function.arguments"
                ));
            }
        }
        if role == "tool" && !m["tool_name"].is_string() {
            return Err(format!("messages[{i}]: tool results need tool_name"));
        }
    }
    for t in obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if t["type"] != "function" || !t["function"]["name"].is_string() {
            return Err("tools need type \"function\" and function.name".into());
        }
    }
    match obj.get("format") {
        None | Some(Value::Object(_)) => {}
        Some(Value::String(s)) if s == "json" => {}
        Some(_) => return Err("format must be \"json\" or a JSON schema".into()),
    }
    match obj.get("think") {
        None | Some(Value::Bool(_)) => {}
        Some(Value::String(s)) if matches!(s.as_str(), "high" | "medium" | "low") => {}
        Some(_) => return Err("think must be a boolean or \"high\", \"medium\", \"low\"".into()),
    }
    if !obj.get("stream").is_none_or(Value::is_boolean) {
        return Err("stream must be a boolean".into());
    }
    if let Some(options) = obj.get("options") {
        let options = options.as_object().ok_or("options must be an object")?;
        for (k, v) in options {
            let kind = OPTIONS
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, kind)| *kind)
                .ok_or(format!("invalid option provided: {k}"))?;
            let ok = match kind {
                "int" => v.is_i64() || v.is_u64(),
                "float" => v.is_number(),
                _ => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            };
            if !ok {
                return Err(format!("option \"{k}\" must be of type {kind}"));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

struct Reply {
    thinking: Option<String>,
    text: String,
    tool_call: Option<(String, Value)>,
    done_reason: &'static str,
    prompt_tokens: u64,
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn sample_for(schema: &Value) -> Value {
    match schema["type"].as_str() {
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        Some("object") => {
            let mut o = Map::new();
            for (k, v) in schema["properties"].as_object().into_iter().flatten() {
                o.insert(k.clone(), sample_for(v));
            }
            Value::Object(o)
        }
        _ => json!("example"),
    }
}

fn plan_reply(body: &Value) -> Reply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let prompt_tokens = messages
        .iter()
        .map(|m| words(m["content"].as_str().unwrap_or_default()))
        .sum::<u64>()
        .max(1);
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let user = last["content"].as_str().unwrap_or_default().to_string();
    let thinking = match &body["think"] {
        Value::Bool(true) | Value::String(_) => Some(format!("Thinking about: {user}")),
        _ => None,
    };
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    if last["role"] == "user" && !tools.is_empty() {
        let f = &tools[0]["function"];
        let word = user
            .split_whitespace()
            .last()
            .unwrap_or("")
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_string();
        let mut args = Map::new();
        for k in f["parameters"]["required"].as_array().into_iter().flatten() {
            if let Some(k) = k.as_str() {
                args.insert(k.to_string(), Value::from(word.as_str()));
            }
        }
        return Reply {
            thinking,
            text: String::new(),
            tool_call: Some((
                f["name"].as_str().unwrap_or_default().to_string(),
                Value::Object(args),
            )),
            done_reason: "stop",
            prompt_tokens,
        };
    }
    let mut text = if last["role"] == "tool" {
        format!(
            "The {} tool said: {}",
            last["tool_name"].as_str().unwrap_or_default(),
            user
        )
    } else {
        let images = last["images"].as_array().map_or(0, Vec::len);
        let mut t = format!("Hello from fake Ollama. You said: {user}");
        if images > 0 {
            t.push_str(&format!(
                " ({images} image{})",
                if images == 1 { "" } else { "s" }
            ));
        }
        t
    };
    match &body["format"] {
        Value::String(_) => text = json!({ "answer": text }).to_string(),
        schema @ Value::Object(_) => text = sample_for(schema).to_string(),
        _ => {}
    }
    let mut done_reason = "stop";
    for stop in body["options"]["stop"].as_array().into_iter().flatten() {
        if let Some(at) = stop.as_str().and_then(|s| text.find(s)) {
            text.truncate(at);
        }
    }
    if let Some(max) = body["options"]["num_predict"].as_u64() {
        let all: Vec<&str> = text.split(' ').collect();
        if all.len() as u64 > max {
            text = all[..max as usize].join(" ");
            done_reason = "length";
        }
    }
    Reply {
        thinking,
        text,
        tool_call: None,
        done_reason,
        prompt_tokens,
    }
}

const CREATED_AT: &str = "2025-10-17T23:14:07.414671Z";

impl Reply {
    fn eval_count(&self) -> u64 {
        match &self.tool_call {
            Some((_, args)) => words(&args.to_string()) + 2,
            None => words(&self.text) + self.thinking.as_deref().map_or(0, words),
        }
    }

    fn calls(&self) -> Option<Value> {
        self.tool_call
            .as_ref()
            .map(|(name, args)| json!([{"function": {"name": name, "arguments": args}}]))
    }

    fn stats(&self, v: &mut Value) {
        v["done"] = Value::Bool(true);
        v["done_reason"] = Value::from(self.done_reason);
        v["total_duration"] = json!(174560334);
        v["load_duration"] = json!(101397084);
        v["prompt_eval_count"] = Value::from(self.prompt_tokens);
        v["prompt_eval_duration"] = json!(13074791);
        v["eval_count"] = Value::from(self.eval_count());
        v["eval_duration"] = json!(52479709);
    }

    fn whole(&self, model: &str) -> Value {
        let mut message = json!({"role": "assistant", "content": self.text});
        if let Some(t) = &self.thinking {
            message["thinking"] = Value::from(t.as_str());
        }
        if let Some(calls) = self.calls() {
            message["tool_calls"] = calls;
        }
        let mut v = json!({"model": model, "created_at": CREATED_AT, "message": message});
        self.stats(&mut v);
        v
    }

    fn lines(&self, model: &str, fault: Option<&OllamaFault>) -> Vec<Bytes> {
        let line = |message: Value| json!({"model": model, "created_at": CREATED_AT, "message": message, "done": false});
        let mut out: Vec<Value> = Vec::new();
        if let Some(t) = &self.thinking {
            for w in t.split(' ') {
                out.push(line(
                    json!({"role": "assistant", "content": "", "thinking": format!("{w} ")}),
                ));
            }
        }
        if let Some(calls) = self.calls() {
            out.push(line(
                json!({"role": "assistant", "content": "", "tool_calls": calls}),
            ));
        } else {
            for (i, w) in self.text.split(' ').enumerate() {
                let piece = if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                };
                out.push(line(json!({"role": "assistant", "content": piece})));
            }
        }
        let mut last = json!({"model": model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": ""}});
        self.stats(&mut last);
        out.push(last);
        match fault {
            Some(OllamaFault::StreamError { message }) => {
                out.truncate(1);
                out.push(json!({ "error": message }));
            }
            Some(OllamaFault::Truncate) => out.truncate(2),
            _ => {}
        }
        out.into_iter()
            .map(|v| {
                let mut b = v.to_string().into_bytes();
                b.push(b'\n');
                Bytes::from(b)
            })
            .collect()
    }
}
