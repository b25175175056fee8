//! `POST /v1/chat/completions`: read, peek, authorise, then hand the request to
//! the gateway pipeline (layers + dispatch) and relay what it answers.

use crate::auth::Principal;
use crate::body::read_body;
use crate::error::error_response;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue};
use liter_llm_gateway::pipeline::{CacheDirectives, ChatRequest, Endpoint, Settlement};
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

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(
        &state,
        &principal,
        &headers,
        body,
        Endpoint::ChatCompletions,
    )
    .await
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(&state, &principal, &headers, body, Endpoint::Completions).await
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(&state, &principal, &headers, body, Endpoint::Embeddings).await
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
    state.metrics.chat_status.record(resp.status().as_u16());
    let wait = settlement.upstream_wait();
    if !wait.is_zero() {
        let overhead = started.elapsed().saturating_sub(wait);
        state.metrics.chat_overhead.record(overhead);
        state.metrics.chat_upstream.record(wait);
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
    let requirements = match endpoint {
        Endpoint::ChatCompletions => Requirements::CHAT,
        Endpoint::Embeddings => Requirements::EMBEDDINGS,
        Endpoint::Completions => Requirements::MODEL_ONLY,
    };
    let peek = peek_request(&bytes, requirements).map_err(peek_error)?;
    if endpoint == Endpoint::Embeddings && peek.stream {
        return Err(ApiError::invalid_request("embeddings cannot be streamed").with_param("stream"));
    }
    principal.check_model(&peek.model)?;
    let req = ChatRequest {
        endpoint,
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
