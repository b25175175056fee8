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
