//! Tracing through the real proxy: each request's OpenTelemetry span is exported
//! over OTLP to an in-test collector (HTTP/protobuf at `/v1/traces`, and gRPC),
//! decoded, and checked against the GenAI semantic conventions.
//!
//! Spans are exported by the SDK's batch processor on its schedule (5 s by
//! default), so each test waits for them by polling the collector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use http_body_util::StreamBody;
use liter_llm_config::Config;
use liter_llm_proxy::AppState;
use mock_upstream::{Fault, MockConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode as OtelCode};
use prost::Message;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COLLECTOR_SECRET: &str = "Bearer sk-collector-secret";
/// Longer than the batch processor's default 5 s schedule.
const EXPORT_WAIT: Duration = Duration::from_secs(20);

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    kind: i32,
    status: i32,
    status_message: String,
    duration: Duration,
    attrs: HashMap<String, Value>,
    resource: HashMap<String, Value>,
}

impl Exported {
    fn attr(&self, key: &str) -> &Value {
        self.attrs.get(key).unwrap_or(&Value::Null)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<Exported>,
    /// Headers of every export call.
    headers: Vec<HeaderMap>,
    /// `http` or `grpc`, per export call.
    transports: Vec<&'static str>,
}

#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Received>>,
}

fn json_of(v: &Option<AnyValue>) -> Value {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(f)) => json!(f),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| json_of(&Some(v.clone()))).collect())
        }
        other => json!(format!("{other:?}")),
    }
}

impl Collector {
    fn record(&self, req: ExportTraceServiceRequest, headers: HeaderMap, transport: &'static str) {
        let mut r = self.received.lock().unwrap();
        r.headers.push(headers);
        r.transports.push(transport);
        for rs in req.resource_spans {
            let resource: HashMap<String, Value> = rs
                .resource
                .map(|r| {
                    r.attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), json_of(&kv.value)))
                        .collect()
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    r.spans.push(Exported {
                        name: s.name.clone(),
                        kind: s.kind,
                        status: s.status.as_ref().map_or(0, |st| st.code),
                        status_message: s
                            .status
                            .as_ref()
                            .map(|st| st.message.clone())
                            .unwrap_or_default(),
                        duration: Duration::from_nanos(
                            s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano),
                        ),
                        attrs: s
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), json_of(&kv.value)))
                            .collect(),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }

    /// Wait until at least `n` spans have arrived.
    async fn spans(&self, n: usize) -> Vec<Exported> {
        let start = Instant::now();
        loop {
            {
                let r = self.received.lock().unwrap();
                if r.spans.len() >= n {
                    return r.spans.clone();
                }
            }
            assert!(
                start.elapsed() < EXPORT_WAIT,
                "only {} of {n} spans reached the collector",
                self.received.lock().unwrap().spans.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// OTLP/HTTP: a protobuf `ExportTraceServiceRequest` in, an empty response out.
async fn http_export(State(c): State<Collector>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    c.record(req, headers, "http");
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// OTLP/gRPC, by hand: a length-prefixed message in, a length-prefixed empty
/// response and `grpc-status: 0` trailers out.
async fn grpc_export(State(c): State<Collector>, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() < 5 || body[0] != 0 {
        return (StatusCode::BAD_REQUEST, "unexpected gRPC frame").into_response();
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let Ok(req) = ExportTraceServiceRequest::decode(&body[5..5 + len]) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    c.record(req, headers, "grpc");
    let msg = ExportTraceServiceResponse::default().encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(frame))),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    let mut resp = Response::new(Body::new(StreamBody::new(frames)));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    resp
}

async fn start_collector() -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(http_export))
        .route(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            axum::routing::post(grpc_export),
        )
        .with_state(collector.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (collector, addr)
}

/// A `[telemetry]` section for the collector, with a secret collector header.
fn telemetry(addr: SocketAddr, protocol: &str, extra: &str) -> String {
    format!(
        r#"
[telemetry]
endpoint = "http://{addr}"
protocol = "{protocol}"
service_name = "liter-llm-test"
{extra}

[telemetry.headers]
authorization = "{COLLECTOR_SECRET}"
"#
    )
}

/// Per-token prices on the model entry, so the cost is known exactly.
const PRICES: &str = "input_cost_per_token = 0.000001\noutput_cost_per_token = 0.000002\n";

async fn stream_text(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

fn assert_no_secret(spans: &[Exported]) {
    for s in spans {
        let all = format!("{:?} {:?} {}", s.attrs, s.resource, s.name);
        assert!(
            !all.contains("sk-collector-secret"),
            "secret in a span: {all}"
        );
    }
}

fn assert_chat_span(s: &Exported, stream: bool) {
    assert_eq!(s.name, "chat gpt-4o");
    assert_eq!(s.kind, SpanKind::Client as i32);
    assert_eq!(s.attr("gen_ai.operation.name"), "chat");
    assert_eq!(s.attr("gen_ai.provider.name"), "openai");
    assert_eq!(
        s.attr("gen_ai.request.model"),
        "gpt-4o",
        "client-facing name"
    );
    assert_eq!(s.attr("gen_ai.request.stream"), stream);
    assert_eq!(
        s.resource.get("service.name"),
        Some(&json!("liter-llm-test"))
    );
}

#[tokio::test]
async fn json_request_exports_a_chat_span_with_usage_and_cost() {
    let (collector, addr) = start_collector().await;
    let mock = start_mock(MockConfig::default()).await;
    let cfg = basic_config(
        &mock,
        "gpt-4o-mini",
        &format!("{PRICES}{}", telemetry(addr, "http", "")),
    );
    let p = start_proxy(&cfg).await;

    let mut body = chat_body("gpt-4o", false);
    body["max_tokens"] = json!(50);
    let resp = post_chat(&p, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let prompt = answer["usage"]["prompt_tokens"].as_i64().unwrap();
    let completion = answer["usage"]["completion_tokens"].as_i64().unwrap();

    let spans = collector.spans(1).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    let s = &spans[0];
    assert_chat_span(s, false);
    assert_eq!(s.status, OtelCode::Unset as i32);
    assert_eq!(s.attr("gen_ai.request.max_tokens"), 50);
    assert_eq!(s.attr("gen_ai.response.model"), "gpt-4o-mini");
    assert_eq!(s.attr("gen_ai.usage.input_tokens"), prompt);
    assert_eq!(s.attr("gen_ai.usage.output_tokens"), completion);
    assert_eq!(s.attr("gen_ai.response.finish_reasons"), &json!(["stop"]));
    assert_eq!(s.attr("http.response.status_code"), 200);
    assert_eq!(s.attr("liter_llm.deployment_id"), "gpt-4o#0");
    assert_eq!(s.attr("liter_llm.attempts"), 1);
    assert_eq!(s.attr("liter_llm.cached"), false);
    assert_eq!(s.attr("liter_llm.key_id"), "master");
    assert!(!s.attrs.contains_key("error.type"), "{s:?}");
    let cost = s.attr("liter_llm.cost_usd").as_f64().unwrap();
    let expected = prompt as f64 * 0.000001 + completion as f64 * 0.000002;
    assert!(
        (cost - expected).abs() < 1e-12,
        "cost {cost}, expected {expected}"
    );

    let r = collector.received.lock().unwrap();
    assert_eq!(r.transports, ["http"]);
    assert_eq!(
        r.headers[0]["authorization"], COLLECTOR_SECRET,
        "collector header sent"
    );
    assert_eq!(r.headers[0]["content-type"], "application/x-protobuf");
    assert_no_secret(&r.spans);
}

#[tokio::test]
async fn stream_span_covers_the_whole_stream_and_carries_its_usage() {
    let (collector, addr) = start_collector().await;
    let mock = start_mock(MockConfig {
        chunks: 4,
        chunk_interval_ms: 60,
        ..MockConfig::default()
    })
    .await;
    let cfg = basic_config(
        &mock,
        "gpt-4o-mini",
        &format!("{PRICES}{}", telemetry(addr, "http", "")),
    );
    let p = start_proxy(&cfg).await;

    // The client did not ask for usage: the proxy asks the upstream for it anyway.
    let started = Instant::now();
    let text = stream_text(post_chat(&p, MASTER, &chat_body("gpt-4o", true)).await).await;
    let streamed_for = started.elapsed();
    assert!(text.contains("data: [DONE]"), "{text}");

    let spans = collector.spans(1).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    let s = &spans[0];
    assert_chat_span(s, true);
    assert_eq!(s.status, OtelCode::Unset as i32, "{s:?}");
    assert!(
        s.duration >= Duration::from_millis(200)
            && s.duration <= streamed_for + Duration::from_millis(50),
        "the span ends when the stream does: span {:?}, stream {streamed_for:?}",
        s.duration
    );
    assert_eq!(
        s.attr("gen_ai.usage.output_tokens"),
        4,
        "one token per chunk: {s:?}"
    );
    let prompt = s.attr("gen_ai.usage.input_tokens").as_i64().unwrap();
    assert!(prompt > 0);
    assert_eq!(s.attr("gen_ai.response.finish_reasons"), &json!(["stop"]));
    assert_eq!(s.attr("gen_ai.response.model"), "gpt-4o-mini");
    assert!(
        s.attr("gen_ai.response.time_to_first_chunk")
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(s.attr("liter_llm.completed"), true);
    assert_eq!(s.attr("http.response.status_code"), 200);
    let cost = s.attr("liter_llm.cost_usd").as_f64().unwrap();
    let expected = prompt as f64 * 0.000001 + 4.0 * 0.000002;
    assert!(
        (cost - expected).abs() < 1e-12,
        "cost {cost}, expected {expected}"
    );

    let r = collector.received.lock().unwrap();
    assert_eq!(r.headers[0]["authorization"], COLLECTOR_SECRET);
    assert_no_secret(&r.spans);
}

/// Two deployments behind two names: one always answers 500, one cuts its answers short.
fn failing_config(
    failing: &mock_upstream::MockServer,
    cut: &mock_upstream::MockServer,
    tel: &str,
) -> String {
    format!(
        r#"
[general]
master_key = "{MASTER}"
max_retries = 0

[[models]]
name = "failing"
provider_model = "openai/gpt-4o"
base_url = "{}"
api_key = "{UPSTREAM_KEY}"

[[models]]
name = "cut"
provider_model = "openai/gpt-4o"
base_url = "{}"
api_key = "{UPSTREAM_KEY}"
{tel}
"#,
        failing.base_url(),
        cut.base_url()
    )
}

#[tokio::test]
async fn failed_requests_spans_are_errors_streams_and_json_alike() {
    let (collector, addr) = start_collector().await;
    let failing = start_mock(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let cut = start_mock(MockConfig {
        fault: Some(Fault::TruncateStream),
        ..MockConfig::default()
    })
    .await;
    let p = start_proxy(&failing_config(
        &failing,
        &cut,
        &telemetry(addr, "http", ""),
    ))
    .await;

    let mut statuses = HashMap::new();
    for (model, stream) in [
        ("failing", false),
        ("failing", true),
        ("cut", false),
        ("cut", true),
    ] {
        let resp = post_chat(&p, MASTER, &chat_body(model, stream)).await;
        let status = resp.status().as_u16();
        let _ = resp.bytes().await;
        statuses.insert((model, stream), status);
    }
    assert_ne!(
        statuses[&("cut", true)],
        500,
        "a cut stream has already sent 200"
    );

    let spans = collector.spans(4).await;
    assert_eq!(spans.len(), 4);
    for s in &spans {
        let model = s.attr("gen_ai.request.model").as_str().unwrap().to_string();
        let stream = s.attr("gen_ai.request.stream").as_bool().unwrap();
        let key = (if model == "failing" { "failing" } else { "cut" }, stream);
        assert_eq!(s.status, OtelCode::Error as i32, "{key:?}: {s:?}");
        let error = s
            .attr("error.type")
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!error.is_empty(), "{key:?} has an error.type: {s:?}");
        assert_eq!(s.status_message, error);
        assert_eq!(
            s.attr("http.response.status_code"),
            statuses[&key],
            "{key:?}: the status the client got"
        );
        match key {
            ("failing", _) => assert_eq!(error, "upstream_500", "{key:?}"),
            // The relay names the failure (e.g. `upstream_stream_error`); the span
            // must say the stream did not complete.
            ("cut", true) => assert_eq!(s.attr("liter_llm.completed"), false, "{s:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn spans_are_exported_over_grpc_too() {
    let (collector, addr) = start_collector().await;
    let mock = start_mock(MockConfig::default()).await;
    let cfg = basic_config(&mock, "gpt-4o-mini", &telemetry(addr, "grpc", ""));
    let p = start_proxy(&cfg).await;

    let resp = post_chat(&p, MASTER, &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await;
    stream_text(post_chat(&p, MASTER, &chat_body("gpt-4o", true)).await).await;

    let spans = collector.spans(2).await;
    assert_eq!(spans.len(), 2);
    for s in &spans {
        let stream = s.attr("gen_ai.request.stream").as_bool().unwrap();
        assert_chat_span(s, stream);
        assert!(
            s.attr("gen_ai.usage.output_tokens").as_i64().unwrap() > 0,
            "{s:?}"
        );
        assert_eq!(s.attr("gen_ai.response.finish_reasons"), &json!(["stop"]));
    }
    let r = collector.received.lock().unwrap();
    assert!(r.transports.iter().all(|t| *t == "grpc"));
    assert_eq!(
        r.headers[0]["authorization"], COLLECTOR_SECRET,
        "sent as gRPC metadata"
    );
    assert_no_secret(&r.spans);
}

#[tokio::test]
async fn sampling_ratio_zero_exports_no_spans() {
    let (collector, addr) = start_collector().await;
    let mock = start_mock(MockConfig::default()).await;
    let cfg = basic_config(
        &mock,
        "gpt-4o-mini",
        &telemetry(addr, "http", "sampling_ratio = 0.0"),
    );
    let p = start_proxy(&cfg).await;

    let resp = post_chat(&p, MASTER, &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200, "unsampled requests are served as usual");
    let _ = resp.bytes().await;
    stream_text(post_chat(&p, MASTER, &chat_body("gpt-4o", true)).await).await;

    // Past the batch processor's 5 s schedule: anything sampled would be here.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(collector.received.lock().unwrap().spans.is_empty());
}

fn startup_error(toml_text: &str) -> String {
    match Config::from_toml_str(toml_text, "test.toml", &|_| None) {
        Err(e) => e.to_string(),
        Ok(c) => match AppState::build(&c, env_none()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the config was accepted"),
        },
    }
}

#[tokio::test]
async fn enable_tracing_without_a_telemetry_section_is_a_startup_error() {
    let mock = start_mock(MockConfig::default()).await;
    let cfg = basic_config(&mock, "gpt-4o", "")
        .replace("max_retries = 0", "max_retries = 0\nenable_tracing = true");
    let e = startup_error(&cfg);
    assert!(e.contains("needs a [telemetry] section"), "{e}");
}

#[tokio::test]
async fn invalid_telemetry_settings_are_startup_errors() {
    let mock = start_mock(MockConfig::default()).await;
    for (extra, field) in [
        (
            "[telemetry]\nendpoint = \"http://127.0.0.1:4318\"\nsampling_ratio = 1.5",
            "telemetry.sampling_ratio",
        ),
        (
            "[telemetry]\nendpoint = \"collector:4318\"",
            "telemetry.endpoint",
        ),
    ] {
        let e = startup_error(&basic_config(&mock, "gpt-4o", extra));
        assert!(e.contains(field), "{extra}: {e}");
    }
}
