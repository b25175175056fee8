#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use mock_upstream::{Fault, MockConfig, MockServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server(config: MockConfig) -> MockServer {
    MockServer::start(config).await.unwrap()
}

fn url(server: &MockServer, path: &str) -> String {
    format!("{}{path}", server.base_url())
}

async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(server, path))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `data:` payloads of an SSE body, in order.
fn sse_payloads(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad frame {frame:?}"))
        })
        .collect()
}

fn json_chunks(payloads: &[&str]) -> Vec<Value> {
    payloads
        .iter()
        .filter(|p| **p != "[DONE]")
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
}

fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c["choices"].get(0)?["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn expected_content(chunks: usize) -> String {
    (0..chunks).map(|i| format!("tok{i} ")).collect()
}

async fn error_of(response: reqwest::Response) -> Value {
    response.json::<Value>().await.unwrap()["error"].clone()
}

/// Sends a raw HTTP/1.1 request and reads until the server closes the connection.
async fn raw_exchange(server: &MockServer, path: &str, body: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
        .await
        .expect("server should close the connection")
        .unwrap();
    let split = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(received[..split].to_vec()).unwrap();
    (head, received[split + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_chat_completion_has_openai_shape_and_echoes_model() {
    let server = server(MockConfig::default()).await;
    let response = post(
        &server,
        "/chat/completions",
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();

    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["system_fingerprint"], "fp_mock");
    assert_eq!(body["service_tier"], "default");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": "Hello from mock-upstream.", "refusal": null, "annotations": []})
    );
    let usage = &body["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(prompt >= 1);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_stream_chat_completion_returns_n_choices() {
    let server = server(MockConfig::default()).await;
    let body: Value = post(&server, "/chat/completions", &json!({"model": "m", "n": 3}))
        .await
        .json()
        .await
        .unwrap();
    let indices: Vec<u64> = body["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_completions_route_works_without_v1_prefix() {
    let server = server(MockConfig::default()).await;
    let response = reqwest::Client::new()
        .post(format!("http://{}/chat/completions", server.addr()))
        .json(&json!({"model": "gpt-4o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["model"], "gpt-4o");
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_carry_openai_request_id_and_processing_headers() {
    let server = server(MockConfig::default()).await;
    let response = post(&server, "/chat/completions", &json!({"model": "gpt-4o"})).await;
    let request_id = response.headers()["x-request-id"].to_str().unwrap();
    assert!(request_id.starts_with("req_"));
    assert!(request_id[4..].chars().all(|c| c.is_ascii_hexdigit()));
    let processing_ms: u64 = response.headers()["openai-processing-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(processing_ms < 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_ends_with_done_marker() {
    let server = server(MockConfig {
        chunks: 5,
        ..MockConfig::default()
    })
    .await;
    let response = post(
        &server,
        "/chat/completions",
        &json!({"model": "gpt-4o", "stream": true}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let payloads = sse_payloads(&text);
    assert_eq!(payloads.iter().filter(|p| **p == "[DONE]").count(), 1);
    let chunks = json_chunks(&payloads);
    // role chunk + 5 content chunks + finish chunk
    assert_eq!(chunks.len(), 7);
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-4o");
        assert_eq!(chunk["system_fingerprint"], "fp_mock");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert!(chunk.get("usage").is_none());
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert_eq!(content_chunks, 5);
    assert_eq!(content_of(&chunks), expected_content(5));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(server.streams_completed(), 1);
    assert_eq!(server.streams_aborted(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_usage_chunk_only_present_when_include_usage_requested() {
    let server = server(MockConfig {
        chunks: 3,
        ..MockConfig::default()
    })
    .await;

    let with_usage = post(
        &server,
        "/chat/completions",
        &json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await
    .text()
    .await
    .unwrap();
    let chunks = json_chunks(&sse_payloads(&with_usage));
    let (last, earlier) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 3);
    let usage = &last["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + 3
    );
    for chunk in earlier {
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.as_object().unwrap().contains_key("usage"));
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }

    for body in [
        json!({"model": "gpt-4o", "stream": true}),
        json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": false}}),
    ] {
        let text = post(&server, "/chat/completions", &body)
            .await
            .text()
            .await
            .unwrap();
        let chunks = json_chunks(&sse_payloads(&text));
        assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{text}");
        assert!(chunks
            .iter()
            .all(|c| c["choices"].as_array().unwrap().len() == 1));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_pacing_is_deadline_based() {
    let server = server(MockConfig {
        chunks: 10,
        chunk_interval_ms: 20,
        ..MockConfig::default()
    })
    .await;
    let started = Instant::now();
    let mut response = post(
        &server,
        "/chat/completions",
        &json!({"model": "gpt-4o", "stream": true}),
    )
    .await;
    let mut first_content_at = None;
    let mut text = String::new();
    while let Some(bytes) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&bytes).unwrap());
        if first_content_at.is_none() && text.contains("tok0") {
            first_content_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(total >= Duration::from_millis(180), "took {total:?}");
    assert!(total < Duration::from_millis(400), "took {total:?}");
    // Chunks trickle in rather than arriving as one batch at the end.
    let first = first_content_at.unwrap();
    assert!(
        first < Duration::from_millis(120),
        "first content after {first:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_completions_answer_text_completion_shapes() {
    let server = server(MockConfig {
        chunks: 4,
        ..MockConfig::default()
    })
    .await;
    let body: Value = post(
        &server,
        "/completions",
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["object"], "text_completion");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(body["choices"][0]["text"], "Hello from mock-upstream.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let text = post(
        &server,
        "/completions",
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let chunks = json_chunks(&sse_payloads(&text));
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, expected_content(4));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_return_one_deterministic_unit_vector_per_input() {
    let server = server(MockConfig::default()).await;
    let request = json!({"model": "text-embedding-3-small", "input": ["alpha", "beta", "alpha"]});
    let body: Value = post(&server, "/embeddings", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vectors: Vec<Vec<f64>> = data
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            item["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert!(vectors.iter().all(|v| v.len() == 8));
    assert_eq!(vectors[0], vectors[2]);
    assert_ne!(vectors[0], vectors[1]);
    let norm: f64 = vectors[0].iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], usage["total_tokens"]);

    let again: Value = post(&server, "/embeddings", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["data"], body["data"]);

    let single: Value = post(
        &server,
        "/embeddings",
        &json!({"model": "m", "input": "alpha"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(single["data"].as_array().unwrap().len(), 1);
    let tokens: Value = post(
        &server,
        "/embeddings",
        &json!({"model": "m", "input": [1, 2, 3]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(tokens["data"].as_array().unwrap().len(), 1);
    let token_arrays: Value = post(
        &server,
        "/embeddings",
        &json!({"model": "m", "input": [[1, 2], [3]]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(token_arrays["data"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_base64_encoding_is_little_endian_f32() {
    let server = server(MockConfig::default()).await;
    let floats: Value = post(
        &server,
        "/embeddings",
        &json!({"model": "m", "input": "hello"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let encoded: Value = post(
        &server,
        "/embeddings",
        &json!({"model": "m", "input": "hello", "encoding_format": "base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected: Vec<f32> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(decoded, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn models_endpoint_lists_model_objects() {
    let server = server(MockConfig::default()).await;
    let body: Value = reqwest::get(url(&server, "/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert!(data.len() >= 3);
    assert!(data.iter().any(|m| m["id"] == "gpt-4o"));
    for model in data {
        assert_eq!(model["object"], "model");
        assert_eq!(model["owned_by"], "mock");
        assert!(model["created"].as_u64().is_some());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_or_missing_api_key_is_rejected_with_401() {
    let server = server(MockConfig {
        expected_api_key: Some("sk-right".into()),
        ..MockConfig::default()
    })
    .await;
    let client = reqwest::Client::new();
    let request = json!({"model": "gpt-4o"});

    let wrong = client
        .post(url(&server, "/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let error = error_of(wrong).await;
    assert_eq!(error["code"], "invalid_api_key");
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["message"], "Incorrect API key provided.");

    let missing = client
        .post(url(&server, "/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(error_of(missing).await["code"], "invalid_api_key");

    let right = client
        .post(url(&server, "/chat/completions"))
        .bearer_auth("sk-right")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_request_keeps_method_path_headers_and_body_bytes() {
    let server = server(MockConfig::default()).await;
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"exact bytes"}]}"#;
    let response = reqwest::Client::new()
        .post(format!("{}?trace=1", url(&server, "/chat/completions")))
        .header("content-type", "application/json")
        .header("x-custom", "kept")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    reqwest::get(url(&server, "/models")).await.unwrap();

    assert_eq!(server.request_count(), 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.query.as_deref(), Some("trace=1"));
    assert_eq!(first.headers["x-custom"], "kept");
    assert_eq!(&first.body[..], body.as_bytes());
    assert_eq!(requests[1].method, "GET");
    assert_eq!(requests[1].path, "/v1/models");
    assert!(requests[1].body.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn recording_off_still_counts_requests() {
    let server = server(MockConfig {
        record: false,
        ..MockConfig::default()
    })
    .await;
    post(&server, "/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(server.request_count(), 1);
    assert!(server.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_json_is_rejected_with_400_invalid_request_error() {
    let server = server(MockConfig::default()).await;
    let response = reqwest::Client::new()
        .post(url(&server, "/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error = error_of(response).await;
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["param"], Value::Null);
    assert_eq!(error["code"], Value::Null);
    assert!(!error["message"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_path_is_404_and_wrong_method_is_405() {
    let server = server(MockConfig::default()).await;
    let client = reqwest::Client::new();

    let missing = client.post(url(&server, "/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let error = error_of(missing).await;
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error["message"].as_str().unwrap().contains("/v1/nope"));

    let wrong_method = client
        .get(url(&server, "/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert_eq!(
        error_of(wrong_method).await["type"],
        "invalid_request_error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_rate_one_answers_500_server_error() {
    let server = server(MockConfig {
        fail_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let response = post(&server, "/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(response.status(), 500);
    let error = error_of(response).await;
    assert_eq!(error["type"], "server_error");
    assert_eq!(
        error["message"],
        "The server had an error while processing your request."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_rate_one_answers_429_with_retry_after() {
    let server = server(MockConfig {
        rate_limit_rate: 1.0,
        retry_after_secs: 7,
        ..MockConfig::default()
    })
    .await;
    let response = post(&server, "/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let error = error_of(response).await;
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["type"], "requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_ms_holds_back_response_headers() {
    let server = server(MockConfig {
        delay_ms: 150,
        ..MockConfig::default()
    })
    .await;
    let started = Instant::now();
    let response = post(&server, "/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_fault_returns_200_json_content_type_with_unparseable_body() {
    let server = server(MockConfig {
        fault: Some(Fault::Garbage),
        ..MockConfig::default()
    })
    .await;
    for body in [json!({"model": "m"}), json!({"model": "m", "stream": true})] {
        let response = post(&server, "/chat/completions", &body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let bytes = response.bytes().await.unwrap();
        assert!(!bytes.is_empty());
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn html_error_fault_returns_502_html_page() {
    let server = server(MockConfig {
        fault: Some(Fault::HtmlError),
        ..MockConfig::default()
    })
    .await;
    let response = post(&server, "/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(response.status(), 502);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let text = response.text().await.unwrap();
    assert!(text.contains("<html>"));
    assert!(text.contains("502 Bad Gateway"));
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_stream_fault_closes_stream_without_done_marker() {
    let server = server(MockConfig {
        chunks: 6,
        fault: Some(Fault::TruncateStream),
        ..MockConfig::default()
    })
    .await;
    let mut response = post(
        &server,
        "/chat/completions",
        &json!({"model": "gpt-4o", "stream": true}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let ended_with_error = loop {
        match response.chunk().await {
            Ok(Some(bytes)) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(ended_with_error, "stream ended cleanly: {text}");
    assert!(!text.contains("[DONE]"));
    let chunks = json_chunks(&sse_payloads(&text));
    assert_eq!(content_of(&chunks), expected_content(3));
    assert_eq!(server.streams_completed(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_stream_fault_cuts_non_stream_body_short_of_content_length() {
    let server = server(MockConfig {
        fault: Some(Fault::TruncateStream),
        ..MockConfig::default()
    })
    .await;
    let (head, body) = raw_exchange(&server, "/v1/chat/completions", r#"{"model":"gpt-4o"}"#).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let claimed: usize = header(&head, "content-length").unwrap().parse().unwrap();
    assert!(!body.is_empty());
    assert!(body.len() < claimed, "{} of {claimed}", body.len());

    let via_client = post(&server, "/chat/completions", &json!({"model": "gpt-4o"})).await;
    assert!(via_client.bytes().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn stall_fault_stream_sends_first_chunk_then_nothing() {
    let server = server(MockConfig {
        fault: Some(Fault::Stall),
        ..MockConfig::default()
    })
    .await;
    let mut response = post(
        &server,
        "/chat/completions",
        &json!({"model": "gpt-4o", "stream": true}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(2), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first = std::str::from_utf8(&first).unwrap();
    let chunks = json_chunks(&sse_payloads(first));
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), response.chunk())
            .await
            .is_err(),
        "stream should stall"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stall_fault_non_stream_never_answers() {
    let server = server(MockConfig {
        fault: Some(Fault::Stall),
        ..MockConfig::default()
    })
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = client
        .post(url(&server, "/chat/completions"))
        .json(&json!({"model": "gpt-4o"}))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(server.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_dropping_a_stream_is_counted_as_aborted() {
    let server = server(MockConfig {
        chunks: 100,
        chunk_interval_ms: 20,
        ..MockConfig::default()
    })
    .await;
    let mut response = post(
        &server,
        "/chat/completions",
        &json!({"model": "gpt-4o", "stream": true}),
    )
    .await;
    response.chunk().await.unwrap().unwrap();
    drop(response);
    assert!(server.wait_for_aborted_stream(Duration::from_secs(5)).await);
    assert_eq!(server.streams_aborted(), 1);
    assert_eq!(server.streams_completed(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_leaving_a_stalled_stream_is_counted_as_aborted() {
    let server = server(MockConfig {
        fault: Some(Fault::Stall),
        ..MockConfig::default()
    })
    .await;
    let mut response = post(
        &server,
        "/chat/completions",
        &json!({"model": "gpt-4o", "stream": true}),
    )
    .await;
    response.chunk().await.unwrap().unwrap();
    drop(response);
    assert!(server.wait_for_aborted_stream(Duration::from_secs(5)).await);
    assert_eq!(server.streams_completed(), 0);
}
