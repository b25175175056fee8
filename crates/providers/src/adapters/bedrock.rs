//! Amazon Bedrock's Converse API (`POST /model/{modelId}/converse` and
//! `/converse-stream`) behind OpenAI chat completions, signed with AWS SigV4.
//!
//! Decisions that are not obvious from the two references:
//!
//! - **Signing.** Requests are signed here (service `bedrock`), because the
//!   gateway sends no auth header for `sigv4` providers. The signed headers are
//!   `content-type` (the gateway always sends `application/json`), `host` (from
//!   the deployment's base URL), `x-amz-date` and, with temporary credentials,
//!   `x-amz-security-token`. The model id is percent-encoded into the path
//!   (`:` → `%3A`, `/` of an ARN → `%2F`) and signed encoded once more, as SigV4
//!   requires for every service but S3. [`BedrockAdapter::request_at`] takes the
//!   signing time, so tests can pin it.
//! - **Images.** Converse takes image bytes (or an S3 location), never a URL, so
//!   `https://` image parts are a 400 naming the part; `data:` URLs become
//!   `{image:{format, source:{bytes}}}` and `s3://` URLs `source.s3Location`.
//! - **Tools.** Tool messages become `toolResult` blocks in a user turn, merged
//!   with the turns around them. Bedrock refuses `toolUse`/`toolResult` blocks
//!   without a `toolConfig`, which OpenAI clients routinely omit on the turn
//!   after the tool ran, so in that case the tools named in the history are
//!   declared again with an open schema. `tool_choice: "none"` has no Converse
//!   form: the tools are left out, unless the history needs them declared.
//! - **Structured output.** `json_schema` is emulated as on Anthropic: a forced
//!   synthetic tool ([`JSON_TOOL_NAME`]) whose input comes back as the message
//!   text; `json_object` is a system instruction.
//! - **Reasoning.** For Claude models `reasoning_effort` becomes the
//!   `thinking` field of `additionalModelRequestFields`, with Anthropic's budget
//!   rules; other models ignore it. Reasoning comes back as `reasoning_content`
//!   and signed `thinking_blocks`, which clients return on the assistant turn.
//! - **Streams.** ConverseStream answers in AWS event-stream frames
//!   ([`eventstream`]), CRC-checked; a bad CRC ends the stream with an error.
//!   `messageStop` carries the stop reason and `metadata` the usage *after* it,
//!   so the finish chunk goes out at `messageStop` and the usage chunk and
//!   `[DONE]` at `metadata` (or at the end of the body if `metadata` never came).

mod embed;
pub mod eventstream;
pub mod sigv4;

use super::common::{
    self, bad_upstream, chunk_json, invalid, max_tokens, now_secs, number, part_type, role_delta,
    stop_sequences, usage_chunk_json, with_code, write_frame, DONE_FRAME,
};
use super::{
    ChatAdapter, ChatContext, EndpointRequest, StreamTranslator, Translated, UpstreamRequest,
    UpstreamTarget,
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use liter_llm_protocol::{ApiError, Endpoint, ErrorKind};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The SigV4 service name for the Bedrock runtime.
pub const SERVICE: &str = "bedrock";

/// The content type the gateway sends, and therefore the one that is signed.
pub const CONTENT_TYPE: &str = "application/json";

/// The synthetic tool that emulates `json_schema` response formats.
pub const JSON_TOOL_NAME: &str = "liter_llm_json_response";

/// Told to the model for `response_format: json_object`.
const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object and nothing else: no prose before or after it and no Markdown code fences.";

/// Without `max_tokens`, a thinking budget still needs room for the answer.
const DEFAULT_ANSWER_TOKENS: u64 = 4096;

/// Translates OpenAI chat completions to Bedrock's Converse API and back.
#[derive(Debug, Default, Clone, Copy)]
pub struct BedrockAdapter;

impl BedrockAdapter {
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
        Self::sign(req, target, now)
    }

    /// Signs `req` (chat or InvokeModel) for the deployment's credentials and
    /// region as of `now`, adding `authorization`, `x-amz-date` and, with
    /// temporary credentials, `x-amz-security-token`.
    pub(crate) fn sign(
        req: UpstreamRequest,
        target: &UpstreamTarget<'_>,
        now: SystemTime,
    ) -> Result<UpstreamRequest, ApiError> {
        sign_aws(req, target, now, &BEDROCK_SIGNER)
    }
}

/// What differs between the AWS services this crate signs for: the SigV4
/// service name, the provider named in configuration errors, and how a region
/// is read from the endpoint's host when the deployment names none.
#[derive(Clone, Copy)]
pub(crate) struct AwsSigner {
    pub(crate) service: &'static str,
    pub(crate) provider: &'static str,
    pub(crate) region_from_host: fn(&str) -> Option<String>,
}

const BEDROCK_SIGNER: AwsSigner = AwsSigner {
    service: SERVICE,
    provider: "bedrock",
    region_from_host,
};

/// Signs a JSON `req` for `signer`'s service with the deployment's AWS
/// credentials and region as of `now` (see [`BedrockAdapter::sign`]).
pub(crate) fn sign_aws(
    mut req: UpstreamRequest,
    target: &UpstreamTarget<'_>,
    now: SystemTime,
    signer: &AwsSigner,
) -> Result<UpstreamRequest, ApiError> {
    let provider = signer.provider;
    let options = target.options;
    let Some(creds) = options.aws.as_ref() else {
        return Err(misconfigured(&format!(
            "{provider}: this deployment has no AWS credentials; set `aws_access_key_id` and `aws_secret_access_key` on the model (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        )));
    };
    let (host, base_path) = split_base_url(target.base_url, provider)?;
    let region = match options.region.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => r.to_string(),
        None => (signer.region_from_host)(&host).ok_or_else(|| {
            misconfigured(&format!(
                "{provider}: no AWS region for this deployment; set `aws_region` on the model (or AWS_REGION)",
            ))
        })?,
    };
    let path = format!("{base_path}{}", req.path);
    let signature = sigv4::sign(
        &sigv4::RequestParts {
            method: req.method.as_str(),
            host: &host,
            path_and_query: &path,
            headers: &[("content-type", CONTENT_TYPE)],
            payload: &req.body,
        },
        &sigv4::SigningParams {
            access_key_id: &creds.access_key_id,
            secret_access_key: &creds.secret_access_key,
            session_token: creds.session_token.as_deref().filter(|t| !t.is_empty()),
            region: &region,
            service: signer.service,
            time: now,
        },
    );
    let header = |v: &str, sensitive: bool| {
        HeaderValue::from_str(v)
            .map(|mut h| {
                h.set_sensitive(sensitive);
                h
            })
            .map_err(|_| {
                misconfigured(&format!("{provider}: the AWS credentials contain characters that cannot go in an HTTP header"))
            })
    };
    req.headers.push((
        http::header::AUTHORIZATION,
        header(&signature.authorization, true)?,
    ));
    req.headers.push((
        HeaderName::from_static("x-amz-date"),
        header(&signature.amz_date, false)?,
    ));
    if let Some(token) = creds.session_token.as_deref().filter(|t| !t.is_empty()) {
        req.headers.push((
            HeaderName::from_static("x-amz-security-token"),
            header(token.trim(), true)?,
        ));
    }
    Ok(req)
}

impl ChatAdapter for BedrockAdapter {
    fn offers(&self, endpoint: Endpoint) -> bool {
        matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Embeddings)
    }

    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match req.endpoint {
            Endpoint::Embeddings => embed::request_at(req, ctx, target, SystemTime::now()),
            other => Err(super::not_offered(other)),
        }
    }

    fn endpoint_response(
        &self,
        endpoint: Endpoint,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        let req = EndpointRequest {
            endpoint,
            body: b"",
            content_type: None,
        };
        self.endpoint_response_for(&req, upstream_body, ctx)
    }

    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        match req.endpoint {
            Endpoint::Embeddings => {
                let expected = super::embeddings::expected(req.body);
                embed::response(upstream_body, &expected, ctx)
            }
            other => Err(super::not_offered(other)),
        }
    }

    /// The unsigned translation. Bedrock refuses unsigned requests; the gateway
    /// calls [`ChatAdapter::chat_request_for`], which signs.
    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = translate_request(openai_body, ctx)?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("could not encode the bedrock request: {e}"),
            )
        })?;
        let op = if ctx.stream {
            "converse-stream"
        } else {
            "converse"
        };
        Ok(UpstreamRequest {
            content_type: None,
            method: Method::POST,
            path: format!(
                "/model/{}/{op}",
                sigv4::uri_encode(ctx.upstream_model, false)
            ),
            headers: Vec::new(),
            body: Bytes::from(body),
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
        Box::new(BedrockStream::new(ctx))
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        translate_error(status, upstream_body)
    }
}

fn misconfigured(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Internal, message).with_code("provider_misconfigured")
}

/// The `Host` header value and the path prefix of a base URL. The default
/// port of the scheme is left out of the host, as HTTP clients send it.
fn split_base_url(base_url: &str, provider: &str) -> Result<(String, String), ApiError> {
    let (scheme, rest) = base_url.split_once("://").ok_or_else(|| {
        misconfigured(&format!(
            "{provider}: the deployment's base_url has no scheme"
        ))
    })?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut host = authority.to_ascii_lowercase();
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    if host.ends_with(default_port) {
        host.truncate(host.len() - default_port.len());
    }
    if host.is_empty() {
        return Err(misconfigured(&format!(
            "{provider}: the deployment's base_url has no host"
        )));
    }
    let path = &rest[end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    Ok((host, path.trim_end_matches('/').to_string()))
}

/// `bedrock-runtime[-fips].{region}.amazonaws.com` (VPC endpoint names too).
fn region_from_host(host: &str) -> Option<String> {
    let host = host.split(':').next().unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    labels
        .iter()
        .position(|l| *l == "bedrock-runtime" || *l == "bedrock-runtime-fips")
        .and_then(|i| labels.get(i + 1))
        .filter(|r| r.contains('-'))
        .map(|r| (*r).to_string())
}

// ---------------------------------------------------------------------------
// OpenAI request → Converse request
// ---------------------------------------------------------------------------

fn translate_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Some(req) = parsed.as_object() else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    common::reject_unrepresentable(req, "bedrock", "bedrock's Converse API")?;

    let mut out = Map::new();
    let mut docs = DocumentNames::default();
    let (mut system, messages) = translate_messages(req.get("messages"), &mut docs)?;
    let mut tools = translate_tools(req.get("tools"))?;
    let mut choice = translate_tool_choice(req.get("tool_choice"))?;

    match response_format(req.get("response_format"))? {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => system.push(json!({"text": JSON_OBJECT_INSTRUCTION})),
        ResponseFormat::JsonSchema(schema) => {
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return Err(invalid(
                    "response_format.json_schema.schema",
                    "bedrock emulates json_schema with a tool, whose input schema must have a top-level type of \"object\"",
                ));
            }
            let client_had_tools = !tools.is_empty();
            tools.push(tool_spec(
                JSON_TOOL_NAME,
                Some("Give the final answer by calling this tool; its input is the JSON response, which must match the schema."),
                schema,
            ));
            // With client tools the model may still call one of them; "any"
            // forces a tool call, so the answer is either a real call or JSON.
            choice = match choice {
                Some(Choice::Tool(name)) => Some(Choice::Tool(name)),
                Some(Choice::Auto | Choice::Any) | None if client_had_tools => Some(Choice::Any),
                _ => Some(Choice::Tool(JSON_TOOL_NAME.to_string())),
            };
        }
    }

    let history_tools = tool_names_in_history(&messages);
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(messages));

    let forced = matches!(choice, Some(Choice::Any | Choice::Tool(_)));
    if choice == Some(Choice::None) {
        // No Converse form: offer no tools, except those the history must declare.
        tools.retain(|t| {
            t["toolSpec"]["name"]
                .as_str()
                .is_some_and(|n| history_tools.iter().any(|h| h == n))
        });
    }
    for name in &history_tools {
        let declared = tools
            .iter()
            .any(|t| t["toolSpec"]["name"].as_str() == Some(name.as_str()));
        if !declared {
            tools.push(tool_spec(
                name,
                None,
                json!({"type": "object", "properties": {}}),
            ));
        }
    }
    if !tools.is_empty() {
        let mut config = Map::new();
        config.insert("tools".into(), Value::Array(tools));
        let tool_choice = match choice {
            Some(Choice::Auto) => Some(json!({"auto": {}})),
            Some(Choice::Any) => Some(json!({"any": {}})),
            Some(Choice::Tool(name)) => Some(json!({"tool": {"name": name}})),
            Some(Choice::None) | None => None,
        };
        if let Some(c) = tool_choice {
            config.insert("toolChoice".into(), c);
        }
        out.insert("toolConfig".into(), Value::Object(config));
    }
    // A tool_choice without tools is ignored, as OpenAI does.

    let budget = thinking_budget(req, ctx.upstream_model)?;
    if budget.is_some() && forced {
        return Err(invalid(
            "reasoning_effort",
            "claude on bedrock cannot think while a tool call is forced: drop reasoning_effort, or use tool_choice \"auto\" (a json_schema response_format also forces a tool)",
        ));
    }
    if let Some(b) = budget {
        out.insert(
            "additionalModelRequestFields".into(),
            json!({"thinking": {"type": "enabled", "budget_tokens": b}}),
        );
    }

    let mut inference = Map::new();
    let max = match (max_tokens(req)?, budget) {
        (None, None) => None,
        (None, Some(b)) => Some(b + DEFAULT_ANSWER_TOKENS),
        (Some(m), Some(b)) if m <= b => Some(m + b),
        (Some(m), _) => Some(m),
    };
    if let Some(m) = max {
        inference.insert("maxTokens".into(), Value::from(m));
    }
    let temperature = number(req, "temperature")?;
    let top_p = number(req, "top_p")?;
    if budget.is_some() {
        // Thinking refuses temperature changes and a top_p below 0.95.
        if let Some(p) = top_p.filter(|p| *p >= 0.95) {
            inference.insert("topP".into(), Value::from(p.min(1.0)));
        }
    } else {
        if let Some(t) = temperature {
            // OpenAI's range is 0..=2, Converse's 0..=1.
            inference.insert("temperature".into(), Value::from(t.clamp(0.0, 1.0)));
        }
        if let Some(p) = top_p {
            inference.insert("topP".into(), Value::from(p.clamp(0.0, 1.0)));
        }
    }
    if let Some(stops) = stop_sequences(req.get("stop"))? {
        inference.insert("stopSequences".into(), Value::Array(stops));
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    Ok(Value::Object(out))
}

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

/// Document names must be unique within a request.
#[derive(Default)]
struct DocumentNames(HashSet<String>);

impl DocumentNames {
    fn claim(&mut self, wanted: &str) -> String {
        let base = if wanted.is_empty() {
            "document"
        } else {
            wanted
        };
        let mut name = base.to_string();
        let mut n = 2;
        while self.0.contains(&name) {
            name = format!("{base} ({n})");
            n += 1;
        }
        self.0.insert(name.clone());
        name
    }
}

fn translate_messages(
    messages: Option<&Value>,
    docs: &mut DocumentNames,
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
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
        let content_path = format!("{path}.content");
        match role {
            "system" | "developer" => system.extend(text_only_blocks(content, &content_path)?),
            "user" => push_turn(
                &mut turns,
                "user",
                user_blocks(content, &content_path, docs)?,
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
                let result_content = match content {
                    Value::String(s) if s.is_empty() => Vec::new(),
                    Value::String(s) => vec![json!({"text": s})],
                    Value::Null => Vec::new(),
                    other => user_blocks(other, &content_path, docs)?
                        .into_iter()
                        .filter(|b| b.get("cachePoint").is_none())
                        .collect(),
                };
                push_turn(
                    &mut turns,
                    "user",
                    vec![json!({"toolResult": {"toolUseId": id, "content": result_content}})],
                );
            }
            "function" => return Err(invalid(
                format!("{path}.role"),
                "the deprecated `function` role is not supported for bedrock models; use `tool`",
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
                // Tool results lead a merged user turn, as Claude requires.
                let (mut results, rest): (Vec<Value>, Vec<Value>) = t
                    .blocks
                    .into_iter()
                    .partition(|b| b.get("toolResult").is_some());
                results.extend(rest);
                t.blocks = results;
            }
            json!({"role": t.role, "content": t.blocks})
        })
        .collect();
    Ok((system, messages))
}

/// Tool names used in the history's `toolUse` blocks, in first-use order.
fn tool_names_in_history(messages: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for m in messages {
        for b in m["content"].as_array().into_iter().flatten() {
            if let Some(name) = b["toolUse"]["name"].as_str() {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// A text part as blocks: the text (unless blank, which Converse refuses) and
/// a cache point after it when the part carried `cache_control`.
fn text_part(part: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    let text = part
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.text"), "text parts need a string `text`"))?;
    let mut out = Vec::new();
    if !text.trim().is_empty() {
        out.push(json!({"text": text}));
    }
    if part.get("cache_control").is_some_and(Value::is_object) {
        out.push(json!({"cachePoint": {"type": "default"}}));
    }
    Ok(out)
}

fn string_blocks(s: &str) -> Vec<Value> {
    if s.trim().is_empty() {
        Vec::new()
    } else {
        vec![json!({"text": s})]
    }
}

fn text_only_blocks(content: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::String(s) => Ok(string_blocks(s)),
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
        Value::Null => Ok(Vec::new()),
        _ => Err(invalid(
            path,
            "content must be a string or an array of parts",
        )),
    }
}

fn user_blocks(
    content: &Value,
    path: &str,
    docs: &mut DocumentNames,
) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::String(s) => Ok(string_blocks(s)),
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
                        out.push(image_block(url, &format!("{p}.image_url.url"))?);
                        if part.get("cache_control").is_some_and(Value::is_object) {
                            out.push(json!({"cachePoint": {"type": "default"}}));
                        }
                    }
                    "file" => out.push(document_block(part, &p, docs)?),
                    "input_audio" => {
                        return Err(invalid(
                            format!("{p}.type"),
                            "audio input is not supported by bedrock's Converse API",
                        ))
                    }
                    other => {
                        return Err(invalid(
                            format!("{p}.type"),
                            format!("content part type `{other}` is not supported by bedrock"),
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

/// Splits `data:<mime>[;params];base64,<data>` into the media type and a
/// non-empty payload.
fn parse_data_url<'a>(url: &'a str, path: &str) -> Result<(&'a str, &'a str), ApiError> {
    let (media_type, data) = common::parse_data_url(url, path)?;
    if data.is_empty() {
        return Err(invalid(path, "the data URL has no payload"));
    }
    Ok((media_type, data))
}

fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type.to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn image_block(url: &str, path: &str) -> Result<Value, ApiError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("data:") {
        let (media_type, data) = parse_data_url(url, path)?;
        let format = image_format(media_type).ok_or_else(|| {
            invalid(
                path,
                format!("image type `{media_type}` is not supported by bedrock (use png, jpeg, gif or webp)"),
            )
        })?;
        Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
    } else if lower.starts_with("s3://") {
        let ext = url.rsplit('.').next().unwrap_or_default();
        let format = image_format(&format!("image/{ext}")).ok_or_else(|| {
            invalid(
                path,
                "an s3:// image URL must end in .png, .jpeg, .jpg, .gif or .webp so its format is known",
            )
        })?;
        Ok(json!({"image": {"format": format, "source": {"s3Location": {"uri": url}}}}))
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        Err(invalid(
            path,
            "bedrock's Converse API takes image bytes, not URLs: send the image as a base64 data URL (data:image/png;base64,...)",
        ))
    } else {
        Err(invalid(
            path,
            "image URLs must be base64 data URLs (or s3:// locations) for bedrock",
        ))
    }
}

fn document_format(media_type: &str) -> Option<&'static str> {
    Some(match media_type.to_ascii_lowercase().as_str() {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        _ => return None,
    })
}

/// Converse document names allow letters, digits, single spaces, hyphens,
/// parentheses and square brackets.
fn document_name(filename: &str) -> String {
    let stem = filename
        .rsplit_once('.')
        .map_or(filename, |(s, _)| s)
        .trim();
    let mut out = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            c
        } else {
            ' '
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end().chars().take(200).collect()
}

/// OpenAI `file` parts carrying a document become Converse `document` blocks.
fn document_block(part: &Value, path: &str, docs: &mut DocumentNames) -> Result<Value, ApiError> {
    let file = part.get("file").unwrap_or(&Value::Null);
    if file.get("file_id").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            format!("{path}.file.file_id"),
            "uploaded file references are not supported for bedrock models; send `file_data` inline",
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
    let format = document_format(media_type).ok_or_else(|| {
        invalid(
            p.as_str(),
            format!("file type `{media_type}` is not supported by bedrock (pdf, csv, doc, docx, xls, xlsx, html, txt or md)"),
        )
    })?;
    let name = docs.claim(&document_name(
        file.get("filename").and_then(Value::as_str).unwrap_or(""),
    ));
    Ok(json!({"document": {"format": format, "name": name, "source": {"bytes": data}}}))
}

fn assistant_blocks(m: &Value, path: &str) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    // Signed reasoning from an earlier answer; it must lead the turn.
    if let Some(blocks) = m.get("thinking_blocks").and_then(Value::as_array) {
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("thinking") => {
                    if let (Some(t), Some(s)) = (
                        b.get("thinking").and_then(Value::as_str),
                        b.get("signature").and_then(Value::as_str),
                    ) {
                        out.push(json!({"reasoningContent": {"reasoningText": {"text": t, "signature": s}}}));
                    }
                }
                Some("redacted_thinking") => {
                    if let Some(d) = b.get("data").and_then(Value::as_str) {
                        out.push(json!({"reasoningContent": {"redactedContent": d}}));
                    }
                }
                _ => {}
            }
        }
    }
    let content_path = format!("{path}.content");
    match m.get("content").unwrap_or(&Value::Null) {
        Value::Null => {}
        Value::String(s) => out.extend(string_blocks(s)),
        Value::Array(parts) => {
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{content_path}[{j}]");
                match part_type(part, &p)? {
                    "text" => out.extend(text_part(part, &p)?),
                    "refusal" => {}
                    other => {
                        return Err(invalid(
                            format!("{p}.type"),
                            format!(
                                "assistant content part type `{other}` is not supported by bedrock"
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
            out.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
        }
    }
    Ok(out)
}

fn tool_spec(name: &str, description: Option<&str>, schema: Value) -> Value {
    let mut spec = Map::new();
    spec.insert("name".into(), Value::from(name));
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        spec.insert("description".into(), Value::from(d));
    }
    spec.insert("inputSchema".into(), json!({ "json": schema }));
    json!({ "toolSpec": spec })
}

fn translate_tools(tools: Option<&Value>) -> Result<Vec<Value>, ApiError> {
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
                format!("tool type `{ty}` is not supported by bedrock (only `function`)"),
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
        out.push(tool_spec(
            name,
            function.get("description").and_then(Value::as_str),
            schema,
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    Auto,
    Any,
    None,
    Tool(String),
}

fn translate_tool_choice(choice: Option<&Value>) -> Result<Option<Choice>, ApiError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Some(Choice::Auto)),
            "required" => Ok(Some(Choice::Any)),
            "none" => Ok(Some(Choice::None)),
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
                Some(name) => Ok(Some(Choice::Tool(name.to_string()))),
                None => Err(invalid(
                    "tool_choice",
                    "tool_choice must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}} for bedrock",
                )),
            }
        }
        Some(_) => Err(invalid(
            "tool_choice",
            "tool_choice must be a string or an object",
        )),
    }
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
            _ => Ok(ResponseFormat::JsonObject),
        },
        _ => Err(invalid(
            "response_format.type",
            "response_format.type must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// Whether a Bedrock model id (or inference profile id) names a Claude model.
fn is_claude(model: &str) -> bool {
    model.to_ascii_lowercase().contains("anthropic.claude")
}

/// The thinking budget for Claude models; `None` when off or not Claude.
fn thinking_budget(req: &Map<String, Value>, model: &str) -> Result<Option<u64>, ApiError> {
    let Some(effort) = req.get("reasoning_effort").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let budget =
        match effort.as_str() {
            Some("none") => return Ok(None),
            Some("minimal" | "low") => 1024,
            Some("medium") => 4096,
            Some("high" | "xhigh") => 16384,
            _ => return Err(invalid(
                "reasoning_effort",
                "reasoning_effort must be \"none\", \"minimal\", \"low\", \"medium\" or \"high\"",
            )),
        };
    Ok(is_claude(model).then_some(budget))
}

// ---------------------------------------------------------------------------
// Converse response → OpenAI response
// ---------------------------------------------------------------------------

/// Converse answers carry no id, so one is made up; unique, not secret.
fn completion_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("chatcmpl-bedrock-{:016x}", h.finish())
}

fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("guardrail_intervened" | "content_filtered") => "content_filter",
        // end_turn, stop_sequence and anything newer.
        _ => "stop",
    }
}

/// Token counts as Converse reports them; `inputTokens` excludes the cache.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
}

impl Usage {
    fn from_value(u: &Value) -> Usage {
        let field = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        Usage {
            input: field("inputTokens"),
            output: field("outputTokens"),
            cache_read: field("cacheReadInputTokens"),
            cache_write: field("cacheWriteInputTokens"),
        }
    }

    /// OpenAI's `prompt_tokens` counts every input token, cached or not.
    fn to_openai(self) -> Value {
        let prompt = self.input + self.cache_read + self.cache_write;
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt + self.output,
            "prompt_tokens_details": {
                "cached_tokens": self.cache_read,
                "cache_creation_input_tokens": self.cache_write,
            },
        })
    }
}

fn translate_response(body: &[u8], ctx: &ChatContext<'_>) -> Result<Bytes, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad_upstream(format!("bedrock: response is not valid JSON: {e}")))?;
    let blocks = v
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream("bedrock: response has no `output.message.content` array"))?;

    let mut text = String::new();
    let mut has_text = false;
    let mut json_answer: Option<String> = None;
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            has_text = true;
            text.push_str(t);
        } else if let Some(tu) = block.get("toolUse") {
            let input = tu.get("input").cloned().unwrap_or_else(|| json!({}));
            let arguments = serde_json::to_string(&input).unwrap_or_else(|_| "{}".to_string());
            let name = tu.get("name").and_then(Value::as_str).unwrap_or("");
            if name == JSON_TOOL_NAME {
                json_answer = Some(arguments);
                continue;
            }
            tool_calls.push(json!({
                "id": tu.get("toolUseId").and_then(Value::as_str).unwrap_or(""),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }));
        } else if let Some(rc) = block.get("reasoningContent") {
            if let Some(rt) = rc.get("reasoningText") {
                let t = rt.get("text").and_then(Value::as_str).unwrap_or("");
                reasoning.push_str(t);
                thinking_blocks.push(json!({
                    "type": "thinking",
                    "thinking": t,
                    "signature": rt.get("signature").and_then(Value::as_str).unwrap_or(""),
                }));
            } else if let Some(d) = rc.get("redactedContent").and_then(Value::as_str) {
                thinking_blocks.push(json!({"type": "redacted_thinking", "data": d}));
            }
        }
        // Images, citations and other blocks have no chat.completion counterpart.
    }

    let mut finish = finish_reason(v.get("stopReason").and_then(Value::as_str));
    let content = if let Some(json_text) = json_answer {
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
    let usage = v.get("usage").map(Usage::from_value).unwrap_or_default();
    let out = json!({
        "id": completion_id(),
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
        // ValidationException.
        400 | 409 | 422 => (ErrorKind::InvalidRequest, None),
        // AccessDeniedException, a bad signature or expired credentials: the
        // proxy's AWS identity is at fault, not the client.
        401 | 403 => (ErrorKind::BadGateway, Some("upstream_auth_failed")),
        // ResourceNotFoundException: an unknown or unavailable model.
        404 => (ErrorKind::NotFound, None),
        // ModelTimeoutException.
        408 | 504 => (ErrorKind::GatewayTimeout, Some("upstream_timeout")),
        413 => (ErrorKind::PayloadTooLarge, None),
        // ModelErrorException: the model failed while processing.
        424 => (ErrorKind::BadGateway, Some("upstream_error")),
        // ThrottlingException, ModelNotReadyException.
        429 => (ErrorKind::RateLimited, Some("upstream_rate_limited")),
        // ServiceUnavailableException.
        503 => (ErrorKind::ServiceUnavailable, Some("upstream_unavailable")),
        400..=499 => (ErrorKind::InvalidRequest, None),
        _ => (ErrorKind::BadGateway, Some("upstream_error")),
    }
}

/// The HTTP status AWS documents for an exception type, as named in an event
/// stream (`throttlingException`) or an error header (`ThrottlingException`).
fn status_for_exception(exception_type: &str) -> u16 {
    let t = exception_type.to_ascii_lowercase();
    let t = t.split(':').next().unwrap_or(&t);
    match t.trim_end_matches("exception") {
        "validation" => 400,
        "accessdenied" | "unrecognizedclient" | "invalidsignature" | "expiredtoken" => 403,
        "resourcenotfound" => 404,
        "modeltimeout" => 408,
        "modelstreamerror" | "modelerror" => 424,
        "throttling" | "modelnotready" | "servicequotaexceeded" => 429,
        "serviceunavailable" => 503,
        _ => 500,
    }
}

fn error_message(v: &Value) -> Option<&str> {
    ["message", "Message"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
}

fn translate_error(status: u16, body: &[u8]) -> ApiError {
    let (kind, code) = kind_for_status(status);
    if let Some(message) = serde_json::from_slice::<Value>(body)
        .ok()
        .as_ref()
        .and_then(error_message)
        .map(str::to_string)
    {
        return with_code(ApiError::new(kind, format!("bedrock: {message}")), code);
    }
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.trim().chars().take(200).collect();
    let detail = if snippet.is_empty() {
        "an empty body".to_string()
    } else {
        format!("a non-JSON body: {snippet}")
    };
    let message = format!("bedrock: upstream returned HTTP {status} with {detail}");
    match status {
        403 | 413 | 429 | 503 => with_code(ApiError::new(kind, message), code),
        _ => ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_error"),
    }
}

// ---------------------------------------------------------------------------
// ConverseStream event stream → OpenAI SSE
// ---------------------------------------------------------------------------

/// What one Converse content block became on the OpenAI side.
enum Block {
    Tool {
        index: usize,
    },
    /// The synthetic structured-output tool: its input is the answer text.
    JsonTool,
    Reasoning {
        text: String,
        signature: String,
    },
}

/// Translates one ConverseStream body into OpenAI chunks.
pub struct BedrockStream {
    decoder: eventstream::Decoder,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    blocks: HashMap<u64, Block>,
    tool_calls: usize,
    usage: Option<Usage>,
    finish_sent: bool,
    done: bool,
}

impl BedrockStream {
    fn new(ctx: &ChatContext<'_>) -> Self {
        BedrockStream {
            decoder: eventstream::Decoder::new(),
            id: completion_id(),
            created: now_secs(),
            model: ctx.requested_model.to_string(),
            include_usage: ctx.include_usage,
            started: false,
            blocks: HashMap::new(),
            tool_calls: 0,
            usage: None,
            finish_sent: false,
            done: false,
        }
    }
}

impl StreamTranslator for BedrockStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        self.decoder.push(chunk);
        loop {
            let message = self
                .decoder
                .next_message()
                .map_err(|e| bad_upstream(format!("bedrock: the event stream is corrupt: {e}")))?;
            let Some(message) = message else {
                return Ok(());
            };
            self.on_message(&message, out)?;
            if self.done {
                return Ok(());
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        if self.finish_sent {
            // messageStop came but metadata did not: the answer is whole.
            return self.close(out);
        }
        Err(ApiError::new(
            ErrorKind::BadGateway,
            "bedrock: the stream ended before messageStop",
        )
        .with_code("upstream_stream_truncated"))
    }
}

impl BedrockStream {
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

    fn ensure_started(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        self.emit(out, role_delta())
    }

    /// The usage chunk (if asked for and known), then `[DONE]`.
    fn close(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if let (true, Some(usage)) = (self.include_usage, self.usage) {
            let usage_chunk =
                usage_chunk_json(&self.id, self.created, &self.model, usage.to_openai());
            write_frame(out, &usage_chunk)?;
        }
        out.extend_from_slice(DONE_FRAME);
        self.done = true;
        Ok(())
    }

    fn on_message(
        &mut self,
        message: &eventstream::Message,
        out: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        match message.header_str(":message-type").unwrap_or("event") {
            "exception" => {
                let ty = message
                    .header_str(":exception-type")
                    .unwrap_or("internalServerException");
                let detail = serde_json::from_slice::<Value>(&message.payload)
                    .ok()
                    .as_ref()
                    .and_then(error_message)
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&message.payload).into_owned());
                let (kind, code) = kind_for_status(status_for_exception(ty));
                Err(with_code(
                    ApiError::new(kind, format!("bedrock: {ty}: {detail}")),
                    code,
                ))
            }
            "error" => {
                let code = message.header_str(":error-code").unwrap_or("error");
                let detail = message.header_str(":error-message").unwrap_or("");
                Err(
                    ApiError::new(ErrorKind::BadGateway, format!("bedrock: {code}: {detail}"))
                        .with_code("upstream_error"),
                )
            }
            _ => {
                let event = message.header_str(":event-type").unwrap_or("");
                let v: Value = serde_json::from_slice(&message.payload).map_err(|e| {
                    bad_upstream(format!("bedrock: malformed `{event}` event: {e}"))
                })?;
                self.on_event(event, &v, out)
            }
        }
    }

    fn on_event(&mut self, event: &str, v: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
        match event {
            "messageStart" => self.ensure_started(out),
            "contentBlockStart" => {
                self.ensure_started(out)?;
                let index = v["contentBlockIndex"].as_u64().unwrap_or(0);
                let Some(tu) = v["start"].get("toolUse") else {
                    return Ok(());
                };
                let name = tu["name"].as_str().unwrap_or("");
                if name == JSON_TOOL_NAME {
                    self.blocks.insert(index, Block::JsonTool);
                    return Ok(());
                }
                let tool_index = self.tool_calls;
                self.tool_calls += 1;
                self.emit(
                    out,
                    json!({"tool_calls": [{
                        "index": tool_index,
                        "id": tu["toolUseId"].as_str().unwrap_or(""),
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]}),
                )?;
                self.blocks.insert(index, Block::Tool { index: tool_index });
                Ok(())
            }
            "contentBlockDelta" => {
                self.ensure_started(out)?;
                let index = v["contentBlockIndex"].as_u64().unwrap_or(0);
                self.block_delta(index, &v["delta"], out)
            }
            "contentBlockStop" => {
                let index = v["contentBlockIndex"].as_u64().unwrap_or(0);
                if let Some(Block::Reasoning { text, signature }) = self.blocks.remove(&index) {
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
            "messageStop" => {
                self.ensure_started(out)?;
                let mut finish = finish_reason(v["stopReason"].as_str());
                if finish == "tool_calls" && self.tool_calls == 0 {
                    // Only the structured-output tool was called.
                    finish = "stop";
                }
                if !self.finish_sent {
                    self.finish_sent = true;
                    write_frame(out, &self.chunk(json!({}), Some(finish)))?;
                }
                if self.usage.is_some() {
                    self.close(out)?;
                }
                Ok(())
            }
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    self.usage = Some(Usage::from_value(u));
                }
                if self.finish_sent {
                    self.close(out)?;
                }
                Ok(())
            }
            // Events added after this was written.
            _ => Ok(()),
        }
    }

    fn block_delta(
        &mut self,
        index: u64,
        delta: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        if let Some(text) = delta.get("text").and_then(Value::as_str) {
            if !text.is_empty() {
                self.emit(out, json!({"content": text}))?;
            }
        } else if let Some(tu) = delta.get("toolUse") {
            let partial = tu["input"].as_str().unwrap_or("");
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
        } else if let Some(rc) = delta.get("reasoningContent") {
            let text = rc.get("text").and_then(Value::as_str);
            let sig = rc.get("signature").and_then(Value::as_str);
            if text.is_some() || sig.is_some() {
                let block = self
                    .blocks
                    .entry(index)
                    .or_insert_with(|| Block::Reasoning {
                        text: String::new(),
                        signature: String::new(),
                    });
                if let Block::Reasoning { text: t, signature } = block {
                    t.push_str(text.unwrap_or(""));
                    signature.push_str(sig.unwrap_or(""));
                }
                if let Some(t) = text.filter(|t| !t.is_empty()) {
                    self.emit(out, json!({"reasoning_content": t}))?;
                }
            } else if let Some(d) = rc.get("redactedContent").and_then(Value::as_str) {
                self.emit(
                    out,
                    json!({"thinking_blocks": [{"type": "redacted_thinking", "data": d}]}),
                )?;
            }
        }
        // Citations and newer delta kinds carry nothing OpenAI can show.
        Ok(())
    }
}

#[cfg(test)]
mod tests;
