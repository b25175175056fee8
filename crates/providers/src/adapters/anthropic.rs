//! Anthropic Messages API (`POST /v1/messages`) behind OpenAI chat completions.
//!
//! Decisions that are not obvious from the two references:
//!
//! - **Structured output.** Anthropic's structured outputs are generally
//!   available as `output_config.format = {"type":"json_schema","schema":…}`,
//!   so `response_format: json_schema` maps to that natively. The feature only
//!   exists from the 4.5 generation on; older models (Claude 3.x, Sonnet/Opus
//!   4.0 and Opus 4.1) reject the field, so for them the schema becomes a forced
//!   synthetic tool ([`JSON_TOOL_NAME`]) whose input is turned back into message
//!   text. Recognising that tool by name keeps the response side stateless.
//!   `json_object` has no native equivalent (a schema would have to allow every
//!   object, which structured outputs refuse), so it is a system instruction.
//! - **Reasoning.** `reasoning_effort` becomes a `thinking` budget. OpenAI's
//!   `max_completion_tokens` already counts reasoning tokens, like Anthropic's
//!   `max_tokens`, so a cap above the budget is kept; a cap at or below it would
//!   be rejected upstream, so the budget is added on top instead. Thinking
//!   comes back as `reasoning_content`, and the signed blocks as
//!   `thinking_blocks`, which clients return on the assistant turn so tool use
//!   keeps working with thinking on (Anthropic refuses the turn without them).
//! - **Alternation.** Tool results travel in a `user` turn; consecutive turns of
//!   one role are merged, tool results first, as the API requires.

use super::common::{
    self, bad_upstream, chunk_json, invalid, max_tokens, now_secs, number, parse_data_url,
    part_type, role_delta, stop_sequences, usage_chunk_json, with_code, write_frame, SseParser,
    DONE_FRAME,
};
use super::{ChatAdapter, ChatContext, StreamTranslator, UpstreamRequest};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The API version this translation was written against.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` is mandatory for Anthropic and optional for OpenAI.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The synthetic tool used to emulate `json_schema` on models without
/// structured outputs. Distinctive so it cannot collide with a client's tool.
pub const JSON_TOOL_NAME: &str = "liter_llm_json_response";

/// Told to the model for `response_format: json_object`.
const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object and nothing else: no prose before or after it and no Markdown code fences.";

/// Media types the Messages API accepts in image blocks.
const IMAGE_MEDIA_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Translates OpenAI chat completions to Anthropic's Messages API and back.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnthropicAdapter;

impl ChatAdapter for AnthropicAdapter {
    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = translate_request(openai_body, ctx)?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("could not encode the anthropic request: {e}"),
            )
        })?;
        Ok(UpstreamRequest {
            content_type: None,
            method: Method::POST,
            path: "/messages".to_string(),
            headers: vec![(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            )],
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
        Box::new(AnthropicStream::new(ctx))
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        translate_error(status, upstream_body)
    }
}

// ---------------------------------------------------------------------------
// OpenAI request → Anthropic request
// ---------------------------------------------------------------------------

/// The Messages body, `model` included (Vertex AI takes the model from the URL
/// and replaces it with `anthropic_version`).
pub(super) fn translate_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Some(req) = parsed.as_object() else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    common::reject_unrepresentable(req, "anthropic", "anthropic")?;

    let native_structured = supports_native_structured_output(ctx.upstream_model);
    let mut out = Map::new();
    out.insert("model".into(), Value::from(ctx.upstream_model));

    let (mut system, messages) = translate_messages(req.get("messages"))?;

    let mut tools = translate_tools(req.get("tools"), native_structured)?;
    let mut tool_choice = translate_tool_choice(req.get("tool_choice"))?;

    match response_format(req.get("response_format"))? {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => system.push(text_block(JSON_OBJECT_INSTRUCTION)),
        ResponseFormat::JsonSchema(schema) if native_structured => {
            out.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": schema}}),
            );
        }
        ResponseFormat::JsonSchema(schema) => {
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return Err(invalid(
                    "response_format.json_schema.schema",
                    format!(
                        "anthropic model `{}` has no native structured output, and its tool-based emulation needs a schema whose top-level type is \"object\"",
                        ctx.upstream_model
                    ),
                ));
            }
            let client_had_tools = !tools.is_empty();
            tools.push(json!({
                "name": JSON_TOOL_NAME,
                "description": "Give the final answer by calling this tool; its input is the JSON response, which must match the schema.",
                "input_schema": schema,
            }));
            // With client tools the model may still call one of them; "any"
            // forces a tool call, so the answer is either a real call or JSON.
            tool_choice = match tool_choice {
                Some(c) if c.get("type").and_then(Value::as_str) == Some("tool") => Some(c),
                _ if client_had_tools && !is_choice(tool_choice.as_ref(), "none") => {
                    Some(json!({"type": "any"}))
                }
                _ => Some(json!({"type": "tool", "name": JSON_TOOL_NAME})),
            };
        }
    }

    if !system.is_empty() {
        out.insert("system".into(), system_value(system));
    }
    out.insert("messages".into(), Value::Array(messages));

    if !tools.is_empty() {
        if req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
            let mut choice = tool_choice
                .take()
                .unwrap_or_else(|| json!({"type": "auto"}));
            if !is_choice(Some(&choice), "none") {
                if let Some(obj) = choice.as_object_mut() {
                    obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
                }
            }
            tool_choice = Some(choice);
        }
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = tool_choice {
            out.insert("tool_choice".into(), choice);
        }
    }
    // A tool_choice without tools is an upstream 400; OpenAI ignores it, so do we.

    let thinking = thinking_config(req)?;
    let budget = thinking
        .as_ref()
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64);
    let thinking_on = thinking
        .as_ref()
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "disabled");
    if thinking_on {
        let forced = out
            .get("tool_choice")
            .and_then(|c| c.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "any" || t == "tool");
        if forced {
            return Err(invalid(
                "reasoning_effort",
                "anthropic cannot think while a tool call is forced: drop reasoning_effort, or use tool_choice \"auto\" (a json_schema response_format on older Claude models also forces a tool)",
            ));
        }
    }
    if let Some(t) = thinking {
        out.insert("thinking".into(), t);
    }

    let requested_max = max_tokens(req)?;
    let max = match (requested_max, budget) {
        (None, None) => DEFAULT_MAX_TOKENS,
        (None, Some(b)) => b + DEFAULT_MAX_TOKENS,
        (Some(m), Some(b)) if m <= b => m + b,
        (Some(m), _) => m,
    };
    out.insert("max_tokens".into(), Value::from(max));

    sampling(req, thinking_on, &mut out)?;

    if let Some(stops) = stop_sequences(req.get("stop"))? {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    let user = ["user", "safety_identifier"]
        .iter()
        .find_map(|k| req.get(*k).and_then(Value::as_str))
        .filter(|u| !u.is_empty());
    if let Some(user) = user {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if ctx.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(out))
}

/// One Anthropic turn while it is being assembled.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

fn push_turn(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.blocks.extend(blocks),
        _ => turns.push(Turn { role, blocks }),
    }
}

fn translate_messages(messages: Option<&Value>) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let Some(messages) = messages.and_then(Value::as_array) else {
        return Err(invalid("messages", "`messages` must be an array"));
    };
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{path}.role"), "each message needs a string `role`"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                system.extend(text_only_blocks(content, &format!("{path}.content"))?);
            }
            "user" => push_turn(
                &mut turns,
                "user",
                user_blocks(content, &format!("{path}.content"))?,
            ),
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(m, &path)?),
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
                let content = match content {
                    Value::String(s) => Value::String(s.clone()),
                    Value::Null => Value::String(String::new()),
                    other => Value::Array(user_blocks(other, &format!("{path}.content"))?),
                };
                push_turn(
                    &mut turns,
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                );
            }
            "function" => return Err(invalid(
                format!("{path}.role"),
                "the deprecated `function` role is not supported for anthropic models; use `tool`",
            )),
            other => {
                return Err(invalid(
                    format!("{path}.role"),
                    format!("unknown message role `{other}`"),
                ))
            }
        }
    }
    let messages = turns
        .into_iter()
        .map(|mut t| {
            if t.role == "user" {
                // A merged user turn may hold text before results; the API wants results first.
                let (mut results, rest): (Vec<Value>, Vec<Value>) = t
                    .blocks
                    .into_iter()
                    .partition(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
                results.extend(rest);
                t.blocks = results;
            }
            json!({"role": t.role, "content": t.blocks})
        })
        .collect();
    Ok((system, messages))
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// A text part with its `cache_control` breakpoint, if the client set one
/// (an Anthropic extension some OpenAI clients already send).
fn text_part(part: &Value, path: &str) -> Result<Option<Value>, ApiError> {
    let text = part
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.text"), "text parts need a string `text`"))?;
    // Anthropic rejects empty text blocks; an empty part carries nothing.
    if text.is_empty() {
        return Ok(None);
    }
    let mut block = text_block(text);
    copy_cache_control(part, &mut block);
    Ok(Some(block))
}

fn copy_cache_control(from: &Value, to: &mut Value) {
    if let (Some(cc), Some(obj)) = (
        from.get("cache_control").filter(|c| c.is_object()),
        to.as_object_mut(),
    ) {
        obj.insert("cache_control".into(), cc.clone());
    }
}

fn text_only_blocks(content: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![text_block(s)]),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{path}[{j}]");
                match part_type(part, &p)? {
                    "text" => out.extend(text_part(part, &p)?),
                    other => {
                        return Err(invalid(
                            format!("{p}.type"),
                            format!("only text parts are allowed here, not `{other}`"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(invalid(
            path,
            "content must be a string or an array of parts",
        )),
    }
}

fn user_blocks(content: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![text_block(s)]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{path}[{j}]");
                match part_type(part, &p)? {
                    "text" => out.extend(text_part(part, &p)?),
                    "image_url" => {
                        let url = match part.get("image_url") {
                            Some(Value::String(u)) => Some(u.as_str()),
                            Some(obj) => obj.get("url").and_then(Value::as_str),
                            None => None,
                        }
                        .ok_or_else(|| {
                            invalid(
                                format!("{p}.image_url.url"),
                                "image parts need `image_url.url`",
                            )
                        })?;
                        let mut block = image_block(url, &format!("{p}.image_url.url"))?;
                        copy_cache_control(part, &mut block);
                        out.push(block);
                    }
                    "file" => out.push(file_block(part, &p)?),
                    "input_audio" => {
                        return Err(invalid(
                            format!("{p}.type"),
                            "audio input is not supported by anthropic",
                        ))
                    }
                    other => {
                        return Err(invalid(
                            format!("{p}.type"),
                            format!("content part type `{other}` is not supported by anthropic"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(invalid(
            path,
            "content must be a string or an array of parts",
        )),
    }
}

fn image_block(url: &str, path: &str) -> Result<Value, ApiError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("data:") {
        let (media_type, data) = parse_data_url(url, path)?;
        let media_type = media_type.to_ascii_lowercase();
        if !IMAGE_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(invalid(
                path,
                format!(
                    "image type `{media_type}` is not supported by anthropic (use jpeg, png, gif or webp)"
                ),
            ));
        }
        Ok(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }))
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        Err(invalid(
            path,
            "image URLs must be http(s) or base64 data URLs",
        ))
    }
}

/// OpenAI `file` parts carrying a PDF become Anthropic `document` blocks.
fn file_block(part: &Value, path: &str) -> Result<Value, ApiError> {
    let file = part.get("file").unwrap_or(&Value::Null);
    if file.get("file_id").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            format!("{path}.file.file_id"),
            "uploaded file references are not supported for anthropic models; send `file_data` inline",
        ));
    }
    let p = format!("{path}.file.file_data");
    let data_url = file
        .get("file_data")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(p.as_str(), "file parts need `file_data`"))?;
    if !data_url.starts_with("data:") {
        return Err(invalid(p.as_str(), "`file_data` must be a base64 data URL"));
    }
    let (media_type, data) = parse_data_url(data_url, &p)?;
    if !media_type.eq_ignore_ascii_case("application/pdf") {
        return Err(invalid(
            p.as_str(),
            format!(
                "file type `{media_type}` is not supported by anthropic (only application/pdf)"
            ),
        ));
    }
    let mut block = json!({
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": data},
    });
    copy_cache_control(part, &mut block);
    Ok(block)
}

fn assistant_blocks(m: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    // Signed thinking from an earlier response; it must lead the turn.
    if let Some(blocks) = m.get("thinking_blocks").and_then(Value::as_array) {
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("thinking") => {
                    if let (Some(t), Some(s)) = (
                        b.get("thinking").and_then(Value::as_str),
                        b.get("signature").and_then(Value::as_str),
                    ) {
                        out.push(json!({"type": "thinking", "thinking": t, "signature": s}));
                    }
                }
                Some("redacted_thinking") => {
                    if let Some(d) = b.get("data").and_then(Value::as_str) {
                        out.push(json!({"type": "redacted_thinking", "data": d}));
                    }
                }
                _ => {}
            }
        }
    }
    let content_path = format!("{path}.content");
    match m.get("content").unwrap_or(&Value::Null) {
        Value::Null => {}
        Value::String(s) if s.is_empty() => {}
        Value::String(s) => out.push(text_block(s)),
        Value::Array(parts) => {
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{content_path}[{j}]");
                match part_type(part, &p)? {
                    "text" => out.extend(text_part(part, &p)?),
                    // A refusal is the model's own earlier output, not something to replay.
                    "refusal" => {}
                    other => {
                        return Err(invalid(
                            format!("{p}.type"),
                            format!(
                            "assistant content part type `{other}` is not supported by anthropic"
                        ),
                        ))
                    }
                }
            }
        }
        _ => {
            return Err(invalid(
                content_path,
                "content must be a string or an array of parts",
            ))
        }
    }
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        for (k, call) in calls.iter().enumerate() {
            let p = format!("{path}.tool_calls[{k}]");
            let common::ToolCall {
                id, name, input, ..
            } = common::tool_call(call, &p)?;
            out.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }
    Ok(out)
}

/// One string when the system prompt is plain text; blocks when a part carries
/// a cache breakpoint that a string would lose.
fn system_value(blocks: Vec<Value>) -> Value {
    if blocks.iter().any(|b| b.get("cache_control").is_some()) {
        return Value::Array(blocks);
    }
    let texts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    Value::String(texts.join("\n\n"))
}

fn translate_tools(tools: Option<&Value>, allow_strict: bool) -> Result<Vec<Value>, ApiError> {
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
                format!("tool type `{ty}` is not supported by anthropic (only `function`)"),
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
        let schema = match function.get("parameters") {
            Some(s @ Value::Object(_)) => s.clone(),
            _ => json!({"type": "object", "properties": {}}),
        };
        let mut t = Map::new();
        t.insert("name".into(), Value::from(name));
        if let Some(d) = function.get("description").and_then(Value::as_str) {
            t.insert("description".into(), Value::from(d));
        }
        t.insert("input_schema".into(), schema);
        // Older models reject `strict`; there it is only a hint, so it goes.
        if allow_strict && function.get("strict").and_then(Value::as_bool) == Some(true) {
            t.insert("strict".into(), Value::Bool(true));
        }
        let mut t = Value::Object(t);
        copy_cache_control(tool, &mut t);
        out.push(t);
    }
    Ok(out)
}

fn translate_tool_choice(choice: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Some(json!({"type": "auto"}))),
            "required" => Ok(Some(json!({"type": "any"}))),
            "none" => Ok(Some(json!({"type": "none"}))),
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
                Some(name) => Ok(Some(json!({"type": "tool", "name": name}))),
                None => Err(invalid(
                    "tool_choice",
                    "tool_choice must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}} for anthropic",
                )),
            }
        }
        Some(_) => Err(invalid(
            "tool_choice",
            "tool_choice must be a string or an object",
        )),
    }
}

fn is_choice(choice: Option<&Value>, ty: &str) -> bool {
    choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some(ty)
}

enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema(Value),
}

fn response_format(rf: Option<&Value>) -> Result<ResponseFormat, ApiError> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => match rf.get("json_schema").and_then(|s| s.get("schema")) {
            Some(schema @ Value::Object(_)) => Ok(ResponseFormat::JsonSchema(schema.clone())),
            // OpenAI allows a schema-less json_schema; the nearest meaning is "some JSON".
            _ => Ok(ResponseFormat::JsonObject),
        },
        _ => Err(invalid(
            "response_format.type",
            "response_format.type must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// Whether the model takes `output_config.format` (structured outputs arrived
/// with the 4.5 generation). Unknown names are assumed current.
pub fn supports_native_structured_output(model: &str) -> bool {
    let model = model.to_ascii_lowercase();
    let Some(rest) = model.strip_prefix("claude-") else {
        return true;
    };
    if rest.starts_with("instant") || rest.starts_with('2') || rest.starts_with('3') {
        return false;
    }
    for family in ["opus-4", "sonnet-4", "haiku-4"] {
        if let Some(after) = rest.strip_prefix(family) {
            let minor = after
                .strip_prefix('-')
                .and_then(|s| s.split('-').next())
                .unwrap_or("");
            // `claude-sonnet-4-20250514` is 4.0: a date where the minor would be.
            return match minor.parse::<u32>() {
                Ok(m) if minor.len() < 8 => m >= 5,
                _ => false,
            };
        }
    }
    true
}

fn thinking_config(req: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let effort = req.get("reasoning_effort").filter(|v| !v.is_null());
    if let Some(effort) = effort {
        let budget = match effort.as_str() {
            Some("none") => return Ok(None),
            Some("minimal" | "low") => 1024,
            Some("medium") => 4096,
            Some("high" | "xhigh") => 16384,
            _ => return Err(invalid(
                "reasoning_effort",
                "reasoning_effort must be \"none\", \"minimal\", \"low\", \"medium\" or \"high\"",
            )),
        };
        return Ok(Some(json!({"type": "enabled", "budget_tokens": budget})));
    }
    // A client that already speaks Anthropic's `thinking` gets it passed through.
    Ok(req.get("thinking").filter(|t| t.is_object()).cloned())
}

fn sampling(
    req: &Map<String, Value>,
    thinking_on: bool,
    out: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let temperature = number(req, "temperature")?;
    let top_p = number(req, "top_p")?;
    let top_k = req.get("top_k").and_then(Value::as_u64);
    if thinking_on {
        // Thinking refuses temperature and top_k changes and a top_p below 0.95;
        // the client asked for reasoning, so the sampling tweaks give way.
        if let Some(p) = top_p.filter(|p| *p >= 0.95) {
            out.insert("top_p".into(), Value::from(p));
        }
        return Ok(());
    }
    if let Some(t) = temperature {
        // OpenAI's range is 0..=2, Anthropic's 0..=1.
        out.insert("temperature".into(), Value::from(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = top_p {
        out.insert("top_p".into(), Value::from(p.clamp(0.0, 1.0)));
    }
    if let Some(k) = top_k {
        out.insert("top_k".into(), Value::from(k));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Anthropic response → OpenAI response
// ---------------------------------------------------------------------------

fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything newer.
        _ => "stop",
    }
}

/// Token counts as Anthropic reports them; input excludes cached tokens.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl Usage {
    /// Later reports (message_delta) carry cumulative totals, so a present
    /// field replaces the earlier value.
    fn update(&mut self, u: &Value) {
        let field = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(v) = field("input_tokens") {
            self.input = v;
        }
        if let Some(v) = field("output_tokens") {
            self.output = v;
        }
        if let Some(v) = field("cache_read_input_tokens") {
            self.cache_read = v;
        }
        if let Some(v) = field("cache_creation_input_tokens") {
            self.cache_creation = v;
        }
    }

    /// OpenAI's `prompt_tokens` counts every input token, cached or not.
    fn to_openai(self) -> Value {
        let prompt = self.input + self.cache_read + self.cache_creation;
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt + self.output,
            "prompt_tokens_details": {
                "cached_tokens": self.cache_read,
                "cache_creation_input_tokens": self.cache_creation,
            },
        })
    }
}

fn translate_response(body: &[u8], ctx: &ChatContext<'_>) -> Result<Bytes, ApiError> {
    let msg: Value = serde_json::from_slice(body)
        .map_err(|e| bad_upstream(format!("anthropic: response is not valid JSON: {e}")))?;
    if msg.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_from_value(500, &msg)
            .unwrap_or_else(|| bad_upstream("anthropic: error response")));
    }
    let blocks = msg
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream("anthropic: response has no `content` array"))?;

    let mut text = String::new();
    let mut has_text = false;
    let mut json_answer: Option<String> = None;
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                has_text = true;
                text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = serde_json::to_string(&input).unwrap_or_else(|_| "{}".to_string());
                let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                if name == JSON_TOOL_NAME {
                    json_answer = Some(arguments);
                    continue;
                }
                tool_calls.push(json!({
                    "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            Some("thinking") => {
                let t = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                reasoning.push_str(t);
                thinking_blocks.push(json!({
                    "type": "thinking",
                    "thinking": t,
                    "signature": block.get("signature").and_then(Value::as_str).unwrap_or(""),
                }));
            }
            Some("redacted_thinking") => {
                thinking_blocks.push(json!({
                    "type": "redacted_thinking",
                    "data": block.get("data").and_then(Value::as_str).unwrap_or(""),
                }));
            }
            // Server tool blocks (web search etc.) have no OpenAI counterpart.
            _ => {}
        }
    }

    let stop_reason = msg.get("stop_reason").and_then(Value::as_str);
    let mut finish = finish_reason(stop_reason);
    let content = if let Some(json_text) = json_answer {
        // The forced tool was the answer, so the client sees an ordinary stop.
        if tool_calls.is_empty() && finish == "tool_calls" {
            finish = "stop";
        }
        Value::String(json_text)
    } else if has_text || tool_calls.is_empty() {
        Value::String(text)
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
    if !thinking_blocks.is_empty() {
        message.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }

    let mut usage = Usage::default();
    if let Some(u) = msg.get("usage") {
        usage.update(u);
    }
    let out = json!({
        "id": msg.get("id").and_then(Value::as_str).unwrap_or("msg_unknown"),
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
        // The proxy's own Anthropic key or account is at fault, not the client's key.
        401 | 403 => (ErrorKind::BadGateway, Some("upstream_auth_failed")),
        402 => (ErrorKind::BadGateway, Some("upstream_billing")),
        404 => (ErrorKind::NotFound, None),
        413 => (ErrorKind::PayloadTooLarge, None),
        429 => (ErrorKind::RateLimited, Some("upstream_rate_limited")),
        503 | 529 => (ErrorKind::ServiceUnavailable, Some("upstream_unavailable")),
        504 => (ErrorKind::GatewayTimeout, Some("upstream_timeout")),
        400..=499 => (ErrorKind::InvalidRequest, None),
        _ => (ErrorKind::BadGateway, Some("upstream_error")),
    }
}

/// For errors inside a 200 stream, where only the error type says what happened.
fn kind_for_error_type(error_type: &str) -> (ErrorKind, Option<&'static str>) {
    match error_type {
        "invalid_request_error" => kind_for_status(400),
        "authentication_error" => kind_for_status(401),
        "permission_error" => kind_for_status(403),
        "billing_error" => kind_for_status(402),
        "not_found_error" => kind_for_status(404),
        "request_too_large" => kind_for_status(413),
        "rate_limit_error" => kind_for_status(429),
        "overloaded_error" => kind_for_status(529),
        "timeout_error" => kind_for_status(504),
        _ => kind_for_status(500),
    }
}

/// `{"type":"error","error":{"type","message"}}`, or `None` if the body is not that.
fn error_from_value(status: u16, v: &Value) -> Option<ApiError> {
    let err = v.get("error")?;
    let error_type = err.get("type").and_then(Value::as_str);
    let message = err.get("message").and_then(Value::as_str).or(error_type)?;
    let (kind, code) = match (status, error_type) {
        // Inside a stream the status is always 200; the type is what counts.
        (200, Some(t)) => kind_for_error_type(t),
        _ => kind_for_status(status),
    };
    Some(with_code(
        ApiError::new(kind, format!("anthropic: {message}")),
        code,
    ))
}

fn translate_error(status: u16, body: &[u8]) -> ApiError {
    if let Some(e) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| error_from_value(status, &v))
    {
        return e;
    }
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.trim().chars().take(200).collect();
    let detail = if snippet.is_empty() {
        "an empty body".to_string()
    } else {
        format!("a non-JSON body: {snippet}")
    };
    let message = format!("anthropic: upstream returned HTTP {status} with {detail}");
    // A load balancer's HTML still means "slow down" or "overloaded" on these.
    match status {
        413 | 429 | 503 | 529 => {
            let (kind, code) = kind_for_status(status);
            with_code(ApiError::new(kind, message), code)
        }
        _ => ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_error"),
    }
}

// ---------------------------------------------------------------------------
// Anthropic SSE → OpenAI SSE
// ---------------------------------------------------------------------------

/// What one Anthropic content block became on the OpenAI side.
enum Block {
    Text,
    Tool {
        index: usize,
    },
    /// The synthetic structured-output tool: its input is the answer text.
    JsonTool,
    Thinking {
        text: String,
        signature: String,
    },
    Other,
}

struct StreamState {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    blocks: HashMap<u64, Block>,
    tool_calls: usize,
    usage: Usage,
    finish_sent: bool,
    done: bool,
}

/// Translates one Anthropic message stream into OpenAI chunks.
pub struct AnthropicStream {
    parser: SseParser,
    state: StreamState,
}

impl AnthropicStream {
    fn new(ctx: &ChatContext<'_>) -> Self {
        AnthropicStream {
            parser: SseParser::default(),
            state: StreamState {
                id: String::new(),
                created: now_secs(),
                model: ctx.requested_model.to_string(),
                include_usage: ctx.include_usage,
                started: false,
                blocks: HashMap::new(),
                tool_calls: 0,
                usage: Usage::default(),
                finish_sent: false,
                done: false,
            },
        }
    }
}

impl StreamTranslator for AnthropicStream {
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
                "anthropic: the stream ended before message_stop",
            )
            .with_code("upstream_stream_truncated"))
        }
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

    fn emit(&self, out: &mut Vec<u8>, delta: Value) -> Result<(), ApiError> {
        write_frame(out, &self.chunk(delta, None))
    }

    /// The role chunk opens every OpenAI stream, even one whose message_start went missing.
    fn ensure_started(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = format!("chatcmpl-anthropic-{}", self.created);
        }
        self.emit(out, role_delta())
    }

    fn on_event(&mut self, event: &str, data: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(data).map_err(|e| {
            bad_upstream(format!("anthropic: malformed stream event `{event}`: {e}"))
        })?;
        let ty = v.get("type").and_then(Value::as_str).unwrap_or(event);
        match ty {
            "message_start" => {
                let msg = v.get("message").unwrap_or(&Value::Null);
                if let Some(id) = msg.get("id").and_then(Value::as_str) {
                    if !self.started {
                        self.id = id.to_string();
                    }
                }
                if let Some(u) = msg.get("usage") {
                    self.usage.update(u);
                }
                self.ensure_started(out)
            }
            "content_block_start" => {
                self.ensure_started(out)?;
                self.block_start(&v, out)
            }
            "content_block_delta" => {
                self.ensure_started(out)?;
                self.block_delta(&v, out)
            }
            "content_block_stop" => self.block_stop(&v, out),
            "message_delta" => {
                self.ensure_started(out)?;
                if let Some(u) = v.get("usage") {
                    self.usage.update(u);
                }
                let stop_reason = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                if stop_reason.is_some() {
                    self.send_finish(stop_reason, out)?;
                }
                Ok(())
            }
            "message_stop" => {
                self.ensure_started(out)?;
                if !self.finish_sent {
                    self.send_finish(None, out)?;
                }
                if self.include_usage {
                    let usage_chunk = usage_chunk_json(
                        &self.id,
                        self.created,
                        &self.model,
                        self.usage.to_openai(),
                    );
                    write_frame(out, &usage_chunk)?;
                }
                out.extend_from_slice(DONE_FRAME);
                self.done = true;
                Ok(())
            }
            "error" => Err(error_from_value(200, &v).unwrap_or_else(|| {
                ApiError::new(ErrorKind::BadGateway, "anthropic: stream error")
                    .with_code("upstream_error")
            })),
            // ping, and event types added after this was written.
            _ => Ok(()),
        }
    }

    fn send_finish(
        &mut self,
        stop_reason: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        let mut finish = finish_reason(stop_reason);
        if finish == "tool_calls" && self.tool_calls == 0 {
            // Only the structured-output tool was called: an ordinary answer.
            finish = "stop";
        }
        self.finish_sent = true;
        write_frame(out, &self.chunk(json!({}), Some(finish)))
    }

    fn block_start(&mut self, v: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let cb = v.get("content_block").unwrap_or(&Value::Null);
        let block = match cb.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = cb
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.emit(out, json!({"content": t}))?;
                }
                Block::Text
            }
            Some("tool_use") if cb.get("name").and_then(Value::as_str) == Some(JSON_TOOL_NAME) => {
                Block::JsonTool
            }
            Some("tool_use") => {
                let tool_index = self.tool_calls;
                self.tool_calls += 1;
                // The start event normally carries `input: {}` and the JSON follows in deltas.
                let arguments = match cb.get("input") {
                    Some(Value::Object(o)) if !o.is_empty() => {
                        serde_json::to_string(o).unwrap_or_default()
                    }
                    _ => String::new(),
                };
                self.emit(
                    out,
                    json!({"tool_calls": [{
                        "index": tool_index,
                        "id": cb.get("id").and_then(Value::as_str).unwrap_or(""),
                        "type": "function",
                        "function": {
                            "name": cb.get("name").and_then(Value::as_str).unwrap_or(""),
                            "arguments": arguments,
                        },
                    }]}),
                )?;
                Block::Tool { index: tool_index }
            }
            Some("thinking") => {
                let text = cb
                    .get("thinking")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if !text.is_empty() {
                    self.emit(out, json!({"reasoning_content": text}))?;
                }
                Block::Thinking {
                    text,
                    signature: cb
                        .get("signature")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                }
            }
            Some("redacted_thinking") => {
                self.emit(
                    out,
                    json!({"thinking_blocks": [{
                        "type": "redacted_thinking",
                        "data": cb.get("data").and_then(Value::as_str).unwrap_or(""),
                    }]}),
                )?;
                Block::Other
            }
            _ => Block::Other,
        };
        self.blocks.insert(index, block);
        Ok(())
    }

    fn block_delta(&mut self, v: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let delta = v.get("delta").unwrap_or(&Value::Null);
        let str_field = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or("");
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => {
                let text = str_field("text");
                if !text.is_empty() {
                    self.emit(out, json!({"content": text}))?;
                }
            }
            Some("input_json_delta") => {
                let partial = str_field("partial_json");
                if partial.is_empty() {
                    return Ok(());
                }
                match self.blocks.get(&index) {
                    Some(Block::Tool { index: i }) => {
                        let i = *i;
                        self.emit(
                            out,
                            json!({"tool_calls": [{"index": i, "function": {"arguments": partial}}]}),
                        )?;
                    }
                    Some(Block::JsonTool) => self.emit(out, json!({"content": partial}))?,
                    _ => {}
                }
            }
            Some("thinking_delta") => {
                let t = str_field("thinking");
                if let Some(Block::Thinking { text, .. }) = self.blocks.get_mut(&index) {
                    text.push_str(t);
                }
                if !t.is_empty() {
                    self.emit(out, json!({"reasoning_content": t}))?;
                }
            }
            Some("signature_delta") => {
                let s = str_field("signature");
                if let Some(Block::Thinking { signature, .. }) = self.blocks.get_mut(&index) {
                    signature.push_str(s);
                }
            }
            // citations_delta and newer delta types carry nothing OpenAI can show.
            _ => {}
        }
        Ok(())
    }

    fn block_stop(&mut self, v: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        // The whole signed block, once, so the client can send it back next turn.
        if let Some(Block::Thinking { text, signature }) = self.blocks.remove(&index) {
            self.emit(
                out,
                json!({"thinking_blocks": [{
                    "type": "thinking",
                    "thinking": text,
                    "signature": signature,
                }]}),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ctx(model: &str) -> ChatContext<'_> {
        ChatContext {
            upstream_model: model,
            requested_model: "claude",
            stream: false,
            include_usage: false,
        }
    }

    fn translate_with(body: Value, c: &ChatContext<'_>) -> Value {
        let req = AnthropicAdapter
            .chat_request(&serde_json::to_vec(&body).unwrap(), c)
            .unwrap();
        serde_json::from_slice(&req.body).unwrap()
    }

    fn translate(body: Value) -> Value {
        translate_with(body, &ctx("claude-sonnet-4-5"))
    }

    fn translate_err(body: Value) -> ApiError {
        AnthropicAdapter
            .chat_request(
                &serde_json::to_vec(&body).unwrap(),
                &ctx("claude-sonnet-4-5"),
            )
            .unwrap_err()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    // ----- request -----

    #[test]
    fn request_targets_messages_with_version_header() {
        let req = AnthropicAdapter
            .chat_request(
                br#"{"model":"claude","messages":[{"role":"user","content":"hi"}]}"#,
                &ctx("claude-sonnet-4-5"),
            )
            .unwrap();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.path, "/messages");
        assert_eq!(req.headers.len(), 1);
        assert_eq!(req.headers[0].0, "anthropic-version");
        assert_eq!(req.headers[0].1, "2023-06-01");
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            })
        );
    }

    #[test]
    fn stream_flag_comes_from_the_context() {
        let c = ChatContext {
            stream: true,
            ..ctx("claude-sonnet-4-5")
        };
        let body = translate_with(json!({"messages": [user("hi")], "stream": true}), &c);
        assert_eq!(body["stream"], true);
        let body = translate(json!({"messages": [user("hi")]}));
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn system_and_developer_messages_join_into_top_level_system() {
        let body = translate(json!({"messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            user("hi"),
        ]}));
        assert_eq!(body["system"], "You are terse.\n\nAnswer in French.");
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
        assert_eq!(body["messages"][0]["role"], "user");
    }

    #[test]
    fn system_parts_with_cache_control_stay_blocks() {
        let body = translate(json!({"messages": [
            {"role": "system", "content": [
                {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "more"},
            ]},
            user("hi"),
        ]}));
        assert_eq!(
            body["system"],
            json!([
                {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "more"},
            ])
        );
    }

    #[test]
    fn non_text_system_part_is_rejected_with_its_path() {
        let e = translate_err(json!({"messages": [
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            user("hi"),
        ]}));
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
    }

    #[test]
    fn image_data_url_becomes_base64_block() {
        let body = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        ]}]}));
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            ])
        );
    }

    #[test]
    fn image_http_url_becomes_url_block() {
        let body = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}));
        assert_eq!(
            body["messages"][0]["content"][0],
            json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
        );
    }

    #[test]
    fn unusable_images_are_400s_naming_the_part() {
        for url in [
            "ftp://example.com/a.png",
            "data:image/png,rawbytes",
            "data:image/bmp;base64,Qk0=",
            "data:image/png;base64",
        ] {
            let e = translate_err(json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}},
            ]}]}));
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{url}");
            assert_eq!(
                e.param.as_deref(),
                Some("messages[0].content[0].image_url.url"),
                "{url}"
            );
        }
    }

    #[test]
    fn pdf_file_part_becomes_document_and_audio_is_refused() {
        let body = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        ]}]}));
        assert_eq!(
            body["messages"][0]["content"][0],
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}})
        );
        let e = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        ]}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
    }

    fn weather_tool() -> Value {
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        }})
    }

    #[test]
    fn tools_become_input_schema_tools() {
        let body = translate(json!({
            "messages": [user("weather?")],
            "tools": [weather_tool(), {"type": "function", "function": {"name": "noargs"}}],
        }));
        assert_eq!(
            body["tools"],
            json!([
                {
                    "name": "get_weather",
                    "description": "Get the current weather in a given location",
                    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
                },
                {"name": "noargs", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
        assert!(body.get("tool_choice").is_none());
    }

    #[test]
    fn tool_choice_variants() {
        let cases = [
            (json!("auto"), json!({"type": "auto"})),
            (json!("required"), json!({"type": "any"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "get_weather"}}),
                json!({"type": "tool", "name": "get_weather"}),
            ),
        ];
        for (openai, anthropic) in cases {
            let body = translate(json!({
                "messages": [user("weather?")],
                "tools": [weather_tool()],
                "tool_choice": openai,
            }));
            assert_eq!(body["tool_choice"], anthropic, "{openai}");
        }
        let e = translate_err(json!({
            "messages": [user("x")], "tools": [weather_tool()], "tool_choice": "sometimes",
        }));
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn parallel_tool_calls_false_disables_parallel_use() {
        let body = translate(json!({
            "messages": [user("weather?")],
            "tools": [weather_tool()],
            "parallel_tool_calls": false,
        }));
        assert_eq!(
            body["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let body = translate(json!({
            "messages": [user("weather?")],
            "tools": [weather_tool()],
            "tool_choice": "required",
            "parallel_tool_calls": false,
        }));
        assert_eq!(
            body["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_choice_without_tools_is_dropped() {
        let body = translate(json!({"messages": [user("x")], "tool_choice": "auto"}));
        assert!(body.get("tool_choice").is_none());
        assert!(body.get("tools").is_none());
    }

    #[test]
    fn non_function_tool_is_rejected() {
        let e = translate_err(json!({
            "messages": [user("x")],
            "tools": [{"type": "custom", "custom": {"name": "x"}}],
        }));
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
    }

    fn tool_conversation() -> Value {
        json!([
            {"role": "system", "content": "be brief"},
            user("Weather in Paris and Rome?"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
            user("And which is warmer?"),
        ])
    }

    #[test]
    fn parallel_tool_results_merge_into_one_user_turn() {
        let body = translate(json!({"messages": tool_conversation(), "tools": [weather_tool()]}));
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"location": "Rome"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
                    {"type": "text", "text": "And which is warmer?"},
                ]},
            ])
        );
    }

    #[test]
    fn tool_results_lead_their_user_turn() {
        let body = translate(json!({"messages": [
            user("q"),
            {"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            ]},
            user("note first"),
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ]}));
        let turn = &body["messages"][2]["content"];
        assert_eq!(turn[0]["type"], "tool_result");
        assert_eq!(turn[1]["type"], "text");
    }

    #[test]
    fn assistant_text_and_tool_calls_share_a_turn() {
        let body = translate(json!({"messages": [
            user("q"),
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_9", "content": "done"},
        ]}));
        assert_eq!(
            body["messages"][1]["content"],
            json!([
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_9", "name": "f", "input": {}},
            ])
        );
    }

    #[test]
    fn invalid_tool_arguments_are_a_400_naming_the_field() {
        let e = translate_err(json!({"messages": [
            user("q"),
            {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{not json"}},
            ]},
        ]}));
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[1].function.arguments")
        );
        let e = translate_err(json!({"messages": [
            user("q"),
            {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}},
            ]},
        ]}));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
    }

    #[test]
    fn tool_message_without_id_is_rejected() {
        let e = translate_err(json!({"messages": [user("q"), {"role": "tool", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
    }

    #[test]
    fn consecutive_user_messages_merge() {
        let body = translate(json!({"messages": [user("a"), user("b")]}));
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b"},
            ]}])
        );
    }

    #[test]
    fn max_tokens_defaults_and_prefers_max_completion_tokens() {
        assert_eq!(
            translate(json!({"messages": [user("x")]}))["max_tokens"],
            4096
        );
        assert_eq!(
            translate(json!({"messages": [user("x")], "max_tokens": 100}))["max_tokens"],
            100
        );
        assert_eq!(
            translate(
                json!({"messages": [user("x")], "max_tokens": 100, "max_completion_tokens": 200})
            )["max_tokens"],
            200
        );
        let e = translate_err(json!({"messages": [user("x")], "max_tokens": 0}));
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
    }

    #[test]
    fn sampling_stop_and_user() {
        let body = translate(json!({
            "messages": [user("x")],
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "END",
            "user": "user-42",
        }));
        assert_eq!(body["temperature"], 0.3);
        assert_eq!(body["top_p"], 0.9);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["metadata"], json!({"user_id": "user-42"}));
        let body =
            translate(json!({"messages": [user("x")], "stop": ["a", "b"], "temperature": 1.7}));
        assert_eq!(body["stop_sequences"], json!(["a", "b"]));
        assert_eq!(
            body["temperature"], 1.0,
            "OpenAI's 0..2 clamps to Anthropic's 0..1"
        );
    }

    #[test]
    fn fields_without_an_equivalent_are_dropped() {
        let body = translate(json!({
            "messages": [user("x")],
            "frequency_penalty": 0.5,
            "presence_penalty": 0.5,
            "logit_bias": {"1": 2},
            "logprobs": true,
            "seed": 7,
            "store": true,
            "n": 1,
            "stream_options": {"include_usage": true},
            "service_tier": "auto",
            "metadata": {"a": "b"},
            "prediction": {"type": "content", "content": "x"},
        }));
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["max_tokens", "messages", "model"]);
    }

    #[test]
    fn n_above_one_and_audio_output_are_refused() {
        let e = translate_err(json!({"messages": [user("x")], "n": 3}));
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.message, "n > 1 is not supported by anthropic");
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = translate_err(json!({"messages": [user("x")], "modalities": ["text", "audio"]}));
        assert_eq!(e.param.as_deref(), Some("modalities"));
    }

    #[test]
    fn reasoning_effort_becomes_a_thinking_budget() {
        for (effort, budget) in [("low", 1024), ("medium", 4096), ("high", 16384)] {
            let body = translate(json!({
                "messages": [user("x")],
                "reasoning_effort": effort,
                "temperature": 0.2,
            }));
            assert_eq!(
                body["thinking"],
                json!({"type": "enabled", "budget_tokens": budget})
            );
            assert!(body["max_tokens"].as_u64().unwrap() > budget);
            assert!(
                body.get("temperature").is_none(),
                "thinking refuses temperature"
            );
        }
        // A cap above the budget stays; one below it gets the budget on top.
        let body = translate(
            json!({"messages": [user("x")], "reasoning_effort": "medium", "max_completion_tokens": 10000}),
        );
        assert_eq!(body["max_tokens"], 10000);
        let body = translate(
            json!({"messages": [user("x")], "reasoning_effort": "medium", "max_completion_tokens": 500}),
        );
        assert_eq!(body["max_tokens"], 4596);
        let body = translate(json!({"messages": [user("x")], "reasoning_effort": "none"}));
        assert!(body.get("thinking").is_none());
        let e = translate_err(json!({"messages": [user("x")], "reasoning_effort": "max"}));
        assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    }

    #[test]
    fn reasoning_with_forced_tool_is_refused() {
        let e = translate_err(json!({
            "messages": [user("x")],
            "tools": [weather_tool()],
            "tool_choice": "required",
            "reasoning_effort": "low",
        }));
        assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    }

    #[test]
    fn thinking_blocks_on_assistant_turns_are_replayed_first() {
        let body = translate(json!({"messages": [
            user("q"),
            {
                "role": "assistant",
                "content": null,
                "reasoning_content": "hmm",
                "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig=="}],
                "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "r"},
        ], "reasoning_effort": "low"}));
        assert_eq!(
            body["messages"][1]["content"][0],
            json!({"type": "thinking", "thinking": "hmm", "signature": "sig=="})
        );
        assert_eq!(body["messages"][1]["content"][1]["type"], "tool_use");
    }

    fn person_format() -> Value {
        json!({"type": "json_schema", "json_schema": {
            "name": "person",
            "strict": true,
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"],
                "additionalProperties": false,
            },
        }})
    }

    #[test]
    fn json_schema_uses_native_structured_output_on_current_models() {
        let body = translate(json!({"messages": [user("x")], "response_format": person_format()}));
        assert_eq!(body["output_config"]["format"]["type"], "json_schema");
        assert_eq!(
            body["output_config"]["format"]["schema"]["required"],
            json!(["name", "age"])
        );
        assert!(body.get("tools").is_none());
    }

    #[test]
    fn json_schema_is_a_forced_tool_on_older_models() {
        let body = translate_with(
            json!({"messages": [user("x")], "response_format": person_format()}),
            &ctx("claude-3-5-haiku-20241022"),
        );
        assert!(body.get("output_config").is_none());
        assert_eq!(body["tools"][0]["name"], JSON_TOOL_NAME);
        assert_eq!(
            body["tools"][0]["input_schema"]["required"],
            json!(["name", "age"])
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "tool", "name": JSON_TOOL_NAME})
        );
        // With the client's own tools the model may pick either, but must call one.
        let body = translate_with(
            json!({"messages": [user("x")], "response_format": person_format(), "tools": [weather_tool()]}),
            &ctx("claude-sonnet-4-20250514"),
        );
        assert_eq!(body["tools"].as_array().unwrap().len(), 2);
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
    }

    #[test]
    fn json_object_is_a_system_instruction() {
        let body = translate(json!({
            "messages": [{"role": "system", "content": "Be nice."}, user("x")],
            "response_format": {"type": "json_object"},
        }));
        let system = body["system"].as_str().unwrap();
        assert!(system.starts_with("Be nice.\n\n"));
        assert!(system.contains("JSON object"));
        assert!(body.get("output_config").is_none());
    }

    #[test]
    fn structured_output_support_by_model() {
        for m in [
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "claude-opus-4-5-20251101",
            "claude-haiku-4-5",
            "claude-opus-4-6",
            "claude-sonnet-5",
            "some-future-model",
        ] {
            assert!(supports_native_structured_output(m), "{m}");
        }
        for m in [
            "claude-3-5-sonnet-20241022",
            "claude-3-7-sonnet-latest",
            "claude-3-haiku-20240307",
            "claude-sonnet-4-20250514",
            "claude-sonnet-4-0",
            "claude-opus-4-1-20250805",
            "claude-opus-4-1",
            "claude-opus-4",
        ] {
            assert!(!supports_native_structured_output(m), "{m}");
        }
    }

    #[test]
    fn malformed_messages_are_400s() {
        let e = translate_err(json!({"messages": "hi"}));
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = translate_err(json!({"messages": [{"role": "wizard", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = AnthropicAdapter
            .chat_request(b"{not json", &ctx("claude-sonnet-4-5"))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
    }

    // ----- response -----

    fn respond(body: Value) -> Value {
        let out = AnthropicAdapter
            .chat_response(
                &serde_json::to_vec(&body).unwrap(),
                &ctx("claude-sonnet-4-5"),
            )
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn documented_text_response() {
        // The Messages API reference's example response.
        let out = respond(json!({
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hi! My name is Claude."}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 2095, "output_tokens": 503},
        }));
        assert_eq!(out["id"], "msg_013Zva2CMHLNnXjNJJKqJ2EF");
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(out["model"], "claude");
        assert!(out["created"].as_u64().unwrap() > 1_600_000_000);
        let choice = &out["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], "Hi! My name is Claude.");
        assert!(choice["message"].get("tool_calls").is_none());
        assert_eq!(out["usage"]["prompt_tokens"], 2095);
        assert_eq!(out["usage"]["completion_tokens"], 503);
        assert_eq!(out["usage"]["total_tokens"], 2598);
        assert!(out["usage"].get("completion_tokens_details").is_none());
    }

    #[test]
    fn tool_use_response_becomes_tool_calls() {
        let out = respond(json!({
            "id": "msg_01Aq9w938a90dw8q",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "celsius"},
            }],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 20},
        }));
        let msg = &out["choices"][0]["message"];
        assert!(msg["content"].is_null(), "only tool calls: content is null");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        let call = &msg["tool_calls"][0];
        assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(
            args,
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );
    }

    #[test]
    fn text_with_tool_use_keeps_both() {
        let out = respond(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [
                {"type": "text", "text": "I'll check."},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {"a": 1}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }));
        let msg = &out["choices"][0]["message"];
        assert_eq!(msg["content"], "I'll check.");
        assert_eq!(msg["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(msg["tool_calls"][1]["function"]["arguments"], "{\"a\":1}");
    }

    #[test]
    fn usage_counts_cached_tokens_in_the_prompt() {
        let out = respond(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 21,
                "cache_creation_input_tokens": 188086,
                "cache_read_input_tokens": 1000,
                "output_tokens": 393,
            },
        }));
        assert_eq!(
            out["usage"],
            json!({
                "prompt_tokens": 21 + 188086 + 1000,
                "completion_tokens": 393,
                "total_tokens": 21 + 188086 + 1000 + 393,
                "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_input_tokens": 188086},
            })
        );
        // Anthropic sends null for cache fields it did not use.
        let out = respond(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "cache_creation_input_tokens": null, "cache_read_input_tokens": null, "output_tokens": 2},
        }));
        assert_eq!(out["usage"]["prompt_tokens"], 5);
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
            ("model_context_window_exceeded", "length"),
        ] {
            let content = if stop == "tool_use" {
                json!([{"type": "tool_use", "id": "t", "name": "f", "input": {}}])
            } else {
                json!([{"type": "text", "text": "x"}])
            };
            let out = respond(json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                "content": content, "stop_reason": stop,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }));
            assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        }
    }

    #[test]
    fn thinking_becomes_reasoning_content() {
        let out = respond(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [
                {"type": "thinking", "thinking": "Let me analyze this step by step...", "signature": "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL...."},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB9URj2pLmN3kF8/dW5hR7xJ0aP1oLs9yTcMnKVf2wRpEGjH9XZaBt4UvDcPrQ..."},
                {"type": "text", "text": "Based on my analysis..."},
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }));
        let msg = &out["choices"][0]["message"];
        assert_eq!(msg["content"], "Based on my analysis...");
        assert_eq!(
            msg["reasoning_content"],
            "Let me analyze this step by step..."
        );
        assert_eq!(msg["thinking_blocks"][0]["type"], "thinking");
        assert!(msg["thinking_blocks"][0]["signature"]
            .as_str()
            .unwrap()
            .starts_with("WaUj"));
        assert_eq!(msg["thinking_blocks"][1]["type"], "redacted_thinking");
    }

    #[test]
    fn emulated_json_tool_becomes_content() {
        let out = respond(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL_NAME, "input": {"name": "Ada", "age": 36}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }));
        let msg = &out["choices"][0]["message"];
        assert!(msg.get("tool_calls").is_none());
        let parsed: Value = serde_json::from_str(msg["content"].as_str().unwrap()).unwrap();
        assert_eq!(parsed, json!({"name": "Ada", "age": 36}));
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn garbage_response_is_a_bad_gateway() {
        let e = AnthropicAdapter
            .chat_response(b"<html>", &ctx("claude-sonnet-4-5"))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        let e = AnthropicAdapter
            .chat_response(br#"{"id":"x"}"#, &ctx("claude-sonnet-4-5"))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
    }

    // ----- errors -----

    fn anthropic_error(ty: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": "error",
            "error": {"type": ty, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
        }))
        .unwrap()
    }

    #[test]
    fn upstream_errors_map_by_status() {
        let cases = [
            (
                400,
                "invalid_request_error",
                ErrorKind::InvalidRequest,
                None,
            ),
            (
                401,
                "authentication_error",
                ErrorKind::BadGateway,
                Some("upstream_auth_failed"),
            ),
            (
                403,
                "permission_error",
                ErrorKind::BadGateway,
                Some("upstream_auth_failed"),
            ),
            (404, "not_found_error", ErrorKind::NotFound, None),
            (413, "request_too_large", ErrorKind::PayloadTooLarge, None),
            (
                429,
                "rate_limit_error",
                ErrorKind::RateLimited,
                Some("upstream_rate_limited"),
            ),
            (
                500,
                "api_error",
                ErrorKind::BadGateway,
                Some("upstream_error"),
            ),
            (
                503,
                "api_error",
                ErrorKind::ServiceUnavailable,
                Some("upstream_unavailable"),
            ),
            (
                529,
                "overloaded_error",
                ErrorKind::ServiceUnavailable,
                Some("upstream_unavailable"),
            ),
        ];
        for (status, ty, kind, code) in cases {
            let e = AnthropicAdapter.error(status, &anthropic_error(ty, "Something specific"));
            assert_eq!(e.kind, kind, "{status}");
            assert_eq!(e.code.as_deref(), code, "{status}");
            assert_eq!(e.message, "anthropic: Something specific", "{status}");
        }
    }

    #[test]
    fn non_json_error_body_is_a_bad_gateway_naming_the_status() {
        let e = AnthropicAdapter.error(502, b"<html><body>Bad Gateway</body></html>");
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert!(e.message.contains("502"), "{}", e.message);
        assert!(e.message.starts_with("anthropic: "));
        let e = AnthropicAdapter.error(500, b"");
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert!(e.message.contains("500") && e.message.contains("empty"));
        // A proxy's HTML 429 still means "slow down".
        let e = AnthropicAdapter.error(429, b"Too Many Requests");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(e.message.contains("429"));
    }

    // ----- streams -----

    fn stream_ctx(include_usage: bool) -> ChatContext<'static> {
        ChatContext {
            upstream_model: "claude-sonnet-4-5",
            requested_model: "claude",
            stream: true,
            include_usage,
        }
    }

    /// Feeds `input` in the given piece sizes (cycled) and returns the output.
    fn run_stream(
        input: &[u8],
        pieces: &[usize],
        include_usage: bool,
    ) -> Result<Vec<u8>, ApiError> {
        let mut t = AnthropicAdapter.chat_stream(&stream_ctx(include_usage));
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

    // The "Basic streaming request" transcript from Anthropic's streaming docs.
    const DOCS_TEXT_STREAM: &str = "event: message_start\n\
data: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"model\": \"claude-sonnet-4-5-20250929\", \"stop_reason\": null, \"stop_sequence\": null, \"usage\": {\"input_tokens\": 25, \"output_tokens\": 1}}}\n\
\n\
event: content_block_start\n\
data: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\
\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\
\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}\n\
\n\
event: content_block_delta\n\
data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"!\"}}\n\
\n\
event: content_block_stop\n\
data: {\"type\": \"content_block_stop\", \"index\": 0}\n\
\n\
event: message_delta\n\
data: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"end_turn\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}\n\
\n\
event: message_stop\n\
data: {\"type\": \"message_stop\"}\n\
\n";

    #[test]
    fn documented_text_stream_translates() {
        let out = run_stream(DOCS_TEXT_STREAM.as_bytes(), &[usize::MAX], false).unwrap();
        let f = frames(&out);
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "object": "chat.completion.chunk",
                "model": "claude",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            })
        };
        assert_eq!(
            f,
            vec![
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                chunk(json!({"content": "Hello"}), Value::Null),
                chunk(json!({"content": "!"}), Value::Null),
                chunk(json!({}), json!("stop")),
                json!("[DONE]"),
            ]
        );
        // All chunks share one `created`.
        let text = String::from_utf8(out).unwrap();
        let created: std::collections::HashSet<&str> = text
            .match_indices("\"created\":")
            .map(|(i, _)| &text[i..i + 22])
            .collect();
        assert_eq!(created.len(), 1);
    }

    #[test]
    fn stream_is_independent_of_chunk_boundaries() {
        let whole = frames(&run_stream(DOCS_TEXT_STREAM.as_bytes(), &[usize::MAX], true).unwrap());
        for pieces in [&[1][..], &[2, 3], &[7], &[13, 1, 64], &[100, 5]] {
            let split = frames(&run_stream(DOCS_TEXT_STREAM.as_bytes(), pieces, true).unwrap());
            assert_eq!(split, whole, "pieces {pieces:?}");
        }
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let crlf = DOCS_TEXT_STREAM.replace('\n', "\r\n");
        let a = frames(&run_stream(crlf.as_bytes(), &[3], false).unwrap());
        let b = frames(&run_stream(DOCS_TEXT_STREAM.as_bytes(), &[usize::MAX], false).unwrap());
        assert_eq!(a, b);
        assert_eq!(content_of(&a), "Hello!");
    }

    #[test]
    fn include_usage_adds_null_usage_and_a_final_usage_chunk() {
        // message_start reports the cached prompt; message_delta the output total.
        let input = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":29,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";
        let f = frames(&run_stream(input.as_bytes(), &[usize::MAX], true).unwrap());
        assert_eq!(f.len(), 5);
        for chunk in &f[..3] {
            assert!(
                chunk["usage"].is_null() && chunk.get("usage").is_some(),
                "{chunk}"
            );
        }
        assert_eq!(f[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(f[3]["choices"], json!([]));
        assert_eq!(
            f[3]["usage"],
            json!({
                "prompt_tokens": 2129,
                "completion_tokens": 12,
                "total_tokens": 2141,
                "prompt_tokens_details": {"cached_tokens": 2000, "cache_creation_input_tokens": 100},
            })
        );
        assert_eq!(f[3]["id"], "msg_01");
        assert_eq!(f[4], json!("[DONE]"));

        let without = frames(&run_stream(input.as_bytes(), &[usize::MAX], false).unwrap());
        assert!(without.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(without.len(), 4);
    }

    // The tool-use streaming transcript from Anthropic's streaming docs.
    const DOCS_TOOL_STREAM: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let's check the weather for San Francisco, CA:"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"unit\": \"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

    /// Reassembles streamed tool calls as an OpenAI SDK would.
    fn tool_calls_of(frames: &[Value]) -> Vec<(String, String, String)> {
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for f in frames {
            let Some(tcs) = f["choices"][0]["delta"]["tool_calls"].as_array() else {
                continue;
            };
            for tc in tcs {
                let i = tc["index"].as_u64().unwrap() as usize;
                if i == calls.len() {
                    calls.push(Default::default());
                }
                let c = &mut calls[i];
                if let Some(id) = tc["id"].as_str() {
                    c.0 = id.to_string();
                }
                if let Some(n) = tc["function"]["name"].as_str() {
                    c.1 = n.to_string();
                }
                c.2.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        calls
    }

    #[test]
    fn documented_tool_stream_reassembles_arguments() {
        for pieces in [&[usize::MAX][..], &[1], &[5, 11]] {
            let f = frames(&run_stream(DOCS_TOOL_STREAM.as_bytes(), pieces, false).unwrap());
            assert_eq!(
                content_of(&f),
                "Okay, let's check the weather for San Francisco, CA:"
            );
            let calls = tool_calls_of(&f);
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
            assert_eq!(calls[0].1, "get_weather");
            let args: Value = serde_json::from_str(&calls[0].2).unwrap();
            assert_eq!(
                args,
                json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
            );
            let start = f
                .iter()
                .find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
                .unwrap();
            assert_eq!(
                start["choices"][0]["delta"]["tool_calls"][0],
                json!({"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                       "function": {"name": "get_weather", "arguments": ""}})
            );
            let finish: Vec<&Value> = f
                .iter()
                .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(|_| c))
                .collect();
            assert_eq!(finish.len(), 1);
            assert_eq!(finish[0]["choices"][0]["finish_reason"], "tool_calls");
        }
    }

    #[test]
    fn parallel_tool_blocks_get_their_own_indices() {
        let mut input = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_p\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n");
        for (block, (id, loc)) in [("toolu_a", "Paris"), ("toolu_b", "Rome")]
            .iter()
            .enumerate()
        {
            // The text block at index 0 shifts the tool blocks to 1 and 2.
            let block = block + 1;
            input.push_str(&format!("event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{block},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"{id}\",\"name\":\"get_weather\",\"input\":{{}}}}}}\n\n"));
            input.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{block},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{{\\\"location\\\": \\\"{loc}\\\"}}\"}}}}\n\n"));
            input.push_str(&format!("event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{block}}}\n\n"));
        }
        input.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        let f = frames(&run_stream(input.as_bytes(), &[9], false).unwrap());
        let calls = tool_calls_of(&f);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, "toolu_a");
        assert_eq!(calls[1].0, "toolu_b");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[1].2).unwrap(),
            json!({"location": "Rome"})
        );
    }

    // The extended-thinking streaming transcript from Anthropic's docs (abridged).
    const DOCS_THINKING_STREAM: &str = r#"event: message_start
data: {"type": "message_start", "message": {"id": "msg_01T9KPsaK9AbNPFasbUi5Kn1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n1071 = 2 × 462 + 147"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n\nSo GCD(1071, 462) = 21"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: content_block_start
data: {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "The greatest common divisor of 1071 and 462 is **21**."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}

event: message_stop
data: {"type": "message_stop"}

"#;

    #[test]
    fn documented_thinking_stream_becomes_reasoning_content() {
        let f = frames(&run_stream(DOCS_THINKING_STREAM.as_bytes(), &[17], false).unwrap());
        let reasoning: String = f
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
            .collect();
        assert!(reasoning.starts_with("I need to find the GCD"));
        assert!(reasoning.ends_with("= 21"));
        assert_eq!(
            content_of(&f),
            "The greatest common divisor of 1071 and 462 is **21**."
        );
        let block = f
            .iter()
            .find_map(|c| c["choices"][0]["delta"]["thinking_blocks"].as_array())
            .unwrap();
        assert_eq!(block[0]["thinking"], reasoning.as_str());
        assert!(block[0]["signature"].as_str().unwrap().starts_with("EqQB"));
    }

    #[test]
    fn emulated_json_tool_streams_as_content() {
        let input = format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_j\",\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}}}\n\n\
event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"tool_use\",\"id\":\"toolu_j\",\"name\":\"{JSON_TOOL_NAME}\",\"input\":{{}}}}}}\n\n\
event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{{\\\"name\\\": \"}}}}\n\n\
event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Ada\\\"}}\"}}}}\n\n\
event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"tool_use\"}},\"usage\":{{\"output_tokens\":5}}}}\n\n\
event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        );
        let f = frames(&run_stream(input.as_bytes(), &[usize::MAX], false).unwrap());
        assert_eq!(content_of(&f), "{\"name\": \"Ada\"}");
        assert!(tool_calls_of(&f).is_empty());
        assert!(f.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    }

    #[test]
    fn error_event_ends_the_stream_with_its_status() {
        let cut = DOCS_TEXT_STREAM.find("event: content_block_stop").unwrap();
        for (ty, kind) in [
            ("overloaded_error", ErrorKind::ServiceUnavailable),
            ("rate_limit_error", ErrorKind::RateLimited),
            ("api_error", ErrorKind::BadGateway),
            ("invalid_request_error", ErrorKind::InvalidRequest),
        ] {
            let input = format!(
                "{}event: error\ndata: {{\"type\": \"error\", \"error\": {{\"type\": \"{ty}\", \"message\": \"Overloaded\"}}}}\n\n",
                &DOCS_TEXT_STREAM[..cut]
            );
            let mut t = AnthropicAdapter.chat_stream(&stream_ctx(false));
            let mut out = Vec::new();
            let e = t.feed(input.as_bytes(), &mut out).unwrap_err();
            assert_eq!(e.kind, kind, "{ty}");
            assert_eq!(e.message, "anthropic: Overloaded");
            // What came before the error was still delivered.
            assert!(String::from_utf8(out)
                .unwrap()
                .contains("\"content\":\"Hello\""));
        }
    }

    #[test]
    fn truncated_stream_fails_at_finish() {
        let cut = DOCS_TEXT_STREAM.find("event: message_stop").unwrap();
        let mut t = AnthropicAdapter.chat_stream(&stream_ctx(true));
        let mut out = Vec::new();
        t.feed(&DOCS_TEXT_STREAM.as_bytes()[..cut], &mut out)
            .unwrap();
        let e = t.finish(&mut out).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert_eq!(e.code.as_deref(), Some("upstream_stream_truncated"));
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("[DONE]"));
        assert!(
            !text.contains("\"choices\":[]"),
            "no usage chunk for a cut stream"
        );

        // An empty upstream body is truncated too.
        let mut t = AnthropicAdapter.chat_stream(&stream_ctx(false));
        assert!(t.finish(&mut Vec::new()).is_err());
    }

    #[test]
    fn final_event_without_blank_line_still_counts() {
        let trimmed = DOCS_TEXT_STREAM.trim_end();
        let f = frames(&run_stream(trimmed.as_bytes(), &[4], false).unwrap());
        assert_eq!(content_of(&f), "Hello!");
    }

    #[test]
    fn unknown_events_and_comments_are_ignored() {
        let input = DOCS_TEXT_STREAM.replace(
            "event: ping\n",
            ": keep-alive comment\n\nevent: brand_new_event\ndata: {\"type\": \"brand_new_event\"}\n\nevent: ping\n",
        );
        let a = frames(&run_stream(input.as_bytes(), &[6], false).unwrap());
        let b = frames(&run_stream(DOCS_TEXT_STREAM.as_bytes(), &[usize::MAX], false).unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn malformed_event_json_is_a_bad_gateway() {
        let mut t = AnthropicAdapter.chat_stream(&stream_ctx(false));
        let e = t
            .feed(b"event: message_start\ndata: {oops\n\n", &mut Vec::new())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
    }

    #[test]
    fn bytes_after_message_stop_are_ignored() {
        let input = format!("{DOCS_TEXT_STREAM}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"late\"}}}}\n\n");
        let f = frames(&run_stream(input.as_bytes(), &[usize::MAX], false).unwrap());
        assert_eq!(content_of(&f), "Hello!");
    }
}
