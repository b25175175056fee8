//! The upstream HTTP transport: hyper's pooled client, driven directly.
//!
//! reqwest did the same I/O through hyper but spent more per request than the
//! rest of the proxy together: a URL parse and re-print, a header-map copy,
//! redirect and retry wrappers, boxed timers and futures. Here a request is the
//! deployment's pre-parsed URI, the headers the proxy means to send, and the
//! client's bytes.
//!
//! What reqwest did and the proxy still needs is kept: `TCP_NODELAY`, TCP
//! keep-alive and user timeout, a connect timeout that covers the TLS
//! handshake, rustls with the webpki roots and ALPN `h2`/`http/1.1`, the
//! `user-agent` and `accept: */*` defaults, and error messages with the same
//! wording. A proxy set in the environment (`HTTPS_PROXY` and friends) is only
//! honoured by reqwest, so with one set the upstream calls go through reqwest
//! as before; see [`Transport`].

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use liter_llm_providers::client::ClientOptions;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub type BoxError = Box<dyn StdError + Send + Sync>;

pub const USER_AGENT_VALUE: &str = concat!("liter-llm/", env!("CARGO_PKG_VERSION"));

type Connector = ConnectTimeout<HttpsConnector<HttpConnector>>;
pub type HyperClient = Client<Connector, Full<Bytes>>;

/// How upstream requests travel.
pub enum Transport {
    Hyper(Box<LocalClients>),
    /// Only when a proxy is configured in the environment, which reqwest
    /// honours and the hyper client does not.
    Reqwest(reqwest::Client),
}

/// One pooled hyper client per thread. The proxy serves each connection on
/// one thread (`proxy::server`), and a pooled upstream connection is driven by
/// the thread that opened it: a pool shared between threads would hand a
/// request to a connection driven by another thread, and every request would
/// pay two cross-thread wake-ups.
pub struct LocalClients {
    id: u64,
    opts: ClientOptions,
    tls: rustls::ClientConfig,
}

thread_local! {
    static CLIENTS: std::cell::RefCell<Vec<(u64, HyperClient)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl LocalClients {
    fn new(opts: &ClientOptions) -> Result<LocalClients, String> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tls = tls_config()?;
        // Fail at startup, not on the first request, if the client cannot be built.
        build_hyper_client(opts, tls.clone());
        Ok(LocalClients {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            opts: opts.clone(),
            tls,
        })
    }

    /// Run `f` with this thread's client, built on first use.
    pub fn with<R>(&self, f: impl FnOnce(&HyperClient) -> R) -> R {
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            let at = match clients.iter().position(|(id, _)| *id == self.id) {
                Some(at) => at,
                None => {
                    clients.push((self.id, build_hyper_client(&self.opts, self.tls.clone())));
                    clients.len() - 1
                }
            };
            f(&clients[at].1)
        })
    }
}

/// reqwest's system-proxy variables; any of them set means reqwest must carry
/// the requests for them to keep going through that proxy.
fn env_proxy_configured() -> bool {
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

impl Transport {
    /// The hyper client, or `fallback` (reqwest, built with the same
    /// options) when a proxy is configured in the environment.
    pub fn new(opts: &ClientOptions, fallback: &reqwest::Client) -> Result<Transport, String> {
        if env_proxy_configured() {
            return Ok(Transport::Reqwest(fallback.clone()));
        }
        LocalClients::new(opts).map(|c| Transport::Hyper(Box::new(c)))
    }
}

/// The same TLS setup reqwest used: an installed default crypto provider or
/// ring, TLS 1.3 and 1.2, the webpki roots.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // ALPN is left empty: the connector builder sets `h2`, `http/1.1`.
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn build_hyper_client(opts: &ClientOptions, tls: rustls::ClientConfig) -> HyperClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(opts.connect_timeout));
    // reqwest's defaults: probe idle connections, and give up on a peer that
    // stops acknowledging, instead of waiting for the kernel's long defaults.
    http.set_keepalive(Some(Duration::from_secs(15)));
    http.set_keepalive_interval(Some(Duration::from_secs(15)));
    http.set_keepalive_retries(Some(3));
    http.set_tcp_user_timeout(Some(Duration::from_secs(30)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let connector = ConnectTimeout {
        inner: https,
        timeout: opts.connect_timeout,
    };
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(opts.pool_idle_timeout)
        .pool_max_idle_per_host(opts.pool_max_idle_per_host)
        .build(connector)
}

/// Bounds the whole connect, TLS handshake included, as reqwest's connect
/// timeout did; the TCP connector's own timeout covers only the TCP part.
#[derive(Clone)]
pub struct ConnectTimeout<C> {
    inner: C,
    timeout: Duration,
}

type Conn = MaybeHttpsStream<TokioIo<TcpStream>>;
type ConnectFuture = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

impl<C> tower_service::Service<Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<Uri, Response = Conn, Error = BoxError, Future = ConnectFuture>,
{
    type Response = Conn;
    type Error = BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> ConnectFuture {
        let connecting = self.inner.call(dst);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(r) => r,
                Err(_) => Err(Box::new(ConnectTimedOut(timeout)) as BoxError),
            }
        })
    }
}

/// Opening the connection (TCP and TLS) took longer than the connect timeout.
#[derive(Debug)]
pub struct ConnectTimedOut(pub Duration);

impl std::fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connect timed out after {} s", self.0.as_secs_f64())
    }
}

impl StdError for ConnectTimedOut {}

/// Whether the failure was the connect timeout, as opposed to the deployment
/// timeout running out while waiting for an answer.
pub fn is_connect_timeout(e: &(dyn StdError + 'static)) -> bool {
    let mut connecting = false;
    chain(e).any(|err| {
        // The TCP connector's own timer (same value, it splits it between a
        // host's addresses) may fire first, as a timed-out I/O error.
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            connecting |= h.is_connect();
        }
        err.is::<ConnectTimedOut>()
            || (connecting && is_timed_out_io(err))
            || err
                .downcast_ref::<reqwest::Error>()
                .is_some_and(|r| r.is_connect() && r.is_timeout())
    })
}

/// `e` and its causes, outermost first.
fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |err: &&'a (dyn StdError + 'static)| {
        (*err).source()
    })
}

fn is_timed_out_io(err: &(dyn StdError + 'static)) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// The default headers reqwest added when the request had none of its own.
pub fn add_default_headers(headers: &mut HeaderMap) {
    if let http::header::Entry::Vacant(e) = headers.entry(USER_AGENT) {
        e.insert(HeaderValue::from_static(USER_AGENT_VALUE));
    }
    if let http::header::Entry::Vacant(e) = headers.entry(ACCEPT) {
        e.insert(HeaderValue::from_static("*/*"));
    }
}

/// The request could not be sent, or no response head came back. Worded as
/// reqwest worded it ("error sending request: …"), with the cause chained.
#[derive(Debug)]
pub struct SendError(pub BoxError);

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("error sending request")
    }
}

impl StdError for SendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// The response body failed while it was being read, worded as reqwest worded it.
#[derive(Debug)]
pub struct DecodeError(pub BoxError);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("error decoding response body")
    }
}

impl StdError for DecodeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// Whether the failure was a timeout somewhere down the chain (a connect
/// timeout, a socket that timed out), which reqwest reported as a timeout.
pub fn is_timeout(e: &(dyn StdError + 'static)) -> bool {
    chain(e).any(|err| {
        err.is::<ConnectTimedOut>()
            || is_timed_out_io(err)
            || err
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout)
            || err
                .downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
    })
}

/// An upstream response body, read as it arrives.
pub enum UpstreamBody {
    Hyper(Incoming),
    Reqwest(reqwest::Body),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = DecodeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, DecodeError>>> {
        match self.get_mut() {
            UpstreamBody::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| DecodeError(Box::new(e))),
            UpstreamBody::Reqwest(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| DecodeError(Box::new(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(b) => b.is_end_stream(),
            UpstreamBody::Reqwest(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Hyper(b) => b.size_hint(),
            UpstreamBody::Reqwest(b) => b.size_hint(),
        }
    }
}

impl UpstreamBody {
    /// The next data chunk; trailers and other frames are skipped.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, DecodeError>>> {
        loop {
            return match std::task::ready!(Pin::new(&mut *self).poll_frame(cx)) {
                None => Poll::Ready(None),
                Some(Err(e)) => Poll::Ready(Some(Err(e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_) => continue,
                },
            };
        }
    }

    pub async fn chunk(&mut self) -> Option<Result<Bytes, DecodeError>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }
}

/// How reading a whole body ended, when it did not end with the body.
#[derive(Debug)]
pub enum ReadError {
    /// The deployment's timeout (`timeout_secs`) ran out, or the socket timed out.
    Timeout,
    /// The request's own deadline (`[server].request_timeout_secs`) ran out.
    Deadline,
    Failed(DecodeError),
}

/// An upstream answer: status and headers, and the body still to be read.
pub struct UpstreamResponse {
    response: http::Response<UpstreamBody>,
    /// For a non-streamed request the deployment's timeout bounds reading the
    /// body too, as reqwest's per-request timeout did.
    body_deadline: Option<Instant>,
}

impl UpstreamResponse {
    pub fn new(response: http::Response<UpstreamBody>, body_deadline: Option<Instant>) -> Self {
        UpstreamResponse {
            response,
            body_deadline,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    pub fn into_body(self) -> UpstreamBody {
        self.response.into_body()
    }

    /// The earlier of `deadline` and the body deadline, and whether it is the
    /// body deadline (on a tie the deployment's timeout is reported, as reqwest's
    /// own timer fired first).
    fn limit(&self, deadline: Instant) -> (Instant, bool) {
        match self.body_deadline {
            Some(b) if b <= deadline => (b, true),
            _ => (deadline, false),
        }
    }

    /// The whole body, read by `deadline` or the deployment's timeout.
    pub async fn bytes(self, deadline: Instant) -> Result<Bytes, ReadError> {
        let (limit, is_body_deadline) = self.limit(deadline);
        let mut body = self.into_body();
        let read = async {
            let mut first: Option<Bytes> = None;
            let mut rest: Vec<u8> = Vec::new();
            while let Some(chunk) = body.chunk().await {
                let chunk = chunk?;
                match &first {
                    // Most answers arrive as one chunk: keep it without a copy.
                    None if rest.is_empty() => first = Some(chunk),
                    _ => {
                        if let Some(f) = first.take() {
                            rest.extend_from_slice(&f);
                        }
                        rest.extend_from_slice(&chunk);
                    }
                }
            }
            Ok::<Bytes, DecodeError>(match first {
                Some(f) => f,
                None => Bytes::from(rest),
            })
        };
        match tokio::time::timeout_at(limit, read).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) if is_timeout(&e) => Err(ReadError::Timeout),
            Ok(Err(e)) => Err(ReadError::Failed(e)),
            Err(_) if is_body_deadline => Err(ReadError::Timeout),
            Err(_) => Err(ReadError::Deadline),
        }
    }

    /// Up to `cap` bytes of the body (an error message, not a payload), read
    /// by `deadline` or the deployment's timeout; whatever arrived by then.
    pub async fn read_capped(self, deadline: Instant, cap: usize) -> Bytes {
        let (limit, _) = self.limit(deadline);
        let mut body = self.into_body();
        let mut out = Vec::new();
        let read = async {
            while let Some(Ok(chunk)) = body.chunk().await {
                let room = cap.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if out.len() >= cap {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout_at(limit, read).await;
        Bytes::from(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn defaults_do_not_replace_the_request_own_headers() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        add_default_headers(&mut h);
        assert_eq!(h[ACCEPT], "application/json");
        assert_eq!(h[USER_AGENT], USER_AGENT_VALUE);
        let mut h = HeaderMap::new();
        add_default_headers(&mut h);
        assert_eq!(h[ACCEPT], "*/*");
    }

    #[test]
    fn timeouts_are_found_down_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "operation timed out");
        let e = SendError(Box::new(io));
        assert!(is_timeout(&e));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_timeout(&SendError(Box::new(refused))));
    }

    #[test]
    fn each_thread_gets_its_own_pool() {
        let clients = LocalClients::new(&ClientOptions::default()).unwrap();
        clients.with(|_| ());
        clients.with(|_| ());
        let here = CLIENTS.with(|c| c.borrow().len());
        assert_eq!(here, 1, "built once per thread");
        std::thread::scope(|s| {
            s.spawn(|| {
                clients.with(|_| ());
                assert_eq!(CLIENTS.with(|c| c.borrow().len()), 1);
            });
        });
    }
}
