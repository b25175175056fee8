//! IBM watsonx.ai chat (`POST {base}/ml/v1/text/chat?version=…`, and
//! `/ml/v1/text/chat_stream` for server-sent events) behind OpenAI chat
//! completions.
//!
//! watsonx.ai's chat API is close to OpenAI's: the same roles, `tools`,
//! `tool_calls`, `image_url` parts, `choices` and `usage`. The differences this
//! adapter handles:
//!
//! - **Scope.** The body names the model as `model_id` and the project or
//!   deployment space the call runs in (`project_id` / `space_id`, from the
//!   model's config).
//! - **Tool choice.** A mode (`"auto"`, `"none"`, `"required"`) goes in
//!   `tool_choice_option`; a named function stays an object in `tool_choice`.
//! - **Roles.** `developer` becomes `system`; system, assistant and tool
//!   content is text, so text parts are joined.
//! - **Dropped fields.** `stream_options` (watsonx always ends a stream with its
//!   usage), `user`, `metadata`, `store`, `parallel_tool_calls`, `service_tier`
//!   and `prediction` have no watsonx equivalent; audio output and the
//!   deprecated `functions` are refused rather than dropped.
//! - **Answers.** watsonx adds `model_id`, `model_version`, `created_at` and
//!   `system.warnings`; the client gets a plain `chat.completion` naming the
//!   model it asked for. `finish_reason` `time_limit` becomes `length`.
//! - **Streams.** Events are `event: message` with one chunk each, ending with a
//!   `choices: []` chunk that carries the usage (sometimes as `event: close`),
//!   and no `[DONE]`; a failure mid-stream is `event: error`. A stream that ends
//!   before any `finish_reason` is an error, not a short answer.
//!
//! Auth is an IAM access token the gateway exchanges the IBM Cloud API key for
//! and sends as `Authorization: Bearer`; adapters never do I/O.

use super::common::{
    bad_upstream, chunk_json, invalid, max_tokens, now_secs, number, part_type, role_delta,
    stop_sequences, usage_chunk_json, with_code, write_frame, SseParser, DONE_FRAME,
};
use super::{ChatAdapter, ChatContext, StreamTranslator, UpstreamRequest, UpstreamTarget};
use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// The `version` query parameter sent when the model sets no `api_version`:
/// the date the chat API was introduced, whose behaviour IBM keeps stable.
pub const DEFAULT_VERSION: &str = "2024-05-31";

/// An SSE line longer than this is not a watsonx event; refusing it keeps a
/// misbehaving upstream from growing the buffer without bound.
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

/// Where a watsonx.ai call runs and is billed: a project or a deployment space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatsonxScope {
    Project(String),
    Space(String),
}

/// IBM watsonx.ai chat.
#[derive(Debug, Default, Clone, Copy)]
pub struct WatsonxAdapter;

impl ChatAdapter for WatsonxAdapter {
    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        self.chat_request_for(
            openai_body,
            ctx,
            &UpstreamTarget {
                base_url: "",
                options: &Default::default(),
            },
        )
    }

    fn chat_request_for(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
        target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let scope = target.options.watsonx.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                "watsonx: this deployment has neither `watsonx_project_id` nor `watsonx_space_id`",
            )
        })?;
        let version = target
            .options
            .api_version
            .as_deref()
            .unwrap_or(DEFAULT_VERSION);
        // The version is pasted into the query string.
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return Err(ApiError::new(
                ErrorKind::Internal,
                format!("watsonx: `api_version` `{version}` is not a date like {DEFAULT_VERSION}"),
            ));
        }
        let body = translate_request(openai_body, ctx, scope)?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("watsonx: request encoding: {e}"),
            )
        })?;
        let endpoint = if ctx.stream { "chat_stream" } else { "chat" };
        Ok(UpstreamRequest {
            method: Method::POST,
            path: format!("/ml/v1/text/{endpoint}?version={version}"),
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
        Box::new(WatsonxStream::new(ctx))
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        translate_error(status, upstream_body)
    }
}

// ---------------------------------------------------------------------------
// OpenAI request → watsonx request
// ---------------------------------------------------------------------------

fn translate_request(
    body: &[u8],
    ctx: &ChatContext<'_>,
    scope: &WatsonxScope,
) -> Result<Value, ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Some(req) = parsed.as_object() else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    refuse_unrepresentable(req)?;

    let mut out = Map::new();
    out.insert("model_id".into(), Value::from(ctx.upstream_model));
    match scope {
        WatsonxScope::Project(id) => out.insert("project_id".into(), Value::from(id.as_str())),
        WatsonxScope::Space(id) => out.insert("space_id".into(), Value::from(id.as_str())),
    };
    out.insert("messages".into(), translate_messages(req.get("messages"))?);

    let tools = translate_tools(req.get("tools"))?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        // A tool choice without tools is ignored by OpenAI, so it is dropped here.
        match req.get("tool_choice") {
            None | Some(Value::Null) => {}
            Some(Value::String(mode)) if matches!(mode.as_str(), "auto" | "none" | "required") => {
                out.insert("tool_choice_option".into(), Value::from(mode.as_str()));
            }
            Some(choice @ Value::Object(_)) => {
                let name = choice
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|_| choice.get("type").and_then(Value::as_str) == Some("function"))
                    .ok_or_else(|| {
                        invalid(
                            "tool_choice",
                            "tool_choice must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
                        )
                    })?;
                out.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "function": {"name": name}}),
                );
            }
            Some(_) => {
                return Err(invalid(
                    "tool_choice",
                    "tool_choice must be \"auto\", \"none\", \"required\" or a function",
                ))
            }
        }
    }

    if let Some(n) = max_tokens(req)? {
        out.insert("max_tokens".into(), Value::from(n));
    }
    for key in [
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
    ] {
        if let Some(v) = number(req, key)? {
            out.insert(key.into(), Value::from(v));
        }
    }
    for key in ["seed", "n", "top_logprobs"] {
        match req.get(key) {
            None | Some(Value::Null) => {}
            Some(v) if v.is_i64() || v.is_u64() => {
                out.insert(key.into(), v.clone());
            }
            Some(_) => return Err(invalid(key, format!("`{key}` must be an integer"))),
        }
    }
    match req.get("logprobs") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Bool(_)) => {
            out.insert("logprobs".into(), v.clone());
        }
        Some(_) => return Err(invalid("logprobs", "`logprobs` must be a boolean")),
    }
    match req.get("logit_bias") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Object(_)) => {
            out.insert("logit_bias".into(), v.clone());
        }
        Some(_) => return Err(invalid("logit_bias", "`logit_bias` must be an object")),
    }
    if let Some(stops) = stop_sequences(req.get("stop"))? {
        out.insert("stop".into(), Value::Array(stops));
    }
    match req.get("response_format") {
        None | Some(Value::Null) => {}
        Some(rf) => match rf.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") if rf.get("json_schema").is_some_and(Value::is_object) => {
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": rf["json_schema"]}),
                );
            }
            _ => {
                return Err(invalid(
                    "response_format",
                    "response_format must be text, json_object or json_schema with a `json_schema` object",
                ))
            }
        },
    }
    match req.get("reasoning_effort") {
        None | Some(Value::Null) => {}
        Some(Value::String(e)) if matches!(e.as_str(), "low" | "medium" | "high") => {
            out.insert("reasoning_effort".into(), Value::from(e.as_str()));
        }
        // "none" and "minimal" have no watsonx level; leaving it out is the
        // closest (the model's default).
        Some(Value::String(e)) if matches!(e.as_str(), "none" | "minimal") => {}
        Some(_) => {
            return Err(invalid(
                "reasoning_effort",
                "reasoning_effort must be \"low\", \"medium\" or \"high\" for watsonx",
            ))
        }
    }
    Ok(Value::Object(out))
}

fn refuse_unrepresentable(req: &Map<String, Value>) -> Result<(), ApiError> {
    let wants_audio = req.get("audio").is_some_and(|v| !v.is_null())
        || req
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x.as_str() == Some("audio")));
    if wants_audio {
        return Err(invalid(
            "modalities",
            "audio output is not supported by watsonx",
        ));
    }
    if req.get("functions").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "functions",
            "the deprecated `functions` field is not supported for watsonx models; use `tools`",
        ));
    }
    Ok(())
}

/// The text of `content` (a string or text parts), for roles whose watsonx
/// content is a string. Refusals count as text.
fn text_of(content: Option<&Value>, path: &str) -> Result<Option<String>, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (i, part) in parts.iter().enumerate() {
                let at = format!("{path}[{i}]");
                let key = match part_type(part, &at)? {
                    "text" => "text",
                    "refusal" => "refusal",
                    other => {
                        return Err(invalid(
                            format!("{at}.type"),
                            format!("watsonx takes only text here, not `{other}` parts"),
                        ))
                    }
                };
                let piece = part.get(key).and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        format!("{at}.{key}"),
                        format!("`{key}` parts need a string `{key}`"),
                    )
                })?;
                text.push_str(piece);
            }
            Ok(Some(text))
        }
        Some(_) => Err(invalid(
            path,
            "content must be a string or an array of content parts",
        )),
    }
}

fn user_content(content: Option<&Value>, path: &str) -> Result<Value, ApiError> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(Value::from(s.as_str())),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(invalid(
                path,
                "user content must be a string or an array of content parts",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match part_type(part, &at)? {
            "text" => {
                let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    invalid(format!("{at}.text"), "text parts need a string `text`")
                })?;
                out.push(json!({"type": "text", "text": text}));
            }
            "image_url" => {
                let image = part.get("image_url");
                let url = image
                    .and_then(|i| i.get("url"))
                    .or(image.filter(|i| i.is_string()))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(format!("{at}.image_url.url"), "image parts need a `url`")
                    })?;
                let mut image_url = json!({ "url": url });
                if let Some(detail) = image.and_then(|i| i.get("detail")).and_then(Value::as_str) {
                    image_url["detail"] = Value::from(detail);
                }
                out.push(json!({"type": "image_url", "image_url": image_url}));
            }
            other => {
                return Err(invalid(
                    format!("{at}.type"),
                    format!("watsonx chat does not take `{other}` content parts"),
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

fn assistant_message(m: &Value, path: &str) -> Result<Value, ApiError> {
    let mut out = Map::new();
    out.insert("role".into(), Value::from("assistant"));
    if let Some(text) = text_of(m.get("content"), &format!("{path}.content"))? {
        out.insert("content".into(), Value::from(text));
    }
    if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
        let calls = calls
            .as_array()
            .ok_or_else(|| invalid(format!("{path}.tool_calls"), "tool_calls must be an array"))?;
        let mut translated = Vec::with_capacity(calls.len());
        for (i, call) in calls.iter().enumerate() {
            let c = super::common::tool_call(call, &format!("{path}.tool_calls[{i}]"))?;
            let arguments = if c.arguments.trim().is_empty() {
                "{}"
            } else {
                c.arguments
            };
            translated.push(json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": arguments},
            }));
        }
        if !translated.is_empty() {
            out.insert("tool_calls".into(), Value::Array(translated));
        }
    }
    if !out.contains_key("content") && !out.contains_key("tool_calls") {
        out.insert("content".into(), Value::from(""));
    }
    if let Some(name) = m.get("name").and_then(Value::as_str) {
        out.insert("name".into(), Value::from(name));
    }
    Ok(Value::Object(out))
}

fn translate_messages(messages: Option<&Value>) -> Result<Value, ApiError> {
    let messages = messages
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("messages", "messages must be a non-empty array"))?;
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
                let text = text_of(m.get("content"), &content_path)?.unwrap_or_default();
                json!({"role": "system", "content": text})
            }
            "user" => {
                let mut user = json!({
                    "role": "user",
                    "content": user_content(m.get("content"), &content_path)?,
                });
                if let Some(name) = m.get("name").and_then(Value::as_str) {
                    user["name"] = Value::from(name);
                }
                user
            }
            "assistant" => assistant_message(m, &path)?,
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
                let text = text_of(m.get("content"), &content_path)?.unwrap_or_default();
                json!({"role": "tool", "tool_call_id": id, "content": text})
            }
            other => {
                return Err(invalid(
                    format!("{path}.role"),
                    format!("watsonx chat has no `{other}` role"),
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
                "watsonx takes only `function` tools",
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
        if let Some(p) = f.get("parameters").filter(|p| p.is_object()) {
            function["parameters"] = p.clone();
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// watsonx answer → OpenAI answer
// ---------------------------------------------------------------------------

fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "length" | "time_limit" | "max_tokens" => "length",
        "tool_calls" => "tool_calls",
        "content_filter" => "content_filter",
        // "stop", "eos_token", "stop_sequence", "cancelled", "error": the
        // answer as it stands.
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

/// watsonx ids already look like OpenAI's (`chatcmpl-…`); one is made up only
/// when the answer has none.
fn completion_id(v: &Value) -> String {
    match v.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!(
            "chatcmpl-wx{:x}{:x}",
            now_secs(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

fn tool_calls_of(calls: &Value) -> Option<Value> {
    let calls = calls.as_array().filter(|c| !c.is_empty())?;
    Some(Value::Array(
        calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": c["function"].get("name").cloned().unwrap_or(Value::Null),
                        "arguments": c["function"]
                            .get("arguments")
                            .and_then(Value::as_str)
                            .unwrap_or("{}"),
                    },
                })
            })
            .collect(),
    ))
}

fn translate_response(body: &[u8], ctx: &ChatContext<'_>) -> Result<Bytes, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        bad_upstream("watsonx: the upstream answered 200 with a body that is not JSON")
    })?;
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad_upstream("watsonx: the answer has no `choices`"))?;
    let mut out_choices = Vec::with_capacity(choices.len());
    for (i, c) in choices.iter().enumerate() {
        let m = c.get("message").unwrap_or(&Value::Null);
        let tool_calls = m.get("tool_calls").and_then(tool_calls_of);
        let content = m
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !(s.is_empty() && tool_calls.is_some()));
        let mut message = json!({
            "role": "assistant",
            "content": content,
            "refusal": m.get("refusal").cloned().unwrap_or(Value::Null),
        });
        if let Some(calls) = tool_calls {
            message["tool_calls"] = calls;
        }
        if let Some(r) = m.get("reasoning_content").and_then(Value::as_str) {
            message["reasoning_content"] = Value::from(r);
        }
        let reason = c
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(finish_reason)
            .unwrap_or("stop");
        out_choices.push(json!({
            "index": c.get("index").and_then(Value::as_u64).unwrap_or(i as u64),
            "message": message,
            "logprobs": c.get("logprobs").cloned().unwrap_or(Value::Null),
            "finish_reason": reason,
        }));
    }
    let out = json!({
        "id": completion_id(&v),
        "object": "chat.completion",
        "created": v.get("created").and_then(Value::as_u64).unwrap_or_else(now_secs),
        "model": ctx.requested_model,
        "choices": out_choices,
        "usage": usage(v.get("usage").unwrap_or(&Value::Null)),
    });
    serde_json::to_vec(&out).map(Bytes::from).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("watsonx: response encoding: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn kind_for(status: u16, code: Option<&str>) -> (ErrorKind, Option<&'static str>) {
    match (status, code) {
        // The proxy's IBM Cloud credentials are at fault, not the client's key.
        (
            _,
            Some(
                "authentication_token_expired"
                | "authorization_rejected"
                | "user_authorization_failed",
            ),
        )
        | (401 | 403, _) => (ErrorKind::BadGateway, Some("upstream_auth_failed")),
        (_, Some("token_quota_reached")) => (ErrorKind::BadGateway, Some("upstream_billing")),
        (404, _) => (ErrorKind::NotFound, None),
        (413, _) => (ErrorKind::PayloadTooLarge, None),
        (429, _) => (ErrorKind::RateLimited, Some("upstream_rate_limited")),
        (503, _) => (ErrorKind::ServiceUnavailable, Some("upstream_unavailable")),
        (504, _) => (ErrorKind::GatewayTimeout, Some("upstream_timeout")),
        (400..=499, _) => (ErrorKind::InvalidRequest, None),
        _ => (ErrorKind::BadGateway, Some("upstream_error")),
    }
}

/// `{"errors":[{"code","message","more_info"}],"trace","status_code"}`.
fn error_from_value(status: u16, v: &Value) -> Option<ApiError> {
    let first = v.get("errors")?.as_array()?.first()?;
    let code = first.get("code").and_then(Value::as_str);
    let message = first.get("message").and_then(Value::as_str).or(code)?;
    // Inside a stream the HTTP status is 200; the body says what it was.
    let status = match status {
        200 => v
            .get("status_code")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(500),
        s => s,
    };
    let (kind, fixed) = kind_for(status, code);
    let e = ApiError::new(kind, format!("watsonx: {message}"));
    Some(match fixed {
        Some(c) => e.with_code(c),
        None => with_code(e, code),
    })
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
        format!("a body that is not a watsonx error: {snippet}")
    };
    let message = format!("watsonx: upstream returned HTTP {status} with {detail}");
    match status {
        // A load balancer's page still means "slow down" or "unavailable".
        413 | 429 | 503 | 504 => {
            let (kind, code) = kind_for(status, None);
            with_code(ApiError::new(kind, message), code)
        }
        _ => ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_error"),
    }
}

// ---------------------------------------------------------------------------
// watsonx SSE → OpenAI SSE
// ---------------------------------------------------------------------------

struct StreamState {
    id: Option<String>,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    finished: bool,
    usage: Option<Value>,
}

/// Translates one `chat_stream` answer.
pub struct WatsonxStream {
    parser: SseParser,
    state: StreamState,
}

impl WatsonxStream {
    fn new(ctx: &ChatContext<'_>) -> Self {
        WatsonxStream {
            parser: SseParser::with_limit(MAX_PENDING_BYTES, "watsonx"),
            state: StreamState {
                id: None,
                created: now_secs(),
                model: ctx.requested_model.to_string(),
                include_usage: ctx.include_usage,
                started: false,
                finished: false,
                usage: None,
            },
        }
    }
}

impl StreamTranslator for WatsonxStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        let state = &mut self.state;
        self.parser
            .feed(chunk, &mut |event, data| state.on_event(event, data, out))
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let state = &mut self.state;
        self.parser
            .flush(&mut |event, data| state.on_event(event, data, out))?;
        if !state.finished {
            return Err(bad_upstream(
                "watsonx: the stream ended before the answer was complete",
            ));
        }
        if state.include_usage {
            let usage = state.usage.take().unwrap_or_else(|| usage(&Value::Null));
            let id = state.id.clone().unwrap_or_default();
            write_frame(
                out,
                &usage_chunk_json(&id, state.created, &state.model, usage),
            )?;
        }
        out.extend_from_slice(DONE_FRAME);
        Ok(())
    }
}

/// A streamed tool-call delta as OpenAI sends it: the id, type and name only
/// on the first piece of a call (watsonx repeats `"name": ""` on the others).
fn tool_call_delta(d: &Value) -> Value {
    let mut out = Map::new();
    out.insert(
        "index".into(),
        d.get("index").cloned().unwrap_or(Value::from(0)),
    );
    if let Some(id) = d
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        out.insert("id".into(), Value::from(id));
        out.insert("type".into(), Value::from("function"));
    }
    let f = d.get("function").unwrap_or(&Value::Null);
    let mut function = Map::new();
    if let Some(name) = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        function.insert("name".into(), Value::from(name));
    }
    function.insert(
        "arguments".into(),
        Value::from(f.get("arguments").and_then(Value::as_str).unwrap_or("")),
    );
    out.insert("function".into(), Value::Object(function));
    Value::Object(out)
}

impl StreamState {
    fn on_event(&mut self, event: &str, data: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        let v: Value = match serde_json::from_slice(data) {
            Ok(v) => v,
            // `event: close` may come with no JSON at all.
            Err(_) if event == "close" => return Ok(()),
            Err(_) => {
                return Err(bad_upstream(
                    "watsonx: the stream sent an event that is not JSON",
                ))
            }
        };
        if event == "error" || v.get("errors").is_some() {
            return Err(error_from_value(200, &v).unwrap_or_else(|| {
                bad_upstream("watsonx: the stream failed with an unreadable error event")
            }));
        }
        if self.id.is_none() {
            self.id = Some(completion_id(&v));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage(u));
        }
        let choices = v.get("choices").and_then(Value::as_array);
        for c in choices.into_iter().flatten() {
            self.choice(c, out)?;
        }
        Ok(())
    }

    fn choice(&mut self, c: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
        let d = c.get("delta").unwrap_or(&Value::Null);
        let mut delta = Map::new();
        if let Some(text) = d
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            delta.insert("content".into(), Value::from(text));
        }
        if let Some(r) = d
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            delta.insert("reasoning_content".into(), Value::from(r));
        }
        if let Some(calls) = d
            .get("tool_calls")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
        {
            delta.insert(
                "tool_calls".into(),
                Value::Array(calls.iter().map(tool_call_delta).collect()),
            );
        }
        let finish = c
            .get("finish_reason")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(finish_reason);
        if !self.started {
            self.started = true;
            self.emit(out, index, role_delta(), None)?;
        }
        if delta.is_empty() && finish.is_none() {
            return Ok(());
        }
        if finish.is_some() {
            self.finished = true;
        }
        self.emit(out, index, Value::Object(delta), finish)
    }

    fn emit(
        &self,
        out: &mut Vec<u8>,
        index: u64,
        delta: Value,
        finish: Option<&str>,
    ) -> Result<(), ApiError> {
        let id = self.id.as_deref().unwrap_or_default();
        write_frame(
            out,
            &chunk_json(
                id,
                self.created,
                &self.model,
                self.include_usage,
                index,
                delta,
                finish,
            ),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::adapters::ProviderOptions;

    fn ctx(stream: bool) -> ChatContext<'static> {
        ChatContext {
            upstream_model: "ibm/granite-3-3-8b-instruct",
            requested_model: "granite",
            stream,
            include_usage: true,
        }
    }

    fn options(scope: WatsonxScope) -> ProviderOptions {
        ProviderOptions {
            watsonx: Some(scope),
            ..ProviderOptions::default()
        }
    }

    fn request_with(body: Value, stream: bool, opts: &ProviderOptions) -> UpstreamRequest {
        WatsonxAdapter
            .chat_request_for(
                body.to_string().as_bytes(),
                &ctx(stream),
                &UpstreamTarget {
                    base_url: "https://us-south.ml.cloud.ibm.com",
                    options: opts,
                },
            )
            .unwrap()
    }

    fn translate(body: Value) -> Value {
        let r = request_with(body, false, &options(WatsonxScope::Project("p1".into())));
        serde_json::from_slice(&r.body).unwrap()
    }

    fn translate_err(body: Value) -> ApiError {
        WatsonxAdapter
            .chat_request_for(
                body.to_string().as_bytes(),
                &ctx(false),
                &UpstreamTarget {
                    base_url: "",
                    options: &options(WatsonxScope::Project("p1".into())),
                },
            )
            .unwrap_err()
    }

    #[test]
    fn paths_carry_the_version_and_pick_chat_or_chat_stream() {
        let opts = options(WatsonxScope::Project("p1".into()));
        let body = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
        let r = request_with(body.clone(), false, &opts);
        assert_eq!(r.path, "/ml/v1/text/chat?version=2024-05-31");
        assert_eq!(r.method, Method::POST);
        let r = request_with(body.clone(), true, &opts);
        assert_eq!(r.path, "/ml/v1/text/chat_stream?version=2024-05-31");
        let dated = ProviderOptions {
            api_version: Some("2025-02-11".into()),
            ..opts
        };
        assert_eq!(
            request_with(body, false, &dated).path,
            "/ml/v1/text/chat?version=2025-02-11"
        );
    }

    #[test]
    fn body_names_model_scope_and_keeps_the_openai_message_shape() {
        let v = translate(json!({
            "model": "granite",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
                {"role": "user", "content": "hi", "name": "ann"},
            ],
            "max_completion_tokens": 64,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "stream": false,
            "stream_options": {"include_usage": true},
            "user": "u-1",
            "parallel_tool_calls": true,
        }));
        assert_eq!(
            v,
            json!({
                "model_id": "ibm/granite-3-3-8b-instruct",
                "project_id": "p1",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi", "name": "ann"},
                ],
                "max_tokens": 64,
                "temperature": 0.2,
                "top_p": 0.9,
                "stop": ["END"],
            })
        );
        let space = request_with(
            json!({"model": "g", "messages": [{"role": "user", "content": "x"}]}),
            false,
            &options(WatsonxScope::Space("s9".into())),
        );
        let v: Value = serde_json::from_slice(&space.body).unwrap();
        assert_eq!(v["space_id"], "s9");
        assert!(v.get("project_id").is_none());
    }

    #[test]
    fn tools_tool_choice_and_tool_turns() {
        let tools = json!([{"type": "function", "function": {
            "name": "get_weather", "description": "d", "strict": true,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }}]);
        let v = translate(json!({
            "model": "g",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "3C"}]},
            ],
            "tools": tools,
            "tool_choice": "required",
        }));
        assert_eq!(v["tools"][0]["function"]["name"], "get_weather");
        assert!(v["tools"][0]["function"].get("strict").is_none());
        assert_eq!(v["tool_choice_option"], "required");
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
            ]})
        );
        assert_eq!(
            v["messages"][2],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "3C"})
        );

        let v = translate(json!({
            "model": "g",
            "messages": [{"role": "user", "content": "x"}],
            "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }));
        assert_eq!(
            v["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert!(v.get("tool_choice_option").is_none());

        // Without tools a tool choice means nothing, as at OpenAI.
        let v = translate(json!({
            "model": "g", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto",
        }));
        assert!(v.get("tool_choice_option").is_none() && v.get("tools").is_none());
    }

    #[test]
    fn image_parts_pass_as_image_url() {
        let v = translate(json!({
            "model": "g",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            ]}],
        }));
        assert_eq!(
            v["messages"][0]["content"],
            json!([
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            ])
        );
    }

    #[test]
    fn unrepresentable_requests_are_400s_naming_the_field() {
        let cases = [
            (json!({"model": "g", "messages": []}), "messages"),
            (
                json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"model": "g", "messages": [{"role": "user", "content": "x"}], "modalities": ["text", "audio"]}),
                "modalities",
            ),
            (
                json!({"model": "g", "messages": [{"role": "user", "content": "x"}], "functions": [{"name": "f"}]}),
                "functions",
            ),
            (
                json!({"model": "g", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!({"model": "g", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
                "max_tokens",
            ),
        ];
        for (body, param) in cases {
            let e = translate_err(body);
            assert_eq!(e.status(), 400, "{param}: {}", e.message);
            assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        }
    }

    #[test]
    fn missing_scope_or_odd_version_is_an_internal_error_not_a_request() {
        let body = json!({"model": "g", "messages": [{"role": "user", "content": "x"}]});
        let e = WatsonxAdapter
            .chat_request(body.to_string().as_bytes(), &ctx(false))
            .unwrap_err();
        assert_eq!(e.status(), 500);
        let odd = ProviderOptions {
            api_version: Some("2024&x=1".into()),
            ..options(WatsonxScope::Project("p".into()))
        };
        let e = WatsonxAdapter
            .chat_request_for(
                body.to_string().as_bytes(),
                &ctx(false),
                &UpstreamTarget {
                    base_url: "",
                    options: &odd,
                },
            )
            .unwrap_err();
        assert_eq!(e.status(), 500);
    }

    fn response(body: Value) -> Value {
        let out = WatsonxAdapter
            .chat_response(body.to_string().as_bytes(), &ctx(false))
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn answer_becomes_a_plain_chat_completion() {
        let v = response(json!({
            "id": "chatcmpl-abc", "model_id": "ibm/granite-3-3-8b-instruct", "model": "ibm/granite-3-3-8b-instruct",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Ciao"}, "finish_reason": "stop"}],
            "created": 1749736055, "model_version": "3.3.0", "created_at": "2025-06-12T13:47:35.541Z",
            "usage": {"completion_tokens": 3, "prompt_tokens": 38, "total_tokens": 41},
            "system": {"warnings": [{"message": "m", "id": "disclaimer_warning"}]},
        }));
        assert_eq!(
            v,
            json!({
                "id": "chatcmpl-abc", "object": "chat.completion", "created": 1749736055,
                "model": "granite",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Ciao", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 38, "completion_tokens": 3, "total_tokens": 41},
            })
        );
    }

    #[test]
    fn tool_call_answer_and_finish_reasons() {
        let v = response(json!({
            "id": "chatcmpl-t",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "", "tool_calls": [
                {"id": "chatcmpl-tool-1", "type": "function", "function": {"name": "sum", "arguments": "{\"a\": 1}"}},
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"completion_tokens": 9, "prompt_tokens": 30, "total_tokens": 39},
        }));
        let m = &v["choices"][0]["message"];
        assert!(m["content"].is_null());
        assert_eq!(m["tool_calls"][0]["id"], "chatcmpl-tool-1");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\": 1}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        for (wx, openai) in [
            ("time_limit", "length"),
            ("length", "length"),
            ("cancelled", "stop"),
        ] {
            let v = response(json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": wx}],
            }));
            assert_eq!(v["choices"][0]["finish_reason"], openai, "{wx}");
        }
        let e = WatsonxAdapter
            .chat_response(b"{\"choices\": []}", &ctx(false))
            .unwrap_err();
        assert_eq!(e.status(), 502);
    }

    fn sse(frames: &[Value]) -> Vec<u8> {
        let mut out = String::new();
        for (i, f) in frames.iter().enumerate() {
            out.push_str(&format!("id: {}\nevent: message\ndata: {f}\n\n", i + 1));
        }
        out.into_bytes()
    }

    fn wx_chunk(choices: Value) -> Value {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "model_id": "m", "model": "m",
               "choices": choices, "created": 1, "model_version": "1", "created_at": "t"})
    }

    fn text_stream() -> Vec<Value> {
        let mut last = wx_chunk(json!([]));
        last["usage"] = json!({"completion_tokens": 3, "prompt_tokens": 38, "total_tokens": 41});
        vec![
            wx_chunk(
                json!([{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "content": ""}}]),
            ),
            wx_chunk(json!([{"index": 0, "finish_reason": null, "delta": {"content": "C"}}])),
            wx_chunk(json!([{"index": 0, "finish_reason": null, "delta": {"content": "iao"}}])),
            wx_chunk(json!([{"index": 0, "finish_reason": "stop", "delta": {"content": ""}}])),
            last,
        ]
    }

    fn run(bytes: &[u8], piece: usize) -> Result<Vec<Value>, ApiError> {
        let mut t = WatsonxAdapter.chat_stream(&ctx(true));
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            t.feed(chunk, &mut out)?;
        }
        t.finish(&mut out)?;
        let text = String::from_utf8(out).unwrap();
        Ok(text
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .map(|d| {
                if d == "[DONE]" {
                    Value::from("[DONE]")
                } else {
                    serde_json::from_str(d).unwrap()
                }
            })
            .collect())
    }

    #[test]
    fn text_stream_translates_at_any_chunk_boundary() {
        let bytes = sse(&text_stream());
        for piece in [1, 7, 64, bytes.len()] {
            let frames = run(&bytes, piece).unwrap();
            assert_eq!(frames.last().unwrap(), "[DONE]", "{piece}");
            let chunks = &frames[..frames.len() - 1];
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            assert_eq!(text, "Ciao");
            assert!(chunks
                .iter()
                .all(|c| c["id"] == "chatcmpl-s" && c["model"] == "granite"));
            let finishes: Vec<&Value> = chunks
                .iter()
                .map(|c| &c["choices"][0]["finish_reason"])
                .filter(|f| !f.is_null())
                .collect();
            assert_eq!(finishes, [&json!("stop")]);
            let usage = chunks.last().unwrap();
            assert_eq!(usage["choices"], json!([]));
            assert_eq!(usage["usage"]["total_tokens"], 41);
        }
    }

    #[test]
    fn usage_in_a_close_event_is_used_too() {
        let mut frames = text_stream();
        let last = frames.pop().unwrap();
        let mut bytes = sse(&frames);
        bytes.extend_from_slice(format!("id: 9\nevent: close\ndata: {last}\n\n").as_bytes());
        let out = run(&bytes, 1000).unwrap();
        assert_eq!(out[out.len() - 2]["usage"]["prompt_tokens"], 38);
    }

    #[test]
    fn tool_call_stream_drops_the_repeated_empty_names() {
        let frames = vec![
            wx_chunk(
                json!([{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "content": ""}}]),
            ),
            wx_chunk(
                json!([{"index": 0, "finish_reason": null, "delta": {"tool_calls": [
                    {"index": 0, "id": "chatcmpl-tool-1", "type": "function", "function": {"name": "sum", "arguments": ""}},
                ]}}]),
            ),
            wx_chunk(
                json!([{"index": 0, "finish_reason": "tool_calls", "delta": {"tool_calls": [
                    {"index": 0, "function": {"name": "", "arguments": "{\"a\": 2}"}},
                ]}}]),
            ),
        ];
        let out = run(&sse(&frames), 13).unwrap();
        let calls: Vec<&Value> = out
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["id"], "chatcmpl-tool-1");
        assert_eq!(calls[0]["function"]["name"], "sum");
        assert!(calls[1].get("id").is_none());
        assert!(calls[1]["function"].get("name").is_none());
        assert_eq!(calls[1]["function"]["arguments"], "{\"a\": 2}");
        assert_eq!(
            out[out.len() - 3]["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }

    #[test]
    fn truncated_stream_and_error_events_are_errors() {
        let mut frames = text_stream();
        frames.truncate(3);
        let e = run(&sse(&frames), 50).unwrap_err();
        assert_eq!(e.status(), 502);

        let mut bytes = sse(&text_stream()[..2]);
        bytes.extend_from_slice(
            b"id: 3\nevent: error\ndata: {\"errors\":[{\"code\":\"internal_error\",\"message\":\"Model crashed\"}],\"trace\":\"t\",\"status_code\":503}\n\n",
        );
        let e = run(&bytes, 50).unwrap_err();
        assert_eq!(e.status(), 503);
        assert_eq!(e.message, "watsonx: Model crashed");
    }

    #[test]
    fn error_mapping() {
        let body = |code: &str, msg: &str, status: u16| {
            json!({"errors": [{"code": code, "message": msg, "more_info": "https://cloud.ibm.com/apidocs/watsonx-ai"}],
                   "trace": "abc", "status_code": status})
            .to_string()
        };
        let e = WatsonxAdapter.error(
            400,
            body(
                "json_validation_error",
                "Json document validation error: 'messages' is a required property",
                400,
            )
            .as_bytes(),
        );
        assert_eq!(e.status(), 400);
        assert_eq!(e.code.as_deref(), Some("json_validation_error"));
        assert!(
            e.message.starts_with("watsonx: Json document"),
            "{}",
            e.message
        );

        let e = WatsonxAdapter.error(
            401,
            body(
                "authentication_token_expired",
                "Failed to authenticate the request due to an expired token",
                401,
            )
            .as_bytes(),
        );
        assert_eq!(e.status(), 502);
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));

        let e = WatsonxAdapter.error(
            404,
            body("model_not_supported", "Model 'x' is not supported", 404).as_bytes(),
        );
        assert_eq!(e.status(), 404);
        let e = WatsonxAdapter.error(429, b"<html>Too Many Requests</html>");
        assert_eq!(e.status(), 429);
        let e = WatsonxAdapter.error(500, b"");
        assert_eq!(e.status(), 502);
    }
}
