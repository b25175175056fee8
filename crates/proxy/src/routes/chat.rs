//! `POST /v1/chat/completions`: peek, authorise, route, forward, stream back.

use crate::auth::Principal;
use crate::body::read_body;
use crate::error::error_response;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use liter_llm_gateway::router::ResolveError;
use liter_llm_gateway::stream::{SseLimits, SseRelay};
use liter_llm_gateway::upstream::{timeout_error, OutgoingRequest, Prepared};
use liter_llm_gateway::{Deployment, UpstreamReply};
use liter_llm_protocol::peek::Requirements;
use liter_llm_protocol::{peek_request, rewrite_model, ApiError, ErrorKind, PeekError};
use liter_llm_providers::adapters::ChatContext;
use std::borrow::Cow;
use std::sync::Arc;
use tokio::time::Instant;

pub static MODEL_ID_HEADER: HeaderName = HeaderName::from_static("x-liter-llm-model-id");
pub static ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-liter-llm-attempts");

/// Upstream error bodies are read only this far; they are messages, not payloads.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub fn peek_error(e: PeekError) -> ApiError {
    let param = e.param();
    let mut err = ApiError::invalid_request(e.to_string());
    if let Some(p) = param {
        err = err.with_param(p);
    }
    err
}

pub fn resolve_error(e: ResolveError) -> ApiError {
    match e {
        ResolveError::UnknownModel(m) => ApiError::new(
            ErrorKind::NotFound,
            format!("the model `{m}` does not exist on this proxy; GET /v1/models lists the available ones"),
        )
        .with_param("model")
        .with_code("model_not_found"),
        ResolveError::Unroutable { model, reason } => {
            ApiError::invalid_request(format!("model `{model}` cannot be routed: {reason}")).with_param("model")
        }
    }
}

pub fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub static OVERHEAD_HEADER: HeaderName = HeaderName::from_static("x-liter-llm-overhead-us");

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (mut resp, upstream_wait) =
        match forward_chat(&state, &principal, &headers, body, started).await {
            Ok(done) => done,
            Err(e) => (error_response(&e), None),
        };
    state.metrics.chat_status.record(resp.status().as_u16());
    if let Some(wait) = upstream_wait {
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

/// The response, and how long was spent waiting on the upstream (`None` when the
/// request never reached it).
async fn forward_chat(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<(Response, Option<std::time::Duration>), ApiError> {
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
    let peek = peek_request(&bytes, Requirements::CHAT).map_err(peek_error)?;
    principal.check_model(&peek.model)?;
    let target = state.router.resolve(&peek.model).map_err(resolve_error)?;
    let outgoing = OutgoingRequest {
        stream: peek.stream,
        request_id: request_id(headers),
    };
    let prepare = |d: &Deployment| -> Result<Prepared, ApiError> {
        let Some(adapter) = d.adapter else {
            return Ok(Prepared {
                path: Cow::Borrowed("/chat/completions"),
                headers: Vec::new(),
                body: rewrite_model(&bytes, peek.model_span, &peek.model, &d.upstream_model),
            });
        };
        let ctx = ChatContext {
            upstream_model: &d.upstream_model,
            requested_model: &peek.model,
            stream: peek.stream,
            include_usage: peek.include_usage,
        };
        let req = adapter.chat_request(&bytes, &ctx)?;
        Ok(Prepared {
            path: Cow::Owned(req.path),
            headers: req.headers,
            body: req.body,
        })
    };
    let send = state.upstream.send(&target, &outgoing, prepare);
    let upstream_started = Instant::now();
    let reply = match tokio::time::timeout_at(deadline, send).await {
        Ok(r) => r?,
        Err(_) => return Err(request_timeout(state)),
    };
    let mut upstream_wait = upstream_started.elapsed();
    let answer = ClientAnswer {
        requested_model: &peek.model,
        stream: peek.stream,
        include_usage: peek.include_usage,
        deadline,
    };
    let resp = respond(reply, &answer, &mut upstream_wait).await;
    Ok((resp, Some(upstream_wait)))
}

fn request_timeout(state: &AppState) -> ApiError {
    ApiError::new(
        ErrorKind::GatewayTimeout,
        format!(
            "the request took longer than the proxy's request timeout of {} s ([server].request_timeout_secs)",
            state.request_timeout.as_secs()
        ),
    )
    .with_code("request_timeout")
}

/// Which deployment answered and after how many attempts, for operators and clients.
fn routing_headers(headers: &mut HeaderMap, deployment_id: &str, attempts: u32) {
    if let Ok(v) = HeaderValue::from_str(deployment_id) {
        headers.insert(MODEL_ID_HEADER.clone(), v);
    }
    headers.insert(ATTEMPTS_HEADER.clone(), HeaderValue::from(attempts));
}

/// What shapes the answer to the client, beyond the upstream reply itself.
pub struct ClientAnswer<'a> {
    pub requested_model: &'a str,
    pub stream: bool,
    pub include_usage: bool,
    pub deadline: Instant,
}

fn build_failed() -> Response {
    error_response(&ApiError::new(
        ErrorKind::Internal,
        "failed to build the response",
    ))
}

/// Turn an upstream reply into the client's response. Time spent reading the
/// upstream's body is added to `upstream_wait`.
pub async fn respond(
    reply: UpstreamReply,
    answer: &ClientAnswer<'_>,
    upstream_wait: &mut std::time::Duration,
) -> Response {
    let UpstreamReply {
        response,
        deployment,
        attempts,
    } = reply;
    let ctx = ChatContext {
        upstream_model: &deployment.upstream_model,
        requested_model: answer.requested_model,
        stream: answer.stream,
        include_usage: answer.include_usage,
    };
    let provider: &'static str = deployment.provider.name.as_str();
    let status = response.status();
    if !status.is_success() {
        let body_started = Instant::now();
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let body = read_capped(response, answer.deadline).await;
        *upstream_wait += body_started.elapsed();
        let mut resp = match deployment.adapter {
            Some(adapter) => error_response(&adapter.error(status.as_u16(), &body)),
            None => upstream_error(status, &body, provider),
        };
        if let Some(v) = retry_after {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
        routing_headers(resp.headers_mut(), &deployment.id, attempts);
        return resp;
    }
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if answer.stream && is_sse {
        let limits = SseLimits {
            idle: deployment.timeout,
            deadline: answer.deadline,
        };
        let upstream = Box::pin(response.bytes_stream());
        let relay = match deployment.adapter {
            None => SseRelay::pass_through(upstream, provider, limits),
            Some(adapter) => {
                SseRelay::translated(upstream, provider, limits, adapter.chat_stream(&ctx))
            }
        };
        let mut builder = Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache")
            .header("x-accel-buffering", "no");
        if let Some(h) = builder.headers_mut() {
            routing_headers(h, &deployment.id, attempts);
        }
        return builder
            .body(Body::from_stream(relay))
            .unwrap_or_else(|_| build_failed());
    }
    let content_type = response.headers().get(CONTENT_TYPE).cloned();
    let body_started = Instant::now();
    let body = tokio::time::timeout_at(answer.deadline, response.bytes()).await;
    *upstream_wait += body_started.elapsed();
    let body = match body {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if e.is_timeout() => return error_response(&timeout_error(&deployment)),
        Ok(Err(e)) => {
            return error_response(
                &ApiError::new(
                    ErrorKind::BadGateway,
                    format!(
                        "upstream provider `{provider}` failed while sending its response: {}",
                        liter_llm_gateway::upstream::error_chain(&e.without_url())
                    ),
                )
                .with_code("upstream_error"),
            )
        }
        Err(_) => return error_response(
            &ApiError::new(
                ErrorKind::GatewayTimeout,
                "the request exceeded the proxy's request timeout ([server].request_timeout_secs)",
            )
            .with_code("request_timeout"),
        ),
    };
    let (body, content_type) = match deployment.adapter {
        Some(adapter) => match adapter.chat_response(&body, &ctx) {
            Ok(translated) => (translated, HeaderValue::from_static("application/json")),
            Err(e) => return error_response(&e),
        },
        None => {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                return error_response(
                    &ApiError::new(
                        ErrorKind::BadGateway,
                        format!("upstream provider `{provider}` returned a response that is not valid JSON ({e})"),
                    )
                    .with_code("upstream_invalid_response"),
                );
            }
            (
                body,
                content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
            )
        }
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, content_type);
    routing_headers(h, &deployment.id, attempts);
    resp
}

async fn read_capped(mut resp: reqwest::Response, deadline: Instant) -> Bytes {
    let mut out = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            let room = MAX_ERROR_BODY.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read).await;
    Bytes::from(out)
}

/// Map a non-2xx upstream answer to what the client should see. Client errors
/// keep their status (the request itself was wrong); the upstream rejecting the
/// proxy's own credentials is the operator's problem, so it becomes a 502 rather
/// than a 401 that would make the client doubt its own key.
fn upstream_error(status: reqwest::StatusCode, body: &Bytes, provider: &str) -> Response {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let upstream_message = parsed.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(|m| m.as_str())
            .or_else(|| e.as_str())
            .map(str::to_string)
    });
    let openai_shaped = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.get("message"))
        .is_some_and(|m| m.is_string());
    let code = status.as_u16();
    let detail = upstream_message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let trimmed: String = text.chars().take(300).collect();
        if trimmed.trim().is_empty() {
            "empty body".to_string()
        } else if parsed.is_none() {
            format!("non-JSON body: {}", trimmed.trim())
        } else {
            trimmed
        }
    });
    match code {
        400 | 404 | 409 | 413 | 415 | 422 | 429 if openai_shaped => {
            let mut r = Response::new(Body::from(body.clone()));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        400 | 404 | 409 | 413 | 415 | 422 => {
            let kind = match code {
                404 => ErrorKind::NotFound,
                413 => ErrorKind::PayloadTooLarge,
                _ => ErrorKind::InvalidRequest,
            };
            let mut r = error_response(&ApiError::new(
                kind,
                format!("upstream provider `{provider}` rejected the request ({code}): {detail}"),
            ));
            *r.status_mut() = status;
            r
        }
        429 => error_response(
            &ApiError::new(
                ErrorKind::RateLimited,
                format!("upstream provider `{provider}` is rate limiting: {detail}"),
            )
            .with_code("upstream_rate_limited"),
        ),
        401 | 403 => {
            // The upstream's text may quote (part of) the proxy's own key, so it
            // goes to the operator's log, not to the client.
            tracing::warn!(provider, status = code, detail = %detail, "upstream rejected the proxy's credentials");
            error_response(
                &ApiError::new(
                    ErrorKind::BadGateway,
                    format!("upstream provider `{provider}` rejected the proxy's credentials ({code}); the operator must check this model's api_key"),
                )
                .with_code("upstream_auth_failed"),
            )
        }
        503 => error_response(
            &ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!("upstream provider `{provider}` is unavailable (503): {detail}"),
            )
            .with_code("upstream_unavailable"),
        ),
        504 => error_response(
            &ApiError::new(
                ErrorKind::GatewayTimeout,
                format!("upstream provider `{provider}` timed out (504): {detail}"),
            )
            .with_code("upstream_timeout"),
        ),
        _ => error_response(
            &ApiError::new(
                ErrorKind::BadGateway,
                format!("upstream provider `{provider}` returned {code}: {detail}"),
            )
            .with_code("upstream_error"),
        ),
    }
}
