//! A borrowed parse of only the request fields that drive routing.
//!
//! The whole document is still scanned, so malformed JSON is caught here, but
//! nothing outside these fields is allocated or copied.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// What routing needs to know about a request body.
#[derive(Debug)]
pub struct RequestPeek<'a> {
    /// The requested model name, unescaped.
    pub model: Cow<'a, str>,
    /// Byte range of the `model` JSON string (quotes included) in the body, so the
    /// value can be replaced without re-serialising anything else.
    pub model_span: (usize, usize),
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    pub user: Option<Cow<'a, str>>,
    pub max_tokens: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PeekError {
    /// The body is not valid JSON; carries serde's description with line and column.
    Malformed(String),
    NotAnObject,
    MissingField(&'static str),
    /// Present but empty, where the endpoint needs content.
    Empty(&'static str),
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
}

impl std::fmt::Display for PeekError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeekError::Malformed(e) => write!(f, "request body is not valid JSON: {e}"),
            PeekError::NotAnObject => write!(f, "request body must be a JSON object"),
            PeekError::MissingField(field) => write!(f, "missing required parameter: `{field}`"),
            PeekError::Empty(field) => write!(f, "`{field}` must not be empty"),
            PeekError::WrongType { field, expected } => {
                write!(f, "invalid type for `{field}`: expected {expected}")
            }
        }
    }
}

impl PeekError {
    pub fn param(&self) -> Option<&'static str> {
        match self {
            PeekError::MissingField(f)
            | PeekError::Empty(f)
            | PeekError::WrongType { field: f, .. } => Some(f),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}
// Unknown fields are skipped (serde's default without `deny_unknown_fields`): the
// proxy passes them through to the upstream untouched.

/// Which fields an endpoint requires beyond `model`.
#[derive(Debug, Clone, Copy)]
pub struct Requirements {
    pub messages: bool,
    /// A non-empty `input` (embeddings).
    pub input: bool,
}

impl Requirements {
    pub const CHAT: Requirements = Requirements {
        messages: true,
        input: false,
    };
    pub const EMBEDDINGS: Requirements = Requirements {
        messages: false,
        input: true,
    };
    pub const MODEL_ONLY: Requirements = Requirements {
        messages: false,
        input: false,
    };
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().as_bytes().first().copied().unwrap_or(b' ')
}

fn as_str<'a>(raw: &'a RawValue, field: &'static str) -> Result<Cow<'a, str>, PeekError> {
    if first_byte(raw) != b'"' {
        return Err(PeekError::WrongType {
            field,
            expected: "a string",
        });
    }
    let s: Cow<'a, str> = serde_json::from_str(raw.get()).map_err(|_| PeekError::WrongType {
        field,
        expected: "a string",
    })?;
    Ok(s)
}

fn as_u64(raw: &RawValue, field: &'static str) -> Result<Option<u64>, PeekError> {
    if raw.get() == "null" {
        return Ok(None);
    }
    raw.get()
        .parse::<u64>()
        .map(Some)
        .map_err(|_| PeekError::WrongType {
            field,
            expected: "a non-negative integer",
        })
}

/// Peek at a request body. `body` must be the exact bytes that will be forwarded,
/// because the returned span indexes into it.
pub fn peek_request(body: &[u8], req: Requirements) -> Result<RequestPeek<'_>, PeekError> {
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    match first {
        None => return Err(PeekError::Malformed("the body is empty".into())),
        Some(b'{') => {}
        Some(b'[') | Some(b'"') | Some(b't') | Some(b'f') | Some(b'n') | Some(b'-')
        | Some(b'0'..=b'9') => {
            // Valid JSON but not an object gets its own message; invalid JSON falls
            // through to serde's error below.
            if serde_json::from_slice::<IgnoredAny>(body).is_ok() {
                return Err(PeekError::NotAnObject);
            }
        }
        Some(_) => {}
    }
    let raw: Raw<'_> =
        serde_json::from_slice(body).map_err(|e| PeekError::Malformed(e.to_string()))?;

    let model_raw = raw.model.ok_or(PeekError::MissingField("model"))?;
    let model = as_str(model_raw, "model")?;
    if model.is_empty() {
        return Err(PeekError::WrongType {
            field: "model",
            expected: "a non-empty string",
        });
    }
    let start = model_raw.get().as_ptr() as usize - body.as_ptr() as usize;
    let model_span = (start, start + model_raw.get().len());

    let stream = match raw.stream {
        None => false,
        Some(r) => match r.get() {
            "true" => true,
            "false" | "null" => false,
            _ => {
                return Err(PeekError::WrongType {
                    field: "stream",
                    expected: "a boolean",
                })
            }
        },
    };
    let user = match raw.user {
        Some(r) if r.get() != "null" => Some(as_str(r, "user")?),
        _ => None,
    };
    let max_tokens = match (raw.max_completion_tokens, raw.max_tokens) {
        (Some(r), _) => as_u64(r, "max_completion_tokens")?,
        (None, Some(r)) => as_u64(r, "max_tokens")?,
        (None, None) => None,
    };
    if req.messages {
        match raw.messages {
            None => return Err(PeekError::MissingField("messages")),
            Some(r) if first_byte(r) != b'[' => {
                return Err(PeekError::WrongType {
                    field: "messages",
                    expected: "an array",
                })
            }
            Some(_) => {}
        }
    }
    if req.input {
        match raw.input.map(|r| r.get().trim()) {
            None | Some("null") => return Err(PeekError::MissingField("input")),
            Some("\"\"") => return Err(PeekError::Empty("input")),
            Some(v) if v.starts_with('[') && v[1..v.len() - 1].trim().is_empty() => {
                return Err(PeekError::Empty("input"))
            }
            Some(v) if !(v.starts_with('"') || v.starts_with('[')) => {
                return Err(PeekError::WrongType {
                    field: "input",
                    expected: "a string, an array of strings, or an array of token arrays",
                })
            }
            Some(_) => {}
        }
    }
    let include_usage = match raw.stream_options {
        Some(r) if r.get() != "null" => {
            let opts: StreamOptions =
                serde_json::from_str(r.get()).map_err(|_| PeekError::WrongType {
                    field: "stream_options",
                    expected: "an object with a boolean `include_usage`",
                })?;
            opts.include_usage.unwrap_or(false)
        }
        _ => false,
    };
    Ok(RequestPeek {
        model,
        model_span,
        stream,
        include_usage,
        user,
        max_tokens,
    })
}

/// Replace the `model` value, keeping every other byte as the client sent it.
/// When the name does not change, the original buffer is returned without a copy.
pub fn rewrite_model(
    body: &Bytes,
    span: (usize, usize),
    current: &str,
    upstream_model: &str,
) -> Bytes {
    if current == upstream_model {
        return body.clone();
    }
    let encoded = match serde_json::to_string(upstream_model) {
        Ok(s) => s,
        Err(_) => return body.clone(),
    };
    let mut out = Vec::with_capacity(body.len() + encoded.len());
    out.extend_from_slice(&body[..span.0]);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(&body[span.1..]);
    Bytes::from(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_embedding_input_is_refused_however_it_is_spaced() {
        for body in [
            r#"{"model":"m","input":""}"#,
            r#"{"model":"m","input":[]}"#,
            r#"{"model":"m","input":[ ]}"#,
            "{\"model\":\"m\",\"input\":[\n]}",
        ] {
            assert_eq!(
                peek_request(body.as_bytes(), Requirements::EMBEDDINGS).err(),
                Some(PeekError::Empty("input")),
                "{body}"
            );
        }
        assert!(peek_request(br#"{"model":"m","input":[" "]}"#, Requirements::EMBEDDINGS).is_ok());
    }

    fn peek(s: &str) -> Result<RequestPeek<'_>, PeekError> {
        peek_request(s.as_bytes(), Requirements::CHAT)
    }

    #[test]
    fn peek_finds_model_stream_and_span() {
        let body = r#"{"messages":[],"model":"gpt-4o","stream":true,"max_tokens":7,"stream_options":{"include_usage":true}}"#;
        let p = peek(body).unwrap();
        assert_eq!(p.model, "gpt-4o");
        assert!(p.stream);
        assert!(p.include_usage);
        assert_eq!(p.max_tokens, Some(7));
        assert_eq!(&body[p.model_span.0..p.model_span.1], "\"gpt-4o\"");
    }

    #[test]
    fn escaped_model_name_is_unescaped() {
        let p = peek(r#"{"model":"a\/b\u0041","messages":[]}"#).unwrap();
        assert_eq!(p.model, "a/bA");
    }

    #[test]
    fn rewrite_keeps_unknown_fields_byte_for_byte() {
        let body = Bytes::from_static(
            br#"{ "model" : "alias", "x_vendor": {"k": [1, 2]}, "messages":[] }"#,
        );
        let p = peek_request(&body, Requirements::CHAT).unwrap();
        let out = rewrite_model(&body, p.model_span, &p.model, "gpt-4o-2024-08-06");
        assert_eq!(
            &out[..],
            br#"{ "model" : "gpt-4o-2024-08-06", "x_vendor": {"k": [1, 2]}, "messages":[] }"#
        );
    }

    #[test]
    fn rewrite_with_same_name_does_not_copy() {
        let body = Bytes::from_static(br#"{"model":"m","messages":[]}"#);
        let p = peek_request(&body, Requirements::CHAT).unwrap();
        let out = rewrite_model(&body, p.model_span, &p.model, "m");
        assert_eq!(out.as_ptr(), body.as_ptr());
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(peek("{\"model\": "), Err(PeekError::Malformed(_))));
        assert_eq!(peek("[1]").unwrap_err(), PeekError::NotAnObject);
        assert_eq!(
            peek(r#"{"messages":[]}"#).unwrap_err(),
            PeekError::MissingField("model")
        );
        assert_eq!(
            peek(r#"{"model":5,"messages":[]}"#).unwrap_err(),
            PeekError::WrongType {
                field: "model",
                expected: "a string"
            }
        );
        assert_eq!(
            peek(r#"{"model":"m","messages":"hi"}"#).unwrap_err(),
            PeekError::WrongType {
                field: "messages",
                expected: "an array"
            }
        );
        assert_eq!(
            peek(r#"{"model":"m","messages":[],"stream":"yes"}"#).unwrap_err(),
            PeekError::WrongType {
                field: "stream",
                expected: "a boolean"
            }
        );
        assert_eq!(
            peek(r#"{"model":"m"}"#).unwrap_err(),
            PeekError::MissingField("messages")
        );
    }

    #[test]
    fn duplicate_model_keys_are_rejected() {
        // serde rejects duplicate struct fields, so a body cannot route on one
        // model name while the upstream reads another.
        assert!(matches!(
            peek(r#"{"model":"a","model":"b","messages":[]}"#),
            Err(PeekError::Malformed(_))
        ));
    }
}
