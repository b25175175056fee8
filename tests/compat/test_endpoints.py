"""Every stateless endpoint beyond chat, end to end through the official SDK.

A proxy of its own (``endpoints_proxy``) routes one model per endpoint to the
session's mock-upstream, all through OpenAI-compatible deployments. The mock's
answers are deterministic functions of what it received (see
``tools/mock-upstream/src/media.rs``), so each test can tell from the answer
alone that the proxy rewrote the model and passed the request through intact:
a transcript names the model and the uploaded file's size and FNV-1a hash, and
speech audio is derived from the input text.

Rerank, search and OCR are not in the OpenAI SDK, so they are plain HTTP.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Iterator

import httpx
import openai
import pytest
from openai.types import (
    Completion,
    CreateEmbeddingResponse,
    Image,
    ImagesResponse,
    ModerationCreateResponse,
)
from openai.types.audio import Transcription, TranscriptionVerbose

from conftest import (
    BODY_LIMIT_BYTES,
    MOCK_CHUNK_INTERVAL_MS,
    MOCK_CHUNKS,
    UPSTREAM_KEY,
    MockUpstream,
    Proxy,
    config_head,
    master_http,
    model_block,
    run_reported_proxy,
    sdk_client,
)

SPEECH_KEY = "sk-speech-only"
PNG_1X1_B64 = (  # mock_upstream::PNG_1X1_B64
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
SPEECH_CHUNK_BYTES = 1024  # mock_upstream::SPEECH_CHUNK_BYTES
OCR_DOCUMENT_PAGES = 2  # mock_upstream::OCR_DOCUMENT_PAGES

# (client-facing name, provider/upstream model)
MODELS = [
    ("img", "openai/gpt-image-1"),
    ("dalle", "openai/dall-e-3"),
    ("tts", "openai/tts-1"),
    ("stt", "openai/whisper-1"),
    ("mod", "openai/omni-moderation-latest"),
    ("emb", "openai/text-embedding-3-small"),
    ("chat", "openai/gpt-3.5-turbo-instruct"),
    ("rerank", "hosted_vllm/BAAI/bge-reranker-v2-m3"),
    ("ocr", "openai_like/mistral-ocr-latest"),  # a Mistral-style OCR server
]


# --------------------------------------------------------------------------- the mock's arithmetic

M64 = (1 << 64) - 1


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def splitmix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def audio_header(fmt: str, payload_len: int) -> bytes:
    if fmt == "mp3":
        return b"ID3\x04\x00\x00\x00\x00\x00\x00"
    if fmt == "opus":
        return b"OggS\x00\x02" + b"\x00" * 8 + b"OpusHead"
    if fmt == "aac":
        return bytes([0xFF, 0xF1, 0x58, 0x40, 0x00, 0x1F, 0xFC])
    if fmt == "flac":
        return b"fLaC"
    if fmt == "wav":
        return (
            b"RIFF" + struct.pack("<I", payload_len + 36) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, 24_000, 48_000, 2, 16)
            + b"data" + struct.pack("<I", payload_len)
        )
    return b""


def expected_speech(text: str, fmt: str, chunks: int = MOCK_CHUNKS) -> bytes:
    """What mock_upstream::speech_chunks(text, fmt, chunks) concatenates to."""
    seed = fnv1a(text.encode()) ^ fnv1a(fmt.encode())
    payload = b"".join(
        struct.pack("<Q", splitmix64((seed + c * SPEECH_CHUNK_BYTES + i) & M64))
        for c in range(chunks)
        for i in range(SPEECH_CHUNK_BYTES // 8)
    )
    return audio_header(fmt, chunks * SPEECH_CHUNK_BYTES) + payload


def expected_transcript(model: str, filename: str, data: bytes) -> str:
    """mock_upstream::transcript_text."""
    return f"Transcript of {filename} ({len(data)} bytes, fnv1a {fnv1a(data):016x}) by {model}."


def tricky_audio(size: int) -> bytes:
    """Bytes a careless multipart relay could mangle: CRLFs, boundary look-alikes, NULs."""
    head = b"RIFF\x00\x00\xff\xfe\r\n--boundary\r\n\r\n--"
    body = bytes((i * 197 + 13) % 256 for i in range(size - len(head)))
    return head + body


# --------------------------------------------------------------------------- fixtures


def _endpoints_config(port: int, upstream: MockUpstream) -> str:
    models = "".join(
        model_block(name, pm, upstream.base_url, UPSTREAM_KEY) for name, pm in MODELS
    )
    return config_head(port, body_limit=True) + f"""{models}
[[keys]]
key = "{SPEECH_KEY}"
models = ["tts"]
"""


@pytest.fixture(scope="module")
def endpoints_proxy(workdir, mock_upstream: MockUpstream) -> Iterator[Proxy]:
    config = lambda port: _endpoints_config(port, mock_upstream)  # noqa: E731
    with run_reported_proxy(workdir, "liter-llm-endpoints", config, "endpoints_proxy") as p:
        yield p


@pytest.fixture(scope="module")
def sdk(endpoints_proxy: Proxy) -> Iterator[openai.OpenAI]:
    with sdk_client(endpoints_proxy) as client:
        yield client


@pytest.fixture(scope="module")
def raw(endpoints_proxy: Proxy) -> Iterator[httpx.Client]:
    with master_http(endpoints_proxy.base_url) as client:
        yield client


def assert_openai_error(exc: openai.APIStatusError, status: int, param: str | None = None) -> dict:
    assert exc.status_code == status, exc
    err = exc.response.json()["error"]
    for field in ("message", "type", "param", "code"):
        assert field in err, err
    if param is not None:
        assert err["param"] == param, err
    return err


# --------------------------------------------------------------------------- embeddings


def test_embeddings_float_and_base64_carry_the_same_vectors(sdk):
    floats = sdk.embeddings.create(model="emb", input=["hello", "world"], encoding_format="float")
    assert isinstance(floats, CreateEmbeddingResponse)
    assert len(floats.data) == 2
    vector = floats.data[0].embedding
    assert vector and all(isinstance(x, float) for x in vector)
    assert floats.model == "text-embedding-3-small"
    assert floats.usage.prompt_tokens > 0

    b64 = sdk.embeddings.create(model="emb", input=["hello", "world"], encoding_format="base64")
    encoded = b64.data[0].embedding
    if isinstance(encoded, str):
        raw_bytes = base64.b64decode(encoded)
        decoded = list(struct.unpack(f"<{len(raw_bytes) // 4}f", raw_bytes))
    else:  # an SDK that decodes for the caller
        decoded = encoded
    assert decoded == pytest.approx(vector, rel=1e-6, abs=1e-7)
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    default = sdk.embeddings.create(model="emb", input="hello")
    assert default.data[0].embedding == pytest.approx(vector, rel=1e-6, abs=1e-7)


# --------------------------------------------------------------------------- completions


def test_legacy_completions_plain_and_streamed(sdk):
    done = sdk.completions.create(model="chat", prompt="Say hi")
    assert isinstance(done, Completion)
    assert done.object == "text_completion"
    assert done.model == "gpt-3.5-turbo-instruct"
    assert done.choices[0].text == "Hello from mock-upstream."
    assert done.usage.completion_tokens > 0

    chunks = list(sdk.completions.create(model="chat", prompt="Say hi", stream=True))
    assert chunks and all(isinstance(c, Completion) for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "".join(f"tok{i} " for i in range(MOCK_CHUNKS))
    assert chunks[-1].choices[0].finish_reason == "stop"


# --------------------------------------------------------------------------- images


def test_images_generate_returns_decodable_base64_pngs_and_usage(sdk):
    resp = sdk.images.generate(model="img", prompt="a red fox", n=2, size="1024x1024", quality="low")
    assert isinstance(resp, ImagesResponse)
    assert len(resp.data) == 2
    assert all(isinstance(i, Image) for i in resp.data)
    png = base64.b64decode(resp.data[0].b64_json)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert resp.data[0].b64_json == PNG_1X1_B64
    assert resp.usage.output_tokens == 2 * 272
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens


def test_images_generate_dall_e_urls(sdk):
    resp = sdk.images.generate(model="dalle", prompt="a lighthouse", response_format="url")
    assert resp.data[0].url.startswith("https://")
    assert "a lighthouse" in resp.data[0].revised_prompt


def test_images_generate_without_a_prompt_is_a_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.images.generate(model="img", prompt="")
    assert_openai_error(exc.value, 400, "prompt")


def test_images_for_a_model_outside_the_keys_list_are_permission_denied(endpoints_proxy):
    with openai.OpenAI(
        base_url=endpoints_proxy.api_base, api_key=SPEECH_KEY, max_retries=0, timeout=30.0
    ) as client:
        with pytest.raises(openai.PermissionDeniedError) as exc:
            client.images.generate(model="img", prompt="a cat")
        assert_openai_error(exc.value, 403, "model")
        # The same key's own model works.
        assert client.audio.speech.create(model="tts", voice="alloy", input="ok").content


# --------------------------------------------------------------------------- speech


@pytest.mark.parametrize(
    "fmt,content_type",
    [
        ("mp3", "audio/mpeg"),
        ("opus", "audio/opus"),
        ("aac", "audio/aac"),
        ("flac", "audio/flac"),
        ("wav", "audio/wav"),
        ("pcm", "audio/pcm"),
    ],
)
def test_speech_bytes_and_content_type_follow_response_format(sdk, fmt, content_type):
    text = f"Speak this as {fmt}."
    raw = sdk.audio.speech.with_raw_response.create(
        model="tts", voice="alloy", input=text, response_format=fmt
    )
    assert raw.headers["content-type"] == content_type
    assert raw.headers.get("x-liter-llm-model-id")
    assert raw.parse().content == expected_speech(text, fmt)


def test_speech_streams_chunk_by_chunk(sdk):
    text = "A longer sentence, streamed while it is spoken."
    arrivals: list[tuple[float, bytes]] = []
    with sdk.audio.speech.with_streaming_response.create(
        model="tts", voice="alloy", input=text, response_format="wav"
    ) as resp:
        assert resp.headers["content-type"] == "audio/wav"
        for chunk in resp.iter_bytes():
            arrivals.append((time.monotonic(), chunk))
    audio = b"".join(c for _, c in arrivals)
    assert audio == expected_speech(text, "wav")
    assert len(arrivals) >= 2, "the audio arrived in one piece"
    # The mock spaces its chunks MOCK_CHUNK_INTERVAL_MS apart; a proxy that
    # buffered the answer would hand them over all at once.
    spread = arrivals[-1][0] - arrivals[0][0]
    assert spread >= (MOCK_CHUNKS - 1) * MOCK_CHUNK_INTERVAL_MS / 1000 * 0.5, spread


def test_speech_with_an_unsupported_format_is_a_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.audio.speech.create(model="tts", voice="alloy", input="hi", response_format="ogg")
    err = assert_openai_error(exc.value, 400, "response_format")
    assert "mp3" in err["message"]


# --------------------------------------------------------------------------- transcriptions


def test_transcription_json_names_the_rewritten_model_and_the_exact_upload(sdk):
    audio = tricky_audio(150_000)
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="stt", file=("meeting.wav", audio, "audio/wav"), language="en"
    )
    assert raw.headers["content-type"] == "application/json"
    result = raw.parse()
    assert isinstance(result, Transcription)
    assert result.text == expected_transcript("whisper-1", "meeting.wav", audio)
    assert result.usage.type == "duration"


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_transcription_text_formats_come_back_as_plain_text(sdk, fmt):
    audio = tricky_audio(48_000)
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="stt", file=("a.wav", audio, "audio/wav"), response_format=fmt
    )
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    text = raw.parse()
    assert isinstance(text, str)
    transcript = expected_transcript("whisper-1", "a.wav", audio)
    expected = {
        "text": f"{transcript}\n",
        "srt": f"1\n00:00:00,000 --> 00:00:01,500\n{transcript}\n\n",
        "vtt": f"WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n{transcript}\n\n",
    }[fmt]
    # The SDK may trim surrounding whitespace from a text answer.
    assert text.strip() == expected.strip()
    assert raw.http_response.text == expected


def test_transcription_verbose_json_has_segments_and_words(sdk):
    audio = tricky_audio(64_000)
    result = sdk.audio.transcriptions.create(
        model="stt",
        file=("a.wav", audio, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert isinstance(result, TranscriptionVerbose)
    assert result.text == expected_transcript("whisper-1", "a.wav", audio)
    assert result.duration == pytest.approx(2.0)
    assert result.segments and result.segments[0].end == pytest.approx(2.0)
    assert result.words and result.words[0].word == "Transcript"


def test_transcription_without_a_file_names_file(raw):
    r = raw.post("/v1/audio/transcriptions", files={"model": (None, "stt")})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "file"


def test_transcription_with_an_unsupported_format_is_a_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.audio.transcriptions.create(
            model="stt", file=("a.wav", b"RIFF", "audio/wav"), response_format="docx"
        )
    assert_openai_error(exc.value, 400, "response_format")


def test_an_upload_over_the_body_limit_is_413(sdk):
    with pytest.raises(openai.APIStatusError) as exc:
        sdk.audio.transcriptions.create(
            model="stt", file=("big.wav", b"\0" * (BODY_LIMIT_BYTES + 1), "audio/wav")
        )
    assert_openai_error(exc.value, 413)


# --------------------------------------------------------------------------- moderations


def test_moderations_create_flags_and_scores_each_input(sdk):
    resp = sdk.moderations.create(model="mod", input=["I will kill them", "What a lovely day"])
    assert isinstance(resp, ModerationCreateResponse)
    assert resp.model == "omni-moderation-latest"
    assert len(resp.results) == 2
    flagged, fine = resp.results
    assert flagged.flagged and flagged.categories.violence
    assert flagged.category_scores.violence > 0.5
    assert not fine.flagged and not fine.categories.violence
    assert isinstance(fine.category_scores.harassment, float)
    assert fine.category_applied_input_types.violence == ["text"]


def test_moderations_with_empty_input_is_a_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.moderations.create(model="mod", input=[])
    assert_openai_error(exc.value, 400, "input")


# --------------------------------------------------------------------------- rerank, search, OCR


def test_rerank_orders_documents_by_relevance(raw):
    r = raw.post(
        "/v1/rerank",
        json={
            "model": "rerank",
            "query": "What is the capital of France?",
            "documents": ["Berlin is the capital of Germany.", "Paris is the capital of France."],
            "top_n": 1,
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers.get("x-liter-llm-model-id")
    body = r.json()
    assert body["model"] == "BAAI/bge-reranker-v2-m3"
    assert [x["index"] for x in body["results"]] == [1]
    assert body["results"][0]["document"]["text"] == "Paris is the capital of France."
    assert isinstance(body["results"][0]["relevance_score"], float)


def test_rerank_with_no_documents_names_documents(raw):
    r = raw.post("/v1/rerank", json={"model": "rerank", "query": "q", "documents": []})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "documents"


def test_search_through_an_openai_compatible_model_is_refused_clearly(raw):
    r = raw.post("/v1/search", json={"model": "chat", "query": "CAP theorem"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "endpoint_not_supported", err
    assert "search" in err["message"]
    missing = raw.post("/v1/search", json={"model": "chat"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "query"


def test_ocr_returns_mistral_shaped_pages(raw):
    pdf = base64.b64encode(b"%PDF-1.7 tiny").decode()
    r = raw.post(
        "/v1/ocr",
        json={
            "model": "ocr",
            "document": {"type": "document_url", "document_url": f"data:application/pdf;base64,{pdf}"},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mistral-ocr-latest"
    assert len(body["pages"]) == OCR_DOCUMENT_PAGES
    page = body["pages"][0]
    assert page["index"] == 0 and page["markdown"].startswith("# Page 1")
    assert page["dimensions"] == {"dpi": 200, "height": 2200, "width": 1700}
    assert body["usage_info"] == {"pages_processed": OCR_DOCUMENT_PAGES, "doc_size_bytes": 13}


def test_ocr_without_a_document_names_document(raw):
    r = raw.post("/v1/ocr", json={"model": "ocr"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "document"
