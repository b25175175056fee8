//! `POST /v1/moderations` through an OpenAI-compatible deployment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
mod endpoint_common;

use common::*;
use endpoint_common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn moderations_reach_the_upstream_and_its_results_come_back() {
    let (mock, p) = start_endpoints().await;
    let sent = json!({"model": "mod", "input": ["I will kill them all", "What a lovely day"]});
    let (v, _) = relayed_json(
        &p,
        &mock,
        "/v1/moderations",
        &sent,
        ("mod", "omni-moderation-latest"),
    )
    .await;
    assert!(v["id"].as_str().unwrap().starts_with("modr-"));
    assert_eq!(v["model"], "omni-moderation-latest");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["flagged"], true);
    assert_eq!(results[0]["categories"]["violence"], true);
    assert_eq!(results[1]["flagged"], false);
    assert!(results[1]["category_scores"]["harassment"].is_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn text_and_image_parts_are_one_input() {
    let (_mock, p) = start_endpoints().await;
    let v = json_ok(
        post_json(
            &p,
            MASTER,
            "/v1/moderations",
            &json!({"model": "mod", "input": [
                {"type": "text", "text": "a photo"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["results"][0]["category_applied_input_types"]["sexual"],
        json!(["text", "image"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_or_malformed_input_is_a_400_naming_input() {
    let (mock, p) = start_endpoints().await;
    for body in [
        json!({"model": "mod"}),
        json!({"model": "mod", "input": null}),
        json!({"model": "mod", "input": ""}),
        json!({"model": "mod", "input": []}),
        json!({"model": "mod", "input": 42}),
        json!({"model": "mod", "input": [{"type": "audio", "audio": "x"}]}),
        json!({"model": "mod", "input": [{"type": "image_url", "image_url": "not-an-object"}]}),
    ] {
        let (msg, v) =
            error_message(post_json(&p, MASTER, "/v1/moderations", &body).await, 400).await;
        assert_eq!(v["error"]["param"], "input", "{body}: {msg}");
    }
    // `[ ]` slips past the byte-level peek; the full check still catches it.
    let resp = client()
        .post(p.url("/v1/moderations"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(r#"{"model":"mod","input":[ ]}"#)
        .send()
        .await
        .unwrap();
    let (msg, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["param"], "input", "{msg}");
    assert_eq!(mock.request_count(), 0);
}
