#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use mock_upstream::MockConfig;

#[tokio::test(flavor = "multi_thread")]
async fn overhead_histogram_excludes_upstream_wait() {
    // The mock waits 200 ms; the proxy's own share must be far below that.
    let mock = start_mock(MockConfig {
        delay_ms: 200,
        ..MockConfig::default()
    })
    .await;
    let cfg = basic_config(&mock, "gpt-4o", "")
        .replace("[general]", "[server]\noverhead_header = true\n[general]");
    let proxy = start_proxy(&cfg).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    let overhead_us: u64 = resp.headers()["x-liter-llm-overhead-us"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        overhead_us < 100_000,
        "overhead {overhead_us} µs includes the upstream's 200 ms"
    );
    let text = client()
        .get(proxy.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("liter_llm_overhead_seconds_count{route=\"/v1/chat/completions\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "liter_llm_upstream_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.05\"} 0"
        ),
        "{text}"
    );
    assert!(
        text.contains("liter_llm_requests_total{route=\"/v1/chat/completions\",status=\"2xx\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overhead_header_is_off_by_default() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    assert!(resp.headers().get("x-liter-llm-overhead-us").is_none());
    let resp = post_chat(&proxy, MASTER, &chat_body("nope", false)).await;
    assert_eq!(resp.status(), 404);
    let text = client()
        .get(proxy.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("status=\"4xx\"} 1"), "{text}");
    // Requests that never reached the upstream are not overhead samples.
    assert!(
        text.contains("liter_llm_overhead_seconds_count{route=\"/v1/chat/completions\"} 1"),
        "{text}"
    );
}
