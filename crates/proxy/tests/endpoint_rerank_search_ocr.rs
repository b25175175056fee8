//! The extended endpoints through OpenAI-compatible servers: `POST /v1/rerank`
//! (a vLLM server, Cohere-style results) and `POST /v1/ocr` (Mistral's shape, from
//! a generic OpenAI-compatible server);
//! `POST /v1/search` has no OpenAI-compatible server, so only its checks apply.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
mod endpoint_common;

use common::*;
use endpoint_common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn rerank_reaches_a_vllm_server_and_its_ranking_comes_back() {
    let (mock, p) = start_endpoints().await;
    let sent = json!({
        "model": "rerank",
        "query": "What is the capital of France?",
        "documents": [
            "Berlin is the capital of Germany.",
            {"text": "Paris is the capital of France."},
            "Bananas are yellow.",
        ],
        "top_n": 2,
    });
    let (v, _) = relayed_json(
        &p,
        &mock,
        "/v1/rerank",
        &sent,
        ("rerank", "BAAI/bge-reranker-v2-m3"),
    )
    .await;
    assert_eq!(v["model"], "BAAI/bge-reranker-v2-m3");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["index"], 1);
    assert_eq!(
        results[0]["document"]["text"],
        "Paris is the capital of France."
    );
    let top = results[0]["relevance_score"].as_f64().unwrap();
    let expected = mock_upstream::relevance(
        "What is the capital of France?",
        "Paris is the capital of France.",
    );
    assert!((top - expected).abs() < 1e-12, "{top} vs {expected}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rerank_without_documents_or_query_is_a_400_naming_the_field() {
    let (mock, p) = start_endpoints().await;
    for (body, param) in [
        (
            json!({"model": "rerank", "query": "q", "documents": []}),
            "documents",
        ),
        (json!({"model": "rerank", "query": "q"}), "documents"),
        (
            json!({"model": "rerank", "query": "q", "documents": [7]}),
            "documents",
        ),
        (json!({"model": "rerank", "documents": ["a"]}), "query"),
        (
            json!({"model": "rerank", "query": "q", "documents": ["a"], "top_n": 0}),
            "top_n",
        ),
    ] {
        let (msg, v) = error_message(post_json(&p, MASTER, "/v1/rerank", &body).await, 400).await;
        assert_eq!(v["error"]["param"], param, "{body}: {msg}");
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn providers_that_do_not_rerank_search_or_ocr_refuse_before_the_upstream() {
    let (mock, p) = start_endpoints().await;
    for (path, body) in [
        (
            "/v1/rerank",
            json!({"model": "chat", "query": "q", "documents": ["a"]}),
        ),
        ("/v1/search", json!({"model": "chat", "query": "rust"})),
        (
            "/v1/ocr",
            json!({"model": "chat", "document": {"type": "document_url", "document_url": "https://x/a.pdf"}}),
        ),
        // A vLLM server ranks but does not read documents.
        (
            "/v1/ocr",
            json!({"model": "rerank", "document": {"type": "document_url", "document_url": "https://x/a.pdf"}}),
        ),
    ] {
        let (msg, v) = error_message(post_json(&p, MASTER, path, &body).await, 400).await;
        assert_eq!(
            v["error"]["code"], "endpoint_not_supported",
            "{path}: {msg}"
        );
        assert_eq!(v["error"]["param"], "model", "{path}: {msg}");
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_needs_a_query() {
    let (mock, p) = start_endpoints().await;
    for (body, param) in [
        (json!({"model": "chat"}), "query"),
        (json!({"model": "chat", "query": ""}), "query"),
        (
            json!({"model": "chat", "query": "x", "max_results": 0}),
            "max_results",
        ),
        (
            json!({"model": "chat", "query": "x", "search_domain_filter": "a.com"}),
            "search_domain_filter",
        ),
    ] {
        let (msg, v) = error_message(post_json(&p, MASTER, "/v1/search", &body).await, 400).await;
        assert_eq!(v["error"]["param"], param, "{body}: {msg}");
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ocr_of_an_inline_document_reaches_the_upstream_intact() {
    let (mock, p) = start_endpoints().await;
    // A 13-byte "PDF" as a data URL: the upstream reports the size it decoded.
    let sent = json!({
        "model": "ocr",
        "document": {"type": "document_url", "document_url": "data:application/pdf;base64,JVBERi0xLjcgZmFrZQ==", "document_name": "report.pdf"},
        "pages": [1],
        "include_image_base64": true,
    });
    let (v, _) = relayed_json(&p, &mock, "/v1/ocr", &sent, ("ocr", "mistral-ocr-latest")).await;
    let pages = v["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0]["index"], 1);
    assert!(pages[0]["markdown"]
        .as_str()
        .unwrap()
        .contains("report.pdf"));
    assert!(pages[0]["images"][0]["image_base64"].is_string());
    assert_eq!(v["usage_info"]["pages_processed"], 1);
    assert_eq!(v["usage_info"]["doc_size_bytes"], 13);
    assert_eq!(v["model"], "mistral-ocr-latest");
}

#[tokio::test(flavor = "multi_thread")]
async fn ocr_of_an_image_url_object_is_accepted() {
    let (_mock, p) = start_endpoints().await;
    let v = json_ok(
        post_json(
            &p,
            MASTER,
            "/v1/ocr",
            &json!({"model": "ocr", "document": {"type": "image_url", "image_url": {"url": "https://example.com/receipt.png"}}}),
        )
        .await,
    )
    .await;
    assert_eq!(v["pages"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ocr_without_a_document_is_a_400_naming_document() {
    let (mock, p) = start_endpoints().await;
    for (body, param) in [
        (json!({"model": "ocr"}), "document"),
        (
            json!({"model": "ocr", "document": "https://x/a.pdf"}),
            "document",
        ),
        (
            json!({"model": "ocr", "document": {"type": "document_url"}}),
            "document",
        ),
        (
            json!({"model": "ocr", "document": {"type": "video_url", "video_url": "https://x"}}),
            "document.type",
        ),
    ] {
        let (msg, v) = error_message(post_json(&p, MASTER, "/v1/ocr", &body).await, 400).await;
        assert_eq!(v["error"]["param"], param, "{body}: {msg}");
    }
    assert_eq!(mock.request_count(), 0);
}
