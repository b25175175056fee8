#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;

const MODEL: &str = r#"
[[models]]
name = "gpt-4o"
provider_model = "openai/gpt-4o"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-upstream-secret-value"
"#;

fn get_status(url: &str, key: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = reqwest::Client::new().get(url);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.unwrap().status().as_u16()
    })
}

#[test]
fn file_port_and_host_apply_when_flags_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write(
        dir.path(),
        "p.toml",
        &format!(
            "[general]\nmaster_key = \"m\"\n[server]\nhost = \"127.0.0.1\"\nport = {port}\n{MODEL}"
        ),
    );
    let proxy = spawn_api(dir.path(), &["--config", cfg.to_str().unwrap()], &[], port);
    assert_eq!(get_status(&proxy.url("/health/readiness"), None), 200);
}

#[test]
fn port_flag_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let file_port = free_port();
    let flag_port = free_port();
    let cfg = write(dir.path(), "p.toml", &format!("[general]\nmaster_key = \"m\"\n[server]\nhost = \"127.0.0.1\"\nport = {file_port}\n{MODEL}"));
    let proxy = spawn_api(
        dir.path(),
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--port",
            &flag_port.to_string(),
        ],
        &[],
        flag_port,
    );
    assert_eq!(get_status(&proxy.url("/health/liveness"), None), 200);
    assert!(std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err());
}

#[test]
fn master_key_env_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write(dir.path(), "p.toml", &format!("[general]\nmaster_key = \"from-file\"\n[server]\nhost = \"127.0.0.1\"\nport = {port}\n{MODEL}"));
    let proxy = spawn_api(
        dir.path(),
        &["-c", cfg.to_str().unwrap()],
        &[("LITER_LLM_MASTER_KEY", "from-env")],
        port,
    );
    assert_eq!(get_status(&proxy.url("/v1/models"), Some("from-env")), 200);
    assert_eq!(get_status(&proxy.url("/v1/models"), Some("from-file")), 401);
}

#[test]
fn master_key_flag_beats_env() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write(
        dir.path(),
        "p.toml",
        &format!("[server]\nhost = \"127.0.0.1\"\nport = {port}\n{MODEL}"),
    );
    let proxy = spawn_api(
        dir.path(),
        &["-c", cfg.to_str().unwrap(), "--master-key", "from-flag"],
        &[("LITER_LLM_MASTER_KEY", "from-env")],
        port,
    );
    assert_eq!(get_status(&proxy.url("/v1/models"), Some("from-flag")), 200);
    assert_eq!(get_status(&proxy.url("/v1/models"), Some("from-env")), 401);
}

#[test]
fn empty_master_key_env_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "p.toml", MODEL);
    let out = run(cmd(dir.path())
        .args(["api", "-c", cfg.to_str().unwrap()])
        .env("LITER_LLM_MASTER_KEY", ""));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}

#[test]
fn unset_variable_is_an_error_naming_variable_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "p.toml",
        &format!("[general]\nmaster_key = \"${{LITER_TEST_SURELY_UNSET}}\"\n{MODEL}"),
    );
    let out = run(cmd(dir.path()).args(["config", "check", "-c", cfg.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LITER_TEST_SURELY_UNSET") && err.contains("general.master_key"),
        "{err}"
    );
}

#[test]
fn interpolation_applies_to_values_only_and_keeps_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "# a comment mentioning ${{LITER_TEST_IN_COMMENT}} is never expanded\n[general]\nmaster_key = \"${{LITER_TEST_MASTER}}\"\n{MODEL}\n[[keys]]\nkey = \"k1\"\ndescription = \"${{LITER_TEST_DESC}}\"\n[[aliases]]\npattern = \"groq/*\"\nbase_url = \"${{LITER_TEST_BASE:-http://127.0.0.1:7/v1}}\"\napi_key = \"x\"\n"
    );
    let cfg = write(dir.path(), "p.toml", &text);
    let out = run(cmd(dir.path())
        .args(["config", "check", "-c", cfg.to_str().unwrap()])
        .env("LITER_TEST_MASTER", "sk-master-from-env")
        .env("LITER_TEST_DESC", r#"team "A" # not a comment"#));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // TOML may render the value as a literal or an escaped basic string.
    assert!(
        stdout.contains(r#"'team "A" # not a comment'"#)
            || stdout.contains(r#""team \"A\" # not a comment""#),
        "{stdout}"
    );
    assert!(stdout.contains("http://127.0.0.1:7/v1"), "{stdout}");
}

#[test]
fn config_check_redacts_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "p.toml",
        &format!("[general]\nmaster_key = \"sk-master-secret-value\"\n{MODEL}\n[[keys]]\nkey = \"sk-virtual-secret-value\"\n"),
    );
    let out = run(cmd(dir.path()).args(["config", "check", "-c", cfg.to_str().unwrap()]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [
        "sk-master-secret-value",
        "sk-virtual-secret-value",
        "sk-upstream-secret-value",
    ] {
        assert!(!stdout.contains(secret), "{secret} leaked:\n{stdout}");
    }
    assert!(stdout.matches("[REDACTED]").count() >= 3, "{stdout}");
    assert!(
        stdout.contains("request_timeout_secs = 600"),
        "effective defaults are shown: {stdout}"
    );
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "bad.toml",
        "[general]\nmaster_key = \"m\"\nmaster_kee = \"typo\"\n",
    );
    let out = run(cmd(dir.path()).args(["config", "check", "-c", cfg.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 3") && err.contains("master_kee"),
        "{err}"
    );
}

#[test]
fn negative_and_mistyped_values_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("[server]\nport = -1\n", "port"),
        (
            "[server]\nrequest_timeout_secs = \"soon\"\n",
            "request_timeout_secs",
        ),
        (
            "[general]\nmaster_key = \"m\"\n[files]\nbackend = \"memory\"\n",
            "[files]",
        ),
        (
            "[general]\nmaster_key = \"m\"\n[rate_limit]\nrpm = 0\n",
            "rate_limit.rpm",
        ),
        (
            "[general]\nmaster_key = \"m\"\n[budget]\nglobal_limit = -5.0\n",
            "budget.global_limit",
        ),
        (
            "[server]\nrequest_timeout_secs = 18446744073709551615\n",
            "request_timeout_secs",
        ),
        (
            "[server]\ncors_origins = [\"example.com\"]\n",
            "cors_origins",
        ),
        (
            "[general]\nmaster_key = \"m\"\nconnect_timeout_secs = 0\n",
            "general.connect_timeout_secs",
        ),
        (
            "[general]\nmaster_key = \"m\"\n[[models]]\nname = \"a\"\nprovider_model = \"openai/gpt-4o\"\nconnect_timeout_secs = 0\n",
            "models[0].connect_timeout_secs",
        ),
    ] {
        let cfg = write(dir.path(), "bad.toml", text);
        let out = run(cmd(dir.path()).args(["config", "check", "-c", cfg.to_str().unwrap()]));
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn config_is_discovered_walking_up_from_cwd() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "liter-llm-proxy.toml",
        &format!("[general]\nmaster_key = \"m\"\n{MODEL}"),
    );
    let deep = dir.path().join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    let out = run(cmd(&deep).args(["config", "check"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("liter-llm-proxy.toml: valid"), "{stdout}");
    assert!(stdout.contains("gpt-4o"));
}

#[test]
fn refuses_to_start_without_any_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "p.toml", MODEL);
    let out = run(cmd(dir.path()).args(["api", "-c", cfg.to_str().unwrap(), "--port", "0"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_unauthenticated"));
}

#[test]
fn unroutable_provider_is_rejected_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "p.toml",
        "[general]\nmaster_key = \"m\"\n[[models]]\nname = \"x\"\nprovider_model = \"nosuchprovider/foo\"\napi_key = \"k\"\n",
    );
    let out = run(cmd(dir.path()).args(["config", "check", "-c", cfg.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("models[0].provider_model") && err.contains("unknown provider"),
        "{err}"
    );
}

#[test]
fn providers_command_prints_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(cmd(dir.path()).arg("providers"));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("groq") && stdout.contains("GROQ_API_KEY"),
        "{stdout}"
    );
    assert!(stdout.contains("144 providers"), "{stdout}");
    let brave = stdout.lines().find(|l| l.starts_with("brave ")).unwrap();
    assert!(brave.contains("x_subscription_token"), "{brave}");
}

#[test]
fn providers_output_piped_into_a_closed_reader_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cmd(dir.path())
        .arg("providers")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Hang up before the child writes (it is still starting), as a reader
    // that exits early does: every write then fails with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?} {stderr}", out.status);
}
