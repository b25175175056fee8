//! Short-lived upstream access tokens for providers whose API takes no static
//! key (registry auth style `oauth`):
//!
//! - **Google service accounts** (Vertex AI): the OAuth2 JWT-bearer grant of
//!   RFC 7523. A JWT naming the account (`iss`), the scope and the token
//!   endpoint (`aud`), valid for an hour and signed RS256 with the account's
//!   private key, is posted to the key file's `token_uri` as
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`.
//! - **IBM Cloud API keys** (watsonx.ai): the IAM exchange,
//!   `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=<key>` posted to
//!   `https://iam.cloud.ibm.com/identity/token`.
//!
//! Both answer `{access_token, expires_in, …}`. A [`TokenSource`] caches the
//! token and fetches a new one [`REFRESH_MARGIN`] before it expires (or half
//! way through a shorter lifetime), so no request carries a token about to
//! lapse. Refreshing is single-flight: concurrent requests that find the token
//! stale wait for one fetch instead of each making their own. This is the only
//! I/O on behalf of an adapter, and it lives here because adapters never do I/O.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::HeaderValue;
use liter_llm_protocol::{ApiError, ErrorKind};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The scope Vertex AI calls need.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Google's token endpoint, for key files that do not name one.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// IBM Cloud's IAM token endpoint.
pub const IBM_IAM_URL: &str = "https://iam.cloud.ibm.com/identity/token";

/// How long before expiry a token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The lifetime asked for in the service-account JWT (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// Assumed when a token endpoint does not say how long its token lives.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Fetching a token never takes longer than this, whatever the model timeout.
const MAX_FETCH_TIME: Duration = Duration::from_secs(30);

/// How much of an error answer is quoted to the client.
const MAX_QUOTED_CHARS: usize = 200;

enum Grant {
    ServiceAccount {
        client_email: String,
        private_key_id: Option<String>,
        token_uri: String,
        /// Boxed: an RSA key pair is large next to the other variant.
        key: Box<RsaKeyPair>,
    },
    IbmApiKey {
        api_key: String,
        url: String,
    },
}

struct Cached {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

/// Where a provider's access tokens come from, and the current one.
pub struct TokenSource {
    /// Names the provider in error messages, e.g. `vertex_ai`.
    provider: &'static str,
    grant: Grant,
    cached: Mutex<Option<Cached>>,
    /// Held while fetching, so only one request fetches at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.grant {
            Grant::ServiceAccount { .. } => "google_service_account",
            Grant::IbmApiKey { .. } => "ibm_iam_api_key",
        };
        f.debug_struct("TokenSource")
            .field("provider", &self.provider)
            .field("grant", &kind)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded value is replaced whole, so a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A PKCS#8 `-----BEGIN PRIVATE KEY-----` block, as in Google key files.
fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = pem
        .find(BEGIN)
        .ok_or("`private_key` is not a PKCS#8 PEM block (-----BEGIN PRIVATE KEY-----)")?;
    let body = &pem[start + BEGIN.len()..];
    let end = body
        .find(END)
        .ok_or("`private_key` has no -----END PRIVATE KEY----- line")?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .map_err(|_| "`private_key` is not valid base64 PEM".to_string())
}

fn scheme_host_path(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

fn valid_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

impl TokenSource {
    /// From a Google service-account key: the JSON itself, or the path of its file.
    /// Errors say what is wrong without quoting the key.
    pub fn google_service_account(credentials: &str) -> Result<TokenSource, String> {
        let text = if credentials.trim_start().starts_with('{') {
            credentials.to_string()
        } else {
            std::fs::read_to_string(credentials.trim())
                .map_err(|e| format!("cannot read the service-account key file: {e}"))?
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|_| "the service-account key is not valid JSON".to_string())?;
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        match field("type") {
            Some("service_account") => {}
            Some(other) => {
                return Err(format!(
                "the credentials are of type `{other}`; only `service_account` keys are supported"
            ))
            }
            None => return Err("the service-account key has no `type`".into()),
        }
        let client_email = field("client_email")
            .ok_or("the service-account key has no `client_email`")?
            .to_string();
        let pem = field("private_key").ok_or("the service-account key has no `private_key`")?;
        let der = pkcs8_from_pem(pem)?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("`private_key` is not a usable RSA key: {e}"))?;
        let token_uri = field("token_uri").unwrap_or(GOOGLE_TOKEN_URI).to_string();
        if !valid_url(&token_uri) {
            return Err("`token_uri` is not an http(s) URL".into());
        }
        Ok(TokenSource::new(
            "vertex_ai",
            Grant::ServiceAccount {
                client_email,
                private_key_id: field("private_key_id").map(str::to_string),
                token_uri,
                key: Box::new(key),
            },
        ))
    }

    /// From an IBM Cloud API key and the IAM token endpoint.
    pub fn ibm_iam(api_key: &str, url: &str) -> Result<TokenSource, String> {
        if api_key.is_empty() {
            return Err("the IBM Cloud API key is empty".into());
        }
        if !valid_url(url) {
            return Err(format!("`{url}` is not an http(s) URL"));
        }
        Ok(TokenSource::new(
            "watsonx",
            Grant::IbmApiKey {
                api_key: api_key.to_string(),
                url: url.to_string(),
            },
        ))
    }

    fn new(provider: &'static str, grant: Grant) -> TokenSource {
        TokenSource {
            provider,
            grant,
            cached: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<HeaderValue> {
        lock(&self.cached)
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.header.clone())
    }

    /// The `Authorization` value for the next upstream call: the cached token,
    /// or a new one when it is due. A failed fetch is an OpenAI-shaped 502 that
    /// names the token endpoint and its answer, never the credential.
    pub async fn authorization(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<HeaderValue, ApiError> {
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        let _only_fetcher = self.refreshing.lock().await;
        // Whoever held the lock before us may have fetched already.
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        match self.fetch(client, timeout.min(MAX_FETCH_TIME)).await {
            Ok(c) => {
                let header = c.header.clone();
                *lock(&self.cached) = Some(c);
                Ok(header)
            }
            Err(e) => {
                // A token inside its refresh margin still works; an outage of
                // the token endpoint should not fail requests before it must.
                let still_valid = lock(&self.cached)
                    .as_ref()
                    .filter(|c| Instant::now() < c.expires_at)
                    .map(|c| c.header.clone());
                match still_valid {
                    Some(h) => {
                        tracing::warn!(provider = self.provider, error = %e.message, "token refresh failed; using the current token until it expires");
                        Ok(h)
                    }
                    None => Err(e),
                }
            }
        }
    }

    fn endpoint(&self) -> &str {
        match &self.grant {
            Grant::ServiceAccount { token_uri, .. } => token_uri,
            Grant::IbmApiKey { url, .. } => url,
        }
    }

    fn failure(&self, why: impl std::fmt::Display) -> ApiError {
        let mut message = format!(
            "{}: could not get an access token from {}: {why}",
            self.provider,
            scheme_host_path(self.endpoint())
        );
        if let Grant::IbmApiKey { api_key, .. } = &self.grant {
            message = message.replace(api_key.as_str(), "[REDACTED]");
        }
        ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_auth_failed")
    }

    fn assertion(&self) -> Result<String, ApiError> {
        let Grant::ServiceAccount {
            client_email,
            private_key_id,
            token_uri,
            key,
        } = &self.grant
        else {
            return Err(self.failure("no service account to sign with"));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = private_key_id {
            header["kid"] = Value::from(kid.as_str());
        }
        let claims = json!({
            "iss": client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| self.failure("signing the JWT assertion failed"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    async fn fetch(&self, client: &reqwest::Client, timeout: Duration) -> Result<Cached, ApiError> {
        let request = match &self.grant {
            Grant::ServiceAccount { token_uri, .. } => {
                let assertion = self.assertion()?;
                client.post(token_uri.as_str()).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
            }
            Grant::IbmApiKey { api_key, url } => client.post(url.as_str()).form(&[
                ("grant_type", "urn:ibm:params:oauth:grant-type:apikey"),
                ("apikey", api_key.as_str()),
            ]),
        };
        let started = Instant::now();
        let response = request
            .header(http::header::ACCEPT, "application/json")
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    self.failure(format!("no answer within {} s", timeout.as_secs()))
                } else {
                    self.failure(crate::upstream::error_chain(&e.without_url()))
                }
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.failure(crate::upstream::error_chain(&e.without_url())))?;
        let v: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            return Err(self.failure(format!(
                "HTTP {}{}",
                status.as_u16(),
                v.as_ref().map(describe_error).unwrap_or_default()
            )));
        }
        let v = v.ok_or_else(|| self.failure("the answer is not JSON"))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.failure("the answer has no `access_token`"))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| self.failure("the access token cannot be sent in a header"))?;
        header.set_sensitive(true);
        let lifetime = lifetime(&v);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        // Measured from the request, so network time never overstates the lifetime.
        Ok(Cached {
            header,
            refresh_at: started + lifetime.saturating_sub(margin),
            expires_at: started + lifetime,
        })
    }
}

/// `expires_in` (seconds), else IBM's absolute `expiration` (Unix seconds).
fn lifetime(v: &Value) -> Duration {
    if let Some(secs) = v.get("expires_in").and_then(Value::as_u64) {
        return Duration::from_secs(secs);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match v.get("expiration").and_then(Value::as_u64) {
        Some(at) => Duration::from_secs(at.saturating_sub(now)),
        None => DEFAULT_LIFETIME,
    }
}

/// `: <error>: <description>` from an OAuth2 (`error`, `error_description`) or
/// IBM IAM (`errorCode`, `errorMessage`) error body.
fn describe_error(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let parts: Vec<&str> = [
        s("error"),
        s("error_description"),
        s("errorCode"),
        s("errorMessage"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        return String::new();
    }
    let text: String = parts.join(": ").chars().take(MAX_QUOTED_CHARS).collect();
    format!(": {text}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn key_file_problems_are_named_without_quoting_the_key() {
        let cases = [
            ("{", "not valid JSON"),
            (r#"{"type":"authorized_user"}"#, "authorized_user"),
            (r#"{"type":"service_account"}"#, "client_email"),
            (
                r#"{"type":"service_account","client_email":"a@b"}"#,
                "private_key",
            ),
            (
                r#"{"type":"service_account","client_email":"a@b","private_key":"SECRETSTUFF"}"#,
                "PKCS#8",
            ),
            (
                "{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nAAAASECRETAA\\n-----END PRIVATE KEY-----\\n\"}",
                "not a usable RSA key",
            ),
            ("/nonexistent/key.json", "cannot read"),
        ];
        for (input, expected) in cases {
            let e = TokenSource::google_service_account(input).unwrap_err();
            assert!(e.contains(expected), "{input}: {e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn ibm_source_needs_a_key_and_an_http_url() {
        assert!(TokenSource::ibm_iam("", IBM_IAM_URL).is_err());
        assert!(TokenSource::ibm_iam("k", "ftp://x").is_err());
        assert!(TokenSource::ibm_iam("k", IBM_IAM_URL).is_ok());
    }

    #[test]
    fn lifetime_reads_expires_in_or_expiration() {
        assert_eq!(
            lifetime(&json!({"expires_in": 3599})),
            Duration::from_secs(3599)
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let l = lifetime(&json!({"expiration": now + 100}));
        assert!(l <= Duration::from_secs(100) && l >= Duration::from_secs(98));
        assert_eq!(lifetime(&json!({})), DEFAULT_LIFETIME);
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(
            describe_error(
                &json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            ),
            ": invalid_grant: Invalid JWT Signature."
        );
        assert_eq!(
            describe_error(
                &json!({"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."})
            ),
            ": BXNIM0415E: Provided API key could not be found."
        );
        assert_eq!(describe_error(&json!({"other": 1})), "");
    }

    #[test]
    fn failures_never_carry_the_api_key() {
        let s =
            TokenSource::ibm_iam("k-secret-123", "http://127.0.0.1:9/identity/token?x=1").unwrap();
        let e = s.failure("echo k-secret-123");
        assert!(!e.message.contains("k-secret-123"), "{}", e.message);
        assert!(!e.message.contains("x=1"), "{}", e.message);
        assert_eq!(e.status(), 502);
    }
}
