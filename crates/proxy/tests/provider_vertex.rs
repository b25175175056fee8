//! The Vertex AI adapter through the real proxy, over loopback, against the
//! provider-faithful fake: the client speaks OpenAI; the fake issues OAuth2
//! tokens only for JWTs signed with the test service account's key and serves
//! Gemini and Claude only with a current token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use fake_providers::vertex::{self, FakeVertex, ModelFault, TokenFault};
use serde_json::{json, Value};
use std::time::Duration;

const PROJECT: &str = "liter-llm-test";
const LOCATION: &str = "us-central1";
const GEMINI: &str = "gemini-2.5-flash";
const CLAUDE: &str = "claude-sonnet-4-5@20250929";

fn model_block(
    name: &str,
    model: &str,
    fake: &FakeVertex,
    credentials: &str,
    extra: &str,
) -> String {
    format!(
        "\n[[models]]\nname = \"{name}\"\nprovider_model = \"vertex_ai/{model}\"\nbase_url = \"{}\"\nvertex_project = \"{PROJECT}\"\nvertex_location = \"{LOCATION}\"\nvertex_credentials = '''{credentials}'''\n{extra}",
        fake.base_url_template()
    )
}

fn config(fake: &FakeVertex) -> String {
    let creds = fake.service_account_json();
    fake_proxy_config(&[
        model_block("gem", GEMINI, fake, &creds, ""),
        model_block("claude", CLAUDE, fake, &creds, ""),
        model_block("vemb", "text-embedding-005", fake, &creds, ""),
    ])
}

async fn setup() -> (FakeVertex, TestProxy) {
    let fake = vertex::start(PROJECT, LOCATION).await.unwrap();
    let proxy = start_proxy(&config(&fake)).await;
    (fake, proxy)
}

fn path_for(publisher: &str, model: &str, action: &str) -> String {
    format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/{publisher}/models/{model}:{action}")
}

/// Every model request carried an issued OAuth token, and nothing else that
/// could be a key; the client's proxy key never left the proxy.
fn assert_upstream_auth(fake: &FakeVertex) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in requests {
        let auth = r.headers.get("authorization").unwrap().to_str().unwrap();
        assert!(auth.starts_with("Bearer ya29.fake-vertex-token-"), "{auth}");
        assert!(r.headers.get("x-goog-api-key").is_none());
        assert!(r.headers.get("x-api-key").is_none());
        assert!(r.headers.get("anthropic-version").is_none());
        assert_master_key_absent(&r.headers);
        assert!(!r.body.to_string().contains(MASTER));
    }
}

fn hello(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": 100,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_on_vertex_is_translated_and_sent_with_a_bearer_token() {
    let (fake, proxy) = setup().await;
    let v = json_ok(post_chat(&proxy, MASTER, &hello("gem", false)).await).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gem");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake Gemini. You said: hi there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 12);

    let seen = &fake.requests()[0];
    assert_eq!(seen.path, path_for("google", GEMINI, "generateContent"));
    assert_eq!(seen.query, None);
    assert_eq!(
        seen.body,
        json!({
            "contents": [{"role": "user", "parts": [{"text": "hi there"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 100},
        })
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_on_vertex_stream_arrives_as_openai_chunks_with_usage() {
    let (fake, proxy) = setup().await;
    let text = read_sse(post_chat(&proxy, MASTER, &hello("gem", true)).await).await;
    let chunks = done_chunks(&text);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        content_of(&chunks),
        "Hello from fake Gemini. You said: hi there"
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 4);
    let seen = &fake.requests()[0];
    assert_eq!(
        seen.path,
        path_for("google", GEMINI, "streamGenerateContent")
    );
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_on_vertex_uses_raw_predict_with_the_vertex_version_and_no_model() {
    let (fake, proxy) = setup().await;
    let v = json_ok(post_chat(&proxy, MASTER, &hello("claude", false)).await).await;
    assert_eq!(v["model"], "claude");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake Claude! You said: hi there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let seen = &fake.requests()[0];
    assert_eq!(seen.path, path_for("anthropic", CLAUDE, "rawPredict"));
    assert_eq!(seen.body["anthropic_version"], "vertex-2023-10-16");
    assert!(seen.body.get("model").is_none(), "{}", seen.body);
    assert!(seen.body.get("stream").is_none(), "{}", seen.body);
    assert_eq!(seen.body["system"], "Be brief.");
    assert_eq!(seen.body["max_tokens"], 100);
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_on_vertex_stream_uses_stream_raw_predict() {
    let (fake, proxy) = setup().await;
    let text = read_sse(post_chat(&proxy, MASTER, &hello("claude", true)).await).await;
    let chunks = done_chunks(&text);
    assert!(chunks.iter().all(|c| c["model"] == "claude"));
    assert_eq!(
        content_of(&chunks),
        "Hello from fake Claude! You said: hi there"
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let seen = &fake.requests()[0];
    assert_eq!(seen.path, path_for("anthropic", CLAUDE, "streamRawPredict"));
    assert_eq!(seen.body["stream"], true);
    assert!(seen.body.get("model").is_none());
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_round_trip_on_gemini_and_claude() {
    let (fake, proxy) = setup().await;
    for model in ["gem", "claude"] {
        let question = json!({"role": "user", "content": "Weather in Oslo?"});
        let first = json!({"model": model, "messages": [question], "tools": city_weather_tools()});
        let v = json_ok(post_chat(&proxy, MASTER, &first).await).await;
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{model}: {v}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{args}");

        let second = json!({
            "model": model,
            "messages": [
                question,
                choice["message"].clone(),
                {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 3}"},
            ],
            "tools": city_weather_tools(),
        });
        let v = json_ok(post_chat(&proxy, MASTER, &second).await).await;
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{model}: {v}");
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.contains("temp_c"), "{model}: {text}");
    }
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(
        reqs[0].body["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert_eq!(reqs[2].body["tools"][0]["name"], "get_weather");
    let tool_result = &reqs[3].body["messages"][2]["content"][0];
    assert_eq!(tool_result["type"], "tool_result");

    // Streamed, the call's arguments reassemble to JSON.
    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": city_weather_tools(),
        "stream": true,
    });
    let chunks = done_chunks(&read_sse(post_chat(&proxy, MASTER, &body).await).await);
    let calls = tool_calls_of(&chunks);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert!(args["city"].is_string());
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_parts_reach_gemini_as_inline_data_and_claude_as_base64_blocks() {
    let (fake, proxy) = setup().await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAE=";
    for model in ["gem", "claude"] {
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
            ]}],
        });
        json_ok(post_chat(&proxy, MASTER, &body).await).await;
    }
    let reqs = fake.requests();
    assert_eq!(
        reqs[0].body["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": png}})
    );
    assert_eq!(
        reqs[1].body["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}})
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_fetched_once_and_reused_across_requests() {
    let (fake, proxy) = setup().await;
    // Concurrent first requests share one fetch.
    let bodies: Vec<Value> = (0..8)
        .map(|i| chat_body(if i % 2 == 0 { "gem" } else { "claude" }, false))
        .collect();
    let calls = bodies.iter().map(|b| post_chat(&proxy, MASTER, b));
    for resp in futures_util::future::join_all(calls).await {
        assert_eq!(resp.status(), 200);
    }
    for _ in 0..3 {
        json_ok(post_chat(&proxy, MASTER, &chat_body("gem", false)).await).await;
    }
    assert_eq!(fake.tokens_issued(), 1);
    assert_eq!(fake.token_requests().len(), 1);
    let auths: std::collections::HashSet<String> = fake
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(auths.len(), 1, "{auths:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_request_is_a_jwt_bearer_grant_for_the_service_account() {
    let (fake, proxy) = setup().await;
    json_ok(post_chat(&proxy, MASTER, &chat_body("gem", false)).await).await;
    let token_req = &fake.token_requests()[0];
    assert_eq!(token_req.method, "POST");
    assert_eq!(token_req.path, "/token");
    assert_eq!(
        token_req.body["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let assertion = token_req.body["assertion"].as_str().unwrap();
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode =
        |s: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap() };
    let header = decode(parts[0]);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "0123456789abcdef0123456789abcdef01234567");
    let claims = decode(parts[1]);
    assert_eq!(
        claims["iss"],
        "fake-vertex@liter-llm-test.iam.gserviceaccount.com"
    );
    assert_eq!(claims["aud"], fake.token_uri());
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_is_refreshed_after_it_expires() {
    let (fake, proxy) = setup().await;
    fake.set_token_ttl(2);
    json_ok(post_chat(&proxy, MASTER, &chat_body("gem", false)).await).await;
    json_ok(post_chat(&proxy, MASTER, &chat_body("claude", false)).await).await;
    assert_eq!(fake.tokens_issued(), 1);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    json_ok(post_chat(&proxy, MASTER, &chat_body("gem", false)).await).await;
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
async fn token_endpoint_failure_is_an_openai_shaped_502_that_leaks_no_secret() {
    let (fake, proxy) = setup().await;
    let key_material: String = {
        let v: Value = serde_json::from_str(vertex::TEST_SERVICE_ACCOUNT_JSON).unwrap();
        let pem = v["private_key"].as_str().unwrap();
        pem.lines().nth(3).unwrap().to_string()
    };
    for (fault, said) in [
        (TokenFault::ServerError, "HTTP 500"),
        (TokenFault::InvalidGrant, "invalid_grant"),
    ] {
        fake.fail_next_token(fault);
        let resp = post_chat(&proxy, MASTER, &chat_body("gem", false)).await;
        let (message, v) = error_message(resp, 502).await;
        assert_eq!(v["error"]["code"], "upstream_auth_failed");
        assert!(
            message.starts_with("vertex_ai: could not get an access token from http://127.0.0.1:"),
            "{message}"
        );
        assert!(message.contains(said), "{message}");
        let text = v.to_string();
        for secret in [key_material.as_str(), "PRIVATE KEY", "assertion", MASTER] {
            assert!(!text.contains(secret), "`{secret}` leaked: {text}");
        }
    }
    // Nothing reached the model without a token; the next request recovers.
    assert!(fake.requests().is_empty());
    json_ok(post_chat(&proxy, MASTER, &chat_body("gem", false)).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_can_be_a_key_file_path() {
    let fake = vertex::start(PROJECT, LOCATION).await.unwrap();
    let path = std::env::temp_dir().join(format!(
        "liter-llm-vertex-key-{}-{}.json",
        std::process::id(),
        fake.addr().port()
    ));
    std::fs::write(&path, fake.service_account_json()).unwrap();
    let cfg = fake_proxy_config(&[model_block(
        "gem",
        GEMINI,
        &fake,
        path.to_str().unwrap(),
        "",
    )]);
    let proxy = start_proxy(&cfg).await;
    json_ok(post_chat(&proxy, MASTER, &chat_body("gem", false)).await).await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(fake.tokens_issued(), 1);
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_are_mapped_per_publisher() {
    let (fake, proxy) = setup().await;
    fake.fail_next(ModelFault::ResourceExhausted);
    let (message, v) = error_message(
        post_chat(&proxy, MASTER, &chat_body("gem", false)).await,
        429,
    )
    .await;
    assert!(
        message.starts_with("gemini: Resource exhausted"),
        "{message}"
    );
    assert_eq!(v["error"]["type"], "rate_limit_error");

    fake.fail_next(ModelFault::Overloaded);
    let (message, _) = error_message(
        post_chat(&proxy, MASTER, &chat_body("claude", false)).await,
        503,
    )
    .await;
    assert_eq!(message, "anthropic: Overloaded");

    fake.fail_next(ModelFault::Truncated);
    let text = read_sse(post_chat(&proxy, MASTER, &chat_body("gem", true)).await).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_project_location_or_credentials_fail_at_startup_naming_the_field() {
    let fake = vertex::start(PROJECT, LOCATION).await.unwrap();
    let creds = fake.service_account_json();
    let full = model_block("gem", GEMINI, &fake, &creds, "");
    let cases = [
        (
            full.replace(&format!("vertex_project = \"{PROJECT}\"\n"), ""),
            "vertex_project",
        ),
        (
            full.replace(&format!("vertex_location = \"{LOCATION}\"\n"), ""),
            "vertex_location",
        ),
        (
            full.replace(&format!("vertex_credentials = '''{creds}'''\n"), ""),
            "vertex_credentials",
        ),
        (
            full.replace(&creds, "{\"type\":\"service_account\"}"),
            "models[0].vertex_credentials",
        ),
        (
            full.replace("vertex_project = ", "api_key = \"k\"\nvertex_project = "),
            "models[0].api_key",
        ),
    ];
    for (block, field) in cases {
        let err =
            liter_llm_proxy::AppState::build(&parse(&fake_proxy_config(&[block])), env_none())
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains(field), "{field}: {err}");
        assert!(!err.contains("BEGIN PRIVATE KEY"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_on_vertex_keep_input_order_and_report_token_counts() {
    let (fake, proxy) = setup().await;
    let resp = client()
        .post(proxy.url("/v1/embeddings"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "vemb", "input": ["alpha", "be ta", "c"], "dimensions": 3}))
        .send()
        .await
        .unwrap();
    let v = json_ok(resp).await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, (item, text)) in data.iter().zip(["alpha", "be ta", "c"]).enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["embedding"], json!(vertex::embedding_for(text, i)));
    }
    assert_eq!(v["usage"]["prompt_tokens"], 4, "1 + 2 + 1 tokens");
    assert_eq!(v["model"], "vemb");
    let seen = &fake.requests()[0];
    assert_eq!(
        seen.path,
        path_for("google", "text-embedding-005", "predict")
    );
    assert_eq!(seen.body["parameters"]["outputDimensionality"], 3);
    assert_eq!(seen.body["instances"][2]["content"], "c");
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_base64_on_vertex_decode_to_the_same_floats() {
    let (_fake, proxy) = setup().await;
    let resp = client()
        .post(proxy.url("/v1/embeddings"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "vemb", "input": "alpha", "encoding_format": "base64"}))
        .send()
        .await
        .unwrap();
    let v = json_ok(resp).await;
    let decoded = base64_f32(v["data"][0]["embedding"].as_str().unwrap());
    let want: Vec<f32> = vertex::embedding_for("alpha", 0)
        .iter()
        .map(|x| *x as f32)
        .collect();
    assert_eq!(decoded, want);
}
