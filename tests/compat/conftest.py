"""Session fixtures: start mock-upstream and the liter-llm proxy, hand out clients.

Binaries come from ``LITER_LLM_BIN`` / ``MOCK_UPSTREAM_BIN`` /
``FAKE_PROVIDERS_BIN``; when unset they default to ``target/debug/liter-llm`` /
``target/debug/mock-upstream`` / ``target/debug/fake-providers`` under the
repository root. A missing binary fails the session (it is never skipped).

Two proxies may run: ``proxy`` routes OpenAI models to mock-upstream;
``native_proxy`` routes ``claude`` and ``gemini`` through the native adapters to
the provider-faithful fakes (``fake_anthropic``, ``fake_gemini``), which report
what they received at ``GET /__requests``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

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

ANTHROPIC_UPSTREAM_KEY = "sk-ant-compat"
GEMINI_UPSTREAM_KEY = "gm-compat"

MOCK_STARTUP_TIMEOUT_S = 15.0
PROXY_STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_GRACE_S = 5.0

_MOCK_LISTENING_RE = re.compile(r"mock-upstream listening on http://127\.0\.0\.1:(\d+)")
_FAKE_LISTENING_RE = re.compile(r"fake-providers listening on http://127\.0\.0\.1:(\d+)")

# Everything here talks to 127.0.0.1; never route it through an HTTP proxy that
# the CI environment might define (httpx, httpx2 and curl all honour no_proxy).
for _var in ("NO_PROXY", "no_proxy"):
    _existing = os.environ.get(_var, "")
    os.environ[_var] = ",".join(p for p in (_existing, "127.0.0.1", "localhost") if p)

# Log files of running processes by the fixture that started them; a failing
# test's report gets the tails of the logs of the fixtures it used.
_FIXTURE_LOGS: dict[str, list[Path]] = {}


# --------------------------------------------------------------------------- helpers


def _binary(
    env_var: str, default_rel: str, build_hint: str = "-p liter-llm -p mock-upstream"
) -> Path:
    raw = os.environ.get(env_var)
    path = Path(raw) if raw else REPO_ROOT / default_rel
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not path.is_file() or not os.access(path, os.X_OK):
        source = f"${env_var}={raw!r}" if raw else f"default {default_rel} (${env_var} unset)"
        pytest.fail(
            f"compat suite needs an executable binary at {path} (from {source}); "
            f"build it with `cargo build {build_hint}` or set ${env_var}",
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


@contextlib.contextmanager
def _run_proxy(workdir: Path, name: str, config: Callable[[int], str]) -> Iterator[Proxy]:
    """Starts liter-llm on a free port with ``config(port)``; yields once it is ready."""
    binary = _binary("LITER_LLM_BIN", "target/debug/liter-llm")
    port = _free_port()
    config_path = workdir / f"{name}.toml"
    config_path.write_text(config(port))
    cmd = [str(binary), "api", "--config", str(config_path)]
    proc, out_path, err_path = _spawn(cmd, workdir, name)
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
                f"liter-llm proxy ({name}) was not ready within "
                f"{PROXY_STARTUP_TIMEOUT_S}s ({last}).\n"
                f"command: {' '.join(cmd)}\n--- config ---\n{config_path.read_text()}\n"
                f"--- stderr ---\n{_read(err_path)}\n--- stdout ---\n{_read(out_path)}",
                pytrace=False,
            )
        yield Proxy(
            port=port,
            base_url=base_url,
            api_base=f"{base_url}/v1",
            config_path=config_path,
            stdout_log=out_path,
            stderr_log=err_path,
        )
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def proxy(workdir: Path, mock_upstream: MockUpstream):
    with _run_proxy(workdir, "liter-llm", lambda port: _proxy_config(port, mock_upstream)) as p:
        _FIXTURE_LOGS["proxy"] = [p.stderr_log, p.stdout_log]
        try:
            yield p
        finally:
            _FIXTURE_LOGS.pop("proxy", None)


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


# --------------------------------------------------------------------------- native adapters


@dataclass(frozen=True)
class FakeProvider:
    """A running ``fake-providers`` process (one provider)."""

    provider: str  # "anthropic" | "gemini"
    api_key: str  # the upstream key it accepts
    root: str  # http://127.0.0.1:PORT
    base_url: str  # what the proxy config's base_url is, e.g. http://127.0.0.1:PORT/v1
    stdout_log: Path
    stderr_log: Path

    def requests(self) -> list[dict[str, Any]]:
        """Every request the fake received, oldest first (``GET /__requests``)."""
        r = httpx.get(f"{self.root}/__requests", timeout=10.0, trust_env=False)
        r.raise_for_status()
        recorded = r.json()
        assert isinstance(recorded, list), recorded
        return recorded


# The path each fake's API lives under, as its library ``base_url()`` reports it.
_FAKE_BASE_PATH = {"anthropic": "/v1", "gemini": "/v1beta"}


@contextlib.contextmanager
def _run_fake(workdir: Path, provider: str, api_key: str) -> Iterator[FakeProvider]:
    binary = _binary(
        "FAKE_PROVIDERS_BIN", "target/debug/fake-providers", build_hint="-p fake-providers"
    )
    cmd = [
        str(binary),
        "--provider", provider,
        "--api-key", api_key,
        "--host", "127.0.0.1",
        "--port", "0",
    ]
    proc, out_path, err_path = _spawn(cmd, workdir, f"fake-{provider}")
    try:
        deadline = time.monotonic() + MOCK_STARTUP_TIMEOUT_S
        bound_port = None
        while time.monotonic() < deadline:
            m = _FAKE_LISTENING_RE.search(_read(out_path))
            if m:
                bound_port = int(m.group(1))
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if bound_port is None:
            _stop(proc)
            pytest.fail(
                "fake-providers did not print 'fake-providers listening on http://127.0.0.1:PORT' "
                f"within {MOCK_STARTUP_TIMEOUT_S}s (exit code {proc.returncode}).\n"
                f"command: {' '.join(cmd)}\n"
                f"--- stdout ---\n{_read(out_path)}\n--- stderr ---\n{_read(err_path)}",
                pytrace=False,
            )
        root = f"http://127.0.0.1:{bound_port}"
        yield FakeProvider(
            provider=provider,
            api_key=api_key,
            root=root,
            base_url=root + _FAKE_BASE_PATH[provider],
            stdout_log=out_path,
            stderr_log=err_path,
        )
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def fake_anthropic(workdir: Path):
    with _run_fake(workdir, "anthropic", ANTHROPIC_UPSTREAM_KEY) as fake:
        _FIXTURE_LOGS["fake_anthropic"] = [fake.stderr_log]
        try:
            yield fake
        finally:
            _FIXTURE_LOGS.pop("fake_anthropic", None)


@pytest.fixture(scope="session")
def fake_gemini(workdir: Path):
    with _run_fake(workdir, "gemini", GEMINI_UPSTREAM_KEY) as fake:
        _FIXTURE_LOGS["fake_gemini"] = [fake.stderr_log]
        try:
            yield fake
        finally:
            _FIXTURE_LOGS.pop("fake_gemini", None)


def _native_proxy_config(port: int, anthropic: FakeProvider, gemini: FakeProvider) -> str:
    # max_retries = 0: a translation error must surface, not be retried away.
    return f"""\
[general]
master_key = "{MASTER_KEY}"
max_retries = 0

[server]
host = "127.0.0.1"
port = {port}
body_limit_bytes = {BODY_LIMIT_BYTES}

[[models]]
name = "claude"
provider_model = "anthropic/claude-sonnet-4-5"
base_url = "{anthropic.base_url}"
api_key = "{anthropic.api_key}"

[[models]]
name = "gemini"
provider_model = "gemini/gemini-2.5-flash"
base_url = "{gemini.base_url}"
api_key = "{gemini.api_key}"
"""


@pytest.fixture(scope="session")
def native_proxy(workdir: Path, fake_anthropic: FakeProvider, fake_gemini: FakeProvider):
    """A second proxy whose models go through the native Anthropic and Gemini adapters."""
    config = lambda port: _native_proxy_config(port, fake_anthropic, fake_gemini)  # noqa: E731
    with _run_proxy(workdir, "liter-llm-native", config) as p:
        _FIXTURE_LOGS["native_proxy"] = [p.stderr_log, p.stdout_log]
        try:
            yield p
        finally:
            _FIXTURE_LOGS.pop("native_proxy", None)


@pytest.fixture(scope="session")
def native_client(native_proxy: Proxy):
    """The official SDK, master key, pointed at the native-adapter proxy."""
    client = openai.OpenAI(
        base_url=native_proxy.api_base, api_key=MASTER_KEY, max_retries=0, timeout=30.0
    )
    yield client
    client.close()


# --------------------------------------------------------------------------- reporting


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        used = getattr(item, "fixturenames", ())
        for fixture, paths in list(_FIXTURE_LOGS.items()):
            if fixture not in used:
                continue
            for path in paths:
                text = _tail(path)
                if text:
                    report.sections.append((f"{fixture} {path.name} (tail)", text))
    return report


# --------------------------------------------------------------------------- cohere (native v2 chat)

COHERE_UPSTREAM_KEY = "co-compat"
_FAKE_BASE_PATH["cohere"] = "/v2"


@pytest.fixture(scope="session")
def fake_cohere(workdir: Path):
    """The Cohere v2 Chat fake (``fake-providers --provider cohere``)."""
    with _run_fake(workdir, "cohere", COHERE_UPSTREAM_KEY) as fake:
        _FIXTURE_LOGS["fake_cohere"] = [fake.stderr_log]
        try:
            yield fake
        finally:
            _FIXTURE_LOGS.pop("fake_cohere", None)


def _cohere_proxy_config(port: int, cohere: FakeProvider) -> str:
    # max_retries = 0: a translation error must surface, not be retried away.
    return f"""\
[general]
master_key = "{MASTER_KEY}"
max_retries = 0

[server]
host = "127.0.0.1"
port = {port}
body_limit_bytes = {BODY_LIMIT_BYTES}

[[models]]
name = "command"
provider_model = "cohere_chat/command-a-03-2025"
base_url = "{cohere.base_url}"
api_key = "{cohere.api_key}"
"""


@pytest.fixture(scope="session")
def cohere_proxy(workdir: Path, fake_cohere: FakeProvider):
    """A proxy whose ``command`` model goes through the native Cohere v2 adapter."""
    config = lambda port: _cohere_proxy_config(port, fake_cohere)  # noqa: E731
    with _run_proxy(workdir, "liter-llm-cohere", config) as p:
        _FIXTURE_LOGS["cohere_proxy"] = [p.stderr_log, p.stdout_log]
        try:
            yield p
        finally:
            _FIXTURE_LOGS.pop("cohere_proxy", None)


@pytest.fixture(scope="session")
def cohere_client(cohere_proxy: Proxy):
    """The official SDK, master key, pointed at the Cohere-adapter proxy."""
    client = openai.OpenAI(
        base_url=cohere_proxy.api_base, api_key=MASTER_KEY, max_retries=0, timeout=30.0
    )
    yield client
    client.close()


# ------------------------------------------------------------------ shared by the provider suites


@contextlib.contextmanager
def reported(fixture: str, *logs: Path) -> Iterator[None]:
    """While open, a failing test that uses ``fixture`` gets the tails of ``logs``."""
    _FIXTURE_LOGS[fixture] = list(logs)
    try:
        yield
    finally:
        _FIXTURE_LOGS.pop(fixture, None)


@contextlib.contextmanager
def run_reported_fake(workdir: Path, provider: str, api_key: str) -> Iterator[FakeProvider]:
    """``_run_fake`` for the fixture ``fake_<provider>``, its stderr in failure reports."""
    with _run_fake(workdir, provider, api_key) as fake:
        with reported(f"fake_{provider}", fake.stderr_log):
            yield fake


@contextlib.contextmanager
def run_reported_proxy(
    workdir: Path, name: str, config: Callable[[int], str], fixture: str
) -> Iterator[Proxy]:
    """``_run_proxy`` for ``fixture``, its logs in failure reports."""
    with _run_proxy(workdir, name, config) as p:
        with reported(fixture, p.stderr_log, p.stdout_log):
            yield p


def config_head(port: int, body_limit: bool = False) -> str:
    """A test proxy's ``[general]`` (the master key; ``max_retries = 0``, so a
    translation error surfaces rather than being retried away) and ``[server]``
    (loopback ``port``; with ``body_limit``, the suite's body limit)."""
    limit = f"body_limit_bytes = {BODY_LIMIT_BYTES}\n" if body_limit else ""
    return f"""\
[general]
master_key = "{MASTER_KEY}"
max_retries = 0

[server]
host = "127.0.0.1"
port = {port}
{limit}"""


def model_block(name: str, provider_model: str, base_url: str, api_key: str) -> str:
    """One ``[[models]]`` entry."""
    return (
        f'\n[[models]]\nname = "{name}"\nprovider_model = "{provider_model}"\n'
        f'base_url = "{base_url}"\napi_key = "{api_key}"\n'
    )


@contextlib.contextmanager
def sdk_client(proxy: Proxy) -> Iterator[openai.OpenAI]:
    """The official SDK against ``proxy`` with the master key and no retries."""
    client = openai.OpenAI(base_url=proxy.api_base, api_key=MASTER_KEY, max_retries=0, timeout=30.0)
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def master_http(base_url: str) -> Iterator[httpx.Client]:
    """httpx against ``base_url`` with the master key as a bearer token."""
    with httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30.0,
        trust_env=False,
    ) as client:
        yield client


class NewRequests:
    """The requests a fake receives from now on, each passed to ``check`` first."""

    def __init__(self, fake: Any, check: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.fake = fake
        self.check = check
        self.before = len(fake.requests())

    def new(self) -> list[dict[str, Any]]:
        reqs = self.fake.requests()[self.before :]
        if self.check is not None:
            for req in reqs:
                self.check(req)
        return reqs

    def only(self) -> dict[str, Any]:
        reqs = self.new()
        assert len(reqs) == 1, [(r["method"], r["path"]) for r in reqs]
        return reqs[0]


def post_fault(fake: Any, body: dict[str, Any], status: int) -> None:
    """Queues a fault at the fake's ``POST /__fault``, which answers ``status``."""
    r = httpx.post(f"{fake.root}/__fault", json=body, timeout=10.0, trust_env=False)
    assert r.status_code == status, r.text
