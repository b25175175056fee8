"""The native ElevenLabs and Deepgram speech adapters, end to end through the official SDK.

The `openai` SDK talks to a liter-llm proxy (`speech_proxy`) whose audio models are
served by the native adapters; upstream are the provider-faithful fakes from
`tools/fake-providers` (`--provider elevenlabs`, `--provider deepgram`), which refuse
what the real APIs refuse (and any field their references do not list) and report
what they received at `GET /__requests`. Speech is checked as the SDK streams it
(`with_streaming_response`), transcriptions in every `response_format` the SDK
offers, and provider errors as the SDK's exception classes.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest
from openai.types.audio import Transcription, TranscriptionVerbose

import conftest
from conftest import MASTER_KEY, FakeProvider

EL_UPSTREAM_KEY = "el-compat"
DG_UPSTREAM_KEY = "dg-compat"
VOICE = "JBFqnCBsd6RMkjVDRZzb"  # a voice fake_providers::elevenlabs::VOICES knows
SPOKEN = "The first move is what sets everything in motion"

conftest._FAKE_BASE_PATH.setdefault("elevenlabs", "")
conftest._FAKE_BASE_PATH.setdefault("deepgram", "/v1")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def fake_elevenlabs(workdir: Path) -> Iterator[FakeProvider]:
    with conftest.run_reported_fake(workdir, "elevenlabs", EL_UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_deepgram(workdir: Path) -> Iterator[FakeProvider]:
    with conftest.run_reported_fake(workdir, "deepgram", DG_UPSTREAM_KEY) as fake:
        yield fake


def _speech_proxy_config(port: int, el: FakeProvider, dg: FakeProvider) -> str:
    models = [
        ("el-tts", "elevenlabs/eleven_multilingual_v2", el),
        ("el-stt", "elevenlabs/scribe_v1", el),
        ("dg-stt", "deepgram/nova-3", dg),
        ("dg-tts", "deepgram/aura-2-andromeda-en", dg),
    ]
    return conftest.config_head(port, body_limit=True) + "".join(
        conftest.model_block(name, pm, fake.base_url, fake.api_key) for name, pm, fake in models
    )


@pytest.fixture(scope="session")
def speech_proxy(workdir: Path, fake_elevenlabs: FakeProvider, fake_deepgram: FakeProvider):
    config = lambda port: _speech_proxy_config(port, fake_elevenlabs, fake_deepgram)  # noqa: E731
    with conftest.run_reported_proxy(workdir, "liter-llm-speech", config, "speech_proxy") as p:
        yield p


@pytest.fixture(scope="session")
def speech_client(speech_proxy) -> Iterator[openai.OpenAI]:
    with conftest.sdk_client(speech_proxy) as client:
        yield client


# --------------------------------------------------------------------------- helpers


def _no_master_key(req: dict[str, Any]) -> None:
    leaked = [name for name, value in req["headers"].items() if MASTER_KEY in value]
    assert not leaked, f"the proxy's master key leaked upstream in {leaked}"


def _upstream(fake: FakeProvider) -> conftest.NewRequests:
    """The requests a fake receives during one test, none carrying the master key."""
    return conftest.NewRequests(fake, _no_master_key)


def _queue_fault(fake: FakeProvider, fault: dict[str, Any]) -> None:
    conftest.post_fault(fake, fault, 204)


def _query(req: dict[str, Any]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in (req["query"] or "").split("&") if p)


def _el_audio(text: str, output_format: str) -> bytes:
    """fake_providers::elevenlabs::audio_chunks, concatenated."""
    codec = output_format.split("_")[0]
    head = {
        "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
        "opus": b"OggS\x00\x02\x00\x00OpusHead",
        "wav": b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00",
    }.get(codec, b"")
    frames = b"".join(
        b"\xff\xf3\x80" + codec.encode() + b"\x00" + w.encode() + b"\xfe\x00\x81"
        for w in text.split()
    )
    return head + frames


def _dg_audio(text: str, encoding: str, container: str) -> bytes:
    """fake_providers::deepgram::audio_chunks, concatenated."""
    if encoding == "mp3":
        head = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    elif encoding == "opus":
        head = b"OggS\x00\x02\x00\x00OpusHead"
    elif encoding == "flac":
        head = b"fLaC\x00\x00\x00\x22"
    elif container == "wav":
        head = b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
    else:
        head = b""
    frames = b"".join(
        b"\xff\xf1\x50" + encoding.encode() + b"\x00" + w.encode() + b"\x80\x00\xfd"
        for w in text.split()
    )
    return head + frames


def _audio() -> bytes:
    """Fake audio with CRLFs, a boundary look-alike and non-UTF-8 bytes."""
    return b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\r\n--boundary\r\n" + bytes(range(256)) * 12


# --------------------------------------------------------------------------- ElevenLabs speech


def test_elevenlabs_speech_streams_to_the_sdk_with_openais_content_type(
    speech_client: openai.OpenAI, fake_elevenlabs: FakeProvider
) -> None:
    upstream = _upstream(fake_elevenlabs)
    started = time.monotonic()
    arrivals: list[float] = []
    data = b""
    with speech_client.audio.speech.with_streaming_response.create(
        model="el-tts", voice=VOICE, input=SPOKEN
    ) as resp:
        assert resp.headers["content-type"] == "audio/mpeg"
        for chunk in resp.iter_bytes():
            arrivals.append(time.monotonic() - started)
            data += chunk
    assert data == _el_audio(SPOKEN, "mp3_44100_128")
    # Ten words 25 ms apart: a buffering proxy would deliver them all at once.
    assert len(arrivals) > 3, arrivals
    assert arrivals[-1] - arrivals[0] >= 0.15, arrivals

    sent = upstream.only()
    assert sent["path"] == f"/v1/text-to-speech/{VOICE}/stream"
    assert _query(sent) == {"output_format": "mp3_44100_128"}
    assert sent["headers"]["xi-api-key"] == EL_UPSTREAM_KEY
    assert "authorization" not in sent["headers"]
    assert sent["body"] == {"text": SPOKEN, "model_id": "eleven_multilingual_v2"}


@pytest.mark.parametrize(
    "response_format,output_format,content_type,path_end",
    [
        ("mp3", "mp3_44100_128", "audio/mpeg", "/stream"),
        ("opus", "opus_48000_64", "audio/opus", "/stream"),
        ("pcm", "pcm_24000", "audio/pcm", "/stream"),
        ("wav", "wav_24000", "audio/wav", ""),
    ],
)
def test_elevenlabs_speech_in_each_format_it_can_produce(
    speech_client: openai.OpenAI,
    fake_elevenlabs: FakeProvider,
    response_format: str,
    output_format: str,
    content_type: str,
    path_end: str,
) -> None:
    upstream = _upstream(fake_elevenlabs)
    with speech_client.audio.speech.with_streaming_response.create(
        model="el-tts",
        voice={"id": VOICE},
        input="Hello there",
        response_format=response_format,
        speed=0.9,
    ) as resp:
        assert resp.headers["content-type"] == content_type
        data = resp.read()
    assert data == _el_audio("Hello there", output_format)
    sent = upstream.only()
    assert sent["path"] == f"/v1/text-to-speech/{VOICE}{path_end}"
    assert _query(sent)["output_format"] == output_format
    assert sent["body"]["voice_settings"] == {"speed": 0.9}


@pytest.mark.parametrize("response_format", ["aac", "flac"])
def test_formats_elevenlabs_cannot_produce_are_a_400_before_any_upstream_call(
    speech_client: openai.OpenAI, fake_elevenlabs: FakeProvider, response_format: str
) -> None:
    upstream = _upstream(fake_elevenlabs)
    with pytest.raises(openai.BadRequestError) as exc:
        speech_client.audio.speech.create(
            model="el-tts", voice=VOICE, input="Hi", response_format=response_format
        )
    err = exc.value.body
    assert err["param"] == "response_format", err
    assert err["code"] == "unsupported_value", err
    assert response_format in err["message"], err
    assert upstream.new() == []


def test_an_elevenlabs_stream_cut_mid_audio_fails_in_the_sdk(
    speech_client: openai.OpenAI, fake_elevenlabs: FakeProvider
) -> None:
    _queue_fault(fake_elevenlabs, {"kind": "cut", "after": 3})
    received = b""
    with pytest.raises(Exception) as exc:
        with speech_client.audio.speech.with_streaming_response.create(
            model="el-tts", voice=VOICE, input=SPOKEN
        ) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_bytes():
                received += chunk
    # The transport noticed the missing end of the body; nothing looked complete.
    assert "incomplete" in str(exc.value).lower() or "closed" in str(exc.value).lower(), repr(exc.value)
    full = _el_audio(SPOKEN, "mp3_44100_128")
    assert len(received) < len(full) and full.startswith(received)


def test_elevenlabs_quota_error_is_a_502_for_the_operator(
    speech_client: openai.OpenAI, fake_elevenlabs: FakeProvider
) -> None:
    _queue_fault(fake_elevenlabs, {"kind": "documented_error", "status": 401})
    with pytest.raises(openai.APIStatusError) as exc:
        speech_client.audio.speech.create(model="el-tts", voice=VOICE, input="Hi")
    assert exc.value.status_code == 502
    assert exc.value.body["code"] == "upstream_billing", exc.value.body
    assert "quota" in exc.value.body["message"]


# --------------------------------------------------------------------------- ElevenLabs Scribe


def test_elevenlabs_transcription_as_json_and_verbose_json(
    speech_client: openai.OpenAI, fake_elevenlabs: FakeProvider
) -> None:
    audio = _audio()
    upstream = _upstream(fake_elevenlabs)
    t = speech_client.audio.transcriptions.create(
        model="el-stt", file=("talk.wav", audio, "audio/wav"), language="en", prompt="Kenobi"
    )
    assert isinstance(t, Transcription)
    assert t.text == f"Hello from the fake. The audio was {len(audio)} bytes long."
    sent = upstream.only()
    assert sent["path"] == "/v1/speech-to-text"
    assert sent["body"]["model_id"] == "scribe_v1"
    assert sent["body"]["language_code"] == "en"
    assert sent["body"]["tag_audio_events"] == "false"
    assert sent["body"]["file"] == {"filename": "talk.wav", "content_type": "audio/wav", "size": len(audio)}
    assert "prompt" not in sent["body"] and "model" not in sent["body"]

    v = speech_client.audio.transcriptions.create(
        model="el-stt",
        file=("talk.wav", audio, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert isinstance(v, TranscriptionVerbose)
    assert v.language == "english"
    assert [s.text for s in v.segments or []] == [
        "Hello from the fake.",
        f"The audio was {len(audio)} bytes long.",
    ]
    assert v.words and v.words[0].word == "Hello" and v.words[0].start == 0.0


# --------------------------------------------------------------------------- Deepgram speech to text


def test_deepgram_gets_the_audio_byte_for_byte(
    speech_client: openai.OpenAI, fake_deepgram: FakeProvider
) -> None:
    audio = _audio()
    upstream = _upstream(fake_deepgram)
    t = speech_client.audio.transcriptions.create(
        model="dg-stt", file=("talk.wav", audio, "audio/wav"), language="en", temperature=0.0
    )
    assert t.text == f"Hello from the fake Deepgram. Your audio was {len(audio)} bytes."
    sent = upstream.only()
    assert sent["path"] == "/v1/listen"
    assert _query(sent) == {"model": "nova-3", "smart_format": "true", "language": "en"}
    assert sent["headers"]["authorization"] == f"Token {DG_UPSTREAM_KEY}"
    assert sent["headers"]["content-type"] == "audio/wav"
    assert sent["body"]["size"] == len(audio)
    assert sent["body"]["sha256"] == hashlib.sha256(audio).hexdigest()


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
def test_deepgram_text_formats_come_back_as_strings(
    speech_client: openai.OpenAI, fake_deepgram: FakeProvider, response_format: str
) -> None:
    audio = _audio()
    upstream = _upstream(fake_deepgram)
    out = speech_client.audio.transcriptions.create(
        model="dg-stt", file=("talk.wav", audio, "audio/wav"), response_format=response_format
    )
    assert isinstance(out, str)
    second = f"Your audio was {len(audio)} bytes."
    if response_format == "text":
        assert out.strip() == f"Hello from the fake Deepgram. {second}"
    elif response_format == "srt":
        assert out == (
            "1\n00:00:00,080 --> 00:00:02,000\nHello from the fake Deepgram.\n\n"
            f"2\n00:00:02,680 --> 00:00:04,600\n{second}\n\n"
        )
    else:
        assert out == (
            "WEBVTT\n\n00:00:00.080 --> 00:00:02.000\nHello from the fake Deepgram.\n\n"
            f"00:00:02.680 --> 00:00:04.600\n{second}\n\n"
        )
    query = _query(upstream.only())
    assert query["detect_language"] == "true"
    assert ("utterances" in query) == (response_format != "text")


def test_deepgram_verbose_json_has_segments_and_words(
    speech_client: openai.OpenAI, fake_deepgram: FakeProvider
) -> None:
    audio = _audio()
    v = speech_client.audio.transcriptions.create(
        model="dg-stt",
        file=("talk.wav", audio, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert isinstance(v, TranscriptionVerbose)
    assert v.language == "english"
    assert v.duration > 4.0
    assert [(s.start, s.end) for s in v.segments or []] == [(0.08, 2.0), (2.68, 4.6)]
    words = v.words or []
    assert [w.word for w in words[:3]] == ["Hello", "from", "the"]
    assert words[-1].word == "bytes."


def test_deepgram_payment_error_is_a_502_for_the_operator(
    speech_client: openai.OpenAI, fake_deepgram: FakeProvider
) -> None:
    _queue_fault(fake_deepgram, {"kind": "documented_error", "status": 402})
    with pytest.raises(openai.APIStatusError) as exc:
        speech_client.audio.transcriptions.create(model="dg-stt", file=("a.wav", _audio(), "audio/wav"))
    assert exc.value.status_code == 502
    assert exc.value.body["code"] == "upstream_billing", exc.value.body


def test_deepgram_corrupt_audio_is_a_400_naming_the_file(
    speech_client: openai.OpenAI, fake_deepgram: FakeProvider
) -> None:
    _queue_fault(fake_deepgram, {"kind": "documented_error", "status": 400})
    with pytest.raises(openai.BadRequestError) as exc:
        speech_client.audio.transcriptions.create(model="dg-stt", file=("a.wav", _audio(), "audio/wav"))
    assert exc.value.body["param"] == "file", exc.value.body
    assert "corrupt or unsupported data" in exc.value.body["message"]


# --------------------------------------------------------------------------- Deepgram speech


@pytest.mark.parametrize(
    "response_format,encoding,container,content_type",
    [
        ("mp3", "mp3", "none", "audio/mpeg"),
        ("opus", "opus", "ogg", "audio/opus"),
        ("aac", "aac", "none", "audio/aac"),
        ("flac", "flac", "none", "audio/flac"),
        ("wav", "linear16", "wav", "audio/wav"),
        ("pcm", "linear16", "none", "audio/pcm"),
    ],
)
def test_deepgram_speech_in_every_openai_format(
    speech_client: openai.OpenAI,
    fake_deepgram: FakeProvider,
    response_format: str,
    encoding: str,
    container: str,
    content_type: str,
) -> None:
    upstream = _upstream(fake_deepgram)
    with speech_client.audio.speech.with_streaming_response.create(
        model="dg-tts", voice="alloy", input="Hello there", response_format=response_format
    ) as resp:
        assert resp.headers["content-type"] == content_type
        data = b"".join(resp.iter_bytes())
    assert data == _dg_audio("Hello there", encoding, container)
    sent = upstream.only()
    assert sent["path"] == "/v1/speak"
    q = _query(sent)
    assert q["model"] == "aura-2-andromeda-en" and q["encoding"] == encoding
    assert sent["body"] == {"text": "Hello there"}
