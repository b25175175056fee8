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
//! The translation itself is the Gemini and Anthropic adapters'; this module
//! only chooses between them and builds the Vertex paths. Auth is an OAuth2
//! access token the gateway obtains for the service account and sends as
//! `Authorization: Bearer`; adapters never do I/O.

use super::anthropic::{self, AnthropicAdapter};
use super::gemini::{self, GeminiAdapter};
use super::{ChatAdapter, ChatContext, StreamTranslator, UpstreamRequest};
use bytes::Bytes;
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::Value;

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
