//! A fake of ElevenLabs' speech APIs, written from the public API reference:
//! text to speech (`POST /v1/text-to-speech/{voice_id}/stream` and the
//! whole-file `POST /v1/text-to-speech/{voice_id}`) and Scribe speech to text
//! (`POST /v1/speech-to-text`, multipart).
//!
//! It checks what the real API checks: the `xi-api-key` header, the voice id,
//! `output_format` against the list each endpoint publishes (the streaming one
//! has no `wav_*`), the body's `text` and `model_id`, `voice_settings.speed`
//! within 0.7–1.2, and for Scribe a `model_id` and a non-empty `file`. It is
//! stricter in one way: body fields and query parameters the reference does
//! not list are refused (FastAPI's 422 shape), so an OpenAI field leaking
//! through (`input`, `voice`, `response_format`, `prompt`) fails a test.
//! Errors use ElevenLabs' `{"detail": {"status", "message"}}`.
//!
//! Speech is streamed in chunks with a pause between them: a header for the
//! codec, then one binary frame per word of the text (see [`audio_chunks`], so
//! a test can compute the exact bytes). Every answer is labelled `audio/mpeg`,
//! the one media type the reference documents for the endpoint, whatever the
//! `output_format`. Transcripts are deterministic: "Hello from the fake. The
//! audio was N bytes long." with word timings, an `(laughs)` audio event unless
//! `tag_audio_events=false`, and `language_code` as sent (default `eng`).
//!
//! `GET /__requests` reports what was received (a multipart body as
//! `{field: text}` with the file as `{"filename", "content_type", "size"}`);
//! `POST /__fault` queues a fault for tests in another process (see
//! [`Fault::parse`]).

use crate::common::{
    self, bind_local, is_json, paced, read_multipart, respond, KeyedState, Server,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Voices this fake knows (ElevenLabs' default "George" and "Rachel").
pub const VOICES: &[&str] = &["JBFqnCBsd6RMkjVDRZzb", "21m00Tcm4TlvDq8ikWAM"];

/// Text-to-speech models the reference lists.
pub const TTS_MODELS: &[&str] = &[
    "eleven_v3",
    "eleven_multilingual_v2",
    "eleven_flash_v2_5",
    "eleven_flash_v2",
    "eleven_turbo_v2_5",
    "eleven_turbo_v2",
    "eleven_monolingual_v1",
    "eleven_multilingual_v1",
];

/// Speech-to-text models.
pub const STT_MODELS: &[&str] = &["scribe_v1", "scribe_v1_experimental", "scribe_v2"];

/// `output_format` values the streaming endpoint publishes.
pub const STREAM_FORMATS: &[&str] = &[
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
    "alaw_8000",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
];

/// The whole-file endpoint publishes these as well.
pub const WAV_FORMATS: &[&str] = &[
    "wav_8000",
    "wav_16000",
    "wav_22050",
    "wav_24000",
    "wav_32000",
    "wav_44100",
    "wav_48000",
];

/// The pause between audio chunks.
pub const CHUNK_INTERVAL: Duration = Duration::from_millis(25);

const TTS_FIELDS: &[&str] = &[
    "text",
    "model_id",
    "language_code",
    "voice_settings",
    "pronunciation_dictionary_locators",
    "seed",
    "previous_text",
    "next_text",
    "previous_request_ids",
    "next_request_ids",
    "use_pvc_as_ivc",
    "apply_text_normalization",
    "apply_language_text_normalization",
];
const TTS_QUERY: &[&str] = &[
    "output_format",
    "optimize_streaming_latency",
    "enable_logging",
];
const VOICE_SETTINGS: &[&str] = &[
    "stability",
    "similarity_boost",
    "style",
    "use_speaker_boost",
    "speed",
];
const STT_FIELDS: &[&str] = &[
    "model_id",
    "file",
    "language_code",
    "tag_audio_events",
    "num_speakers",
    "timestamps_granularity",
    "diarize",
    "diarization_threshold",
    "additional_formats",
    "file_format",
    "cloud_storage_url",
    "webhook",
    "webhook_id",
    "temperature",
    "seed",
    "use_multi_channel",
    "webhook_metadata",
    "entity_detection",
    "keyterms",
];

pub use crate::common::{AudioFault as Fault, RecordedRequest};

/// ElevenLabs' error body: `{"detail": {"status", "message"}}`.
pub fn error_body(status: &str, message: &str) -> String {
    json!({"detail": {"status": status, "message": message}}).to_string()
}

/// A representative error the help centre documents for a status.
pub fn documented_error(status: u16) -> String {
    match status {
        400 => error_body(
            "max_character_limit_exceeded",
            "This request's text has 10001 characters and exceeds the character limit of 10000 characters.",
        ),
        401 => error_body(
            "quota_exceeded",
            "This request exceeds your quota of 10000. You have 12 credits remaining, while 48 credits are required for this request.",
        ),
        429 => error_body(
            "too_many_concurrent_requests",
            "Too many concurrent requests. Your current subscription is associated with a maximum of 2 concurrent requests.",
        ),
        _ => error_body("internal_error", "An internal server error occurred."),
    }
}

type Shared = KeyedState<RecordedRequest, Fault>;

/// A running fake. Dropping it stops the server.
pub struct FakeElevenLabs {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0`; requests must carry `xi-api-key: <api_key>`.
pub async fn start(api_key: &str) -> std::io::Result<FakeElevenLabs> {
    start_on(bind_local().await?, api_key).await
}

/// Serves on a listener the caller bound.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeElevenLabs> {
    let shared = Shared::new(api_key);
    let app = Router::new()
        .route("/v1/text-to-speech/{voice_id}/stream", post(speech_stream))
        .route("/v1/text-to-speech/{voice_id}", post(speech_whole))
        .route("/v1/speech-to-text", post(speech_to_text))
        .route("/__requests", get(recorded))
        .route("/__fault", post(queue_fault))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(FakeElevenLabs { shared, server })
}

impl FakeElevenLabs {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`: ElevenLabs' paths start at `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults.push(fault);
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

fn error(status: u16, reason: &str, message: &str) -> Response {
    respond(status, "application/json", error_body(reason, message))
}

/// FastAPI's validation error: `{"detail": [{"loc", "msg", "type"}]}`.
fn unprocessable(loc: &[&str], msg: &str, kind: &str) -> Response {
    respond(
        422,
        "application/json",
        json!({"detail": [{"loc": loc, "msg": msg, "type": kind}]}).to_string(),
    )
}

async fn recorded(State(shared): State<Arc<Shared>>) -> Response {
    let all = shared.requests.to_json(RecordedRequest::to_json);
    respond(200, "application/json", all.to_string())
}

async fn queue_fault(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    common::queue_fault(&shared.faults, &raw, |v| Fault::parse(v, documented_error))
}

async fn not_found() -> Response {
    respond(
        404,
        "application/json",
        json!({"detail": "Not Found"}).to_string(),
    )
}

/// The auth check, then the next queued fault: an error fault is the answer
/// (`Err`), a cut is left for the stream.
fn gate(shared: &Shared, headers: &HeaderMap) -> Result<Option<Fault>, Box<Response>> {
    match headers.get("xi-api-key").and_then(|v| v.to_str().ok()) {
        None => Err(Box::new(error(
            401,
            "needs_authorization",
            "Neither authorization header nor xi-api-key received, please provide one.",
        ))),
        Some(k) if k != shared.api_key => {
            Err(Box::new(error(401, "invalid_api_key", "Invalid API key")))
        }
        Some(_) => {
            let fault = shared.faults.pop();
            match Fault::error_response(&fault) {
                Some(r) => Err(Box::new(r)),
                None => Ok(fault),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Text to speech
// ---------------------------------------------------------------------------

async fn speech_stream(
    State(shared): State<Arc<Shared>>,
    Path(voice_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    speech(&shared, &voice_id, &headers, &uri, &raw, true)
}

async fn speech_whole(
    State(shared): State<Arc<Shared>>,
    Path(voice_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    speech(&shared, &voice_id, &headers, &uri, &raw, false)
}

fn speech(
    shared: &Shared,
    voice_id: &str,
    headers: &HeaderMap,
    uri: &Uri,
    raw: &Bytes,
    streaming: bool,
) -> Response {
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    shared
        .requests
        .record("POST", uri, headers, body.clone(), raw);
    let fault = match gate(shared, headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let output_format = match check_speech_query(uri.query(), streaming) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let text = match check_speech_body(headers, &body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if !VOICES.contains(&voice_id) {
        return error(
            400,
            "voice_not_found",
            &format!("A voice with the voice_id {voice_id} was not found."),
        );
    }
    let chunks = audio_chunks(&text, &output_format);
    let mut r = respond(
        200,
        "audio/mpeg",
        paced(chunks, CHUNK_INTERVAL, Fault::cut_after(&fault)),
    );
    if let Ok(v) = HeaderValue::from_str(&text.chars().count().to_string()) {
        r.headers_mut().insert("x-character-count", v);
    }
    r.headers_mut().insert(
        "request-id",
        HeaderValue::from_static("fake-elevenlabs-request"),
    );
    r
}

fn check_speech_query(query: Option<&str>, streaming: bool) -> Result<String, Box<Response>> {
    let mut output_format = "mp3_44100_128".to_string();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !TTS_QUERY.contains(&k) {
            return Err(Box::new(unprocessable(
                &["query", k],
                "extra query parameters not permitted",
                "value_error.extra",
            )));
        }
        if k == "output_format" {
            let published = STREAM_FORMATS.contains(&v) || (!streaming && WAV_FORMATS.contains(&v));
            if !published {
                return Err(Box::new(unprocessable(
                    &["query", "output_format"],
                    &format!("value is not a valid enumeration member: {v}"),
                    "type_error.enum",
                )));
            }
            output_format = v.to_string();
        }
    }
    Ok(output_format)
}

fn check_speech_body(headers: &HeaderMap, body: &Value) -> Result<String, Box<Response>> {
    let Some(obj) = body.as_object().filter(|_| is_json(headers)) else {
        return Err(Box::new(unprocessable(
            &["body"],
            "Invalid JSON body",
            "value_error.jsondecode",
        )));
    };
    if let Some(k) = obj.keys().find(|k| !TTS_FIELDS.contains(&k.as_str())) {
        return Err(Box::new(unprocessable(
            &["body", k],
            "extra fields not permitted",
            "value_error.extra",
        )));
    }
    let text = match obj.get("text") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
        Some(Value::String(_)) => {
            return Err(Box::new(error(
                400,
                "empty_text",
                "Text must not be empty.",
            )))
        }
        Some(_) => {
            return Err(Box::new(unprocessable(
                &["body", "text"],
                "str type expected",
                "type_error.str",
            )))
        }
        None => {
            return Err(Box::new(unprocessable(
                &["body", "text"],
                "field required",
                "value_error.missing",
            )))
        }
    };
    if text.chars().count() > 10_000 {
        return Err(Box::new(error(
            400,
            "max_character_limit_exceeded",
            "This request's text exceeds the character limit of 10000 characters.",
        )));
    }
    match obj.get("model_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if TTS_MODELS.contains(&m.as_str()) => {}
        Some(Value::String(m)) => {
            return Err(Box::new(error(
                400,
                "model_not_found",
                &format!("A model with model ID {m} does not exist."),
            )))
        }
        Some(_) => {
            return Err(Box::new(unprocessable(
                &["body", "model_id"],
                "str type expected",
                "type_error.str",
            )))
        }
    }
    if let Some(vs) = obj.get("voice_settings").filter(|v| !v.is_null()) {
        let Some(vs) = vs.as_object() else {
            return Err(Box::new(unprocessable(
                &["body", "voice_settings"],
                "value is not a valid dict",
                "type_error.dict",
            )));
        };
        if let Some(k) = vs.keys().find(|k| !VOICE_SETTINGS.contains(&k.as_str())) {
            return Err(Box::new(unprocessable(
                &["body", "voice_settings", k],
                "extra fields not permitted",
                "value_error.extra",
            )));
        }
        if let Some(speed) = vs.get("speed") {
            if !speed.as_f64().is_some_and(|s| (0.7..=1.2).contains(&s)) {
                return Err(Box::new(error(
                    400,
                    "invalid_voice_settings",
                    "voice_settings.speed must be between 0.7 and 1.2.",
                )));
            }
        }
    }
    Ok(text)
}

/// The audio for `text` in `output_format`: a codec header, then one frame
/// per word. Frames hold non-UTF-8 bytes so a relay that re-encodes shows.
pub fn audio_chunks(text: &str, output_format: &str) -> Vec<Bytes> {
    let codec = output_format.split('_').next().unwrap_or("mp3");
    let mut chunks = Vec::new();
    match codec {
        "mp3" => chunks.push(Bytes::from_static(b"ID3\x04\x00\x00\x00\x00\x00\x00")),
        "opus" => chunks.push(Bytes::from_static(b"OggS\x00\x02\x00\x00OpusHead")),
        // A streamed WAV cannot know its length: sizes are 0xFFFFFFFF.
        "wav" => chunks.push(Bytes::from_static(
            b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00",
        )),
        _ => {}
    }
    for word in text.split_whitespace() {
        let mut frame = vec![0xFF, 0xF3, 0x80];
        frame.extend_from_slice(codec.as_bytes());
        frame.push(0x00);
        frame.extend_from_slice(word.as_bytes());
        frame.extend_from_slice(&[0xFE, 0x00, 0x81]);
        chunks.push(Bytes::from(frame));
    }
    chunks
}

// ---------------------------------------------------------------------------
// Speech to text
// ---------------------------------------------------------------------------

/// The transcript the fake "hears" in any upload.
pub fn transcript_text(audio_len: usize) -> String {
    format!("Hello from the fake. The audio was {audio_len} bytes long.")
}

async fn speech_to_text(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let parts = read_multipart(&headers, &raw, "expected multipart/form-data").ok();
    let mut fields = Map::new();
    for p in parts.iter().flatten() {
        let v = if p.filename.is_some() {
            json!({"filename": p.filename, "content_type": p.content_type, "size": p.data.len()})
        } else {
            Value::String(String::from_utf8_lossy(&p.data).into_owned())
        };
        fields.insert(p.name.clone(), v);
    }
    shared
        .requests
        .record("POST", &uri, &headers, Value::Object(fields.clone()), &raw);
    // A queued cut has no stream to cut here; it is used up all the same.
    if let Err(r) = gate(&shared, &headers) {
        return *r;
    }
    let Some(parts) = parts else {
        return unprocessable(&["body"], "expected multipart/form-data", "value_error");
    };
    if let Some(p) = parts
        .iter()
        .find(|p| !STT_FIELDS.contains(&p.name.as_str()))
    {
        return unprocessable(
            &["body", &p.name],
            "extra fields not permitted",
            "value_error.extra",
        );
    }
    let text_field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name)
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    match text_field("model_id") {
        None => {
            return unprocessable(
                &["body", "model_id"],
                "field required",
                "value_error.missing",
            )
        }
        Some(m) if !STT_MODELS.contains(&m.as_str()) => {
            return error(
                400,
                "invalid_model_id",
                &format!("Model {m} is not a speech-to-text model."),
            )
        }
        Some(_) => {}
    }
    let Some(file) = parts.iter().find(|p| p.name == "file") else {
        return error(
            400,
            "invalid_parameters",
            "Exactly one of the file or cloud_storage_url parameters must be provided.",
        );
    };
    if file.data.is_empty() || file.filename.is_none() {
        return error(
            400,
            "invalid_file",
            "The uploaded file is empty or not a file.",
        );
    }
    for (name, allowed) in [
        ("tag_audio_events", &["true", "false"][..]),
        ("timestamps_granularity", &["none", "word", "character"][..]),
    ] {
        if let Some(v) = text_field(name) {
            if !allowed.contains(&v.as_str()) {
                return unprocessable(&["body", name], "invalid value", "value_error");
            }
        }
    }
    if let Some(t) = text_field("temperature") {
        if !t.parse::<f64>().is_ok_and(|t| (0.0..=2.0).contains(&t)) {
            return unprocessable(
                &["body", "temperature"],
                "ensure this value is between 0.0 and 2.0",
                "value_error",
            );
        }
    }
    let tag_events = text_field("tag_audio_events").as_deref() != Some("false");
    let text = transcript_text(file.data.len());
    let mut words = Vec::new();
    // Timings in whole milliseconds, reported as seconds.
    let secs = |ms: u64| ms as f64 / 1000.0;
    let mut t: u64 = 0;
    for (i, w) in text.split_whitespace().enumerate() {
        if i > 0 {
            words.push(json!({"text": " ", "start": secs(t), "end": secs(t + 100), "type": "spacing", "speaker_id": "speaker_0", "logprob": 0.0}));
            t += 100;
        }
        words.push(json!({"text": w, "start": secs(t), "end": secs(t + 300), "type": "word", "speaker_id": "speaker_0", "logprob": -0.05}));
        t += 300;
        if tag_events && w.ends_with('.') && i == 3 {
            words.push(json!({"text": "(laughs)", "start": secs(t), "end": secs(t + 500), "type": "audio_event", "speaker_id": "speaker_0", "logprob": 0.0}));
            t += 500;
        }
    }
    let answer = json!({
        "language_code": text_field("language_code").unwrap_or_else(|| "eng".to_string()),
        "language_probability": 0.98,
        "text": if tag_events { text.replacen(". ", ". (laughs) ", 1) } else { text },
        "words": words,
        "transcription_id": "fake-transcription-1",
    });
    respond(200, "application/json", answer.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn audio_frames_are_one_per_word_after_the_codec_header() {
        let c = audio_chunks("Hello there", "pcm_24000");
        assert_eq!(c.len(), 2);
        assert!(c[0].starts_with(&[0xFF, 0xF3, 0x80]));
        let mp3 = audio_chunks("Hello there", "mp3_44100_128");
        assert_eq!(mp3.len(), 3);
        assert!(mp3[0].starts_with(b"ID3"));
    }
}
