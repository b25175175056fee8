"""The Vertex AI and watsonx.ai adapters, end to end through the official SDK.

The `openai` SDK talks to a liter-llm proxy whose models are served by the
native `vertex_ai` adapter (Gemini and Claude publishers) and `watsonx`
adapter. Upstream are the provider-faithful fakes from `tools/fake-providers`
(`--provider vertex`, `--provider watsonx`). Each also runs the provider's token
endpoint: the Vertex fake issues OAuth2 tokens only for JWTs signed with the
committed test service account (`tools/fake-providers/testdata`), the watsonx
fake only for the right IBM Cloud API key, and both serve models only with a
current token. So each test checks the OpenAI shape the SDK parses, the native
request the provider saw, and that it carried an issued bearer token.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conftest
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

MASTER_KEY = conftest.MASTER_KEY
VERTEX_PROJECT = "liter-llm-test"
VERTEX_LOCATION = "us-central1"
WATSONX_KEY = "ibm-cloud-compat-key"
WATSONX_PROJECT = "wx-test-project"
SERVICE_ACCOUNT = conftest.REPO_ROOT / "tools/fake-providers/testdata/test-service-account.json"

# Both fakes serve their API at the root (Vertex under /v1/projects/..., watsonx under /ml/v1).
conftest._FAKE_BASE_PATH.setdefault("vertex", "")
conftest._FAKE_BASE_PATH.setdefault("watsonx", "")

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
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


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake_vertex(workdir: Path):
    with conftest.run_reported_fake(workdir, "vertex", "unused") as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_watsonx(workdir: Path):
    with conftest.run_reported_fake(workdir, "watsonx", WATSONX_KEY) as fake:
        yield fake


def _proxy_config(port: int, vertex, watsonx, key_file: Path) -> str:
    base = f"{vertex.root}/v1/projects/{{project}}/locations/{{location}}"
    vertex_fields = (
        f'vertex_project = "{VERTEX_PROJECT}"\n'
        f'vertex_location = "{VERTEX_LOCATION}"\n'
        f'vertex_credentials = "{key_file}"\n'
    )
    return conftest.config_head(port) + f"""
[[models]]
name = "vertex-gemini"
provider_model = "vertex_ai/gemini-2.5-flash"
base_url = "{base}"
{vertex_fields}
[[models]]
name = "vertex-claude"
provider_model = "vertex_ai/claude-sonnet-4-5@20250929"
base_url = "{base}"
{vertex_fields}
[[models]]
name = "granite"
provider_model = "watsonx/ibm/granite-3-3-8b-instruct"
base_url = "{watsonx.root}"
api_key = "{WATSONX_KEY}"
watsonx_project_id = "{WATSONX_PROJECT}"
watsonx_iam_url = "{watsonx.root}/identity/token"
"""


@pytest.fixture(scope="module")
def oauth_client(workdir: Path, fake_vertex, fake_watsonx):
    """The official SDK against a proxy whose models need OAuth/IAM tokens."""
    key = json.loads(SERVICE_ACCOUNT.read_text())
    key["token_uri"] = f"{fake_vertex.root}/token"
    key_file = workdir / "vertex-service-account.json"
    key_file.write_text(json.dumps(key))
    config = lambda port: _proxy_config(port, fake_vertex, fake_watsonx, key_file)  # noqa: E731
    with conftest.run_reported_proxy(workdir, "liter-llm-oauth", config, "oauth_client") as p:
        with conftest.sdk_client(p) as client:
            yield client


# --------------------------------------------------------------------------- per model


@dataclass(frozen=True)
class Target:
    model: str
    fake_fixture: str
    reply_prefix: str
    image_note: str

    def assert_path(self, req: dict[str, Any], stream: bool) -> None:
        assert req["method"] == "POST", req
        prefix = f"/v1/projects/{VERTEX_PROJECT}/locations/{VERTEX_LOCATION}/publishers"
        if self.model == "vertex-gemini":
            method = "streamGenerateContent" if stream else "generateContent"
            assert req["path"] == f"{prefix}/google/models/gemini-2.5-flash:{method}", req["path"]
            assert req["query"] == ("alt=sse" if stream else None), req["query"]
        elif self.model == "vertex-claude":
            method = "streamRawPredict" if stream else "rawPredict"
            assert (
                req["path"] == f"{prefix}/anthropic/models/claude-sonnet-4-5@20250929:{method}"
            ), req["path"]
            assert req["body"]["anthropic_version"] == "vertex-2023-10-16", req["body"]
            assert "model" not in req["body"], req["body"]
            assert req["body"].get("stream", False) is stream, req["body"]
        else:
            endpoint = "chat_stream" if stream else "chat"
            assert req["path"] == f"/ml/v1/text/{endpoint}", req["path"]
            assert req["query"] == "version=2024-05-31", req["query"]
            assert req["body"]["model_id"] == "ibm/granite-3-3-8b-instruct", req["body"]
            assert req["body"]["project_id"] == WATSONX_PROJECT, req["body"]

    def image_part(self) -> dict[str, Any]:
        if self.model == "vertex-gemini":
            return {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
        if self.model == "vertex-claude":
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
            }
        return {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}

    def user_parts(self, req: dict[str, Any]) -> list[Any]:
        body = req["body"]
        if self.model == "vertex-gemini":
            return [c["parts"] for c in body["contents"] if c["role"] == "user"][0]
        return [m["content"] for m in body["messages"] if m["role"] == "user"][0]


GEMINI = Target("vertex-gemini", "fake_vertex", "Hello from fake Gemini. You said: ", "I also got 1 file(s): image/png.")
CLAUDE = Target("vertex-claude", "fake_vertex", "Hello from fake Claude! You said: ", "(I see 1 image(s).)")
GRANITE = Target("granite", "fake_watsonx", "Hello from fake watsonx! You said: ", "(I see 1 image(s).)")


def _assert_bearer(fake, req: dict[str, Any]) -> None:
    """An issued access token, never a static key or the client's proxy key."""
    headers = req["headers"]
    auth = headers.get("authorization", "")
    assert auth.startswith("Bearer "), headers
    assert auth not in (f"Bearer {MASTER_KEY}", f"Bearer {WATSONX_KEY}"), headers
    assert "x-goog-api-key" not in headers and "x-api-key" not in headers, headers
    leaked = [n for n, v in headers.items() if MASTER_KEY in v or WATSONX_KEY in v]
    assert not leaked, f"a key leaked upstream in {leaked}"
    assert WATSONX_KEY not in json.dumps(req["body"]) and MASTER_KEY not in json.dumps(req["body"])


class Upstream(conftest.NewRequests):
    """The fake's requests made during one test, each checked for its token."""

    def __init__(self, target: Target, fake) -> None:
        super().__init__(fake, lambda req: _assert_bearer(fake, req))
        self.target = target


@pytest.fixture(params=[GEMINI, CLAUDE, GRANITE], ids=lambda t: t.model)
def upstream(request, oauth_client) -> Upstream:
    return Upstream(request.param, request.getfixturevalue(request.param.fake_fixture))


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


# --------------------------------------------------------------------------- tests


def test_non_stream_text(oauth_client, upstream):
    t = upstream.target
    resp = oauth_client.chat.completions.create(
        model=t.model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=200,
    )
    assert isinstance(resp, ChatCompletion)
    assert resp.model == t.model
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == t.reply_prefix + "Say hello."
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    t.assert_path(upstream.only(), stream=False)


def test_stream_text_with_usage(oauth_client, upstream):
    t = upstream.target
    chunks = _stream(
        oauth_client,
        model=t.model,
        messages=[{"role": "user", "content": "Stream a greeting."}],
        stream_options={"include_usage": True},
    )
    assert all(c.model == t.model for c in chunks)
    assert _content(chunks) == t.reply_prefix + "Stream a greeting."
    assert _finish_reasons(chunks) == ["stop"]
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None, final
    assert final.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    t.assert_path(upstream.only(), stream=True)


def test_stream_without_usage_has_no_usage_chunk(oauth_client, upstream):
    t = upstream.target
    chunks = _stream(oauth_client, model=t.model, messages=[{"role": "user", "content": "No usage."}])
    assert _content(chunks) == t.reply_prefix + "No usage."
    assert all(c.choices for c in chunks), "a usage-only chunk appeared without include_usage"
    t.assert_path(upstream.only(), stream=True)


@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
def test_tool_call_and_result(oauth_client, upstream, stream):
    t = upstream.target
    question = [{"role": "user", "content": "What is the weather in Oslo?"}]
    if stream:
        chunks = _stream(oauth_client, model=t.model, messages=question, tools=WEATHER_TOOLS)
        calls: dict[int, dict[str, str]] = {}
        for c in chunks:
            for ch in c.choices:
                for d in ch.delta.tool_calls or []:
                    call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] = d.id or call["id"]
                    if d.function is not None:
                        call["name"] += d.function.name or ""
                        call["arguments"] += d.function.arguments or ""
        assert len(calls) == 1, calls
        call = calls[0]
        assert _finish_reasons(chunks) == ["tool_calls"]
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        resp = oauth_client.chat.completions.create(model=t.model, messages=question, tools=WEATHER_TOOLS)
        assert resp.choices[0].finish_reason == "tool_calls"
        tc = resp.choices[0].message.tool_calls[0]
        call_id, name, arguments = tc.id, tc.function.name, tc.function.arguments
    assert call_id and name == "get_weather"
    assert isinstance(json.loads(arguments)["city"], str)

    follow_up = [
        *question,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 3}'},
    ]
    resp = oauth_client.chat.completions.create(model=t.model, messages=follow_up, tools=WEATHER_TOOLS)
    assert resp.choices[0].finish_reason == "stop"
    assert "temp_c" in resp.choices[0].message.content
    reqs = upstream.new()
    assert len(reqs) == 2
    t.assert_path(reqs[0], stream=stream)
    t.assert_path(reqs[1], stream=False)


def test_image_part_reaches_the_provider(oauth_client, upstream):
    t = upstream.target
    resp = oauth_client.chat.completions.create(
        model=t.model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ],
    )
    assert t.image_note in resp.choices[0].message.content
    req = upstream.only()
    t.assert_path(req, stream=False)
    parts = t.user_parts(req)
    assert t.image_part() in parts, parts
    assert base64.b64decode(PNG_B64).startswith(b"\x89PNG")


def test_tokens_are_fetched_once_and_reused(oauth_client, fake_vertex, fake_watsonx):
    for model in ("vertex-gemini", "vertex-claude", "granite"):
        oauth_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    # One token per credential for the whole session: the tokens live an hour.
    def token_requests(fake) -> list[dict[str, Any]]:
        r = httpx.get(f"{fake.root}/__token_requests", timeout=10.0, trust_env=False)
        r.raise_for_status()
        return r.json()

    vertex_tokens = token_requests(fake_vertex)
    watsonx_tokens = token_requests(fake_watsonx)
    assert len(vertex_tokens) == 1, vertex_tokens
    assert vertex_tokens[0]["body"]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert len(watsonx_tokens) == 1, watsonx_tokens
    assert watsonx_tokens[0]["body"] == {
        "grant_type": "urn:ibm:params:oauth:grant-type:apikey",
        "apikey": WATSONX_KEY,
    }
    for fake in (fake_vertex, fake_watsonx):
        auths = {r["headers"]["authorization"] for r in fake.requests()}
        assert len(auths) == 1, auths
