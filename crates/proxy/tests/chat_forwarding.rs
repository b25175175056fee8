#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use mock_upstream::MockConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn alias_name_is_rewritten_to_upstream_model() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o-2024-08-06", "")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "gpt-4o-2024-08-06");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let sent: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(
        sent["model"], "gpt-4o-2024-08-06",
        "upstream must never see the client-facing name"
    );
    assert_eq!(reqs[0].path, "/v1/chat/completions");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_reach_upstream_byte_for_byte() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o-2024-08-06", "")).await;
    // Field order, spacing and fields this proxy has never heard of must survive.
    let raw = r#"{"messages":[{"role":"system","content":[{"type":"text","text":"be brief"}]},{"role":"user","content":"hi"}],  "model" : "gpt-4o", "max_completion_tokens": 9, "store": true, "metadata": {"team": "a"}, "service_tier": "flex", "logprobs": true, "x_vendor": {"nested": [1, 2.5, null]}}"#;
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert_eq!(
        sent,
        raw.replace(r#""model" : "gpt-4o""#, r#""model" : "gpt-4o-2024-08-06""#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_gets_its_own_key_and_the_request_id() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("x-request-id", "trace-abc-123")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");
    let req = &mock.requests()[0];
    assert_eq!(
        req.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );
    assert_eq!(req.headers["x-request-id"], "trace-abc-123");
}

#[tokio::test(flavor = "multi_thread")]
async fn response_names_the_deployment_that_answered() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.headers()["x-liter-llm-model-id"], "gpt-4o#0");
    assert_eq!(resp.headers()["x-liter-llm-attempts"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_sharing_a_name_take_turns() {
    let a = start_mock(MockConfig::default()).await;
    let b = start_mock(MockConfig::default()).await;
    let cfg = format!(
        r#"
[general]
master_key = "{MASTER}"
[[models]]
name = "pool"
provider_model = "openai/model-a"
base_url = "{}"
api_key = "{UPSTREAM_KEY}"
[[models]]
name = "pool"
provider_model = "openai/model-b"
base_url = "{}"
api_key = "{UPSTREAM_KEY}"
"#,
        a.base_url(),
        b.base_url()
    );
    let proxy = start_proxy(&cfg).await;
    for _ in 0..6 {
        assert_eq!(
            post_chat(&proxy, MASTER, &chat_body("pool", false))
                .await
                .status(),
            200
        );
    }
    assert_eq!(a.request_count(), 3);
    assert_eq!(b.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn alias_pattern_routes_provider_model_directly() {
    let mock = start_mock(MockConfig::default()).await;
    let cfg = format!(
        r#"
[general]
master_key = "{MASTER}"
[[aliases]]
pattern = "groq/*"
base_url = "{}"
api_key = "{UPSTREAM_KEY}"
"#,
        mock.base_url()
    );
    let proxy = start_proxy(&cfg).await;
    let resp = post_chat(
        &proxy,
        MASTER,
        &chat_body("groq/llama-3.3-70b-versatile", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent: serde_json::Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(sent["model"], "llama-3.3-70b-versatile");
    let models: serde_json::Value = client()
        .get(proxy.url("/v1/models"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "groq/*"));
}

#[tokio::test(flavor = "multi_thread")]
async fn retryable_upstream_failure_is_retried_on_the_next_deployment() {
    let failing = start_mock(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let healthy = start_mock(MockConfig::default()).await;
    let cfg = format!(
        r#"
[general]
master_key = "{MASTER}"
max_retries = 1
[[models]]
name = "pool"
provider_model = "openai/m"
base_url = "{}"
api_key = "{UPSTREAM_KEY}"
[[models]]
name = "pool"
provider_model = "openai/m"
base_url = "{}"
api_key = "{UPSTREAM_KEY}"
"#,
        failing.base_url(),
        healthy.base_url()
    );
    let proxy = start_proxy(&cfg).await;
    for _ in 0..4 {
        let resp = post_chat(&proxy, MASTER, &chat_body("pool", false)).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(healthy.request_count(), 4);
    assert!(failing.request_count() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_errors_are_not_retried() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(
        &basic_config(&mock, "gpt-4o", "").replace("max_retries = 0", "max_retries = 3"),
    )
    .await;
    // The mock answers a wrongly typed `n` with 400; the proxy does not look at `n`.
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "gpt-4o", "messages": [], "stream": false, "n": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn alias_with_slash_in_model_part_resolves_provider_by_longest_name() {
    let mock = start_mock(MockConfig::default()).await;
    let cfg = format!(
        "[general]\nmaster_key = \"{MASTER}\"\n[[aliases]]\npattern = \"together_ai/meta-llama/*\"\nbase_url = \"{}\"\napi_key = \"{UPSTREAM_KEY}\"\n",
        mock.base_url()
    );
    let proxy = start_proxy(&cfg).await;
    let resp = post_chat(
        &proxy,
        MASTER,
        &chat_body("together_ai/meta-llama/Llama-3.3-70B", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent: serde_json::Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(sent["model"], "meta-llama/Llama-3.3-70B");
}
