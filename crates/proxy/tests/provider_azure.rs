//! The Azure OpenAI and Azure AI Foundry adapters through the real proxy, over
//! loopback, against the provider-faithful fake: the client speaks OpenAI, the
//! fake only accepts what Azure accepts (the `api-key` header, an `api-version`,
//! a known deployment, recognised body fields).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::azure::{self, AzureFault, FakeAzure, RecordedRequest};
use serde_json::{json, Value};

const AZURE_KEY: &str = "az-test-key";

fn config(fake: &FakeAzure) -> String {
    let base = fake.base_url();
    fake_proxy_config(&[
        fake_model("az", "azure/gpt-4o-prod", &base, AZURE_KEY, ""),
        fake_model(
            "az-2024-06",
            "azure/gpt-4o-prod",
            &format!("{base}/openai"),
            AZURE_KEY,
            "api_version = \"2024-06-01\"\n",
        ),
        fake_model(
            "az-v1",
            "azure/gpt-4o-mini",
            &format!("{base}/openai/v1"),
            AZURE_KEY,
            "",
        ),
        fake_model(
            "az-missing",
            "azure/no-such-deployment",
            &base,
            AZURE_KEY,
            "",
        ),
        fake_model("az-badkey", "azure/gpt-4o-prod", &base, "az-wrong-key", ""),
        fake_model("az-embed", "azure/embed-prod", &base, AZURE_KEY, ""),
        fake_model(
            "foundry-embed",
            "azure_ai/Cohere-embed-v3-english",
            &fake.models_base_url(),
            AZURE_KEY,
            "",
        ),
        fake_model("az-whisper", "azure/whisper-prod", &base, AZURE_KEY, ""),
        fake_model(
            "foundry",
            "azure_ai/Mistral-Large-2411",
            &fake.models_base_url(),
            AZURE_KEY,
            "",
        ),
    ])
}

async fn setup() -> (FakeAzure, TestProxy) {
    let fake = azure::start(AZURE_KEY).await.unwrap();
    let proxy = start_proxy(&config(&fake)).await;
    (fake, proxy)
}

/// Posts the exact bytes, so the test can compare what reached the fake.
async fn post_raw(p: &TestProxy, body: &str) -> reqwest::Response {
    client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The proxy's credential reached the fake as `api-key`; the client's proxy
/// key never left the proxy.
fn assert_upstream_auth(fake: &FakeAzure) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in requests {
        let key = r.headers.get("api-key").map(|v| v.to_str().unwrap());
        assert!(
            key == Some(AZURE_KEY) || key == Some("az-wrong-key"),
            "api-key: {key:?}"
        );
        assert!(r.headers.get("authorization").is_none(), "{:?}", r.headers);
        assert_master_key_absent(&r.headers);
        assert!(!r.raw.windows(MASTER.len()).any(|w| w == MASTER.as_bytes()));
    }
}

fn only(fake: &FakeAzure) -> RecordedRequest {
    let all = fake.requests();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_reaches_the_deployment_and_answers_with_filter_results() {
    let (fake, proxy) = setup().await;
    let body = r#"{"model":"az","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi there"}],"temperature":0.5,"max_tokens":100,"user":"someone","seed":7}"#;
    let resp = post_raw(&proxy, body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-2024-08-06");
    let choice = &v["choices"][0];
    assert_eq!(
        choice["message"]["content"],
        "Hello from fake Azure OpenAI. You said: hi there"
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        choice["content_filter_results"]["violence"],
        json!({"filtered": false, "severity": "safe"})
    );
    assert_eq!(v["prompt_filter_results"][0]["prompt_index"], 0);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 4 + 9);

    let seen = only(&fake);
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt-4o-prod/chat/completions"
    );
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(
        seen.headers.get("content-type").unwrap(),
        "application/json"
    );
    // The client's bytes, with only the model replaced by the deployment.
    assert_eq!(
        std::str::from_utf8(&seen.raw).unwrap(),
        body.replace(r#""model":"az""#, r#""model":"gpt-4o-prod""#)
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_passes_prompt_filter_chunk_and_ends_with_done() {
    let (fake, proxy) = setup().await;
    let resp = post_chat(
        &proxy,
        MASTER,
        &json!({
            "model": "az",
            "messages": [{"role": "user", "content": "stream me please"}],
            "stream": true,
        }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = read_sse(resp).await;
    let chunks = done_chunks(&text);
    // Azure's first event: no choices, only the prompt's filter results.
    assert_eq!(chunks[0]["choices"], json!([]), "{text}");
    assert!(chunks[0]["prompt_filter_results"].is_array(), "{text}");
    assert_eq!(chunks[1]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        content_of(&chunks),
        "Hello from fake Azure OpenAI. You said: stream me please"
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| f.is_string())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    // The proxy asked for usage to meter the stream and stripped the usage
    // chunk the client did not ask for.
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "{text}"
    );
    let seen = only(&fake);
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["stream_options"], json!({"include_usage": true}));
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_usage_chunk_reaches_a_client_that_asked() {
    let (_fake, proxy) = setup().await;
    let resp = post_chat(
        &proxy,
        MASTER,
        &json!({
            "model": "az",
            "messages": [{"role": "user", "content": "count me"}],
            "stream": true,
            "stream_options": {"include_usage": true},
        }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = read_sse(resp).await;
    let chunks = done_chunks(&text);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]), "{text}");
    assert_eq!(last["usage"]["prompt_tokens"], 2);
    assert_eq!(last["usage"]["completion_tokens"], 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_round_trip() {
    let (fake, proxy) = setup().await;
    let first = json!({
        "model": "az",
        "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
        "tools": city_weather_tools(),
        "tool_choice": "auto",
    });
    let resp = post_chat(&proxy, MASTER, &first).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Oslo\"}");
    assert_eq!(fake.requests()[0].body["tools"], city_weather_tools());

    let second = json!({
        "model": "az",
        "messages": [
            {"role": "user", "content": "What is the weather in Oslo?"},
            choice["message"].clone(),
            {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 3}"},
        ],
        "tools": city_weather_tools(),
    });
    let resp = post_chat(&proxy, MASTER, &second).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Tool result received: {\"temp_c\": 3}"
    );
    assert_eq!(fake.requests()[1].body["messages"], second["messages"]);
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_stream() {
    let (_fake, proxy) = setup().await;
    let body = json!({
        "model": "az",
        "messages": [{"role": "user", "content": "Weather in Bergen?"}],
        "tools": city_weather_tools(),
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": true,
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let text = read_sse(resp).await;
    let chunks = done_chunks(&text);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Bergen\"}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_part_reaches_the_fake_unchanged() {
    let (fake, proxy) = setup().await;
    let body = r#"{"model":"az","messages":[{"role":"user","content":[{"type":"text","text":"What is in this picture?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=","detail":"low"}}]}]}"#;
    let resp = post_raw(&proxy, body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake Azure OpenAI. You said: What is in this picture? (I see 1 image(s).)"
    );
    let seen = only(&fake);
    assert_eq!(
        seen.body["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=", "detail": "low"}})
    );
    assert_eq!(
        std::str::from_utf8(&seen.raw).unwrap(),
        body.replace(r#""model":"az""#, r#""model":"gpt-4o-prod""#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_version_override_reaches_the_query_and_limits_stream_options() {
    let (fake, proxy) = setup().await;
    // Non-stream, on a base URL that already ends in /openai.
    let resp = post_chat(&proxy, MASTER, &chat_body("az-2024-06", false)).await;
    assert_eq!(resp.status(), 200);
    // Stream: 2024-06-01 predates stream_options, which the fake (like Azure)
    // refuses there; the proxy must not add it.
    let resp = post_chat(&proxy, MASTER, &chat_body("az-2024-06", true)).await;
    assert_eq!(resp.status(), 200);
    let chunks = done_chunks(&read_sse(resp).await);
    assert_eq!(
        content_of(&chunks),
        "Hello from fake Azure OpenAI. You said: hi"
    );
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.path, "/openai/deployments/gpt-4o-prod/chat/completions");
        assert_eq!(r.query.as_deref(), Some("api-version=2024-06-01"));
        assert!(r.body.get("stream_options").is_none(), "{}", r.body);
    }
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_api_takes_the_deployment_in_the_body() {
    let (fake, proxy) = setup().await;
    let resp = post_chat(&proxy, MASTER, &chat_body("az-v1", false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "gpt-4o-mini-2024-07-18");
    let seen = only(&fake);
    assert_eq!(seen.path, "/openai/v1/chat/completions");
    assert_eq!(seen.query, None);
    assert_eq!(seen.body["model"], "gpt-4o-mini");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_key_is_a_502_not_the_clients_fault() {
    let (fake, proxy) = setup().await;
    let resp = post_chat(&proxy, MASTER, &chat_body("az-badkey", false)).await;
    let (message, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(!message.contains("subscription key"), "{message}");
    assert!(!v.to_string().contains("az-wrong-key"));
    assert_eq!(only(&fake).headers.get("api-key").unwrap(), "az-wrong-key");
}

#[tokio::test(flavor = "multi_thread")]
async fn content_filter_refusal_stays_a_400_with_its_code() {
    let (_fake, proxy) = setup().await;
    let body = json!({"model": "az", "messages": [{"role": "user", "content": "please trigger-content-filter now"}]});
    let resp = post_chat(&proxy, MASTER, &body).await;
    let (message, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["code"], "content_filter");
    assert_eq!(v["error"]["param"], "prompt");
    assert!(
        message.starts_with("azure: The response was filtered"),
        "{message}"
    );
    assert!(message.contains("violence=medium"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_output_keeps_finish_reason_content_filter() {
    let (_fake, proxy) = setup().await;
    let body =
        json!({"model": "az", "messages": [{"role": "user", "content": "trigger-output-filter"}]});
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        v["choices"][0]["content_filter_results"]["violence"]["filtered"],
        true
    );

    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let resp = post_chat(&proxy, MASTER, &stream_body).await;
    let chunks = done_chunks(&read_sse(resp).await);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_are_mapped() {
    let (fake, proxy) = setup().await;

    fake.fail_next(AzureFault::Unavailable);
    let resp = post_chat(&proxy, MASTER, &chat_body("az", false)).await;
    error_message(resp, 503).await;

    fake.fail_next(AzureFault::Internal);
    let resp = post_chat(&proxy, MASTER, &chat_body("az", false)).await;
    let (_, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_error");

    // The fake (like Azure) refuses fields it does not know: a client error.
    let bad =
        json!({"model": "az", "messages": [{"role": "user", "content": "x"}], "frobnicate": 1});
    let resp = post_chat(&proxy, MASTER, &bad).await;
    let (message, _) = error_message(resp, 400).await;
    assert_eq!(
        message,
        "azure: Unrecognized request argument supplied: frobnicate"
    );

    let resp = post_chat(&proxy, MASTER, &chat_body("az-missing", false)).await;
    let (_, v) = error_message(resp, 404).await;
    assert_eq!(v["error"]["code"], "DeploymentNotFound");

    // Last: Azure's Retry-After also cools the deployment down in the proxy.
    fake.fail_next(AzureFault::RateLimited);
    let resp = post_chat(&proxy, MASTER, &chat_body("az", false)).await;
    assert_eq!(resp.headers()["retry-after"], "2");
    let (message, v) = error_message(resp, 429).await;
    assert!(
        message.contains("Please retry after 2 seconds"),
        "{message}"
    );
    assert_eq!(v["error"]["code"], "upstream_rate_limited");
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_stream_ends_with_an_error_event_not_done() {
    let (fake, proxy) = setup().await;
    fake.fail_next(AzureFault::Truncated);
    let resp = post_chat(&proxy, MASTER, &chat_body("az", true)).await;
    assert_eq!(resp.status(), 200);
    let text = read_sse(resp).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_truncated", "{text}");
    // The content before the cut still arrived.
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(
        content_of(&chunks),
        "Hello from fake Azure OpenAI. You said: hi"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn error_event_mid_stream_is_forwarded_as_an_error() {
    let (fake, proxy) = setup().await;
    fake.fail_next(AzureFault::ErrorMidStream);
    let resp = post_chat(&proxy, MASTER, &chat_body("az", true)).await;
    assert_eq!(resp.status(), 200);
    let text = read_sse(resp).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{text}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("The server had an error"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn foundry_model_inference_gets_version_model_and_pass_through() {
    let (fake, proxy) = setup().await;
    // `user` is outside the inference schema: it reaches the model only
    // because the adapter sends `extra-parameters: pass-through`.
    let body = json!({
        "model": "foundry",
        "messages": [{"role": "user", "content": "bonjour"}],
        "user": "someone",
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake Azure AI Foundry. You said: bonjour"
    );
    assert_eq!(v["model"], "mistral-large-2411");

    let resp = post_chat(&proxy, MASTER, &chat_body("foundry", true)).await;
    assert_eq!(resp.status(), 200);
    let chunks = done_chunks(&read_sse(resp).await);
    assert_eq!(
        content_of(&chunks),
        "Hello from fake Azure AI Foundry. You said: hi"
    );

    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.path, "/models/chat/completions");
        assert_eq!(r.query.as_deref(), Some("api-version=2024-05-01-preview"));
        assert_eq!(r.headers.get("extra-parameters").unwrap(), "pass-through");
        assert_eq!(r.body["model"], "Mistral-Large-2411");
        assert!(r.body.get("stream_options").is_none(), "{}", r.body);
    }
    assert_eq!(seen[0].body["user"], "someone");
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_reach_the_deployment_with_the_body_kept() {
    let (fake, proxy) = setup().await;
    let resp = client()
        .post(proxy.url("/v1/embeddings"))
        .bearer_auth(MASTER)
        .json(
            &json!({"model": "az-embed", "input": ["one", "two words", "three"], "dimensions": 3}),
        )
        .send()
        .await
        .unwrap();
    let body = json_ok(resp).await;
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i);
    }
    assert_eq!(data[1]["embedding"][0], 9.0, "second input's vector");
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    let sent = only(&fake);
    assert_eq!(
        sent.path,
        format!("/openai/deployments/embed-prod/embeddings")
    );
    assert_eq!(
        sent.query_param("api-version"),
        Some(liter_llm_providers::adapters::azure::DEFAULT_API_VERSION)
    );
    let v: Value = serde_json::from_slice(&sent.raw).unwrap();
    assert_eq!(v["model"], "embed-prod");
    assert_eq!(v["dimensions"], 3);
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn transcription_upload_reaches_the_deployment_and_text_stays_text() {
    let (fake, proxy) = setup().await;
    let audio: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let form = |format: &str| {
        reqwest::multipart::Form::new()
            .text("model", "az-whisper")
            .text("response_format", format.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(audio.clone())
                    .file_name("a.wav")
                    .mime_str("audio/wav")
                    .unwrap(),
            )
    };
    let resp = client()
        .post(proxy.url("/v1/audio/transcriptions"))
        .bearer_auth(MASTER)
        .multipart(form("json"))
        .send()
        .await
        .unwrap();
    let body = json_ok(resp).await;
    assert!(body["text"]
        .as_str()
        .unwrap()
        .starts_with("fake transcript of"));
    let sent = only(&fake);
    assert_eq!(
        sent.path,
        "/openai/deployments/whisper-prod/audio/transcriptions"
    );
    assert!(
        sent.raw.windows(audio.len()).any(|w| w == audio.as_slice()),
        "the file arrived byte for byte"
    );
    assert!(
        sent.raw.windows(11).any(|w| w == b"whisper-pro"),
        "model replaced"
    );
    let resp = client()
        .post(proxy.url("/v1/audio/transcriptions"))
        .bearer_auth(MASTER)
        .multipart(form("text"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(resp.text().await.unwrap().starts_with("fake transcript of"));
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_azure_does_not_offer_are_refused_before_sending() {
    let (fake, proxy) = setup().await;
    let resp = client()
        .post(proxy.url("/v1/rerank"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "az", "query": "q", "documents": ["a"]}))
        .send()
        .await
        .unwrap();
    let (message, body) = error_message(resp, 400).await;
    assert_eq!(body["error"]["code"], "endpoint_not_supported");
    assert!(message.contains("rerank"), "{message}");
    assert!(fake.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn foundry_embeddings_get_the_version_the_model_and_pass_through() {
    let (fake, proxy) = setup().await;
    let resp = client()
        .post(proxy.url("/v1/embeddings"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "foundry-embed", "input": ["ab", "abcd"], "input_type": "query"}))
        .send()
        .await
        .unwrap();
    let body = json_ok(resp).await;
    assert_eq!(body["data"][1]["embedding"][0], 4.0);
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    let sent = only(&fake);
    assert_eq!(sent.path, "/models/embeddings");
    assert_eq!(
        sent.query_param("api-version"),
        Some(liter_llm_providers::adapters::azure::DEFAULT_AI_INFERENCE_API_VERSION)
    );
    assert_eq!(sent.headers["extra-parameters"], "pass-through");
    let v: Value = serde_json::from_slice(&sent.raw).unwrap();
    assert_eq!(v["model"], "Cohere-embed-v3-english");
    assert_eq!(v["input_type"], "query", "unknown fields reach the model");
    assert_upstream_auth(&fake);
}
