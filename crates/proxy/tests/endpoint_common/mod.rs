//! What the endpoint suites (`tests/endpoint_*.rs`) share: one proxy config with
//! a model per endpoint, all OpenAI-compatible deployments at one mock upstream,
//! and a hand-written multipart encoder (independent of the proxy's parser).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use mock_upstream::{MockConfig, MockServer, RecordedRequest};

/// `(client-facing name, provider/upstream model)` of every endpoint model.
pub const MODELS: &[(&str, &str)] = &[
    ("img", "openai/gpt-image-1"),
    ("dalle", "openai/dall-e-3"),
    ("tts", "openai/tts-1"),
    ("stt", "openai/whisper-1"),
    ("stt-4o", "openai/gpt-4o-transcribe"),
    ("mod", "openai/omni-moderation-latest"),
    ("chat", "openai/gpt-4o"),
    ("rerank", "hosted_vllm/BAAI/bge-reranker-v2-m3"),
    // A Mistral-style OCR server behind a generic OpenAI-compatible deployment.
    ("ocr", "openai_like/mistral-ocr-latest"),
];

/// The proxy config: `[general]` (plus `general_extra` lines), every model of
/// [`MODELS`] at `mock`, then `rest` (keys, `[server]`, ...).
pub fn endpoint_config(mock: &MockServer, general_extra: &str, rest: &str) -> String {
    let models: String = MODELS
        .iter()
        .map(|(name, provider_model)| {
            format!(
                "\n[[models]]\nname = \"{name}\"\nprovider_model = \"{provider_model}\"\nbase_url = \"{base}\"\napi_key = \"{UPSTREAM_KEY}\"\n",
                base = mock.base_url()
            )
        })
        .collect();
    format!(
        "[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 0\n{general_extra}\n{models}\n{rest}"
    )
}

/// A default mock upstream and a proxy serving every model of [`MODELS`] at it.
pub async fn start_endpoints() -> (MockServer, TestProxy) {
    let mock = start_mock(MockConfig::default()).await;
    let p = start_proxy(&endpoint_config(&mock, "", "")).await;
    (mock, p)
}

pub async fn post_json(
    p: &TestProxy,
    key: &str,
    path: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client()
        .post(p.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub const BOUNDARY: &str = "----liter-llm-test-7d2f";

/// A multipart body with the text `fields` in order, then the `file` part.
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, data)) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub async fn post_multipart(p: &TestProxy, key: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(p.url("/v1/audio/transcriptions"))
        .bearer_auth(key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Audio-like bytes that contain everything a careless multipart relay could
/// mangle: CRLFs, a line that starts like the boundary (all of it but its last
/// byte: RFC 2046 forbids the whole delimiter inside a part), NULs and high bytes.
pub fn tricky_audio(len: usize) -> Vec<u8> {
    let mut data = b"RIFF\x00\x00\xff\xfe\r\n--".to_vec();
    data.extend_from_slice(&BOUNDARY.as_bytes()[..BOUNDARY.len() - 1]);
    data.extend_from_slice(b"\r\n\r\n");
    let mut x: u32 = 0x1234_5678;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x >> 24) as u8);
    }
    data.truncate(len);
    data
}

/// The one request the mock received, after checking it carried the upstream
/// key and never the client's.
pub fn only_request(mock: &MockServer) -> RecordedRequest {
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "expected one upstream request");
    let request = requests.into_iter().next().unwrap();
    assert_eq!(
        request.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}").as_str()
    );
    assert_master_key_absent(&request.headers);
    request
}

/// `body` parsed as JSON.
pub fn json_of(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

/// Everything in `sent` except `model` equals `received`: the proxy changed the
/// model and nothing else.
pub fn assert_only_model_changed(
    sent: &serde_json::Value,
    received: &serde_json::Value,
    upstream_model: &str,
) {
    assert_eq!(received["model"], upstream_model, "{received}");
    let mut sent = sent.clone();
    sent["model"] = upstream_model.into();
    assert_eq!(&sent, received);
}

/// A 200 response's routing header names a deployment of the model.
pub fn assert_model_id(resp: &reqwest::Response) {
    let id = resp
        .headers()
        .get("x-liter-llm-model-id")
        .expect("x-liter-llm-model-id on a routed answer")
        .to_str()
        .unwrap();
    assert!(!id.is_empty());
}

/// `received` is `sent` byte for byte, except that the `"model":"<alias>"` value
/// now names `upstream`.
pub fn assert_spliced(sent: &[u8], received: &[u8], alias: &str, upstream: &str) {
    let from = format!("\"model\":\"{alias}\"");
    let to = format!("\"model\":\"{upstream}\"");
    let sent = std::str::from_utf8(sent).unwrap();
    assert_eq!(sent.matches(&from).count(), 1, "{sent}");
    assert_eq!(
        std::str::from_utf8(received).unwrap(),
        sent.replacen(&from, &to, 1)
    );
}

/// Posts `sent` to `path` with the master key and checks the answer is routed
/// and the one upstream request went to the same path with only the model
/// `alias` replaced by `upstream`: the client's JSON answer and that request.
pub async fn relayed_json(
    p: &TestProxy,
    mock: &MockServer,
    path: &str,
    sent: &serde_json::Value,
    (alias, upstream): (&str, &str),
) -> (serde_json::Value, RecordedRequest) {
    let resp = post_json(p, MASTER, path, sent).await;
    assert_model_id(&resp);
    let v = json_ok(resp).await;
    let request = only_request(mock);
    assert_eq!(request.path, path);
    assert_spliced(
        &serde_json::to_vec(sent).unwrap(),
        &request.body,
        alias,
        upstream,
    );
    (v, request)
}
