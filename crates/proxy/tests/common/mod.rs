//! Shared harness: a real proxy on a loopback socket in front of a mock upstream.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use liter_llm_config::Config;
use liter_llm_proxy::{build_app, serve, AppState, ServeOptions};
use mock_upstream::{MockConfig, MockServer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

pub const MASTER: &str = "sk-master-test";
pub const UPSTREAM_KEY: &str = "sk-upstream-test";

pub struct TestProxy {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<bool>>>,
}

impl TestProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Trigger a graceful shutdown and wait for the server task to end.
    pub async fn shutdown(mut self) -> bool {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().unwrap().await.unwrap().unwrap()
    }

    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn env_none() -> liter_llm_config::EnvLookup {
    Arc::new(|_| None)
}

pub fn parse(toml_text: &str) -> Config {
    Config::from_toml_str(toml_text, "test.toml", &|_| None).unwrap()
}

pub async fn start_proxy(toml_text: &str) -> TestProxy {
    start_proxy_with(parse(toml_text), Duration::from_secs(5)).await
}

pub async fn start_proxy_with(config: Config, drain: Duration) -> TestProxy {
    let state = Arc::new(AppState::build(&config, env_none()).unwrap());
    let app = build_app(state.clone(), &config.server.cors_origins).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        state.clone(),
        app,
        listener,
        ServeOptions {
            drain_timeout: drain,
        },
        async {
            let _ = rx.await;
        },
    ));
    TestProxy {
        addr,
        state,
        shutdown: Some(tx),
        server: Some(server),
    }
}

pub async fn start_mock(config: MockConfig) -> MockServer {
    MockServer::start(MockConfig {
        expected_api_key: Some(UPSTREAM_KEY.to_string()),
        ..config
    })
    .await
    .unwrap()
}

/// A config with the master key and one model `gpt-4o` → `openai/<upstream_model>` at the mock.
pub fn basic_config(mock: &MockServer, upstream_model: &str, extra: &str) -> String {
    format!(
        r#"
[general]
master_key = "{MASTER}"
max_retries = 0

[[models]]
name = "gpt-4o"
provider_model = "openai/{upstream_model}"
base_url = "{base}"
api_key = "{UPSTREAM_KEY}"
{extra}
"#,
        base = mock.base_url()
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    })
}

pub async fn post_chat(p: &TestProxy, key: &str, body: &serde_json::Value) -> reqwest::Response {
    client()
        .post(p.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Assert the OpenAI error envelope and return the message.
pub async fn error_message(resp: reqwest::Response, status: u16) -> (String, serde_json::Value) {
    assert_eq!(resp.status().as_u16(), status, "unexpected status");
    assert!(
        resp.headers().contains_key("x-request-id"),
        "errors carry x-request-id"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    let err = &v["error"];
    assert!(err["message"].is_string(), "error.message missing: {v}");
    assert!(err["type"].is_string(), "error.type missing: {v}");
    assert!(
        err.get("param").is_some() && err.get("code").is_some(),
        "param/code keys present: {v}"
    );
    (err["message"].as_str().unwrap().to_string(), v)
}

// ---------------------------------------------------------------------------
// Provider fakes (tests/provider_*.rs)
// ---------------------------------------------------------------------------

/// A proxy config with the master key, no retries and these `[[models]]` blocks.
pub fn fake_proxy_config(models: &[String]) -> String {
    format!(
        "\n[general]\nmaster_key = \"{MASTER}\"\nmax_retries = 0\n{}",
        models.concat()
    )
}

/// One `[[models]]` block with a key; `extra` is appended as raw TOML lines.
pub fn fake_model(
    name: &str,
    provider_model: &str,
    base_url: &str,
    api_key: &str,
    extra: &str,
) -> String {
    format!(
        "\n[[models]]\nname = \"{name}\"\nprovider_model = \"{provider_model}\"\nbase_url = \"{base_url}\"\napi_key = \"{api_key}\"\n{extra}"
    )
}

/// A 200 response's body as JSON.
pub async fn json_ok(resp: reqwest::Response) -> serde_json::Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "body: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A 200 `text/event-stream` response's body.
pub async fn stream_text(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    resp.text().await.unwrap()
}

/// The whole body, read chunk by chunk as it streams.
pub async fn read_sse(resp: reqwest::Response) -> String {
    use futures_util::StreamExt;
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    text
}

/// Every `data:` payload of an SSE body, `[DONE]` included.
pub fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// The `data:` payloads of an SSE body, `[DONE]` included as a string.
pub fn sse_frames(text: &str) -> Vec<serde_json::Value> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let payload = f
                .trim()
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {f:?}"));
            if payload == "[DONE]" {
                serde_json::Value::String("[DONE]".into())
            } else {
                serde_json::from_str(payload).unwrap()
            }
        })
        .collect()
}

/// The chunks of a stream that ended with `[DONE]`, parsed, without `[DONE]`.
pub fn done_chunks(text: &str) -> Vec<serde_json::Value> {
    let events = sse_events(text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// The streamed `delta.content`, concatenated.
pub fn content_of(chunks: &[serde_json::Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// (id, name, arguments) per tool-call index, as an OpenAI SDK reassembles them.
pub fn tool_calls_of(frames: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for f in frames {
        for tc in f["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            while calls.len() <= i {
                calls.push(Default::default());
            }
            if let Some(id) = tc["id"].as_str() {
                calls[i].0 = id.to_string();
            }
            if let Some(name) = tc["function"]["name"].as_str() {
                calls[i].1 = name.to_string();
            }
            calls[i]
                .2
                .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    calls
}

/// The `get_weather(city)` tool the Azure and Bedrock tests offer.
pub fn city_weather_tools() -> serde_json::Value {
    serde_json::json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }])
}

/// No header a fake received carries the client's master key.
pub fn assert_master_key_absent(headers: &reqwest::header::HeaderMap) {
    for (name, value) in headers {
        assert!(
            !value
                .as_bytes()
                .windows(MASTER.len())
                .any(|w| w == MASTER.as_bytes()),
            "the client's key leaked upstream in `{name}`"
        );
    }
}

/// POSTs `body` as JSON to `path` with the master key.
pub async fn post_master(p: &TestProxy, path: &str, body: &serde_json::Value) -> reqwest::Response {
    client()
        .post(p.url(path))
        .bearer_auth(MASTER)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A base64 embedding (standard alphabet, padded, as OpenAI encodes them) as
/// the `f32` values it packs, little-endian; decoded here, not by a library the
/// proxy might share.
pub fn base64_f32(s: &str) -> Vec<f32> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut bytes = Vec::new();
    for chunk in s.trim_end_matches('=').as_bytes().chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | u32::from(value(*c)) << (18 - 6 * i));
        bytes.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    assert_eq!(bytes.len() % 4, 0, "{s}");
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
