#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use futures_util::StreamExt;
use mock_upstream::MockConfig;
use serde_json::json;

async fn post(p: &TestProxy, path: &str, body: serde_json::Value) -> reqwest::Response {
    client()
        .post(p.url(path))
        .bearer_auth(MASTER)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_reach_the_upstream_with_the_model_rewritten() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "text-embedding-3-small", "")).await;
    for format in ["float", "base64"] {
        let resp = post(
            &proxy,
            "/v1/embeddings",
            json!({"model": "gpt-4o", "input": ["a", "b"], "encoding_format": format}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        let first = &v["data"][0]["embedding"];
        assert!(
            if format == "float" {
                first.is_array()
            } else {
                first.is_string()
            },
            "{v}"
        );
        let sent: serde_json::Value =
            serde_json::from_slice(&mock.requests().last().unwrap().body).unwrap();
        assert_eq!(sent["model"], "text-embedding-3-small");
        assert_eq!(sent["encoding_format"], format);
        assert_eq!(mock.requests().last().unwrap().path, "/v1/embeddings");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_or_missing_embedding_input_is_a_400_naming_input() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "e", "")).await;
    for body in [
        json!({"model": "gpt-4o"}),
        json!({"model": "gpt-4o", "input": []}),
        json!({"model": "gpt-4o", "input": ""}),
        json!({"model": "gpt-4o", "input": 5}),
    ] {
        let (msg, v) = error_message(post(&proxy, "/v1/embeddings", body.clone()).await, 400).await;
        assert_eq!(v["error"]["param"], "input", "{body}: {msg}");
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_completions_work_streaming_and_not() {
    let mock = start_mock(MockConfig {
        chunks: 3,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-3.5-turbo-instruct", "")).await;
    let resp = post(
        &proxy,
        "/v1/completions",
        json!({"model": "gpt-4o", "prompt": "Say hi"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(mock.requests().last().unwrap().path, "/v1/completions");
    let resp = post(
        &proxy,
        "/v1/completions",
        json!({"model": "gpt-4o", "prompt": "Say hi", "stream": true}),
    )
    .await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(c) = body.next().await {
        text.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(text.contains("text_completion"), "{text}");
    // The proxy asked for usage to meter the stream, and kept that chunk from the client.
    let sent: serde_json::Value =
        serde_json::from_slice(&mock.requests().last().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert!(!text.contains("\"choices\":[]"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_share_rate_limits_with_chat() {
    let mock = start_mock(MockConfig::default()).await;
    let cfg = basic_config(&mock, "m", "") + "\n[[keys]]\nkey = \"sk-limited\"\nrpm = 2\n";
    let proxy = start_proxy(&cfg).await;
    let call = |path: &'static str, body: serde_json::Value| {
        client()
            .post(proxy.url(path))
            .bearer_auth("sk-limited")
            .json(&body)
            .send()
    };
    assert_eq!(
        call("/v1/embeddings", json!({"model": "gpt-4o", "input": "x"}))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call("/v1/completions", json!({"model": "gpt-4o", "prompt": "x"}))
            .await
            .unwrap()
            .status(),
        200
    );
    let third = call("/v1/chat/completions", chat_body("gpt-4o", false))
        .await
        .unwrap();
    error_message(third, 429).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn native_adapter_models_refuse_other_endpoints_clearly() {
    let fake = fake_providers::anthropic::FakeAnthropic::start("sk-ant")
        .await
        .unwrap();
    let cfg = format!(
        "[general]\nmaster_key = \"{MASTER}\"\n[[models]]\nname = \"claude\"\nprovider_model = \"anthropic/claude-sonnet-4-5\"\nbase_url = \"{}\"\napi_key = \"sk-ant\"\n",
        fake.base_url()
    );
    let proxy = start_proxy(&cfg).await;
    let (msg, v) = error_message(
        post(
            &proxy,
            "/v1/embeddings",
            json!({"model": "claude", "input": "x"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "endpoint_not_supported", "{msg}");
    assert!(fake.requests().is_empty());
}
