"""`client.embeddings.create` through the native Gemini and Bedrock adapters.

The official `openai` SDK talks to a liter-llm proxy whose embedding models are
served by the Gemini adapter (upstream `fake-providers --provider gemini`, which
accepts `embedContent` / `batchEmbedContents` as Google documents them, key in
`x-goog-api-key`) and the Bedrock adapter (upstream `fake-providers --provider
bedrock`, which verifies each request's SigV4 signature and accepts Titan and
Cohere Embed InvokeModel bodies). The fakes' vectors are deterministic, so each
test compares the exact numbers the SDK hands back, float and base64, and checks
what the fake received at `GET /__requests`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

import conftest
from conftest import MASTER_KEY, FakeProvider, Proxy

AWS_KEY_ID = "AKIDEMBEDEXAMPLE"
AWS_SECRET = "embed/Secret+Key/EXAMPLEKEY0123456789cd"
AWS_REGION = "us-west-2"

_M64 = (1 << 64) - 1


# --------------------------------------------------------------------------- expected vectors
# The fakes' formulas (tools/fake-providers/src/{gemini,bedrock}/embed.rs).


def _mix(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M64
    return x ^ (x >> 33)


def _dyadic(text: str, dims: int, seed: int, mul: int) -> list[float]:
    h = seed
    for b in text.encode():
        h = (h * mul + b) & _M64
    return [(_mix(h ^ ((i * 0x9E3779B97F4A7C15) & _M64)) % 64) / 64 - 0.5 for i in range(dims)]


def gemini_vector(text: str, dims: int) -> list[float]:
    return _dyadic(text, dims, 7, 31)


def bedrock_vector(text: str, dims: int, normalize: bool) -> list[float]:
    v = _dyadic(text, dims, 11, 131)
    if not normalize:
        return v
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _f32s(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    assert len(raw) % 4 == 0, b64
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    assert all(math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-6) for g, w in zip(got, want)), (
        got[:4],
        want[:4],
    )


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class FakeBedrock:
    root: str

    def requests(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.root}/__requests", timeout=10.0, trust_env=False)
        r.raise_for_status()
        return r.json()


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
        "--aws-region", AWS_REGION,
        "--host", "127.0.0.1",
        "--port", "0",
    ]
    proc, out_path, err_path = conftest._spawn(cmd, workdir, "fake-bedrock-embed")
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
def fake_bedrock_embed(workdir: Path):
    with _run_fake_bedrock(workdir) as (fake, err_log):
        with conftest.reported("fake_bedrock_embed", err_log):
            yield fake


def _bedrock_model(name: str, model_id: str, fake: FakeBedrock) -> str:
    return f"""
[[models]]
name = "{name}"
provider_model = "bedrock/{model_id}"
base_url = "{fake.root}"
aws_region = "{AWS_REGION}"
aws_access_key_id = "{AWS_KEY_ID}"
aws_secret_access_key = "{AWS_SECRET}"
"""


def _config(port: int, gemini: FakeProvider, bedrock: FakeBedrock) -> str:
    return (
        f"""\
[general]
master_key = "{MASTER_KEY}"
max_retries = 0

[server]
host = "127.0.0.1"
port = {port}

[[models]]
name = "gemini-embed"
provider_model = "gemini/gemini-embedding-001"
base_url = "{gemini.base_url}"
api_key = "{gemini.api_key}"

[[models]]
name = "gemini-embed-004"
provider_model = "gemini/text-embedding-004"
base_url = "{gemini.base_url}"
api_key = "{gemini.api_key}"
"""
        + _bedrock_model("titan-embed", "amazon.titan-embed-text-v2:0", bedrock)
        + _bedrock_model("cohere-embed", "cohere.embed-english-v3", bedrock)
    )


@pytest.fixture(scope="module")
def embed_proxy(workdir: Path, fake_gemini: FakeProvider, fake_bedrock_embed: FakeBedrock):
    config = lambda port: _config(port, fake_gemini, fake_bedrock_embed)  # noqa: E731
    with conftest.run_reported_proxy(workdir, "liter-llm-embed", config, "embed_proxy") as p:
        yield p


@pytest.fixture(scope="module")
def client(embed_proxy: Proxy):
    with conftest.sdk_client(embed_proxy) as c:
        yield c


# The requests a fake received after this point.
Since = conftest.NewRequests


def _assert_gemini_auth(req: dict[str, Any], fake: FakeProvider) -> None:
    headers = req["headers"]
    assert headers.get("x-goog-api-key") == fake.api_key, headers
    assert "authorization" not in headers, headers
    assert MASTER_KEY not in json.dumps(req)


def _assert_signed(req: dict[str, Any]) -> None:
    headers = req["headers"]
    assert req["signature_valid"] is True, req
    assert headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/{headers['x-amz-date'][:8]}/{AWS_REGION}"
        "/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
    ), headers["authorization"]
    assert AWS_SECRET not in json.dumps(headers)
    assert MASTER_KEY not in json.dumps(req)


# --------------------------------------------------------------------------- Gemini


def test_gemini_batch_float_keeps_order_and_reports_usage(client, fake_gemini):
    since = Since(fake_gemini)
    inputs = ["zebra crossing", "apple", "mango"]
    resp = client.embeddings.create(
        model="gemini-embed", input=inputs, dimensions=8, encoding_format="float"
    )
    assert resp.object == "list"
    assert resp.model == "gemini-embed"
    assert [d.index for d in resp.data] == [0, 1, 2]
    for text, d in zip(inputs, resp.data):
        assert d.embedding == gemini_vector(text, 8), text
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.total_tokens) == (4, 4)

    req = since.only()
    assert req["method"] == "POST"
    assert req["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert req["body"] == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": t}]},
                "outputDimensionality": 8,
            }
            for t in inputs
        ]
    }
    _assert_gemini_auth(req, fake_gemini)


def test_gemini_sdk_default_base64_is_decoded_to_the_same_floats(client, fake_gemini):
    since = Since(fake_gemini)
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    resp = client.embeddings.create(model="gemini-embed", input="hello there", dimensions=16)
    assert len(resp.data) == 1
    assert list(resp.data[0].embedding) == gemini_vector("hello there", 16)
    req = since.only()
    assert req["path"] == "/v1beta/models/gemini-embedding-001:embedContent"
    assert req["body"] == {
        "content": {"parts": [{"text": "hello there"}]},
        "outputDimensionality": 16,
    }
    _assert_gemini_auth(req, fake_gemini)


def test_gemini_explicit_base64_is_float32_little_endian(client, fake_gemini):
    resp = client.embeddings.create(
        model="gemini-embed", input=["one", "two"], dimensions=8, encoding_format="base64"
    )
    got = [_f32s(d.embedding) for d in resp.data]
    assert got == [gemini_vector("one", 8), gemini_vector("two", 8)]


def test_gemini_task_type_passes_through_extra_body_and_bad_values_are_400(client, fake_gemini):
    since = Since(fake_gemini)
    client.embeddings.create(
        model="gemini-embed",
        input="query text",
        dimensions=4,
        encoding_format="float",
        extra_body={"task_type": "RETRIEVAL_QUERY"},
    )
    assert since.only()["body"]["taskType"] == "RETRIEVAL_QUERY"
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(
            model="gemini-embed", input="x", extra_body={"task_type": "SUMMARIZE"}
        )
    assert "task_type" in info.value.response.json()["error"]["message"]


def test_gemini_model_without_usage_metadata_has_no_usage(client, fake_gemini):
    resp = client.embeddings.create(
        model="gemini-embed-004", input=["a", "b"], encoding_format="float"
    )
    assert len(resp.data) == 2
    assert len(resp.data[0].embedding) == 768
    assert resp.usage is None


# --------------------------------------------------------------------------- Bedrock


def test_titan_float_and_base64_with_token_usage(client, fake_bedrock_embed):
    since = Since(fake_bedrock_embed)
    resp = client.embeddings.create(
        model="titan-embed", input="hello bedrock", dimensions=256, encoding_format="float"
    )
    _close(resp.data[0].embedding, bedrock_vector("hello bedrock", 256, True))
    assert resp.usage is not None and resp.usage.prompt_tokens == 2
    req = since.only()
    assert req["path"] == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert req["body"] == {"inputText": "hello bedrock", "dimensions": 256, "normalize": True}
    _assert_signed(req)

    raw = client.embeddings.create(
        model="titan-embed", input="hello bedrock", dimensions=256, encoding_format="base64"
    )
    _close(_f32s(raw.data[0].embedding), bedrock_vector("hello bedrock", 256, True))


def test_titan_refuses_more_than_one_input_naming_input(client, fake_bedrock_embed):
    since = Since(fake_bedrock_embed)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="titan-embed", input=["a", "b"])
    assert info.value.response.json()["error"]["param"] == "input"
    assert since.new() == []


def test_cohere_on_bedrock_batch_float_and_sdk_default(client, fake_bedrock_embed):
    since = Since(fake_bedrock_embed)
    inputs = ["gamma", "alpha", "beta"]
    resp = client.embeddings.create(model="cohere-embed", input=inputs, encoding_format="float")
    assert [d.index for d in resp.data] == [0, 1, 2]
    for text, d in zip(inputs, resp.data):
        assert d.embedding == bedrock_vector(text, 1024, False), text
    # Cohere on Bedrock reports no token count in the body: no usage, not a guess.
    assert resp.usage is None
    req = since.only()
    assert req["path"] == "/model/cohere.embed-english-v3/invoke"
    assert req["body"] == {"texts": inputs, "input_type": "search_document"}
    _assert_signed(req)

    decoded = client.embeddings.create(
        model="cohere-embed", input=inputs, extra_body={"input_type": "clustering"}
    )
    for text, d in zip(inputs, decoded.data):
        assert list(d.embedding) == bedrock_vector(text, 1024, False), text
    assert since.new()[-1]["body"]["input_type"] == "clustering"


def test_cohere_dimensions_are_refused_naming_dimensions(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="cohere-embed", input="x", dimensions=256)
    assert info.value.response.json()["error"]["param"] == "dimensions"
