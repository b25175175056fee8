//! Google Gemini's native API: `models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for streams (Gemini API reference, v1beta).
//!
//! The request side builds a `GenerateContentRequest` (camelCase proto JSON) from
//! an OpenAI chat completion request; the response side turns
//! `GenerateContentResponse` objects, whole or as SSE frames, back into
//! `chat.completion` / `chat.completion.chunk` objects.
//!
//! Gemini 3 models attach an opaque `thoughtSignature` to function-call parts and
//! reject the next turn (400) unless it is sent back on the same part. OpenAI
//! clients only echo the tool call `id`, so the signature travels inside it:
//! `call_<hex>` + [`SIGNATURE_MARK`] + signature.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};

use super::common::{chunk_json, now_secs, role_delta, usage_chunk_json, write_frame, DONE_FRAME};
use super::{ChatAdapter, ChatContext, StreamTranslator, UpstreamRequest};

/// Separates a generated tool call id from the Gemini thought signature it carries.
/// Base64 never produces `~`, so the first occurrence is always the separator.
pub const SIGNATURE_MARK: &str = "~ts~";

/// Thinking budgets (tokens) for OpenAI's `reasoning_effort`. Every value lies in
/// the range Google documents for all 2.5 models (Flash-Lite's floor is 512).
const BUDGET_MINIMAL: u64 = 512;
const BUDGET_LOW: u64 = 1024;
const BUDGET_MEDIUM: u64 = 8192;
const BUDGET_HIGH: u64 = 24576;

/// An SSE line longer than this is not a Gemini frame; refusing it keeps a
/// misbehaving upstream from growing the buffer without bound.
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

/// The Gemini adapter. Stateless: everything per request lives in the arguments.
#[derive(Debug, Clone, Copy, Default)]
pub struct GeminiAdapter;

impl ChatAdapter for GeminiAdapter {
    fn offers(&self, endpoint: liter_llm_protocol::Endpoint) -> bool {
        use liter_llm_protocol::Endpoint;
        matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Embeddings)
    }

    fn endpoint_request(
        &self,
        req: &super::EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        _target: &super::UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match req.endpoint {
            liter_llm_protocol::Endpoint::Embeddings => super::gemini_embed::request(req, ctx),
            other => Err(super::not_offered(other)),
        }
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
        self.endpoint_response_for(&req, upstream_body, ctx)
    }

    fn endpoint_response_for(
        &self,
        req: &super::EndpointRequest<'_>,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<super::Translated, ApiError> {
        match req.endpoint {
            liter_llm_protocol::Endpoint::Embeddings => {
                let expected = super::embeddings::expected(req.body);
                super::gemini_embed::response(upstream_body, &expected, ctx)
            }
            other => Err(super::not_offered(other)),
        }
    }

    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = build_request(openai_body)?;
        let path = model_path(ctx.upstream_model, ctx.stream)?;
        let bytes = serde_json::to_vec(&body).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("gemini: request encoding: {e}"),
            )
        })?;
        Ok(UpstreamRequest {
            content_type: None,
            method: Method::POST,
            path,
            headers: Vec::new(),
            body: Bytes::from(bytes),
        })
    }

    fn chat_response(
        &self,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Bytes, ApiError> {
        let v: Value = serde_json::from_slice(upstream_body).map_err(|_| {
            ApiError::new(
                ErrorKind::BadGateway,
                "gemini: the upstream answered 200 with a body that is not JSON",
            )
        })?;
        let out = translate_response(&v, ctx.requested_model)?;
        serde_json::to_vec(&out).map(Bytes::from).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("gemini: response encoding: {e}"),
            )
        })
    }

    fn chat_stream(&self, ctx: &ChatContext<'_>) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream::new(ctx.requested_model, ctx.include_usage))
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        map_error(status, upstream_body)
    }
}

// ------------------------------------------------------------------ request

fn bad(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param(param)
}

fn model_path(model: &str, stream: bool) -> Result<String, ApiError> {
    // Tuned models live under `tunedModels/`, base models under `models/`; an id
    // given as a full resource name is used as it is.
    let resource = if model.starts_with("models/") || model.starts_with("tunedModels/") {
        model.to_string()
    } else {
        format!("models/{model}")
    };
    let valid = !model.is_empty()
        && resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'@'));
    if !valid {
        return Err(bad(
            "model",
            format!("gemini: `{model}` is not a valid Gemini model id"),
        ));
    }
    Ok(if stream {
        format!("/{resource}:streamGenerateContent?alt=sse")
    } else {
        format!("/{resource}:generateContent")
    })
}

/// The whole OpenAI → Gemini request translation (Vertex AI sends the same body).
pub(super) fn build_request(openai_body: &[u8]) -> Result<Value, ApiError> {
    let req: Value = serde_json::from_slice(openai_body).map_err(|e| {
        ApiError::invalid_request(format!("the request body is not valid JSON: {e}"))
    })?;
    let req = req
        .as_object()
        .ok_or_else(|| ApiError::invalid_request("the request body must be a JSON object"))?;

    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages", "`messages` must be an array"))?;
    let (system, contents) = translate_messages(messages)?;
    if contents.is_empty() {
        return Err(bad(
            "messages",
            "gemini needs at least one user or assistant message besides system messages",
        ));
    }

    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }

    let declarations = match req.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(tools) => translate_tools(tools)?,
    };
    let choice = match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(choice) => Some(translate_tool_choice(choice)?),
    };
    if !declarations.is_empty() {
        let declarations = match choice.as_ref().and_then(|c| c.keep_only.as_ref()) {
            Some(keep) => declarations
                .into_iter()
                .filter(|d| d["name"].as_str().is_some_and(|n| keep.contains(n)))
                .collect(),
            None => declarations,
        };
        out.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
        if let Some(choice) = choice {
            out.insert(
                "toolConfig".into(),
                json!({ "functionCallingConfig": choice.config }),
            );
        }
    }

    let config = generation_config(req)?;
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

/// Splits the conversation into the system instruction's parts and the
/// `contents` turns (roles `user` and `model`).
fn translate_messages(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Gemini's functionResponse is matched by name, OpenAI's tool message by id.
    let mut call_names: HashMap<String, String> = HashMap::new();

    for (i, msg) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let msg = msg
            .as_object()
            .ok_or_else(|| bad(&at, format!("`{at}` must be an object")))?;
        let role = msg.get("role").and_then(Value::as_str).ok_or_else(|| {
            bad(
                format!("{at}.role"),
                format!("`{at}.role` must be a string"),
            )
        })?;
        let content = msg.get("content").unwrap_or(&Value::Null);
        let content_at = format!("{at}.content");
        match role {
            "system" | "developer" => {
                for text in text_pieces(content, &content_at)? {
                    if !text.is_empty() {
                        system.push(json!({ "text": text }));
                    }
                }
            }
            "user" => {
                let parts = user_parts(content, &content_at)?;
                push_turn(&mut contents, "user", parts);
            }
            "assistant" => {
                let mut parts: Vec<Value> = text_pieces(content, &content_at)?
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .map(|t| json!({ "text": t }))
                    .collect();
                if let Some(calls) = msg.get("tool_calls").filter(|v| !v.is_null()) {
                    let calls = calls.as_array().ok_or_else(|| {
                        bad(
                            format!("{at}.tool_calls"),
                            format!("`{at}.tool_calls` must be an array"),
                        )
                    })?;
                    for (j, call) in calls.iter().enumerate() {
                        let call_at = format!("{at}.tool_calls[{j}]");
                        let (id, part) = function_call_part(call, &call_at)?;
                        if let (Some(id), Some(name)) = (id, part["functionCall"]["name"].as_str())
                        {
                            call_names.insert(id, name.to_string());
                        }
                        parts.push(part);
                    }
                }
                push_turn(&mut contents, "model", parts);
            }
            "tool" => {
                let id = msg
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            format!("{at}.tool_call_id"),
                            format!("`{at}.tool_call_id` must be a string"),
                        )
                    })?;
                let name = call_names.get(id).cloned().ok_or_else(|| {
                    bad(
                        format!("{at}.tool_call_id"),
                        format!(
                            "`{at}.tool_call_id` `{id}` matches no tool call of an earlier assistant message; \
                             gemini needs the function name"
                        ),
                    )
                })?;
                let text = text_pieces(content, &content_at)?.concat();
                push_turn(
                    &mut contents,
                    "user",
                    vec![function_response_part(&name, text)],
                );
            }
            "function" => {
                // OpenAI's deprecated `functions` API names the function on the message.
                let name = msg.get("name").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        format!("{at}.name"),
                        format!("`{at}.name` must be a string"),
                    )
                })?;
                let text = text_pieces(content, &content_at)?.concat();
                push_turn(
                    &mut contents,
                    "user",
                    vec![function_response_part(name, text)],
                );
            }
            other => {
                return Err(bad(
                    format!("{at}.role"),
                    format!("gemini cannot express a message with role `{other}`"),
                ));
            }
        }
    }
    Ok((system, contents))
}

/// Appends parts as a turn, merging into the previous turn when it has the same
/// role: consecutive tool results become one functionResponse turn, as Gemini
/// expects all responses to one model turn together.
fn push_turn(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    if let Some(last) = contents.last_mut() {
        if last["role"].as_str() == Some(role) {
            if let Some(existing) = last.get_mut("parts").and_then(Value::as_array_mut) {
                existing.extend(parts);
                return;
            }
        }
    }
    contents.push(json!({ "role": role, "parts": parts }));
}

/// The text of a content that may only hold text: a string, or an array of
/// `text` (and, for assistant messages, `refusal`) parts.
fn text_pieces(content: &Value, at: &str) -> Result<Vec<String>, ApiError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(k, part)| {
                let part_at = format!("{at}[{k}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => part
                        .get("text")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            bad(
                                format!("{part_at}.text"),
                                format!("`{part_at}.text` must be a string"),
                            )
                        }),
                    Some("refusal") => part
                        .get("refusal")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            bad(
                                format!("{part_at}.refusal"),
                                format!("`{part_at}.refusal` must be a string"),
                            )
                        }),
                    other => Err(bad(
                        format!("{part_at}.type"),
                        format!(
                            "gemini accepts only text here; `{part_at}.type` is {}",
                            other.map_or("missing".to_string(), |t| format!("`{t}`"))
                        ),
                    )),
                }
            })
            .collect(),
        _ => Err(bad(
            at,
            format!("`{at}` must be a string, an array of parts or null"),
        )),
    }
}

fn user_parts(content: &Value, at: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::Null => Ok(Vec::new()),
        // Gemini rejects empty text parts, so empty strings are left out.
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({ "text": s })]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (k, part) in parts.iter().enumerate() {
                let part_at = format!("{at}[{k}]");
                if let Some(p) = user_part(part, &part_at)? {
                    out.push(p);
                }
            }
            Ok(out)
        }
        _ => Err(bad(
            at,
            format!("`{at}` must be a string, an array of parts or null"),
        )),
    }
}

fn user_part(part: &Value, at: &str) -> Result<Option<Value>, ApiError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    format!("{at}.text"),
                    format!("`{at}.text` must be a string"),
                )
            })?;
            Ok((!text.is_empty()).then(|| json!({ "text": text })))
        }
        Some("image_url") => {
            // `image_url` is `{url, detail}`; a bare string is accepted too.
            let url = match part.get("image_url") {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(obj) => obj.get("url").and_then(Value::as_str),
                None => None,
            }
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                bad(
                    format!("{at}.image_url.url"),
                    format!("`{at}.image_url.url` must be a non-empty string"),
                )
            })?;
            media_part(url, "image/jpeg", &format!("{at}.image_url.url")).map(Some)
        }
        Some("input_audio") => {
            let audio = part.get("input_audio").unwrap_or(&Value::Null);
            let data = audio.get("data").and_then(Value::as_str).ok_or_else(|| {
                bad(
                    format!("{at}.input_audio.data"),
                    format!("`{at}.input_audio.data` must be a string"),
                )
            })?;
            let format = audio.get("format").and_then(Value::as_str).unwrap_or("wav");
            let mime = match format {
                "mp3" => "audio/mp3",
                "wav" => "audio/wav",
                other => {
                    return Err(bad(
                        format!("{at}.input_audio.format"),
                        format!("unsupported audio format `{other}`"),
                    ))
                }
            };
            Ok(Some(
                json!({ "inlineData": { "mimeType": mime, "data": data } }),
            ))
        }
        Some("file") => {
            let file = part.get("file").unwrap_or(&Value::Null);
            match file.get("file_data").and_then(Value::as_str) {
                Some(data_url) => {
                    media_part(data_url, "application/pdf", &format!("{at}.file.file_data"))
                        .map(Some)
                }
                // An OpenAI file id means nothing to Google's Files API.
                None => Err(bad(
                    format!("{at}.file"),
                    "gemini accepts files only inline as `file.file_data` (a base64 data URL)",
                )),
            }
        }
        other => Err(bad(
            format!("{at}.type"),
            format!(
                "gemini cannot express a content part of type {}",
                other.map_or("(missing)".to_string(), |t| format!("`{t}`"))
            ),
        )),
    }
}

/// A data URL becomes `inlineData`; anything else is a URI Gemini fetches itself
/// (`fileData`), whose MIME type is guessed from the path because the API
/// requires one.
fn media_part(url: &str, default_mime: &str, at: &str) -> Result<Value, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| bad(at, format!("`{at}` is a data URL without a `,`")))?;
        let mut fields = meta.split(';');
        let mime = fields
            .next()
            .filter(|m| !m.is_empty())
            .unwrap_or(default_mime);
        if !fields.any(|f| f.eq_ignore_ascii_case("base64")) {
            return Err(bad(
                at,
                format!("`{at}` must be a base64 data URL (`data:<mime>;base64,...`)"),
            ));
        }
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }));
    }
    Ok(json!({ "fileData": { "mimeType": guess_mime(url, default_mime), "fileUri": url } }))
}

fn guess_mime(url: &str, default_mime: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let ext = match file.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => return default_mime.to_string(),
    };
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "webm" => "video/webm",
        "txt" => "text/plain",
        _ => default_mime,
    }
    .to_string()
}

/// One assistant tool call as a `functionCall` part; returns the call id too.
fn function_call_part(call: &Value, at: &str) -> Result<(Option<String>, Value), ApiError> {
    let function = call.get("function").ok_or_else(|| {
        bad(
            format!("{at}.function"),
            format!("`{at}.function` is missing"),
        )
    })?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            bad(
                format!("{at}.function.name"),
                format!("`{at}.function.name` must be a non-empty string"),
            )
        })?;
    let args_at = format!("{at}.function.arguments");
    let args = match function.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| bad(&args_at, format!("`{args_at}` is not valid JSON: {e}")))?,
        Some(other) => other.clone(),
    };
    if !args.is_object() {
        return Err(bad(
            &args_at,
            format!("`{args_at}` must encode a JSON object; gemini takes arguments as an object"),
        ));
    }
    let id = call.get("id").and_then(Value::as_str).map(str::to_string);
    let mut part = json!({ "functionCall": { "name": name, "args": args } });
    if let Some(sig) = id
        .as_deref()
        .and_then(|id| id.split_once(SIGNATURE_MARK))
        .map(|(_, s)| s)
    {
        if !sig.is_empty() {
            part["thoughtSignature"] = Value::String(sig.to_string());
        }
    }
    Ok((id, part))
}

fn function_response_part(name: &str, text: String) -> Value {
    // Gemini wants an object; a tool that already answered with one keeps its shape.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(obj)) => Value::Object(obj),
        _ => json!({ "content": text }),
    };
    json!({ "functionResponse": { "name": name, "response": response } })
}

fn translate_tools(tools: &Value) -> Result<Vec<Value>, ApiError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| bad("tools", "`tools` must be an array"))?;
    let mut declarations = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            other => {
                return Err(bad(
                    format!("{at}.type"),
                    format!(
                        "gemini supports only function tools; `{at}.type` is {}",
                        other.map_or("missing".to_string(), |t| format!("`{t}`"))
                    ),
                ))
            }
        }
        let function = tool.get("function").ok_or_else(|| {
            bad(
                format!("{at}.function"),
                format!("`{at}.function` is missing"),
            )
        })?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad(
                    format!("{at}.function.name"),
                    format!("`{at}.function.name` must be a non-empty string"),
                )
            })?;
        let mut decl = Map::new();
        decl.insert("name".into(), Value::String(name.to_string()));
        if let Some(d) = function.get("description").and_then(Value::as_str) {
            decl.insert("description".into(), Value::String(d.to_string()));
        }
        // `parametersJsonSchema` takes JSON Schema as OpenAI clients write it
        // (additionalProperties, $ref, ...), where `parameters` only takes
        // Google's OpenAPI subset and would need lossy rewriting.
        if let Some(schema) = function.get("parameters").filter(|p| !p.is_null()) {
            if !schema.is_object() {
                return Err(bad(
                    format!("{at}.function.parameters"),
                    format!("`{at}.function.parameters` must be a JSON Schema object"),
                ));
            }
            if !is_empty_object_schema(schema) {
                decl.insert("parametersJsonSchema".into(), clean_schema(schema));
            }
        }
        declarations.push(Value::Object(decl));
    }
    Ok(declarations)
}

/// `{"type":"object","properties":{}}` says "no parameters", which Gemini
/// expresses by leaving the schema out.
fn is_empty_object_schema(schema: &Value) -> bool {
    let Some(obj) = schema.as_object() else {
        return false;
    };
    obj.iter().all(|(k, v)| match k.as_str() {
        "type" => v == "object",
        "properties" => v.as_object().is_some_and(Map::is_empty),
        "required" => v.as_array().is_some_and(Vec::is_empty),
        "additionalProperties" | "$schema" => true,
        _ => false,
    })
}

/// `$schema` is a meta-annotation Google's schema parser does not list; leaving
/// it out changes nothing about the schema's meaning.
fn clean_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
    }
    schema
}

struct ToolChoice {
    config: Value,
    /// For OpenAI's `allowed_tools` in auto mode: Gemini restricts names only in
    /// ANY mode, so the restriction is applied by declaring only those tools.
    keep_only: Option<HashSet<String>>,
}

fn translate_tool_choice(choice: &Value) -> Result<ToolChoice, ApiError> {
    let simple = |mode: &str| ToolChoice {
        config: json!({ "mode": mode }),
        keep_only: None,
    };
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(simple("AUTO")),
            "none" => Ok(simple("NONE")),
            "required" => Ok(simple("ANY")),
            other => Err(bad("tool_choice", format!("unknown tool_choice `{other}`"))),
        },
        Value::Object(obj) => match obj.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = obj
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            "tool_choice.function.name",
                            "`tool_choice.function.name` must be a string",
                        )
                    })?;
                Ok(ToolChoice {
                    config: json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
                    keep_only: None,
                })
            }
            Some("allowed_tools") => {
                let allowed = obj.get("allowed_tools").unwrap_or(&Value::Null);
                let names: Vec<String> = allowed
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(|tools| {
                        tools
                            .iter()
                            .filter_map(|t| t.get("function")?.get("name")?.as_str())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                match allowed.get("mode").and_then(Value::as_str) {
                    Some("required") => Ok(ToolChoice {
                        config: json!({ "mode": "ANY", "allowedFunctionNames": names }),
                        keep_only: None,
                    }),
                    Some("auto") | None => Ok(ToolChoice {
                        config: json!({ "mode": "AUTO" }),
                        keep_only: Some(names.into_iter().collect()),
                    }),
                    Some(other) => Err(bad(
                        "tool_choice.allowed_tools.mode",
                        format!("unknown allowed_tools mode `{other}`"),
                    )),
                }
            }
            _ => Err(bad("tool_choice.type", "unsupported `tool_choice.type`")),
        },
        _ => Err(bad(
            "tool_choice",
            "`tool_choice` must be a string or an object",
        )),
    }
}

fn number_field(req: &Map<String, Value>, key: &str) -> Result<Option<Value>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
        Some(_) => Err(bad(key, format!("`{key}` must be a number"))),
    }
}

fn generation_config(req: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut cfg = Map::new();
    for (openai, gemini) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        // Not OpenAI, but a common extension that Gemini supports natively.
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = number_field(req, openai)? {
            cfg.insert(gemini.into(), v);
        }
    }
    let max = match number_field(req, "max_completion_tokens")? {
        Some(v) => Some(v),
        None => number_field(req, "max_tokens")?,
    };
    if let Some(v) = max {
        cfg.insert("maxOutputTokens".into(), v);
    }
    match req.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            cfg.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            if !items.is_empty() {
                cfg.insert("stopSequences".into(), Value::Array(items.clone()));
            }
        }
        Some(_) => {
            return Err(bad(
                "stop",
                "`stop` must be a string or an array of strings",
            ))
        }
    }
    if let Some(format) = req.get("response_format").filter(|v| !v.is_null()) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                cfg.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                cfg.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format
                    .get("json_schema")
                    .and_then(|s| s.get("schema"))
                    .filter(|s| s.is_object())
                {
                    cfg.insert("responseJsonSchema".into(), clean_schema(schema));
                }
            }
            other => {
                return Err(bad(
                    "response_format.type",
                    format!(
                        "unsupported response_format type {}",
                        other.map_or("(missing)".to_string(), |t| format!("`{t}`"))
                    ),
                ))
            }
        }
    }
    match req.get("reasoning_effort") {
        None | Some(Value::Null) => {}
        Some(Value::String(effort)) => {
            let thinking = match effort.as_str() {
                "none" => json!({ "thinkingBudget": 0 }),
                "minimal" => json!({ "thinkingBudget": BUDGET_MINIMAL, "includeThoughts": true }),
                "low" => json!({ "thinkingBudget": BUDGET_LOW, "includeThoughts": true }),
                "medium" => json!({ "thinkingBudget": BUDGET_MEDIUM, "includeThoughts": true }),
                "high" | "xhigh" => {
                    json!({ "thinkingBudget": BUDGET_HIGH, "includeThoughts": true })
                }
                other => {
                    return Err(bad(
                        "reasoning_effort",
                        format!("unknown reasoning_effort `{other}`"),
                    ))
                }
            };
            cfg.insert("thinkingConfig".into(), thinking);
        }
        Some(_) => {
            return Err(bad(
                "reasoning_effort",
                "`reasoning_effort` must be a string",
            ))
        }
    }
    Ok(cfg)
}

// ----------------------------------------------------------------- response

/// A short random hex string for ids; uniqueness, not secrecy, is the point.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

fn completion_id(v: &Value) -> String {
    match v.get("responseId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!("chatcmpl-{}", random_hex()),
    }
}

/// The OpenAI tool call for a `functionCall` part (the part itself, so its
/// thought signature can ride along in the id).
fn tool_call_from_part(part: &Value) -> Option<(String, String, String)> {
    let call = part.get("functionCall")?;
    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
    let mut id = match call.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("call_{}", random_hex()),
    };
    if let Some(sig) = part.get("thoughtSignature").and_then(Value::as_str) {
        id.push_str(SIGNATURE_MARK);
        id.push_str(sig);
    }
    let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
    let arguments = serde_json::to_string(&args).unwrap_or_else(|_| "{}".to_string());
    Some((id, name.to_string(), arguments))
}

fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

fn count(meta: &Value, key: &str) -> u64 {
    meta.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn usage(meta: &Value) -> Value {
    let prompt = count(meta, "promptTokenCount");
    let thoughts = count(meta, "thoughtsTokenCount");
    // OpenAI counts reasoning tokens as completion tokens; Gemini reports them apart.
    let completion = count(meta, "candidatesTokenCount") + thoughts;
    let total = meta
        .get("totalTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or(prompt + completion);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "prompt_tokens_details": { "cached_tokens": count(meta, "cachedContentTokenCount") },
        "completion_tokens_details": { "reasoning_tokens": thoughts },
    })
}

fn prompt_blocked(v: &Value) -> Option<ApiError> {
    let has_candidates = v
        .get("candidates")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    let feedback = v.get("promptFeedback")?;
    let reason = feedback.get("blockReason").and_then(Value::as_str)?;
    if has_candidates {
        return None;
    }
    let detail = feedback
        .get("blockReasonMessage")
        .and_then(Value::as_str)
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Some(
        ApiError::invalid_request(format!("gemini: the prompt was blocked ({reason}){detail}"))
            .with_code("content_filter"),
    )
}

fn candidates(v: &Value) -> &[Value] {
    v.get("candidates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn parts(candidate: &Value) -> &[Value] {
    candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_thought(part: &Value) -> bool {
    part.get("thought")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn translate_response(v: &Value, model: &str) -> Result<Value, ApiError> {
    if v.get("error").is_some() {
        let code = v["error"]["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok());
        return Err(error_from_json(code.unwrap_or(502), v));
    }
    if let Some(err) = prompt_blocked(v) {
        return Err(err);
    }
    let cands = candidates(v);
    if cands.is_empty() {
        return Err(ApiError::new(
            ErrorKind::BadGateway,
            "gemini: the response has no candidates",
        ));
    }
    let mut choices = Vec::with_capacity(cands.len());
    for (pos, cand) in cands.iter().enumerate() {
        let index = cand
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(pos as u64);
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut tool_calls = Vec::new();
        for part in parts(cand) {
            if let Some((id, name, arguments)) = tool_call_from_part(part) {
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }));
            } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                if is_thought(part) {
                    reasoning.push_str(t);
                } else {
                    text.push_str(t);
                }
            }
        }
        let reason = cand
            .get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP");
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            if text.is_empty() && !tool_calls.is_empty() {
                Value::Null
            } else {
                Value::String(text)
            },
        );
        message.insert("refusal".into(), Value::Null);
        if !reasoning.is_empty() {
            message.insert("reasoning_content".into(), Value::String(reasoning));
        }
        let has_calls = !tool_calls.is_empty();
        if has_calls {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        choices.push(json!({
            "index": index,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(reason, has_calls),
        }));
    }
    let mut out = json!({
        "id": completion_id(v),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": choices,
    });
    if let Some(meta) = v.get("usageMetadata") {
        out["usage"] = usage(meta);
    }
    Ok(out)
}

// ------------------------------------------------------------------- stream

/// Translates `streamGenerateContent?alt=sse` (one `GenerateContentResponse` per
/// `data:` event, no terminator) into OpenAI chunks.
pub struct GeminiStream {
    /// Bytes after the last complete line.
    pending: Vec<u8>,
    /// `data:` lines of the event being read.
    data: Vec<u8>,
    id: Option<String>,
    created: u64,
    model: String,
    include_usage: bool,
    /// Candidate indices whose role chunk went out.
    started: HashSet<u64>,
    /// Next `tool_calls[].index` per candidate.
    tool_calls: HashMap<u64, u64>,
    finished: bool,
    usage: Option<Value>,
    done: bool,
}

impl GeminiStream {
    pub fn new(requested_model: &str, include_usage: bool) -> Self {
        GeminiStream {
            pending: Vec::new(),
            data: Vec::new(),
            id: None,
            created: now_secs(),
            model: requested_model.to_string(),
            include_usage,
            started: HashSet::new(),
            tool_calls: HashMap::new(),
            finished: false,
            usage: None,
            done: false,
        }
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.dispatch(out);
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if !self.data.is_empty() {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(rest);
        }
        // Comments (`:`) and other SSE fields carry nothing Gemini uses.
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.data.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.data);
        let v: Value = serde_json::from_slice(&data).map_err(|_| {
            ApiError::new(
                ErrorKind::BadGateway,
                "gemini: the stream carried an event that is not JSON",
            )
        })?;
        self.event(&v, out)
    }

    fn event(&mut self, v: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if v.get("error").is_some() {
            let code = v["error"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok());
            return Err(error_from_json(code.unwrap_or(502), v));
        }
        if self.id.is_none() {
            self.id = Some(completion_id(v));
        }
        if let Some(meta) = v.get("usageMetadata") {
            self.usage = Some(meta.clone());
        }
        if let Some(err) = prompt_blocked(v) {
            return Err(err);
        }
        for (pos, cand) in candidates(v).iter().enumerate() {
            let index = cand
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(pos as u64);
            if self.started.insert(index) {
                self.chunk(index, role_delta(), None, out);
            }
            for part in parts(cand) {
                if let Some((id, name, arguments)) = tool_call_from_part(part) {
                    let next = self.tool_calls.entry(index).or_insert(0);
                    let call_index = *next;
                    *next += 1;
                    let delta = json!({ "tool_calls": [{
                        "index": call_index,
                        "id": id,
                        "type": "function",
                        "function": { "name": name, "arguments": arguments },
                    }] });
                    self.chunk(index, delta, None, out);
                } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                    if t.is_empty() {
                        continue;
                    }
                    let key = if is_thought(part) {
                        "reasoning_content"
                    } else {
                        "content"
                    };
                    self.chunk(index, json!({ key: t }), None, out);
                }
            }
            if let Some(reason) = cand.get("finishReason").and_then(Value::as_str) {
                let has_calls = self.tool_calls.contains_key(&index);
                self.finished = true;
                self.chunk(
                    index,
                    json!({}),
                    Some(finish_reason(reason, has_calls)),
                    out,
                );
            }
        }
        Ok(())
    }

    fn chunk(&self, index: u64, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let chunk = chunk_json(
            self.id.as_deref().unwrap_or("chatcmpl-gemini"),
            self.created,
            &self.model,
            self.include_usage,
            index,
            delta,
            finish,
        );
        // Serialising a `Value` cannot fail.
        let _ = write_frame(out, &chunk);
    }
}

impl StreamTranslator for GeminiStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        self.pending.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.pending);
        let mut start = 0;
        let mut result = Ok(());
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            result = self.line(&buf[start..end], out);
            start = end + 1;
            if result.is_err() {
                break;
            }
        }
        self.pending = buf;
        self.pending.drain(..start);
        result?;
        if self.pending.len() + self.data.len() > MAX_PENDING_BYTES {
            return Err(ApiError::new(
                ErrorKind::BadGateway,
                "gemini: a stream event exceeded 16 MiB",
            ));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        // A last event without its blank line still counts if it is whole JSON.
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&rest, out)?;
        }
        self.dispatch(out)?;
        if !self.finished {
            return Err(ApiError::new(
                ErrorKind::BadGateway,
                "gemini: the stream ended before the model finished (no finishReason); the answer is truncated",
            ));
        }
        if self.include_usage {
            let chunk = usage_chunk_json(
                self.id.as_deref().unwrap_or("chatcmpl-gemini"),
                self.created,
                &self.model,
                usage(self.usage.as_ref().unwrap_or(&Value::Null)),
            );
            // Serialising a `Value` cannot fail.
            let _ = write_frame(out, &chunk);
        }
        out.extend_from_slice(DONE_FRAME);
        self.done = true;
        Ok(())
    }
}

// ------------------------------------------------------------------- errors

fn map_error(status: u16, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<Value>(body) {
        // Without `alt=sse` Google wraps even errors in a JSON array.
        Ok(Value::Array(items)) if items.first().is_some_and(|e| e.get("error").is_some()) => {
            error_from_json(status, &items[0])
        }
        Ok(v) if v.get("error").is_some_and(Value::is_object) => error_from_json(status, &v),
        _ => ApiError::new(
            ErrorKind::BadGateway,
            format!("gemini: the upstream answered HTTP {status} with a body that is not a Gemini error"),
        ),
    }
}

/// Maps Google's `{"error":{"code","message","status","details"}}`. Only
/// `message` reaches the client: `details` may carry a DebugInfo that quotes the
/// rejected API key.
fn error_from_json(status: u16, v: &Value) -> ApiError {
    let err = &v["error"];
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)");
    let gstatus = err.get("status").and_then(Value::as_str).unwrap_or("");
    let details = err.get("details").and_then(Value::as_array);
    let reasons: Vec<&str> = details
        .map(|d| d.iter().filter_map(|x| x.get("reason")?.as_str()).collect())
        .unwrap_or_default();
    // Google answers a wrong key with 400 INVALID_ARGUMENT; the client's request
    // is fine, so that is the proxy's upstream credential failing.
    let key_rejected = reasons.iter().any(|r| r.starts_with("API_KEY_"));
    let auth_failed = key_rejected
        || matches!(status, 401 | 403)
        || matches!(gstatus, "UNAUTHENTICATED" | "PERMISSION_DENIED");
    let text = format!("gemini: {message}");
    if auth_failed {
        return ApiError::new(ErrorKind::BadGateway, text).with_code("upstream_auth_failed");
    }
    let kind = match status {
        // Billing or region problems of the proxy's key, not of the request.
        400 if gstatus == "FAILED_PRECONDITION" => ErrorKind::BadGateway,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::GatewayTimeout,
        413 => ErrorKind::PayloadTooLarge,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::ServiceUnavailable,
        504 => ErrorKind::GatewayTimeout,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::BadGateway,
    };
    let mut e = ApiError::new(kind, text);
    if !gstatus.is_empty() {
        e = e.with_code(gstatus.to_ascii_lowercase());
    }
    if kind == ErrorKind::RateLimited {
        if let Some(secs) = details.and_then(|d| d.iter().find_map(retry_delay_secs)) {
            e = e.with_retry_after(secs);
        }
    }
    e
}

/// `google.rpc.RetryInfo.retryDelay` is a proto Duration in JSON: `"34s"`, `"0.5s"`.
fn retry_delay_secs(detail: &Value) -> Option<u64> {
    let delay = detail.get("retryDelay")?.as_str()?.strip_suffix('s')?;
    let secs: f64 = delay.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| secs.ceil() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ctx(stream: bool, include_usage: bool) -> ChatContext<'static> {
        ChatContext {
            upstream_model: "gemini-2.5-flash",
            requested_model: "gem",
            stream,
            include_usage,
        }
    }

    fn req(body: Value) -> (UpstreamRequest, Value) {
        let r = GeminiAdapter
            .chat_request(&serde_json::to_vec(&body).unwrap(), &ctx(false, false))
            .unwrap();
        let v = serde_json::from_slice(&r.body).unwrap();
        (r, v)
    }

    fn req_err(body: Value) -> ApiError {
        GeminiAdapter
            .chat_request(&serde_json::to_vec(&body).unwrap(), &ctx(false, false))
            .unwrap_err()
    }

    fn resp(body: Value) -> Value {
        let out = GeminiAdapter
            .chat_response(&serde_json::to_vec(&body).unwrap(), &ctx(false, false))
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    // ------------------------------------------------------------ request

    #[test]
    fn paths_for_plain_and_streamed_requests() {
        let body = br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#;
        let r = GeminiAdapter
            .chat_request(body, &ctx(false, false))
            .unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/models/gemini-2.5-flash:generateContent");
        assert!(r.headers.is_empty());
        let r = GeminiAdapter.chat_request(body, &ctx(true, true)).unwrap();
        assert_eq!(
            r.path,
            "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        let tuned = ChatContext {
            upstream_model: "tunedModels/my-model-1",
            ..ctx(false, false)
        };
        let r = GeminiAdapter.chat_request(body, &tuned).unwrap();
        assert_eq!(r.path, "/tunedModels/my-model-1:generateContent");
        let evil = ChatContext {
            upstream_model: "x?key=1",
            ..ctx(false, false)
        };
        let e = GeminiAdapter.chat_request(body, &evil).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
    }

    #[test]
    fn system_and_developer_become_system_instruction_and_roles_map() {
        let (_, v) = req(json!({
            "model": "gem",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [{"type": "text", "text": "How far?"}]},
                {"role": "user", "content": "And back?"},
            ],
        }));
        assert_eq!(
            v["systemInstruction"],
            json!({"parts": [{"text": "Be terse."}, {"text": "Use metric."}]})
        );
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello"}]},
                {"role": "user", "parts": [{"text": "How far?"}, {"text": "And back?"}]},
            ])
        );
        assert!(v.get("generationConfig").is_none());
        assert!(v.get("tools").is_none());
    }

    #[test]
    fn images_become_inline_data_or_file_data() {
        let (_, v) = req(json!({
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.webp?x=1", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            ]}],
        }));
        assert_eq!(
            v["contents"][0]["parts"],
            json!([
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/a/cat.webp?x=1"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
            ])
        );
        let e = req_err(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
        ]}]}));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
        let e = req_err(json!({"messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": "x"}
        ]}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
    }

    #[test]
    fn tool_calls_and_results_with_name_lookup_and_merging() {
        let (_, v) = req(json!({
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b~ts~c2lnbmF0dXJl", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":21}"},
                {"role": "tool", "tool_call_id": "call_b~ts~c2lnbmF0dXJl", "content": "noon"},
                {"role": "user", "content": "Thanks"},
            ],
        }));
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "c2lnbmF0dXJl"},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
                    {"text": "Thanks"},
                ]},
            ])
        );
    }

    #[test]
    fn bad_tool_arguments_and_unknown_tool_ids_are_400s_naming_the_field() {
        let e = req_err(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
            ]},
        ]}));
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
        let e = req_err(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}
            ]},
        ]}));
        assert!(e.message.contains("object"), "{}", e.message);
        let e = req_err(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "nope", "content": "r"},
        ]}));
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
        let e = req_err(json!({"messages": [{"role": "system", "content": "only system"}]}));
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = req_err(json!({"messages": [{"role": "critic", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn tools_and_tool_choice() {
        let tools = json!([
            {"type": "function", "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "strict": true,
                "parameters": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": false,
                },
            }},
            {"type": "function", "function": {
                "name": "now", "parameters": {"type": "object", "properties": {}}
            }},
        ]);
        let base = |choice: Value| {
            req(json!({
                "messages": [{"role": "user", "content": "x"}],
                "tools": tools,
                "tool_choice": choice,
                "parallel_tool_calls": false,
            }))
            .1
        };
        let v = base(json!("auto"));
        assert_eq!(
            v["tools"],
            json!([{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather for a city", "parametersJsonSchema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": false,
                }},
                {"name": "now"},
            ]}])
        );
        assert_eq!(
            v["toolConfig"],
            json!({"functionCallingConfig": {"mode": "AUTO"}})
        );
        assert_eq!(
            base(json!("none"))["toolConfig"]["functionCallingConfig"]["mode"],
            "NONE"
        );
        assert_eq!(
            base(json!("required"))["toolConfig"]["functionCallingConfig"]["mode"],
            "ANY"
        );
        assert_eq!(
            base(json!({"type": "function", "function": {"name": "now"}}))["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}})
        );
        let v = base(json!({"type": "allowed_tools", "allowed_tools": {
            "mode": "auto", "tools": [{"type": "function", "function": {"name": "now"}}]
        }}));
        assert_eq!(
            v["tools"][0]["functionDeclarations"],
            json!([{"name": "now"}])
        );
        let v = req(json!({"messages": [{"role": "user", "content": "x"}], "tools": tools})).1;
        assert!(v.get("toolConfig").is_none());
        let e = req_err(
            json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "sometimes"}),
        );
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        let e = req_err(
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}),
        );
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
    }

    #[test]
    fn generation_config_mapping_and_unknown_fields_dropped() {
        let (_, v) = req(json!({
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 0.2,
            "top_p": 0.9,
            "max_tokens": 50,
            "max_completion_tokens": 100,
            "stop": "END",
            "n": 2,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "user": "u-1",
            "metadata": {"a": "b"},
            "store": true,
            "logit_bias": {"1": 2},
            "stream_options": {"include_usage": true},
            "service_tier": "auto",
            "some_future_field": [1, 2, 3],
        }));
        assert_eq!(
            v["generationConfig"],
            json!({
                "temperature": 0.2,
                "topP": 0.9,
                "maxOutputTokens": 100,
                "stopSequences": ["END"],
                "candidateCount": 2,
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": -0.5,
            })
        );
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["contents", "generationConfig"]);
        let (_, v) = req(
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 9, "stop": ["a", "b"]}),
        );
        assert_eq!(
            v["generationConfig"],
            json!({"maxOutputTokens": 9, "stopSequences": ["a", "b"]})
        );
        let e =
            req_err(json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}));
        assert_eq!(e.param.as_deref(), Some("temperature"));
    }

    #[test]
    fn response_format_json_object_and_schema() {
        let (_, v) = req(json!({
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        }));
        assert_eq!(
            v["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false});
        let (_, v) = req(json!({
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true, "schema": schema}},
        }));
        assert_eq!(
            v["generationConfig"],
            json!({"responseMimeType": "application/json", "responseJsonSchema": schema})
        );
        let (_, v) = req(json!({
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "text"},
        }));
        assert!(v.get("generationConfig").is_none());
    }

    #[test]
    fn reasoning_effort_becomes_thinking_config() {
        for (effort, budget) in [
            ("low", 1024),
            ("medium", 8192),
            ("high", 24576),
            ("minimal", 512),
        ] {
            let (_, v) = req(
                json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort}),
            );
            assert_eq!(
                v["generationConfig"]["thinkingConfig"],
                json!({"thinkingBudget": budget, "includeThoughts": true}),
                "{effort}"
            );
        }
        let (_, v) = req(
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"}),
        );
        assert_eq!(
            v["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 0})
        );
        let e = req_err(
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}),
        );
        assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    }

    // ----------------------------------------------------------- response

    #[test]
    fn text_response_with_usage_cached_and_thoughts() {
        let v = resp(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "Let me think.", "thought": true},
                    {"text": "Hello"},
                    {"text": ", world"},
                ]},
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 5,
                "thoughtsTokenCount": 7,
                "cachedContentTokenCount": 4,
                "totalTokenCount": 22,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "abc123",
        }));
        assert_eq!(v["id"], "chatcmpl-abc123");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gem");
        assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
        let choice = &v["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], "Hello, world");
        assert_eq!(choice["message"]["reasoning_content"], "Let me think.");
        assert!(choice["message"].get("tool_calls").is_none());
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(
            v["usage"],
            json!({
                "prompt_tokens": 10,
                "completion_tokens": 12,
                "total_tokens": 22,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 7},
            })
        );
    }

    #[test]
    fn function_call_response_becomes_tool_calls() {
        let v = resp(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "U0lH"},
                    {"functionCall": {"name": "now"}},
                ]},
                "finishReason": "STOP",
            }],
        }));
        let msg = &v["choices"][0]["message"];
        assert!(msg["content"].is_null());
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let calls = msg["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
        let id0 = calls[0]["id"].as_str().unwrap();
        assert!(
            id0.starts_with("call_") && id0.ends_with("~ts~U0lH"),
            "{id0}"
        );
        assert_eq!(calls[1]["function"]["arguments"], "{}");
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert!(v.get("usage").is_none());

        // The id round-trips the signature into the next request.
        let (_, next) = req(json!({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": id0, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": id0, "content": "sunny"},
        ]}));
        assert_eq!(next["contents"][1]["parts"][0]["thoughtSignature"], "U0lH");
    }

    #[test]
    fn finish_reasons_map() {
        for (gemini, openai) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("OTHER", "stop"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("FINISH_REASON_UNSPECIFIED", "stop"),
        ] {
            let v = resp(
                json!({"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": gemini}]}),
            );
            assert_eq!(v["choices"][0]["finish_reason"], openai, "{gemini}");
        }
        // A candidate stopped by safety may carry no content at all.
        let v = resp(json!({"candidates": [{"finishReason": "SAFETY", "index": 0}]}));
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn multiple_candidates_keep_their_index() {
        let v = resp(json!({"candidates": [
            {"content": {"parts": [{"text": "a"}], "role": "model"}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "b"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1},
        ]}));
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(v["choices"][1]["message"]["content"], "b");
        assert_eq!(v["choices"][1]["finish_reason"], "length");
    }

    #[test]
    fn blocked_prompt_is_a_content_filter_400() {
        let body = json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        });
        let e = GeminiAdapter
            .chat_response(&serde_json::to_vec(&body).unwrap(), &ctx(false, false))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.code.as_deref(), Some("content_filter"));
        assert!(e.message.contains("SAFETY"), "{}", e.message);
        let e = GeminiAdapter
            .chat_response(b"<html>", &ctx(false, false))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
    }

    // ------------------------------------------------------------- stream

    fn sse_text_stream() -> Vec<u8> {
        let frames = [
            json!({"candidates": [{"content": {"parts": [{"text": "Hmm.", "thought": true}], "role": "model"}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}, "responseId": "r1"}),
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 4}, "responseId": "r1"}),
            json!({"candidates": [{"content": {"parts": [{"text": "lo"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 1,
                                     "cachedContentTokenCount": 1, "totalTokenCount": 6}, "responseId": "r1"}),
        ];
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&serde_json::to_vec(&f).unwrap());
            out.extend_from_slice(b"\r\n\r\n");
        }
        out
    }

    /// Feeds `input` in pieces of the given sizes (cycled), then finishes.
    fn run_stream(
        input: &[u8],
        sizes: &[usize],
        include_usage: bool,
    ) -> Result<Vec<Value>, ApiError> {
        let mut t = GeminiAdapter.chat_stream(&ctx(true, include_usage));
        let mut out = Vec::new();
        let mut rest = input;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes[k % sizes.len()].min(rest.len());
            t.feed(&rest[..n], &mut out)?;
            rest = &rest[n..];
            k += 1;
        }
        t.finish(&mut out)?;
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
        let mut values = Vec::new();
        for f in frames {
            let data = f.strip_prefix("data: ").expect(f);
            if data == "[DONE]" {
                continue;
            }
            values.push(serde_json::from_str(data).unwrap());
        }
        Ok(values)
    }

    fn check_text_chunks(chunks: &[Value], include_usage: bool) {
        assert!(chunks
            .iter()
            .all(|c| c["id"] == "chatcmpl-r1" && c["model"] == "gem"));
        assert!(chunks.iter().all(|c| c["created"] == chunks[0]["created"]));
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(
            chunks[1]["choices"][0]["delta"],
            json!({"reasoning_content": "Hmm."})
        );
        assert_eq!(chunks[2]["choices"][0]["delta"], json!({"content": "Hel"}));
        assert_eq!(chunks[3]["choices"][0]["delta"], json!({"content": "lo"}));
        assert!(chunks[3]["choices"][0]["finish_reason"].is_null());
        assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
        if include_usage {
            assert_eq!(chunks.len(), 6);
            assert!(chunks[..5]
                .iter()
                .all(|c| c.get("usage") == Some(&Value::Null)));
            assert_eq!(chunks[5]["choices"], json!([]));
            assert_eq!(
                chunks[5]["usage"],
                json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6,
                       "prompt_tokens_details": {"cached_tokens": 1},
                       "completion_tokens_details": {"reasoning_tokens": 1}})
            );
        } else {
            assert_eq!(chunks.len(), 5);
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        }
    }

    #[test]
    fn stream_translation_whole_byte_by_byte_and_odd_splits() {
        let input = sse_text_stream();
        check_text_chunks(&run_stream(&input, &[input.len()], true).unwrap(), true);
        check_text_chunks(&run_stream(&input, &[1], true).unwrap(), true);
        check_text_chunks(
            &run_stream(&input, &[7, 3, 13, 1, 29], false).unwrap(),
            false,
        );
        // Every single split point, including inside `\r\n`.
        for cut in 1..input.len() {
            let mut t = GeminiAdapter.chat_stream(&ctx(true, true));
            let mut out = Vec::new();
            t.feed(&input[..cut], &mut out).unwrap();
            t.feed(&input[cut..], &mut out).unwrap();
            t.finish(&mut out).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap().matches("data: ").count(),
                7,
                "cut at {cut}"
            );
        }
        // Plain `\n\n` framing and a last event without its blank line.
        let lf = String::from_utf8(input.clone())
            .unwrap()
            .replace("\r\n", "\n");
        let lf = lf.trim_end().as_bytes().to_vec();
        check_text_chunks(&run_stream(&lf, &[5], true).unwrap(), true);
    }

    #[test]
    fn stream_function_call() {
        let frame = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            {"functionCall": {"name": "now", "args": {}}},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 4, "totalTokenCount": 12}});
        let input = format!("data: {frame}\r\n\r\n");
        let chunks = run_stream(input.as_bytes(), &[3], false).unwrap();
        assert_eq!(chunks.len(), 4);
        let c1 = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(c1["index"], 0);
        assert_eq!(c1["type"], "function");
        assert!(c1["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(c1["function"]["name"], "get_weather");
        assert_eq!(c1["function"]["arguments"], "{\"city\":\"Rome\"}");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["index"],
            1
        );
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn truncated_stream_is_an_error_at_finish() {
        let input = sse_text_stream();
        // Everything but the last frame, which carries finishReason.
        let cut = input.len() - 10;
        let last_start = String::from_utf8_lossy(&input[..cut])
            .rfind("data: ")
            .unwrap();
        let mut t = GeminiAdapter.chat_stream(&ctx(true, true));
        let mut out = Vec::new();
        t.feed(&input[..last_start], &mut out).unwrap();
        let e = t.finish(&mut out).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert!(!String::from_utf8(out.clone()).unwrap().contains("[DONE]"));
        // A frame cut in half is not whole JSON: also an error, not [DONE].
        let mut t = GeminiAdapter.chat_stream(&ctx(true, false));
        let mut out = Vec::new();
        t.feed(&input[..cut], &mut out).unwrap();
        assert!(t.finish(&mut out).is_err());
        // Nothing at all.
        let mut t = GeminiAdapter.chat_stream(&ctx(true, false));
        assert!(t.finish(&mut Vec::new()).is_err());
    }

    #[test]
    fn error_frame_mid_stream_and_blocked_prompt_are_errors() {
        let mut t = GeminiAdapter.chat_stream(&ctx(true, false));
        let mut out = Vec::new();
        let input = sse_text_stream();
        let first_end = String::from_utf8_lossy(&input).find("\r\n\r\n").unwrap() + 4;
        t.feed(&input[..first_end], &mut out).unwrap();
        let e = t
            .feed(
                b"data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n",
                &mut out,
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ServiceUnavailable);
        assert_eq!(e.message, "gemini: The model is overloaded.");

        let mut t = GeminiAdapter.chat_stream(&ctx(true, false));
        let e = t
            .feed(
                b"data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"}}\r\n\r\n",
                &mut Vec::new(),
            )
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("content_filter"));

        let mut t = GeminiAdapter.chat_stream(&ctx(true, false));
        assert!(t.feed(b"data: {oops\r\n\r\n", &mut Vec::new()).is_err());
    }

    // ------------------------------------------------------------- errors

    fn err(status: u16, body: &str) -> ApiError {
        GeminiAdapter.error(status, body.as_bytes())
    }

    #[test]
    fn error_mapping() {
        let e = err(
            400,
            r#"{"error":{"code":400,"message":"Invalid value at 'contents'","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.message, "gemini: Invalid value at 'contents'");
        assert_eq!(e.code.as_deref(), Some("invalid_argument"));

        // Google's answer to a wrong key, DebugInfo quoting the key included.
        let e = err(
            400,
            r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"},{"@type":"type.googleapis.com/google.rpc.DebugInfo","detail":"Invalid API key: gm-secret"}]}}"#,
        );
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
        assert!(!e.message.contains("gm-secret"));

        let e = err(
            403,
            r#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(
            (e.kind, e.code.as_deref()),
            (ErrorKind::BadGateway, Some("upstream_auth_failed"))
        );
        let e = err(
            401,
            r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));

        let e = err(
            404,
            r#"{"error":{"code":404,"message":"models/gemini-9 is not found","status":"NOT_FOUND"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);

        let e = err(
            429,
            r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"33.2s"}]}}"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after_secs, Some(34));

        let e = err(
            500,
            r#"{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::BadGateway);
        let e = err(
            503,
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::ServiceUnavailable);
        let e = err(
            504,
            r#"{"error":{"code":504,"message":"Deadline exceeded","status":"DEADLINE_EXCEEDED"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::GatewayTimeout);
        let e = err(
            400,
            r#"{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::BadGateway);

        // The array form Google uses for streams without alt=sse.
        let e = err(
            429,
            r#"[{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}}]"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);

        let e = err(502, "<html><body>Bad Gateway</body></html>");
        assert_eq!(e.kind, ErrorKind::BadGateway);
        assert!(e.message.contains("502"), "{}", e.message);
    }
}
