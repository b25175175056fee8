//! Azure OpenAI and Azure AI Foundry (model inference) behind OpenAI chat
//! completions.
//!
//! Both speak OpenAI's chat completions wire format, so this adapter mostly
//! builds the right URL and otherwise stays out of the way: the client's body
//! goes upstream with only `model` replaced (and, where the API version allows
//! it, `stream_options.include_usage` added for metering); answers and SSE
//! streams come back as Azure sent them, `prompt_filter_results` and
//! `content_filter_results` included.
//!
//! **Azure OpenAI** (`azure/<deployment>`, [`AzureOpenAiAdapter`]). The base URL
//! picks the API surface:
//!
//! | base URL ends with | request | `api-version` |
//! |---|---|---|
//! | anything else (`https://<resource>.openai.azure.com`) | `/openai/deployments/{deployment}/chat/completions` | required: `api_version` or [`DEFAULT_API_VERSION`] |
//! | `/openai` | `/deployments/{deployment}/chat/completions` | as above |
//! | `/openai/v1` (the v1 API) | `/chat/completions`, `model` = the deployment | only when `api_version` is set (e.g. `preview`) |
//!
//! Completions, embeddings, image generation, speech and transcriptions use
//! the same deployment URLs (`/openai/deployments/{deployment}/embeddings`, ...)
//! with OpenAI's bodies, so they are forwarded the same way; a transcription's
//! multipart upload keeps every byte but the `model` field.
//!
//! With a dated API version older than [`STREAM_OPTIONS_SINCE`], which Azure
//! rejects `stream_options` on, usage is not requested for streams; the stream
//! is then unmetered unless the client asked itself.
//!
//! **Azure AI Foundry / Azure AI model inference** (`azure_ai/<model>`,
//! [`AzureAiAdapter`]): `{base}/chat/completions?api-version=…` (default
//! [`DEFAULT_AI_INFERENCE_API_VERSION`]) with `model` set to the deployment and
//! the header `extra-parameters: pass-through`, so fields outside the model
//! inference schema reach the model instead of being refused (the proxy never
//! drops what the client sent). `stream_options` is not added there: the
//! inference schema does not have it and non-OpenAI models reject it. A base
//! ending in `/openai/v1` is Foundry's OpenAI v1 endpoint and is treated like
//! Azure OpenAI's.
//!
//! Auth is the registry's `api_key` style (`api-key: <key>`), added by the
//! gateway. Errors (`{"error":{"code","message","param"?,"innererror"?}}`) keep
//! their meaning: a content-filter refusal stays a 400 with code
//! `content_filter`; a rejected key is the operator's problem, a 502.

use super::common::{bad_upstream, DONE_FRAME};
use super::{
    ChatAdapter, ChatContext, EndpointRequest, StreamTranslator, Translated, UpstreamRequest,
    UpstreamTarget,
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use liter_llm_protocol::peek::{peek_request, Requirements};
use liter_llm_protocol::{multipart, ApiError, Endpoint, ErrorKind};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The Azure OpenAI data-plane API version used when the model sets none: the
/// latest generally available dated version of the inference API.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// The Azure AI model inference API version used when the model sets none (the
/// version Foundry's `/models` endpoint and the `azure-ai-inference` SDKs use).
pub const DEFAULT_AI_INFERENCE_API_VERSION: &str = "2024-05-01-preview";

/// The first dated Azure OpenAI API version that accepts `stream_options`.
pub const STREAM_OPTIONS_SINCE: &str = "2024-09-01";

/// Azure OpenAI (`azure/<deployment>`): deployment-scoped URLs with `api-version`.
#[derive(Debug, Default, Clone, Copy)]
pub struct AzureOpenAiAdapter;

/// Azure AI Foundry model inference (`azure_ai/<model>`).
#[derive(Debug, Default, Clone, Copy)]
pub struct AzureAiAdapter;

impl ChatAdapter for AzureOpenAiAdapter {
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
        let (path, usage_ok) = azure_openai_path(
            target.base_url,
            ctx.upstream_model,
            configured_version(target),
        );
        let body = request_body(
            openai_body,
            ctx.upstream_model,
            ctx.stream && ctx.include_usage && usage_ok,
        )?;
        Ok(UpstreamRequest {
            content_type: None,
            method: Method::POST,
            path,
            headers: Vec::new(),
            body,
        })
    }

    fn chat_response(&self, upstream_body: &[u8], _: &ChatContext<'_>) -> Result<Bytes, ApiError> {
        pass_response("azure", upstream_body)
    }

    fn offers(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Embeddings
                | Endpoint::ImageGenerations
                | Endpoint::AudioSpeech
                | Endpoint::AudioTranscriptions
        )
    }

    /// The other OpenAI endpoints of a deployment take OpenAI's bodies
    /// unchanged, so only the URL (and the model, for the v1 API) changes.
    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let (path, _) = azure_openai_path_for(
            target.base_url,
            ctx.upstream_model,
            configured_version(target),
            req.endpoint.path(),
        );
        let (body, content_type) = match req.content_type {
            Some(ct) => (
                multipart_with_model(req.body, ct, ctx.upstream_model)?,
                Some(HeaderValue::from_str(ct).map_err(|_| {
                    ApiError::invalid_request(
                        "the request's Content-Type is not a valid header value",
                    )
                })?),
            ),
            None => (model_rewritten(req.body, ctx.upstream_model)?, None),
        };
        Ok(UpstreamRequest {
            content_type,
            method: Method::POST,
            path,
            headers: Vec::new(),
            body,
        })
    }

    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        _: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        if req.wants_text() {
            return Ok(Translated {
                body: Bytes::copy_from_slice(upstream_body),
                content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
            });
        }
        pass_response("azure", upstream_body).map(Translated::json)
    }

    fn chat_stream(&self, _: &ChatContext<'_>) -> Box<dyn StreamTranslator> {
        Box::new(AzureStream::new("azure"))
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        translate_error("azure", status, upstream_body)
    }
}

impl ChatAdapter for AzureAiAdapter {
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
        let version = configured_version(target);
        let v1 = is_v1(target.base_url);
        let version = if v1 {
            version
        } else {
            Some(version.unwrap_or(DEFAULT_AI_INFERENCE_API_VERSION))
        };
        let mut path = String::from("/chat/completions");
        push_api_version(&mut path, version);
        let body = request_body(
            openai_body,
            ctx.upstream_model,
            v1 && ctx.stream && ctx.include_usage,
        )?;
        Ok(UpstreamRequest {
            content_type: None,
            method: Method::POST,
            path,
            headers: vec![(
                HeaderName::from_static("extra-parameters"),
                HeaderValue::from_static("pass-through"),
            )],
            body,
        })
    }

    fn chat_response(&self, upstream_body: &[u8], _: &ChatContext<'_>) -> Result<Bytes, ApiError> {
        pass_response("azure_ai", upstream_body)
    }

    fn chat_stream(&self, _: &ChatContext<'_>) -> Box<dyn StreamTranslator> {
        Box::new(AzureStream::new("azure_ai"))
    }

    /// OCR is Foundry's Mistral OCR deployment (Mistral's shapes, inline
    /// documents only); see [`super::mistral`].
    fn offers(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::Ocr
        )
    }

    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match req.endpoint {
            Endpoint::Ocr => {
                super::mistral::azure_ocr_request(req.body, ctx.upstream_model, target.base_url)
            }
            // The model inference API's embeddings take OpenAI's body beside
            // chat, with the same version and pass-through rules.
            Endpoint::Embeddings => {
                let mut path = String::from("/embeddings");
                let version = configured_version(target);
                let version = if is_v1(target.base_url) {
                    version
                } else {
                    Some(version.unwrap_or(DEFAULT_AI_INFERENCE_API_VERSION))
                };
                push_api_version(&mut path, version);
                Ok(UpstreamRequest {
                    content_type: None,
                    method: Method::POST,
                    path,
                    headers: vec![(
                        HeaderName::from_static("extra-parameters"),
                        HeaderValue::from_static("pass-through"),
                    )],
                    body: model_rewritten(req.body, ctx.upstream_model)?,
                })
            }
            other => Err(super::not_offered(other)),
        }
    }

    fn endpoint_response(
        &self,
        endpoint: Endpoint,
        upstream_body: &[u8],
        _: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        match endpoint {
            Endpoint::Ocr => super::mistral::json_pass_through("azure_ai", upstream_body),
            Endpoint::Embeddings => pass_response("azure_ai", upstream_body).map(Translated::json),
            other => Err(super::not_offered(other)),
        }
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        // Foundry's Mistral OCR answers errors in Mistral's own shapes.
        if super::mistral::is_mistral_error(upstream_body) {
            return super::mistral::mistral_error("azure_ai", status, upstream_body);
        }
        translate_error("azure_ai", status, upstream_body)
    }
}

// ---------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------

fn configured_version<'a>(target: &UpstreamTarget<'a>) -> Option<&'a str> {
    target
        .options
        .api_version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.is_char_boundary(s.len() - suffix.len())
        && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// The base URL is an OpenAI v1 API root (`…/openai/v1`).
fn is_v1(base_url: &str) -> bool {
    ends_with_ignore_case(base_url.trim_end_matches('/'), "/openai/v1")
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a
/// deployment name or version can never change the shape of the URL.
fn encode(s: &str) -> String {
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

fn push_api_version(path: &mut String, version: Option<&str>) {
    if let Some(v) = version {
        path.push_str("?api-version=");
        path.push_str(&encode(v));
    }
}

/// Whether `version` accepts `stream_options`. Dated versions do from
/// [`STREAM_OPTIONS_SINCE`] on; undated ones (`preview`, `latest`) are the v1
/// API, which always does.
fn accepts_stream_options(version: &str) -> bool {
    let date = version.get(..10).unwrap_or(version);
    let dated = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    !dated || date >= STREAM_OPTIONS_SINCE
}

/// The request path for an Azure OpenAI deployment, and whether the API
/// version accepts `stream_options`.
fn azure_openai_path(base_url: &str, deployment: &str, version: Option<&str>) -> (String, bool) {
    azure_openai_path_for(base_url, deployment, version, "/chat/completions")
}

/// Like [`azure_openai_path`] for any deployment operation (`/embeddings`,
/// `/audio/transcriptions`, ...).
fn azure_openai_path_for(
    base_url: &str,
    deployment: &str,
    version: Option<&str>,
    operation: &str,
) -> (String, bool) {
    let base = base_url.trim_end_matches('/');
    if is_v1(base) {
        let mut path = String::from(operation);
        push_api_version(&mut path, version);
        return (path, true);
    }
    let version = version.unwrap_or(DEFAULT_API_VERSION);
    let prefix = if ends_with_ignore_case(base, "/openai") {
        ""
    } else {
        "/openai"
    };
    let mut path = format!("{prefix}/deployments/{}{operation}", encode(deployment));
    push_api_version(&mut path, Some(version));
    (path, accepts_stream_options(version))
}

// ---------------------------------------------------------------------------
// Request body
// ---------------------------------------------------------------------------

/// A non-chat JSON body with `model` set to the deployment (the v1 API routes
/// by it; deployment URLs ignore it), every other byte as sent.
fn model_rewritten(body: &[u8], model: &str) -> Result<Bytes, ApiError> {
    let peek = peek_request(body, Requirements::MODEL_ONLY)
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let encoded = serde_json::to_string(model)
        .map_err(|e| internal(format!("could not encode the model name: {e}")))?;
    let mut out = Vec::with_capacity(body.len() + encoded.len());
    out.extend_from_slice(&body[..peek.model_span.0]);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(&body[peek.model_span.1..]);
    Ok(Bytes::from(out))
}

/// A multipart upload with its `model` field's content replaced.
fn multipart_with_model(body: &[u8], content_type: &str, model: &str) -> Result<Bytes, ApiError> {
    let malformed =
        |why: String| ApiError::invalid_request(format!("malformed multipart body: {why}"));
    let boundary = multipart::boundary(content_type)
        .ok_or_else(|| malformed("no boundary in the Content-Type".into()))?;
    let parts = multipart::parse(body, boundary).map_err(|e| malformed(e.to_string()))?;
    let model_part = parts.iter().find(|p| p.name == "model").ok_or_else(|| {
        ApiError::invalid_request("missing required parameter: `model`").with_param("model")
    })?;
    Ok(multipart::splice(
        &Bytes::copy_from_slice(body),
        model_part.span,
        model.as_bytes(),
    ))
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Internal, message)
}

/// `stream_options` as a present-or-absent field: a JSON `null` is "present".
#[derive(Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Where `inner` (a sub-slice of `outer`) starts in `outer`, if it is one.
fn offset_in(outer: &[u8], inner: &str) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (outer.get(start..end)? == inner.as_bytes()).then_some(start)
}

/// The client's body with `model` set to `model` and, when `want_usage`,
/// `stream_options.include_usage: true`. Every other byte is kept as sent.
fn request_body(body: &[u8], model: &str, want_usage: bool) -> Result<Bytes, ApiError> {
    let peek = peek_request(body, Requirements::CHAT).map_err(|e| {
        let err = ApiError::invalid_request(e.to_string());
        match e.param() {
            Some(p) => err.with_param(p),
            None => err,
        }
    })?;
    let encoded_model = serde_json::to_string(model)
        .map_err(|e| internal(format!("could not encode the model name: {e}")))?;
    // (start, end, replacement), non-overlapping.
    let mut edits: Vec<(usize, usize, String)> = Vec::with_capacity(2);
    edits.push((peek.model_span.0, peek.model_span.1, encoded_model));
    if want_usage && !peek.include_usage {
        let top: TopLevel<'_> = serde_json::from_slice(body).map_err(|e| {
            ApiError::invalid_request(format!("request body is not valid JSON: {e}"))
        })?;
        match top.stream_options {
            Some(raw) => {
                let start = offset_in(body, raw.get())
                    .ok_or_else(|| internal("could not locate `stream_options` in the body"))?;
                let mut opts = match serde_json::from_str::<Value>(raw.get()) {
                    Ok(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                opts.insert("include_usage".to_string(), Value::Bool(true));
                let text = serde_json::to_string(&opts)
                    .map_err(|e| internal(format!("could not encode stream_options: {e}")))?;
                edits.push((start, start + raw.get().len(), text));
            }
            None => {
                let open = body.iter().position(|b| *b == b'{').ok_or_else(|| {
                    ApiError::invalid_request("request body must be a JSON object")
                })?;
                let empty = body[open + 1..]
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b'}');
                let field = if empty {
                    r#""stream_options":{"include_usage":true}"#
                } else {
                    r#""stream_options":{"include_usage":true},"#
                };
                edits.push((open + 1, open + 1, field.to_string()));
            }
        }
    }
    edits.sort_by_key(|e| e.0);
    let extra: usize = edits.iter().map(|e| e.2.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    let mut at = 0;
    for (start, end, text) in &edits {
        if *start < at || *end < *start || *end > body.len() {
            return Err(internal("overlapping edits of the request body"));
        }
        out.extend_from_slice(&body[at..*start]);
        out.extend_from_slice(text.as_bytes());
        at = *end;
    }
    out.extend_from_slice(&body[at..]);
    Ok(Bytes::from(out))
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// What the adapter reads of an answer or a chunk: only whether it is JSON and
/// whether it is an error.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    error: Option<Value>,
}

/// A non-streaming answer is already OpenAI-shaped; it goes back as received.
fn pass_response(label: &str, body: &[u8]) -> Result<Bytes, ApiError> {
    match serde_json::from_slice::<Probe>(body) {
        Ok(Probe { error: Some(e) }) if !e.is_null() => Err(error_from_value(label, 200, &e)
            .unwrap_or_else(|| {
                bad_upstream(format!("{label}: the upstream answered 200 with an error"))
            })),
        Ok(_) => Ok(Bytes::copy_from_slice(body)),
        Err(_) => Err(bad_upstream(format!(
            "{label}: the upstream's answer is not a JSON object"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn kind_for_status(status: u16) -> (ErrorKind, Option<&'static str>) {
    match status {
        // The proxy's own key or deployment access is at fault, not the client's key.
        401 | 403 => (ErrorKind::BadGateway, Some("upstream_auth_failed")),
        404 => (ErrorKind::NotFound, None),
        408 | 504 => (ErrorKind::GatewayTimeout, Some("upstream_timeout")),
        413 => (ErrorKind::PayloadTooLarge, None),
        429 => (ErrorKind::RateLimited, Some("upstream_rate_limited")),
        503 => (ErrorKind::ServiceUnavailable, Some("upstream_unavailable")),
        400..=499 => (ErrorKind::InvalidRequest, None),
        _ => (ErrorKind::BadGateway, Some("upstream_error")),
    }
}

/// Azure's `code` as a string, unless it is only the HTTP status again (`"429"`).
fn meaningful_code(err: &Map<String, Value>) -> Option<String> {
    let code = match err.get("code")? {
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    (!code.is_empty() && !code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// "Please retry after 6 seconds." → 6.
fn retry_after_from_message(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("retry after ")?;
    let digits: String = lower[at + "retry after ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The categories a content filter flagged: `violence=medium, jailbreak`.
fn filtered_categories(inner: Option<&Value>) -> Option<String> {
    let results = inner?.get("content_filter_result")?.as_object()?;
    let flagged: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.get("filtered").and_then(Value::as_bool) == Some(true))
        .map(
            |(name, r)| match r.get("severity").and_then(Value::as_str) {
                Some(sev) => format!("{name}={sev}"),
                None => name.clone(),
            },
        )
        .collect();
    (!flagged.is_empty()).then(|| flagged.join(", "))
}

/// The status an error in a 200 stream stands for, from its `status` or `code`.
fn status_in_body(err: &Map<String, Value>) -> Option<u16> {
    let from = |v: &Value| match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    err.get("status")
        .and_then(from)
        .or_else(|| err.get("code").and_then(from))
        .filter(|s| (400..600).contains(s))
}

/// `error` is the value of a body's `error` field.
fn error_from_value(label: &str, status: u16, error: &Value) -> Option<ApiError> {
    let err = match error {
        Value::Object(m) => m,
        Value::String(s) => {
            let (kind, code) = kind_for_status(status);
            let e = ApiError::new(kind, format!("{label}: {s}"));
            return Some(match code {
                Some(c) => e.with_code(c),
                None => e,
            });
        }
        _ => return None,
    };
    let azure_code = meaningful_code(err);
    let content_filter = azure_code.as_deref() == Some("content_filter");
    let status = match status {
        200 if content_filter => 400,
        200 => status_in_body(err).unwrap_or(502),
        s => s,
    };
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .or(azure_code.as_deref())
        .unwrap_or("no message")
        .to_string();
    let (kind, our_code) = kind_for_status(status);
    if our_code == Some("upstream_auth_failed") {
        // Azure's text may name the resource; the client only needs to know the
        // proxy's credential is at fault.
        return Some(
            ApiError::new(
                kind,
                format!(
                    "{label}: the upstream rejected the proxy's credentials ({status}); the operator must check this model's api_key and base_url"
                ),
            )
            .with_code("upstream_auth_failed"),
        );
    }
    let mut text = format!("{label}: {message}");
    if content_filter {
        if let Some(flagged) = filtered_categories(err.get("innererror")) {
            text.push_str(&format!(" (filtered: {flagged})"));
        }
    }
    let mut e = ApiError::new(kind, text);
    // Client errors keep Azure's own code (`content_filter`,
    // `context_length_exceeded`, `DeploymentNotFound`, ...); others get ours.
    let code = match our_code {
        Some(c) => Some(c.to_string()),
        None => azure_code,
    };
    if let Some(c) = code {
        e = e.with_code(c);
    }
    if let Some(p) = err.get("param").and_then(Value::as_str) {
        e = e.with_param(p);
    }
    if status == 429 {
        if let Some(secs) = retry_after_from_message(&message) {
            e = e.with_retry_after(secs);
        }
    }
    Some(e)
}

fn translate_error(label: &str, status: u16, body: &[u8]) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(v) = &parsed {
        if let Some(e) = v
            .get("error")
            .and_then(|e| error_from_value(label, status, e))
        {
            return e;
        }
        // API Management's own envelope: {"statusCode": 401, "message": "..."}.
        if let Some(message) = v.get("message").and_then(Value::as_str) {
            let mut err = Map::new();
            err.insert("message".to_string(), Value::String(message.to_string()));
            if let Some(e) = error_from_value(label, status, &Value::Object(err)) {
                return e;
            }
        }
    }
    let (kind, code) = kind_for_status(status);
    if code == Some("upstream_auth_failed") {
        return ApiError::new(
            kind,
            format!("{label}: the upstream rejected the proxy's credentials ({status}); the operator must check this model's api_key and base_url"),
        )
        .with_code("upstream_auth_failed");
    }
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.trim().chars().take(200).collect();
    let detail = if snippet.is_empty() {
        "an empty body".to_string()
    } else {
        format!("a non-JSON body: {snippet}")
    };
    let message = format!("{label}: upstream returned HTTP {status} with {detail}");
    match status {
        // A gateway's HTML page still means "slow down" or "unavailable" on these.
        408 | 413 | 429 | 503 | 504 => {
            let e = ApiError::new(kind, message);
            match code {
                Some(c) => e.with_code(c),
                None => e,
            }
        }
        _ => ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_error"),
    }
}

// ---------------------------------------------------------------------------
// Streams: OpenAI SSE, forwarded event by event
// ---------------------------------------------------------------------------

/// Forwards Azure's OpenAI-format SSE unchanged, one `data:` event at a time,
/// and decides whether the stream finished: only `data: [DONE]` counts. An
/// `{"error":...}` event ends the stream with that error.
pub struct AzureStream {
    buf: Vec<u8>,
    /// `buf[..scanned]` holds no newline, so a long line fed in small pieces is
    /// scanned once.
    scanned: usize,
    events: Events,
}

/// The SSE event being read, and whether `[DONE]` has been seen.
struct Events {
    label: &'static str,
    data: Vec<u8>,
    has_data: bool,
    done: bool,
}

impl AzureStream {
    fn new(label: &'static str) -> Self {
        AzureStream {
            buf: Vec::new(),
            scanned: 0,
            events: Events {
                label,
                data: Vec::new(),
                has_data: false,
                done: false,
            },
        }
    }
}

impl Events {
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.dispatch(out);
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
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if !self.has_data {
            return Ok(());
        }
        self.has_data = false;
        let data = std::mem::take(&mut self.data);
        if self.done {
            // Nothing counts after the end marker.
            return Ok(());
        }
        if data.trim_ascii() == b"[DONE]" {
            self.done = true;
            out.extend_from_slice(DONE_FRAME);
            return Ok(());
        }
        match serde_json::from_slice::<Probe>(&data) {
            Ok(Probe { error: Some(e) }) if !e.is_null() => {
                Err(error_from_value(self.label, 200, &e).unwrap_or_else(|| {
                    bad_upstream(format!("{}: the stream carried an error event", self.label))
                }))
            }
            Ok(_) => {
                out.reserve(data.len() + 8);
                out.extend_from_slice(b"data: ");
                // A payload spread over several `data:` lines: the newlines sat
                // between JSON tokens, so spaces are equivalent and keep it one line.
                out.extend(data.iter().map(|b| if *b == b'\n' { b' ' } else { *b }));
                out.extend_from_slice(b"\n\n");
                Ok(())
            }
            Err(_) => Err(bad_upstream(format!(
                "{}: the stream carried an event that is not JSON",
                self.label
            ))),
        }
    }
}

impl StreamTranslator for AzureStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut from = self.scanned;
        let mut result = Ok(());
        while let Some(nl) = self.buf[from..].iter().position(|b| *b == b'\n') {
            let end = from + nl;
            result = self.events.line(&self.buf[start..end], out);
            start = end + 1;
            from = start;
            if result.is_err() {
                break;
            }
        }
        self.buf.drain(..start);
        // After an error the rest is unscanned; the stream is over anyway.
        self.scanned = if result.is_ok() { self.buf.len() } else { 0 };
        result
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if !self.buf.is_empty() {
            // The last line never got its newline.
            let rest = std::mem::take(&mut self.buf);
            self.scanned = 0;
            self.events.line(&rest, out)?;
        }
        self.events.dispatch(out)?;
        if self.events.done {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::BadGateway,
                format!(
                    "{}: the upstream closed the stream before it finished (no [DONE])",
                    self.events.label
                ),
            )
            .with_code("upstream_stream_truncated"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::adapters::ProviderOptions;
    use serde_json::json;

    const RESOURCE: &str = "https://contoso.openai.azure.com";

    fn endpoint_call(
        endpoint: Endpoint,
        body: &[u8],
        ct: Option<&str>,
        version: Option<&str>,
    ) -> UpstreamRequest {
        let options = ProviderOptions {
            api_version: version.map(str::to_string),
            ..Default::default()
        };
        AzureOpenAiAdapter
            .endpoint_request(
                &EndpointRequest {
                    endpoint,
                    body,
                    content_type: ct,
                },
                &ctx("emb-deploy", false),
                &UpstreamTarget {
                    base_url: RESOURCE,
                    options: &options,
                },
            )
            .unwrap()
    }

    #[test]
    fn embeddings_go_to_the_deployment_with_the_body_kept() {
        let body = br#"{"model":"az","input":["a","b"],"encoding_format":"base64"}"#;
        let req = endpoint_call(Endpoint::Embeddings, body, None, Some("2024-10-21"));
        assert_eq!(
            req.path,
            "/openai/deployments/emb-deploy/embeddings?api-version=2024-10-21"
        );
        assert_eq!(
            &req.body[..],
            br#"{"model":"emb-deploy","input":["a","b"],"encoding_format":"base64"}"#
        );
        assert!(req.content_type.is_none());
    }

    #[test]
    fn transcription_upload_keeps_its_form_with_the_model_replaced() {
        let ct = "multipart/form-data; boundary=zz";
        let body = b"--zz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\naz\r\n--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--zz--\r\n";
        let req = endpoint_call(Endpoint::AudioTranscriptions, body, Some(ct), None);
        assert_eq!(
            req.path,
            format!("/openai/deployments/emb-deploy/audio/transcriptions?api-version={DEFAULT_API_VERSION}")
        );
        assert_eq!(req.content_type.unwrap().to_str().unwrap(), ct);
        let parts = multipart::parse(&req.body, "zz").unwrap();
        assert_eq!(parts[0].text(&req.body), Some("emb-deploy"));
        assert_eq!(parts[1].data(&req.body), b"RIFF");
    }

    #[test]
    fn text_transcriptions_are_not_labelled_json() {
        let ct = "multipart/form-data; boundary=zz";
        let body = b"--zz\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\nsrt\r\n--zz--\r\n";
        let call = EndpointRequest {
            endpoint: Endpoint::AudioTranscriptions,
            body,
            content_type: Some(ct),
        };
        let out = AzureOpenAiAdapter
            .endpoint_response_for(
                &call,
                b"1\n00:00:00,000 --> 00:00:01,000\nhi\n",
                &ctx("d", false),
            )
            .unwrap();
        assert!(out.content_type.to_str().unwrap().starts_with("text/plain"));
        assert!(!AzureOpenAiAdapter.offers(Endpoint::Rerank));
    }

    fn ctx(model: &str, stream: bool) -> ChatContext<'_> {
        ChatContext {
            upstream_model: model,
            requested_model: "az",
            stream,
            include_usage: true,
        }
    }

    fn options(version: Option<&str>) -> ProviderOptions {
        ProviderOptions {
            api_version: version.map(str::to_string),
            ..ProviderOptions::default()
        }
    }

    fn azure(base: &str, version: Option<&str>, body: &str, stream: bool) -> UpstreamRequest {
        AzureOpenAiAdapter
            .chat_request_for(
                body.as_bytes(),
                &ctx("gpt-4o-prod", stream),
                &UpstreamTarget {
                    base_url: base,
                    options: &options(version),
                },
            )
            .unwrap()
    }

    fn foundry(base: &str, version: Option<&str>, body: &str, stream: bool) -> UpstreamRequest {
        AzureAiAdapter
            .chat_request_for(
                body.as_bytes(),
                &ctx("Mistral-Large-2411", stream),
                &UpstreamTarget {
                    base_url: base,
                    options: &options(version),
                },
            )
            .unwrap()
    }

    const HI: &str = r#"{"model":"az","messages":[{"role":"user","content":"hi"}]}"#;
    const HI_STREAM: &str =
        r#"{"model":"az","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

    fn body_str(req: &UpstreamRequest) -> &str {
        std::str::from_utf8(&req.body).unwrap()
    }

    // ----- URLs -----

    #[test]
    fn resource_root_gets_deployment_path_and_default_ga_version() {
        let req = azure(RESOURCE, None, HI, false);
        assert_eq!(req.method, Method::POST);
        assert_eq!(
            req.path,
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert!(req.headers.is_empty(), "auth is the gateway's `api-key`");
    }

    #[test]
    fn base_ending_in_openai_is_not_doubled() {
        for base in [
            "https://contoso.openai.azure.com/openai",
            "https://contoso.openai.azure.com/OpenAI/",
        ] {
            let req = azure(base, None, HI, false);
            assert_eq!(
                req.path, "/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
                "{base}"
            );
        }
    }

    #[test]
    fn api_version_comes_from_the_model_options() {
        let req = azure(RESOURCE, Some("2025-01-01-preview"), HI, false);
        assert_eq!(
            req.path,
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2025-01-01-preview"
        );
        // Blank means unset.
        let req = azure(RESOURCE, Some("  "), HI, false);
        assert!(
            req.path.ends_with("?api-version=2024-10-21"),
            "{}",
            req.path
        );
    }

    #[test]
    fn deployment_and_version_cannot_reshape_the_url() {
        let req = AzureOpenAiAdapter
            .chat_request_for(
                HI.as_bytes(),
                &ctx("my dep/../x?y", false),
                &UpstreamTarget {
                    base_url: RESOURCE,
                    options: &options(Some("2024-10-21&evil=1")),
                },
            )
            .unwrap();
        assert_eq!(
            req.path,
            "/openai/deployments/my%20dep%2F..%2Fx%3Fy/chat/completions?api-version=2024-10-21%26evil%3D1"
        );
    }

    #[test]
    fn v1_base_posts_chat_completions_with_the_deployment_as_model() {
        let req = azure(
            "https://contoso.openai.azure.com/openai/v1",
            None,
            HI,
            false,
        );
        assert_eq!(req.path, "/chat/completions");
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["model"], "gpt-4o-prod");
        let req = azure(
            "https://contoso.openai.azure.com/openai/v1/",
            Some("preview"),
            HI,
            false,
        );
        assert_eq!(req.path, "/chat/completions?api-version=preview");
    }

    #[test]
    fn request_without_target_uses_the_resource_layout() {
        let req = AzureOpenAiAdapter
            .chat_request(HI.as_bytes(), &ctx("d", false))
            .unwrap();
        assert_eq!(
            req.path,
            "/openai/deployments/d/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn foundry_models_endpoint_gets_inference_version_and_pass_through() {
        let req = foundry(
            "https://contoso.services.ai.azure.com/models",
            None,
            HI,
            false,
        );
        assert_eq!(req.path, "/chat/completions?api-version=2024-05-01-preview");
        assert_eq!(req.headers.len(), 1);
        assert_eq!(req.headers[0].0, "extra-parameters");
        assert_eq!(req.headers[0].1, "pass-through");
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["model"], "Mistral-Large-2411");

        let req = foundry(
            "https://contoso.services.ai.azure.com/models",
            Some("2025-04-01"),
            HI,
            false,
        );
        assert_eq!(req.path, "/chat/completions?api-version=2025-04-01");
        let req = foundry(
            "https://contoso.services.ai.azure.com/openai/v1",
            None,
            HI,
            false,
        );
        assert_eq!(req.path, "/chat/completions");
    }

    #[test]
    fn stream_options_cutoff_follows_the_dated_version() {
        assert!(accepts_stream_options("2024-10-21"));
        assert!(accepts_stream_options("2024-09-01-preview"));
        assert!(accepts_stream_options("2025-04-01-preview"));
        assert!(accepts_stream_options("preview"));
        assert!(!accepts_stream_options("2024-08-01-preview"));
        assert!(!accepts_stream_options("2024-06-01"));
        assert!(!accepts_stream_options("2023-05-15"));
    }

    // ----- body -----

    #[test]
    fn body_keeps_every_byte_but_the_model() {
        let body = r#"{ "messages" : [{"role":"user","content":[{"type":"text","text":"a\u00e9"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}}]}], "model":"az","temperature":0.70,"x_vendor":{"k":[1,2]} }"#;
        let req = azure(RESOURCE, None, body, false);
        assert_eq!(
            body_str(&req),
            body.replace(r#""model":"az""#, r#""model":"gpt-4o-prod""#)
        );
    }

    #[test]
    fn streams_ask_for_usage_on_versions_that_accept_it() {
        let req = azure(RESOURCE, None, HI_STREAM, true);
        assert_eq!(
            body_str(&req),
            r#"{"stream_options":{"include_usage":true},"model":"gpt-4o-prod","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        );
        let req = azure(
            "https://r.openai.azure.com/openai/v1",
            None,
            HI_STREAM,
            true,
        );
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn old_versions_and_non_streams_get_no_stream_options() {
        let req = azure(RESOURCE, Some("2024-06-01"), HI_STREAM, true);
        assert!(
            !body_str(&req).contains("stream_options"),
            "{}",
            body_str(&req)
        );
        let req = azure(RESOURCE, None, HI, false);
        assert!(!body_str(&req).contains("stream_options"));
    }

    #[test]
    fn client_stream_options_are_completed_not_duplicated() {
        let body = r#"{"model":"az","messages":[],"stream":true,"stream_options":{"include_obfuscation":false}}"#;
        let v: Value = serde_json::from_slice(&azure(RESOURCE, None, body, true).body).unwrap();
        assert_eq!(
            v["stream_options"],
            json!({"include_obfuscation": false, "include_usage": true})
        );
        let body = r#"{"model":"az","messages":[],"stream":true,"stream_options":null}"#;
        let req = azure(RESOURCE, None, body, true);
        assert_eq!(body_str(&req).matches("stream_options").count(), 1);
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        // Already asked for: untouched.
        let body =
            r#"{"model":"az","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
        let req = azure(RESOURCE, None, body, true);
        assert_eq!(body_str(&req), body.replace(r#""az""#, r#""gpt-4o-prod""#));
    }

    #[test]
    fn foundry_models_endpoint_never_gets_stream_options_added() {
        let req = foundry(
            "https://c.services.ai.azure.com/models",
            None,
            HI_STREAM,
            true,
        );
        assert_eq!(
            body_str(&req),
            HI_STREAM.replace(r#""az""#, r#""Mistral-Large-2411""#)
        );
    }

    #[test]
    fn malformed_body_is_a_400() {
        let err = AzureOpenAiAdapter
            .chat_request(b"{\"messages\":[]}", &ctx("d", false))
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.param.as_deref(), Some("model"));
    }

    // ----- responses -----

    const AZURE_ANSWER: &str = r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Hi!","refusal":null,"role":"assistant"}}],"created":1700000000,"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","object":"chat.completion","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"jailbreak":{"filtered":false,"detected":false}}}],"system_fingerprint":"fp_1","usage":{"completion_tokens":2,"prompt_tokens":1,"total_tokens":3}}"#;

    #[test]
    fn answers_pass_through_unchanged() {
        let out = AzureOpenAiAdapter
            .chat_response(AZURE_ANSWER.as_bytes(), &ctx("d", false))
            .unwrap();
        assert_eq!(&out[..], AZURE_ANSWER.as_bytes());
    }

    #[test]
    fn garbage_answer_is_a_502() {
        let err = AzureAiAdapter
            .chat_response(b"<html>oops</html>", &ctx("d", false))
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 502);
        assert_eq!(err.code.as_deref(), Some("upstream_invalid_response"));
    }

    // ----- streams -----

    const FILTER_CHUNK: &str = r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#;
    const DELTA_CHUNK: &str = r#"{"choices":[{"content_filter_results":{},"delta":{"content":"Hi","role":"assistant"},"finish_reason":null,"index":0}],"created":1,"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk"}"#;
    const STOP_CHUNK: &str = r#"{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"content_filter","index":0}],"created":1,"id":"chatcmpl-1","model":"gpt-4o","object":"chat.completion.chunk"}"#;

    fn azure_sse(done: bool) -> String {
        let mut s = String::new();
        for c in [FILTER_CHUNK, DELTA_CHUNK, STOP_CHUNK] {
            s.push_str(&format!("data: {c}\n\n"));
        }
        if done {
            s.push_str("data: [DONE]\n\n");
        }
        s
    }

    fn run(input: &[u8], piece: usize) -> (Vec<u8>, Result<(), ApiError>) {
        let mut t = AzureOpenAiAdapter.chat_stream(&ctx("d", true));
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            if let Err(e) = t.feed(chunk, &mut out) {
                return (out, Err(e));
            }
        }
        let end = t.finish(&mut out);
        (out, end)
    }

    #[test]
    fn stream_passes_through_at_any_chunk_boundary() {
        let input = azure_sse(true);
        for piece in [1, 3, 7, 64, input.len()] {
            let (out, end) = run(input.as_bytes(), piece);
            end.unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), input, "piece {piece}");
        }
    }

    #[test]
    fn crlf_framing_comments_and_split_data_lines_are_normalised() {
        let input = format!(
            ": keep-alive\r\n\r\ndata: {FILTER_CHUNK}\r\n\r\ndata: {{\"choices\":[],\r\ndata: \"id\":\"x\"}}\r\n\r\ndata: [DONE]\r\n\r\n"
        );
        let (out, end) = run(input.as_bytes(), 5);
        end.unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("data: {FILTER_CHUNK}\n\ndata: {{\"choices\":[], \"id\":\"x\"}}\n\ndata: [DONE]\n\n")
        );
    }

    #[test]
    fn stream_without_done_is_truncated() {
        let (out, end) = run(azure_sse(false).as_bytes(), 10);
        let err = end.unwrap_err();
        assert_eq!(err.status().as_u16(), 502);
        assert_eq!(err.code.as_deref(), Some("upstream_stream_truncated"));
        // What did arrive was forwarded, without a [DONE].
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(STOP_CHUNK));
        assert!(!text.contains("[DONE]"));
    }

    #[test]
    fn done_without_final_newline_still_counts() {
        let input = format!("data: {DELTA_CHUNK}\n\ndata: [DONE]");
        let (out, end) = run(input.as_bytes(), 4);
        end.unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn nothing_after_done_is_forwarded() {
        let input = format!("data: [DONE]\n\ndata: {DELTA_CHUNK}\n\n");
        let (out, end) = run(input.as_bytes(), 100);
        end.unwrap();
        assert_eq!(out, b"data: [DONE]\n\n");
    }

    #[test]
    fn error_event_ends_the_stream_with_its_meaning() {
        let input = format!(
            "data: {DELTA_CHUNK}\n\ndata: {{\"error\":{{\"code\":\"content_filter\",\"message\":\"The response was filtered\",\"status\":400,\"innererror\":{{\"code\":\"ResponsibleAIPolicyViolation\",\"content_filter_result\":{{\"violence\":{{\"filtered\":true,\"severity\":\"high\"}}}}}}}}}}\n\n"
        );
        let (out, end) = run(input.as_bytes(), 9);
        let err = end.unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert_eq!(err.code.as_deref(), Some("content_filter"));
        assert!(err.message.contains("violence=high"), "{}", err.message);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("data: {DELTA_CHUNK}\n\n")
        );

        let input = "data: {\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}\n\n";
        let err = run(input.as_bytes(), 100).1.unwrap_err();
        assert_eq!(err.status().as_u16(), 502);
        assert_eq!(err.code.as_deref(), Some("upstream_error"));
    }

    #[test]
    fn non_json_event_is_a_502() {
        let err = run(b"data: not json\n\n", 100).1.unwrap_err();
        assert_eq!(err.status().as_u16(), 502);
        assert_eq!(err.code.as_deref(), Some("upstream_invalid_response"));
    }

    #[test]
    fn empty_stream_is_truncated() {
        let err = run(b"", 1).1.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("upstream_stream_truncated"));
    }

    // ----- errors -----

    fn err(status: u16, body: &str) -> ApiError {
        AzureOpenAiAdapter.error(status, body.as_bytes())
    }

    #[test]
    fn rejected_key_is_the_operators_problem() {
        for status in [401, 403] {
            let e = err(
                status,
                r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#,
            );
            assert_eq!(e.status().as_u16(), 502);
            assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
            assert!(!e.message.contains("subscription key"), "{}", e.message);
        }
        let e = err(401, "");
        assert_eq!(e.status().as_u16(), 502);
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
    }

    #[test]
    fn rate_limit_keeps_429_and_reads_the_wait() {
        let e = err(
            429,
            r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#,
        );
        assert_eq!(e.status().as_u16(), 429);
        assert_eq!(e.code.as_deref(), Some("upstream_rate_limited"));
        assert_eq!(e.retry_after_secs, Some(6));
        assert!(e.message.starts_with("azure: Requests to"), "{}", e.message);
    }

    #[test]
    fn content_filter_stays_a_400_with_its_code() {
        let e = err(
            400,
            r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":true,"detected":true},"violence":{"filtered":true,"severity":"medium"}}}}}"#,
        );
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.code.as_deref(), Some("content_filter"));
        assert_eq!(e.param.as_deref(), Some("prompt"));
        assert!(e.message.contains("content management policy"));
        assert!(
            e.message
                .ends_with("(filtered: jailbreak, violence=medium)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn client_errors_keep_status_and_azure_code() {
        let e = err(
            404,
            r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
        );
        assert_eq!(e.status().as_u16(), 404);
        assert_eq!(e.code.as_deref(), Some("DeploymentNotFound"));
        let e = err(
            400,
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = err(
            400,
            r#"{"error":{"message":"Unrecognized request argument supplied: foo","type":"invalid_request_error","param":null,"code":null}}"#,
        );
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.code, None);
        assert_eq!(
            e.message,
            "azure: Unrecognized request argument supplied: foo"
        );
    }

    #[test]
    fn server_errors_become_gateway_errors() {
        let e = err(
            500,
            r#"{"error":{"code":"InternalServerError","message":"oops"}}"#,
        );
        assert_eq!(e.status().as_u16(), 502);
        assert_eq!(e.code.as_deref(), Some("upstream_error"));
        let e = err(
            503,
            r#"{"error":{"code":"ServiceUnavailable","message":"busy"}}"#,
        );
        assert_eq!(e.status().as_u16(), 503);
        assert_eq!(e.code.as_deref(), Some("upstream_unavailable"));
        let e = err(504, "<html>Gateway Timeout</html>");
        assert_eq!(e.status().as_u16(), 504);
        assert_eq!(e.code.as_deref(), Some("upstream_timeout"));
        let e = err(502, "<html>Bad Gateway</html>");
        assert_eq!(e.status().as_u16(), 502);
        assert!(e.message.contains("non-JSON body"), "{}", e.message);
    }

    #[test]
    fn api_management_envelope_is_understood() {
        let e = AzureAiAdapter.error(400, br#"{"statusCode":400,"message":"Invalid model name"}"#);
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.message, "azure_ai: Invalid model name");
    }
}
