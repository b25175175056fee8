//! One upstream attempt, and the facts retry decisions need (which statuses are
//! retryable, `Retry-After`, backoff). The retry loop itself lives in
//! `pipeline::dispatch`, where cooldown and fallbacks are decided too.

use crate::router::Deployment;
use crate::transport::{
    add_default_headers, is_connect_timeout, is_timeout, SendError, Transport, UpstreamBody,
    UpstreamResponse,
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::Full;
use liter_llm_protocol::{ApiError, ErrorKind};
use liter_llm_providers::client::{ByConnectTimeout, ClientOptions, ClientsByConnectTimeout};
use std::borrow::Cow;
use std::time::Duration;
use tokio::time::Instant;

/// The longest `Retry-After` we will sleep through on the client's behalf; a
/// longer one is passed back to the client instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
const BASE_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub struct Upstream {
    /// For OAuth token fetches, which are rare and go through reqwest.
    client: reqwest::Client,
    /// One transport (so one set of connection pools) per connect timeout in
    /// use; deployments pick theirs by value.
    transports: ByConnectTimeout<Transport>,
    max_retries: u32,
}

/// Per-request facts that do not depend on the deployment.
pub struct OutgoingRequest<'a> {
    pub stream: bool,
    pub request_id: &'a str,
}

/// The request for one deployment: the client's bytes with the model spliced in
/// for OpenAI-compatible providers, or an adapter's translation.
pub struct Prepared {
    pub method: http::Method,
    /// Appended to the deployment's base URL, e.g. `/chat/completions`.
    pub path: Cow<'static, str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `None` means `application/json`.
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

pub fn retryable_status(status: http::StatusCode) -> bool {
    // 529 is Anthropic's "overloaded".
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504 | 529)
}

pub fn retry_after(resp: &UpstreamResponse) -> Option<Duration> {
    retry_after_in(resp.headers())
}

/// The wait an upstream asks for: `retry-after-ms` (OpenAI, Azure), else
/// `Retry-After` as seconds or as an HTTP date. A value no `Duration` can hold
/// is ignored rather than trusted.
pub fn retry_after_in(headers: &http::HeaderMap) -> Option<Duration> {
    let seconds = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    };
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| seconds(v).map(|d| d / 1000))
    {
        return Some(ms);
    }
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    if let Some(d) = seconds(v) {
        return Some(d);
    }
    let when = httpdate::parse_http_date(v.trim()).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

pub fn backoff(attempt: u32) -> Duration {
    let exp = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.min(5))
        .min(MAX_BACKOFF);
    // Full jitter keeps retries from many clients from arriving in lockstep.
    exp.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Scheme and host only: a base URL may carry credentials in its query, or
/// (before the router strips them) in its authority.
fn describe(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    let host = url[after_scheme..end]
        .rsplit_once('@')
        .map_or(&url[after_scheme..end], |(_, host)| host);
    format!("{}{host}", &url[..after_scheme])
}

impl Upstream {
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// A transport for each of `clients`' connect timeouts (the values
    /// deployments use), built from `opts` with that timeout. The reqwest
    /// clients carry OAuth token fetches (the default one) and, when a proxy
    /// is set in the environment, the upstream calls themselves.
    pub fn new(
        clients: &ClientsByConnectTimeout,
        opts: &ClientOptions,
        max_retries: u32,
    ) -> Result<Upstream, String> {
        let timeouts: Vec<Duration> = clients.iter().map(|(t, _)| t).collect();
        let transports = ByConnectTimeout::build(opts, &timeouts, |o| {
            Transport::new(o, clients.get(o.connect_timeout))
        })?;
        Ok(Upstream {
            transports,
            client: clients.default_one().clone(),
            max_retries,
        })
    }

    /// One attempt against one deployment.
    pub async fn send_once(
        &self,
        d: &Deployment,
        req: &OutgoingRequest<'_>,
        prepared: Prepared,
    ) -> Result<UpstreamResponse, ApiError> {
        let bearer = match &d.token_source {
            // Boxed: the token fetch is a large future on a rare path, and every
            // request's future is allocated and moved at the size of its largest path.
            Some(tokens) => Some(Box::pin(tokens.authorization(&self.client, d.timeout)).await?),
            None => None,
        };
        let started = Instant::now();
        // A stream may legitimately run far longer than the per-request timeout,
        // so for streams the timeout bounds only the wait for response headers and
        // the stream itself enforces it as an idle limit between chunks.
        let body_deadline = (!req.stream).then(|| started + d.timeout);
        let sent = match self.transports.get(d.connect_timeout) {
            Transport::Hyper(client) => {
                // Redirects are answered, not followed, as with the reqwest
                // client (`redirect::Policy::none()` in `providers::client`).
                let request = hyper_request(d, req, prepared, bearer)?;
                let response = client.with(|c| c.request(request));
                match tokio::time::timeout(d.timeout, response).await {
                    Ok(Ok(response)) => Ok(response.map(UpstreamBody::Hyper)),
                    Ok(Err(e)) => Err(SendError(Box::new(e))),
                    Err(_) => return Err(timeout_error(d)),
                }
            }
            Transport::Reqwest(client) => {
                let builder = reqwest_request(client, d, req, prepared, bearer)?;
                match tokio::time::timeout(d.timeout, builder.send()).await {
                    Ok(Ok(response)) => {
                        Ok(http::Response::from(response).map(UpstreamBody::Reqwest))
                    }
                    Ok(Err(e)) if is_connect_timeout(&e) => return Err(connect_timeout_error(d)),
                    Ok(Err(e)) if e.is_timeout() => return Err(timeout_error(d)),
                    Ok(Err(e)) => return Err(unreachable(d, &e.without_url())),
                    Err(_) => return Err(timeout_error(d)),
                }
            }
        };
        match sent {
            Ok(response) => Ok(UpstreamResponse::new(response, body_deadline)),
            Err(e) if is_connect_timeout(&e) => Err(connect_timeout_error(d)),
            Err(e) if is_timeout(&e) => Err(timeout_error(d)),
            Err(e) => Err(unreachable(d, &e)),
        }
    }
}

fn unreachable(d: &Deployment, e: &(dyn std::error::Error + 'static)) -> ApiError {
    ApiError::new(
        ErrorKind::BadGateway,
        format!(
            "could not reach upstream provider `{}` at {}: {}",
            d.provider.name,
            describe(&d.base_url),
            error_chain(e)
        ),
    )
    .with_code("upstream_unreachable")
}

fn url_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorKind::BadGateway,
        format!("cannot build the upstream URL: {e}"),
    )
}

/// The request as reqwest would have put it on the wire: the same URL
/// normalisation, headers appended in the same order, the same defaults.
fn hyper_request(
    d: &Deployment,
    req: &OutgoingRequest<'_>,
    prepared: Prepared,
    bearer: Option<HeaderValue>,
) -> Result<http::Request<Full<Bytes>>, ApiError> {
    let uri = if prepared.path == "/chat/completions" {
        d.chat_uri.clone()
    } else {
        let url = reqwest::Url::parse(&d.url(&prepared.path)).map_err(url_error)?;
        http::Uri::try_from(url.as_str()).map_err(url_error)?
    };
    let has_body = !prepared.body.is_empty();
    let mut request = http::Request::new(Full::new(prepared.body));
    *request.method_mut() = prepared.method;
    *request.uri_mut() = uri;
    let h = request.headers_mut();
    if let Ok(id) = HeaderValue::from_str(req.request_id) {
        h.append(REQUEST_ID.clone(), id);
    }
    // A GET (Brave search) carries its parameters in the query.
    if has_body {
        let content_type = prepared
            .content_type
            .unwrap_or_else(|| HeaderValue::from_static("application/json"));
        h.append(http::header::CONTENT_TYPE, content_type);
    }
    if let Some((name, value)) = &d.auth {
        h.append(name.clone(), value.clone());
    }
    if let Some(bearer) = bearer {
        h.append(http::header::AUTHORIZATION, bearer);
    }
    for (name, value) in prepared.headers {
        h.append(name, value);
    }
    if let Some(basic) = &d.basic_auth {
        if let http::header::Entry::Vacant(e) = h.entry(http::header::AUTHORIZATION) {
            e.insert(basic.clone());
        }
    }
    add_default_headers(h);
    Ok(request)
}

fn reqwest_request(
    client: &reqwest::Client,
    d: &Deployment,
    req: &OutgoingRequest<'_>,
    prepared: Prepared,
    bearer: Option<HeaderValue>,
) -> Result<reqwest::RequestBuilder, ApiError> {
    let url = if prepared.path == "/chat/completions" {
        d.chat_url.clone()
    } else {
        reqwest::Url::parse(&d.url(&prepared.path)).map_err(url_error)?
    };
    let content_type = prepared
        .content_type
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let mut builder = client
        .request(prepared.method, url)
        .header("x-request-id", req.request_id);
    if !prepared.body.is_empty() {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(prepared.body);
    }
    if let Some((name, value)) = &d.auth {
        builder = builder.header(name.clone(), value.clone());
    }
    let mut authorized = bearer.is_some()
        || d.auth
            .as_ref()
            .is_some_and(|(name, _)| name == reqwest::header::AUTHORIZATION);
    if let Some(bearer) = bearer {
        builder = builder.header(reqwest::header::AUTHORIZATION, bearer);
    }
    for (name, value) in prepared.headers {
        authorized |= name == reqwest::header::AUTHORIZATION;
        builder = builder.header(name, value);
    }
    if let (Some(basic), false) = (&d.basic_auth, authorized) {
        builder = builder.header(reqwest::header::AUTHORIZATION, basic.clone());
    }
    Ok(builder)
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn timeout_error(d: &Deployment) -> ApiError {
    ApiError::new(
        ErrorKind::GatewayTimeout,
        format!(
            "upstream provider `{}` did not answer within {} s (timeout_secs)",
            d.provider.name,
            d.timeout.as_secs()
        ),
    )
    .with_code("upstream_timeout")
}

pub fn connect_timeout_error(d: &Deployment) -> ApiError {
    ApiError::new(
        ErrorKind::GatewayTimeout,
        format!(
            "could not connect to upstream provider `{}` at {} within {} s (connect_timeout_secs)",
            d.provider.name,
            describe(&d.base_url),
            d.connect_timeout.as_secs_f64()
        ),
    )
    .with_code("upstream_timeout")
}

/// reqwest's top-level message is often just "error sending request"; the cause
/// (connection refused, DNS failure) is what an operator needs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn describe_keeps_only_scheme_and_host() {
        assert_eq!(
            describe("https://api.example.com/v1?key=secret"),
            "https://api.example.com"
        );
        assert_eq!(describe("http://127.0.0.1:9/v1"), "http://127.0.0.1:9");
        assert_eq!(describe("http://u:p@h:9/v1"), "http://h:9");
    }

    #[test]
    fn retry_after_reads_seconds_ms_and_dates_and_ignores_absurd_values() {
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, http::HeaderValue::from_str(v).unwrap());
            }
            m
        };
        assert_eq!(
            retry_after_in(&h(&[("retry-after", "2.5")])),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            retry_after_in(&h(&[("retry-after-ms", "150"), ("retry-after", "9")])),
            Some(Duration::from_millis(150))
        );
        assert_eq!(retry_after_in(&h(&[("retry-after", "1e30")])), None);
        assert_eq!(retry_after_in(&h(&[("retry-after", "-1")])), None);
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        let date = httpdate::fmt_http_date(soon);
        let d = retry_after_in(&h(&[("retry-after", &date)])).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(std::time::SystemTime::UNIX_EPOCH);
        assert_eq!(
            retry_after_in(&h(&[("retry-after", &past)])),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn backoff_is_bounded() {
        for a in 0..20 {
            assert!(backoff(a) <= MAX_BACKOFF);
        }
    }
}
