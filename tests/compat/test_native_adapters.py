"""The native Anthropic and Gemini adapters, end to end through the official SDK.

The `openai` SDK talks to a liter-llm proxy (`native_proxy`) whose `claude` and
`gemini` models are served by the native adapters; upstream are the
provider-faithful fakes from `tools/fake-providers`, which reject what the real
APIs reject and report what they received at `GET /__requests`. So each test
checks both directions: the OpenAI shape the SDK parses, and the native request
the provider would have seen.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

MASTER_KEY = "sk-master-test"  # conftest.MASTER_KEY


def _png_1x1() -> bytes:
    """A real, decodable 1x1 RGBA PNG (signature, IHDR, IDAT, IEND with CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit RGBA
    idat = zlib.compress(b"\x00" + b"\xff\x00\x00\xff")  # filter byte + one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


PNG_B64 = base64.b64encode(_png_1x1()).decode("ascii")
PNG_DATA_URL = f"data:image/png;base64,{PNG_B64}"

WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city name"}},
                "required": ["city"],
            },
        },
    }
]
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Oslo?"}]
TOOL_RESULT = '{"temp_c": 3, "sky": "overcast"}'


# --------------------------------------------------------------------------- per provider


@dataclass(frozen=True)
class Native:
    """What differs between the providers, as the fakes and their APIs define it."""

    model: str  # the proxy's model name
    fake_fixture: str
    auth_header: str  # the header the provider reads its key from
    upstream_model: str  # provider_model without the provider prefix
    reply_prefix: str  # the fake's text answer: "<prefix><last user text>"
    image_note: str  # what the fake's answer says about one PNG

    def assert_path(self, req: dict[str, Any], stream: bool) -> None:
        assert req["method"] == "POST", req
        if self.fake_fixture == "fake_anthropic":
            assert req["path"] == "/v1/messages", req["path"]
            assert req["headers"].get("anthropic-version"), req["headers"]
            assert req["body"]["model"] == self.upstream_model, req["body"]
            assert req["body"].get("stream", False) is stream, req["body"]
            assert isinstance(req["body"]["max_tokens"], int), req["body"]
        else:
            method = "streamGenerateContent" if stream else "generateContent"
            assert req["path"] == f"/v1beta/models/{self.upstream_model}:{method}", req["path"]
            if stream:
                assert req["query"] == "alt=sse", req["query"]

    def user_turns(self, req: dict[str, Any]) -> list[Any]:
        """The native user turns' content (Anthropic `content`, Gemini `parts`)."""
        if self.fake_fixture == "fake_anthropic":
            return [m["content"] for m in req["body"]["messages"] if m["role"] == "user"]
        return [c["parts"] for c in req["body"]["contents"] if c["role"] == "user"]

    def assert_tools_declared(self, req: dict[str, Any]) -> None:
        body = req["body"]
        if self.fake_fixture == "fake_anthropic":
            tool = body["tools"][0]
            assert tool["name"] == "get_weather", body["tools"]
            assert tool["input_schema"]["required"] == ["city"], tool
        else:
            decl = body["tools"][0]["functionDeclarations"][0]
            assert decl["name"] == "get_weather", body["tools"]

    def assert_tool_result_sent(self, req: dict[str, Any], call_id: str) -> None:
        body = req["body"]
        if self.fake_fixture == "fake_anthropic":
            msgs = body["messages"]
            assert [m["role"] for m in msgs] == ["user", "assistant", "user"], msgs
            uses = [b for b in msgs[1]["content"] if b["type"] == "tool_use"]
            assert [(u["id"], u["name"]) for u in uses] == [(call_id, "get_weather")], msgs[1]
            result = msgs[2]["content"][0]
            assert result["type"] == "tool_result", msgs[2]
            assert result["tool_use_id"] == call_id, result
        else:
            contents = body["contents"]
            assert [c["role"] for c in contents] == ["user", "model", "user"], contents
            assert contents[1]["parts"][-1]["functionCall"]["name"] == "get_weather", contents[1]
            response = contents[2]["parts"][0]["functionResponse"]
            assert response["name"] == "get_weather", response
            assert response["response"] == json.loads(TOOL_RESULT), response

    def image_part(self) -> dict[str, Any]:
        """The native form of PNG_DATA_URL."""
        if self.fake_fixture == "fake_anthropic":
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
            }
        return {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}


CLAUDE = Native(
    model="claude",
    fake_fixture="fake_anthropic",
    auth_header="x-api-key",
    upstream_model="claude-sonnet-4-5",
    reply_prefix="Hello from fake Claude! You said: ",
    image_note="(I see 1 image(s).)",
)
GEMINI = Native(
    model="gemini",
    fake_fixture="fake_gemini",
    auth_header="x-goog-api-key",
    upstream_model="gemini-2.5-flash",
    reply_prefix="Hello from fake Gemini. You said: ",
    image_note="I also got 1 file(s): image/png.",
)


class Upstream:
    """One provider as a test sees it: its spec, its fake, and the requests of this test."""

    def __init__(self, spec: Native, fake) -> None:
        self.spec = spec
        self.fake = fake
        self._before = len(fake.requests())

    def new_requests(self) -> list[dict[str, Any]]:
        """What the fake received since the test began, with the auth checked on each."""
        reqs = self.fake.requests()[self._before :]
        for req in reqs:
            _assert_upstream_auth(self.spec, self.fake, req)
        return reqs

    def only_request(self) -> dict[str, Any]:
        reqs = self.new_requests()
        assert len(reqs) == 1, [(r["method"], r["path"]) for r in reqs]
        return reqs[0]



def _assert_upstream_auth(spec: Native, fake, req: dict[str, Any]) -> None:
    """The provider's own auth header carries the upstream key; the proxy's key stays home."""
    headers = req["headers"]
    assert headers.get(spec.auth_header) == fake.api_key, (
        f"{spec.auth_header} should carry the upstream key: {headers}"
    )
    assert "authorization" not in headers, headers
    # The client's proxy key never leaves the proxy: not in a header, the query or the body.
    leaked = [name for name, value in headers.items() if MASTER_KEY in value]
    assert not leaked, f"the proxy's master key leaked upstream in {leaked}"
    assert MASTER_KEY not in (req["query"] or ""), req["query"]
    assert "key=" not in (req["query"] or ""), req["query"]
    assert MASTER_KEY not in json.dumps(req["body"]), req["body"]


@pytest.fixture(params=[CLAUDE, GEMINI], ids=lambda n: n.model)
def upstream(request, native_client) -> Upstream:
    return Upstream(request.param, request.getfixturevalue(request.param.fake_fixture))


# --------------------------------------------------------------------------- helpers


def _stream(client: openai.OpenAI, **kwargs) -> list[ChatCompletionChunk]:
    with client.chat.completions.create(stream=True, **kwargs) as stream:
        chunks = list(stream)
    assert chunks, "the stream produced no chunks"
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks), [c.object for c in chunks]
    assert len({c.id for c in chunks}) == 1, [c.id for c in chunks]
    return chunks


def _content(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(ch.delta.content or "" for c in chunks for ch in c.choices)


def _finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]


def _stream_tool_calls(chunks: list[ChatCompletionChunk]) -> list[dict[str, str]]:
    """Reassembles streamed tool-call deltas by index, as the SDK's docs describe."""
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


def _assert_weather_args(arguments: str) -> dict[str, Any]:
    args = json.loads(arguments)
    assert isinstance(args, dict), arguments
    assert isinstance(args.get("city"), str) and args["city"], args
    return args


def _assert_usage(usage) -> None:
    assert usage is not None
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(usage, field)
        assert isinstance(value, int) and value >= 0, (field, usage)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage


# --------------------------------------------------------------------------- text


def test_non_stream_text(native_client, upstream):
    spec = upstream.spec
    resp = native_client.chat.completions.create(
        model=spec.model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=200,
    )
    assert isinstance(resp, ChatCompletion)
    assert resp.object == "chat.completion"
    assert resp.model == spec.model
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == spec.reply_prefix + "Say hello."
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    _assert_usage(resp.usage)

    req = upstream.only_request()
    spec.assert_path(req, stream=False)
    body = req["body"]
    if spec is CLAUDE:
        assert body["system"] == "Be brief.", body
        assert [m["role"] for m in body["messages"]] == ["user"], body
        content = body["messages"][0]["content"]
        # A plain string and one text block are the same message to Anthropic.
        assert content in ("Say hello.", [{"type": "text", "text": "Say hello."}]), body
        assert body["max_tokens"] == 200, body
    else:
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}, body
        assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hello."}]}], body
        assert body["generationConfig"]["maxOutputTokens"] == 200, body


def test_stream_text_with_usage(native_client, upstream):
    spec = upstream.spec
    chunks = _stream(
        native_client,
        model=spec.model,
        messages=[{"role": "user", "content": "Stream a greeting."}],
        stream_options={"include_usage": True},
    )
    assert all(c.model == spec.model for c in chunks), [c.model for c in chunks]
    first = next(c for c in chunks if c.choices)
    assert first.choices[0].delta.role == "assistant"
    assert _content(chunks) == spec.reply_prefix + "Stream a greeting."
    assert _finish_reasons(chunks) == ["stop"]
    final = chunks[-1]
    assert final.choices == [], final
    _assert_usage(final.usage)
    assert final.usage.completion_tokens > 0, final.usage
    assert all(c.usage is None for c in chunks[:-1]), [c.usage for c in chunks]

    spec.assert_path(upstream.only_request(), stream=True)


def test_stream_text_without_usage(native_client, upstream):
    chunks = _stream(
        native_client,
        model=upstream.spec.model,
        messages=[{"role": "user", "content": "No usage please."}],
    )
    assert _content(chunks) == upstream.spec.reply_prefix + "No usage please."
    assert _finish_reasons(chunks) == ["stop"]
    assert all(c.choices for c in chunks), "a usage-only chunk appeared without include_usage"
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
    upstream.spec.assert_path(upstream.only_request(), stream=True)


# --------------------------------------------------------------------------- tools


def test_tool_call_non_stream(native_client, upstream):
    spec = upstream.spec
    resp = native_client.chat.completions.create(
        model=spec.model, messages=WEATHER_QUESTION, tools=WEATHER_TOOLS
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1, choice.message
    call = calls[0]
    assert call.type == "function"
    assert call.id, call
    assert call.function.name == "get_weather"
    _assert_weather_args(call.function.arguments)

    req = upstream.only_request()
    spec.assert_path(req, stream=False)
    spec.assert_tools_declared(req)


def test_tool_call_stream_arguments_reassemble_to_json(native_client, upstream):
    spec = upstream.spec
    chunks = _stream(
        native_client,
        model=spec.model,
        messages=WEATHER_QUESTION,
        tools=WEATHER_TOOLS,
        stream_options={"include_usage": True},
    )
    calls = _stream_tool_calls(chunks)
    assert len(calls) == 1, calls
    assert calls[0]["id"], calls
    assert calls[0]["name"] == "get_weather", calls
    _assert_weather_args(calls[0]["arguments"])
    assert _finish_reasons(chunks) == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None, chunks[-1]

    req = upstream.only_request()
    spec.assert_path(req, stream=True)
    spec.assert_tools_declared(req)


def _tool_round_trip_messages(client: openai.OpenAI, model: str) -> tuple[list[dict], str]:
    """Asks for a tool call, then builds the follow-up the OpenAI way (result by id)."""
    first = client.chat.completions.create(
        model=model, messages=WEATHER_QUESTION, tools=WEATHER_TOOLS
    )
    message = first.choices[0].message
    assert message.tool_calls, message
    call = message.tool_calls[0]
    assistant: dict[str, Any] = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
        ],
    }
    if message.content:
        assistant["content"] = message.content
    messages = [
        *WEATHER_QUESTION,
        assistant,
        {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
    ]
    return messages, call.id


@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
def test_tool_result_follow_up(native_client, upstream, stream):
    spec = upstream.spec
    messages, call_id = _tool_round_trip_messages(native_client, spec.model)
    if stream:
        chunks = _stream(native_client, model=spec.model, messages=messages, tools=WEATHER_TOOLS)
        text = _content(chunks)
        assert _finish_reasons(chunks) == ["stop"]
        assert not _stream_tool_calls(chunks)
    else:
        resp = native_client.chat.completions.create(
            model=spec.model, messages=messages, tools=WEATHER_TOOLS
        )
        choice = resp.choices[0]
        assert choice.finish_reason == "stop"
        assert not choice.message.tool_calls
        text = choice.message.content
    # Both fakes answer a tool result by quoting it.
    assert text and "temp_c" in text, text

    reqs = upstream.new_requests()
    assert len(reqs) == 2, [(r["method"], r["path"]) for r in reqs]
    spec.assert_path(reqs[1], stream=stream)
    spec.assert_tool_result_sent(reqs[1], call_id)


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
def test_image_part_reaches_the_provider_as_base64(native_client, upstream, stream):
    spec = upstream.spec
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
            ],
        }
    ]
    if stream:
        chunks = _stream(native_client, model=spec.model, messages=messages)
        text = _content(chunks)
        assert _finish_reasons(chunks) == ["stop"]
    else:
        resp = native_client.chat.completions.create(model=spec.model, messages=messages)
        assert resp.choices[0].finish_reason == "stop"
        text = resp.choices[0].message.content
    assert text and spec.image_note in text, text

    req = upstream.only_request()
    spec.assert_path(req, stream=stream)
    turns = spec.user_turns(req)
    assert len(turns) == 1, turns
    parts = turns[0]
    assert isinstance(parts, list) and len(parts) == 2, parts
    assert spec.image_part() in parts, parts
    texts = [p.get("text") for p in parts if "text" in p]
    assert texts == ["What is in this picture?"], parts
    # The bytes arrive intact: the provider decodes the same PNG the client sent.
    sent = next(p for p in parts if p != {"text": "What is in this picture?"} and "text" not in p)
    data = sent["source"]["data"] if spec is CLAUDE else sent["inlineData"]["data"]
    assert base64.b64decode(data) == _png_1x1()


# --------------------------------------------------------------------------- credentials


def test_every_upstream_request_carried_the_provider_key_and_never_the_master_key(
    native_client, fake_anthropic, fake_gemini
):
    """Session-wide: the per-test checks, over everything the fakes have seen so far."""
    for spec, fake in ((CLAUDE, fake_anthropic), (GEMINI, fake_gemini)):
        native_client.chat.completions.create(
            model=spec.model, messages=[{"role": "user", "content": "hi"}]
        )
        reqs = fake.requests()
        assert reqs, f"{spec.model}: the fake saw no request"
        for req in reqs:
            _assert_upstream_auth(spec, fake, req)
