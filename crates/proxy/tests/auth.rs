#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use mock_upstream::MockConfig;

fn config_with_keys(mock: &mock_upstream::MockServer) -> String {
    basic_config(
        mock,
        "gpt-4o",
        &format!(
            r#"
[[models]]
name = "gpt-4o-mini"
provider_model = "openai/gpt-4o-mini"
base_url = "{}"
api_key = "{UPSTREAM_KEY}"

[[keys]]
key = "sk-team-a"
description = "team A"
models = ["gpt-4o-mini"]

[[keys]]
key = "sk-team-all"
"#,
            mock.base_url()
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_is_401() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&config_with_keys(&mock)).await;
    let resp = client().get(proxy.url("/v1/models")).send().await.unwrap();
    let (msg, v) = error_message(resp, 401).await;
    assert!(msg.contains("missing API key"));
    assert_eq!(v["error"]["type"], "authentication_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_key_is_401_without_echo() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&config_with_keys(&mock)).await;
    let secret = "sk-guess-0123456789abcdef";
    let resp = post_chat(&proxy, secret, &chat_body("gpt-4o", false)).await;
    let body = resp.text().await.unwrap();
    assert!(!body.contains(secret), "the key was echoed: {body}");
    let resp = post_chat(&proxy, secret, &chat_body("gpt-4o", false)).await;
    error_message(resp, 401).await;
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_outside_allow_list_is_403_without_echo() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&config_with_keys(&mock)).await;
    let resp = post_chat(&proxy, "sk-team-a", &chat_body("gpt-4o", false)).await;
    let (msg, v) = error_message(resp, 403).await;
    assert!(!msg.contains("sk-team-a"));
    assert!(msg.contains("gpt-4o"));
    assert_eq!(v["error"]["code"], "model_not_allowed");
    assert_eq!(mock.request_count(), 0);
    let ok = post_chat(&proxy, "sk-team-a", &chat_body("gpt-4o-mini", false)).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_allow_list_means_every_model() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&config_with_keys(&mock)).await;
    for m in ["gpt-4o", "gpt-4o-mini"] {
        assert_eq!(
            post_chat(&proxy, "sk-team-all", &chat_body(m, false))
                .await
                .status(),
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_and_azure_style_key_headers_are_accepted() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&config_with_keys(&mock)).await;
    for header in ["x-api-key", "api-key"] {
        let resp = client()
            .get(proxy.url("/v1/models"))
            .header(header, MASTER)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{header}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn model_list_is_filtered_by_allow_list() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&config_with_keys(&mock)).await;
    let ids = |key: &'static str| {
        let url = proxy.url("/v1/models");
        async move {
            let v: serde_json::Value = client()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(v["object"], "list");
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    assert_eq!(m["object"], "model");
                    m["id"].as_str().unwrap().to_string()
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(MASTER).await, vec!["gpt-4o", "gpt-4o-mini"]);
    assert_eq!(ids("sk-team-a").await, vec!["gpt-4o-mini"]);
    let one = client()
        .get(proxy.url("/v1/models/gpt-4o"))
        .bearer_auth("sk-team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn stubbed_routes_still_require_auth() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&config_with_keys(&mock)).await;
    let resp = client()
        .post(proxy.url("/v1/batches"))
        .send()
        .await
        .unwrap();
    error_message(resp, 401).await;
    let resp = client()
        .post(proxy.url("/v1/batches"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    let (msg, _) = error_message(resp, 501).await;
    assert!(msg.contains("/v1/batches"));
}

#[tokio::test(flavor = "multi_thread")]
async fn open_mode_needs_explicit_opt_in() {
    let mock = start_mock(MockConfig::default()).await;
    let cfg = basic_config(&mock, "gpt-4o", "").replace(&format!("master_key = \"{MASTER}\""), "");
    let err = liter_llm_proxy::AppState::build(&parse(&cfg), env_none())
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("allow_unauthenticated"), "{err}");
    let open = cfg.replace("[general]", "[general]\nallow_unauthenticated = true");
    let proxy = start_proxy(&open).await;
    assert_eq!(
        post_chat(&proxy, "anything-or-nothing", &chat_body("gpt-4o", false))
            .await
            .status(),
        401
    );
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A garbled credential is an error even in open mode, never anonymous.
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    let (msg, _) = error_message(resp, 401).await;
    assert!(msg.contains("malformed Authorization"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn virtual_key_equal_to_overridden_master_key_is_refused() {
    let mock = start_mock(MockConfig::default()).await;
    let mut config = parse(&config_with_keys(&mock));
    // As if LITER_LLM_MASTER_KEY had been set to a virtual key's value.
    config.general.master_key = Some(liter_llm_config::Secret::new("sk-team-a"));
    let err = liter_llm_proxy::AppState::build(&config, env_none())
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("same as the master key"), "{err}");
}
