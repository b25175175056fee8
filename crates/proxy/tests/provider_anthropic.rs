//! OpenAI clients through the real proxy to a provider-faithful fake of
//! Anthropic's Messages API: the fake rejects what the real API rejects, so a
//! passing test proves the translation both ways, not just the plumbing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::anthropic::{self as fake, FakeAnthropic, Fault};
use serde_json::{json, Value};

const ANTHROPIC_KEY: &str = "sk-ant-test";

fn config(fake: &FakeAnthropic, api_key: &str) -> String {
    fake_proxy_config(&[fake_model(
        "claude",
        "anthropic/claude-sonnet-4-5",
        &fake.base_url(),
        api_key,
        "",
    )])
}

async fn setup() -> (FakeAnthropic, TestProxy) {
    let fake = fake::start(ANTHROPIC_KEY).await.unwrap();
    let proxy = start_proxy(&config(&fake, ANTHROPIC_KEY)).await;
    (fake, proxy)
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    }}])
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_text_round_trip() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello, Claude"},
        ],
        "temperature": 0.5,
        "frequency_penalty": 0.3,
        "seed": 1,
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "Hello from fake Claude! You said: Hello, Claude"
    );
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let sent = &reqs[0].body;
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["system"], "You are a helpful assistant.");
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["temperature"], 0.5);
    assert!(sent.get("frequency_penalty").is_none() && sent.get("seed").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_sees_anthropic_headers_and_never_the_client_key() {
    let (fake, proxy) = setup().await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    json_ok(post_chat(&proxy, MASTER, &body).await).await;
    let req = &fake.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.headers["anthropic-version"], "2023-06-01");
    assert_eq!(req.headers["x-api-key"], ANTHROPIC_KEY);
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
    assert!(!req.headers.contains_key("authorization"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_text_reassembles_and_ends_with_done() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "Tell me something"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let frames = sse_frames(&text);
    assert_eq!(
        content_of(&frames),
        "Hello from fake Claude! You said: Tell me something"
    );
    let chunks: Vec<&Value> = frames.iter().filter(|f| f.is_object()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(chunks
        .iter()
        .all(|c| c["id"] == id && c["model"] == "claude"));
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["stop"]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(usage["usage"]["prompt_tokens_details"]["cached_tokens"].is_u64());
    assert_eq!(fake.requests()[0].body["stream"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_non_stream_and_result_round_trip() {
    let (fake, proxy) = setup().await;
    let mut messages =
        vec![json!({"role": "user", "content": "What's the weather in San Francisco?"})];
    let v = json_ok(
        post_chat(
            &proxy,
            MASTER,
            &json!({"model": "claude", "messages": messages, "tools": weather_tools(), "tool_choice": "auto"}),
        )
        .await,
    )
    .await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["location"], "San Francisco, CA");
    let sent = &fake.requests()[0].body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["location"])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));

    // Send the call back with its result: the fake checks the tool_use/tool_result pairing.
    messages.push(choice["message"].clone());
    messages.push(json!({
        "role": "tool",
        "tool_call_id": calls[0]["id"],
        "content": "15 degrees and sunny",
    }));
    let v = json_ok(
        post_chat(
            &proxy,
            MASTER,
            &json!({"model": "claude", "messages": messages, "tools": weather_tools()}),
        )
        .await,
    )
    .await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Based on the tool results: 15 degrees and sunny"
    );
    let sent = &fake.requests()[1].body;
    assert_eq!(sent["messages"][1]["role"], "assistant");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_tool_arguments_reassemble_to_valid_json() {
    let (_fake, proxy) = setup().await;
    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tools(),
        "tool_choice": "required",
        "stream": true,
    });
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    assert!(text.ends_with("data: [DONE]\n\n"));
    let frames = sse_frames(&text);
    let calls = tool_calls_of(&frames);
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0.starts_with("toolu_"));
    assert_eq!(calls[0].1, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].2).unwrap();
    assert_eq!(
        args,
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    // Arguments arrived in several pieces, not one.
    let pieces = frames
        .iter()
        .filter(|f| {
            f["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .is_some_and(|a| !a.is_empty())
        })
        .count();
    assert!(pieces > 1, "{pieces} argument pieces");
    let finish: Vec<&str> = frames
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_parts_reach_the_upstream_as_image_blocks() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE="}},
            {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/cat.jpg"}},
        ]}],
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("I see 2 image(s)"));
    let content = &fake.requests()[0].body["messages"][0]["content"];
    assert_eq!(
        content[1],
        json!({"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAAAAE=",
        }})
    );
    assert_eq!(
        content[2],
        json!({"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/cat.jpg"}})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_400_keeps_its_message() {
    let (fake, proxy) = setup().await;
    fake.set_next_documented_error(400);
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    let (message, _) = error_message(post_chat(&proxy, MASTER, &body).await, 400).await;
    assert!(
        message.contains("anthropic: max_tokens: Field required"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_429_is_a_rate_limit_with_retry_after() {
    let (fake, proxy) = setup().await;
    fake.set_next_documented_error(429);
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (message, v) = error_message(resp, 429).await;
    assert!(message.contains("rate limit"), "{message}");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_529_overloaded_is_a_503() {
    let (fake, proxy) = setup().await;
    fake.set_next_documented_error(529);
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    let (message, _) = error_message(post_chat(&proxy, MASTER, &body).await, 503).await;
    assert!(message.contains("Overloaded"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_upstream_key_is_a_502_not_the_clients_fault() {
    let fake = fake::start(ANTHROPIC_KEY).await.unwrap();
    let proxy = start_proxy(&config(&fake, "sk-ant-wrong")).await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    let (message, v) = error_message(post_chat(&proxy, MASTER, &body).await, 502).await;
    assert!(message.contains("invalid x-api-key"), "{message}");
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_the_api_would_reject_is_refused_before_sending() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude",
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
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "q"}], "n": 2});
    let (message, _) = error_message(post_chat(&proxy, MASTER, &body).await, 400).await;
    assert_eq!(message, "n > 1 is not supported by anthropic");
    assert!(fake.requests().is_empty(), "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_error_event_becomes_an_error_frame_without_done() {
    let (fake, proxy) = setup().await;
    fake.push_fault(Fault::StreamError {
        error_type: "overloaded_error".into(),
        message: "Overloaded".into(),
    });
    let body =
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    assert!(!text.contains("[DONE]"), "{text}");
    let frames = sse_frames(&text);
    let last = frames.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_stream_ends_with_an_error_not_done() {
    let (fake, proxy) = setup().await;
    fake.push_fault(Fault::TruncateStream);
    let body =
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let text = stream_text(post_chat(&proxy, MASTER, &body).await).await;
    assert!(!text.contains("[DONE]"), "{text}");
    let frames = sse_frames(&text);
    assert!(frames.last().unwrap()["error"]["message"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn json_schema_uses_structured_output() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "Extract: Ada Lovelace, 36"}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "person",
            "strict": true,
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"],
                "additionalProperties": false,
            },
        }},
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(
        content["name"].is_string() && content["age"].is_i64(),
        "{content}"
    );
    let sent = &fake.requests()[0].body;
    assert_eq!(sent["output_config"]["format"]["type"], "json_schema");
}

#[tokio::test(flavor = "multi_thread")]
async fn reasoning_effort_enables_thinking_and_returns_reasoning_content() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "Think first"}],
        "reasoning_effort": "low",
        "max_completion_tokens": 512,
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    let msg = &v["choices"][0]["message"];
    assert!(msg["reasoning_content"]
        .as_str()
        .unwrap()
        .contains("step by step"));
    assert!(msg["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello from fake Claude!"));
    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    assert!(sent["max_tokens"].as_u64().unwrap() > 1024);

    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "Think first"}],
        "reasoning_effort": "low",
        "stream": true,
    });
    let frames = sse_frames(&stream_text(post_chat(&proxy, MASTER, &body).await).await);
    let reasoning: String = frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, msg["reasoning_content"].as_str().unwrap());
}
