"""The SageMaker (`sagemaker_chat`) and Ollama native (`ollama_chat`) adapters
through the official SDK.

The `openai` SDK talks to a liter-llm proxy whose models are served by the
`sagemaker` and `ollama` adapters. Upstream are the provider-faithful fakes
from `tools/fake-providers`:

- `--provider sagemaker` is the SageMaker Runtime in front of an LMI container
  (or TGI's Messages API for endpoint names containing `tgi`). It verifies each
  request's SigV4 signature for service `sagemaker` against the credentials it
  was started with, checks the chat body the containers take, and streams real
  `application/vnd.amazon.eventstream` frames whose `PayloadPart`s cut the
  container's JSON lines or SSE at arbitrary bytes.
- `--provider ollama` is Ollama's `/api/chat`, started as a local server (no
  key): it accepts only Ollama's `ChatRequest` fields and streams NDJSON.

Each test checks what the SDK parsed and what the fake received
(`GET /__requests`).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import conftest
from conftest import MASTER_KEY

AWS_KEY_ID = "AKIDSAGEMAKEREXAMPLE"
AWS_SECRET = "sagemaker/Secret+Key/EXAMPLEKEY0123456789"
AWS_REGION = "us-west-2"
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
WEATHER_TOOLS = [
    {
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
    }
]
SM_REPLY = "Hello from fake SageMaker. You said: "
OL_REPLY = "Hello from fake Ollama. You said: "


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Fake:
    root: str  # http://127.0.0.1:PORT, also the proxy's base_url

    def requests(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.root}/__requests", timeout=10.0, trust_env=False)
        r.raise_for_status()
        return r.json()

    def fault(self, **fault: Any) -> None:
        r = httpx.post(f"{self.root}/__fault", json=fault, timeout=10.0, trust_env=False)
        assert r.status_code == 204, r.text


@contextlib.contextmanager
def _run_fake(workdir: Path, provider: str, extra: list[str]) -> Iterator[tuple[Fake, Path]]:
    binary = conftest._binary(
        "FAKE_PROVIDERS_BIN", "target/debug/fake-providers", build_hint="-p fake-providers"
    )
    cmd = [str(binary), "--provider", provider, *extra, "--host", "127.0.0.1", "--port", "0"]
    proc, out_path, err_path = conftest._spawn(cmd, workdir, f"fake-{provider}")
    try:
        deadline = time.monotonic() + conftest.MOCK_STARTUP_TIMEOUT_S
        port = None
        while time.monotonic() < deadline and proc.poll() is None:
            m = conftest._FAKE_LISTENING_RE.search(conftest._read(out_path))
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if port is None:
            conftest._stop(proc)
            pytest.fail(
                f"fake-providers --provider {provider} did not start (exit code {proc.returncode}).\n"
                f"command: {' '.join(cmd)}\n--- stderr ---\n{conftest._read(err_path)}",
                pytrace=False,
            )
        yield Fake(root=f"http://127.0.0.1:{port}"), err_path
    finally:
        conftest._stop(proc)


@pytest.fixture(scope="module")
def fake_sagemaker(workdir: Path):
    extra = [
        "--api-key", "unused-by-sagemaker",
        "--aws-access-key-id", AWS_KEY_ID,
        "--aws-secret-access-key", AWS_SECRET,
        "--aws-region", AWS_REGION,
    ]
    with _run_fake(workdir, "sagemaker", extra) as (fake, err_log):
        conftest._FIXTURE_LOGS["fake_sagemaker"] = [err_log]
        try:
            yield fake
        finally:
            conftest._FIXTURE_LOGS.pop("fake_sagemaker", None)


@pytest.fixture(scope="module")
def fake_ollama(workdir: Path):
    # An empty key: a local Ollama, which must receive no Authorization at all.
    with _run_fake(workdir, "ollama", ["--api-key", ""]) as (fake, err_log):
        conftest._FIXTURE_LOGS["fake_ollama"] = [err_log]
        try:
            yield fake
        finally:
            conftest._FIXTURE_LOGS.pop("fake_ollama", None)


def _config(port: int, sm: Fake, ol: Fake) -> str:
    aws = (
        f'aws_region = "{AWS_REGION}"\n'
        f'aws_access_key_id = "{AWS_KEY_ID}"\n'
        f'aws_secret_access_key = "{AWS_SECRET}"\n'
    )
    # max_retries = 0: a translation error must surface, not be retried away.
    return f"""\
[general]
master_key = "{MASTER_KEY}"
max_retries = 0

[server]
host = "127.0.0.1"
port = {port}

[[models]]
name = "sm-llama"
provider_model = "sagemaker_chat/lmi-llama-3-8b"
base_url = "{sm.root}"
{aws}
[[models]]
name = "sm-mistral"
provider_model = "sagemaker_chat/tgi-mistral-7b"
base_url = "{sm.root}"
{aws}
[[models]]
name = "local-llama"
provider_model = "ollama_chat/llama3.2"
base_url = "{ol.root}"
"""


@pytest.fixture(scope="module")
def client(workdir: Path, fake_sagemaker: Fake, fake_ollama: Fake):
    config = lambda port: _config(port, fake_sagemaker, fake_ollama)  # noqa: E731
    with conftest._run_proxy(workdir, "liter-llm-sagemaker-ollama", config) as p:
        conftest._FIXTURE_LOGS["sagemaker_ollama_proxy"] = [p.stderr_log, p.stdout_log]
        c = openai.OpenAI(base_url=p.api_base, api_key=MASTER_KEY, max_retries=0, timeout=30.0)
        try:
            yield c
        finally:
            c.close()
            conftest._FIXTURE_LOGS.pop("sagemaker_ollama_proxy", None)


class Seen:
    """A fake's requests made during one test."""

    def __init__(self, fake: Fake) -> None:
        self.fake = fake
        self._before = len(fake.requests())

    def new(self) -> list[dict[str, Any]]:
        return self.fake.requests()[self._before :]

    def only(self) -> dict[str, Any]:
        reqs = self.new()
        assert len(reqs) == 1, [(r["method"], r["path"]) for r in reqs]
        return reqs[0]


@pytest.fixture
def sm_seen(fake_sagemaker: Fake, client) -> Seen:
    return Seen(fake_sagemaker)


@pytest.fixture
def ol_seen(fake_ollama: Fake, client) -> Seen:
    return Seen(fake_ollama)


def _assert_sigv4(req: dict[str, Any]) -> None:
    headers = req["headers"]
    assert req["signature_valid"] is True, req
    date = headers["x-amz-date"]
    assert headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/{date[:8]}/{AWS_REGION}/sagemaker/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature="
    ), headers["authorization"]
    assert AWS_SECRET not in json.dumps(headers)
    assert not [n for n, v in headers.items() if MASTER_KEY in v], "client key leaked upstream"


def _assert_local_ollama(req: dict[str, Any]) -> None:
    assert req["path"] == "/api/chat"
    assert "authorization" not in req["headers"], req["headers"]


# --------------------------------------------------------------------------- helpers


def _stream(client: openai.OpenAI, **kwargs) -> list[ChatCompletionChunk]:
    with client.chat.completions.create(stream=True, **kwargs) as stream:
        chunks = list(stream)
    assert chunks, "the stream produced no chunks"
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert len({c.id for c in chunks}) == 1, [c.id for c in chunks]
    return chunks


def _content(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(ch.delta.content or "" for c in chunks for ch in c.choices)


def _finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]


def _stream_tool_calls(chunks: list[ChatCompletionChunk]) -> list[dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for ch in c.choices:
            for d in ch.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                if d.id:
                    call["id"] = d.id
                if d.function is not None:
                    if d.function.name:
                        call["name"] += d.function.name
                    if d.function.arguments:
                        call["arguments"] += d.function.arguments
    return [calls[i] for i in sorted(calls)]


# --------------------------------------------------------------------------- SageMaker


def test_sagemaker_non_stream_text(client, sm_seen):
    resp = client.chat.completions.create(
        model="sm-llama",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=200,
        temperature=0.2,
    )
    assert isinstance(resp, ChatCompletion)
    assert resp.model == "sm-llama"
    choice = resp.choices[0]
    assert choice.message.content == SM_REPLY + "Say hello."
    assert choice.finish_reason == "stop"  # LMI said `eos_token`
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens > 0

    req = sm_seen.only()
    _assert_sigv4(req)
    assert req["path"] == "/endpoints/lmi-llama-3-8b/invocations"
    assert req["body"] == {
        "model": "lmi-llama-3-8b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        "max_tokens": 200,
        "temperature": 0.2,
        "stream": False,
    }


def test_sagemaker_stream_with_usage(client, sm_seen):
    chunks = _stream(
        client,
        model="sm-llama",
        messages=[{"role": "user", "content": "Stream a greeting."}],
        stream_options={"include_usage": True},
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert _content(chunks) == SM_REPLY + "Stream a greeting."
    assert _finish_reasons(chunks) == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 9

    req = sm_seen.only()
    _assert_sigv4(req)
    assert req["path"] == "/endpoints/lmi-llama-3-8b/invocations-response-stream"
    assert req["body"]["stream"] is True
    assert req["body"]["stream_options"] == {"include_usage": True}


def test_sagemaker_tgi_stream_without_usage(client, sm_seen):
    chunks = _stream(
        client, model="sm-mistral", messages=[{"role": "user", "content": "Hi TGI."}]
    )
    assert _content(chunks) == SM_REPLY + "Hi TGI."
    assert _finish_reasons(chunks) == ["stop"]
    assert all(c.choices for c in chunks), "no usage chunk was asked for"
    _assert_sigv4(sm_seen.only())


def test_sagemaker_tool_call_then_result(client, sm_seen):
    question = [{"role": "user", "content": "What is the weather in Oslo?"}]
    resp = client.chat.completions.create(
        model="sm-mistral", messages=question, tools=WEATHER_TOOLS, tool_choice="auto"
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    # TGI answered with an object; the SDK needs (and got) a JSON string.
    assert json.loads(call.function.arguments) == {"city": "Oslo"}

    resp = client.chat.completions.create(
        model="sm-mistral",
        messages=question
        + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=WEATHER_TOOLS,
    )
    assert resp.choices[0].message.content == "The tool said: sunny"
    first, second = sm_seen.new()
    assert first["body"]["tools"] == WEATHER_TOOLS
    assert second["body"]["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "sunny",
    }


def test_sagemaker_tool_call_stream(client, sm_seen):
    chunks = _stream(
        client,
        model="sm-llama",
        messages=[{"role": "user", "content": "What is the weather in Bergen?"}],
        tools=WEATHER_TOOLS,
    )
    (call,) = _stream_tool_calls(chunks)
    assert call["name"] == "get_weather"
    assert call["id"]
    assert json.loads(call["arguments"]) == {"city": "Bergen"}
    assert _finish_reasons(chunks) == ["tool_calls"]
    _assert_sigv4(sm_seen.only())


def test_sagemaker_image_part_reaches_the_container(client, sm_seen):
    url = f"data:image/png;base64,{PNG_B64}"
    resp = client.chat.completions.create(
        model="sm-llama",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe it."},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == SM_REPLY + "Describe it. (1 image)"
    assert sm_seen.only()["body"]["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": url},
    }


def test_sagemaker_container_error_is_a_bad_request(client, fake_sagemaker, sm_seen):
    fake_sagemaker.fault(
        kind="model_error",
        original_status=422,
        original_message=json.dumps(
            {"error": "Input validation error: `max_new_tokens` must be > 0", "error_type": "validation"}
        ),
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="sm-mistral", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["message"] == (
        "sagemaker: the model container answered 422: "
        "Input validation error: `max_new_tokens` must be > 0"
    )
    sm_seen.only()


def test_sagemaker_stream_exception_raises_without_done(client, fake_sagemaker, sm_seen):
    fake_sagemaker.fault(
        kind="stream_exception",
        exception_type="ModelStreamError",
        error_code="ModelInvocationTimeExceeded",
        message="The model did not finish in time.",
    )
    with pytest.raises(openai.APIError) as info:
        with client.chat.completions.create(
            model="sm-llama",
            messages=[{"role": "user", "content": "Stream a greeting."}],
            stream=True,
        ) as stream:
            for _ in stream:
                pass
    assert "ModelInvocationTimeExceeded" in str(info.value)
    sm_seen.only()


def test_sagemaker_truncated_stream_raises(client, fake_sagemaker, sm_seen):
    fake_sagemaker.fault(kind="truncate")
    with pytest.raises(openai.APIError) as info:
        with client.chat.completions.create(
            model="sm-llama",
            messages=[{"role": "user", "content": "Stream a long greeting please."}],
            stream=True,
        ) as stream:
            for _ in stream:
                pass
    assert "before the answer was complete" in str(info.value)


# --------------------------------------------------------------------------- Ollama


def test_ollama_non_stream_text(client, ol_seen):
    resp = client.chat.completions.create(
        model="local-llama",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=50,
        temperature=0.1,
        seed=7,
    )
    assert isinstance(resp, ChatCompletion)
    assert resp.model == "local-llama"
    assert resp.choices[0].message.content == OL_REPLY + "Say hello."
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 4 and resp.usage.completion_tokens == 8

    req = ol_seen.only()
    _assert_local_ollama(req)
    assert req["body"] == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        "options": {"temperature": 0.1, "num_predict": 50, "seed": 7},
        "stream": False,
    }


def test_ollama_stream_with_usage(client, ol_seen):
    chunks = _stream(
        client,
        model="local-llama",
        messages=[{"role": "user", "content": "Stream a greeting."}],
        stream_options={"include_usage": True},
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert _content(chunks) == OL_REPLY + "Stream a greeting."
    assert _finish_reasons(chunks) == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 9

    req = ol_seen.only()
    _assert_local_ollama(req)
    assert req["body"]["stream"] is True


def test_ollama_tool_call_then_result(client, ol_seen):
    question = [{"role": "user", "content": "What is the weather in Oslo?"}]
    resp = client.chat.completions.create(
        model="local-llama", messages=question, tools=WEATHER_TOOLS
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Oslo"}

    resp = client.chat.completions.create(
        model="local-llama",
        messages=question
        + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=WEATHER_TOOLS,
    )
    assert resp.choices[0].message.content == "The get_weather tool said: sunny"
    _, second = ol_seen.new()
    assert second["body"]["messages"][1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    ]
    assert second["body"]["messages"][2] == {
        "role": "tool",
        "content": "sunny",
        "tool_name": "get_weather",
    }


def test_ollama_tool_call_stream(client, ol_seen):
    chunks = _stream(
        client,
        model="local-llama",
        messages=[{"role": "user", "content": "What is the weather in Bergen?"}],
        tools=WEATHER_TOOLS,
    )
    (call,) = _stream_tool_calls(chunks)
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Bergen"}
    assert _finish_reasons(chunks) == ["tool_calls"]
    _assert_local_ollama(ol_seen.only())


def test_ollama_image_part_becomes_base64(client, ol_seen):
    resp = client.chat.completions.create(
        model="local-llama",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe it."},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                ],
            }
        ],
    )
    assert resp.choices[0].message.content == OL_REPLY + "Describe it. (1 image)"
    assert ol_seen.only()["body"]["messages"][0] == {
        "role": "user",
        "content": "Describe it.",
        "images": [PNG_B64],
    }


def test_ollama_json_schema_becomes_format(client, ol_seen):
    schema = {
        "type": "object",
        "properties": {"age": {"type": "integer"}},
        "required": ["age"],
    }
    resp = client.chat.completions.create(
        model="local-llama",
        messages=[{"role": "user", "content": "How old?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "age", "schema": schema}},
    )
    assert json.loads(resp.choices[0].message.content) == {"age": 1}
    assert ol_seen.only()["body"]["format"] == schema


def test_ollama_stream_error_raises_without_done(client, fake_ollama, ol_seen):
    fake_ollama.fault(kind="stream_error", message="an error was encountered while running the model")
    seen: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIError) as info:
        with client.chat.completions.create(
            model="local-llama",
            messages=[{"role": "user", "content": "Stream a greeting."}],
            stream=True,
        ) as stream:
            for chunk in stream:
                seen.append(chunk)
    assert "an error was encountered while running the model" in str(info.value)
    assert _content(seen) == "Hello"
    ol_seen.only()


def test_ollama_http_error_keeps_its_message(client, fake_ollama, ol_seen):
    fake_ollama.fault(kind="error", status=500, message="llama runner process has terminated")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="local-llama", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 502
    assert info.value.body["message"] == "ollama: llama runner process has terminated"
    ol_seen.only()
