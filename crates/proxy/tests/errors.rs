#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use mock_upstream::{Fault, MockConfig};
use serde_json::json;

async fn raw_post(p: &TestProxy, body: &'static str) -> reqwest::Response {
    client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_mistyped_bodies_get_400_naming_the_problem() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let cases: [(&'static str, &str); 6] = [
        (r#"{"model": "gpt-4o", "messages": [}"#, "not valid JSON"),
        (r#"{"messages": []}"#, "`model`"),
        (r#"{"model": 5, "messages": []}"#, "`model`"),
        (r#"{"model": "gpt-4o", "messages": "hi"}"#, "`messages`"),
        (
            r#"{"model": "gpt-4o", "messages": [], "stream": "yes"}"#,
            "`stream`",
        ),
        (r#"[1, 2]"#, "JSON object"),
    ];
    for (body, needle) in cases {
        let (msg, _) = error_message(raw_post(&proxy, body).await, 400).await;
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_model_is_404_naming_it() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = post_chat(&proxy, MASTER, &chat_body("no-such-model", false)).await;
    let (msg, v) = error_message(resp, 404).await;
    assert!(msg.contains("no-such-model"));
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_is_413() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(
        &basic_config(&mock, "gpt-4o", "")
            .replace("[general]", "[server]\nbody_limit_bytes = 1000\n[general]"),
    )
    .await;
    let big = "x".repeat(5000);
    let resp = post_chat(
        &proxy,
        MASTER,
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": big}]}),
    )
    .await;
    let (msg, _) = error_message(resp, 413).await;
    assert!(msg.contains("1000 bytes"));
    // Chunked bodies without Content-Length are limited too.
    let stream =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 500])));
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    error_message(resp, 413).await;
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstream_is_502() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = format!(
        "[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 0\n[[models]]\nname = \"m\"\nprovider_model = \"openai/m\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\napi_key = \"k\"\n"
    );
    let proxy = start_proxy(&cfg).await;
    let (msg, v) =
        error_message(post_chat(&proxy, MASTER, &chat_body("m", false)).await, 502).await;
    assert!(msg.contains("could not reach upstream"), "{msg}");
    assert_eq!(v["error"]["code"], "upstream_unreachable");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_garbage_is_502_not_passed_through() {
    let mock = start_mock(MockConfig {
        fault: Some(Fault::Garbage),
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let (msg, _) = error_message(
        post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await,
        502,
    )
    .await;
    assert!(msg.contains("not valid JSON"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_html_error_page_is_wrapped() {
    let mock = start_mock(MockConfig {
        fault: Some(Fault::HtmlError),
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let (msg, _) = error_message(
        post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await,
        502,
    )
    .await;
    assert!(msg.contains("non-JSON body"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_rejecting_proxy_credentials_is_502_not_401() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "").replace(
        &format!("api_key = \"{UPSTREAM_KEY}\""),
        "api_key = \"sk-wrong\"",
    ))
    .await;
    let (msg, v) = error_message(
        post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await,
        502,
    )
    .await;
    assert!(msg.contains("rejected the proxy's credentials"), "{msg}");
    assert!(!msg.contains("sk-wrong"));
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_429_passes_status_and_retry_after() {
    let mock = start_mock(MockConfig {
        rate_limit_rate: 1.0,
        retry_after_secs: 30,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(
        &basic_config(&mock, "gpt-4o", "").replace("max_retries = 0", "max_retries = 2"),
    )
    .await;
    let resp = post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.headers()["retry-after"], "30");
    error_message(resp, 429).await;
    // A Retry-After longer than the proxy will wait is handed to the client at once.
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_and_wrong_method_are_openai_shaped() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = client()
        .get(proxy.url("/v1/nope"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    error_message(resp, 404).await;
    let resp = client()
        .get(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    error_message(resp, 405).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_hits_the_model_timeout() {
    let mock = start_mock(MockConfig {
        delay_ms: 3000,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "timeout_secs = 1")).await;
    let started = std::time::Instant::now();
    let (msg, _) = error_message(
        post_chat(&proxy, MASTER, &chat_body("gpt-4o", false)).await,
        504,
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    assert!(msg.contains("did not answer within 1 s"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_that_cool_the_group_still_report_the_real_failure() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // Three failures cool the only deployment during this request's retries.
    let cfg = format!(
        "[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 3\n[[models]]\nname = \"m\"\nprovider_model = \"openai/m\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\napi_key = \"k\"\n"
    );
    let proxy = start_proxy(&cfg).await;
    let (msg, v) =
        error_message(post_chat(&proxy, MASTER, &chat_body("m", false)).await, 502).await;
    assert_eq!(v["error"]["code"], "upstream_unreachable", "{msg}");
    // The next request finds the group cooling and says so.
    let resp = post_chat(&proxy, MASTER, &chat_body("m", false)).await;
    assert!(resp.headers().contains_key("retry-after"));
    error_message(resp, 503).await;
}
