//! `/v1/embeddings` and `/v1/rerank` through the real proxy to provider-faithful
//! fakes of Cohere's v2 Embed and Rerank APIs, Voyage AI and Jina AI. The fakes
//! refuse fields their references do not list and answer with deterministic
//! vectors and scores (`fake_providers::vectors`), so these tests check the
//! translation both ways: what each provider received, and that the client
//! gets OpenAI's embeddings `list` and the Cohere-style rerank answer, in
//! order, with usage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::cohere::{self, FakeCohere};
use fake_providers::jina::{self, FakeJina};
use fake_providers::vectors::{embedding, rank, rerank_tokens, tokens};
use fake_providers::voyage::{self, FakeVoyage};
use serde_json::{json, Value};

const COHERE_KEY: &str = "co-test-key";
const VOYAGE_KEY: &str = "pa-test-key";
const JINA_KEY: &str = "jina_test_key";

/// Per-token price configured on every model, to check cost from usage.
const PRICE: f64 = 0.000_001;
const COST: &str = "x-liter-llm-cost";

const TEXTS: [&str; 3] = [
    "the quick brown fox",
    "jumps over",
    "the lazy dog sleeps in the sun",
];
const QUERY: &str = "where does the lazy dog sleep";
const DOCS: [&str; 4] = [
    "Bananas are yellow",
    "The lazy dog sleeps in the sun",
    "A dog sleeps",
    "Foxes are quick",
];

struct Fakes {
    cohere: FakeCohere,
    voyage: FakeVoyage,
    jina: FakeJina,
    proxy: TestProxy,
}

fn priced(name: &str, provider_model: &str, base: &str, key: &str) -> String {
    fake_model(
        name,
        provider_model,
        base,
        key,
        &format!("input_cost_per_token = {PRICE}\noutput_cost_per_token = {PRICE}\n"),
    )
}

async fn setup() -> Fakes {
    let cohere = cohere::start(COHERE_KEY).await.unwrap();
    let voyage = voyage::start(VOYAGE_KEY).await.unwrap();
    let jina = jina::start(JINA_KEY).await.unwrap();
    let (co, vo, ji) = (cohere.base_url(), voyage.base_url(), jina.base_url());
    let models = [
        priced("co-embed", "cohere_chat/embed-v4.0", &co, COHERE_KEY),
        priced("co-rerank", "cohere_chat/rerank-v3.5", &co, COHERE_KEY),
        priced("vo-embed", "voyage/voyage-3.5", &vo, VOYAGE_KEY),
        priced("vo-rerank", "voyage/rerank-2.5", &vo, VOYAGE_KEY),
        priced("jina-embed", "jina_ai/jina-embeddings-v3", &ji, JINA_KEY),
        priced(
            "jina-rerank",
            "jina_ai/jina-reranker-v2-base-multilingual",
            &ji,
            JINA_KEY,
        ),
        // Provider inferred from the model id's prefix.
        fake_model("bare-voyage-rerank", "rerank-2", &vo, VOYAGE_KEY, ""),
        fake_model("bare-cohere-rerank", "rerank-v3.5", &co, COHERE_KEY, ""),
        fake_model("bare-jina-embed", "jina-embeddings-v3", &ji, JINA_KEY, ""),
        // Cohere's OpenAI Compatibility API: chat and embeddings only.
        fake_model("co-compat", "cohere/command-a-03-2025", &co, COHERE_KEY, ""),
        // A key the fake does not accept.
        fake_model("co-badkey", "cohere_chat/embed-v4.0", &co, "wrong", ""),
    ];
    let config = fake_proxy_config(&models).replace(
        "max_retries = 0\n",
        "max_retries = 0\nenable_cost_tracking = true\n",
    );
    let proxy = start_proxy(&config).await;
    Fakes {
        cohere,
        voyage,
        jina,
        proxy,
    }
}

/// The cost header of a 200, and its JSON body.
async fn ok_with_cost(resp: reqwest::Response) -> (Value, f64) {
    let cost: f64 = resp
        .headers()
        .get(COST)
        .map(|v| v.to_str().unwrap().parse().unwrap())
        .unwrap_or(0.0);
    (json_ok(resp).await, cost)
}

fn word_tokens(texts: &[&str]) -> u64 {
    texts.iter().map(|t| tokens(t)).sum()
}

/// OpenAI's base64 embedding: little-endian `f32`s.
fn decode_base64_f32(s: &str) -> Vec<f64> {
    base64_f32(s).into_iter().map(f64::from).collect()
}

fn assert_embeddings_in_order(v: &Value, model: &str, dims: usize) {
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], model);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), TEXTS.len());
    for (i, (item, text)) in data.iter().zip(TEXTS).enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        assert_eq!(item["embedding"], json!(embedding(text, dims)), "input {i}");
    }
    let want = word_tokens(&TEXTS);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": want, "total_tokens": want})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cohere_embeddings_go_to_v2_embed_in_order_with_billed_usage_and_cost() {
    let f = setup().await;
    let body = json!({"model": "co-embed", "input": TEXTS, "user": "someone"});
    let (v, cost) = ok_with_cost(post_master(&f.proxy, "/v1/embeddings", &body).await).await;
    assert_embeddings_in_order(&v, "co-embed", 1536);
    assert!(
        (cost - word_tokens(&TEXTS) as f64 * PRICE).abs() < 1e-12,
        "{cost}"
    );

    let reqs = f.cohere.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v2/embed");
    assert_eq!(
        reqs[0].headers["authorization"],
        format!("Bearer {COHERE_KEY}").as_str()
    );
    assert_master_key_absent(&reqs[0].headers);
    assert_eq!(
        reqs[0].body,
        json!({"model": "embed-v4.0", "texts": TEXTS, "input_type": "search_document",
               "embedding_types": ["float"]})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn voyage_embeddings_go_to_v1_embeddings_in_order_with_usage_and_cost() {
    let f = setup().await;
    let body = json!({"model": "vo-embed", "input": TEXTS, "encoding_format": "float"});
    let (v, cost) = ok_with_cost(post_master(&f.proxy, "/v1/embeddings", &body).await).await;
    assert_embeddings_in_order(&v, "vo-embed", 1024);
    assert!(
        (cost - word_tokens(&TEXTS) as f64 * PRICE).abs() < 1e-12,
        "{cost}"
    );

    let reqs = f.voyage.requests();
    assert_eq!(reqs[0].path, "/v1/embeddings");
    assert_eq!(
        reqs[0].headers["authorization"],
        format!("Bearer {VOYAGE_KEY}").as_str()
    );
    assert_master_key_absent(&reqs[0].headers);
    assert_eq!(reqs[0].body, json!({"input": TEXTS, "model": "voyage-3.5"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn jina_embeddings_go_to_v1_embeddings_in_order_with_usage() {
    let f = setup().await;
    let body = json!({"model": "jina-embed", "input": TEXTS});
    let (v, _) = ok_with_cost(post_master(&f.proxy, "/v1/embeddings", &body).await).await;
    assert_embeddings_in_order(&v, "jina-embed", 1024);

    let reqs = f.jina.requests();
    assert_eq!(reqs[0].path, "/v1/embeddings");
    assert_eq!(
        reqs[0].headers["authorization"],
        format!("Bearer {JINA_KEY}").as_str()
    );
    assert_eq!(
        reqs[0].body,
        json!({"model": "jina-embeddings-v3", "input": TEXTS, "embedding_type": "float"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn base64_embeddings_decode_to_the_float_answer_for_every_provider() {
    let f = setup().await;
    for model in ["co-embed", "vo-embed", "jina-embed"] {
        let floats = json_ok(
            post_master(
                &f.proxy,
                "/v1/embeddings",
                &json!({"model": model, "input": TEXTS}),
            )
            .await,
        )
        .await;
        let encoded = json_ok(
            post_master(
                &f.proxy,
                "/v1/embeddings",
                &json!({"model": model, "input": TEXTS, "encoding_format": "base64"}),
            )
            .await,
        )
        .await;
        for (i, item) in encoded["data"].as_array().unwrap().iter().enumerate() {
            assert_eq!(item["index"], i);
            let decoded = decode_base64_f32(item["embedding"].as_str().unwrap());
            assert_eq!(
                json!(decoded),
                floats["data"][i]["embedding"],
                "{model} input {i}"
            );
        }
        assert_eq!(encoded["usage"], floats["usage"]);
    }
    // Every provider was asked for floats; the proxy did the encoding.
    assert!(f
        .cohere
        .requests()
        .iter()
        .all(|r| r.body["embedding_types"] == json!(["float"])));
    assert!(f
        .voyage
        .requests()
        .iter()
        .all(|r| r.body.get("encoding_format").is_none()));
    assert!(f
        .jina
        .requests()
        .iter()
        .all(|r| r.body["embedding_type"] == "float"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dimensions_and_input_type_reach_each_provider_under_its_own_names() {
    let f = setup().await;
    let cases = [
        ("co-embed", 256, "query"),
        ("vo-embed", 512, "query"),
        ("jina-embed", 64, "query"),
    ];
    for (model, dims, input_type) in cases {
        let v = json_ok(
            post_master(
                &f.proxy,
                "/v1/embeddings",
                &json!({"model": model, "input": "hello there", "dimensions": dims,
                        "input_type": input_type}),
            )
            .await,
        )
        .await;
        assert_eq!(
            v["data"][0]["embedding"],
            json!(embedding("hello there", dims)),
            "{model}"
        );
    }
    let co = &f.cohere.requests()[0].body;
    assert_eq!(co["output_dimension"], 256);
    assert_eq!(co["input_type"], "search_query");
    assert_eq!(co["texts"], json!(["hello there"]));
    let vo = &f.voyage.requests()[0].body;
    assert_eq!(vo["output_dimension"], 512);
    assert_eq!(vo["input_type"], "query");
    let ji = &f.jina.requests()[0].body;
    assert_eq!(ji["dimensions"], 64);
    assert_eq!(ji["task"], "retrieval.query");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_id_inputs_are_refused_naming_input_before_anything_is_sent() {
    let f = setup().await;
    for model in ["co-embed", "vo-embed", "jina-embed"] {
        for input in [json!([1, 2, 3]), json!([[1, 2], [3]])] {
            let resp = post_master(
                &f.proxy,
                "/v1/embeddings",
                &json!({"model": model, "input": input}),
            )
            .await;
            let (msg, v) = error_message(resp, 400).await;
            assert_eq!(v["error"]["param"], "input", "{model}: {msg}");
            assert!(msg.contains("token ids"), "{msg}");
        }
    }
    assert!(f.cohere.requests().is_empty());
    assert!(f.voyage.requests().is_empty());
    assert!(f.jina.requests().is_empty());
}

fn expected_order(top: usize) -> Vec<(usize, f64)> {
    let docs: Vec<String> = DOCS.iter().map(|d| d.to_string()).collect();
    rank(QUERY, &docs).into_iter().take(top).collect()
}

fn assert_ranked(v: &Value, top: usize, with_documents: bool) {
    let results = v["results"].as_array().unwrap();
    let want = expected_order(top);
    assert_eq!(results.len(), want.len(), "{v}");
    for (r, (index, score)) in results.iter().zip(&want) {
        assert_eq!(r["index"], *index);
        assert_eq!(r["relevance_score"], *score);
        if with_documents {
            assert_eq!(r["document"], json!({"text": DOCS[*index]}));
        } else {
            assert!(r.get("document").is_none(), "{r}");
        }
    }
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["relevance_score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(v["id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn cohere_rerank_goes_to_v2_rerank_and_keeps_id_order_and_search_units() {
    let f = setup().await;
    let body = json!({"model": "co-rerank", "query": QUERY,
                      "documents": [DOCS[0], {"text": DOCS[1]}, DOCS[2], DOCS[3]],
                      "top_n": 2, "max_tokens_per_doc": 512, "return_documents": false});
    let v = json_ok(post_master(&f.proxy, "/v1/rerank", &body).await).await;
    assert_eq!(v["model"], "co-rerank");
    assert_ranked(&v, 2, false);
    assert_eq!(v["meta"]["billed_units"]["search_units"], 1);
    assert!(v.get("usage").is_none(), "cohere bills search units: {v}");

    let reqs = f.cohere.requests();
    assert_eq!(reqs[0].path, "/v2/rerank");
    assert_eq!(
        reqs[0].headers["authorization"],
        format!("Bearer {COHERE_KEY}").as_str()
    );
    assert_eq!(
        reqs[0].body,
        json!({"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "top_n": 2,
               "max_tokens_per_doc": 512})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cohere_rerank_returns_documents_from_the_request_when_asked() {
    let f = setup().await;
    let body = json!({"model": "co-rerank", "query": QUERY,
                      "documents": [DOCS[0], {"text": DOCS[1]}, DOCS[2], DOCS[3]],
                      "top_n": 3, "return_documents": true});
    let v = json_ok(post_master(&f.proxy, "/v1/rerank", &body).await).await;
    assert_ranked(&v, 3, true);
    // Cohere's v2 API has no `return_documents`; it was not sent.
    assert!(f.cohere.requests()[0]
        .body
        .get("return_documents")
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn voyage_rerank_maps_top_n_and_returns_documents_with_usage_and_cost() {
    let f = setup().await;
    let body = json!({"model": "vo-rerank", "query": QUERY, "documents": DOCS,
                      "top_n": 3, "return_documents": true});
    let (v, cost) = ok_with_cost(post_master(&f.proxy, "/v1/rerank", &body).await).await;
    assert_eq!(v["model"], "vo-rerank");
    assert_ranked(&v, 3, true);
    let docs: Vec<String> = DOCS.iter().map(|d| d.to_string()).collect();
    let want = rerank_tokens(QUERY, &docs);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": want, "completion_tokens": 0, "total_tokens": want})
    );
    assert!((cost - want as f64 * PRICE).abs() < 1e-12, "{cost}");

    let reqs = f.voyage.requests();
    assert_eq!(reqs[0].path, "/v1/rerank");
    assert_eq!(
        reqs[0].body,
        json!({"query": QUERY, "documents": DOCS, "model": "rerank-2.5", "top_k": 3,
               "return_documents": true})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jina_rerank_leaves_documents_out_unless_asked() {
    let f = setup().await;
    let body = json!({"model": "jina-rerank", "query": QUERY, "documents": DOCS});
    let v = json_ok(post_master(&f.proxy, "/v1/rerank", &body).await).await;
    assert_ranked(&v, DOCS.len(), false);
    let docs: Vec<String> = DOCS.iter().map(|d| d.to_string()).collect();
    assert_eq!(v["usage"]["total_tokens"], rerank_tokens(QUERY, &docs));

    let body = json!({"model": "jina-rerank", "query": QUERY, "documents": DOCS,
                      "top_n": 1, "return_documents": true});
    let v = json_ok(post_master(&f.proxy, "/v1/rerank", &body).await).await;
    assert_ranked(&v, 1, true);

    let reqs = f.jina.requests();
    assert_eq!(reqs[0].path, "/v1/rerank");
    assert_eq!(
        reqs[0].headers["authorization"],
        format!("Bearer {JINA_KEY}").as_str()
    );
    assert_eq!(
        reqs[0].body,
        json!({"model": "jina-reranker-v2-base-multilingual", "query": QUERY,
               "documents": DOCS, "return_documents": false})
    );
    assert_eq!(reqs[1].body["top_n"], 1);
    assert_eq!(reqs[1].body["return_documents"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_model_ids_route_to_the_provider_that_owns_the_prefix() {
    let f = setup().await;
    let rerank = |model: &str| json!({"model": model, "query": QUERY, "documents": DOCS});
    json_ok(post_master(&f.proxy, "/v1/rerank", &rerank("bare-voyage-rerank")).await).await;
    json_ok(post_master(&f.proxy, "/v1/rerank", &rerank("bare-cohere-rerank")).await).await;
    json_ok(
        post_master(
            &f.proxy,
            "/v1/embeddings",
            &json!({"model": "bare-jina-embed", "input": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(f.voyage.requests()[0].body["model"], "rerank-2");
    assert_eq!(f.cohere.requests()[0].body["model"], "rerank-v3.5");
    assert_eq!(f.jina.requests()[0].body["model"], "jina-embeddings-v3");
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_errors_are_mapped_to_openai_errors() {
    let f = setup().await;
    let embed = |model: &str| json!({"model": model, "input": "x"});

    // Voyage's rate limit keeps its status and Retry-After.
    f.voyage.set_next_error(
        429,
        voyage::error_body("You have exceeded your rate limit."),
    );
    let resp = post_master(&f.proxy, "/v1/embeddings", &embed("vo-embed")).await;
    assert_eq!(resp.headers()["retry-after"], "1");
    let (msg, _) = error_message(resp, 429).await;
    assert!(msg.contains("rate limit"), "{msg}");

    // Jina's FastAPI validation list becomes one message naming the field.
    f.jina.set_next_error(
        422,
        json!({"detail": [{"loc": ["body", "dimensions"], "msg": "Input should be less than 1025",
                           "type": "less_than_equal"}]})
        .to_string(),
    );
    let (msg, _) = error_message(
        post_master(&f.proxy, "/v1/embeddings", &embed("jina-embed")).await,
        400,
    )
    .await;
    assert!(
        msg.contains("dimensions: Input should be less than 1025"),
        "{msg}"
    );

    // Cohere's `{id, message}` body; the proxy's own bad key is the operator's problem.
    let (msg, v) = error_message(
        post_master(&f.proxy, "/v1/embeddings", &embed("co-badkey")).await,
        502,
    )
    .await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed", "{msg}");

    // A provider's 5xx is a 502 naming the provider.
    f.cohere.set_next_documented_error(500);
    let body = json!({"model": "co-rerank", "query": QUERY, "documents": DOCS});
    let (msg, _) = error_message(post_master(&f.proxy, "/v1/rerank", &body).await, 502).await;
    assert!(msg.starts_with("cohere:"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_upstream_models_are_the_providers_own_client_errors() {
    let cohere = cohere::start(COHERE_KEY).await.unwrap();
    let voyage = voyage::start(VOYAGE_KEY).await.unwrap();
    let jina = jina::start(JINA_KEY).await.unwrap();
    let proxy = start_proxy(&fake_proxy_config(&[
        fake_model(
            "co",
            "cohere_chat/embed-v9",
            &cohere.base_url(),
            COHERE_KEY,
            "",
        ),
        fake_model("vo", "voyage/voyage-9", &voyage.base_url(), VOYAGE_KEY, ""),
        fake_model(
            "ji",
            "jina_ai/jina-embeddings-v9",
            &jina.base_url(),
            JINA_KEY,
            "",
        ),
    ]))
    .await;
    let embed = |model: &str| json!({"model": model, "input": "x"});
    let (msg, _) = error_message(
        post_master(&proxy, "/v1/embeddings", &embed("co")).await,
        404,
    )
    .await;
    assert!(msg.contains("model 'embed-v9' not found"), "{msg}");
    let (msg, _) = error_message(
        post_master(&proxy, "/v1/embeddings", &embed("vo")).await,
        400,
    )
    .await;
    assert!(
        msg.starts_with("voyage: Model voyage-9 is not supported"),
        "{msg}"
    );
    let (msg, _) = error_message(
        post_master(&proxy, "/v1/embeddings", &embed("ji")).await,
        400,
    )
    .await;
    assert_eq!(msg, "jina_ai: Model 'jina-embeddings-v9' not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_a_provider_does_not_offer_are_400s_before_anything_is_sent() {
    let f = setup().await;
    let rerank = |model: &str| json!({"model": model, "query": QUERY, "documents": DOCS});
    // Cohere's Compatibility API has no rerank.
    let (msg, v) = error_message(
        post_master(&f.proxy, "/v1/rerank", &rerank("co-compat")).await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "endpoint_not_supported", "{msg}");
    // Voyage and Jina have no chat.
    for model in ["vo-embed", "jina-rerank"] {
        let (msg, v) = error_message(
            post_chat(&f.proxy, MASTER, &chat_body(model, false)).await,
            400,
        )
        .await;
        assert_eq!(v["error"]["code"], "endpoint_not_supported", "{msg}");
        assert_eq!(v["error"]["param"], "model");
    }
    // Nor does anything here translate speech.
    let speech = json!({"model": "vo-embed", "input": "hi", "voice": "alloy"});
    let (_, v) = error_message(
        post_master(&f.proxy, "/v1/audio/speech", &speech).await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "endpoint_not_supported");
    assert!(f.cohere.requests().is_empty());
    assert!(f.voyage.requests().is_empty());
    assert!(f.jina.requests().is_empty());
}
