//! Cohere's native v2 Chat API (`POST /v2/chat`) behind OpenAI chat completions.
//!
//! Cohere's v2 request is close to OpenAI's (roles, `tools`, `tool_calls`,
//! `tool` messages, `image_url` parts), so most of the work is renaming and
//! range-fitting; the answer and the SSE event stream have their own shapes.
//! Decisions that are not obvious from the two references:
//!
//! - **Tool plan.** With tool calls, Cohere returns its reasoning as
//!   `message.tool_plan` (streamed as `tool-plan-delta`). OpenAI models put that
//!   kind of text in `content`, so it becomes `content` when the answer has no
//!   text of its own. Assistant turns sent back carry their text as `content`
//!   next to `tool_calls`; `tool_plan` is never sent (it is optional, and newer
//!   Command models refuse it on input).
//! - **Forcing one tool.** Cohere's `tool_choice` is only `REQUIRED` or `NONE`.
//!   `{"type":"function","function":{"name":…}}` is expressed as `REQUIRED`
//!   with the tool list narrowed to that one function.
//! - **Ranges.** `top_p` becomes `p` clamped to Cohere's `0.01..=0.99`;
//!   `frequency_penalty` and `presence_penalty` are clamped to `0..=1`
//!   (OpenAI's negative values have no Cohere meaning).
//! - **Usage.** Cohere reports `billed_units` (what is charged) and `tokens`
//!   (what the model saw, including Cohere's own prompt template). The OpenAI
//!   usage reports billed units, which is what cost and budgets are about;
//!   `tokens` fills any field `billed_units` lacks.
//! - **Failed generations.** `finish_reason` `ERROR` (or `TIMEOUT`) means the
//!   answer is not complete: the client gets an error, not a truncated reply.
//! - **Dropped fields.** `user`, `logit_bias`, `logprobs`, `parallel_tool_calls`,
//!   `metadata`, `store` and `service_tier` have no Cohere equivalent and are
//!   left out; `n > 1`, audio and the deprecated `functions` are refused.

use super::common::{
    self, bad_upstream, chunk_json, invalid, max_tokens, now_secs, number, part_type, role_delta,
    stop_sequences, usage_chunk_json, with_code, write_frame, SseParser, DONE_FRAME,
};
use super::{ChatAdapter, ChatContext, StreamTranslator, UpstreamRequest};
use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Cohere's documented range for `p`.
const P_MIN: f64 = 0.01;
const P_MAX: f64 = 0.99;

/// Cohere's `k` limit.
const K_MAX: u64 = 500;

/// Thinking budgets for OpenAI's `reasoning_effort`.
const BUDGET_LOW: u64 = 1024;
const BUDGET_MEDIUM: u64 = 4096;
const BUDGET_HIGH: u64 = 16384;

/// Image types Cohere's vision models accept in base64 data URLs.
const IMAGE_MEDIA_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// An SSE line longer than this is not a Cohere event; refusing it keeps a
/// misbehaving upstream from growing the buffer without bound.
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

/// Translates OpenAI chat completions to Cohere's v2 Chat API and back.
#[derive(Debug, Default, Clone, Copy)]
pub struct CohereAdapter;

impl ChatAdapter for CohereAdapter {
    fn offers(&self, endpoint: liter_llm_protocol::Endpoint) -> bool {
        super::cohere_endpoints::offers(endpoint)
    }

    fn endpoint_request(
        &self,
        req: &super::EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        _target: &super::UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        super::cohere_endpoints::request(req, ctx)
    }

    fn endpoint_response(
        &self,
        endpoint: liter_llm_protocol::Endpoint,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<super::Translated, ApiError> {
        let req = super::EndpointRequest {
            endpoint,
            body: b"",
            content_type: None,
        };
        super::cohere_endpoints::response(&req, upstream_body, ctx)
    }

    fn endpoint_response_for(
        &self,
        req: &super::EndpointRequest<'_>,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<super::Translated, ApiError> {
        super::cohere_endpoints::response(req, upstream_body, ctx)
    }

    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = translate_request(openai_body, ctx)?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("could not encode the cohere request: {e}"),
            )
        })?;
        Ok(UpstreamRequest {
            content_type: None,
            method: Method::POST,
            path: "/chat".to_string(),
            headers: Vec::new(),
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
        Box::new(CohereStream::new(ctx))
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        translate_error(status, upstream_body)
    }
}

// ---------------------------------------------------------------------------
// OpenAI request → Cohere request
// ---------------------------------------------------------------------------

fn translate_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Some(req) = parsed.as_object() else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    common::reject_unrepresentable(req, "cohere", "cohere")?;

    let mut out = Map::new();
    out.insert("model".into(), Value::from(ctx.upstream_model));
    out.insert("messages".into(), Value::Array(translate_messages(req)?));

    let mut tools = translate_tools(req.get("tools"))?;
    let choice = tool_choice(req.get("tool_choice"))?;
    // A tool_choice without tools is an upstream 400; OpenAI ignores it, so do we.
    if !tools.is_empty() {
        match choice {
            Choice::Auto => {}
            Choice::Required => {
                out.insert("tool_choice".into(), Value::from("REQUIRED"));
            }
            Choice::None => {
                out.insert("tool_choice".into(), Value::from("NONE"));
            }
            Choice::Named(name) => {
                tools.retain(|t| t.name == name);
                if tools.is_empty() {
                    return Err(invalid(
                        "tool_choice.function.name",
                        format!("tool_choice names `{name}`, which is not in `tools`"),
                    ));
                }
                out.insert("tool_choice".into(), Value::from("REQUIRED"));
            }
        }
        if tools.iter().all(|t| t.strict) {
            out.insert("strict_tools".into(), Value::Bool(true));
        }
        out.insert(
            "tools".into(),
            Value::Array(tools.into_iter().map(|t| t.value).collect()),
        );
    }

    if let Some(rf) = response_format(req.get("response_format"))? {
        out.insert("response_format".into(), rf);
    }
    if let Some(max) = max_tokens(req)? {
        out.insert("max_tokens".into(), Value::from(max));
    }
    sampling(req, &mut out)?;
    if let Some(stops) = stop_sequences(req.get("stop"))? {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    if let Some(thinking) = thinking(req.get("reasoning_effort"))? {
        out.insert("thinking".into(), thinking);
    }
    out.insert("stream".into(), Value::Bool(ctx.stream));
    Ok(Value::Object(out))
}

fn part_text<'a>(part: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    part.get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.text"), "text parts need a string `text`"))
}

fn text_item(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

fn translate_messages(req: &Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Err(invalid("messages", "`messages` must be an array"));
    };
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{path}.role"), "each message needs a string `role`"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        let content_path = format!("{path}.content");
        match role {
            "system" | "developer" => {
                if let Some(c) = text_content(content, &content_path)? {
                    out.push(json!({"role": "system", "content": c}));
                }
            }
            "user" => out.push(json!({
                "role": "user",
                "content": user_content(content, &content_path)?,
            })),
            "assistant" => {
                if let Some(msg) = assistant_message(m, &path)? {
                    out.push(msg);
                }
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(
                            format!("{path}.tool_call_id"),
                            "tool messages need a `tool_call_id`",
                        )
                    })?;
                let content = text_content(content, &content_path)?
                    .unwrap_or_else(|| Value::String(String::new()));
                out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            "function" => {
                return Err(invalid(
                    format!("{path}.role"),
                    "the deprecated `function` role is not supported for cohere models; use `tool`",
                ))
            }
            other => {
                return Err(invalid(
                    format!("{path}.role"),
                    format!("unknown message role `{other}`"),
                ))
            }
        }
    }
    Ok(out)
}

/// Text-only content (system and tool messages): a string stays a string,
/// text parts become Cohere text items. `None` when there is nothing to send.
fn text_content(content: &Value, path: &str) -> Result<Option<Value>, ApiError> {
    match content {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(Value::String(s.clone()))),
        Value::Array(parts) => {
            let mut items = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{path}[{j}]");
                match part_type(part, &p)? {
                    "text" => items.push(text_item(part_text(part, &p)?)),
                    other => {
                        return Err(invalid(
                            format!("{p}.type"),
                            format!("only text parts are allowed here, not `{other}`"),
                        ))
                    }
                }
            }
            Ok((!items.is_empty()).then_some(Value::Array(items)))
        }
        _ => Err(invalid(
            path,
            "content must be a string or an array of parts",
        )),
    }
}

fn user_content(content: &Value, path: &str) -> Result<Value, ApiError> {
    match content {
        Value::String(s) => Ok(Value::String(s.clone())),
        Value::Array(parts) => {
            let mut items = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{path}[{j}]");
                match part_type(part, &p)? {
                    "text" => items.push(text_item(part_text(part, &p)?)),
                    "image_url" => items.push(image_item(part, &p)?),
                    "input_audio" => {
                        return Err(invalid(
                            format!("{p}.type"),
                            "audio input is not supported by cohere",
                        ))
                    }
                    "file" => {
                        return Err(invalid(
                            format!("{p}.type"),
                            "file parts are not supported by cohere's chat API",
                        ))
                    }
                    other => {
                        return Err(invalid(
                            format!("{p}.type"),
                            format!("content part type `{other}` is not supported by cohere"),
                        ))
                    }
                }
            }
            Ok(Value::Array(items))
        }
        _ => Err(invalid(
            path,
            "content must be a string or an array of parts",
        )),
    }
}

/// OpenAI's `image_url` part is Cohere's image content item; the URL is checked
/// here so an unusable one is a 400 naming the part, not an upstream error.
fn image_item(part: &Value, path: &str) -> Result<Value, ApiError> {
    let image = part.get("image_url").unwrap_or(&Value::Null);
    let (url, detail) = match image {
        Value::String(u) => (Some(u.as_str()), None),
        obj => (
            obj.get("url").and_then(Value::as_str),
            obj.get("detail").filter(|d| !d.is_null()),
        ),
    };
    let url_path = format!("{path}.image_url.url");
    let url = url.ok_or_else(|| invalid(url_path.as_str(), "image parts need `image_url.url`"))?;
    let head = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if head.starts_with("data:") {
        let rest = url.get(5..).unwrap_or_default();
        let (meta, _) = rest.split_once(',').ok_or_else(|| {
            invalid(
                url_path.as_str(),
                "malformed data URL: no `,` before the payload",
            )
        })?;
        let mut params = meta.split(';');
        let media_type = params.next().unwrap_or_default().to_ascii_lowercase();
        if !params.any(|p| p.eq_ignore_ascii_case("base64")) {
            return Err(invalid(
                url_path.as_str(),
                "data URLs must be base64-encoded (`;base64,`)",
            ));
        }
        if !IMAGE_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(invalid(
                url_path.as_str(),
                format!(
                    "image type `{media_type}` is not supported by cohere (use jpeg, png, gif or webp)"
                ),
            ));
        }
    } else if !(head.starts_with("http://") || head.starts_with("https://")) {
        return Err(invalid(
            url_path.as_str(),
            "image URLs must be http(s) or base64 data URLs",
        ));
    }
    let mut image_url = Map::new();
    image_url.insert("url".into(), Value::from(url));
    if let Some(detail) = detail {
        match detail.as_str() {
            Some(d @ ("auto" | "low" | "high")) => {
                image_url.insert("detail".into(), Value::from(d));
            }
            _ => {
                return Err(invalid(
                    format!("{path}.image_url.detail"),
                    "image detail must be \"auto\", \"low\" or \"high\"",
                ))
            }
        }
    }
    Ok(json!({"type": "image_url", "image_url": image_url}))
}

fn assistant_message(m: &Value, path: &str) -> Result<Option<Value>, ApiError> {
    let content_path = format!("{path}.content");
    let text = match m.get("content").unwrap_or(&Value::Null) {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{content_path}[{j}]");
                match part_type(part, &p)? {
                    "text" => text.push_str(part_text(part, &p)?),
                    // A refusal is the model's own earlier output, not something to replay.
                    "refusal" => {}
                    other => {
                        return Err(invalid(
                            format!("{p}.type"),
                            format!(
                                "assistant content part type `{other}` is not supported by cohere"
                            ),
                        ))
                    }
                }
            }
            text
        }
        _ => {
            return Err(invalid(
                content_path,
                "content must be a string or an array of parts",
            ))
        }
    };
    let mut calls = Vec::new();
    if let Some(list) = m.get("tool_calls").and_then(Value::as_array) {
        for (k, call) in list.iter().enumerate() {
            calls.push(tool_call(call, &format!("{path}.tool_calls[{k}]"))?);
        }
    }
    if text.is_empty() && calls.is_empty() {
        // Cohere refuses an empty assistant turn; it carries nothing anyway.
        return Ok(None);
    }
    let mut out = Map::new();
    out.insert("role".into(), Value::from("assistant"));
    if !text.is_empty() {
        out.insert("content".into(), Value::String(text));
    }
    if !calls.is_empty() {
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(Some(Value::Object(out)))
}

fn tool_call(call: &Value, path: &str) -> Result<Value, ApiError> {
    let call = common::tool_call(call, path)?;
    let (id, name) = (call.id, call.name);
    let arguments = if call.arguments.trim().is_empty() {
        "{}"
    } else {
        call.arguments
    };
    Ok(json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }))
}

struct Tool {
    name: String,
    strict: bool,
    value: Value,
}

fn translate_tools(tools: Option<&Value>) -> Result<Vec<Tool>, ApiError> {
    let Some(tools) = tools.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(tools) = tools.as_array() else {
        return Err(invalid("tools", "`tools` must be an array"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (k, tool) in tools.iter().enumerate() {
        let p = format!("tools[{k}]");
        let ty = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if ty != "function" {
            return Err(invalid(
                format!("{p}.type"),
                format!("tool type `{ty}` is not supported by cohere (only `function`)"),
            ));
        }
        let function = tool
            .get("function")
            .filter(|f| f.is_object())
            .ok_or_else(|| {
                invalid(
                    format!("{p}.function"),
                    "function tools need a `function` object",
                )
            })?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{p}.function.name"), "function tools need a `name`"))?;
        let parameters = match function.get("parameters") {
            Some(s @ Value::Object(_)) => s.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        let mut f = Map::new();
        f.insert("name".into(), Value::from(name));
        if let Some(d) = function.get("description").and_then(Value::as_str) {
            f.insert("description".into(), Value::from(d));
        }
        f.insert("parameters".into(), parameters);
        out.push(Tool {
            name: name.to_string(),
            strict: function.get("strict").and_then(Value::as_bool) == Some(true),
            value: json!({"type": "function", "function": f}),
        });
    }
    Ok(out)
}

enum Choice {
    Auto,
    Required,
    None,
    Named(String),
}

fn tool_choice(choice: Option<&Value>) -> Result<Choice, ApiError> {
    match choice {
        None | Some(Value::Null) => Ok(Choice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Choice::Auto),
            "required" => Ok(Choice::Required),
            "none" => Ok(Choice::None),
            other => Err(invalid(
                "tool_choice",
                format!("unknown tool_choice `{other}`"),
            )),
        },
        Some(obj @ Value::Object(_)) => {
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| obj.get("type").and_then(Value::as_str) == Some("function"));
            match name {
                Some(name) => Ok(Choice::Named(name.to_string())),
                None => Err(invalid(
                    "tool_choice",
                    "tool_choice must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
                )),
            }
        }
        Some(_) => Err(invalid(
            "tool_choice",
            "tool_choice must be a string or an object",
        )),
    }
}

fn response_format(rf: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => match rf.get("json_schema").and_then(|s| s.get("schema")) {
            Some(schema @ Value::Object(_)) => {
                Ok(Some(json!({"type": "json_object", "json_schema": schema})))
            }
            // OpenAI allows a schema-less json_schema; the nearest meaning is "some JSON".
            _ => Ok(Some(json!({"type": "json_object"}))),
        },
        _ => Err(invalid(
            "response_format.type",
            "response_format.type must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

fn sampling(req: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), ApiError> {
    if let Some(t) = number(req, "temperature")? {
        if t < 0.0 {
            return Err(invalid("temperature", "`temperature` must not be negative"));
        }
        out.insert("temperature".into(), Value::from(t));
    }
    if let Some(p) = number(req, "top_p")? {
        out.insert("p".into(), Value::from(p.clamp(P_MIN, P_MAX)));
    }
    match req.get("top_k") {
        None | Some(Value::Null) => {}
        Some(k) => {
            let k = k
                .as_u64()
                .ok_or_else(|| invalid("top_k", "`top_k` must be a non-negative integer"))?;
            out.insert("k".into(), Value::from(k.min(K_MAX)));
        }
    }
    for key in ["frequency_penalty", "presence_penalty"] {
        if let Some(v) = number(req, key)? {
            out.insert(key.into(), Value::from(v.clamp(0.0, 1.0)));
        }
    }
    match req.get("seed") {
        None | Some(Value::Null) => {}
        Some(s) => {
            let s = s
                .as_i64()
                .ok_or_else(|| invalid("seed", "`seed` must be an integer"))?;
            out.insert("seed".into(), Value::from(s));
        }
    }
    Ok(())
}

fn thinking(effort: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(effort) = effort.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let budget =
        match effort.as_str() {
            Some("none") => return Ok(Some(json!({"type": "disabled"}))),
            Some("minimal" | "low") => BUDGET_LOW,
            Some("medium") => BUDGET_MEDIUM,
            Some("high" | "xhigh") => BUDGET_HIGH,
            _ => return Err(invalid(
                "reasoning_effort",
                "reasoning_effort must be \"none\", \"minimal\", \"low\", \"medium\" or \"high\"",
            )),
        };
    Ok(Some(json!({"type": "enabled", "token_budget": budget})))
}

// ---------------------------------------------------------------------------
// Cohere response → OpenAI response
// ---------------------------------------------------------------------------

/// The OpenAI finish reason, or the error a failed generation is.
fn finish_reason(reason: Option<&str>, error: Option<&str>) -> Result<&'static str, ApiError> {
    match reason {
        Some("MAX_TOKENS") => Ok("length"),
        Some("TOOL_CALL") => Ok("tool_calls"),
        Some("ERROR") => Err(ApiError::new(
            ErrorKind::BadGateway,
            format!(
                "cohere: the generation failed: {}",
                error.unwrap_or("no reason given")
            ),
        )
        .with_code("upstream_error")),
        Some("TIMEOUT") => Err(ApiError::new(
            ErrorKind::GatewayTimeout,
            "cohere: the generation timed out upstream",
        )
        .with_code("upstream_timeout")),
        // COMPLETE, STOP_SEQUENCE and anything newer.
        _ => Ok("stop"),
    }
}

/// A finish reason consistent with what was sent: tool calls mean
/// `tool_calls`, and `tool_calls` without any is an ordinary stop.
fn settle_finish(finish: &'static str, tool_calls: usize) -> &'static str {
    match (finish, tool_calls) {
        ("tool_calls", 0) => "stop",
        ("stop", n) if n > 0 => "tool_calls",
        (f, _) => f,
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    prompt: u64,
    completion: u64,
    cached: Option<u64>,
}

impl Usage {
    /// `billed_units` first, `tokens` for whatever it lacks.
    fn from_cohere(u: &Value) -> Usage {
        let field = |group: &str, key: &str| {
            u.get(group)
                .and_then(|g| g.get(key))
                .and_then(Value::as_f64)
                .map(|n| n.max(0.0) as u64)
        };
        let pick = |key: &str| {
            field("billed_units", key)
                .or_else(|| field("tokens", key))
                .unwrap_or(0)
        };
        Usage {
            prompt: pick("input_tokens"),
            completion: pick("output_tokens"),
            cached: u.get("cached_tokens").and_then(Value::as_u64),
        }
    }

    fn to_openai(self) -> Value {
        let mut v = json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        });
        if let (Some(cached), Some(obj)) = (self.cached, v.as_object_mut()) {
            obj.insert(
                "prompt_tokens_details".into(),
                json!({"cached_tokens": cached}),
            );
        }
        v
    }
}

/// `{"message": "..."}` as the whole body: an error, even under a 200.
fn error_message_of(v: &Value) -> Option<&str> {
    v.get("message").and_then(Value::as_str)
}

/// Tool call arguments as OpenAI's JSON string; an object is serialised.
fn arguments_string(args: Option<&Value>) -> String {
    match args {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => serde_json::to_string(v).unwrap_or_else(|_| "{}".into()),
        _ => String::new(),
    }
}

fn translate_response(body: &[u8], ctx: &ChatContext<'_>) -> Result<Bytes, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad_upstream(format!("cohere: response is not valid JSON: {e}")))?;
    if let Some(message) = error_message_of(&v) {
        return Err(
            ApiError::new(ErrorKind::BadGateway, format!("cohere: {message}"))
                .with_code("upstream_error"),
        );
    }
    let msg = v
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| bad_upstream("cohere: response has no `message` object"))?;

    let mut text = String::new();
    let mut has_text = false;
    let mut reasoning = String::new();
    match msg.get("content") {
        Some(Value::Array(items)) => {
            for item in items {
                match item.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        has_text = true;
                        text.push_str(item.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("thinking") => reasoning
                        .push_str(item.get("thinking").and_then(Value::as_str).unwrap_or("")),
                    _ => {}
                }
            }
        }
        Some(Value::String(s)) => {
            has_text = true;
            text.push_str(s);
        }
        _ => {}
    }
    let tool_plan = msg
        .get("tool_plan")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());

    let mut tool_calls = Vec::new();
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        tool_calls.push(json!({
            "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "type": "function",
            "function": {
                "name": function.get("name").and_then(Value::as_str).unwrap_or(""),
                "arguments": arguments_string(function.get("arguments")),
            },
        }));
    }

    let reason = v.get("finish_reason").and_then(Value::as_str);
    let finish = settle_finish(finish_reason(reason, None)?, tool_calls.len());
    let content = if has_text {
        Value::String(text)
    } else if let Some(plan) = tool_plan {
        Value::String(plan.to_string())
    } else if tool_calls.is_empty() {
        Value::String(String::new())
    } else {
        Value::Null
    };

    let mut message = Map::new();
    message.insert("role".into(), Value::from("assistant"));
    message.insert("content".into(), content);
    message.insert("refusal".into(), Value::Null);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let usage = v.get("usage").map(Usage::from_cohere).unwrap_or_default();
    let out = json!({
        "id": v.get("id").and_then(Value::as_str).unwrap_or("cohere-unknown"),
        "object": "chat.completion",
        "created": now_secs(),
        "model": ctx.requested_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage.to_openai(),
    });
    serde_json::to_vec(&out).map(Bytes::from).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("could not encode the response: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn kind_for_status(status: u16) -> (ErrorKind, Option<&'static str>) {
    match status {
        400 | 409 | 422 => (ErrorKind::InvalidRequest, None),
        // The proxy's own Cohere key is at fault, not the client's (498: invalid token).
        401 | 403 | 498 => (ErrorKind::BadGateway, Some("upstream_auth_failed")),
        402 => (ErrorKind::BadGateway, Some("upstream_billing")),
        404 => (ErrorKind::NotFound, None),
        413 => (ErrorKind::PayloadTooLarge, None),
        429 => (ErrorKind::RateLimited, Some("upstream_rate_limited")),
        // 499: Cohere saw the request cancelled; to the client it is an upstream failure.
        499 => (ErrorKind::BadGateway, Some("upstream_error")),
        503 => (ErrorKind::ServiceUnavailable, Some("upstream_unavailable")),
        504 => (ErrorKind::GatewayTimeout, Some("upstream_timeout")),
        400..=499 => (ErrorKind::InvalidRequest, None),
        _ => (ErrorKind::BadGateway, Some("upstream_error")),
    }
}

fn translate_error(status: u16, body: &[u8]) -> ApiError {
    let (kind, code) = kind_for_status(status);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(message) = parsed.as_ref().and_then(error_message_of) {
        return with_code(ApiError::new(kind, format!("cohere: {message}")), code);
    }
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.trim().chars().take(200).collect();
    let detail = if snippet.is_empty() {
        "an empty body".to_string()
    } else if parsed.is_some() {
        format!("an unrecognised error body: {snippet}")
    } else {
        format!("a non-JSON body: {snippet}")
    };
    let message = format!("cohere: upstream returned HTTP {status} with {detail}");
    // A load balancer's HTML still means "slow down" or "unavailable" on these.
    match status {
        413 | 429 | 503 | 504 => with_code(ApiError::new(kind, message), code),
        401 | 403 | 498 => with_code(ApiError::new(kind, message), code),
        _ => ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_error"),
    }
}

// ---------------------------------------------------------------------------
// Cohere SSE → OpenAI SSE
// ---------------------------------------------------------------------------

struct StreamState {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    /// Cohere's tool-call index → the OpenAI `tool_calls[].index`.
    tool_index: HashMap<u64, usize>,
    last_tool: Option<usize>,
    tool_calls: usize,
    /// Content blocks that carry thinking rather than text, by Cohere index.
    thinking_blocks: HashMap<u64, bool>,
    done: bool,
}

/// Translates one Cohere v2 chat stream into OpenAI chunks.
pub struct CohereStream {
    parser: SseParser,
    state: StreamState,
}

impl CohereStream {
    fn new(ctx: &ChatContext<'_>) -> Self {
        CohereStream {
            parser: SseParser::with_limit(MAX_PENDING_BYTES, "cohere"),
            state: StreamState {
                id: String::new(),
                created: now_secs(),
                model: ctx.requested_model.to_string(),
                include_usage: ctx.include_usage,
                started: false,
                tool_index: HashMap::new(),
                last_tool: None,
                tool_calls: 0,
                thinking_blocks: HashMap::new(),
                done: false,
            },
        }
    }
}

impl StreamTranslator for CohereStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        let state = &mut self.state;
        self.parser
            .feed(chunk, &mut |event, data| state.on_event(event, data, out))
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let state = &mut self.state;
        self.parser
            .flush(&mut |event, data| state.on_event(event, data, out))?;
        if self.state.done {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::BadGateway,
                "cohere: the stream ended before message-end",
            )
            .with_code("upstream_stream_truncated"))
        }
    }
}

/// `delta.message` of a stream event.
fn delta_message(v: &Value) -> &Value {
    v.get("delta")
        .and_then(|d| d.get("message"))
        .unwrap_or(&Value::Null)
}

/// `delta.message.tool_calls`: one object per the reference; the first element
/// if an array arrives instead.
fn delta_tool_call(v: &Value) -> &Value {
    match delta_message(v).get("tool_calls") {
        Some(Value::Array(a)) => a.first().unwrap_or(&Value::Null),
        Some(other) => other,
        None => &Value::Null,
    }
}

impl StreamState {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        chunk_json(
            &self.id,
            self.created,
            &self.model,
            self.include_usage,
            0,
            delta,
            finish,
        )
    }

    fn emit(&mut self, out: &mut Vec<u8>, delta: Value) -> Result<(), ApiError> {
        self.ensure_started(out)?;
        write_frame(out, &self.chunk(delta, None))
    }

    /// The role chunk opens every OpenAI stream, even one whose message-start went missing.
    fn ensure_started(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = format!("chatcmpl-cohere-{}", self.created);
        }
        write_frame(out, &self.chunk(role_delta(), None))
    }

    fn on_event(&mut self, event: &str, data: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.done || data.trim_ascii() == b"[DONE]" {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(data)
            .map_err(|e| bad_upstream(format!("cohere: malformed stream event `{event}`: {e}")))?;
        let ty = v.get("type").and_then(Value::as_str).unwrap_or(event);
        match ty {
            "message-start" => {
                if let Some(id) = v.get("id").and_then(Value::as_str) {
                    if !self.started {
                        self.id = id.to_string();
                    }
                }
                self.ensure_started(out)
            }
            "content-start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let content = delta_message(&v).get("content").unwrap_or(&Value::Null);
                let thinking = content.get("type").and_then(Value::as_str) == Some("thinking");
                self.thinking_blocks.insert(index, thinking);
                self.content_piece(content, thinking, out)
            }
            "content-delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let thinking = self.thinking_blocks.get(&index).copied().unwrap_or(false);
                let content = delta_message(&v).get("content").unwrap_or(&Value::Null);
                self.content_piece(content, thinking, out)
            }
            "tool-plan-delta" => {
                let plan = delta_message(&v)
                    .get("tool_plan")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if plan.is_empty() {
                    return Ok(());
                }
                self.emit(out, json!({"content": plan}))
            }
            "tool-call-start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let call = delta_tool_call(&v);
                let function = call.get("function").unwrap_or(&Value::Null);
                let openai_index = self.tool_calls;
                self.tool_calls += 1;
                self.tool_index.insert(index, openai_index);
                self.last_tool = Some(openai_index);
                let delta = json!({"tool_calls": [{
                    "index": openai_index,
                    "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": function.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": arguments_string(function.get("arguments")),
                    },
                }]});
                self.emit(out, delta)
            }
            "tool-call-delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let args = arguments_string(
                    delta_tool_call(&v)
                        .get("function")
                        .and_then(|f| f.get("arguments")),
                );
                let target = self.tool_index.get(&index).copied().or(self.last_tool);
                match target {
                    Some(i) if !args.is_empty() => self.emit(
                        out,
                        json!({"tool_calls": [{"index": i, "function": {"arguments": args}}]}),
                    ),
                    _ => Ok(()),
                }
            }
            "message-end" => self.message_end(&v, out),
            _ if v.get("message").is_some_and(Value::is_string) => Err(ApiError::new(
                ErrorKind::BadGateway,
                format!("cohere: {}", error_message_of(&v).unwrap_or("stream error")),
            )
            .with_code("upstream_error")),
            // content-end, tool-call-end, citation-start/-end, debug, and newer types.
            _ => Ok(()),
        }
    }

    fn content_piece(
        &mut self,
        content: &Value,
        thinking_block: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        if let Some(t) = content
            .get("thinking")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.emit(out, json!({"reasoning_content": t}))?;
        }
        if let Some(t) = content
            .get("text")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let key = if thinking_block {
                "reasoning_content"
            } else {
                "content"
            };
            self.emit(out, json!({ key: t }))?;
        }
        Ok(())
    }

    fn message_end(&mut self, v: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let delta = v.get("delta").unwrap_or(&Value::Null);
        let reason = delta.get("finish_reason").and_then(Value::as_str);
        let error = delta.get("error").and_then(Value::as_str);
        let finish = settle_finish(finish_reason(reason, error)?, self.tool_calls);
        self.ensure_started(out)?;
        write_frame(out, &self.chunk(json!({}), Some(finish)))?;
        if self.include_usage {
            let usage = delta
                .get("usage")
                .map(Usage::from_cohere)
                .unwrap_or_default();
            let usage_chunk =
                usage_chunk_json(&self.id, self.created, &self.model, usage.to_openai());
            write_frame(out, &usage_chunk)?;
        }
        out.extend_from_slice(DONE_FRAME);
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ctx() -> ChatContext<'static> {
        ChatContext {
            upstream_model: "command-a-03-2025",
            requested_model: "cmd",
            stream: false,
            include_usage: false,
        }
    }

    fn translate_with(body: Value, c: &ChatContext<'_>) -> Value {
        let req = CohereAdapter
            .chat_request(&serde_json::to_vec(&body).unwrap(), c)
            .unwrap();
        serde_json::from_slice(&req.body).unwrap()
    }

    fn translate(body: Value) -> Value {
        translate_with(body, &ctx())
    }

    fn translate_err(body: Value) -> ApiError {
        CohereAdapter
            .chat_request(&serde_json::to_vec(&body).unwrap(), &ctx())
            .unwrap_err()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    fn weather_tool() -> Value {
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }})
    }

    // ----- request -----

    #[test]
    fn request_posts_to_chat_with_no_extra_headers() {
        let req = CohereAdapter
            .chat_request(
                br#"{"model":"cmd","messages":[{"role":"user","content":"hi"}]}"#,
                &ctx(),
            )
            .unwrap();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.path, "/chat");
        assert!(req.headers.is_empty());
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "command-a-03-2025",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": false,
            })
        );
    }

    #[test]
    fn stream_flag_comes_from_the_context() {
        let c = ChatContext {
            stream: true,
            ..ctx()
        };
        let body = translate_with(json!({"messages": [user("hi")], "stream": true}), &c);
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn system_and_developer_become_system_messages_in_place() {
        let body = translate(json!({"messages": [
            {"role": "system", "content": "Be terse."},
            user("hi"),
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "system", "content": ""},
        ]}));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
            ])
        );
    }

    #[test]
    fn non_text_system_part_is_a_400_naming_it() {
        let e = translate_err(json!({"messages": [
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        ]}));
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
    }

    #[test]
    fn image_parts_become_cohere_image_url_items() {
        let body = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}));
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ])
        );
    }

    #[test]
    fn unusable_images_and_files_are_400s_naming_the_part() {
        let cases = [
            (
                json!({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}),
                "messages[0].content[0].image_url.url",
            ),
            (
                json!({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}),
                "messages[0].content[0].image_url.url",
            ),
            (
                json!({"type": "image_url", "image_url": {"url": "data:image/png,raw"}}),
                "messages[0].content[0].image_url.url",
            ),
            (
                json!({"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "ultra"}}),
                "messages[0].content[0].image_url.detail",
            ),
            (
                json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
                "messages[0].content[0].type",
            ),
            (
                json!({"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}}),
                "messages[0].content[0].type",
            ),
        ];
        for (part, param) in cases {
            let e = translate_err(json!({"messages": [{"role": "user", "content": [part]}]}));
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
            assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        }
    }

    #[test]
    fn tools_keep_their_openai_function_shape() {
        let body = translate(json!({"messages": [user("hi")], "tools": [
            weather_tool(),
            {"type": "function", "function": {"name": "noop"}},
        ]}));
        assert_eq!(
            body["tools"],
            json!([
                {"type": "function", "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                }},
                {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}},
            ])
        );
        assert!(body.get("tool_choice").is_none());
        assert!(body.get("strict_tools").is_none());
    }

    #[test]
    fn tool_choice_maps_to_required_and_none() {
        let with = |choice: Value| {
            translate(
                json!({"messages": [user("hi")], "tools": [weather_tool()], "tool_choice": choice}),
            )
        };
        assert_eq!(with(json!("required"))["tool_choice"], "REQUIRED");
        assert_eq!(with(json!("none"))["tool_choice"], "NONE");
        assert!(with(json!("auto")).get("tool_choice").is_none());
    }

    #[test]
    fn a_named_tool_choice_narrows_the_tools_and_requires_a_call() {
        let body = translate(json!({
            "messages": [user("hi")],
            "tools": [weather_tool(), {"type": "function", "function": {"name": "other"}}],
            "tool_choice": {"type": "function", "function": {"name": "other"}},
        }));
        assert_eq!(body["tool_choice"], "REQUIRED");
        let names: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["other"]);
        let e = translate_err(json!({
            "messages": [user("hi")],
            "tools": [weather_tool()],
            "tool_choice": {"type": "function", "function": {"name": "missing"}},
        }));
        assert_eq!(e.param.as_deref(), Some("tool_choice.function.name"));
    }

    #[test]
    fn tool_choice_without_tools_is_dropped_and_all_strict_tools_set_strict_tools() {
        let body = translate(json!({"messages": [user("hi")], "tool_choice": "required"}));
        assert!(body.get("tool_choice").is_none() && body.get("tools").is_none());
        let mut strict = weather_tool();
        strict["function"]["strict"] = json!(true);
        let body = translate(json!({"messages": [user("hi")], "tools": [strict.clone()]}));
        assert_eq!(body["strict_tools"], true);
        assert!(body["tools"][0]["function"].get("strict").is_none());
        let body = translate(json!({"messages": [user("hi")], "tools": [strict, weather_tool()]}));
        assert!(body.get("strict_tools").is_none());
    }

    #[test]
    fn non_function_tools_are_refused() {
        let e = translate_err(
            json!({"messages": [user("hi")], "tools": [{"type": "web_search_preview"}]}),
        );
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
    }

    #[test]
    fn tool_round_trip_keeps_ids_arguments_and_results() {
        let body = translate(json!({"messages": [
            user("Weather in Oslo?"),
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "get_weather_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "get_weather_def", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "get_weather_abc", "content": "3C"},
            {"role": "tool", "tool_call_id": "get_weather_def", "content": [{"type": "text", "text": "cloudy"}]},
        ]}));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "get_weather_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "get_weather_def", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "get_weather_abc", "content": "3C"},
                {"role": "tool", "tool_call_id": "get_weather_def", "content": [{"type": "text", "text": "cloudy"}]},
            ])
        );
    }

    #[test]
    fn empty_assistant_turns_are_dropped_and_refusals_not_replayed() {
        let body = translate(json!({"messages": [
            user("a"),
            {"role": "assistant", "content": null},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}, {"type": "text", "text": "ok"}]},
            user("b"),
        ]}));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "b"},
            ])
        );
    }

    #[test]
    fn malformed_tool_traffic_is_a_400_naming_the_field() {
        let e = translate_err(json!({"messages": [
            user("q"),
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
        ]}));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
        let e = translate_err(json!({"messages": [
            user("q"),
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]},
        ]}));
        assert!(e.message.contains("JSON object"));
        let e = translate_err(json!({"messages": [{"role": "tool", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e =
            translate_err(json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = translate_err(json!({"messages": "hi"}));
        assert_eq!(e.param.as_deref(), Some("messages"));
    }

    #[test]
    fn sampling_parameters_are_renamed_and_fitted_to_cohere_ranges() {
        let body = translate(json!({
            "messages": [user("hi")],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "temperature": 1.5,
            "top_p": 1.0,
            "top_k": 900,
            "seed": 7,
            "frequency_penalty": -0.5,
            "presence_penalty": 1.5,
            "stop": ["END", ""],
        }));
        assert_eq!(body["max_tokens"], 20);
        assert_eq!(body["temperature"], 1.5);
        assert_eq!(body["p"], 0.99);
        assert_eq!(body["k"], 500);
        assert_eq!(body["seed"], 7);
        assert_eq!(body["frequency_penalty"], 0.0);
        assert_eq!(body["presence_penalty"], 1.0);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        for absent in ["top_p", "top_k", "stop", "max_completion_tokens"] {
            assert!(body.get(absent).is_none(), "{absent}");
        }
        let body = translate(json!({"messages": [user("hi")], "top_p": 0.0, "stop": "x"}));
        assert_eq!(body["p"], 0.01);
        assert_eq!(body["stop_sequences"], json!(["x"]));
    }

    #[test]
    fn invalid_sampling_values_are_400s() {
        for (field, value) in [
            ("max_tokens", json!(0)),
            ("temperature", json!(-1)),
            ("temperature", json!("hot")),
            ("seed", json!(1.5)),
            ("top_k", json!(-2)),
            ("stop", json!([1])),
        ] {
            let mut body = json!({"messages": [user("hi")]});
            body[field] = value;
            let e = translate_err(body);
            assert_eq!(e.param.as_deref(), Some(field), "{}", e.message);
        }
    }

    #[test]
    fn fields_without_an_equivalent_are_dropped() {
        let body = translate(json!({
            "messages": [user("hi")],
            "user": "u-1",
            "logit_bias": {"50256": -100},
            "logprobs": true,
            "parallel_tool_calls": false,
            "metadata": {"k": "v"},
            "store": true,
            "service_tier": "auto",
            "stream_options": {"include_usage": true},
            "n": 1,
        }));
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["messages", "model", "stream"]);
    }

    #[test]
    fn n_above_one_audio_and_functions_are_refused() {
        let e = translate_err(json!({"messages": [user("hi")], "n": 2}));
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = translate_err(json!({"messages": [user("hi")], "modalities": ["text", "audio"]}));
        assert_eq!(e.param.as_deref(), Some("modalities"));
        let e = translate_err(json!({"messages": [user("hi")], "functions": [{"name": "f"}]}));
        assert_eq!(e.param.as_deref(), Some("functions"));
    }

    #[test]
    fn response_format_becomes_json_object_with_optional_schema() {
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]});
        let body = translate(json!({"messages": [user("hi")], "response_format": {
            "type": "json_schema", "json_schema": {"name": "p", "strict": true, "schema": schema},
        }}));
        assert_eq!(
            body["response_format"],
            json!({"type": "json_object", "json_schema": schema})
        );
        let body = translate(
            json!({"messages": [user("hi")], "response_format": {"type": "json_object"}}),
        );
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        let body =
            translate(json!({"messages": [user("hi")], "response_format": {"type": "text"}}));
        assert!(body.get("response_format").is_none());
        let e =
            translate_err(json!({"messages": [user("hi")], "response_format": {"type": "xml"}}));
        assert_eq!(e.param.as_deref(), Some("response_format.type"));
    }

    #[test]
    fn reasoning_effort_becomes_thinking() {
        let with = |effort: &str| {
            translate(json!({"messages": [user("hi")], "reasoning_effort": effort}))["thinking"]
                .clone()
        };
        assert_eq!(with("none"), json!({"type": "disabled"}));
        assert_eq!(
            with("low"),
            json!({"type": "enabled", "token_budget": 1024})
        );
        assert_eq!(
            with("high"),
            json!({"type": "enabled", "token_budget": 16384})
        );
        let e = translate_err(json!({"messages": [user("hi")], "reasoning_effort": "max"}));
        assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    }

    #[test]
    fn non_json_bodies_are_400s() {
        let e = CohereAdapter.chat_request(b"not json", &ctx()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        let e = CohereAdapter.chat_request(b"[1]", &ctx()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
    }

    // ----- response -----

    fn respond(body: Value) -> Value {
        let out = CohereAdapter
            .chat_response(&serde_json::to_vec(&body).unwrap(), &ctx())
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn respond_err(body: Value) -> ApiError {
        CohereAdapter
            .chat_response(&serde_json::to_vec(&body).unwrap(), &ctx())
            .unwrap_err()
    }

    #[test]
    fn documented_text_response_translates() {
        // The shape of the reference's non-streamed example.
        let v = respond(json!({
            "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [
                {"type": "text", "text": "LLMs stand for Large Language Models"},
                {"type": "text", "text": "."},
            ]},
            "usage": {
                "billed_units": {"input_tokens": 17, "output_tokens": 12},
                "tokens": {"input_tokens": 215, "output_tokens": 12},
            },
        }));
        assert_eq!(v["id"], "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "cmd");
        assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(
            v["choices"],
            json!([{
                "index": 0,
                "message": {"role": "assistant", "content": "LLMs stand for Large Language Models.", "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }])
        );
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 17, "completion_tokens": 12, "total_tokens": 29})
        );
    }

    #[test]
    fn tool_call_response_becomes_tool_calls_with_the_plan_as_content() {
        let v = respond(json!({
            "id": "r1",
            "finish_reason": "TOOL_CALL",
            "message": {
                "role": "assistant",
                "tool_plan": "I will look up the weather in Toronto.",
                "tool_calls": [{"id": "get_weather_1byjy32y4hvq", "type": "function", "function": {
                    "name": "get_weather", "arguments": "{\"location\":\"Toronto\"}"}}],
            },
            "usage": {"billed_units": {"input_tokens": 37, "output_tokens": 28}},
        }));
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"]["content"],
            "I will look up the weather in Toronto."
        );
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "get_weather_1byjy32y4hvq", "type": "function", "function": {
                "name": "get_weather", "arguments": "{\"location\":\"Toronto\"}"}}])
        );
        let v = respond(json!({
            "id": "r2",
            "finish_reason": "TOOL_CALL",
            "message": {"role": "assistant", "tool_calls": [{"id": "t", "type": "function",
                "function": {"name": "f", "arguments": {"a": 1}}}]},
        }));
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(v["usage"]["total_tokens"], 0);
    }

    #[test]
    fn finish_reasons_map_and_failed_generations_are_errors() {
        let with = |reason: &str| {
            respond(
                json!({"id": "x", "finish_reason": reason, "message": {"role": "assistant",
                "content": [{"type": "text", "text": "t"}]}}),
            )["choices"][0]["finish_reason"]
                .clone()
        };
        assert_eq!(with("COMPLETE"), "stop");
        assert_eq!(with("STOP_SEQUENCE"), "stop");
        assert_eq!(with("MAX_TOKENS"), "length");
        assert_eq!(with("SOMETHING_NEW"), "stop");
        // TOOL_CALL without any call is an ordinary stop.
        assert_eq!(with("TOOL_CALL"), "stop");
        let e = respond_err(
            json!({"id": "x", "finish_reason": "ERROR", "message": {"role": "assistant"}}),
        );
        assert_eq!(e.kind, ErrorKind::BadGateway);
        let e = respond_err(
            json!({"id": "x", "finish_reason": "TIMEOUT", "message": {"role": "assistant"}}),
        );
        assert_eq!(e.kind, ErrorKind::GatewayTimeout);
    }

    #[test]
    fn thinking_content_becomes_reasoning_content_and_tokens_fill_missing_billing() {
        let v = respond(json!({
            "id": "x",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me think."},
                {"type": "text", "text": "42"},
            ]},
            "usage": {"tokens": {"input_tokens": 5, "output_tokens": 9}, "cached_tokens": 3},
        }));
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], "42");
        assert_eq!(msg["reasoning_content"], "Let me think.");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14,
                "prompt_tokens_details": {"cached_tokens": 3}})
        );
    }

    #[test]
    fn garbage_and_error_shaped_responses_are_bad_gateways() {
        let e = CohereAdapter.chat_response(b"<html>", &ctx()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        let e = respond_err(json!({"id": "x"}));
        assert_eq!(e.kind, ErrorKind::BadGateway);
        let e = respond_err(json!({"id": "x", "message": "internal server error"}));
        assert!(e.message.contains("internal server error"));
    }

    // ----- errors -----

    #[test]
    fn upstream_errors_map_by_status_and_keep_the_message() {
        let body = |m: &str| json!({"id": "5a3e", "message": m}).to_string().into_bytes();
        let cases = [
            (400, ErrorKind::InvalidRequest, None),
            (422, ErrorKind::InvalidRequest, None),
            (401, ErrorKind::BadGateway, Some("upstream_auth_failed")),
            (403, ErrorKind::BadGateway, Some("upstream_auth_failed")),
            (498, ErrorKind::BadGateway, Some("upstream_auth_failed")),
            (404, ErrorKind::NotFound, None),
            (429, ErrorKind::RateLimited, Some("upstream_rate_limited")),
            (499, ErrorKind::BadGateway, Some("upstream_error")),
            (500, ErrorKind::BadGateway, Some("upstream_error")),
            (
                503,
                ErrorKind::ServiceUnavailable,
                Some("upstream_unavailable"),
            ),
            (504, ErrorKind::GatewayTimeout, Some("upstream_timeout")),
        ];
        for (status, kind, code) in cases {
            let e = CohereAdapter.error(status, &body("something went wrong"));
            assert_eq!(e.kind, kind, "{status}");
            assert_eq!(e.code.as_deref(), code, "{status}");
            assert_eq!(e.message, "cohere: something went wrong", "{status}");
        }
        // `{"message"}` without an id is the same shape.
        let e = CohereAdapter.error(
            400,
            br#"{"message":"invalid request: messages must not be empty"}"#,
        );
        assert_eq!(
            e.message,
            "cohere: invalid request: messages must not be empty"
        );
    }

    #[test]
    fn non_json_error_bodies_are_bad_gateways_naming_the_status() {
        let e = CohereAdapter.error(502, b"<html>Bad Gateway</html>");
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert!(e.message.contains("502") && e.message.contains("Bad Gateway"));
        let e = CohereAdapter.error(500, b"");
        assert!(e.message.contains("500") && e.message.contains("empty"));
        let e = CohereAdapter.error(429, b"Too Many Requests");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        let e = CohereAdapter.error(401, b"");
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
        let e = CohereAdapter.error(400, br#"{"detail":"x"}"#);
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert!(e.message.contains("unrecognised"));
    }

    // ----- streams -----

    fn stream_ctx(include_usage: bool) -> ChatContext<'static> {
        ChatContext {
            stream: true,
            include_usage,
            ..ctx()
        }
    }

    /// Feeds `input` in the given piece sizes (cycled) and returns the output.
    fn run_stream(
        input: &[u8],
        pieces: &[usize],
        include_usage: bool,
    ) -> Result<Vec<u8>, ApiError> {
        let mut t = CohereAdapter.chat_stream(&stream_ctx(include_usage));
        let mut out = Vec::new();
        let mut rest = input;
        let mut i = 0;
        while !rest.is_empty() {
            let n = pieces[i % pieces.len()].min(rest.len());
            t.feed(&rest[..n], &mut out)?;
            rest = &rest[n..];
            i += 1;
        }
        t.finish(&mut out)?;
        Ok(out)
    }

    /// The `data:` payloads, with `created` removed so runs compare equal.
    fn frames(out: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(
            text.ends_with("data: [DONE]\n\n"),
            "ends with [DONE]: {text}"
        );
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let payload = f
                    .strip_prefix("data: ")
                    .expect("every frame is a data line");
                if payload == "[DONE]" {
                    return json!("[DONE]");
                }
                let mut v: Value = serde_json::from_str(payload).unwrap();
                v.as_object_mut().unwrap().remove("created");
                v
            })
            .collect()
    }

    fn content_of(frames: &[Value]) -> String {
        frames
            .iter()
            .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    // A text stream in the reference's event shapes.
    const TEXT_STREAM: &str = r#"event: message-start
data: {"id":"29f14a5a-11de-4cae-9800-25e4747408ea","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}

event: content-start
data: {"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}

event: content-delta
data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hello"}}}}

event: content-delta
data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" world é"}}}}

event: content-end
data: {"type":"content-end","index":0}

event: message-end
data: {"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":3,"output_tokens":9},"tokens":{"input_tokens":69,"output_tokens":9}}}}

"#;

    #[test]
    fn documented_text_stream_translates() {
        let out = run_stream(TEXT_STREAM.as_bytes(), &[usize::MAX], false).unwrap();
        let f = frames(&out);
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": "29f14a5a-11de-4cae-9800-25e4747408ea",
                "object": "chat.completion.chunk",
                "model": "cmd",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            })
        };
        assert_eq!(
            f,
            vec![
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                chunk(json!({"content": "Hello"}), Value::Null),
                chunk(json!({"content": " world é"}), Value::Null),
                chunk(json!({}), json!("stop")),
                json!("[DONE]"),
            ]
        );
    }

    #[test]
    fn stream_is_independent_of_chunk_boundaries() {
        let whole = frames(&run_stream(TEXT_STREAM.as_bytes(), &[usize::MAX], true).unwrap());
        for pieces in [&[1][..], &[2, 3], &[7], &[13, 1, 64], &[100, 5]] {
            let split = frames(&run_stream(TEXT_STREAM.as_bytes(), pieces, true).unwrap());
            assert_eq!(split, whole, "pieces {pieces:?}");
        }
        let tool = frames(&run_stream(TOOL_STREAM.as_bytes(), &[usize::MAX], true).unwrap());
        let tool_split = frames(&run_stream(TOOL_STREAM.as_bytes(), &[1], true).unwrap());
        assert_eq!(tool, tool_split);
    }

    #[test]
    fn crlf_and_data_only_framing_are_accepted() {
        let crlf = TEXT_STREAM.replace('\n', "\r\n");
        let a = frames(&run_stream(crlf.as_bytes(), &[3], false).unwrap());
        let data_only: String = TEXT_STREAM
            .lines()
            .filter(|l| !l.starts_with("event:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let b = frames(&run_stream(data_only.as_bytes(), &[5], false).unwrap());
        let c = frames(&run_stream(TEXT_STREAM.as_bytes(), &[usize::MAX], false).unwrap());
        assert_eq!(a, c);
        assert_eq!(b, c);
        assert_eq!(content_of(&c), "Hello world é");
    }

    #[test]
    fn include_usage_adds_null_usage_and_a_billed_usage_chunk() {
        let f = frames(&run_stream(TEXT_STREAM.as_bytes(), &[usize::MAX], true).unwrap());
        assert_eq!(f.len(), 6);
        for chunk in &f[..4] {
            assert!(chunk.get("usage").is_some_and(Value::is_null), "{chunk}");
        }
        assert_eq!(f[4]["choices"], json!([]));
        assert_eq!(
            f[4]["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12})
        );
        assert_eq!(f[4]["id"], "29f14a5a-11de-4cae-9800-25e4747408ea");
        assert_eq!(f[5], json!("[DONE]"));
    }

    // A tool stream in the reference's event shapes: plan, then two calls.
    const TOOL_STREAM: &str = r#"event: message-start
data: {"id":"93b3f521","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}

event: tool-plan-delta
data: {"type":"tool-plan-delta","delta":{"message":{"tool_plan":"I will"}}}

event: tool-plan-delta
data: {"type":"tool-plan-delta","delta":{"message":{"tool_plan":" check."}}}

event: tool-call-start
data: {"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"get_weather_nsz5zm3w56q3","type":"function","function":{"name":"get_weather","arguments":""}}}}}

event: tool-call-delta
data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\n    \""}}}}}

event: tool-call-delta
data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"location\": \"Toronto\"\n}"}}}}}

event: tool-call-end
data: {"type":"tool-call-end","index":0}

event: tool-call-start
data: {"type":"tool-call-start","index":1,"delta":{"message":{"tool_calls":{"id":"get_weather_2","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Oslo\"}"}}}}}

event: tool-call-end
data: {"type":"tool-call-end","index":1}

event: message-end
data: {"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":37,"output_tokens":28},"tokens":{"input_tokens":1100,"output_tokens":60}}}}

"#;

    fn tool_calls_of(frames: &[Value]) -> Vec<(String, String, String)> {
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for f in frames {
            for tc in f["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = tc["index"].as_u64().unwrap() as usize;
                while calls.len() <= i {
                    calls.push(Default::default());
                }
                if let Some(id) = tc["id"].as_str() {
                    calls[i].0 = id.to_string();
                }
                if let Some(name) = tc["function"]["name"].as_str() {
                    calls[i].1 = name.to_string();
                }
                calls[i]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        calls
    }

    #[test]
    fn documented_tool_stream_reassembles_calls_and_plan() {
        let f = frames(&run_stream(TOOL_STREAM.as_bytes(), &[usize::MAX], true).unwrap());
        assert_eq!(content_of(&f), "I will check.");
        let calls = tool_calls_of(&f);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, "get_weather_nsz5zm3w56q3");
        assert_eq!(calls[0].1, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].2).unwrap(),
            json!({"location": "Toronto"})
        );
        assert_eq!(calls[1].0, "get_weather_2");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[1].2).unwrap(),
            json!({"location": "Oslo"})
        );
        let finishes: Vec<&str> = f
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finishes, ["tool_calls"]);
        let usage = &f[f.len() - 2];
        assert_eq!(usage["usage"]["prompt_tokens"], 37);
        assert_eq!(usage["usage"]["completion_tokens"], 28);
        // The first tool frame introduces the call with its type.
        let first = f
            .iter()
            .find(|c| c["choices"][0]["delta"]["tool_calls"].is_array())
            .unwrap();
        assert_eq!(
            first["choices"][0]["delta"]["tool_calls"][0]["type"],
            "function"
        );
    }

    #[test]
    fn thinking_blocks_stream_as_reasoning_content() {
        let input = r#"event: message-start
data: {"id":"m","type":"message-start","delta":{"message":{"role":"assistant"}}}

event: content-start
data: {"type":"content-start","index":0,"delta":{"message":{"content":{"type":"thinking","thinking":""}}}}

event: content-delta
data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"thinking":"Hmm."}}}}

event: content-end
data: {"type":"content-end","index":0}

event: content-start
data: {"type":"content-start","index":1,"delta":{"message":{"content":{"type":"text","text":""}}}}

event: content-delta
data: {"type":"content-delta","index":1,"delta":{"message":{"content":{"text":"42"}}}}

event: message-end
data: {"type":"message-end","delta":{"finish_reason":"MAX_TOKENS"}}

"#;
        let f = frames(&run_stream(input.as_bytes(), &[4], false).unwrap());
        let reasoning: String = f
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
            .collect();
        assert_eq!(reasoning, "Hmm.");
        assert_eq!(content_of(&f), "42");
        assert_eq!(f[f.len() - 2]["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn error_finish_ends_the_stream_with_an_error() {
        let input = TEXT_STREAM.replace(
            r#""finish_reason":"COMPLETE""#,
            r#""finish_reason":"ERROR","error":"the model crashed""#,
        );
        let e = run_stream(input.as_bytes(), &[usize::MAX], true).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert!(e.message.contains("the model crashed"), "{}", e.message);
    }

    #[test]
    fn error_shaped_event_ends_the_stream() {
        let input = "event: message-start\ndata: {\"id\":\"m\",\"type\":\"message-start\"}\n\ndata: {\"message\":\"internal server error\"}\n\n";
        let e = run_stream(input.as_bytes(), &[usize::MAX], false).unwrap_err();
        assert!(e.message.contains("internal server error"));
    }

    #[test]
    fn truncated_stream_fails_at_finish() {
        let cut = TEXT_STREAM.find("event: message-end").unwrap();
        let e = run_stream(&TEXT_STREAM.as_bytes()[..cut], &[usize::MAX], true).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert_eq!(e.code.as_deref(), Some("upstream_stream_truncated"));
        let e = run_stream(b"", &[1], false).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("upstream_stream_truncated"));
    }

    #[test]
    fn final_event_without_blank_line_still_counts() {
        let trimmed = TEXT_STREAM.trim_end();
        let f = frames(&run_stream(trimmed.as_bytes(), &[9], false).unwrap());
        assert_eq!(content_of(&f), "Hello world é");
    }

    #[test]
    fn unknown_events_comments_and_bytes_after_the_end_are_ignored() {
        let input = format!(
            ": keep-alive\n\nevent: citation-start\ndata: {{\"type\":\"citation-start\",\"index\":0}}\n\n{TEXT_STREAM}event: message-start\ndata: {{\"type\":\"message-start\",\"id\":\"later\"}}\n\n"
        );
        let a = frames(&run_stream(input.as_bytes(), &[usize::MAX], false).unwrap());
        let b = frames(&run_stream(TEXT_STREAM.as_bytes(), &[usize::MAX], false).unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn malformed_event_json_is_a_bad_gateway() {
        let input = "event: content-delta\ndata: {not json\n\n";
        let e = run_stream(input.as_bytes(), &[usize::MAX], false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert_eq!(e.code.as_deref(), Some("upstream_invalid_response"));
    }

    #[test]
    fn a_stream_without_message_start_still_opens_with_the_role_chunk() {
        let input = TEXT_STREAM
            .split("\n\n")
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n\n");
        let f = frames(&run_stream(input.as_bytes(), &[usize::MAX], false).unwrap());
        assert_eq!(f[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(f[0]["id"].as_str().unwrap().starts_with("chatcmpl-cohere-"));
        assert!(f
            .iter()
            .filter(|c| c.is_object())
            .all(|c| c["id"] == f[0]["id"]));
    }
}
