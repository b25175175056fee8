"""`POST /v1/search` through the liter-llm binary, over raw HTTP (httpx).

A proxy (`search_proxy`) routes one model per search provider to the
provider-faithful fake (`fake-providers --provider search`), which serves Tavily,
Brave, Exa, Firecrawl, Serper, Linkup and SearXNG under their own path prefixes,
refuses what each real API refuses, and reports what it received at
`GET /__requests`. Each test checks both sides: the normalised OpenAI-style
answer the client gets and the provider-shaped request the fake saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import conftest
from conftest import MASTER_KEY, FakeProvider, MockUpstream, Proxy

SEARCH_KEY = "search-compat-key"

# `fake-providers --provider search` serves every provider under its own prefix
# of the root, so the root is the fake's base URL.
conftest._FAKE_BASE_PATH["search"] = ""

# model name -> (provider_model, path prefix of the provider's base URL on the fake)
MODELS = {
    "tavily": ("tavily/search", "/tavily"),
    "brave": ("brave/web-search", "/brave/res/v1"),
    "exa": ("exa/search", "/exa"),
    "firecrawl": ("firecrawl/search", "/firecrawl/v2"),
    "serper": ("serper/search", "/serper"),
    "linkup": ("linkup/standard", "/linkup/v1"),
    "searxng": ("searxng/search", "/searxng"),
}

FULL = {
    "query": "rust async",
    "max_results": 3,
    "search_domain_filter": ["docs.rs", "-spam.example"],
    "country": "de",
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake_search(workdir: Path):
    with conftest.run_reported_fake(workdir, "search", SEARCH_KEY) as fake:
        yield fake


def _search_proxy_config(port: int, fake: FakeProvider, mock: MockUpstream) -> str:
    models = "".join(
        conftest.model_block(name, provider_model, f"{fake.root}{prefix}", SEARCH_KEY)
        for name, (provider_model, prefix) in MODELS.items()
    )
    return (
        conftest.config_head(port)
        + conftest.model_block("gpt-4o", "openai/gpt-4o", mock.base_url, conftest.UPSTREAM_KEY)
        + conftest.model_block(
            "tavily-wrong-key", "tavily/search", f"{fake.root}/tavily", "not-the-key"
        )
        + models
    )


@pytest.fixture(scope="module")
def search_proxy(workdir: Path, fake_search: FakeProvider, mock_upstream: MockUpstream):
    config = lambda port: _search_proxy_config(port, fake_search, mock_upstream)  # noqa: E731
    with conftest.run_reported_proxy(workdir, "liter-llm-search", config, "search_proxy") as p:
        yield p


@pytest.fixture(scope="module")
def api(search_proxy: Proxy):
    with conftest.master_http(search_proxy.api_base) as client:
        yield client


def fault(fake: FakeProvider, **body: Any) -> None:
    conftest.post_fault(fake, body, 200)


ANY_CODE = object()


def assert_error(r: httpx.Response, status: int, code: Any = ANY_CODE) -> dict[str, Any]:
    """The OpenAI error envelope with this status (and `code`, when given)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str), err
    assert "param" in err and "code" in err, err
    if code is not ANY_CODE:
        assert err["code"] == code, err
    return err


def result(i: int, snippet: str, date: str | None = None, title: str | None = None) -> dict[str, Any]:
    return {
        "title": title or f"Result {i} for rust async",
        "url": f"https://docs.rs/rust-async/{i}",
        "snippet": snippet,
        "date": date,
    }


def plain(i: int) -> dict[str, Any]:
    return result(i, f"Snippet {i} about rust async.")


# The normalised results the fake's answers become for FULL.
EXPECTED = {
    "tavily": [plain(1), plain(2), plain(3)],
    "brave": [
        result(i, f"All about rust async: it's result {i}.", d, f"Result {i} for rust async & more")
        for i, d in [(1, "2025-01-14"), (2, None), (3, None)]
    ],
    "exa": [
        result(i, f"Snippet {i} about rust async. ... Second excerpt {i}.", d)
        for i, d in [(1, "2025-01-14"), (2, None), (3, "2025-01-16")]
    ],
    "firecrawl": [plain(1), plain(2), plain(3)],
    "serper": [result(1, "Snippet 1 about rust async.", "2025-01-14"), plain(2), plain(3)],
    "linkup": [plain(1), plain(2), plain(3)],
    # The fake's SearXNG returns one off-domain result (2) and no count limit.
    "searxng": [
        result(i, f"Snippet {i} about rust async. Tom & Jerry", d)
        for i, d in [(1, "2025-01-14"), (3, None), (4, None)]
    ],
}

# What each provider must have received for FULL: (method, path, auth header, value).
UPSTREAM = {
    "tavily": ("POST", "/tavily/search", "authorization", f"Bearer {SEARCH_KEY}"),
    "brave": ("GET", "/brave/res/v1/web/search", "x-subscription-token", SEARCH_KEY),
    "exa": ("POST", "/exa/search", "x-api-key", SEARCH_KEY),
    "firecrawl": ("POST", "/firecrawl/v2/search", "authorization", f"Bearer {SEARCH_KEY}"),
    "serper": ("POST", "/serper/search", "x-api-key", SEARCH_KEY),
    "linkup": ("POST", "/linkup/v1/search", "authorization", f"Bearer {SEARCH_KEY}"),
    "searxng": ("GET", "/searxng/search", None, None),
}

SENT_BODY = {
    "tavily": {
        "query": "rust async",
        "max_results": 3,
        "include_domains": ["docs.rs"],
        "exclude_domains": ["spam.example"],
        "country": "germany",
    },
    "exa": {
        "query": "rust async",
        "numResults": 3,
        "includeDomains": ["docs.rs"],
        "excludeDomains": ["spam.example"],
        "userLocation": "DE",
        "contents": {"highlights": True},
    },
    "firecrawl": {
        "query": "rust async",
        "limit": 3,
        "includeDomains": ["docs.rs"],
        "excludeDomains": ["spam.example"],
        "country": "DE",
    },
    "serper": {"q": "rust async site:docs.rs -site:spam.example", "num": 3, "gl": "de"},
    "linkup": {
        "q": "rust async",
        "depth": "standard",
        "outputType": "searchResults",
        "maxResults": 3,
        "includeDomains": ["docs.rs"],
        "excludeDomains": ["spam.example"],
    },
}

SENT_PARAMS = {
    "brave": {"q": "rust async site:docs.rs -site:spam.example", "count": "3", "country": "DE"},
    "searxng": {"q": "rust async site:docs.rs -site:spam.example", "format": "json"},
}


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("model", list(MODELS))
def test_search_is_translated_both_ways(api: httpx.Client, fake_search: FakeProvider, model: str):
    seen = conftest.NewRequests(fake_search)
    r = api.post("/search", json={"model": model, **FULL})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body == {"object": "search", "model": model, "results": EXPECTED[model]}

    sent = seen.only()
    method, path, auth_header, auth_value = UPSTREAM[model]
    assert (sent["method"], sent["path"]) == (method, path)
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    if auth_header is None:
        assert "authorization" not in headers, headers
    else:
        assert headers[auth_header] == auth_value
    assert MASTER_KEY not in str(sent)
    if model in SENT_BODY:
        assert sent["body"] == SENT_BODY[model]
    else:
        assert sent["params"] == SENT_PARAMS[model]
        assert sent["body"] is None


@pytest.mark.parametrize("model", list(MODELS))
def test_malformed_provider_json_is_a_502(api: httpx.Client, fake_search: FakeProvider, model: str):
    fault(fake_search, malformed='{"not": "what a search answer looks like"}')
    r = api.post("/search", json={"model": model, "query": "q"})
    err = assert_error(r, 502, "upstream_invalid_response")
    assert "not valid JSON" in err["message"] or "search answer" in err["message"], err


@pytest.mark.parametrize(
    "model,status,want,code,text",
    [
        ("tavily", 432, 502, "upstream_billing", "usage limit"),
        ("brave", 429, 429, "upstream_rate_limited", "RATE_LIMITED"),
        ("exa", 402, 502, "upstream_billing", "NO_MORE_CREDITS"),
        ("firecrawl", 402, 502, "upstream_billing", "Insufficient credits"),
        ("serper", 400, 502, "upstream_billing", "Not enough credits"),
        ("linkup", 500, 502, "upstream_error", "Internal server error"),
        ("searxng", 403, 502, "upstream_error", "search.formats"),
    ],
)
def test_provider_errors_are_openai_shaped(
    api: httpx.Client, fake_search: FakeProvider, model: str, status: int, want: int, code: str, text: str
):
    fault(fake_search, status=status)
    r = api.post("/search", json={"model": model, "query": "q"})
    err = assert_error(r, want, code)
    assert text in err["message"], err
    if want == 429:
        assert r.headers["retry-after"] == "1"


def test_a_rejected_provider_key_is_a_502(api: httpx.Client):
    r = api.post("/search", json={"model": "tavily-wrong-key", "query": "q"})
    err = assert_error(r, 502, "upstream_auth_failed")
    assert "not-the-key" not in err["message"]


def test_search_on_a_chat_only_model_is_a_400(api: httpx.Client):
    r = api.post("/search", json={"model": "gpt-4o", "query": "q"})
    err = assert_error(r, 400, "endpoint_not_supported")
    assert err["param"] == "model"


def test_chat_on_a_search_model_is_a_400(api: httpx.Client, fake_search: FakeProvider):
    seen = conftest.NewRequests(fake_search)
    r = api.post(
        "/chat/completions",
        json={"model": "tavily", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert_error(r, 400, "endpoint_not_supported")
    assert seen.new() == []


@pytest.mark.parametrize(
    "body,param",
    [
        ({"model": "exa"}, "query"),
        ({"model": "exa", "query": "q", "max_results": 0}, "max_results"),
        ({"model": "exa", "query": "q", "country": "germany"}, "country"),
        ({"model": "serper", "query": "q", "search_domain_filter": ["a.com OR b"]}, "search_domain_filter"),
    ],
)
def test_invalid_requests_are_400s_naming_the_field(
    api: httpx.Client, fake_search: FakeProvider, body: dict[str, Any], param: str
):
    seen = conftest.NewRequests(fake_search)
    r = api.post("/search", json=body)
    err = assert_error(r, 400)
    assert err["param"] == param
    assert seen.new() == []


def test_search_needs_a_key(search_proxy: Proxy):
    r = httpx.post(
        f"{search_proxy.api_base}/search",
        json={"model": "tavily", "query": "q"},
        timeout=10.0,
        trust_env=False,
    )
    assert r.status_code == 401, r.text
    assert "error" in r.json()
