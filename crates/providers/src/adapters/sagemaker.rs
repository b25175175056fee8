//! Amazon SageMaker real-time endpoints whose container speaks OpenAI's chat
//! completions schema (`sagemaker_chat/<endpoint-name>`): LMI (DJL Serving),
//! Hugging Face TGI's Messages API and vLLM all accept an OpenAI chat body on
//! `/invocations` when it has `messages`.
//!
//! - **Calls.** `POST /endpoints/{EndpointName}/invocations` (InvokeEndpoint)
//!   and, for streams, `/invocations-response-stream`
//!   (InvokeEndpointWithResponseStream), both signed with SigV4 for service
//!   `sagemaker` by the same code as Bedrock ([`super::bedrock::sign_aws`]).
//!   The region comes from the model's `aws_region` / `AWS_REGION`, else from
//!   a `runtime.sagemaker.{region}.amazonaws.com` host.
//! - **Body.** The client's OpenAI body goes through as the container takes it,
//!   with `model` set to the endpoint name (as LiteLLM's `sagemaker_chat`
//!   does), `stream` set explicitly, and `stream_options.include_usage` asked
//!   for on streams so they can be metered; containers that do not know it
//!   ignore it.
//! - **Answers.** Containers stray from OpenAI in small ways, evened out here:
//!   LMI reports `finish_reason` `eos_token` / `stop_sequence`, TGI returns
//!   tool-call `arguments` as a JSON object (and streamed `tool_calls` as one
//!   object rather than an array), ids may be empty. The client gets a plain
//!   `chat.completion` naming the model it asked for.
//! - **Streams.** The answer is AWS event-stream framing
//!   ([`super::bedrock::eventstream`], CRC-checked) whose `PayloadPart` events
//!   carry the container's own stream as raw bytes, split anywhere: SSE
//!   (`data: {...}`, `data: [DONE]`, TGI and vLLM) or JSON lines (LMI). Both
//!   are read line by line across parts. `ModelStreamError` and
//!   `InternalStreamFailure` exception events end the stream with an error
//!   event, as does a stream that stops before any `finish_reason` or
//!   `[DONE]`.
//!
//! The legacy `sagemaker/<endpoint>` route (TGI's `inputs`/`parameters` text
//! generation) is not served: it needs the model's chat template to render
//! messages into a prompt, which the proxy does not have. The registry marks it
//! unsupported with that reason.

use super::bedrock::eventstream::Decoder;
use super::bedrock::{sign_aws, AwsSigner};
use super::common::{
    bad_upstream, invalid, kind_for_status, now_secs, usage_chunk_json, with_code, write_frame,
    DONE_FRAME,
};
use super::{ChatAdapter, ChatContext, StreamTranslator, UpstreamRequest, UpstreamTarget};
use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The SigV4 signing name of the SageMaker runtime.
pub const SERVICE: &str = "sagemaker";

/// A line of the container's stream longer than this is not a chunk; refusing
/// it keeps a misbehaving container from growing the buffer without bound.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

const SIGNER: AwsSigner = AwsSigner {
    service: SERVICE,
    provider: "sagemaker",
    region_from_host,
};

/// `runtime[-fips].sagemaker.{region}.amazonaws.com` (VPC endpoint names too).
fn region_from_host(host: &str) -> Option<String> {
    let host = host.split(':').next().unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    labels
        .windows(3)
        .find(|w| matches!(w[0], "runtime" | "runtime-fips") && w[1] == "sagemaker")
        .map(|w| w[2])
        .filter(|r| r.contains('-'))
        .map(str::to_string)
}

/// SageMaker chat-schema endpoints behind OpenAI chat completions.
#[derive(Debug, Default, Clone, Copy)]
pub struct SagemakerAdapter;

impl SagemakerAdapter {
    /// [`ChatAdapter::chat_request_for`] with the signing time given: the
    /// injectable clock for tests.
    pub fn request_at(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
        target: &UpstreamTarget<'_>,
        now: SystemTime,
    ) -> Result<UpstreamRequest, ApiError> {
        let req = self.chat_request(openai_body, ctx)?;
        sign_aws(req, target, now, &SIGNER)
    }
}

impl ChatAdapter for SagemakerAdapter {
    /// The unsigned request. SageMaker refuses unsigned requests; the gateway
    /// calls [`ChatAdapter::chat_request_for`], which signs.
    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let endpoint = endpoint_name(ctx.upstream_model)?;
        let body = translate_request(openai_body, ctx)?;
        let operation = if ctx.stream {
            "invocations-response-stream"
        } else {
            "invocations"
        };
        Ok(UpstreamRequest {
            method: Method::POST,
            path: format!("/endpoints/{endpoint}/{operation}"),
            headers: Vec::new(),
            content_type: None,
            body,
        })
    }

    fn chat_request_for(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
        target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        self.request_at(openai_body, ctx, target, SystemTime::now())
    }

    fn chat_response(
        &self,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Bytes, ApiError> {
        translate_response(upstream_body, ctx)
    }

    fn chat_stream(&self, ctx: &ChatContext<'_>) -> Box<dyn StreamTranslator> {
        Box::new(SagemakerStream::new(ctx))
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        translate_error(status, upstream_body)
    }
}

/// The endpoint name, checked against SageMaker's pattern
/// (`^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, at most 63) so it is safe in the path.
fn endpoint_name(model: &str) -> Result<&str, ApiError> {
    let b = model.as_bytes();
    let ok = (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(model)
    } else {
        Err(ApiError::new(
            ErrorKind::Internal,
            format!("sagemaker: `{model}` is not a SageMaker endpoint name (letters, digits and inner hyphens, at most 63); write the model as `sagemaker_chat/<endpoint-name>`"),
        )
        .with_code("provider_misconfigured"))
    }
}

// ---------------------------------------------------------------------------
// OpenAI request → container request
// ---------------------------------------------------------------------------

fn translate_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Bytes, ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut req) = parsed else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    if req
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err(invalid("messages", "messages must be a non-empty array"));
    }
    req.insert("model".into(), Value::from(ctx.upstream_model));
    req.insert("stream".into(), Value::Bool(ctx.stream));
    if ctx.stream {
        let mut options = match req.remove("stream_options") {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        options.insert("include_usage".into(), Value::Bool(true));
        req.insert("stream_options".into(), Value::Object(options));
    } else {
        // Only valid with `stream: true`; strict containers refuse it otherwise.
        req.remove("stream_options");
    }
    serde_json::to_vec(&req).map(Bytes::from).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("sagemaker: request encoding: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------
// Container answer → OpenAI answer
// ---------------------------------------------------------------------------

/// LMI reports `eos_token` and `stop_sequence`; OpenAI calls both `stop`.
fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "length" | "max_tokens" => "length",
        "tool_calls" | "function_call" => "tool_calls",
        "content_filter" => "content_filter",
        _ => "stop",
    }
}

fn usage(u: &Value) -> Value {
    let count = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = count("prompt_tokens");
    let completion = count("completion_tokens");
    let total = u
        .get("total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(prompt + completion);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
    })
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn fresh_id(prefix: &str) -> String {
    format!(
        "{prefix}{:x}{:x}",
        now_secs(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// The container's id when it sent a usable one (TGI sends `""`).
fn completion_id(v: &Value) -> String {
    match v.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(n)) => format!("chatcmpl-{n}"),
        _ => fresh_id("chatcmpl-sm"),
    }
}

/// One tool call as OpenAI shapes it: a string id and `arguments` as a JSON
/// string. `streamed` keeps a continuation piece without id or name as it is.
fn tool_call(call: &Value, position: usize, streamed: bool) -> Value {
    let mut out = Map::new();
    if streamed {
        let index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        out.insert("index".into(), Value::from(index));
    }
    let id = match call.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(format!("call_{n}")),
        _ => None,
    };
    let f = call.get("function").unwrap_or(&Value::Null);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    match (id, streamed) {
        (Some(id), _) => {
            out.insert("id".into(), Value::from(id));
        }
        // A whole call needs an id the client can answer with.
        (None, false) => {
            out.insert("id".into(), Value::from(fresh_id("call_sm")));
        }
        (None, true) if name.is_some() => {
            out.insert("id".into(), Value::from(fresh_id("call_sm")));
        }
        (None, true) => {}
    }
    if out.contains_key("id") {
        out.insert("type".into(), Value::from("function"));
    }
    let mut function = Map::new();
    if let Some(name) = name {
        function.insert("name".into(), Value::from(name));
    }
    let arguments = match f.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) if streamed => String::new(),
        None | Some(Value::Null) => "{}".to_string(),
        // TGI sends the arguments as an object.
        Some(other) => other.to_string(),
    };
    function.insert("arguments".into(), Value::from(arguments));
    out.insert("function".into(), Value::Object(function));
    Value::Object(out)
}

/// `tool_calls` as an array (TGI streams a single object).
fn tool_calls_list(calls: Option<&Value>) -> Vec<&Value> {
    match calls {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(call @ Value::Object(_)) => vec![call],
        _ => Vec::new(),
    }
}

/// Logprobs in OpenAI's object shape pass; LMI's list shape does not parse
/// in OpenAI clients, so it is left out.
fn logprobs(v: Option<&Value>) -> Value {
    match v {
        Some(l @ Value::Object(_)) => l.clone(),
        _ => Value::Null,
    }
}

fn translate_response(body: &[u8], ctx: &ChatContext<'_>) -> Result<Bytes, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        bad_upstream("sagemaker: the endpoint answered 200 with a body that is not JSON")
    })?;
    if let Some(e) = v.get("error") {
        return Err(container_error(e));
    }
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            bad_upstream("sagemaker: the endpoint's answer has no `choices`; is its container serving the chat completions schema?")
        })?;
    let mut out_choices = Vec::with_capacity(choices.len());
    for (i, c) in choices.iter().enumerate() {
        let m = c.get("message").unwrap_or(&Value::Null);
        let calls: Vec<Value> = tool_calls_list(m.get("tool_calls"))
            .into_iter()
            .enumerate()
            .map(|(j, call)| tool_call(call, j, false))
            .collect();
        let content = m
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() || calls.is_empty());
        let mut message = json!({
            "role": "assistant",
            "content": content,
            "refusal": m.get("refusal").cloned().unwrap_or(Value::Null),
        });
        if let Some(r) = m.get("reasoning_content").and_then(Value::as_str) {
            message["reasoning_content"] = Value::from(r);
        }
        let reason = match c.get("finish_reason").and_then(Value::as_str) {
            _ if !calls.is_empty() => "tool_calls",
            Some(r) => finish_reason(r),
            None => "stop",
        };
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        out_choices.push(json!({
            "index": c.get("index").and_then(Value::as_u64).unwrap_or(i as u64),
            "message": message,
            "logprobs": logprobs(c.get("logprobs")),
            "finish_reason": reason,
        }));
    }
    let mut out = json!({
        "id": completion_id(&v),
        "object": "chat.completion",
        "created": v.get("created").and_then(Value::as_u64).unwrap_or_else(now_secs),
        "model": ctx.requested_model,
        "choices": out_choices,
    });
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        out["usage"] = usage(u);
    }
    serde_json::to_vec(&out).map(Bytes::from).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("sagemaker: response encoding: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// `Message` (the API's member name) or `message`.
fn aws_message(v: &Value) -> Option<&str> {
    v.get("Message")
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)
}

/// The text of an error the container itself sent: TGI's `{"error", "error_type"}`,
/// OpenAI's `{"error": {"message"}}`, or a bare string.
fn container_message(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("error")
            .and_then(container_message)
            .or_else(|| o.get("message").and_then(Value::as_str).map(str::to_string))
            .or_else(|| o.get("detail").and_then(Value::as_str).map(str::to_string)),
        _ => None,
    }
}

fn container_error(e: &Value) -> ApiError {
    let message = container_message(e).unwrap_or_else(|| e.to_string());
    ApiError::new(
        ErrorKind::BadGateway,
        format!("sagemaker: the model container failed: {message}"),
    )
    .with_code("upstream_error")
}

/// A non-2xx answer. A `ModelError` (424) wraps the container's own answer:
/// its `OriginalStatusCode` says whose fault it is (a 4xx from the container
/// means the request did not suit the model), and `OriginalMessage` is the
/// container's error body.
fn translate_error(status: u16, body: &[u8]) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let Some(v) = parsed.as_ref() else {
        let text = String::from_utf8_lossy(body);
        let snippet: String = text.trim().chars().take(200).collect();
        let (kind, code) = kind_for_status(status);
        let detail = if snippet.is_empty() {
            "an empty body".to_string()
        } else {
            format!("a non-JSON body: {snippet}")
        };
        return with_code(
            ApiError::new(
                kind,
                format!("sagemaker: upstream returned HTTP {status} with {detail}"),
            ),
            code,
        );
    };
    if let Some(original) = v.get("OriginalStatusCode").and_then(Value::as_u64) {
        let original = u16::try_from(original).unwrap_or(500);
        let detail = v
            .get("OriginalMessage")
            .and_then(Value::as_str)
            .map(|m| {
                serde_json::from_str::<Value>(m)
                    .ok()
                    .and_then(|j| container_message(&j))
                    .unwrap_or_else(|| m.to_string())
            })
            .or_else(|| aws_message(v).map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {original}"));
        let message = format!("sagemaker: the model container answered {original}: {detail}");
        return match original {
            400 | 413 | 422 => ApiError::new(ErrorKind::InvalidRequest, message),
            429 => {
                ApiError::new(ErrorKind::RateLimited, message).with_code("upstream_rate_limited")
            }
            _ => ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_error"),
        };
    }
    if matches!(status, 401 | 403) {
        // AWS's text can quote the access key id; the operator's log gets it.
        tracing::warn!(
            status,
            message = aws_message(v).unwrap_or(""),
            "sagemaker rejected the proxy's AWS credentials"
        );
        return ApiError::new(
            ErrorKind::BadGateway,
            format!("sagemaker rejected the proxy's AWS credentials ({status}); the operator must check this model's aws_* settings"),
        )
        .with_code("upstream_auth_failed");
    }
    let (kind, code) = kind_for_status(status);
    let message = match aws_message(v)
        .map(str::to_string)
        .or_else(|| container_message(v))
    {
        Some(m) => format!("sagemaker: {m}"),
        None => format!("sagemaker: upstream returned HTTP {status}"),
    };
    with_code(ApiError::new(kind, message), code)
}

/// An `exception` event of the response stream.
fn stream_exception(kind_name: &str, payload: &[u8]) -> ApiError {
    let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let message = aws_message(&v).unwrap_or("no message");
    let error_code = v.get("ErrorCode").and_then(Value::as_str);
    let text = match error_code {
        Some(c) => format!("sagemaker: the stream failed ({kind_name} {c}): {message}"),
        None => format!("sagemaker: the stream failed ({kind_name}): {message}"),
    };
    match (kind_name, error_code) {
        (_, Some("ModelInvocationTimeExceeded")) => {
            ApiError::new(ErrorKind::GatewayTimeout, text).with_code("upstream_timeout")
        }
        _ => ApiError::new(ErrorKind::BadGateway, text).with_code("upstream_error"),
    }
}

// ---------------------------------------------------------------------------
// Event stream of PayloadParts → OpenAI SSE
// ---------------------------------------------------------------------------

/// Splits the container's bytes into lines, whatever the part boundaries.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    fn feed(
        &mut self,
        bytes: &[u8],
        mut line: impl FnMut(&[u8]) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let scanned = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        let mut from = scanned;
        while let Some(nl) = self.buf[from..].iter().position(|b| *b == b'\n') {
            let end = from + nl;
            line(&self.buf[start..end])?;
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(bad_upstream(
                "sagemaker: the container streamed an over-long line without a newline",
            ));
        }
        Ok(())
    }

    fn flush(
        &mut self,
        mut line: impl FnMut(&[u8]) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let rest = std::mem::take(&mut self.buf);
        if rest.is_empty() {
            Ok(())
        } else {
            line(&rest)
        }
    }
}

struct StreamState {
    id: Option<String>,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    finished: bool,
    done: bool,
    usage: Option<Value>,
    /// The upstream has ended: a line that does not parse was cut short.
    at_end: bool,
    /// Per choice index: tool-call indexes already given an id.
    announced: Vec<(u64, u64)>,
}

/// Translates one InvokeEndpointWithResponseStream answer.
pub struct SagemakerStream {
    decoder: Decoder,
    lines: Lines,
    state: StreamState,
}

impl SagemakerStream {
    fn new(ctx: &ChatContext<'_>) -> Self {
        SagemakerStream {
            decoder: Decoder::new(),
            lines: Lines::default(),
            state: StreamState {
                id: None,
                created: now_secs(),
                model: ctx.requested_model.to_string(),
                include_usage: ctx.include_usage,
                started: false,
                finished: false,
                done: false,
                usage: None,
                at_end: false,
                announced: Vec::new(),
            },
        }
    }
}

impl StreamTranslator for SagemakerStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        self.decoder.push(chunk);
        loop {
            let message = self.decoder.next_message().map_err(|e| {
                bad_upstream(format!("sagemaker: the response stream is corrupt: {e}"))
            })?;
            let Some(message) = message else {
                return Ok(());
            };
            match message.header_str(":message-type") {
                Some("event") => {
                    if message.header_str(":event-type") == Some("PayloadPart") {
                        let state = &mut self.state;
                        self.lines
                            .feed(&message.payload, |line| state.on_line(line, out))?;
                    }
                    // Other event types are for newer clients; skipping them is
                    // what AWS's SDKs do.
                }
                Some("exception") => {
                    let kind = message.header_str(":exception-type").unwrap_or("exception");
                    return Err(stream_exception(kind, &message.payload));
                }
                Some("error") => {
                    let code = message.header_str(":error-code").unwrap_or("error");
                    let text = message.header_str(":error-message").unwrap_or("no message");
                    return Err(ApiError::new(
                        ErrorKind::BadGateway,
                        format!("sagemaker: the stream failed ({code}): {text}"),
                    )
                    .with_code("upstream_error"));
                }
                _ => return Err(bad_upstream(
                    "sagemaker: the response stream sent a frame without a known `:message-type`",
                )),
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.decoder.buffered() > 0 {
            return Err(bad_upstream(
                "sagemaker: the response stream ended in the middle of a frame",
            ));
        }
        let state = &mut self.state;
        state.at_end = true;
        self.lines.flush(|line| state.on_line(line, out))?;
        if !(state.finished || state.done) {
            return Err(bad_upstream(
                "sagemaker: the stream ended before the answer was complete",
            ));
        }
        if state.include_usage {
            if let Some(usage) = state.usage.take() {
                let id = state.id.clone().unwrap_or_default();
                write_frame(
                    out,
                    &usage_chunk_json(&id, state.created, &state.model, usage),
                )?;
            }
        }
        out.extend_from_slice(DONE_FRAME);
        Ok(())
    }
}

impl StreamState {
    fn on_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        let payload = match line.strip_prefix(b"data:") {
            Some(rest) => rest.trim_ascii_start(),
            // The rest of SSE's fields carry nothing a chunk needs.
            None if line.starts_with(b":")
                || line.starts_with(b"event:")
                || line.starts_with(b"id:")
                || line.starts_with(b"retry:") =>
            {
                return Ok(())
            }
            None => line,
        };
        if payload == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_slice(payload).map_err(|_| {
            if self.at_end {
                bad_upstream(
                    "sagemaker: the stream ended before the answer was complete, in the middle of a chunk",
                )
            } else {
                bad_upstream("sagemaker: the container streamed a line that is not JSON")
            }
        })?;
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            return Err(container_error(e));
        }
        if self.id.is_none() {
            self.id = Some(completion_id(&v));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage(u));
        }
        if let Some(c) = v.get("created").and_then(Value::as_u64) {
            if !self.started {
                self.created = c;
            }
        }
        for c in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.choice(c, out)?;
        }
        Ok(())
    }

    fn choice(&mut self, c: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
        let d = c.get("delta").unwrap_or(&Value::Null);
        let mut delta = Map::new();
        if !self.started {
            delta.insert("role".into(), Value::from("assistant"));
        }
        if let Some(text) = d.get("content").and_then(Value::as_str) {
            if !text.is_empty() || !self.started {
                delta.insert("content".into(), Value::from(text));
            }
        }
        if let Some(r) = d
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            delta.insert("reasoning_content".into(), Value::from(r));
        }
        let calls: Vec<Value> = tool_calls_list(d.get("tool_calls"))
            .into_iter()
            .enumerate()
            .map(|(j, call)| self.streamed_call(index, call, j))
            .collect();
        if !calls.is_empty() {
            delta.insert("tool_calls".into(), Value::Array(calls));
        }
        let finish = c
            .get("finish_reason")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|r| {
                if self.announced.iter().any(|(i, _)| *i == index) {
                    "tool_calls"
                } else {
                    finish_reason(r)
                }
            });
        let has_text = delta
            .get("content")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if self.started
            && finish.is_none()
            && !has_text
            && !delta.contains_key("reasoning_content")
            && !delta.contains_key("tool_calls")
        {
            return Ok(());
        }
        self.started = true;
        if finish.is_some() {
            self.finished = true;
        }
        let mut chunk = json!({
            "id": self.id.as_deref().unwrap_or_default(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": index,
                "delta": Value::Object(delta),
                "logprobs": logprobs(c.get("logprobs")),
                "finish_reason": finish,
            }],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        write_frame(out, &chunk)
    }

    /// A streamed tool-call piece; the first piece of each call carries its id.
    fn streamed_call(&mut self, choice: u64, call: &Value, position: usize) -> Value {
        let mut t = tool_call(call, position, true);
        let call_index = t.get("index").and_then(Value::as_u64).unwrap_or(0);
        let seen = self
            .announced
            .iter()
            .any(|(c, i)| *c == choice && *i == call_index);
        if let Some(obj) = t.as_object_mut() {
            if seen {
                // TGI repeats an empty id and `type` on every piece.
                obj.remove("id");
                obj.remove("type");
                if let Some(f) = obj.get_mut("function").and_then(Value::as_object_mut) {
                    f.remove("name");
                }
            } else if obj.contains_key("id") {
                self.announced.push((choice, call_index));
            }
        }
        t
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::adapters::bedrock::eventstream::encode;
    use crate::adapters::bedrock::sigv4;
    use crate::adapters::{AwsCredentials, ProviderOptions};
    use std::time::{Duration, UNIX_EPOCH};

    fn ctx(stream: bool) -> ChatContext<'static> {
        ChatContext {
            upstream_model: "lmi-llama-3",
            requested_model: "llama",
            stream,
            include_usage: true,
        }
    }

    fn options(region: Option<&str>) -> ProviderOptions {
        ProviderOptions {
            region: region.map(str::to_string),
            aws: Some(AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            }),
            ..ProviderOptions::default()
        }
    }

    fn body(v: &UpstreamRequest) -> Value {
        serde_json::from_slice(&v.body).unwrap()
    }

    fn header<'a>(r: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn non_stream_body_is_the_clients_with_the_endpoint_as_model() {
        let client = json!({
            "model": "llama",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "stream_options": {"include_usage": true},
        });
        let r = SagemakerAdapter
            .chat_request(client.to_string().as_bytes(), &ctx(false))
            .unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/endpoints/lmi-llama-3/invocations");
        assert_eq!(
            body(&r),
            json!({
                "model": "lmi-llama-3",
                "messages": [{"role": "user", "content": "hi"}],
                "temperature": 0.2,
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                "stream": false,
            })
        );
    }

    #[test]
    fn stream_goes_to_the_response_stream_operation_and_asks_for_usage() {
        let client = json!({
            "model": "llama",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "stream_options": {"continuous_usage_stats": false},
        });
        let r = SagemakerAdapter
            .chat_request(client.to_string().as_bytes(), &ctx(true))
            .unwrap();
        assert_eq!(r.path, "/endpoints/lmi-llama-3/invocations-response-stream");
        let b = body(&r);
        assert_eq!(b["stream"], true);
        assert_eq!(
            b["stream_options"],
            json!({"continuous_usage_stats": false, "include_usage": true})
        );
    }

    #[test]
    fn requests_without_messages_or_with_a_bad_endpoint_name_are_refused() {
        let e = SagemakerAdapter
            .chat_request(br#"{"model":"x","messages":[]}"#, &ctx(false))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let bad = ChatContext {
            upstream_model: "my-ep/../../x",
            ..ctx(false)
        };
        let e = SagemakerAdapter
            .chat_request(br#"{"messages":[{"role":"user","content":"x"}]}"#, &bad)
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("provider_misconfigured"));
        for name in ["-ep", "ep-", "e_p", ""] {
            assert!(endpoint_name(name).is_err(), "{name}");
        }
        assert_eq!(endpoint_name("a--b9").unwrap(), "a--b9");
    }

    #[test]
    fn requests_are_signed_for_the_sagemaker_service() {
        let opts = options(Some("us-west-2"));
        let target = UpstreamTarget {
            base_url: "https://runtime.sagemaker.us-west-2.amazonaws.com",
            options: &opts,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let client = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let r = SagemakerAdapter
            .request_at(client, &ctx(false), &target, now)
            .unwrap();
        let direct = sigv4::sign(
            &sigv4::RequestParts {
                method: "POST",
                host: "runtime.sagemaker.us-west-2.amazonaws.com",
                path_and_query: "/endpoints/lmi-llama-3/invocations",
                headers: &[("content-type", "application/json")],
                payload: &r.body,
            },
            &sigv4::SigningParams {
                access_key_id: "AKIDEXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                session_token: None,
                region: "us-west-2",
                service: "sagemaker",
                time: now,
            },
        );
        assert_eq!(
            header(&r, "authorization"),
            Some(direct.authorization.as_str())
        );
        assert!(direct
            .authorization
            .contains("/20231114/us-west-2/sagemaker/aws4_request, SignedHeaders=content-type;host;x-amz-date,"));
        assert_eq!(header(&r, "x-amz-date"), Some("20231114T221320Z"));
    }

    #[test]
    fn region_falls_back_to_the_runtime_host() {
        assert_eq!(
            region_from_host("runtime.sagemaker.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_host("runtime-fips.sagemaker.us-gov-west-1.amazonaws.com").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(region_from_host("127.0.0.1:8080"), None);
        let opts = options(None);
        let target = UpstreamTarget {
            base_url: "https://runtime.sagemaker.ap-south-1.amazonaws.com",
            options: &opts,
        };
        let r = SagemakerAdapter
            .chat_request_for(
                br#"{"messages":[{"role":"user","content":"x"}]}"#,
                &ctx(false),
                &target,
            )
            .unwrap();
        assert!(header(&r, "authorization")
            .unwrap()
            .contains("/ap-south-1/sagemaker/aws4_request"));
        let target = UpstreamTarget {
            base_url: "http://127.0.0.1:9",
            options: &opts,
        };
        let e = SagemakerAdapter
            .chat_request_for(
                br#"{"messages":[{"role":"user","content":"x"}]}"#,
                &ctx(false),
                &target,
            )
            .unwrap_err();
        assert!(
            e.message.starts_with("sagemaker: no AWS region"),
            "{}",
            e.message
        );
    }

    #[test]
    fn lmi_answer_is_normalised_to_openai() {
        let lmi = json!({
            "id": "chatcmpl-0",
            "object": "chat.completion",
            "created": 1711997860,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "logprobs": null,
                "finish_reason": "eos_token",
            }],
            "usage": {"prompt_tokens": 33, "completion_tokens": 30, "total_tokens": 63},
        });
        let out: Value = serde_json::from_slice(
            &SagemakerAdapter
                .chat_response(lmi.to_string().as_bytes(), &ctx(false))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "id": "chatcmpl-0",
                "object": "chat.completion",
                "created": 1711997860,
                "model": "llama",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello!", "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 33, "completion_tokens": 30, "total_tokens": 63},
            })
        );
    }

    #[test]
    fn tgi_tool_call_arguments_object_becomes_a_string_with_an_id() {
        let tgi = json!({
            "object": "chat.completion",
            "id": "",
            "created": 1,
            "model": "tgi",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "tool_calls": [{
                    "id": "0",
                    "type": "function",
                    "function": {"description": null, "name": "get_weather", "arguments": {"city": "Paris"}},
                }]},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        });
        let out: Value = serde_json::from_slice(
            &SagemakerAdapter
                .chat_response(tgi.to_string().as_bytes(), &ctx(false))
                .unwrap(),
        )
        .unwrap();
        assert!(out["id"].as_str().unwrap().starts_with("chatcmpl-"));
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{
                "id": "0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            }])
        );
    }

    fn part(bytes: &[u8]) -> Vec<u8> {
        encode(
            &[
                (":event-type", "PayloadPart"),
                (":content-type", "application/octet-stream"),
                (":message-type", "event"),
            ],
            bytes,
        )
    }

    fn run(frames: &[Vec<u8>]) -> (String, Result<(), ApiError>) {
        let mut t = SagemakerAdapter.chat_stream(&ctx(true));
        let mut out = Vec::new();
        let wire: Vec<u8> = frames.concat();
        // Wire chunks split frames too.
        for piece in wire.chunks(9) {
            if let Err(e) = t.feed(piece, &mut out) {
                return (String::from_utf8(out).unwrap(), Err(e));
            }
        }
        let r = t.finish(&mut out);
        (String::from_utf8(out).unwrap(), r)
    }

    fn frames_of(sse: &str) -> Vec<Value> {
        sse.split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .map(|d| {
                if d == "[DONE]" {
                    Value::from("[DONE]")
                } else {
                    serde_json::from_str(d).unwrap()
                }
            })
            .collect()
    }

    #[test]
    fn lmi_json_lines_split_across_parts_become_openai_chunks() {
        let container = concat!(
            r#"{"id":"chatcmpl-0","object":"chat.completion.chunk","created":5,"choices":[{"index":0,"delta":{"content":" Oh","role":"assistant"},"logprobs":[{"content":[]}],"finish_reason":null}]}"#,
            "\n",
            r#"{"id":"chatcmpl-0","object":"chat.completion.chunk","created":5,"choices":[{"index":0,"delta":{"content":" hi"},"logprobs":null,"finish_reason":"length"}]}"#,
            "\n",
            r#"{"id":"chatcmpl-0","object":"chat.completion.chunk","created":5,"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            "\n",
        );
        let parts: Vec<Vec<u8>> = container.as_bytes().chunks(37).map(part).collect();
        let (sse, r) = run(&parts);
        r.unwrap();
        let f = frames_of(&sse);
        assert_eq!(f.len(), 4, "{sse}");
        assert_eq!(
            f[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": " Oh"})
        );
        assert_eq!(f[0]["choices"][0]["logprobs"], Value::Null);
        assert_eq!(f[0]["model"], "llama");
        assert_eq!(f[0]["id"], "chatcmpl-0");
        assert_eq!(f[1]["choices"][0]["delta"], json!({"content": " hi"}));
        assert_eq!(f[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(f[2]["choices"], json!([]));
        assert_eq!(f[2]["usage"]["total_tokens"], 5);
        assert_eq!(f[3], "[DONE]");
    }

    #[test]
    fn tgi_sse_with_streamed_tool_call_object_and_done_marker() {
        let container = concat!(
            "data: {\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":7,\"model\":\"tgi\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":{\"index\":0,\"id\":\"\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"ci\"}}},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
            "data: {\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":7,\"model\":\"tgi\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":{\"index\":0,\"id\":\"\",\"type\":\"function\",\"function\":{\"name\":null,\"arguments\":\"ty\\\":\\\"Oslo\\\"}\"}}},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
            "data: {\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":7,\"model\":\"tgi\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":\"eos_token\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6,\"total_tokens\":10}}\n\n",
            "data: [DONE]\n\n",
        );
        let (sse, r) = run(&[part(container.as_bytes())]);
        r.unwrap();
        let f = frames_of(&sse);
        let calls: Vec<&Value> = f
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls.len(), 2, "{sse}");
        assert!(calls[0][0]["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(calls[0][0]["function"]["name"], "get_weather");
        assert_eq!(calls[1][0].get("id"), None);
        assert_eq!(
            calls[1][0]["function"],
            json!({"arguments": "ty\":\"Oslo\"}"})
        );
        let finish = &f[f.len() - 3];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(f[f.len() - 2]["usage"]["total_tokens"], 10);
        assert_eq!(f[f.len() - 1], "[DONE]");
    }

    #[test]
    fn model_stream_error_exception_is_an_error() {
        let exception = encode(
            &[
                (":exception-type", "ModelStreamError"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"Message":"connection reset","ErrorCode":"StreamBroken"}"#,
        );
        let first = part(
            br#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}
"#,
        );
        let (sse, r) = run(&[first, exception]);
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert!(
            e.message.contains("ModelStreamError StreamBroken")
                && e.message.contains("connection reset"),
            "{}",
            e.message
        );
        assert!(!sse.contains("[DONE]"));
        let timeout = encode(
            &[
                (":exception-type", "ModelStreamError"),
                (":message-type", "exception"),
            ],
            br#"{"Message":"too slow","ErrorCode":"ModelInvocationTimeExceeded"}"#,
        );
        assert_eq!(
            run(&[timeout]).1.unwrap_err().kind,
            ErrorKind::GatewayTimeout
        );
    }

    #[test]
    fn truncated_or_corrupt_streams_are_errors() {
        let first = part(
            br#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}
"#,
        );
        let (sse, r) = run(std::slice::from_ref(&first));
        assert!(r
            .unwrap_err()
            .message
            .contains("before the answer was complete"));
        assert!(!sse.contains("[DONE]"));

        let mut cut = part(br#"{"choices":[]}"#);
        cut.truncate(cut.len() - 3);
        let (_, r) = run(&[first.clone(), cut]);
        assert!(r.unwrap_err().message.contains("middle of a frame"));

        let mut corrupt = first.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let (_, r) = run(&[corrupt]);
        assert!(r.unwrap_err().message.contains("corrupt"));

        let (_, r) = run(&[part(
            b"data: {\"error\":\"CUDA out of memory\",\"error_type\":\"generation\"}\n\n",
        )]);
        assert!(r.unwrap_err().message.contains("CUDA out of memory"));
    }

    #[test]
    fn model_error_uses_the_containers_status_and_message() {
        let body = json!({
            "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
            "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep",
            "Message": "Received client error (422) from primary with message \"...\"",
            "OriginalMessage": "{\"error\":\"Input validation error: `max_new_tokens` must be > 0\",\"error_type\":\"validation\"}",
            "OriginalStatusCode": 422,
        });
        let e = SagemakerAdapter.error(424, body.to_string().as_bytes());
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(
            e.message,
            "sagemaker: the model container answered 422: Input validation error: `max_new_tokens` must be > 0"
        );
        let crash = json!({"OriginalStatusCode": 500, "OriginalMessage": "boom", "Message": "x"});
        let e = SagemakerAdapter.error(424, crash.to_string().as_bytes());
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert_eq!(e.code.as_deref(), Some("upstream_error"));
    }

    #[test]
    fn runtime_errors_map_by_status() {
        let e = SagemakerAdapter.error(
            400,
            br#"{"message":"Endpoint ep of account 123456789012 not found."}"#,
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(
            e.message,
            "sagemaker: Endpoint ep of account 123456789012 not found."
        );
        let e = SagemakerAdapter.error(429, br#"{"Message":"Model not ready"}"#);
        assert_eq!(e.kind, ErrorKind::RateLimited);
        let e = SagemakerAdapter.error(
            403,
            br#"{"message":"The security token included in the request is invalid. AKIDEXAMPLE"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
        assert!(!e.message.contains("AKIDEXAMPLE"));
        let e = SagemakerAdapter.error(502, b"<html>bad gateway</html>");
        assert_eq!(e.kind, ErrorKind::BadGateway);
    }
}
