//! Bedrock's InvokeModel (`POST /model/{modelId}/invoke`) for the embedding
//! models, from the Bedrock user guide's model parameter pages:
//!
//! - **Titan Text Embeddings V2** (`amazon.titan-embed-text-v2:0`): body
//!   `{inputText, dimensions?, normalize?, embeddingTypes?}`; `dimensions` is 256,
//!   512 or 1024 (default); answers `{embedding, inputTextTokenCount,
//!   embeddingsByType}` (`embeddingsByType.float` always present).
//! - **Titan Embeddings G1** (`amazon.titan-embed-text-v1`): `{inputText}` only,
//!   1536 values, answers `{embedding, inputTextTokenCount}`.
//! - **Cohere Embed v3** (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`):
//!   `{texts, input_type, truncate?, embedding_types?}`, at most 96 texts,
//!   `input_type` required; answers `{embeddings, id, response_type:
//!   "embeddings_floats", texts}`, or `embeddings` keyed by type with
//!   `response_type: "embeddings_by_type"` when `embedding_types` is given.
//!   The token count is only in the `X-Amzn-Bedrock-Input-Token-Count` header.
//!
//! Requests arrive here after the SigV4 check. Anything else the reference does
//! not allow (an extraneous key, a missing required key, a value outside its
//! enum) is 400 `ValidationException` with Bedrock's "Malformed input request"
//! wording. Vectors are [`vector_for`] the text.

use super::{aws_error, percent_decode, respond, status_for_exception, validation};
use super::{BedrockFault, Shared};
use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// The most texts one Cohere Embed call may carry.
pub const MAX_COHERE_TEXTS: usize = 96;

/// The vector the fake answers for `text` before normalisation: `dims` values
/// in [-0.5, 0.5), multiples of 1/64 (exact in float32 and JSON).
fn raw_vector(text: &str, dims: usize) -> Vec<f32> {
    let h = text
        .bytes()
        .fold(11u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
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

/// The vector the fake answers for `text`: deterministic, and unit length when
/// `normalize` (Titan V2's default), as the real models answer.
pub fn vector_for(text: &str, dims: usize, normalize: bool) -> Vec<f32> {
    let v = raw_vector(text, dims);
    if !normalize {
        return v;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return v;
    }
    v.iter().map(|x| x / norm).collect()
}

/// A stand-in tokenizer: words, at least one.
fn tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64).max(1)
}

/// The model id of `/model/{id}/invoke`, percent-decoded.
pub(super) fn invoke_target(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/model/")?;
    let id = rest.strip_suffix("/invoke")?;
    (!id.is_empty() && !id.contains('/')).then(|| percent_decode(id))
}

fn malformed(message: &str) -> Response {
    validation(format!(
        "Malformed input request: {message}, please reformat your input and try again."
    ))
}

/// What is wrong with a body, in the words of Bedrock's "Malformed input
/// request" messages (`#: …` for the object, `#/key: …` for a field).
type Malformed = String;

fn extraneous(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), Malformed> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("#: extraneous key [{k}] is not permitted")),
        None => Ok(()),
    }
}

fn required<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a Value, Malformed> {
    obj.get(key)
        .ok_or_else(|| format!("#: required key [{key}] not found"))
}

fn string_list<'a>(v: &'a Value, key: &str) -> Result<Vec<&'a str>, Malformed> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format!("#/{key}: expected type: JSONArray of strings"))
}

fn one_of(v: &str, key: &str, allowed: &[&str]) -> Result<(), Malformed> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(format!("#/{key}: {v} is not a valid enum value"))
    }
}

fn enum_value(v: &Value, key: &str, allowed: &[&str]) -> Result<(), Malformed> {
    match v.as_str() {
        Some(s) => one_of(s, key, allowed),
        None => Err(format!("#/{key}: {v} is not a valid enum value")),
    }
}

/// `200 application/json` with the headers Bedrock adds to InvokeModel answers.
fn ok(body: &Value, input_tokens: u64) -> Response {
    let mut r = respond(200, "application/json", Body::from(body.to_string()));
    let h = r.headers_mut();
    h.insert(
        "x-amzn-bedrock-input-token-count",
        HeaderValue::from(input_tokens),
    );
    h.insert(
        "x-amzn-bedrock-invocation-latency",
        HeaderValue::from_static("42"),
    );
    r
}

/// A Titan answer and its input token count.
fn titan(body: &Map<String, Value>, v2: bool) -> Result<(Value, u64), Malformed> {
    let allowed: &[&str] = if v2 {
        &["inputText", "dimensions", "normalize", "embeddingTypes"]
    } else {
        &["inputText"]
    };
    extraneous(body, allowed)?;
    let text = required(body, "inputText")?
        .as_str()
        .ok_or("#/inputText: expected type: String")?;
    let dims = match body.get("dimensions") {
        None if v2 => 1024,
        None => 1536,
        Some(d) => match d.as_u64() {
            Some(n @ (256 | 512 | 1024)) => n as usize,
            _ => return Err(format!("#/dimensions: {d} is not a valid enum value")),
        },
    };
    let normalize = match body.get("normalize") {
        None => v2,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "#/normalize: expected type: Boolean, found: {other}"
            ))
        }
    };
    let types = match body.get("embeddingTypes") {
        None => vec!["float"],
        Some(t) => string_list(t, "embeddingTypes")?,
    };
    if types.is_empty() {
        return Err("#/embeddingTypes: expected minimum item count: 1".into());
    }
    for t in &types {
        one_of(t, "embeddingTypes", &["float", "binary"])?;
    }
    let floats = vector_for(text, dims, normalize);
    let n = tokens(text);
    let mut answer = json!({"embedding": floats, "inputTextTokenCount": n});
    if v2 {
        let mut by_type = Map::new();
        // The reference: `float` is always there, asked for or not.
        by_type.insert("float".into(), json!(floats));
        if types.contains(&"binary") {
            let bits: Vec<u8> = floats.iter().map(|x| u8::from(*x > 0.0)).collect();
            by_type.insert("binary".into(), json!(bits));
        }
        answer["embeddingsByType"] = Value::Object(by_type);
    }
    Ok((answer, n))
}

/// A Cohere Embed answer and the input token count for its header.
fn cohere(shared: &Shared, body: &Map<String, Value>) -> Result<(Value, u64), Malformed> {
    extraneous(
        body,
        &[
            "texts",
            "images",
            "input_type",
            "truncate",
            "embedding_types",
        ],
    )?;
    let texts = string_list(required(body, "texts")?, "texts")?;
    if texts.len() > MAX_COHERE_TEXTS {
        return Err(format!(
            "#/texts: expected maximum item count: {MAX_COHERE_TEXTS}, found: {}",
            texts.len()
        ));
    }
    enum_value(
        required(body, "input_type")?,
        "input_type",
        &[
            "search_document",
            "search_query",
            "classification",
            "clustering",
            "image",
        ],
    )?;
    if let Some(t) = body.get("truncate") {
        enum_value(t, "truncate", &["NONE", "START", "END"])?;
    }
    let types = match body.get("embedding_types") {
        None => None,
        Some(t) => Some(string_list(t, "embedding_types")?),
    };
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| vector_for(t, 1024, false)).collect();
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let mut answer = json!({
        "id": format!("6f1c7e2a-0000-4000-8000-{n:012x}"),
        "texts": texts,
    });
    match types {
        None => {
            answer["embeddings"] = json!(vectors);
            answer["response_type"] = json!("embeddings_floats");
        }
        Some(types) => {
            let mut by_type = Map::new();
            for t in types {
                one_of(
                    t,
                    "embedding_types",
                    &["float", "int8", "uint8", "binary", "ubinary"],
                )?;
                let list = if t == "float" {
                    json!(vectors)
                } else {
                    let ints: Vec<Vec<i64>> = vectors
                        .iter()
                        .map(|v| v.iter().map(|x| (x * 64.0) as i64).collect())
                        .collect();
                    json!(ints)
                };
                by_type.insert(t.to_string(), list);
            }
            answer["embeddings"] = Value::Object(by_type);
            answer["response_type"] = json!("embeddings_by_type");
        }
    }
    Ok((answer, texts.iter().map(|t| tokens(t)).sum()))
}

/// Serves one signed InvokeModel call for `model_id`.
pub(super) fn invoke(shared: &Shared, model_id: &str, body: &Value) -> Response {
    match shared.faults.pop() {
        Some(BedrockFault::Error {
            status,
            error_type,
            message,
        }) => return aws_error(status, &error_type, &message),
        Some(BedrockFault::StreamException {
            exception_type,
            message,
        }) => {
            let mut ty = exception_type.clone();
            if let Some(first) = ty.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            return aws_error(status_for_exception(&exception_type), &ty, &message);
        }
        _ => {}
    }
    // A cross-region inference profile prefixes the model id with its geography.
    let id = match model_id.split_once('.') {
        Some((_, rest)) if rest.starts_with("cohere.") || rest.starts_with("amazon.") => rest,
        _ => model_id,
    };
    let Some(obj) = body.as_object() else {
        return aws_error(
            400,
            "SerializationException",
            "Unable to parse the request body as JSON.",
        );
    };
    let answer = match id {
        "amazon.titan-embed-text-v2:0" => titan(obj, true),
        "amazon.titan-embed-text-v1" => titan(obj, false),
        "cohere.embed-english-v3" | "cohere.embed-multilingual-v3" => cohere(shared, obj),
        _ => return validation("The provided model identifier is invalid."),
    };
    match answer {
        Ok((body, tokens)) => ok(&body, tokens),
        Err(message) => malformed(&message),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn invoke_paths_name_the_model() {
        assert_eq!(
            invoke_target("/model/amazon.titan-embed-text-v2%3A0/invoke").as_deref(),
            Some("amazon.titan-embed-text-v2:0")
        );
        assert_eq!(invoke_target("/model/x/converse"), None);
        assert_eq!(invoke_target("/model//invoke"), None);
    }

    #[test]
    fn vectors_are_deterministic_and_normalised_on_request() {
        let raw = vector_for("hello", 8, false);
        assert_eq!(raw, vector_for("hello", 8, false));
        assert_ne!(raw, vector_for("world", 8, false));
        assert!(raw.iter().all(|v| (v * 64.0).fract() == 0.0));
        let unit = vector_for("hello", 8, true);
        let norm: f32 = unit.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}
