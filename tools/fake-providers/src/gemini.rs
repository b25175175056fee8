//! A fake of Google's Gemini API (`generativelanguage.googleapis.com/v1beta`),
//! following the published REST reference:
//!
//! - `POST /v1beta/models/{model}:generateContent` answers one
//!   `GenerateContentResponse`.
//! - `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` answers
//!   `text/event-stream`, one `data: <GenerateContentResponse>` event per frame,
//!   separated by `\r\n\r\n`, with no terminator; the last frame carries
//!   `finishReason` and the full `usageMetadata`. Without `alt=sse` (or with
//!   `alt=json`) Google streams one JSON array of those objects; the fake sends
//!   the same array in one piece.
//! - The key goes in `x-goog-api-key` (or the `key` query parameter). No key is
//!   403 PERMISSION_DENIED, a wrong key 400 INVALID_ARGUMENT with reason
//!   `API_KEY_INVALID`, a bearer token instead of a key 401 UNAUTHENTICATED:
//!   what Google answers.
//! - Bodies are parsed as strictly as Google's proto-JSON parser: unknown field
//!   names are 400 `Unknown name "..."`, as are empty `contents`, roles other
//!   than `user`/`model`, parts without exactly one data field, function calls
//!   outside model turns, function responses outside user turns or without a
//!   name, non-text system instructions, and schema fields set in conflicting
//!   ways.
//! - Errors use Google's envelope `{"error":{"code","message","status"}}`.
//! - `:embedContent` and `:batchEmbedContents` are the [`embed`] module's.
//!
//! Answers are deterministic: a `functionCall` of the first allowed function
//! when the request declares functions (mode not NONE) and the last turn is user
//! text, otherwise text that quotes the last user text.

pub mod embed;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::{bind_local, query_param, FaultQueue, Recorder, Server};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The parsed JSON body; `Value::Null` when the body was not JSON.
    pub body: Value,
}

/// A documented failure to answer the next generate request with (after the
/// key check, which always comes first, as at Google).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeminiFault {
    /// 400 INVALID_ARGUMENT.
    InvalidArgument,
    /// 400 INVALID_ARGUMENT with reason API_KEY_INVALID, as for a revoked key.
    ApiKeyInvalid,
    /// 403 PERMISSION_DENIED.
    PermissionDenied,
    /// 404 NOT_FOUND.
    NotFound,
    /// 429 RESOURCE_EXHAUSTED with a `RetryInfo` detail of 2 s.
    ResourceExhausted,
    /// 500 INTERNAL.
    Internal,
    /// 503 UNAVAILABLE ("The model is overloaded").
    Unavailable,
    /// 504 DEADLINE_EXCEEDED.
    DeadlineExceeded,
    /// 200 with `promptFeedback.blockReason: SAFETY` and no candidates.
    PromptBlocked,
    /// Streams: every frame but the last (the one with `finishReason`), then a
    /// clean end of body. Non-streams: the JSON body cut in half.
    Truncated,
    /// Streams: the first frame, then an `{"error":...}` frame (503
    /// UNAVAILABLE). Non-streams: a plain 503.
    ErrorMidStream,
}

struct Shared {
    api_key: String,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<GeminiFault>,
    responses: AtomicU64,
}

/// A running fake. Dropping it stops the listener.
pub struct FakeGemini {
    shared: Arc<Shared>,
    server: Server,
}

/// Starts a fake on `127.0.0.1:<free port>` that accepts `api_key`.
pub async fn start(api_key: &str) -> std::io::Result<FakeGemini> {
    let listener = bind_local().await?;
    start_on(listener, api_key).await
}

/// Serves on a listener the caller bound (the `fake-providers` binary binds the
/// address it was given). Besides the Gemini API, every fake answers
/// `GET /__requests` with what it recorded, as a JSON array of
/// `{method, path, query, headers, body}`, for tests in another process.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeGemini> {
    let shared = Arc::new(Shared {
        api_key: api_key.to_string(),
        requests: Recorder::new(),
        faults: FaultQueue::new(),
        responses: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1beta/models/{target}", post(generate))
        .route("/__requests", axum::routing::get(recorded))
        .fallback(not_found)
        .with_state(shared.clone());
    let server = Server::spawn(listener, app)?;
    Ok(FakeGemini { shared, server })
}

impl FakeGemini {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The base URL a client appends `/models/...` to.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr())
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// Answer the next generate request with `fault`; several calls queue up.
    pub fn fail_next(&self, fault: GeminiFault) {
        self.shared.faults.push(fault);
    }
}

// ------------------------------------------------------------------ errors

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

pub(crate) fn error_body(code: u16, message: &str, details: Option<Value>) -> Value {
    let mut err = json!({ "code": code, "message": message, "status": status_name(code) });
    if let Some(d) = details {
        err["details"] = d;
    }
    json!({ "error": err })
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

pub(crate) fn error(code: u16, message: &str) -> Response {
    error_with(code, message, None)
}

pub(crate) fn error_with(code: u16, message: &str, details: Option<Value>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &error_body(code, message, details))
}

fn invalid(message: impl Into<String>) -> Response {
    error(400, &message.into())
}

fn fault_response(fault: GeminiFault) -> Option<Response> {
    Some(match fault {
        GeminiFault::InvalidArgument => error(400, "Request contains an invalid argument."),
        GeminiFault::ApiKeyInvalid => key_invalid(),
        GeminiFault::PermissionDenied => error(
            403,
            "The caller does not have permission",
        ),
        GeminiFault::NotFound => error(404, "Requested entity was not found."),
        GeminiFault::ResourceExhausted => error_with(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            Some(json!([{
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": "2s",
            }])),
        ),
        GeminiFault::Internal => error(500, "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
        GeminiFault::Unavailable | GeminiFault::ErrorMidStream => {
            error(503, "The model is overloaded. Please try again later.")
        }
        GeminiFault::DeadlineExceeded => error(504, "Deadline expired before operation could complete."),
        GeminiFault::PromptBlocked | GeminiFault::Truncated => return None,
    })
}

fn key_invalid() -> Response {
    error_with(
        400,
        "API key not valid. Please pass a valid API key.",
        Some(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": { "service": "generativelanguage.googleapis.com" },
        }])),
    )
}

// ---------------------------------------------------------------- handlers

fn record(s: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
    s.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    });
}

impl RecordedRequest {
    /// `{method, path, query, headers, body}`; repeated headers are joined
    /// with `, `.
    pub fn to_json(&self) -> Value {
        crate::common::request_json(
            &self.method,
            &self.path,
            self.query.as_deref(),
            &self.headers,
            &self.body,
        )
    }
}

/// `GET /__requests`: everything recorded so far, oldest first.
async fn recorded(State(s): State<Arc<Shared>>) -> Response {
    let all = s.requests.to_json(RecordedRequest::to_json);
    json_response(StatusCode::OK, &all)
}

async fn not_found(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&s, &method, &uri, &headers, &body);
    error(404, "Requested entity was not found.")
}

fn check_key(s: &Shared, headers: &HeaderMap, query: Option<&str>) -> Option<Response> {
    let presented = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_param(query, "key"));
    match presented {
        Some(k) if k == s.api_key => None,
        Some(_) => Some(key_invalid()),
        None if headers.contains_key("authorization") => Some(error_with(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            Some(json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                "domain": "googleapis.com",
            }])),
        )),
        None => Some(error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        )),
    }
}

pub(crate) fn known_model(model: &str) -> bool {
    (model.starts_with("gemini-") || model.starts_with("gemma-"))
        && model
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

async fn generate(
    State(s): State<Arc<Shared>>,
    Path(target): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&s, &method, &uri, &headers, &body);
    if let Some(resp) = check_key(&s, &headers, query.as_deref()) {
        return resp;
    }
    let (model, action) = match target.split_once(':') {
        Some(pair) => pair,
        None => return error(404, "Requested entity was not found."),
    };
    if matches!(action, "embedContent" | "batchEmbedContents") {
        return embed::handle(&s, model, action, &body);
    }
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return error(404, "Requested entity was not found."),
    };
    if !known_model(model) {
        return error(
            404,
            &format!(
                "models/{model} is not found for API version v1beta, or is not supported for {action}. Call ListModels to see the list of available models and their supported methods."
            ),
        );
    }
    let sse = match query_param(query.as_deref(), "alt") {
        None | Some("json") => false,
        Some("sse") => true,
        Some(other) => {
            return invalid(format!(
            "Invalid value at 'alt' (type.googleapis.com/google.api.SystemParameter), \"{other}\""
        ))
        }
    };
    let fault = s.faults.pop();
    if let Some(resp) = fault.and_then(fault_response) {
        return resp;
    }

    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return invalid(format!(
                "Invalid JSON payload received. Unexpected token.\n{}\n^",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            ))
        }
    };
    if let Err(message) = validate(&req) {
        return invalid(message);
    }

    let n = s.responses.fetch_add(1, Ordering::Relaxed);
    let response_id = format!("fake-gemini-{n}");
    if fault == Some(GeminiFault::PromptBlocked) {
        let blocked = json!({
            "promptFeedback": { "blockReason": "SAFETY", "safetyRatings": [] },
            "usageMetadata": { "promptTokenCount": prompt_tokens(&req), "totalTokenCount": prompt_tokens(&req) },
            "modelVersion": model,
            "responseId": response_id,
        });
        return if stream && sse {
            sse_response(vec![blocked])
        } else if stream {
            json_response(StatusCode::OK, &Value::Array(vec![blocked]))
        } else {
            json_response(StatusCode::OK, &blocked)
        };
    }

    let answer = Answer::for_request(&req);
    if !stream {
        let full = answer.response(model, &response_id);
        if fault == Some(GeminiFault::Truncated) {
            let text = full.to_string();
            let half = text.len() / 2;
            let mut resp = (StatusCode::OK, text[..half].to_string()).into_response();
            resp.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/json; charset=UTF-8"),
            );
            return resp;
        }
        return json_response(StatusCode::OK, &full);
    }
    let mut frames = answer.frames(model, &response_id);
    match fault {
        Some(GeminiFault::Truncated) => {
            frames.pop();
        }
        Some(GeminiFault::ErrorMidStream) if sse => {
            frames.truncate(1);
            frames.push(error_body(
                503,
                "The model is overloaded. Please try again later.",
                None,
            ));
        }
        _ => {}
    }
    if sse {
        sse_response(frames)
    } else {
        json_response(StatusCode::OK, &Value::Array(frames))
    }
}

pub(crate) fn sse_response(frames: Vec<Value>) -> Response {
    let chunks = frames
        .into_iter()
        .map(|f| Ok::<_, Infallible>(Bytes::from(format!("data: {f}\r\n\r\n"))));
    let mut resp = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

// -------------------------------------------------------------- validation

/// Google's proto-JSON parser accepts field names in lowerCamelCase or in the
/// proto's snake_case; both spell the same field.
/// A validation failure: the message of Google's 400 INVALID_ARGUMENT answer.
fn bad(message: impl Into<String>) -> String {
    message.into()
}

fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn get<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| camel(k) == field).map(|(_, v)| v)
}

fn known_fields(obj: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), String> {
    for key in obj.keys() {
        if !known.contains(&camel(key).as_str()) {
            let place = if at.is_empty() {
                String::new()
            } else {
                format!(" at '{at}'")
            };
            return Err(bad(format!(
                "Invalid JSON payload received. Unknown name \"{key}\"{place}: Cannot find field."
            )));
        }
    }
    Ok(())
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| {
        bad(format!(
            "Invalid JSON payload received. Invalid value at '{at}': expected an object."
        ))
    })
}

pub(crate) fn validate(req: &Value) -> Result<(), String> {
    let req = object(req, "")?;
    known_fields(
        req,
        "",
        &[
            "contents",
            "systemInstruction",
            "tools",
            "toolConfig",
            "safetySettings",
            "generationConfig",
            "cachedContent",
            "model",
        ],
    )?;
    let contents = get(req, "contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("* GenerateContentRequest.contents: contents is not specified\n"))?;
    for (i, content) in contents.iter().enumerate() {
        validate_content(content, &format!("contents[{i}]"), false)?;
    }
    if let Some(system) = get(req, "systemInstruction") {
        validate_content(system, "system_instruction", true)?;
    }
    if let Some(tools) = get(req, "tools") {
        validate_tools(tools)?;
    }
    if let Some(config) = get(req, "toolConfig") {
        validate_tool_config(config)?;
    }
    if let Some(config) = get(req, "generationConfig") {
        validate_generation_config(config)?;
    }
    Ok(())
}

fn validate_content(content: &Value, at: &str, system: bool) -> Result<(), String> {
    let obj = object(content, at)?;
    known_fields(obj, at, &["role", "parts"])?;
    let role = match get(obj, "role") {
        None => None,
        Some(Value::String(r)) => Some(r.as_str()),
        Some(_) => {
            return Err(bad(format!(
                "Invalid value at '{at}.role': expected a string."
            )))
        }
    };
    if !system && !matches!(role, Some("user") | Some("model") | None) {
        return Err(bad("Please use a valid role: user, model."));
    }
    let parts = get(obj, "parts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n"
            ))
        })?;
    for (k, part) in parts.iter().enumerate() {
        let part_at = format!("{at}.parts[{k}]");
        let part = object(part, &part_at)?;
        known_fields(
            part,
            &part_at,
            &[
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
                "executableCode",
                "codeExecutionResult",
                "thought",
                "thoughtSignature",
                "videoMetadata",
                "partMetadata",
                "mediaResolution",
            ],
        )?;
        let data: Vec<String> = part
            .keys()
            .map(|k| camel(k))
            .filter(|k| {
                matches!(
                    k.as_str(),
                    "text"
                        | "inlineData"
                        | "fileData"
                        | "functionCall"
                        | "functionResponse"
                        | "executableCode"
                        | "codeExecutionResult"
                )
            })
            .collect();
        match data.as_slice() {
            [] => {
                return Err(bad(format!(
                    "* GenerateContentRequest.{part_at}.data: required oneof field 'data' must have one initialized field\n"
                )))
            }
            [_] => {}
            [_, second, ..] => {
                return Err(bad(format!(
                    "Invalid value at '{part_at}' (oneof), oneof field 'data' is already set. Cannot set '{second}'"
                )))
            }
        }
        if system && data[0] != "text" {
            return Err(bad(format!(
                "* GenerateContentRequest.system_instruction: only text parts are supported, got {} at {part_at}\n",
                data[0]
            )));
        }
        match data[0].as_str() {
            "text" => match get(part, "text") {
                Some(Value::String(t)) if t.is_empty() => {
                    return Err(bad(
                        "Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again.",
                    ))
                }
                Some(Value::String(_)) => {}
                _ => return Err(bad(format!("Invalid value at '{part_at}.text' (TYPE_STRING)"))),
            },
            "inlineData" => {
                let blob = object(get(part, "inlineData").unwrap_or(&Value::Null), &format!("{part_at}.inline_data"))?;
                known_fields(blob, &format!("{part_at}.inline_data"), &["mimeType", "data"])?;
                let mime = get(blob, "mimeType").and_then(Value::as_str).unwrap_or("");
                if mime.is_empty() {
                    return Err(bad(format!(
                        "* GenerateContentRequest.{part_at}.inline_data.mime_type: mime_type must be specified\n"
                    )));
                }
                let data = get(blob, "data").and_then(Value::as_str).unwrap_or("");
                if !is_base64(data) {
                    return Err(bad(format!(
                        "Invalid value at '{part_at}.inline_data.data' (TYPE_BYTES), Base64 decoding failed for \"{}\"",
                        &data[..data.len().min(20)]
                    )));
                }
            }
            "fileData" => {
                let file = object(get(part, "fileData").unwrap_or(&Value::Null), &format!("{part_at}.file_data"))?;
                known_fields(file, &format!("{part_at}.file_data"), &["mimeType", "fileUri"])?;
                if get(file, "fileUri").and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(bad(format!(
                        "* GenerateContentRequest.{part_at}.file_data.file_uri: file_uri must be specified\n"
                    )));
                }
            }
            "functionCall" => {
                if role != Some("model") {
                    return Err(bad(format!(
                        "Please ensure that function call turns are model turns: {part_at} is in a `{}` turn.",
                        role.unwrap_or("user")
                    )));
                }
                let call = object(get(part, "functionCall").unwrap_or(&Value::Null), &format!("{part_at}.function_call"))?;
                known_fields(call, &format!("{part_at}.function_call"), &["id", "name", "args"])?;
                if get(call, "name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(bad(format!(
                        "* GenerateContentRequest.{part_at}.function_call.name: Name cannot be empty.\n"
                    )));
                }
                if get(call, "args").is_some_and(|a| !a.is_object()) {
                    return Err(bad(format!(
                        "Invalid value at '{part_at}.function_call.args' (type.googleapis.com/google.protobuf.Struct)"
                    )));
                }
            }
            "functionResponse" => {
                if role == Some("model") {
                    return Err(bad(format!(
                        "Please ensure that function response turns are user turns: {part_at} is in a `model` turn."
                    )));
                }
                let resp = object(get(part, "functionResponse").unwrap_or(&Value::Null), &format!("{part_at}.function_response"))?;
                known_fields(
                    resp,
                    &format!("{part_at}.function_response"),
                    &["id", "name", "response", "parts", "willContinue", "scheduling"],
                )?;
                if get(resp, "name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(bad(format!(
                        "* GenerateContentRequest.{part_at}.function_response.name: Name cannot be empty.\n"
                    )));
                }
                if !get(resp, "response").is_some_and(Value::is_object) {
                    return Err(bad(format!(
                        "* GenerateContentRequest.{part_at}.function_response.response: response must be an object\n"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
}

fn valid_function_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn validate_tools(tools: &Value) -> Result<(), String> {
    let tools = tools
        .as_array()
        .ok_or_else(|| bad("Invalid value at 'tools': expected a list."))?;
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let tool = object(tool, &at)?;
        known_fields(
            tool,
            &at,
            &[
                "functionDeclarations",
                "googleSearchRetrieval",
                "codeExecution",
                "googleSearch",
                "urlContext",
                "computerUse",
                "fileSearch",
                "googleMaps",
            ],
        )?;
        let Some(decls) = get(tool, "functionDeclarations") else {
            continue;
        };
        let decls = decls.as_array().ok_or_else(|| {
            bad(format!(
                "Invalid value at '{at}.function_declarations': expected a list."
            ))
        })?;
        for (j, decl) in decls.iter().enumerate() {
            let decl_at = format!("{at}.function_declarations[{j}]");
            let decl = object(decl, &decl_at)?;
            known_fields(
                decl,
                &decl_at,
                &[
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                    "behavior",
                ],
            )?;
            let name = get(decl, "name").and_then(Value::as_str).unwrap_or("");
            if !valid_function_name(name) {
                return Err(bad(format!(
                    "* GenerateContentRequest.{decl_at}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.\n"
                )));
            }
            if get(decl, "parameters").is_some() && get(decl, "parametersJsonSchema").is_some() {
                return Err(bad(format!(
                    "* GenerateContentRequest.{decl_at}: parameters and parameters_json_schema are mutually exclusive\n"
                )));
            }
            if let Some(schema) = get(decl, "parametersJsonSchema") {
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(bad(format!(
                        "* GenerateContentRequest.{decl_at}.parameters_json_schema: the schema must describe an object\n"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn validate_tool_config(config: &Value) -> Result<(), String> {
    let config = object(config, "tool_config")?;
    known_fields(
        config,
        "tool_config",
        &["functionCallingConfig", "retrievalConfig"],
    )?;
    let Some(fcc) = get(config, "functionCallingConfig") else {
        return Ok(());
    };
    let fcc = object(fcc, "tool_config.function_calling_config")?;
    known_fields(
        fcc,
        "tool_config.function_calling_config",
        &["mode", "allowedFunctionNames"],
    )?;
    let mode = get(fcc, "mode")
        .and_then(Value::as_str)
        .unwrap_or("MODE_UNSPECIFIED");
    if !matches!(
        mode,
        "MODE_UNSPECIFIED" | "AUTO" | "ANY" | "NONE" | "VALIDATED"
    ) {
        return Err(bad(format!(
            "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\""
        )));
    }
    if get(fcc, "allowedFunctionNames").is_some() && !matches!(mode, "ANY" | "VALIDATED") {
        return Err(bad(
            "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: allowed_function_names should only be set when the Mode is ANY.\n",
        ));
    }
    Ok(())
}

fn validate_generation_config(config: &Value) -> Result<(), String> {
    let config = object(config, "generation_config")?;
    known_fields(
        config,
        "generation_config",
        &[
            "stopSequences",
            "responseMimeType",
            "responseSchema",
            "responseJsonSchema",
            "responseModalities",
            "candidateCount",
            "maxOutputTokens",
            "temperature",
            "topP",
            "topK",
            "seed",
            "presencePenalty",
            "frequencyPenalty",
            "responseLogprobs",
            "logprobs",
            "enableEnhancedCivicAnswers",
            "speechConfig",
            "thinkingConfig",
            "imageConfig",
            "mediaResolution",
        ],
    )?;
    let mime = get(config, "responseMimeType").and_then(Value::as_str);
    if let Some(m) = mime {
        if !matches!(m, "text/plain" | "application/json" | "text/x.enum") {
            return Err(bad(format!(
                "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are `text/plain`, `application/json`, and `text/x.enum`, got {m}.\n"
            )));
        }
    }
    let schema = get(config, "responseSchema").is_some();
    let json_schema = get(config, "responseJsonSchema").is_some();
    if schema && json_schema {
        return Err(bad(
            "* GenerateContentRequest.generation_config: response_schema and response_json_schema are mutually exclusive\n",
        ));
    }
    if (schema || json_schema) && mime != Some("application/json") && mime != Some("text/x.enum") {
        return Err(bad(
            "* GenerateContentRequest.generation_config.response_mime_type: a response schema needs response_mime_type application/json\n",
        ));
    }
    if let Some(t) = get(config, "temperature").and_then(Value::as_f64) {
        if !(0.0..=2.0).contains(&t) {
            return Err(bad(
                "* GenerateContentRequest.generation_config.temperature: temperature must be between 0 and 2\n",
            ));
        }
    }
    if let Some(n) = get(config, "candidateCount") {
        if !n.as_u64().is_some_and(|n| (1..=8).contains(&n)) {
            return Err(bad(
                "* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8\n",
            ));
        }
    }
    if let Some(stop) = get(config, "stopSequences") {
        if !stop
            .as_array()
            .is_some_and(|s| s.len() <= 5 && s.iter().all(Value::is_string))
        {
            return Err(bad(
                "* GenerateContentRequest.generation_config.stop_sequences: at most 5 strings\n",
            ));
        }
    }
    if let Some(thinking) = get(config, "thinkingConfig") {
        let thinking = object(thinking, "generation_config.thinking_config")?;
        known_fields(
            thinking,
            "generation_config.thinking_config",
            &["includeThoughts", "thinkingBudget", "thinkingLevel"],
        )?;
    }
    Ok(())
}

// ------------------------------------------------------------------ answers

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// A deterministic stand-in for a tokenizer: words of text, one per media part.
fn prompt_tokens(req: &Value) -> u64 {
    let mut total = 0;
    let mut count_content = |c: &Value| {
        for part in c["parts"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            total += match part.get("text").and_then(Value::as_str) {
                Some(t) => words(t),
                None => 1,
            };
        }
    };
    if let Some(system) = req.get("systemInstruction") {
        count_content(system);
    }
    for c in req["contents"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        count_content(c);
    }
    total.max(1)
}

enum Reply {
    Text(String),
    Call { name: String, args: Value },
}

pub(crate) struct Answer {
    reply: Reply,
    thought: Option<String>,
    candidates: u64,
    prompt_tokens: u64,
    max_tokens: Option<u64>,
}

impl Answer {
    pub(crate) fn for_request(req: &Value) -> Answer {
        let config = &req["generationConfig"];
        let thought = config["thinkingConfig"]["includeThoughts"]
            .as_bool()
            .unwrap_or(false)
            .then(|| "Thinking about the request.".to_string());
        let contents = req["contents"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let last = contents.last().unwrap_or(&Value::Null);
        let last_parts = last["parts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let last_text: Vec<&str> = last_parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        let responses: Vec<&Value> = last_parts
            .iter()
            .filter_map(|p| p.get("functionResponse"))
            .collect();
        let media: Vec<&str> = last_parts
            .iter()
            .filter_map(|p| {
                p.get("inlineData")
                    .or_else(|| p.get("fileData"))
                    .and_then(|d| d["mimeType"].as_str())
            })
            .collect();

        let mode = req["toolConfig"]["functionCallingConfig"]["mode"]
            .as_str()
            .unwrap_or("AUTO");
        let allowed: Vec<&str> = req["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let declarations: Vec<&Value> = req["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["functionDeclarations"].as_array())
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        let callable = declarations.iter().find(|d| {
            allowed.is_empty() || d["name"].as_str().is_some_and(|n| allowed.contains(&n))
        });

        let user_text_last = last["role"].as_str().unwrap_or("user") == "user"
            && !last_text.is_empty()
            && responses.is_empty();
        let reply = match callable {
            Some(decl) if mode != "NONE" && user_text_last => Reply::Call {
                name: decl["name"].as_str().unwrap_or("f").to_string(),
                args: example_args(
                    decl.get("parametersJsonSchema")
                        .or_else(|| decl.get("parameters"))
                        .unwrap_or(&Value::Null),
                ),
            },
            _ => {
                let mut text = if let Some(r) = responses.first() {
                    format!(
                        "The function {} returned {}.",
                        r["name"].as_str().unwrap_or("?"),
                        r["response"]
                    )
                } else {
                    format!("Hello from fake Gemini. You said: {}", last_text.join(" "))
                };
                if !media.is_empty() {
                    text.push_str(&format!(
                        " I also got {} file(s): {}.",
                        media.len(),
                        media.join(", ")
                    ));
                }
                if config["responseMimeType"] == "application/json" {
                    text = json!({ "answer": text }).to_string();
                }
                Reply::Text(text)
            }
        };
        Answer {
            reply,
            thought,
            candidates: config["candidateCount"].as_u64().unwrap_or(1),
            prompt_tokens: prompt_tokens(req),
            max_tokens: config["maxOutputTokens"].as_u64(),
        }
    }

    /// The text after `maxOutputTokens`, and whether that limit cut it.
    fn text(&self) -> Option<(String, bool)> {
        let Reply::Text(text) = &self.reply else {
            return None;
        };
        match self.max_tokens {
            Some(max) if words(text) > max => {
                let cut: Vec<&str> = text.split_whitespace().take(max as usize).collect();
                Some((cut.join(" "), true))
            }
            _ => Some((text.clone(), false)),
        }
    }

    fn output_tokens(&self) -> u64 {
        match (&self.reply, self.text()) {
            (_, Some((t, _))) => words(&t).max(1),
            (Reply::Call { args, .. }, None) => 3 + args.as_object().map_or(0, |a| a.len() as u64),
            _ => 1,
        }
    }

    fn thought_tokens(&self) -> u64 {
        self.thought.as_deref().map_or(0, words)
    }

    fn finish_reason(&self) -> &'static str {
        match self.text() {
            Some((_, true)) => "MAX_TOKENS",
            _ => "STOP",
        }
    }

    fn usage(&self, complete: bool) -> Value {
        let n = self.candidates;
        let mut u = json!({
            "promptTokenCount": self.prompt_tokens,
            "totalTokenCount": self.prompt_tokens,
            "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": self.prompt_tokens }],
        });
        if complete {
            let out = self.output_tokens() * n;
            let thoughts = self.thought_tokens() * n;
            u["candidatesTokenCount"] = json!(out);
            u["totalTokenCount"] = json!(self.prompt_tokens + out + thoughts);
            if thoughts > 0 {
                u["thoughtsTokenCount"] = json!(thoughts);
            }
        }
        u
    }

    fn call_part(&self) -> Option<Value> {
        match &self.reply {
            Reply::Call { name, args } => {
                Some(json!({ "functionCall": { "name": name, "args": args } }))
            }
            Reply::Text(_) => None,
        }
    }

    fn candidates_with(&self, parts: &[Value], finish: Option<&str>) -> Value {
        let cands: Vec<Value> = (0..self.candidates)
            .map(|i| {
                let mut c = json!({ "content": { "parts": parts, "role": "model" }, "index": i });
                if let Some(f) = finish {
                    c["finishReason"] = json!(f);
                }
                c
            })
            .collect();
        Value::Array(cands)
    }

    pub(crate) fn response(&self, model: &str, id: &str) -> Value {
        let mut parts = Vec::new();
        if let Some(t) = &self.thought {
            parts.push(json!({ "text": t, "thought": true }));
        }
        if let Some((text, _)) = self.text() {
            parts.push(json!({ "text": text }));
        }
        parts.extend(self.call_part());
        json!({
            "candidates": self.candidates_with(&parts, Some(self.finish_reason())),
            "usageMetadata": self.usage(true),
            "modelVersion": model,
            "responseId": id,
        })
    }

    /// Stream frames: the thought, then the text in three pieces (or the call),
    /// the last one with `finishReason` and the complete usage.
    pub(crate) fn frames(&self, model: &str, id: &str) -> Vec<Value> {
        let mut pieces: Vec<Vec<Value>> = Vec::new();
        if let Some(t) = &self.thought {
            pieces.push(vec![json!({ "text": t, "thought": true })]);
        }
        if let Some((text, _)) = self.text() {
            let ws: Vec<&str> = text.split_inclusive(' ').collect();
            let per = ws.len().div_ceil(3).max(1);
            for chunk in ws.chunks(per) {
                pieces.push(vec![json!({ "text": chunk.concat() })]);
            }
        }
        pieces.extend(self.call_part().map(|p| vec![p]));
        let last = pieces.len().saturating_sub(1);
        pieces
            .iter()
            .enumerate()
            .map(|(i, parts)| {
                let finish = (i == last).then(|| self.finish_reason());
                json!({
                    "candidates": self.candidates_with(parts, finish),
                    "usageMetadata": self.usage(i == last),
                    "modelVersion": model,
                    "responseId": id,
                })
            })
            .collect()
    }
}

/// Arguments that satisfy the required properties of a function's schema.
fn example_args(schema: &Value) -> Value {
    let mut args = Map::new();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in required {
        let prop = &schema["properties"][name];
        let ty = prop["type"]
            .as_str()
            .unwrap_or("string")
            .to_ascii_lowercase();
        let value = match ty.as_str() {
            "integer" | "number" => json!(1),
            "boolean" => json!(true),
            "array" => json!([]),
            "object" => json!({}),
            _ => match prop["enum"].as_array().and_then(|e| e.first()) {
                Some(first) => first.clone(),
                None => json!("fake"),
            },
        };
        args.insert(name.to_string(), value);
    }
    Value::Object(args)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const KEY: &str = "gm-key";

    fn client() -> reqwest_like::Client {
        reqwest_like::Client
    }

    /// A minimal HTTP/1.1 client over a raw socket, so the fake's tests need no
    /// extra dependencies.
    mod reqwest_like {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        pub struct Client;

        pub struct Reply {
            pub status: u16,
            pub headers: String,
            pub body: String,
        }

        impl Client {
            pub async fn post(
                &self,
                addr: std::net::SocketAddr,
                path: &str,
                headers: &[(&str, &str)],
                body: &str,
            ) -> Reply {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut req = format!(
                    "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    req.push_str(&format!("{k}: {v}\r\n"));
                }
                req.push_str("\r\n");
                req.push_str(body);
                s.write_all(req.as_bytes()).await.unwrap();
                let mut raw = Vec::new();
                s.read_to_end(&mut raw).await.unwrap();
                let raw = String::from_utf8(raw).unwrap();
                let (head, body) = raw.split_once("\r\n\r\n").unwrap();
                let status = head[9..12].parse().unwrap();
                let body = if head
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked")
                {
                    dechunk(body)
                } else {
                    body.to_string()
                };
                Reply {
                    status,
                    headers: head.to_string(),
                    body,
                }
            }
        }

        fn dechunk(mut s: &str) -> String {
            let mut out = String::new();
            loop {
                let (size, rest) = s.split_once("\r\n").unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                if n == 0 {
                    return out;
                }
                out.push_str(&rest[..n]);
                s = &rest[n + 2..];
            }
        }
    }

    fn body(v: Value) -> String {
        v.to_string()
    }

    async fn post(
        fake: &FakeGemini,
        path: &str,
        headers: &[(&str, &str)],
        v: Value,
    ) -> (u16, String, String) {
        let r = client().post(fake.addr(), path, headers, &body(v)).await;
        (r.status, r.headers, r.body)
    }

    fn hello() -> Value {
        json!({ "contents": [{ "role": "user", "parts": [{ "text": "Hi there" }] }] })
    }

    const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
    const STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

    #[tokio::test]
    async fn auth_is_checked_like_google() {
        let fake = start(KEY).await.unwrap();
        let (status, _, b) = post(&fake, GEN, &[], hello()).await;
        assert_eq!(status, 403);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
        let (status, _, b) = post(&fake, GEN, &[("x-goog-api-key", "wrong")], hello()).await;
        assert_eq!(status, 400);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID");
        let (status, _, _) = post(&fake, GEN, &[("authorization", "Bearer gm-key")], hello()).await;
        assert_eq!(status, 401);
        let (status, _, _) = post(&fake, &format!("{GEN}?key={KEY}"), &[], hello()).await;
        assert_eq!(status, 200);
        assert_eq!(fake.requests().len(), 4);
        assert_eq!(fake.requests()[3].query.as_deref(), Some("key=gm-key"));
    }

    #[tokio::test]
    async fn text_answer_has_the_documented_shape() {
        let fake = start(KEY).await.unwrap();
        let (status, headers, b) = post(&fake, GEN, &[("x-goog-api-key", KEY)], hello()).await;
        assert_eq!(status, 200, "{b}");
        assert!(headers.contains("application/json"));
        let v: Value = serde_json::from_str(&b).unwrap();
        let cand = &v["candidates"][0];
        assert_eq!(cand["content"]["role"], "model");
        assert_eq!(
            cand["content"]["parts"][0]["text"],
            "Hello from fake Gemini. You said: Hi there"
        );
        assert_eq!(cand["finishReason"], "STOP");
        assert_eq!(v["usageMetadata"]["promptTokenCount"], 2);
        assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 8);
        assert_eq!(v["usageMetadata"]["totalTokenCount"], 10);
        assert_eq!(v["modelVersion"], "gemini-2.5-flash");
        let req = &fake.requests()[0];
        assert_eq!(req.path, "/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(req.body, hello());
    }

    #[tokio::test]
    async fn sse_stream_frames_end_with_finish_reason_and_usage() {
        let fake = start(KEY).await.unwrap();
        let mut req = hello();
        req["generationConfig"] =
            json!({ "thinkingConfig": { "includeThoughts": true, "thinkingBudget": 1024 } });
        let (status, headers, b) = post(&fake, STREAM, &[("x-goog-api-key", KEY)], req).await;
        assert_eq!(status, 200, "{b}");
        assert!(headers.contains("text/event-stream"));
        assert!(b.ends_with("\r\n\r\n"));
        let frames: Vec<Value> = b
            .split("\r\n\r\n")
            .filter(|f| !f.is_empty())
            .map(|f| serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(frames.len(), 4);
        assert_eq!(
            frames[0]["candidates"][0]["content"]["parts"][0]["thought"],
            true
        );
        let text: String = frames[1..]
            .iter()
            .map(|f| {
                f["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(text, "Hello from fake Gemini. You said: Hi there");
        assert!(frames[..3]
            .iter()
            .all(|f| f["candidates"][0].get("finishReason").is_none()));
        assert_eq!(frames[3]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(frames[3]["usageMetadata"]["thoughtsTokenCount"], 4);

        // Without alt=sse: one JSON array.
        let (status, _, b) = post(
            &fake,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            &[("x-goog-api-key", KEY)],
            hello(),
        )
        .await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn function_call_when_tools_and_user_text() {
        let fake = start(KEY).await.unwrap();
        let mut req = hello();
        req["tools"] = json!([{ "functionDeclarations": [{
            "name": "get_weather",
            "parametersJsonSchema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
        }]}]);
        let (status, _, b) = post(&fake, GEN, &[("x-goog-api-key", KEY)], req.clone()).await;
        assert_eq!(status, 200, "{b}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["functionCall"],
            json!({ "name": "get_weather", "args": { "city": "fake" } })
        );
        // Mode NONE: text.
        req["toolConfig"] = json!({ "functionCallingConfig": { "mode": "NONE" } });
        let (_, _, b) = post(&fake, GEN, &[("x-goog-api-key", KEY)], req.clone()).await;
        assert!(b.contains("You said"), "{b}");
        // A function response turn gets text about it.
        let follow = json!({ "contents": [
            { "role": "user", "parts": [{ "text": "Weather?" }] },
            { "role": "model", "parts": [{ "functionCall": { "name": "get_weather", "args": { "city": "Oslo" } } }] },
            { "role": "user", "parts": [{ "functionResponse": { "name": "get_weather", "response": { "temp": 3 } } }] },
        ], "tools": req["tools"] });
        let (status, _, b) = post(&fake, GEN, &[("x-goog-api-key", KEY)], follow).await;
        assert_eq!(status, 200, "{b}");
        assert!(b.contains("The function get_weather returned"), "{b}");
    }

    #[tokio::test]
    async fn rejects_what_google_rejects() {
        let fake = start(KEY).await.unwrap();
        let h = [("x-goog-api-key", KEY)];
        for (bad, needle) in [
            (json!({ "contents": [] }), "contents is not specified"),
            (
                json!({ "contents": [{ "role": "system", "parts": [{ "text": "x" }] }] }),
                "valid role",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [] }] }),
                "must not be empty",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "image": "x" }] }] }),
                "Unknown name \"image\"",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "text": "" }] }] }),
                "empty text",
            ),
            (json!({ "messages": [] }), "Unknown name \"messages\""),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "text": "a", "inlineData": { "mimeType": "image/png", "data": "AA==" } }] }] }),
                "oneof",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "functionResponse": { "response": {} } }] }] }),
                "Name cannot be empty",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "functionCall": { "name": "f" } }] }] }),
                "model turns",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "text": "x" }] }], "systemInstruction": { "parts": [{ "inlineData": { "mimeType": "image/png", "data": "AA==" } }] } }),
                "only text",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "text": "x" }] }], "generationConfig": { "max_tokens": 5 } }),
                "Unknown name \"max_tokens\"",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "text": "x" }] }], "generationConfig": { "responseJsonSchema": { "type": "object" } } }),
                "application/json",
            ),
            (
                json!({ "contents": [{ "role": "user", "parts": [{ "text": "x" }] }], "toolConfig": { "functionCallingConfig": { "mode": "AUTO", "allowedFunctionNames": ["f"] } } }),
                "Mode is ANY",
            ),
        ] {
            let (status, _, b) = post(&fake, GEN, &h, bad.clone()).await;
            assert_eq!(status, 400, "{bad} -> {b}");
            let v: Value = serde_json::from_str(&b).unwrap();
            assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(needle), "{bad} -> {b}");
        }
        // snake_case field names are the same fields.
        let ok = json!({ "contents": [{ "role": "user", "parts": [{ "text": "x" }] }], "generation_config": { "max_output_tokens": 5 } });
        let (status, _, b) = post(&fake, GEN, &h, ok).await;
        assert_eq!(status, 200, "{b}");
        let (status, _, _) =
            post(&fake, "/v1beta/models/gpt-4o:generateContent", &h, hello()).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn faults_answer_the_next_request_once() {
        let fake = start(KEY).await.unwrap();
        let h = [("x-goog-api-key", KEY)];
        fake.fail_next(GeminiFault::ResourceExhausted);
        let (status, _, b) = post(&fake, GEN, &h, hello()).await;
        assert_eq!(status, 429);
        assert!(b.contains("RetryInfo"));
        let (status, _, _) = post(&fake, GEN, &h, hello()).await;
        assert_eq!(status, 200);

        fake.fail_next(GeminiFault::Truncated);
        let (status, _, b) = post(&fake, STREAM, &h, hello()).await;
        assert_eq!(status, 200);
        assert!(!b.contains("finishReason"), "{b}");

        fake.fail_next(GeminiFault::ErrorMidStream);
        let (_, _, b) = post(&fake, STREAM, &h, hello()).await;
        assert!(b.contains("\"UNAVAILABLE\""), "{b}");

        fake.fail_next(GeminiFault::PromptBlocked);
        let (status, _, b) = post(&fake, GEN, &h, hello()).await;
        assert_eq!(status, 200);
        assert!(b.contains("blockReason"), "{b}");
    }

    #[test]
    fn max_output_tokens_cuts_and_says_so() {
        let req = json!({ "contents": [{ "role": "user", "parts": [{ "text": "a b c" }] }], "generationConfig": { "maxOutputTokens": 2 } });
        let a = Answer::for_request(&req);
        let v = a.response("gemini-2.5-flash", "r");
        assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["text"],
            "Hello from"
        );
    }
}
