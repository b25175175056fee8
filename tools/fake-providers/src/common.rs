//! Plumbing every fake shares: the request log behind `requests()` and
//! `GET /__requests`, the queue of faults the next requests consume, and the
//! server task bound to `127.0.0.1:0` that stops when the fake is dropped.

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide later requests.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds `127.0.0.1:<free port>`.
pub(crate) async fn bind_local() -> std::io::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await
}

/// A fake's server task; dropping it stops the server.
pub(crate) struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `app` on `listener` on the current tokio runtime.
    pub(crate) fn spawn(listener: TcpListener, app: Router) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Server { addr, task })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every request a fake received, in arrival order.
pub(crate) struct Recorder<R>(Mutex<Vec<R>>);

impl<R: Clone> Recorder<R> {
    pub(crate) fn new() -> Self {
        Recorder(Mutex::new(Vec::new()))
    }

    pub(crate) fn push(&self, request: R) {
        lock(&self.0).push(request);
    }

    pub(crate) fn all(&self) -> Vec<R> {
        lock(&self.0).clone()
    }

    /// The body of `GET /__requests`: every request as JSON, oldest first.
    pub(crate) fn to_json(&self, one: impl Fn(&R) -> Value) -> Value {
        Value::Array(lock(&self.0).iter().map(one).collect())
    }
}

/// Faults queued for the next requests; each request consumes one.
pub(crate) struct FaultQueue<F>(Mutex<VecDeque<F>>);

impl<F> FaultQueue<F> {
    pub(crate) fn new() -> Self {
        FaultQueue(Mutex::new(VecDeque::new()))
    }

    pub(crate) fn push(&self, fault: F) {
        lock(&self.0).push_back(fault);
    }

    pub(crate) fn pop(&self) -> Option<F> {
        lock(&self.0).pop_front()
    }
}

/// What a fake that takes one API key keeps: the key, what it received, and
/// the faults queued for the next requests.
pub(crate) struct KeyedState<R, F> {
    pub api_key: String,
    pub requests: Recorder<R>,
    pub faults: FaultQueue<F>,
}

impl<R: Clone, F> KeyedState<R, F> {
    pub(crate) fn new(api_key: &str) -> std::sync::Arc<Self> {
        std::sync::Arc::new(KeyedState {
            api_key: api_key.to_string(),
            requests: Recorder::new(),
            faults: FaultQueue::new(),
        })
    }
}

/// `{method, path, query, headers, body}`; repeated headers are joined with `, `.
pub(crate) fn request_json(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Value,
) -> Value {
    let mut joined = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match joined.get_mut(name.as_str()) {
            Some(Value::String(seen)) => {
                seen.push_str(", ");
                seen.push_str(&value);
            }
            _ => {
                joined.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": joined,
        "body": body,
    })
}

/// A query parameter's raw value.
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// One request as a fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The parsed JSON body, `Null` if it was not JSON. A fake that takes
    /// another kind of body records here what it read of it (a form as an
    /// object of its fields, an upload as its size and digest): see each fake.
    pub body: Value,
    /// The exact bytes received.
    pub raw: Bytes,
}

impl RecordedRequest {
    pub(crate) fn new(
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: Value,
        raw: &Bytes,
    ) -> RecordedRequest {
        RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers.clone(),
            body,
            raw: raw.clone(),
        }
    }

    /// `{method, path, query, headers, body}`; repeated headers are joined with `, `.
    pub fn to_json(&self) -> Value {
        request_json(
            &self.method,
            &self.path,
            self.query.as_deref(),
            &self.headers,
            &self.body,
        )
    }

    /// A query parameter's raw value.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(self.query.as_deref(), name)
    }
}

impl Recorder<RecordedRequest> {
    /// Records a request as [`RecordedRequest::new`] makes it.
    pub(crate) fn record(
        &self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: Value,
        raw: &Bytes,
    ) {
        self.push(RecordedRequest::new(method, uri, headers, body, raw));
    }
}

/// How the next request to a speech fake goes wrong; consumed after the auth
/// check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioFault {
    /// Answer with this status and raw body.
    Error { status: u16, body: String },
    /// Send the first `after` audio chunks, then drop the connection.
    CutStream { after: usize },
}

impl AudioFault {
    /// The `POST /__fault` body: `{"kind":"error","status":402,"body":"..."}`,
    /// `{"kind":"documented_error","status":402}` (the body `documented` gives
    /// for the status) or `{"kind":"cut","after":2}`.
    pub fn parse(v: &Value, documented: impl Fn(u16) -> String) -> Option<AudioFault> {
        let status = || {
            v.get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
        };
        match v.get("kind").and_then(Value::as_str)? {
            "error" => Some(AudioFault::Error {
                status: status()?,
                body: v.get("body")?.as_str()?.to_string(),
            }),
            "documented_error" => {
                let status = status()?;
                Some(AudioFault::Error {
                    status,
                    body: documented(status),
                })
            }
            "cut" => Some(AudioFault::CutStream {
                after: usize::try_from(v.get("after")?.as_u64()?).ok()?,
            }),
            _ => None,
        }
    }

    /// The answer for an [`AudioFault::Error`]; `None` for any other fault.
    pub(crate) fn error_response(fault: &Option<AudioFault>) -> Option<Response> {
        match fault {
            Some(AudioFault::Error { status, body }) => Some(raw_response(*status, body)),
            _ => None,
        }
    }

    /// Where a [`AudioFault::CutStream`] cuts the audio.
    pub(crate) fn cut_after(fault: &Option<AudioFault>) -> Option<usize> {
        match fault {
            Some(AudioFault::CutStream { after }) => Some(*after),
            _ => None,
        }
    }
}

/// A response with this status (500 if it is not one), content type and body.
pub(crate) fn respond(status: u16, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}

/// A response with a status and a JSON body.
pub(crate) fn json_response(status: u16, body: impl Into<Body>) -> Response {
    respond(status, "application/json", body)
}

/// How a queued fault's raw body is labelled: `application/json` when it
/// parses as JSON, `text/html` otherwise.
pub(crate) fn raw_content_type(body: &str) -> &'static str {
    if serde_json::from_str::<Value>(body).is_ok() {
        "application/json"
    } else {
        "text/html"
    }
}

/// A queued fault's answer: its status and raw body, labelled as
/// [`raw_content_type`] says.
pub(crate) fn raw_response(status: u16, body: &str) -> Response {
    respond(status, raw_content_type(body), body.to_string())
}

/// `POST /__fault`: queues what `parse` makes of the JSON body and answers
/// 204, or answers 400 `unrecognised fault`.
pub(crate) fn queue_fault<F>(
    faults: &FaultQueue<F>,
    raw: &[u8],
    parse: impl FnOnce(&Value) -> Option<F>,
) -> Response {
    match serde_json::from_slice::<Value>(raw)
        .ok()
        .as_ref()
        .and_then(parse)
    {
        Some(f) => {
            faults.push(f);
            respond(204, "application/json", Body::empty())
        }
        None => respond(400, "text/plain", "unrecognised fault"),
    }
}

/// A body that sends `chunks` with `interval` between them; with `cut_after`,
/// the connection drops after that many chunks.
pub(crate) fn paced(chunks: Vec<Bytes>, interval: Duration, cut_after: Option<usize>) -> Body {
    let stream = futures_util::stream::unfold((chunks, 0usize), move |(chunks, i)| async move {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        if cut_after == Some(i) {
            return Some((
                Err(std::io::Error::other("fake: connection cut mid-audio")),
                (Vec::new(), usize::MAX),
            ));
        }
        let chunk = chunks.get(i)?.clone();
        Some((Ok(chunk), (chunks, i + 1)))
    });
    Body::from_stream(stream)
}

/// The `Content-Type` header, `""` when absent or not text.
pub(crate) fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Whether the request says its body is JSON.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).starts_with("application/json")
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The first key of `obj` not in `allowed`.
pub(crate) fn unknown_key<'a>(obj: &'a Map<String, Value>, allowed: &[&str]) -> Option<&'a str> {
    obj.keys()
        .map(String::as_str)
        .find(|k| !allowed.contains(k))
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------
// multipart/form-data, independent of the proxy's parser
// ---------------------------------------------------------------------------

/// One part of a form: its name, whether it was a file, and its bytes.
pub(crate) struct FormPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// The boundary from a `multipart/form-data; boundary=...` content type.
pub(crate) fn form_boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn header_param(line: &str, key: &str) -> Option<String> {
    line.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Parses an RFC 7578 body strictly: CRLF line breaks, a closing boundary, and
/// a `Content-Disposition: form-data; name=...` in every part.
pub(crate) fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<FormPart>, String> {
    let delimiter = format!("--{boundary}");
    let next = format!("\r\n--{boundary}");
    if !body.starts_with(delimiter.as_bytes()) {
        return Err("the body does not start with the boundary".into());
    }
    let mut at = delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(at..at + 2) != Some(b"\r\n") {
            return Err("a boundary is not followed by CRLF".into());
        }
        at += 2;
        let headers_end = find(body, b"\r\n\r\n", at).ok_or("a part has no end of headers")?;
        let headers = std::str::from_utf8(&body[at..headers_end])
            .map_err(|_| "part headers are not UTF-8".to_string())?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in headers.split("\r\n") {
            let Some((h, v)) = line.split_once(':') else {
                return Err(format!("malformed part header `{line}`"));
            };
            if h.trim().eq_ignore_ascii_case("content-disposition") {
                if !v.trim().starts_with("form-data") {
                    return Err("Content-Disposition is not form-data".into());
                }
                name = header_param(v, "name");
                filename = header_param(v, "filename");
            } else if h.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
        let name = name.ok_or("a part has no name")?;
        let data_start = headers_end + 4;
        let data_end = find(body, next.as_bytes(), data_start).ok_or("a part is not terminated")?;
        parts.push(FormPart {
            name,
            filename,
            content_type,
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + next.len();
    }
}

/// The parts of a request's `multipart/form-data` body; `not_multipart` is
/// the error when its content type is something else.
pub(crate) fn read_multipart(
    headers: &HeaderMap,
    body: &[u8],
    not_multipart: &str,
) -> Result<Vec<FormPart>, String> {
    form_boundary(content_type(headers))
        .ok_or_else(|| not_multipart.to_string())
        .and_then(|b| parse_multipart(body, &b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn form_parser_reads_fields_and_files() {
        let body = b"--b1\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n--b1\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b1--\r\n";
        let parts = parse_multipart(body, "b1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "prompt");
        assert_eq!(parts[0].data, b"a cat");
        assert_eq!(parts[1].filename.as_deref(), Some("x.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert!(parse_multipart(
            b"--b1\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx",
            "b1"
        )
        .is_err());
        assert_eq!(
            form_boundary("multipart/form-data; boundary=\"b1\"").as_deref(),
            Some("b1")
        );
    }

    #[test]
    fn a_boundary_prefix_inside_a_file_is_data() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"model_id\"\r\n\r\nscribe_v1\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--X\r\n--XX--\r\n";
        let parts = parse_multipart(body, "XX").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"scribe_v1");
        assert_eq!(parts[1].filename.as_deref(), Some("a.wav"));
        assert_eq!(parts[1].data, b"RIFF\r\n--X");
    }
}
