#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use futures_util::StreamExt;
use mock_upstream::{MockConfig, MockServer};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_live_stream_finish_then_exits_zero() {
    let mock = MockServer::start(MockConfig {
        chunks: 10,
        chunk_interval_ms: 80,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write(
        dir.path(),
        "p.toml",
        &format!(
            "[general]\nmaster_key = \"m\"\n[server]\nhost = \"127.0.0.1\"\nport = {port}\n[[models]]\nname = \"gpt-4o\"\nprovider_model = \"openai/gpt-4o\"\nbase_url = \"{}\"\napi_key = \"k\"\n",
            mock.base_url()
        ),
    );
    let mut proxy = spawn_api(dir.path(), &["-c", cfg.to_str().unwrap()], &[], port);
    let client = reqwest::Client::new();
    let resp = client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth("m")
        .json(&serde_json::json!({"model": "gpt-4o", "messages": [], "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    proxy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The listener is closed: a new connection is refused.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener still open during drain"
    );
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream was cut: {text}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let s = proxy.wait_exit(Duration::from_secs(5));
        (s, proxy.stderr())
    })
    .await
    .unwrap();
    let (status, stderr) = status;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert!(stderr.contains("draining"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_logs_never_contain_credentials() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write(
        dir.path(),
        "p.toml",
        &format!(
            "[general]\nmaster_key = \"sk-master-LEAKCHECK\"\n[server]\nhost = \"127.0.0.1\"\nport = {port}\n[[models]]\nname = \"gpt-4o\"\nprovider_model = \"openai/gpt-4o\"\nbase_url = \"{}\"\napi_key = \"sk-upstream-LEAKCHECK\"\n",
            mock.base_url()
        ),
    );
    let mut proxy = spawn_api(
        dir.path(),
        &["-c", cfg.to_str().unwrap(), "--debug"],
        &[],
        port,
    );
    let client = reqwest::Client::new();
    let body = serde_json::json!({"model": "gpt-4o", "messages": []});
    for (header, value) in [
        ("authorization", "Bearer sk-master-LEAKCHECK"),
        ("authorization", "Bearer sk-wrong-LEAKCHECK"),
        ("x-api-key", "sk-xapikey-LEAKCHECK"),
        ("api-key", "sk-azure-LEAKCHECK"),
    ] {
        let _ = client
            .post(proxy.url("/v1/chat/completions"))
            .header(header, value)
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    proxy.signal("TERM");
    let stderr = tokio::task::spawn_blocking(move || {
        proxy.wait_exit(Duration::from_secs(5));
        proxy.stderr()
    })
    .await
    .unwrap();
    assert!(stderr.contains("DEBUG"), "debug logging was on: {stderr}");
    assert!(
        stderr.to_lowercase().contains("authorization"),
        "headers are logged, redacted"
    );
    assert!(
        !stderr.contains("LEAKCHECK"),
        "a credential reached the log:\n{stderr}"
    );
}
