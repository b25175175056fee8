//! A fake of Google Vertex AI for one project and location, with its own
//! Google OAuth2 token endpoint, following Google Cloud's published REST
//! references:
//!
//! - `POST /token` is the service-account token endpoint (RFC 7523 JWT-bearer
//!   grant): the form must carry
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and an
//!   `assertion` JWT whose RS256 signature verifies with the service account's
//!   public key, with `iss` = the account's `client_email`, `aud` = this
//!   endpoint's URL, a `scope` including `cloud-platform`, and `iat`/`exp`
//!   spanning now and at most an hour. It answers
//!   `{access_token, expires_in, token_type}` (the lifetime is settable, so
//!   tests can watch a token expire) or Google's
//!   `{"error","error_description"}` with 400.
//! - `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
//!   (and `:streamGenerateContent?alt=sse`) takes Gemini's request body and
//!   answers like the Gemini fake, as Vertex does, with `role` required on
//!   every content.
//! - `POST …/publishers/anthropic/models/{model}:rawPredict` (and
//!   `:streamRawPredict`) takes Anthropic's Messages body without `model` and
//!   with `"anthropic_version": "vertex-2023-10-16"`, and answers like the
//!   Anthropic fake.
//! - Every model call needs `Authorization: Bearer <token>` with a token this
//!   fake issued and that has not expired, else 401 UNAUTHENTICATED; another
//!   project is 403 PERMISSION_DENIED; errors use Google's envelope
//!   `{"error":{"code","message","status"}}` except those of the Claude body,
//!   which are Anthropic's.
//!
//! The test service account lives in `testdata/test-service-account.json`: a
//! key made for these tests, valid nowhere else.

use crate::common::{bind_local, unix_now, FaultQueue, Recorder, Server};
use crate::oauth::{form_json, form_value, is_form, parse_form, IssuedTokens, TokenProblem};
use crate::{anthropic, gemini};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{KeyPair as _, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The test service account's key file, as committed.
pub const TEST_SERVICE_ACCOUNT_JSON: &str = include_str!("../testdata/test-service-account.json");

/// Where the committed test key file lives on disk.
pub fn test_service_account_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/test-service-account.json")
}

/// The scope Vertex AI calls need.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The `anthropic_version` Vertex AI requires in Claude bodies.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// Google's default token lifetime.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3599;

/// What the fake knows of the service account: who it is and its public key.
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    pub client_email: String,
    /// The RSA public key (PKCS#1 `RSAPublicKey` DER) the JWTs must verify with.
    pub public_key: Vec<u8>,
}

impl ServiceAccount {
    /// Reads `client_email` and derives the public key from a key file's JSON.
    pub fn from_key_json(key_json: &str) -> Result<ServiceAccount, String> {
        let v: Value = serde_json::from_str(key_json).map_err(|e| format!("key JSON: {e}"))?;
        let client_email = v["client_email"]
            .as_str()
            .ok_or("key JSON has no client_email")?
            .to_string();
        let pem = v["private_key"]
            .as_str()
            .ok_or("key JSON has no private_key")?;
        let b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let der = STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("private_key base64: {e}"))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("private_key: {e}"))?;
        Ok(ServiceAccount {
            client_email,
            public_key: pair.public_key().as_ref().to_vec(),
        })
    }

    /// The committed test service account.
    pub fn test() -> Result<ServiceAccount, String> {
        ServiceAccount::from_key_json(TEST_SERVICE_ACCOUNT_JSON)
    }
}

/// One request as the fake received it; for token requests the body is the
/// form as an object of strings.
pub use crate::common::RecordedRequest;

/// A failure for the next token request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFault {
    /// 500 with Google's `internal_failure`.
    ServerError,
    /// 400 `invalid_grant`, as for a deleted or disabled key.
    InvalidGrant,
}

/// A failure for the next model request (after the token check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFault {
    /// 429 RESOURCE_EXHAUSTED in Google's envelope.
    ResourceExhausted,
    /// Claude: 529 `overloaded_error` in Anthropic's envelope.
    Overloaded,
    /// Streams: every event but the ending ones, then a clean end of body.
    Truncated,
}

struct Shared {
    account: ServiceAccount,
    project: String,
    location: String,
    token_uri: String,
    tokens: IssuedTokens,
    requests: Recorder<RecordedRequest>,
    token_requests: Recorder<RecordedRequest>,
    token_faults: FaultQueue<TokenFault>,
    faults: FaultQueue<ModelFault>,
    counter: AtomicU64,
}

/// A running fake. Dropping it stops the server.
pub struct FakeVertex {
    shared: Arc<Shared>,
    server: Server,
}

/// Starts a fake on `127.0.0.1:<free port>` for `project` and `location`,
/// trusting the committed test service account.
pub async fn start(project: &str, location: &str) -> std::io::Result<FakeVertex> {
    let account = ServiceAccount::test().map_err(std::io::Error::other)?;
    start_on(bind_local().await?, account, project, location).await
}

/// Serves on a listener the caller bound. Besides the Vertex API and the token
/// endpoint, `GET /__requests` lists the model requests and
/// `GET /__token_requests` the token requests, as JSON arrays of
/// `{method, path, query, headers, body}`.
pub async fn start_on(
    listener: TcpListener,
    account: ServiceAccount,
    project: &str,
    location: &str,
) -> std::io::Result<FakeVertex> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        account,
        project: project.to_string(),
        location: location.to_string(),
        token_uri: format!("http://{addr}/token"),
        tokens: IssuedTokens::new("ya29.fake-vertex-token-", DEFAULT_TOKEN_TTL_SECS),
        requests: Recorder::new(),
        token_requests: Recorder::new(),
        token_faults: FaultQueue::new(),
        faults: FaultQueue::new(),
        counter: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/token", post(token))
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}",
            post(predict),
        )
        .route("/__requests", get(recorded))
        .route("/__token_requests", get(recorded_tokens))
        .fallback(not_found)
        .with_state(shared.clone());
    let server = Server::spawn(listener, app)?;
    Ok(FakeVertex { shared, server })
}

impl FakeVertex {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The registry's URL shape with this fake's host:
    /// `http://ADDR/v1/projects/{project}/locations/{location}`, placeholders kept.
    pub fn base_url_template(&self) -> String {
        format!(
            "http://{}/v1/projects/{{project}}/locations/{{location}}",
            self.addr()
        )
    }

    /// The token endpoint, which JWTs must name as `aud`.
    pub fn token_uri(&self) -> String {
        self.shared.token_uri.clone()
    }

    /// The committed test key file with `token_uri` pointed at this fake.
    pub fn service_account_json(&self) -> String {
        let mut v: Value = serde_json::from_str(TEST_SERVICE_ACCOUNT_JSON).unwrap_or(Value::Null);
        v["token_uri"] = Value::from(self.token_uri());
        v.to_string()
    }

    /// Model requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// Token requests, oldest first (successful or not).
    pub fn token_requests(&self) -> Vec<RecordedRequest> {
        self.shared.token_requests.all()
    }

    /// How many access tokens were issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens.count()
    }

    /// The lifetime (`expires_in`) of tokens issued from now on.
    pub fn set_token_ttl(&self, secs: u64) {
        self.shared.tokens.set_ttl(secs);
    }

    pub fn fail_next_token(&self, fault: TokenFault) {
        self.shared.token_faults.push(fault);
    }

    pub fn fail_next(&self, fault: ModelFault) {
        self.shared.faults.push(fault);
    }
}

// ------------------------------------------------------------------ helpers

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = Response::new(Body::from(
        json!({"error": error, "error_description": description}).to_string(),
    ));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

async fn recorded(State(s): State<Arc<Shared>>) -> Response {
    gemini::json_response(
        StatusCode::OK,
        &s.requests.to_json(RecordedRequest::to_json),
    )
}

async fn recorded_tokens(State(s): State<Arc<Shared>>) -> Response {
    gemini::json_response(
        StatusCode::OK,
        &s.token_requests.to_json(RecordedRequest::to_json),
    )
}

async fn not_found(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.requests
        .record(method.as_str(), &uri, &headers, Value::Null, &Bytes::new());
    gemini::error(404, "The requested URL was not found on this server.")
}

// ------------------------------------------------------------ token endpoint

/// The claims of a JWT whose RS256 signature verifies with `public_key`.
fn verified_claims(jwt: &str, public_key: &[u8]) -> Result<Value, &'static str> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid JWT: not three base64url segments.");
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("Invalid JWT: the header is not base64url JSON.")?;
    if header["alg"] != "RS256" {
        return Err("Invalid JWT: only RS256 is accepted.");
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| "Invalid JWT Signature.")?;
    let signed = &jwt[..h.len() + 1 + c.len()];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.")?;
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("Invalid JWT: the claims are not base64url JSON.")
}

async fn token(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let as_json = form_json(form.as_deref());
    s.token_requests
        .record(method.as_str(), &uri, &headers, as_json, &body);
    if !is_form(&headers) {
        return oauth_error(
            400,
            "invalid_request",
            "Invalid request: the body must be application/x-www-form-urlencoded.",
        );
    }
    let Some(form) = form else {
        return oauth_error(
            400,
            "invalid_request",
            "Invalid request: malformed form body.",
        );
    };
    if let Some(fault) = s.token_faults.pop() {
        return match fault {
            TokenFault::ServerError => oauth_error(500, "internal_failure", "Backend Error"),
            TokenFault::InvalidGrant => {
                oauth_error(400, "invalid_grant", "Invalid grant: account not found")
            }
        };
    }
    match form_value(&form, "grant_type") {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {}
        Some(other) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )
        }
        None => {
            return oauth_error(
                400,
                "invalid_request",
                "Missing required parameter: grant_type",
            )
        }
    }
    let Some(assertion) = form_value(&form, "assertion") else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let claims = match verified_claims(assertion, &s.account.public_key) {
        Ok(c) => c,
        Err(why) => return oauth_error(400, "invalid_grant", why),
    };
    if claims["iss"].as_str() != Some(s.account.client_email.as_str()) {
        return oauth_error(400, "invalid_grant", "Invalid grant: account not found");
    }
    if claims["aud"].as_str() != Some(s.token_uri.as_str()) {
        return oauth_error(
            400,
            "invalid_grant",
            &format!(
                "Invalid JWT: Failed audience check. The expected value was {}.",
                s.token_uri
            ),
        );
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes.split(' ').any(|sc| sc == CLOUD_PLATFORM_SCOPE) {
        return oauth_error(
            400,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    let t = unix_now();
    let timely = matches!((iat, exp), (Some(iat), Some(exp))
        if iat <= t + 60 && exp > t && exp > iat && exp - iat <= 3600);
    if !timely {
        return oauth_error(
            400,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let (access_token, expires_in) = s.tokens.issue();
    gemini::json_response(
        StatusCode::OK,
        &json!({"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"}),
    )
}

// ------------------------------------------------------------- model calls

fn unauthenticated() -> Response {
    gemini::error_with(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        Some(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_EXPIRED",
            "domain": "googleapis.com",
            "metadata": {"service": "aiplatform.googleapis.com", "method": "google.cloud.aiplatform.v1.PredictionService.GenerateContent"},
        }])),
    )
}

#[allow(clippy::too_many_arguments)]
async fn predict(
    State(s): State<Arc<Shared>>,
    Path((project, location, publisher, target)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.requests
        .record(method.as_str(), &uri, &headers, parsed.clone(), &body);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    match s.tokens.check(auth) {
        Ok(_) => {}
        Err(TokenProblem::Missing | TokenProblem::Unknown | TokenProblem::Expired) => {
            return unauthenticated()
        }
    }
    if project != s.project {
        return gemini::error(
            403,
            &format!("Permission denied on resource project {project}."),
        );
    }
    if location != s.location {
        return gemini::error(
            400,
            &format!("Unsupported location `{location}` for project {project}."),
        );
    }
    let Some((model, action)) = target.split_once(':') else {
        return gemini::error(404, "The requested URL was not found on this server.");
    };
    let fault = s.faults.pop();
    match publisher.as_str() {
        "google" => google(&s, model, action, query.as_deref(), parsed, fault),
        "anthropic" => claude(&s, model, action, parsed, fault),
        other => gemini::error(
            404,
            &format!("Publisher Model `projects/{project}/locations/{location}/publishers/{other}/models/{model}` not found."),
        ),
    }
}

fn google(
    s: &Shared,
    model: &str,
    action: &str,
    query: Option<&str>,
    req: Value,
    fault: Option<ModelFault>,
) -> Response {
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        "predict" => return predict_embeddings(s, model, &req),
        _ => return gemini::error(404, "The requested URL was not found on this server."),
    };
    if !gemini::known_model(model) {
        return gemini::error(
            404,
            &format!(
                "Publisher Model `projects/{}/locations/{}/publishers/google/models/{model}` not found.",
                s.project, s.location
            ),
        );
    }
    if stream && crate::common::query_param(query, "alt") != Some("sse") {
        return gemini::error(400, "This fake serves streams only with alt=sse.");
    }
    if fault == Some(ModelFault::ResourceExhausted) {
        return gemini::error(
            429,
            "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
        );
    }
    if !req.is_object() {
        return gemini::error(400, "Invalid JSON payload received.");
    }
    if let Err(message) = gemini::validate(&req) {
        return gemini::error(400, &message);
    }
    // Vertex, unlike the Gemini API, wants every turn to say whose it is.
    let roles_ok = req["contents"].as_array().is_some_and(|c| {
        c.iter()
            .all(|t| t.get("role").is_some_and(Value::is_string))
    });
    if !roles_ok {
        return gemini::error(400, "Please use a valid role: user, model.");
    }
    let n = s.counter.fetch_add(1, Ordering::Relaxed);
    let id = format!("fake-vertex-{n}");
    let answer = gemini::Answer::for_request(&req);
    if !stream {
        let mut full = answer.response(model, &id);
        full["createTime"] = Value::from("2025-01-01T00:00:00.000000Z");
        return gemini::json_response(StatusCode::OK, &full);
    }
    let mut frames = answer.frames(model, &id);
    if fault == Some(ModelFault::Truncated) {
        frames.pop();
    }
    gemini::sse_response(frames)
}

/// Google's text-embedding models on Vertex, as the `:predict` reference
/// documents them.
const EMBEDDING_MODELS: &[&str] = &[
    "text-embedding-005",
    "text-multilingual-embedding-002",
    "gemini-embedding-001",
];
const TASK_TYPES: &[&str] = &[
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
];

/// A deterministic vector for `text`, so tests can check order: its length,
/// its first byte, and the position it was given at.
pub fn embedding_for(text: &str, position: usize) -> Vec<f64> {
    vec![
        text.len() as f64,
        f64::from(text.bytes().next().unwrap_or(0)),
        position as f64,
    ]
}

/// `POST …/publishers/google/models/{model}:predict` for text embeddings.
fn predict_embeddings(s: &Shared, model: &str, req: &Value) -> Response {
    if !EMBEDDING_MODELS.contains(&model) {
        return gemini::error(
            404,
            &format!(
                "Publisher Model `projects/{}/locations/{}/publishers/google/models/{model}` not found.",
                s.project, s.location
            ),
        );
    }
    let Some(obj) = req.as_object() else {
        return gemini::error(400, "Invalid JSON payload received.");
    };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "instances" | "parameters"))
    {
        return gemini::error(
            400,
            &format!(
                "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
            ),
        );
    }
    let Some(instances) = obj
        .get("instances")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return gemini::error(400, "instances must be a non-empty list.");
    };
    let mut predictions = Vec::with_capacity(instances.len());
    for (i, instance) in instances.iter().enumerate() {
        let Some(fields) = instance.as_object() else {
            return gemini::error(400, "Each instance must be an object.");
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "content" | "task_type" | "title"))
        {
            return gemini::error(400, &format!("Unknown field in instance: {unknown}."));
        }
        let Some(content) = fields.get("content").and_then(Value::as_str) else {
            return gemini::error(400, "Each instance needs a string `content`.");
        };
        if let Some(task) = fields.get("task_type") {
            if !task.as_str().is_some_and(|t| TASK_TYPES.contains(&t)) {
                return gemini::error(400, &format!("Invalid task_type: {task}."));
            }
        }
        let tokens = content.split_whitespace().count().max(1);
        predictions.push(json!({
            "embeddings": {
                "values": embedding_for(content, i),
                "statistics": {"token_count": tokens as f64, "truncated": false}
            }
        }));
    }
    if let Some(params) = obj.get("parameters") {
        let ok = params.as_object().is_some_and(|p| {
            p.iter().all(|(k, v)| match k.as_str() {
                "outputDimensionality" => v.as_u64().is_some_and(|d| (1..=3072).contains(&d)),
                "autoTruncate" => v.is_boolean(),
                _ => false,
            })
        });
        if !ok {
            return gemini::error(400, "Invalid `parameters` for a text embedding model.");
        }
    }
    gemini::json_response(
        StatusCode::OK,
        &json!({"predictions": predictions, "metadata": {"billableCharacterCount": 0}}),
    )
}

fn claude(
    s: &Shared,
    model: &str,
    action: &str,
    body: Value,
    fault: Option<ModelFault>,
) -> Response {
    let stream = match action {
        "rawPredict" => false,
        "streamRawPredict" => true,
        _ => return gemini::error(404, "The requested URL was not found on this server."),
    };
    let base = model.split('@').next().unwrap_or(model);
    if !base.starts_with("claude-") {
        return gemini::error(
            404,
            &format!(
                "Publisher Model `projects/{}/locations/{}/publishers/anthropic/models/{model}` not found.",
                s.project, s.location
            ),
        );
    }
    let invalid = |m: &str| anthropic::error_response(400, "invalid_request_error", m);
    let Some(obj) = body.as_object() else {
        return invalid("There was an error parsing the body. Make sure it is valid JSON.");
    };
    if obj.contains_key("model") {
        return invalid("model: Extra inputs are not permitted");
    }
    match obj.get("anthropic_version").and_then(Value::as_str) {
        Some(VERTEX_ANTHROPIC_VERSION) => {}
        Some(other) => {
            return invalid(&format!(
                "anthropic_version: Input should be '{VERTEX_ANTHROPIC_VERSION}', got '{other}'"
            ))
        }
        None => return invalid("anthropic_version: Field required"),
    }
    if obj.get("stream").and_then(Value::as_bool).unwrap_or(false) != stream {
        return invalid(
            "stream: must be true for streamRawPredict and absent or false for rawPredict",
        );
    }
    if fault == Some(ModelFault::Overloaded) {
        return anthropic::error_response(529, "overloaded_error", "Overloaded");
    }
    let mut messages_body = body.clone();
    if let Some(m) = messages_body.as_object_mut() {
        m.remove("anthropic_version");
        m.insert("model".into(), Value::from(base));
    }
    if let Err(message) = anthropic::validate(&messages_body) {
        return invalid(&message);
    }
    let n = s.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let reply = anthropic::plan_reply(&messages_body, n);
    if !stream {
        return anthropic::respond(
            200,
            "application/json",
            Body::from(reply.to_json().to_string()),
        );
    }
    let truncated = anthropic::Fault::TruncateStream;
    let events = anthropic::stream_events(
        &reply,
        (fault == Some(ModelFault::Truncated)).then_some(&truncated),
    );
    anthropic::respond(
        200,
        "text/event-stream; charset=utf-8",
        Body::from_stream(futures_util::stream::iter(
            events.into_iter().map(Ok::<Bytes, Infallible>),
        )),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::RSA_PKCS1_SHA256;

    fn sign(claims: &Value) -> String {
        let v: Value = serde_json::from_str(TEST_SERVICE_ACCOUNT_JSON).unwrap();
        let pem = v["private_key"].as_str().unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let pair = RsaKeyPair::from_pkcs8(&STANDARD.decode(b64).unwrap()).unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn signatures_verify_only_with_the_accounts_key() {
        let account = ServiceAccount::test().unwrap();
        let jwt = sign(&json!({"iss": "x"}));
        assert_eq!(
            verified_claims(&jwt, &account.public_key).unwrap()["iss"],
            "x"
        );
        // Any change to the signed part breaks the signature.
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({"iss": "y"}).to_string());
        parts[1] = &forged;
        assert_eq!(
            verified_claims(&parts.join("."), &account.public_key),
            Err("Invalid JWT Signature.")
        );
        assert!(verified_claims("a.b", &account.public_key).is_err());
    }
}
