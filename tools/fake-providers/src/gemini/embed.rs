//! The Gemini API's embedding methods (reference "Embeddings", v1beta):
//!
//! - `POST /v1beta/models/{model}:embedContent` with an `EmbedContentRequest`
//!   (`content`, optional `taskType`, `title`, `outputDimensionality`, `model`)
//!   answers `{"embedding": {"values": [...]}}`;
//! - `POST /v1beta/models/{model}:batchEmbedContents` with `{"requests": [...]}`,
//!   each naming `model: "models/{model}"` (it must match the URL's), answers
//!   `{"embeddings": [{"values": [...]}, ...]}` in request order.
//!
//! `gemini-embedding-*` models also answer `usageMetadata.promptTokenCount`
//! (the reference's `EmbeddingUsageMetadata`); the older `text-embedding-004`
//! and `embedding-001` answer without it, as the API did before it was added,
//! so clients of both shapes are exercised. Vectors are [`embedding_for`] the
//! text, cut to `outputDimensionality`. Only text parts are embedded; unknown
//! fields, unknown task types, a dimensionality beyond the model's, an empty
//! or over-long batch and a batch entry naming another model are 400
//! INVALID_ARGUMENT, as at Google.

use super::{error, fault_response, get, invalid, json_response, known_fields, object};
use super::{validate_content, words, GeminiFault, Shared};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// The most requests one `batchEmbedContents` call may carry.
pub const MAX_BATCH: usize = 100;

const TASK_TYPES: &[&str] = &[
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
];

/// The vector the fake answers for `text`: `dims` values in [-0.5, 0.5), each a
/// multiple of 1/64, so they are exact in float32, in JSON and in base64 alike
/// and a test can compare them with `==`.
pub fn embedding_for(text: &str, dims: usize) -> Vec<f32> {
    let h = text
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (0..dims as u64)
        .map(|i| (mix(h ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % 64) as f32 / 64.0 - 0.5)
        .collect()
}

/// MurmurHash3's 64-bit finalizer: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// `(native size, whether outputDimensionality may be set, reports usage)`.
fn model_facts(model: &str) -> Option<(u64, bool, bool)> {
    if model.starts_with("gemini-embedding-") {
        Some((3072, true, true))
    } else if model.starts_with("text-embedding-") {
        Some((768, true, false))
    } else if model == "embedding-001" {
        Some((768, false, false))
    } else {
        None
    }
}

/// Checks one `EmbedContentRequest` at `at`; returns its text and dimensions.
fn embed_request(
    req: &Value,
    at: &str,
    model: &str,
    in_batch: bool,
) -> Result<(String, u64), String> {
    let place = if at.is_empty() { "" } else { at };
    let obj = object(req, place)?;
    known_fields(
        obj,
        place,
        &[
            "model",
            "content",
            "taskType",
            "title",
            "outputDimensionality",
        ],
    )?;
    let field = |name: &str| {
        if at.is_empty() {
            name.to_string()
        } else {
            format!("{at}.{name}")
        }
    };
    match get(obj, "model") {
        None if in_batch => {
            return Err(format!(
                "* BatchEmbedContentsRequest.{}: model is required",
                field("model")
            ))
        }
        None => {}
        Some(Value::String(m)) if m == &format!("models/{model}") => {}
        Some(other) => {
            return Err(format!(
                "Model in the request ({}) does not match the model in the URL (models/{model}).",
                other.as_str().unwrap_or("not a string")
            ))
        }
    }
    let content = get(obj, "content").ok_or_else(|| {
        format!(
            "* EmbedContentRequest.{}: content is required",
            field("content")
        )
    })?;
    validate_content(content, &field("content"), false)?;
    let text: Vec<&str> = content["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    if text.is_empty() {
        return Err(format!(
            "* EmbedContentRequest.{}: only text parts can be embedded",
            field("content.parts")
        ));
    }
    if let Some(task) = get(obj, "taskType") {
        let known = task.as_str().is_some_and(|t| TASK_TYPES.contains(&t));
        if !known {
            return Err(format!(
                "Invalid value at '{}' (type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), {task}",
                field("task_type")
            ));
        }
    }
    if let Some(title) = get(obj, "title") {
        if !title.is_string() {
            return Err(format!(
                "Invalid value at '{}' (TYPE_STRING), {title}",
                field("title")
            ));
        }
    }
    let (native, reducible, _) = model_facts(model).unwrap_or((768, false, false));
    let dims = match get(obj, "outputDimensionality") {
        None => native,
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| {
                format!(
                    "Invalid value at '{}' (TYPE_INT32), {v}",
                    field("output_dimensionality")
                )
            })?;
            if !reducible {
                return Err(format!(
                    "* EmbedContentRequest.{}: models/{model} does not support output_dimensionality",
                    field("output_dimensionality")
                ));
            }
            if n == 0 || n > native {
                return Err(format!(
                    "* EmbedContentRequest.{}: output_dimensionality must be between 1 and {native}",
                    field("output_dimensionality")
                ));
            }
            n
        }
    };
    Ok((text.join(" "), dims))
}

fn values(text: &str, dims: u64) -> Value {
    json!({ "values": embedding_for(text, dims as usize) })
}

/// Serves `embedContent` / `batchEmbedContents` for `model`, after the key check.
pub(super) fn handle(s: &Shared, model: &str, action: &str, body: &[u8]) -> Response {
    let Some((_, _, reports_usage)) = model_facts(model) else {
        return error(
            404,
            &format!(
                "models/{model} is not found for API version v1beta, or is not supported for {action}. Call ListModels to see the list of available models and their supported methods."
            ),
        );
    };
    let fault = s.faults.pop();
    if let Some(resp) = fault.and_then(fault_response) {
        return resp;
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return invalid(format!(
                "Invalid JSON payload received. Unexpected token.\n{}\n^",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            ))
        }
    };
    let checked = if action == "embedContent" {
        embed_request(&req, "", model, false).map(|one| vec![one])
    } else {
        batch(&req, model)
    };
    let items = match checked {
        Ok(items) => items,
        Err(message) => return invalid(message),
    };
    let mut answer = Map::new();
    if action == "embedContent" {
        let (text, dims) = &items[0];
        answer.insert("embedding".into(), values(text, *dims));
    } else {
        let list: Vec<Value> = items.iter().map(|(t, d)| values(t, *d)).collect();
        answer.insert("embeddings".into(), Value::Array(list));
    }
    if reports_usage {
        let tokens: u64 = items.iter().map(|(t, _)| words(t).max(1)).sum();
        answer.insert(
            "usageMetadata".into(),
            json!({"promptTokenCount": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}),
        );
    }
    let answer = Value::Object(answer);
    if fault == Some(GeminiFault::Truncated) {
        let text = answer.to_string();
        let mut resp = (StatusCode::OK, text[..text.len() / 2].to_string()).into_response();
        resp.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        return resp;
    }
    json_response(StatusCode::OK, &answer)
}

fn batch(req: &Value, model: &str) -> Result<Vec<(String, u64)>, String> {
    let obj = object(req, "")?;
    known_fields(obj, "", &["requests"])?;
    let requests = get(obj, "requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or("* BatchEmbedContentsRequest.requests: requests must not be empty")?;
    if requests.len() > MAX_BATCH {
        return Err(format!(
            "* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in one batch"
        ));
    }
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| embed_request(r, &format!("requests[{i}]"), model, true))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        json!({"content": {"parts": [{"text": text}]}})
    }

    #[test]
    fn vectors_are_deterministic_dyadic_and_text_dependent() {
        let a = embedding_for("hello", 16);
        assert_eq!(a, embedding_for("hello", 16));
        assert_ne!(a, embedding_for("world", 16));
        assert_eq!(embedding_for("hello", 4), a[..4]);
        assert!(a
            .iter()
            .all(|v| (-0.5..0.5).contains(v) && (v * 64.0).fract() == 0.0));
    }

    #[test]
    fn requests_are_checked_like_google() {
        let m = "gemini-embedding-001";
        assert_eq!(
            embed_request(&one("hi"), "", m, false).unwrap(),
            ("hi".into(), 3072)
        );
        let mut r = one("hi");
        r["outputDimensionality"] = json!(8);
        r["taskType"] = json!("SEMANTIC_SIMILARITY");
        assert_eq!(embed_request(&r, "", m, false).unwrap().1, 8);
        for (bad, needle) in [
            (
                json!({"content": {"parts": [{"text": "x"}]}, "dims": 3}),
                "Unknown name \"dims\"",
            ),
            (json!({"content": {"parts": []}}), "must not be empty"),
            (
                json!({"taskType": "NOPE", "content": {"parts": [{"text": "x"}]}}),
                "task_type",
            ),
            (
                json!({"outputDimensionality": 4000, "content": {"parts": [{"text": "x"}]}}),
                "between 1 and 3072",
            ),
            (
                json!({"model": "models/other", "content": {"parts": [{"text": "x"}]}}),
                "does not match",
            ),
        ] {
            let e = embed_request(&bad, "", m, false).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let mut r = one("x");
        r["outputDimensionality"] = json!(8);
        assert!(embed_request(&r, "", "embedding-001", false).is_err());
        // Inside a batch every entry names the model.
        assert!(embed_request(&one("x"), "requests[0]", m, true).is_err());
        let many: Vec<Value> = (0..=MAX_BATCH)
            .map(|_| json!({"model": format!("models/{m}"), "content": {"parts": [{"text": "x"}]}}))
            .collect();
        assert!(batch(&json!({"requests": many}), m)
            .unwrap_err()
            .contains("at most"));
    }
}
