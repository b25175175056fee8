//! A fake of Voyage AI's text embeddings (`POST /v1/embeddings`) and reranker
//! (`POST /v1/rerank`), written from the API reference
//! (docs.voyageai.com/reference).
//!
//! It checks the `Authorization: Bearer` key, the body's required fields,
//! enums and ranges (`input_type`, `output_dimension`, `output_dtype`,
//! `top_k`), the model family per endpoint, and answers errors as Voyage's
//! FastAPI service does: `{"detail": "..."}`. It is stricter than the real API
//! in one way: fields the reference does not list are refused, so a
//! translation that leaks an OpenAI field (`dimensions`, `top_n`,
//! `encoding_format: "float"`) fails a test instead of passing silently.
//!
//! Answers are deterministic ([`crate::vectors`]): `data[]` follows the input
//! order, each item carrying its `index`. Usage is
//! `usage.total_tokens`, one token per word (for rerank, the query once per
//! document plus the documents).

use crate::common::{bind_local, json_response};
use crate::vectors::{embedding_data, rank, rerank_tokens, tokens, Api, Refused};
use axum::response::Response;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// Voyage's error body: `{"detail": "..."}`.
pub use crate::vectors::detail_body as error_body;
pub use crate::vectors::RecordedRequest;

/// A running fake (`base_url` is `http://127.0.0.1:PORT/v1`, the shape of
/// `https://api.voyageai.com/v1`). Dropping it stops the server.
pub type FakeVoyage = crate::vectors::VectorFake;

/// Embedding models and their default dimension; `true` when the model takes
/// `output_dimension` (256, 512, 1024, 2048).
const EMBED_MODELS: &[(&str, usize, bool)] = &[
    ("voyage-4-large", 1024, true),
    ("voyage-4", 1024, true),
    ("voyage-4-lite", 1024, true),
    ("voyage-3-large", 1024, true),
    ("voyage-3.5", 1024, true),
    ("voyage-3.5-lite", 1024, true),
    ("voyage-code-3", 1024, true),
    ("voyage-finance-2", 1024, false),
    ("voyage-law-2", 1024, false),
    ("voyage-code-2", 1536, false),
    ("voyage-multilingual-2", 1024, false),
    ("voyage-3", 1024, false),
    ("voyage-3-lite", 512, false),
    ("voyage-2", 1024, false),
];

const RERANK_MODELS: &[&str] = &[
    "rerank-2.5",
    "rerank-2.5-lite",
    "rerank-2",
    "rerank-2-lite",
    "rerank-1",
    "rerank-lite-1",
];

const EMBED_FIELDS: &[&str] = &[
    "input",
    "model",
    "input_type",
    "truncation",
    "output_dimension",
    "output_dtype",
    "encoding_format",
];
const RERANK_FIELDS: &[&str] = &[
    "query",
    "documents",
    "model",
    "top_k",
    "return_documents",
    "truncation",
];

/// The most texts or documents one request may carry.
const MAX_ITEMS: usize = 1000;

const API: Api = Api {
    refuse,
    embed_fields: EMBED_FIELDS,
    rerank_fields: RERANK_FIELDS,
    embed: |obj| embed_answer(obj).map_err(|detail| Box::new(invalid(detail))),
    rerank: |obj| rerank_answer(obj).map_err(|detail| Box::new(invalid(detail))),
};

/// Binds `127.0.0.1:0`; requests must carry `Authorization: Bearer <api_key>`.
pub async fn start(api_key: &str) -> std::io::Result<FakeVoyage> {
    start_on(bind_local().await?, api_key).await
}

/// Serves on a listener the caller bound (the `fake-providers` binary). Also
/// answers `GET /__requests` with what it recorded.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeVoyage> {
    crate::vectors::serve(listener, api_key, API)
}

fn invalid(detail: impl AsRef<str>) -> Response {
    json_response(400, error_body(detail.as_ref()))
}

fn refuse(why: Refused<'_>) -> Response {
    match why {
        Refused::NoKey | Refused::WrongKey => {
            json_response(401, error_body("Provided API key is invalid."))
        }
        Refused::NotJson => invalid("Content-Type must be application/json"),
        Refused::NotObject => invalid("Request body must be a JSON object"),
        Refused::Unknown(k) => invalid(format!("Unexpected field `{k}`")),
    }
}

/// `input` or `documents`: a string (only where allowed) or 1..=1000 strings.
fn texts(v: Option<&Value>, name: &str, single_ok: bool) -> Result<Vec<String>, String> {
    let list: Vec<String> = match v {
        Some(Value::String(s)) if single_ok => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None | Some(Value::Null) => return Err(format!("`{name}` is required")),
        Some(_) => return Err(format!("`{name}` must be a list of strings")),
    };
    if list.is_empty() || list.len() > MAX_ITEMS {
        return Err(format!(
            "The length of `{name}` must be between 1 and {MAX_ITEMS}"
        ));
    }
    Ok(list)
}

fn model(obj: &Map<String, Value>) -> Result<&str, String> {
    obj.get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| "`model` is required".to_string())
}

fn embed_answer(obj: &Map<String, Value>) -> Result<Value, String> {
    let inputs = texts(obj.get("input"), "input", true)?;
    let model = model(obj)?;
    let Some(&(_, default_dims, flexible)) = EMBED_MODELS.iter().find(|(m, _, _)| *m == model)
    else {
        let names: Vec<&str> = EMBED_MODELS.iter().map(|(m, _, _)| *m).collect();
        return Err(format!(
            "Model {model} is not supported. Supported models are {}.",
            names.join(", ")
        ));
    };
    match obj.get("input_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "query" || t == "document" => {}
        Some(_) => return Err("`input_type` must be one of None, 'query', 'document'".into()),
    }
    if obj.get("truncation").is_some_and(|t| !t.is_boolean()) {
        return Err("`truncation` must be a boolean".into());
    }
    let dims = match obj.get("output_dimension") {
        None | Some(Value::Null) => default_dims,
        Some(d) => match d.as_u64() {
            Some(n @ (256 | 512 | 1024 | 2048)) if flexible => n as usize,
            Some(_) if flexible => {
                return Err("`output_dimension` must be one of 256, 512, 1024, 2048".into())
            }
            _ => return Err(format!("Model {model} does not support `output_dimension`")),
        },
    };
    let dtype = match obj.get("output_dtype") {
        None | Some(Value::Null) => "float",
        Some(Value::String(d))
            if ["float", "int8", "uint8", "binary", "ubinary"].contains(&d.as_str()) =>
        {
            d.as_str()
        }
        Some(_) => {
            return Err(
                "`output_dtype` must be one of 'float', 'int8', 'uint8', 'binary', 'ubinary'"
                    .into(),
            )
        }
    };
    if dtype != "float" {
        // Quantized outputs exist but no test needs them; refuse rather than fake them.
        return Err(format!("`output_dtype` {dtype} is not served by this fake"));
    }
    let base64 = match obj.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => return Err("`encoding_format` must be None or 'base64'".into()),
    };
    let total: u64 = inputs.iter().map(|t| tokens(t)).sum();
    Ok(json!({
        "object": "list",
        "data": embedding_data(&inputs, dims, base64),
        "model": model,
        "usage": {"total_tokens": total},
    }))
}

fn rerank_answer(obj: &Map<String, Value>) -> Result<Value, String> {
    let query = match obj.get("query") {
        Some(Value::String(q)) if !q.is_empty() => q.clone(),
        _ => return Err("`query` must be a non-empty string".into()),
    };
    let documents = texts(obj.get("documents"), "documents", false)?;
    let model = model(obj)?;
    if !RERANK_MODELS.contains(&model) {
        return Err(format!(
            "Model {model} is not supported. Supported models are {}.",
            RERANK_MODELS.join(", ")
        ));
    }
    let top_k = match obj.get("top_k") {
        None | Some(Value::Null) => documents.len(),
        Some(k) => match k.as_u64() {
            Some(k) if k >= 1 => k as usize,
            _ => return Err("`top_k` must be a positive integer".into()),
        },
    };
    let with_documents = match obj.get("return_documents") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("`return_documents` must be a boolean".into()),
    };
    if obj.get("truncation").is_some_and(|t| !t.is_boolean()) {
        return Err("`truncation` must be a boolean".into());
    }
    let data: Vec<Value> = rank(&query, &documents)
        .into_iter()
        .take(top_k)
        .map(|(index, score)| {
            let mut item = json!({"relevance_score": score, "index": index});
            if let (true, Some(o)) = (with_documents, item.as_object_mut()) {
                o.insert("document".into(), Value::from(documents[index].as_str()));
            }
            item
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"total_tokens": rerank_tokens(&query, &documents)},
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::vectors::embedding;
    use base64::Engine as _;

    #[test]
    fn embeddings_carry_their_index_and_the_requested_dimension() {
        let obj = json!({"input": ["a b", "c"], "model": "voyage-3.5", "output_dimension": 256});
        let v = embed_answer(obj.as_object().unwrap()).unwrap();
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"], json!(embedding("a b", 256)));
        assert_eq!(v["usage"]["total_tokens"], 3);
    }

    #[test]
    fn base64_is_packed_little_endian_f32() {
        let obj = json!({"input": "x", "model": "voyage-3-lite", "encoding_format": "base64"});
        let v = embed_answer(obj.as_object().unwrap()).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f64> = bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        assert_eq!(floats, embedding("x", 512));
    }

    #[test]
    fn documented_constraints_are_enforced() {
        for body in [
            json!({"input": [], "model": "voyage-3.5"}),
            json!({"input": "x", "model": "rerank-2"}),
            json!({"input": "x", "model": "voyage-3.5", "input_type": "search_query"}),
            json!({"input": "x", "model": "voyage-3.5", "output_dimension": 100}),
            json!({"input": "x", "model": "voyage-law-2", "output_dimension": 256}),
            json!({"input": [1, 2], "model": "voyage-3.5"}),
        ] {
            assert!(embed_answer(body.as_object().unwrap()).is_err(), "{body}");
        }
    }

    #[test]
    fn rerank_orders_by_relevance_and_honours_top_k_and_documents() {
        let obj = json!({"query": "capital of France", "model": "rerank-2",
                         "documents": ["bananas", "the capital of France", "France is big"],
                         "top_k": 2, "return_documents": true});
        let v = rerank_answer(obj.as_object().unwrap()).unwrap();
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["index"], 1);
        assert_eq!(data[0]["document"], "the capital of France");
        assert!(data[0]["relevance_score"].as_f64() > data[1]["relevance_score"].as_f64());
    }
}
