//! Connection handling, routing and the per-endpoint handlers.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::body::{MockBody, SseBody, StreamEnd, TruncatedBody};
use crate::media;
use crate::openai::{self, Api, Completion, Usage};
use crate::rng;
use crate::{Fault, MockConfig, RecordedRequest};

pub(crate) const APPLICATION_JSON: &str = "application/json";
pub(crate) const TEXT_EVENT_STREAM: &str = "text/event-stream";
const TEXT_HTML: &str = "text/html";
/// OpenAI's documented upper bound for `n`.
const MAX_N: u32 = 128;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static OPENAI_PROCESSING_MS: HeaderName = HeaderName::from_static("openai-processing-ms");
static OPENAI_VERSION: HeaderName = HeaderName::from_static("openai-version");
static X_RATELIMIT_LIMIT_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-limit-requests");
static X_RATELIMIT_REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
static X_RATELIMIT_RESET_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-reset-requests");

pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    pub(crate) request_count: AtomicUsize,
    pub(crate) streams_completed: AtomicUsize,
    pub(crate) streams_aborted: AtomicUsize,
    pub(crate) aborted_notify: Notify,
    next_id: AtomicU64,
    recorded: Mutex<Vec<RecordedRequest>>,
}

impl Shared {
    pub(crate) fn new(config: MockConfig) -> Self {
        Self {
            config,
            request_count: AtomicUsize::new(0),
            streams_completed: AtomicUsize::new(0),
            streams_aborted: AtomicUsize::new(0),
            aborted_notify: Notify::new(),
            next_id: AtomicU64::new(1),
            recorded: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn recorded(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        // A panic while pushing cannot leave the Vec half-updated, so poison is harmless.
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut builder = http1::Builder::new();
    // No header read timeout: benchmarks keep idle pooled connections around and must not
    // see them closed under their feet.
    builder.keep_alive(true).header_read_timeout(None);
    // Connection tasks live in this set so that aborting the accept task (on
    // `MockServer` drop) closes them too, including stalled ones.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    connections.spawn(async move {
                        let _ = connection.await;
                    });
                }
                // Typically EMFILE under a load test; backing off avoids a hot loop while
                // existing connections finish and free descriptors.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

pub(crate) enum Outcome {
    Respond(Response<MockBody>),
    /// Never send anything back.
    Stall,
}

impl From<Response<MockBody>> for Outcome {
    fn from(response: Response<MockBody>) -> Self {
        Outcome::Respond(response)
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let started = Instant::now();
    let (parts, incoming) = req.into_parts();
    let body = match incoming.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The client went away mid-body; nobody will read whatever we answer.
        Err(_) => Bytes::new(),
    };
    if shared.config.record {
        shared.recorded().push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }
    // Counted after recording so that a reader who sees the count also sees the request.
    shared.request_count.fetch_add(1, Ordering::AcqRel);

    if shared.config.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.config.delay_ms)).await;
    }
    match respond(&shared, &parts, &body) {
        Outcome::Respond(response) => Ok(stamp(response, started)),
        Outcome::Stall => std::future::pending().await,
    }
}

fn respond(shared: &Arc<Shared>, parts: &Parts, body: &Bytes) -> Outcome {
    let config = &shared.config;
    if let Some(response) = check_auth(config, &parts.headers) {
        return response.into();
    }
    let route = match route(&parts.method, parts.uri.path()) {
        Ok(route) => route,
        Err(error) => return route_error(error, &parts.method, parts.uri.path()).into(),
    };
    if let Some(response) = injected_failure(config) {
        return response.into();
    }
    let outcome = match route {
        Route::Chat => generate(shared, Api::Chat, body),
        Route::Completions => generate(shared, Api::Legacy, body),
        Route::Embeddings => embeddings(config, body),
        Route::Images => media::images(config, body),
        Route::Speech => media::speech(shared, body),
        Route::Transcriptions => media::transcriptions(config, &parts.headers, body),
        Route::Moderations => media::moderations(config, body),
        Route::Rerank => media::rerank(config, body),
        Route::Ocr => media::ocr(config, body),
        Route::Models => pre_fault(config.fault, false)
            .unwrap_or_else(|| json(StatusCode::OK, openai::MODELS_BODY.clone()).into()),
        Route::Model(id) => {
            pre_fault(config.fault, false).unwrap_or_else(|| match openai::model_body(id) {
                Some(model) => json(StatusCode::OK, model).into(),
                None => json(
                    StatusCode::NOT_FOUND,
                    openai::error_body(
                        &format!("The model '{id}' does not exist"),
                        "invalid_request_error",
                        Some("model"),
                        Some("model_not_found"),
                    ),
                )
                .into(),
            })
        }
    };
    match (config.fault, outcome) {
        // Streams truncate themselves; everything else that is a complete body gets cut.
        (Some(Fault::TruncateStream), Outcome::Respond(response)) => {
            Outcome::Respond(response.map(|body| match body {
                MockBody::Full(Some(bytes)) => {
                    MockBody::Truncated(Box::new(TruncatedBody::new(bytes)))
                }
                other => other,
            }))
        }
        (_, outcome) => outcome,
    }
}

/// Adds the headers OpenAI puts on every response.
fn stamp(mut response: Response<MockBody>, started: Instant) -> Response<MockBody> {
    let request_id = format!("req_{:016x}{:016x}", rng::next_u64(), rng::next_u64());
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::try_from(request_id) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
    headers.insert(OPENAI_PROCESSING_MS.clone(), HeaderValue::from(elapsed_ms));
    headers.insert(
        OPENAI_VERSION.clone(),
        HeaderValue::from_static("2020-10-01"),
    );
    response
}

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: MockBody,
) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<MockBody> {
    response(status, APPLICATION_JSON, MockBody::full(body))
}

pub(crate) fn invalid_request(message: &str, param: Option<&str>) -> Outcome {
    json(
        StatusCode::BAD_REQUEST,
        openai::error_body(message, "invalid_request_error", param, None),
    )
    .into()
}

pub(crate) fn invalid_json(error: &serde_json::Error) -> Outcome {
    let message = if error.is_data() {
        format!("Invalid request body: {error}")
    } else {
        format!(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) ({error})"
        )
    };
    invalid_request(&message, None)
}

fn check_auth(config: &MockConfig, headers: &HeaderMap) -> Option<Response<MockBody>> {
    let expected = config.expected_api_key.as_deref()?;
    let provided = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let key = provided.and_then(|value| value.strip_prefix(b"Bearer "));
    match key {
        Some(key) if key == expected.as_bytes() => None,
        Some(_) => Some(json(StatusCode::UNAUTHORIZED, openai::INVALID_KEY_BODY)),
        None => Some(json(StatusCode::UNAUTHORIZED, openai::MISSING_KEY_BODY)),
    }
}

enum Route<'a> {
    Chat,
    Completions,
    Embeddings,
    Images,
    Speech,
    Transcriptions,
    Moderations,
    Rerank,
    Ocr,
    Models,
    Model(&'a str),
}

enum RouteError {
    NotFound,
    MethodNotAllowed(Method),
}

fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, RouteError> {
    let endpoint = path
        .strip_prefix("/v1")
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(path);
    let (route, allowed) = match endpoint {
        "/chat/completions" => (Route::Chat, Method::POST),
        "/completions" => (Route::Completions, Method::POST),
        "/embeddings" => (Route::Embeddings, Method::POST),
        "/images/generations" => (Route::Images, Method::POST),
        "/audio/speech" => (Route::Speech, Method::POST),
        "/audio/transcriptions" => (Route::Transcriptions, Method::POST),
        "/moderations" => (Route::Moderations, Method::POST),
        "/rerank" => (Route::Rerank, Method::POST),
        "/ocr" => (Route::Ocr, Method::POST),
        "/models" => (Route::Models, Method::GET),
        _ => match endpoint.strip_prefix("/models/") {
            Some(id) if !id.is_empty() && !id.contains('/') => (Route::Model(id), Method::GET),
            _ => return Err(RouteError::NotFound),
        },
    };
    if *method != allowed {
        return Err(RouteError::MethodNotAllowed(allowed));
    }
    Ok(route)
}

fn route_error(error: RouteError, method: &Method, path: &str) -> Response<MockBody> {
    match error {
        RouteError::NotFound => json(
            StatusCode::NOT_FOUND,
            openai::error_body(
                &format!("Invalid URL ({method} {path})"),
                "invalid_request_error",
                None,
                None,
            ),
        ),
        RouteError::MethodNotAllowed(allowed) => {
            let mut response = json(
                StatusCode::METHOD_NOT_ALLOWED,
                openai::error_body(
                    &format!("Invalid method for URL ({method} {path})"),
                    "invalid_request_error",
                    None,
                    None,
                ),
            );
            if let Ok(allow) = HeaderValue::from_str(allowed.as_str()) {
                response.headers_mut().insert(ALLOW, allow);
            }
            response
        }
    }
}

fn injected_failure(config: &MockConfig) -> Option<Response<MockBody>> {
    if config.fail_rate <= 0.0 && config.rate_limit_rate <= 0.0 {
        return None;
    }
    // One roll for both so the two rates are disjoint slices of the same interval.
    let roll = rng::next_f64();
    if roll < config.fail_rate {
        return Some(json(
            StatusCode::INTERNAL_SERVER_ERROR,
            openai::SERVER_ERROR_BODY,
        ));
    }
    if roll < config.fail_rate + config.rate_limit_rate {
        let mut response = json(StatusCode::TOO_MANY_REQUESTS, openai::RATE_LIMIT_BODY);
        let headers = response.headers_mut();
        headers.insert(RETRY_AFTER, HeaderValue::from(config.retry_after_secs));
        headers.insert(
            X_RATELIMIT_LIMIT_REQUESTS.clone(),
            HeaderValue::from_static("500"),
        );
        headers.insert(
            X_RATELIMIT_REMAINING_REQUESTS.clone(),
            HeaderValue::from_static("0"),
        );
        if let Ok(reset) = HeaderValue::try_from(format!("{}s", config.retry_after_secs)) {
            headers.insert(X_RATELIMIT_RESET_REQUESTS.clone(), reset);
        }
        return Some(response);
    }
    None
}

/// The faults that replace the whole answer; `stream` decides what `Stall` means.
pub(crate) fn pre_fault(fault: Option<Fault>, stream: bool) -> Option<Outcome> {
    match fault? {
        Fault::Garbage => Some(json(StatusCode::OK, openai::GARBAGE_BODY).into()),
        Fault::HtmlError => Some(
            response(
                StatusCode::BAD_GATEWAY,
                TEXT_HTML,
                MockBody::full(openai::HTML_ERROR_BODY),
            )
            .into(),
        ),
        Fault::Stall if !stream => Some(Outcome::Stall),
        Fault::Stall | Fault::TruncateStream => None,
    }
}

pub(crate) fn prompt_tokens(bytes: &[u8]) -> u64 {
    (bytes.len() as u64 / 4).max(1)
}

#[derive(Deserialize)]
struct GenerationRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// `/v1/chat/completions` and `/v1/completions`.
fn generate(shared: &Arc<Shared>, api: Api, body: &Bytes) -> Outcome {
    let config = &shared.config;
    let parsed = serde_json::from_slice::<GenerationRequest<'_>>(body);
    let stream = matches!(&parsed, Ok(request) if request.stream == Some(true));
    if let Some(outcome) = pre_fault(config.fault, stream) {
        return outcome;
    }
    let request = match parsed {
        Ok(request) => request,
        Err(error) => return invalid_json(&error),
    };
    let Some(model) = request.model.as_deref() else {
        return invalid_request("you must provide a model parameter", None);
    };
    let n = request.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return invalid_request(
            &format!("{n} is not a valid value for 'n' - it must be between 1 and {MAX_N}."),
            Some("n"),
        );
    }
    let model_json = openai::json_str(model);
    let completion_tokens = if stream {
        config.chunks as u64 * u64::from(n)
    } else {
        openai::COMPLETION_TOKENS * u64::from(n)
    };
    let completion = Completion {
        api,
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        created: openai::unix_now(),
        model_json: &model_json,
        n,
        usage: Usage {
            prompt_tokens: prompt_tokens(body),
            completion_tokens,
        },
    };
    if !stream {
        return json(StatusCode::OK, completion.full_body()).into();
    }

    let include_usage = request
        .stream_options
        .and_then(|options| options.include_usage)
        .unwrap_or(false);
    let chunks = config.chunks;
    let (content_chunks, tail, end) = match config.fault {
        Some(Fault::TruncateStream) => (chunks / 2, false, StreamEnd::Truncate),
        // "The first chunk": the role chunk for chat, the first text chunk for legacy.
        Some(Fault::Stall) => match api {
            Api::Chat => (0, false, StreamEnd::Stall),
            Api::Legacy => (chunks.min(1), false, StreamEnd::Stall),
        },
        _ => (chunks, true, StreamEnd::Done),
    };
    let frames = completion.stream_frames(chunks, content_chunks, tail, include_usage);
    let body = SseBody::new(
        frames,
        end,
        Duration::from_millis(config.chunk_interval_ms),
        Arc::clone(shared),
    );
    response(
        StatusCode::OK,
        TEXT_EVENT_STREAM,
        MockBody::Sse(Box::new(body)),
    )
    .into()
}

#[derive(Deserialize)]
struct EmbeddingsRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
    #[serde(default)]
    dimensions: Option<u64>,
}

const INVALID_INPUT: &str =
    "'input' must be a string, an array of strings, an array of tokens or an array of token arrays.";

/// Splits `input` into one raw JSON slice per embedding to produce.
fn split_inputs(input: &RawValue) -> Result<Vec<&[u8]>, &'static str> {
    let text = input.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => Ok(vec![text.as_bytes()]),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| INVALID_INPUT)?;
            let first_byte = |item: &RawValue| item.get().trim_start().as_bytes().first().copied();
            match items.first().and_then(|item| first_byte(item)) {
                None => Err("'input' cannot be an empty array."),
                // A flat array of token ids is a single input.
                Some(b'-' | b'0'..=b'9') => Ok(vec![text.as_bytes()]),
                Some(_) => items
                    .iter()
                    .map(|item| match first_byte(item) {
                        Some(b'"' | b'[') => Ok(item.get().trim().as_bytes()),
                        _ => Err(INVALID_INPUT),
                    })
                    .collect(),
            }
        }
        _ => Err(INVALID_INPUT),
    }
}

fn embeddings(config: &MockConfig, body: &Bytes) -> Outcome {
    if let Some(outcome) = pre_fault(config.fault, false) {
        return outcome;
    }
    let request = match serde_json::from_slice::<EmbeddingsRequest<'_>>(body) {
        Ok(request) => request,
        Err(error) => return invalid_json(&error),
    };
    let Some(model) = request.model.as_deref() else {
        return invalid_request("you must provide a model parameter", None);
    };
    let Some(input) = request.input else {
        return invalid_request("'input' is a required property", Some("input"));
    };
    let inputs = match split_inputs(input) {
        Ok(inputs) => inputs,
        Err(message) => return invalid_request(message, Some("input")),
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return invalid_request(
                &format!("'{other}' is not one of ['float', 'base64'] - 'encoding_format'"),
                Some("encoding_format"),
            )
        }
    };
    let dims = match request.dimensions {
        None => openai::DEFAULT_EMBEDDING_DIMS,
        Some(dims) => match usize::try_from(dims) {
            Ok(dims) if (1..=openai::MAX_EMBEDDING_DIMS).contains(&dims) => dims,
            _ => {
                return invalid_request(
                    &format!(
                    "{dims} is not a valid value for 'dimensions' - it must be between 1 and {}.",
                    openai::MAX_EMBEDDING_DIMS
                ),
                    Some("dimensions"),
                )
            }
        },
    };
    let tokens = inputs.iter().map(|input| prompt_tokens(input)).sum();
    let body = openai::embeddings_body(&openai::json_str(model), &inputs, dims, base64, tokens);
    json(StatusCode::OK, body).into()
}
