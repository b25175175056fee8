//! Every model route (`/v1/chat/completions`, `/v1/embeddings`, ... `/v1/ocr`):
//! read, check, authorise, then hand the request to the gateway pipeline (layers
//! + dispatch) and relay what it answers.

use super::inspect;
use crate::auth::Principal;
use crate::body::read_body;
use crate::error::error_response;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};
use liter_llm_gateway::pipeline::{BodyFormat, CacheDirectives, ChatRequest, Endpoint, Settlement};
use liter_llm_protocol::peek::Requirements;
use liter_llm_protocol::{peek_request, ApiError, ErrorKind, PeekError};
use std::sync::Arc;
use tokio::time::Instant;
use tower::ServiceExt;

pub static OVERHEAD_HEADER: HeaderName = HeaderName::from_static("x-liter-llm-overhead-us");

pub fn peek_error(e: PeekError) -> ApiError {
    let param = e.param();
    let mut err = ApiError::invalid_request(e.to_string());
    if let Some(p) = param {
        err = err.with_param(p);
    }
    err
}

pub fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `Cache-Control: no-cache` / `no-store` from the client.
fn cache_directives(headers: &HeaderMap) -> CacheDirectives {
    let mut d = CacheDirectives::default();
    for v in headers.get_all(http::header::CACHE_CONTROL) {
        for part in v.to_str().unwrap_or("").split(',') {
            match part.trim().to_ascii_lowercase().as_str() {
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                _ => {}
            }
        }
    }
    d
}

/// The route for one model endpoint. They differ only in the [`Endpoint`] they
/// serve; everything else (auth, checks, layers, metering) is shared.
pub fn model_route(endpoint: Endpoint) -> MethodRouter<Arc<AppState>> {
    post(
        move |State(state): State<Arc<AppState>>, req: http::Request<Body>| async move {
            // Taken whole rather than through the `Principal` and `HeaderMap`
            // extractors, which would copy every header of every request; the
            // key is still checked before the body is read.
            let (parts, body) = req.into_parts();
            match state.keys.authenticate(&parts.headers) {
                Ok(principal) => forward(&state, &principal, &parts.headers, body, endpoint).await,
                Err(e) => error_response(&e),
            }
        },
    )
}

/// Every pipeline endpoint: read, peek, authorise, call the layers, and meter.
async fn forward(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    let started = Instant::now();
    let settlement = Settlement::new();
    let mut resp = match forward_chat(
        state,
        principal,
        headers,
        body,
        started,
        &settlement,
        endpoint,
    )
    .await
    {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    };
    let metrics = state.metrics.route(endpoint);
    metrics.status.record(resp.status().as_u16());
    let wait = settlement.upstream_wait();
    if !wait.is_zero() {
        let overhead = started.elapsed().saturating_sub(wait);
        metrics.overhead.record(overhead);
        metrics.upstream.record(wait);
        if state.overhead_header {
            resp.headers_mut().insert(
                OVERHEAD_HEADER.clone(),
                HeaderValue::from(overhead.as_micros() as u64),
            );
        }
    }
    resp
}

async fn forward_chat(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
    settlement: &Settlement,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let deadline = started + state.request_timeout;
    let bytes = match tokio::time::timeout_at(deadline, read_body(headers, body, state.body_limit)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                ErrorKind::RequestTimeout,
                "the request body did not arrive within the request timeout ([server].request_timeout_secs)",
            )
            .with_code("request_timeout"))
        }
    };
    if endpoint == Endpoint::AudioTranscriptions {
        let content_type = headers.get(CONTENT_TYPE);
        let upload = inspect::check_upload(content_type.and_then(|v| v.to_str().ok()), &bytes)?;
        principal.check_model(&upload.model)?;
        let body_format = BodyFormat::Multipart {
            content_type: content_type
                .cloned()
                .unwrap_or(HeaderValue::from_static("multipart/form-data")),
        };
        let req = ChatRequest {
            endpoint,
            body_format,
            expects_json: upload.expects_json,
            model: upload.model,
            model_span: upload.model_span,
            stream: false,
            include_usage: false,
            max_tokens: None,
            caller: principal.caller(),
            request_id: request_id(headers).to_string(),
            deadline,
            cache: cache_directives(headers),
            // Audio is not text: its size says nothing about tokens.
            estimated_prompt_tokens: 1,
            settlement: settlement.clone(),
            body: bytes,
        };
        let resp = state.chat.clone().oneshot(req).await?;
        return Ok(resp.map(Body::new));
    }
    let requirements = match endpoint {
        Endpoint::ChatCompletions => Requirements::CHAT,
        Endpoint::Embeddings | Endpoint::Moderations => Requirements::EMBEDDINGS,
        _ => Requirements::MODEL_ONLY,
    };
    let peek = peek_request(&bytes, requirements).map_err(peek_error)?;
    if peek.stream && !endpoint.streams_sse() {
        return Err(ApiError::invalid_request(format!(
            "`{}` cannot be streamed through this proxy",
            endpoint.name()
        ))
        .with_param("stream"));
    }
    inspect::check_json(endpoint, &bytes)?;
    principal.check_model(&peek.model)?;
    let req = ChatRequest {
        endpoint,
        body_format: BodyFormat::Json,
        expects_json: true,
        model: peek.model.to_string(),
        model_span: peek.model_span,
        stream: peek.stream,
        include_usage: peek.include_usage,
        max_tokens: peek.max_tokens,
        caller: principal.caller(),
        request_id: request_id(headers).to_string(),
        deadline,
        cache: cache_directives(headers),
        estimated_prompt_tokens: (bytes.len() as u64 / 4).max(1),
        settlement: settlement.clone(),
        body: bytes.clone(),
    };
    let resp = state.chat.clone().oneshot(req).await?;
    Ok(resp.map(Body::new))
}
