"""The official `openai` Python SDK, pointed at liter-llm, behaves as against OpenAI."""

from __future__ import annotations

import time

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

UPSTREAM_GPT_4O = "gpt-4o-2024-08-06"  # provider_model "openai/gpt-4o-2024-08-06" minus prefix
MOCK_CONTENT = "Hello from mock-upstream."
MOCK_STREAM_CONTENT = "tok0 tok1 tok2 tok3 tok4 tok5 "
WRONG_KEY = "sk-wrong-key-123"

MESSAGES = [{"role": "user", "content": "Say hello."}]


def assert_openai_error(exc: openai.APIStatusError) -> dict:
    """The error body is `{"error": {"message", "type", "param", "code"}}`; returns the inner dict."""
    body = exc.response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    for field in ("message", "type", "param", "code"):
        assert field in err, f"error object lacks {field!r}: {body}"
    assert isinstance(err["message"], str) and err["message"].strip(), body
    assert isinstance(err["type"], str) and err["type"].strip(), body
    # The SDK unwraps the envelope: e.body is the inner error object.
    assert isinstance(exc.body, dict) and exc.body.get("message") == err["message"], exc.body
    assert exc.response.headers.get("x-request-id"), dict(exc.response.headers)
    return err


def _collect_stream(client: openai.OpenAI, **kwargs) -> list[tuple[float, ChatCompletionChunk]]:
    """Returns (arrival time, chunk) pairs; the last pair's time is taken after the stream ends."""
    timed: list[tuple[float, ChatCompletionChunk]] = []
    with client.chat.completions.create(stream=True, **kwargs) as stream:
        for chunk in stream:
            timed.append((time.monotonic(), chunk))
    return timed


def _content(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(
        choice.delta.content or "" for chunk in chunks for choice in chunk.choices
    )


# --------------------------------------------------------------------------- models


def test_models_list_master_key_sees_all_configured_models(master_client):
    page = master_client.models.list()
    ids = [m.id for m in page.data]
    assert "gpt-4o" in ids and "gpt-4o-mini" in ids, ids
    assert all(m.object == "model" for m in page.data), page.data


def test_models_list_scoped_key_sees_only_allowed_models(team_client):
    ids = [m.id for m in team_client.models.list().data]
    assert ids == ["gpt-4o-mini"], ids


def test_models_retrieve_returns_model_object(master_client):
    model = master_client.models.retrieve("gpt-4o")
    assert model.id == "gpt-4o"
    assert model.object == "model"


# --------------------------------------------------------------------------- chat, non-stream


def test_chat_completion_returns_mock_content_and_upstream_model_id(master_client):
    resp = master_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert isinstance(resp, ChatCompletion)
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == MOCK_CONTENT
    assert resp.model == UPSTREAM_GPT_4O


def test_chat_completion_response_carries_request_id_header(master_client):
    raw = master_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES
    )
    assert raw.status_code == 200
    assert raw.headers.get("x-request-id"), dict(raw.headers)
    resp = raw.parse()
    assert resp.choices[0].message.content == MOCK_CONTENT


def test_chat_completion_tolerates_unknown_and_newer_request_fields(master_client):
    resp = master_client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        max_completion_tokens=64,
        store=False,
        metadata={"team": "compat-suite"},
        service_tier="auto",
        logprobs=False,
        extra_body={"some_vendor_field": {"a": 1}},
    )
    assert resp.choices[0].message.content == MOCK_CONTENT
    assert resp.model == UPSTREAM_GPT_4O


def test_scoped_key_can_use_its_allowed_model(team_client):
    resp = team_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert resp.choices[0].message.content == MOCK_CONTENT
    assert resp.model == "gpt-4o-mini"


# --------------------------------------------------------------------------- chat, stream


def test_stream_reassembles_content_and_reports_usage_when_requested(master_client):
    timed = _collect_stream(
        master_client,
        model="gpt-4o",
        messages=MESSAGES,
        stream_options={"include_usage": True},
    )
    chunks = [c for _, c in timed]
    assert chunks, "stream produced no chunks"
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks), [c.object for c in chunks]
    assert chunks[0].model == UPSTREAM_GPT_4O
    assert _content(chunks) == MOCK_STREAM_CONTENT

    finish_reasons = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finish_reasons == ["stop"], finish_reasons

    final = chunks[-1]
    assert final.choices == [], final
    assert final.usage is not None, final
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(final.usage, field)
        assert isinstance(value, int) and value >= 0, (field, final.usage)
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens
    # Only the trailing chunk carries usage.
    assert all(c.usage is None for c in chunks[:-1]), [c.usage for c in chunks]


def test_stream_without_include_usage_has_no_usage_chunk(master_client):
    chunks = [c for _, c in _collect_stream(master_client, model="gpt-4o", messages=MESSAGES)]
    assert _content(chunks) == MOCK_STREAM_CONTENT
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
    assert all(c.choices for c in chunks), "a choices-less (usage) chunk appeared"
    finish_reasons = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finish_reasons == ["stop"], finish_reasons


def test_stream_first_chunk_arrives_before_upstream_finishes(master_client):
    # The mock spaces its 6 content chunks 30 ms apart (~150-180 ms in all). A proxy
    # that buffers the upstream stream delivers everything at once; one that relays
    # it delivers the first content chunk long before the stream ends.
    start = time.monotonic()
    timed = _collect_stream(
        master_client,
        model="gpt-4o",
        messages=MESSAGES,
        stream_options={"include_usage": True},
    )
    end = time.monotonic()
    content_times = [
        t for t, c in timed if any(ch.delta.content for ch in c.choices)
    ]
    assert len(content_times) == 6, f"expected 6 content chunks, got {len(content_times)}"
    first, last = content_times[0], content_times[-1]
    lead = last - first
    assert lead >= 0.100, (
        f"first content chunk arrived only {lead * 1000:.0f} ms before the last one "
        f"(stream took {(end - start) * 1000:.0f} ms): the proxy appears to buffer the stream"
    )
    assert end - first >= 0.100


# --------------------------------------------------------------------------- errors


def test_wrong_key_raises_authentication_error_without_echo(make_client):
    client = make_client(WRONG_KEY)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    exc = info.value
    assert exc.status_code == 401
    err = assert_openai_error(exc)
    assert WRONG_KEY not in err["message"]
    assert WRONG_KEY not in exc.response.text


def test_wrong_key_on_models_list_raises_authentication_error(make_client):
    with pytest.raises(openai.AuthenticationError) as info:
        make_client(WRONG_KEY).models.list()
    assert info.value.status_code == 401
    assert WRONG_KEY not in assert_openai_error(info.value)["message"]


def test_scoped_key_disallowed_model_raises_permission_denied_without_echo(team_client):
    with pytest.raises(openai.PermissionDeniedError) as info:
        team_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    exc = info.value
    assert exc.status_code == 403
    err = assert_openai_error(exc)
    assert "sk-team-a" not in err["message"]
    assert "sk-team-a" not in exc.response.text


def test_unknown_model_raises_not_found_naming_the_model(master_client):
    with pytest.raises(openai.NotFoundError) as info:
        master_client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    exc = info.value
    assert exc.status_code == 404
    err = assert_openai_error(exc)
    assert "no-such-model" in err["message"], err


def test_oversized_body_raises_413(master_client):
    big = "x" * 1_500_000  # ~1.5 MB, over the configured 1 MiB body limit
    with pytest.raises(openai.APIStatusError) as info:
        master_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": big}]
        )
    exc = info.value
    assert exc.status_code == 413, exc
    assert_openai_error(exc)


def test_embeddings_create_float_and_base64(master_client):
    resp = master_client.embeddings.create(model="gpt-4o", input=["hello", "world"])
    assert len(resp.data) == 2
    assert all(isinstance(x, float) for x in resp.data[0].embedding)
    assert resp.usage.prompt_tokens > 0
    raw = master_client.embeddings.create(model="gpt-4o", input="hello", encoding_format="base64")
    # The SDK decodes base64 into floats itself when it asked for base64.
    assert len(raw.data) == 1


def test_legacy_completions_create_and_stream(master_client):
    resp = master_client.completions.create(model="gpt-4o", prompt="Say hi")
    assert resp.object == "text_completion"
    assert isinstance(resp.choices[0].text, str)
    chunks = list(master_client.completions.create(model="gpt-4o", prompt="Say hi", stream=True))
    assert chunks, "no chunks streamed"
    assert "".join(c.choices[0].text for c in chunks if c.choices)


def test_empty_embedding_input_raises_bad_request(master_client):
    import openai

    try:
        master_client.embeddings.create(model="gpt-4o", input=[])
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert "input" in e.response.json()["error"]["message"]
    else:
        raise AssertionError("empty input was accepted")
