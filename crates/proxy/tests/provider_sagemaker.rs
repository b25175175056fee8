//! The SageMaker adapter (`sagemaker_chat/<endpoint>`) through the real proxy,
//! over loopback, against the provider-faithful fake: the client speaks
//! OpenAI, the fake is the SageMaker Runtime in front of an LMI or TGI
//! container, verifies the SigV4 signature itself (service `sagemaker`), and
//! streams real event-stream frames whose `PayloadPart`s cut the container's
//! stream at arbitrary bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::bedrock::Credentials;
use fake_providers::sagemaker::{self, FakeSagemaker, SagemakerFault};
use serde_json::{json, Value};

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLE//session+token==";
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn model(name: &str, endpoint: &str, base: &str, secret: &str, extra: &str) -> String {
    format!(
        r#"
[[models]]
name = "{name}"
provider_model = "sagemaker_chat/{endpoint}"
base_url = "{base}"
aws_region = "{REGION}"
aws_access_key_id = "{KEY_ID}"
aws_secret_access_key = "{secret}"
{extra}
"#
    )
}

async fn setup_with(creds: Credentials, extra_models: &[String]) -> (FakeSagemaker, TestProxy) {
    let fake = sagemaker::start(creds).await.unwrap();
    let base = fake.base_url();
    let mut models = vec![
        model("llama-lmi", "lmi-llama-3", &base, SECRET, ""),
        model("mistral-tgi", "tgi-mistral-7b", &base, SECRET, ""),
        model("sm-badsecret", "lmi-llama-3", &base, "not-the-secret", ""),
        model("sm-missing", "missing-endpoint", &base, SECRET, ""),
    ];
    models.extend(extra_models.iter().map(|m| m.replace("{base}", &base)));
    let proxy = start_proxy(&fake_proxy_config(&models)).await;
    (fake, proxy)
}

async fn setup() -> (FakeSagemaker, TestProxy) {
    setup_with(Credentials::new(KEY_ID, SECRET, REGION), &[]).await
}

/// Every request reached the fake SigV4-signed for `sagemaker`, and the
/// client's proxy key never left the proxy.
fn assert_signed(fake: &FakeSagemaker, token: bool) {
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
                "AWS4-HMAC-SHA256 Credential={KEY_ID}/{}/{REGION}/sagemaker/aws4_request, SignedHeaders={signed}, Signature=",
                &date[..8]
            )),
            "{auth}"
        );
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(!auth.contains(SECRET));
        assert_master_key_absent(&r.headers);
        assert!(!r.body.to_string().contains(MASTER));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_lmi_answer_is_openai_shaped_and_the_request_signed() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "llama-lmi",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "llama-lmi");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(
        choice["message"]["content"],
        "Hello from fake SageMaker. You said: hi there"
    );
    // LMI's `eos_token` is OpenAI's `stop`.
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12})
    );

    let seen = &fake.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/endpoints/lmi-llama-3/invocations");
    assert_eq!(
        seen.body,
        json!({
            "model": "lmi-llama-3",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi there"},
            ],
            "max_tokens": 100,
            "temperature": 0.5,
            "stream": false,
        })
    );
    assert_signed(&fake, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn lmi_stream_arrives_as_openai_chunks_with_usage_then_done() {
    let (fake, proxy) = setup().await;
    let body = json!({
        "model": "llama-lmi",
        "messages": [{"role": "user", "content": "stream me please"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let resp = post_chat(&proxy, MASTER, &body).await;
    let text = read_sse_checked(resp).await;
    let chunks = done_chunks(&text);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "llama-lmi"));
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        content_of(&chunks),
        "Hello from fake SageMaker. You said: stream me please"
    );
    assert!(
        chunks
            .iter()
            .filter(|c| c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty()))
            .count()
            > 3,
        "it really streamed: {text}"
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
        json!({"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12})
    );

    let seen = &fake.requests()[0];
    assert_eq!(
        seen.path,
        "/endpoints/lmi-llama-3/invocations-response-stream"
    );
    assert_eq!(
        seen.body,
        json!({
            "model": "lmi-llama-3",
            "messages": [{"role": "user", "content": "stream me please"}],
            "stream": true,
            "stream_options": {"include_usage": true},
        })
    );
    assert_signed(&fake, false);
}

/// The whole body of a 200 `text/event-stream` response, read as it streams.
async fn read_sse_checked(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    read_sse(resp).await
}

#[tokio::test(flavor = "multi_thread")]
async fn tgi_sse_stream_without_usage_ends_with_done_only() {
    let (fake, proxy) = setup().await;
    let resp = post_chat(&proxy, MASTER, &chat_body("mistral-tgi", true)).await;
    let text = read_sse_checked(resp).await;
    let chunks = done_chunks(&text);
    assert_eq!(
        content_of(&chunks),
        "Hello from fake SageMaker. You said: hi"
    );
    // The client did not ask for usage: the proxy metered it and kept it back.
    assert!(chunks.iter().all(|c| c["choices"] != json!([])), "{text}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    // The proxy still asked the container for usage, to meter the stream.
    assert_eq!(
        fake.requests()[0].body["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_round_trip_non_stream_normalises_tgi_arguments() {
    let (fake, proxy) = setup().await;
    let first = json!({
        "model": "mistral-tgi",
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
    // TGI sends the arguments as an object; OpenAI clients need a string.
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Oslo\"}");
    let id = call["id"].as_str().unwrap();
    assert_eq!(id, "0");
    assert_eq!(
        fake.requests()[0].body["tools"],
        city_weather_tools(),
        "tools reach the container as OpenAI defines them"
    );

    let second = json!({
        "model": "mistral-tgi",
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
        "The tool said: sunny, 3 C"
    );
    let seen = &fake.requests()[1].body;
    assert_eq!(seen["messages"][2]["tool_call_id"], id);
    assert_eq!(
        seen["messages"][1]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_signed(&fake, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_call_streams_reassemble_for_both_containers() {
    let (_fake, proxy) = setup().await;
    for model in ["llama-lmi", "mistral-tgi"] {
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": "Weather in Bergen?"}],
            "tools": city_weather_tools(),
            "stream": true,
        });
        let resp = post_chat(&proxy, MASTER, &body).await;
        let text = read_sse_checked(resp).await;
        let chunks = done_chunks(&text);
        let calls = tool_calls_of(&chunks);
        assert_eq!(calls.len(), 1, "{model}: {text}");
        let (id, name, arguments) = &calls[0];
        assert!(!id.is_empty(), "{model}: {text}");
        assert_eq!(name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(arguments).unwrap(),
            json!({"city": "Bergen"}),
            "{model}"
        );
        let pieces = chunks
            .iter()
            .filter(|c| c["choices"][0]["delta"]["tool_calls"].is_array())
            .count();
        assert_eq!(pieces, 2, "{model}: the arguments arrive in two pieces");
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls",
            "{model}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn image_parts_reach_the_container_unchanged() {
    let (fake, proxy) = setup().await;
    let url = format!("data:image/png;base64,{PNG_B64}");
    let body = json!({
        "model": "llama-lmi",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
    });
    let v = json_ok(post_chat(&proxy, MASTER, &body).await).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from fake SageMaker. You said: What is this? (1 image)"
    );
    assert_eq!(
        fake.requests()[0].body["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": url}})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn session_token_is_sent_and_signed() {
    let extra = format!(
        "\n[[models]]\nname = \"with-token\"\nprovider_model = \"sagemaker_chat/lmi-llama-3\"\nbase_url = \"{{base}}\"\naws_region = \"{REGION}\"\naws_access_key_id = \"{KEY_ID}\"\naws_secret_access_key = \"{SECRET}\"\naws_session_token = \"{SESSION_TOKEN}\"\n"
    );
    let (fake, proxy) = setup_with(
        Credentials::new(KEY_ID, SECRET, REGION).with_session_token(SESSION_TOKEN),
        &[extra],
    )
    .await;
    json_ok(post_chat(&proxy, MASTER, &chat_body("with-token", false)).await).await;
    assert_signed(&fake, true);
    assert_eq!(
        fake.requests()[0].headers["x-amz-security-token"],
        SESSION_TOKEN
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_fails_the_fakes_signature_check() {
    let (fake, proxy) = setup().await;
    let resp = post_chat(&proxy, MASTER, &chat_body("sm-badsecret", false)).await;
    let (message, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(message.contains("aws_*"), "{message}");
    let seen = &fake.requests()[0];
    assert!(!seen.signature_valid);
    assert!(seen.headers["authorization"]
        .to_str()
        .unwrap()
        .contains("/sagemaker/aws4_request"));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_are_mapped() {
    let (fake, proxy) = setup().await;

    // The container refused the request: SageMaker's 424 carries its 422.
    fake.push_fault(SagemakerFault::ModelError {
        original_status: 422,
        original_message: json!({"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096", "error_type": "validation"}).to_string(),
    });
    let resp = post_chat(&proxy, MASTER, &chat_body("mistral-tgi", false)).await;
    let (message, v) = error_message(resp, 400).await;
    assert_eq!(
        message,
        "sagemaker: the model container answered 422: Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096"
    );
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // The container crashed: a 502.
    fake.push_fault(SagemakerFault::ModelError {
        original_status: 500,
        original_message: "CUDA error: out of memory".into(),
    });
    let resp = post_chat(&proxy, MASTER, &chat_body("llama-lmi", false)).await;
    let (message, v) = error_message(resp, 502).await;
    assert!(message.contains("CUDA error: out of memory"), "{message}");
    assert_eq!(v["error"]["code"], "upstream_error");

    fake.push_fault(SagemakerFault::Error {
        status: 429,
        error_type: "ModelNotReadyException".into(),
        message: "Model is not ready yet.".into(),
    });
    let resp = post_chat(&proxy, MASTER, &chat_body("llama-lmi", false)).await;
    let (message, v) = error_message(resp, 429).await;
    assert_eq!(message, "sagemaker: Model is not ready yet.");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    let resp = post_chat(&proxy, MASTER, &chat_body("sm-missing", false)).await;
    let (message, _) = error_message(resp, 400).await;
    assert_eq!(
        message,
        "sagemaker: Endpoint missing-endpoint of account 123456789012 not found."
    );

    // A request the container cannot take never leaves the proxy.
    let before = fake.requests().len();
    let resp = post_chat(
        &proxy,
        MASTER,
        &json!({"model": "llama-lmi", "messages": []}),
    )
    .await;
    let (_, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["param"], "messages");
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_stream_error_mid_stream_is_an_error_event_without_done() {
    let (fake, proxy) = setup().await;
    fake.push_fault(SagemakerFault::StreamException {
        exception_type: "ModelStreamError".into(),
        error_code: Some("StreamBroken".into()),
        message: "The TCP connection between the client and the model was reset.".into(),
    });
    let resp = post_chat(&proxy, MASTER, &chat_body("llama-lmi", true)).await;
    let text = read_sse_checked(resp).await;
    let events = sse_events(&text);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    let message = last["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ModelStreamError StreamBroken") && message.contains("was reset"),
        "{text}"
    );

    fake.push_fault(SagemakerFault::StreamException {
        exception_type: "InternalStreamFailure".into(),
        error_code: None,
        message: "Internal failure.".into(),
    });
    let resp = post_chat(&proxy, MASTER, &chat_body("mistral-tgi", true)).await;
    let text = read_sse_checked(resp).await;
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(text.contains("InternalStreamFailure"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_or_corrupt_streams_end_with_an_error_event() {
    let (fake, proxy) = setup().await;
    for fault in [SagemakerFault::Truncate, SagemakerFault::CorruptFrame] {
        for model in ["llama-lmi", "mistral-tgi"] {
            fake.push_fault(fault.clone());
            let resp = post_chat(&proxy, MASTER, &chat_body(model, true)).await;
            let text = read_sse_checked(resp).await;
            let events = sse_events(&text);
            assert!(
                !events.iter().any(|e| e == "[DONE]"),
                "{fault:?} {model}: {text}"
            );
            let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
            let message = last["error"]["message"].as_str().unwrap();
            match fault {
                SagemakerFault::CorruptFrame => assert!(message.contains("CRC"), "{text}"),
                _ => assert!(message.contains("before the answer was complete"), "{text}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_sagemaker_route_is_refused_at_load_with_the_reason() {
    let block = format!(
        "\n[[models]]\nname = \"legacy\"\nprovider_model = \"sagemaker/jumpstart-dft-meta-textgeneration-llama-2-7b\"\naws_region = \"{REGION}\"\naws_access_key_id = \"{KEY_ID}\"\naws_secret_access_key = \"{SECRET}\"\n"
    );
    let err = liter_llm_proxy::AppState::build(&parse(&fake_proxy_config(&[block])), env_none())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("provider `sagemaker` is not supported")
            && err.contains("chat template")
            && err.contains("sagemaker_chat/<endpoint>"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_base_url_the_region_is_enough_and_required() {
    let block = format!(
        "\n[[models]]\nname = \"sm\"\nprovider_model = \"sagemaker_chat/my-endpoint\"\naws_region = \"eu-west-1\"\naws_access_key_id = \"{KEY_ID}\"\naws_secret_access_key = \"{SECRET}\"\n"
    );
    let state = liter_llm_proxy::AppState::build(&parse(&fake_proxy_config(&[block])), env_none());
    assert!(state.is_ok(), "{:?}", state.err().map(|e| e.to_string()));
    let no_region = format!(
        "\n[[models]]\nname = \"sm\"\nprovider_model = \"sagemaker_chat/my-endpoint\"\naws_access_key_id = \"{KEY_ID}\"\naws_secret_access_key = \"{SECRET}\"\n"
    );
    let err =
        liter_llm_proxy::AppState::build(&parse(&fake_proxy_config(&[no_region])), env_none())
            .err()
            .unwrap()
            .to_string();
    assert!(err.contains("aws_region"), "{err}");
}
