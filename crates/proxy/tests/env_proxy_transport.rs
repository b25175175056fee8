//! With a proxy in the environment the upstream calls go through one reqwest
//! client shared by every serving thread, and a pooled upstream connection is
//! driven by the runtime of the thread that opened it. A graceful drain must
//! not drop that runtime while another thread still relays a stream over the
//! connection. (A test binary of its own: it sets `HTTP_PROXY` for the process.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use mock_upstream::MockConfig;
use std::time::Duration;

async fn trial() -> bool {
    let mock = start_mock(MockConfig {
        chunks: 10,
        chunk_interval_ms: 100,
        ..MockConfig::default()
    })
    .await;
    // The upstream host does not resolve: every upstream request must go
    // through HTTP_PROXY (the mock, which routes absolute-form URIs by path).
    std::env::set_var("HTTP_PROXY", format!("http://{}", mock.addr()));
    let config = format!(
        "\n[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 0\n\n[[models]]\nname = \"gpt-4o\"\nprovider_model = \"openai/gpt-4o\"\nbase_url = \"http://upstream.invalid/v1\"\napi_key = \"{UPSTREAM_KEY}\"\n"
    );
    let mut proxy = start_proxy_with(parse(&config), Duration::from_secs(30)).await;
    {
        let a = client();
        let r = a
            .post(proxy.url("/v1/chat/completions"))
            .bearer_auth(MASTER)
            .json(&chat_body("gpt-4o", false))
            .send()
            .await
            .unwrap();
        let st = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(st, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = client();
    let mut resp = b
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    if let Some(c) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&c));
    }
    proxy.begin_shutdown();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => text.push_str(&String::from_utf8_lossy(&c)),
            Ok(None) => break,
            Err(e) => {
                text.push_str(&format!("<client error: {e}>"));
                break;
            }
        }
    }
    let cut = !text.trim_end().ends_with("data: [DONE]");
    if cut {
        eprintln!(
            "stream cut during drain; tail: {}",
            &text[text.len().saturating_sub(400)..]
        );
    }
    let server = proxy.server.take().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    cut
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_keeps_streams_when_a_proxy_is_configured() {
    // Two serving threads, whatever the machine: the cut needs a second one.
    std::env::set_var("TOKIO_WORKER_THREADS", "2");
    let mut cuts = 0;
    let trials = 6;
    for _ in 0..trials {
        if trial().await {
            cuts += 1;
        }
    }
    assert_eq!(cuts, 0, "{cuts} of {trials} streams were cut by the drain");
}
