//! The OpenAI side of `/v1/embeddings` for native adapters: reading the client's
//! `CreateEmbeddingRequest` and writing the `list` answer. What a provider's own
//! API looks like stays in that provider's module.
//!
//! - `input` must be text: a string or an array of strings. Token-id inputs
//!   (arrays of integers) mean nothing to providers with their own tokenizers, so
//!   they are a 400 naming `input` rather than being embedded as something else.
//! - `encoding_format: "base64"` is answered as OpenAI does: each vector's
//!   values as little-endian IEEE-754 float32, base64-encoded (standard alphabet,
//!   padded). The provider always answers numbers; the encoding happens here.
//! - `usage` is only written when the provider reported a token count; a missing
//!   count is left out rather than guessed, so spend and rate limits are never
//!   charged on an invented number.

use base64::Engine as _;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};

use super::common::{bad_upstream, invalid};
use super::Translated;

/// How the client wants each vector written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EncodingFormat {
    Float,
    Base64,
}

/// The fields of an OpenAI embeddings request the native adapters translate.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddingsRequest {
    /// The texts, in the client's order.
    pub(crate) inputs: Vec<String>,
    /// `input` was a bare string rather than an array.
    pub(crate) single: bool,
    pub(crate) dimensions: Option<u64>,
    pub(crate) encoding: EncodingFormat,
    /// The whole request object, for provider-specific extension fields
    /// (`task_type`, `input_type`).
    pub(crate) fields: Map<String, Value>,
}

impl EmbeddingsRequest {
    /// A string extension field, if present; anything but a string is a 400.
    pub(crate) fn extension(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(key, format!("`{key}` must be a string"))),
        }
    }
}

/// Reads an OpenAI embeddings request; `provider` names the provider in messages.
pub(crate) fn parse_request(body: &[u8], provider: &str) -> Result<EmbeddingsRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(format!("the request body is not valid JSON: {e}"))
    })?;
    let Value::Object(fields) = v else {
        return Err(ApiError::invalid_request(
            "the request body must be a JSON object",
        ));
    };
    let token_ids = || {
        invalid(
            "input",
            format!("{provider} embeds text only: `input` must be a string or an array of strings, not token ids"),
        )
    };
    let (inputs, single) = match fields.get("input") {
        Some(Value::String(s)) => (vec![s.clone()], true),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(invalid("input", "`input` must not be an empty array"))
        }
        Some(Value::Array(items)) => {
            let mut texts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => texts.push(s.clone()),
                    Value::Number(_) | Value::Array(_) => return Err(token_ids()),
                    _ => {
                        return Err(invalid(
                            "input",
                            "`input` must be a string or an array of strings",
                        ))
                    }
                }
            }
            (texts, false)
        }
        None | Some(Value::Null) => return Err(invalid("input", "`input` is required")),
        Some(_) => {
            return Err(invalid(
                "input",
                "`input` must be a string or an array of strings",
            ))
        }
    };
    let dimensions = match fields.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(invalid(
                    "dimensions",
                    "`dimensions` must be a positive integer",
                ))
            }
        },
    };
    let encoding = match fields.get("encoding_format") {
        None | Some(Value::Null) => EncodingFormat::Float,
        Some(Value::String(s)) if s == "float" => EncodingFormat::Float,
        Some(Value::String(s)) if s == "base64" => EncodingFormat::Base64,
        Some(_) => {
            return Err(invalid(
                "encoding_format",
                "`encoding_format` must be \"float\" or \"base64\"",
            ))
        }
    };
    Ok(EmbeddingsRequest {
        inputs,
        single,
        dimensions,
        encoding,
        fields,
    })
}

/// What the response side needs from the client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) encoding: EncodingFormat,
    /// How many vectors the answer must hold; `None` when unknown.
    pub(crate) count: Option<usize>,
}

/// Reads [`Expected`] from the client's body. A body that does not parse was
/// refused before anything was sent, so that case only arises for callers that
/// have no client body: OpenAI's default encoding, any count.
pub(crate) fn expected(client_body: &[u8]) -> Expected {
    match parse_request(client_body, "") {
        Ok(r) => Expected {
            encoding: r.encoding,
            count: Some(r.inputs.len()),
        },
        Err(_) => Expected {
            encoding: EncodingFormat::Float,
            count: None,
        },
    }
}

/// A 502 when the provider answered a different number of vectors than inputs:
/// pairing them up by position would hand the client wrong vectors.
pub(crate) fn check_count(expected: &Expected, got: usize, provider: &str) -> Result<(), ApiError> {
    match expected.count {
        Some(n) if n != got => Err(bad_upstream(format!(
            "{provider}: the answer holds {got} embeddings for {n} inputs"
        ))),
        _ => Ok(()),
    }
}

/// One upstream vector as numbers; `what` names it in the error.
pub(crate) fn vector(v: Option<&Value>, provider: &str, what: &str) -> Result<Vec<f64>, ApiError> {
    let bad = || {
        bad_upstream(format!(
            "{provider}: the answer's {what} is not an array of numbers"
        ))
    };
    let items = v.and_then(Value::as_array).ok_or_else(bad)?;
    items.iter().map(|x| x.as_f64().ok_or_else(bad)).collect()
}

/// `values` as OpenAI's base64 form: little-endian float32 bytes, base64.
pub(crate) fn base64_f32(values: &[f64]) -> String {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        // Embeddings are float32 on the wire at OpenAI; narrowing is the format.
        bytes.extend_from_slice(&(*v as f32).to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The OpenAI `list` answer: one `embedding` object per vector, `index` in the
/// order given; `usage` only when the provider counted the input tokens.
pub(crate) fn openai_list(
    vectors: Vec<Vec<f64>>,
    encoding: EncodingFormat,
    model: &str,
    prompt_tokens: Option<u64>,
) -> Result<Translated, ApiError> {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, values)| {
            let embedding = match encoding {
                EncodingFormat::Float => json!(values),
                EncodingFormat::Base64 => Value::String(base64_f32(&values)),
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut out = json!({"object": "list", "data": data, "model": model});
    if let (Some(n), Some(obj)) = (prompt_tokens, out.as_object_mut()) {
        obj.insert(
            "usage".into(),
            json!({"prompt_tokens": n, "total_tokens": n}),
        );
    }
    serde_json::to_vec(&out).map(Translated::json).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("could not encode the embeddings answer: {e}"),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<EmbeddingsRequest, ApiError> {
        parse_request(body.to_string().as_bytes(), "prov")
    }

    fn param_of(e: &ApiError) -> Value {
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        v["error"]["param"].clone()
    }

    #[test]
    fn string_and_array_inputs_keep_their_order() {
        let r = parse(json!({"model": "m", "input": "one"})).unwrap();
        assert_eq!(r.inputs, ["one"]);
        assert!(r.single);
        assert_eq!(r.encoding, EncodingFormat::Float);
        let r = parse(json!({"model": "m", "input": ["b", "a", "c"], "dimensions": 8, "encoding_format": "base64"})).unwrap();
        assert_eq!(r.inputs, ["b", "a", "c"]);
        assert!(!r.single);
        assert_eq!(r.dimensions, Some(8));
        assert_eq!(r.encoding, EncodingFormat::Base64);
    }

    #[test]
    fn bad_fields_are_400s_naming_the_field() {
        for (body, param) in [
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (json!({"model": "m", "input": [1, 2, 3]}), "input"),
            (json!({"model": "m", "input": [[1, 2]]}), "input"),
            (json!({"model": "m", "input": [{"text": "x"}]}), "input"),
            (
                json!({"model": "m", "input": "x", "dimensions": 0}),
                "dimensions",
            ),
            (
                json!({"model": "m", "input": "x", "dimensions": "8"}),
                "dimensions",
            ),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(param_of(&e), param, "{body}");
        }
        let r = parse(json!({"model": "m", "input": "x", "task_type": 3})).unwrap();
        assert_eq!(
            param_of(&r.extension("task_type").unwrap_err()),
            "task_type"
        );
    }

    #[test]
    fn base64_is_little_endian_float32() {
        // 1.0f32 = 0x3f800000, -2.5f32 = 0xc0200000, little-endian.
        assert_eq!(base64_f32(&[1.0, -2.5]), "AACAPwAAIMA=");
        assert_eq!(base64_f32(&[]), "");
    }

    #[test]
    fn expected_reads_encoding_and_count_from_the_client_body() {
        let e = expected(br#"{"input":["a","b"],"encoding_format":"base64"}"#);
        assert_eq!(e.encoding, EncodingFormat::Base64);
        assert_eq!(e.count, Some(2));
        let e = expected(br#"{"input":"x"}"#);
        assert_eq!((e.encoding, e.count), (EncodingFormat::Float, Some(1)));
        let e = expected(b"");
        assert_eq!((e.encoding, e.count), (EncodingFormat::Float, None));
        assert!(check_count(&e, 5, "p").is_ok());
        let two = expected(br#"{"input":["a","b"]}"#);
        assert_eq!(check_count(&two, 1, "p").unwrap_err().status(), 502);
        assert!(check_count(&two, 2, "p").is_ok());
    }

    #[test]
    fn list_has_openai_shape_and_usage_only_when_known() {
        let t = openai_list(
            vec![vec![0.5], vec![0.25, 1.0]],
            EncodingFormat::Float,
            "emb",
            Some(7),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            v,
            json!({
                "object": "list",
                "model": "emb",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.5]},
                    {"object": "embedding", "index": 1, "embedding": [0.25, 1.0]},
                ],
                "usage": {"prompt_tokens": 7, "total_tokens": 7},
            })
        );
        let t = openai_list(vec![vec![1.0]], EncodingFormat::Base64, "emb", None).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["data"][0]["embedding"], "AACAPw==");
        assert!(v.get("usage").is_none());
    }
}
