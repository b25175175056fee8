//! The Bedrock adapter through the real proxy, over loopback, against the
//! provider-faithful fake: the client speaks OpenAI, the fake only accepts
//! what Bedrock's Converse API accepts, and only with a SigV4 signature it
//! recomputes itself from what arrived.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::bedrock::{self, BedrockFault, Credentials, FakeBedrock};
use serde_json::{json, Value};

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLE//session+token==";
const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn model(name: &str, upstream: &str, base: &str, secret: &str, extra: &str) -> String {
    format!(
        r#"
[[models]]
name = "{name}"
provider_model = "bedrock/{upstream}"
base_url = "{base}"
aws_region = "{REGION}"
aws_access_key_id = "{KEY_ID}"
aws_secret_access_key = "{secret}"
{extra}
"#
    )
}

fn config(fake: &FakeBedrock) -> String {
    let base = fake.base_url();
    fake_proxy_config(&[
        model("claude-br", CLAUDE, &base, SECRET, ""),
        model("nova-br", "us.amazon.nova-pro-v1:0", &base, SECRET, ""),
        model("br-badsecret", CLAUDE, &base, "not-the-secret", ""),
        model("br-badmodel", "notamodel", &base, SECRET, ""),
    ])
}

async fn setup() -> (FakeBedrock, TestProxy) {
    let fake = bedrock::start(Credentials::new(KEY_ID, SECRET, REGION))
        .await
        .unwrap();
    let proxy = start_proxy(&config(&fake)).await;
    (fake, proxy)
}

/// Every request reached the fake SigV4-signed by the proxy, and the client's
/// proxy key never left the proxy.
fn assert_signed(fake: &FakeBedrock, token: bool) {
    let requests = fake.requests();
    assert!(!requests.is_empty());
    for r in requests {
        assert!(r.signature_valid, "the fake rejected the signature: {r:?}");
        let auth = r.headers["authorization"].to_str().unwrap();
        let date = r.headers["x-amz-date"].to_str().unwrap();
        let signed = if token {
            "content-type;host;x-amz-date;x-amz-security-token"
        } else {
            "content-type;host;x-amz-date"
        };
        assert!(
            auth.starts_with(&format!(
                "AWS4-HMAC-SHA256 Credential={KEY_ID}/{}/{REGION}/bedrock/aws4_request, SignedHeaders={signed}, Signature=",
                &date[..8]
            )),
            "{auth}"
        );
        assert_eq!(
            r.headers
                .get("x-amz-security-token")
                .map(|v| v.to_str().unwrap()),
            token.then_some(SESSION_TOKEN)
        );
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(!auth.contains(SECRET));
        assert_master_key_absent(&r.headers);
        assert!(!r.body.to_string().contains(MASTER));
        assert_eq!(date.len(), 16);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_text_is_translated_both_ways_and_signed() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude-br",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-br");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "Hello from fake Bedrock. You said: hi there"
    );
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(usage["completion_tokens"], 11);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + 11
    );

    let seen = &fake.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(seen.model_id().as_deref(), Some(CLAUDE));
    assert_eq!(
        seen.body,
        json!({
            "system": [{"text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"text": "hi there"}]}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.5},
        })
    );
    assert_signed(&fake, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_text_arrives_as_openai_chunks_with_usage_then_done() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "nova-br",
        "messages": [{"role": "user", "content": "stream me please"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = read_sse(resp).await;
    let chunks = done_chunks(&text);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "nova-br"));
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        content,
        "Hello from fake Bedrock. You said: stream me please"
    );
    // More than one content delta: it really streamed.
    assert!(
        chunks
            .iter()
            .filter(|c| c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty()))
            .count()
            > 2
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 13);
    assert!(usage["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let seen = &fake.requests()[0];
    assert_eq!(
        seen.path,
        "/model/us.amazon.nova-pro-v1%3A0/converse-stream"
    );
    assert_eq!(
        seen.body,
        json!({"messages": [{"role": "user", "content": [{"text": "stream me please"}]}]})
    );
    assert_signed(&fake, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_round_trip_non_stream() {
    let (fake, proxy) = setup().await;
    let first = json!({
        "model": "claude-br",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": city_weather_tools(),
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
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("tooluse_"), "{id}");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Oslo"}));
    let seen = &fake.requests()[0].body;
    assert_eq!(
        seen["toolConfig"],
        json!({
            "tools": [{"toolSpec": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            }}],
            "toolChoice": {"auto": {}},
        })
    );

    // The tool result goes back the OpenAI way, without `tools` this time:
    // Bedrock needs a toolConfig for the history, so the adapter declares it.
    let second = json!({
        "model": "claude-br",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            choice["message"].clone(),
            {"role": "tool", "tool_call_id": id, "content": "{\"temp_c\": 3}"},
        ],
    });
    let resp = post_chat(&proxy, MASTER, &second).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The tool get_weather returned {\"temp_c\": 3}."
    );
    let seen = &fake.requests()[1].body;
    assert_eq!(
        seen["messages"][1],
        json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": id, "name": "get_weather", "input": {"city": "Oslo"}}}]})
    );
    assert_eq!(
        seen["messages"][2],
        json!({"role": "user", "content": [{"toolResult": {"toolUseId": id, "content": [{"text": "{\"temp_c\": 3}"}]}}]})
    );
    assert_eq!(
        seen["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
    assert_signed(&fake, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_stream() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude-br",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
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
    assert!(calls.len() > 2, "arguments arrive in pieces: {text}");
    assert_eq!(calls[0]["index"], 0);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("tooluse_"));
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Oslo"})
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    // The client did not ask for usage: the proxy strips the usage chunk.
    assert!(chunks
        .iter()
        .all(|c| c.get("usage").is_none_or(|u| u.is_null())));
    assert_eq!(
        fake.requests()[0].body["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "get_weather"}})
    );
    assert_signed(&fake, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_part_reaches_the_fake_as_bytes_and_urls_are_refused() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude-br",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAE=", "detail": "low"}},
        ]}],
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake Bedrock. You said: What is in this picture? (I see 1 image(s).)"
    );
    assert_eq!(
        fake.requests()[0].body["messages"][0]["content"],
        json!([
            {"text": "What is in this picture?"},
            {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgoAAAANSUhEUgAAAAE="}}},
        ])
    );

    // Converse takes bytes, not URLs: a 400 naming the part, nothing sent.
    let body = json!({
        "model": "claude-br",
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ]}],
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    let (_, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["param"], "messages[0].content[0].image_url.url");
    assert_eq!(fake.requests().len(), 1);
    assert_signed(&fake, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_fails_the_fakes_signature_check() {
    let (fake, proxy) = setup().await;
    let resp = post_chat(&proxy, MASTER, &chat_body("br-badsecret", false)).await;
    let (message, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert_eq!(message, format!("bedrock: {}", bedrock::SIGNATURE_MISMATCH));
    assert!(!v.to_string().contains("not-the-secret"));
    let seen = &fake.requests()[0];
    assert!(!seen.signature_valid);
    // Same request, right secret: accepted. The fake really checks.
    let resp = post_chat(&proxy, MASTER, &chat_body("claude-br", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(fake.requests()[1].signature_valid);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_token_is_sent_and_signed() {
    let fake =
        bedrock::start(Credentials::new(KEY_ID, SECRET, REGION).with_session_token(SESSION_TOKEN))
            .await
            .unwrap();
    let base = fake.base_url();
    let cfg = fake_proxy_config(&[
        model(
            "with-token",
            CLAUDE,
            &base,
            SECRET,
            &format!("aws_session_token = \"{SESSION_TOKEN}\""),
        ),
        model("no-token", CLAUDE, &base, SECRET, ""),
    ]);
    let proxy = start_proxy(&cfg).await;

    let resp = post_chat(&proxy, MASTER, &chat_body("with-token", true)).await;
    assert_eq!(resp.status(), 200);
    done_chunks(&read_sse(resp).await);
    let resp = post_chat(&proxy, MASTER, &chat_body("with-token", false)).await;
    assert_eq!(resp.status(), 200);
    assert_signed(&fake, true);

    // Temporary credentials without their token are refused upstream.
    let resp = post_chat(&proxy, MASTER, &chat_body("no-token", false)).await;
    let (message, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(message.contains("security token"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_exception_mid_stream_is_an_error_event_without_done() {
    let (fake, proxy) = setup().await;
    fake.push_fault(BedrockFault::throttling());
    let resp = post_chat(&proxy, MASTER, &chat_body("claude-br", true)).await;
    assert_eq!(resp.status(), 200);
    let text = read_sse(resp).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    // What arrived before the exception was delivered.
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert!(text.contains("Hello fro"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.contains("throttlingException"), "{text}");
    assert_eq!(last["error"]["type"], "rate_limit_error", "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_or_truncated_streams_end_with_an_error_event() {
    let (fake, proxy) = setup().await;
    for fault in [BedrockFault::CorruptFrame, BedrockFault::Truncate] {
        fake.push_fault(fault.clone());
        let resp = post_chat(&proxy, MASTER, &chat_body("claude-br", true)).await;
        assert_eq!(resp.status(), 200);
        let text = read_sse(resp).await;
        let events = sse_events(&text);
        assert!(!events.iter().any(|e| e == "[DONE]"), "{fault:?}: {text}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert!(last["error"]["message"].is_string(), "{fault:?}: {text}");
        if fault == BedrockFault::CorruptFrame {
            assert!(
                last["error"]["message"].as_str().unwrap().contains("CRC"),
                "{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_are_mapped() {
    let (fake, proxy) = setup().await;

    fake.push_fault(BedrockFault::Error {
        status: 429,
        error_type: "ThrottlingException".into(),
        message: "Too many requests, please wait before trying again.".into(),
    });
    let resp = post_chat(&proxy, MASTER, &chat_body("claude-br", false)).await;
    let (message, v) = error_message(resp, 429).await;
    assert_eq!(
        message,
        "bedrock: Too many requests, please wait before trying again."
    );
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // A mid-stream exception type on a non-stream request is its HTTP status.
    fake.push_fault(BedrockFault::StreamException {
        exception_type: "serviceUnavailableException".into(),
        message: "Bedrock is unable to process your request.".into(),
    });
    let resp = post_chat(&proxy, MASTER, &chat_body("claude-br", false)).await;
    error_message(resp, 503).await;

    // The fake rejects the model id itself: a client error stays a 400.
    let resp = post_chat(&proxy, MASTER, &chat_body("br-badmodel", false)).await;
    let (message, _) = error_message(resp, 400).await;
    assert_eq!(
        message,
        "bedrock: The provided model identifier is invalid."
    );
    assert_eq!(fake.requests()[2].path, "/model/notamodel/converse");

    // A translation the adapter refuses never reaches the fake.
    let before = fake.requests().len();
    let bad_args = json!({"model": "claude-br", "messages": [
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
}

#[tokio::test(flavor = "multi_thread")]
async fn max_tokens_cut_is_a_length_finish() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "claude-br",
        "messages": [{"role": "user", "content": "tell me a long story"}],
        "max_completion_tokens": 3,
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from f");
    assert_eq!(
        fake.requests()[0].body["inferenceConfig"],
        json!({"maxTokens": 3})
    );
}
