//! Ollama's native chat API (`POST {base}/api/chat`, base
//! `http://localhost:11434`) behind OpenAI chat completions, for the
//! `ollama_chat` provider. (`ollama` itself is Ollama's OpenAI-compatible
//! `/v1` API, forwarded unchanged.)
//!
//! What differs from OpenAI, and how it is bridged:
//!
//! - **Messages.** Content is a plain string; images travel beside it in the
//!   message's `images` array as bare base64, so `data:` URL parts are
//!   unwrapped and `https://` image URLs (which Ollama cannot fetch) are a 400
//!   naming the part. Assistant tool calls carry `arguments` as a JSON object
//!   and have no id; a tool result names its tool in `tool_name`, looked up from
//!   the assistant call its `tool_call_id` answers.
//! - **Options.** Sampling settings go in `options` (`temperature`, `top_p`,
//!   `seed`, `stop`, `frequency_penalty`, `presence_penalty`), `max_tokens`
//!   becomes `options.num_predict`. `response_format` becomes `format`
//!   (`"json"`, or the JSON schema itself) and `reasoning_effort` becomes
//!   `think` (`"none"` is `false`). `stream` is always sent, because Ollama
//!   streams unless told not to.
//! - **Tools.** The definitions are OpenAI's. Ollama cannot be made to call a
//!   tool, so `tool_choice` `"required"` or a named function is a 400;
//!   `"none"` leaves the tools out.
//! - **Answers.** `message` becomes the choice, `thinking` becomes
//!   `reasoning_content`, tool calls get ids (`call_…`) and string arguments,
//!   `done_reason` becomes `finish_reason`, and `prompt_eval_count` /
//!   `eval_count` become `usage`.
//! - **Streams.** NDJSON, one object per line; the last has `done: true`, the
//!   reason and the counts. A line `{"error": …}` ends the stream with an error
//!   event, and so does a stream that ends before `done`.

use super::common::{
    self, bad_upstream, invalid, max_tokens, now_secs, number, parse_data_url, part_type,
    provider_error, stop_sequences, usage_chunk_json, write_frame, DONE_FRAME,
};
use super::{ChatAdapter, ChatContext, StreamTranslator, UpstreamRequest};
use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A line of the NDJSON stream longer than this is not an Ollama chunk.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Ollama's native `/api/chat`.
#[derive(Debug, Default, Clone, Copy)]
pub struct OllamaAdapter;

impl ChatAdapter for OllamaAdapter {
    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = translate_request(openai_body, ctx)?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("ollama: request encoding: {e}"),
            )
        })?;
        Ok(UpstreamRequest {
            method: Method::POST,
            path: "/api/chat".to_string(),
            headers: Vec::new(),
            content_type: None,
            body: Bytes::from(body),
        })
    }

    fn chat_response(
        &self,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Bytes, ApiError> {
        translate_response(upstream_body, ctx)
    }

    fn chat_stream(&self, ctx: &ChatContext<'_>) -> Box<dyn StreamTranslator> {
        Box::new(OllamaStream::new(ctx))
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        provider_error("ollama", status, upstream_body)
    }
}

// ---------------------------------------------------------------------------
// OpenAI request → /api/chat request
// ---------------------------------------------------------------------------

fn translate_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Some(req) = parsed.as_object() else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    common::reject_unrepresentable(req, "ollama", "ollama")?;

    let mut out = Map::new();
    out.insert("model".into(), Value::from(ctx.upstream_model));
    out.insert("messages".into(), translate_messages(req.get("messages"))?);

    let offer_tools = match req.get("tool_choice") {
        None | Some(Value::Null) => true,
        Some(Value::String(mode)) if mode == "auto" => true,
        Some(Value::String(mode)) if mode == "none" => false,
        Some(_) if req.get("tools").is_none_or(Value::is_null) => true,
        Some(_) => {
            return Err(invalid(
                "tool_choice",
                "ollama cannot be made to call a tool; use tool_choice \"auto\" or \"none\"",
            ))
        }
    };
    let tools = translate_tools(req.get("tools"))?;
    if offer_tools && !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }

    match req.get("response_format") {
        None | Some(Value::Null) => {}
        Some(rf) => match rf.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                out.insert("format".into(), Value::from("json"));
            }
            Some("json_schema") => {
                let schema = rf
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .filter(|s| s.is_object())
                    .ok_or_else(|| {
                        invalid(
                            "response_format.json_schema.schema",
                            "json_schema response formats need a `schema` object",
                        )
                    })?;
                out.insert("format".into(), schema.clone());
            }
            _ => {
                return Err(invalid(
                    "response_format",
                    "response_format must be text, json_object or json_schema",
                ))
            }
        },
    }

    let mut options = Map::new();
    for key in [
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
    ] {
        if let Some(v) = number(req, key)? {
            options.insert(key.into(), Value::from(v));
        }
    }
    if let Some(n) = max_tokens(req)? {
        options.insert("num_predict".into(), Value::from(n));
    }
    match req.get("seed") {
        None | Some(Value::Null) => {}
        Some(v) if v.is_i64() || v.is_u64() => {
            options.insert("seed".into(), v.clone());
        }
        Some(_) => return Err(invalid("seed", "`seed` must be an integer")),
    }
    if let Some(stops) = stop_sequences(req.get("stop"))? {
        options.insert("stop".into(), Value::Array(stops));
    }
    if !options.is_empty() {
        out.insert("options".into(), Value::Object(options));
    }

    match req.get("reasoning_effort") {
        None | Some(Value::Null) => {}
        Some(Value::String(e)) if e == "none" => {
            out.insert("think".into(), Value::Bool(false));
        }
        // Ollama's levels; models without levels treat any level as `true`.
        Some(Value::String(e)) if matches!(e.as_str(), "low" | "medium" | "high") => {
            out.insert("think".into(), Value::from(e.as_str()));
        }
        Some(Value::String(e)) if e == "minimal" => {
            out.insert("think".into(), Value::from("low"));
        }
        Some(_) => {
            return Err(invalid(
                "reasoning_effort",
                "reasoning_effort must be \"none\", \"minimal\", \"low\", \"medium\" or \"high\"",
            ))
        }
    }
    out.insert("stream".into(), Value::Bool(ctx.stream));
    Ok(Value::Object(out))
}

/// The text of `content`: a string, or text (and refusal) parts joined.
fn text_of(content: Option<&Value>, path: &str) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let at = format!("{path}[{i}]");
                let key = match part_type(part, &at)? {
                    "text" => "text",
                    "refusal" => "refusal",
                    other => {
                        return Err(invalid(
                            format!("{at}.type"),
                            format!("ollama takes only text here, not `{other}` parts"),
                        ))
                    }
                };
                let piece = part.get(key).and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        format!("{at}.{key}"),
                        format!("`{key}` parts need a string `{key}`"),
                    )
                })?;
                texts.push(piece);
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(invalid(
            path,
            "content must be a string or an array of content parts",
        )),
    }
}

/// A user message's text and base64 images.
fn user_message(content: Option<&Value>, path: &str) -> Result<(String, Vec<Value>), ApiError> {
    let parts = match content {
        Some(Value::String(s)) => return Ok((s.clone(), Vec::new())),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(invalid(
                path,
                "user content must be a string or an array of content parts",
            ))
        }
    };
    let mut texts = Vec::new();
    let mut images = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match part_type(part, &at)? {
            "text" => {
                let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    invalid(format!("{at}.text"), "text parts need a string `text`")
                })?;
                texts.push(text);
            }
            "image_url" => {
                let image = part.get("image_url");
                let url_path = format!("{at}.image_url.url");
                let url = image
                    .and_then(|i| i.get("url"))
                    .or(image.filter(|i| i.is_string()))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&url_path, "image parts need a `url`"))?;
                if !url.starts_with("data:") {
                    return Err(invalid(
                        url_path,
                        "ollama takes images inline only: send a base64 `data:` URL, not a link",
                    ));
                }
                let (_, data) = parse_data_url(url, &url_path)?;
                images.push(Value::from(data));
            }
            other => {
                return Err(invalid(
                    format!("{at}.type"),
                    format!("ollama chat does not take `{other}` content parts"),
                ))
            }
        }
    }
    Ok((texts.join("\n"), images))
}

fn translate_messages(messages: Option<&Value>) -> Result<Value, ApiError> {
    let messages = messages
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("messages", "messages must be a non-empty array"))?;
    // Tool results name their tool; OpenAI's name it by the call's id.
    let mut tool_names: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{path}.role"), "messages need a string `role`"))?;
        let content_path = format!("{path}.content");
        let translated = match role {
            "system" | "developer" => {
                json!({"role": "system", "content": text_of(m.get("content"), &content_path)?})
            }
            "user" => {
                let (text, images) = user_message(m.get("content"), &content_path)?;
                let mut user = json!({"role": "user", "content": text});
                if !images.is_empty() {
                    user["images"] = Value::Array(images);
                }
                user
            }
            "assistant" => {
                let mut a = Map::new();
                a.insert("role".into(), Value::from("assistant"));
                a.insert(
                    "content".into(),
                    Value::from(text_of(m.get("content"), &content_path)?),
                );
                if let Some(r) = m.get("reasoning_content").and_then(Value::as_str) {
                    a.insert("thinking".into(), Value::from(r));
                }
                if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
                    let calls = calls.as_array().ok_or_else(|| {
                        invalid(format!("{path}.tool_calls"), "tool_calls must be an array")
                    })?;
                    let mut translated = Vec::with_capacity(calls.len());
                    for (j, call) in calls.iter().enumerate() {
                        let c = common::tool_call(call, &format!("{path}.tool_calls[{j}]"))?;
                        tool_names.insert(c.id.to_string(), c.name.to_string());
                        translated.push(json!({
                            "function": {"name": c.name, "arguments": c.input},
                        }));
                    }
                    if !translated.is_empty() {
                        a.insert("tool_calls".into(), Value::Array(translated));
                    }
                }
                Value::Object(a)
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(
                            format!("{path}.tool_call_id"),
                            "tool messages need a string `tool_call_id`",
                        )
                    })?;
                let name = tool_names.get(id).ok_or_else(|| {
                    invalid(
                        format!("{path}.tool_call_id"),
                        format!("no earlier assistant tool call has the id `{id}`"),
                    )
                })?;
                json!({
                    "role": "tool",
                    "content": text_of(m.get("content"), &content_path)?,
                    "tool_name": name,
                })
            }
            other => {
                return Err(invalid(
                    format!("{path}.role"),
                    format!("ollama chat has no `{other}` role"),
                ))
            }
        };
        out.push(translated);
    }
    Ok(Value::Array(out))
}

fn translate_tools(tools: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(invalid("tools", "tools must be an array")),
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(invalid(
                format!("{at}.type"),
                "ollama takes only `function` tools",
            ));
        }
        let f = tool.get("function").unwrap_or(&Value::Null);
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{at}.function.name"), "tools need `function.name`"))?;
        let mut function = json!({ "name": name });
        if let Some(d) = f.get("description").and_then(Value::as_str) {
            function["description"] = Value::from(d);
        }
        function["parameters"] = f
            .get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// /api/chat answer → OpenAI answer
// ---------------------------------------------------------------------------

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn fresh_id(prefix: &str) -> String {
    format!(
        "{prefix}{:x}{:x}",
        now_secs(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// `done_reason` as OpenAI's `finish_reason`.
fn finish_reason(done_reason: Option<&str>, tool_calls: bool) -> &'static str {
    match done_reason {
        _ if tool_calls => "tool_calls",
        Some("length") => "length",
        _ => "stop",
    }
}

fn usage(v: &Value) -> Value {
    let count = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = count("prompt_eval_count");
    let completion = count("eval_count");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// OpenAI tool calls (ids made up, arguments as a JSON string) from Ollama's.
fn tool_calls_of(calls: Option<&Value>) -> Vec<Value> {
    calls
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let f = c.get("function").unwrap_or(&Value::Null);
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => "{}".to_string(),
                Some(other) => other.to_string(),
            };
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(|| fresh_id("call_ol"), str::to_string);
            json!({
                "id": id,
                "type": "function",
                "function": {
                    "name": f.get("name").and_then(Value::as_str).unwrap_or_default(),
                    "arguments": arguments,
                },
            })
        })
        .collect()
}

fn translate_response(body: &[u8], ctx: &ChatContext<'_>) -> Result<Bytes, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        bad_upstream("ollama: the upstream answered 200 with a body that is not JSON")
    })?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(stream_error(e));
    }
    let m = v
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| bad_upstream("ollama: the answer has no `message`"))?;
    let calls = tool_calls_of(m.get("tool_calls"));
    let content = m
        .get("content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() || calls.is_empty());
    let mut message = json!({
        "role": "assistant",
        "content": content,
        "refusal": null,
    });
    if let Some(t) = m
        .get("thinking")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        message["reasoning_content"] = Value::from(t);
    }
    let reason = finish_reason(
        v.get("done_reason").and_then(Value::as_str),
        !calls.is_empty(),
    );
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let out = json!({
        "id": fresh_id("chatcmpl-ol"),
        "object": "chat.completion",
        "created": now_secs(),
        "model": ctx.requested_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": reason,
        }],
        "usage": usage(&v),
    });
    serde_json::to_vec(&out).map(Bytes::from).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("ollama: response encoding: {e}"),
        )
    })
}

/// An error Ollama reports inside a 200 answer (mid-stream, as a line).
fn stream_error(message: &str) -> ApiError {
    ApiError::new(ErrorKind::BadGateway, format!("ollama: {message}")).with_code("upstream_error")
}

// ---------------------------------------------------------------------------
// NDJSON → OpenAI SSE
// ---------------------------------------------------------------------------

/// Translates one streamed `/api/chat` answer.
pub struct OllamaStream {
    buf: Vec<u8>,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    done: bool,
    tool_calls: u64,
    usage: Option<Value>,
    /// The upstream has ended: a line that does not parse was cut short.
    at_end: bool,
}

impl OllamaStream {
    fn new(ctx: &ChatContext<'_>) -> Self {
        OllamaStream {
            buf: Vec::new(),
            id: fresh_id("chatcmpl-ol"),
            created: now_secs(),
            model: ctx.requested_model.to_string(),
            include_usage: ctx.include_usage,
            started: false,
            done: false,
            tool_calls: 0,
            usage: None,
            at_end: false,
        }
    }

    fn emit(
        &mut self,
        out: &mut Vec<u8>,
        delta: Value,
        finish: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut delta = delta;
        if !self.started {
            self.started = true;
            if let Some(d) = delta.as_object_mut() {
                d.insert("role".into(), Value::from("assistant"));
                d.entry("content").or_insert(Value::from(""));
            }
        }
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish,
            }],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        write_frame(out, &chunk)
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        if self.done {
            return Err(bad_upstream("ollama: the stream went on after `done`"));
        }
        let v: Value = serde_json::from_slice(line).map_err(|_| {
            if self.at_end {
                bad_upstream(
                    "ollama: the stream ended before the answer was complete, in the middle of a line",
                )
            } else {
                bad_upstream("ollama: the stream sent a line that is not JSON")
            }
        })?;
        if let Some(e) = v.get("error") {
            let message = e
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string());
            return Err(stream_error(&message));
        }
        let m = v.get("message").unwrap_or(&Value::Null);
        let mut delta = Map::new();
        if let Some(t) = m
            .get("thinking")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            delta.insert("reasoning_content".into(), Value::from(t));
        }
        if let Some(t) = m
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            delta.insert("content".into(), Value::from(t));
        }
        let calls = tool_calls_of(m.get("tool_calls"));
        if !calls.is_empty() {
            let indexed: Vec<Value> = calls
                .into_iter()
                .map(|mut c| {
                    c["index"] = Value::from(self.tool_calls);
                    self.tool_calls += 1;
                    c
                })
                .collect();
            delta.insert("tool_calls".into(), Value::Array(indexed));
        }
        if !delta.is_empty() {
            self.emit(out, Value::Object(delta), None)?;
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            self.usage = Some(usage(&v));
            let reason = finish_reason(
                v.get("done_reason").and_then(Value::as_str),
                self.tool_calls > 0,
            );
            self.emit(out, json!({}), Some(reason))?;
        }
        Ok(())
    }
}

impl StreamTranslator for OllamaStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        let scanned = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut from = scanned;
        let mut buf = std::mem::take(&mut self.buf);
        let mut result = Ok(());
        while let Some(nl) = buf[from..].iter().position(|b| *b == b'\n') {
            let end = from + nl;
            result = self.on_line(&buf[start..end], out);
            start = end + 1;
            from = start;
            if result.is_err() {
                break;
            }
        }
        buf.drain(..start);
        self.buf = buf;
        result?;
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(bad_upstream(
                "ollama: the stream sent an over-long line without a newline",
            ));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        self.at_end = true;
        let rest = std::mem::take(&mut self.buf);
        self.on_line(&rest, out)?;
        if !self.done {
            return Err(bad_upstream(
                "ollama: the stream ended before the answer was complete (no `done`)",
            ));
        }
        if self.include_usage {
            if let Some(usage) = self.usage.take() {
                write_frame(
                    out,
                    &usage_chunk_json(&self.id, self.created, &self.model, usage),
                )?;
            }
        }
        out.extend_from_slice(DONE_FRAME);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

    fn ctx(stream: bool) -> ChatContext<'static> {
        ChatContext {
            upstream_model: "llama3.2",
            requested_model: "local-llama",
            stream,
            include_usage: true,
        }
    }

    fn request(body: Value, stream: bool) -> Result<Value, ApiError> {
        let r = OllamaAdapter.chat_request(body.to_string().as_bytes(), &ctx(stream))?;
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/api/chat");
        Ok(serde_json::from_slice(&r.body).unwrap())
    }

    #[test]
    fn request_maps_options_format_and_always_says_whether_to_stream() {
        let out = request(
            json!({
                "model": "local-llama",
                "messages": [
                    {"role": "developer", "content": "Be brief."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}},
                    ]},
                ],
                "max_tokens": 64,
                "temperature": 0.3,
                "top_p": 0.9,
                "seed": 7,
                "stop": "END",
                "presence_penalty": 0.5,
                "response_format": {"type": "json_object"},
                "reasoning_effort": "high",
                "user": "dropped",
            }),
            false,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "model": "llama3.2",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "What is this?", "images": [PNG]},
                ],
                "format": "json",
                "options": {
                    "temperature": 0.3,
                    "top_p": 0.9,
                    "presence_penalty": 0.5,
                    "num_predict": 64,
                    "seed": 7,
                    "stop": ["END"],
                },
                "think": "high",
                "stream": false,
            })
        );
        let streamed = request(
            json!({"messages": [{"role": "user", "content": "x"}], "stream": true}),
            true,
        )
        .unwrap();
        assert_eq!(streamed["stream"], true);
        assert_eq!(streamed.get("options"), None);
    }

    #[test]
    fn json_schema_becomes_the_format_schema() {
        let schema = json!({"type": "object", "properties": {"age": {"type": "integer"}}});
        let out = request(
            json!({
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
            }),
            false,
        )
        .unwrap();
        assert_eq!(out["format"], schema);
    }

    #[test]
    fn tool_history_carries_object_arguments_and_tool_names() {
        let out = request(
            json!({
                "messages": [
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": null, "tool_calls": [{
                        "id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
                    }]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                ],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}}],
                "tool_choice": "auto",
            }),
            false,
        )
        .unwrap();
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                ]},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
            ])
        );
        assert_eq!(
            out["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}}])
        );
    }

    #[test]
    fn what_ollama_cannot_do_is_refused_naming_the_field() {
        let base = |extra: Value| {
            let mut b = json!({"messages": [{"role": "user", "content": "x"}]});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            request(b, false).unwrap_err()
        };
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let e = base(json!({"tools": tools, "tool_choice": "required"}));
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        let e = base(json!({"n": 2}));
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = request(
            json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ]}]}),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
        let e = request(
            json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
            false,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let none = request(
            json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "none"}),
            false,
        )
        .unwrap();
        assert_eq!(none.get("tools"), None);
    }

    #[test]
    fn answer_becomes_a_chat_completion_with_usage() {
        let ollama = json!({
            "model": "llama3.2",
            "created_at": "2024-12-06T00:46:58.265747Z",
            "message": {"role": "assistant", "content": "Hello!", "thinking": "hmm"},
            "done_reason": "length",
            "done": true,
            "total_duration": 2254970291u64,
            "prompt_eval_count": 34,
            "eval_count": 12,
        });
        let out: Value = serde_json::from_slice(
            &OllamaAdapter
                .chat_response(ollama.to_string().as_bytes(), &ctx(false))
                .unwrap(),
        )
        .unwrap();
        assert!(out["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(out["model"], "local-llama");
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(
            out["choices"][0],
            json!({
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": null, "reasoning_content": "hmm"},
                "logprobs": null,
                "finish_reason": "length",
            })
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 34, "completion_tokens": 12, "total_tokens": 46})
        );
    }

    #[test]
    fn tool_call_answer_gets_ids_and_string_arguments() {
        let ollama = json!({
            "model": "llama3.2",
            "message": {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            ]},
            "done_reason": "stop",
            "done": true,
            "prompt_eval_count": 122,
            "eval_count": 33,
        });
        let out: Value = serde_json::from_slice(
            &OllamaAdapter
                .chat_response(ollama.to_string().as_bytes(), &ctx(false))
                .unwrap(),
        )
        .unwrap();
        let choice = &out["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        let call = &choice["message"]["tool_calls"][0];
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(call["type"], "function");
        assert_eq!(
            call["function"],
            json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
        );
    }

    fn run(ndjson: &str, piece: usize) -> (Vec<Value>, Result<(), ApiError>) {
        let mut t = OllamaAdapter.chat_stream(&ctx(true));
        let mut out = Vec::new();
        let mut result = Ok(());
        for p in ndjson.as_bytes().chunks(piece) {
            result = t.feed(p, &mut out);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = t.finish(&mut out);
        }
        let text = String::from_utf8(out).unwrap();
        let frames = text
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(Value::from(d)))
            .collect();
        (frames, result)
    }

    #[test]
    fn ndjson_stream_becomes_openai_chunks_then_usage_then_done() {
        let ndjson = concat!(
            r#"{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":"","thinking":"mm"},"done":false}"#,
            "\n",
            r#"{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":"The"},"done":false}"#,
            "\n",
            r#"{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":" sky"},"done":false}"#,
            "\n",
            r#"{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":2}"#,
            "\n",
        );
        for piece in [1, 7, 4096] {
            let (f, r) = run(ndjson, piece);
            r.unwrap();
            assert_eq!(f.len(), 6, "{f:?}");
            assert_eq!(
                f[0]["choices"][0]["delta"],
                json!({"role": "assistant", "content": "", "reasoning_content": "mm"})
            );
            assert_eq!(f[1]["choices"][0]["delta"], json!({"content": "The"}));
            assert_eq!(f[2]["choices"][0]["delta"], json!({"content": " sky"}));
            assert_eq!(f[3]["choices"][0]["finish_reason"], "stop");
            assert_eq!(f[3]["choices"][0]["delta"], json!({}));
            assert_eq!(f[4]["choices"], json!([]));
            assert_eq!(
                f[4]["usage"],
                json!({"prompt_tokens": 26, "completion_tokens": 2, "total_tokens": 28})
            );
            assert_eq!(f[5], "[DONE]");
            assert!(f[..5]
                .iter()
                .all(|c| c["id"] == f[0]["id"] && c["model"] == "local-llama"));
        }
    }

    #[test]
    fn streamed_tool_calls_are_indexed_and_finish_as_tool_calls() {
        let ndjson = concat!(
            r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":{"x":1}}},{"function":{"name":"b","arguments":{}}}]},"done":false}"#,
            "\n",
            r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":1}"#,
            "\n",
        );
        let (f, r) = run(ndjson, 5);
        r.unwrap();
        let calls = &f[0]["choices"][0]["delta"]["tool_calls"];
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[1]["index"], 1);
        assert_eq!(calls[0]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(f[1]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn error_lines_and_truncation_end_the_stream_without_done() {
        let ndjson = concat!(
            r#"{"model":"m","message":{"role":"assistant","content":"a"},"done":false}"#,
            "\n",
            r#"{"error":"an error was encountered while running the model"}"#,
            "\n",
        );
        let (f, r) = run(ndjson, 3);
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert_eq!(
            e.message,
            "ollama: an error was encountered while running the model"
        );
        assert!(f.iter().all(|v| v != "[DONE]"));
        let (f, r) = run(
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n{\"model\":\"m\",\"mess",
            64,
        );
        assert!(r.unwrap_err().message.contains("in the middle of a line"));
        assert!(f.iter().all(|v| v != "[DONE]"));
        let (_, r) = run(
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n",
            64,
        );
        assert!(r.unwrap_err().message.contains("no `done`"));
    }

    #[test]
    fn http_errors_use_ollamas_error_text() {
        let e = OllamaAdapter.error(
            404,
            br#"{"error":"model \"nope\" not found, try pulling it first"}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(
            e.message,
            "ollama: model \"nope\" not found, try pulling it first"
        );
        let e = OllamaAdapter.error(500, br#"{"error":"llama runner process has terminated"}"#);
        assert_eq!(e.kind, ErrorKind::BadGateway);
    }
}
