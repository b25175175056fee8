//! A fake of the Amazon SageMaker Runtime in front of chat-schema containers,
//! written from the API reference (InvokeEndpoint,
//! InvokeEndpointWithResponseStream, ResponseStream, PayloadPart, the error
//! shapes) and the LMI and TGI container docs.
//!
//! - `POST /endpoints/{EndpointName}/invocations` and
//!   `/invocations-response-stream` must be SigV4-signed for service
//!   `sagemaker` with the fake's credentials (the Bedrock fake's verifier,
//!   which recomputes the signature from what arrived); else 403 with AWS's
//!   messages. An endpoint name outside `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$` is a
//!   400 `ValidationError`, and one starting with `missing` does not exist
//!   (400 `Endpoint … not found.`, as SageMaker answers).
//! - The container behind an endpoint is TGI's Messages API when the name
//!   contains `tgi`, LMI otherwise. The body must be the OpenAI chat schema the
//!   containers take: known top-level fields only, roles `system`, `user`,
//!   `assistant`, `tool`, text and `image_url` parts, tool calls with string
//!   arguments, `stream_options` only with `stream: true`. A container's
//!   refusal comes back as SageMaker wraps it: 424 `ModelError` with
//!   `OriginalStatusCode`, `OriginalMessage` (the container's own error JSON)
//!   and `LogStreamArn`.
//! - Answers follow each container: LMI's `chat.completion` with
//!   `finish_reason` `eos_token` / `length`, TGI's with `model: "tgi"`, an empty
//!   `id` and tool-call `arguments` as an object. Streams are real
//!   `application/vnd.amazon.eventstream` frames with CRCs: `PayloadPart`
//!   events whose raw bytes are the container's stream (LMI JSON lines, TGI
//!   SSE ending `data: [DONE]`) cut into parts at arbitrary byte offsets, as
//!   the docs warn. With `stream_options.include_usage` the usage comes last
//!   (LMI as a `choices: []` line, TGI on the final chunk).
//!
//! Replies are deterministic: a tool call of the first tool when tools are
//! offered and the last turn is the user's (the required string arguments set
//! to the user's last word); after a tool result, text quoting it; otherwise
//! text quoting the last user text and counting its images. Tokens are words.
//! `GET /__requests` reports what was received; `POST /__fault` queues a fault
//! (see [`SagemakerFault::from_json`]).

use crate::bedrock::{frame, verify_signature_for, Credentials, RecordedRequest};
use crate::common::{bind_local, FaultQueue, Recorder, Server};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// The account the fake's endpoints belong to, as error messages name it.
pub const ACCOUNT: &str = "123456789012";

/// Bytes per `PayloadPart`; small and odd so parts cut JSON and lines apart.
const PART_BYTES: usize = 41;

/// A way to make the next signed request go wrong, consumed by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SagemakerFault {
    /// Answer with this status, `x-amzn-ErrorType` and `{"message"}`
    /// (`ModelNotReadyException` 429, `ServiceUnavailable` 503, …).
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
    /// The container failed: 424 `ModelError` wrapping its status and body.
    ModelError {
        original_status: u16,
        original_message: String,
    },
    /// A stream sends its first part, then this exception event
    /// (`ModelStreamError` with an `ErrorCode`, or `InternalStreamFailure`).
    /// A non-stream request gets a 424 `ModelError` with status 500 instead.
    StreamException {
        exception_type: String,
        error_code: Option<String>,
        message: String,
    },
    /// A stream whose second frame has a wrong message CRC.
    CorruptFrame,
    /// A stream that closes after its first two parts, mid-answer.
    Truncate,
}

impl SagemakerFault {
    /// The `POST /__fault` body:
    /// `{"kind":"error","status":429,"error_type":"ModelNotReadyException","message":"…"}`,
    /// `{"kind":"model_error","original_status":400,"original_message":"…"}`,
    /// `{"kind":"stream_exception","exception_type":"ModelStreamError","error_code":"StreamBroken","message":"…"}`,
    /// `{"kind":"corrupt_frame"}` or `{"kind":"truncate"}`.
    pub fn from_json(v: &Value) -> Option<SagemakerFault> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let status = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
        };
        match v.get("kind").and_then(Value::as_str)? {
            "error" => Some(SagemakerFault::Error {
                status: status("status")?,
                error_type: text("error_type")?,
                message: text("message")?,
            }),
            "model_error" => Some(SagemakerFault::ModelError {
                original_status: status("original_status")?,
                original_message: text("original_message")?,
            }),
            "stream_exception" => Some(SagemakerFault::StreamException {
                exception_type: text("exception_type")?,
                error_code: text("error_code"),
                message: text("message")?,
            }),
            "corrupt_frame" => Some(SagemakerFault::CorruptFrame),
            "truncate" => Some(SagemakerFault::Truncate),
            _ => None,
        }
    }
}

struct Shared {
    creds: Credentials,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<SagemakerFault>,
    counter: AtomicU64,
}

/// A running fake. Dropping it stops the server.
pub struct FakeSagemaker {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0` and serves on the current tokio runtime.
pub async fn start(creds: Credentials) -> std::io::Result<FakeSagemaker> {
    start_on(bind_local().await?, creds).await
}

/// Serves on `listener`.
pub async fn start_on(listener: TcpListener, creds: Credentials) -> std::io::Result<FakeSagemaker> {
    let shared = Arc::new(Shared {
        creds,
        requests: Recorder::new(),
        faults: FaultQueue::new(),
        counter: AtomicU64::new(0),
    });
    let app = Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(FakeSagemaker { shared, server })
}

impl FakeSagemaker {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`: the runtime's API has no path prefix.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Every API request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// Queue a fault; each API request with a valid signature consumes one.
    pub fn push_fault(&self, fault: SagemakerFault) {
        self.shared.faults.push(fault);
    }
}

/// `(endpoint name, streaming)` for `/endpoints/{name}/invocations[-response-stream]`.
pub fn parse_operation(path: &str) -> Option<(String, bool)> {
    let rest = path.strip_prefix("/endpoints/")?;
    let (name, op) = rest.split_once('/')?;
    let stream = match op {
        "invocations" => false,
        "invocations-response-stream" => true,
        _ => return None,
    };
    Some((name.to_string(), stream))
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
        "x-amzn-requestid",
        HeaderValue::from_static("0f7a1c2e-5d3b-4e8f-9a61-7b2c4d5e6f70"),
    );
    r
}

/// `{"message"}` with `x-amzn-ErrorType`, as the runtime answers its own errors.
fn aws_error(status: u16, error_type: &str, message: &str) -> Response {
    let mut r = respond(
        status,
        "application/json",
        Body::from(json!({ "message": message }).to_string()),
    );
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

/// 424 `ModelError`: the container answered `original_status`.
fn model_error(endpoint: &str, original_status: u16, original_message: &str) -> Response {
    let log_group = format!("/aws/sagemaker/Endpoints/{endpoint}");
    let body = json!({
        "ErrorCode": if original_status < 500 { "CLIENT_ERROR_FROM_MODEL" } else { "SERVER_ERROR_FROM_MODEL" },
        "LogStreamArn": format!("arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{log_group}"),
        "Message": format!(
            "Received {} error ({original_status}) from primary with message \"{original_message}\". See https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:group={log_group} in account {ACCOUNT} for more information.",
            if original_status < 500 { "client" } else { "server" }
        ),
        "OriginalMessage": original_message,
        "OriginalStatusCode": original_status,
    });
    let mut r = respond(424, "application/json", Body::from(body.to_string()));
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static("ModelError"));
    r
}

fn valid_endpoint_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Container {
    Lmi,
    Tgi,
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
        return match SagemakerFault::from_json(&body) {
            Some(fault) => {
                shared.faults.push(fault);
                respond(204, "application/json", Body::empty())
            }
            None => aws_error(
                400,
                "ValidationError",
                "unknown fault; see SagemakerFault::from_json",
            ),
        };
    }
    let verdict = verify_signature_for(
        "sagemaker",
        &shared.creds,
        method.as_str(),
        &path,
        uri.query().unwrap_or(""),
        &headers,
        &raw,
    );
    shared.requests.push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: body.clone(),
        raw: raw.clone(),
        signature_valid: verdict.is_ok(),
    });
    if let Err((error_type, message)) = verdict {
        return aws_error(403, error_type, &message);
    }
    let Some((endpoint, stream)) = parse_operation(&path).filter(|_| method == Method::POST) else {
        return aws_error(404, "UnknownOperationException", "Unknown operation");
    };
    if !valid_endpoint_name(&endpoint) {
        return aws_error(
            400,
            "ValidationError",
            &format!("1 validation error detected: Value '{endpoint}' at 'endpointName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*"),
        );
    }
    if endpoint.starts_with("missing") {
        return aws_error(
            400,
            "ValidationError",
            &format!("Endpoint {endpoint} of account {ACCOUNT} not found."),
        );
    }
    let container = if endpoint.contains("tgi") {
        Container::Tgi
    } else {
        Container::Lmi
    };

    let fault = shared.faults.pop();
    match &fault {
        Some(SagemakerFault::Error {
            status,
            error_type,
            message,
        }) => return aws_error(*status, error_type, message),
        Some(SagemakerFault::ModelError {
            original_status,
            original_message,
        }) => return model_error(&endpoint, *original_status, original_message),
        Some(SagemakerFault::StreamException { message, .. }) if !stream => {
            return model_error(&endpoint, 500, &container_error(container, message));
        }
        _ => {}
    }

    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return model_error(
            &endpoint,
            415,
            &container_error(container, "Content type must be application/json"),
        );
    }
    if body.is_null() {
        return model_error(
            &endpoint,
            400,
            &container_error(container, "Failed to parse the request body as JSON"),
        );
    }
    if let Err(message) = validate(&body) {
        return model_error(&endpoint, 422, &container_error(container, &message));
    }
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let reply = plan_reply(&body);
    let wants_stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    if !stream {
        if wants_stream {
            // InvokeEndpoint buffers whatever the container streamed.
            let bytes = container_stream(container, &reply, n, include_usage);
            return respond(200, container_stream_type(container), Body::from(bytes));
        }
        let mut r = respond(
            200,
            "application/json",
            Body::from(whole_answer(container, &reply, n).to_string()),
        );
        r.headers_mut().insert(
            "x-amzn-invoked-production-variant",
            HeaderValue::from_static("AllTraffic"),
        );
        return r;
    }
    let bytes = if wants_stream {
        container_stream(container, &reply, n, include_usage)
    } else {
        // A container asked not to stream answers in one piece.
        let mut b = whole_answer(container, &reply, n).to_string().into_bytes();
        b.push(b'\n');
        b
    };
    let frames = event_frames(&bytes, fault.as_ref());
    let mut r = respond(
        200,
        "application/vnd.amazon.eventstream",
        Body::from_stream(futures_util::stream::iter(
            frames.into_iter().map(Ok::<Bytes, Infallible>),
        )),
    );
    let h = r.headers_mut();
    h.insert(
        "x-amzn-sagemaker-content-type",
        HeaderValue::from_static(container_stream_type(container)),
    );
    h.insert(
        "x-amzn-invoked-production-variant",
        HeaderValue::from_static("AllTraffic"),
    );
    r
}

/// The container's own error body: TGI's `{"error","error_type"}`, LMI's
/// `{"code","message"}`.
fn container_error(container: Container, message: &str) -> String {
    match container {
        Container::Tgi => json!({"error": message, "error_type": "validation"}).to_string(),
        Container::Lmi => json!({"code": 424, "message": message}).to_string(),
    }
}

fn container_stream_type(container: Container) -> &'static str {
    match container {
        Container::Tgi => "text/event-stream",
        Container::Lmi => "application/jsonlines",
    }
}

// ---------------------------------------------------------------------------
// Validation of the chat body the containers take
// ---------------------------------------------------------------------------

const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "user",
    "ignore_eos",
    "tools",
    "tool_choice",
    "response_format",
];

fn validate(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("Failed to deserialize the JSON body into the target type: expected a map")?;
    if let Some(k) = obj.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(format!(
            "Failed to deserialize the JSON body into the target type: unknown field `{k}`"
        ));
    }
    if let Some(m) = obj.get("model") {
        m.as_str().ok_or("`model` must be a string")?;
    }
    match obj.get("stream") {
        None | Some(Value::Bool(_)) => {}
        Some(_) => return Err("`stream` must be a boolean".into()),
    }
    if obj.get("stream_options").is_some_and(|o| !o.is_null())
        && obj.get("stream").and_then(Value::as_bool) != Some(true)
    {
        return Err("Stream options can only be defined when `stream=True`.".into());
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("`messages` must be a non-empty array")?;
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or(format!("messages[{i}]: missing `role`"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "user" | "tool" => {}
            "assistant" => {
                if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
                    for call in calls.as_array().ok_or("`tool_calls` must be an array")? {
                        let ok = call.get("id").is_some_and(Value::is_string)
                            && call["function"]["name"].is_string()
                            && call["function"]["arguments"].is_string();
                        if !ok {
                            return Err(format!(
                                "messages[{i}]: tool calls need `id`, `function.name` and string `function.arguments`"
                            ));
                        }
                    }
                }
            }
            other => return Err(format!("messages[{i}]: unknown role `{other}`")),
        }
        if role == "tool" && !m.get("tool_call_id").is_some_and(Value::is_string) {
            return Err(format!("messages[{i}]: tool messages need `tool_call_id`"));
        }
        match content {
            Value::String(_) => {}
            Value::Null if role == "assistant" => {}
            Value::Array(parts) => {
                for (j, p) in parts.iter().enumerate() {
                    let ok = match p.get("type").and_then(Value::as_str) {
                        Some("text") => p["text"].is_string(),
                        Some("image_url") => p["image_url"]["url"].is_string(),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("messages[{i}].content[{j}]: invalid content part"));
                    }
                }
            }
            _ => return Err(format!("messages[{i}]: invalid `content`")),
        }
    }
    if let Some(tools) = obj.get("tools").filter(|t| !t.is_null()) {
        for t in tools.as_array().ok_or("`tools` must be an array")? {
            if t["type"] != "function" || !t["function"]["name"].is_string() {
                return Err("tools need `type: function` and `function.name`".into());
            }
        }
    }
    if let Some(max) = obj.get("max_tokens").filter(|v| !v.is_null()) {
        if max.as_u64().is_none_or(|n| n == 0) {
            return Err("`max_tokens` must be a positive integer".into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

struct Reply {
    text: String,
    /// `(name, arguments)` when the reply is a tool call.
    tool_call: Option<(String, Value)>,
    truncated: bool,
    prompt_tokens: u64,
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn text_of(content: &Value) -> (String, usize) {
    match content {
        Value::String(s) => (s.clone(), 0),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            let mut images = 0;
            for p in parts {
                match p["type"].as_str() {
                    Some("text") => texts.push(p["text"].as_str().unwrap_or_default()),
                    Some("image_url") => images += 1,
                    _ => {}
                }
            }
            (texts.join(" "), images)
        }
        _ => (String::new(), 0),
    }
}

fn plan_reply(body: &Value) -> Reply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let prompt_tokens = messages
        .iter()
        .map(|m| words(&text_of(&m["content"]).0))
        .sum::<u64>()
        .max(1);
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    if last["role"] == "tool" {
        let (result, _) = text_of(&last["content"]);
        return finish(
            format!("The tool said: {result}"),
            None,
            body,
            prompt_tokens,
        );
    }
    let (user, images) = text_of(&last["content"]);
    if !tools.is_empty() && body["tool_choice"] != "none" {
        let f = &tools[0]["function"];
        let name = f["name"].as_str().unwrap_or_default().to_string();
        let last_word = user
            .split_whitespace()
            .last()
            .unwrap_or("")
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_string();
        let mut args = Map::new();
        for req in f["parameters"]["required"].as_array().into_iter().flatten() {
            if let Some(k) = req.as_str() {
                args.insert(k.to_string(), Value::from(last_word.as_str()));
            }
        }
        return Reply {
            text: String::new(),
            tool_call: Some((name, Value::Object(args))),
            truncated: false,
            prompt_tokens,
        };
    }
    let mut text = format!("Hello from fake SageMaker. You said: {user}");
    if images > 0 {
        text.push_str(&format!(
            " ({images} image{})",
            if images == 1 { "" } else { "s" }
        ));
    }
    finish(text, None, body, prompt_tokens)
}

/// Cuts the text at `max_tokens` words.
fn finish(
    text: String,
    tool_call: Option<(String, Value)>,
    body: &Value,
    prompt_tokens: u64,
) -> Reply {
    let max = body["max_tokens"].as_u64().map(|n| n as usize);
    let all: Vec<&str> = text.split(' ').collect();
    let (text, truncated) = match max {
        Some(m) if all.len() > m => (all[..m].join(" "), true),
        _ => (text.clone(), false),
    };
    Reply {
        text,
        tool_call,
        truncated,
        prompt_tokens,
    }
}

impl Reply {
    fn completion_tokens(&self) -> u64 {
        match &self.tool_call {
            Some((_, args)) => words(&args.to_string()).max(1) + 2,
            None => words(&self.text),
        }
    }

    fn usage(&self) -> Value {
        let c = self.completion_tokens();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": c,
            "total_tokens": self.prompt_tokens + c,
        })
    }

    fn finish_reason(&self, container: Container) -> &'static str {
        match (container, self.truncated, &self.tool_call) {
            (_, _, Some(_)) => "tool_calls",
            (_, true, _) => "length",
            (Container::Lmi, false, None) => "eos_token",
            (Container::Tgi, false, None) => "stop",
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn whole_answer(container: Container, reply: &Reply, n: u64) -> Value {
    let message = match (&reply.tool_call, container) {
        (Some((name, args)), Container::Tgi) => json!({
            "role": "assistant",
            "tool_calls": [{
                "id": "0",
                "type": "function",
                "function": {"description": null, "name": name, "arguments": args},
            }],
        }),
        (Some((name, args)), Container::Lmi) => json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": format!("chatcmpl-tool-{n}"),
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            }],
        }),
        (None, _) => json!({"role": "assistant", "content": reply.text}),
    };
    let (id, model) = match container {
        Container::Tgi => (String::new(), Some("tgi")),
        Container::Lmi => (format!("chatcmpl-{n}"), None),
    };
    let mut v = json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": reply.finish_reason(container),
        }],
        "usage": reply.usage(),
    });
    if let Some(m) = model {
        v["model"] = Value::from(m);
        v["system_fingerprint"] = Value::from("2.4.1-native");
    }
    v
}

/// What the container itself streams, before SageMaker wraps it in parts.
fn container_stream(container: Container, reply: &Reply, n: u64, include_usage: bool) -> Vec<u8> {
    let created = now();
    let id = match container {
        Container::Tgi => String::new(),
        Container::Lmi => format!("chatcmpl-{n}"),
    };
    let chunk = |delta: Value, finish: Option<&str>, usage: Option<Value>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if container == Container::Tgi {
            c["model"] = Value::from("tgi");
            c["system_fingerprint"] = Value::from("2.4.1-native");
        }
        if let Some(u) = usage {
            c["usage"] = u;
        }
        c
    };
    let mut chunks: Vec<Value> = Vec::new();
    match &reply.tool_call {
        Some((name, args)) => {
            let args = args.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for (i, piece) in [a, b].into_iter().enumerate() {
                let call = json!({
                    "index": 0,
                    "id": if container == Container::Tgi || i > 0 { String::new() } else { format!("chatcmpl-tool-{n}") },
                    "type": "function",
                    "function": {"name": if i == 0 { Value::from(name.as_str()) } else { Value::Null }, "arguments": piece},
                });
                // TGI streams the call as one object, LMI as a list.
                let calls = match container {
                    Container::Tgi => call,
                    Container::Lmi => json!([call]),
                };
                chunks.push(chunk(
                    json!({"role": "assistant", "tool_calls": calls}),
                    None,
                    None,
                ));
            }
        }
        None => {
            for (i, w) in reply.text.split(' ').enumerate() {
                let piece = if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                };
                let mut delta = json!({"content": piece});
                if i == 0 || container == Container::Tgi {
                    delta["role"] = Value::from("assistant");
                }
                chunks.push(chunk(delta, None, None));
            }
        }
    }
    let final_usage = (include_usage && container == Container::Tgi).then(|| reply.usage());
    let empty = match container {
        Container::Tgi => json!({"role": "assistant", "content": ""}),
        Container::Lmi => json!({}),
    };
    chunks.push(chunk(
        empty,
        Some(reply.finish_reason(container)),
        final_usage,
    ));
    let mut out = Vec::new();
    for c in &chunks {
        match container {
            Container::Tgi => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(c.to_string().as_bytes());
                out.extend_from_slice(b"\n\n");
            }
            Container::Lmi => {
                out.extend_from_slice(c.to_string().as_bytes());
                out.push(b'\n');
            }
        }
    }
    match container {
        Container::Tgi => out.extend_from_slice(b"data: [DONE]\n\n"),
        Container::Lmi if include_usage => {
            let mut u = chunk(json!({}), None, Some(reply.usage()));
            u["choices"] = json!([]);
            out.extend_from_slice(u.to_string().as_bytes());
            out.push(b'\n');
        }
        Container::Lmi => {}
    }
    out
}

/// A `PayloadPart` event carrying `bytes`.
pub fn payload_part(bytes: &[u8]) -> Vec<u8> {
    frame(
        &[
            (":event-type", "PayloadPart"),
            (":content-type", "application/octet-stream"),
            (":message-type", "event"),
        ],
        bytes,
    )
}

/// An exception event of the response stream.
pub fn exception_event(exception_type: &str, error_code: Option<&str>, message: &str) -> Vec<u8> {
    let mut payload = json!({ "Message": message });
    if let Some(code) = error_code {
        payload["ErrorCode"] = Value::from(code);
    }
    frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.to_string().as_bytes(),
    )
}

fn event_frames(bytes: &[u8], fault: Option<&SagemakerFault>) -> Vec<Bytes> {
    let mut frames: Vec<Vec<u8>> = bytes.chunks(PART_BYTES).map(payload_part).collect();
    match fault {
        Some(SagemakerFault::StreamException {
            exception_type,
            error_code,
            message,
        }) => {
            frames.truncate(1);
            frames.push(exception_event(
                exception_type,
                error_code.as_deref(),
                message,
            ));
        }
        Some(SagemakerFault::Truncate) => frames.truncate(2),
        Some(SagemakerFault::CorruptFrame) => {
            if let Some(f) = frames.get_mut(1) {
                let last = f.len() - 1;
                f[last] ^= 0x5a;
            }
        }
        _ => {}
    }
    frames.into_iter().map(Bytes::from).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parts_reassemble_into_the_container_stream() {
        let body =
            json!({"messages": [{"role": "user", "content": "one two three"}], "stream": true});
        let reply = plan_reply(&body);
        let bytes = container_stream(Container::Lmi, &reply, 1, false);
        let frames = event_frames(&bytes, None);
        assert!(frames.len() > 3);
        let mut joined = Vec::new();
        for f in &frames {
            let total = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
            let headers = u32::from_be_bytes(f[4..8].try_into().unwrap()) as usize;
            assert_eq!(total, f.len());
            joined.extend_from_slice(&f[12 + headers..total - 4]);
        }
        assert_eq!(joined, bytes);
        let text = String::from_utf8(joined).unwrap();
        assert!(text.lines().last().unwrap().contains("\"eos_token\""));
    }

    #[test]
    fn container_refusals_are_model_errors() {
        assert!(validate(&json!({"messages": []})).is_err());
        assert!(validate(
            &json!({"messages": [{"role": "user", "content": "x"}], "stream_options": {}})
        )
        .is_err());
        assert!(
            validate(&json!({"messages": [{"role": "user", "content": "x"}], "foo": 1})).is_err()
        );
        assert!(validate(&json!({"messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": {"include_usage": true}})).is_ok());
    }
}
