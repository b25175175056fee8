//! Helpers shared by the native adapters: reading OpenAI request fields,
//! building errors, and framing OpenAI stream chunks.
//!
//! Only logic that is truly the same across adapters lives here; anything a
//! provider does its own way stays in that provider's module.

use super::UpstreamRequest;
use bytes::Bytes;
use http::{HeaderValue, Method};
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// A 400 naming the offending request field.
pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param(param)
}

/// A 502 for an upstream answer that cannot be understood.
pub(crate) fn bad_upstream(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_invalid_response")
}

/// Adds `code` to `e` when there is one.
pub(crate) fn with_code(e: ApiError, code: Option<&str>) -> ApiError {
    match code {
        Some(c) => e.with_code(c),
        None => e,
    }
}

/// Seconds since the Unix epoch, for `created`.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `type` of an OpenAI content part at `path`.
pub(crate) fn part_type<'a>(part: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    part.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.type"), "content parts need a string `type`"))
}

/// An optional numeric request field.
pub(crate) fn number(req: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(key, format!("`{key}` must be a number"))),
    }
}

/// `max_completion_tokens`, else `max_tokens`; either must be a positive integer.
pub(crate) fn max_tokens(req: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        match req.get(key) {
            None | Some(Value::Null) => continue,
            Some(v) => {
                return match v.as_u64() {
                    Some(n) if n >= 1 => Ok(Some(n)),
                    _ => Err(invalid(key, format!("`{key}` must be a positive integer"))),
                }
            }
        }
    }
    Ok(None)
}

/// OpenAI `stop` (a string or an array of strings) as a list, empty strings
/// dropped; `None` when nothing is left.
pub(crate) fn stop_sequences(stop: Option<&Value>) -> Result<Option<Vec<Value>>, ApiError> {
    let bad = || invalid("stop", "`stop` must be a string or an array of strings");
    let list: Vec<Value> = match stop {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items.clone(),
        Some(_) => return Err(bad()),
    };
    let list: Vec<Value> = list
        .into_iter()
        .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
        .collect();
    Ok((!list.is_empty()).then_some(list))
}

/// Splits `data:<mime>[;params];base64,<data>` into the media type and payload.
pub(crate) fn parse_data_url<'a>(url: &'a str, path: &str) -> Result<(&'a str, &'a str), ApiError> {
    let rest = url.get(5..).unwrap_or_default();
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| invalid(path, "malformed data URL: no `,` before the payload"))?;
    let mut params = meta.split(';');
    let media_type = params.next().unwrap_or_default();
    if !params.any(|p| p.eq_ignore_ascii_case("base64")) {
        return Err(invalid(
            path,
            "data URLs must be base64-encoded (`;base64,`)",
        ));
    }
    Ok((media_type, data))
}

/// Appends one server-sent event `data: <json>\n\n`.
pub(crate) fn write_frame(out: &mut Vec<u8>, v: &Value) -> Result<(), ApiError> {
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, v).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("could not encode a chunk: {e}"),
        )
    })?;
    out.extend_from_slice(b"\n\n");
    Ok(())
}

/// The terminating server-sent event of an OpenAI stream.
pub(crate) const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// The delta of the first chunk of an OpenAI stream.
pub(crate) fn role_delta() -> Value {
    json!({"role": "assistant", "content": ""})
}

/// One OpenAI `chat.completion.chunk` with a single choice. With
/// `include_usage`, the chunk carries `usage: null` as OpenAI's do.
pub(crate) fn chunk_json(
    id: &str,
    created: u64,
    model: &str,
    include_usage: bool,
    index: u64,
    delta: Value,
    finish: Option<&str>,
) -> Value {
    let mut c = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{
            "index": index,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish,
        }],
    });
    if include_usage {
        if let Some(obj) = c.as_object_mut() {
            obj.insert("usage".into(), Value::Null);
        }
    }
    c
}

/// OpenAI's final usage chunk (`choices: []`) for `stream_options.include_usage`.
pub(crate) fn usage_chunk_json(id: &str, created: u64, model: &str, usage: Value) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    })
}

/// The fields of one SSE event still being read.
#[derive(Default)]
struct PendingEvent {
    event: String,
    data: Vec<u8>,
    has_data: bool,
}

/// Receives each complete SSE event: its `event:` name and joined `data:` lines.
pub(crate) type EventSink<'a> = dyn FnMut(&str, &[u8]) -> Result<(), ApiError> + 'a;

impl PendingEvent {
    fn line(&mut self, line: &[u8], sink: &mut EventSink<'_>) -> Result<(), ApiError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.dispatch(sink);
        }
        if line.starts_with(b":") {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, sink: &mut EventSink<'_>) -> Result<(), ApiError> {
        let ev = std::mem::take(self);
        if ev.has_data {
            sink(&ev.event, &ev.data)?;
        }
        Ok(())
    }
}

/// Splits a byte stream into SSE events (`event:` name, joined `data:` lines),
/// whatever the chunk boundaries.
#[derive(Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
    /// `buf[..scanned]` holds no newline, so a long line fed in small pieces
    /// is scanned once rather than once per piece.
    scanned: usize,
    pending: PendingEvent,
    /// The most bytes a line may buffer without a newline, and the provider
    /// named in the error when it does; no limit when `None`.
    limit: Option<(usize, &'static str)>,
}

impl SseParser {
    /// A parser that fails once `max` bytes are buffered without a newline.
    pub(crate) fn with_limit(max: usize, provider: &'static str) -> Self {
        SseParser {
            limit: Some((max, provider)),
            ..SseParser::default()
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8], sink: &mut EventSink<'_>) -> Result<(), ApiError> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut from = self.scanned;
        let mut result = Ok(());
        while let Some(nl) = self.buf[from..].iter().position(|b| *b == b'\n') {
            let end = from + nl;
            result = self.pending.line(&self.buf[start..end], sink);
            start = end + 1;
            from = start;
            if result.is_err() {
                break;
            }
        }
        self.buf.drain(..start);
        // After an error the rest is unscanned; the stream is over anyway.
        self.scanned = if result.is_ok() { self.buf.len() } else { 0 };
        result?;
        if let Some((max, provider)) = self.limit {
            if self.buf.len() > max {
                return Err(bad_upstream(format!(
                    "{provider}: the stream sent an over-long line without a newline"
                )));
            }
        }
        Ok(())
    }

    /// At end of input: an event whose blank line never came is still delivered,
    /// so a stream cut right after its last `data:` line is judged on its content.
    pub(crate) fn flush(&mut self, sink: &mut EventSink<'_>) -> Result<(), ApiError> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.scanned = 0;
            self.pending.line(&rest, sink)?;
        }
        self.pending.dispatch(sink)
    }
}

/// An OpenAI assistant `tool_calls[]` entry, checked.
pub(crate) struct ToolCall<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    /// `function.arguments` as sent (`""` when absent).
    pub(crate) arguments: &'a str,
    /// The arguments parsed; an empty object when they were blank.
    pub(crate) input: Value,
}

/// Reads the tool call at `path`: a string `id`, `function.name`, and
/// `function.arguments` that are blank or a JSON object.
pub(crate) fn tool_call<'a>(call: &'a Value, path: &str) -> Result<ToolCall<'a>, ApiError> {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.id"), "tool calls need a string `id`"))?;
    let function = call.get("function").unwrap_or(&Value::Null);
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            invalid(
                format!("{path}.function.name"),
                "tool calls need `function.name`",
            )
        })?;
    let arguments = function
        .get("arguments")
        .and_then(Value::as_str)
        .unwrap_or("");
    let input = if arguments.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        match serde_json::from_str::<Value>(arguments) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(invalid(
                    format!("{path}.function.arguments"),
                    "tool call arguments must be a JSON object",
                ))
            }
            Err(e) => {
                return Err(invalid(
                    format!("{path}.function.arguments"),
                    format!("tool call arguments are not valid JSON: {e}"),
                ))
            }
        }
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
        input,
    })
}

/// Fields a provider has no equivalent for are dropped, except where dropping
/// them would hand the client something other than what it asked for: `n > 1`,
/// audio output and the deprecated `functions`. `provider` names the provider
/// in the messages; `audio_by` names what refuses audio output.
pub(crate) fn reject_unrepresentable(
    req: &Map<String, Value>,
    provider: &str,
    audio_by: &str,
) -> Result<(), ApiError> {
    if let Some(n) = req.get("n").filter(|v| !v.is_null()) {
        match n.as_u64() {
            Some(0 | 1) => {}
            _ => {
                return Err(invalid(
                    "n",
                    format!("n > 1 is not supported by {provider}"),
                ))
            }
        }
    }
    let wants_audio = req.get("audio").is_some_and(|v| !v.is_null())
        || req
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x.as_str() == Some("audio")));
    if wants_audio {
        return Err(invalid(
            "modalities",
            format!("audio output is not supported by {audio_by}"),
        ));
    }
    if req.get("functions").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "functions",
            format!(
                "the deprecated `functions` field is not supported for {provider} models; use `tools`"
            ),
        ));
    }
    Ok(())
}

/// How an upstream HTTP status reads to the client: the request's own faults keep
/// their meaning; the proxy's credentials being refused is the operator's
/// problem, so it is a 502 rather than a 401 that would make the client doubt
/// its own key.
pub(crate) fn kind_for_status(status: u16) -> (ErrorKind, Option<&'static str>) {
    match status {
        400 | 409 | 422 => (ErrorKind::InvalidRequest, None),
        401 | 403 => (ErrorKind::BadGateway, Some("upstream_auth_failed")),
        402 => (ErrorKind::BadGateway, Some("upstream_billing")),
        404 => (ErrorKind::NotFound, None),
        413 => (ErrorKind::PayloadTooLarge, None),
        429 => (ErrorKind::RateLimited, Some("upstream_rate_limited")),
        503 => (ErrorKind::ServiceUnavailable, Some("upstream_unavailable")),
        504 => (ErrorKind::GatewayTimeout, Some("upstream_timeout")),
        400..=499 => (ErrorKind::InvalidRequest, None),
        _ => (ErrorKind::BadGateway, Some("upstream_error")),
    }
}

/// The message in the error-body shapes providers commonly use:
/// `{"error":{"message"}}`, `{"error":"..."}`, `{"message"}`, `{"detail"}`
/// (string or `{message}`), `{"errors":[{"message"}]}`, `{"err_msg"}`.
pub(crate) fn common_error_message(v: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    v.get("error")
        .and_then(|e| e.get("message").and_then(text).or_else(|| text(e)))
        .or_else(|| v.get("message").and_then(text))
        .or_else(|| {
            v.get("detail")
                .and_then(|d| text(d).or_else(|| d.get("message").and_then(text)))
        })
        .or_else(|| {
            v.get("errors")
                .and_then(|e| e.get(0))
                .and_then(|e| e.get("message").and_then(text).or_else(|| text(e)))
        })
        .or_else(|| v.get("err_msg").and_then(text))
}

/// A provider's non-2xx answer as an OpenAI-shaped error, for adapters whose
/// provider has no richer error vocabulary worth mapping.
pub(crate) fn provider_error(provider: &str, status: u16, body: &[u8]) -> ApiError {
    let (kind, code) = kind_for_status(status);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = match parsed.as_ref().and_then(common_error_message) {
        Some(m) => format!("{provider}: {m}"),
        None => {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.trim().chars().take(200).collect();
            let detail = if snippet.is_empty() {
                "an empty body".to_string()
            } else if parsed.is_some() {
                format!("an unrecognised error body: {snippet}")
            } else {
                format!("a non-JSON body: {snippet}")
            };
            format!("{provider}: upstream returned HTTP {status} with {detail}")
        }
    };
    if matches!(status, 401 | 403) {
        // The text may quote part of the proxy's key; the operator's log gets it.
        tracing::warn!(provider, status, %message, "upstream rejected the proxy's credentials");
        return with_code(
            ApiError::new(
                kind,
                format!("{provider} rejected the proxy's credentials ({status}); the operator must check this model's api_key"),
            ),
            code,
        );
    }
    with_code(ApiError::new(kind, message), code)
}

/// A POST of `body` to `path` under the deployment's base URL, with no extra
/// headers; `content_type` `None` is JSON.
pub(crate) fn post(
    path: impl Into<String>,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> UpstreamRequest {
    UpstreamRequest {
        method: Method::POST,
        path: path.into(),
        headers: Vec::new(),
        content_type,
        body,
    }
}

/// The `Content-Type` of a multipart body the adapter built.
pub(crate) fn form_content_type(content_type: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(content_type).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("could not build the form's content type: {e}"),
        )
    })
}

/// Percent-encodes a query value or path segment (RFC 3986 unreserved kept).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the adapters' tests share: a client's request through an adapter's
/// `endpoint_request`, and an upstream answer back through its
/// `endpoint_response_for`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use super::super::{
        ChatAdapter, ChatContext, EndpointRequest, ProviderOptions, Translated, UpstreamRequest,
        UpstreamTarget,
    };
    use liter_llm_protocol::{ApiError, Endpoint};
    use serde_json::Value;

    /// What `adapter` sends to `base_url` (default options) for the client's
    /// `body` to `endpoint`, sent with `content_type`.
    pub(crate) fn send(
        adapter: &dyn ChatAdapter,
        ctx: &ChatContext<'_>,
        base_url: &str,
        endpoint: Endpoint,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<UpstreamRequest, ApiError> {
        let options = ProviderOptions::default();
        let target = UpstreamTarget {
            base_url,
            options: &options,
        };
        let req = EndpointRequest {
            endpoint,
            body,
            content_type,
        };
        adapter.endpoint_request(&req, ctx, &target)
    }

    /// What the client gets for the upstream `answer` when its own request to
    /// `endpoint` was `body`, sent with `content_type`.
    pub(crate) fn receive(
        adapter: &dyn ChatAdapter,
        ctx: &ChatContext<'_>,
        endpoint: Endpoint,
        body: &[u8],
        content_type: Option<&str>,
        answer: &[u8],
    ) -> Result<Translated, ApiError> {
        let req = EndpointRequest {
            endpoint,
            body,
            content_type,
        };
        adapter.endpoint_response_for(&req, answer, ctx)
    }

    /// [`send`] for a JSON client body: the path and JSON body of the POST
    /// `adapter` makes.
    pub(crate) fn send_json(
        adapter: &dyn ChatAdapter,
        ctx: &ChatContext<'_>,
        base_url: &str,
        endpoint: Endpoint,
        body: &Value,
    ) -> Result<(String, Value), ApiError> {
        let body = body.to_string();
        let up = send(
            adapter,
            ctx,
            base_url,
            endpoint,
            body.as_bytes(),
            Some("application/json"),
        )?;
        assert_eq!(up.method, http::Method::POST);
        Ok((up.path, serde_json::from_slice(&up.body).unwrap()))
    }

    /// [`receive`] for a JSON client body and a JSON answer: what the client
    /// gets, as JSON.
    pub(crate) fn receive_json(
        adapter: &dyn ChatAdapter,
        ctx: &ChatContext<'_>,
        endpoint: Endpoint,
        client: &Value,
        answer: &Value,
    ) -> Result<Value, ApiError> {
        let client = client.to_string();
        let answer = answer.to_string();
        let t = receive(
            adapter,
            ctx,
            endpoint,
            client.as_bytes(),
            Some("application/json"),
            answer.as_bytes(),
        )?;
        assert_eq!(t.content_type, "application/json");
        Ok(serde_json::from_slice(&t.body).unwrap())
    }
}
