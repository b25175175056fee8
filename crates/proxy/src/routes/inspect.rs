//! What the proxy checks in a non-chat request before routing it: the fields
//! each endpoint cannot do without, so a bad request gets a 400 naming the field
//! instead of a provider's error (or a bill) for a request that could never work.
//!
//! Chat, completions and embeddings are checked by the borrowed peek alone (the
//! hot path); the endpoints here parse the body once more, which costs nothing
//! next to generating an image or a transcript.

use liter_llm_gateway::pipeline::Endpoint;
use liter_llm_protocol::multipart;
use liter_llm_protocol::ApiError;
use serde_json::{Map, Value};

pub const SPEECH_FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];
pub const TRANSCRIPTION_FORMATS: &[&str] = &[
    "json",
    "text",
    "srt",
    "vtt",
    "verbose_json",
    "diarized_json",
];
const SPEECH_STREAM_FORMATS: &[&str] = &["audio", "sse"];
const IMAGE_FORMATS: &[&str] = &["url", "b64_json"];
const OCR_DOCUMENT_TYPES: &[&str] = &["document_url", "image_url", "file"];
/// Search providers cap results well below this; larger asks are a client bug.
const MAX_SEARCH_RESULTS: u64 = 100;

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param(param)
}

fn non_empty_string(obj: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => {
            Err(bad(field, format!("missing required parameter: `{field}`")))
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(bad(field, format!("`{field}` must not be empty")))
        }
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(bad(
            field,
            format!("invalid type for `{field}`: expected a string"),
        )),
    }
}

fn optional_string<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(
            field,
            format!("invalid type for `{field}`: expected a string"),
        )),
    }
}

fn one_of(field: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(bad(
            field,
            format!(
                "unsupported `{field}` `{v}`; expected one of: {}",
                allowed.join(", ")
            ),
        )
        .with_code("unsupported_value")),
        _ => Ok(()),
    }
}

fn positive_int(
    obj: &Map<String, Value>,
    field: &str,
    max: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && max.is_none_or(|m| n <= m) => Ok(Some(n)),
            _ => Err(bad(
                field,
                match max {
                    Some(m) => format!("`{field}` must be an integer from 1 to {m}"),
                    None => format!("`{field}` must be a positive integer"),
                },
            )),
        },
    }
}

fn no_stream(obj: &Map<String, Value>, endpoint: Endpoint) -> Result<(), ApiError> {
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "stream",
            format!(
                "`{}` cannot be streamed through this proxy",
                endpoint.name()
            ),
        ));
    }
    Ok(())
}

/// Checks a JSON request for `endpoint`; the borrowed peek has already checked
/// that the body is a JSON object with a string `model`.
pub fn check_json(endpoint: Endpoint, body: &[u8]) -> Result<(), ApiError> {
    let needs_check = matches!(
        endpoint,
        Endpoint::ImageGenerations
            | Endpoint::AudioSpeech
            | Endpoint::Moderations
            | Endpoint::Rerank
            | Endpoint::Search
            | Endpoint::Ocr
    );
    if !needs_check {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    match endpoint {
        Endpoint::ImageGenerations => {
            non_empty_string(&obj, "prompt")?;
            positive_int(&obj, "n", Some(10))?;
            one_of(
                "response_format",
                optional_string(&obj, "response_format")?,
                IMAGE_FORMATS,
            )?;
            no_stream(&obj, endpoint)
        }
        Endpoint::AudioSpeech => {
            non_empty_string(&obj, "input")?;
            // A built-in voice by name, or a custom voice as `{"id": ...}`.
            let custom_voice = obj
                .get("voice")
                .and_then(|v| v.get("id"))
                .is_some_and(|id| id.as_str().is_some_and(|s| !s.trim().is_empty()));
            if !custom_voice {
                non_empty_string(&obj, "voice")?;
            }
            one_of(
                "stream_format",
                optional_string(&obj, "stream_format")?,
                SPEECH_STREAM_FORMATS,
            )?;
            one_of(
                "response_format",
                optional_string(&obj, "response_format")?,
                SPEECH_FORMATS,
            )?;
            if let Some(speed) = obj.get("speed").filter(|v| !v.is_null()) {
                if !speed.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s)) {
                    return Err(bad("speed", "`speed` must be a number from 0.25 to 4.0"));
                }
            }
            Ok(())
        }
        // The peek has seen a non-empty string or array; here each item is checked.
        Endpoint::Moderations => check_moderation_input(obj.get("input")),
        Endpoint::Rerank => {
            non_empty_string(&obj, "query")?;
            match obj.get("documents") {
                Some(Value::Array(docs)) if docs.is_empty() => {
                    Err(bad("documents", "`documents` must not be empty"))
                }
                Some(Value::Array(docs)) => {
                    let well_typed = docs
                        .iter()
                        .all(|d| d.is_string() || d.get("text").is_some_and(Value::is_string));
                    if !well_typed {
                        return Err(bad(
                            "documents",
                            "each of `documents` must be a string or an object with a string `text`",
                        ));
                    }
                    positive_int(&obj, "top_n", None)?;
                    no_stream(&obj, endpoint)
                }
                None | Some(Value::Null) => {
                    Err(bad("documents", "missing required parameter: `documents`"))
                }
                Some(_) => Err(bad(
                    "documents",
                    "invalid type for `documents`: expected an array",
                )),
            }
        }
        Endpoint::Search => {
            non_empty_string(&obj, "query")?;
            positive_int(&obj, "max_results", Some(MAX_SEARCH_RESULTS))?;
            match obj.get("search_domain_filter") {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
                Some(_) => {
                    return Err(bad(
                        "search_domain_filter",
                        "`search_domain_filter` must be an array of domain strings",
                    ))
                }
            }
            optional_string(&obj, "country")?;
            no_stream(&obj, endpoint)
        }
        Endpoint::Ocr => {
            let Some(doc) = obj.get("document").filter(|d| !d.is_null()) else {
                return Err(bad("document", "missing required parameter: `document`"));
            };
            let Some(doc) = doc.as_object() else {
                return Err(bad(
                    "document",
                    "invalid type for `document`: expected an object with `type` and a URL",
                ));
            };
            let kind = optional_string(doc, "type")?.unwrap_or("document_url");
            one_of("document.type", Some(kind), OCR_DOCUMENT_TYPES)?;
            let filled = |v: Option<&Value>| {
                v.and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty())
            };
            let ok = match kind {
                // A file uploaded to the provider beforehand.
                "file" => filled(doc.get("file_id")),
                // Mistral also takes `{"url": ...}` for an image.
                "image_url" => {
                    filled(doc.get("image_url"))
                        || filled(doc.get("image_url").and_then(|i| i.get("url")))
                }
                _ => filled(doc.get(kind)),
            };
            if !ok {
                let field = if kind == "file" { "file_id" } else { kind };
                let what = if kind == "file" {
                    "the id of a file uploaded to the provider"
                } else {
                    "a URL or a base64 `data:` URL"
                };
                return Err(bad(
                    "document",
                    format!("`document.{field}` must be {what}"),
                ));
            }
            no_stream(&obj, endpoint)
        }
        _ => Ok(()),
    }
}

/// `input` of a moderation: a string, strings, or text and image parts.
fn check_moderation_input(input: Option<&Value>) -> Result<(), ApiError> {
    let wrong = || {
        bad(
            "input",
            "`input` must be a string, an array of strings, or an array of `{\"type\": \"text\", \"text\"}` and `{\"type\": \"image_url\", \"image_url\": {\"url\"}}` objects",
        )
    };
    match input {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(bad("input", "`input` must not be empty"))
        }
        Some(Value::Array(items)) => {
            let part_ok = |item: &Value| match item.get("type").and_then(Value::as_str) {
                Some("text") => item.get("text").is_some_and(Value::is_string),
                Some("image_url") => item
                    .get("image_url")
                    .and_then(|i| i.get("url"))
                    .is_some_and(Value::is_string),
                _ => false,
            };
            if items.iter().all(Value::is_string) || items.iter().all(part_ok) {
                Ok(())
            } else {
                Err(wrong())
            }
        }
        None | Some(Value::Null) => Err(bad("input", "missing required parameter: `input`")),
        Some(_) => Err(wrong()),
    }
}

/// What routing needs from a transcription upload.
pub struct Upload {
    pub model: String,
    /// Byte range of the `model` field's content in the body.
    pub model_span: (usize, usize),
    /// Whether the answer will be JSON (`json`, `verbose_json`, or the default).
    pub expects_json: bool,
}

/// Checks a `multipart/form-data` transcription upload as the OpenAI SDK sends
/// it: a `file` part, a `model` field, and an optional `response_format`.
pub fn check_upload(content_type: Option<&str>, body: &[u8]) -> Result<Upload, ApiError> {
    let boundary = content_type.and_then(multipart::boundary).ok_or_else(|| {
        ApiError::invalid_request(
            "`/v1/audio/transcriptions` takes multipart/form-data with a `file` part and a `model` field",
        )
        .with_code("invalid_content_type")
    })?;
    let parts = multipart::parse(body, boundary)
        .map_err(|e| ApiError::invalid_request(format!("malformed multipart body: {e}")))?;
    let file = parts.iter().find(|p| p.name == "file").ok_or_else(|| {
        bad(
            "file",
            "missing required parameter: `file` (the audio file part)",
        )
    })?;
    if file.filename.is_none() {
        return Err(bad(
            "file",
            "`file` must be a file upload (a part with a filename), not a text field",
        ));
    }
    if file.span.0 == file.span.1 {
        return Err(bad("file", "the uploaded `file` is empty"));
    }
    let field = |name: &str| -> Result<Option<&str>, ApiError> {
        match parts.iter().find(|p| p.name == name) {
            None => Ok(None),
            Some(p) => p
                .text(body)
                .map(Some)
                .ok_or_else(|| bad(name, format!("`{name}` must be UTF-8 text"))),
        }
    };
    // Servers disagree on which of two same-named fields wins (many take the
    // last), so a second `model` could pick an upstream model the allow-list
    // never saw: refuse repeats of the fields routing and answers depend on.
    for name in ["model", "response_format", "file"] {
        if parts.iter().filter(|p| p.name == name).count() > 1 {
            return Err(bad(
                name,
                format!("`{name}` appears more than once in the form"),
            ));
        }
    }
    let model_part = parts
        .iter()
        .find(|p| p.name == "model")
        .ok_or_else(|| bad("model", "missing required parameter: `model`"))?;
    let model = field("model")?.unwrap_or("").trim();
    if model.is_empty() {
        return Err(bad("model", "`model` must not be empty"));
    }
    let format = field("response_format")?;
    one_of("response_format", format, TRANSCRIPTION_FORMATS)?;
    if field("stream")?.is_some_and(|s| s.trim() == "true") {
        return Err(bad(
            "stream",
            "`audio.transcriptions` cannot be streamed through this proxy",
        ));
    }
    // A model name with surrounding whitespace is spliced as sent, so routing
    // must see exactly the bytes that will be replaced.
    let text = model_part.text(body).unwrap_or("");
    let lead = text.len() - text.trim_start().len();
    let trail = text.len() - text.trim_end().len();
    Ok(Upload {
        model: model.to_string(),
        model_span: (model_part.span.0 + lead, model_part.span.1 - trail),
        expects_json: !matches!(format, Some("text" | "srt" | "vtt")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(endpoint: Endpoint, body: &str) -> ApiError {
        check_json(endpoint, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn each_endpoint_names_its_missing_field() {
        assert_eq!(
            err(Endpoint::ImageGenerations, r#"{"model":"m"}"#)
                .param
                .as_deref(),
            Some("prompt")
        );
        assert_eq!(
            err(Endpoint::AudioSpeech, r#"{"model":"m","input":"hi"}"#)
                .param
                .as_deref(),
            Some("voice")
        );
        assert_eq!(
            err(
                Endpoint::Rerank,
                r#"{"model":"m","query":"q","documents":[]}"#
            )
            .param
            .as_deref(),
            Some("documents")
        );
        assert_eq!(
            err(Endpoint::Search, r#"{"model":"m","query":" "}"#)
                .param
                .as_deref(),
            Some("query")
        );
        assert_eq!(
            err(
                Endpoint::Ocr,
                r#"{"model":"m","document":{"type":"document_url"}}"#
            )
            .param
            .as_deref(),
            Some("document")
        );
    }

    #[test]
    fn unsupported_response_formats_are_refused() {
        let e = err(
            Endpoint::AudioSpeech,
            r#"{"model":"m","input":"hi","voice":"alloy","response_format":"ogg"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("unsupported_value"));
        assert!(e.message.contains("mp3"), "{}", e.message);
    }

    #[test]
    fn well_formed_requests_pass() {
        for (endpoint, body) in [
            (
                Endpoint::ImageGenerations,
                r#"{"model":"m","prompt":"a cat","n":2}"#,
            ),
            (
                Endpoint::AudioSpeech,
                r#"{"model":"m","input":"hi","voice":"alloy","response_format":"wav"}"#,
            ),
            (
                Endpoint::Rerank,
                r#"{"model":"m","query":"q","documents":["a",{"text":"b"}],"top_n":1}"#,
            ),
            (
                Endpoint::Search,
                r#"{"model":"m","query":"q","max_results":5,"search_domain_filter":["a.com"],"country":"us"}"#,
            ),
            (
                Endpoint::Ocr,
                r#"{"model":"m","document":{"type":"image_url","image_url":"data:image/png;base64,AA=="}}"#,
            ),
        ] {
            check_json(endpoint, body.as_bytes()).unwrap();
        }
    }

    #[test]
    fn documented_variants_of_each_shape_pass() {
        for (endpoint, body) in [
            (
                Endpoint::AudioSpeech,
                r#"{"model":"m","input":"hi","voice":{"id":"voice_123"},"stream_format":"sse"}"#,
            ),
            (
                Endpoint::Ocr,
                r#"{"model":"m","document":{"type":"image_url","image_url":{"url":"https://x/y.png"}}}"#,
            ),
            (
                Endpoint::Ocr,
                r#"{"model":"m","document":{"type":"file","file_id":"2f1c"}}"#,
            ),
            (
                Endpoint::Moderations,
                r#"{"model":"m","input":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}"#,
            ),
            (Endpoint::Moderations, r#"{"model":"m","input":["a","b"]}"#),
        ] {
            check_json(endpoint, body.as_bytes()).unwrap();
        }
    }

    #[test]
    fn malformed_variants_name_their_field() {
        for (endpoint, body, param) in [
            (
                Endpoint::AudioSpeech,
                r#"{"model":"m","input":"hi","voice":"alloy","stream_format":"chunked"}"#,
                "stream_format",
            ),
            (
                Endpoint::AudioSpeech,
                r#"{"model":"m","input":"hi","voice":{"name":"x"}}"#,
                "voice",
            ),
            (
                Endpoint::Moderations,
                r#"{"model":"m","input":[ ]}"#,
                "input",
            ),
            (
                Endpoint::Moderations,
                r#"{"model":"m","input":[{"type":"video"}]}"#,
                "input",
            ),
            (
                Endpoint::Moderations,
                r#"{"model":"m","input":["a",{"type":"text","text":"b"}]}"#,
                "input",
            ),
            (
                Endpoint::Ocr,
                r#"{"model":"m","document":{"type":"file"}}"#,
                "document",
            ),
        ] {
            let e = err(endpoint, body);
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }

    const CT: &str = "multipart/form-data; boundary=b";

    #[test]
    fn upload_whose_file_is_a_text_field_is_refused() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nnot a file\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--\r\n";
        let e = check_upload(Some(CT), body).err().unwrap();
        assert_eq!(e.param.as_deref(), Some("file"));
        assert!(e.message.contains("file upload"), "{}", e.message);
    }

    #[test]
    fn diarized_json_is_a_json_answer() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--b\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\ndiarized_json\r\n--b--\r\n";
        assert!(check_upload(Some(CT), body).unwrap().expects_json);
    }

    #[test]
    fn upload_without_a_file_is_refused() {
        let body =
            b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--\r\n";
        let e = check_upload(Some(CT), body).err().unwrap();
        assert_eq!(e.param.as_deref(), Some("file"));
    }

    #[test]
    fn upload_model_span_covers_only_the_name() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n whisper-1 \r\n--b\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\nsrt\r\n--b--\r\n";
        let up = check_upload(Some(CT), body).unwrap();
        assert_eq!(up.model, "whisper-1");
        assert_eq!(&body[up.model_span.0..up.model_span.1], b"whisper-1");
        assert!(!up.expects_json);
    }

    #[test]
    fn a_second_model_field_is_refused() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nsecret-model\r\n--b--\r\n";
        let e = check_upload(Some(CT), body).err().unwrap();
        assert_eq!(e.param.as_deref(), Some("model"));
        assert!(e.message.contains("more than once"), "{}", e.message);
    }

    #[test]
    fn upload_needs_multipart() {
        let e = check_upload(Some("application/json"), b"{}").err().unwrap();
        assert_eq!(e.code.as_deref(), Some("invalid_content_type"));
    }
}
