//! Serving threads: a burst of connections accepted by one thread is spread
//! over the others, and a connection handed to another thread is served there
//! like any other. (A test binary of its own: it sets `TOKIO_WORKER_THREADS`
//! for the process.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use mock_upstream::MockConfig;

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_connections_is_served_across_threads() {
    // Three serving threads, whatever the machine, so that connections are
    // handed over even on one CPU.
    std::env::set_var("TOKIO_WORKER_THREADS", "3");
    let mock = start_mock(MockConfig {
        chunks: 3,
        ..MockConfig::default()
    })
    .await;
    let config = fake_proxy_config(&[fake_model(
        "gpt-4o",
        "openai/gpt-4o",
        &format!("http://{}/v1", mock.addr()),
        UPSTREAM_KEY,
        "",
    )]);
    let proxy = start_proxy(&config).await;
    // 24 clients, each on one connection of its own, all opened at once.
    let clients: Vec<_> = (0..24)
        .map(|_| {
            reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap()
        })
        .collect();
    let runs = clients.iter().enumerate().map(|(i, c)| {
        let url = proxy.url("/v1/chat/completions");
        async move {
            for round in 0..3 {
                let stream = (i + round) % 2 == 0;
                let resp = c
                    .post(&url)
                    .bearer_auth(MASTER)
                    .json(&chat_body("gpt-4o", stream))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let text = resp.text().await.unwrap();
                if stream {
                    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
                } else {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(v["object"], "chat.completion");
                }
            }
        }
    });
    futures_util::future::join_all(runs).await;
    assert_eq!(mock.requests().len(), 72);
}
