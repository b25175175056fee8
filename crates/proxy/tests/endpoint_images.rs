//! `POST /v1/images/generations` through an OpenAI-compatible deployment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
mod endpoint_common;

use common::*;
use endpoint_common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn gpt_image_request_reaches_the_upstream_with_only_the_model_rewritten() {
    let (mock, p) = start_endpoints().await;
    let sent = json!({
        "model": "img",
        "prompt": "A watercolour fox",
        "n": 2,
        "size": "1536x1024",
        "quality": "low",
        "vendor_extension": {"kept": [1, 2]},
    });
    let (v, request) = relayed_json(
        &p,
        &mock,
        "/v1/images/generations",
        &sent,
        ("img", "gpt-image-1"),
    )
    .await;
    assert_eq!(request.headers["content-type"], "application/json");
    // The upstream's answer is the client's: two base64 PNGs and token usage.
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["b64_json"], mock_upstream::PNG_1X1_B64);
    assert_eq!(v["size"], "1536x1024");
    assert_eq!(v["usage"]["output_tokens"], 2 * 408);
}

#[tokio::test(flavor = "multi_thread")]
async fn dall_e_answers_urls_or_base64_as_the_client_asked() {
    let (mock, p) = start_endpoints().await;
    let url = json_ok(
        post_json(
            &p,
            MASTER,
            "/v1/images/generations",
            &json!({"model": "dalle", "prompt": "a lighthouse"}),
        )
        .await,
    )
    .await;
    assert!(url["data"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    assert!(url["data"][0]["revised_prompt"].is_string());
    let b64 = json_ok(
        post_json(
            &p,
            MASTER,
            "/v1/images/generations",
            &json!({"model": "dalle", "prompt": "a lighthouse", "response_format": "b64_json"}),
        )
        .await,
    )
    .await;
    assert_eq!(b64["data"][0]["b64_json"], mock_upstream::PNG_1X1_B64);
    assert!(b64["data"][0].get("url").is_none());
    let sent: Vec<Value> = mock.requests().iter().map(|r| json_of(&r.body)).collect();
    assert!(sent.iter().all(|s| s["model"] == "dall-e-3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_image_requests_are_400s_naming_the_field_and_never_sent() {
    let (mock, p) = start_endpoints().await;
    for (body, param) in [
        (json!({"model": "img"}), "prompt"),
        (json!({"model": "img", "prompt": "  "}), "prompt"),
        (json!({"model": "img", "prompt": "x", "n": 0}), "n"),
        (json!({"model": "img", "prompt": "x", "n": 11}), "n"),
        (
            json!({"model": "img", "prompt": "x", "response_format": "png"}),
            "response_format",
        ),
        (
            json!({"model": "img", "prompt": "x", "stream": true}),
            "stream",
        ),
        (json!({"prompt": "x"}), "model"),
    ] {
        let (msg, v) = error_message(
            post_json(&p, MASTER, "/v1/images/generations", &body).await,
            400,
        )
        .await;
        assert_eq!(v["error"]["param"], param, "{body}: {msg}");
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstreams_own_400_reaches_the_client_unchanged() {
    let (mock, p) = start_endpoints().await;
    // The proxy lets n=2 through (other image models take it); dall-e-3 does not.
    let (msg, v) = error_message(
        post_json(
            &p,
            MASTER,
            "/v1/images/generations",
            &json!({"model": "dalle", "prompt": "x", "n": 2}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(v["error"]["param"], "n");
    assert!(msg.contains("dall-e-3"), "{msg}");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_without_image_generation_refuses_before_calling_it() {
    let fake = fake_providers::anthropic::FakeAnthropic::start("sk-ant")
        .await
        .unwrap();
    let cfg = fake_proxy_config(&[fake_model(
        "claude",
        "anthropic/claude-sonnet-4-5",
        &fake.base_url(),
        "sk-ant",
        "",
    )]);
    let p = start_proxy(&cfg).await;
    let (msg, v) = error_message(
        post_json(
            &p,
            MASTER,
            "/v1/images/generations",
            &json!({"model": "claude", "prompt": "a cat"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "endpoint_not_supported", "{msg}");
    assert!(msg.contains("images.generations"), "{msg}");
    assert!(fake.requests().is_empty());
}
