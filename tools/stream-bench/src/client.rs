//! One stream slot: a TCP connection with TCP_NODELAY, an HTTP/1.1 client connection on
//! it, and `repeat` streaming requests sent one after another.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::sse::{Event, Splitter};

/// Read-only run settings plus the live-stream counters.
pub struct Shared {
    pub addr: SocketAddr,
    pub authority: String,
    pub path: String,
    pub authorization: String,
    pub body: Bytes,
    pub timeout: Duration,
    pub repeat: usize,
    /// Streams between request sent and response finished.
    pub live: AtomicUsize,
    pub peak: AtomicUsize,
}

/// What one stream delivered.
#[derive(Debug, Default)]
pub struct StreamRecord {
    /// TCP connect + HTTP/1 handshake, when this stream opened a new connection. A
    /// full accept queue on the server shows up here as a ~1 s SYN retransmit.
    pub connect_us: Option<u64>,
    /// Request written -> first complete SSE data event.
    pub ttft_event_us: Option<u64>,
    /// Request written -> first event with non-empty `delta.content`.
    pub ttft_content_us: Option<u64>,
    /// Time between consecutive data events (events that arrived in the same read
    /// have a gap of 0).
    pub gaps_us: Vec<u64>,
    pub content: usize,
    pub done: bool,
    /// (kind, message) of the first failure, if any.
    pub error: Option<(String, String)>,
}

impl StreamRecord {
    pub fn failed(kind: &str, message: String) -> Self {
        StreamRecord {
            error: Some((kind.to_string(), message)),
            ..StreamRecord::default()
        }
    }

    fn fail(&mut self, kind: &str, message: String) {
        if self.error.is_none() {
            self.error = Some((kind.to_string(), message));
        }
    }
}

/// Decrements the live counter however the stream ends.
struct LiveGuard<'a>(&'a AtomicUsize);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub async fn run_slot(shared: Arc<Shared>, start_at: tokio::time::Instant) -> Vec<StreamRecord> {
    tokio::time::sleep_until(start_at).await;
    let mut records = Vec::with_capacity(shared.repeat);
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    for _ in 0..shared.repeat {
        let mut rec = StreamRecord::default();
        let mut conn = match sender.take() {
            Some(s) => s,
            None => {
                let began = Instant::now();
                match connect(&shared).await {
                    Ok(s) => {
                        rec.connect_us = Some(micros(began.elapsed()));
                        s
                    }
                    Err((kind, message)) => {
                        records.push(StreamRecord::failed(kind, message));
                        continue;
                    }
                }
            }
        };
        let outcome =
            tokio::time::timeout(shared.timeout, one_stream(&shared, &mut conn, &mut rec)).await;
        if outcome.is_err() {
            rec.fail(
                "timeout",
                format!("stream not finished after {:?}", shared.timeout),
            );
        }
        // Keep the connection only after a clean stream; anything else may have left it
        // mid-response.
        if rec.error.is_none() && rec.done {
            sender = Some(conn);
        }
        records.push(rec);
    }
    records
}

async fn connect(shared: &Shared) -> Result<SendRequest<Full<Bytes>>, (&'static str, String)> {
    let stream = match tokio::time::timeout(shared.timeout, TcpStream::connect(shared.addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(("connect", format!("connect {}: {error}", shared.addr))),
        Err(_) => return Err(("connect", format!("connect {}: timed out", shared.addr))),
    };
    if let Err(error) = stream.set_nodelay(true) {
        return Err(("connect", format!("set TCP_NODELAY: {error}")));
    }
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ("handshake", error.to_string()))?;
    tokio::spawn(async move {
        // Errors surface on the request side; nothing more to do with them here.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn one_stream(shared: &Shared, conn: &mut SendRequest<Full<Bytes>>, rec: &mut StreamRecord) {
    if let Err(error) = conn.ready().await {
        rec.fail("send", format!("connection not ready: {error}"));
        return;
    }
    let request = match http::Request::post(shared.path.as_str())
        .header(header::HOST, shared.authority.as_str())
        .header(header::AUTHORIZATION, shared.authorization.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream")
        .header(header::CONTENT_LENGTH, shared.body.len())
        .body(Full::new(shared.body.clone()))
    {
        Ok(request) => request,
        Err(error) => {
            rec.fail("request", error.to_string());
            return;
        }
    };

    let live = shared.live.fetch_add(1, Ordering::Relaxed) + 1;
    shared.peak.fetch_max(live, Ordering::Relaxed);
    let _guard = LiveGuard(&shared.live);

    let sent = Instant::now();
    let response = match conn.send_request(request).await {
        Ok(response) => response,
        Err(error) => {
            rec.fail("send", error.to_string());
            return;
        }
    };
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let mut text = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                text.extend_from_slice(data);
            }
        }
        let text = String::from_utf8_lossy(&text);
        rec.fail(
            &format!("status_{}", status.as_u16()),
            format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ),
        );
        return;
    }

    let mut splitter = Splitter::default();
    let mut last_event: Option<Instant> = None;
    let mut error_event = false;
    let mut after_done = 0usize;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                rec.fail("body", error.to_string());
                return;
            }
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let now = Instant::now();
        splitter.feed(data, |event| {
            if rec.done {
                after_done += 1;
                return;
            }
            if rec.ttft_event_us.is_none() {
                rec.ttft_event_us = Some(micros(now - sent));
            }
            if let Some(prev) = last_event {
                rec.gaps_us.push(micros(now - prev));
            }
            last_event = Some(now);
            match event {
                Event::Content => {
                    if rec.ttft_content_us.is_none() {
                        rec.ttft_content_us = Some(micros(now - sent));
                    }
                    rec.content += 1;
                }
                Event::Done => rec.done = true,
                Event::Error => error_event = true,
                Event::Other => {}
            }
        });
    }
    if error_event {
        rec.fail(
            "error_event",
            "the stream carried an error event".to_string(),
        );
    } else if after_done > 0 {
        rec.fail("after_done", format!("{after_done} events after [DONE]"));
    } else if !rec.done {
        rec.fail(
            "no_done",
            format!(
                "body ended without [DONE] after {} content chunks ({} bytes of partial event)",
                rec.content,
                splitter.pending()
            ),
        );
    }
}
