//! Tracing: one OpenTelemetry span per chat request, exported over OTLP.
//!
//! The span follows the GenAI semantic conventions (an inference client span):
//! its name is `chat {gen_ai.request.model}`, its kind `CLIENT`. It starts when
//! the request reaches this layer (the outermost one, so rejections by the
//! layers below are traced too) and ends at settlement, so the span of a stream
//! covers the whole stream and carries the usage the core read off it.
//!
//! | attribute | when |
//! |---|---|
//! | `gen_ai.operation.name` = `chat` | always |
//! | `gen_ai.request.model` (client-facing name), `gen_ai.request.stream` | always |
//! | `gen_ai.request.max_tokens` | the client sent a limit |
//! | `gen_ai.provider.name` (and the older `gen_ai.system`) | a deployment was chosen |
//! | `gen_ai.response.model`, `gen_ai.response.finish_reasons` | the upstream reported them |
//! | `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens` | usage is known |
//! | `gen_ai.usage.cache_read.input_tokens`, `…cache_creation.input_tokens`, `…reasoning.output_tokens` | non-zero |
//! | `gen_ai.response.time_to_first_chunk` (seconds, `Outcome::time_to_first_byte`) | streams |
//! | `http.response.status_code` | a status was decided |
//! | `error.type` and span status `Error` | the request failed (`stream_incomplete`, `upstream_502`, `rate_limit_error`, `cancelled`, …) |
//! | `liter_llm.cost_usd`, `liter_llm.cached`, `liter_llm.attempts`, `liter_llm.completed` | always at settlement |
//! | `liter_llm.deployment_id`, `liter_llm.upstream_model`, `liter_llm.fallback_reason` | when known |
//! | `liter_llm.key_id`, `liter_llm.request_id` | always (the key id is a digest prefix, never the key) |
//!
//! Export: `[telemetry]` names an OTLP collector, over HTTP (protobuf, to
//! `{endpoint}/v1/traces`) or gRPC. Finished spans go to the SDK's batch span
//! processor, whose one background thread exports them off the request path;
//! the network I/O runs on a small runtime of its own (one worker thread), so
//! exporting never competes with, or depends on, the proxy's runtime — and
//! [`TelemetryLayer::shutdown`] can flush from any thread, even one of the
//! proxy's own workers, without deadlocking. The OTLP/HTTP client is built on
//! the workspace's `reqwest` (rustls), so no second HTTP or TLS stack is linked.
//! Collector headers (`[telemetry.headers]`, e.g. an API key) are marked
//! sensitive and never appear in logs or spans.
//!
//! Sampling: `sampling_ratio` of the traces (by trace id), parent-based so a
//! propagated parent's decision would be honoured. A span that is not sampled
//! costs one sampling decision and nothing else: no hook, no attributes.
//!
//! Without `[telemetry]` the layer is not built at all ([`TelemetryLayer::from_config`]
//! returns `None`): no thread, no runtime, no per-request cost.

use crate::pipeline::{ChatRequest, ChatResponse, Outcome, Settlement};
use liter_llm_config::{Config, OtlpProtocol, TelemetrySection};
use liter_llm_protocol::ApiError;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::{
    Array, Context as OtelContext, InstrumentationScope, KeyValue, StringValue, Value,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span as SdkSpan, SpanData,
    SpanExporter,
};
use opentelemetry_sdk::Resource;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Attribute keys written by this layer.
pub mod attr {
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// The pre-1.37 name of `gen_ai.provider.name`, still read by many backends.
    pub const SYSTEM: &str = "gen_ai.system";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const REQUEST_STREAM: &str = "gen_ai.request.stream";
    pub const REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    pub const RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    pub const USAGE_CACHE_CREATION_INPUT_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
    pub const USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
    pub const ERROR_TYPE: &str = "error.type";
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub const COST_USD: &str = "liter_llm.cost_usd";
    pub const DEPLOYMENT_ID: &str = "liter_llm.deployment_id";
    pub const UPSTREAM_MODEL: &str = "liter_llm.upstream_model";
    pub const CACHED: &str = "liter_llm.cached";
    pub const ATTEMPTS: &str = "liter_llm.attempts";
    pub const COMPLETED: &str = "liter_llm.completed";
    pub const FALLBACK_REASON: &str = "liter_llm.fallback_reason";
    pub const KEY_ID: &str = "liter_llm.key_id";
    pub const REQUEST_ID: &str = "liter_llm.request_id";
}

/// `error.type` of a request whose caller went away before it was answered.
pub const CANCELLED: &str = "cancelled";

/// How long one OTLP export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Span names carry the client's model name; keep a bogus one from making a huge name.
const MAX_MODEL_IN_NAME: usize = 256;

/// The tracing layer. Cheap to clone; every clone shares one tracer provider.
#[derive(Clone)]
pub struct TelemetryLayer {
    shared: Arc<Shared>,
}

struct Shared {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for TelemetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryLayer").finish_non_exhaustive()
    }
}

impl TelemetryLayer {
    /// Build the layer from `[telemetry]`: validate it, build the OTLP exporter
    /// and start the batch processor (one thread) and the exporter's runtime
    /// (one thread). `Ok(None)` when tracing is not configured.
    ///
    /// Errors name the offending field. `[general].enable_tracing = true` without
    /// a `[telemetry]` section is an error (there would be nowhere to send spans);
    /// a `[telemetry]` section alone turns tracing on.
    pub fn from_config(config: &Config) -> Result<Option<TelemetryLayer>, String> {
        let Some(t) = checked_section(config)? else {
            return Ok(None);
        };
        let exporter = OtlpExporter::new(t)?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_sampler(sampler(t.sampling_ratio))
            .with_resource(
                Resource::builder()
                    .with_service_name(t.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        Ok(Some(TelemetryLayer::from_provider(provider)))
    }

    /// Check `[telemetry]` and `[general].enable_tracing` without starting
    /// anything (for `config check`). `Ok(true)` when tracing is on.
    pub fn validate(config: &Config) -> Result<bool, String> {
        checked_section(config).map(|t| t.is_some())
    }

    /// A layer over any tracer provider: a custom exporter, or an in-memory one in tests.
    pub fn from_provider(provider: SdkTracerProvider) -> TelemetryLayer {
        let scope = InstrumentationScope::builder("liter-llm")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        TelemetryLayer {
            shared: Arc::new(Shared { tracer, provider }),
        }
    }

    /// Export every finished span now. Blocks until the export is done (at most
    /// a few seconds); safe from any thread.
    pub fn force_flush(&self) -> Result<(), String> {
        self.shared
            .provider
            .force_flush()
            .map_err(|e| e.to_string())
    }

    /// Flush the spans still queued and stop the exporter. Call once at process
    /// exit, after the server has drained (spans of requests still running are
    /// lost). Blocks for at most about five seconds; safe from any thread,
    /// including a worker of the proxy's runtime. Later calls do nothing.
    pub fn shutdown(&self) {
        match self.shared.provider.shutdown() {
            Ok(()) | Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown) => {}
            Err(e) => tracing::warn!(error = %e, "telemetry: flushing spans at shutdown failed"),
        }
    }
}

impl<S> tower::Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;

    fn layer(&self, inner: S) -> TelemetryService<S> {
        TelemetryService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`TelemetryLayer`] wraps around the rest of the pipeline.
#[derive(Clone)]
pub struct TelemetryService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> tower::Service<ChatRequest> for TelemetryService<S>
where
    S: tower::Service<ChatRequest, Response = ChatResponse, Error = ApiError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatResponse;
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, ApiError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let span = start_span(&self.shared.tracer, &req);
        if span.is_recording() {
            let stream = req.stream;
            req.settlement.on_settle(move |o| end_span(span, o, stream));
        }
        // A request that leaves this layer unsettled (rejected below without
        // settling, or abandoned by its caller) is settled here, so every hook,
        // this span's included, runs exactly once.
        let guard = SettleGuard(Some(req.settlement.clone()));
        let inner = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, inner);
        Box::pin(async move {
            let mut guard = guard;
            let result = inner.call(req).await;
            let settlement = guard.0.take();
            if let (Err(e), Some(s)) = (&result, settlement) {
                if !s.is_settled() {
                    s.update(|o| {
                        if o.status == 0 {
                            o.status = e.status().as_u16();
                        }
                        if o.error_type.is_none() {
                            o.error_type = Some(e.kind.type_str().to_string());
                        }
                    });
                    s.settle();
                }
            }
            result
        })
    }
}

/// Settles as cancelled when the request's future is dropped before it finished.
struct SettleGuard(Option<Settlement>);

impl Drop for SettleGuard {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            if !s.is_settled() {
                s.update(|o| {
                    if o.error_type.is_none() {
                        o.error_type = Some(CANCELLED.to_string());
                    }
                });
                s.settle();
            }
        }
    }
}

fn start_span(tracer: &SdkTracer, req: &ChatRequest) -> SdkSpan {
    let model = truncate(&req.model, MAX_MODEL_IN_NAME);
    let mut name = String::with_capacity(5 + model.len());
    name.push_str("chat ");
    name.push_str(model);
    let mut attributes = Vec::with_capacity(6);
    attributes.push(KeyValue::new(attr::OPERATION_NAME, "chat"));
    attributes.push(KeyValue::new(attr::REQUEST_MODEL, req.model.clone()));
    attributes.push(KeyValue::new(attr::REQUEST_STREAM, req.stream));
    if let Some(max) = req.max_tokens {
        attributes.push(KeyValue::new(attr::REQUEST_MAX_TOKENS, int(max)));
    }
    attributes.push(KeyValue::new(attr::KEY_ID, req.caller.key_id.clone()));
    attributes.push(KeyValue::new(attr::REQUEST_ID, req.request_id.clone()));
    let builder = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_attributes(attributes);
    // No incoming trace context reaches the pipeline: every request is a root span.
    tracer.build_with_context(builder, &OtelContext::new())
}

fn end_span(mut span: SdkSpan, o: &Outcome, stream: bool) {
    if let Some(p) = o.provider {
        let name = provider_name(p);
        span.set_attribute(KeyValue::new(attr::PROVIDER_NAME, name));
        span.set_attribute(KeyValue::new(attr::SYSTEM, name));
    }
    if let Some(m) = &o.response_model {
        span.set_attribute(KeyValue::new(attr::RESPONSE_MODEL, m.clone()));
    }
    if !o.finish_reasons.is_empty() {
        let reasons: Vec<StringValue> = o
            .finish_reasons
            .iter()
            .map(|r| StringValue::from(r.clone()))
            .collect();
        span.set_attribute(KeyValue::new(
            attr::RESPONSE_FINISH_REASONS,
            Value::Array(Array::String(reasons)),
        ));
    }
    if let Some(u) = &o.usage {
        span.set_attribute(KeyValue::new(
            attr::USAGE_INPUT_TOKENS,
            int(u.prompt_tokens),
        ));
        span.set_attribute(KeyValue::new(
            attr::USAGE_OUTPUT_TOKENS,
            int(u.completion_tokens),
        ));
        for (key, n) in [
            (attr::USAGE_CACHE_READ_INPUT_TOKENS, u.cached_tokens),
            (
                attr::USAGE_CACHE_CREATION_INPUT_TOKENS,
                u.cache_write_tokens,
            ),
            (attr::USAGE_REASONING_OUTPUT_TOKENS, u.reasoning_tokens),
        ] {
            if n > 0 {
                span.set_attribute(KeyValue::new(key, int(n)));
            }
        }
    }
    if let (true, Some(t)) = (stream, o.time_to_first_byte) {
        span.set_attribute(KeyValue::new(
            attr::RESPONSE_TIME_TO_FIRST_CHUNK,
            t.as_secs_f64(),
        ));
    }
    if o.status != 0 {
        span.set_attribute(KeyValue::new(
            attr::HTTP_RESPONSE_STATUS_CODE,
            i64::from(o.status),
        ));
    }
    span.set_attribute(KeyValue::new(attr::COST_USD, o.cost_usd));
    span.set_attribute(KeyValue::new(attr::CACHED, o.cached));
    span.set_attribute(KeyValue::new(attr::ATTEMPTS, i64::from(o.attempts)));
    span.set_attribute(KeyValue::new(attr::COMPLETED, o.completed));
    if let Some(d) = &o.deployment_id {
        span.set_attribute(KeyValue::new(attr::DEPLOYMENT_ID, d.clone()));
    }
    if let Some(m) = &o.upstream_model {
        span.set_attribute(KeyValue::new(attr::UPSTREAM_MODEL, m.clone()));
    }
    if let Some(r) = &o.fallback_reason {
        span.set_attribute(KeyValue::new(attr::FALLBACK_REASON, r.clone()));
    }
    let error = o
        .error_type
        .clone()
        .or_else(|| (o.status >= 400).then(|| o.status.to_string()));
    if let Some(e) = error {
        span.set_attribute(KeyValue::new(attr::ERROR_TYPE, e.clone()));
        span.set_status(Status::error(e));
    }
    span.end();
}

/// The well-known `gen_ai.provider.name` value for a provider of the registry,
/// or the registry's own name.
fn provider_name(p: &'static str) -> &'static str {
    match p {
        "gemini" => "gcp.gemini",
        "vertex_ai" => "gcp.vertex_ai",
        "bedrock" => "aws.bedrock",
        "azure" => "azure.ai.openai",
        "azure_ai" => "azure.ai.inference",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        "watsonx" => "ibm.watsonx.ai",
        other => other,
    }
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn sampler(ratio: f64) -> Sampler {
    let root = if ratio >= 1.0 {
        Sampler::AlwaysOn
    } else {
        Sampler::TraceIdRatioBased(ratio)
    };
    Sampler::ParentBased(Box::new(root))
}

/// The validated `[telemetry]` section, or `None` when tracing is off.
fn checked_section(config: &Config) -> Result<Option<&TelemetrySection>, String> {
    let Some(t) = &config.telemetry else {
        if config.general.enable_tracing {
            return Err(
                "`general.enable_tracing = true` needs a [telemetry] section naming the OTLP endpoint \
                 (e.g. endpoint = \"http://127.0.0.1:4318\"); add one, or remove enable_tracing"
                    .into(),
            );
        }
        return Ok(None);
    };
    check_endpoint(&t.endpoint)?;
    if !(t.sampling_ratio.is_finite() && (0.0..=1.0).contains(&t.sampling_ratio)) {
        return Err(format!(
            "`telemetry.sampling_ratio` must be between 0.0 and 1.0, got {}",
            t.sampling_ratio
        ));
    }
    if t.service_name.trim().is_empty() {
        return Err("`telemetry.service_name` is empty".into());
    }
    collector_headers(t)?;
    Ok(Some(t))
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`telemetry.endpoint` must be an http:// or https:// URL such as http://127.0.0.1:4318, got `{endpoint}`"
        )
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| bad())?;
    let Some(authority) = uri.authority() else {
        return Err(bad());
    };
    if authority.as_str().contains('@') {
        // Do not echo it: the part before `@` is a credential.
        return Err(
            "`telemetry.endpoint` must not carry credentials; put them in [telemetry.headers] instead".into(),
        );
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) || authority.host().is_empty() {
        return Err(bad());
    }
    Ok(())
}

/// `[telemetry.headers]` as a header map whose values are marked sensitive
/// (their `Debug` prints `Sensitive`).
fn collector_headers(t: &TelemetrySection) -> Result<http::HeaderMap, String> {
    let mut map = http::HeaderMap::with_capacity(t.headers.len());
    for (name, value) in &t.headers {
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`telemetry.headers`: `{name}` is not a valid header name"))?;
        if value.is_empty() {
            return Err(format!("`telemetry.headers.{name}` is empty"));
        }
        // The value is a secret: the message says what is wrong, never what it is.
        let mut v = http::HeaderValue::from_str(value.expose()).map_err(|_| {
            format!("`telemetry.headers.{name}` is not a valid header value (control characters or non-ASCII)")
        })?;
        v.set_sensitive(true);
        map.insert(header, v);
    }
    Ok(map)
}

/// Where OTLP/HTTP trace exports go: `{endpoint}/v1/traces`, unless the
/// endpoint already names that path.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// A runtime owned by the exporter, for its network I/O. Shut down without
/// waiting when the exporter goes away (that may happen inside another runtime).
struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl ExportRuntime {
    fn new() -> Result<ExportRuntime, String> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("liter-llm-otlp")
            .enable_all()
            .build()
            .map(|rt| ExportRuntime(Some(rt)))
            .map_err(|e| format!("telemetry: cannot start the OTLP exporter's runtime: {e}"))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The OTLP exporter, run on its own runtime. The batch processor's thread
/// calls `export`; the export future is driven there with this runtime's
/// context entered, so tonic and reqwest find their reactor, and their
/// background tasks run on this runtime's worker.
struct OtlpExporter {
    // Declared before `runtime`: dropped first, while the runtime still runs.
    inner: opentelemetry_otlp::SpanExporter,
    runtime: ExportRuntime,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter").finish_non_exhaustive()
    }
}

impl OtlpExporter {
    fn new(t: &TelemetrySection) -> Result<OtlpExporter, String> {
        use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
        let runtime = ExportRuntime::new()?;
        let Some(handle) = runtime.handle().cloned() else {
            return Err("telemetry: the OTLP exporter's runtime is gone".into());
        };
        let headers = collector_headers(t)?;
        let built = match t.protocol {
            OtlpProtocol::Http => {
                let client = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(EXPORT_TIMEOUT)
                    .user_agent(concat!("liter-llm/", env!("CARGO_PKG_VERSION"), " otlp"))
                    .build()
                    .map_err(|e| format!("telemetry: cannot build the OTLP/HTTP client: {e}"))?;
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(OtlpHttpClient {
                        client,
                        headers,
                        runtime: handle,
                    })
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(traces_url(&t.endpoint))
                    .with_timeout(EXPORT_TIMEOUT)
                    .build()
            }
            OtlpProtocol::Grpc => {
                // tonic spawns its connection tasks where it is built: on our runtime.
                let _entered = handle.enter();
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(t.endpoint.clone())
                    .with_timeout(EXPORT_TIMEOUT)
                    .with_metadata(
                        opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(
                            headers,
                        ),
                    );
                if t.endpoint.starts_with("https://") {
                    builder = builder.with_tls_config(
                        opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                            .with_enabled_roots(),
                    );
                }
                builder.build()
            }
        };
        let inner = built
            .map_err(|e| format!("`telemetry.endpoint`: cannot build the OTLP exporter: {e}"))?;
        Ok(OtlpExporter { inner, runtime })
    }
}

impl SpanExporter for OtlpExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        // The batch processor calls this from its own thread, outside any runtime:
        // drive the export there, inside our runtime's context.
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(_) => None,
            Err(_) => self.runtime.handle(),
        };
        let step = match handle {
            Some(h) => Export::Done(h.block_on(self.inner.export(batch))),
            None => Export::Await(batch),
        };
        async move {
            match step {
                Export::Done(result) => result,
                // Called from inside a runtime (not by the batch processor): just await.
                Export::Await(batch) => self.inner.export(batch).await,
            }
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

enum Export {
    Done(OTelSdkResult),
    Await(Vec<SpanData>),
}

/// The OTLP/HTTP transport: the workspace's reqwest, the collector headers
/// added at send time (so they never sit in the exporter's own config).
struct OtlpHttpClient {
    client: reqwest::Client,
    headers: http::HeaderMap,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for OtlpHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpHttpClient")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers;
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let send = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(headers)
            .body(body)
            .send();
        // Runs on the exporter's runtime whatever thread polls this future.
        let reply = self.runtime.spawn(async move {
            let resp = send.await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = reply.await??;
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::pipeline::{CacheDirectives, Caller, GatewayBody, Usage};
    use liter_llm_config::Secret;
    use liter_llm_protocol::ErrorKind;
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tower::{Layer, Service, ServiceExt};

    fn memory_layer() -> (TelemetryLayer, InMemorySpanExporter) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        (TelemetryLayer::from_provider(provider), exporter)
    }

    fn request(model: &str, stream: bool) -> ChatRequest {
        ChatRequest {
            endpoint: crate::pipeline::Endpoint::ChatCompletions,
            body_format: Default::default(),
            expects_json: true,
            body: bytes::Bytes::from_static(b"{}"),
            model: model.to_string(),
            model_span: (0, 0),
            stream,
            include_usage: false,
            max_tokens: Some(64),
            caller: Caller {
                key_id: Arc::from("key-1234abcd"),
                limits: None,
            },
            request_id: "req-1".to_string(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(30),
            cache: CacheDirectives::default(),
            estimated_prompt_tokens: 1,
            settlement: Settlement::new(),
        }
    }

    fn answered(o: &mut Outcome) {
        o.status = 200;
        o.usage = Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 5,
            cached_tokens: 3,
            ..Usage::default()
        });
        o.cost_usd = 0.25;
        o.completed = true;
        o.deployment_id = Some("gpt-4o#0".to_string());
        o.provider = Some("openai");
        o.upstream_model = Some("gpt-4o-2024-08-06".to_string());
        o.response_model = Some("gpt-4o-2024-08-06".to_string());
        o.finish_reasons = vec!["stop".to_string()];
        o.attempts = 1;
        o.time_to_first_byte = Some(Duration::from_millis(20));
    }

    fn get<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn only_span(exporter: &InMemorySpanExporter) -> SpanData {
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1, "exactly one span: {spans:?}");
        spans.into_iter().next().unwrap()
    }

    #[tokio::test]
    async fn json_answer_gets_a_chat_span_with_gen_ai_attributes() {
        let (layer, exporter) = memory_layer();
        let mut svc = layer.layer(tower::service_fn(|req: ChatRequest| async move {
            req.settlement.update(answered);
            req.settlement.settle();
            Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
        }));
        svc.ready()
            .await
            .unwrap()
            .call(request("gpt-4o", false))
            .await
            .unwrap();

        let span = only_span(&exporter);
        assert_eq!(span.name, "chat gpt-4o");
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(span.status, Status::Unset);
        assert_eq!(get(&span, attr::OPERATION_NAME), Some(&Value::from("chat")));
        assert_eq!(
            get(&span, attr::REQUEST_MODEL),
            Some(&Value::from("gpt-4o"))
        );
        assert_eq!(get(&span, attr::REQUEST_STREAM), Some(&Value::from(false)));
        assert_eq!(get(&span, attr::REQUEST_MAX_TOKENS), Some(&Value::I64(64)));
        assert_eq!(
            get(&span, attr::PROVIDER_NAME),
            Some(&Value::from("openai"))
        );
        assert_eq!(get(&span, attr::SYSTEM), Some(&Value::from("openai")));
        assert_eq!(
            get(&span, attr::RESPONSE_MODEL),
            Some(&Value::from("gpt-4o-2024-08-06"))
        );
        assert_eq!(get(&span, attr::USAGE_INPUT_TOKENS), Some(&Value::I64(12)));
        assert_eq!(get(&span, attr::USAGE_OUTPUT_TOKENS), Some(&Value::I64(5)));
        assert_eq!(
            get(&span, attr::USAGE_CACHE_READ_INPUT_TOKENS),
            Some(&Value::I64(3))
        );
        assert_eq!(
            get(&span, attr::USAGE_REASONING_OUTPUT_TOKENS),
            None,
            "zero counts are left out"
        );
        assert_eq!(
            get(&span, attr::RESPONSE_FINISH_REASONS),
            Some(&Value::Array(Array::String(vec![StringValue::from(
                "stop"
            )])))
        );
        assert_eq!(
            get(&span, attr::HTTP_RESPONSE_STATUS_CODE),
            Some(&Value::I64(200))
        );
        assert_eq!(get(&span, attr::COST_USD), Some(&Value::F64(0.25)));
        assert_eq!(
            get(&span, attr::DEPLOYMENT_ID),
            Some(&Value::from("gpt-4o#0"))
        );
        assert_eq!(get(&span, attr::CACHED), Some(&Value::from(false)));
        assert_eq!(get(&span, attr::ATTEMPTS), Some(&Value::I64(1)));
        assert_eq!(get(&span, attr::KEY_ID), Some(&Value::from("key-1234abcd")));
        assert_eq!(get(&span, attr::REQUEST_ID), Some(&Value::from("req-1")));
        assert_eq!(get(&span, attr::ERROR_TYPE), None);
        assert_eq!(
            get(&span, attr::RESPONSE_TIME_TO_FIRST_CHUNK),
            None,
            "streams only"
        );
    }

    #[tokio::test]
    async fn stream_span_ends_at_settlement_and_carries_the_streams_usage() {
        let (layer, exporter) = memory_layer();
        let later: Arc<std::sync::Mutex<Option<Settlement>>> = Arc::default();
        let keep = later.clone();
        let mut svc = layer.layer(tower::service_fn(move |req: ChatRequest| {
            let keep = keep.clone();
            async move {
                // Headers go out now; the stream settles when it ends.
                req.settlement.update(|o| {
                    o.status = 200;
                    o.provider = Some("gemini");
                    o.attempts = 1;
                });
                *keep.lock().unwrap() = Some(req.settlement.clone());
                Ok::<_, ApiError>(http::Response::new(GatewayBody::full("")))
            }
        }));
        svc.ready()
            .await
            .unwrap()
            .call(request("flash", true))
            .await
            .unwrap();
        assert!(
            exporter.get_finished_spans().unwrap().is_empty(),
            "the span is open while the stream runs"
        );

        tokio::time::sleep(Duration::from_millis(40)).await;
        let settlement = later.lock().unwrap().take().unwrap();
        settlement.update(|o| {
            o.usage = Some(Usage {
                prompt_tokens: 30,
                completion_tokens: 8,
                ..Usage::default()
            });
            o.completed = true;
            o.finish_reasons = vec!["length".to_string()];
            o.time_to_first_byte = Some(Duration::from_millis(5));
        });
        settlement.settle();

        let span = only_span(&exporter);
        assert_eq!(span.name, "chat flash");
        assert_eq!(get(&span, attr::REQUEST_STREAM), Some(&Value::from(true)));
        assert_eq!(
            get(&span, attr::PROVIDER_NAME),
            Some(&Value::from("gcp.gemini"))
        );
        assert_eq!(get(&span, attr::USAGE_INPUT_TOKENS), Some(&Value::I64(30)));
        assert_eq!(get(&span, attr::USAGE_OUTPUT_TOKENS), Some(&Value::I64(8)));
        assert_eq!(
            get(&span, attr::RESPONSE_FINISH_REASONS),
            Some(&Value::Array(Array::String(vec![StringValue::from(
                "length"
            )])))
        );
        assert_eq!(
            get(&span, attr::RESPONSE_TIME_TO_FIRST_CHUNK),
            Some(&Value::F64(0.005))
        );
        assert_eq!(get(&span, attr::COMPLETED), Some(&Value::from(true)));
        let lasted = span.end_time.duration_since(span.start_time).unwrap();
        assert!(
            lasted >= Duration::from_millis(40),
            "span covers the stream: {lasted:?}"
        );
    }

    #[tokio::test]
    async fn cut_stream_span_is_an_error() {
        let (layer, exporter) = memory_layer();
        let mut svc = layer.layer(tower::service_fn(|req: ChatRequest| async move {
            req.settlement.update(|o| {
                o.status = 200;
                o.completed = false;
                o.error_type = Some("stream_incomplete".to_string());
            });
            req.settlement.settle();
            Ok::<_, ApiError>(http::Response::new(GatewayBody::full("")))
        }));
        svc.ready()
            .await
            .unwrap()
            .call(request("gpt-4o", true))
            .await
            .unwrap();
        let span = only_span(&exporter);
        assert_eq!(
            get(&span, attr::ERROR_TYPE),
            Some(&Value::from("stream_incomplete"))
        );
        assert_eq!(span.status, Status::error("stream_incomplete"));
        assert_eq!(get(&span, attr::COMPLETED), Some(&Value::from(false)));
    }

    #[tokio::test]
    async fn upstream_failure_span_is_an_error_with_its_status() {
        let (layer, exporter) = memory_layer();
        let mut svc = layer.layer(tower::service_fn(|req: ChatRequest| async move {
            req.settlement.update(|o| {
                o.status = 502;
                o.error_type = Some("upstream_500".to_string());
                o.deployment_id = Some("gpt-4o#1".to_string());
                o.attempts = 2;
            });
            req.settlement.settle();
            Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
        }));
        svc.ready()
            .await
            .unwrap()
            .call(request("gpt-4o", false))
            .await
            .unwrap();
        let span = only_span(&exporter);
        assert_eq!(span.status, Status::error("upstream_500"));
        assert_eq!(
            get(&span, attr::ERROR_TYPE),
            Some(&Value::from("upstream_500"))
        );
        assert_eq!(
            get(&span, attr::HTTP_RESPONSE_STATUS_CODE),
            Some(&Value::I64(502))
        );
        assert_eq!(get(&span, attr::ATTEMPTS), Some(&Value::I64(2)));
    }

    #[tokio::test]
    async fn rejection_below_is_settled_once_and_traced_as_an_error() {
        let (layer, exporter) = memory_layer();
        let hooks = Arc::new(AtomicU32::new(0));
        let seen = hooks.clone();
        let mut svc = layer.layer(tower::service_fn(move |req: ChatRequest| {
            let seen = seen.clone();
            async move {
                // A lower layer's hook, then a rejection that does not settle.
                req.settlement.on_settle(move |_| {
                    seen.fetch_add(1, Ordering::SeqCst);
                });
                Err::<ChatResponse, _>(
                    ApiError::new(ErrorKind::RateLimited, "slow down").with_retry_after(3),
                )
            }
        }));
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(request("gpt-4o", false))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind,
            ErrorKind::RateLimited,
            "the error is passed through unchanged"
        );
        assert_eq!(
            hooks.load(Ordering::SeqCst),
            1,
            "the lower layer's hook ran once"
        );
        let span = only_span(&exporter);
        assert_eq!(
            get(&span, attr::ERROR_TYPE),
            Some(&Value::from("rate_limit_error"))
        );
        assert_eq!(
            get(&span, attr::HTTP_RESPONSE_STATUS_CODE),
            Some(&Value::I64(429))
        );
        assert_eq!(span.status, Status::error("rate_limit_error"));
    }

    #[tokio::test]
    async fn abandoned_request_span_ends_as_cancelled() {
        let (layer, exporter) = memory_layer();
        let mut svc = layer.layer(tower::service_fn(|_req: ChatRequest| {
            std::future::pending::<Result<ChatResponse, ApiError>>()
        }));
        let fut = svc.ready().await.unwrap().call(request("gpt-4o", false));
        let timed_out = tokio::time::timeout(Duration::from_millis(10), fut).await;
        assert!(timed_out.is_err());
        let span = only_span(&exporter);
        assert_eq!(get(&span, attr::ERROR_TYPE), Some(&Value::from(CANCELLED)));
        assert_eq!(span.status, Status::error(CANCELLED));
    }

    #[tokio::test]
    async fn cached_answer_span_says_cached_and_costs_nothing() {
        let (layer, exporter) = memory_layer();
        let mut svc = layer.layer(tower::service_fn(|req: ChatRequest| async move {
            req.settlement.update(|o| {
                o.status = 200;
                o.cached = true;
                o.completed = true;
                o.usage = Some(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 4,
                    ..Usage::default()
                });
            });
            req.settlement.settle();
            Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
        }));
        svc.ready()
            .await
            .unwrap()
            .call(request("gpt-4o", false))
            .await
            .unwrap();
        let span = only_span(&exporter);
        assert_eq!(get(&span, attr::CACHED), Some(&Value::from(true)));
        assert_eq!(get(&span, attr::COST_USD), Some(&Value::F64(0.0)));
    }

    #[tokio::test]
    async fn unsampled_request_exports_nothing_and_still_settles() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_sampler(sampler(0.0))
            .build();
        let layer = TelemetryLayer::from_provider(provider);
        let hooks = Arc::new(AtomicU32::new(0));
        let seen = hooks.clone();
        let mut svc = layer.layer(tower::service_fn(move |req: ChatRequest| {
            let seen = seen.clone();
            async move {
                req.settlement.on_settle(move |_| {
                    seen.fetch_add(1, Ordering::SeqCst);
                });
                req.settlement.settle();
                Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
            }
        }));
        for _ in 0..5 {
            svc.ready()
                .await
                .unwrap()
                .call(request("gpt-4o", false))
                .await
                .unwrap();
        }
        assert!(exporter.get_finished_spans().unwrap().is_empty());
        assert_eq!(hooks.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn long_model_names_are_cut_in_the_span_name_only() {
        let (layer, exporter) = memory_layer();
        let model = "é".repeat(200); // 400 bytes
        let span = start_span(&layer.shared.tracer, &request(&model, false));
        end_span(span, &Outcome::default(), false);
        let span = only_span(&exporter);
        assert!(span.name.len() <= 5 + MAX_MODEL_IN_NAME);
        assert_eq!(get(&span, attr::REQUEST_MODEL), Some(&Value::from(model)));
    }

    fn section(endpoint: &str) -> TelemetrySection {
        TelemetrySection {
            endpoint: endpoint.to_string(),
            protocol: OtlpProtocol::Http,
            headers: BTreeMap::new(),
            service_name: "liter-llm".to_string(),
            sampling_ratio: 1.0,
        }
    }

    fn config_with(telemetry: Option<TelemetrySection>, enable_tracing: bool) -> Config {
        let mut c = Config {
            telemetry,
            ..Config::default()
        };
        c.general.enable_tracing = enable_tracing;
        c
    }

    fn err(c: &Config) -> String {
        TelemetryLayer::from_config(c).unwrap_err()
    }

    #[test]
    fn no_telemetry_section_builds_nothing() {
        assert!(TelemetryLayer::from_config(&Config::default())
            .unwrap()
            .is_none());
        assert!(!TelemetryLayer::validate(&Config::default()).unwrap());
    }

    #[test]
    fn enable_tracing_without_an_endpoint_is_refused() {
        let e = err(&config_with(None, true));
        assert!(
            e.contains("enable_tracing") && e.contains("[telemetry]"),
            "{e}"
        );
    }

    #[test]
    fn bad_telemetry_values_are_refused_naming_the_field() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            let mut t = section("http://127.0.0.1:4318");
            t.sampling_ratio = ratio;
            assert!(err(&config_with(Some(t), false)).contains("`telemetry.sampling_ratio`"));
        }
        for endpoint in [
            "127.0.0.1:4318",
            "ftp://collector:21",
            "not a url",
            "http://",
        ] {
            let e = err(&config_with(Some(section(endpoint)), false));
            assert!(e.contains("`telemetry.endpoint`"), "{endpoint}: {e}");
        }
        let e = err(&config_with(
            Some(section("https://user:hunter2@collector:4318")),
            false,
        ));
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
        let mut t = section("http://127.0.0.1:4318");
        t.service_name = " ".to_string();
        assert!(err(&config_with(Some(t), false)).contains("`telemetry.service_name`"));
    }

    #[test]
    fn bad_collector_header_is_refused_without_echoing_the_secret() {
        let mut t = section("http://127.0.0.1:4318");
        t.headers
            .insert("x-api-key".to_string(), Secret::new("sk-secret\nvalue"));
        let e = err(&config_with(Some(t), false));
        assert!(
            e.contains("`telemetry.headers.x-api-key`") && !e.contains("sk-secret"),
            "{e}"
        );
        let mut t = section("http://127.0.0.1:4318");
        t.headers.insert("bad name".to_string(), Secret::new("v"));
        assert!(err(&config_with(Some(t), false)).contains("`bad name`"));
    }

    #[test]
    fn collector_header_values_are_redacted_in_debug_output() {
        let mut t = section("http://127.0.0.1:4318");
        t.headers.insert(
            "authorization".to_string(),
            Secret::new("Bearer sk-collector"),
        );
        let map = collector_headers(&t).unwrap();
        assert!(!format!("{map:?}").contains("sk-collector"));
    }

    #[test]
    fn http_exports_go_to_v1_traces() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("https://c/otlp"), "https://c/otlp/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    /// A one-shot HTTP/1.1 collector on a plain thread: returns the request's
    /// head and body, answers 200.
    fn one_shot_collector() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = sock.read(&mut chunk).unwrap();
                assert!(n > 0, "collector: connection closed early");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).unwrap();
                assert!(n > 0, "collector: body cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            tx.send((head, buf[head_end..head_end + len].to_vec()))
                .unwrap();
        });
        (endpoint, rx)
    }

    // A current-thread runtime, blocked by `force_flush`: the export must not need it.
    #[tokio::test]
    async fn spans_reach_an_otlp_http_collector_on_flush_from_inside_a_runtime() {
        let (endpoint, received) = one_shot_collector();
        let mut t = section(&endpoint);
        t.headers.insert(
            "authorization".to_string(),
            Secret::new("Bearer sk-collector"),
        );
        let layer = TelemetryLayer::from_config(&config_with(Some(t), false))
            .unwrap()
            .unwrap();
        let mut svc = layer.layer(tower::service_fn(|req: ChatRequest| async move {
            req.settlement.update(answered);
            req.settlement.settle();
            Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
        }));
        svc.ready()
            .await
            .unwrap()
            .call(request("gpt-4o", false))
            .await
            .unwrap();
        layer.force_flush().unwrap();

        let (head, body) = received.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        assert!(
            head.contains("authorization: bearer sk-collector"),
            "{head}"
        );
        let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"chat gpt-4o") && has(b"gen_ai.usage.input_tokens") && has(b"liter-llm"));
        assert!(
            !has(b"sk-collector"),
            "the collector header is not in the spans"
        );
        layer.shutdown();
    }

    #[test]
    fn telemetry_section_alone_turns_tracing_on() {
        for protocol in [OtlpProtocol::Http, OtlpProtocol::Grpc] {
            let mut t = section("http://127.0.0.1:9");
            t.protocol = protocol;
            t.headers
                .insert("x-api-key".to_string(), Secret::new("sk-collector"));
            let c = config_with(Some(t), false);
            assert!(TelemetryLayer::validate(&c).unwrap());
            let layer = TelemetryLayer::from_config(&c).unwrap().expect("built");
            assert!(!format!("{layer:?}").contains("sk-collector"));
            layer.shutdown();
            layer.shutdown();
        }
    }
}
