//! OpenAI clients through the real proxy to a provider-faithful fake of
//! Cohere's v2 Chat API: the fake rejects what the real API rejects (and any
//! field the reference does not list), so a passing test proves the
//! translation both ways, not just the plumbing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::cohere::{self as fake, FakeCohere, Fault, TEMPLATE_TOKENS};
use serde_json::{json, Value};

const COHERE_KEY: &str = "co-test-key";

fn config(fake: &FakeCohere, api_key: &str) -> String {
    let base = fake.base_url();
    fake_proxy_config(&[
        fake_model("cmd", "cohere_chat/command-a-03-2025", &base, api_key, ""),
        fake_model(
            "cmd-missing",
            "cohere_chat/not-a-cohere-model",
            &base,
            api_key,
            "",
        ),
    ])
}

async fn setup() -> (FakeCohere, TestProxy) {
    let fake = fake::start(COHERE_KEY).await.unwrap();
    let proxy = start_proxy(&config(&fake, COHERE_KEY)).await;
    (fake, proxy)
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city, e.g. Toronto"},
            },
            "required": ["location"],
        },
    }}])
}

fn finishes_of(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_text_is_translated_both_ways() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "cmd",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello, Cohere"},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "someone",
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "cmd");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "Hello from fake Cohere! You said: Hello, Cohere"
    );
    assert_eq!(choice["finish_reason"], "stop");

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let sent = &reqs[0];
    assert_eq!(sent.path, "/v2/chat");
    assert_eq!(
        sent.body,
        json!({
            "model": "command-a-03-2025",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Hello, Cohere"},
            ],
            "max_tokens": 100,
            "temperature": 0.5,
            "p": 0.9,
            "stream": false,
        })
    );
    // The usage is what Cohere billed, not the template-inflated token count.
    let usage = &v["usage"];
    let billed_in = usage["prompt_tokens"].as_u64().unwrap();
    assert!(billed_in > 0 && billed_in < TEMPLATE_TOKENS, "{usage}");
    // One token a word in the fake: "Hello from fake Cohere! You said: Hello, Cohere".
    assert_eq!(usage["completion_tokens"], 8);
    assert_eq!(usage["total_tokens"], billed_in + 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_sees_the_bearer_key_and_never_the_client_key() {
    let (fake, proxy) = setup().await;
    let body = json!({"model": "cmd", "messages": [{"role": "user", "content": "hi"}]});
    json_ok(post_chat(&proxy, MASTER, &body).await).await;
    let req = &fake.requests()[0];
    assert_eq!(
        req.headers["authorization"],
        format!("Bearer {COHERE_KEY}").as_str()
    );
    assert!(req.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    for (name, value) in &req.headers {
        assert!(
            !value
                .as_bytes()
                .windows(MASTER.len())
                .any(|w| w == MASTER.as_bytes()),
            "the client's proxy key leaked upstream in `{name}`"
        );
    }
    assert!(!req.body.to_string().contains(MASTER));
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_text_reassembles_and_ends_with_usage_and_done() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "cmd",
        "messages": [{"role": "user", "content": "Tell me something"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let frames = sse_frames(&text);
    assert_eq!(
        content_of(&frames),
        "Hello from fake Cohere! You said: Tell me something"
    );
    let chunks: Vec<&Value> = frames.iter().filter(|f| f.is_object()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(chunks
        .iter()
        .all(|c| c["id"] == id && c["model"] == "cmd" && c["object"] == "chat.completion.chunk"));
    assert_eq!(finishes_of(&frames), ["stop"]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 9);
    assert!(usage["usage"]["prompt_tokens"].as_u64().unwrap() < TEMPLATE_TOKENS);
    assert_eq!(fake.requests()[0].body["stream"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_without_include_usage_has_no_usage_chunk() {
    let (_fake, proxy) = setup().await;
    let body = json!({
        "model": "cmd",
        "messages": [{"role": "user", "content": "quiet"}],
        "stream": true,
    });
    let frames = sse_frames(&stream_text(post_chat(&proxy, MASTER, &body).await).await);
    assert_eq!(frames.last().unwrap(), "[DONE]");
    assert!(frames
        .iter()
        .filter(|f| f.is_object())
        .all(|f| f["choices"].as_array().is_some_and(|c| !c.is_empty())));
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_non_stream_and_result_round_trip() {
    let (fake, proxy) = setup().await;
    let mut messages = vec![json!({"role": "user", "content": "What's the weather in Toronto?"})];
    let v = json_ok(
        post_chat(
            &proxy,
            MASTER,
            &json!({"model": "cmd", "messages": messages, "tools": weather_tools(), "tool_choice": "required"}),
        )
        .await,
    )
    .await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    // Cohere's tool plan is the message text.
    assert_eq!(
        choice["message"]["content"],
        "I will use the get_weather tool to help with that."
    );
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("get_weather_"));
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "Toronto"}));
    let sent = &fake.requests()[0].body;
    assert_eq!(sent["tools"], weather_tools());
    assert_eq!(sent["tool_choice"], "REQUIRED");

    // Send the call back with its result: the fake checks the call/result pairing.
    messages.push(choice["message"].clone());
    messages.push(json!({
        "role": "tool",
        "tool_call_id": calls[0]["id"],
        "content": "20 degrees and sunny",
    }));
    let v = json_ok(
        post_chat(
            &proxy,
            MASTER,
            &json!({"model": "cmd", "messages": messages, "tools": weather_tools()}),
        )
        .await,
    )
    .await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Based on the tool results: 20 degrees and sunny"
    );
    let sent = &fake.requests()[1].body;
    assert_eq!(sent["messages"][1]["role"], "assistant");
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], calls[0]["id"]);
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "20 degrees and sunny"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_tool_arguments_reassemble_to_valid_json() {
    let (_fake, proxy) = setup().await;
    let body = json!({
        "model": "cmd",
        "messages": [{"role": "user", "content": "Weather in Toronto?"}],
        "tools": weather_tools(),
        "stream": true,
    });
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    assert!(text.ends_with("data: [DONE]\n\n"));
    let frames = sse_frames(&text);
    assert_eq!(
        content_of(&frames),
        "I will use the get_weather tool to help with that."
    );
    let calls = tool_calls_of(&frames);
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0.starts_with("get_weather_"));
    assert_eq!(calls[0].1, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(args, json!({"location": "Toronto"}));
    let pieces = frames
        .iter()
        .filter(|f| {
            f["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .is_some_and(|a| !a.is_empty())
        })
        .count();
    assert!(pieces > 1, "{pieces} argument pieces");
    assert_eq!(finishes_of(&frames), ["tool_calls"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_parts_reach_the_upstream_as_image_url_items() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "cmd",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/cat.jpg"}},
        ]}],
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake Cohere! You said: What is in these images? (I see 2 image(s).)"
    );
    let content = &fake.requests()[0].body["messages"][0]["content"];
    assert_eq!(
        content,
        &json!([
            {"type": "text", "text": "What is in these images?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/cat.jpg"}},
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_schema_becomes_cohere_json_object_with_the_schema() {
    let (fake, proxy) = setup().await;
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    });
    let body = json!({
        "model": "cmd",
        "messages": [{"role": "user", "content": "Extract: Ada Lovelace, 36"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(
        content["name"].is_string() && content["age"].is_i64(),
        "{content}"
    );
    assert_eq!(
        fake.requests()[0].body["response_format"],
        json!({"type": "json_object", "json_schema": schema})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_max_tokens_map_to_finish_reasons() {
    let (fake, proxy) = setup().await;
    let body =
        json!({"model": "cmd", "messages": [{"role": "user", "content": "hi"}], "stop": "Cohere"});
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from fake ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(fake.requests()[0].body["stop_sequences"], json!(["Cohere"]));
    let body = json!({"model": "cmd", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 2});
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_400_keeps_its_message() {
    let (fake, proxy) = setup().await;
    fake.set_next_documented_error(400);
    let body = json!({"model": "cmd", "messages": [{"role": "user", "content": "hi"}]});
    let (message, v) = error_message(post_chat(&proxy, MASTER, &body).await, 400).await;
    assert_eq!(message, format!("cohere: {}", fake::documented_error(400)));
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_429_is_a_rate_limit_with_retry_after() {
    let (fake, proxy) = setup().await;
    fake.set_next_documented_error(429);
    let body = json!({"model": "cmd", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (message, v) = error_message(resp, 429).await;
    assert!(message.contains("Trial key"), "{message}");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_upstream_key_is_a_502_not_the_clients_fault() {
    let fake = fake::start(COHERE_KEY).await.unwrap();
    let proxy = start_proxy(&config(&fake, "co-wrong")).await;
    let body = json!({"model": "cmd", "messages": [{"role": "user", "content": "hi"}]});
    let (message, v) = error_message(post_chat(&proxy, MASTER, &body).await, 502).await;
    assert_eq!(message, "cohere: invalid api token");
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_upstream_model_is_a_404() {
    let (_fake, proxy) = setup().await;
    let body = json!({"model": "cmd-missing", "messages": [{"role": "user", "content": "hi"}]});
    let (message, _) = error_message(post_chat(&proxy, MASTER, &body).await, 404).await;
    assert!(message.contains("not-a-cohere-model"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_the_api_would_reject_is_refused_before_sending() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "cmd",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{oops"}},
            ]},
        ],
    });
    let (_, v) = error_message(post_chat(&proxy, MASTER, &body).await, 400).await;
    assert_eq!(
        v["error"]["param"],
        "messages[1].tool_calls[0].function.arguments"
    );
    let body = json!({"model": "cmd", "messages": [{"role": "user", "content": "q"}], "n": 2});
    let (message, _) = error_message(post_chat(&proxy, MASTER, &body).await, 400).await;
    assert_eq!(message, "n > 1 is not supported by cohere");
    assert!(fake.requests().is_empty(), "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_error_finish_becomes_an_error_frame_without_done() {
    let (fake, proxy) = setup().await;
    fake.push_fault(Fault::StreamError {
        message: "internal model error".into(),
    });
    let body =
        json!({"model": "cmd", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    assert!(!text.contains("[DONE]"), "{text}");
    let frames = sse_frames(&text);
    let last = frames.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("internal model error"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_stream_ends_with_an_error_not_done() {
    let (fake, proxy) = setup().await;
    fake.push_fault(Fault::TruncateStream);
    let body =
        json!({"model": "cmd", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    assert!(!text.contains("[DONE]"), "{text}");
    let frames = sse_frames(&text);
    assert!(frames.last().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("message-end"));
}
