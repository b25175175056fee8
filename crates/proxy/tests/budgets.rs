//! Budgets through the real proxy: hard limits under concurrency, the 402
//! envelope, soft enforcement, the global and per-model budgets, and streams.
//!
//! Prices are set in the config so the numbers are exact: input tokens are
//! free and output tokens cost $0.25. The mock answers 5 completion tokens
//! (`COMPLETION`) to a JSON request and one per chunk to a stream (5 chunks
//! here), so every answer costs exactly $1.25, and a request with
//! `max_tokens: 5` reserves exactly $1.25.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use futures_util::future::join_all;
use mock_upstream::{MockConfig, MockServer};
use serde_json::{json, Value};

const PER_REQUEST: f64 = 1.25;
const KEY_A: &str = "sk-budget-key-a";
const KEY_B: &str = "sk-budget-key-b";
const EXCEEDED: &str = "x-liter-llm-budget-exceeded";

async fn mock(delay_ms: u64, chunk_interval_ms: u64) -> MockServer {
    start_mock(MockConfig {
        chunks: 5,
        delay_ms,
        chunk_interval_ms,
        ..MockConfig::default()
    })
    .await
}

/// `gpt-4o` and `mini`, both at the mock at $0 input / $0.25 output, then `rest`.
fn config(mock: &MockServer, rest: &str) -> String {
    format!(
        r#"
[general]
master_key = "{MASTER}"
max_retries = 0

[[models]]
name = "gpt-4o"
provider_model = "openai/gpt-4o"
base_url = "{base}"
api_key = "{UPSTREAM_KEY}"
input_cost_per_token = 0.0
output_cost_per_token = 0.25

[[models]]
name = "mini"
provider_model = "openai/gpt-4o-mini"
base_url = "{base}"
api_key = "{UPSTREAM_KEY}"
input_cost_per_token = 0.0
output_cost_per_token = 0.25

{rest}
"#,
        base = mock.base_url()
    )
}

fn key(k: &str, budget: f64) -> String {
    format!("[[keys]]\nkey = \"{k}\"\nbudget_limit = {budget}\n")
}

fn body(model: &str, stream: bool, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "max_tokens": max_tokens,
    })
}

/// Send and read the whole answer (a stream to its end); (status, headers, body).
async fn send(p: &TestProxy, key: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = post_chat(p, key, body).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (status, headers, text)
}

fn assert_complete_stream(text: &str) {
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream did not finish: {text}"
    );
}

/// 50 requests at once against a key whose budget pays for 10.
async fn fifty_against_ten(stream: bool) {
    // The upstream holds every answer long enough for all 50 to be in flight.
    let mock = if stream {
        mock(0, 100).await
    } else {
        mock(500, 0).await
    };
    let p = start_proxy(&config(&mock, &key(KEY_A, 10.0 * PER_REQUEST))).await;
    let b = body("gpt-4o", stream, 5);
    let results = join_all((0..50).map(|_| send(&p, KEY_A, &b))).await;
    let mut ok = 0;
    for (status, _, text) in &results {
        match status {
            200 => {
                ok += 1;
                if stream {
                    assert_complete_stream(text);
                }
            }
            402 => {
                let v: Value = serde_json::from_str(text).unwrap();
                assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
            }
            s => panic!("unexpected status {s}: {text}"),
        }
    }
    assert_eq!(
        ok, 10,
        "a $12.50 budget at $1.25 a request admits exactly 10"
    );
    assert_eq!(
        mock.request_count(),
        10,
        "rejected requests never reach the upstream"
    );
    // The budget is now spent: the next request is refused too.
    let (status, _, text) = send(&p, KEY_A, &b).await;
    assert_eq!(status, 402, "{text}");
    assert_eq!(mock.request_count(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_key_budget_admits_no_more_than_it_allows_under_50_concurrent_requests() {
    fifty_against_ten(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_key_budget_admits_no_more_than_it_allows_under_50_concurrent_streams() {
    fifty_against_ten(true).await;
}

async fn rejection_envelope(stream: bool) {
    let mock = mock(0, 0).await;
    let p = start_proxy(&config(&mock, &key(KEY_A, PER_REQUEST))).await;
    let b = body("gpt-4o", stream, 5);
    let (status, _, text) = send(&p, KEY_A, &b).await;
    assert_eq!(status, 200, "{text}");
    let resp = post_chat(&p, KEY_A, &b).await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    let (msg, v) = error_message(resp, 402).await;
    assert_eq!(v["error"]["type"], "budget_exceeded", "{v}");
    assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
    assert!(msg.contains("API key's budget"), "names the budget: {msg}");
    assert!(msg.contains("$1.25"), "names the limit: {msg}");
    assert!(!msg.contains(KEY_A), "never the key: {msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_budget_json_request_gets_a_402_envelope_naming_the_budget_and_limit() {
    rejection_envelope(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_budget_stream_request_gets_a_402_envelope_naming_the_budget_and_limit() {
    rejection_envelope(true).await;
}

async fn soft_mode(stream: bool) {
    let mock = mock(0, 0).await;
    let rest = format!(
        "[budget]\nenforcement = \"soft\"\n\n{}",
        key(KEY_A, PER_REQUEST)
    );
    let p = start_proxy(&config(&mock, &rest)).await;
    let b = body("gpt-4o", stream, 5);
    // Within budget: no mark.
    let (status, headers, text) = send(&p, KEY_A, &b).await;
    assert_eq!(status, 200, "{text}");
    assert!(headers.get(EXCEEDED).is_none(), "{headers:?}");
    // Over budget: served anyway, and marked.
    for _ in 0..2 {
        let (status, headers, text) = send(&p, KEY_A, &b).await;
        assert_eq!(status, 200, "soft enforcement lets it through: {text}");
        assert_eq!(headers[EXCEEDED], "key");
        if stream {
            assert_complete_stream(&text);
        }
    }
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_budget_lets_json_requests_through_with_a_header() {
    soft_mode(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_budget_lets_streams_through_with_a_header() {
    soft_mode(true).await;
}

async fn global_budget(stream: bool) {
    let mock = mock(0, 0).await;
    let rest = format!(
        "[budget]\nglobal_limit = {}\n\n{}\n{}",
        2.0 * PER_REQUEST,
        key(KEY_A, 100.0),
        key(KEY_B, 100.0)
    );
    let p = start_proxy(&config(&mock, &rest)).await;
    let (s1, _, t1) = send(&p, KEY_A, &body("gpt-4o", stream, 5)).await;
    let (s2, _, t2) = send(&p, KEY_B, &body("mini", stream, 5)).await;
    assert_eq!((s1, s2), (200, 200), "{t1} {t2}");
    // Another key, another model, and the master key: all share the one budget.
    for (k, m) in [(KEY_A, "mini"), (KEY_B, "gpt-4o"), (MASTER, "gpt-4o")] {
        let resp = post_chat(&p, k, &body(m, stream, 5)).await;
        let (msg, _) = error_message(resp, 402).await;
        assert!(msg.contains("global budget"), "{msg}");
        assert!(msg.contains("$2.50"), "{msg}");
    }
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn global_budget_is_shared_across_keys_and_models() {
    global_budget(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn global_budget_is_shared_across_keys_and_models_for_streams() {
    global_budget(true).await;
}

async fn model_budget(stream: bool) {
    let mock = mock(0, 0).await;
    let rest = format!("[budget]\nmodel_limits = {{ \"mini\" = {PER_REQUEST} }}\n");
    let p = start_proxy(&config(&mock, &rest)).await;
    let (s, _, t) = send(&p, MASTER, &body("mini", stream, 5)).await;
    assert_eq!(s, 200, "{t}");
    let resp = post_chat(&p, MASTER, &body("mini", stream, 5)).await;
    let (msg, _) = error_message(resp, 402).await;
    assert!(msg.contains("model `mini`"), "{msg}");
    // The other model has no budget of its own.
    for _ in 0..3 {
        let (s, _, t) = send(&p, MASTER, &body("gpt-4o", stream, 5)).await;
        assert_eq!(s, 200, "{t}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn model_budget_limits_only_its_own_group() {
    model_budget(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn model_budget_limits_only_its_own_group_for_streams() {
    model_budget(true).await;
}

/// Requests reserve little (`max_tokens: 1` = $0.25) but cost $1.25 when they
/// finish: only counting the real cost at the end stops the fourth.
async fn actual_cost_is_counted(stream: bool) {
    let mock = mock(0, 0).await;
    let p = start_proxy(&config(&mock, &key(KEY_A, 3.0 * PER_REQUEST))).await;
    let b = body("gpt-4o", stream, 1);
    for i in 0..3 {
        let (s, _, text) = send(&p, KEY_A, &b).await;
        assert_eq!(s, 200, "request {i}: {text}");
        if stream {
            assert_complete_stream(&text);
        }
    }
    let resp = post_chat(&p, KEY_A, &b).await;
    let (msg, _) = error_message(resp, 402).await;
    assert!(msg.contains("$3.75 spent"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_answers_are_charged_their_actual_cost() {
    actual_cost_is_counted(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_are_charged_their_actual_cost_when_they_end() {
    actual_cost_is_counted(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_budget_config_is_refused_at_startup_naming_the_field() {
    let mock = mock(0, 0).await;
    for (rest, want) in [
        ("[budget]\nglobal_limit = -5.0\n", "budget.global_limit"),
        ("[budget]\nmodel_limits = { \"nope\" = 5.0 }\n", "nope"),
        (&*key(KEY_A, 0.0), "keys[0].budget_limit"),
    ] {
        let text = config(&mock, rest);
        let err = match liter_llm_config::Config::from_toml_str(&text, "t.toml", &|_| None) {
            Err(e) => e.to_string(),
            Ok(c) => match liter_llm_proxy::AppState::build(&c, env_none()) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted: {rest}"),
            },
        };
        assert!(err.contains(want), "{rest}: {err}");
    }
}
