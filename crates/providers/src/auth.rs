//! Turning a provider's auth style and key into the header it expects.

use crate::registry::AuthStyle;
use http::{HeaderName, HeaderValue};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the API key contains characters that cannot be sent in an HTTP header")]
    InvalidKey,
    #[error("auth style `{0}` needs a native adapter")]
    NeedsAdapter(&'static str),
}

/// The header carrying `key` for a provider that authenticates with a static key.
/// The value is marked sensitive so HTTP-level debug logging prints it redacted.
pub fn static_key_header(
    style: AuthStyle,
    key: &str,
) -> Result<Option<(HeaderName, HeaderValue)>, AuthError> {
    let (name, value) = match style {
        AuthStyle::None => return Ok(None),
        AuthStyle::Bearer => (http::header::AUTHORIZATION, format!("Bearer {key}")),
        AuthStyle::XApiKey => (HeaderName::from_static("x-api-key"), key.to_string()),
        AuthStyle::ApiKey => (HeaderName::from_static("api-key"), key.to_string()),
        AuthStyle::XGoogApiKey => (HeaderName::from_static("x-goog-api-key"), key.to_string()),
        AuthStyle::XSubscriptionToken => (
            HeaderName::from_static("x-subscription-token"),
            key.to_string(),
        ),
        AuthStyle::Token => (http::header::AUTHORIZATION, format!("Token {key}")),
        AuthStyle::XiApiKey => (HeaderName::from_static("xi-api-key"), key.to_string()),
        AuthStyle::Sigv4 => return Err(AuthError::NeedsAdapter("sigv4")),
        AuthStyle::Oauth => return Err(AuthError::NeedsAdapter("oauth")),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| AuthError::InvalidKey)?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_sensitive() {
        let (name, value) = static_key_header(AuthStyle::Bearer, "sk-1")
            .unwrap()
            .unwrap();
        assert_eq!(name, http::header::AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Bearer sk-1");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("sk-1"));
    }

    #[test]
    fn newline_in_key_is_rejected() {
        assert_eq!(
            static_key_header(AuthStyle::Bearer, "a\nb"),
            Err(AuthError::InvalidKey)
        );
    }
}
