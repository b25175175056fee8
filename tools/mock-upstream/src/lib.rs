//! A fast, scriptable, OpenAI-faithful fake upstream.
//!
//! Integration tests start one in-process with [`MockServer::start`]; benchmarks run the
//! `mock-upstream` binary. Both serve the same OpenAI endpoints
//! (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`,
//! `/v1/images/generations`, `/v1/audio/speech`, `/v1/audio/transcriptions`,
//! `/v1/moderations`) plus the `/v1/rerank` (vLLM/Jina-style) and `/v1/ocr`
//! (Mistral-style) routes of OpenAI-compatible servers, with deterministic content,
//! and can be told to misbehave through [`MockConfig`].
//!
//! Speech is binary audio sent as `chunks` pieces paced by `chunk_interval_ms`, so
//! a client can observe it streaming; the stream counters count it like an SSE
//! stream. Transcripts name the received model and the uploaded file's size and
//! FNV-1a hash ([`transcript_text`]).
//!
//! Request handling order (first match wins): `401` auth failure, `404`/`405` routing,
//! injected `500`/`429` (`fail_rate`/`rate_limit_rate`), the configured [`Fault`], then
//! validation (`400`) and the normal answer. `delay_ms` is waited before any of them.
#![forbid(unsafe_code)]

mod body;
pub mod form;
mod media;
mod openai;
mod rng;
mod server;

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::Shared;

pub use crate::media::{
    relevance, speech_chunks, speech_content_type, transcript_text, OCR_DOCUMENT_PAGES,
    PNG_1X1_B64, SPEECH_CHUNK_BYTES,
};

/// Behaviour knobs for a [`MockServer`].
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Wait this long before sending the response headers of every response.
    pub delay_ms: u64,
    /// Content chunks per streamed response (and audio chunks per speech answer).
    pub chunks: usize,
    /// Pacing between content chunks; chunk `i` is due at `start + (i + 1) * interval`
    /// (speech: audio chunk `i` at `start + i * interval`).
    pub chunk_interval_ms: u64,
    /// Fraction of requests answered `500` with an OpenAI `server_error` body.
    pub fail_rate: f64,
    /// Fraction of requests answered `429` with a `retry-after` header.
    pub rate_limit_rate: f64,
    /// Value of `retry-after` on `429`.
    pub retry_after_secs: u64,
    /// When set, requests must carry `Authorization: Bearer <key>` or get a `401`.
    pub expected_api_key: Option<String>,
    /// A deterministic fault applied to every request.
    pub fault: Option<Fault>,
    /// Keep every request for [`MockServer::requests`].
    pub record: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            delay_ms: 0,
            chunks: 8,
            chunk_interval_ms: 0,
            fail_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_secs: 1,
            expected_api_key: None,
            fault: None,
            record: true,
        }
    }
}

/// A deterministic way for the upstream to misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `200` with `content-type: application/json` and a body that is not JSON.
    Garbage,
    /// `502` with an HTML error page, like a load balancer in front of the API would send.
    HtmlError,
    /// Streams: half the content chunks, then the connection is closed without
    /// `data: [DONE]`. Non-streams: a `Content-Length` larger than the body, then close.
    TruncateStream,
    /// Streams: the first chunk, then nothing, forever. Non-streams: never answer.
    Stall,
}

impl Fault {
    /// The CLI spelling of the fault.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Garbage => "garbage",
            Fault::HtmlError => "html-error",
            Fault::TruncateStream => "truncate-stream",
            Fault::Stall => "stall",
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "garbage" => Ok(Fault::Garbage),
            "html-error" => Ok(Fault::HtmlError),
            "truncate-stream" => Ok(Fault::TruncateStream),
            "stall" => Ok(Fault::Stall),
            other => Err(format!(
                "unknown fault `{other}` (expected garbage, html-error, truncate-stream or stall)"
            )),
        }
    }
}

/// One request as the mock saw it, captured once its head and body were read.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

/// A running mock upstream. Dropping it stops accepting and closes every open connection.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl MockServer {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    pub async fn start(config: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, config).await
    }

    /// Starts serving on an already-bound listener, on the current tokio runtime.
    pub async fn start_on(
        listener: TcpListener,
        config: MockConfig,
    ) -> std::io::Result<MockServer> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let accept_task = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared)));
        Ok(MockServer {
            addr,
            shared,
            accept_task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, ready to be used as an OpenAI base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every recorded request, in arrival order. Empty when `record` is off.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorded().clone()
    }

    /// Requests received so far, counted whether or not `record` is on.
    pub fn request_count(&self) -> usize {
        self.shared.request_count.load(Ordering::Acquire)
    }

    /// Streams whose last frame (`data: [DONE]`, or a speech answer's last audio chunk)
    /// was handed to the connection.
    pub fn streams_completed(&self) -> usize {
        self.shared.streams_completed.load(Ordering::Acquire)
    }

    /// Streams whose client went away before the end (write failed or body dropped).
    pub fn streams_aborted(&self) -> usize {
        self.shared.streams_aborted.load(Ordering::Acquire)
    }

    /// Waits until at least one stream has been counted as aborted (including ones counted
    /// before the call). Returns `false` if that did not happen within `timeout`.
    pub async fn wait_for_aborted_stream(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Enabling the `Notified` before re-checking the counter closes the window in
            // which an abort could be signalled between the check and the wait.
            let notified = self.shared.aborted_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.streams_aborted() > 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.streams_aborted() > 0;
            }
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // The accept task owns the set of connection tasks, so aborting it also tears
        // down every open (possibly stalled) connection.
        self.accept_task.abort();
    }
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}
