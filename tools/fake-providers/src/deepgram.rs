//! A fake of Deepgram's speech APIs, written from the public API reference:
//! pre-recorded transcription (`POST /v1/listen`, the audio as the raw body)
//! and Aura text to speech (`POST /v1/speak`, `{"text"}`).
//!
//! It checks what the real API checks: `Authorization: Token <key>`, the model,
//! that `/listen` got audio bytes rather than JSON or a form (a multipart body
//! is "corrupt or unsupported data" to Deepgram), and for `/speak` the
//! `encoding`/`container`/`sample_rate` combinations the media-output docs
//! allow. Query parameters the reference does not list are refused, so an
//! OpenAI field leaking through (`prompt`, `response_format`) fails a test.
//! Errors use Deepgram's `{"err_code", "err_msg", "request_id"}`.
//!
//! Transcripts are deterministic: "Hello from the fake Deepgram. Your audio
//! was N bytes." with per-word timings, punctuated only under `smart_format`
//! or `punctuate`, one utterance per sentence under `utterances=true`, and
//! `detected_language` under `detect_language=true`. `metadata.sha256` is the
//! SHA-256 of the audio received, as Deepgram reports it. Speech is streamed in
//! chunks with a pause between them (see [`audio_chunks`]).
//!
//! `GET /__requests` reports what was received (an audio body as
//! `{"content_type", "size", "sha256"}`); `POST /__fault` queues a fault (see
//! [`Fault::parse`]).

use crate::common::{
    self, bind_local, content_type, is_json, paced, query_param, KeyedState, Server,
};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Speech-to-text models this fake knows.
pub const LISTEN_MODELS: &[&str] = &[
    "nova-3",
    "nova-3-general",
    "nova-3-medical",
    "nova-2",
    "nova-2-general",
    "nova",
    "enhanced",
    "base",
    "whisper-large",
];

/// Aura voices this fake knows.
pub const SPEAK_MODELS: &[&str] = &[
    "aura-2-thalia-en",
    "aura-2-andromeda-en",
    "aura-2-apollo-en",
    "aura-asteria-en",
    "aura-luna-en",
];

/// The pause between audio chunks.
pub const CHUNK_INTERVAL: Duration = Duration::from_millis(25);

const LISTEN_QUERY: &[&str] = &[
    "model",
    "language",
    "detect_language",
    "smart_format",
    "punctuate",
    "utterances",
    "utt_split",
    "diarize",
    "paragraphs",
    "numerals",
    "profanity_filter",
    "redact",
    "replace",
    "search",
    "keywords",
    "keyterm",
    "filler_words",
    "measurements",
    "dictation",
    "multichannel",
    "encoding",
    "sample_rate",
    "channels",
    "summarize",
    "topics",
    "intents",
    "sentiment",
    "detect_entities",
    "tag",
    "extra",
    "callback",
    "callback_method",
    "version",
    "mip_opt_out",
];
const SPEAK_QUERY: &[&str] = &[
    "model",
    "encoding",
    "container",
    "sample_rate",
    "bit_rate",
    "callback",
    "callback_method",
    "mip_opt_out",
    "tag",
];

pub use crate::common::RecordedRequest;

/// A way to make the next request go wrong (`CutStream` applies to `/speak`).
pub use crate::common::AudioFault as Fault;

const REQUEST_ID: &str = "5f2a1b9c-6a0e-4f61-9b6e-0c1d2e3f4a5b";

/// Deepgram's error body.
pub fn error_body(code: &str, message: &str) -> String {
    json!({"err_code": code, "err_msg": message, "request_id": REQUEST_ID}).to_string()
}

/// The error the reference documents for a status.
pub fn documented_error(status: u16) -> String {
    match status {
        400 => error_body(
            "Bad Request",
            "Bad Request: failed to process audio: corrupt or unsupported data",
        ),
        401 => error_body("INVALID_AUTH", "Invalid credentials."),
        402 => error_body(
            "ASR_PAYMENT_REQUIRED",
            "Project does not have enough credits for an ASR request and does not have an overage agreement.",
        ),
        403 => error_body(
            "INSUFFICIENT_PERMISSIONS",
            "Project does not have access to the requested model.",
        ),
        429 => error_body(
            "TOO_MANY_REQUESTS",
            "Too many requests. Please try again later",
        ),
        _ => error_body("INTERNAL_SERVER_ERROR", "Internal server error."),
    }
}

type Shared = KeyedState<RecordedRequest, Fault>;

/// A running fake. Dropping it stops the server.
pub struct FakeDeepgram {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0`; requests must carry `Authorization: Token <api_key>`.
pub async fn start(api_key: &str) -> std::io::Result<FakeDeepgram> {
    start_on(bind_local().await?, api_key).await
}

/// Serves on a listener the caller bound.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeDeepgram> {
    let shared = Shared::new(api_key);
    let app = Router::new()
        .route("/v1/listen", post(listen))
        .route("/v1/speak", post(speak))
        .route("/__requests", get(recorded))
        .route("/__fault", post(queue_fault))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(FakeDeepgram { shared, server })
}

impl FakeDeepgram {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v1`, the shape of Deepgram's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr())
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults.push(fault);
    }
}

/// Every answer carries Deepgram's `dg-request-id`.
fn with_request_id(mut r: Response) -> Response {
    r.headers_mut()
        .insert("dg-request-id", HeaderValue::from_static(REQUEST_ID));
    r
}

fn respond(status: u16, content_type: &'static str, body: impl Into<Body>) -> Response {
    with_request_id(common::respond(status, content_type, body))
}

fn error(status: u16, code: &str, message: &str) -> Response {
    respond(status, "application/json", error_body(code, message))
}

fn bad_request(message: &str) -> Response {
    error(400, "Bad Request", message)
}

async fn recorded(State(shared): State<Arc<Shared>>) -> Response {
    let all = shared.requests.to_json(RecordedRequest::to_json);
    respond(200, "application/json", all.to_string())
}

async fn queue_fault(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    with_request_id(common::queue_fault(&shared.faults, &raw, |v| {
        Fault::parse(v, documented_error)
    }))
}

async fn not_found() -> Response {
    error(404, "NOT_FOUND", "Not found.")
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The auth check, then the next queued fault: an error fault is the answer
/// (`Err`), a cut is left for the stream.
fn gate(shared: &Shared, headers: &HeaderMap) -> Result<Option<Fault>, Box<Response>> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '));
    match auth {
        Some((scheme, key)) if scheme == "Token" && key.trim() == shared.api_key => {}
        _ => return Err(Box::new(error(401, "INVALID_AUTH", "Invalid credentials."))),
    }
    let fault = shared.faults.pop();
    match Fault::error_response(&fault) {
        Some(r) => Err(Box::new(with_request_id(r))),
        None => Ok(fault),
    }
}

/// Every query key must be one the reference lists.
fn check_query(query: Option<&str>, allowed: &[&str]) -> Result<(), Box<Response>> {
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !allowed.contains(&key) {
            return Err(Box::new(bad_request(&format!(
                "Bad Request: unknown query parameter `{key}`"
            ))));
        }
    }
    Ok(())
}

fn flag(query: Option<&str>, name: &str) -> bool {
    query_param(query, name) == Some("true")
}

// ---------------------------------------------------------------------------
// /v1/listen
// ---------------------------------------------------------------------------

/// The transcript the fake "hears" in any audio.
pub fn transcript_text(audio_len: usize) -> String {
    format!("Hello from the fake Deepgram. Your audio was {audio_len} bytes.")
}

async fn listen(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let content_type = content_type(&headers);
    shared.requests.record(
        "POST",
        &uri,
        &headers,
        json!({"content_type": content_type, "size": raw.len(), "sha256": sha256_hex(&raw)}),
        &raw,
    );
    // A queued cut has no stream to cut here; it is used up all the same.
    if let Err(r) = gate(&shared, &headers) {
        return *r;
    }
    let q = uri.query();
    if let Err(r) = check_query(q, LISTEN_QUERY) {
        return *r;
    }
    if content_type.starts_with("application/json") {
        return bad_request("Bad Request: the JSON body has no `url` to transcribe");
    }
    if raw.is_empty() || content_type.starts_with("multipart/") || content_type.starts_with("text/")
    {
        return bad_request("Bad Request: failed to process audio: corrupt or unsupported data");
    }
    let model = query_param(q, "model").unwrap_or("base");
    if !LISTEN_MODELS.contains(&model) {
        return bad_request("Bad Request: No such model/language/tier combination found.");
    }
    let punctuated = flag(q, "smart_format") || flag(q, "punctuate");
    let text = transcript_text(raw.len());
    let mut words = Vec::new();
    // Timings in whole milliseconds, reported as seconds, as Deepgram does.
    let secs = |ms: u64| ms as f64 / 1000.0;
    let mut sentences: Vec<(f64, f64, Vec<String>)> = Vec::new();
    let mut t: u64 = 80;
    let mut current: Vec<String> = Vec::new();
    let mut sentence_start = t;
    for w in text.split_whitespace() {
        let bare: String = w.trim_end_matches(['.', ',']).to_lowercase();
        let mut word =
            json!({"word": bare, "start": secs(t), "end": secs(t + 320), "confidence": 0.99});
        if punctuated {
            if let Some(o) = word.as_object_mut() {
                o.insert("punctuated_word".into(), json!(w));
            }
        }
        words.push(word);
        current.push(if punctuated { w.to_string() } else { bare });
        t += 400;
        if w.ends_with('.') {
            sentences.push((
                secs(sentence_start),
                secs(t - 80),
                std::mem::take(&mut current),
            ));
            t += 600;
            sentence_start = t;
        }
    }
    let transcript = sentences
        .iter()
        .map(|(_, _, ws)| ws.join(" "))
        .collect::<Vec<_>>()
        .join(" ");
    let mut channel = json!({"alternatives": [{
        "transcript": transcript,
        "confidence": 0.99,
        "words": words,
    }]});
    if flag(q, "detect_language") {
        if let Some(o) = channel.as_object_mut() {
            o.insert("detected_language".into(), json!("en"));
            o.insert("language_confidence".into(), json!(0.98));
        }
    }
    let mut results = json!({"channels": [channel]});
    if flag(q, "utterances") {
        let utterances: Vec<Value> = sentences
            .iter()
            .enumerate()
            .map(|(i, (start, end, ws))| {
                json!({
                    "start": start, "end": end, "confidence": 0.98, "channel": 0,
                    "transcript": ws.join(" "), "words": [], "speaker": 0,
                    "id": format!("utt-{i}"),
                })
            })
            .collect();
        if let Some(o) = results.as_object_mut() {
            o.insert("utterances".into(), Value::Array(utterances));
        }
    }
    let answer = json!({
        "metadata": {
            "transaction_key": "deprecated",
            "request_id": REQUEST_ID,
            "sha256": sha256_hex(&raw),
            "created": "2024-06-01T12:00:00.000Z",
            "duration": secs(t),
            "channels": 1,
            "models": ["1abfe86b-e047-4eed-858a-35e5625b41ee"],
            "model_info": {"1abfe86b-e047-4eed-858a-35e5625b41ee": {"name": model, "version": "2024-01-01.0", "arch": model}},
        },
        "results": results,
    });
    respond(200, "application/json", answer.to_string())
}

// ---------------------------------------------------------------------------
// /v1/speak
// ---------------------------------------------------------------------------

/// The content type Deepgram labels each encoding with.
fn speak_content_type(encoding: &str, container: &str) -> &'static str {
    match (encoding, container) {
        ("mp3", _) => "audio/mpeg",
        ("opus", _) => "audio/ogg",
        ("aac", _) => "audio/aac",
        ("flac", _) => "audio/flac",
        (_, "wav") => "audio/wav",
        _ => "application/octet-stream",
    }
}

/// Checks `encoding`, `container` and `sample_rate` as the media-output docs
/// combine them; returns (encoding, container).
fn check_media(q: Option<&str>) -> Result<(String, String), Box<Response>> {
    let encoding = query_param(q, "encoding").unwrap_or("linear16");
    let raw_pcm = matches!(encoding, "linear16" | "mulaw" | "alaw");
    let container = query_param(q, "container").unwrap_or(match encoding {
        "opus" => "ogg",
        "linear16" | "mulaw" | "alaw" => "wav",
        _ => "none",
    });
    let bad = || {
        bad_request(
            "Unsupported audio format: the encoding, container and sample rate do not combine",
        )
    };
    let container_ok = match encoding {
        "linear16" | "mulaw" | "alaw" => matches!(container, "wav" | "none"),
        "opus" => container == "ogg",
        "mp3" | "flac" | "aac" => container == "none",
        _ => false,
    };
    if !container_ok {
        return Err(Box::new(bad()));
    }
    if let Some(rate) = query_param(q, "sample_rate") {
        let ok = match encoding {
            "linear16" => matches!(rate, "8000" | "16000" | "24000" | "32000" | "48000"),
            "mulaw" | "alaw" => matches!(rate, "8000" | "16000"),
            "flac" => matches!(rate, "8000" | "16000" | "22050" | "32000" | "48000"),
            _ => false,
        };
        if !ok || !(raw_pcm || encoding == "flac") {
            return Err(Box::new(bad()));
        }
    }
    Ok((encoding.to_string(), container.to_string()))
}

/// The audio for `text`: a container header where there is one, then one
/// binary frame per word.
pub fn audio_chunks(text: &str, encoding: &str, container: &str) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    match (encoding, container) {
        ("mp3", _) => chunks.push(Bytes::from_static(b"ID3\x04\x00\x00\x00\x00\x00\x00")),
        ("opus", _) => chunks.push(Bytes::from_static(b"OggS\x00\x02\x00\x00OpusHead")),
        ("flac", _) => chunks.push(Bytes::from_static(b"fLaC\x00\x00\x00\x22")),
        (_, "wav") => chunks.push(Bytes::from_static(
            b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00",
        )),
        _ => {}
    }
    for word in text.split_whitespace() {
        let mut frame = vec![0xFF, 0xF1, 0x50];
        frame.extend_from_slice(encoding.as_bytes());
        frame.push(0x00);
        frame.extend_from_slice(word.as_bytes());
        frame.extend_from_slice(&[0x80, 0x00, 0xFD]);
        chunks.push(Bytes::from(frame));
    }
    chunks
}

async fn speak(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared
        .requests
        .record("POST", &uri, &headers, body.clone(), &raw);
    let fault = match gate(&shared, &headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let q = uri.query();
    if let Err(r) = check_query(q, SPEAK_QUERY) {
        return *r;
    }
    if !is_json(&headers) {
        return error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "Unsupported content type in request.",
        );
    }
    let Some(obj) = body.as_object() else {
        return bad_request("Failed to parse the request body as JSON.");
    };
    if let Some(k) = obj.keys().find(|k| k.as_str() != "text") {
        return bad_request(&format!("Unknown field `{k}` in the request body."));
    }
    let text = match obj.get("text").and_then(Value::as_str) {
        Some(t) if !t.trim().is_empty() => t.to_string(),
        _ => return bad_request("Input text contained no characters."),
    };
    let model = query_param(q, "model").unwrap_or("aura-asteria-en");
    if !SPEAK_MODELS.contains(&model) {
        return bad_request("Unknown model. Query parameters specify a model that does not exist.");
    }
    let (encoding, container) = match check_media(q) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let chunks = audio_chunks(&text, &encoding, &container);
    let mut r = respond(
        200,
        speak_content_type(&encoding, &container),
        paced(chunks, CHUNK_INTERVAL, Fault::cut_after(&fault)),
    );
    if let Ok(v) = HeaderValue::from_str(&text.chars().count().to_string()) {
        r.headers_mut().insert("dg-char-count", v);
    }
    if let Ok(v) = HeaderValue::from_str(model) {
        r.headers_mut().insert("dg-model-name", v);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn media_combinations_follow_the_output_settings_docs() {
        assert!(check_media(Some("encoding=linear16&container=none&sample_rate=24000")).is_ok());
        assert!(check_media(Some("encoding=opus&container=ogg")).is_ok());
        assert!(check_media(Some("encoding=mp3&sample_rate=24000")).is_err());
        assert!(check_media(Some("encoding=opus&container=wav")).is_err());
    }

    #[test]
    fn the_sha256_is_of_the_bytes_received() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
