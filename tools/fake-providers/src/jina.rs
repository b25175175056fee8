//! A fake of Jina AI's embeddings (`POST /v1/embeddings`) and reranker
//! (`POST /v1/rerank`), written from Jina's API reference (api.jina.ai,
//! "Search Foundation API").
//!
//! It checks the `Authorization: Bearer` key, required fields, the model
//! family per endpoint, `task` (only task-aware models take it),
//! `dimensions` (up to the model's size) and `embedding_type`. Errors are
//! Jina's FastAPI shapes: `{"detail": "..."}` for 400/401, and for a 422 a
//! list of `{loc, msg, type}`. Fields the reference does not list are
//! refused (a 422 naming the field), so a translation that leaks an OpenAI
//! field fails a test.
//!
//! Answers are deterministic ([`crate::vectors`]). `return_documents`
//! defaults to `true` as in the reference. Usage reports `total_tokens` and
//! `prompt_tokens`, one token per word.

use crate::common::{bind_local, json_response};
use crate::vectors::{embedding_data, rank, rerank_tokens, tokens, Api, Refused};
use axum::response::Response;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// Jina's error body for 4xx other than validation: `{"detail": "..."}`.
pub use crate::vectors::detail_body as error_body;
pub use crate::vectors::RecordedRequest;

/// A running fake (`base_url` is `http://127.0.0.1:PORT/v1`, the shape of
/// `https://api.jina.ai/v1`). Dropping it stops the server.
pub type FakeJina = crate::vectors::VectorFake;

/// Embedding models, their size, and whether they take `task`.
const EMBED_MODELS: &[(&str, usize, bool)] = &[
    ("jina-embeddings-v4", 2048, true),
    ("jina-embeddings-v3", 1024, true),
    ("jina-clip-v2", 1024, false),
    ("jina-embeddings-v2-base-en", 768, false),
    ("jina-embeddings-v2-base-code", 768, false),
];

const RERANK_MODELS: &[&str] = &[
    "jina-reranker-v3",
    "jina-reranker-m0",
    "jina-reranker-v2-base-multilingual",
    "jina-colbert-v2",
    "jina-reranker-v1-base-en",
];

const TASKS: &[&str] = &[
    "retrieval.query",
    "retrieval.passage",
    "text-matching",
    "classification",
    "separation",
    "code.query",
    "code.passage",
];

const EMBED_FIELDS: &[&str] = &[
    "model",
    "input",
    "task",
    "dimensions",
    "embedding_type",
    "normalized",
    "late_chunking",
    "truncate",
];
const RERANK_FIELDS: &[&str] = &["model", "query", "documents", "top_n", "return_documents"];

/// A FastAPI validation error (422) for one field.
fn unprocessable(field: &str, msg: &str) -> Response {
    let body = json!({"detail": [{"loc": ["body", field], "msg": msg, "type": "value_error"}]});
    json_response(422, body.to_string())
}

const API: Api = Api {
    refuse,
    embed_fields: EMBED_FIELDS,
    rerank_fields: RERANK_FIELDS,
    embed: |obj| embed_answer(obj).map_err(Refusal::into_response),
    rerank: |obj| rerank_answer(obj).map_err(Refusal::into_response),
};

/// Binds `127.0.0.1:0`; requests must carry `Authorization: Bearer <api_key>`.
pub async fn start(api_key: &str) -> std::io::Result<FakeJina> {
    start_on(bind_local().await?, api_key).await
}

/// Serves on a listener the caller bound (the `fake-providers` binary). Also
/// answers `GET /__requests` with what it recorded.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeJina> {
    crate::vectors::serve(listener, api_key, API)
}

/// A refusal: a plain 400 `detail`, or a 422 naming a field.
enum Refusal {
    Bad(String),
    Field(&'static str, String),
}

impl Refusal {
    fn into_response(self) -> Box<Response> {
        Box::new(match self {
            Refusal::Bad(detail) => json_response(400, error_body(&detail)),
            Refusal::Field(field, msg) => unprocessable(field, &msg),
        })
    }
}

fn refuse(why: Refused<'_>) -> Response {
    match why {
        Refused::NoKey => json_response(401, error_body("Authentication required")),
        Refused::WrongKey => json_response(401, error_body("Invalid API key")),
        Refused::NotJson => json_response(400, error_body("Content-Type must be application/json")),
        Refused::NotObject => unprocessable("body", "Input should be a valid dictionary"),
        Refused::Unknown(k) => json_response(
            422,
            json!({"detail": [{"loc": ["body", k], "msg": "Extra inputs are not permitted",
                               "type": "extra_forbidden"}]})
            .to_string(),
        ),
    }
}

/// `input` / `documents`: strings or `{"text"}` objects, at least one.
fn texts(v: Option<&Value>, field: &'static str) -> Result<Vec<String>, Refusal> {
    let items = match v {
        Some(Value::String(s)) => return Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            return Err(Refusal::Field(
                field,
                "List should have at least 1 item".into(),
            ))
        }
        None | Some(Value::Null) => return Err(Refusal::Field(field, "Field required".into())),
        Some(_) => return Err(Refusal::Field(field, "Input should be a valid list".into())),
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.clone()),
            other => other
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    Refusal::Field(
                        field,
                        "Input should be a string or an object with `text`".into(),
                    )
                }),
        })
        .collect()
}

fn model(obj: &Map<String, Value>) -> Result<&str, Refusal> {
    obj.get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::Field("model", "Field required".into()))
}

fn embed_answer(obj: &Map<String, Value>) -> Result<Value, Refusal> {
    let model = model(obj)?;
    let Some(&(_, size, task_aware)) = EMBED_MODELS.iter().find(|(m, _, _)| *m == model) else {
        return Err(Refusal::Bad(format!("Model '{model}' not found")));
    };
    let inputs = texts(obj.get("input"), "input")?;
    match obj.get("task") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if TASKS.contains(&t.as_str()) && task_aware => {}
        Some(Value::String(t)) if TASKS.contains(&t.as_str()) => {
            return Err(Refusal::Bad(format!(
                "Model '{model}' does not support task '{t}'"
            )))
        }
        Some(_) => {
            return Err(Refusal::Field(
                "task",
                format!("Input should be {}", TASKS.join(", ")),
            ))
        }
    }
    let dims = match obj.get("dimensions") {
        None | Some(Value::Null) => size,
        Some(d) => match d.as_u64() {
            Some(n) if n >= 1 && n as usize <= size => n as usize,
            _ => {
                return Err(Refusal::Field(
                    "dimensions",
                    format!("Input should be an integer from 1 to {size}"),
                ))
            }
        },
    };
    let base64 = match obj.get("embedding_type") {
        None | Some(Value::Null) => false,
        Some(Value::String(t)) if t == "float" => false,
        Some(Value::String(t)) if t == "base64" => true,
        Some(Value::String(t)) if t == "binary" || t == "ubinary" => {
            // Binary outputs exist but no test needs them; refuse rather than fake them.
            return Err(Refusal::Bad(format!(
                "embedding_type '{t}' is not served by this fake"
            )));
        }
        Some(_) => {
            return Err(Refusal::Field(
                "embedding_type",
                "Input should be 'float', 'base64', 'binary' or 'ubinary'".into(),
            ))
        }
    };
    for flag in ["normalized", "late_chunking", "truncate"] {
        if obj.get(flag).is_some_and(|f| !f.is_boolean()) {
            return Err(Refusal::Field(
                flag,
                "Input should be a valid boolean".into(),
            ));
        }
    }
    let total: u64 = inputs.iter().map(|t| tokens(t)).sum();
    Ok(json!({
        "model": model,
        "object": "list",
        "usage": {"total_tokens": total, "prompt_tokens": total},
        "data": embedding_data(&inputs, dims, base64),
    }))
}

fn rerank_answer(obj: &Map<String, Value>) -> Result<Value, Refusal> {
    let model = model(obj)?;
    if !RERANK_MODELS.contains(&model) {
        return Err(Refusal::Bad(format!("Model '{model}' not found")));
    }
    let query = match obj.get("query") {
        Some(Value::String(q)) if !q.is_empty() => q.clone(),
        _ => {
            return Err(Refusal::Field(
                "query",
                "Input should be a non-empty string".into(),
            ))
        }
    };
    let documents = texts(obj.get("documents"), "documents")?;
    let top_n = match obj.get("top_n") {
        None | Some(Value::Null) => documents.len(),
        Some(n) => match n.as_u64() {
            Some(n) if n >= 1 => n as usize,
            _ => {
                return Err(Refusal::Field(
                    "top_n",
                    "Input should be greater than or equal to 1".into(),
                ))
            }
        },
    };
    let with_documents = match obj.get("return_documents") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Refusal::Field(
                "return_documents",
                "Input should be a valid boolean".into(),
            ))
        }
    };
    let results: Vec<Value> = rank(&query, &documents)
        .into_iter()
        .take(top_n)
        .map(|(index, score)| {
            let mut item = json!({"index": index, "relevance_score": score});
            if let (true, Some(o)) = (with_documents, item.as_object_mut()) {
                o.insert("document".into(), json!({"text": documents[index]}));
            }
            item
        })
        .collect();
    Ok(json!({
        "model": model,
        "usage": {"total_tokens": rerank_tokens(&query, &documents)},
        "results": results,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::vectors::embedding;

    fn embed(body: Value) -> Result<Value, Refusal> {
        embed_answer(body.as_object().unwrap())
    }

    #[test]
    fn embeddings_honour_dimensions_and_count_words() {
        let v = embed(
            json!({"model": "jina-embeddings-v3", "input": ["a b c", "d"],
                             "dimensions": 32, "task": "retrieval.query"}),
        )
        .ok()
        .unwrap();
        assert_eq!(v["data"][0]["embedding"], json!(embedding("a b c", 32)));
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["usage"]["total_tokens"], 4);
    }

    #[test]
    fn documented_constraints_are_enforced() {
        for body in [
            json!({"model": "jina-embeddings-v2-base-en", "input": ["x"], "task": "retrieval.query"}),
            json!({"model": "jina-embeddings-v3", "input": ["x"], "dimensions": 4096}),
            json!({"model": "jina-embeddings-v3", "input": []}),
            json!({"model": "jina-reranker-v3", "input": ["x"]}),
            json!({"model": "jina-embeddings-v3", "input": ["x"], "embedding_type": "hex"}),
        ] {
            assert!(embed(body.clone()).is_err(), "{body}");
        }
    }

    #[test]
    fn rerank_returns_documents_by_default() {
        let obj = json!({"model": "jina-reranker-v2-base-multilingual", "query": "red apple",
                         "documents": ["green pear", {"text": "red apple pie"}]});
        let v = rerank_answer(obj.as_object().unwrap()).ok().unwrap();
        assert_eq!(v["results"][0]["index"], 1);
        assert_eq!(v["results"][0]["document"]["text"], "red apple pie");
        assert_eq!(v["usage"]["total_tokens"], 2 + 2 + 2 + 3);
    }
}
