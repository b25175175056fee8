//! A fake of Azure OpenAI and of Azure AI Foundry's model inference endpoint,
//! written from Microsoft's REST references.
//!
//! - **Azure OpenAI, dated API**: `POST /openai/deployments/{deployment}/chat/completions?api-version=…`.
//!   The key goes in `api-key`: none is 401 "Access denied due to missing
//!   subscription key", a wrong one 401 "Access denied due to invalid
//!   subscription key or wrong API endpoint", a bearer token instead of a key
//!   401 "Unauthorized. Access token is missing, invalid…" (the fake knows no
//!   Entra tokens). No `api-version` is 404 "Resource not found"; one that is
//!   not `YYYY-MM-DD[-preview]` is 400 "API version not supported". An unknown
//!   deployment is 404 `DeploymentNotFound`. The body is checked like Azure
//!   does: unknown fields are 400 "Unrecognized request argument supplied"
//!   (`stream_options` counts as unknown before 2024-09-01), `stream_options`
//!   without `stream` is refused, messages need known roles and content shapes,
//!   tool messages a `tool_call_id`, and every assistant `tool_calls` id its
//!   `tool` answer.
//! - **Azure OpenAI, v1 API**: `POST /openai/v1/chat/completions`, same key
//!   rules, `api-version` optional (`preview`/`latest`), the deployment in the
//!   body's `model`.
//! - **Azure AI Foundry model inference**: `POST /models/chat/completions?api-version=…`
//!   with `api-key` (or `Authorization: Bearer <key>`), the model in the body
//!   (none is 400 `no_model_name`, an unknown one 400 `unknown_model`). Fields
//!   outside the inference schema are 400 unless the `extra-parameters` header
//!   is `pass-through` or `drop`.
//!
//! Answers are OpenAI-shaped with Azure's additions: `prompt_filter_results`
//! and per-choice `content_filter_results` (Azure OpenAI), and streams whose
//! first event has empty `choices` and only `prompt_filter_results`, `data:`
//! events separated by blank lines, ending with `data: [DONE]`; the usage chunk
//! comes only when `stream_options.include_usage` asks for it (Foundry puts
//! usage on its last chunk). Replies are deterministic: a tool call of the first
//! (or the forced) tool when tools are offered and the last message is from the
//! user, text acknowledging a tool result after a `tool` message, otherwise text
//! quoting the last user text and counting its images. A user text containing
//! `trigger-content-filter` gets Azure's 400 `content_filter` answer;
//! `trigger-output-filter` ends the answer with `finish_reason: content_filter`.
//!
//! `GET /__requests` returns what the fake received, as a JSON array of
//! `{method, path, query, headers, body}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::{bind_local, query_param, FaultQueue, Recorder, Server};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// Deployments of the fake Azure OpenAI resource: name → model it serves.
pub const DEPLOYMENTS: &[(&str, &str)] = &[
    ("gpt-4o-prod", "gpt-4o-2024-08-06"),
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("embed-prod", "text-embedding-3-small"),
    ("whisper-prod", "whisper"),
];

/// Models deployed on the fake Foundry resource's `/models` endpoint.
pub const FOUNDRY_MODELS: &[&str] = &["Mistral-Large-2411", "Llama-3.3-70B-Instruct", "gpt-4o"];

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The parsed JSON body; `Value::Null` when the body was not JSON.
    pub body: Value,
    /// The body's bytes as they arrived.
    pub raw: Bytes,
}

/// A documented failure to answer the next chat request with (after the key,
/// api-version and deployment checks, which always come first, as at Azure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AzureFault {
    /// 429 with `Retry-After: 2` and Azure's "Please retry after 2 seconds."
    RateLimited,
    /// 400 `content_filter`: the prompt tripped the content filter.
    ContentFilter,
    /// 500 `InternalServerError`.
    Internal,
    /// 503 `ServiceUnavailable`.
    Unavailable,
    /// Streams: every event but `data: [DONE]`, then a clean end of body.
    /// Non-streams: the JSON body cut in half.
    Truncated,
    /// Streams: the first events, then an `{"error":...}` event and the end.
    /// Non-streams: a plain 500.
    ErrorMidStream,
}

/// Which API a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// Azure OpenAI's dated API, with the version.
    Dated,
    /// Azure OpenAI's v1 API.
    V1,
    /// Foundry model inference.
    Foundry,
}

struct Shared {
    api_key: String,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<AzureFault>,
    responses: AtomicU64,
}

/// A running fake. Dropping it stops the listener.
pub struct FakeAzure {
    shared: Arc<Shared>,
    server: Server,
}

/// Starts a fake on `127.0.0.1:<free port>` that accepts `api_key`.
pub async fn start(api_key: &str) -> std::io::Result<FakeAzure> {
    let listener = bind_local().await?;
    start_on(listener, api_key).await
}

/// Serves on a listener the caller bound.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeAzure> {
    let shared = Arc::new(Shared {
        api_key: api_key.to_string(),
        requests: Recorder::new(),
        faults: FaultQueue::new(),
        responses: AtomicU64::new(0),
    });
    let app = Router::new()
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(dated),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(embeddings),
        )
        .route(
            "/openai/deployments/{deployment}/audio/transcriptions",
            post(transcriptions),
        )
        .route("/openai/v1/chat/completions", post(v1))
        .route("/models/chat/completions", post(foundry))
        .route("/models/embeddings", post(foundry_embeddings))
        .route("/__requests", get(recorded))
        .fallback(not_found)
        .with_state(shared.clone());
    let server = Server::spawn(listener, app)?;
    Ok(FakeAzure { shared, server })
}

impl FakeAzure {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The resource endpoint (`https://<resource>.openai.azure.com`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Azure OpenAI's v1 API root (`…/openai/v1`).
    pub fn v1_base_url(&self) -> String {
        format!("http://{}/openai/v1", self.addr())
    }

    /// Foundry's model inference endpoint (`https://<resource>.services.ai.azure.com/models`).
    pub fn models_base_url(&self) -> String {
        format!("http://{}/models", self.addr())
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// Answer the next chat request with `fault`; several calls queue up.
    pub fn fail_next(&self, fault: AzureFault) {
        self.shared.faults.push(fault);
    }
}

// ------------------------------------------------------------------ errors

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

/// Azure's own envelope: `{"error":{"code","message"}}`.
fn azure_error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// The OpenAI-style envelope Azure uses for request validation errors.
fn invalid(message: impl Into<String>, param: Option<&str>) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {
            "message": message.into(),
            "type": "invalid_request_error",
            "param": param,
            "code": null,
        }}),
    )
}

fn resource_not_found() -> Response {
    azure_error(404, "404", "Resource not found")
}

fn content_filter_result(flagged: bool) -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({
        "hate": safe,
        "jailbreak": {"filtered": false, "detected": false},
        "self_harm": safe,
        "sexual": safe,
        "violence": if flagged { json!({"filtered": true, "severity": "medium"}) } else { safe.clone() },
    })
}

fn content_filter_error() -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": null,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": content_filter_result(true),
            },
        }}),
    )
}

const RATE_LIMIT_MESSAGE: &str = "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.";

fn fault_response(fault: AzureFault) -> Option<Response> {
    Some(match fault {
        AzureFault::RateLimited => {
            let mut resp = azure_error(429, "429", RATE_LIMIT_MESSAGE);
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("2"));
            resp
        }
        AzureFault::ContentFilter => content_filter_error(),
        AzureFault::Internal | AzureFault::ErrorMidStream => azure_error(
            500,
            "InternalServerError",
            "The server had an error while processing your request. Sorry about that!",
        ),
        AzureFault::Unavailable => azure_error(
            503,
            "ServiceUnavailable",
            "The service is temporarily unable to process your request. Please try again later.",
        ),
        AzureFault::Truncated => return None,
    })
}

// ---------------------------------------------------------------- handlers

fn record(s: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
    s.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        raw: body.clone(),
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

    /// A query parameter's raw value.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(self.query.as_deref(), name)
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
    resource_not_found()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Azure OpenAI's key check: only `api-key` carries a key.
fn check_openai_key(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    match header(headers, "api-key") {
        Some(k) if k == s.api_key => None,
        Some(_) => Some(azure_error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        )),
        None if headers.contains_key("authorization") => Some(azure_error(
            401,
            "401",
            "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired.",
        )),
        None => Some(azure_error(
            401,
            "401",
            "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
        )),
    }
}

/// Foundry takes the key as `api-key` or as a bearer token.
fn check_foundry_key(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let bearer = header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer "));
    match header(headers, "api-key").or(bearer) {
        Some(k) if k == s.api_key => None,
        Some(_) => Some(azure_error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        )),
        None => Some(azure_error(
            401,
            "401",
            "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
        )),
    }
}

/// `YYYY-MM-DD` or `YYYY-MM-DD-preview`, 2022 or later.
fn dated_version(v: &str) -> bool {
    let (date, rest) = v.split_at(v.len().min(10));
    let shape = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shape && date >= "2022-01-01" && (rest.is_empty() || rest == "-preview")
}

fn version_not_supported() -> Response {
    azure_error(400, "BadRequest", "API version not supported")
}

async fn dated(
    State(s): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&s, &method, &uri, &headers, &body);
    if let Some(resp) = check_openai_key(&s, &headers) {
        return resp;
    }
    let Some(version) = query_param(uri.query(), "api-version") else {
        return resource_not_found();
    };
    if !dated_version(version) {
        return version_not_supported();
    }
    let Some(model) = deployment_model(&deployment) else {
        return deployment_not_found();
    };
    let stream_options_ok = version.get(..10).unwrap_or(version) >= "2024-09-01";
    chat(&s, Api::Dated, model, &body, stream_options_ok, true)
}

/// The checks every deployment-scoped operation makes, in Azure's order: key,
/// `api-version`, deployment.
fn deployment_checks(
    s: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    deployment: &str,
) -> Result<&'static str, Box<Response>> {
    if let Some(resp) = check_openai_key(s, headers) {
        return Err(Box::new(resp));
    }
    let Some(version) = query_param(uri.query(), "api-version") else {
        return Err(Box::new(resource_not_found()));
    };
    if !dated_version(version) {
        return Err(Box::new(version_not_supported()));
    }
    deployment_model(deployment).ok_or_else(|| Box::new(deployment_not_found()))
}

/// `POST /openai/deployments/{d}/embeddings`: OpenAI's request and response,
/// with a deterministic vector per input so order can be checked.
async fn embeddings(
    State(s): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&s, &method, &uri, &headers, &body);
    let model = match deployment_checks(&s, &uri, &headers, &deployment) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return invalid("We could not parse the JSON body of your request.", None);
    };
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return invalid("'input' is a required property", Some("input")),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"object": "embedding", "index": i, "embedding": [t.len() as f64, i as f64, 0.5]})
        })
        .collect();
    let tokens: usize = inputs
        .iter()
        .map(|t| t.split_whitespace().count().max(1))
        .sum();
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
        }),
    )
}

/// `POST /openai/deployments/{d}/audio/transcriptions`: a multipart upload with
/// a `file` part; answers `{"text"}`, or plain text for `response_format=text`.
async fn transcriptions(
    State(s): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&s, &method, &uri, &headers, &body);
    if let Err(resp) = deployment_checks(&s, &uri, &headers, &deployment) {
        return *resp;
    }
    let multipart = header(&headers, "content-type")
        .is_some_and(|ct| ct.starts_with("multipart/form-data; boundary="));
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if !multipart || !has(b"name=\"file\"") {
        return invalid("Invalid file format or missing 'file'.", Some("file"));
    }
    let size = body.len();
    if has(b"name=\"response_format\"\r\n\r\ntext\r\n") {
        let mut resp =
            (StatusCode::OK, format!("fake transcript of {size} bytes\n")).into_response();
        resp.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return resp;
    }
    json_response(
        StatusCode::OK,
        &json!({"text": format!("fake transcript of {size} bytes")}),
    )
}

fn deployment_model(name: &str) -> Option<&'static str> {
    DEPLOYMENTS
        .iter()
        .find(|(d, _)| *d == name)
        .map(|(_, model)| *model)
}

fn deployment_not_found() -> Response {
    azure_error(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
    )
}

async fn v1(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&s, &method, &uri, &headers, &body);
    if let Some(resp) = check_openai_key(&s, &headers) {
        return resp;
    }
    match query_param(uri.query(), "api-version") {
        None | Some("preview") | Some("latest") => {}
        Some(_) => return version_not_supported(),
    }
    let model = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_string));
    let Some(model) = model else {
        return invalid("you must provide a model parameter", None);
    };
    let Some(served) = deployment_model(&model) else {
        return deployment_not_found();
    };
    chat(&s, Api::V1, served, &body, true, true)
}

/// The fields of the Azure AI model inference chat request.
const FOUNDRY_FIELDS: &[&str] = &[
    "messages",
    "model",
    "frequency_penalty",
    "presence_penalty",
    "temperature",
    "top_p",
    "max_tokens",
    "response_format",
    "stop",
    "stream",
    "tools",
    "tool_choice",
    "seed",
    "modalities",
];

/// Models the fake Foundry resource serves for embeddings.
pub const FOUNDRY_EMBEDDING_MODELS: &[&str] =
    &["Cohere-embed-v3-english", "text-embedding-3-small"];

/// `POST /models/embeddings?api-version=…`: the model inference API's
/// embeddings, OpenAI's request and answer shapes with the model in the body.
async fn foundry_embeddings(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&s, &method, &uri, &headers, &body);
    if let Some(resp) = check_foundry_key(&s, &headers) {
        return resp;
    }
    if !query_param(uri.query(), "api-version").is_some_and(dated_version) {
        return azure_error(400, "BadRequest", "Missing or unsupported api-version");
    }
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return azure_error(400, "BadRequest", "The request body is not valid JSON.");
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or("");
    if !FOUNDRY_EMBEDDING_MODELS.contains(&model) {
        return azure_error(400, "unknown_model", &format!("Unknown model: {model}"));
    }
    let inputs: Vec<&str> = match req.get("input") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) if !a.is_empty() => a.iter().filter_map(Value::as_str).collect(),
        _ => return invalid("'input' is a required property", Some("input")),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(
            |(i, t)| json!({"object": "embedding", "index": i, "embedding": [t.len() as f64, 1.5]}),
        )
        .collect();
    let tokens = inputs.len() * 2;
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

async fn foundry(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&s, &method, &uri, &headers, &body);
    if let Some(resp) = check_foundry_key(&s, &headers) {
        return resp;
    }
    match query_param(uri.query(), "api-version") {
        None => {
            return azure_error(
                400,
                "BadRequest",
                "Missing required query parameter: api-version",
            )
        }
        Some(v) if !dated_version(v) => return version_not_supported(),
        Some(_) => {}
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return azure_error(400, "BadRequest", "The request body is not valid JSON."),
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return azure_error(
            400,
            "no_model_name",
            "No model specified in request. Please provide a model name in the request body or as a x-ms-model-mesh-model-name header.",
        );
    };
    let Some(served) = FOUNDRY_MODELS.iter().find(|m| **m == model) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {
                "code": "unknown_model",
                "message": format!("Unknown model: {model}"),
                "details": format!("Unknown model: {model}"),
            }}),
        );
    };
    let extra: Vec<&String> = req
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !FOUNDRY_FIELDS.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    match header(&headers, "extra-parameters") {
        Some("pass-through") | Some("drop") => {}
        None | Some("error") if !extra.is_empty() => {
            let names: Vec<String> = extra.iter().map(|k| format!("'{k}'")).collect();
            return azure_error(
                400,
                "Invalid input",
                &format!(
                    "Extra parameters [{}] are not allowed when extra-parameters is not set or set to be 'error'. Set extra-parameters to 'pass-through' to pass to the model.",
                    names.join(", ")
                ),
            );
        }
        None | Some("error") => {}
        Some(other) => {
            return azure_error(
                400,
                "Invalid input",
                &format!("Invalid value for header 'extra-parameters': '{other}'. Expected one of 'error', 'drop', 'pass-through'."),
            )
        }
    }
    chat(&s, Api::Foundry, served, &body, true, false)
}

// -------------------------------------------------------------- validation

/// The chat request fields Azure OpenAI recognises.
const OPENAI_FIELDS: &[&str] = &[
    "messages",
    "model",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "logprobs",
    "top_logprobs",
    "response_format",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "data_sources",
    "store",
    "metadata",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "user_security_context",
];

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// A validation failure: Azure answers it as a 400 `invalid_request_error`.
struct Invalid {
    message: String,
    param: Option<String>,
}

impl Invalid {
    fn new(message: impl Into<String>, param: Option<&str>) -> Self {
        Invalid {
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    fn response(&self) -> Response {
        invalid(self.message.clone(), self.param.as_deref())
    }
}

fn validate(req: &Map<String, Value>, api: Api, stream_options_ok: bool) -> Result<(), Invalid> {
    if api != Api::Foundry {
        for key in req.keys() {
            if !OPENAI_FIELDS.contains(&key.as_str())
                || (key == "stream_options" && !stream_options_ok)
            {
                return Err(Invalid::new(
                    format!("Unrecognized request argument supplied: {key}"),
                    None,
                ));
            }
        }
        let streaming = req.get("stream").and_then(Value::as_bool) == Some(true);
        if req.get("stream_options").is_some_and(|v| !v.is_null()) && !streaming {
            return Err(Invalid::new(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                Some("stream_options"),
            ));
        }
    }
    let Some(messages) = req.get("messages") else {
        return Err(Invalid::new("'messages' is a required property", None));
    };
    let Some(messages) = messages.as_array() else {
        return Err(Invalid::new(
            format!("{messages} is not of type 'array' - 'messages'"),
            None,
        ));
    };
    if messages.is_empty() {
        return Err(Invalid::new("[] is too short - 'messages'", None));
    }
    let mut pending_calls: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(Invalid::new(
                format!(
                    "'{role}' is not one of ['system', 'assistant', 'user', 'function', 'tool', 'developer'] - 'messages.{i}.role'"
                ),
                None,
            ));
        }
        if role != "tool" && !pending_calls.is_empty() {
            return Err(Invalid::new(
                format!(
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                    pending_calls.join(", ")
                ),
                Some(&format!("messages.[{i}].role")),
            ));
        }
        match role {
            "tool" => {
                let Some(id) = m.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(Invalid::new(
                        format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
                        Some(&format!("messages.[{i}].tool_call_id")),
                    ));
                };
                let Some(at) = pending_calls.iter().position(|c| c == id) else {
                    return Err(Invalid::new(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        Some(&format!("messages.[{i}].role")),
                    ));
                };
                pending_calls.remove(at);
            }
            "assistant" => {
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for c in calls {
                        match c.get("id").and_then(Value::as_str) {
                            Some(id) => pending_calls.push(id.to_string()),
                            None => {
                                return Err(Invalid::new(
                                    format!(
                                    "Missing required parameter: 'messages[{i}].tool_calls[].id'."
                                ),
                                    None,
                                ))
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        validate_content(m.get("content"), role, i)?;
    }
    if !pending_calls.is_empty() {
        return Err(Invalid::new(
            format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                pending_calls.join(", ")
            ),
            None,
        ));
    }
    if let Some(tools) = req.get("tools") {
        let Some(tools) = tools.as_array() else {
            return Err(Invalid::new("'tools' must be an array", Some("tools")));
        };
        for (i, t) in tools.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(Invalid::new(
                    format!("Invalid value for 'tools[{i}].type'."),
                    Some(&format!("tools[{i}].type")),
                ));
            }
            if t.pointer("/function/name")
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(Invalid::new(
                    format!("Missing required parameter: 'tools[{i}].function.name'."),
                    Some(&format!("tools[{i}].function.name")),
                ));
            }
        }
    }
    Ok(())
}

fn validate_content(content: Option<&Value>, role: &str, i: usize) -> Result<(), Invalid> {
    let parts = match content {
        None | Some(Value::Null) if role == "assistant" => return Ok(()),
        None | Some(Value::Null) => {
            return Err(Invalid::new(
                format!("Missing required parameter: 'messages[{i}].content'."),
                Some(&format!("messages.[{i}].content")),
            ))
        }
        Some(Value::String(_)) => return Ok(()),
        Some(Value::Array(parts)) => parts,
        Some(other) => {
            return Err(Invalid::new(
                format!(
                    "{other} is not valid under any of the given schemas - 'messages.{i}.content'"
                ),
                None,
            ))
        }
    };
    for (j, p) in parts.iter().enumerate() {
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
        let ok = match ty {
            "text" => p.get("text").is_some_and(Value::is_string),
            "image_url" if role == "user" => p
                .pointer("/image_url/url")
                .and_then(Value::as_str)
                .is_some_and(|u| {
                    u.starts_with("https://")
                        || u.starts_with("http://")
                        || u.starts_with("data:image/")
                }),
            "input_audio" if role == "user" => p.pointer("/input_audio/data").is_some(),
            "refusal" if role == "assistant" => p.get("refusal").is_some_and(Value::is_string),
            _ => false,
        };
        if !ok {
            return Err(Invalid::new(
                format!("Invalid content part at 'messages[{i}].content[{j}]' (type '{ty}') for role '{role}'."),
                Some(&format!("messages.[{i}].content.[{j}]")),
            ));
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- answers

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn images_in(content: Option<&Value>) -> usize {
    content
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
                .count()
        })
        .unwrap_or(0)
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// What the fake answers.
enum Reply {
    Text(String),
    Tool { name: String, arguments: String },
}

/// A value for a schema property, derived from the question: strings get its
/// last word (`What is the weather in Oslo?` → `Oslo`).
fn sample(schema: &Value, question: &str) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("string") | None => {
            let last = question
                .split_whitespace()
                .last()
                .unwrap_or("value")
                .trim_matches(|c: char| !c.is_alphanumeric());
            json!(if last.is_empty() { "value" } else { last })
        }
        _ => Value::Null,
    }
}

fn tool_reply(req: &Map<String, Value>, question: &str) -> Option<Reply> {
    let tools = req.get("tools")?.as_array()?;
    let choice = req.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    let forced = choice
        .and_then(|c| c.pointer("/function/name"))
        .and_then(Value::as_str);
    let function = tools
        .iter()
        .filter_map(|t| t.get("function"))
        .find(|f| forced.is_none() || f.get("name").and_then(Value::as_str) == forced)?;
    let name = function.get("name")?.as_str()?.to_string();
    let mut args = Map::new();
    let params = function.get("parameters");
    let props = params
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object);
    let required = params
        .and_then(|p| p.get("required"))
        .and_then(Value::as_array);
    if let (Some(props), Some(required)) = (props, required) {
        for key in required.iter().filter_map(Value::as_str) {
            let schema = props.get(key).cloned().unwrap_or(Value::Null);
            args.insert(key.to_string(), sample(&schema, question));
        }
    }
    Some(Reply::Tool {
        name,
        arguments: Value::Object(args).to_string(),
    })
}

struct Answer {
    reply: Reply,
    output_filtered: bool,
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn answer(req: &Map<String, Value>, api: Api) -> Answer {
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let prompt_tokens: u64 = messages
        .iter()
        .map(|m| words(&text_of(m.get("content"))) + images_in(m.get("content")) as u64)
        .sum::<u64>()
        .max(1);
    let last = messages.last();
    let last_role = last.and_then(|m| m.get("role")).and_then(Value::as_str);
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let question = text_of(last_user.and_then(|m| m.get("content")));
    let images = images_in(last_user.and_then(|m| m.get("content")));
    let who = if api == Api::Foundry {
        "Azure AI Foundry"
    } else {
        "Azure OpenAI"
    };
    let reply = if last_role == Some("tool") {
        Reply::Text(format!(
            "Tool result received: {}",
            text_of(last.and_then(|m| m.get("content")))
        ))
    } else if let Some(tool) = (last_role == Some("user"))
        .then(|| tool_reply(req, &question))
        .flatten()
    {
        tool
    } else {
        let mut text = format!("Hello from fake {who}. You said: {question}");
        if images > 0 {
            text.push_str(&format!(" (I see {images} image(s).)"));
        }
        Reply::Text(text)
    };
    let completion_tokens = match &reply {
        Reply::Text(t) => words(t),
        Reply::Tool { .. } => 10,
    };
    Answer {
        reply,
        output_filtered: question.contains("trigger-output-filter"),
        prompt_tokens,
        completion_tokens,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn usage(a: &Answer) -> Value {
    json!({
        "completion_tokens": a.completion_tokens,
        "prompt_tokens": a.prompt_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens,
    })
}

fn prompt_filter_results() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": content_filter_result(false)}])
}

fn chat(
    s: &Shared,
    api: Api,
    model: &str,
    body: &Bytes,
    stream_options_ok: bool,
    filters: bool,
) -> Response {
    let fault = s.faults.pop();
    let req = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return invalid(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
                None,
            )
        }
    };
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    match fault {
        Some(AzureFault::ErrorMidStream) if stream => {}
        Some(f) => {
            if let Some(resp) = fault_response(f) {
                return resp;
            }
        }
        None => {}
    }
    if let Err(e) = validate(&req, api, stream_options_ok) {
        return e.response();
    }
    let answer = answer(&req, api);
    let last_user_text = req
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|ms| {
            ms.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default();
    if filters && last_user_text.contains("trigger-content-filter") {
        return content_filter_error();
    }
    let n = s.responses.fetch_add(1, Ordering::Relaxed);
    let id = format!("chatcmpl-fakeazure{n}");
    let served = if api == Api::Foundry {
        model.to_ascii_lowercase()
    } else {
        model.to_string()
    };
    if !stream {
        let full = completion(&answer, &id, &served, filters);
        if fault == Some(AzureFault::Truncated) {
            let text = full.to_string();
            let half = text.len() / 2;
            let mut resp = (StatusCode::OK, text[..half].to_string()).into_response();
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            return resp;
        }
        return json_response(StatusCode::OK, &full);
    }
    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let mut events: Vec<String> = chunks(&answer, &id, &served, filters, include_usage, api)
        .iter()
        .map(Value::to_string)
        .collect();
    match fault {
        Some(AzureFault::Truncated) => {}
        Some(AzureFault::ErrorMidStream) => {
            events.truncate(2);
            events.push(
                json!({"error": {
                    "code": "server_error",
                    "message": "The server had an error while processing your request. Sorry about that!",
                }})
                .to_string(),
            );
        }
        _ => events.push("[DONE]".to_string()),
    }
    let frames = events
        .into_iter()
        .map(|e| Ok::<_, Infallible>(Bytes::from(format!("data: {e}\n\n"))));
    let mut resp = Response::new(Body::from_stream(futures_util::stream::iter(frames)));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    resp
}

fn finish_reason(a: &Answer) -> &'static str {
    match (&a.reply, a.output_filtered) {
        (_, true) => "content_filter",
        (Reply::Tool { .. }, _) => "tool_calls",
        (Reply::Text(_), _) => "stop",
    }
}

fn completion(a: &Answer, id: &str, model: &str, filters: bool) -> Value {
    let message = match &a.reply {
        Reply::Text(t) => json!({
            "role": "assistant",
            "content": if a.output_filtered { Value::Null } else { json!(t) },
            "refusal": null,
        }),
        Reply::Tool { name, arguments } => json!({
            "role": "assistant",
            "content": null,
            "refusal": null,
            "tool_calls": [{
                "id": format!("call_{id}_0"),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }],
        }),
    };
    let mut choice = json!({
        "index": 0,
        "finish_reason": finish_reason(a),
        "logprobs": null,
        "message": message,
    });
    let mut out = json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "system_fingerprint": "fp_fakeazure",
        "usage": usage(a),
    });
    if filters {
        choice["content_filter_results"] = content_filter_result(a.output_filtered);
        out["prompt_filter_results"] = prompt_filter_results();
    }
    out["choices"] = json!([choice]);
    out
}

fn chunks(
    a: &Answer,
    id: &str,
    model: &str,
    filters: bool,
    include_usage: bool,
    api: Api,
) -> Vec<Value> {
    let created = now();
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut choice = json!({
            "index": 0,
            "delta": delta,
            "finish_reason": finish,
            "logprobs": null,
        });
        if filters {
            choice["content_filter_results"] = if finish.is_some() {
                json!({})
            } else {
                content_filter_result(false)
            };
        }
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fakeazure",
            "choices": [choice],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut out = Vec::new();
    if filters {
        // Azure's first event: the prompt's filter results, no choices yet.
        out.push(json!({
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": prompt_filter_results(),
        }));
    }
    match &a.reply {
        Reply::Text(t) => {
            out.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
            if !a.output_filtered {
                let pieces: Vec<&str> = t.split_inclusive(' ').collect();
                for group in pieces.chunks(3) {
                    out.push(chunk(json!({"content": group.concat()}), None));
                }
            }
        }
        Reply::Tool { name, arguments } => {
            out.push(chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{
                    "index": 0,
                    "id": format!("call_{id}_0"),
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]}),
                None,
            ));
            let cut = arguments
                .char_indices()
                .map(|(i, _)| i)
                .find(|i| *i >= arguments.len() / 2)
                .unwrap_or(arguments.len());
            for piece in [&arguments[..cut], &arguments[cut..]] {
                out.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
        }
    }
    let mut last = chunk(json!({}), Some(finish_reason(a)));
    if a.output_filtered && filters {
        last["choices"][0]["content_filter_results"] = content_filter_result(true);
    }
    if api == Api::Foundry {
        // Model inference reports usage on its last chunk.
        last["usage"] = usage(a);
    }
    out.push(last);
    if include_usage && api != Api::Foundry {
        out.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fakeazure",
            "choices": [],
            "usage": usage(a),
        }));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn dated_versions_are_recognised() {
        assert!(dated_version("2024-10-21"));
        assert!(dated_version("2025-04-01-preview"));
        assert!(!dated_version("2024-10-21-beta"));
        assert!(!dated_version("latest"));
        assert!(!dated_version("2021-01-01"));
    }

    #[test]
    fn tool_arguments_follow_the_schema() {
        let req = json!({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        }}}]});
        let Some(Reply::Tool { name, arguments }) =
            tool_reply(req.as_object().unwrap(), "What is the weather in Oslo?")
        else {
            panic!("expected a tool call");
        };
        assert_eq!(name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&arguments).unwrap(),
            json!({"city": "Oslo", "days": 1})
        );
    }
}
