//! Helpers shared by the adapters whose provider has its own embed and rerank
//! APIs (Cohere, Voyage, Jina): the Cohere-style rerank request and answer,
//! embeddings answers put back in input order and handed to the OpenAI side in
//! [`super::embeddings`], and FastAPI-style errors. Each provider module only
//! maps fields.
//!
//! Providers are always asked for float embeddings; `encoding_format: "base64"`
//! is applied here, from the client's request, exactly as OpenAI encodes
//! (little-endian `f32`), rather than trusting each provider's own base64.

use super::common::{bad_upstream, invalid, post, provider_error};
use super::embeddings;
use super::{
    not_offered, ChatAdapter, ChatContext, EndpointRequest, Translated, UpstreamRequest,
    UpstreamTarget,
};
use bytes::Bytes;
use liter_llm_protocol::{ApiError, Endpoint, ErrorKind};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A provider whose endpoints are its own embeddings (`POST /embeddings`) and
/// rerank (`POST /rerank`) APIs under its base URL, with FastAPI errors
/// (Voyage, Jina). Its [`ChatAdapter`] follows from these translations.
pub trait EmbedRerankProvider: Send + Sync {
    /// The provider's name in messages.
    const PROVIDER: &'static str;

    /// The upstream embeddings body for the client's request.
    fn embed_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError>;

    /// The upstream rerank body for the client's request.
    fn rerank_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError>;

    /// The results of a rerank answer, in the provider's order.
    fn ranked(answer: &Map<String, Value>) -> Result<Vec<Ranked>, ApiError>;

    /// The provider's count of input tokens in an embeddings or rerank answer.
    fn tokens(answer: &Map<String, Value>) -> Option<u64>;
}

impl<P: EmbedRerankProvider> ChatAdapter for P {
    fn offers(&self, endpoint: Endpoint) -> bool {
        matches!(endpoint, Endpoint::Embeddings | Endpoint::Rerank)
    }

    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        _target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match req.endpoint {
            Endpoint::Embeddings => post_json("/embeddings", &P::embed_request(req.body, ctx)?),
            Endpoint::Rerank => post_json("/rerank", &P::rerank_request(req.body, ctx)?),
            other => Err(not_offered(other)),
        }
    }

    fn endpoint_response(
        &self,
        endpoint: Endpoint,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        let req = EndpointRequest {
            endpoint,
            body: b"",
            content_type: None,
        };
        self.endpoint_response_for(&req, upstream_body, ctx)
    }

    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        match req.endpoint {
            Endpoint::Embeddings => {
                // OpenAI's shape: `data[]` of `{index, embedding}`.
                let answer = answer(upstream_body, P::PROVIDER)?;
                let vectors = by_index(answer.get("data"), P::PROVIDER)?;
                embed_answer(&vectors, P::tokens(&answer), req, P::PROVIDER, ctx)
            }
            Endpoint::Rerank => {
                let answer = answer(upstream_body, P::PROVIDER)?;
                let (ranked, tokens) = (P::ranked(&answer)?, P::tokens(&answer));
                rerank_answer(None, ranked, tokens, None, P::PROVIDER, ctx)
            }
            other => Err(not_offered(other)),
        }
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        fastapi_error(P::PROVIDER, status, upstream_body)
    }
}

/// A Cohere-style rerank request, checked.
#[derive(Debug)]
pub(crate) struct RerankCall {
    pub(crate) query: String,
    /// Document texts; `{"text": ...}` objects are reduced to their text.
    pub(crate) documents: Vec<Value>,
    pub(crate) top_n: Option<u64>,
    pub(crate) return_documents: bool,
    pub(crate) fields: Map<String, Value>,
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(ApiError::invalid_request(
            "request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::invalid_request(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

fn positive_int(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(invalid(key, format!("`{key}` must be a positive integer"))),
        },
    }
}

/// Reads a rerank request: `query`, `documents` (strings or `{"text"}`),
/// optional `top_n` and `return_documents`.
pub(crate) fn rerank_call(body: &[u8]) -> Result<RerankCall, ApiError> {
    let fields = object(body)?;
    let query = match fields.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
        Some(Value::String(_)) => return Err(invalid("query", "`query` must not be empty")),
        None | Some(Value::Null) => {
            return Err(invalid("query", "missing required parameter: `query`"))
        }
        Some(_) => return Err(invalid("query", "`query` must be a string")),
    };
    let shape = || {
        invalid(
            "documents",
            "each of `documents` must be a string or an object with a string `text`",
        )
    };
    let documents = match fields.get("documents") {
        Some(Value::Array(docs)) if docs.is_empty() => {
            return Err(invalid("documents", "`documents` must not be empty"))
        }
        Some(Value::Array(docs)) => docs
            .iter()
            .map(|d| match d {
                Value::String(_) => Ok(d.clone()),
                _ => d
                    .get("text")
                    .filter(|t| t.is_string())
                    .cloned()
                    .ok_or_else(shape),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None | Some(Value::Null) => {
            return Err(invalid(
                "documents",
                "missing required parameter: `documents`",
            ))
        }
        Some(_) => return Err(invalid("documents", "`documents` must be an array")),
    };
    let top_n = positive_int(&fields, "top_n")?;
    let return_documents = match fields.get("return_documents") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(invalid(
                "return_documents",
                "`return_documents` must be a boolean",
            ))
        }
    };
    Ok(RerankCall {
        query,
        documents,
        top_n,
        return_documents,
        fields,
    })
}

/// Copies `key` from the client's request when it is set, after `check`.
pub(crate) fn pass(
    from: &Map<String, Value>,
    key: &str,
    to: &mut Map<String, Value>,
    check: fn(&Value) -> bool,
    expected: &str,
) -> Result<(), ApiError> {
    match from.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if check(v) => {
            to.insert(key.to_string(), v.clone());
            Ok(())
        }
        Some(_) => Err(invalid(key, format!("`{key}` must be {expected}"))),
    }
}

/// An optional string field that must be one of `allowed`.
pub(crate) fn one_of<'a>(
    from: &'a Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, ApiError> {
    match from.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s)),
        Some(_) => Err(invalid(
            key,
            format!("`{key}` must be one of: {}", allowed.join(", ")),
        )
        .with_code("unsupported_value")),
    }
}

/// A JSON POST to `path` under the deployment's base URL.
pub(crate) fn post_json(path: &str, body: &Value) -> Result<UpstreamRequest, ApiError> {
    let body = serde_json::to_vec(body).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("could not encode the upstream request: {e}"),
        )
    })?;
    Ok(post(path, None, Bytes::from(body)))
}

/// Parses a provider's successful answer.
pub(crate) fn answer(body: &[u8], provider: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err(bad_upstream(format!(
            "{provider}: the answer is not a JSON object"
        ))),
    }
}

/// A token count as providers report it (integers, or doubles for Cohere).
pub(crate) fn count(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.round() as u64)
    })
}

fn usage(tokens: u64) -> Value {
    json!({"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens})
}

fn encode(v: &Value) -> Result<Translated, ApiError> {
    serde_json::to_vec(v).map(Translated::json).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("could not encode the response: {e}"),
        )
    })
}

/// `data[]` items carrying `index` and `embedding`, put back in input order.
/// Every index from 0 must appear exactly once, or the answer cannot be
/// matched to the inputs.
pub(crate) fn by_index(data: Option<&Value>, provider: &str) -> Result<Vec<Value>, ApiError> {
    let items = data
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream(format!("{provider}: the answer has no `data` array")))?;
    let mut slots: Vec<Option<Value>> = vec![None; items.len()];
    for item in items {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < slots.len())
            .ok_or_else(|| {
                bad_upstream(format!("{provider}: an embedding has no usable `index`"))
            })?;
        let embedding = item
            .get("embedding")
            .cloned()
            .ok_or_else(|| bad_upstream(format!("{provider}: embedding {index} is missing")))?;
        if slots[index].replace(embedding).is_some() {
            return Err(bad_upstream(format!(
                "{provider}: embedding index {index} appears twice"
            )));
        }
    }
    slots
        .into_iter()
        .map(|s| {
            s.ok_or_else(|| bad_upstream(format!("{provider}: an embedding index is missing")))
        })
        .collect()
}

/// The OpenAI embeddings answer for `vectors` (upstream float arrays, in input
/// order), encoded as the client's request asked; `tokens` is the provider's
/// count of input tokens, when it gave one.
pub(crate) fn embed_answer(
    vectors: &[Value],
    tokens: Option<u64>,
    req: &EndpointRequest<'_>,
    provider: &str,
    ctx: &ChatContext<'_>,
) -> Result<Translated, ApiError> {
    let expected = embeddings::expected(req.body);
    embeddings::check_count(&expected, vectors.len(), provider)?;
    let vectors = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| embeddings::vector(Some(v), provider, &format!("embedding {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    embeddings::openai_list(vectors, expected.encoding, ctx.requested_model, tokens)
}

/// One rerank result as the client sees it (`pub` for [`EmbedRerankProvider`];
/// the module is private).
pub struct Ranked {
    pub(crate) index: u64,
    pub(crate) relevance_score: Value,
    pub(crate) document: Option<String>,
}

impl Ranked {
    /// Reads `index` and `relevance_score`; `document` is the provider's
    /// document text when it returned one.
    pub(crate) fn read(
        item: &Value,
        document: Option<String>,
        provider: &str,
    ) -> Result<Ranked, ApiError> {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad_upstream(format!("{provider}: a rerank result has no `index`")))?;
        let relevance_score = item
            .get("relevance_score")
            .filter(|s| s.is_number())
            .cloned()
            .ok_or_else(|| {
                bad_upstream(format!(
                    "{provider}: rerank result {index} has no `relevance_score`"
                ))
            })?;
        Ok(Ranked {
            index,
            relevance_score,
            document,
        })
    }
}

/// A made-up id for providers whose answer has none; unique, not secret.
fn rerank_id(provider: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("rerank-{provider}-{:016x}", h.finish())
}

/// The rerank answer: `{id, model, results, usage?, meta?}`, results in the
/// provider's order (most relevant first).
pub(crate) fn rerank_answer(
    id: Option<&str>,
    results: Vec<Ranked>,
    tokens: Option<u64>,
    meta: Option<&Value>,
    provider: &str,
    ctx: &ChatContext<'_>,
) -> Result<Translated, ApiError> {
    let results: Vec<Value> = results
        .into_iter()
        .map(|r| {
            let mut out = json!({"index": r.index, "relevance_score": r.relevance_score});
            if let (Some(text), Some(obj)) = (r.document, out.as_object_mut()) {
                obj.insert("document".into(), json!({ "text": text }));
            }
            out
        })
        .collect();
    let id = id.map_or_else(|| rerank_id(provider), str::to_string);
    let mut out = json!({"id": id, "model": ctx.requested_model, "results": results});
    if let Some(obj) = out.as_object_mut() {
        if let Some(t) = tokens {
            obj.insert("usage".into(), usage(t));
        }
        if let Some(m) = meta {
            obj.insert("meta".into(), m.clone());
        }
    }
    encode(&out)
}

/// Errors of providers built on FastAPI, whose `detail` is a string or, for a
/// 422, a list of `{loc, msg}`.
pub(crate) fn fastapi_error(provider: &str, status: u16, body: &[u8]) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let listed = parsed
        .as_ref()
        .and_then(|v| v.get("detail"))
        .and_then(Value::as_array)
        .and_then(|d| d.first());
    if let Some(first) = listed {
        let msg = first
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("invalid request");
        let loc: Vec<String> = first
            .get("loc")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter(|p| p.as_str() != Some("body"))
                    .map(|p| match p {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = if loc.is_empty() {
            msg.to_string()
        } else {
            format!("{}: {msg}", loc.join("."))
        };
        let body = json!({ "detail": message }).to_string();
        return provider_error(provider, status, body.as_bytes());
    }
    provider_error(provider, status, body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ctx() -> ChatContext<'static> {
        ChatContext {
            upstream_model: "up",
            requested_model: "mine",
            stream: false,
            include_usage: false,
        }
    }

    #[test]
    fn rerank_documents_may_be_strings_or_text_objects() {
        let c = rerank_call(
            br#"{"query":"q","documents":["a",{"text":"b"}],"top_n":1,"return_documents":true}"#,
        )
        .unwrap();
        assert_eq!(c.documents, vec![json!("a"), json!("b")]);
        assert_eq!(c.top_n, Some(1));
        assert!(c.return_documents);
    }

    #[test]
    fn bad_rerank_fields_are_400s_naming_them() {
        for (body, param) in [
            (r#"{"documents":["a"]}"#, "query"),
            (r#"{"query":" ","documents":["a"]}"#, "query"),
            (r#"{"query":"q","documents":[]}"#, "documents"),
            (r#"{"query":"q","documents":[{"title":"x"}]}"#, "documents"),
            (r#"{"query":"q","documents":["a"],"top_n":0}"#, "top_n"),
            (
                r#"{"query":"q","documents":["a"],"return_documents":"yes"}"#,
                "return_documents",
            ),
        ] {
            let e = rerank_call(body.as_bytes()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn by_index_restores_input_order_and_rejects_gaps_and_repeats() {
        let data = json!([
            {"index": 2, "embedding": [2.0]},
            {"index": 0, "embedding": [0.0]},
            {"index": 1, "embedding": [1.0]},
        ]);
        assert_eq!(
            by_index(Some(&data), "p").unwrap(),
            vec![json!([0.0]), json!([1.0]), json!([2.0])]
        );
        for bad in [
            json!([{"index": 0, "embedding": [0.0]}, {"index": 0, "embedding": [1.0]}]),
            json!([{"index": 0, "embedding": [0.0]}, {"index": 5, "embedding": [1.0]}]),
            json!([{"embedding": [0.0]}]),
        ] {
            assert_eq!(by_index(Some(&bad), "p").unwrap_err().status(), 502);
        }
    }

    #[test]
    fn rerank_answer_keeps_order_and_adds_documents_usage_and_meta() {
        let results = vec![
            Ranked::read(
                &json!({"index": 2, "relevance_score": 0.9}),
                Some("c".into()),
                "p",
            )
            .unwrap(),
            Ranked::read(&json!({"index": 0, "relevance_score": 0.1}), None, "p").unwrap(),
        ];
        let meta = json!({"billed_units": {"search_units": 1}});
        let t = rerank_answer(Some("r1"), results, Some(12), Some(&meta), "p", &ctx()).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "r1",
                "model": "mine",
                "results": [
                    {"index": 2, "relevance_score": 0.9, "document": {"text": "c"}},
                    {"index": 0, "relevance_score": 0.1},
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12},
                "meta": {"billed_units": {"search_units": 1}},
            })
        );
    }

    #[test]
    fn rerank_answer_without_an_id_gets_a_fresh_one() {
        let a = rerank_answer(None, Vec::new(), None, None, "jina", &ctx()).unwrap();
        let b = rerank_answer(None, Vec::new(), None, None, "jina", &ctx()).unwrap();
        let id = |t: &Translated| {
            serde_json::from_slice::<Value>(&t.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert!(id(&a).starts_with("rerank-jina-"));
        assert_ne!(id(&a), id(&b));
    }

    #[test]
    fn fastapi_validation_lists_become_one_message_with_the_field() {
        let body = br#"{"detail":[{"loc":["body","top_k"],"msg":"ensure this value is greater than 0","type":"value_error"}]}"#;
        let e = fastapi_error("voyage", 422, body);
        assert_eq!(e.status(), 400);
        assert!(
            e.message.contains("top_k: ensure this value"),
            "{}",
            e.message
        );
        let e = fastapi_error("voyage", 400, br#"{"detail":"bad model"}"#);
        assert_eq!(e.message, "voyage: bad model");
    }

    #[test]
    fn counts_accept_integers_and_cohere_doubles() {
        assert_eq!(count(Some(&json!(5))), Some(5));
        assert_eq!(count(Some(&json!(5.0))), Some(5));
        assert_eq!(count(Some(&json!(-1.0))), None);
        assert_eq!(count(None), None);
    }
}
