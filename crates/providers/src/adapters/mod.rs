//! Native adapters: translation between OpenAI chat completions and a provider's
//! own wire format, for providers that are not OpenAI-compatible.
//!
//! An adapter is pure translation: it never does I/O. The gateway builds the
//! upstream request from [`ChatAdapter::chat_request`], sends it with the shared
//! client, and feeds the answer back through [`ChatAdapter::chat_response`] or a
//! [`StreamTranslator`]. That keeps every adapter testable without a socket and
//! keeps retries, timeouts and metering in one place.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
pub mod gemini;

mod common;

use crate::registry::Adapter;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use liter_llm_protocol::ApiError;

/// What to send upstream, relative to the deployment's base URL.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Appended to the base URL; may carry a query string, e.g.
    /// `/models/gemini-2.0-flash:streamGenerateContent?alt=sse`.
    pub path: String,
    /// Headers beyond auth and `content-type: application/json`, e.g. `anthropic-version`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// What the gateway knows about the request when it asks for a translation.
#[derive(Debug, Clone, Copy)]
pub struct ChatContext<'a> {
    /// The provider's model id (`provider_model` without the provider prefix).
    pub upstream_model: &'a str,
    /// The name the client asked for; translated responses report this in `model`.
    pub requested_model: &'a str,
    pub stream: bool,
    /// The client asked for `stream_options.include_usage`: end the translated
    /// stream with OpenAI's usage chunk (`choices: []`).
    pub include_usage: bool,
}

/// AWS credentials for SigV4 signing.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// Per-deployment settings some providers need beyond a URL and a key.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    /// AWS region (Bedrock, SageMaker).
    pub region: Option<String>,
    pub aws: Option<AwsCredentials>,
}

/// Where the request goes, for adapters that must build URLs or sign requests.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTarget<'a> {
    /// The deployment's base URL, without a trailing slash.
    pub base_url: &'a str,
    pub options: &'a ProviderOptions,
}

/// Translation of one provider's chat API to and from OpenAI's.
pub trait ChatAdapter: Send + Sync {
    /// Build the upstream request from the client's OpenAI request body.
    /// A request the provider cannot express is a 400 naming the field.
    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError>;

    /// Like [`ChatAdapter::chat_request`], for adapters that need the target's
    /// base URL or options (Azure's api-version, SigV4 signing). The default
    /// ignores them.
    fn chat_request_for(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
        _target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        self.chat_request(openai_body, ctx)
    }

    /// Translate a successful non-streaming answer into an OpenAI
    /// `chat.completion` JSON body.
    fn chat_response(&self, upstream_body: &[u8], ctx: &ChatContext<'_>)
        -> Result<Bytes, ApiError>;

    /// A fresh translator for one streamed answer.
    fn chat_stream(&self, ctx: &ChatContext<'_>) -> Box<dyn StreamTranslator>;

    /// Map a non-2xx answer to the error the client sees; the HTTP status is
    /// preserved where it means the same thing for the client.
    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError;
}

impl std::fmt::Debug for dyn ChatAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatAdapter")
    }
}

/// Incremental translation of a provider's stream into OpenAI SSE bytes.
pub trait StreamTranslator: Send {
    /// Feed the next upstream bytes (arbitrary chunk boundaries); append any
    /// complete OpenAI SSE frames (`data: {...}\n\n`) to `out`. An error ends the
    /// stream: the caller sends it as an error event and stops.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError>;

    /// The upstream ended. Append the final frames (usage chunk if asked for,
    /// then `data: [DONE]\n\n`) if the provider's stream finished properly;
    /// otherwise return an error (the caller sends it instead of `[DONE]`).
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError>;
}

/// The adapter implementation for a registry adapter kind, if this build has one.
/// `Adapter::Openai` needs none: its requests are forwarded byte for byte.
pub fn native(adapter: Adapter) -> Option<&'static dyn ChatAdapter> {
    match adapter {
        Adapter::Anthropic => Some(&anthropic::AnthropicAdapter),
        Adapter::AzureOpenai => Some(&azure::AzureOpenAiAdapter),
        Adapter::AzureAi => Some(&azure::AzureAiAdapter),
        Adapter::Bedrock => Some(&bedrock::BedrockAdapter),
        Adapter::Cohere => Some(&cohere::CohereAdapter),
        Adapter::Gemini => Some(&gemini::GeminiAdapter),
        _ => None,
    }
}
