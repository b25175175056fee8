//! Response bodies. Hand-written `Body` impls instead of a task + channel per stream:
//! every frame is pre-serialised, so a stream is just "wait for the deadline, hand over
//! the next `Bytes`".

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::server::Shared;

/// Long enough for hyper to flush what it already buffered before a deliberate failure
/// tears the connection down; failing straight away can discard those bytes unsent.
const TRUNCATE_GRACE: Duration = Duration::from_millis(10);

pub(crate) enum MockBody {
    Full(Option<Bytes>),
    Sse(Box<SseBody>),
    Truncated(Box<TruncatedBody>),
}

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            MockBody::Full(None)
        } else {
            MockBody::Full(Some(bytes))
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Sse(sse) => sse.poll_next(cx),
            MockBody::Truncated(truncated) => truncated.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(bytes) => bytes.is_none(),
            MockBody::Sse(sse) => sse.is_end_stream(),
            MockBody::Truncated(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            MockBody::Sse(_) => SizeHint::default(),
            // hyper turns an exact hint into the Content-Length header, which is the lie.
            MockBody::Truncated(truncated) => SizeHint::with_exact(truncated.claimed_len),
        }
    }
}

/// Waits for `deadline`, reusing one timer allocation per body.
fn poll_deadline(
    sleep: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if Instant::now() >= deadline {
        return Poll::Ready(());
    }
    let timer = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    timer.as_mut().poll(cx)
}

fn deliberate_failure() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "mock-upstream: truncated on purpose",
    )
}

/// How a stream ends once its frames have been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The last frame is `data: [DONE]`; the body then ends cleanly.
    Done,
    /// Fail the body so hyper drops the connection without the terminating chunk.
    Truncate,
    /// Never produce another frame and never end.
    Stall,
}

/// A frame and the pacing step it belongs to; step `k` is due at `start + k * interval`.
pub(crate) struct PacedFrame {
    pub(crate) step: u32,
    pub(crate) data: Bytes,
}

pub(crate) struct SseBody {
    frames: Vec<PacedFrame>,
    next: usize,
    end: StreamEnd,
    start: Instant,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    truncate_at: Option<Instant>,
    /// Set once the stream reached its intended end, so `Drop` can tell aborts apart.
    finished: bool,
    shared: Arc<Shared>,
}

impl SseBody {
    pub(crate) fn new(
        frames: Vec<PacedFrame>,
        end: StreamEnd,
        interval: Duration,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            frames,
            next: 0,
            end,
            start: Instant::now(),
            interval,
            sleep: None,
            truncate_at: None,
            finished: false,
            shared,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.end == StreamEnd::Done && self.next >= self.frames.len()
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(frame) = self.frames.get(self.next) {
            if !self.interval.is_zero() && frame.step > 0 {
                // Deadlines are computed from the stream start rather than the previous
                // send, so slow polls never accumulate into drift.
                let deadline = self.start + self.interval * frame.step;
                ready!(poll_deadline(&mut self.sleep, deadline, cx));
            }
            let data = std::mem::take(&mut self.frames[self.next].data);
            self.next += 1;
            if self.is_end_stream() {
                self.finished = true;
                self.shared.streams_completed.fetch_add(1, Ordering::AcqRel);
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match self.end {
            StreamEnd::Done => Poll::Ready(None),
            // No waker is registered on purpose: this body must never make progress.
            StreamEnd::Stall => Poll::Pending,
            StreamEnd::Truncate => {
                let deadline = *self
                    .truncate_at
                    .get_or_insert_with(|| Instant::now() + TRUNCATE_GRACE);
                ready!(poll_deadline(&mut self.sleep, deadline, cx));
                self.finished = true;
                Poll::Ready(Some(Err(deliberate_failure())))
            }
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        // A truncating stream that already sent everything it meant to is not an abort,
        // even if the client hangs up during the grace period.
        let truncation_under_way =
            self.end == StreamEnd::Truncate && self.next >= self.frames.len();
        if !self.finished && !truncation_under_way {
            self.shared.streams_aborted.fetch_add(1, Ordering::AcqRel);
            self.shared.aborted_notify.notify_waiters();
        }
    }
}

pub(crate) struct TruncatedBody {
    data: Option<Bytes>,
    claimed_len: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    fail_at: Option<Instant>,
}

impl TruncatedBody {
    /// Sends the first half of `full` while advertising the length of all of it.
    pub(crate) fn new(full: Bytes) -> Self {
        let claimed_len = full.len() as u64;
        let half = full.slice(..full.len() / 2);
        Self {
            data: if half.is_empty() { None } else { Some(half) },
            claimed_len,
            sleep: None,
            fail_at: None,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let deadline = *self
            .fail_at
            .get_or_insert_with(|| Instant::now() + TRUNCATE_GRACE);
        ready!(poll_deadline(&mut self.sleep, deadline, cx));
        Poll::Ready(Some(Err(deliberate_failure())))
    }
}
