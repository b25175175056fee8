"""The native Bedrock (Converse / ConverseStream) adapter through the official SDK.

The `openai` SDK talks to a liter-llm proxy whose models are served by the
Bedrock adapter; upstream is `fake-providers --provider bedrock`, which verifies
every request's SigV4 signature against the credentials it was started with
(403 `InvalidSignatureException` otherwise), validates the Converse body, and
answers streams in real `application/vnd.amazon.eventstream` frames. Each test
checks both directions: the OpenAI shape the SDK parses, and the Converse
request the fake saw at `GET /__requests`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import conftest
from conftest import MASTER_KEY, Proxy

AWS_KEY_ID = "AKIDCOMPATEXAMPLE"
AWS_SECRET = "compat/Secret+Key/EXAMPLEKEY0123456789ab"
AWS_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//compat+session=="
AWS_REGION = "eu-west-1"
CLAUDE_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CLAUDE_PATH_ID = "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
REPLY_PREFIX = "Hello from fake Bedrock. You said: "


def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\xff\x00\x00\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


PNG_B64 = base64.b64encode(_png_1x1()).decode("ascii")
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


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class FakeBedrock:
    root: str  # http://127.0.0.1:PORT, also the proxy's base_url

    def requests(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.root}/__requests", timeout=10.0, trust_env=False)
        r.raise_for_status()
        return r.json()

    def fault(self, **fault: Any) -> None:
        r = httpx.post(f"{self.root}/__fault", json=fault, timeout=10.0, trust_env=False)
        assert r.status_code == 204, r.text


@contextlib.contextmanager
def _run_fake_bedrock(workdir: Path) -> Iterator[tuple[FakeBedrock, Path]]:
    binary = conftest._binary(
        "FAKE_PROVIDERS_BIN", "target/debug/fake-providers", build_hint="-p fake-providers"
    )
    cmd = [
        str(binary),
        "--provider", "bedrock",
        "--api-key", "unused-by-bedrock",
        "--aws-access-key-id", AWS_KEY_ID,
        "--aws-secret-access-key", AWS_SECRET,
        "--aws-session-token", AWS_TOKEN,
        "--aws-region", AWS_REGION,
        "--host", "127.0.0.1",
        "--port", "0",
    ]
    proc, out_path, err_path = conftest._spawn(cmd, workdir, "fake-bedrock")
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
                f"fake-providers --provider bedrock did not start (exit code {proc.returncode}).\n"
                f"command: {' '.join(cmd)}\n--- stderr ---\n{conftest._read(err_path)}",
                pytrace=False,
            )
        yield FakeBedrock(root=f"http://127.0.0.1:{port}"), err_path
    finally:
        conftest._stop(proc)


@pytest.fixture(scope="module")
def fake_bedrock(workdir: Path):
    with _run_fake_bedrock(workdir) as (fake, err_log):
        conftest._FIXTURE_LOGS["fake_bedrock"] = [err_log]
        try:
            yield fake
        finally:
            conftest._FIXTURE_LOGS.pop("fake_bedrock", None)


def _model(name: str, model_id: str, fake: FakeBedrock, secret: str = AWS_SECRET) -> str:
    return f"""
[[models]]
name = "{name}"
provider_model = "bedrock/{model_id}"
base_url = "{fake.root}"
aws_region = "{AWS_REGION}"
aws_access_key_id = "{AWS_KEY_ID}"
aws_secret_access_key = "{secret}"
aws_session_token = "{AWS_TOKEN}"
"""


def _config(port: int, fake: FakeBedrock) -> str:
    return f"""\
[general]
master_key = "{MASTER_KEY}"
max_retries = 0

[server]
host = "127.0.0.1"
port = {port}
""" + _model("claude-bedrock", CLAUDE_ID, fake) + _model(
        "nova-bedrock", "us.amazon.nova-pro-v1:0", fake
    ) + _model("bedrock-bad-secret", CLAUDE_ID, fake, secret="wrong/secret")


@pytest.fixture(scope="module")
def bedrock_proxy(workdir: Path, fake_bedrock: FakeBedrock):
    with conftest._run_proxy(workdir, "liter-llm-bedrock", lambda p: _config(p, fake_bedrock)) as p:
        conftest._FIXTURE_LOGS["bedrock_proxy"] = [p.stderr_log, p.stdout_log]
        try:
            yield p
        finally:
            conftest._FIXTURE_LOGS.pop("bedrock_proxy", None)


@pytest.fixture(scope="module")
def bedrock_client(bedrock_proxy: Proxy):
    client = openai.OpenAI(
        base_url=bedrock_proxy.api_base, api_key=MASTER_KEY, max_retries=0, timeout=30.0
    )
    yield client
    client.close()


class Upstream:
    """The fake's requests made during one test."""

    def __init__(self, fake: FakeBedrock) -> None:
        self.fake = fake
        self._before = len(fake.requests())

    def new_requests(self) -> list[dict[str, Any]]:
        reqs = self.fake.requests()[self._before :]
        for req in reqs:
            _assert_signed(req)
        return reqs

    def only_request(self) -> dict[str, Any]:
        reqs = self.new_requests()
        assert len(reqs) == 1, [(r["method"], r["path"]) for r in reqs]
        return reqs[0]


@pytest.fixture
def upstream(fake_bedrock: FakeBedrock, bedrock_client) -> Upstream:
    return Upstream(fake_bedrock)


def _assert_signed(req: dict[str, Any]) -> None:
    """SigV4 from the proxy, checked by the fake; the client's key stays home."""
    headers = req["headers"]
    assert req["signature_valid"] is True, req
    auth = headers["authorization"]
    date = headers["x-amz-date"]
    assert auth.startswith(
        f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/{date[:8]}/{AWS_REGION}/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
    ), auth
    assert headers["x-amz-security-token"] == AWS_TOKEN
    assert AWS_SECRET not in json.dumps(headers)
    leaked = [name for name, value in headers.items() if MASTER_KEY in value]
    assert not leaked, f"the proxy's master key leaked upstream in {leaked}"
    assert MASTER_KEY not in json.dumps(req["body"])


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


# --------------------------------------------------------------------------- tests


def test_non_stream_text(bedrock_client, upstream):
    resp = bedrock_client.chat.completions.create(
        model="claude-bedrock",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=200,
    )
    assert isinstance(resp, ChatCompletion)
    assert resp.model == "claude-bedrock"
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY_PREFIX + "Say hello."
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.completion_tokens > 0

    req = upstream.only_request()
    assert req["method"] == "POST"
    assert req["path"] == f"/model/{CLAUDE_PATH_ID}/converse"
    assert req["body"] == {
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": "Say hello."}]}],
        "inferenceConfig": {"maxTokens": 200},
    }


def test_stream_text_with_usage(bedrock_client, upstream):
    chunks = _stream(
        bedrock_client,
        model="nova-bedrock",
        messages=[{"role": "user", "content": "Stream a greeting."}],
        stream_options={"include_usage": True},
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert _content(chunks) == REPLY_PREFIX + "Stream a greeting."
    assert _finish_reasons(chunks) == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0

    req = upstream.only_request()
    assert req["path"] == "/model/us.amazon.nova-pro-v1%3A0/converse-stream"


def test_tool_call_then_result_non_stream(bedrock_client, upstream):
    question = [{"role": "user", "content": "What is the weather in Oslo?"}]
    resp = bedrock_client.chat.completions.create(
        model="claude-bedrock", messages=question, tools=WEATHER_TOOLS, tool_choice="auto"
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}

    resp = bedrock_client.chat.completions.create(
        model="claude-bedrock",
        messages=question
        + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 3}'},
        ],
        tools=WEATHER_TOOLS,
    )
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content == 'The tool get_weather returned {"temp_c": 3}.'

    first, second = upstream.new_requests()
    tool = first["body"]["toolConfig"]["tools"][0]["toolSpec"]
    assert tool["name"] == "get_weather"
    assert tool["inputSchema"]["json"]["required"] == ["city"]
    assert first["body"]["toolConfig"]["toolChoice"] == {"auto": {}}
    msgs = second["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"] == [
        {"toolUse": {"toolUseId": call.id, "name": "get_weather", "input": {"city": "Oslo"}}}
    ]
    assert msgs[2]["content"] == [
        {"toolResult": {"toolUseId": call.id, "content": [{"text": '{"temp_c": 3}'}]}}
    ]


def test_tool_call_stream(bedrock_client, upstream):
    chunks = _stream(
        bedrock_client,
        model="claude-bedrock",
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
        tools=WEATHER_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    (call,) = _stream_tool_calls(chunks)
    assert call["name"] == "get_weather"
    assert call["id"].startswith("tooluse_")
    assert json.loads(call["arguments"]) == {"city": "Oslo"}
    assert _finish_reasons(chunks) == ["tool_calls"]
    req = upstream.only_request()
    assert req["body"]["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


def test_image_part_is_sent_as_bytes(bedrock_client, upstream):
    resp = bedrock_client.chat.completions.create(
        model="claude-bedrock",
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
    assert resp.choices[0].message.content == REPLY_PREFIX + "Describe it. (I see 1 image(s).)"
    req = upstream.only_request()
    assert req["body"]["messages"][0]["content"] == [
        {"text": "Describe it."},
        {"image": {"format": "png", "source": {"bytes": PNG_B64}}},
    ]


def test_image_url_is_refused_before_reaching_bedrock(bedrock_client, upstream):
    with pytest.raises(openai.BadRequestError) as info:
        bedrock_client.chat.completions.create(
            model="claude-bedrock",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
                    ],
                }
            ],
        )
    assert info.value.body["param"] == "messages[0].content[0].image_url.url"
    assert upstream.new_requests() == []


def test_wrong_secret_fails_the_signature_check(bedrock_client, fake_bedrock):
    before = len(fake_bedrock.requests())
    with pytest.raises(openai.APIStatusError) as info:
        bedrock_client.chat.completions.create(
            model="bedrock-bad-secret", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_auth_failed"
    assert "signature we calculated does not match" in info.value.body["message"]
    (req,) = fake_bedrock.requests()[before:]
    assert req["signature_valid"] is False


def test_throttling_mid_stream_raises_without_done(bedrock_client, fake_bedrock, upstream):
    fake_bedrock.fault(
        kind="stream_exception",
        exception_type="throttlingException",
        message="Too many requests, please wait before trying again.",
    )
    seen: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIError) as info:
        with bedrock_client.chat.completions.create(
            model="claude-bedrock",
            messages=[{"role": "user", "content": "Stream a greeting."}],
            stream=True,
        ) as stream:
            for chunk in stream:
                seen.append(chunk)
    assert "throttlingException" in str(info.value)
    # The text before the exception arrived first.
    assert _content(seen).startswith("Hello fro")
    upstream.only_request()
