//! Cost through the real proxy: `x-liter-llm-cost` on JSON answers, computed
//! from the upstream's usage and the configured prices, and spend records for
//! every request, streams included (their usage is read off the stream even
//! when the client did not ask for it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use liter_llm_gateway::spend::{SpendLog, SpendRecord};
use mock_upstream::{MockConfig, MockServer};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const INPUT: f64 = 0.001;
const OUTPUT: f64 = 0.01;
const COST: &str = "x-liter-llm-cost";

fn config(mock: &MockServer) -> String {
    format!(
        r#"
[general]
master_key = "{MASTER}"
max_retries = 0
enable_cost_tracking = true

[[models]]
name = "gpt-4o"
provider_model = "openai/gpt-4o"
base_url = "{base}"
api_key = "{UPSTREAM_KEY}"
input_cost_per_token = {INPUT}
output_cost_per_token = {OUTPUT}
"#,
        base = mock.base_url()
    )
}

fn priced(prompt: u64, completion: u64) -> f64 {
    prompt as f64 * INPUT + completion as f64 * OUTPUT
}

/// The proxy's spend log.
fn spend(p: &TestProxy) -> Arc<SpendLog> {
    p.state
        .spend
        .clone()
        .expect("enable_cost_tracking = true starts the spend log")
}

/// Wait for the writer task to have stored `n` records.
async fn records(p: &TestProxy, n: usize) -> Vec<SpendRecord> {
    let log = spend(p);
    for _ in 0..100 {
        log.flush().await;
        let r = log.recent(100);
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {n} spend records, have {:?}", log.recent(100));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_answer_carries_its_cost_from_the_upstream_usage_and_configured_prices() {
    let mock = start_mock(MockConfig::default()).await;
    let p = start_proxy(&config(&mock)).await;
    let resp = post_chat(&p, MASTER, &chat_body("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    let header: f64 = resp.headers()[COST]
        .to_str()
        .unwrap()
        .parse()
        .expect("a decimal USD amount");
    let v: Value = resp.json().await.unwrap();
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0 && completion > 0, "{v}");
    let want = priced(prompt, completion);
    assert!(
        (header - want).abs() < 1e-12,
        "header {header}, want {want}"
    );

    let r = records(&p, 1).await;
    assert_eq!(r[0].prompt_tokens, prompt);
    assert_eq!(r[0].completion_tokens, completion);
    assert!((r[0].cost_usd - want).abs() < 1e-12);
    assert_eq!(r[0].model_group, "gpt-4o");
    assert_eq!(r[0].upstream_model.as_deref(), Some("gpt-4o"));
    assert_eq!(r[0].provider, Some("openai"));
    assert_eq!(r[0].status, 200);
    assert!(r[0].completed && !r[0].cached);
    assert_eq!(r[0].key_id.as_ref(), "master");
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_usage_is_priced_into_the_spend_log() {
    let mock = start_mock(MockConfig {
        chunks: 6,
        ..MockConfig::default()
    })
    .await;
    let p = start_proxy(&config(&mock)).await;
    // The client does not ask for usage; the proxy meters the stream anyway.
    let resp = post_chat(&p, MASTER, &chat_body("gpt-4o", true)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get(COST).is_none(),
        "a stream's cost is not known when its headers are sent"
    );
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    let r = records(&p, 1).await;
    // The mock sends one completion token per chunk, and counts the prompt as
    // the body it received (with the proxy's stream_options) / 4.
    let sent = mock.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(r[0].completion_tokens, 6);
    assert!(r[0].prompt_tokens > 0);
    let want = priced(r[0].prompt_tokens, 6);
    assert!(
        (r[0].cost_usd - want).abs() < 1e-12,
        "{} vs {want}",
        r[0].cost_usd
    );
    assert!(r[0].completed);
    let totals = spend(&p).totals();
    assert_eq!(totals.overall.requests, 1);
    assert!((totals.by_model["gpt-4o"].cost_usd - want).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread")]
async fn spend_totals_add_up_json_answers_and_streams_per_key_and_model() {
    let mock = start_mock(MockConfig {
        chunks: 4,
        ..MockConfig::default()
    })
    .await;
    let p = start_proxy(&config(&mock)).await;
    for stream in [false, true, false] {
        let resp = post_chat(
            &p,
            MASTER,
            &json!({
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hello"}],
                "stream": stream,
            }),
        )
        .await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
    }
    let r = records(&p, 3).await;
    let sum: f64 = r.iter().map(|r| r.cost_usd).sum();
    let totals = spend(&p).totals();
    assert_eq!(totals.overall.requests, 3);
    assert_eq!(totals.by_key["master"].requests, 3);
    assert!((totals.overall.cost_usd - sum).abs() < 1e-12);
    assert_eq!(totals.dropped, 0);
    // 5 completion tokens per JSON answer, one per chunk for the stream.
    assert_eq!(totals.overall.completion_tokens, 5 + 4 + 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn spend_routes_are_master_only_and_list_records() {
    let mock = start_mock(MockConfig::default()).await;
    let cfg = basic_config(
        &mock,
        "gpt-4o",
        "input_cost_per_token = 0.000001\noutput_cost_per_token = 0.000002",
    )
    .replace("[general]", "[general]\nenable_cost_tracking = true")
        + "\n[[keys]]\nkey = \"sk-team\"\n";
    let proxy = start_proxy(&cfg).await;
    assert_eq!(
        post_chat(&proxy, MASTER, &chat_body("gpt-4o", false))
            .await
            .status(),
        200
    );
    spend(&proxy).flush().await;
    let denied = client()
        .get(proxy.url("/spend/logs"))
        .bearer_auth("sk-team")
        .send()
        .await
        .unwrap();
    error_message(denied, 403).await;
    let logs: serde_json::Value = client()
        .get(proxy.url("/spend/logs?limit=5"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(logs["data"][0]["model_group"], "gpt-4o", "{logs}");
    assert!(
        logs["data"][0]["cost_usd"].as_f64().unwrap() > 0.0,
        "{logs}"
    );
    let totals = client()
        .get(proxy.url("/spend/totals"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(totals.status(), 200);
}
