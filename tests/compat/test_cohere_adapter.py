"""The native Cohere v2 Chat adapter, end to end through the official SDK.

The `openai` SDK talks to a liter-llm proxy (`cohere_proxy`) whose `command`
model is `cohere_chat/command-a-03-2025`, served by the native adapter; upstream
is the provider-faithful fake from `tools/fake-providers` (`--provider cohere`),
which rejects what Cohere's `POST /v2/chat` rejects (and any field its reference
does not list) and reports what it received at `GET /__requests`. So each test
checks both directions: the OpenAI shape the SDK parses, and the Cohere request
the provider would have seen.
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

MASTER_KEY = "sk-master-test"  # conftest.MASTER_KEY
MODEL = "command"
UPSTREAM_MODEL = "command-a-03-2025"
REPLY_PREFIX = "Hello from fake Cohere! You said: "
TEMPLATE_TOKENS = 200  # fake_providers::cohere::TEMPLATE_TOKENS


def _png_1x1() -> bytes:
    """A real, decodable 1x1 RGBA PNG (signature, IHDR, IDAT, IEND with CRCs)."""

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
                "properties": {"city": {"type": "string", "description": "The city name"}},
                "required": ["city"],
            },
        },
    }
]
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Oslo?"}]
TOOL_RESULT = '{"temp_c": 3, "sky": "overcast"}'


# --------------------------------------------------------------------------- helpers


class Upstream:
    """The fake's requests made during one test, each checked for auth."""

    def __init__(self, fake) -> None:
        self.fake = fake
        self._before = len(fake.requests())

    def new_requests(self) -> list[dict[str, Any]]:
        reqs = self.fake.requests()[self._before :]
        for req in reqs:
            _assert_upstream_request(self.fake, req)
        return reqs

    def only_request(self) -> dict[str, Any]:
        reqs = self.new_requests()
        assert len(reqs) == 1, [(r["method"], r["path"]) for r in reqs]
        return reqs[0]


def _assert_upstream_request(fake, req: dict[str, Any]) -> None:
    """`POST /v2/chat` with the upstream key as a Bearer token; the proxy's key stays home."""
    assert req["method"] == "POST", req
    assert req["path"] == "/v2/chat", req["path"]
    headers = req["headers"]
    assert headers.get("authorization") == f"Bearer {fake.api_key}", headers
    leaked = [name for name, value in headers.items() if MASTER_KEY in value]
    assert not leaked, f"the proxy's master key leaked upstream in {leaked}"
    assert MASTER_KEY not in json.dumps(req["body"]), req["body"]
    assert req["body"]["model"] == UPSTREAM_MODEL, req["body"]


@pytest.fixture
def upstream(fake_cohere, cohere_client) -> Upstream:
    return Upstream(fake_cohere)


def _stream(client: openai.OpenAI, **kwargs) -> list[ChatCompletionChunk]:
    with client.chat.completions.create(stream=True, **kwargs) as stream:
        chunks = list(stream)
    assert chunks, "the stream produced no chunks"
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks), [c.object for c in chunks]
    assert len({c.id for c in chunks}) == 1, [c.id for c in chunks]
    assert all(c.model == MODEL for c in chunks), [c.model for c in chunks]
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


def _assert_billed_usage(usage) -> None:
    """OpenAI's usage carries Cohere's billed units, not the template-inflated tokens."""
    assert usage is not None
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(usage, field)
        assert isinstance(value, int) and value >= 0, (field, usage)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage
    assert 0 < usage.prompt_tokens < TEMPLATE_TOKENS, usage
    assert usage.completion_tokens > 0, usage


# --------------------------------------------------------------------------- text


def test_non_stream_text(cohere_client, upstream):
    resp = cohere_client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=200,
        temperature=0.2,
        top_p=1.0,
        user="end-user-1",
    )
    assert isinstance(resp, ChatCompletion)
    assert resp.object == "chat.completion"
    assert resp.model == MODEL
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY_PREFIX + "Say hello."
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    _assert_billed_usage(resp.usage)

    body = upstream.only_request()["body"]
    assert body == {
        "model": UPSTREAM_MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        "max_tokens": 200,
        "temperature": 0.2,
        "p": 0.99,  # OpenAI's top_p=1.0, fitted to Cohere's 0.01..0.99
        "stream": False,
    }, body


def test_stream_text_with_usage(cohere_client, upstream):
    chunks = _stream(
        cohere_client,
        model=MODEL,
        messages=[{"role": "user", "content": "Stream a greeting."}],
        stream_options={"include_usage": True},
    )
    first = next(c for c in chunks if c.choices)
    assert first.choices[0].delta.role == "assistant"
    assert _content(chunks) == REPLY_PREFIX + "Stream a greeting."
    assert _finish_reasons(chunks) == ["stop"]
    final = chunks[-1]
    assert final.choices == [], final
    _assert_billed_usage(final.usage)
    assert all(c.usage is None for c in chunks[:-1]), [c.usage for c in chunks]
    assert upstream.only_request()["body"]["stream"] is True


def test_stream_text_without_usage(cohere_client, upstream):
    chunks = _stream(
        cohere_client, model=MODEL, messages=[{"role": "user", "content": "No usage please."}]
    )
    assert _content(chunks) == REPLY_PREFIX + "No usage please."
    assert _finish_reasons(chunks) == ["stop"]
    assert all(c.choices for c in chunks), "a usage-only chunk appeared without include_usage"
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
    upstream.only_request()


# --------------------------------------------------------------------------- tools


def _assert_weather_args(arguments: str) -> dict[str, Any]:
    args = json.loads(arguments)
    assert isinstance(args, dict), arguments
    assert isinstance(args.get("city"), str) and args["city"], args
    return args


def test_tool_call_non_stream(cohere_client, upstream):
    resp = cohere_client.chat.completions.create(
        model=MODEL, messages=WEATHER_QUESTION, tools=WEATHER_TOOLS
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    # Cohere's tool plan arrives as the message text.
    assert choice.message.content == "I will use the get_weather tool to help with that."
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1, choice.message
    assert calls[0].type == "function"
    assert calls[0].id.startswith("get_weather_"), calls[0]
    assert calls[0].function.name == "get_weather"
    _assert_weather_args(calls[0].function.arguments)

    body = upstream.only_request()["body"]
    assert body["tools"] == WEATHER_TOOLS, body["tools"]
    assert "tool_choice" not in body, body


def test_tool_call_stream_arguments_reassemble_to_json(cohere_client, upstream):
    chunks = _stream(
        cohere_client,
        model=MODEL,
        messages=WEATHER_QUESTION,
        tools=WEATHER_TOOLS,
        stream_options={"include_usage": True},
    )
    assert _content(chunks) == "I will use the get_weather tool to help with that."
    calls = _stream_tool_calls(chunks)
    assert len(calls) == 1, calls
    assert calls[0]["id"].startswith("get_weather_"), calls
    assert calls[0]["name"] == "get_weather", calls
    _assert_weather_args(calls[0]["arguments"])
    assert _finish_reasons(chunks) == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None, chunks[-1]
    assert upstream.only_request()["body"]["stream"] is True


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("required", "REQUIRED"),
        ({"type": "function", "function": {"name": "get_weather"}}, "REQUIRED"),
    ],
    ids=["required", "named"],
)
def test_forced_tool_choice_is_required(cohere_client, upstream, tool_choice, expected):
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    resp = cohere_client.chat.completions.create(
        model=MODEL,
        messages=WEATHER_QUESTION,
        tools=[*WEATHER_TOOLS, other],
        tool_choice=tool_choice,
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    body = upstream.only_request()["body"]
    assert body["tool_choice"] == expected, body
    names = [t["function"]["name"] for t in body["tools"]]
    if isinstance(tool_choice, dict):
        assert names == ["get_weather"], names
    else:
        assert names == ["get_weather", "get_time"], names


def test_tool_choice_none_answers_in_text(cohere_client, upstream):
    resp = cohere_client.chat.completions.create(
        model=MODEL, messages=WEATHER_QUESTION, tools=WEATHER_TOOLS, tool_choice="none"
    )
    assert resp.choices[0].finish_reason == "stop"
    assert not resp.choices[0].message.tool_calls
    assert upstream.only_request()["body"]["tool_choice"] == "NONE"


@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
def test_tool_result_follow_up(cohere_client, upstream, stream):
    first = cohere_client.chat.completions.create(
        model=MODEL, messages=WEATHER_QUESTION, tools=WEATHER_TOOLS
    )
    message = first.choices[0].message
    call = message.tool_calls[0]
    messages = [
        *WEATHER_QUESTION,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
    ]
    if stream:
        chunks = _stream(cohere_client, model=MODEL, messages=messages, tools=WEATHER_TOOLS)
        text = _content(chunks)
        assert _finish_reasons(chunks) == ["stop"]
        assert not _stream_tool_calls(chunks)
    else:
        resp = cohere_client.chat.completions.create(
            model=MODEL, messages=messages, tools=WEATHER_TOOLS
        )
        text = resp.choices[0].message.content
        assert resp.choices[0].finish_reason == "stop"
    assert text == f"Based on the tool results: {TOOL_RESULT}"

    reqs = upstream.new_requests()
    assert len(reqs) == 2, reqs
    sent = reqs[1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"], sent
    assert sent[1]["content"] == message.content, sent[1]
    assert sent[1]["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.function.arguments},
        }
    ], sent[1]
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT}, sent[2]


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
def test_image_parts_reach_cohere_as_image_url_items(cohere_client, upstream, stream):
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    messages = [{"role": "user", "content": content}]
    expected = REPLY_PREFIX + "What is in these images? (I see 2 image(s).)"
    if stream:
        assert _content(_stream(cohere_client, model=MODEL, messages=messages)) == expected
    else:
        resp = cohere_client.chat.completions.create(model=MODEL, messages=messages)
        assert resp.choices[0].message.content == expected
    sent = upstream.only_request()["body"]["messages"][0]["content"]
    # Cohere's image item has OpenAI's shape; the parts pass through unchanged.
    assert sent == content, sent


def test_unsupported_image_type_is_a_400_before_sending(cohere_client, upstream):
    with pytest.raises(openai.BadRequestError) as info:
        cohere_client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}
                    ],
                }
            ],
        )
    err = info.value.body
    assert err["param"] == "messages[0].content[0].image_url.url", err
    assert "image/tiff" in err["message"], err
    assert upstream.new_requests() == []


# --------------------------------------------------------------------------- structured output


def test_json_schema_response_format(cohere_client, upstream):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    resp = cohere_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Extract: Ada Lovelace, 36"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    data = json.loads(resp.choices[0].message.content)
    assert isinstance(data["name"], str) and isinstance(data["age"], int), data
    body = upstream.only_request()["body"]
    assert body["response_format"] == {"type": "json_object", "json_schema": schema}, body
