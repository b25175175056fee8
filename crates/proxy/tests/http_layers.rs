#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use axum::routing::get;
use common::*;
use mock_upstream::MockConfig;

#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_generated_or_kept() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = client().get(proxy.url("/health")).send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let resp = client()
        .get(proxy.url("/v1/models"))
        .header("x-request-id", "mine-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-request-id"], "mine-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_is_open_by_default() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, proxy.url("/v1/chat/completions"))
        .header("origin", "http://example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_origins_restrict_browsers() {
    let mock = start_mock(MockConfig::default()).await;
    let cfg = basic_config(&mock, "gpt-4o", "").replace(
        "[general]",
        "[server]\ncors_origins = [\"https://app.example.com\"]\n[general]",
    );
    let proxy = start_proxy(&cfg).await;
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, proxy.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let denied = preflight("https://evil.example.com").await.unwrap();
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_in_handler_becomes_openai_shaped_500() {
    async fn boom() -> &'static str {
        panic!("handler exploded")
    }
    let app = liter_llm_proxy::with_http_layers(
        axum::Router::new().route("/boom", get(boom)),
        &["*".to_string()],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let resp = client()
        .get(format!("http://{addr}/boom"))
        .send()
        .await
        .unwrap();
    let (msg, _) = error_message(resp, 500).await;
    assert!(msg.contains("panicked"));
    // The server is still up.
    let again = client()
        .get(format!("http://{addr}/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_is_enforced_with_504() {
    let mock = start_mock(MockConfig {
        delay_ms: 4000,
        ..MockConfig::default()
    })
    .await;
    let cfg = basic_config(&mock, "gpt-4o", "")
        .replace("[general]", "[server]\nrequest_timeout_secs = 1\n[general]");
    let proxy = start_proxy(&cfg).await;
    let started = std::time::Instant::now();
    let (msg, v) = error_message(
        post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await,
        504,
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_millis(3000));
    assert!(msg.contains("request_timeout_secs"), "{msg}");
    assert_eq!(v["error"]["code"], "request_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_are_public_and_report_models() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    for path in [
        "/health",
        "/health/liveness",
        "/health/readiness",
        "/openapi.json",
    ] {
        let resp = client().get(proxy.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let health: serde_json::Value = client()
        .get(proxy.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["models"][0]["name"], "gpt-4o");
    let doc: serde_json::Value = client()
        .get(proxy.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let ops: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| {
            p.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "delete"].contains(&k.as_str()))
                .count()
        })
        .sum();
    assert!(ops >= 26, "{ops} operations");
}

#[tokio::test(flavor = "multi_thread")]
async fn draining_turns_readiness_503_and_lets_streams_finish() {
    let mock = start_mock(MockConfig {
        chunks: 10,
        chunk_interval_ms: 50,
        ..MockConfig::default()
    })
    .await;
    let mut proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", true)).await;
    assert_eq!(resp.status(), 200);
    proxy.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(proxy.state.is_draining());
    assert!(!proxy.state.is_ready());
    // The in-flight stream still completes.
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // New connections are refused once the listener is closed.
    let refused = reqwest::Client::new()
        .get(proxy.url("/health/readiness"))
        .send()
        .await;
    assert!(refused.is_err() || refused.unwrap().status() == 503);
    let server = proxy.server.take().unwrap();
    let clean = tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(clean);
}
