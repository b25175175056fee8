#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every endpoint through the same pipeline: embeddings and completions here,
//! plus what all endpoints share (auth, allow-lists, rate limits, budgets, the
//! spend log). Each endpoint's own behaviour is in `endpoint_*.rs`.
mod common;
mod endpoint_common;

use common::*;
use endpoint_common::*;
use futures_util::StreamExt;
use mock_upstream::MockConfig;
use serde_json::json;
use std::time::Duration;

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

/// One well-formed request per non-chat endpoint, for the model of [`MODELS`]
/// that serves it: `(path, JSON body)`; `None` for the multipart upload.
fn one_of_each() -> Vec<(&'static str, Option<serde_json::Value>)> {
    vec![
        (
            "/v1/images/generations",
            Some(json!({"model": "img", "prompt": "a cat"})),
        ),
        (
            "/v1/audio/speech",
            Some(json!({"model": "tts", "input": "hi", "voice": "alloy"})),
        ),
        ("/v1/audio/transcriptions", None),
        (
            "/v1/moderations",
            Some(json!({"model": "mod", "input": "hello"})),
        ),
        (
            "/v1/rerank",
            Some(json!({"model": "rerank", "query": "q", "documents": ["a", "b"]})),
        ),
        (
            "/v1/ocr",
            Some(
                json!({"model": "ocr", "document": {"type": "image_url", "image_url": "https://x/y.png"}}),
            ),
        ),
    ]
}

async fn send_one(
    p: &TestProxy,
    key: &str,
    path: &str,
    body: &Option<serde_json::Value>,
) -> reqwest::Response {
    match body {
        Some(body) => post_json(p, key, path, body).await,
        None => {
            post_multipart(
                p,
                key,
                multipart(&[("model", "stt")], Some(("a.wav", b"RIFF....WAVE"))),
            )
            .await
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_needs_a_valid_key_before_anything_else() {
    let mock = start_mock(MockConfig::default()).await;
    let p = start_proxy(&endpoint_config(&mock, "", "")).await;
    for (path, body) in one_of_each() {
        for key in [None, Some("sk-not-a-key")] {
            let mut req = client().post(p.url(path));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let resp = match &body {
                Some(b) => req.json(b).send().await.unwrap(),
                None => req
                    .header(
                        "content-type",
                        format!("multipart/form-data; boundary={BOUNDARY}"),
                    )
                    .body(multipart(&[("model", "stt")], Some(("a.wav", b"RIFF"))))
                    .send()
                    .await
                    .unwrap(),
            };
            let (msg, _) = error_message(resp, 401).await;
            assert!(!msg.is_empty(), "{path}");
        }
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keys_model_allow_list_covers_every_endpoint_and_the_upload_form() {
    let mock = start_mock(MockConfig::default()).await;
    let keys = "[[keys]]\nkey = \"sk-speech-only\"\nmodels = [\"tts\"]\n";
    let p = start_proxy(&endpoint_config(&mock, "", keys)).await;
    for (path, body) in one_of_each() {
        let resp = send_one(&p, "sk-speech-only", path, &body).await;
        if path == "/v1/audio/speech" {
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        } else {
            let (msg, v) = error_message(resp, 403).await;
            assert_eq!(v["error"]["code"], "model_not_allowed", "{path}: {msg}");
        }
    }
    assert_eq!(mock.request_count(), 1, "only the allowed speech request");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_counts_against_the_same_rate_limit() {
    let mock = start_mock(MockConfig::default()).await;
    let keys = "[[keys]]\nkey = \"sk-rpm\"\nrpm = 6\n";
    let p = start_proxy(&endpoint_config(&mock, "", keys)).await;
    for (path, body) in one_of_each() {
        let resp = send_one(&p, "sk-rpm", path, &body).await;
        assert_eq!(resp.status(), 200, "{path}");
        resp.bytes().await.unwrap();
    }
    let resp = send_one(&p, "sk-rpm", "/v1/audio/transcriptions", &None).await;
    assert!(resp.headers().contains_key("retry-after"));
    let (msg, _) = error_message(resp, 429).await;
    assert!(msg.contains("6 requests per minute"), "{msg}");
    assert_eq!(mock.request_count(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_budget_stops_every_endpoint() {
    let mock = start_mock(MockConfig::default()).await;
    let keys = "[[keys]]\nkey = \"sk-budget\"\nbudget_limit = 1.25\n";
    // Chat answers cost exactly $1.25: 5 completion tokens at $0.25.
    let cfg = endpoint_config(&mock, "", keys).replace(
        "name = \"chat\"\n",
        "name = \"chat\"\ninput_cost_per_token = 0.0\noutput_cost_per_token = 0.25\n",
    );
    let p = start_proxy(&cfg).await;
    let mut chat = chat_body("chat", false);
    chat["max_tokens"] = 5.into();
    let resp = post_chat(&p, "sk-budget", &chat).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    for (path, body) in one_of_each() {
        let (msg, v) = error_message(send_one(&p, "sk-budget", path, &body).await, 402).await;
        assert_eq!(v["error"]["code"], "budget_exceeded", "{path}: {msg}");
    }
    assert_eq!(mock.request_count(), 1, "only the chat request was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spend_log_records_every_endpoints_requests() {
    let mock = start_mock(MockConfig::default()).await;
    let p = start_proxy(&endpoint_config(&mock, "enable_cost_tracking = true", "")).await;
    let mut expected = Vec::new();
    for (path, body) in one_of_each() {
        let resp = send_one(&p, MASTER, path, &body).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_model_id(&resp);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let model = match &body {
            Some(b) => b["model"].as_str().unwrap().to_string(),
            None => "stt".to_string(),
        };
        resp.bytes().await.unwrap();
        expected.push((id, model));
    }
    let log = p.state.spend.clone().unwrap();
    let mut records = Vec::new();
    for _ in 0..100 {
        log.flush().await;
        records = log.recent(100);
        if records.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(records.len(), expected.len(), "{records:?}");
    for (id, model) in expected {
        let r = records
            .iter()
            .find(|r| r.request_id == id)
            .unwrap_or_else(|| panic!("no spend record for {model} ({id}): {records:?}"));
        assert_eq!(r.model_group, model);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.completed, "{r:?}");
        assert!(r.deployment_id.is_some(), "{r:?}");
    }
}
