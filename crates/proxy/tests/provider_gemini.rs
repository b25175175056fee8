//! The Gemini adapter through the real proxy, over loopback, against the
//! provider-faithful fake: the client speaks OpenAI, the fake only accepts what
//! Google's API accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::gemini::{self, FakeGemini, GeminiFault};
use serde_json::{json, Value};

const GEMINI_KEY: &str = "gm-test";

fn config(fake: &FakeGemini) -> String {
    let base = fake.base_url();
    fake_proxy_config(&[
        fake_model("gem", "gemini/gemini-2.5-flash", &base, GEMINI_KEY, ""),
        fake_model(
            "gem-missing",
            "gemini/not-a-gemini-model",
            &base,
            GEMINI_KEY,
            "",
        ),
        fake_model(
            "gem-badkey",
            "gemini/gemini-2.5-flash",
            &base,
            "gm-wrong",
            "",
        ),
    ])
}

async fn setup() -> (FakeGemini, TestProxy) {
    let fake = gemini::start(GEMINI_KEY).await.unwrap();
    let proxy = start_proxy(&config(&fake)).await;
    (fake, proxy)
}

fn weather_tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": false,
            },
        },
    }])
}

/// The proxy's credential reached the fake as `x-goog-api-key`; the client's
/// proxy key never left the proxy.
fn assert_upstream_auth(fake: &FakeGemini) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in requests {
        let goog = r.headers.get("x-goog-api-key").map(|v| v.to_str().unwrap());
        assert!(
            goog == Some(GEMINI_KEY) || goog == Some("gm-wrong"),
            "x-goog-api-key: {goog:?}"
        );
        assert!(r.headers.get("authorization").is_none(), "{:?}", r.headers);
        assert_master_key_absent(&r.headers);
        assert!(!r.query.as_deref().unwrap_or("").contains("key="));
        assert!(!r.body.to_string().contains(MASTER));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_text_is_translated_both_ways() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "gem",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "user": "someone",
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gem");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "Hello from fake Gemini. You said: hi there"
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], 12);

    let seen = &fake.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(
        seen.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(
        seen.body,
        json!({
            "contents": [{"role": "user", "parts": [{"text": "hi there"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5},
        })
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_text_arrives_as_openai_chunks_ending_with_done() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "gem",
        "messages": [{"role": "user", "content": "stream me"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = read_sse(resp).await;
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "gem"));
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello from fake Gemini. You said: stream me");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 2);
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    assert_eq!(usage["usage"]["total_tokens"], 10);

    let seen = &fake.requests()[0];
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_round_trip_non_stream() {
    let (fake, proxy) = setup().await;
    let first = json!({
        "model": "gem",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": weather_tools(),
        "tool_choice": "auto",
    });
    let resp = post_chat(&proxy, MASTER, &first).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "fake"}));
    let seen = &fake.requests()[0].body;
    assert_eq!(
        seen["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert_eq!(
        seen["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );

    // The client sends the tool result back the OpenAI way, by id only.
    let id = call["id"].as_str().unwrap();
    let second = json!({
        "model": "gem",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            choice["message"].clone(),
            {"role": "tool", "tool_call_id": id, "content": "{\"temp_c\": 3}"},
        ],
        "tools": weather_tools(),
    });
    let resp = post_chat(&proxy, MASTER, &second).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The function get_weather returned {\"temp_c\":3}."
    );
    let seen = &fake.requests()[1].body;
    assert_eq!(
        seen["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "fake"}}}]})
    );
    assert_eq!(
        seen["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 3}}}]})
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_stream() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "gem",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": weather_tools(),
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": true,
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let text = read_sse(resp).await;
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{text}");
    assert_eq!(calls[0]["index"], 0);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"fake\"}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    // The proxy asks for usage to meter the stream and strips the usage-only
    // chunk; `"usage": null` on content chunks is what OpenAI sends too.
    assert!(chunks
        .iter()
        .all(|c| c.get("usage").is_none_or(|u| u.is_null())));
    assert_eq!(
        fake.requests()[0].body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_part_reaches_the_fake_as_inline_data() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "gem",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=", "detail": "low"}},
        ]}],
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .ends_with("I also got 1 file(s): image/png."),
        "{v}"
    );
    assert_eq!(
        fake.requests()[0].body["contents"][0]["parts"],
        json!([
            {"text": "What is in this picture?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAAAAE="}},
        ])
    );
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_are_mapped() {
    let (fake, proxy) = setup().await;
    let chat = |model: &str| chat_body(model, false);

    fake.fail_next(GeminiFault::ResourceExhausted);
    let resp = post_chat(&proxy, MASTER, &chat("gem")).await;
    let (message, v) = error_message(resp, 429).await;
    assert!(message.starts_with("gemini: "), "{message}");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    fake.fail_next(GeminiFault::Unavailable);
    let resp = post_chat(&proxy, MASTER, &chat("gem")).await;
    let (message, _) = error_message(resp, 503).await;
    assert_eq!(
        message,
        "gemini: The model is overloaded. Please try again later."
    );

    // The fake rejects the request itself: a client error stays a 400.
    let bad =
        json!({"model": "gem", "messages": [{"role": "user", "content": "x"}], "temperature": 7});
    let resp = post_chat(&proxy, MASTER, &bad).await;
    let (message, _) = error_message(resp, 400).await;
    assert!(message.contains("temperature"), "{message}");

    // A model Google does not have.
    let resp = post_chat(&proxy, MASTER, &chat("gem-missing")).await;
    let (message, _) = error_message(resp, 404).await;
    assert!(message.contains("not-a-gemini-model"), "{message}");

    // Google answers a wrong key with 400 API_KEY_INVALID: the client must not
    // think its own request or key was wrong.
    let resp = post_chat(&proxy, MASTER, &chat("gem-badkey")).await;
    let (_, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(!v.to_string().contains("gm-wrong"));

    // A translation the adapter refuses never reaches the fake.
    let before = fake.requests().len();
    let bad_args = json!({"model": "gem", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
    ]});
    let resp = post_chat(&proxy, MASTER, &bad_args).await;
    let (_, v) = error_message(resp, 400).await;
    assert_eq!(
        v["error"]["param"],
        "messages[1].tool_calls[0].function.arguments"
    );
    assert_eq!(fake.requests().len(), before);
    assert_upstream_auth(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_stream_ends_with_an_error_event_not_done() {
    let (fake, proxy) = setup().await;
    fake.fail_next(GeminiFault::Truncated);
    let resp = post_chat(&proxy, MASTER, &chat_body("gem", true)).await;
    assert_eq!(resp.status(), 200);
    let text = read_sse(resp).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_blocked_is_a_content_filter_error() {
    let (fake, proxy) = setup().await;
    fake.fail_next(GeminiFault::PromptBlocked);
    let resp = post_chat(&proxy, MASTER, &chat_body("gem", false)).await;
    let (message, v) = error_message(resp, 400).await;
    assert!(message.contains("SAFETY"), "{message}");
    assert_eq!(v["error"]["code"], "content_filter");
}
