//! Google Vertex AI behind OpenAI chat completions: Gemini models and
//! Anthropic's Claude models, both served from a Google Cloud project.
//!
//! The deployment's base URL is the regional project location,
//! `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}`
//! (the gateway fills in project and location). The model id picks the
//! publisher:
//!
//! - `claude-*` is Anthropic's: `POST {base}/publishers/anthropic/models/{model}:rawPredict`
//!   (`:streamRawPredict` for streams). The body is the Anthropic Messages body
//!   without `model` (the URL names it) and with
//!   `"anthropic_version": "vertex-2023-10-16"` instead of the `anthropic-version`
//!   header; answers, streams and errors are the Messages API's.
//! - anything else is Google's: `POST {base}/publishers/google/models/{model}:generateContent`
//!   (`:streamGenerateContent?alt=sse`), with the Gemini API's request and
//!   response bodies.
//!
//! Embeddings (`/v1/embeddings`) use Google's text-embedding models through
//! `POST {base}/publishers/google/models/{model}:predict` with one
//! `instances[]` entry (`content`, optional `task_type` / `title`) per input,
//! in the client's order, and `parameters.outputDimensionality` from OpenAI
//! `dimensions`; each of `predictions[].embeddings` carries `values` and
//! `statistics.token_count`, whose sum is the usage.
//!
//! The translation itself is the Gemini and Anthropic adapters'; this module
//! only chooses between them and builds the Vertex paths. Auth is an OAuth2
//! access token the gateway obtains for the service account and sends as
//! `Authorization: Bearer`; adapters never do I/O.

use super::anthropic::{self, AnthropicAdapter};
use super::common::bad_upstream;
use super::embeddings::{self, EmbeddingsRequest};
use super::gemini::{self, GeminiAdapter};
use super::{
    ChatAdapter, ChatContext, EndpointRequest, StreamTranslator, Translated, UpstreamRequest,
    UpstreamTarget,
};
use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, Endpoint, ErrorKind};
use serde_json::{json, Map, Value};

/// The `anthropic_version` Vertex AI requires in Claude request bodies.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Vertex AI: Gemini and Claude models of one project and location.
#[derive(Debug, Default, Clone, Copy)]
pub struct VertexAiAdapter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publisher {
    Google,
    Anthropic,
}

fn publisher(model: &str) -> Publisher {
    if model.to_ascii_lowercase().starts_with("claude-") {
        Publisher::Anthropic
    } else {
        Publisher::Google
    }
}

/// The model id must stay one path segment: it is pasted into the URL.
fn checked_model(model: &str) -> Result<&str, ApiError> {
    let valid = !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if valid {
        Ok(model)
    } else {
        Err(ApiError::invalid_request(format!(
            "vertex_ai: `{model}` is not a valid Vertex AI model id"
        ))
        .with_param("model"))
    }
}

fn encode(v: &Value) -> Result<Bytes, ApiError> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("vertex_ai: request encoding: {e}"),
        )
    })
}

fn gemini_request(openai_body: &[u8], ctx: &ChatContext<'_>) -> Result<UpstreamRequest, ApiError> {
    let model = checked_model(ctx.upstream_model)?;
    let body = gemini::build_request(openai_body)?;
    let path = if ctx.stream {
        format!("/publishers/google/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/publishers/google/models/{model}:generateContent")
    };
    Ok(UpstreamRequest {
        method: Method::POST,
        path,
        headers: Vec::new(),
        content_type: None,
        body: encode(&body)?,
    })
}

fn anthropic_request(
    openai_body: &[u8],
    ctx: &ChatContext<'_>,
) -> Result<UpstreamRequest, ApiError> {
    let model = checked_model(ctx.upstream_model)?;
    // Vertex ids carry the snapshot after `@` (`claude-sonnet-4-5@20250929`);
    // the translation's model-generation checks want the plain name.
    let family = ChatContext {
        upstream_model: model.split('@').next().unwrap_or(model),
        ..*ctx
    };
    let mut body = anthropic::translate_request(openai_body, &family)?;
    if let Some(obj) = body.as_object_mut() {
        obj.remove("model");
        obj.insert(
            "anthropic_version".into(),
            Value::from(VERTEX_ANTHROPIC_VERSION),
        );
    }
    let action = if ctx.stream {
        "streamRawPredict"
    } else {
        "rawPredict"
    };
    Ok(UpstreamRequest {
        method: Method::POST,
        path: format!("/publishers/anthropic/models/{model}:{action}"),
        headers: Vec::new(),
        content_type: None,
        body: encode(&body)?,
    })
}

/// The `:predict` body for Google's text-embedding models.
fn embedding_instances(req: &EmbeddingsRequest) -> Result<Value, ApiError> {
    let task_type = req.extension("task_type")?;
    let title = req.extension("title")?;
    let instances: Vec<Value> = req
        .inputs
        .iter()
        .map(|text| {
            let mut instance = Map::new();
            instance.insert("content".into(), Value::from(text.as_str()));
            if let Some(t) = task_type {
                instance.insert("task_type".into(), Value::from(t));
            }
            if let Some(t) = title {
                instance.insert("title".into(), Value::from(t));
            }
            Value::Object(instance)
        })
        .collect();
    let mut body = json!({ "instances": instances });
    if let Some(d) = req.dimensions {
        body["parameters"] = json!({ "outputDimensionality": d });
    }
    Ok(body)
}

fn embeddings_request(
    call: &EndpointRequest<'_>,
    ctx: &ChatContext<'_>,
) -> Result<UpstreamRequest, ApiError> {
    let model = checked_model(ctx.upstream_model)?;
    if publisher(model) == Publisher::Anthropic {
        return Err(ApiError::invalid_request(format!(
            "vertex_ai: `{model}` is a Claude model; Claude has no embeddings"
        ))
        .with_param("model")
        .with_code("endpoint_not_supported"));
    }
    let req = embeddings::parse_request(call.body, "vertex_ai")?;
    Ok(UpstreamRequest {
        method: Method::POST,
        path: format!("/publishers/google/models/{model}:predict"),
        headers: Vec::new(),
        content_type: None,
        body: encode(&embedding_instances(&req)?)?,
    })
}

fn embeddings_response(
    call: &EndpointRequest<'_>,
    upstream_body: &[u8],
    ctx: &ChatContext<'_>,
) -> Result<Translated, ApiError> {
    let expected = embeddings::expected(call.body);
    let v: Value = serde_json::from_slice(upstream_body).map_err(|_| {
        bad_upstream("vertex_ai: the upstream answered 200 with a body that is not JSON")
    })?;
    let predictions = v
        .get("predictions")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream("vertex_ai: the answer has no `predictions` array"))?;
    let mut vectors = Vec::with_capacity(predictions.len());
    let mut tokens: Option<u64> = None;
    for (i, p) in predictions.iter().enumerate() {
        let e = p.get("embeddings");
        vectors.push(embeddings::vector(
            e.and_then(|e| e.get("values")),
            "vertex_ai",
            &format!("predictions[{i}].embeddings.values"),
        )?);
        if let Some(n) = e
            .and_then(|e| e.get("statistics"))
            .and_then(|s| s.get("token_count"))
            .and_then(Value::as_f64)
        {
            *tokens.get_or_insert(0) += n as u64;
        }
    }
    embeddings::check_count(&expected, vectors.len(), "vertex_ai")?;
    embeddings::openai_list(vectors, expected.encoding, ctx.requested_model, tokens)
}

/// Anthropic's errors say `"type": "error"`; Google's envelope (which Vertex's
/// front end also uses for Claude requests it rejects itself) does not.
fn is_anthropic_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v.get("type").and_then(Value::as_str) == Some("error"))
}

impl ChatAdapter for VertexAiAdapter {
    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match publisher(ctx.upstream_model) {
            Publisher::Google => gemini_request(openai_body, ctx),
            Publisher::Anthropic => anthropic_request(openai_body, ctx),
        }
    }

    fn chat_response(
        &self,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Bytes, ApiError> {
        match publisher(ctx.upstream_model) {
            Publisher::Google => GeminiAdapter.chat_response(upstream_body, ctx),
            Publisher::Anthropic => AnthropicAdapter.chat_response(upstream_body, ctx),
        }
    }

    fn chat_stream(&self, ctx: &ChatContext<'_>) -> Box<dyn StreamTranslator> {
        match publisher(ctx.upstream_model) {
            Publisher::Google => GeminiAdapter.chat_stream(ctx),
            Publisher::Anthropic => AnthropicAdapter.chat_stream(ctx),
        }
    }

    fn offers(&self, endpoint: Endpoint) -> bool {
        matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Embeddings)
    }

    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        _target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match req.endpoint {
            Endpoint::Embeddings => embeddings_request(req, ctx),
            other => Err(super::not_offered(other)),
        }
    }

    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        match req.endpoint {
            Endpoint::Embeddings => embeddings_response(req, upstream_body, ctx),
            other => Err(super::not_offered(other)),
        }
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        if is_anthropic_error(upstream_body) {
            AnthropicAdapter.error(status, upstream_body)
        } else {
            GeminiAdapter.error(status, upstream_body)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(model: &str, stream: bool) -> ChatContext<'_> {
        ChatContext {
            upstream_model: model,
            requested_model: "vx",
            stream,
            include_usage: true,
        }
    }

    fn request(model: &str, stream: bool, body: Value) -> (String, Value) {
        let r = VertexAiAdapter
            .chat_request(body.to_string().as_bytes(), &ctx(model, stream))
            .unwrap();
        assert_eq!(r.method, Method::POST);
        assert!(r.headers.is_empty(), "{:?}", r.headers);
        (r.path, serde_json::from_slice(&r.body).unwrap())
    }

    fn hi() -> Value {
        json!({"model": "vx", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})
    }

    fn embed_call(body: &Value) -> Vec<u8> {
        body.to_string().into_bytes()
    }

    #[test]
    fn embeddings_use_predict_with_one_instance_per_input_in_order() {
        let body = embed_call(&json!({
            "model": "emb", "input": ["first", "second"], "dimensions": 256, "task_type": "RETRIEVAL_QUERY"
        }));
        let call = EndpointRequest {
            endpoint: Endpoint::Embeddings,
            body: &body,
            content_type: None,
        };
        let options = super::super::ProviderOptions::default();
        let target = UpstreamTarget {
            base_url: "",
            options: &options,
        };
        let up = VertexAiAdapter
            .endpoint_request(&call, &ctx("text-embedding-005", false), &target)
            .unwrap();
        assert_eq!(
            up.path,
            "/publishers/google/models/text-embedding-005:predict"
        );
        let sent: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(sent["instances"][0]["content"], "first");
        assert_eq!(sent["instances"][1]["content"], "second");
        assert_eq!(sent["instances"][1]["task_type"], "RETRIEVAL_QUERY");
        assert_eq!(sent["parameters"]["outputDimensionality"], 256);
        let answer = json!({"predictions": [
            {"embeddings": {"values": [0.5, 1.0], "statistics": {"token_count": 2.0, "truncated": false}}},
            {"embeddings": {"values": [0.25, 2.0], "statistics": {"token_count": 3.0, "truncated": false}}}
        ]});
        let out = VertexAiAdapter
            .endpoint_response_for(
                &call,
                answer.to_string().as_bytes(),
                &ctx("text-embedding-005", false),
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["data"][1]["embedding"], json!([0.25, 2.0]));
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["usage"]["prompt_tokens"], 5);
    }

    #[test]
    fn claude_has_no_embeddings() {
        let body = embed_call(&json!({"model": "c", "input": "x"}));
        let call = EndpointRequest {
            endpoint: Endpoint::Embeddings,
            body: &body,
            content_type: None,
        };
        let options = super::super::ProviderOptions::default();
        let target = UpstreamTarget {
            base_url: "",
            options: &options,
        };
        let e = VertexAiAdapter
            .endpoint_request(&call, &ctx("claude-sonnet-4-5@20250929", false), &target)
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("endpoint_not_supported"));
    }

    #[test]
    fn gemini_models_use_the_google_publisher_paths_and_the_gemini_body() {
        let (path, body) = request("gemini-2.5-flash", false, hi());
        assert_eq!(
            path,
            "/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            body,
            json!({
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "generationConfig": {"maxOutputTokens": 50},
            })
        );
        let (path, _) = request("gemini-2.5-flash", true, hi());
        assert_eq!(
            path,
            "/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn claude_models_use_raw_predict_with_vertex_version_and_no_model() {
        let (path, body) = request("claude-sonnet-4-5@20250929", false, hi());
        assert_eq!(
            path,
            "/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
        );
        assert!(body.get("model").is_none(), "{body}");
        assert_eq!(body["anthropic_version"], VERTEX_ANTHROPIC_VERSION);
        assert_eq!(body["max_tokens"], 50);
        assert_eq!(body["messages"][0]["role"], "user");
        assert!(body.get("stream").is_none());

        let (path, body) = request("claude-sonnet-4-5@20250929", true, hi());
        assert_eq!(
            path,
            "/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
        );
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn snapshot_suffix_does_not_hide_the_claude_generation() {
        // Native structured output exists from 4.5 on; the `@date` must not
        // make a 4.5 model look like an old one.
        let schema = json!({
            "model": "vx",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "a", "schema": {"type": "object", "properties": {}}
            }},
        });
        let (_, body) = request("claude-sonnet-4-5@20250929", false, schema);
        assert!(body.get("output_config").is_some(), "{body}");
    }

    #[test]
    fn model_ids_that_would_reshape_the_url_are_refused() {
        for bad in ["gemini/../x", "claude-x?y=1", "", "a b"] {
            let e = VertexAiAdapter
                .chat_request(hi().to_string().as_bytes(), &ctx(bad, false))
                .unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert_eq!(e.param.as_deref(), Some("model"));
        }
    }

    #[test]
    fn answers_are_translated_by_the_publishers_adapter() {
        let gemini = json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "yo"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1, "totalTokenCount": 3},
        });
        let out: Value = serde_json::from_slice(
            &VertexAiAdapter
                .chat_response(gemini.to_string().as_bytes(), &ctx("gemini-2.5-pro", false))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "yo");
        assert_eq!(out["model"], "vx");

        let claude = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "hey"}], "stop_reason": "end_turn",
            "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1},
        });
        let out: Value = serde_json::from_slice(
            &VertexAiAdapter
                .chat_response(
                    claude.to_string().as_bytes(),
                    &ctx("claude-sonnet-4-5", false),
                )
                .unwrap(),
        )
        .unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], "hey");
        assert_eq!(out["usage"]["total_tokens"], 4);
    }

    #[test]
    fn errors_are_read_in_either_envelope() {
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = VertexAiAdapter.error(529, anthropic);
        assert_eq!(e.status(), 503);
        assert!(e.message.starts_with("anthropic: "), "{}", e.message);

        let google = br#"{"error":{"code":403,"message":"Permission denied on resource project p.","status":"PERMISSION_DENIED"}}"#;
        let e = VertexAiAdapter.error(403, google);
        assert_eq!(e.status(), 502);
        assert_eq!(e.code.as_deref(), Some("upstream_auth_failed"));
    }
}
