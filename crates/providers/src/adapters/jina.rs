//! Jina AI's embeddings (`POST /v1/embeddings`) and reranker
//! (`POST /v1/rerank`) behind OpenAI embeddings and Cohere-style rerank.
//!
//! - **Embeddings.** Jina's request is OpenAI's plus its own fields: `task`
//!   (or `input_type` `query`/`document`, read as `retrieval.query` /
//!   `retrieval.passage`), `late_chunking`, `normalized` and `truncate` pass
//!   through; `dimensions` keeps its name. Jina is always asked for
//!   `embedding_type: "float"`; base64 is encoded by the proxy. Results carry
//!   `index` and are put back in input order; usage is `usage.total_tokens`.
//! - **Rerank.** Jina returns documents unless told not to, so
//!   `return_documents` is always sent, defaulting to the Cohere-style `false`.
//! - **Errors** are FastAPI's `{"detail"}`.

use super::common::bad_upstream;
use super::embed_rerank::{self as er, one_of, pass, EmbedRerankProvider, Ranked};
use super::embeddings;
use super::ChatContext;
use liter_llm_protocol::ApiError;
use serde_json::{Map, Value};

const PROVIDER: &str = "jina_ai";

const TASKS: &[&str] = &[
    "retrieval.query",
    "retrieval.passage",
    "text-matching",
    "classification",
    "separation",
    "code.query",
    "code.passage",
];
const INPUT_TYPES: &[&str] = &["query", "document", "search_query", "search_document"];

/// Jina's adapter: the [`super::ChatAdapter`] of an [`EmbedRerankProvider`].
pub struct JinaAdapter;

impl EmbedRerankProvider for JinaAdapter {
    const PROVIDER: &'static str = PROVIDER;

    fn tokens(answer: &Map<String, Value>) -> Option<u64> {
        let usage = answer.get("usage")?;
        er::count(usage.get("total_tokens")).or_else(|| er::count(usage.get("prompt_tokens")))
    }

    fn embed_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
        let req = embeddings::parse_request(body, "jina")?;
        let mut out = Map::new();
        out.insert("model".into(), Value::from(ctx.upstream_model));
        out.insert("input".into(), Value::from(req.inputs));
        let task = one_of(&req.fields, "task", TASKS)?;
        let input_type = one_of(&req.fields, "input_type", INPUT_TYPES)?;
        let task = task.or(match input_type {
            Some("query" | "search_query") => Some("retrieval.query"),
            Some(_) => Some("retrieval.passage"),
            None => None,
        });
        if let Some(t) = task {
            out.insert("task".into(), Value::from(t));
        }
        if let Some(d) = req.dimensions {
            out.insert("dimensions".into(), Value::from(d));
        }
        for key in ["late_chunking", "normalized", "truncate"] {
            pass(&req.fields, key, &mut out, Value::is_boolean, "a boolean")?;
        }
        out.insert("embedding_type".into(), Value::from("float"));
        Ok(Value::Object(out))
    }

    fn rerank_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
        let call = er::rerank_call(body)?;
        let mut out = Map::new();
        out.insert("model".into(), Value::from(ctx.upstream_model));
        out.insert("query".into(), Value::from(call.query));
        out.insert("documents".into(), Value::Array(call.documents));
        if let Some(n) = call.top_n {
            out.insert("top_n".into(), Value::from(n));
        }
        out.insert(
            "return_documents".into(),
            Value::from(call.return_documents),
        );
        Ok(Value::Object(out))
    }

    fn ranked(answer: &Map<String, Value>) -> Result<Vec<Ranked>, ApiError> {
        answer
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| bad_upstream("jina_ai: the rerank answer has no `results`"))?
            .iter()
            .map(|item| {
                let document = item.get("document").and_then(|d| match d {
                    Value::String(s) => Some(s.clone()),
                    other => other
                        .get("text")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
                Ranked::read(item, document, PROVIDER)
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::adapters::common::testing::{receive_json, send_json};
    use crate::adapters::ChatAdapter;
    use liter_llm_protocol::Endpoint;
    use serde_json::json;

    fn ctx() -> ChatContext<'static> {
        ChatContext {
            upstream_model: "jina-embeddings-v3",
            requested_model: "jina",
            stream: false,
            include_usage: false,
        }
    }

    fn request(endpoint: Endpoint, body: Value) -> Result<(String, Value), ApiError> {
        send_json(
            &JinaAdapter,
            &ctx(),
            "https://api.jina.ai/v1",
            endpoint,
            &body,
        )
    }

    fn response_to(endpoint: Endpoint, client: Value, answer: Value) -> Value {
        receive_json(&JinaAdapter, &ctx(), endpoint, &client, &answer).unwrap()
    }

    fn response(endpoint: Endpoint, answer: Value) -> Value {
        response_to(endpoint, json!({}), answer)
    }

    #[test]
    fn offers_embeddings_and_rerank_only() {
        assert!(JinaAdapter.offers(Endpoint::Embeddings));
        assert!(JinaAdapter.offers(Endpoint::Rerank));
        assert!(!JinaAdapter.offers(Endpoint::ChatCompletions));
    }

    #[test]
    fn embeddings_keep_dimensions_and_read_input_type_as_a_task() {
        let (path, body) = request(
            Endpoint::Embeddings,
            json!({"model": "jina", "input": "a", "dimensions": 64, "input_type": "document",
                   "late_chunking": true, "encoding_format": "float"}),
        )
        .unwrap();
        assert_eq!(path, "/embeddings");
        assert_eq!(
            body,
            json!({"model": "jina-embeddings-v3", "input": ["a"], "task": "retrieval.passage",
                   "dimensions": 64, "late_chunking": true, "embedding_type": "float"})
        );
        let (_, body) = request(
            Endpoint::Embeddings,
            json!({"input": ["a"], "task": "text-matching", "input_type": "query",
                   "encoding_format": "base64"}),
        )
        .unwrap();
        assert_eq!(body["task"], "text-matching");
        assert_eq!(body["embedding_type"], "float");
    }

    #[test]
    fn unknown_tasks_and_token_inputs_are_400s() {
        let e = request(Endpoint::Embeddings, json!({"input": "a", "task": "x"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("task"));
        let e = request(Endpoint::Embeddings, json!({"input": [[1, 2]]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        assert!(e.message.starts_with("jina "), "{}", e.message);
    }

    #[test]
    fn embeddings_answer_is_reordered_with_usage_and_encoded_as_asked() {
        let answer = json!({"model": "jina-embeddings-v3", "object": "list",
                            "usage": {"total_tokens": 4, "prompt_tokens": 4},
                            "data": [{"object": "embedding", "index": 1, "embedding": [0.0]},
                                     {"object": "embedding", "index": 0, "embedding": [1.0]}]});
        let v = response(Endpoint::Embeddings, answer.clone());
        assert_eq!(v["data"][0]["embedding"], json!([1.0]));
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        let v = response_to(
            Endpoint::Embeddings,
            json!({"input": ["x", "y"], "encoding_format": "base64"}),
            answer,
        );
        assert_eq!(v["data"][0]["embedding"], "AACAPw==");
        assert_eq!(v["data"][1]["embedding"], "AAAAAA==");
    }

    #[test]
    fn rerank_always_says_whether_to_return_documents() {
        let (path, body) = request(
            Endpoint::Rerank,
            json!({"model": "r", "query": "q", "documents": [{"text": "a"}, "b"]}),
        )
        .unwrap();
        assert_eq!(path, "/rerank");
        assert_eq!(
            body,
            json!({"model": "jina-embeddings-v3", "query": "q", "documents": ["a", "b"],
                   "return_documents": false})
        );
        let v = response(
            Endpoint::Rerank,
            json!({"model": "jina-reranker-v2-base-multilingual",
                   "usage": {"total_tokens": 15},
                   "results": [{"index": 1, "document": {"text": "b"}, "relevance_score": 0.9},
                               {"index": 0, "relevance_score": 0.2}]}),
        );
        assert_eq!(
            v["results"],
            json!([{"index": 1, "relevance_score": 0.9, "document": {"text": "b"}},
                   {"index": 0, "relevance_score": 0.2}])
        );
        assert_eq!(v["usage"]["prompt_tokens"], 15);
    }

    #[test]
    fn errors_map_detail() {
        let e = JinaAdapter.error(400, br#"{"detail":"Model 'x' not found"}"#);
        assert_eq!(e.status(), 400);
        assert_eq!(e.message, "jina_ai: Model 'x' not found");
    }
}
