//! Voyage AI's embeddings (`POST /v1/embeddings`) and reranker
//! (`POST /v1/rerank`) behind OpenAI embeddings and Cohere-style rerank.
//!
//! - **Embeddings.** `dimensions` becomes `output_dimension`; `input_type`
//!   (`query`/`document`, or Cohere's `search_query`/`search_document`) and
//!   `truncation` pass through. Voyage is always asked for floats (its
//!   default); base64 is encoded by the proxy. Results carry `index` and are
//!   put back in input order. Usage is `usage.total_tokens`.
//! - **Rerank.** `top_n` becomes `top_k`; `return_documents` passes through and
//!   Voyage's document string becomes `{"text"}`. Results keep Voyage's order
//!   (most relevant first).
//! - **Errors** are FastAPI's `{"detail"}`.

use super::common::bad_upstream;
use super::embed_rerank::{self as er, one_of, pass, EmbedRerankProvider, Ranked};
use super::embeddings;
use super::ChatContext;
use liter_llm_protocol::ApiError;
use serde_json::{Map, Value};

const PROVIDER: &str = "voyage";

const INPUT_TYPES: &[&str] = &["query", "document", "search_query", "search_document"];

/// Voyage's adapter: the [`super::ChatAdapter`] of an [`EmbedRerankProvider`].
pub struct VoyageAdapter;

impl EmbedRerankProvider for VoyageAdapter {
    const PROVIDER: &'static str = PROVIDER;

    fn embed_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
        let req = embeddings::parse_request(body, PROVIDER)?;
        let mut out = Map::new();
        out.insert("input".into(), Value::from(req.inputs));
        out.insert("model".into(), Value::from(ctx.upstream_model));
        if let Some(t) = one_of(&req.fields, "input_type", INPUT_TYPES)? {
            let t = t.strip_prefix("search_").unwrap_or(t);
            out.insert("input_type".into(), Value::from(t));
        }
        pass(
            &req.fields,
            "truncation",
            &mut out,
            Value::is_boolean,
            "a boolean",
        )?;
        if let Some(d) = req.dimensions {
            out.insert("output_dimension".into(), Value::from(d));
        }
        Ok(Value::Object(out))
    }

    fn tokens(answer: &Map<String, Value>) -> Option<u64> {
        er::count(answer.get("usage").and_then(|u| u.get("total_tokens")))
    }

    fn rerank_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
        let call = er::rerank_call(body)?;
        let mut out = Map::new();
        out.insert("query".into(), Value::from(call.query));
        out.insert("documents".into(), Value::Array(call.documents));
        out.insert("model".into(), Value::from(ctx.upstream_model));
        if let Some(n) = call.top_n {
            out.insert("top_k".into(), Value::from(n));
        }
        out.insert(
            "return_documents".into(),
            Value::from(call.return_documents),
        );
        pass(
            &call.fields,
            "truncation",
            &mut out,
            Value::is_boolean,
            "a boolean",
        )?;
        Ok(Value::Object(out))
    }

    fn ranked(answer: &Map<String, Value>) -> Result<Vec<Ranked>, ApiError> {
        answer
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| bad_upstream("voyage: the rerank answer has no `data`"))?
            .iter()
            .map(|item| {
                let document = item
                    .get("document")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ranked::read(item, document, PROVIDER)
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::adapters::common::testing::{receive, receive_json, send};
    use crate::adapters::ChatAdapter;
    use liter_llm_protocol::Endpoint;
    use serde_json::json;

    fn ctx() -> ChatContext<'static> {
        ChatContext {
            upstream_model: "voyage-3.5",
            requested_model: "embedder",
            stream: false,
            include_usage: false,
        }
    }

    fn request(endpoint: Endpoint, body: Value) -> Result<(String, Value), ApiError> {
        let body = body.to_string();
        let up = send(
            &VoyageAdapter,
            &ctx(),
            "https://api.voyageai.com/v1",
            endpoint,
            body.as_bytes(),
            Some("application/json"),
        )?;
        assert_eq!(up.method, http::Method::POST);
        assert!(up.content_type.is_none() && up.headers.is_empty());
        Ok((up.path, serde_json::from_slice(&up.body).unwrap()))
    }

    fn response_to(endpoint: Endpoint, client: Value, answer: Value) -> Value {
        receive_json(&VoyageAdapter, &ctx(), endpoint, &client, &answer).unwrap()
    }

    fn response(endpoint: Endpoint, answer: Value) -> Value {
        response_to(endpoint, json!({}), answer)
    }

    #[test]
    fn offers_embeddings_and_rerank_only() {
        assert!(VoyageAdapter.offers(Endpoint::Embeddings));
        assert!(VoyageAdapter.offers(Endpoint::Rerank));
        assert!(!VoyageAdapter.offers(Endpoint::ChatCompletions));
        assert!(!VoyageAdapter.offers(Endpoint::AudioSpeech));
    }

    #[test]
    fn embeddings_rename_dimensions_and_alias_cohere_input_types() {
        let (path, body) = request(
            Endpoint::Embeddings,
            json!({"model": "embedder", "input": ["a", "b"], "dimensions": 256,
                   "input_type": "search_query", "truncation": false, "user": "u"}),
        )
        .unwrap();
        assert_eq!(path, "/embeddings");
        assert_eq!(
            body,
            json!({"input": ["a", "b"], "model": "voyage-3.5", "input_type": "query",
                   "truncation": false, "output_dimension": 256})
        );
    }

    #[test]
    fn voyage_is_asked_for_floats_and_the_proxy_encodes_base64() {
        let client = json!({"model": "e", "input": ["a", "b"], "encoding_format": "base64"});
        let (_, body) = request(Endpoint::Embeddings, client.clone()).unwrap();
        assert_eq!(body, json!({"input": ["a", "b"], "model": "voyage-3.5"}));
        let v = response_to(
            Endpoint::Embeddings,
            client,
            json!({"object": "list", "model": "voyage-3.5", "usage": {"total_tokens": 2},
                   "data": [{"object": "embedding", "embedding": [1.0, -2.0], "index": 1},
                            {"object": "embedding", "embedding": [0.5], "index": 0}]}),
        );
        // 0.5f32 = 00 00 00 3f; 1.0f32 = 00 00 80 3f; -2.0f32 = 00 00 00 c0.
        assert_eq!(v["data"][0]["embedding"], "AAAAPw==");
        assert_eq!(v["data"][1]["embedding"], "AACAPwAAAMA=");
    }

    #[test]
    fn unknown_input_types_are_400s() {
        let e = request(
            Endpoint::Embeddings,
            json!({"model": "e", "input": "a", "input_type": "passage"}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input_type"));
    }

    #[test]
    fn an_answer_with_fewer_embeddings_than_inputs_is_a_502() {
        let e = receive(
            &VoyageAdapter,
            &ctx(),
            Endpoint::Embeddings,
            br#"{"input":["a","b"]}"#,
            None,
            br#"{"data":[{"index":0,"embedding":[1.0]}],"usage":{"total_tokens":1}}"#,
        )
        .unwrap_err();
        assert_eq!(e.status(), 502);
    }

    #[test]
    fn embeddings_answer_is_reordered_by_index_with_usage() {
        let v = response(
            Endpoint::Embeddings,
            json!({"object": "list", "model": "voyage-3.5", "usage": {"total_tokens": 9},
            "data": [
                {"object": "embedding", "embedding": [0.25], "index": 1},
                {"object": "embedding", "embedding": [0.5], "index": 0},
            ]}),
        );
        assert_eq!(v["model"], "embedder");
        assert_eq!(
            v["data"][0],
            json!({"object": "embedding", "index": 0, "embedding": [0.5]})
        );
        assert_eq!(v["data"][1]["embedding"], json!([0.25]));
        assert_eq!(v["usage"], json!({"prompt_tokens": 9, "total_tokens": 9}));
    }

    #[test]
    fn rerank_maps_top_n_to_top_k_and_documents_to_text_objects() {
        let (path, body) = request(
            Endpoint::Rerank,
            json!({"model": "r", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 1}),
        )
        .unwrap();
        assert_eq!(path, "/rerank");
        assert_eq!(
            body,
            json!({"query": "q", "documents": ["a", "b"], "model": "voyage-3.5",
                   "top_k": 1, "return_documents": false})
        );
        let v = response(
            Endpoint::Rerank,
            json!({"object": "list", "model": "rerank-2", "usage": {"total_tokens": 30},
                   "data": [{"relevance_score": 0.8, "index": 1, "document": "b"}]}),
        );
        assert_eq!(
            v["results"],
            json!([{"index": 1, "relevance_score": 0.8, "document": {"text": "b"}}])
        );
        assert_eq!(v["usage"]["total_tokens"], 30);
        assert!(v["id"].as_str().unwrap().starts_with("rerank-voyage-"));
    }

    #[test]
    fn other_endpoints_are_not_offered() {
        let e = request(Endpoint::Moderations, json!({"input": "x"})).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("endpoint_not_supported"));
    }

    #[test]
    fn errors_map_status_and_detail() {
        let e = VoyageAdapter.error(429, br#"{"detail":"You have exceeded your rate limit."}"#);
        assert_eq!(e.status(), 429);
        assert!(e.message.contains("rate limit"));
        let e = VoyageAdapter.error(401, br#"{"detail":"Provided API key is invalid."}"#);
        assert_eq!(e.status(), 502);
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
    }

    #[test]
    fn a_garbled_answer_is_a_502() {
        let e = VoyageAdapter
            .endpoint_response(Endpoint::Embeddings, b"{\"data\":7}", &ctx())
            .unwrap_err();
        assert_eq!(e.status(), 502);
    }
}
