//! Relaying an upstream stream to the client as bytes arrive.
//!
//! For OpenAI-compatible upstreams chunks are passed on untouched; the only work
//! per chunk is a scan for the `[DONE]` marker, so a stream that ends without it
//! is reported to the client as an error event instead of looking finished. For
//! native providers each chunk goes through the adapter's translator, which
//! decides when the stream finished properly.

use crate::balance::InFlight;
use crate::pipeline::dispatch::Pricer;
use crate::pipeline::Settlement;
use crate::router::Deployment;
use crate::tap::UsageTap;
use bytes::Bytes;
use futures_util::Stream;
use liter_llm_protocol::{ApiError, ErrorKind};
use liter_llm_providers::adapters::StreamTranslator;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// At the start of a line, so model output that happens to contain the text
/// `data: [DONE]` inside a JSON string is not mistaken for the end. SSE makes
/// the space after the colon optional, and some servers leave it out.
const DONE_MARKER: &[u8] = b"\ndata: [DONE]";

/// Built once: `memmem::find` builds its searcher on every call, which was
/// most of the cost of scanning a chunk.
static DONE_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"[DONE]"));

/// Whether `buf` holds `data: [DONE]` or `data:[DONE]` at the start of a line.
fn contains_marker(buf: &[u8]) -> bool {
    DONE_FINDER.find_iter(buf).any(|at| {
        let before = &buf[..at];
        before.ends_with(b"\ndata: ") || before.ends_with(b"\ndata:")
    })
}

type Upstream = crate::transport::UpstreamBody;

pub struct SseLimits {
    /// Longest silence allowed between two chunks.
    pub idle: Duration,
    /// The whole request's deadline (`[server].request_timeout_secs`).
    pub deadline: Instant,
}

/// Finds a `data: [DONE]` line in a byte stream fed chunk by chunk, including a
/// marker split across chunk boundaries.
#[derive(Debug)]
pub struct DoneScanner {
    tail: Vec<u8>,
    found: bool,
}

impl Default for DoneScanner {
    /// The stream start counts as a line start.
    fn default() -> Self {
        DoneScanner {
            tail: vec![b'\n'],
            found: false,
        }
    }
}

impl DoneScanner {
    /// Feed the next chunk; returns whether the marker has been seen so far.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.found {
            return true;
        }
        self.found = contains_marker(chunk) || self.found_across_boundary(chunk);
        self.keep_tail(chunk);
        self.found
    }

    fn found_across_boundary(&self, chunk: &[u8]) -> bool {
        // The tail is shorter than the marker, so a marker that straddles the
        // boundary lies within the tail and the chunk's first marker-length bytes.
        let head = &chunk[..chunk.len().min(DONE_MARKER.len())];
        let mut joined = [0u8; 2 * DONE_MARKER.len()];
        let (tail, rest) = joined.split_at_mut(self.tail.len());
        tail.copy_from_slice(&self.tail);
        rest[..head.len()].copy_from_slice(head);
        contains_marker(&joined[..self.tail.len() + head.len()])
    }

    /// Keep the last `len - 1` bytes: enough for any split marker, never a whole one.
    fn keep_tail(&mut self, chunk: &[u8]) {
        let keep = DONE_MARKER.len() - 1;
        if chunk.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
    }
}

/// Meters one streamed answer: reads usage off the OpenAI-format bytes on their
/// way to the client, and settles the request when the stream ends, however it
/// ends (finished, cut, timed out, or dropped because the client left).
pub struct RelayMeter {
    settlement: Settlement,
    deployment: Arc<Deployment>,
    pricer: Pricer,
    in_flight: Option<InFlight>,
    tap: UsageTap,
    finished: bool,
}

impl RelayMeter {
    /// `strip_usage_chunk`: the proxy asked for usage on the client's behalf, so
    /// the usage-only chunk is removed before the client sees it.
    pub fn new(
        settlement: Settlement,
        deployment: Arc<Deployment>,
        pricer: Pricer,
        in_flight: InFlight,
        strip_usage_chunk: bool,
    ) -> RelayMeter {
        RelayMeter {
            settlement,
            deployment,
            pricer,
            in_flight: Some(in_flight),
            tap: UsageTap::new(strip_usage_chunk),
            finished: false,
        }
    }

    fn finish(&mut self, completed: bool) {
        if self.finished {
            return;
        }
        self.finished = true;
        let usage = self.tap.usage;
        let cost = usage
            .as_ref()
            .map_or(0.0, |u| (self.pricer)(&self.deployment, u));
        if let Some(u) = &usage {
            self.deployment.state.record_tokens(u.total());
        }
        let reasons = std::mem::take(&mut self.tap.finish_reasons);
        let model = self.tap.response_model.take();
        self.settlement.update(|o| {
            o.usage = usage;
            o.cost_usd = cost;
            o.completed = completed;
            o.finish_reasons = reasons;
            o.response_model = model;
            if !completed && o.error_type.is_none() {
                o.error_type = Some("stream_incomplete".to_string());
            }
        });
        self.in_flight.take();
        self.settlement.settle();
    }
}

impl Drop for RelayMeter {
    fn drop(&mut self) {
        self.finish(false);
    }
}

pin_project_lite::pin_project! {
    pub struct SseRelay {
        upstream: Upstream,
        provider: &'static str,
        done: DoneScanner,
        translator: Option<Box<dyn StreamTranslator>>,
        meter: RelayMeter,
        finished: bool,
        idle: Duration,
        last_chunk: Instant,
        #[pin]
        idle_timer: Sleep,
        #[pin]
        deadline: Sleep,
    }
}

impl SseRelay {
    /// Forward an OpenAI-format stream as it comes.
    pub fn pass_through(
        upstream: Upstream,
        provider: &'static str,
        limits: SseLimits,
        meter: RelayMeter,
    ) -> Self {
        Self::new(upstream, provider, limits, meter, None)
    }

    /// Translate a native provider's stream into OpenAI SSE.
    pub fn translated(
        upstream: Upstream,
        provider: &'static str,
        limits: SseLimits,
        meter: RelayMeter,
        translator: Box<dyn StreamTranslator>,
    ) -> Self {
        Self::new(upstream, provider, limits, meter, Some(translator))
    }

    fn new(
        upstream: Upstream,
        provider: &'static str,
        limits: SseLimits,
        meter: RelayMeter,
        translator: Option<Box<dyn StreamTranslator>>,
    ) -> Self {
        let now = Instant::now();
        SseRelay {
            upstream,
            provider,
            done: DoneScanner::default(),
            translator,
            meter,
            finished: false,
            idle: limits.idle,
            last_chunk: now,
            idle_timer: tokio::time::sleep_until(now + limits.idle),
            deadline: tokio::time::sleep_until(limits.deadline),
        }
    }
}

/// End the stream with an error event; the request settles as incomplete.
fn fail(
    meter: &mut RelayMeter,
    finished: &mut bool,
    mut out: Vec<u8>,
    err: &ApiError,
) -> Poll<Option<Result<Bytes, Infallible>>> {
    *finished = true;
    meter.settlement.update(|o| {
        o.error_type = Some(
            err.code
                .clone()
                .unwrap_or_else(|| err.kind.type_str().to_string()),
        )
    });
    out.extend_from_slice(&err.to_sse_event());
    meter.finish(false);
    Poll::Ready(Some(Ok(Bytes::from(out))))
}

impl Stream for SseRelay {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            let err = ApiError::new(
                ErrorKind::GatewayTimeout,
                "the request exceeded the proxy's request timeout ([server].request_timeout_secs) while streaming",
            )
            .with_code("request_timeout");
            return fail(this.meter, this.finished, Vec::new(), &err);
        }
        loop {
            match this.upstream.poll_chunk(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    *this.last_chunk = Instant::now();
                    let Some(translator) = this.translator.as_mut() else {
                        this.done.feed(&chunk);
                        let out = this.meter.tap.process(chunk);
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(out)));
                    };
                    let mut translated = Vec::new();
                    if let Err(e) = translator.feed(&chunk, &mut translated) {
                        let mut out = this.meter.tap.process(Bytes::from(translated)).to_vec();
                        out.extend_from_slice(&this.meter.tap.flush());
                        return fail(this.meter, this.finished, out, &e);
                    }
                    let out = this.meter.tap.process(Bytes::from(translated));
                    if out.is_empty() {
                        // A partial provider frame: nothing to send yet.
                        continue;
                    }
                    return Poll::Ready(Some(Ok(out)));
                }
                Poll::Ready(Some(Err(e))) => {
                    if this.translator.is_none() && this.done.found {
                        *this.finished = true;
                        this.meter.finish(true);
                        return Poll::Ready(None);
                    }
                    let err = ApiError::new(
                        ErrorKind::BadGateway,
                        format!(
                            "upstream provider `{}` failed mid-stream: {}",
                            this.provider,
                            crate::upstream::error_chain(&e)
                        ),
                    )
                    .with_code("upstream_stream_error");
                    let rest = this.meter.tap.flush().to_vec();
                    return fail(this.meter, this.finished, rest, &err);
                }
                Poll::Ready(None) => {
                    if let Some(translator) = this.translator.as_mut() {
                        let mut translated = Vec::new();
                        let finished = translator.finish(&mut translated);
                        let mut out = this.meter.tap.process(Bytes::from(translated)).to_vec();
                        out.extend_from_slice(&this.meter.tap.flush());
                        if let Err(e) = finished {
                            return fail(this.meter, this.finished, out, &e);
                        }
                        *this.finished = true;
                        this.meter.finish(true);
                        return Poll::Ready((!out.is_empty()).then(|| Ok(Bytes::from(out))));
                    }
                    let rest = this.meter.tap.flush();
                    if this.done.found {
                        *this.finished = true;
                        this.meter.finish(true);
                        return Poll::Ready((!rest.is_empty()).then_some(Ok(rest)));
                    }
                    let err = ApiError::new(
                        ErrorKind::BadGateway,
                        format!(
                            "upstream provider `{}` closed the stream before it finished (no [DONE])",
                            this.provider
                        ),
                    )
                    .with_code("upstream_stream_truncated");
                    return fail(this.meter, this.finished, rest.to_vec(), &err);
                }
                Poll::Pending => {
                    // The idle timer is re-armed lazily: resetting it on every chunk
                    // would cost a timer-wheel update per chunk.
                    loop {
                        if this.idle_timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        let due = *this.last_chunk + *this.idle;
                        if due > Instant::now() {
                            this.idle_timer.as_mut().reset(due);
                            continue;
                        }
                        let err = ApiError::new(
                            ErrorKind::GatewayTimeout,
                            format!(
                                "upstream provider `{}` sent nothing for {} s mid-stream (timeout_secs)",
                                this.provider,
                                this.idle.as_secs()
                            ),
                        )
                        .with_code("upstream_timeout");
                        let rest = this.meter.tap.flush().to_vec();
                        return fail(this.meter, this.finished, rest, &err);
                    }
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Relays a binary answer (audio) chunk by chunk. With no in-band way to
    /// report trouble, a cut, a stall or the deadline ends the response with an
    /// I/O error, so the client sees a truncated transfer rather than a short file
    /// that looks complete.
    pub struct ByteRelay {
        upstream: Upstream,
        provider: &'static str,
        meter: RelayMeter,
        finished: bool,
        idle: Duration,
        last_chunk: Instant,
        #[pin]
        idle_timer: Sleep,
        #[pin]
        deadline: Sleep,
    }
}

impl ByteRelay {
    pub fn new(
        upstream: Upstream,
        provider: &'static str,
        limits: SseLimits,
        meter: RelayMeter,
    ) -> Self {
        let now = Instant::now();
        ByteRelay {
            upstream,
            provider,
            meter,
            finished: false,
            idle: limits.idle,
            last_chunk: now,
            idle_timer: tokio::time::sleep_until(now + limits.idle),
            deadline: tokio::time::sleep_until(limits.deadline),
        }
    }
}

fn cut(
    meter: &mut RelayMeter,
    finished: &mut bool,
    code: &str,
    message: String,
) -> Poll<Option<Result<Bytes, std::io::Error>>> {
    *finished = true;
    tracing::warn!(code, %message, "binary stream cut");
    meter
        .settlement
        .update(|o| o.error_type = Some(code.to_string()));
    meter.finish(false);
    Poll::Ready(Some(Err(std::io::Error::other(message))))
}

impl Stream for ByteRelay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return cut(
                this.meter,
                this.finished,
                "request_timeout",
                "the request exceeded the proxy's request timeout while streaming".into(),
            );
        }
        match this.upstream.poll_chunk(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                *this.last_chunk = Instant::now();
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let message = format!(
                    "upstream provider `{}` failed mid-stream: {}",
                    this.provider,
                    crate::upstream::error_chain(&e)
                );
                cut(this.meter, this.finished, "upstream_stream_error", message)
            }
            Poll::Ready(None) => {
                *this.finished = true;
                this.meter.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => loop {
                if this.idle_timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let due = *this.last_chunk + *this.idle;
                if due > Instant::now() {
                    this.idle_timer.as_mut().reset(due);
                    continue;
                }
                let message = format!(
                    "upstream provider `{}` sent nothing for {} s mid-stream (timeout_secs)",
                    this.provider,
                    this.idle.as_secs()
                );
                return cut(this.meter, this.finished, "upstream_timeout", message);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_split_across_chunks_is_found() {
        let mut scanner = DoneScanner::default();
        assert!(!scanner.feed(b"data: {\"x\":1}\n\ndata: [DO"));
        assert!(scanner.feed(b"NE]\n\n"));
    }

    #[test]
    fn tiny_chunks_accumulate_in_tail() {
        let mut scanner = DoneScanner::default();
        let found = b"data: [DONE]\n\n"
            .chunks(1)
            .fold(false, |_, b| scanner.feed(b));
        assert!(found);
    }

    #[test]
    fn content_mentioning_done_is_not_the_marker() {
        let mut scanner = DoneScanner::default();
        assert!(!scanner.feed(b"data: {\"content\":\"data: [DONE]\"}\n\n"));
        assert!(scanner.feed(b"data: [DONE]\n\n"));
    }

    #[test]
    fn marker_without_the_optional_space_counts() {
        let mut scanner = DoneScanner::default();
        assert!(!scanner.feed(b"data:{\"x\":1}\n\ndata:[DO"));
        assert!(scanner.feed(b"NE]\n\n"));
        assert!(DoneScanner::default().feed(b"data:[DONE]\n\n"));
    }

    #[test]
    fn marker_at_stream_start_counts() {
        assert!(DoneScanner::default().feed(b"data: [DONE]\n\n"));
    }
}
