//! A fake of the Amazon Bedrock runtime's Converse API
//! (`POST /model/{modelId}/converse` and `/converse-stream`), written from the
//! API reference and the SigV4 signing guide.
//!
//! Every request must be SigV4-signed for service `bedrock` with the fake's
//! credentials: the fake rebuilds the canonical request from what it received
//! (raw path encoded once more, the signed headers' received values, the body's
//! hash) and answers 403 with AWS's messages when the signature, key, scope,
//! date or session token is wrong. It then validates the body as the reference
//! describes it (content block unions, roles that alternate and start with the
//! user, `toolResult` ids matching the previous `toolUse` blocks, a
//! `toolConfig` whenever tool blocks appear) and answers 400
//! `ValidationException` when something is off.
//!
//! Answers are deterministic: a text reply quoting the last user text (and
//! counting images and documents); a `toolUse` block when tools are offered and
//! the last user turn is not tool results; a reply naming the tool result
//! otherwise; a reasoning block first when Claude thinking is enabled.
//! `maxTokens` and `stopSequences` cut the text with the matching stop reason.
//! Streams are real `application/vnd.amazon.eventstream` frames with valid
//! CRCs, in the documented event order (usage in `metadata`, after
//! `messageStop`). `GET /__requests` reports what was received, and
//! `POST /__fault` queues a fault (see [`BedrockFault::from_json`]).
//! InvokeModel for the embedding models (`/model/{id}/invoke`) is the
//! [`embed`] module's.

mod crypto;
pub mod embed;

use crate::common::{bind_local, FaultQueue, Recorder, Server};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

pub use crypto::crc32;

/// The message AWS sends when the recomputed signature differs.
pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// How far `x-amz-date` may be from the fake's clock, as AWS allows.
const MAX_SKEW_SECS: u64 = 5 * 60;

/// The credentials (and region) requests must be signed with.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests must send and sign this `x-amz-security-token`.
    pub session_token: Option<String>,
    pub region: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(access_key_id: &str, secret_access_key: &str, region: &str) -> Self {
        Credentials {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: None,
            region: region.to_string(),
        }
    }

    pub fn with_session_token(mut self, token: &str) -> Self {
        self.session_token = Some(token.to_string());
        self
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The raw path, percent-encoding as sent (`/model/a.b%3A0/converse`).
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    /// The parsed body, or `Null` if it was not JSON.
    pub body: Value,
    pub raw: Bytes,
    /// Whether the SigV4 signature checked out.
    pub signature_valid: bool,
}

impl RecordedRequest {
    /// `{method, path, query, headers, body, signature_valid}`; repeated
    /// headers are joined with `, `.
    pub fn to_json(&self) -> Value {
        let mut json = crate::common::request_json(
            &self.method,
            &self.path,
            self.query.as_deref(),
            &self.headers,
            &self.body,
        );
        if let Some(o) = json.as_object_mut() {
            o.insert("signature_valid".into(), Value::Bool(self.signature_valid));
        }
        json
    }

    /// The model id from the path, percent-decoded.
    pub fn model_id(&self) -> Option<String> {
        parse_operation(&self.path).map(|(m, _)| m)
    }
}

/// A way to make the next request go wrong, consumed by that request (after
/// the signature check, before body validation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BedrockFault {
    /// Answer with this status, an `x-amzn-ErrorType` header and `{"message"}`.
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
    /// Start a stream, send one text delta, then an exception frame of this
    /// type (`throttlingException`, `modelStreamErrorException`, …) and close.
    /// A non-stream request gets the exception's documented status instead.
    StreamException {
        exception_type: String,
        message: String,
    },
    /// A stream whose second frame has a wrong message CRC.
    CorruptFrame,
    /// A stream that closes after the first text delta, before `messageStop`.
    Truncate,
}

impl BedrockFault {
    /// The `POST /__fault` body, for tests in another process:
    /// `{"kind":"error","status":429,"error_type":"ThrottlingException","message":"…"}`,
    /// `{"kind":"stream_exception","exception_type":"throttlingException","message":"…"}`,
    /// `{"kind":"corrupt_frame"}` or `{"kind":"truncate"}`.
    pub fn from_json(v: &Value) -> Option<BedrockFault> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match v.get("kind").and_then(Value::as_str)? {
            "error" => Some(BedrockFault::Error {
                status: v
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())?,
                error_type: text("error_type")?,
                message: text("message")?,
            }),
            "stream_exception" => Some(BedrockFault::StreamException {
                exception_type: text("exception_type")?,
                message: text("message")?,
            }),
            "corrupt_frame" => Some(BedrockFault::CorruptFrame),
            "truncate" => Some(BedrockFault::Truncate),
            _ => None,
        }
    }

    pub fn throttling() -> BedrockFault {
        BedrockFault::StreamException {
            exception_type: "throttlingException".into(),
            message: "Too many requests, please wait before trying again.".into(),
        }
    }
}

/// The HTTP status the reference documents for an exception type.
pub fn status_for_exception(exception_type: &str) -> u16 {
    match exception_type
        .to_ascii_lowercase()
        .trim_end_matches("exception")
    {
        "validation" => 400,
        "accessdenied" => 403,
        "resourcenotfound" => 404,
        "modeltimeout" => 408,
        "modelstreamerror" | "modelerror" => 424,
        "throttling" | "modelnotready" => 429,
        "serviceunavailable" => 503,
        _ => 500,
    }
}

struct Shared {
    creds: Credentials,
    requests: Recorder<RecordedRequest>,
    faults: FaultQueue<BedrockFault>,
    counter: AtomicU64,
}

/// A running fake. Dropping it stops the server.
pub struct FakeBedrock {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0` and serves on the current tokio runtime.
pub async fn start(creds: Credentials) -> std::io::Result<FakeBedrock> {
    let listener = bind_local().await?;
    FakeBedrock::start_on(listener, creds).await
}

impl FakeBedrock {
    pub async fn start_on(
        listener: TcpListener,
        creds: Credentials,
    ) -> std::io::Result<FakeBedrock> {
        let shared = Arc::new(Shared {
            creds,
            requests: Recorder::new(),
            faults: FaultQueue::new(),
            counter: AtomicU64::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = Server::spawn(listener, app)?;
        Ok(FakeBedrock { shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`: Bedrock's runtime endpoint has no path prefix.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Every API request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// Queue a fault; each API request with a valid signature consumes one.
    pub fn push_fault(&self, fault: BedrockFault) {
        self.shared.faults.push(fault);
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

fn respond(status: u16, content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(
        "x-amzn-requestid",
        HeaderValue::from_static("7d9f3c1e-4b7a-4f4e-9d0e-2f1c6b5a8e90"),
    );
    r
}

/// `{"message": …}` with `x-amzn-ErrorType`, as the runtime answers errors.
fn aws_error(status: u16, error_type: &str, message: &str) -> Response {
    let mut r = respond(
        status,
        "application/json",
        Body::from(json!({ "message": message }).to_string()),
    );
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

fn validation(message: impl AsRef<str>) -> Response {
    aws_error(400, "ValidationException", message.as_ref())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(model id, stream)` for `/model/{id}/converse[-stream]`.
fn parse_operation(path: &str) -> Option<(String, bool)> {
    let rest = path.strip_prefix("/model/")?;
    let (id, op) = rest.split_once('/')?;
    let stream = match op {
        "converse" => false,
        "converse-stream" => true,
        _ => return None,
    };
    (!id.is_empty()).then(|| (percent_decode(id), stream))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if method == Method::GET && path == "/__requests" {
        let all = shared.requests.to_json(RecordedRequest::to_json);
        return respond(200, "application/json", Body::from(all.to_string()));
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if method == Method::POST && path == "/__fault" {
        return match BedrockFault::from_json(&body) {
            Some(fault) => {
                shared.faults.push(fault);
                respond(204, "application/json", Body::empty())
            }
            None => validation("unknown fault; see BedrockFault::from_json"),
        };
    }
    let verdict = verify_signature(
        &shared.creds,
        method.as_str(),
        &path,
        uri.query().unwrap_or(""),
        &headers,
        &raw,
    );
    shared.requests.push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: body.clone(),
        raw: raw.clone(),
        signature_valid: verdict.is_ok(),
    });
    if let Err((error_type, message)) = verdict {
        return aws_error(403, error_type, &message);
    }
    if let Some(model_id) = embed::invoke_target(&path).filter(|_| method == Method::POST) {
        return embed::invoke(&shared, &model_id, &body);
    }
    let Some((model_id, stream)) = parse_operation(&path).filter(|_| method == Method::POST) else {
        return aws_error(404, "UnknownOperationException", "Unknown operation");
    };

    let fault = shared.faults.pop();
    match &fault {
        Some(BedrockFault::Error {
            status,
            error_type,
            message,
        }) => return aws_error(*status, error_type, message),
        Some(BedrockFault::StreamException {
            exception_type,
            message,
        }) if !stream => {
            let mut ty = exception_type.clone();
            if let Some(first) = ty.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            return aws_error(status_for_exception(exception_type), &ty, message);
        }
        _ => {}
    }

    if !model_id.contains('.') && !model_id.starts_with("arn:") {
        return validation("The provided model identifier is invalid.");
    }
    if body.is_null() {
        return aws_error(
            400,
            "SerializationException",
            "Unable to parse the request body as JSON.",
        );
    }
    if let Err(message) = validate(&body) {
        return validation(message);
    }
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let reply = plan_reply(&body, n);
    if stream {
        let frames = stream_frames(&reply, fault.as_ref());
        respond(
            200,
            "application/vnd.amazon.eventstream",
            Body::from_stream(futures_util::stream::iter(
                frames.into_iter().map(Ok::<Bytes, Infallible>),
            )),
        )
    } else {
        respond(
            200,
            "application/json",
            Body::from(reply.to_json().to_string()),
        )
    }
}

// ---------------------------------------------------------------------------
// SigV4 verification, written from AWS's signing guide
// ---------------------------------------------------------------------------

/// An AWS error type and message for a request whose signature is refused.
pub(crate) type Rejection = (&'static str, String);

fn incomplete(message: impl Into<String>) -> Rejection {
    ("IncompleteSignatureException", message.into())
}

/// RFC 3986 unreserved characters stay; everything else becomes `%XX`.
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn header_values(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Seconds since the epoch for `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

fn verify_signature(
    creds: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Rejection> {
    verify_signature_for("bedrock", creds, method, path, query, headers, body)
}

/// [`verify_signature`] for another AWS service's signing name (SageMaker
/// Runtime signs as `sagemaker`).
pub(crate) fn verify_signature_for(
    signing_name: &str,
    creds: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Rejection> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or((
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".to_string(),
        ))?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm.")
    })?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap_or(("", ""));
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete(format!(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. Authorization={auth}"
        )));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!("Credential is malformed: {credential}")));
    };
    if key_id != creds.access_key_id {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".to_string(),
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
    let when = parse_amz_date(amz_date).ok_or_else(|| {
        incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        ))
    })?;
    if terminator != "aws4_request" || date != &amz_date[..8] {
        return Err((
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid date: '{}'.",
                &amz_date[..8]
            ),
        ));
    }
    if service != signing_name {
        return Err((
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{signing_name}'."),
        ));
    }
    if region != creds.region {
        return Err((
            "InvalidSignatureException",
            format!("Credential should be scoped to a valid region, not '{region}'."),
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(when) > MAX_SKEW_SECS {
        return Err((
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is now earlier or later than the allowed 5 minute window."),
        ));
    }
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(incomplete(
            "SignedHeaders must include 'host' and 'x-amz-date'.",
        ));
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != names {
        return Err(incomplete(
            "SignedHeaders must be lowercase, sorted and unique.",
        ));
    }
    if let Some(expected) = &creds.session_token {
        let sent = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok());
        if sent != Some(expected.as_str()) || !names.contains(&"x-amz-security-token") {
            return Err((
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".to_string(),
            ));
        }
    }

    let mut canonical_headers = String::new();
    for name in &names {
        let value = header_values(headers, name).ok_or_else(|| {
            incomplete(format!(
                "Signed header '{name}' is missing from the request."
            ))
        })?;
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical_uri = if path.is_empty() || path == "/" {
        "/".to_string()
    } else {
        path.split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                encode_segment(&percent_decode(k)),
                encode_segment(&percent_decode(v)),
            )
        })
        .collect();
    params.sort();
    let canonical_query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed}\n{}",
        crypto::hex(&crypto::sha256(body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        crypto::hex(&crypto::sha256(canonical_request.as_bytes()))
    );
    let mut key = crypto::hmac_sha256(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        key = crypto::hmac_sha256(&key, part.as_bytes());
    }
    let expected = crypto::hex(&crypto::hmac_sha256(&key, string_to_sign.as_bytes()));
    if expected != signature {
        return Err(("InvalidSignatureException", SIGNATURE_MISMATCH.to_string()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Validation, as the Converse reference describes the request
// ---------------------------------------------------------------------------

const TOP_LEVEL: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
    "serviceTier",
];

fn extra_keys(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "Malformed input request: {path}: extraneous key [{k}] is not permitted"
        )),
        None => Ok(()),
    }
}

/// A union member object: exactly one of `allowed` set.
fn union_member<'a>(
    v: &'a Value,
    allowed: &[&str],
    path: &str,
) -> Result<(&'a str, &'a Value), String> {
    let obj = v.as_object().ok_or(format!("{path} must be an object"))?;
    if obj.len() != 1 {
        return Err(format!(
            "{path} must set exactly one member of the union, found {}",
            obj.len()
        ));
    }
    let (k, v) = obj.iter().next().ok_or(format!("{path} is empty"))?;
    if !allowed.contains(&k.as_str()) {
        return Err(format!(
            "Malformed input request: {path}: extraneous key [{k}] is not permitted"
        ));
    }
    Ok((k.as_str(), v))
}

fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn valid_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validate(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("The request body must be a JSON object.")?;
    extra_keys(obj, TOP_LEVEL, "request")?;
    if let Some(system) = obj.get("system") {
        let blocks = system.as_array().ok_or("system must be a list")?;
        for (j, b) in blocks.iter().enumerate() {
            let p = format!("system.{j}");
            match union_member(b, &["text", "guardContent", "cachePoint"], &p)? {
                ("text", t) => text_ok(t, &p)?,
                ("cachePoint", c) => cache_point_ok(c, &p)?,
                _ => {}
            }
        }
    }
    let tool_blocks = validate_messages(obj.get("messages"))?;
    let tool_names = validate_tool_config(obj.get("toolConfig"))?;
    if tool_blocks && tool_names.is_none() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    let mut max_tokens = None;
    if let Some(ic) = obj.get("inferenceConfig") {
        let ic = ic.as_object().ok_or("inferenceConfig must be an object")?;
        extra_keys(
            ic,
            &["maxTokens", "temperature", "topP", "stopSequences"],
            "inferenceConfig",
        )?;
        if let Some(m) = ic.get("maxTokens") {
            match m.as_i64() {
                Some(n) if n >= 1 => max_tokens = Some(n),
                _ => {
                    return Err("inferenceConfig.maxTokens must be an integer of at least 1".into())
                }
            }
        }
        for key in ["temperature", "topP"] {
            if let Some(v) = ic.get(key) {
                match v.as_f64() {
                    Some(x) if (0.0..=1.0).contains(&x) => {}
                    _ => return Err(format!("1 validation error detected: Value '{v}' at 'inferenceConfig.{key}' failed to satisfy constraint: Member must have value less than or equal to 1")),
                }
            }
        }
        if let Some(s) = ic.get("stopSequences") {
            let ok = s
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.as_str().is_some_and(|x| !x.is_empty())));
            if !ok {
                return Err(
                    "inferenceConfig.stopSequences must be a list of non-empty strings".into(),
                );
            }
        }
    }
    if let Some(extra) = obj.get("additionalModelRequestFields") {
        let extra = extra
            .as_object()
            .ok_or("additionalModelRequestFields must be an object")?;
        if let Some(thinking) = extra.get("thinking") {
            if thinking.get("type").and_then(Value::as_str) == Some("enabled") {
                let budget = thinking
                    .get("budget_tokens")
                    .and_then(Value::as_i64)
                    .ok_or("thinking.budget_tokens: Field required")?;
                if budget < 1024 {
                    return Err("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into());
                }
                if max_tokens.is_some_and(|m| budget >= m) {
                    return Err(
                        "`max_tokens` must be greater than `thinking.budget_tokens`.".into(),
                    );
                }
                let forced = obj
                    .get("toolConfig")
                    .and_then(|t| t.get("toolChoice"))
                    .is_some_and(|c| c.get("any").is_some() || c.get("tool").is_some());
                if forced {
                    return Err(
                        "Thinking may not be enabled when tool_choice forces tool use.".into(),
                    );
                }
                let temp = obj
                    .get("inferenceConfig")
                    .and_then(|i| i.get("temperature"))
                    .and_then(Value::as_f64);
                if temp.is_some_and(|t| t != 1.0) {
                    return Err(
                        "`temperature` may only be set to 1 when thinking is enabled.".into(),
                    );
                }
            }
        }
    }
    Ok(())
}

fn text_ok(t: &Value, path: &str) -> Result<(), String> {
    match t.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(()),
        Some(_) => Err(format!(
            "The text field in the ContentBlock object at {path} is blank. Add text to the text field, and try again."
        )),
        None => Err(format!("{path}.text must be a string")),
    }
}

fn cache_point_ok(c: &Value, path: &str) -> Result<(), String> {
    if c.get("type").and_then(Value::as_str) == Some("default")
        && c.as_object().is_some_and(|o| o.len() == 1)
    {
        Ok(())
    } else {
        Err(format!("{path}.cachePoint.type must be 'default'"))
    }
}

const USER_BLOCKS: &[&str] = &[
    "text",
    "image",
    "document",
    "video",
    "toolResult",
    "guardContent",
    "cachePoint",
];
const ASSISTANT_BLOCKS: &[&str] = &["text", "toolUse", "reasoningContent", "cachePoint"];

/// Returns whether any `toolUse` or `toolResult` block appeared.
fn validate_messages(messages: Option<&Value>) -> Result<bool, String> {
    let messages = match messages {
        None => return Err("messages: Field required".into()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("messages must be a list".into()),
    };
    if messages.is_empty() {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    }
    let mut tool_blocks = false;
    let mut pending: Vec<String> = Vec::new();
    let mut last_role = "";
    let mut doc_names = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let obj = m
            .as_object()
            .ok_or(format!("messages.{i} must be an object"))?;
        extra_keys(obj, &["role", "content"], &format!("messages.{i}"))?;
        let role = match obj.get("role").and_then(Value::as_str) {
            Some(r @ ("user" | "assistant")) => r,
            _ => return Err(format!("messages.{i}.role must be 'user' or 'assistant'")),
        };
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if role == last_role {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        last_role = role;
        let blocks = obj
            .get("content")
            .and_then(Value::as_array)
            .ok_or(format!("messages.{i}.content must be a list"))?;
        if blocks.is_empty() {
            return Err(format!("The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."));
        }
        let allowed = if role == "user" {
            USER_BLOCKS
        } else {
            ASSISTANT_BLOCKS
        };
        let mut results: Vec<String> = Vec::new();
        let mut uses: Vec<String> = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            let p = format!("messages.{i}.content.{j}");
            let (kind, v) = union_member(b, allowed, &p)?;
            match kind {
                "text" => text_ok(v, &p)?,
                "cachePoint" => cache_point_ok(v, &p)?,
                "image" => image_ok(v, &p)?,
                "document" => {
                    let name = document_ok(v, &p)?;
                    if !doc_names.insert(name.to_string()) {
                        return Err(format!("{p}.document.name: document names must be unique; '{name}' is used twice"));
                    }
                }
                "toolUse" => {
                    tool_blocks = true;
                    let tu = v
                        .as_object()
                        .ok_or(format!("{p}.toolUse must be an object"))?;
                    extra_keys(tu, &["toolUseId", "name", "input"], &format!("{p}.toolUse"))?;
                    let id = tu.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                    if !valid_name(id, 64) {
                        return Err(format!("{p}.toolUse.toolUseId must match ^[a-zA-Z0-9_-]+$"));
                    }
                    if !tu
                        .get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| valid_name(n, 64))
                    {
                        return Err(format!(
                            "{p}.toolUse.name must match ^[a-zA-Z0-9_-]{{1,64}}$"
                        ));
                    }
                    if !tu.get("input").is_some_and(Value::is_object) {
                        return Err(format!("{p}.toolUse.input must be a JSON object"));
                    }
                    uses.push(id.to_string());
                }
                "toolResult" => {
                    tool_blocks = true;
                    let tr = v
                        .as_object()
                        .ok_or(format!("{p}.toolResult must be an object"))?;
                    extra_keys(
                        tr,
                        &["toolUseId", "content", "status"],
                        &format!("{p}.toolResult"),
                    )?;
                    let id = tr.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                    let content = tr
                        .get("content")
                        .and_then(Value::as_array)
                        .ok_or(format!("{p}.toolResult.content must be a list"))?;
                    for (k, c) in content.iter().enumerate() {
                        let cp = format!("{p}.toolResult.content.{k}");
                        match union_member(c, &["text", "json", "image", "document", "video"], &cp)?
                        {
                            ("text", t) if !t.is_string() => {
                                return Err(format!("{cp}.text must be a string"))
                            }
                            ("image", img) => image_ok(img, &cp)?,
                            _ => {}
                        }
                    }
                    if let Some(s) = tr.get("status") {
                        if !matches!(s.as_str(), Some("success" | "error")) {
                            return Err(format!(
                                "{p}.toolResult.status must be 'success' or 'error'"
                            ));
                        }
                    }
                    results.push(id.to_string());
                }
                "reasoningContent" => {
                    let (rk, rv) = union_member(
                        v,
                        &["reasoningText", "redactedContent"],
                        &format!("{p}.reasoningContent"),
                    )?;
                    if rk == "reasoningText" && !rv.get("text").is_some_and(Value::is_string) {
                        return Err(format!(
                            "{p}.reasoningContent.reasoningText.text must be a string"
                        ));
                    }
                }
                _ => {}
            }
        }
        if role == "user" {
            if results.len() > pending.len() {
                return Err(format!("The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks of previous turn."));
            }
            let missing: Vec<&str> = pending
                .iter()
                .filter(|id| !results.contains(id))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "Expected toolResult blocks at messages.{i}.content for the following Ids: {}",
                    missing.join(", ")
                ));
            }
            if let Some(stray) = results.iter().find(|r| !pending.contains(r)) {
                return Err(format!("messages.{i}.content: toolResult block with id {stray} has no matching toolUse block in the previous turn"));
            }
            pending.clear();
        } else {
            pending = uses;
        }
    }
    Ok(tool_blocks)
}

fn image_ok(v: &Value, path: &str) -> Result<(), String> {
    let obj = v
        .as_object()
        .ok_or(format!("{path}.image must be an object"))?;
    extra_keys(obj, &["format", "source"], &format!("{path}.image"))?;
    if !matches!(
        obj.get("format").and_then(Value::as_str),
        Some("png" | "jpeg" | "gif" | "webp")
    ) {
        return Err(format!(
            "{path}.image.format must be one of png, jpeg, gif, webp"
        ));
    }
    let source = obj
        .get("source")
        .ok_or(format!("{path}.image.source: Field required"))?;
    match union_member(
        source,
        &["bytes", "s3Location"],
        &format!("{path}.image.source"),
    )? {
        ("bytes", b) if b.as_str().is_some_and(is_base64) => Ok(()),
        ("bytes", _) => Err(format!(
            "{path}.image.source.bytes: Invalid base64 image data"
        )),
        (_, loc)
            if loc
                .get("uri")
                .and_then(Value::as_str)
                .is_some_and(|u| u.starts_with("s3://")) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{path}.image.source.s3Location.uri must be an s3:// URI"
        )),
    }
}

fn document_ok<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    let obj = v
        .as_object()
        .ok_or(format!("{path}.document must be an object"))?;
    extra_keys(
        obj,
        &["format", "name", "source", "context", "citations"],
        &format!("{path}.document"),
    )?;
    if !matches!(
        obj.get("format").and_then(Value::as_str),
        Some("pdf" | "csv" | "doc" | "docx" | "xls" | "xlsx" | "html" | "txt" | "md")
    ) {
        return Err(format!(
            "{path}.document.format is not a supported document format"
        ));
    }
    let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
    let name_ok = !name.is_empty()
        && !name.contains("  ")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '(' | ')' | '[' | ']'));
    if !name_ok {
        return Err(format!("{path}.document.name may only contain alphanumeric characters, single spaces, hyphens, parentheses and square brackets"));
    }
    let source = obj
        .get("source")
        .ok_or(format!("{path}.document.source: Field required"))?;
    match union_member(
        source,
        &["bytes", "s3Location", "text", "content"],
        &format!("{path}.document.source"),
    )? {
        ("bytes", b) if !b.as_str().is_some_and(is_base64) => {
            Err(format!("{path}.document.source.bytes: Invalid base64 data"))
        }
        _ => Ok(name),
    }
}

/// The declared tool names, or `None` without a toolConfig.
fn validate_tool_config(tc: Option<&Value>) -> Result<Option<Vec<String>>, String> {
    let Some(tc) = tc else {
        return Ok(None);
    };
    let obj = tc.as_object().ok_or("toolConfig must be an object")?;
    extra_keys(obj, &["tools", "toolChoice"], "toolConfig")?;
    let tools = obj
        .get("tools")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .ok_or("toolConfig.tools must be a non-empty list")?;
    let mut names = Vec::new();
    for (k, t) in tools.iter().enumerate() {
        let p = format!("toolConfig.tools.{k}");
        match union_member(t, &["toolSpec", "cachePoint", "systemTool"], &p)? {
            ("toolSpec", spec) => {
                let spec = spec
                    .as_object()
                    .ok_or(format!("{p}.toolSpec must be an object"))?;
                extra_keys(
                    spec,
                    &["name", "description", "inputSchema", "strict"],
                    &format!("{p}.toolSpec"),
                )?;
                let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
                if !valid_name(name, 64) {
                    return Err(format!(
                        "{p}.toolSpec.name must match ^[a-zA-Z0-9_-]{{1,64}}$"
                    ));
                }
                if spec
                    .get("description")
                    .is_some_and(|d| d.as_str().is_none_or(str::is_empty))
                {
                    return Err(format!(
                        "{p}.toolSpec.description must be a non-empty string"
                    ));
                }
                let schema = spec
                    .get("inputSchema")
                    .ok_or(format!("{p}.toolSpec.inputSchema: Field required"))?;
                match union_member(schema, &["json"], &format!("{p}.toolSpec.inputSchema"))? {
                    (_, s) if s.get("type").and_then(Value::as_str) == Some("object") => {}
                    _ => {
                        return Err(format!(
                            "{p}.toolSpec.inputSchema.json must be a JSON schema of type object"
                        ))
                    }
                }
                if names.iter().any(|n| n == name) {
                    return Err(format!("toolConfig.tools: duplicate tool name '{name}'"));
                }
                names.push(name.to_string());
            }
            ("cachePoint", c) => cache_point_ok(c, &p)?,
            _ => {}
        }
    }
    if let Some(choice) = obj.get("toolChoice") {
        match union_member(choice, &["auto", "any", "tool"], "toolConfig.toolChoice")? {
            ("tool", t) => {
                let name = t.get("name").and_then(Value::as_str).unwrap_or("");
                if !names.iter().any(|n| n == name) {
                    return Err(format!(
                        "toolConfig.toolChoice.tool.name: tool '{name}' is not in toolConfig.tools"
                    ));
                }
            }
            (k, v) if !v.as_object().is_some_and(Map::is_empty) => {
                return Err(format!("toolConfig.toolChoice.{k} must be an empty object"));
            }
            _ => {}
        }
    }
    Ok(Some(names))
}

// ---------------------------------------------------------------------------
// Deterministic answers
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum ReplyBlock {
    Reasoning {
        text: String,
        signature: String,
    },
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

#[derive(Clone, Debug)]
struct Reply {
    blocks: Vec<ReplyBlock>,
    stop_reason: &'static str,
    input_tokens: u64,
    cache_read: Option<u64>,
    output_tokens: u64,
}

impl Reply {
    fn usage(&self) -> Value {
        let mut u = json!({
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.input_tokens + self.output_tokens + self.cache_read.unwrap_or(0),
        });
        if let (Some(read), Some(obj)) = (self.cache_read, u.as_object_mut()) {
            obj.insert("cacheReadInputTokens".into(), Value::from(read));
            obj.insert("cacheWriteInputTokens".into(), Value::from(0));
        }
        u
    }

    fn to_json(&self) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| match b {
                ReplyBlock::Reasoning { text, signature } => {
                    json!({"reasoningContent": {"reasoningText": {"text": text, "signature": signature}}})
                }
                ReplyBlock::Text(t) => json!({"text": t}),
                ReplyBlock::ToolUse { id, name, input } => {
                    json!({"toolUse": {"toolUseId": id, "name": name, "input": input}})
                }
            })
            .collect();
        json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": self.stop_reason,
            "usage": self.usage(),
            "metrics": {"latencyMs": 42},
        })
    }
}

fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// The minimal instance a schema describes, so tool inputs validate.
fn instance(schema: &Value, name: &str) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(types)) => types.iter().find_map(Value::as_str).unwrap_or("string"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), instance(v, k));
                }
            }
            Value::Object(out)
        }
        "array" => Value::Array(vec![schema
            .get("items")
            .map_or(Value::Null, |i| instance(i, name))]),
        "integer" => json!(42),
        "number" => json!(21.5),
        "boolean" => json!(true),
        _ if name.contains("city") || name.contains("location") => json!("Oslo"),
        _ => json!(format!("example {name}").trim().to_string()),
    }
}

fn plan_reply(body: &Value, n: u64) -> Reply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages.iter().rev().find(|m| m["role"] == "user");
    let mut texts = Vec::new();
    let mut images = 0;
    let mut documents = 0;
    let mut results: Vec<(String, String)> = Vec::new();
    for b in last_user
        .and_then(|m| m["content"].as_array())
        .into_iter()
        .flatten()
    {
        if let Some(t) = b["text"].as_str() {
            texts.push(t.to_string());
        } else if b.get("image").is_some() {
            images += 1;
        } else if b.get("document").is_some() {
            documents += 1;
        } else if let Some(tr) = b.get("toolResult") {
            let id = tr["toolUseId"].as_str().unwrap_or("").to_string();
            let content: String = tr["content"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| match c.get("json") {
                    Some(j) => j.to_string(),
                    None => c["text"].as_str().unwrap_or("").to_string(),
                })
                .collect();
            results.push((id, content));
        }
    }
    let tool_name_of = |id: &str| -> String {
        messages
            .iter()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .find(|b| b["toolUse"]["toolUseId"] == id)
            .and_then(|b| b["toolUse"]["name"].as_str().map(str::to_string))
            .unwrap_or_default()
    };

    let mut blocks = Vec::new();
    let thinking = body["additionalModelRequestFields"]["thinking"]["type"] == "enabled";
    if thinking {
        blocks.push(ReplyBlock::Reasoning {
            text: "The user wants an answer; I will give it.".into(),
            signature: format!("ZmFrZS1zaWduYXR1cmUt{n}"),
        });
    }
    let tools: Vec<&Value> = body["toolConfig"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t.get("toolSpec").is_some())
        .collect();
    let mut stop_reason = "end_turn";
    if !results.is_empty() {
        let said: Vec<String> = results
            .iter()
            .map(|(id, content)| format!("The tool {} returned {content}.", tool_name_of(id)))
            .collect();
        blocks.push(ReplyBlock::Text(said.join(" ")));
    } else if let Some(first) = tools.first() {
        let chosen = body["toolConfig"]["toolChoice"]["tool"]["name"]
            .as_str()
            .and_then(|name| tools.iter().find(|t| t["toolSpec"]["name"] == name))
            .unwrap_or(first);
        let spec = &chosen["toolSpec"];
        let name = spec["name"].as_str().unwrap_or("").to_string();
        blocks.push(ReplyBlock::ToolUse {
            id: format!("tooluse_fake{n:04}AbCdEfGhIjKl"),
            input: instance(&spec["inputSchema"]["json"], &name),
            name,
        });
        stop_reason = "tool_use";
    } else {
        let mut text = format!("Hello from fake Bedrock. You said: {}", texts.join(" "));
        if images > 0 {
            text.push_str(&format!(" (I see {images} image(s).)"));
        }
        if documents > 0 {
            text.push_str(&format!(" (I got {documents} document(s).)"));
        }
        let config = &body["inferenceConfig"];
        for stop in config["stopSequences"].as_array().into_iter().flatten() {
            if let Some(at) = stop.as_str().and_then(|s| text.find(s)) {
                text.truncate(at);
                stop_reason = "stop_sequence";
            }
        }
        if let Some(max) = config["maxTokens"].as_u64() {
            if tokens(text.len()) > max {
                let keep: String = text
                    .chars()
                    .take(usize::try_from(max * 4).unwrap_or(usize::MAX))
                    .collect();
                text = keep;
                stop_reason = "max_tokens";
            }
        }
        blocks.push(ReplyBlock::Text(text));
    }

    let output_chars: usize = blocks
        .iter()
        .map(|b| match b {
            ReplyBlock::Reasoning { text, .. } | ReplyBlock::Text(text) => text.len(),
            ReplyBlock::ToolUse { input, .. } => input.to_string().len(),
        })
        .sum();
    // Everything up to the last cache point counts as read from the cache.
    let mut total = 0usize;
    let mut cached = 0usize;
    let pieces = body["system"].as_array().into_iter().flatten().chain(
        messages
            .iter()
            .flat_map(|m| m["content"].as_array().into_iter().flatten()),
    );
    for p in pieces {
        if p.get("cachePoint").is_some() {
            cached = total;
        } else {
            total += p.to_string().len();
        }
    }
    let cache_read = (cached > 0).then(|| tokens(cached));
    Reply {
        blocks,
        stop_reason,
        input_tokens: tokens(total) - cache_read.unwrap_or(0).min(tokens(total)),
        cache_read,
        output_tokens: tokens(output_chars),
    }
}

// ---------------------------------------------------------------------------
// Event-stream frames
// ---------------------------------------------------------------------------

/// One `application/vnd.amazon.eventstream` message with string headers.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 16 + h.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude = crc32(&out);
    out.extend_from_slice(&prelude.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An `event` frame; the payload gets Bedrock's `p` padding field.
pub fn event_frame(event_type: &str, mut payload: Value, pad: usize) -> Vec<u8> {
    if let Some(obj) = payload.as_object_mut() {
        let p: String = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            .chars()
            .cycle()
            .take(pad % 40 + 1)
            .collect();
        obj.insert("p".into(), Value::String(p));
    }
    frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// An `exception` frame, as a stream sends a mid-stream error.
pub fn exception_frame(exception_type: &str, message: &str) -> Vec<u8> {
    frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({ "message": message }).to_string().as_bytes(),
    )
}

fn pieces(s: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

fn stream_frames(reply: &Reply, fault: Option<&BedrockFault>) -> Vec<Bytes> {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut pad = 0;
    let mut ev = |frames: &mut Vec<Vec<u8>>, ty: &str, payload: Value| {
        pad += 7;
        frames.push(event_frame(ty, payload, pad));
    };
    ev(&mut frames, "messageStart", json!({"role": "assistant"}));
    let mut first_delta_at = None;
    for (i, block) in reply.blocks.iter().enumerate() {
        match block {
            ReplyBlock::Reasoning { text, signature } => {
                for p in pieces(text, 12) {
                    ev(
                        &mut frames,
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i, "delta": {"reasoningContent": {"text": p}}}),
                    );
                }
                ev(
                    &mut frames,
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"reasoningContent": {"signature": signature}}}),
                );
            }
            ReplyBlock::Text(text) => {
                for p in pieces(text, 9) {
                    ev(
                        &mut frames,
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i, "delta": {"text": p}}),
                    );
                    first_delta_at.get_or_insert(frames.len());
                }
            }
            ReplyBlock::ToolUse { id, name, input } => {
                ev(
                    &mut frames,
                    "contentBlockStart",
                    json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                );
                for p in pieces(&input.to_string(), 7) {
                    ev(
                        &mut frames,
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": p}}}),
                    );
                    first_delta_at.get_or_insert(frames.len());
                }
            }
        }
        ev(
            &mut frames,
            "contentBlockStop",
            json!({"contentBlockIndex": i}),
        );
    }
    ev(
        &mut frames,
        "messageStop",
        json!({"stopReason": reply.stop_reason}),
    );
    ev(
        &mut frames,
        "metadata",
        json!({"usage": reply.usage(), "metrics": {"latencyMs": 42}}),
    );

    let cut = first_delta_at.unwrap_or(1);
    match fault {
        Some(BedrockFault::StreamException {
            exception_type,
            message,
        }) => {
            frames.truncate(cut);
            frames.push(exception_frame(exception_type, message));
        }
        Some(BedrockFault::Truncate) => frames.truncate(cut),
        Some(BedrockFault::CorruptFrame) => {
            if let Some(f) = frames.get_mut(1) {
                if let Some(last) = f.last_mut() {
                    *last ^= 0x5a;
                }
            }
        }
        _ => {}
    }
    frames.into_iter().map(Bytes::from).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_published_event_stream_vectors() {
        // aws-c-event-stream: the empty message and a `content-type` header message.
        assert_eq!(
            frame(&[], b""),
            [0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]
        );
        let f = frame(&[("content-type", "application/json")], b"{'foo':'bar'}");
        assert_eq!(
            &f[..12],
            &[0, 0, 0, 0x3D, 0, 0, 0, 0x20, 0x07, 0xFD, 0x83, 0x96]
        );
        assert_eq!(&f[f.len() - 4..], &[0x8D, 0x9C, 0x08, 0xB1]);
    }

    #[test]
    fn amz_dates_parse() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }

    /// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (Hinnant's civil_from_days).
    fn amz_date_of(secs: u64) -> String {
        let z = (secs / 86_400) as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let t = secs % 86_400;
        format!(
            "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
            t / 3600,
            (t % 3600) / 60,
            t % 60
        )
    }

    fn suite_headers(date: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        h.insert("x-amz-date", HeaderValue::from_str(date).unwrap());
        h
    }

    #[test]
    fn verifier_accepts_the_aws_suite_signature_with_its_scope() {
        // get-vanilla, re-scoped: the verifier checks bedrock scopes and the
        // clock, so rebuild the suite's request for "now" and sign it by hand
        // with the suite's algorithm steps.
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let amz = amz_date_of(now);
        assert_eq!(parse_amz_date(&amz), Some(now));
        let headers = suite_headers(&amz);
        let canonical = format!(
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:{amz}\n\nhost;x-amz-date\n{}",
            crypto::hex(&crypto::sha256(b""))
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz}\n{}/us-east-1/bedrock/aws4_request\n{}",
            &amz[..8],
            crypto::hex(&crypto::sha256(canonical.as_bytes()))
        );
        let mut key = crypto::hmac_sha256(
            b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &amz.as_bytes()[..8],
        );
        for p in ["us-east-1", "bedrock", "aws4_request"] {
            key = crypto::hmac_sha256(&key, p.as_bytes());
        }
        let sig = crypto::hex(&crypto::hmac_sha256(&key, sts.as_bytes()));
        let mut h = headers.clone();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}",
                &amz[..8]
            ))
            .unwrap(),
        );
        assert_eq!(verify_signature(&creds, "GET", "/", "", &h, b""), Ok(()));
        // One byte of body more and the signature no longer matches.
        let e = verify_signature(&creds, "GET", "/", "", &h, b"x").unwrap_err();
        assert_eq!(e.1, SIGNATURE_MISMATCH);
        // Another key id is not recognized.
        let other = Credentials::new("AKIDOTHER", "x", "us-east-1");
        assert_eq!(
            verify_signature(&other, "GET", "/", "", &h, b"")
                .unwrap_err()
                .0,
            "UnrecognizedClientException"
        );
        // A required session token that was not sent.
        let with_token = creds.clone().with_session_token("tok");
        assert_eq!(
            verify_signature(&with_token, "GET", "/", "", &h, b"")
                .unwrap_err()
                .0,
            "UnrecognizedClientException"
        );
    }

    #[test]
    fn stale_dates_and_foreign_scopes_are_rejected() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", "us-east-1");
        let mut h = suite_headers("20150830T123600Z");
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"),
        );
        let e = verify_signature(&creds, "POST", "/", "", &h, b"").unwrap_err();
        assert!(e.1.starts_with("Signature expired"), "{e:?}");
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"),
        );
        let e = verify_signature(&creds, "POST", "/", "", &h, b"").unwrap_err();
        assert!(e.1.contains("'bedrock'"), "{e:?}");
        h.remove(http::header::AUTHORIZATION);
        assert_eq!(
            verify_signature(&creds, "POST", "/", "", &h, b"")
                .unwrap_err()
                .0,
            "MissingAuthenticationTokenException"
        );
    }

    #[test]
    fn canonical_uri_encodes_the_raw_path_again() {
        let path = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";
        let enc: Vec<String> = path.split('/').map(encode_segment).collect();
        assert_eq!(
            enc.join("/"),
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
        );
        assert_eq!(
            parse_operation(path),
            Some((
                "anthropic.claude-3-5-sonnet-20240620-v1:0".to_string(),
                false
            ))
        );
        assert_eq!(
            parse_operation("/model/x.y/converse-stream"),
            Some(("x.y".to_string(), true))
        );
        assert_eq!(parse_operation("/model/x.y/invoke"), None);
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": [{"text": text}]})
    }

    #[test]
    fn validation_follows_the_reference() {
        assert!(validate(&json!({"messages": [user("hi")]})).is_ok());
        for (body, needle) in [
            (json!({"messages": []}), "start with a user message"),
            (
                json!({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}),
                "start with a user message",
            ),
            (json!({"messages": [user("a"), user("b")]}), "alternate"),
            (json!({"messages": [user(" ")]}), "is blank"),
            (
                json!({"messages": [user("x")], "model": "m"}),
                "extraneous key [model]",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}),
                "exactly one",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "AAAA"}}}]}]}),
                "format",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "not base64!"}}}]}]}),
                "base64",
            ),
            (
                json!({"messages": [user("x"), {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]}, {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}]}}]}]}),
                "toolConfig",
            ),
            (
                json!({"messages": [user("x")], "inferenceConfig": {"temperature": 1.5}}),
                "temperature",
            ),
            (
                json!({"messages": [user("x")], "toolConfig": {"tools": []}}),
                "non-empty",
            ),
            (
                json!({"messages": [user("x")], "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}], "toolChoice": {"tool": {"name": "g"}}}}),
                "not in toolConfig.tools",
            ),
        ] {
            let e = validate(&body).unwrap_err();
            assert!(e.contains(needle), "{body}: {e}");
        }
        let tc = json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]});
        let convo = |results: Value| {
            json!({"messages": [
            user("x"),
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}},
                {"toolUse": {"toolUseId": "t2", "name": "f", "input": {}}},
            ]},
            {"role": "user", "content": results},
        ], "toolConfig": tc})
        };
        assert!(validate(&convo(json!([
            {"toolResult": {"toolUseId": "t1", "content": [{"text": "a"}]}},
            {"toolResult": {"toolUseId": "t2", "content": [{"json": {"a": 1}}], "status": "success"}},
        ]))).is_ok());
        let e = validate(&convo(
            json!([{"toolResult": {"toolUseId": "t1", "content": []}}]),
        ))
        .unwrap_err();
        assert!(e.contains("following Ids: t2"), "{e}");
    }

    #[test]
    fn replies_are_deterministic() {
        let r = plan_reply(&json!({"messages": [user("hi")]}), 1);
        assert_eq!(
            r.to_json()["output"]["message"]["content"][0]["text"],
            "Hello from fake Bedrock. You said: hi"
        );
        assert_eq!(r.stop_reason, "end_turn");
        let r = plan_reply(
            &json!({"messages": [user("hi")], "inferenceConfig": {"maxTokens": 2}}),
            1,
        );
        assert_eq!(r.stop_reason, "max_tokens");
        let r = plan_reply(
            &json!({
                "messages": [user("weather?")],
                "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}]},
            }),
            3,
        );
        let tu = &r.to_json()["output"]["message"]["content"][0]["toolUse"];
        assert_eq!(tu["name"], "get_weather");
        assert_eq!(tu["input"], json!({"city": "Oslo"}));
        assert_eq!(r.stop_reason, "tool_use");
    }

    #[test]
    fn exception_fault_cuts_the_stream_after_the_first_delta() {
        let r = plan_reply(
            &json!({"messages": [user("hi there, a longer message")]}),
            1,
        );
        let frames = stream_frames(&r, Some(&BedrockFault::throttling()));
        let last = frames.last().unwrap();
        let text = String::from_utf8_lossy(last);
        assert!(
            text.contains("throttlingException") && text.contains(":message-type"),
            "{text}"
        );
        assert_eq!(frames.len(), 3, "messageStart, one delta, the exception");
    }
}
