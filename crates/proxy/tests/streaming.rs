#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use futures_util::StreamExt;
use mock_upstream::{Fault, MockConfig};
use std::time::{Duration, Instant};

/// Read a whole SSE response, returning (time of first content byte, full text).
async fn read_stream(resp: reqwest::Response) -> (Duration, Duration, String) {
    let start = Instant::now();
    let mut first = None;
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        if first.is_none() && !chunk.is_empty() {
            first = Some(start.elapsed());
        }
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    (first.unwrap_or_default(), start.elapsed(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_is_not_buffered() {
    let mock = start_mock(MockConfig {
        chunks: 8,
        chunk_interval_ms: 60,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (first, total, text) = read_stream(resp).await;
    // 8 chunks at 60 ms take ~480 ms upstream; the first must arrive long before.
    assert!(total >= Duration::from_millis(400), "total {total:?}");
    assert!(
        first < Duration::from_millis(200),
        "first chunk after {first:?}: the stream was buffered"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let content: String = (0..8).map(|i| format!("tok{i} ")).collect();
    let joined: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(joined, content);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_is_not_compressed_even_when_client_accepts_gzip() {
    let mock = start_mock(MockConfig {
        chunks: 4,
        chunk_interval_ms: 50,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("accept-encoding", "gzip, br")
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("content-encoding").is_none());
    let (first, total, _) = read_stream(resp).await;
    assert!(
        first + Duration::from_millis(100) < total,
        "first {first:?} total {total:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_answers_are_compressed_when_client_accepts_gzip() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("accept-encoding", "gzip")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_stream_ends_with_error_event_not_done() {
    let mock = start_mock(MockConfig {
        fault: Some(Fault::TruncateStream),
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", true)).await;
    assert_eq!(resp.status(), 200);
    let (_, _, text) = read_stream(resp).await;
    assert!(
        !text.contains("[DONE]"),
        "a truncated stream must not look finished: {text}"
    );
    let last = text.trim_end().lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    // A cut mid-chunk surfaces as a body error, a clean close without [DONE] as a
    // truncation; either way the client is told.
    let code = v["error"]["code"].as_str().unwrap();
    assert!(
        code == "upstream_stream_error" || code == "upstream_stream_truncated",
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_stream_times_out_with_error_event() {
    let mock = start_mock(MockConfig {
        fault: Some(Fault::Stall),
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "timeout_secs = 1")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", true)).await;
    let started = Instant::now();
    let (_, _, text) = tokio::time::timeout(Duration::from_secs(10), read_stream(resp))
        .await
        .expect("hung");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(!text.contains("[DONE]"));
    assert!(text.contains("sent nothing for 1 s"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_cancels_upstream_stream() {
    let mock = start_mock(MockConfig {
        chunks: 50,
        chunk_interval_ms: 40,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", true)).await;
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    assert!(
        mock.wait_for_aborted_stream(Duration::from_secs(3)).await,
        "upstream stream kept running after the client left"
    );
    assert_eq!(mock.streams_completed(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_bounds_a_stream() {
    let mock = start_mock(MockConfig {
        chunks: 100,
        chunk_interval_ms: 100,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(
        &basic_config(&mock, "gpt-4o", "")
            .replace("[general]", "[server]\nrequest_timeout_secs = 1\n[general]"),
    )
    .await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", true)).await;
    let (_, total, text) = tokio::time::timeout(Duration::from_secs(10), read_stream(resp))
        .await
        .expect("hung");
    assert!(total < Duration::from_secs(3), "{total:?}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(!text.contains("[DONE]"));
}
