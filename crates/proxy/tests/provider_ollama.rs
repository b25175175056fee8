//! Ollama's native API (`ollama_chat/<model>`) through the real proxy, over
//! loopback, against the provider-faithful fake of `/api/chat`: the client
//! speaks OpenAI, the fake accepts only Ollama's `ChatRequest` fields and
//! answers in Ollama's shapes, streaming NDJSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::ollama::{self, FakeOllama, OllamaFault};
use serde_json::{json, Value};

const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const CLOUD_KEY: &str = "ollama-cloud-test-key";

fn model(name: &str, upstream: &str, base: &str, extra: &str) -> String {
    format!(
        "\n[[models]]\nname = \"{name}\"\nprovider_model = \"ollama_chat/{upstream}\"\nbase_url = \"{base}\"\n{extra}\n"
    )
}

/// A local Ollama: no key configured, none expected.
async fn setup() -> (FakeOllama, TestProxy) {
    let fake = ollama::start("").await.unwrap();
    let base = fake.base_url();
    let proxy = start_proxy(&fake_proxy_config(&[
        model("llama", "llama3.2", &base, ""),
        model("llava", "llava:7b", &base, ""),
        model("not-pulled", "missing-model", &base, ""),
    ]))
    .await;
    (fake, proxy)
}

fn assert_no_auth(fake: &FakeOllama) {
    for r in fake.requests() {
        assert!(
            !r.headers.contains_key("authorization"),
            "a local Ollama gets no key: {r:?}"
        );
        assert_master_key_absent(&r.headers);
        assert_eq!(r.path, "/api/chat");
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_request_is_translated_to_api_chat_and_back() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "llama",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 42,
        "stop": ["\n\n"],
        "frequency_penalty": 0.1,
        "user": "u-1",
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "llama");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake Ollama. You said: hi there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12})
    );
    let seen = &fake.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.body,
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi there"},
            ],
            "options": {
                "temperature": 0.5,
                "top_p": 0.9,
                "frequency_penalty": 0.1,
                "num_predict": 100,
                "seed": 42,
                "stop": ["\n\n"],
            },
            "stream": false,
        })
    );
    assert_no_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn ndjson_stream_arrives_as_openai_chunks_with_reasoning_usage_and_done() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "llama",
        "messages": [{"role": "user", "content": "stream me please"}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "reasoning_effort": "low",
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    let text = stream_text(resp).await;
    let chunks = done_chunks(&text);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "llama"));
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "Thinking about: stream me please ");
    assert_eq!(
        content_of(&chunks),
        "Hello from fake Ollama. You said: stream me please"
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 14, "total_tokens": 17})
    );
    let seen = &fake.requests()[0].body;
    assert_eq!(seen["stream"], true);
    assert_eq!(seen["think"], "low");
    assert_eq!(seen.get("stream_options"), None);
    assert_no_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_without_usage_request_hides_the_usage_chunk() {
    let (_fake, proxy) = setup().await;
    let resp = post_chat(&proxy, MASTER, &chat_body("llama", true)).await;
    let text = stream_text(resp).await;
    let chunks = done_chunks(&text);
    assert_eq!(content_of(&chunks), "Hello from fake Ollama. You said: hi");
    assert!(chunks.iter().all(|c| c["choices"] != json!([])), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_round_trip_non_stream() {
    let (fake, proxy) = setup().await;
    let first = json!({
        "model": "llama",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": city_weather_tools(),
        "tool_choice": "auto",
    });
    let v = json_ok(post_chat(&proxy, MASTER, &first).await).await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Oslo\"}");
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("call_"), "{id}");
    assert_eq!(fake.requests()[0].body["tools"], city_weather_tools());

    let second = json!({
        "model": "llama",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            choice["message"].clone(),
            {"role": "tool", "tool_call_id": id, "content": "sunny, 3 C"},
        ],
        "tools": city_weather_tools(),
    });
    let v = json_ok(post_chat(&proxy, MASTER, &second).await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The get_weather tool said: sunny, 3 C"
    );
    let seen = &fake.requests()[1].body;
    assert_eq!(
        seen["messages"][1],
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
        ]})
    );
    assert_eq!(
        seen["messages"][2],
        json!({"role": "tool", "content": "sunny, 3 C", "tool_name": "get_weather"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_stream() {
    let (_fake, proxy) = setup().await;
    let body = json!({
        "model": "llama",
        "messages": [{"role": "user", "content": "Weather in Bergen?"}],
        "tools": city_weather_tools(),
        "stream": true,
    });
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    let chunks = done_chunks(&text);
    let calls = tool_calls_of(&chunks);
    assert_eq!(calls.len(), 1, "{text}");
    assert!(calls[0].0.starts_with("call_"));
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        json!({"city": "Bergen"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_parts_become_base64_images_and_links_are_refused() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "llava",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}},
        ]}],
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake Ollama. You said: What is this? (1 image)"
    );
    assert_eq!(
        fake.requests()[0].body["messages"][0],
        json!({"role": "user", "content": "What is this?", "images": [PNG_B64]})
    );

    let link = json!({
        "model": "llava",
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ]}],
    });
    let resp = post_chat(&proxy, MASTER, &link).await;
    let (_, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["param"], "messages[0].content[0].image_url.url");
    assert_eq!(fake.requests().len(), 1, "refused before reaching Ollama");
}

#[tokio::test(flavor = "multi_thread")]
async fn response_formats_become_ollama_format() {
    let (fake, proxy) = setup().await;
    let schema = json!({
        "type": "object",
        "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
        "required": ["age", "available"],
    });
    let body = json!({
        "model": "llama",
        "messages": [{"role": "user", "content": "Return age and availability."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"age": 1, "available": true}));
    assert_eq!(fake.requests()[0].body["format"], schema);

    let body = json!({
        "model": "llama",
        "messages": [{"role": "user", "content": "JSON please"}],
        "response_format": {"type": "json_object"},
    });
    json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(fake.requests()[1].body["format"], "json");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_tokens_cut_is_a_length_finish() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "llama",
        "messages": [{"role": "user", "content": "tell me a long story"}],
        "max_completion_tokens": 3,
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from fake");
    assert_eq!(
        fake.requests()[0].body["options"],
        json!({"num_predict": 3})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_are_mapped() {
    let (fake, proxy) = setup().await;
    let resp = post_chat(&proxy, MASTER, &chat_body("not-pulled", false)).await;
    let (message, _) = error_message(resp, 404).await;
    assert_eq!(
        message,
        "ollama: model \"missing-model\" not found, try pulling it first"
    );

    fake.push_fault(OllamaFault::Error {
        status: 500,
        message: "llama runner process has terminated: exit status 2".into(),
    });
    let resp = post_chat(&proxy, MASTER, &chat_body("llama", false)).await;
    let (message, v) = error_message(resp, 502).await;
    assert_eq!(
        message,
        "ollama: llama runner process has terminated: exit status 2"
    );
    assert_eq!(v["error"]["code"], "upstream_error");

    // Ollama cannot force a tool call: refused before anything is sent.
    let before = fake.requests().len();
    let forced = json!({
        "model": "llama",
        "messages": [{"role": "user", "content": "x"}],
        "tools": city_weather_tools(),
        "tool_choice": "required",
    });
    let (_, v) = error_message(post_chat(&proxy, MASTER, &forced).await, 400).await;
    assert_eq!(v["error"]["param"], "tool_choice");
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_error_line_or_truncation_is_an_error_event_without_done() {
    let (fake, proxy) = setup().await;
    fake.push_fault(OllamaFault::StreamError {
        message: "an error was encountered while running the model".into(),
    });
    let text = stream_text(post_chat(&proxy, MASTER, &chat_body("llama", true)).await).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["content"], "Hello");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(
        last["error"]["message"],
        "ollama: an error was encountered while running the model"
    );

    fake.push_fault(OllamaFault::Truncate);
    let text = stream_text(post_chat(&proxy, MASTER, &chat_body("llama", true)).await).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("before the answer was complete"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_key_is_sent_as_bearer_for_ollamas_cloud() {
    let fake = ollama::start(CLOUD_KEY).await.unwrap();
    let base = fake.base_url();
    let proxy = start_proxy(&fake_proxy_config(&[
        model(
            "cloud",
            "gpt-oss:120b",
            &base,
            &format!("api_key = \"{CLOUD_KEY}\""),
        ),
        model("cloud-nokey", "gpt-oss:120b", &base, ""),
    ]))
    .await;
    json_ok(post_chat(&proxy, MASTER, &chat_body("cloud", false)).await).await;
    assert_eq!(
        fake.requests()[0].headers["authorization"],
        format!("Bearer {CLOUD_KEY}")
    );
    let resp = post_chat(&proxy, MASTER, &chat_body("cloud-nokey", false)).await;
    let (_, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
}
