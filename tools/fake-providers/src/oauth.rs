//! What the token-issuing fakes (Vertex AI's Google OAuth2 endpoint, watsonx's
//! IBM Cloud IAM) share: reading `application/x-www-form-urlencoded` bodies,
//! and the access tokens they issued, each with its expiry, so the model
//! endpoints can tell a current token from an expired or made-up one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `%XX` and `+` decoded; `None` for a malformed escape or non-UTF-8 result.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The fields of a form body, in order; `None` if it is not a valid form.
pub(crate) fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The single value of `name` in a parsed form.
pub(crate) fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A parsed form as a JSON object of strings (what the fakes record), `Null`
/// for a body that is not a form.
pub(crate) fn form_json(form: Option<&[(String, String)]>) -> serde_json::Value {
    form.map_or(serde_json::Value::Null, |f| {
        f.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect()
    })
}

/// Whether a request declared a form body.
pub(crate) fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// Why a presented bearer token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired,
}

/// Access tokens issued so far and when each expires.
pub(crate) struct IssuedTokens {
    prefix: &'static str,
    issued: Mutex<HashMap<String, Instant>>,
    count: AtomicU64,
    ttl_secs: AtomicU64,
}

impl IssuedTokens {
    pub(crate) fn new(prefix: &'static str, ttl_secs: u64) -> Self {
        IssuedTokens {
            prefix,
            issued: Mutex::new(HashMap::new()),
            count: AtomicU64::new(0),
            ttl_secs: AtomicU64::new(ttl_secs),
        }
    }

    /// A new token and its lifetime in seconds.
    pub(crate) fn issue(&self) -> (String, u64) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let ttl = self.ttl_secs.load(Ordering::Relaxed);
        let token = format!("{}{n:06}", self.prefix);
        let expires = Instant::now() + Duration::from_secs(ttl);
        self.issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), expires);
        (token, ttl)
    }

    /// How many tokens were issued.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ttl(&self, secs: u64) {
        self.ttl_secs.store(secs, Ordering::Relaxed);
    }

    /// Checks an `Authorization` header value.
    pub(crate) fn check(&self, authorization: Option<&str>) -> Result<String, TokenProblem> {
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(TokenProblem::Missing)?;
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.get(token) {
            None => Err(TokenProblem::Unknown),
            Some(exp) if Instant::now() >= *exp => Err(TokenProblem::Expired),
            Some(_) => Ok(token.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let f = parse_form(b"grant_type=urn%3Aietf%3Aparams&assertion=a.b.c&x=1+2").unwrap();
        assert_eq!(form_value(&f, "grant_type"), Some("urn:ietf:params"));
        assert_eq!(form_value(&f, "assertion"), Some("a.b.c"));
        assert_eq!(form_value(&f, "x"), Some("1 2"));
        assert!(parse_form(b"a=%zz").is_none());
    }

    #[test]
    fn tokens_expire() {
        let t = IssuedTokens::new("tok-", 0);
        let (tok, _) = t.issue();
        assert_eq!(
            t.check(Some(&format!("Bearer {tok}"))),
            Err(TokenProblem::Expired)
        );
        t.set_ttl(60);
        let (tok, ttl) = t.issue();
        assert_eq!(ttl, 60);
        assert!(t.check(Some(&format!("Bearer {tok}"))).is_ok());
        assert_eq!(t.check(Some("Bearer nope")), Err(TokenProblem::Unknown));
        assert_eq!(t.check(None), Err(TokenProblem::Missing));
        assert_eq!(t.count(), 2);
    }
}
