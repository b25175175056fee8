//! The response cache (`[cache]`) through the real proxy, in front of a mock
//! upstream that counts its requests.
//!
//! The mock answers a JSON request with the content `Hello from mock-upstream.`
//! and streams `tok0 tok1 ...`, so a streamed answer replayed from a cached JSON
//! answer is told apart from a real upstream stream by its content alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use mock_upstream::{MockConfig, MockServer};
use serde_json::{json, Value};
use std::time::Duration;

const JSON_CONTENT: &str = "Hello from mock-upstream.";

fn cache_config(mock: &MockServer, cache: &str) -> String {
    basic_config(mock, "gpt-4o", &format!("\n[cache]\n{cache}\n"))
}

fn ask(content: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]})
}

fn ask_stream(content: &str, include_usage: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": content}],
        "stream": true,
        "stream_options": {"include_usage": include_usage},
    })
}

async fn send(
    p: &TestProxy,
    key: &str,
    body: &Value,
    cache_control: Option<&str>,
) -> reqwest::Response {
    let mut req = client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    if let Some(cc) = cache_control {
        req = req.header("cache-control", cc);
    }
    req.send().await.unwrap()
}

fn x_cache(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-cache")
        .unwrap_or_else(|| panic!("no x-cache header on {}", resp.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// A JSON answer: its `x-cache` and body.
async fn json_answer(
    p: &TestProxy,
    key: &str,
    body: &Value,
    cache_control: Option<&str>,
) -> (String, Value) {
    let resp = send(p, key, body, cache_control).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let x = x_cache(&resp);
    (x, resp.json().await.unwrap())
}

struct Streamed {
    x_cache: String,
    content: String,
    usage: Option<Value>,
}

/// A streamed answer: checks each event is an OpenAI chunk and that it ends with
/// `[DONE]`, and reassembles the content.
async fn stream_answer(
    p: &TestProxy,
    key: &str,
    body: &Value,
    cache_control: Option<&str>,
) -> Streamed {
    let resp = send(p, key, body, cache_control).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let x = x_cache(&resp);
    let text = resp.text().await.unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "stream must end with [DONE]: {text}"
    );
    let mut content = String::new();
    let mut usage = None;
    let mut finished = false;
    for event in text.split_terminator("\n\n") {
        let data = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data event: {event:?}"));
        if data == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert!(
            chunk["id"].is_string() && chunk["model"].is_string(),
            "{chunk}"
        );
        let choices = chunk["choices"].as_array().expect("choices");
        if choices.is_empty() {
            usage = Some(chunk["usage"].clone());
            continue;
        }
        for c in choices {
            if let Some(t) = c["delta"]["content"].as_str() {
                content.push_str(t);
            }
            finished |= c["finish_reason"].is_string();
        }
    }
    assert!(finished, "a finish_reason was sent: {text}");
    Streamed {
        x_cache: x,
        content,
        usage,
    }
}

fn upstream_stream_content(chunks: usize) -> String {
    (0..chunks).map(|i| format!("tok{i} ")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_requests_reach_the_upstream_once_and_the_second_is_a_hit() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    let (first_x, first) = json_answer(&proxy, MASTER, &ask("hi"), None).await;
    assert_eq!(first_x, "MISS");
    let (second_x, second) = json_answer(&proxy, MASTER, &ask("hi"), None).await;
    assert_eq!(second_x, "HIT");
    assert_eq!(first, second, "the cached answer is the first answer");
    assert_eq!(second["choices"][0]["message"]["content"], JSON_CONTENT);
    assert_eq!(mock.request_count(), 1);
    // A different question is a miss.
    let (x, _) = json_answer(&proxy, MASTER, &ask("something else"), None).await;
    assert_eq!(x, "MISS");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_request_is_replayed_from_a_cached_json_answer() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    let (x, answer) = json_answer(&proxy, MASTER, &ask("hi"), None).await;
    assert_eq!(x, "MISS");

    let with_usage = stream_answer(&proxy, MASTER, &ask_stream("hi", true), None).await;
    assert_eq!(with_usage.x_cache, "HIT");
    assert_eq!(
        with_usage.content, JSON_CONTENT,
        "replayed from the JSON answer"
    );
    assert_eq!(with_usage.usage.as_ref(), Some(&answer["usage"]));

    let without_usage = stream_answer(&proxy, MASTER, &ask_stream("hi", false), None).await;
    assert_eq!(without_usage.x_cache, "HIT");
    assert_eq!(without_usage.content, JSON_CONTENT);
    assert_eq!(without_usage.usage, None, "no usage chunk unless asked for");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_answers_are_not_stored() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    for _ in 0..2 {
        let s = stream_answer(&proxy, MASTER, &ask_stream("hi", false), None).await;
        assert_eq!(s.x_cache, "MISS");
        assert_eq!(
            s.content,
            upstream_stream_content(8),
            "a live upstream stream"
        );
    }
    let (x, _) = json_answer(&proxy, MASTER, &ask("hi"), None).await;
    assert_eq!(x, "MISS", "a stream does not fill the cache");
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_field_does_not_change_the_key() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    let mut alice = ask("hi");
    alice["user"] = json!("alice");
    let mut bob = ask("hi");
    bob["user"] = json!("bob");
    assert_eq!(json_answer(&proxy, MASTER, &alice, None).await.0, "MISS");
    assert_eq!(json_answer(&proxy, MASTER, &bob, None).await.0, "HIT");
    // Field order does not matter either.
    let reordered =
        r#"{"messages":[{"content":"hi","role":"user"}],"user":"carol","model":"gpt-4o"}"#;
    let resp = client()
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(x_cache(&resp), "HIT");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_field_does_not_change_the_key_when_streaming() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    let mut alice = ask("hi");
    alice["user"] = json!("alice");
    assert_eq!(json_answer(&proxy, MASTER, &alice, None).await.0, "MISS");
    let mut bob = ask_stream("hi", false);
    bob["user"] = json!("bob");
    let s = stream_answer(&proxy, MASTER, &bob, None).await;
    assert_eq!(s.x_cache, "HIT");
    assert_eq!(s.content, JSON_CONTENT);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_store_answer_is_not_cached() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    assert_eq!(
        json_answer(&proxy, MASTER, &ask("hi"), Some("no-store"))
            .await
            .0,
        "MISS"
    );
    assert_eq!(
        json_answer(&proxy, MASTER, &ask("hi"), None).await.0,
        "MISS"
    );
    assert_eq!(mock.request_count(), 2, "the no-store answer was not kept");
    assert_eq!(json_answer(&proxy, MASTER, &ask("hi"), None).await.0, "HIT");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cache_request_skips_the_cache_but_refreshes_it() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    assert_eq!(
        json_answer(&proxy, MASTER, &ask("hi"), None).await.0,
        "MISS"
    );
    assert_eq!(
        json_answer(&proxy, MASTER, &ask("hi"), Some("no-cache"))
            .await
            .0,
        "MISS"
    );
    assert_eq!(mock.request_count(), 2, "no-cache went to the upstream");
    let (x, _) = json_answer(&proxy, MASTER, &ask("new"), Some("max-age=0, no-cache")).await;
    assert_eq!(x, "MISS");
    assert_eq!(
        json_answer(&proxy, MASTER, &ask("new"), None).await.0,
        "HIT",
        "stored anyway"
    );
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_control_is_honoured_for_streaming_requests() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    assert_eq!(
        json_answer(&proxy, MASTER, &ask("hi"), None).await.0,
        "MISS"
    );
    let fresh = stream_answer(&proxy, MASTER, &ask_stream("hi", false), Some("no-cache")).await;
    assert_eq!(fresh.x_cache, "MISS");
    assert_eq!(
        fresh.content,
        upstream_stream_content(8),
        "no-cache streams from the upstream"
    );
    assert_eq!(mock.request_count(), 2);
    // no-store only keeps an answer out; a stored one is still served.
    let served = stream_answer(&proxy, MASTER, &ask_stream("hi", false), Some("no-store")).await;
    assert_eq!(served.x_cache, "HIT");
    assert_eq!(served.content, JSON_CONTENT);
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn least_recently_used_entry_is_evicted_with_two_entries() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "max_entries = 2")).await;
    let mut seen = Vec::new();
    for q in ["a", "b", "a", "c", "a", "b"] {
        seen.push(json_answer(&proxy, MASTER, &ask(q), None).await.0);
    }
    // c evicted b (a had just been used); b then evicted c.
    assert_eq!(seen, ["MISS", "MISS", "HIT", "MISS", "HIT", "MISS"]);
    assert_eq!(mock.request_count(), 4);
    assert_eq!(json_answer(&proxy, MASTER, &ask("c"), None).await.0, "MISS");
    assert_eq!(mock.request_count(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn least_recently_used_entry_is_evicted_as_seen_by_streaming_requests() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "max_entries = 2")).await;
    json_answer(&proxy, MASTER, &ask("a"), None).await;
    json_answer(&proxy, MASTER, &ask("b"), None).await;
    // A streamed hit counts as a use: a is now more recent than b.
    let a = stream_answer(&proxy, MASTER, &ask_stream("a", false), None).await;
    assert_eq!(a.x_cache, "HIT");
    json_answer(&proxy, MASTER, &ask("c"), None).await;
    let b = stream_answer(&proxy, MASTER, &ask_stream("b", false), None).await;
    assert_eq!(b.x_cache, "MISS", "b was least recently used");
    assert_eq!(b.content, upstream_stream_content(8));
    let a = stream_answer(&proxy, MASTER, &ask_stream("a", false), None).await;
    assert_eq!(a.x_cache, "HIT");
    assert_eq!(a.content, JSON_CONTENT);
    assert_eq!(mock.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_expire_after_ttl() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "ttl_seconds = 1")).await;
    assert_eq!(
        json_answer(&proxy, MASTER, &ask("hi"), None).await.0,
        "MISS"
    );
    assert_eq!(json_answer(&proxy, MASTER, &ask("hi"), None).await.0, "HIT");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        json_answer(&proxy, MASTER, &ask("hi"), None).await.0,
        "MISS"
    );
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_expire_after_ttl_for_streaming_requests() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&cache_config(&mock, "ttl_seconds = 1")).await;
    json_answer(&proxy, MASTER, &ask("hi"), None).await;
    let hit = stream_answer(&proxy, MASTER, &ask_stream("hi", false), None).await;
    assert_eq!(hit.x_cache, "HIT");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let expired = stream_answer(&proxy, MASTER, &ask_stream("hi", false), None).await;
    assert_eq!(expired.x_cache, "MISS");
    assert_eq!(expired.content, upstream_stream_content(8));
    assert_eq!(mock.request_count(), 2);
}

fn keys_config(mock: &MockServer, scope: &str) -> String {
    basic_config(
        mock,
        "gpt-4o",
        &format!(
            r#"
[[keys]]
key = "sk-team-a"

[[keys]]
key = "sk-team-b"

[cache]
{scope}
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn key_scope_keeps_each_keys_entries_apart_and_shared_scope_does_not() {
    for (scope, b_sees, upstream_calls) in [
        ("", "MISS", 2),
        ("scope = \"key\"", "MISS", 2),
        ("scope = \"shared\"", "HIT", 1),
    ] {
        let mock = start_mock(MockConfig::default()).await;
        let proxy = start_proxy(&keys_config(&mock, scope)).await;
        assert_eq!(
            json_answer(&proxy, "sk-team-a", &ask("hi"), None).await.0,
            "MISS"
        );
        assert_eq!(
            json_answer(&proxy, "sk-team-b", &ask("hi"), None).await.0,
            b_sees,
            "{scope}"
        );
        assert_eq!(
            json_answer(&proxy, "sk-team-a", &ask("hi"), None).await.0,
            "HIT"
        );
        assert_eq!(
            json_answer(&proxy, "sk-team-b", &ask("hi"), None).await.0,
            "HIT"
        );
        assert_eq!(mock.request_count(), upstream_calls, "{scope}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_scope_and_shared_scope_for_streaming_requests() {
    for (scope, b_sees) in [("scope = \"key\"", "MISS"), ("scope = \"shared\"", "HIT")] {
        let mock = start_mock(MockConfig::default()).await;
        let proxy = start_proxy(&keys_config(&mock, scope)).await;
        json_answer(&proxy, "sk-team-a", &ask("hi"), None).await;
        let b = stream_answer(&proxy, "sk-team-b", &ask_stream("hi", false), None).await;
        assert_eq!(b.x_cache, b_sees, "{scope}");
        let a = stream_answer(&proxy, "sk-team-a", &ask_stream("hi", false), None).await;
        assert_eq!(a.x_cache, "HIT", "{scope}");
        assert_eq!(a.content, JSON_CONTENT);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn error_answers_are_not_cached() {
    let mock = start_mock(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    for _ in 0..2 {
        let resp = send(&proxy, MASTER, &ask("hi"), None).await;
        assert!(resp.status().is_server_error(), "{}", resp.status());
        assert_ne!(
            resp.headers().get("x-cache").map(|v| v.to_str().unwrap()),
            Some("HIT")
        );
    }
    assert_eq!(mock.request_count(), 2, "a failed answer is not stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn error_answers_are_not_cached_for_streaming_requests() {
    let mock = start_mock(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let proxy = start_proxy(&cache_config(&mock, "")).await;
    for _ in 0..2 {
        let resp = send(&proxy, MASTER, &ask_stream("hi", false), None).await;
        assert!(resp.status().is_server_error(), "{}", resp.status());
        assert_ne!(
            resp.headers().get("x-cache").map(|v| v.to_str().unwrap()),
            Some("HIT")
        );
    }
    let resp = send(&proxy, MASTER, &ask("hi"), None).await;
    assert!(resp.status().is_server_error());
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_cache_settings_refuse_to_start() {
    let mock = start_mock(MockConfig::default()).await;
    for (settings, expected) in [
        ("max_entries = 0", "`cache.max_entries`"),
        ("ttl_seconds = 0", "`cache.ttl_seconds`"),
        (
            "backend = \"redis\"",
            "cache backend `redis` is not available in this build yet",
        ),
        ("backend = \"disk\"", "`cache.backend`"),
        (
            "[cache.backend_config]\nurl = \"x\"",
            "`cache.backend_config`",
        ),
    ] {
        let config = parse(&cache_config(&mock, settings));
        let err = match liter_llm_proxy::AppState::build(&config, env_none()) {
            Ok(_) => panic!("{settings} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{settings}: {err}");
    }
}
