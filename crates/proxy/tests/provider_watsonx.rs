//! The watsonx.ai adapter through the real proxy, over loopback, against the
//! provider-faithful fake: the client speaks OpenAI; the fake's IAM endpoint
//! exchanges only the right IBM Cloud API key for tokens, and its chat API
//! takes only current tokens and the fields IBM's reference lists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::watsonx::{self, ChatFault, FakeWatsonx, TokenFault};
use serde_json::{json, Value};
use std::time::Duration;

const IBM_KEY: &str = "ibm-cloud-test-key-7f3a9c";
const PROJECT: &str = "wx-test-project";
const GRANITE: &str = "ibm/granite-3-3-8b-instruct";

fn model_block(name: &str, fake: &FakeWatsonx, api_key: &str, extra: &str) -> String {
    format!(
        "\n[[models]]\nname = \"{name}\"\nprovider_model = \"watsonx/{GRANITE}\"\nbase_url = \"{}\"\napi_key = \"{api_key}\"\nwatsonx_iam_url = \"{}\"\n{extra}",
        fake.base_url(),
        fake.iam_url()
    )
}

fn config(fake: &FakeWatsonx) -> String {
    fake_proxy_config(&[
        model_block(
            "granite",
            fake,
            IBM_KEY,
            &format!("watsonx_project_id = \"{PROJECT}\"\n"),
        ),
        model_block(
            "granite-space",
            fake,
            IBM_KEY,
            "watsonx_space_id = \"wx-test-space\"\n",
        ),
        model_block(
            "granite-badkey",
            fake,
            "ibm-cloud-wrong-key-0000",
            &format!("watsonx_project_id = \"{PROJECT}\"\n"),
        ),
    ])
}

async fn setup() -> (FakeWatsonx, TestProxy) {
    let fake = watsonx::start(IBM_KEY, PROJECT).await.unwrap();
    let proxy = start_proxy(&config(&fake)).await;
    (fake, proxy)
}

/// Every chat request carried an IAM token the fake issued, never the API key
/// itself or the client's proxy key.
fn assert_upstream_auth(fake: &FakeWatsonx) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in requests {
        let auth = r.headers.get("authorization").unwrap().to_str().unwrap();
        assert!(auth.starts_with("Bearer eyJ"), "{auth}");
        assert_master_key_absent(&r.headers);
        for (name, value) in &r.headers {
            assert!(
                !value.to_str().unwrap_or("").contains(IBM_KEY),
                "API key sent in {name}"
            );
        }
        assert!(!r.body.to_string().contains(IBM_KEY));
        assert!(!r.body.to_string().contains(MASTER));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_chat_is_sent_with_model_id_project_and_a_bearer_token() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "granite",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "user": "someone",
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "granite");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake watsonx! You said: hi there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], 12);
    for gone in ["model_id", "model_version", "created_at", "system"] {
        assert!(v.get(gone).is_none(), "{gone} leaked into {v}");
    }

    let seen = &fake.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/ml/v1/text/chat");
    assert_eq!(seen.query.as_deref(), Some("version=2024-05-31"));
    assert_eq!(
        seen.body,
        json!({
            "model_id": GRANITE,
            "project_id": PROJECT,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi there"},
            ],
            "max_tokens": 100,
            "temperature": 0.5,
        })
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_goes_to_chat_stream_and_ends_with_usage_and_done() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "granite",
        "messages": [{"role": "user", "content": "stream me please"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let text = read_sse(post_chat(&proxy, MASTER, &body).await).await;
    let chunks = done_chunks(&text);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "granite"));
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        content_of(&chunks),
        "Hello from fake watsonx! You said: stream me please"
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 3);
    assert_eq!(usage["usage"]["completion_tokens"], 9);

    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/ml/v1/text/chat_stream");
    assert_eq!(seen.query.as_deref(), Some("version=2024-05-31"));
    assert!(seen.body.get("stream").is_none() && seen.body.get("stream_options").is_none());
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_round_trip_and_forced_tool_stream() {
    let (fake, proxy) = setup().await;
    let question = json!({"role": "user", "content": "Weather in Oslo?"});
    let first = json!({"model": "granite", "messages": [question], "tools": city_weather_tools(), "tool_choice": "auto"});
    let v = json_ok(post_chat(&proxy, MASTER, &first).await).await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"fake\"}");
    assert_eq!(fake.requests()[0].body["tool_choice_option"], "auto");
    assert_eq!(
        fake.requests()[0].body["tools"][0]["function"]["name"],
        "get_weather"
    );

    let second = json!({
        "model": "granite",
        "messages": [
            question,
            choice["message"].clone(),
            {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 3}"},
        ],
        "tools": city_weather_tools(),
    });
    let v = json_ok(post_chat(&proxy, MASTER, &second).await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The function get_weather returned {\"temp_c\": 3}."
    );
    let sent = &fake.requests()[1].body["messages"];
    assert_eq!(sent[1]["role"], "assistant");
    assert_eq!(sent[1]["tool_calls"][0]["id"], call["id"]);
    assert_eq!(
        sent[2],
        json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 3}"})
    );

    let streamed = json!({
        "model": "granite",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": city_weather_tools(),
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": true,
    });
    let chunks = done_chunks(&read_sse(post_chat(&proxy, MASTER, &streamed).await).await);
    let calls = tool_calls_of(&chunks);
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0.starts_with("chatcmpl-tool-"));
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(calls[0].2, "{\"city\":\"fake\"}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        fake.requests()[2].body["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_part_reaches_watsonx_as_an_image_url_part() {
    let (fake, proxy) = setup().await;
    let url = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=";
    let body = json!({
        "model": "granite",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
        ]}],
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .ends_with("(I see 1 image(s).)"),
        "{v}"
    );
    assert_eq!(
        fake.requests()[0].body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
        ])
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn space_id_is_sent_instead_of_project_id_when_configured() {
    let (fake, proxy) = setup().await;
    json_ok(post_chat(&proxy, MASTER, &chat_body("granite-space", false)).await).await;
    let body = &fake.requests()[0].body;
    assert_eq!(body["space_id"], "wx-test-space");
    assert!(body.get("project_id").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_token_is_fetched_once_and_reused_across_requests() {
    let (fake, proxy) = setup().await;
    let bodies: Vec<Value> = (0..8)
        .map(|i| {
            let model = if i % 2 == 0 {
                "granite"
            } else {
                "granite-space"
            };
            chat_body(model, i % 3 == 0)
        })
        .collect();
    let calls = bodies.iter().map(|b| post_chat(&proxy, MASTER, b));
    for resp in futures_util::future::join_all(calls).await {
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    for _ in 0..3 {
        json_ok(post_chat(&proxy, MASTER, &chat_body("granite", false)).await).await;
    }
    // Both models use the same API key, so they share one token.
    assert_eq!(fake.tokens_issued(), 1);
    let iam = fake.token_requests();
    assert_eq!(iam.len(), 1);
    assert_eq!(
        iam[0].body,
        json!({"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": IBM_KEY})
    );
    assert_eq!(iam[0].headers["accept"], "application/json");
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_token_is_refreshed_after_it_expires() {
    let (fake, proxy) = setup().await;
    fake.set_token_ttl(2);
    json_ok(post_chat(&proxy, MASTER, &chat_body("granite", false)).await).await;
    json_ok(post_chat(&proxy, MASTER, &chat_body("granite", false)).await).await;
    assert_eq!(fake.tokens_issued(), 1);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let text = read_sse(post_chat(&proxy, MASTER, &chat_body("granite", true)).await).await;
    done_chunks(&text);
    assert_eq!(fake.tokens_issued(), 2);
    let reqs = fake.requests();
    let auth = |i: usize| {
        reqs[i].headers["authorization"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(auth(0), auth(1));
    assert_ne!(auth(1), auth(2), "the expired token was sent again");
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_failure_is_an_openai_shaped_502_that_leaks_no_key() {
    let (fake, proxy) = setup().await;
    let check = |message: &str, v: &Value| {
        assert_eq!(v["error"]["code"], "upstream_auth_failed");
        assert!(
            message.starts_with("watsonx: could not get an access token from http://127.0.0.1:"),
            "{message}"
        );
        let text = v.to_string();
        for secret in [IBM_KEY, "ibm-cloud-wrong-key-0000", MASTER] {
            assert!(!text.contains(secret), "`{secret}` leaked: {text}");
        }
    };
    fake.fail_next_token(TokenFault::ServerError);
    let (message, v) = error_message(
        post_chat(&proxy, MASTER, &chat_body("granite", false)).await,
        502,
    )
    .await;
    check(&message, &v);
    assert!(message.contains("HTTP 500"), "{message}");

    // A key IAM does not know.
    let (message, v) = error_message(
        post_chat(&proxy, MASTER, &chat_body("granite-badkey", false)).await,
        502,
    )
    .await;
    check(&message, &v);
    assert!(message.contains("BXNIM0415E"), "{message}");

    fake.fail_next_token(TokenFault::KeyNotFound);
    let (message, v) = error_message(
        post_chat(&proxy, MASTER, &chat_body("granite", true)).await,
        502,
    )
    .await;
    check(&message, &v);

    assert!(
        fake.requests().is_empty(),
        "chat was called without a token"
    );
    json_ok(post_chat(&proxy, MASTER, &chat_body("granite", false)).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_are_mapped() {
    let (fake, proxy) = setup().await;
    fake.fail_next(ChatFault::RateLimited);
    let (message, v) = error_message(
        post_chat(&proxy, MASTER, &chat_body("granite", false)).await,
        429,
    )
    .await;
    assert!(message.starts_with("watsonx: "), "{message}");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // The fake refuses the request itself: a client error stays a 400.
    let bad = json!({"model": "granite", "messages": [{"role": "user", "content": "x"}], "temperature": 3});
    let (message, _) = error_message(post_chat(&proxy, MASTER, &bad).await, 400).await;
    assert!(message.contains("temperature"), "{message}");

    fake.fail_next(ChatFault::ErrorMidStream);
    let text = read_sse(post_chat(&proxy, MASTER, &chat_body("granite", true)).await).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["message"], "watsonx: Model inference failed");

    fake.fail_next(ChatFault::Truncated);
    let text = read_sse(post_chat(&proxy, MASTER, &chat_body("granite", true)).await).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");

    // A translation the adapter refuses never reaches the fake.
    let before = fake.requests().len();
    let audio = json!({"model": "granite", "messages": [{"role": "user", "content": "x"}], "modalities": ["audio"]});
    let (_, v) = error_message(post_chat(&proxy, MASTER, &audio).await, 400).await;
    assert_eq!(v["error"]["param"], "modalities");
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_conflicting_project_and_space_fail_at_startup_naming_the_fields() {
    let fake = watsonx::start(IBM_KEY, PROJECT).await.unwrap();
    let cases = [
        (model_block("g", &fake, IBM_KEY, ""), "watsonx_project_id"),
        (
            model_block(
                "g",
                &fake,
                IBM_KEY,
                "watsonx_project_id = \"p\"\nwatsonx_space_id = \"s\"\n",
            ),
            "not both",
        ),
        (
            model_block("g", &fake, IBM_KEY, "watsonx_project_id = \"p\"\n")
                .replace(&format!("api_key = \"{IBM_KEY}\"\n"), ""),
            "WATSONX_APIKEY",
        ),
        (
            model_block("g", &fake, IBM_KEY, "watsonx_project_id = \"p\"\n")
                .replace(&fake.iam_url(), "ftp://iam"),
            "models[0].watsonx_iam_url",
        ),
    ];
    for (block, expected) in cases {
        let err =
            liter_llm_proxy::AppState::build(&parse(&fake_proxy_config(&[block])), env_none())
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains(expected), "{expected}: {err}");
        assert!(!err.contains(IBM_KEY), "{err}");
    }
}
