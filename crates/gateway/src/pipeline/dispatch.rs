//! The innermost service: route to a deployment, call the upstream (retrying,
//! cooling down and falling back), shape the answer for the client, and settle.
//!
//! Everything before the response is handed back is safe to retry: nothing has
//! reached the client. After that, nothing is retried.

use super::{BodyFormat, ChatRequest, ChatResponse, Endpoint, GatewayBody, Usage};
use crate::balance::{pick, CooldownPolicy, InFlight, Unavailable};
use crate::router::{Deployment, ResolveError, Router, Target};
use crate::stream::{ByteRelay, RelayMeter, SseLimits, SseRelay};
use crate::tap::read_answer;
use crate::transport::{ReadError, UpstreamResponse};
use crate::upstream::{
    backoff, error_chain, retry_after, retryable_status, timeout_error, OutgoingRequest, Prepared,
    Upstream, MAX_RETRY_AFTER,
};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use liter_llm_config::Strategy;
use liter_llm_protocol::{multipart, rewrite_model, ApiError, ErrorKind};
use liter_llm_providers::adapters::{ChatContext, EndpointRequest, UpstreamTarget};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

pub static MODEL_ID_HEADER: HeaderName = HeaderName::from_static("x-liter-llm-model-id");
pub static ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-liter-llm-attempts");
pub static FALLBACK_HEADER: HeaderName = HeaderName::from_static("x-liter-llm-fallback-reason");

/// Upstream error bodies are read only this far; they are messages, not payloads.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// USD for a deployment's usage (0 when its price is unknown).
pub type Pricer = Arc<dyn Fn(&Deployment, &Usage) -> f64 + Send + Sync>;

/// Headers an answer ends up with when every layer is on (routing, rate
/// limits, cost, overhead, request id, CORS, `Vary`): reserved at once, so the
/// map is not grown and rehashed twice on the way out.
const ANSWER_HEADERS: usize = 20;

pub struct DispatchCore {
    pub router: Arc<Router>,
    pub upstream: Upstream,
    pub strategy: Strategy,
    pub cooldown: CooldownPolicy,
    pub pricer: Pricer,
}

#[derive(Clone)]
pub struct Dispatch(Arc<DispatchCore>);

impl Dispatch {
    pub fn new(core: DispatchCore) -> Dispatch {
        Dispatch(Arc::new(core))
    }
}

impl tower::Service<ChatRequest> for Dispatch {
    type Response = ChatResponse;
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, ApiError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let core = self.0.clone();
        Box::pin(async move {
            let result = match tokio::time::timeout_at(req.deadline, core.handle(&req)).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::new(
                    ErrorKind::GatewayTimeout,
                    "the request took longer than the proxy's request timeout ([server].request_timeout_secs)",
                )
                .with_code("request_timeout")),
            };
            if let Err(e) = &result {
                req.settlement.update(|o| {
                    o.status = e.status().as_u16();
                    o.error_type = Some(e.kind.type_str().to_string());
                });
                req.settlement.settle();
            }
            result
        })
    }
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

/// A successful attempt (any non-retryable status) and what it took.
struct Answered {
    response: UpstreamResponse,
    deployment: Arc<Deployment>,
    in_flight: InFlight,
}

/// Why a group could not answer; the caller may fall back.
enum GroupFailure {
    /// The client's own request is at fault; no fallback.
    Client(ApiError),
    /// Every attempt failed retryably. Keeps the last upstream answer (to pass on
    /// its status and `Retry-After`) or the last error.
    Exhausted {
        last_reply: Option<(UpstreamResponse, Arc<Deployment>)>,
        error: ApiError,
        why: String,
    },
}

static ALIAS_RR: AtomicU64 = AtomicU64::new(0);

impl DispatchCore {
    async fn handle(&self, req: &ChatRequest) -> Result<ChatResponse, ApiError> {
        let primary = self.router.resolve(&req.model).map_err(resolve_error)?;
        let mut chain: Vec<Target<'_>> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        match primary.group() {
            Some(g) => {
                let too_long = g.max_input_tokens.is_some_and(|limit| {
                    req.estimated_prompt_tokens > limit && !g.context_window_fallbacks.is_empty()
                });
                if too_long {
                    reasons.push(format!(
                        "`{}`: prompt of about {} tokens exceeds its context window of {}",
                        g.name,
                        req.estimated_prompt_tokens,
                        g.max_input_tokens.unwrap_or(0)
                    ));
                } else {
                    chain.push(primary.clone());
                }
                let names = if too_long {
                    g.context_window_fallbacks.iter()
                } else {
                    [].iter()
                };
                for name in names.chain(g.fallbacks.iter()) {
                    // Fallback names were checked when the router was built.
                    if let Ok(t) = self.router.resolve(name) {
                        chain.push(t);
                    }
                }
            }
            None => chain.push(primary.clone()),
        }
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut last: Option<GroupFailure> = None;
        for target in &chain {
            match self.try_target(target, req, &mut attempts).await {
                Ok(answered) => {
                    let wait = started.elapsed();
                    let fallback_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
                    return Ok(self
                        .respond(answered, req, attempts, wait, fallback_reason)
                        .await);
                }
                Err(GroupFailure::Client(e)) => return Err(e),
                Err(GroupFailure::Exhausted {
                    last_reply,
                    error,
                    why,
                }) => {
                    reasons.push(format!("`{}`: {why}", target_name(target)));
                    last = Some(GroupFailure::Exhausted {
                        last_reply,
                        error,
                        why,
                    });
                }
            }
        }
        let wait = started.elapsed();
        match last {
            Some(GroupFailure::Exhausted {
                last_reply: Some((response, deployment)),
                ..
            }) => {
                // Pass the upstream's own failure (status, Retry-After) through.
                // Boxed, as below: a rare path should not enlarge every request's future.
                let in_flight_free =
                    Box::pin(self.respond_failure(response, &deployment, req, attempts, wait))
                        .await;
                Ok(in_flight_free)
            }
            Some(GroupFailure::Exhausted { error, .. }) | Some(GroupFailure::Client(error)) => {
                Err(error)
            }
            None => Err(ApiError::new(ErrorKind::Internal, "no route was tried")),
        }
    }

    async fn try_target(
        &self,
        target: &Target<'_>,
        req: &ChatRequest,
        attempts: &mut u32,
    ) -> Result<Answered, GroupFailure> {
        let deployments = target.deployments();
        let rr = target.group().map_or(&ALIAS_RR, |g| &g.rr);
        let unit_price = |d: &Deployment| {
            if d.prices.is_none() {
                // Unknown is not free: a deployment without a price goes last.
                return f64::MAX;
            }
            (self.pricer)(
                d,
                &Usage {
                    prompt_tokens: 1_000_000,
                    completion_tokens: 1_000_000,
                    ..Usage::default()
                },
            )
        };
        let allowed = 1 + self.upstream.max_retries();
        let mut tried: Vec<usize> = Vec::new();
        let mut last_reply: Option<(UpstreamResponse, Arc<Deployment>)> = None;
        let mut last_error: Option<ApiError> = None;
        let mut why = String::new();
        for attempt in 0..allowed {
            let (idx, in_flight) = match pick(self.strategy, deployments, &tried, rr, &unit_price) {
                Ok(p) => p,
                Err(unavailable) => {
                    // If this request's own failures just cooled the group, the
                    // client should hear about those failures, not the cooldown.
                    let error = match (last_error.take(), &last_reply) {
                        (Some(e), None) => e,
                        _ => unavailable_error(target_name(target), unavailable),
                    };
                    if tried.is_empty() {
                        why = error.message.clone();
                    }
                    return Err(GroupFailure::Exhausted {
                        last_reply,
                        error,
                        why,
                    });
                }
            };
            tried.push(idx);
            let d = &deployments[idx];
            let prepared = prepare(d, req).map_err(GroupFailure::Client)?;
            *attempts += 1;
            let sent_at = Instant::now();
            let outgoing = OutgoingRequest {
                // Audio is relayed as it arrives: the relay's idle limit bounds
                // it, not a whole-response timeout that would cut long speech.
                stream: req.stream || req.endpoint.streams_bytes(),
                request_id: &req.request_id,
            };
            let outcome = self.upstream.send_once(d, &outgoing, prepared).await;
            let fresh_deployment_left = tried.len() < deployments.len();
            let wait = match outcome {
                Ok(response) if !retryable_status(response.status()) => {
                    d.state.record_success(sent_at.elapsed());
                    return Ok(Answered {
                        response,
                        deployment: d.clone(),
                        in_flight,
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    let ra = retry_after(&response);
                    let cooling_hint = ra.filter(|_| matches!(status.as_u16(), 429 | 503));
                    if d.state.record_failure(&self.cooldown, cooling_hint) {
                        tracing::warn!(deployment = %d.id, status = status.as_u16(), "deployment cooling down");
                    }
                    why = format!("{} from {}", status.as_u16(), d.id);
                    let wait = match ra {
                        Some(w) if w > MAX_RETRY_AFTER && !fresh_deployment_left => {
                            // Longer than we will hold the client: hand the answer over.
                            return Err(GroupFailure::Exhausted {
                                last_reply: Some((response, d.clone())),
                                error: ApiError::new(ErrorKind::BadGateway, why.clone()),
                                why,
                            });
                        }
                        Some(w) => w,
                        None => backoff(attempt),
                    };
                    last_reply = Some((response, d.clone()));
                    last_error = None;
                    wait
                }
                Err(e) => {
                    if d.state.record_failure(&self.cooldown, None) {
                        tracing::warn!(deployment = %d.id, error = %e.message, "deployment cooling down");
                    }
                    why = format!("{} ({})", e.message, d.id);
                    last_reply = None;
                    last_error = Some(e);
                    backoff(attempt)
                }
            };
            drop(in_flight);
            if attempt + 1 < allowed && !fresh_deployment_left {
                // Another deployment needs no pause; the same one again does.
                let remaining = req.deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(wait.min(remaining)).await;
            }
        }
        let error = last_error.unwrap_or_else(|| ApiError::new(ErrorKind::BadGateway, why.clone()));
        Err(GroupFailure::Exhausted {
            last_reply,
            error,
            why,
        })
    }

    /// The answer of the deployment that finally responded.
    async fn respond(
        &self,
        answered: Answered,
        req: &ChatRequest,
        attempts: u32,
        mut wait: Duration,
        fallback_reason: Option<String>,
    ) -> ChatResponse {
        let Answered {
            response,
            deployment,
            in_flight,
        } = answered;
        let status = response.status();
        req.settlement.update(|o| {
            o.deployment_id = Some(deployment.id.clone());
            o.provider = Some(deployment.provider.name.as_str());
            o.upstream_model = Some(deployment.upstream_model.clone());
            o.attempts = attempts;
            o.fallback_reason = fallback_reason.clone();
            o.time_to_first_byte = Some(wait);
        });
        if !status.is_success() {
            drop(in_flight);
            // Boxed: every request's future is allocated and moved at the size of
            // its largest path, and error answers are the rare one.
            return Box::pin(self.respond_failure(response, &deployment, req, attempts, wait))
                .await;
        }
        let provider: &'static str = deployment.provider.name.as_str();
        let ctx = chat_context(&deployment, req);
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            // Bedrock and SageMaker stream in AWS event-stream framing, and
            // Ollama's native API in NDJSON; their adapters translate both.
            .is_some_and(|ct| {
                ct.starts_with("text/event-stream")
                    || ct.starts_with("application/vnd.amazon.eventstream")
                    || (deployment.adapter.is_some() && ct.starts_with("application/x-ndjson"))
            });
        if req.endpoint.streams_bytes() {
            return self.relay_bytes(
                response,
                deployment,
                in_flight,
                req,
                attempts,
                wait,
                fallback_reason,
            );
        }
        if req.stream && is_sse {
            req.settlement.update(|o| {
                o.status = 200;
                o.upstream_wait = wait;
            });
            let limits = SseLimits {
                idle: deployment.timeout,
                deadline: req.deadline,
            };
            let meter = RelayMeter::new(
                req.settlement.clone(),
                deployment.clone(),
                self.pricer.clone(),
                in_flight,
                !req.include_usage,
            );
            let upstream = response.into_body();
            let relay = match deployment.adapter {
                None => SseRelay::pass_through(upstream, provider, limits, meter),
                Some(adapter) => SseRelay::translated(
                    upstream,
                    provider,
                    limits,
                    meter,
                    adapter.chat_stream(&ctx),
                ),
            };
            let mut resp = http::Response::new(GatewayBody::Stream(Box::pin(relay)));
            resp.headers_mut().reserve(ANSWER_HEADERS);
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            routing_headers(h, &deployment, attempts, fallback_reason.as_deref());
            return resp;
        }
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let body_started = Instant::now();
        let body = response.bytes(req.deadline).await;
        wait += body_started.elapsed();
        drop(in_flight);
        let result: Result<(Bytes, HeaderValue), ApiError> = match body {
            Ok(b) => match deployment.adapter {
                Some(adapter) if req.endpoint == Endpoint::ChatCompletions => adapter
                    .chat_response(&b, &ctx)
                    .map(|t| (t, HeaderValue::from_static("application/json"))),
                Some(adapter) => adapter
                    .endpoint_response_for(&endpoint_call(req), &b, &ctx)
                    .map(|t| (t.body, t.content_type)),
                None => Ok((
                    b,
                    content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
                )),
            },
            Err(ReadError::Timeout) => Err(timeout_error(&deployment)),
            Err(ReadError::Failed(e)) => Err(ApiError::new(
                ErrorKind::BadGateway,
                format!(
                    "upstream provider `{provider}` failed while sending its response: {}",
                    error_chain(&e)
                ),
            )
            .with_code("upstream_error")),
            Err(ReadError::Deadline) => Err(ApiError::new(
                ErrorKind::GatewayTimeout,
                "the request exceeded the proxy's request timeout ([server].request_timeout_secs)",
            )
            .with_code("request_timeout")),
        };
        let (body, content_type) = match result {
            Ok(ok) => ok,
            Err(e) => return self.settle_error(req, &e, wait, &deployment, attempts),
        };
        let answer = if req.expects_json {
            read_answer(&body)
        } else {
            // Text, SRT or VTT: nothing to meter in it, nothing to validate.
            Some((None, None, Vec::new()))
        };
        let Some((usage, response_model, finish_reasons)) = answer else {
            let e = ApiError::new(
                ErrorKind::BadGateway,
                format!(
                    "upstream provider `{provider}` returned a response that is not valid JSON"
                ),
            )
            .with_code("upstream_invalid_response");
            return self.settle_error(req, &e, wait, &deployment, attempts);
        };
        let cost = usage
            .as_ref()
            .map_or(0.0, |u| (self.pricer)(&deployment, u));
        if let Some(u) = &usage {
            deployment.state.record_tokens(u.total());
        }
        req.settlement.update(|o| {
            o.status = 200;
            o.usage = usage;
            o.cost_usd = cost;
            o.completed = true;
            o.response_model = response_model;
            o.finish_reasons = finish_reasons;
            o.upstream_wait = wait;
        });
        req.settlement.settle();
        let mut resp = http::Response::new(GatewayBody::full(body));
        resp.headers_mut().reserve(ANSWER_HEADERS);
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, content_type);
        routing_headers(h, &deployment, attempts, fallback_reason.as_deref());
        resp
    }

    /// A binary answer (audio), relayed as it arrives with the upstream's content type.
    #[allow(clippy::too_many_arguments)]
    fn relay_bytes(
        &self,
        response: UpstreamResponse,
        deployment: Arc<Deployment>,
        in_flight: InFlight,
        req: &ChatRequest,
        attempts: u32,
        wait: Duration,
        fallback_reason: Option<String>,
    ) -> ChatResponse {
        req.settlement.update(|o| {
            o.status = 200;
            o.upstream_wait = wait;
        });
        let upstream_type = response.headers().get(CONTENT_TYPE);
        let content_type = deployment
            .adapter
            .and_then(|a| a.relayed_content_type(&endpoint_call(req), upstream_type))
            .or_else(|| upstream_type.cloned())
            .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
        let limits = SseLimits {
            idle: deployment.timeout,
            deadline: req.deadline,
        };
        let provider: &'static str = deployment.provider.name.as_str();
        let meter = RelayMeter::new(
            req.settlement.clone(),
            deployment.clone(),
            self.pricer.clone(),
            in_flight,
            false,
        );
        let relay = ByteRelay::new(response.into_body(), provider, limits, meter);
        let mut resp = http::Response::new(GatewayBody::Bytes(Box::pin(relay)));
        resp.headers_mut().reserve(ANSWER_HEADERS);
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, content_type);
        routing_headers(h, &deployment, attempts, fallback_reason.as_deref());
        resp
    }

    /// A non-2xx upstream answer, mapped for the client.
    async fn respond_failure(
        &self,
        response: UpstreamResponse,
        deployment: &Arc<Deployment>,
        req: &ChatRequest,
        attempts: u32,
        mut wait: Duration,
    ) -> ChatResponse {
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let body_started = Instant::now();
        let body = response.read_capped(req.deadline, MAX_ERROR_BODY).await;
        wait += body_started.elapsed();
        let mut resp = match deployment.adapter {
            Some(adapter) => error_reply(&adapter.error(status.as_u16(), &body)),
            None => upstream_error(status, &body, deployment.provider.name.as_str()),
        };
        if let Some(v) = retry_after {
            resp.headers_mut().insert(RETRY_AFTER, v);
        }
        let code = resp.status().as_u16();
        req.settlement.update(|o| {
            o.status = code;
            o.error_type = Some(format!("upstream_{}", status.as_u16()));
            o.deployment_id = Some(deployment.id.clone());
            o.attempts = attempts;
            o.upstream_wait = wait;
        });
        req.settlement.settle();
        routing_headers(resp.headers_mut(), deployment, attempts, None);
        resp
    }

    fn settle_error(
        &self,
        req: &ChatRequest,
        e: &ApiError,
        wait: Duration,
        deployment: &Deployment,
        attempts: u32,
    ) -> ChatResponse {
        req.settlement.update(|o| {
            o.status = e.status().as_u16();
            o.error_type = Some(e.kind.type_str().to_string());
            o.upstream_wait = wait;
        });
        req.settlement.settle();
        let mut resp = error_reply(e);
        routing_headers(resp.headers_mut(), deployment, attempts, None);
        resp
    }
}

fn target_name<'a>(t: &'a Target<'_>) -> &'a str {
    match t {
        Target::Group(g) => &g.name,
        Target::Alias(d) => &d.model_name,
    }
}

fn unavailable_error(model: &str, u: Unavailable) -> ApiError {
    match u {
        Unavailable::Cooling(d) => {
            let secs = d.as_secs_f64().ceil().max(1.0) as u64;
            ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!("every deployment of `{model}` is cooling down after failures; retry in {secs} s"),
            )
            .with_code("deployments_cooling_down")
            .with_retry_after(secs)
        }
        Unavailable::AtCapacity(d) => {
            let secs = d.as_secs_f64().ceil().max(1.0) as u64;
            ApiError::new(
                ErrorKind::RateLimited,
                format!(
                    "every deployment of `{model}` is at its own rpm/tpm limit; retry in {secs} s"
                ),
            )
            .with_code("deployments_at_capacity")
            .with_retry_after(secs)
        }
        Unavailable::Unhealthy => ApiError::new(
            ErrorKind::ServiceUnavailable,
            format!("no deployment of `{model}` is passing its health checks"),
        )
        .with_code("no_healthy_deployment")
        .with_retry_after(5),
    }
}

fn chat_context<'a>(d: &'a Deployment, req: &'a ChatRequest) -> ChatContext<'a> {
    ChatContext {
        upstream_model: &d.upstream_model,
        requested_model: &req.model,
        stream: req.stream,
        // Always ask for usage: streams are metered whether or not the client
        // wants the usage chunk; the relay strips it when the client did not ask.
        include_usage: true,
    }
}

/// The request for one deployment: the client's bytes with the model spliced
/// in, or the adapter's translation.
fn prepare(d: &Deployment, req: &ChatRequest) -> Result<Prepared, ApiError> {
    let Some(adapter) = d.adapter else {
        if !d.provider.endpoints.is_empty() && !d.provider.offers(req.endpoint.registry_name()) {
            return Err(not_offered(d, req.endpoint));
        }
        let (body, content_type) = match &req.body_format {
            BodyFormat::Json => {
                let body = rewrite_model(&req.body, req.model_span, &req.model, &d.upstream_model);
                let body = if req.stream && req.endpoint.streams_sse() && !req.include_usage {
                    request_usage(&body)
                } else {
                    body
                };
                (body, None)
            }
            BodyFormat::Multipart { content_type } => {
                let body = if req.model == *d.upstream_model {
                    req.body.clone()
                } else {
                    multipart::splice(&req.body, req.model_span, d.upstream_model.as_bytes())
                };
                (body, Some(content_type.clone()))
            }
        };
        return Ok(Prepared {
            method: http::Method::POST,
            path: Cow::Borrowed(req.endpoint.path()),
            headers: Vec::new(),
            content_type,
            body,
        });
    };
    if !adapter.offers(req.endpoint) {
        return Err(not_offered(d, req.endpoint));
    }
    let target = UpstreamTarget {
        base_url: &d.base_url,
        options: &d.options,
    };
    let ctx = chat_context(d, req);
    let translated = if req.endpoint == Endpoint::ChatCompletions {
        adapter.chat_request_for(&req.body, &ctx, &target)?
    } else {
        adapter.endpoint_request(&endpoint_call(req), &ctx, &target)?
    };
    Ok(Prepared {
        method: translated.method,
        path: Cow::Owned(translated.path),
        headers: translated.headers,
        content_type: translated.content_type,
        body: translated.body,
    })
}

/// The client's non-chat request as a native adapter sees it.
fn endpoint_call(req: &ChatRequest) -> EndpointRequest<'_> {
    let content_type = match &req.body_format {
        BodyFormat::Json => None,
        BodyFormat::Multipart { content_type } => content_type.to_str().ok(),
    };
    EndpointRequest {
        endpoint: req.endpoint,
        body: &req.body,
        content_type,
    }
}

fn not_offered(d: &Deployment, endpoint: Endpoint) -> ApiError {
    ApiError::invalid_request(format!(
        "model `{}` is served by provider `{}`, which does not offer `{}` through this proxy",
        d.model_name,
        d.provider.name,
        endpoint.name()
    ))
    .with_param("model")
    .with_code("endpoint_not_supported")
}

/// Ask an OpenAI-compatible upstream for the usage chunk the client did not
/// request, so the stream can be metered.
fn request_usage(body: &Bytes) -> Bytes {
    if memchr::memmem::find(body, b"\"stream_options\"").is_none() {
        if let Some(open) = body.iter().position(|b| *b == b'{') {
            let mut out = Vec::with_capacity(body.len() + 40);
            out.extend_from_slice(&body[..=open]);
            out.extend_from_slice(br#""stream_options":{"include_usage":true},"#);
            out.extend_from_slice(&body[open + 1..]);
            return Bytes::from(out);
        }
        return body.clone();
    }
    // Rare: the client sent stream_options without include_usage.
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut v) => {
            if let Some(obj) = v.get_mut("stream_options").and_then(|o| o.as_object_mut()) {
                obj.insert("include_usage".into(), serde_json::Value::Bool(true));
            }
            serde_json::to_vec(&v)
                .map(Bytes::from)
                .unwrap_or_else(|_| body.clone())
        }
        Err(_) => body.clone(),
    }
}

/// Which deployment answered, after how many attempts, and why a fallback was used.
fn routing_headers(
    headers: &mut HeaderMap,
    deployment: &Deployment,
    attempts: u32,
    fallback: Option<&str>,
) {
    // Both values are made without allocating: the id's once per deployment,
    // small attempt counts from static text.
    if let Some(v) = &deployment.id_header {
        headers.insert(MODEL_ID_HEADER.clone(), v.clone());
    }
    const COUNTS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let attempts = match COUNTS.get(attempts as usize) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(attempts),
    };
    headers.insert(ATTEMPTS_HEADER.clone(), attempts);
    if let Some(Ok(v)) = fallback.map(HeaderValue::from_str) {
        headers.insert(FALLBACK_HEADER.clone(), v);
    }
}

/// An error in OpenAI's envelope as a gateway response.
pub fn error_reply(e: &ApiError) -> ChatResponse {
    let mut resp = http::Response::new(GatewayBody::full(e.to_json()));
    *resp.status_mut() = e.status();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = e.retry_after_secs {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Map a non-2xx answer from an OpenAI-compatible upstream. Client errors keep
/// their status (the request itself was wrong); the upstream rejecting the
/// proxy's own credentials is the operator's problem, so it becomes a 502 rather
/// than a 401 that would make the client doubt its own key.
fn upstream_error(status: StatusCode, body: &Bytes, provider: &str) -> ChatResponse {
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
            let mut r = http::Response::new(GatewayBody::full(body.clone()));
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
            let mut r = error_reply(&ApiError::new(
                kind,
                format!("upstream provider `{provider}` rejected the request ({code}): {detail}"),
            ));
            *r.status_mut() = status;
            r
        }
        429 => error_reply(
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
            error_reply(
                &ApiError::new(
                    ErrorKind::BadGateway,
                    format!(
                        "upstream provider `{provider}` rejected the proxy's credentials ({code}); the operator must check this model's api_key"
                    ),
                )
                .with_code("upstream_auth_failed"),
            )
        }
        503 => error_reply(
            &ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!("upstream provider `{provider}` is unavailable (503): {detail}"),
            )
            .with_code("upstream_unavailable"),
        ),
        504 => error_reply(
            &ApiError::new(
                ErrorKind::GatewayTimeout,
                format!("upstream provider `{provider}` timed out (504): {detail}"),
            )
            .with_code("upstream_timeout"),
        ),
        _ => error_reply(
            &ApiError::new(
                ErrorKind::BadGateway,
                format!("upstream provider `{provider}` returned {code}: {detail}"),
            )
            .with_code("upstream_error"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_requested_without_touching_other_bytes() {
        let body = Bytes::from_static(br#"{"model":"m","stream":true,"x":[1]}"#);
        assert_eq!(
            &request_usage(&body)[..],
            br#"{"stream_options":{"include_usage":true},"model":"m","stream":true,"x":[1]}"#
        );
        let with_opts = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#,
        );
        let v: serde_json::Value =
            serde_json::from_slice(&request_usage(&with_opts)).unwrap_or_default();
        assert_eq!(v["stream_options"]["include_usage"], true);
    }
}
