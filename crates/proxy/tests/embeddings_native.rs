//! `/v1/embeddings` through the native Gemini and Bedrock adapters, over
//! loopback, against the provider-faithful fakes: the client speaks OpenAI; the
//! Gemini fake only accepts `embedContent` / `batchEmbedContents` bodies as
//! Google documents them with the key in `x-goog-api-key`; the Bedrock fake only
//! accepts SigV4-signed InvokeModel bodies for Titan and Cohere Embed. Vectors
//! are deterministic, so each test checks the exact values the client gets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::bedrock::{self, BedrockFault, Credentials, FakeBedrock};
use fake_providers::gemini::{self, FakeGemini, GeminiFault};
use serde_json::{json, Value};

const GEMINI_KEY: &str = "gm-embed-test";
const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";

fn bedrock_model(name: &str, upstream: &str, base: &str, secret: &str) -> String {
    format!(
        r#"
[[models]]
name = "{name}"
provider_model = "bedrock/{upstream}"
base_url = "{base}"
aws_region = "{REGION}"
aws_access_key_id = "{KEY_ID}"
aws_secret_access_key = "{secret}"
"#
    )
}

struct Setup {
    gemini: FakeGemini,
    bedrock: FakeBedrock,
    proxy: TestProxy,
}

async fn setup() -> Setup {
    let gemini = gemini::start(GEMINI_KEY).await.unwrap();
    let bedrock = bedrock::start(Credentials::new(KEY_ID, SECRET, REGION))
        .await
        .unwrap();
    let g = gemini.base_url();
    let b = bedrock.base_url();
    let config = fake_proxy_config(&[
        fake_model("gem-emb", "gemini/gemini-embedding-001", &g, GEMINI_KEY, ""),
        fake_model(
            "gem-emb-004",
            "gemini/text-embedding-004",
            &g,
            GEMINI_KEY,
            "",
        ),
        fake_model(
            "gem-emb-badkey",
            "gemini/gemini-embedding-001",
            &g,
            "gm-wrong",
            "",
        ),
        fake_model("gem-flash", "gemini/gemini-2.5-flash", &g, GEMINI_KEY, ""),
        bedrock_model("titan", "amazon.titan-embed-text-v2:0", &b, SECRET),
        bedrock_model("titan-g1", "amazon.titan-embed-text-v1", &b, SECRET),
        bedrock_model(
            "titan-badsecret",
            "amazon.titan-embed-text-v2:0",
            &b,
            "nope",
        ),
        bedrock_model("titan-image", "amazon.titan-embed-image-v1", &b, SECRET),
        bedrock_model("cohere-br", "cohere.embed-english-v3", &b, SECRET),
        bedrock_model(
            "cohere-br-us",
            "us.cohere.embed-multilingual-v3",
            &b,
            SECRET,
        ),
    ]);
    let proxy = start_proxy(&config).await;
    Setup {
        gemini,
        bedrock,
        proxy,
    }
}

async fn post_embeddings(p: &TestProxy, body: &Value) -> reqwest::Response {
    post_master(p, "/v1/embeddings", body).await
}

/// A float embedding narrowed to float32, the precision the fakes answer in.
fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// `data[]` checked for OpenAI's shape and `index` order; the embeddings.
fn data(v: &Value, model: &str) -> Vec<Value> {
    assert_eq!(v["object"], "list", "{v}");
    assert_eq!(v["model"], model, "{v}");
    let items = v["data"].as_array().unwrap();
    for (i, d) in items.iter().enumerate() {
        assert_eq!(d["object"], "embedding", "{v}");
        assert_eq!(d["index"], i, "{v}");
    }
    items.iter().map(|d| d["embedding"].clone()).collect()
}

/// Every Gemini request carried the proxy's key in `x-goog-api-key` and
/// nothing of the client's.
fn assert_gemini_auth(fake: &FakeGemini) {
    for r in fake.requests() {
        let key = r.headers.get("x-goog-api-key").map(|v| v.to_str().unwrap());
        assert!(
            key == Some(GEMINI_KEY) || key == Some("gm-wrong"),
            "{key:?}"
        );
        assert!(r.headers.get("authorization").is_none(), "{:?}", r.headers);
        assert!(r.query.is_none(), "{:?}", r.query);
        assert_master_key_absent(&r.headers);
    }
}

/// Every Bedrock request reached the fake signed (the fake recomputed the
/// signature itself) and nothing of the client's went along.
fn assert_bedrock_signed(fake: &FakeBedrock) {
    for r in fake.requests() {
        assert!(r.signature_valid, "signature rejected: {r:?}");
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/")),
            "{auth}"
        );
        assert!(
            auth.contains(
                "/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        assert_eq!(r.headers["content-type"], "application/json");
        assert_master_key_absent(&r.headers);
    }
}

// ------------------------------------------------------------------ Gemini

#[tokio::test(flavor = "multi_thread")]
async fn gemini_single_input_is_one_embed_content_call_with_usage() {
    let s = setup().await;
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "gem-emb", "input": "The quick brown fox", "dimensions": 8, "encoding_format": "float"}),
    )
    .await;
    let v = json_ok(resp).await;
    let embeddings = data(&v, "gem-emb");
    assert_eq!(embeddings.len(), 1);
    assert_eq!(
        floats(&embeddings[0]),
        gemini::embed::embedding_for("The quick brown fox", 8)
    );
    // The fake counts one token per word and reports it in usageMetadata.
    assert_eq!(v["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));

    let seen = s.gemini.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].path,
        "/v1beta/models/gemini-embedding-001:embedContent"
    );
    assert_eq!(
        seen[0].body,
        json!({"content": {"parts": [{"text": "The quick brown fox"}]}, "outputDimensionality": 8})
    );
    assert_gemini_auth(&s.gemini);
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_array_is_one_batch_call_with_order_dimensions_and_task_type() {
    let s = setup().await;
    let inputs = ["zebra", "apple", "mango tree", "kiwi"];
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "gem-emb", "input": inputs, "dimensions": 16, "task_type": "SEMANTIC_SIMILARITY", "encoding_format": "float"}),
    )
    .await;
    let v = json_ok(resp).await;
    let embeddings = data(&v, "gem-emb");
    assert_eq!(embeddings.len(), inputs.len());
    for (text, got) in inputs.iter().zip(&embeddings) {
        assert_eq!(
            floats(got),
            gemini::embed::embedding_for(text, 16),
            "{text}"
        );
    }
    assert_eq!(v["usage"]["prompt_tokens"], 5);

    let seen = &s.gemini.requests()[0];
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    let requests = seen.body["requests"].as_array().unwrap();
    assert_eq!(requests.len(), inputs.len());
    for (text, r) in inputs.iter().zip(requests) {
        assert_eq!(
            r,
            &json!({
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": text}]},
                "taskType": "SEMANTIC_SIMILARITY",
                "outputDimensionality": 16,
            })
        );
    }
    assert_gemini_auth(&s.gemini);
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_base64_is_little_endian_float32_of_the_same_vectors() {
    let s = setup().await;
    let inputs = ["first", "second"];
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "gem-emb", "input": inputs, "dimensions": 32, "encoding_format": "base64"}),
    )
    .await;
    let v = json_ok(resp).await;
    let embeddings = data(&v, "gem-emb");
    for (text, got) in inputs.iter().zip(&embeddings) {
        let s = got
            .as_str()
            .unwrap_or_else(|| panic!("not a string: {got}"));
        assert_eq!(
            base64_f32(s),
            gemini::embed::embedding_for(text, 32),
            "{text}"
        );
    }
    // The provider is always asked for numbers; base64 is the proxy's encoding.
    let sent = &s.gemini.requests()[0].body;
    assert!(!sent.to_string().contains("base64"), "{sent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_usage_is_left_out_when_the_provider_reports_none() {
    let s = setup().await;
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "gem-emb-004", "input": ["a b", "c"]}),
    )
    .await;
    let v = json_ok(resp).await;
    let embeddings = data(&v, "gem-emb-004");
    // text-embedding-004's native size.
    assert_eq!(floats(&embeddings[0]).len(), 768);
    assert!(v.get("usage").is_none(), "{v}");
    assert_eq!(
        s.gemini.requests()[0].path,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_errors_are_mapped() {
    let s = setup().await;
    let body = |model: &str| json!({"model": model, "input": "hi"});

    s.gemini.fail_next(GeminiFault::ResourceExhausted);
    let resp = post_embeddings(&s.proxy, &body("gem-emb")).await;
    assert_eq!(resp.headers()["retry-after"], "2");
    let (message, v) = error_message(resp, 429).await;
    assert!(message.starts_with("gemini: You exceeded"), "{message}");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // Google answers a wrong key with 400 API_KEY_INVALID: the proxy's credential
    // failed, not the client's request.
    let resp = post_embeddings(&s.proxy, &body("gem-emb-badkey")).await;
    let (_, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(!v.to_string().contains("gm-wrong"));

    // The fake refuses an unknown task type: a client error stays a 400.
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "gem-emb", "input": "hi", "task_type": "SUMMARIZE"}),
    )
    .await;
    let (message, v) = error_message(resp, 400).await;
    assert!(message.contains("task_type"), "{message}");
    assert_eq!(v["error"]["code"], "invalid_argument");

    // A dimensionality beyond the model's is Google's 400 too.
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "gem-emb", "input": "hi", "dimensions": 5000}),
    )
    .await;
    let (message, _) = error_message(resp, 400).await;
    assert!(message.contains("output_dimensionality"), "{message}");

    // A generative model has no embedContent.
    let resp = post_embeddings(&s.proxy, &body("gem-flash")).await;
    let (message, _) = error_message(resp, 404).await;
    assert!(message.contains("embedContent"), "{message}");

    // A 200 cut short is the upstream's fault, not the client's.
    s.gemini.fail_next(GeminiFault::Truncated);
    let resp = post_embeddings(&s.proxy, &body("gem-emb")).await;
    let (_, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_invalid_response");

    // Requests the adapter refuses never reach the fake.
    let before = s.gemini.requests().len();
    for (bad, param) in [
        (json!({"model": "gem-emb", "input": [101, 102]}), "input"),
        (
            json!({"model": "gem-emb", "input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (
            json!({"model": "gem-emb", "input": "x", "dimensions": -3}),
            "dimensions",
        ),
    ] {
        let resp = post_embeddings(&s.proxy, &bad).await;
        let (_, v) = error_message(resp, 400).await;
        assert_eq!(v["error"]["param"], param, "{bad}");
    }
    assert_eq!(s.gemini.requests().len(), before);
    assert_gemini_auth(&s.gemini);
}

// ------------------------------------------------------------------ Bedrock

#[tokio::test(flavor = "multi_thread")]
async fn titan_v2_is_one_signed_invoke_with_dimensions_and_token_usage() {
    let s = setup().await;
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "titan", "input": "hello bedrock world", "dimensions": 256, "encoding_format": "float"}),
    )
    .await;
    let v = json_ok(resp).await;
    let embeddings = data(&v, "titan");
    assert_eq!(
        floats(&embeddings[0]),
        bedrock::embed::vector_for("hello bedrock world", 256, true)
    );
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));

    let seen = s.bedrock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert_eq!(
        seen[0].body,
        json!({"inputText": "hello bedrock world", "dimensions": 256, "normalize": true})
    );
    assert_bedrock_signed(&s.bedrock);
}

#[tokio::test(flavor = "multi_thread")]
async fn titan_takes_one_text_per_request() {
    let s = setup().await;
    let resp = post_embeddings(&s.proxy, &json!({"model": "titan", "input": ["a", "b"]})).await;
    let (message, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["param"], "input");
    assert!(message.contains("one text per request"), "{message}");
    assert!(s.bedrock.requests().is_empty());

    // A one-element array is fine, and G1 takes `inputText` alone.
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "titan-g1", "input": ["only one"]}),
    )
    .await;
    let v = json_ok(resp).await;
    assert_eq!(
        floats(&data(&v, "titan-g1")[0]),
        bedrock::embed::vector_for("only one", 1536, false)
    );
    let seen = &s.bedrock.requests()[0];
    assert_eq!(seen.path, "/model/amazon.titan-embed-text-v1/invoke");
    assert_eq!(seen.body, json!({"inputText": "only one"}));
    assert_bedrock_signed(&s.bedrock);
}

#[tokio::test(flavor = "multi_thread")]
async fn cohere_on_bedrock_embeds_a_batch_in_order_without_invented_usage() {
    let s = setup().await;
    let inputs = ["gamma", "alpha", "beta delta"];
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "cohere-br", "input": inputs, "encoding_format": "float"}),
    )
    .await;
    let v = json_ok(resp).await;
    let embeddings = data(&v, "cohere-br");
    assert_eq!(embeddings.len(), 3);
    for (text, got) in inputs.iter().zip(&embeddings) {
        assert_eq!(
            floats(got),
            bedrock::embed::vector_for(text, 1024, false),
            "{text}"
        );
    }
    // The count is only in a response header the adapter does not see.
    assert!(v.get("usage").is_none(), "{v}");
    let seen = &s.bedrock.requests()[0];
    assert_eq!(seen.path, "/model/cohere.embed-english-v3/invoke");
    assert_eq!(
        seen.body,
        json!({"texts": inputs, "input_type": "search_document"})
    );

    // `input_type` is the client's when it sends one; an inference profile works.
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "cohere-br-us", "input": "what is bedrock?", "input_type": "search_query"}),
    )
    .await;
    json_ok(resp).await;
    let seen = &s.bedrock.requests()[1];
    assert_eq!(seen.path, "/model/us.cohere.embed-multilingual-v3/invoke");
    assert_eq!(
        seen.body,
        json!({"texts": ["what is bedrock?"], "input_type": "search_query"})
    );
    assert_bedrock_signed(&s.bedrock);
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_base64_is_little_endian_float32_of_the_same_vectors() {
    let s = setup().await;
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "titan", "input": "encode me", "dimensions": 512, "encoding_format": "base64"}),
    )
    .await;
    let v = json_ok(resp).await;
    let got = base64_f32(data(&v, "titan")[0].as_str().unwrap());
    assert_eq!(got, bedrock::embed::vector_for("encode me", 512, true));
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    let inputs = ["one", "two"];
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "cohere-br", "input": inputs, "encoding_format": "base64"}),
    )
    .await;
    let v = json_ok(resp).await;
    for (text, got) in inputs.iter().zip(data(&v, "cohere-br")) {
        assert_eq!(
            base64_f32(got.as_str().unwrap()),
            bedrock::embed::vector_for(text, 1024, false)
        );
    }
    assert_bedrock_signed(&s.bedrock);
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_errors_are_mapped() {
    let s = setup().await;
    let body = |model: &str| json!({"model": model, "input": "hi"});

    s.bedrock.push_fault(BedrockFault::Error {
        status: 429,
        error_type: "ThrottlingException".into(),
        message: "Too many requests, please wait before trying again.".into(),
    });
    let resp = post_embeddings(&s.proxy, &body("titan")).await;
    let (message, v) = error_message(resp, 429).await;
    assert_eq!(
        message,
        "bedrock: Too many requests, please wait before trying again."
    );
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // Titan refuses a size it does not offer: Bedrock's ValidationException, a 400.
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "titan", "input": "hi", "dimensions": 300}),
    )
    .await;
    let (message, _) = error_message(resp, 400).await;
    assert!(
        message.starts_with("bedrock: Malformed input request: #/dimensions"),
        "{message}"
    );

    // Cohere's `input_type` must be one of its values.
    let resp = post_embeddings(
        &s.proxy,
        &json!({"model": "cohere-br", "input": "hi", "input_type": "query"}),
    )
    .await;
    let (message, _) = error_message(resp, 400).await;
    assert!(message.contains("#/input_type"), "{message}");

    // A wrong secret is the proxy's credential failing: 502, not 403.
    let resp = post_embeddings(&s.proxy, &body("titan-badsecret")).await;
    let (_, v) = error_message(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    let rejected = s.bedrock.requests().last().cloned().unwrap();
    assert!(!rejected.signature_valid);

    // What the adapter refuses never reaches the fake.
    let before = s.bedrock.requests().len();
    for (bad, param) in [
        (json!({"model": "titan-image", "input": "hi"}), "model"),
        (
            json!({"model": "cohere-br", "input": "hi", "dimensions": 256}),
            "dimensions",
        ),
        (
            json!({"model": "titan-g1", "input": "hi", "dimensions": 256}),
            "dimensions",
        ),
        (json!({"model": "cohere-br", "input": [[1, 2]]}), "input"),
    ] {
        let resp = post_embeddings(&s.proxy, &bad).await;
        let (_, v) = error_message(resp, 400).await;
        assert_eq!(v["error"]["param"], param, "{bad}");
    }
    assert_eq!(s.bedrock.requests().len(), before);
}
