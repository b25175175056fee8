//! `POST /v1/search` through the real proxy to provider-faithful fakes of seven
//! search APIs (`fake_providers::search`): each test checks what the provider
//! received (method, path, auth header, body or query) and the normalised
//! answer the client got.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::search::{self as fake, FakeSearch, Fault, Provider, RecordedRequest};
use mock_upstream::MockConfig;
use serde_json::{json, Value};

const KEY: &str = "search-upstream-key";

/// The model name the client uses for each provider, and its `provider_model`.
fn models(fake: &FakeSearch, key: &str) -> Vec<String> {
    let m = |name: &str, provider_model: &str, p: Provider| {
        fake_model(name, provider_model, &fake.base_url(p), key, "")
    };
    vec![
        m("tavily", "tavily/search", Provider::Tavily),
        m("tavily-news", "tavily/news", Provider::Tavily),
        m("brave", "brave/web-search", Provider::Brave),
        m("exa", "exa/search", Provider::Exa),
        m("exa-deep", "exa/deep", Provider::Exa),
        m("firecrawl", "firecrawl/search", Provider::Firecrawl),
        m("serper", "serper/search", Provider::Serper),
        m("linkup", "linkup/standard", Provider::Linkup),
        // SearXNG takes no key: the configured one must not be sent.
        m("searxng", "searxng/search", Provider::Searxng),
    ]
}

async fn setup() -> (FakeSearch, TestProxy) {
    let fake = fake::start(KEY).await.unwrap();
    let proxy = start_proxy(&fake_proxy_config(&models(&fake, KEY))).await;
    (fake, proxy)
}

async fn search(proxy: &TestProxy, body: &Value) -> reqwest::Response {
    post_master(proxy, "/v1/search", body).await
}

/// The one request the fake received.
fn only(fake: &FakeSearch) -> RecordedRequest {
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    reqs.into_iter().next().unwrap()
}

fn header<'a>(r: &'a RecordedRequest, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The one request the fake received, checked to be `method path` with the
/// header `auth.0` set to `auth.1` (`None`: absent).
fn only_sent(
    fake: &FakeSearch,
    method: &str,
    path: &str,
    auth: (&str, Option<&str>),
) -> RecordedRequest {
    let r = only(fake);
    assert_eq!((r.method.as_str(), r.path.as_str()), (method, path));
    assert_eq!(header(&r, auth.0), auth.1);
    r
}

fn bearer() -> String {
    format!("Bearer {KEY}")
}

/// The filtered, counted, localised request every provider test sends.
fn full(model: &str) -> Value {
    json!({
        "model": model,
        "query": "rust async",
        "max_results": 3,
        "search_domain_filter": ["docs.rs", "-spam.example"],
        "country": "de",
    })
}

fn result(i: u32, snippet: &str, date: Option<&str>) -> Value {
    json!({
        "title": format!("Result {i} for rust async"),
        "url": format!("https://docs.rs/rust-async/{i}"),
        "snippet": snippet,
        "date": date,
    })
}

fn plain(i: u32) -> Value {
    result(i, &format!("Snippet {i} about rust async."), None)
}

async fn ok_answer(proxy: &TestProxy, body: &Value) -> Value {
    let v = json_ok(search(proxy, body).await).await;
    assert_eq!(v["object"], "search", "{v}");
    assert_eq!(v["model"], body["model"], "{v}");
    assert!(v.get("usage").is_none(), "{v}");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn tavily_gets_its_field_names_and_a_country_name() {
    let (fake, proxy) = setup().await;
    let v = ok_answer(&proxy, &full("tavily")).await;
    assert_eq!(v["results"], json!([plain(1), plain(2), plain(3)]));
    let r = only_sent(
        &fake,
        "POST",
        "/tavily/search",
        ("authorization", Some(&bearer())),
    );
    assert_eq!(
        r.body,
        json!({
            "query": "rust async",
            "max_results": 3,
            "include_domains": ["docs.rs"],
            "exclude_domains": ["spam.example"],
            "country": "germany",
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tavily_news_mode_reports_publication_days() {
    let (fake, proxy) = setup().await;
    let body =
        json!({"model": "tavily-news", "query": "rust async", "max_results": 2, "country": "us"});
    let v = ok_answer(&proxy, &body).await;
    let dates: Vec<&Value> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["date"])
        .collect();
    assert_eq!(dates, [&json!("2025-01-14"), &json!("2025-01-15")]);
    // Tavily boosts a country only for the general topic, so it is not sent.
    assert_eq!(
        only(&fake).body,
        json!({"query": "rust async", "topic": "news", "max_results": 2})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn brave_gets_a_get_with_site_operators_and_html_is_stripped() {
    let (fake, proxy) = setup().await;
    let v = ok_answer(&proxy, &full("brave")).await;
    let snippet = |i: u32| format!("All about rust async: it's result {i}.");
    let titled = |i: u32, date: Option<&str>| {
        let mut r = result(i, &snippet(i), date);
        r["title"] = json!(format!("Result {i} for rust async & more"));
        r
    };
    // The first result has a page_age, the second only "2 days ago".
    assert_eq!(
        v["results"],
        json!([
            titled(1, Some("2025-01-14")),
            titled(2, None),
            titled(3, None)
        ])
    );
    let r = only_sent(
        &fake,
        "GET",
        "/brave/res/v1/web/search",
        ("x-subscription-token", Some(KEY)),
    );
    assert_eq!(header(&r, "authorization"), None);
    assert_eq!(header(&r, "accept"), Some("application/json"));
    assert!(r.raw.is_empty());
    assert_eq!(
        r.params,
        [
            (
                "q".to_string(),
                "rust async site:docs.rs -site:spam.example".to_string()
            ),
            ("count".to_string(), "3".to_string()),
            ("country".to_string(), "DE".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn brave_count_is_capped_at_its_maximum() {
    let (fake, proxy) = setup().await;
    let body = json!({"model": "brave", "query": "many", "max_results": 100});
    let v = ok_answer(&proxy, &body).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 20);
    assert_eq!(only(&fake).param("count"), Some("20"));
}

#[tokio::test(flavor = "multi_thread")]
async fn exa_gets_its_names_and_highlights_become_the_snippet() {
    let (fake, proxy) = setup().await;
    let v = ok_answer(&proxy, &full("exa")).await;
    let snippet = |i: u32| format!("Snippet {i} about rust async. ... Second excerpt {i}.");
    assert_eq!(
        v["results"],
        json!([
            result(1, &snippet(1), Some("2025-01-14")),
            result(2, &snippet(2), None),
            result(3, &snippet(3), Some("2025-01-16")),
        ])
    );
    let r = only_sent(&fake, "POST", "/exa/search", ("x-api-key", Some(KEY)));
    assert_eq!(
        r.body,
        json!({
            "query": "rust async",
            "numResults": 3,
            "includeDomains": ["docs.rs"],
            "excludeDomains": ["spam.example"],
            "userLocation": "DE",
            "contents": {"highlights": true},
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exa_model_id_selects_the_search_type() {
    let (fake, proxy) = setup().await;
    ok_answer(&proxy, &json!({"model": "exa-deep", "query": "q"})).await;
    assert_eq!(only(&fake).body["type"], "deep");
}

#[tokio::test(flavor = "multi_thread")]
async fn firecrawl_gets_v2_search_fields() {
    let (fake, proxy) = setup().await;
    let v = ok_answer(&proxy, &full("firecrawl")).await;
    assert_eq!(v["results"], json!([plain(1), plain(2), plain(3)]));
    let r = only_sent(
        &fake,
        "POST",
        "/firecrawl/v2/search",
        ("authorization", Some(&bearer())),
    );
    assert_eq!(
        r.body,
        json!({
            "query": "rust async",
            "limit": 3,
            "includeDomains": ["docs.rs"],
            "excludeDomains": ["spam.example"],
            "country": "DE",
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serper_gets_google_operators_and_a_lowercase_gl() {
    let (fake, proxy) = setup().await;
    let v = ok_answer(&proxy, &full("serper")).await;
    let mut first = plain(1);
    first["date"] = json!("2025-01-14");
    assert_eq!(v["results"], json!([first, plain(2), plain(3)]));
    let r = only_sent(&fake, "POST", "/serper/search", ("x-api-key", Some(KEY)));
    assert_eq!(
        r.body,
        json!({"q": "rust async site:docs.rs -site:spam.example", "num": 3, "gl": "de"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn linkup_gets_search_results_output_and_images_are_skipped() {
    let (fake, proxy) = setup().await;
    let v = ok_answer(&proxy, &full("linkup")).await;
    assert_eq!(v["results"], json!([plain(1), plain(2), plain(3)]));
    let r = only_sent(
        &fake,
        "POST",
        "/linkup/v1/search",
        ("authorization", Some(&bearer())),
    );
    // Linkup has no country parameter.
    assert_eq!(
        r.body,
        json!({
            "q": "rust async",
            "depth": "standard",
            "outputType": "searchResults",
            "maxResults": 3,
            "includeDomains": ["docs.rs"],
            "excludeDomains": ["spam.example"],
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn searxng_is_filtered_and_counted_by_the_proxy_and_gets_no_key() {
    let (fake, proxy) = setup().await;
    let v = ok_answer(&proxy, &full("searxng")).await;
    let snippet = |i: u32| format!("Snippet {i} about rust async. Tom & Jerry");
    // The fake's second result ignores `site:`; the proxy drops it.
    assert_eq!(
        v["results"],
        json!([
            result(1, &snippet(1), Some("2025-01-14")),
            result(3, &snippet(3), None),
            result(4, &snippet(4), None),
        ])
    );
    let r = only_sent(&fake, "GET", "/searxng/search", ("authorization", None));
    assert_eq!(
        r.param("q"),
        Some("rust async site:docs.rs -site:spam.example")
    );
    assert_eq!(r.param("format"), Some("json"));
    assert_eq!(r.params.len(), 2, "{:?}", r.params);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_query_uses_the_provider_defaults() {
    let (fake, proxy) = setup().await;
    for (model, want) in [
        ("tavily", 5),
        ("brave", 20),
        ("exa", 10),
        ("firecrawl", 5),
        ("serper", 10),
        ("linkup", 5),
        ("searxng", 12),
    ] {
        let v = ok_answer(&proxy, &json!({"model": model, "query": "plain"})).await;
        assert_eq!(v["results"].as_array().unwrap().len(), want, "{model}: {v}");
    }
    assert_eq!(fake.requests().len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_never_sees_the_client_key() {
    let (fake, proxy) = setup().await;
    for p in Provider::ALL {
        let model = p.name().trim_end_matches("_ai");
        ok_answer(&proxy, &json!({"model": model, "query": "leak check"})).await;
    }
    for r in fake.requests() {
        assert_master_key_absent(&r.headers);
        assert!(!String::from_utf8_lossy(&r.raw).contains(MASTER));
        assert!(!r.query.clone().unwrap_or_default().contains(MASTER));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_provider_errors_become_openai_errors() {
    let (fake, proxy) = setup().await;
    // A 429's Retry-After cools the deployment down, so it is each model's last case.
    let cases = [
        (
            "tavily",
            Provider::Tavily,
            432,
            502,
            "upstream_billing",
            "plan's set usage limit",
        ),
        (
            "tavily",
            Provider::Tavily,
            429,
            429,
            "upstream_rate_limited",
            "excessive requests",
        ),
        (
            "brave",
            Provider::Brave,
            429,
            429,
            "upstream_rate_limited",
            "RATE_LIMITED",
        ),
        (
            "exa",
            Provider::Exa,
            402,
            502,
            "upstream_billing",
            "NO_MORE_CREDITS",
        ),
        (
            "firecrawl",
            Provider::Firecrawl,
            402,
            502,
            "upstream_billing",
            "Insufficient credits",
        ),
        (
            "serper",
            Provider::Serper,
            400,
            502,
            "upstream_billing",
            "Not enough credits",
        ),
        (
            "linkup",
            Provider::Linkup,
            500,
            502,
            "upstream_error",
            "Internal server error",
        ),
        (
            "linkup",
            Provider::Linkup,
            429,
            429,
            "upstream_rate_limited",
            "Too many requests",
        ),
        (
            "searxng",
            Provider::Searxng,
            429,
            429,
            "upstream_rate_limited",
            "HTTP 429",
        ),
    ];
    for (model, provider, status, want, code, text) in cases {
        fake.push_fault(Fault::Documented(status));
        let resp = search(&proxy, &json!({"model": model, "query": "q"})).await;
        if status == 429 {
            assert_eq!(resp.headers()["retry-after"], "1", "{model} {status}");
        }
        let (msg, v) = error_message(resp, want).await;
        assert_eq!(v["error"]["code"], code, "{model} {status}: {v}");
        assert!(msg.starts_with(provider.name()), "{model} {status}: {msg}");
        assert!(msg.contains(text), "{model} {status}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_provider_refuses_keeps_its_400() {
    let (fake, proxy) = setup().await;
    // Brave supports a fixed list of countries; its 422 validation error is the
    // client's fault, unlike its 422 for a bad token.
    let resp = search(
        &proxy,
        &json!({"model": "brave", "query": "q", "country": "zz"}),
    )
    .await;
    let (msg, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(msg.starts_with("brave: Unable to validate"), "{msg}");
    assert_eq!(only(&fake).param("country"), Some("ZZ"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_provider_key_is_a_502_not_a_401() {
    let fake = fake::start(KEY).await.unwrap();
    let proxy = start_proxy(&fake_proxy_config(&models(&fake, "wrong-key"))).await;
    for model in ["tavily", "brave", "exa", "firecrawl", "serper", "linkup"] {
        let resp = search(&proxy, &json!({"model": model, "query": "q"})).await;
        let (msg, v) = error_message(resp, 502).await;
        assert_eq!(v["error"]["code"], "upstream_auth_failed", "{model}: {v}");
        assert!(
            msg.contains("rejected the proxy's credentials"),
            "{model}: {msg}"
        );
        assert!(!msg.contains("wrong-key"), "{model}: {msg}");
    }
    // Brave says so with a 422, not a 401.
    let brave = fake
        .requests()
        .into_iter()
        .find(|r| r.provider == Provider::Brave)
        .unwrap();
    assert_eq!(header(&brave, "x-subscription-token"), Some("wrong-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn searxng_without_the_json_format_is_explained() {
    let (fake, proxy) = setup().await;
    fake.push_fault(Fault::Documented(403));
    let resp = search(&proxy, &json!({"model": "searxng", "query": "q"})).await;
    let (msg, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(msg.contains("search.formats"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_provider_json_is_a_502() {
    let (fake, proxy) = setup().await;
    for p in Provider::ALL {
        let model = p.name().trim_end_matches("_ai");
        for body in ["<html>not json</html>", r#"{"unexpected": true}"#] {
            fake.push_fault(Fault::Malformed(body.to_string()));
            let resp = search(&proxy, &json!({"model": model, "query": "q"})).await;
            let (msg, v) = error_message(resp, 502).await;
            assert_eq!(
                v["error"]["code"], "upstream_invalid_response",
                "{model} {body}: {v}"
            );
            assert!(msg.contains(p.name()), "{model}: {msg}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_search_requests_are_400s_that_never_reach_the_provider() {
    let (fake, proxy) = setup().await;
    for (body, param) in [
        (json!({"model": "exa"}), "query"),
        (
            json!({"model": "exa", "query": "q", "max_results": 0}),
            "max_results",
        ),
        (
            json!({"model": "exa", "query": "q", "country": "germany"}),
            "country",
        ),
        (
            json!({"model": "tavily", "query": "q", "country": "aq"}),
            "country",
        ),
        (
            json!({"model": "serper", "query": "q", "search_domain_filter": ["a.com OR b"]}),
            "search_domain_filter",
        ),
        (
            json!({"model": "brave", "query": "q", "search_domain_filter": "a.com"}),
            "search_domain_filter",
        ),
    ] {
        let (msg, v) = error_message(search(&proxy, &body).await, 400).await;
        assert_eq!(v["error"]["param"], param, "{body}: {msg}");
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn search_on_a_chat_only_model_is_refused_before_anything_is_sent() {
    let mock = start_mock(MockConfig::default()).await;
    let proxy = start_proxy(&basic_config(&mock, "gpt-4o", "")).await;
    let resp = search(&proxy, &json!({"model": "gpt-4o", "query": "q"})).await;
    let (msg, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["code"], "endpoint_not_supported", "{msg}");
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_on_a_search_model_is_refused_before_anything_is_sent() {
    let (fake, proxy) = setup().await;
    for model in ["tavily", "brave", "exa", "searxng"] {
        let resp = post_chat(&proxy, MASTER, &chat_body(model, false)).await;
        let (msg, v) = error_message(resp, 400).await;
        assert_eq!(
            v["error"]["code"], "endpoint_not_supported",
            "{model}: {msg}"
        );
    }
    assert!(fake.requests().is_empty());
}
