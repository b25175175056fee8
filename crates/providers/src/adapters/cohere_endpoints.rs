//! Cohere's v2 Embed (`POST /v2/embed`) and Rerank (`POST /v2/rerank`) APIs
//! behind OpenAI embeddings and Cohere-style rerank, for the `cohere` adapter.
//!
//! - **Embeddings.** `input` becomes `texts`; `dimensions` becomes
//!   `output_dimension`. Cohere requires `input_type`: the client's own
//!   (`search_document`, `search_query`, `classification`, `clustering`, or
//!   `query`/`document` for the search pair) is passed through, and
//!   `search_document` is the default, the type for text that will be searched
//!   over. `truncate` passes through. `embedding_types` is always `["float"]`:
//!   Cohere does not document the layout of its own base64 type, so base64 is
//!   encoded by the proxy. Usage is `meta.billed_units.input_tokens`.
//! - **Rerank.** Documents are sent as strings (`{"text"}` objects reduced),
//!   `top_n` and `max_tokens_per_doc` pass through. The v2 API never returns
//!   documents, so for `return_documents: true` each result's document is
//!   taken from the client's own request by `index`. Cohere bills rerank in
//!   search units, not tokens: the answer carries Cohere's `meta` (with
//!   `billed_units.search_units`) and no token usage.

use super::common::bad_upstream;
use super::embed_rerank::{self as er, one_of, pass, post_json, Ranked};
use super::embeddings;
use super::{ChatContext, EndpointRequest, Translated, UpstreamRequest};
use liter_llm_protocol::{ApiError, Endpoint};
use serde_json::{Map, Value};

const PROVIDER: &str = "cohere";

const INPUT_TYPES: &[&str] = &[
    "search_document",
    "search_query",
    "classification",
    "clustering",
    "document",
    "query",
];
const TRUNCATE: &[&str] = &["NONE", "START", "END"];

/// Whether the `cohere` adapter translates `endpoint`.
pub(crate) fn offers(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::Rerank
    )
}

pub(crate) fn request(
    req: &EndpointRequest<'_>,
    ctx: &ChatContext<'_>,
) -> Result<UpstreamRequest, ApiError> {
    match req.endpoint {
        Endpoint::Embeddings => post_json("/embed", &embed_request(req.body, ctx)?),
        Endpoint::Rerank => post_json("/rerank", &rerank_request(req.body, ctx)?),
        other => Err(super::not_offered(other)),
    }
}

pub(crate) fn response(
    req: &EndpointRequest<'_>,
    body: &[u8],
    ctx: &ChatContext<'_>,
) -> Result<Translated, ApiError> {
    match req.endpoint {
        Endpoint::Embeddings => embed_response(body, req, ctx),
        Endpoint::Rerank => rerank_response(body, req, ctx),
        other => Err(super::not_offered(other)),
    }
}

fn embed_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<Value, ApiError> {
    let req = embeddings::parse_request(body, PROVIDER)?;
    let mut out = Map::new();
    out.insert("model".into(), Value::from(ctx.upstream_model));
    out.insert("texts".into(), Value::from(req.inputs));
    let input_type = match one_of(&req.fields, "input_type", INPUT_TYPES)? {
        Some("query") => "search_query",
        Some("document") | None => "search_document",
        Some(t) => t,
    };
    out.insert("input_type".into(), Value::from(input_type));
    out.insert("embedding_types".into(), Value::from(vec!["float"]));
    if let Some(d) = req.dimensions {
        out.insert("output_dimension".into(), Value::from(d));
    }
    if let Some(t) = one_of(&req.fields, "truncate", TRUNCATE)? {
        out.insert("truncate".into(), Value::from(t));
    }
    Ok(Value::Object(out))
}

fn embed_response(
    body: &[u8],
    req: &EndpointRequest<'_>,
    ctx: &ChatContext<'_>,
) -> Result<Translated, ApiError> {
    let answer = er::answer(body, PROVIDER)?;
    let vectors = answer
        .get("embeddings")
        .and_then(|e| e.get("float"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream("cohere: the answer has no `embeddings.float`"))?;
    if let Some(texts) = answer.get("texts").and_then(Value::as_array) {
        if texts.len() != vectors.len() {
            return Err(bad_upstream(format!(
                "cohere: {} embeddings for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
    }
    let meta = answer.get("meta");
    let tokens = meta
        .and_then(|m| m.get("billed_units"))
        .and_then(|b| er::count(b.get("input_tokens")))
        .or_else(|| {
            meta.and_then(|m| m.get("tokens"))
                .and_then(|t| er::count(t.get("input_tokens")))
        });
    er::embed_answer(vectors, tokens, req, PROVIDER, ctx)
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
    pass(
        &call.fields,
        "max_tokens_per_doc",
        &mut out,
        |v| v.as_u64().is_some_and(|n| n >= 1),
        "a positive integer",
    )?;
    Ok(Value::Object(out))
}

fn rerank_response(
    body: &[u8],
    req: &EndpointRequest<'_>,
    ctx: &ChatContext<'_>,
) -> Result<Translated, ApiError> {
    let answer = er::answer(body, PROVIDER)?;
    // The client's request was checked before it was sent; without one (or
    // without `return_documents`) the results carry no documents.
    let documents = er::rerank_call(req.body)
        .ok()
        .filter(|c| c.return_documents)
        .map(|c| c.documents);
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream("cohere: the rerank answer has no `results`"))?
        .iter()
        .map(|item| {
            let document = match (&documents, item.get("index").and_then(Value::as_u64)) {
                (Some(docs), Some(i)) => {
                    let text = usize::try_from(i)
                        .ok()
                        .and_then(|i| docs.get(i))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            bad_upstream(format!(
                                "cohere: rerank result index {i} is not one of the documents"
                            ))
                        })?;
                    Some(text.to_string())
                }
                _ => None,
            };
            Ranked::read(item, document, PROVIDER)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = answer.get("meta");
    let tokens = meta
        .and_then(|m| m.get("billed_units"))
        .and_then(|b| er::count(b.get("input_tokens")));
    let id = answer.get("id").and_then(Value::as_str);
    er::rerank_answer(id, results, tokens, meta, PROVIDER, ctx)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::adapters::cohere::CohereAdapter;
    use crate::adapters::common::testing::{receive_json, send_json};
    use crate::adapters::ChatAdapter;
    use serde_json::json;

    fn ctx() -> ChatContext<'static> {
        ChatContext {
            upstream_model: "embed-v4.0",
            requested_model: "co",
            stream: false,
            include_usage: false,
        }
    }

    fn request(endpoint: Endpoint, body: Value) -> Result<(String, Value), ApiError> {
        send_json(
            &CohereAdapter,
            &ctx(),
            "https://api.cohere.com/v2",
            endpoint,
            &body,
        )
    }

    fn response_to(endpoint: Endpoint, client: Value, answer: Value) -> Result<Value, ApiError> {
        receive_json(&CohereAdapter, &ctx(), endpoint, &client, &answer)
    }

    fn response(endpoint: Endpoint, answer: Value) -> Result<Value, ApiError> {
        response_to(endpoint, json!({}), answer)
    }

    #[test]
    fn the_adapter_offers_chat_embeddings_and_rerank() {
        for e in [
            Endpoint::ChatCompletions,
            Endpoint::Embeddings,
            Endpoint::Rerank,
        ] {
            assert!(CohereAdapter.offers(e), "{e}");
        }
        assert!(!CohereAdapter.offers(Endpoint::AudioSpeech));
    }

    #[test]
    fn embeddings_default_to_search_document_floats() {
        let (path, body) = request(
            Endpoint::Embeddings,
            json!({"model": "co", "input": ["a", "b"], "user": "u", "encoding_format": "float"}),
        )
        .unwrap();
        assert_eq!(path, "/embed");
        assert_eq!(
            body,
            json!({"model": "embed-v4.0", "texts": ["a", "b"], "input_type": "search_document",
                   "embedding_types": ["float"]})
        );
    }

    #[test]
    fn embeddings_pass_input_type_truncate_dimensions_and_ask_floats_for_base64() {
        let (_, body) = request(
            Endpoint::Embeddings,
            json!({"input": "a", "input_type": "query", "truncate": "END", "dimensions": 512,
                   "encoding_format": "base64"}),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"model": "embed-v4.0", "texts": ["a"], "input_type": "search_query",
                   "embedding_types": ["float"], "output_dimension": 512, "truncate": "END"})
        );
        let (_, body) = request(
            Endpoint::Embeddings,
            json!({"input": "a", "input_type": "clustering"}),
        )
        .unwrap();
        assert_eq!(body["input_type"], "clustering");
        let e = request(
            Endpoint::Embeddings,
            json!({"input": "a", "input_type": "image"}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input_type"));
    }

    #[test]
    fn embeddings_answer_reports_billed_input_tokens() {
        let v = response(
            Endpoint::Embeddings,
            json!({"id": "e1", "response_type": "embeddings_by_type", "texts": ["a", "b"],
                   "embeddings": {"float": [[0.5], [0.25]]},
                   "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2.0}}}),
        )
        .unwrap();
        assert_eq!(
            v["data"][1],
            json!({"object": "embedding", "index": 1, "embedding": [0.25]})
        );
        assert_eq!(v["usage"], json!({"prompt_tokens": 2, "total_tokens": 2}));
        assert_eq!(v["model"], "co");
        let v = response_to(
            Endpoint::Embeddings,
            json!({"input": "a", "encoding_format": "base64"}),
            json!({"id": "e2", "texts": ["a"], "embeddings": {"float": [[1.0]]}}),
        )
        .unwrap();
        assert_eq!(v["data"][0]["embedding"], "AACAPw==");
        assert!(v.get("usage").is_none(), "no count, no usage: {v}");
    }

    #[test]
    fn embeddings_answer_that_does_not_match_the_texts_is_a_502() {
        let e = response(
            Endpoint::Embeddings,
            json!({"id": "e", "texts": ["a", "b"], "embeddings": {"float": [[0.5]]}}),
        )
        .unwrap_err();
        assert_eq!(e.status(), 502);
        let e = response(
            Endpoint::Embeddings,
            json!({"id": "e", "embeddings": {"int8": [[1]]}}),
        )
        .unwrap_err();
        assert_eq!(e.status(), 502);
        let e = response_to(
            Endpoint::Embeddings,
            json!({"input": ["a", "b", "c"]}),
            json!({"id": "e", "embeddings": {"float": [[1.0], [2.0]]}}),
        )
        .unwrap_err();
        assert_eq!(e.status(), 502);
    }

    #[test]
    fn rerank_sends_strings_and_never_asks_for_documents() {
        let (path, body) = request(
            Endpoint::Rerank,
            json!({"model": "co", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 2,
                   "max_tokens_per_doc": 512, "return_documents": true}),
        )
        .unwrap();
        assert_eq!(path, "/rerank");
        assert_eq!(
            body,
            json!({"model": "embed-v4.0", "query": "q", "documents": ["a", "b"], "top_n": 2,
                   "max_tokens_per_doc": 512})
        );
    }

    #[test]
    fn return_documents_takes_each_document_from_the_request_by_index() {
        let answer = json!({"id": "r", "results": [{"index": 1, "relevance_score": 0.9},
                                                   {"index": 0, "relevance_score": 0.1}]});
        let v = response_to(
            Endpoint::Rerank,
            json!({"query": "q", "documents": ["a", {"text": "b"}], "return_documents": true}),
            answer.clone(),
        )
        .unwrap();
        assert_eq!(
            v["results"],
            json!([{"index": 1, "relevance_score": 0.9, "document": {"text": "b"}},
                   {"index": 0, "relevance_score": 0.1, "document": {"text": "a"}}])
        );
        let v = response_to(
            Endpoint::Rerank,
            json!({"query": "q", "documents": ["a", "b"]}),
            answer.clone(),
        )
        .unwrap();
        assert!(v["results"][0].get("document").is_none());
        let e = response_to(
            Endpoint::Rerank,
            json!({"query": "q", "documents": ["a"], "return_documents": true}),
            answer,
        )
        .unwrap_err();
        assert_eq!(e.status(), 502);
    }

    #[test]
    fn rerank_answer_keeps_cohere_id_order_and_meta() {
        let meta = json!({"api_version": {"version": "2", "is_experimental": false},
                          "billed_units": {"search_units": 1}});
        let v = response(
            Endpoint::Rerank,
            json!({"id": "07734bd2", "meta": meta,
                   "results": [{"index": 3, "relevance_score": 0.999071},
                               {"index": 0, "relevance_score": 0.32713068}]}),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"id": "07734bd2", "model": "co",
                   "results": [{"index": 3, "relevance_score": 0.999071},
                               {"index": 0, "relevance_score": 0.32713068}],
                   "meta": meta})
        );
    }
}
