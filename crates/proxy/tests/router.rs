#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use mock_upstream::{MockConfig, MockServer};
use std::time::Duration;

fn entry(name: &str, mock: &MockServer, extra: &str) -> String {
    format!(
        "[[models]]\nname = \"{name}\"\nprovider_model = \"openai/{name}-upstream\"\nbase_url = \"{}\"\napi_key = \"{UPSTREAM_KEY}\"\n{extra}\n",
        mock.base_url()
    )
}

fn config(head: &str, entries: &[String]) -> String {
    format!(
        "[general]\nmaster_key = \"{MASTER}\"\n{head}\n{}",
        entries.concat()
    )
}

async fn chat(p: &TestProxy, model: &str, stream: bool) -> reqwest::Response {
    post_chat(p, MASTER, &chat_body(model, stream)).await
}

async fn health(p: &TestProxy) -> serde_json::Value {
    client()
        .get(p.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn deployment<'a>(h: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    h["models"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["deployments"].as_array().unwrap())
        .find(|d| d["id"] == id)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_deployment_cools_down_while_group_keeps_serving_then_returns() {
    let bad = start_mock(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let good = start_mock(MockConfig::default()).await;
    let bad_addr = bad.addr();
    let cfg = config(
        "max_retries = 1\n[cooldown]\nduration_secs = 1\nallowed_fails = 1",
        &[entry("pool", &bad, ""), entry("pool", &good, "")],
    );
    let proxy = start_proxy(&cfg).await;
    for i in 0..8 {
        let resp = chat(&proxy, "pool", i % 2 == 0).await;
        assert_eq!(resp.status(), 200, "request {i}");
        let _ = resp.bytes().await.unwrap();
    }
    // One failure put it in cooldown; it was not tried again while cooling.
    assert_eq!(bad.request_count(), 1);
    let h = health(&proxy).await;
    assert!(
        deployment(&h, "pool#0")["cooldown_remaining_secs"]
            .as_u64()
            .unwrap()
            >= 1,
        "{h}"
    );
    // The deployment recovers; after the cooldown one probe request is let
    // through and, succeeding, brings it back.
    drop(bad);
    // The accept task ends asynchronously; wait for the port to be free.
    let mut listener = None;
    for _ in 0..100 {
        if let Ok(l) = tokio::net::TcpListener::bind(bad_addr).await {
            listener = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listener = listener.expect("port of the failed deployment did not free up");
    let recovered = MockServer::start_on(
        listener,
        MockConfig {
            expected_api_key: Some(UPSTREAM_KEY.into()),
            ..MockConfig::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..6 {
        assert_eq!(chat(&proxy, "pool", false).await.status(), 200);
    }
    assert!(
        recovered.request_count() >= 2,
        "recovered deployment got {} requests",
        recovered.request_count()
    );
    assert!(deployment(&health(&proxy).await, "pool#0")["cooldown_remaining_secs"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn all_deployments_cooling_gives_503_with_shortest_retry_after() {
    let bad = start_mock(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let cfg = config(
        "max_retries = 0\n[cooldown]\nduration_secs = 30\nallowed_fails = 1",
        &[entry("m", &bad, "")],
    );
    let proxy = start_proxy(&cfg).await;
    assert_eq!(chat(&proxy, "m", false).await.status(), 502);
    for stream in [false, true] {
        let resp = chat(&proxy, "m", stream).await;
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((28..=30).contains(&retry), "retry-after {retry}");
        let (msg, v) = error_message(resp, 503).await;
        assert!(msg.contains("cooling down"), "{msg}");
        assert_eq!(v["error"]["code"], "deployments_cooling_down");
    }
    assert_eq!(bad.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_retry_after_sets_the_cooldown() {
    let limited = start_mock(MockConfig {
        rate_limit_rate: 1.0,
        retry_after_secs: 7,
        ..MockConfig::default()
    })
    .await;
    let cfg = config("max_retries = 0", &[entry("m", &limited, "")]);
    let proxy = start_proxy(&cfg).await;
    let first = chat(&proxy, "m", false).await;
    assert_eq!(first.status(), 429);
    let second = chat(&proxy, "m", false).await;
    assert_eq!(second.status(), 503);
    let retry: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((6..=7).contains(&retry), "retry-after {retry}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fallbacks_are_tried_in_order_and_the_reason_is_reported() {
    let primary = start_mock(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let second = start_mock(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let third = start_mock(MockConfig::default()).await;
    let cfg = config(
        "max_retries = 0\n[cooldown]\nduration_secs = 0",
        &[
            entry("primary", &primary, "fallbacks = [\"second\", \"third\"]"),
            entry("second", &second, ""),
            entry("third", &third, ""),
        ],
    );
    let proxy = start_proxy(&cfg).await;
    for stream in [false, true] {
        let resp = chat(&proxy, "primary", stream).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-liter-llm-model-id"], "third#0");
        assert_eq!(resp.headers()["x-liter-llm-attempts"], "3");
        let reason = resp.headers()["x-liter-llm-fallback-reason"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            reason.contains("`primary`: 500 from primary#0")
                && reason.contains("`second`: 500 from second#0"),
            "{reason}"
        );
        let body = resp.text().await.unwrap();
        if stream {
            assert!(body.trim_end().ends_with("data: [DONE]"));
        }
        let sent: serde_json::Value =
            serde_json::from_slice(&third.requests().last().unwrap().body).unwrap();
        assert_eq!(sent["model"], "third-upstream");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_errors_never_fall_back() {
    let primary = start_mock(MockConfig::default()).await;
    let backup = start_mock(MockConfig::default()).await;
    let cfg = config(
        "",
        &[
            entry("primary", &primary, "fallbacks = [\"backup\"]"),
            entry("backup", &backup, ""),
        ],
    );
    let proxy = start_proxy(&cfg).await;
    // The mock rejects a wrongly typed `n` with 400.
    let resp = post_chat(
        &proxy,
        MASTER,
        &serde_json::json!({"model": "primary", "messages": [], "n": "two"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(backup.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_prompts_go_straight_to_the_context_window_fallback() {
    let small = start_mock(MockConfig::default()).await;
    let big = start_mock(MockConfig::default()).await;
    let cfg = config(
        "",
        &[
            entry(
                "small",
                &small,
                "max_input_tokens = 50\ncontext_window_fallbacks = [\"big\"]",
            ),
            entry("big", &big, ""),
        ],
    );
    let proxy = start_proxy(&cfg).await;
    assert_eq!(chat(&proxy, "small", false).await.status(), 200);
    assert_eq!((small.request_count(), big.request_count()), (1, 0));
    let long = "word ".repeat(400);
    for stream in [false, true] {
        let resp = post_chat(
            &proxy,
            MASTER,
            &serde_json::json!({"model": "small", "stream": stream, "messages": [{"role": "user", "content": long}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-liter-llm-model-id"], "big#0");
        assert!(resp.headers()["x-liter-llm-fallback-reason"]
            .to_str()
            .unwrap()
            .contains("context window"));
        let _ = resp.bytes().await.unwrap();
    }
    assert_eq!(small.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_strategy_follows_weights() {
    let heavy = start_mock(MockConfig::default()).await;
    let light = start_mock(MockConfig::default()).await;
    let cfg = config(
        "[router]\nstrategy = \"weighted\"",
        &[
            entry("pool", &heavy, "weight = 4"),
            entry("pool", &light, "weight = 1"),
        ],
    );
    let proxy = start_proxy(&cfg).await;
    // Picks are random: 1,000 of them put the bounds below more than five
    // standard deviations from the expected 4:1 (with 200, about one run in a
    // hundred fell outside).
    for i in 0..1000 {
        let resp = chat(&proxy, "pool", i % 10 == 0).await;
        let _ = resp.bytes().await.unwrap();
    }
    let (h, l) = (heavy.request_count() as f64, light.request_count() as f64);
    assert_eq!(h + l, 1000.0);
    assert!((2.5..6.5).contains(&(h / l)), "heavy {h} light {l}");
}

#[tokio::test(flavor = "multi_thread")]
async fn least_in_flight_avoids_the_busy_deployment() {
    let slow = start_mock(MockConfig {
        delay_ms: 1500,
        ..MockConfig::default()
    })
    .await;
    let fast = start_mock(MockConfig::default()).await;
    let cfg = config(
        "[router]\nstrategy = \"least-in-flight\"",
        &[entry("pool", &slow, ""), entry("pool", &fast, "")],
    );
    let proxy = std::sync::Arc::new(start_proxy(&cfg).await);
    let mut handles = Vec::new();
    for _ in 0..10 {
        let p = proxy.clone();
        handles.push(tokio::spawn(async move {
            chat(&p, "pool", false).await.status()
        }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(
        slow.request_count(),
        1,
        "only the first request, before anything was in flight"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lowest_latency_prefers_the_faster_deployment() {
    let slow = start_mock(MockConfig {
        delay_ms: 80,
        ..MockConfig::default()
    })
    .await;
    let fast = start_mock(MockConfig::default()).await;
    let cfg = config(
        "[router]\nstrategy = \"lowest-latency\"",
        &[entry("pool", &slow, ""), entry("pool", &fast, "")],
    );
    let proxy = start_proxy(&cfg).await;
    for i in 0..20 {
        let resp = chat(&proxy, "pool", i % 2 == 1).await;
        let _ = resp.bytes().await.unwrap();
    }
    // Each is measured once; then the faster one takes everything.
    assert_eq!(slow.request_count(), 1);
    assert_eq!(fast.request_count(), 19);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_probes_take_a_dead_deployment_out_of_rotation() {
    let good = start_mock(MockConfig::default()).await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 0\n[health]\ninterval_secs = 1\n{}[[models]]\nname = \"pool\"\nprovider_model = \"openai/x\"\nbase_url = \"http://127.0.0.1:{dead_port}/v1\"\napi_key = \"k\"\n",
        entry("pool", &good, "")
    );
    let proxy = start_proxy(&cfg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = health(&proxy).await;
    assert_eq!(deployment(&h, "pool#1")["healthy"], false, "{h}");
    assert!(deployment(&h, "pool#1")["last_probe"]["error"].is_string());
    assert_eq!(deployment(&h, "pool#0")["healthy"], true);
    for i in 0..6 {
        let resp = chat(&proxy, "pool", i % 2 == 0).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-liter-llm-attempts"],
            "1",
            "the dead deployment was never tried"
        );
        let _ = resp.bytes().await.unwrap();
    }
    assert_eq!(
        client()
            .get(proxy.url("/health/readiness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_fails_when_no_deployment_passes_its_probe() {
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "[general]\nmaster_key = \"{MASTER}\"\n[health]\ninterval_secs = 1\n[[models]]\nname = \"m\"\nprovider_model = \"openai/x\"\nbase_url = \"http://127.0.0.1:{dead_port}/v1\"\napi_key = \"k\"\n"
    );
    let proxy = start_proxy(&cfg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client()
            .get(proxy.url("/health/readiness"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let (msg, _) = error_message(chat(&proxy, "m", false).await, 503).await;
    assert!(msg.contains("health"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_router_config_names_the_field() {
    let mock = start_mock(MockConfig::default()).await;
    let unknown_fallback = config("", &[entry("m", &mock, "fallbacks = [\"nope\"]")]);
    let err = liter_llm_proxy::AppState::build(&parse(&unknown_fallback), env_none())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("models[0].fallbacks") && err.to_string().contains("nope"),
        "{err}"
    );
    let bad_strategy = config("[router]\nstrategy = \"fastest\"", &[entry("m", &mock, "")]);
    let err =
        liter_llm_config::Config::from_toml_str(&bad_strategy, "t.toml", &|_| None).unwrap_err();
    assert!(
        err.to_string().contains("strategy") && err.to_string().contains("fastest"),
        "{err}"
    );
    let negative = config("[cooldown]\nduration_secs = -5", &[entry("m", &mock, "")]);
    let err = liter_llm_config::Config::from_toml_str(&negative, "t.toml", &|_| None).unwrap_err();
    assert!(err.to_string().contains("duration_secs"), "{err}");
    let probe = config(
        "[health]\ninterval_secs = 5\nprobe_model = \"ghost\"",
        &[entry("m", &mock, "")],
    );
    let err = liter_llm_proxy::AppState::build(&parse(&probe), env_none())
        .err()
        .unwrap();
    assert!(err.to_string().contains("health.probe_model"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lowest_cost_prefers_the_cheaper_deployment() {
    let pricey = start_mock(MockConfig::default()).await;
    let cheap = start_mock(MockConfig::default()).await;
    let cfg = config(
        "[router]\nstrategy = \"lowest-cost\"",
        &[
            entry(
                "pool",
                &pricey,
                "input_cost_per_token = 0.00001\noutput_cost_per_token = 0.00003",
            ),
            entry(
                "pool",
                &cheap,
                "input_cost_per_token = 0.000001\noutput_cost_per_token = 0.000002",
            ),
        ],
    );
    let proxy = start_proxy(&cfg).await;
    for i in 0..10 {
        let resp = chat(&proxy, "pool", i % 2 == 0).await;
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
    }
    assert_eq!((pricey.request_count(), cheap.request_count()), (0, 10));
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_rpm_spills_over_then_answers_429_with_retry_after() {
    let a = start_mock(MockConfig::default()).await;
    let b = start_mock(MockConfig::default()).await;
    let cfg = config(
        "",
        &[entry("pool", &a, "rpm = 2"), entry("pool", &b, "rpm = 1")],
    );
    let proxy = start_proxy(&cfg).await;
    for i in 0..3 {
        let resp = chat(&proxy, "pool", i == 1).await;
        assert_eq!(resp.status(), 200, "request {i}");
        let _ = resp.bytes().await.unwrap();
    }
    assert_eq!((a.request_count(), b.request_count()), (2, 1));
    for stream in [false, true] {
        let resp = chat(&proxy, "pool", stream).await;
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(
            (55..=61).contains(&retry),
            "retry-after {retry} {status} {text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(status, 429);
        assert_eq!(v["error"]["code"], "deployments_at_capacity");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_tpm_counts_streamed_tokens() {
    let a = start_mock(MockConfig::default()).await;
    let b = start_mock(MockConfig::default()).await;
    // Any answer uses more than 5 tokens, so each deployment serves one request a minute.
    let cfg = config(
        "[router]\nstrategy = \"least-in-flight\"",
        &[entry("pool", &a, "tpm = 5"), entry("pool", &b, "tpm = 5")],
    );
    let proxy = start_proxy(&cfg).await;
    let first = chat(&proxy, "pool", true).await;
    assert_eq!(first.status(), 200);
    let _ = first.bytes().await.unwrap();
    let second = chat(&proxy, "pool", false).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        (a.request_count(), b.request_count()),
        (1, 1),
        "the stream's tokens filled the first deployment"
    );
    assert_eq!(chat(&proxy, "pool", false).await.status(), 429);
}
