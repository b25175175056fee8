//! The chat pipeline as tower services: every layer is a `tower::Layer` over
//! `Service<ChatRequest, Response = ChatResponse, Error = ApiError>`, so each can
//! be tested alone and the stack's order is explicit in [`crate::layers::build`].

pub mod dispatch;
pub mod settle;

pub use settle::{Outcome, Settlement, Usage};

use crate::stream::SseRelay;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use liter_llm_protocol::ApiError;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;

/// Limits attached to a virtual key.
#[derive(Debug, Clone, Default)]
pub struct KeyLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub budget_limit: Option<f64>,
    pub budget_period: Option<liter_llm_config::BudgetPeriod>,
}

/// Who is calling, as far as the pipeline cares.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A stable, non-secret id: a digest prefix for virtual keys, `master` or `anonymous`.
    pub key_id: Arc<str>,
    pub limits: Option<Arc<KeyLimits>>,
}

/// The client's `Cache-Control` wishes.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheDirectives {
    /// Do not answer from the cache.
    pub no_cache: bool,
    /// Do not store this answer.
    pub no_store: bool,
}

/// Which OpenAI endpoint a request is for. Every layer applies to all of them;
/// only the upstream path and what native adapters can translate differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    /// Legacy text completions.
    Completions,
    Embeddings,
}

impl Endpoint {
    /// Path under an OpenAI-compatible base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }

    /// Stable name, used in cache keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// One request on its way through the layers.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub endpoint: Endpoint,
    /// The client's exact bytes.
    pub body: Bytes,
    /// The client-facing model name (may be changed by a fallback).
    pub model: String,
    /// Byte range of the `model` value in `body`.
    pub model_span: (usize, usize),
    pub stream: bool,
    /// The client asked for `stream_options.include_usage`.
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub caller: Caller,
    pub request_id: String,
    pub deadline: Instant,
    pub cache: CacheDirectives,
    /// A rough prompt size for admission before the upstream counts it: about four
    /// bytes of JSON per token.
    pub estimated_prompt_tokens: u64,
    pub settlement: Settlement,
}

pub type ChatResponse = http::Response<GatewayBody>;

/// A response body: a buffered JSON answer or a live stream.
pub enum GatewayBody {
    Full(Option<Bytes>),
    Stream(Pin<Box<SseRelay>>),
}

impl GatewayBody {
    pub fn full(b: impl Into<Bytes>) -> GatewayBody {
        GatewayBody::Full(Some(b.into()))
    }

    /// The bytes of a buffered answer (`None` for a stream).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            GatewayBody::Full(b) => b.as_ref(),
            GatewayBody::Stream(_) => None,
        }
    }
}

impl std::fmt::Debug for GatewayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayBody::Full(b) => write!(f, "Full({} bytes)", b.as_ref().map_or(0, Bytes::len)),
            GatewayBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Stream(s) => futures_util::Stream::poll_next(s.as_mut(), cx)
                .map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, GatewayBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// The boxed, cloneable service the proxy calls per request.
pub type ChatService = tower::util::BoxCloneSyncService<ChatRequest, ChatResponse, ApiError>;
