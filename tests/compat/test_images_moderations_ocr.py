"""Images via Stability AI, moderations (and chat) via Mistral, and OCR via Mistral
and Azure AI Foundry's Mistral OCR deployment, end to end through the official SDK
(raw httpx for OCR, which the SDK has no method for).

Upstreams are the provider-faithful fakes from `tools/fake-providers`:
`--provider stability` (Stability's v2beta Stable Image API: multipart form,
Bearer key, `Accept: application/json`) and `--provider mistral` (Mistral's
`/v1` API plus Foundry's `/providers/mistral/azure/ocr`). Both refuse fields
their reference does not list and report what they received at
`GET /__requests`, so each test checks the OpenAI shape the client parses and
the provider request the proxy sent.
"""

from __future__ import annotations

import base64

import openai
import pytest

import conftest

STABILITY_UPSTREAM_KEY = "sk-stability-compat"
MISTRAL_UPSTREAM_KEY = "mistral-compat"
AZURE_UPSTREAM_KEY = "azure-ai-compat"
# The Stability fake serves https://api.stability.ai's shape at its root; the
# Mistral fake serves https://api.mistral.ai/v1 under /v1.
conftest._FAKE_BASE_PATH.setdefault("stability", "")
conftest._FAKE_BASE_PATH.setdefault("mistral", "/v1")

# fake_providers::stability::PNG_1X1_BASE64
PNG_1X1_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF_DATA_URL = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4\n%fake\n").decode()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake_stability(workdir):
    with conftest.run_reported_fake(workdir, "stability", STABILITY_UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_mistral(workdir):
    # One process serves Mistral (Bearer) and the Foundry OCR route (api-key),
    # so both keys are the same here.
    with conftest.run_reported_fake(workdir, "mistral", MISTRAL_UPSTREAM_KEY) as fake:
        yield fake


def _config(port: int, stability, mistral) -> str:
    return conftest.config_head(port, body_limit=True) + f"""
[[models]]
name = "stable-core"
provider_model = "stability/stable-image-core"
base_url = "{stability.base_url}"
api_key = "{stability.api_key}"

[[models]]
name = "sd3"
provider_model = "stability/sd3.5-large"
base_url = "{stability.base_url}"
api_key = "{stability.api_key}"

[[models]]
name = "moderation"
provider_model = "mistral/mistral-moderation-latest"
base_url = "{mistral.base_url}"
api_key = "{mistral.api_key}"

[[models]]
name = "mistral-small"
provider_model = "mistral/mistral-small-latest"
base_url = "{mistral.base_url}"
api_key = "{mistral.api_key}"

[[models]]
name = "mistral-ocr"
provider_model = "mistral/mistral-ocr-latest"
base_url = "{mistral.base_url}"
api_key = "{mistral.api_key}"

[[models]]
name = "azure-ocr"
provider_model = "azure_ai/mistral-document-ai-2505"
base_url = "{mistral.root}/models"
api_key = "{mistral.api_key}"
"""


@pytest.fixture(scope="module")
def media_proxy(workdir, fake_stability, fake_mistral):
    config = lambda port: _config(port, fake_stability, fake_mistral)  # noqa: E731
    with conftest.run_reported_proxy(workdir, "liter-llm-media", config, "media_proxy") as p:
        yield p


@pytest.fixture(scope="module")
def client(media_proxy):
    with conftest.sdk_client(media_proxy) as c:
        yield c


@pytest.fixture(scope="module")
def http(media_proxy):
    with conftest.master_http(media_proxy.base_url) as c:
        yield c


def _last(fake, path: str) -> dict:
    matching = [r for r in fake.requests() if r["path"] == path]
    assert matching, f"the fake received nothing at {path}"
    return matching[-1]


# --------------------------------------------------------------------------- images (Stability)


def test_images_generate_returns_b64_json_from_stability(client, fake_stability):
    resp = client.images.generate(
        model="stable-core",
        prompt="A lighthouse at dusk, oil painting",
        size="1792x1024",
        response_format="b64_json",
    )
    assert len(resp.data) == 1
    image = base64.b64decode(resp.data[0].b64_json)
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    assert resp.created > 0

    sent = _last(fake_stability, "/v2beta/stable-image/generate/core")
    assert sent["headers"]["authorization"] == f"Bearer {STABILITY_UPSTREAM_KEY}"
    assert sent["headers"]["accept"] == "application/json"
    assert sent["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert sent["body"] == {
        "prompt": "A lighthouse at dusk, oil painting",
        "aspect_ratio": "16:9",
        "output_format": "png",
    }


def test_sd3_model_and_stability_extras_reach_the_form(client, fake_stability):
    resp = client.images.generate(
        model="sd3",
        prompt="a red fox in snow",
        size="1024x1536",
        response_format="b64_json",
        output_format="jpeg",
        extra_body={"negative_prompt": "blurry", "seed": 42},
    )
    assert resp.data[0].b64_json == PNG_1X1_BASE64
    sent = _last(fake_stability, "/v2beta/stable-image/generate/sd3")
    assert sent["body"] == {
        "prompt": "a red fox in snow",
        "model": "sd3.5-large",
        "aspect_ratio": "2:3",
        "negative_prompt": "blurry",
        "seed": "42",
        "output_format": "jpeg",
    }


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"response_format": "url"}, "response_format"),
        ({"n": 2}, "n"),
        ({"size": "1024x768"}, "size"),
        ({"quality": "hd"}, "quality"),
    ],
)
def test_images_stability_cannot_serve_are_400_before_any_upstream_call(
    client, fake_stability, kwargs, param
):
    before = len(fake_stability.requests())
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model="stable-core", prompt="a cat", **kwargs)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param
    assert len(fake_stability.requests()) == before


def test_filtered_image_is_a_content_policy_violation(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(
            model="stable-core", prompt="a scene [filter-output]", response_format="b64_json"
        )
    assert err.value.code == "content_policy_violation"


# --------------------------------------------------------------------------- moderations (Mistral)


def test_moderations_create_maps_mistral_categories(client, fake_mistral):
    resp = client.moderations.create(
        model="moderation",
        input=["I will kill you", "What a lovely day", "Call my lawyer about this"],
    )
    assert resp.model == "moderation"
    assert len(resp.results) == 3
    threat, calm, legal = resp.results

    assert threat.flagged is True
    assert threat.categories.violence is True
    assert threat.category_scores.violence > 0.9
    assert threat.categories.hate is False
    assert threat.categories.harassment is False  # not assessed by Mistral
    assert threat.category_applied_input_types.violence == ["text"]
    assert threat.category_applied_input_types.harassment == []
    # Mistral-only categories ride along under their own names.
    assert threat.categories.model_extra["pii"] is False

    assert calm.flagged is False
    assert legal.flagged is True
    assert legal.categories.model_extra["law"] is True

    sent = _last(fake_mistral, "/v1/moderations")
    assert sent["headers"]["authorization"] == f"Bearer {MISTRAL_UPSTREAM_KEY}"
    assert sent["body"] == {
        "model": "mistral-moderation-latest",
        "input": ["I will kill you", "What a lovely day", "Call my lawyer about this"],
    }


def test_moderations_single_string_input(client, fake_mistral):
    resp = client.moderations.create(model="moderation", input="how to steal a bike")
    (result,) = resp.results
    assert result.flagged is True
    assert result.categories.illicit is True
    assert _last(fake_mistral, "/v1/moderations")["body"]["input"] == "how to steal a bike"


# --------------------------------------------------------------------------- chat (Mistral)


def test_mistral_chat_stream_works_without_stream_options(client, fake_mistral):
    stream = client.chat.completions.create(
        model="mistral-small",
        messages=[{"role": "user", "content": "Salut"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Bonjour from fake Mistral! You said: Salut"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 1
    sent = _last(fake_mistral, "/v1/chat/completions")
    assert "stream_options" not in sent["body"]
    assert sent["body"]["model"] == "mistral-small-latest"


# --------------------------------------------------------------------------- OCR (raw HTTP)


def test_mistral_ocr_by_url(http, fake_mistral):
    doc = {"type": "document_url", "document_url": "https://arxiv.org/pdf/2201.04234"}
    r = http.post("/v1/ocr", json={"model": "mistral-ocr", "document": doc})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "https://arxiv.org/pdf/2201.04234" in body["pages"][0]["markdown"]
    assert body["usage_info"]["pages_processed"] == 1
    sent = _last(fake_mistral, "/v1/ocr")
    assert sent["body"] == {"model": "mistral-ocr-latest", "document": doc}


def test_mistral_ocr_by_base64(http, fake_mistral):
    doc = {"type": "image_url", "image_url": "data:image/png;base64," + PNG_1X1_BASE64}
    r = http.post(
        "/v1/ocr",
        json={"model": "mistral-ocr", "document": doc, "include_image_base64": True},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage_info"]["doc_size_bytes"] == len(base64.b64decode(PNG_1X1_BASE64))
    assert body["pages"][0]["images"][0]["image_base64"].startswith("data:image/png;base64,")
    assert _last(fake_mistral, "/v1/ocr")["body"]["document"] == doc


def test_azure_foundry_ocr_by_base64(http, fake_mistral):
    doc = {"type": "document_url", "document_url": PDF_DATA_URL}
    r = http.post("/v1/ocr", json={"model": "azure-ocr", "document": doc})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "mistral-document-ai-2505"
    sent = _last(fake_mistral, "/providers/mistral/azure/ocr")
    assert sent["headers"]["api-key"] == MISTRAL_UPSTREAM_KEY
    assert sent["body"] == {"model": "mistral-document-ai-2505", "document": doc}


def test_azure_foundry_ocr_by_url_is_refused_before_any_upstream_call(http, fake_mistral):
    before = len(fake_mistral.requests())
    doc = {"type": "document_url", "document_url": "https://example.com/invoice.pdf"}
    r = http.post("/v1/ocr", json={"model": "azure-ocr", "document": doc})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "document.document_url"
    assert "base64" in err["message"]
    assert len(fake_mistral.requests()) == before
