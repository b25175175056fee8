//! What the upstream sees and what the client gets back, as with the reqwest
//! client the proxy used before driving hyper's client itself: default
//! headers, redirects answered rather than followed, and the wording of a
//! connection failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use common::*;
use liter_llm_proxy::AppState;
use mock_upstream::MockConfig;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

/// An upstream that records every request; `/v1/chat/completions` answers with
/// `first`, `/moved/chat/completions` with a chat answer.
async fn upstream(first: StatusCode, location: Option<&'static str>) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    async fn record(
        State((seen, first, location)): State<(Seen, StatusCode, Option<&'static str>)>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        seen.lock()
            .unwrap()
            .push((uri.path().to_string(), headers, body));
        if uri.path() == "/moved/chat/completions" {
            return ([("content-type", "application/json")], ANSWER).into_response();
        }
        let mut resp = (first, ANSWER).into_response();
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        if let Some(l) = location {
            resp.headers_mut().insert("location", l.parse().unwrap());
        }
        resp
    }
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(record))
        .route("/moved/chat/completions", post(record))
        .with_state((seen.clone(), first, location));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// One `[[models]]` entry for `openai/gpt-4o` at `addr`.
fn model_at(name: &str, addr: SocketAddr, extra: &str) -> String {
    fake_model(
        name,
        "openai/gpt-4o",
        &format!("http://{addr}/v1"),
        UPSTREAM_KEY,
        extra,
    )
}

fn config(addr: SocketAddr) -> String {
    fake_proxy_config(&[model_at("gpt-4o", addr, "")])
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_gets_the_client_bytes_and_the_same_default_headers() {
    let (addr, seen) = upstream(StatusCode::OK, None).await;
    let proxy = start_proxy(&config(addr)).await;
    let body =
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x_unknown":[1,2]}"#;
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .header("x-request-id", "req-42")
        .body(body)
        .send()
        .await
        .unwrap();
    let v = json_ok(resp).await;
    assert_eq!(v["choices"][0]["message"]["content"], "hi");
    let seen = seen.lock().unwrap();
    let (path, h, got) = &seen[0];
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(got, body, "forwarded byte for byte");
    assert_eq!(h["authorization"], format!("Bearer {UPSTREAM_KEY}"));
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-request-id"], "req-42");
    assert_eq!(h["accept"], "*/*");
    assert_eq!(
        h["user-agent"],
        concat!("liter-llm/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(h["host"], addr.to_string());
    assert_eq!(h["content-length"], body.len().to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_is_answered_not_followed() {
    let (addr, seen) = upstream(
        StatusCode::TEMPORARY_REDIRECT,
        Some("/moved/chat/completions"),
    )
    .await;
    let proxy = start_proxy(&config(addr)).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    let (msg, _) = error_message(resp, 502).await;
    assert!(msg.contains("returned 307"), "{msg}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "sent once, not to the redirect target");
    assert_eq!(seen[0].0, "/v1/chat/completions");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_without_location_is_an_upstream_answer() {
    let (addr, _) = upstream(StatusCode::MOVED_PERMANENTLY, None).await;
    let proxy = start_proxy(&config(addr)).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    let (msg, _) = error_message(resp, 502).await;
    assert!(msg.contains("returned 301"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection_is_worded_as_before() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let proxy = start_proxy(&config(addr)).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    let (msg, v) = error_message(resp, 502).await;
    // reqwest's wording, cause by cause (the OS error number varies by platform).
    let expected = format!(
        "could not reach upstream provider `openai` at http://{addr}: error sending request: client error (Connect): tcp connect error: Connection refused (os error "
    );
    assert!(msg.starts_with(&expected), "{msg}");
    assert_eq!(v["error"]["code"], "upstream_unreachable");
}

/// An address whose connects hang: a listener that never accepts, with its
/// accept queue filled, so further SYNs are dropped. The filling connections
/// are returned so they stay open.
fn address_that_never_connects() -> (SocketAddr, tokio::net::TcpSocket, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let std_listener = socket.listen(0).unwrap().into_std().unwrap();
    let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(
        std::os::fd::OwnedFd::from(std_listener),
    ));
    let mut held = Vec::new();
    for _ in 0..64 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (addr, socket, held),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue never filled");
}

async fn connect_times_out_within(config: &str, secs: u64) {
    let proxy = start_proxy(config).await;
    let started = std::time::Instant::now();
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    let took = started.elapsed();
    let (msg, v) = error_message(resp, 504).await;
    assert!(
        msg.contains(&format!("within {secs} s (connect_timeout_secs)")),
        "{msg}"
    );
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert!(
        took >= std::time::Duration::from_millis(secs * 1000 - 100)
            && took < std::time::Duration::from_secs(secs + 3),
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn model_connect_timeout_bounds_opening_the_connection() {
    let (addr, _listener, _held) = address_that_never_connects();
    // The deployment timeout (60 s) and the default connect timeout (10 s)
    // would both wait far longer.
    let config = fake_proxy_config(&[
        model_at(
            "gpt-4o",
            addr,
            "timeout_secs = 60\nconnect_timeout_secs = 1\n",
        ),
        model_at("other", addr, ""),
    ]);
    connect_times_out_within(&config, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn general_connect_timeout_applies_to_models_without_their_own() {
    let (addr, _listener, _held) = address_that_never_connects();
    let model = model_at("gpt-4o", addr, "timeout_secs = 60\n");
    let config = format!(
        "\n[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 0\nconnect_timeout_secs = 2\n{model}"
    );
    connect_times_out_within(&config, 2).await;
}

/// Credentials in `base_url` (`http://user:pass@host/v1`) go out as
/// `Authorization: Basic`, as reqwest sent them, and never into an error.
#[tokio::test(flavor = "multi_thread")]
async fn base_url_credentials_become_basic_auth_as_with_reqwest() {
    let mock = mock_upstream::MockServer::start(MockConfig {
        record: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let port = mock.addr().port();
    let base = format!("http://alice:s3cret@127.0.0.1:{port}/v1");

    // What the previous transport (reqwest) put on the wire for this URL.
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{base}/chat/completions"))
        .json(&chat_body("m", false))
        .send()
        .await
        .unwrap();
    let via_reqwest = mock.requests()[0].headers.get("authorization").cloned();
    assert_eq!(
        via_reqwest
            .as_ref()
            .map(|v| v.to_str().unwrap().to_string()),
        Some("Basic YWxpY2U6czNjcmV0".to_string()),
        "reqwest sends base-URL credentials as Basic auth"
    );

    let config = format!(
        "\n[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 0\n\n[[models]]\nname = \"m\"\nprovider_model = \"custom_openai/m\"\nbase_url = \"{base}\"\n"
    );
    let proxy = start_proxy(&config).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("m", false)).await;
    assert_eq!(resp.status(), 200);
    let seen = mock.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        last.headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        Some("Basic YWxpY2U6czNjcmV0".to_string()),
        "the proxy (hyper transport) dropped the base_url credentials; headers: {:?}",
        last.headers
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn base_url_credentials_never_appear_in_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = fake_proxy_config(&[fake_model(
        "gpt-4o",
        "openai/gpt-4o",
        &format!("http://alice:s3cret@{addr}/v1"),
        UPSTREAM_KEY,
        "",
    )]);
    let proxy = start_proxy(&config).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    let (msg, _) = error_message(resp, 502).await;
    assert!(msg.contains(&format!("at http://{addr}:")), "{msg}");
    assert!(!msg.contains("s3cret") && !msg.contains("alice"), "{msg}");
}

/// Health probes open connections under the deployment's connect timeout too.
#[tokio::test(flavor = "multi_thread")]
async fn health_probe_honours_the_deployment_connect_timeout() {
    let (addr, _listener, _held) = address_that_never_connects();
    let model = model_at(
        "gpt-4o",
        addr,
        "timeout_secs = 60\nconnect_timeout_secs = 1\n",
    );
    let config = format!(
        "\n[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 0\nconnect_timeout_secs = 1\n\n[health]\ninterval_secs = 3600\n{model}"
    );
    let state = Arc::new(AppState::build(&parse(&config), env_none()).unwrap());
    let health = state.health.clone().unwrap();
    let started = Instant::now();
    health.probe_all().await;
    let took = started.elapsed();
    let d = state.router.groups().next().unwrap().deployments[0].clone();
    let report = d.state.probe_report().unwrap();
    eprintln!("probe took {took:?}: {:?}", report.error);
    assert!(!report.healthy);
    assert!(
        took < Duration::from_secs(4),
        "probe took {took:?} with connect_timeout_secs = 1 (error: {:?})",
        report.error
    );
}
