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
pub mod deepgram;
pub mod elevenlabs;
pub mod gemini;
pub mod jina;
pub mod mistral;
pub mod ollama;
pub mod sagemaker;
pub mod search;
pub mod stability;
pub mod vertex;
pub mod voyage;
pub mod watsonx;

mod cohere_endpoints;
mod common;
mod embed_rerank;
mod embeddings;
mod gemini_embed;
mod speech;

use crate::registry::Adapter;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use liter_llm_protocol::{ApiError, Endpoint};

/// What to send upstream, relative to the deployment's base URL.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Appended to the base URL; may carry a query string, e.g.
    /// `/models/gemini-2.0-flash:streamGenerateContent?alt=sse`.
    pub path: String,
    /// Headers beyond auth and the content type, e.g. `anthropic-version`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `None` means `application/json`.
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// A non-chat request as the client sent it.
#[derive(Debug, Clone, Copy)]
pub struct EndpointRequest<'a> {
    pub endpoint: Endpoint,
    pub body: &'a [u8],
    /// The client's content type; a multipart upload's carries its boundary.
    pub content_type: Option<&'a str>,
}

impl<'a> EndpointRequest<'a> {
    /// A text field of a multipart upload (`response_format`, `language`, ...).
    pub fn form_field(&self, name: &str) -> Option<&'a str> {
        let boundary = liter_llm_protocol::multipart::boundary(self.content_type?)?;
        let body: &'a [u8] = self.body;
        liter_llm_protocol::multipart::parse(body, boundary)
            .ok()?
            .into_iter()
            .find(|p| p.name == name)
            .and_then(|p| p.text(body))
            .map(str::trim)
    }

    /// The answer is text (`response_format` text, srt or vtt), not JSON.
    pub fn wants_text(&self) -> bool {
        self.endpoint == Endpoint::AudioTranscriptions
            && matches!(
                self.form_field("response_format"),
                Some("text" | "srt" | "vtt")
            )
    }
}

/// A translated answer and its content type.
#[derive(Debug, Clone)]
pub struct Translated {
    pub body: Bytes,
    pub content_type: HeaderValue,
}

impl Translated {
    pub fn json(body: impl Into<Bytes>) -> Translated {
        Translated {
            body: body.into(),
            content_type: HeaderValue::from_static("application/json"),
        }
    }
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
    /// Azure's `api-version` query parameter; watsonx.ai's `version`.
    pub api_version: Option<String>,
    /// AWS region (Bedrock, SageMaker).
    pub region: Option<String>,
    pub aws: Option<AwsCredentials>,
    /// The watsonx.ai project or deployment space requests run in.
    pub watsonx: Option<watsonx::WatsonxScope>,
}

/// Where the request goes, for adapters that must build URLs or sign requests.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTarget<'a> {
    /// The deployment's base URL, without a trailing slash.
    pub base_url: &'a str,
    pub options: &'a ProviderOptions,
}

/// Translation of one provider's APIs to and from OpenAI's: chat completions,
/// and whichever other endpoints [`ChatAdapter::offers`] names. Providers that
/// have no chat API (search, speech) implement only the endpoint methods.
pub trait ChatAdapter: Send + Sync {
    /// Whether this adapter translates `endpoint`. The gateway refuses other
    /// endpoints for this provider with a 400 before anything is sent.
    fn offers(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::ChatCompletions
    }

    /// Build the upstream request for a non-chat endpoint the adapter offers.
    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        _ctx: &ChatContext<'_>,
        _target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        Err(not_offered(req.endpoint))
    }

    /// Translate a successful non-chat answer. Not called for endpoints whose
    /// answer is relayed as raw bytes ([`Endpoint::streams_bytes`]).
    fn endpoint_response(
        &self,
        endpoint: Endpoint,
        _upstream_body: &[u8],
        _ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        Err(not_offered(endpoint))
    }

    /// Like [`ChatAdapter::endpoint_response`], for translations that depend
    /// on what the client asked for (a transcription's `response_format`
    /// decides between JSON, text and subtitles). The default ignores the
    /// request.
    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        self.endpoint_response(req.endpoint, upstream_body, ctx)
    }

    /// The content type of an answer relayed as raw bytes
    /// ([`Endpoint::streams_bytes`]), when the upstream's own cannot be
    /// trusted to name the format the client asked for. `None` keeps the
    /// upstream's.
    fn relayed_content_type(
        &self,
        _req: &EndpointRequest<'_>,
        _upstream: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        None
    }

    /// Build the upstream request from the client's OpenAI request body.
    /// A request the provider cannot express is a 400 naming the field.
    fn chat_request(
        &self,
        _openai_body: &[u8],
        _ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        Err(not_offered(Endpoint::ChatCompletions))
    }

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
    fn chat_response(
        &self,
        _upstream_body: &[u8],
        _ctx: &ChatContext<'_>,
    ) -> Result<Bytes, ApiError> {
        Err(not_offered(Endpoint::ChatCompletions))
    }

    /// A fresh translator for one streamed answer.
    fn chat_stream(&self, _ctx: &ChatContext<'_>) -> Box<dyn StreamTranslator> {
        Box::new(NoStream)
    }

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

/// The error for an endpoint an adapter does not translate. The gateway checks
/// [`ChatAdapter::offers`] first, so clients normally see its own message.
pub fn not_offered(endpoint: Endpoint) -> ApiError {
    ApiError::invalid_request(format!(
        "this provider's adapter does not translate `{endpoint}`"
    ))
    .with_param("model")
    .with_code("endpoint_not_supported")
}

/// The translator of an adapter without a chat API; never fed, because the
/// gateway refuses chat for such providers before sending anything.
struct NoStream;

impl StreamTranslator for NoStream {
    fn feed(&mut self, _chunk: &[u8], _out: &mut Vec<u8>) -> Result<(), ApiError> {
        Err(not_offered(Endpoint::ChatCompletions))
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), ApiError> {
        Err(not_offered(Endpoint::ChatCompletions))
    }
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
        Adapter::Tavily => Some(&search::TavilyAdapter),
        Adapter::Brave => Some(&search::BraveAdapter),
        Adapter::Exa => Some(&search::ExaAdapter),
        Adapter::Firecrawl => Some(&search::FirecrawlAdapter),
        Adapter::Serper => Some(&search::SerperAdapter),
        Adapter::Linkup => Some(&search::LinkupAdapter),
        Adapter::Searxng => Some(&search::SearxngAdapter),
        Adapter::Elevenlabs => Some(&elevenlabs::ElevenLabsAdapter),
        Adapter::Deepgram => Some(&deepgram::DeepgramAdapter),
        Adapter::Stability => Some(&stability::StabilityAdapter),
        Adapter::Mistral => Some(&mistral::MistralAdapter),
        Adapter::Voyage => Some(&voyage::VoyageAdapter),
        Adapter::Jina => Some(&jina::JinaAdapter),
        Adapter::VertexAi => Some(&vertex::VertexAiAdapter),
        Adapter::Watsonx => Some(&watsonx::WatsonxAdapter),
        Adapter::Sagemaker => Some(&sagemaker::SagemakerAdapter),
        Adapter::Ollama => Some(&ollama::OllamaAdapter),
        _ => None,
    }
}
