//! The chat pipeline as tower services: every layer is a `tower::Layer` over
//! `Service<ChatRequest, Response = ChatResponse, Error = ApiError>`, so each can
//! be tested alone and the stack's order is explicit in [`crate::layers::build`].

pub mod dispatch;
pub mod settle;

pub use settle::{Outcome, Settlement, Usage};

use crate::stream::{ByteRelay, SseRelay};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use liter_llm_protocol::ApiError;
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

pub use liter_llm_protocol::Endpoint;

/// How the client encoded its body, which decides how the model name is spliced
/// in and what content type goes upstream.
#[derive(Debug, Clone, Default)]
pub enum BodyFormat {
    #[default]
    Json,
    /// `multipart/form-data` (audio uploads); the client's content type carries
    /// the boundary and is sent upstream unchanged.
    Multipart { content_type: http::HeaderValue },
}

/// One request on its way through the layers.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub endpoint: Endpoint,
    /// The client's exact bytes.
    pub body: Bytes,
    pub body_format: BodyFormat,
    /// Whether a successful answer is JSON (to be checked and metered); false for
    /// transcriptions asked for as text, SRT or VTT.
    pub expects_json: bool,
    /// The client-facing model name (may be changed by a fallback).
    pub model: String,
    /// Byte range of the `model` value in `body`: the JSON string with its quotes,
    /// or a multipart field's content.
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

/// A response body: a buffered answer, a live SSE stream, or raw bytes (audio)
/// relayed as they arrive.
pub enum GatewayBody {
    Full(Option<Bytes>),
    Stream(Pin<Box<SseRelay>>),
    Bytes(Pin<Box<ByteRelay>>),
}

impl GatewayBody {
    pub fn full(b: impl Into<Bytes>) -> GatewayBody {
        GatewayBody::Full(Some(b.into()))
    }

    /// The bytes of a buffered answer (`None` for a stream).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            GatewayBody::Full(b) => b.as_ref(),
            GatewayBody::Stream(_) | GatewayBody::Bytes(_) => None,
        }
    }
}

impl std::fmt::Debug for GatewayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayBody::Full(b) => write!(f, "Full({} bytes)", b.as_ref().map_or(0, Bytes::len)),
            GatewayBody::Stream(_) => f.write_str("Stream"),
            GatewayBody::Bytes(_) => f.write_str("Bytes"),
        }
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    /// Only a raw byte relay fails: an SSE stream reports trouble in-band as an
    /// error event, but audio has no in-band channel, so a cut upstream must cut
    /// the response (no final chunk) for the client to notice.
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Stream(s) => futures_util::Stream::poll_next(s.as_mut(), cx)
                .map(|o| o.map(|r| r.map(Frame::data).map_err(|never| match never {}))),
            GatewayBody::Bytes(s) => futures_util::Stream::poll_next(s.as_mut(), cx)
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
            GatewayBody::Stream(_) | GatewayBody::Bytes(_) => SizeHint::default(),
        }
    }
}

/// The boxed, cloneable service the proxy calls per request.
pub type ChatService = tower::util::BoxCloneSyncService<ChatRequest, ChatResponse, ApiError>;
