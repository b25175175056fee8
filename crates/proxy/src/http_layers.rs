//! The proxy's HTTP layers as one stack, built once and applied once.
//!
//! Applying seven layers one by one with `Router::layer` boxes each of them
//! separately per route, so every request paid seven boxed clones and seven
//! boxed futures, and every connection (axum re-derives its routes per
//! connection) held a copy of every route's whole stack. Here the stack is a
//! single concrete type: one clone per request, nothing boxed per layer.
//!
//! Three layers are local equivalents of tower-http's, for what they cost on
//! every request rather than for what they do:
//! - [`FastRequestUuid`]: the same UUID v4 text as `MakeRequestUuid`, from a
//!   thread-local generator instead of a `getrandom` system call per request;
//! - [`Compress`]: a request without `Accept-Encoding` bypasses the compression
//!   layer, whose response body is several kilobytes held for the whole life of
//!   a stream even when nothing is compressed; the `Vary` header it would have
//!   added is still added;
//! - [`CatchPanic`]: the same catching as tower-http's, without re-boxing every
//!   response body.

use axum::body::Body;
use futures_util::future::{CatchUnwind, FutureExt};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_RANGE, VARY};
use http::{HeaderName, HeaderValue, Request, Response};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower::{Layer, Service};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::compression::{Compression, DefaultPredicate, Predicate};
use tower_http::cors::{Cors, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestId, PropagateRequestIdLayer, RequestId, SetRequestId,
    SetRequestIdLayer,
};
use tower_http::sensitive_headers::{SetSensitiveRequestHeaders, SetSensitiveRequestHeadersLayer};
use tower_http::trace::{DefaultMakeSpan, Trace, TraceLayer};

/// Outermost first: sensitive headers, request id, trace, request-id
/// propagation, CORS, compression, panic catch (see `app.rs` for why).
pub type HttpStack<S> = SetSensitiveRequestHeaders<
    SetRequestId<
        Trace<
            PropagateRequestId<Cors<Compress<CatchPanic<S>>>>,
            SharedClassifier<ServerErrorsAsFailures>,
        >,
        FastRequestUuid,
    >,
>;

/// The whole stack as one layer.
#[derive(Clone)]
pub struct HttpLayers {
    pub sensitive: Arc<[HeaderName]>,
    pub request_id: HeaderName,
    pub cors: CorsLayer,
    pub on_panic: fn() -> Response<Body>,
}

impl<S: Clone> Layer<S> for HttpLayers {
    type Service = HttpStack<S>;

    fn layer(&self, inner: S) -> HttpStack<S> {
        let inner = CatchPanic {
            inner,
            on_panic: self.on_panic,
        };
        let inner = Compress {
            compress: Compression::new(inner.clone()),
            plain: inner,
        };
        let inner = self.cors.layer(inner);
        let inner = PropagateRequestIdLayer::new(self.request_id.clone()).layer(inner);
        let inner = TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().include_headers(true))
            .layer(inner);
        let inner = SetRequestIdLayer::new(self.request_id.clone(), FastRequestUuid).layer(inner);
        SetSensitiveRequestHeadersLayer::from_shared(self.sensitive.clone()).layer(inner)
    }
}

/// UUID v4 request ids, formatted as `MakeRequestUuid` formats them. Request
/// ids identify, they do not protect anything, so a fast generator seeded per
/// thread is enough.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastRequestUuid;

impl MakeRequestId for FastRequestUuid {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_bytes(&uuid_v4(fastrand::u128(..)))
            .ok()
            .map(RequestId::new)
    }
}

/// The hyphenated lower-case text of a version 4, RFC 4122 variant UUID made
/// from `random`.
fn uuid_v4(random: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = random.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    let mut pos = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            pos += 1;
        }
        out[pos] = HEX[usize::from(b >> 4)];
        out[pos + 1] = HEX[usize::from(b & 0x0f)];
        pos += 2;
    }
    out
}

/// Compression only for clients that asked for it; see the module docs.
#[derive(Clone)]
pub struct Compress<S> {
    plain: S,
    compress: Compression<S>,
}

impl<S, ReqBody> Service<Request<ReqBody>> for Compress<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CompressFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        ready!(self.plain.poll_ready(cx))?;
        self.compress.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if req.headers().contains_key(ACCEPT_ENCODING) {
            CompressFuture::Compressed {
                future: self.compress.call(req),
            }
        } else {
            CompressFuture::Plain {
                future: self.plain.call(req),
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = CompressFutureProj]
    pub enum CompressFuture<F> {
        Plain { #[pin] future: F },
        Compressed { #[pin] future: tower_http::compression::ResponseFuture<F, DefaultPredicate> },
    }
}

impl<F, E> Future for CompressFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CompressFutureProj::Compressed { future } => {
                Poll::Ready(ready!(future.poll(cx)).map(|res| res.map(Body::new)))
            }
            CompressFutureProj::Plain { future } => {
                let mut res = ready!(future.poll(cx))?;
                add_vary_like_compression(&mut res);
                Poll::Ready(Ok(res))
            }
        }
    }
}

/// The `Vary: accept-encoding` tower-http's compression adds to every answer it
/// would compress for a client that asked, so caches keep the two apart.
fn add_vary_like_compression(res: &mut Response<Body>) {
    let headers = res.headers();
    let compressible = !headers.contains_key(CONTENT_ENCODING)
        && !headers.contains_key(CONTENT_RANGE)
        && DefaultPredicate::new().should_compress(res);
    let already = res.headers().get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .windows(ACCEPT_ENCODING.as_str().len())
            .any(|w| w.eq_ignore_ascii_case(ACCEPT_ENCODING.as_str().as_bytes()))
    });
    if compressible && !already {
        res.headers_mut()
            .append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// A panic in a handler becomes `on_panic()`'s answer; the connection and the
/// process go on. Panics while a body streams are not caught here (as with
/// tower-http): that body ends with an error.
#[derive(Clone)]
pub struct CatchPanic<S> {
    inner: S,
    on_panic: fn() -> Response<Body>,
}

impl<S, ReqBody> Service<Request<ReqBody>> for CatchPanic<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let on_panic = self.on_panic;
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => CatchPanicFuture::Running {
                future: AssertUnwindSafe(future).catch_unwind(),
                on_panic,
            },
            Err(_) => CatchPanicFuture::Panicked { on_panic },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = CatchPanicProj]
    pub enum CatchPanicFuture<F> {
        Running { #[pin] future: CatchUnwind<AssertUnwindSafe<F>>, on_panic: fn() -> Response<Body> },
        Panicked { on_panic: fn() -> Response<Body> },
    }
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CatchPanicProj::Running { future, on_panic } => match ready!(future.poll(cx)) {
                Ok(result) => Poll::Ready(result),
                Err(_) => Poll::Ready(Ok(on_panic())),
            },
            CatchPanicProj::Panicked { on_panic } => Poll::Ready(Ok(on_panic())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_has_the_v4_shape() {
        let text = uuid_v4(0);
        assert_eq!(&text, b"00000000-0000-4000-8000-000000000000");
        let text = uuid_v4(u128::MAX);
        assert_eq!(&text, b"ffffffff-ffff-4fff-bfff-ffffffffffff");
    }

    #[test]
    fn ids_differ() {
        let mut make = FastRequestUuid;
        let req = Request::new(());
        let a = make.make_request_id(&req).map(|r| r.header_value().clone());
        let b = make.make_request_id(&req).map(|r| r.header_value().clone());
        assert!(a.is_some());
        assert_ne!(a, b);
    }
}
