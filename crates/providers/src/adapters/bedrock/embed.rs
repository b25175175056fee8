//! OpenAI `/v1/embeddings` on Bedrock's InvokeModel (`POST /model/{modelId}/invoke`),
//! SigV4-signed like Converse. The body is the model family's own (Bedrock user
//! guide, "Inference request parameters and response fields for foundation
//! models"):
//!
//! - **Amazon Titan Text Embeddings V2** (`amazon.titan-embed-text-v2:0`):
//!   `{inputText, dimensions?, normalize: true}` → `{embedding, inputTextTokenCount,
//!   embeddingsByType}`. `dimensions` goes through as given (Titan accepts 256,
//!   512 and 1024 and refuses the rest with a ValidationException); `normalize`
//!   is sent because OpenAI's vectors are unit length. **G1**
//!   (`amazon.titan-embed-text-v1`) takes `inputText` only and has a fixed size,
//!   so `dimensions` is a 400.
//!   Titan embeds one text per call and Bedrock documents no synchronous batch
//!   form (batch inference is an asynchronous S3 job), while an adapter builds
//!   exactly one upstream request: an `input` array of more than one text is a
//!   400 naming `input`.
//!   `inputTextTokenCount` is the usage.
//! - **Cohere Embed v3** (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`):
//!   `{texts, input_type}` → `{embeddings, id, response_type, texts}`, up to 96
//!   texts per call (Bedrock enforces it). `input_type` is required by Cohere and
//!   has no OpenAI field: the client may send it as an extension field, otherwise
//!   it is `search_document`; `truncate` passes through the same way. Cohere's
//!   v3 models have a fixed size, so `dimensions` is a 400. The body reports no
//!   token count (Bedrock puts it in the `X-Amzn-Bedrock-Input-Token-Count`
//!   response header, which adapters do not see), so the answer has no `usage`.
//!
//! Model ids may be cross-region inference profiles (`us.cohere.embed-…`) or
//! ARNs ending in a model id; the family is read from the id's tail.

use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};
use std::time::SystemTime;

use super::super::common::{bad_upstream, invalid};
use super::super::embeddings::{self, EmbeddingsRequest, Expected};
use super::super::{ChatContext, EndpointRequest, Translated, UpstreamRequest, UpstreamTarget};
use super::{sigv4, BedrockAdapter};

const PROVIDER: &str = "bedrock";

/// What `input_type` is when the client does not say: OpenAI clients embed
/// documents far more often than queries, and Cohere requires a value.
const DEFAULT_INPUT_TYPE: &str = "search_document";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    TitanV2,
    TitanV1,
    CohereV3,
}

/// The model family of a Bedrock model id, inference profile or ARN.
fn family(model: &str) -> Option<Family> {
    let id = model.rsplit('/').next().unwrap_or(model);
    // A cross-region inference profile prefixes the id with its geography.
    let id = match id.split_once('.') {
        Some((_, rest)) if rest.starts_with("amazon.") || rest.starts_with("cohere.") => rest,
        _ => id,
    };
    let has = |name: &str| id == name || id.starts_with(&format!("{name}:"));
    if has("amazon.titan-embed-text-v2") {
        Some(Family::TitanV2)
    } else if has("amazon.titan-embed-text-v1") {
        Some(Family::TitanV1)
    } else if has("cohere.embed-english-v3") || has("cohere.embed-multilingual-v3") {
        Some(Family::CohereV3)
    } else {
        None
    }
}

fn unsupported_model(model: &str) -> ApiError {
    invalid(
        "model",
        format!(
            "bedrock: embeddings are translated for Amazon Titan Text Embeddings \
             (amazon.titan-embed-text-v2:0, amazon.titan-embed-text-v1) and Cohere Embed v3 \
             (cohere.embed-english-v3, cohere.embed-multilingual-v3); `{model}` is neither"
        ),
    )
    .with_code("endpoint_not_supported")
}

fn fixed_size(model: &str) -> ApiError {
    invalid(
        "dimensions",
        format!("bedrock: `{model}` has a fixed embedding size; `dimensions` is not supported"),
    )
}

/// The InvokeModel body for an OpenAI embeddings request.
fn build(req: &EmbeddingsRequest, model: &str) -> Result<Value, ApiError> {
    let family = family(model).ok_or_else(|| unsupported_model(model))?;
    match family {
        Family::TitanV2 | Family::TitanV1 => {
            let [text] = req.inputs.as_slice() else {
                return Err(invalid(
                    "input",
                    format!(
                        "bedrock: Titan embeds one text per request and Bedrock has no synchronous batch form; send {} requests of one input each",
                        req.inputs.len()
                    ),
                ));
            };
            let mut body = Map::new();
            body.insert("inputText".into(), Value::from(text.as_str()));
            if family == Family::TitanV2 {
                if let Some(d) = req.dimensions {
                    body.insert("dimensions".into(), Value::from(d));
                }
                body.insert("normalize".into(), Value::Bool(true));
            } else if req.dimensions.is_some() {
                return Err(fixed_size(model));
            }
            Ok(Value::Object(body))
        }
        Family::CohereV3 => {
            if req.dimensions.is_some() {
                return Err(fixed_size(model));
            }
            let input_type = req.extension("input_type")?.unwrap_or(DEFAULT_INPUT_TYPE);
            let mut body = json!({"texts": req.inputs, "input_type": input_type});
            if let Some(truncate) = req.extension("truncate")? {
                body["truncate"] = Value::from(truncate);
            }
            Ok(body)
        }
    }
}

/// The signed InvokeModel request, signed as of `now`.
pub(super) fn request_at(
    call: &EndpointRequest<'_>,
    ctx: &ChatContext<'_>,
    target: &UpstreamTarget<'_>,
    now: SystemTime,
) -> Result<UpstreamRequest, ApiError> {
    let req = embeddings::parse_request(call.body, PROVIDER)?;
    let body = build(&req, ctx.upstream_model)?;
    let body = serde_json::to_vec(&body).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("could not encode the bedrock request: {e}"),
        )
    })?;
    let unsigned = UpstreamRequest {
        method: Method::POST,
        path: format!(
            "/model/{}/invoke",
            sigv4::uri_encode(ctx.upstream_model, false)
        ),
        headers: Vec::new(),
        content_type: None,
        body: Bytes::from(body),
    };
    BedrockAdapter::sign(unsigned, target, now)
}

/// Translates the InvokeModel answer of either family.
pub(super) fn response(
    upstream_body: &[u8],
    expected: &Expected,
    ctx: &ChatContext<'_>,
) -> Result<Translated, ApiError> {
    let v: Value = serde_json::from_slice(upstream_body).map_err(|_| {
        bad_upstream("bedrock: the upstream answered 200 with a body that is not JSON")
    })?;
    let (vectors, tokens) = if let Some(one) = v.get("embedding") {
        let tokens = v.get("inputTextTokenCount").and_then(Value::as_u64);
        (
            vec![embeddings::vector(Some(one), PROVIDER, "embedding")?],
            tokens,
        )
    } else if let Some(list) = v.get("embeddings") {
        // `embeddings_floats` is an array of vectors; `embeddings_by_type` (when
        // `embedding_types` was asked for) keys them by type.
        let list = list.get("float").unwrap_or(list);
        let list = list
            .as_array()
            .ok_or_else(|| bad_upstream("bedrock: `embeddings` in the answer is not an array"))?;
        let vectors = list
            .iter()
            .enumerate()
            .map(|(i, e)| embeddings::vector(Some(e), PROVIDER, &format!("embeddings[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        (vectors, None)
    } else {
        return Err(bad_upstream(
            "bedrock: the answer has neither `embedding` nor `embeddings`",
        ));
    };
    embeddings::check_count(expected, vectors.len(), PROVIDER)?;
    embeddings::openai_list(vectors, expected.encoding, ctx.requested_model, tokens)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::super::{AwsCredentials, ProviderOptions};
    use super::*;
    use liter_llm_protocol::Endpoint;
    use std::time::{Duration, UNIX_EPOCH};

    fn ctx(model: &'static str) -> ChatContext<'static> {
        ChatContext {
            upstream_model: model,
            requested_model: "emb",
            stream: false,
            include_usage: false,
        }
    }

    fn options() -> ProviderOptions {
        ProviderOptions {
            region: Some("us-east-1".into()),
            aws: Some(AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            }),
            ..ProviderOptions::default()
        }
    }

    fn req(model: &'static str, body: Value) -> Result<(UpstreamRequest, Value), ApiError> {
        let bytes = body.to_string();
        let call = EndpointRequest {
            endpoint: Endpoint::Embeddings,
            body: bytes.as_bytes(),
            content_type: None,
        };
        let opts = options();
        let target = UpstreamTarget {
            base_url: "https://bedrock-runtime.us-east-1.amazonaws.com",
            options: &opts,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let up = request_at(&call, &ctx(model), &target, now)?;
        let sent = serde_json::from_slice(&up.body).unwrap();
        Ok((up, sent))
    }

    fn resp(upstream: Value, client: Value) -> Value {
        let expected = embeddings::expected(client.to_string().as_bytes());
        let t = response(upstream.to_string().as_bytes(), &expected, &ctx("m")).unwrap();
        serde_json::from_slice(&t.body).unwrap()
    }

    fn param(e: &ApiError) -> Value {
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        v["error"]["param"].clone()
    }

    #[test]
    fn families_are_read_from_ids_profiles_and_arns() {
        for (id, f) in [
            ("amazon.titan-embed-text-v2:0", Some(Family::TitanV2)),
            ("amazon.titan-embed-text-v1", Some(Family::TitanV1)),
            ("amazon.titan-embed-text-v1:2:8k", Some(Family::TitanV1)),
            ("cohere.embed-english-v3", Some(Family::CohereV3)),
            ("us.cohere.embed-multilingual-v3", Some(Family::CohereV3)),
            (
                "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
                Some(Family::TitanV2),
            ),
            ("amazon.titan-embed-image-v1", None),
            ("cohere.embed-v4:0", None),
            ("anthropic.claude-3-haiku-20240307-v1:0", None),
        ] {
            assert_eq!(family(id), f, "{id}");
        }
    }

    #[test]
    fn titan_v2_is_one_signed_invoke_with_dimensions_and_normalize() {
        let (up, sent) = req(
            "amazon.titan-embed-text-v2:0",
            json!({"model": "emb", "input": "hello", "dimensions": 256}),
        )
        .unwrap();
        assert_eq!(up.method, Method::POST);
        assert_eq!(up.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
        assert_eq!(
            sent,
            json!({"inputText": "hello", "dimensions": 256, "normalize": true})
        );
        let names: Vec<&str> = up.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["authorization", "x-amz-date"]);
        let auth = up.headers[0].1.to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
        ), "{auth}");

        // A one-element array is still one text.
        let (_, sent) = req("amazon.titan-embed-text-v2:0", json!({"input": ["only"]})).unwrap();
        assert_eq!(sent, json!({"inputText": "only", "normalize": true}));
    }

    #[test]
    fn titan_refuses_several_inputs_and_v1_refuses_dimensions() {
        let e = req("amazon.titan-embed-text-v2:0", json!({"input": ["a", "b"]})).unwrap_err();
        assert_eq!((e.status().as_u16(), param(&e)), (400, json!("input")));
        let (_, sent) = req("amazon.titan-embed-text-v1", json!({"input": "a"})).unwrap();
        assert_eq!(sent, json!({"inputText": "a"}));
        let e = req(
            "amazon.titan-embed-text-v1",
            json!({"input": "a", "dimensions": 512}),
        )
        .unwrap_err();
        assert_eq!(param(&e), "dimensions");
    }

    #[test]
    fn cohere_sends_all_texts_with_an_input_type() {
        let (up, sent) = req("cohere.embed-english-v3", json!({"input": ["b", "a", "c"]})).unwrap();
        assert_eq!(up.path, "/model/cohere.embed-english-v3/invoke");
        assert_eq!(
            sent,
            json!({"texts": ["b", "a", "c"], "input_type": "search_document"})
        );
        let (_, sent) = req(
            "cohere.embed-multilingual-v3",
            json!({"input": "q", "input_type": "search_query", "truncate": "END"}),
        )
        .unwrap();
        assert_eq!(
            sent,
            json!({"texts": ["q"], "input_type": "search_query", "truncate": "END"})
        );
        let e = req(
            "cohere.embed-english-v3",
            json!({"input": "q", "dimensions": 8}),
        )
        .unwrap_err();
        assert_eq!(param(&e), "dimensions");
        let e = req(
            "cohere.embed-english-v3",
            json!({"input": "q", "input_type": 2}),
        )
        .unwrap_err();
        assert_eq!(param(&e), "input_type");
    }

    #[test]
    fn other_models_and_missing_credentials_are_refused() {
        let e = req("amazon.titan-embed-image-v1", json!({"input": "a"})).unwrap_err();
        assert_eq!((e.status().as_u16(), param(&e)), (400, json!("model")));

        let body = json!({"input": "a"}).to_string();
        let call = EndpointRequest {
            endpoint: Endpoint::Embeddings,
            body: body.as_bytes(),
            content_type: None,
        };
        let opts = ProviderOptions::default();
        let target = UpstreamTarget {
            base_url: "https://bedrock-runtime.us-east-1.amazonaws.com",
            options: &opts,
        };
        let e = request_at(
            &call,
            &ctx("cohere.embed-english-v3"),
            &target,
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(e.status(), 500);
    }

    #[test]
    fn titan_answer_reports_its_token_count() {
        let v = resp(
            json!({"embedding": [0.5, 0.25], "inputTextTokenCount": 4, "embeddingsByType": {"float": [0.5, 0.25]}}),
            json!({"input": "x"}),
        );
        assert_eq!(
            v,
            json!({
                "object": "list",
                "model": "emb",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            })
        );
    }

    #[test]
    fn cohere_answer_keeps_order_has_no_usage_and_encodes_base64() {
        let body = json!({
            "embeddings": [[1.0], [2.0], [3.0]],
            "id": "e5c5ab2e",
            "response_type": "embeddings_floats",
            "texts": ["a", "b", "c"],
        });
        let v = resp(body.clone(), json!({"input": ["a", "b", "c"]}));
        let firsts: Vec<f64> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                assert_eq!(d["index"], i);
                d["embedding"][0].as_f64().unwrap()
            })
            .collect();
        assert_eq!(firsts, [1.0, 2.0, 3.0]);
        assert!(v.get("usage").is_none());

        let v = resp(
            body,
            json!({"input": ["a", "b", "c"], "encoding_format": "base64"}),
        );
        assert_eq!(v["data"][0]["embedding"], "AACAPw==");

        let by_type =
            json!({"embeddings": {"float": [[1.0]]}, "response_type": "embeddings_by_type"});
        let v = resp(by_type, json!({"input": "a"}));
        assert_eq!(v["data"][0]["embedding"], json!([1.0]));
    }

    #[test]
    fn malformed_or_short_answers_are_502s() {
        let expected = embeddings::expected(br#"{"input":["a","b"]}"#);
        for body in [
            "<html>",
            r#"{"embeddings": [[1.0]]}"#,
            r#"{"embeddings": "x"}"#,
            r#"{"embedding": [1.0, "x"]}"#,
            r#"{"message": "hi"}"#,
        ] {
            let e = response(body.as_bytes(), &expected, &ctx("m")).unwrap_err();
            assert_eq!(e.status(), 502, "{body}");
        }
    }
}
