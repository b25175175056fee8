"""Session fixtures: start mock-upstream and the liter-llm proxy, hand out clients.

Binaries come from ``LITER_LLM_BIN`` / ``MOCK_UPSTREAM_BIN``; when unset they
default to ``target/debug/liter-llm`` / ``target/debug/mock-upstream`` under the
repository root. A missing binary fails the session (it is never skipped).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

MASTER_KEY = "sk-master-test"
TEAM_KEY = "sk-team-a"
UPSTREAM_KEY = "sk-upstream-test"
BODY_LIMIT_BYTES = 1_048_576
MOCK_CHUNKS = 6
MOCK_CHUNK_INTERVAL_MS = 30

MOCK_STARTUP_TIMEOUT_S = 15.0
PROXY_STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_GRACE_S = 5.0

_MOCK_LISTENING_RE = re.compile(r"mock-upstream listening on http://127\.0\.0\.1:(\d+)")

# Everything here talks to 127.0.0.1; never route it through an HTTP proxy that
# the CI environment might define (httpx, httpx2 and curl all honour no_proxy).
for _var in ("NO_PROXY", "no_proxy"):
    _existing = os.environ.get(_var, "")
    os.environ[_var] = ",".join(p for p in (_existing, "127.0.0.1", "localhost") if p)

# Log files of the running proxy, attached to failing test reports.
_PROXY_LOGS: list[Path] = []


# --------------------------------------------------------------------------- helpers


def _binary(env_var: str, default_rel: str) -> Path:
    raw = os.environ.get(env_var)
    path = Path(raw) if raw else REPO_ROOT / default_rel
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        source = f"${env_var}={raw!r}" if raw else f"default {default_rel} (${env_var} unset)"
        pytest.fail(
            f"compat suite needs an executable binary at {path} (from {source}); "
            f"build it with `cargo build -p liter-llm -p mock-upstream` or set ${env_var}",
            pytrace=False,
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=SHUTDOWN_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=SHUTDOWN_GRACE_S)


def _spawn(cmd: list[str], workdir: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    out_path = workdir / f"{name}.stdout.log"
    err_path = workdir / f"{name}.stderr.log"
    # Files, not pipes: a chatty child can never block on a full pipe buffer.
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir
        )
    return proc, out_path, err_path


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class MockUpstream:
    port: int
    base_url: str  # e.g. http://127.0.0.1:PORT/v1
    stdout_log: Path
    stderr_log: Path


@dataclass(frozen=True)
class Proxy:
    port: int
    base_url: str  # e.g. http://127.0.0.1:PORT  (no /v1)
    api_base: str  # e.g. http://127.0.0.1:PORT/v1
    config_path: Path
    stdout_log: Path
    stderr_log: Path
    master_key: str = MASTER_KEY
    team_key: str = TEAM_KEY


@pytest.fixture(scope="session")
def workdir():
    with tempfile.TemporaryDirectory(prefix="liter-llm-compat-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def mock_upstream(workdir: Path):
    binary = _binary("MOCK_UPSTREAM_BIN", "target/debug/mock-upstream")
    port = _free_port()
    cmd = [
        str(binary),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--api-key", UPSTREAM_KEY,
        "--chunks", str(MOCK_CHUNKS),
        "--chunk-interval-ms", str(MOCK_CHUNK_INTERVAL_MS),
    ]
    proc, out_path, err_path = _spawn(cmd, workdir, "mock-upstream")
    try:
        deadline = time.monotonic() + MOCK_STARTUP_TIMEOUT_S
        bound_port = None
        while time.monotonic() < deadline:
            m = _MOCK_LISTENING_RE.search(_read(out_path))
            if m:
                bound_port = int(m.group(1))
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if bound_port is None:
            _stop(proc)
            pytest.fail(
                "mock-upstream did not print 'mock-upstream listening on http://127.0.0.1:PORT' "
                f"within {MOCK_STARTUP_TIMEOUT_S}s (exit code {proc.returncode}).\n"
                f"command: {' '.join(cmd)}\n"
                f"--- stdout ---\n{_read(out_path)}\n--- stderr ---\n{_read(err_path)}",
                pytrace=False,
            )
        yield MockUpstream(
            port=bound_port,
            base_url=f"http://127.0.0.1:{bound_port}/v1",
            stdout_log=out_path,
            stderr_log=err_path,
        )
    finally:
        _stop(proc)


def _proxy_config(port: int, upstream: MockUpstream) -> str:
    return f"""\
[general]
master_key = "{MASTER_KEY}"

[server]
host = "127.0.0.1"
port = {port}
body_limit_bytes = {BODY_LIMIT_BYTES}

[[models]]
name = "gpt-4o"
provider_model = "openai/gpt-4o-2024-08-06"
base_url = "{upstream.base_url}"
api_key = "{UPSTREAM_KEY}"

[[models]]
name = "gpt-4o-mini"
provider_model = "openai/gpt-4o-mini"
base_url = "{upstream.base_url}"
api_key = "{UPSTREAM_KEY}"

[[keys]]
key = "{TEAM_KEY}"
description = "team A, mini only"
models = ["gpt-4o-mini"]
"""


@pytest.fixture(scope="session")
def proxy(workdir: Path, mock_upstream: MockUpstream):
    binary = _binary("LITER_LLM_BIN", "target/debug/liter-llm")
    port = _free_port()
    config_path = workdir / "liter-llm.toml"
    config_path.write_text(_proxy_config(port, mock_upstream))
    cmd = [str(binary), "api", "--config", str(config_path)]
    proc, out_path, err_path = _spawn(cmd, workdir, "liter-llm")
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROXY_STARTUP_TIMEOUT_S
        ready = False
        last = "no response yet"
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    last = f"process exited with code {proc.returncode}"
                    break
                try:
                    r = client.get(f"{base_url}/health/readiness")
                    if r.status_code == 200:
                        ready = True
                        break
                    last = f"GET /health/readiness -> {r.status_code}: {r.text[:500]}"
                except httpx.HTTPError as e:
                    last = f"GET /health/readiness failed: {e!r}"
                time.sleep(0.1)
        if not ready:
            _stop(proc)
            pytest.fail(
                f"liter-llm proxy was not ready within {PROXY_STARTUP_TIMEOUT_S}s ({last}).\n"
                f"command: {' '.join(cmd)}\n--- config ---\n{config_path.read_text()}\n"
                f"--- stderr ---\n{_read(err_path)}\n--- stdout ---\n{_read(out_path)}",
                pytrace=False,
            )
        _PROXY_LOGS[:] = [err_path, out_path]
        yield Proxy(
            port=port,
            base_url=base_url,
            api_base=f"{base_url}/v1",
            config_path=config_path,
            stdout_log=out_path,
            stderr_log=err_path,
        )
    finally:
        _PROXY_LOGS.clear()
        _stop(proc)


@pytest.fixture(scope="session")
def make_client(proxy: Proxy):
    """Factory: an OpenAI SDK client pointed at the proxy with the given key."""
    clients: list[openai.OpenAI] = []

    def _make(api_key: str) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=proxy.api_base, api_key=api_key, max_retries=0, timeout=30.0
        )
        clients.append(client)
        return client

    yield _make
    for c in clients:
        c.close()


@pytest.fixture(scope="session")
def master_client(make_client) -> openai.OpenAI:
    return make_client(MASTER_KEY)


@pytest.fixture(scope="session")
def team_client(make_client) -> openai.OpenAI:
    return make_client(TEAM_KEY)


@pytest.fixture(scope="session")
def http(proxy: Proxy):
    """Plain httpx client against the proxy root (no auth header by default)."""
    with httpx.Client(base_url=proxy.base_url, timeout=30.0, trust_env=False) as client:
        yield client


# --------------------------------------------------------------------------- reporting


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed and _PROXY_LOGS:
        for path in _PROXY_LOGS:
            text = _tail(path)
            if text:
                report.sections.append((f"liter-llm {path.name} (tail)", text))
    return report
