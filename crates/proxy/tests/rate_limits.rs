//! Rate limits through the real proxy: rpm and tpm per key, per model group and
//! globally, with `Retry-After` on refusals and OpenAI's `x-ratelimit-*` headers
//! on answers. Each behaviour is shown with a JSON answer and with a stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use futures_util::StreamExt;
use mock_upstream::{MockConfig, MockServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

const KEY_A: &str = "sk-rl-key-a-0123456789";
const KEY_B: &str = "sk-rl-key-b-0123456789";

const HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// The id the proxy uses for a virtual key: the first 4 bytes of its SHA-256, in hex.
fn key_id(key: &str) -> String {
    Sha256::digest(key.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `basic_config` plus a second group `other` at the same mock, and `extra`.
fn config(mock: &MockServer, upstream_model: &str, extra: &str) -> String {
    let other = format!(
        r#"
[[models]]
name = "other"
provider_model = "openai/other-model"
base_url = "{base}"
api_key = "{UPSTREAM_KEY}"
{extra}
"#,
        base = mock.base_url()
    );
    basic_config(mock, upstream_model, &other)
}

fn body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "max_tokens": 1,
    })
}

/// Tokens the proxy reserves for `body`: its estimate of the prompt (a token per
/// four bytes of JSON, as sent) plus `max_tokens`.
fn reservation(body: &Value) -> u64 {
    let bytes = serde_json::to_vec(body).unwrap().len() as u64;
    (bytes / 4).max(1) + body["max_tokens"].as_u64().unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

fn num(resp: &reqwest::Response, name: &str) -> u64 {
    header(resp, name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .parse()
        .unwrap()
}

/// Parse OpenAI's reset format (`250ms`, `1.5s`, `1m0.25s`).
fn reset(resp: &reqwest::Response, name: &str) -> Duration {
    let v = header(resp, name).unwrap_or_else(|| panic!("missing {name}"));
    if let Some(ms) = v.strip_suffix("ms") {
        return Duration::from_millis(ms.parse().unwrap());
    }
    let s = v
        .strip_suffix('s')
        .unwrap_or_else(|| panic!("bad reset {v}"));
    let (mins, secs) = match s.split_once('m') {
        Some((m, s)) => (m.parse::<u64>().unwrap(), s),
        None => (0, s),
    };
    Duration::from_secs(mins * 60) + Duration::from_secs_f64(secs.parse::<f64>().unwrap())
}

/// Read an answer to the end (a stream until the proxy closes it); returns the
/// `usage` total it reported, if any.
async fn finish(resp: reqwest::Response, stream: bool) -> Option<u64> {
    assert_eq!(resp.status(), 200);
    if !stream {
        let v: Value = resp.json().await.unwrap();
        return v["usage"]["total_tokens"].as_u64();
    }
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["usage"]["total_tokens"].as_u64())
}

/// A 429 from the rate limiter: its `Retry-After`, and its message.
async fn refused(resp: reqwest::Response) -> (u64, String) {
    let retry_after: u64 = header(&resp, "retry-after")
        .expect("a 429 carries Retry-After")
        .parse()
        .unwrap();
    let (msg, v) = error_message(resp, 429).await;
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    (retry_after, msg)
}

// ---- per-key rpm ----------------------------------------------------------

async fn key_rpm_exceeded(stream: bool) {
    let mock = start_mock(MockConfig::default()).await;
    let extra = format!("[[keys]]\nkey = \"{KEY_A}\"\nrpm = 2\n");
    let proxy = start_proxy(&config(&mock, "gpt-4o", &extra)).await;
    let b = body("gpt-4o", stream);

    let r1 = post_chat(&proxy, KEY_A, &b).await;
    assert_eq!(num(&r1, "x-ratelimit-limit-requests"), 2);
    assert_eq!(num(&r1, "x-ratelimit-remaining-requests"), 1);
    let full = reset(&r1, "x-ratelimit-reset-requests");
    assert!(
        full > Duration::from_secs(59) && full <= Duration::from_millis(60_250),
        "{full:?}"
    );
    finish(r1, stream).await;
    let r2 = post_chat(&proxy, KEY_A, &b).await;
    assert_eq!(num(&r2, "x-ratelimit-remaining-requests"), 0);
    finish(r2, stream).await;

    let (retry_after, msg) = refused(post_chat(&proxy, KEY_A, &b).await).await;
    // The first request leaves the 60 s window 60 to 60.25 s after it was made.
    assert!(
        (58..=61).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert!(
        msg.contains(&format!("key `{}`", key_id(KEY_A))),
        "names the key by id: {msg}"
    );
    assert!(msg.contains("2 requests per minute (keys[].rpm)"), "{msg}");
    assert!(!msg.contains(KEY_A), "never the key itself: {msg}");
    assert_eq!(
        mock.request_count(),
        2,
        "a refused request never reaches the upstream"
    );

    // Other callers are not limited by this key's counter.
    finish(post_chat(&proxy, MASTER, &b).await, stream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rpm_exceeded_is_429_with_retry_after_json() {
    key_rpm_exceeded(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rpm_exceeded_is_429_with_retry_after_stream() {
    key_rpm_exceeded(true).await;
}

// ---- per-key tpm from usage -----------------------------------------------

/// The mock counts a token per four bytes of the body it receives, so a long
/// upstream model name makes the real prompt ~50 tokens bigger than the
/// proxy's estimate of the client's body. The key's tpm sits between the
/// reservation and the real usage: only the true-up can refuse the next request.
async fn key_tpm_counts_usage_against_the_next_request(stream: bool) {
    let mock = start_mock(MockConfig {
        chunks: 4,
        ..MockConfig::default()
    })
    .await;
    let upstream_model = format!("gpt-4o-{}", "x".repeat(200));
    let b = body("gpt-4o", stream);
    let limit = reservation(&b) + 10;
    let extra = format!("[[keys]]\nkey = \"{KEY_A}\"\ntpm = {limit}\n");
    let proxy = start_proxy(&config(&mock, &upstream_model, &extra)).await;

    let r1 = post_chat(&proxy, KEY_A, &b).await;
    assert_eq!(num(&r1, "x-ratelimit-limit-tokens"), limit);
    assert_eq!(
        num(&r1, "x-ratelimit-remaining-tokens"),
        10,
        "the estimate is reserved"
    );
    assert_eq!(
        header(&r1, "x-ratelimit-limit-requests"),
        None,
        "no rpm set"
    );
    finish(r1, stream).await;

    let (retry_after, msg) = refused(post_chat(&proxy, KEY_A, &b).await).await;
    assert!(
        (58..=61).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert!(
        msg.contains(&format!("{limit} tokens per minute (keys[].tpm)")),
        "{msg}"
    );
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_tpm_counts_a_json_answers_usage_against_the_next_request() {
    key_tpm_counts_usage_against_the_next_request(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_tpm_counts_a_streams_usage_against_the_next_request() {
    key_tpm_counts_usage_against_the_next_request(true).await;
}

/// A stream's tokens count even when the upstream ends it with its usage chunk
/// and the client never asked for usage: with many chunks the stream's real
/// usage is far above its reservation.
#[tokio::test(flavor = "multi_thread")]
async fn key_tpm_counts_a_long_streams_tokens_the_client_never_saw() {
    let mock = start_mock(MockConfig {
        chunks: 80,
        ..MockConfig::default()
    })
    .await;
    let b = body("gpt-4o", true);
    let limit = reservation(&b) + 20;
    let extra = format!("[[keys]]\nkey = \"{KEY_A}\"\ntpm = {limit}\n");
    let proxy = start_proxy(&config(&mock, "gpt-4o", &extra)).await;
    let r1 = post_chat(&proxy, KEY_A, &b).await;
    assert_eq!(
        finish(r1, true).await,
        None,
        "usage is not shown to the client"
    );
    let (_, msg) = refused(post_chat(&proxy, KEY_A, &body("gpt-4o", false)).await).await;
    assert!(msg.contains("(keys[].tpm)"), "{msg}");
}

/// The remaining tokens after a second request are exactly the limit minus the
/// first request's reported usage minus the second one's reservation.
async fn remaining_tokens_trued_up(stream: bool) {
    let mock = start_mock(MockConfig::default()).await;
    let limit = 100_000;
    let extra = format!("[[keys]]\nkey = \"{KEY_A}\"\ntpm = {limit}\n");
    let proxy = start_proxy(&config(&mock, "gpt-4o", &extra)).await;
    let mut b = body("gpt-4o", stream);
    if stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    let reserved = reservation(&b);

    let r1 = post_chat(&proxy, KEY_A, &b).await;
    assert_eq!(num(&r1, "x-ratelimit-remaining-tokens"), limit - reserved);
    let used = finish(r1, stream).await.expect("usage reported");
    assert_ne!(
        used, reserved,
        "the test needs usage to differ from the estimate"
    );

    let r2 = post_chat(&proxy, KEY_A, &b).await;
    assert_eq!(
        num(&r2, "x-ratelimit-remaining-tokens"),
        limit - used - reserved
    );
    finish(r2, stream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remaining_tokens_are_trued_up_to_a_json_answers_usage() {
    remaining_tokens_trued_up(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remaining_tokens_are_trued_up_to_a_streams_usage() {
    remaining_tokens_trued_up(true).await;
}

// ---- per model group --------------------------------------------------------

async fn model_group_limit_shared_across_keys(stream: bool) {
    let mock = start_mock(MockConfig::default()).await;
    let extra = format!(
        "[[keys]]\nkey = \"{KEY_A}\"\n\n[[keys]]\nkey = \"{KEY_B}\"\n\n[rate_limit]\nrpm = 2\n"
    );
    let proxy = start_proxy(&config(&mock, "gpt-4o", &extra)).await;

    let r = post_chat(&proxy, KEY_A, &body("gpt-4o", stream)).await;
    assert_eq!(num(&r, "x-ratelimit-limit-requests"), 2);
    assert_eq!(num(&r, "x-ratelimit-remaining-requests"), 1);
    finish(r, stream).await;
    let r = post_chat(&proxy, KEY_B, &body("gpt-4o", stream)).await;
    assert_eq!(num(&r, "x-ratelimit-remaining-requests"), 0);
    finish(r, stream).await;

    let (retry_after, msg) = refused(post_chat(&proxy, KEY_A, &body("gpt-4o", stream)).await).await;
    assert!(
        (58..=61).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert!(
        msg.contains("model group `gpt-4o` allows 2 requests per minute (rate_limit.rpm)"),
        "{msg}"
    );
    // Each group has its own counter.
    let r = post_chat(&proxy, KEY_B, &body("other", stream)).await;
    assert_eq!(num(&r, "x-ratelimit-remaining-requests"), 1);
    finish(r, stream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn model_group_limit_is_shared_across_keys_json() {
    model_group_limit_shared_across_keys(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn model_group_limit_is_shared_across_keys_stream() {
    model_group_limit_shared_across_keys(true).await;
}

// ---- global ---------------------------------------------------------------

async fn global_limit_across_models_and_keys(stream: bool) {
    let mock = start_mock(MockConfig::default()).await;
    let extra = format!("[[keys]]\nkey = \"{KEY_A}\"\n\n[rate_limit]\nglobal_rpm = 2\n");
    let proxy = start_proxy(&config(&mock, "gpt-4o", &extra)).await;

    finish(
        post_chat(&proxy, KEY_A, &body("gpt-4o", stream)).await,
        stream,
    )
    .await;
    let r = post_chat(&proxy, MASTER, &body("other", stream)).await;
    assert_eq!(num(&r, "x-ratelimit-limit-requests"), 2);
    assert_eq!(num(&r, "x-ratelimit-remaining-requests"), 0);
    finish(r, stream).await;

    let (_, msg) = refused(post_chat(&proxy, MASTER, &body("gpt-4o", stream)).await).await;
    assert!(
        msg.contains("global limit) allows 2 requests per minute (rate_limit.global_rpm)"),
        "{msg}"
    );
    let (_, msg) = refused(post_chat(&proxy, KEY_A, &body("other", stream)).await).await;
    assert!(msg.contains("rate_limit.global_rpm"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn global_limit_applies_across_models_and_keys_json() {
    global_limit_across_models_and_keys(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn global_limit_applies_across_models_and_keys_stream() {
    global_limit_across_models_and_keys(true).await;
}

async fn global_tpm(stream: bool) {
    let mock = start_mock(MockConfig::default()).await;
    let b = body("gpt-4o", stream);
    let limit = reservation(&b) + 1;
    let extra = format!("[rate_limit]\nglobal_tpm = {limit}\n");
    let proxy = start_proxy(&config(&mock, "gpt-4o", &extra)).await;
    let r = post_chat(&proxy, MASTER, &b).await;
    assert_eq!(num(&r, "x-ratelimit-remaining-tokens"), 1);
    finish(r, stream).await;
    let (_, msg) = refused(post_chat(&proxy, MASTER, &body("other", stream)).await).await;
    assert!(
        msg.contains(&format!(
            "{limit} tokens per minute (rate_limit.global_tpm)"
        )),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn global_tpm_counts_every_groups_tokens_json() {
    global_tpm(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn global_tpm_counts_every_groups_tokens_stream() {
    global_tpm(true).await;
}

// ---- headers ----------------------------------------------------------------

async fn success_headers_tightest(stream: bool) {
    let mock = start_mock(MockConfig::default()).await;
    let extra = format!(
        "[[keys]]\nkey = \"{KEY_A}\"\nrpm = 10\ntpm = 100000\n\n[rate_limit]\nrpm = 3\nglobal_rpm = 100\nglobal_tpm = 50000\n"
    );
    let proxy = start_proxy(&config(&mock, "gpt-4o", &extra)).await;
    let b = body("gpt-4o", stream);
    let r = post_chat(&proxy, KEY_A, &b).await;
    // Requests: key 9/10, group 2/3, global 99/100 → the group's.
    assert_eq!(num(&r, "x-ratelimit-limit-requests"), 3);
    assert_eq!(num(&r, "x-ratelimit-remaining-requests"), 2);
    // Tokens: key (100000 - n)/100000, global (50000 - n)/50000 → the global.
    assert_eq!(num(&r, "x-ratelimit-limit-tokens"), 50_000);
    assert_eq!(
        num(&r, "x-ratelimit-remaining-tokens"),
        50_000 - reservation(&b)
    );
    for name in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
        let d = reset(&r, name);
        assert!(
            d > Duration::from_secs(59) && d <= Duration::from_millis(60_250),
            "{name}: {d:?}"
        );
    }
    finish(r, stream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn success_headers_report_the_tightest_limit_json() {
    success_headers_tightest(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn success_headers_report_the_tightest_limit_stream() {
    success_headers_tightest(true).await;
}

async fn no_headers_without_limit(stream: bool) {
    let mock = start_mock(MockConfig::default()).await;
    let extra = format!("[[keys]]\nkey = \"{KEY_A}\"\nrpm = 5\n\n[[keys]]\nkey = \"{KEY_B}\"\n");
    let proxy = start_proxy(&config(&mock, "gpt-4o", &extra)).await;
    for key in [MASTER, KEY_B] {
        let r = post_chat(&proxy, key, &body("gpt-4o", stream)).await;
        for name in HEADERS {
            assert_eq!(header(&r, name), None, "{name} without a limit");
        }
        finish(r, stream).await;
    }
    let r = post_chat(&proxy, KEY_A, &body("gpt-4o", stream)).await;
    assert_eq!(num(&r, "x-ratelimit-remaining-requests"), 4);
    finish(r, stream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_rate_limit_headers_when_no_limit_applies_json() {
    no_headers_without_limit(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_rate_limit_headers_when_no_limit_applies_stream() {
    no_headers_without_limit(true).await;
}

// ---- config -------------------------------------------------------------------

#[tokio::test]
async fn a_zero_limit_is_a_startup_error_naming_the_field() {
    let mock = start_mock(MockConfig::default()).await;
    let config = parse(&config(&mock, "gpt-4o", "[rate_limit]\ntpm = 0\n"));
    let err = match liter_llm_proxy::AppState::build(&config, env_none()) {
        Ok(_) => panic!("a zero tpm must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("rate_limit.tpm"), "{err}");
}
