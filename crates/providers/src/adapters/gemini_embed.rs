//! OpenAI `/v1/embeddings` on the Gemini API (v1beta reference, "Embeddings"):
//!
//! - a bare-string `input` is `POST /models/{model}:embedContent` with
//!   `{content:{parts:[{text}]}}`; an array is `POST /models/{model}:batchEmbedContents`
//!   with one `requests[]` entry per text, each naming `model: "models/{model}"`
//!   as the reference requires, in the client's order;
//! - OpenAI `dimensions` is `outputDimensionality`; the extension field
//!   `task_type` (`RETRIEVAL_QUERY`, `SEMANTIC_SIMILARITY`, …) is `taskType`;
//! - answers are `{embedding:{values}}` or `{embeddings:[{values}]}` (the batch
//!   "in the same order as provided"), which become OpenAI `data[i]` with
//!   `index = i`;
//! - `usageMetadata.promptTokenCount` (the reference's `EmbeddingUsageMetadata`)
//!   is the usage when present. Older API surfaces answer without it; then the
//!   answer has no `usage` rather than an estimate.
//!
//! The key travels in `x-goog-api-key` (the registry's auth style); errors are
//! Google's envelope and go through the Gemini adapter's error mapping.

use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};

use super::common::{bad_upstream, invalid};
use super::embeddings::{self, EmbeddingsRequest, Expected};
use super::{ChatContext, EndpointRequest, Translated, UpstreamRequest};

const PROVIDER: &str = "gemini";

/// `models/{model}` (or a full `models/…` / `tunedModels/…` resource name as
/// given), checked to be one path segment of safe characters since it goes
/// into the URL and the body.
pub(super) fn resource(model: &str) -> Result<String, ApiError> {
    let resource = if model.starts_with("models/") || model.starts_with("tunedModels/") {
        model.to_string()
    } else {
        format!("models/{model}")
    };
    let name = resource.split_once('/').map_or("", |(_, n)| n);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if valid {
        Ok(resource)
    } else {
        Err(invalid(
            "model",
            format!("gemini: `{model}` is not a valid Gemini model id"),
        ))
    }
}

/// One `EmbedContentRequest`; `model` is set only inside a batch.
fn embed_content(text: &str, model: Option<&str>, options: &Map<String, Value>) -> Value {
    let mut req = Map::new();
    if let Some(m) = model {
        req.insert("model".into(), Value::from(m));
    }
    req.insert("content".into(), json!({"parts": [{"text": text}]}));
    req.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
    Value::Object(req)
}

/// The `taskType` / `outputDimensionality` every request of the call carries.
fn options(req: &EmbeddingsRequest) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    if let Some(task) = req.extension("task_type")? {
        out.insert("taskType".into(), Value::from(task));
    }
    if let Some(d) = req.dimensions {
        out.insert("outputDimensionality".into(), Value::from(d));
    }
    Ok(out)
}

/// The path and body for an OpenAI embeddings request, relative to the Gemini
/// API base URL.
pub(super) fn build(req: &EmbeddingsRequest, model: &str) -> Result<(String, Value), ApiError> {
    let resource = resource(model)?;
    let options = options(req)?;
    if req.single {
        let text = req.inputs.first().map_or("", String::as_str);
        return Ok((
            format!("/{resource}:embedContent"),
            embed_content(text, None, &options),
        ));
    }
    let requests: Vec<Value> = req
        .inputs
        .iter()
        .map(|t| embed_content(t, Some(&resource), &options))
        .collect();
    Ok((
        format!("/{resource}:batchEmbedContents"),
        json!({ "requests": requests }),
    ))
}

pub(super) fn request(
    call: &EndpointRequest<'_>,
    ctx: &ChatContext<'_>,
) -> Result<UpstreamRequest, ApiError> {
    let req = embeddings::parse_request(call.body, PROVIDER)?;
    let (path, body) = build(&req, ctx.upstream_model)?;
    let body = serde_json::to_vec(&body).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("gemini: request encoding: {e}"),
        )
    })?;
    Ok(UpstreamRequest {
        method: Method::POST,
        path,
        headers: Vec::new(),
        content_type: None,
        body: Bytes::from(body),
    })
}

/// Translates `embedContent` / `batchEmbedContents` answers.
pub(super) fn response(
    upstream_body: &[u8],
    expected: &Expected,
    ctx: &ChatContext<'_>,
) -> Result<Translated, ApiError> {
    let v: Value = serde_json::from_slice(upstream_body).map_err(|_| {
        bad_upstream("gemini: the upstream answered 200 with a body that is not JSON")
    })?;
    let vectors = if let Some(list) = v.get("embeddings") {
        let list = list
            .as_array()
            .ok_or_else(|| bad_upstream("gemini: `embeddings` in the answer is not an array"))?;
        list.iter()
            .enumerate()
            .map(|(i, e)| {
                embeddings::vector(
                    e.get("values"),
                    PROVIDER,
                    &format!("embeddings[{i}].values"),
                )
            })
            .collect::<Result<Vec<_>, _>>()?
    } else if let Some(one) = v.get("embedding") {
        vec![embeddings::vector(
            one.get("values"),
            PROVIDER,
            "embedding.values",
        )?]
    } else {
        return Err(bad_upstream(
            "gemini: the answer has neither `embedding` nor `embeddings`",
        ));
    };
    embeddings::check_count(expected, vectors.len(), PROVIDER)?;
    let tokens = v
        .get("usageMetadata")
        .and_then(|u| u.get("promptTokenCount"))
        .and_then(Value::as_u64);
    embeddings::openai_list(vectors, expected.encoding, ctx.requested_model, tokens)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use liter_llm_protocol::Endpoint;

    fn ctx() -> ChatContext<'static> {
        ChatContext {
            upstream_model: "gemini-embedding-001",
            requested_model: "emb",
            stream: false,
            include_usage: false,
        }
    }

    fn req(body: Value) -> Result<(UpstreamRequest, Value), ApiError> {
        let bytes = body.to_string();
        let call = EndpointRequest {
            endpoint: Endpoint::Embeddings,
            body: bytes.as_bytes(),
            content_type: None,
        };
        let up = request(&call, &ctx())?;
        let sent = serde_json::from_slice(&up.body).unwrap();
        Ok((up, sent))
    }

    fn resp(upstream: Value, client: Value) -> Value {
        let expected = embeddings::expected(client.to_string().as_bytes());
        let t = response(upstream.to_string().as_bytes(), &expected, &ctx()).unwrap();
        assert_eq!(t.content_type, "application/json");
        serde_json::from_slice(&t.body).unwrap()
    }

    #[test]
    fn a_bare_string_is_one_embed_content_call() {
        let (up, sent) = req(json!({"model": "emb", "input": "hello"})).unwrap();
        assert_eq!(up.method, Method::POST);
        assert_eq!(up.path, "/models/gemini-embedding-001:embedContent");
        assert!(up.content_type.is_none());
        assert_eq!(sent, json!({"content": {"parts": [{"text": "hello"}]}}));
    }

    #[test]
    fn an_array_is_one_batch_call_in_order_with_options_on_each_request() {
        let (up, sent) = req(json!({
            "model": "emb", "input": ["b", "a"], "dimensions": 256,
            "task_type": "RETRIEVAL_QUERY", "user": "u-1",
        }))
        .unwrap();
        assert_eq!(up.path, "/models/gemini-embedding-001:batchEmbedContents");
        let one = |t: &str| {
            json!({
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": t}]},
                "taskType": "RETRIEVAL_QUERY",
                "outputDimensionality": 256,
            })
        };
        assert_eq!(sent, json!({"requests": [one("b"), one("a")]}));
    }

    #[test]
    fn bad_model_ids_and_fields_are_400s() {
        let call = |model: &'static str| {
            let c = ChatContext {
                upstream_model: model,
                ..ctx()
            };
            let body = json!({"input": "x"}).to_string();
            let call = EndpointRequest {
                endpoint: Endpoint::Embeddings,
                body: body.as_bytes(),
                content_type: None,
            };
            request(&call, &c).map(|r| r.path)
        };
        assert_eq!(
            call("text-embedding-004").unwrap(),
            "/models/text-embedding-004:embedContent"
        );
        assert_eq!(
            call("models/text-embedding-004").unwrap(),
            "/models/text-embedding-004:embedContent"
        );
        for bad in ["", "a/b", "x?y", "models/"] {
            assert_eq!(call(bad).unwrap_err().status(), 400, "{bad:?}");
        }
        assert_eq!(
            req(json!({"input": "x", "task_type": 1}))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(req(json!({"input": [1, 2]})).unwrap_err().status(), 400);
    }

    #[test]
    fn single_answer_with_usage_metadata() {
        let v = resp(
            json!({"embedding": {"values": [0.5, -0.25]}, "usageMetadata": {"promptTokenCount": 3}}),
            json!({"input": "x"}),
        );
        assert_eq!(
            v,
            json!({
                "object": "list",
                "model": "emb",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            })
        );
    }

    #[test]
    fn batch_answer_keeps_order_and_omits_unknown_usage() {
        let v = resp(
            json!({"embeddings": [{"values": [1.0]}, {"values": [2.0]}, {"values": [3.0]}]}),
            json!({"input": ["a", "b", "c"]}),
        );
        let got: Vec<(u64, f64)> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["index"].as_u64().unwrap(),
                    d["embedding"][0].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [(0, 1.0), (1, 2.0), (2, 3.0)]);
        assert!(v.get("usage").is_none(), "{v}");
    }

    #[test]
    fn base64_answers_encode_float32() {
        let v = resp(
            json!({"embeddings": [{"values": [1.0, -2.5]}]}),
            json!({"input": ["a"], "encoding_format": "base64"}),
        );
        assert_eq!(v["data"][0]["embedding"], "AACAPwAAIMA=");
    }

    #[test]
    fn malformed_or_short_answers_are_502s() {
        let expected = embeddings::expected(br#"{"input":["a","b"]}"#);
        for body in [
            "not json",
            r#"{"embeddings": [{"values": [1.0]}]}"#,
            r#"{"embeddings": [{"values": ["x"]}, {"values": [1]}]}"#,
            r#"{"embeddings": {"values": [1]}}"#,
            r#"{"candidates": []}"#,
        ] {
            let e = response(body.as_bytes(), &expected, &ctx()).unwrap_err();
            assert_eq!(e.status(), 502, "{body}");
        }
    }
}
