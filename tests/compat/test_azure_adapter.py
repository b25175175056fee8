"""The Azure OpenAI and Azure AI Foundry adapters, end to end through the official SDK.

The `openai` SDK talks to a liter-llm proxy whose `az` model is an Azure OpenAI
deployment (`azure/gpt-4o-prod`) and whose `foundry` model is on Foundry's model
inference endpoint (`azure_ai/Mistral-Large-2411`). Upstream is the
`fake-providers --provider azure` fake, which checks what Azure checks (the
`api-key` header, `api-version`, known deployments, recognised body fields) and
reports what it received at `GET /__requests`. Azure's answers are OpenAI-shaped
with content-filter additions; the SDK must parse them as they come.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import conftest

AZURE_UPSTREAM_KEY = "az-compat"
# The fake serves the resource endpoint at its root (`/openai/...`, `/models/...`).
conftest._FAKE_BASE_PATH.setdefault("azure", "")


def _png_1x1() -> bytes:
    """A real, decodable 1x1 RGBA PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\xff\x00\x00\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(_png_1x1()).decode("ascii")

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


@pytest.fixture(scope="module")
def fake_azure(workdir):
    with conftest._run_fake(workdir, "azure", AZURE_UPSTREAM_KEY) as fake:
        conftest._FIXTURE_LOGS["fake_azure"] = [fake.stderr_log]
        try:
            yield fake
        finally:
            conftest._FIXTURE_LOGS.pop("fake_azure", None)


def _azure_proxy_config(port: int, fake) -> str:
    return f"""\
[general]
master_key = "{conftest.MASTER_KEY}"
max_retries = 0

[server]
host = "127.0.0.1"
port = {port}

[[models]]
name = "az"
provider_model = "azure/gpt-4o-prod"
base_url = "{fake.root}"
api_key = "{fake.api_key}"

[[models]]
name = "az-badkey"
provider_model = "azure/gpt-4o-prod"
base_url = "{fake.root}"
api_key = "not-the-key"

[[models]]
name = "foundry"
provider_model = "azure_ai/Mistral-Large-2411"
base_url = "{fake.root}/models"
api_key = "{fake.api_key}"
"""


@pytest.fixture(scope="module")
def azure_proxy(workdir, fake_azure):
    config = lambda port: _azure_proxy_config(port, fake_azure)  # noqa: E731
    with conftest._run_proxy(workdir, "liter-llm-azure", config) as p:
        conftest._FIXTURE_LOGS["azure_proxy"] = [p.stderr_log, p.stdout_log]
        try:
            yield p
        finally:
            conftest._FIXTURE_LOGS.pop("azure_proxy", None)


@pytest.fixture(scope="module")
def azure_client(azure_proxy):
    client = openai.OpenAI(
        base_url=azure_proxy.api_base, api_key=conftest.MASTER_KEY, max_retries=0, timeout=30.0
    )
    yield client
    client.close()


class Recorder:
    """The fake's requests made during one test, with the auth checked on each."""

    def __init__(self, fake) -> None:
        self.fake = fake
        self._before = len(fake.requests())

    def new(self) -> list[dict[str, Any]]:
        reqs = self.fake.requests()[self._before :]
        for req in reqs:
            headers = req["headers"]
            assert headers.get("api-key") in (self.fake.api_key, "not-the-key"), headers
            assert "authorization" not in headers, headers
            leaked = [n for n, v in headers.items() if conftest.MASTER_KEY in v]
            assert not leaked, f"the proxy's master key leaked upstream in {leaked}"
            assert conftest.MASTER_KEY not in json.dumps(req["body"]), req["body"]
        return reqs

    def only(self) -> dict[str, Any]:
        reqs = self.new()
        assert len(reqs) == 1, [(r["method"], r["path"]) for r in reqs]
        return reqs[0]


@pytest.fixture
def upstream(azure_client, fake_azure) -> Recorder:
    return Recorder(fake_azure)


def _assert_deployment_request(req: dict[str, Any]) -> None:
    assert req["method"] == "POST", req
    assert req["path"] == "/openai/deployments/gpt-4o-prod/chat/completions", req["path"]
    assert req["query"] == "api-version=2024-10-21", req["query"]


def _stream(client: openai.OpenAI, **kwargs) -> list[ChatCompletionChunk]:
    with client.chat.completions.create(stream=True, **kwargs) as stream:
        chunks = list(stream)
    assert chunks, "the stream produced no chunks"
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    return chunks


def _content(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(ch.delta.content or "" for c in chunks for ch in c.choices)


def _finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]


# --------------------------------------------------------------------------- Azure OpenAI


def test_non_stream_text_with_filter_results(azure_client, upstream):
    resp = azure_client.chat.completions.create(
        model="az",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=200,
    )
    assert isinstance(resp, ChatCompletion)
    choice = resp.choices[0]
    assert choice.message.content == "Hello from fake Azure OpenAI. You said: Say hello."
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    # Azure's additions survive as extra fields.
    dumped = resp.model_dump()
    assert dumped["prompt_filter_results"][0]["prompt_index"] == 0, dumped
    assert dumped["choices"][0]["content_filter_results"]["hate"]["filtered"] is False, dumped

    req = upstream.only()
    _assert_deployment_request(req)
    assert req["body"]["model"] == "gpt-4o-prod", req["body"]
    assert req["body"]["max_tokens"] == 200, req["body"]
    assert req["body"]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_stream_text_first_chunk_is_the_prompt_filter(azure_client, upstream):
    chunks = _stream(
        azure_client,
        model="az",
        messages=[{"role": "user", "content": "Stream a greeting."}],
    )
    assert chunks[0].choices == [], chunks[0]
    assert chunks[0].model_dump()["prompt_filter_results"], chunks[0]
    assert _content(chunks) == "Hello from fake Azure OpenAI. You said: Stream a greeting."
    assert _finish_reasons(chunks) == ["stop"]
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]

    req = upstream.only()
    _assert_deployment_request(req)
    assert req["body"]["stream"] is True, req["body"]
    # Asked for by the proxy, to meter the stream.
    assert req["body"]["stream_options"] == {"include_usage": True}, req["body"]


def test_stream_usage_when_asked(azure_client, upstream):
    chunks = _stream(
        azure_client,
        model="az",
        messages=[{"role": "user", "content": "Count my tokens."}],
        stream_options={"include_usage": True},
    )
    final = chunks[-1]
    assert final.choices == [], final
    assert final.usage is not None and final.usage.completion_tokens > 0, final
    upstream.only()


def test_tool_call_round_trip(azure_client, upstream):
    question = [{"role": "user", "content": "What is the weather in Oslo?"}]
    resp = azure_client.chat.completions.create(model="az", messages=question, tools=WEATHER_TOOLS)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1, choice.message
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}

    follow_up = question + [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp_c": 3}'},
    ]
    resp = azure_client.chat.completions.create(model="az", messages=follow_up, tools=WEATHER_TOOLS)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content == 'Tool result received: {"temp_c": 3}'

    first, second = upstream.new()
    assert first["body"]["tools"] == WEATHER_TOOLS, first["body"]
    assert second["body"]["messages"][1]["tool_calls"][0]["id"] == calls[0].id, second["body"]
    assert second["body"]["messages"][2]["tool_call_id"] == calls[0].id, second["body"]


def test_tool_call_stream(azure_client, upstream):
    chunks = _stream(
        azure_client,
        model="az",
        messages=[{"role": "user", "content": "Weather in Bergen?"}],
        tools=WEATHER_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    deltas = [d for c in chunks for ch in c.choices for d in (ch.delta.tool_calls or [])]
    assert deltas and deltas[0].function.name == "get_weather", deltas
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments) == {"city": "Bergen"}
    assert _finish_reasons(chunks) == ["tool_calls"]
    upstream.only()


def test_image_part_reaches_azure_unchanged(azure_client, upstream):
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
    ]
    resp = azure_client.chat.completions.create(
        model="az", messages=[{"role": "user", "content": content}]
    )
    assert resp.choices[0].message.content == (
        "Hello from fake Azure OpenAI. You said: What is in this picture? (I see 1 image(s).)"
    )
    req = upstream.only()
    assert req["body"]["messages"][0]["content"] == content, req["body"]


def test_content_filter_refusal_is_a_400_with_its_code(azure_client, upstream):
    with pytest.raises(openai.BadRequestError) as info:
        azure_client.chat.completions.create(
            model="az", messages=[{"role": "user", "content": "trigger-content-filter"}]
        )
    assert info.value.status_code == 400
    assert info.value.code == "content_filter"
    assert info.value.param == "prompt"
    upstream.only()


def test_wrong_upstream_key_is_a_502(azure_client, upstream):
    with pytest.raises(openai.InternalServerError) as info:
        azure_client.chat.completions.create(
            model="az-badkey", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 502
    assert info.value.code == "upstream_auth_failed"
    assert upstream.only()["headers"]["api-key"] == "not-the-key"


# --------------------------------------------------------------------------- Foundry


def test_foundry_non_stream_and_stream(azure_client, upstream):
    resp = azure_client.chat.completions.create(
        model="foundry", messages=[{"role": "user", "content": "Bonjour."}]
    )
    assert resp.choices[0].message.content == "Hello from fake Azure AI Foundry. You said: Bonjour."
    chunks = _stream(
        azure_client, model="foundry", messages=[{"role": "user", "content": "Encore."}]
    )
    assert _content(chunks) == "Hello from fake Azure AI Foundry. You said: Encore."
    assert _finish_reasons(chunks) == ["stop"]

    for req in upstream.new():
        assert req["path"] == "/models/chat/completions", req["path"]
        assert req["query"] == "api-version=2024-05-01-preview", req["query"]
        assert req["headers"]["extra-parameters"] == "pass-through", req["headers"]
        assert req["body"]["model"] == "Mistral-Large-2411", req["body"]
        assert "stream_options" not in req["body"], req["body"]
