#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::eventstream::encode;
use super::*;
use crate::adapters::{AwsCredentials, ProviderOptions};
use std::time::Duration;

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn ctx(model: &str) -> ChatContext<'_> {
    ChatContext {
        upstream_model: model,
        requested_model: "claude-bedrock",
        stream: false,
        include_usage: false,
    }
}

fn translate_with(body: Value, c: &ChatContext<'_>) -> Value {
    let req = BedrockAdapter
        .chat_request(&serde_json::to_vec(&body).unwrap(), c)
        .unwrap();
    serde_json::from_slice(&req.body).unwrap()
}

fn translate(body: Value) -> Value {
    translate_with(body, &ctx(MODEL))
}

fn translate_err(body: Value) -> ApiError {
    BedrockAdapter
        .chat_request(&serde_json::to_vec(&body).unwrap(), &ctx(MODEL))
        .unwrap_err()
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }})
}

// ----- request -----

#[test]
fn path_carries_the_encoded_model_id_and_operation() {
    let body = br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#;
    let req = BedrockAdapter.chat_request(body, &ctx(MODEL)).unwrap();
    assert_eq!(req.method, Method::POST);
    assert_eq!(
        req.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    let c = ChatContext {
        stream: true,
        ..ctx("us.amazon.nova-pro-v1:0")
    };
    let req = BedrockAdapter.chat_request(body, &c).unwrap();
    assert_eq!(req.path, "/model/us.amazon.nova-pro-v1%3A0/converse-stream");
    // An ARN's slashes are part of the one path segment.
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0";
    let req = BedrockAdapter.chat_request(body, &ctx(arn)).unwrap();
    assert_eq!(
        req.path,
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
}

#[test]
fn basic_body_has_system_messages_and_inference_config() {
    let body = translate(json!({
        "model": "x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            user("hi"),
        ],
        "max_tokens": 100,
        "temperature": 1.5,
        "top_p": 0.9,
        "stop": ["END", ""],
        "stream": false,
        "user": "u1",
        "logprobs": false,
    }));
    assert_eq!(
        body,
        json!({
            "system": [{"text": "Be brief."}, {"text": "Answer in French."}],
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 1.0, "topP": 0.9, "stopSequences": ["END"]},
        })
    );
    // Nothing set: no inferenceConfig at all, so the model's defaults apply.
    let body = translate(json!({"messages": [user("hi")]}));
    assert_eq!(
        body,
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    );
    let body = translate(
        json!({"messages": [user("hi")], "max_completion_tokens": 7, "max_tokens": 9, "stop": "X"}),
    );
    assert_eq!(
        body["inferenceConfig"],
        json!({"maxTokens": 7, "stopSequences": ["X"]})
    );
}

#[test]
fn blank_text_is_dropped_and_cache_control_becomes_a_cache_point() {
    let body = translate(json!({"messages": [
        {"role": "system", "content": [
            {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}},
        ]},
        {"role": "user", "content": [{"type": "text", "text": "  "}, {"type": "text", "text": "q"}]},
        {"role": "assistant", "content": ""},
        user("again"),
    ]}));
    assert_eq!(
        body["system"],
        json!([{"text": "long context"}, {"cachePoint": {"type": "default"}}])
    );
    // The empty assistant turn vanished, so the two user turns merged.
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"text": "q"}, {"text": "again"}]}])
    );
}

#[test]
fn image_data_url_becomes_bytes_with_format() {
    let body = translate(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}]}));
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"text": "What is this?"},
            {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
            {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
        ])
    );
    let body = translate(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "s3://my-bucket/cats/tabby.webp"}},
    ]}]}));
    assert_eq!(
        body["messages"][0]["content"][0],
        json!({"image": {"format": "webp", "source": {"s3Location": {"uri": "s3://my-bucket/cats/tabby.webp"}}}})
    );
}

#[test]
fn http_image_urls_and_unusable_images_are_400s_naming_the_part() {
    for url in [
        "https://example.com/cat.png",
        "http://example.com/cat.png",
        "ftp://example.com/a.png",
        "data:image/png,rawbytes",
        "data:image/bmp;base64,Qk0=",
        "data:image/png;base64,",
        "s3://bucket/no-extension",
    ] {
        let e = translate_err(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}]}));
        assert_eq!(e.kind, ErrorKind::InvalidRequest, "{url}");
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[1].image_url.url"),
            "{url}"
        );
    }
    let e = translate_err(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]}]}));
    assert!(e.message.contains("bytes"), "{}", e.message);
}

#[test]
fn file_parts_become_named_documents() {
    let body = translate(json!({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"filename": "Q3 report (final).pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "file", "file": {"filename": "Q3 report (final).pdf", "file_data": "data:text/csv;base64,YSxi"}},
        {"type": "text", "text": "Summarize"},
    ]}]}));
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"document": {"format": "pdf", "name": "Q3 report (final)", "source": {"bytes": "JVBERi0="}}},
            {"document": {"format": "csv", "name": "Q3 report (final) (2)", "source": {"bytes": "YSxi"}}},
            {"text": "Summarize"},
        ])
    );
    let e = translate_err(json!({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/zip;base64,UEsDBA=="}},
    ]}]}));
    assert_eq!(
        e.param.as_deref(),
        Some("messages[0].content[0].file.file_data")
    );
    let e = translate_err(json!({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ]}]}));
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
}

#[test]
fn tools_become_tool_specs_with_tool_choice() {
    let cases = [
        (None, None),
        (Some(json!("auto")), Some(json!({"auto": {}}))),
        (Some(json!("required")), Some(json!({"any": {}}))),
        (
            Some(json!({"type": "function", "function": {"name": "get_weather"}})),
            Some(json!({"tool": {"name": "get_weather"}})),
        ),
    ];
    for (openai, converse) in cases {
        let mut req = json!({"messages": [user("weather?")], "tools": [weather_tool(), {"type": "function", "function": {"name": "noargs"}}]});
        if let Some(c) = &openai {
            req["tool_choice"] = c.clone();
        }
        let body = translate(req);
        let mut want = json!({"tools": [
            {"toolSpec": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "inputSchema": {"json": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
            }},
            {"toolSpec": {"name": "noargs", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
        ]});
        if let Some(c) = converse {
            want["toolChoice"] = c;
        }
        assert_eq!(body["toolConfig"], want, "{openai:?}");
    }
}

#[test]
fn tool_choice_none_and_choice_without_tools_omit_tool_config() {
    let body = translate(
        json!({"messages": [user("x")], "tools": [weather_tool()], "tool_choice": "none"}),
    );
    assert!(body.get("toolConfig").is_none(), "{body}");
    let body = translate(json!({"messages": [user("x")], "tool_choice": "auto"}));
    assert!(body.get("toolConfig").is_none(), "{body}");
    let e = translate_err(
        json!({"messages": [user("x")], "tools": [weather_tool()], "tool_choice": "sometimes"}),
    );
    assert_eq!(e.param.as_deref(), Some("tool_choice"));
    let e = translate_err(
        json!({"messages": [user("x")], "tools": [{"type": "custom", "custom": {"name": "x"}}]}),
    );
    assert_eq!(e.param.as_deref(), Some("tools[0].type"));
}

fn tool_conversation() -> Value {
    json!([
        {"role": "system", "content": "be brief"},
        user("Weather in Paris and Rome?"),
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
            {"id": "tooluse_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "24C"}]},
        user("And which is warmer?"),
    ])
}

#[test]
fn tool_calls_and_results_become_tool_use_and_one_user_turn() {
    let body = translate(json!({"messages": tool_conversation(), "tools": [weather_tool()]}));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"text": "Checking."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"location": "Paris"}}},
                {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather", "input": {}}},
            ]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}},
                {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "24C"}]}},
                {"text": "And which is warmer?"},
            ]},
        ])
    );
    assert_eq!(
        body["toolConfig"]["tools"].as_array().unwrap().len(),
        1,
        "{body}"
    );
}

#[test]
fn tool_history_without_tools_declares_them_again() {
    let body = translate(json!({"messages": tool_conversation()}));
    assert_eq!(
        body["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
    );
    // "none" with a history keeps only what the history needs, and forces nothing.
    let body = translate(json!({
        "messages": tool_conversation(),
        "tools": [weather_tool(), {"type": "function", "function": {"name": "other"}}],
        "tool_choice": "none",
    }));
    let tools = body["toolConfig"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(
        tools[0]["toolSpec"]["description"],
        "Get the current weather in a given location"
    );
    assert!(body["toolConfig"].get("toolChoice").is_none());
}

#[test]
fn bad_tool_arguments_are_400s_naming_the_field() {
    let e = translate_err(json!({"messages": [
        user("x"),
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
    ]}));
    assert_eq!(
        e.param.as_deref(),
        Some("messages[1].tool_calls[0].function.arguments")
    );
    let e = translate_err(json!({"messages": [user("x"), {"role": "tool", "content": "r"}]}));
    assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
}

#[test]
fn unrepresentable_requests_are_refused() {
    assert_eq!(
        translate_err(json!({"messages": [user("x")], "n": 2}))
            .param
            .as_deref(),
        Some("n")
    );
    assert_eq!(
        translate_err(json!({"messages": [user("x")], "modalities": ["text", "audio"]}))
            .param
            .as_deref(),
        Some("modalities")
    );
    assert_eq!(
        translate_err(json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}))
            .param
            .as_deref(),
        Some("messages[0].role")
    );
    assert_eq!(
        translate_err(json!({"messages": "hi"})).param.as_deref(),
        Some("messages")
    );
}

#[test]
fn json_schema_is_a_forced_synthetic_tool() {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    let body = translate(json!({
        "messages": [user("who?")],
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    }));
    assert_eq!(
        body["toolConfig"]["toolChoice"],
        json!({"tool": {"name": JSON_TOOL_NAME}})
    );
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
        schema
    );
    // With client tools, "any" lets the model pick a real tool or answer.
    let body = translate(json!({
        "messages": [user("who?")],
        "tools": [weather_tool()],
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    }));
    assert_eq!(body["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(body["toolConfig"]["tools"].as_array().unwrap().len(), 2);

    let e = translate_err(json!({
        "messages": [user("x")],
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "array"}}},
    }));
    assert_eq!(
        e.param.as_deref(),
        Some("response_format.json_schema.schema")
    );
    let body =
        translate(json!({"messages": [user("x")], "response_format": {"type": "json_object"}}));
    assert_eq!(body["system"][0]["text"], JSON_OBJECT_INSTRUCTION);
}

#[test]
fn reasoning_effort_sets_claude_thinking_and_is_ignored_elsewhere() {
    let body = translate(json!({
        "messages": [user("think")],
        "reasoning_effort": "medium",
        "temperature": 0.2,
        "top_p": 0.5,
        "max_tokens": 1000,
    }));
    assert_eq!(
        body["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled", "budget_tokens": 4096}})
    );
    // The cap is at or below the budget, so the budget goes on top; the
    // sampling tweaks thinking refuses are dropped.
    assert_eq!(body["inferenceConfig"], json!({"maxTokens": 5096}));
    let body = translate(json!({"messages": [user("think")], "reasoning_effort": "low"}));
    assert_eq!(body["inferenceConfig"]["maxTokens"], 1024 + 4096);

    let body = translate_with(
        json!({"messages": [user("think")], "reasoning_effort": "high", "temperature": 0.2}),
        &ctx("us.amazon.nova-pro-v1:0"),
    );
    assert!(body.get("additionalModelRequestFields").is_none());
    assert_eq!(body["inferenceConfig"], json!({"temperature": 0.2}));

    let e = translate_err(json!({
        "messages": [user("x")],
        "tools": [weather_tool()],
        "tool_choice": "required",
        "reasoning_effort": "low",
    }));
    assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    let e = translate_err(json!({"messages": [user("x")], "reasoning_effort": "max"}));
    assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn thinking_blocks_lead_the_assistant_turn() {
    let body = translate(json!({"messages": [
        user("q"),
        {"role": "assistant", "content": "a", "thinking_blocks": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
        ]},
        user("q2"),
    ]}));
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
            {"reasoningContent": {"redactedContent": "opaque"}},
            {"text": "a"},
        ])
    );
}

// ----- signing -----

/// 2024-06-20T12:00:00Z.
fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_718_884_800)
}

fn options(token: Option<&str>, region: Option<&str>) -> ProviderOptions {
    ProviderOptions {
        api_version: None,
        region: region.map(str::to_string),
        aws: Some(AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
        }),
        ..ProviderOptions::default()
    }
}

fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, v)| v.to_str().unwrap())
}

#[test]
fn golden_bedrock_signature() {
    // Computed independently (Python's hmac/hashlib) for this exact request.
    let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    let s = sigv4::sign(
        &sigv4::RequestParts {
            method: "POST",
            host: "bedrock-runtime.us-east-1.amazonaws.com",
            path_and_query: "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            headers: &[("content-type", CONTENT_TYPE)],
            payload: body,
        },
        &sigv4::SigningParams {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: Some("FwoGZXIvYXdzEXAMPLETOKEN"),
            region: "us-east-1",
            service: SERVICE,
            time: fixed_time(),
        },
    );
    assert!(s
        .canonical_request
        .starts_with("POST\n/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse\n\ncontent-type:application/json\n"));
    assert_eq!(
        s.authorization,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240620/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=7222e140ae3ae9588706815a5153ea805a8ffb5c4e55f7a3030d20e3299c73c0"
    );
}

#[test]
fn signed_request_carries_authorization_date_and_token() {
    let opts = options(Some("FwoGZXIvYXdzEXAMPLETOKEN"), Some("eu-west-3"));
    let target = UpstreamTarget {
        base_url: "https://bedrock-runtime.eu-west-3.amazonaws.com",
        options: &opts,
    };
    let body = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let req = BedrockAdapter
        .request_at(body, &ctx(MODEL), &target, fixed_time())
        .unwrap();
    assert_eq!(header(&req, "x-amz-date"), Some("20240620T120000Z"));
    assert_eq!(
        header(&req, "x-amz-security-token"),
        Some("FwoGZXIvYXdzEXAMPLETOKEN")
    );
    let auth = header(&req, "authorization").unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240620/eu-west-3/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="), "{auth}");
    assert!(req
        .headers
        .iter()
        .find(|(n, _)| n == http::header::AUTHORIZATION)
        .unwrap()
        .1
        .is_sensitive());
    // The same inputs signed directly give the same header: host from the
    // base URL, path as sent, the exact body bytes.
    let direct = sigv4::sign(
        &sigv4::RequestParts {
            method: "POST",
            host: "bedrock-runtime.eu-west-3.amazonaws.com",
            path_and_query: &req.path,
            headers: &[("content-type", "application/json")],
            payload: &req.body,
        },
        &sigv4::SigningParams {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: Some("FwoGZXIvYXdzEXAMPLETOKEN"),
            region: "eu-west-3",
            service: "bedrock",
            time: fixed_time(),
        },
    );
    assert_eq!(auth, direct.authorization);
    // A second later, a different signature.
    let later = BedrockAdapter
        .request_at(
            body,
            &ctx(MODEL),
            &target,
            fixed_time() + Duration::from_secs(1),
        )
        .unwrap();
    assert_ne!(header(&later, "authorization"), Some(auth));
}

#[test]
fn host_port_and_path_prefix_of_the_base_url_are_signed() {
    let opts = options(None, Some("us-east-1"));
    let target = UpstreamTarget {
        base_url: "http://127.0.0.1:8123/proxy/bedrock/",
        options: &opts,
    };
    let body = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let req = BedrockAdapter
        .request_at(body, &ctx(MODEL), &target, fixed_time())
        .unwrap();
    assert!(header(&req, "x-amz-security-token").is_none());
    let direct = sigv4::sign(
        &sigv4::RequestParts {
            method: "POST",
            host: "127.0.0.1:8123",
            path_and_query: &format!("/proxy/bedrock{}", req.path),
            headers: &[("content-type", "application/json")],
            payload: &req.body,
        },
        &sigv4::SigningParams {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
            region: "us-east-1",
            service: "bedrock",
            time: fixed_time(),
        },
    );
    assert_eq!(
        header(&req, "authorization"),
        Some(direct.authorization.as_str())
    );
    assert!(direct.signed_headers == "content-type;host;x-amz-date");

    assert_eq!(
        split_base_url(
            "https://bedrock-runtime.us-west-2.amazonaws.com:443",
            "bedrock"
        )
        .unwrap(),
        (
            "bedrock-runtime.us-west-2.amazonaws.com".to_string(),
            String::new()
        )
    );
}

#[test]
fn region_falls_back_to_the_endpoint_host() {
    assert_eq!(
        region_from_host("bedrock-runtime.ap-southeast-2.amazonaws.com").as_deref(),
        Some("ap-southeast-2")
    );
    assert_eq!(
        region_from_host("bedrock-runtime-fips.us-gov-west-1.amazonaws.com").as_deref(),
        Some("us-gov-west-1")
    );
    assert_eq!(
        region_from_host("vpce-0abc.bedrock-runtime.eu-central-1.vpce.amazonaws.com").as_deref(),
        Some("eu-central-1")
    );
    assert_eq!(region_from_host("127.0.0.1:9000"), None);

    let opts = options(None, None);
    let target = UpstreamTarget {
        base_url: "https://bedrock-runtime.ap-southeast-2.amazonaws.com",
        options: &opts,
    };
    let req = BedrockAdapter
        .request_at(br#"{"messages":[]}"#, &ctx(MODEL), &target, fixed_time())
        .unwrap();
    assert!(header(&req, "authorization")
        .unwrap()
        .contains("/ap-southeast-2/bedrock/aws4_request"));
}

#[test]
fn missing_credentials_or_region_name_the_settings() {
    let none = ProviderOptions::default();
    let target = UpstreamTarget {
        base_url: "https://bedrock-runtime.us-east-1.amazonaws.com",
        options: &none,
    };
    let e = BedrockAdapter
        .chat_request_for(br#"{"messages":[]}"#, &ctx(MODEL), &target)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(e.message.contains("aws_access_key_id"), "{}", e.message);

    let opts = options(None, None);
    let target = UpstreamTarget {
        base_url: "http://127.0.0.1:9000",
        options: &opts,
    };
    let e = BedrockAdapter
        .chat_request_for(br#"{"messages":[]}"#, &ctx(MODEL), &target)
        .unwrap_err();
    assert!(e.message.contains("aws_region"), "{}", e.message);
}

// ----- response -----

fn respond(v: Value) -> Value {
    let out = BedrockAdapter
        .chat_response(&serde_json::to_vec(&v).unwrap(), &ctx(MODEL))
        .unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn converse_text_response_becomes_chat_completion() {
    let v = respond(json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}, {"text": " there"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 5},
        "metrics": {"latencyMs": 321},
    }));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-bedrock");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({
            "prompt_tokens": 115,
            "completion_tokens": 4,
            "total_tokens": 119,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_input_tokens": 5},
        })
    );
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ] {
        let v = respond(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
            "stopReason": stop,
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
        }));
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{stop}");
    }
}

#[test]
fn tool_use_response_becomes_tool_calls() {
    let v = respond(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": {"sign": "WZPZ"}}},
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 375, "outputTokens": 36, "totalTokens": 411},
    }));
    let msg = &v["choices"][0]["message"];
    assert!(msg["content"].is_null());
    assert_eq!(
        msg["tool_calls"],
        json!([{"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
                "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}}])
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn json_tool_and_reasoning_come_back_as_content() {
    let v = respond(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "thinking...", "signature": "sig=="}}},
            {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
            {"toolUse": {"toolUseId": "t1", "name": JSON_TOOL_NAME, "input": {"name": "Ada"}}},
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
    }));
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], "{\"name\":\"Ada\"}");
    assert!(msg.get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(msg["reasoning_content"], "thinking...");
    assert_eq!(
        msg["thinking_blocks"],
        json!([
            {"type": "thinking", "thinking": "thinking...", "signature": "sig=="},
            {"type": "redacted_thinking", "data": "b3BhcXVl"},
        ])
    );
}

#[test]
fn malformed_responses_are_bad_gateway() {
    for body in [&b"not json"[..], br#"{"output":{}}"#] {
        let e = BedrockAdapter.chat_response(body, &ctx(MODEL)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadGateway);
    }
}

// ----- errors -----

#[test]
fn http_errors_keep_their_meaning() {
    let cases = [
        (400, "ValidationException", ErrorKind::InvalidRequest, None),
        (
            403,
            "The request signature we calculated does not match",
            ErrorKind::BadGateway,
            Some("upstream_auth_failed"),
        ),
        (
            404,
            "The provided model identifier is invalid.",
            ErrorKind::NotFound,
            None,
        ),
        (
            408,
            "Model timed out",
            ErrorKind::GatewayTimeout,
            Some("upstream_timeout"),
        ),
        (
            424,
            "Model error",
            ErrorKind::BadGateway,
            Some("upstream_error"),
        ),
        (
            429,
            "Too many requests, please wait before trying again.",
            ErrorKind::RateLimited,
            Some("upstream_rate_limited"),
        ),
        (
            500,
            "Internal",
            ErrorKind::BadGateway,
            Some("upstream_error"),
        ),
        (
            503,
            "Service unavailable",
            ErrorKind::ServiceUnavailable,
            Some("upstream_unavailable"),
        ),
    ];
    for (status, message, kind, code) in cases {
        let e = BedrockAdapter.error(status, json!({"message": message}).to_string().as_bytes());
        assert_eq!(e.kind, kind, "{status}");
        assert_eq!(e.code.as_deref(), code, "{status}");
        assert_eq!(e.message, format!("bedrock: {message}"));
    }
    let e = BedrockAdapter.error(400, br#"{"Message":"capitalized"}"#);
    assert_eq!(e.message, "bedrock: capitalized");
    let e = BedrockAdapter.error(429, b"<html>slow down</html>");
    assert_eq!(e.kind, ErrorKind::RateLimited);
    let e = BedrockAdapter.error(400, b"");
    assert_eq!(e.kind, ErrorKind::BadGateway);
    assert!(e.message.contains("empty body"));
}

// ----- streaming -----

fn event(ty: &str, payload: Value) -> Vec<u8> {
    encode(
        &[
            (":event-type", ty),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

fn exception(ty: &str, message: &str) -> Vec<u8> {
    encode(
        &[
            (":exception-type", ty),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({"message": message}).to_string().as_bytes(),
    )
}

fn text_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(event(
        "messageStart",
        json!({"p": "abcd", "role": "assistant"}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}, "p": "ab"}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "lo!"}, "p": "abcdefg"}),
    ));
    s.extend(event(
        "contentBlockStop",
        json!({"contentBlockIndex": 0, "p": "a"}),
    ));
    s.extend(event(
        "messageStop",
        json!({"stopReason": "end_turn", "p": "abc"}),
    ));
    s.extend(event("metadata", json!({
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15, "cacheReadInputTokens": 4},
        "metrics": {"latencyMs": 250},
        "p": "abcdef",
    })));
    s
}

fn stream_ctx(include_usage: bool) -> ChatContext<'static> {
    ChatContext {
        upstream_model: MODEL,
        requested_model: "claude-bedrock",
        stream: true,
        include_usage,
    }
}

/// Feeds `input` in pieces of the given sizes (cycled), then finishes.
fn run_stream(input: &[u8], pieces: &[usize], include_usage: bool) -> Result<Vec<u8>, ApiError> {
    let mut t = BedrockAdapter.chat_stream(&stream_ctx(include_usage));
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = pieces[i % pieces.len()].min(rest.len()).max(1);
        t.feed(&rest[..n], &mut out)?;
        rest = &rest[n..];
        i += 1;
    }
    t.finish(&mut out)?;
    Ok(out)
}

fn frames(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .split("\n\n")
        .filter(|s| !s.is_empty())
        .map(|s| {
            let data = s.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

fn content_of(f: &[Value]) -> String {
    f.iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Chunks with the per-stream `id` and `created` blanked, for comparing runs.
fn normalized(out: &[u8]) -> Vec<Value> {
    frames(out)
        .into_iter()
        .map(|mut f| {
            if let Some(o) = f.as_object_mut() {
                o.remove("id");
                o.remove("created");
            }
            f
        })
        .collect()
}

#[test]
fn text_stream_becomes_openai_chunks_then_usage_then_done() {
    let f = frames(&run_stream(&text_stream(), &[usize::MAX], true).unwrap());
    assert_eq!(
        f[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(content_of(&f), "Hello!");
    let finishes: Vec<&Value> = f
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "stop");
    let n = f.len();
    assert_eq!(f[n - 2]["choices"], json!([]));
    assert_eq!(
        f[n - 2]["usage"],
        json!({
            "prompt_tokens": 16,
            "completion_tokens": 3,
            "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 4, "cache_creation_input_tokens": 0},
        })
    );
    assert_eq!(f[n - 1], json!("[DONE]"));
    let ids: HashSet<&str> = f[..n - 1]
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(f[..n - 1]
        .iter()
        .all(|c| c["model"] == "claude-bedrock" && c["object"] == "chat.completion.chunk"));

    let without = frames(&run_stream(&text_stream(), &[usize::MAX], false).unwrap());
    assert!(without.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(without.len(), n - 1);
}

#[test]
fn any_chunking_of_the_stream_gives_the_same_output() {
    let input = text_stream();
    let whole = normalized(&run_stream(&input, &[usize::MAX], true).unwrap());
    for size in [1, 2, 3, 5, 7, 12, 13, 16, 64] {
        assert_eq!(
            normalized(&run_stream(&input, &[size], true).unwrap()),
            whole,
            "pieces of {size}"
        );
    }
    for cut in 0..input.len() {
        let mut t = BedrockAdapter.chat_stream(&stream_ctx(true));
        let mut out = Vec::new();
        t.feed(&input[..cut], &mut out).unwrap();
        t.feed(&input[cut..], &mut out).unwrap();
        t.finish(&mut out).unwrap();
        assert_eq!(normalized(&out), whole, "cut at {cut}");
    }
}

fn tool_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(event("messageStart", json!({"role": "assistant"})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "Let me check."}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    for (block, (id, city)) in [("tooluse_a", "Paris"), ("tooluse_b", "Rome")]
        .iter()
        .enumerate()
    {
        let block = block + 1;
        s.extend(event("contentBlockStart", json!({"contentBlockIndex": block, "start": {"toolUse": {"toolUseId": id, "name": "get_weather"}}})));
        for piece in ["{\"loca", "tion\": \"", city, "\"}"] {
            s.extend(event(
                "contentBlockDelta",
                json!({"contentBlockIndex": block, "delta": {"toolUse": {"input": piece}}}),
            ));
        }
        s.extend(event(
            "contentBlockStop",
            json!({"contentBlockIndex": block}),
        ));
    }
    s.extend(event("messageStop", json!({"stopReason": "tool_use"})));
    s.extend(event("metadata", json!({"usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14}, "metrics": {"latencyMs": 1}})));
    s
}

/// Reassembles streamed tool calls as an OpenAI SDK would.
fn tool_calls_of(frames: &[Value]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for f in frames {
        let Some(tcs) = f["choices"][0]["delta"]["tool_calls"].as_array() else {
            continue;
        };
        for tc in tcs {
            let i = tc["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push(Default::default());
            }
            let c = &mut calls[i];
            if let Some(id) = tc["id"].as_str() {
                c.0 = id.to_string();
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                c.1 = n.to_string();
            }
            c.2.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    calls
}

#[test]
fn tool_stream_reassembles_parallel_calls() {
    for pieces in [&[usize::MAX][..], &[1], &[5, 11]] {
        let f = frames(&run_stream(&tool_stream(), pieces, false).unwrap());
        assert_eq!(content_of(&f), "Let me check.");
        let calls = tool_calls_of(&f);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, "tooluse_a");
        assert_eq!(calls[1].1, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[1].2).unwrap(),
            json!({"location": "Rome"})
        );
        let start = f
            .iter()
            .find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
            .unwrap();
        assert_eq!(
            start["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "tooluse_a", "type": "function",
                   "function": {"name": "get_weather", "arguments": ""}})
        );
        let finishes: Vec<&str> = f
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finishes, ["tool_calls"]);
        assert_eq!(f.last().unwrap(), &json!("[DONE]"));
    }
}

#[test]
fn json_tool_stream_is_content() {
    let mut s = Vec::new();
    s.extend(event("messageStart", json!({"role": "assistant"})));
    s.extend(event("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL_NAME}}})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"name\": "}}}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "\"Ada\"}"}}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    s.extend(event("messageStop", json!({"stopReason": "tool_use"})));
    let f = frames(&run_stream(&s, &[usize::MAX], false).unwrap());
    assert_eq!(content_of(&f), "{\"name\": \"Ada\"}");
    assert!(tool_calls_of(&f).is_empty());
    assert!(f.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
}

#[test]
fn reasoning_stream_becomes_reasoning_content_and_a_signed_block() {
    let mut s = Vec::new();
    s.extend(event("messageStart", json!({"role": "assistant"})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Let me "}}}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think."}}}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "EqQB"}}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 1, "delta": {"text": "21"}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 1})));
    s.extend(event("messageStop", json!({"stopReason": "end_turn"})));
    s.extend(event(
        "metadata",
        json!({"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}),
    ));
    let f = frames(&run_stream(&s, &[9], false).unwrap());
    let reasoning: String = f
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "Let me think.");
    let block = f
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["thinking_blocks"].as_array())
        .unwrap();
    assert_eq!(
        block[0],
        json!({"type": "thinking", "thinking": "Let me think.", "signature": "EqQB"})
    );
    assert_eq!(content_of(&f), "21");
}

#[test]
fn exception_frame_mid_stream_is_an_error_after_what_came_before() {
    let cut = {
        let mut s = Vec::new();
        s.extend(event("messageStart", json!({"role": "assistant"})));
        s.extend(event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        ));
        s
    };
    for (ty, kind) in [
        ("throttlingException", ErrorKind::RateLimited),
        ("validationException", ErrorKind::InvalidRequest),
        ("modelStreamErrorException", ErrorKind::BadGateway),
        ("internalServerException", ErrorKind::BadGateway),
        ("serviceUnavailableException", ErrorKind::ServiceUnavailable),
    ] {
        let mut input = cut.clone();
        input.extend(exception(
            ty,
            "Too many tokens, please wait before trying again.",
        ));
        input.extend(event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "lo"}}),
        ));
        let mut t = BedrockAdapter.chat_stream(&stream_ctx(true));
        let mut out = Vec::new();
        let e = t.feed(&input, &mut out).unwrap_err();
        assert_eq!(e.kind, kind, "{ty}");
        assert!(
            e.message
                .starts_with(&format!("bedrock: {ty}: Too many tokens")),
            "{}",
            e.message
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"content\":\"Hel\""), "{text}");
        assert!(!text.contains("\"content\":\"lo\""), "{text}");
        assert!(!text.contains("[DONE]"));
    }
}

#[test]
fn crc_corruption_ends_the_stream_with_an_error() {
    let input = text_stream();
    // Flip one payload byte of the second frame.
    let first_len = u32::from_be_bytes(input[..4].try_into().unwrap()) as usize;
    let mut bad = input.clone();
    bad[first_len + 20] ^= 0x20;
    let mut t = BedrockAdapter.chat_stream(&stream_ctx(true));
    let mut out = Vec::new();
    let e = t.feed(&bad, &mut out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadGateway);
    assert!(e.message.contains("CRC"), "{}", e.message);
    let text = String::from_utf8(out).unwrap();
    assert!(
        !text.contains("Hel"),
        "nothing from the corrupt frame: {text}"
    );
    assert!(!text.contains("[DONE]"));
    // And it does not recover on the next bytes.
    assert!(t
        .feed(
            &event("messageStop", json!({"stopReason": "end_turn"})),
            &mut Vec::new()
        )
        .is_err());
}

#[test]
fn truncated_stream_fails_at_finish_but_missing_metadata_does_not() {
    let input = text_stream();
    let mut sizes = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let n = u32::from_be_bytes(input[at..at + 4].try_into().unwrap()) as usize;
        sizes.push(n);
        at += n;
    }
    // Everything before messageStop: truncated.
    let before_stop: usize = sizes[..4].iter().sum();
    let mut t = BedrockAdapter.chat_stream(&stream_ctx(true));
    let mut out = Vec::new();
    t.feed(&input[..before_stop + 3], &mut out).unwrap();
    let e = t.finish(&mut out).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("upstream_stream_truncated"));
    assert!(!String::from_utf8(out).unwrap().contains("[DONE]"));

    // messageStop arrived, metadata did not: the answer is complete.
    let through_stop: usize = sizes[..5].iter().sum();
    let f = frames(&run_stream(&input[..through_stop], &[usize::MAX], true).unwrap());
    assert_eq!(f.last().unwrap(), &json!("[DONE]"));
    assert!(
        f.iter().all(|c| c["choices"] != json!([])),
        "no usage chunk without metadata"
    );

    let mut t = BedrockAdapter.chat_stream(&stream_ctx(false));
    assert!(t.finish(&mut Vec::new()).is_err());
}

#[test]
fn bytes_after_metadata_are_ignored() {
    let mut input = text_stream();
    input.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "late"}}),
    ));
    input.extend_from_slice(b"garbage");
    let f = frames(&run_stream(&input, &[usize::MAX], false).unwrap());
    assert_eq!(content_of(&f), "Hello!");
}

#[test]
fn malformed_event_payload_is_a_bad_gateway() {
    let frame = encode(
        &[
            (":event-type", "contentBlockDelta"),
            (":message-type", "event"),
        ],
        b"{oops",
    );
    let mut t = BedrockAdapter.chat_stream(&stream_ctx(false));
    let e = t.feed(&frame, &mut Vec::new()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadGateway);
}
