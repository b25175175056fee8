"""Embeddings and rerank through the native Cohere, Voyage and Jina adapters.

The official `openai` SDK (`client.embeddings.create`) and plain HTTP (rerank,
which the SDK does not have) talk to a liter-llm proxy whose models are served
by the `cohere`, `voyage` and `jina` adapters; upstream are the provider-faithful
fakes from `tools/fake-providers` (`--provider cohere|voyage|jina`), which refuse
fields their API references do not list and report what they received at
`GET /__requests`. Their vectors and relevance scores are deterministic
(`tools/fake-providers/src/vectors.rs`, mirrored below), so every test compares
exact numbers: float, base64 and the SDK's default (base64 on the wire, floats
handed back).
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

import openai
import pytest

import conftest
from conftest import MASTER_KEY, FakeProvider, Proxy

VOYAGE_KEY = "pa-compat"
JINA_KEY = "jina_compat"
conftest._FAKE_BASE_PATH.setdefault("voyage", "/v1")
conftest._FAKE_BASE_PATH.setdefault("jina", "/v1")

TEXTS = ["the quick brown fox", "jumps over", "the lazy dog sleeps in the sun"]
QUERY = "where does the lazy dog sleep"
DOCS = ["Bananas are yellow", "The lazy dog sleeps in the sun", "A dog sleeps", "Foxes are quick"]

# model name -> (fake, upstream model, default dimension, upstream path)
EMBED_MODELS = {
    "co-embed": ("cohere", "embed-v4.0", 1536, "/v2/embed"),
    "vo-embed": ("voyage", "voyage-3.5", 1024, "/v1/embeddings"),
    "jina-embed": ("jina", "jina-embeddings-v3", 1024, "/v1/embeddings"),
}

# --------------------------------------------------------------------------- the fakes' formulas

_M64 = (1 << 64) - 1


def _fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & _M64
    return h


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def embedding(text: str, dims: int) -> list[float]:
    seed = _fnv1a(text.encode())
    return [
        ((_splitmix(seed ^ ((j * 0x2545F4914F6CDD1D) & _M64)) % 1024) - 512) / 1024
        for j in range(dims)
    ]


def tokens(text: str) -> int:
    return max(len(text.split()), 1)


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[^\W_]+", text)]


def ranked(query: str, docs: list[str]) -> list[tuple[int, float]]:
    q = _words(query)
    scores = []
    for i, d in enumerate(docs):
        words = _words(d)
        hits = sum(1 for w in words if w in q)
        scores.append((i, (hits + 1) / (len(words) + 2)))
    return sorted(scores, key=lambda s: -s[1])


def rerank_tokens(query: str, docs: list[str]) -> int:
    return sum(tokens(query) + tokens(d) for d in docs)


def f32s(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    assert len(raw) % 4 == 0, b64
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake_voyage(workdir):
    with conftest.run_reported_fake(workdir, "voyage", VOYAGE_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_jina(workdir):
    with conftest.run_reported_fake(workdir, "jina", JINA_KEY) as fake:
        yield fake


def _model(name: str, provider_model: str, fake: FakeProvider) -> str:
    return conftest.model_block(name, provider_model, fake.base_url, fake.api_key)


@pytest.fixture(scope="module")
def fakes(fake_cohere, fake_voyage, fake_jina) -> dict[str, FakeProvider]:
    return {"cohere": fake_cohere, "voyage": fake_voyage, "jina": fake_jina}


@pytest.fixture(scope="module")
def er_proxy(workdir, fakes):
    co, vo, ji = fakes["cohere"], fakes["voyage"], fakes["jina"]
    models = [
        _model("co-embed", "cohere_chat/embed-v4.0", co),
        _model("co-rerank", "cohere_chat/rerank-v3.5", co),
        _model("vo-embed", "voyage/voyage-3.5", vo),
        _model("vo-rerank", "voyage/rerank-2.5", vo),
        _model("jina-embed", "jina_ai/jina-embeddings-v3", ji),
        _model("jina-rerank", "jina_ai/jina-reranker-v2-base-multilingual", ji),
        _model("co-missing", "cohere_chat/embed-v9", co),
        _model("vo-missing", "voyage/voyage-9", vo),
        _model("co-compat", "cohere/command-a-03-2025", co),
    ]

    def config(port: int) -> str:
        return conftest.config_head(port) + "".join(models)

    with conftest.run_reported_proxy(workdir, "liter-llm-embed-rerank", config, "er_proxy") as p:
        yield p


@pytest.fixture(scope="module")
def client(er_proxy: Proxy):
    with conftest.sdk_client(er_proxy) as c:
        yield c


@pytest.fixture(scope="module")
def raw(er_proxy: Proxy):
    with conftest.master_http(er_proxy.base_url) as c:
        yield c


def _upstream(fake: FakeProvider) -> conftest.NewRequests:
    """The requests one fake receives during a test, each checked for auth."""

    def check(r: dict[str, Any]) -> None:
        assert r["headers"]["authorization"] == f"Bearer {fake.api_key}", r
        assert MASTER_KEY not in str(r["headers"]), "the client's key leaked upstream"

    return conftest.NewRequests(fake, check)


# --------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("model", list(EMBED_MODELS))
def test_float_embeddings_keep_input_order_and_report_usage(client, fakes, model):
    fake_name, upstream_model, dims, path = EMBED_MODELS[model]
    up = _upstream(fakes[fake_name])
    resp = client.embeddings.create(model=model, input=TEXTS, encoding_format="float")
    assert resp.model == model
    assert [d.index for d in resp.data] == [0, 1, 2]
    for d, text in zip(resp.data, TEXTS):
        assert d.embedding == embedding(text, dims)
    want = sum(tokens(t) for t in TEXTS)
    assert resp.usage.prompt_tokens == want
    assert resp.usage.total_tokens == want
    (sent,) = up.new()
    assert sent["path"] == path
    assert sent["body"]["model"] == upstream_model
    texts_field = "texts" if fake_name == "cohere" else "input"
    assert sent["body"][texts_field] == TEXTS


@pytest.mark.parametrize("model", list(EMBED_MODELS))
def test_base64_embeddings_decode_to_the_same_floats(client, fakes, model):
    fake_name, _, dims, _ = EMBED_MODELS[model]
    up = _upstream(fakes[fake_name])
    encoded = client.embeddings.create(model=model, input=TEXTS, encoding_format="base64")
    for d, text in zip(encoded.data, TEXTS):
        assert isinstance(d.embedding, str)
        assert f32s(d.embedding) == embedding(text, dims)
    # The SDK's default asks for base64 on the wire and hands back floats.
    default = client.embeddings.create(model=model, input=TEXTS)
    for d, text in zip(default.data, TEXTS):
        assert d.embedding == embedding(text, dims)
    # Providers were asked for floats; the proxy did the encoding.
    for sent in up.new():
        body = sent["body"]
        assert body.get("embedding_types", ["float"]) == ["float"]
        assert body.get("embedding_type", "float") == "float"
        assert "encoding_format" not in body


def test_dimensions_and_input_type_use_each_providers_names(client, fakes):
    ups = {name: _upstream(fake) for name, fake in fakes.items()}
    for model, dims in [("co-embed", 256), ("vo-embed", 512), ("jina-embed", 64)]:
        resp = client.embeddings.create(
            model=model, input="hello there", dimensions=dims, extra_body={"input_type": "query"}
        )
        assert resp.data[0].embedding == embedding("hello there", dims)
    (co,) = ups["cohere"].new()
    assert co["body"]["output_dimension"] == 256
    assert co["body"]["input_type"] == "search_query"
    (vo,) = ups["voyage"].new()
    assert vo["body"]["output_dimension"] == 512
    assert vo["body"]["input_type"] == "query"
    (ji,) = ups["jina"].new()
    assert ji["body"]["dimensions"] == 64
    assert ji["body"]["task"] == "retrieval.query"


@pytest.mark.parametrize("model", list(EMBED_MODELS))
def test_token_id_input_is_a_400_naming_input(client, fakes, model):
    up = _upstream(fakes[EMBED_MODELS[model][0]])
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=model, input=[[1, 2, 3]])
    assert e.value.body["param"] == "input"
    assert up.new() == []


def test_unknown_upstream_models_are_the_providers_own_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="co-missing", input="x")
    assert "embed-v9" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="vo-missing", input="x")
    assert e.value.body["message"].startswith("voyage: Model voyage-9 is not supported")


# --------------------------------------------------------------------------- rerank


def _check_ranked(body: dict[str, Any], top: int, with_documents: bool) -> None:
    want = ranked(QUERY, DOCS)[:top]
    results = body["results"]
    assert [(r["index"], r["relevance_score"]) for r in results] == want
    for r in results:
        if with_documents:
            assert r["document"] == {"text": DOCS[r["index"]]}
        else:
            assert "document" not in r
    assert isinstance(body["id"], str) and body["id"]


def test_cohere_rerank_orders_by_relevance_and_reports_search_units(raw, fakes):
    up = _upstream(fakes["cohere"])
    r = raw.post(
        "/v1/rerank",
        json={"model": "co-rerank", "query": QUERY, "documents": DOCS, "top_n": 2},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "co-rerank"
    _check_ranked(body, 2, with_documents=False)
    assert body["meta"]["billed_units"]["search_units"] == 1
    (sent,) = up.new()
    assert sent["path"] == "/v2/rerank"
    assert sent["body"] == {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "top_n": 2}


def test_cohere_rerank_returns_documents_from_the_request(raw, fakes):
    up = _upstream(fakes["cohere"])
    r = raw.post(
        "/v1/rerank",
        json={"model": "co-rerank", "query": QUERY, "documents": [{"text": d} for d in DOCS],
              "return_documents": True},
    )
    assert r.status_code == 200, r.text
    _check_ranked(r.json(), len(DOCS), with_documents=True)
    (sent,) = up.new()
    assert sent["body"] == {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS}


@pytest.mark.parametrize(
    "model,fake_name,upstream_top",
    [("vo-rerank", "voyage", "top_k"), ("jina-rerank", "jina", "top_n")],
)
def test_rerank_honours_top_n_and_return_documents_with_usage(
    raw, fakes, model, fake_name, upstream_top
):
    up = _upstream(fakes[fake_name])
    r = raw.post(
        "/v1/rerank",
        json={"model": model, "query": QUERY, "documents": [{"text": d} for d in DOCS],
              "top_n": 3, "return_documents": True},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    _check_ranked(body, 3, with_documents=True)
    want = rerank_tokens(QUERY, DOCS)
    assert body["usage"] == {"prompt_tokens": want, "completion_tokens": 0, "total_tokens": want}

    r = raw.post("/v1/rerank", json={"model": model, "query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    _check_ranked(r.json(), len(DOCS), with_documents=False)

    first, second = up.new()
    assert first["path"] == "/v1/rerank"
    assert first["body"][upstream_top] == 3
    assert first["body"]["documents"] == DOCS
    assert first["body"]["return_documents"] is True
    assert second["body"]["return_documents"] is False
    assert "top_n" not in second["body"] and "top_k" not in second["body"]


# --------------------------------------------------------------------------- unsupported endpoints


def test_endpoints_a_provider_does_not_offer_are_400_endpoint_not_supported(client, raw, fakes):
    ups = [_upstream(f) for f in fakes.values()]
    r = raw.post("/v1/rerank", json={"model": "co-compat", "query": QUERY, "documents": DOCS})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "endpoint_not_supported"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="vo-embed", messages=[{"role": "user", "content": "hi"}]
        )
    assert e.value.body["code"] == "endpoint_not_supported"
    for up in ups:
        assert up.new() == []
