//! The endpoints beyond text generation: images, speech, transcriptions and
//! moderations as OpenAI's API reference documents them, plus the rerank
//! (Cohere-style, as vLLM, Jina and Infinity serve it) and OCR (Mistral-style)
//! routes that OpenAI-compatible servers add.
//!
//! Content is deterministic and derived from the request, so tests can check that
//! what reached the mock is what the client sent: transcripts name the uploaded
//! file's size and FNV-1a hash and the model that was asked for.
//!
//! These are not on a benchmark's hot path, so they build their answers with
//! `serde_json` rather than by hand.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::body::{MockBody, PacedFrame, SseBody, StreamEnd};
use crate::form;
use crate::openai;
use crate::rng::{fnv1a, next_u64, splitmix64};
use crate::server::{
    invalid_json, json as json_response, pre_fault, prompt_tokens, response, Outcome, Shared,
    TEXT_EVENT_STREAM,
};
use crate::{Fault, MockConfig};

type Object = Map<String, Value>;
/// A refusal on its way out; boxed because a whole response is large.
type Rejection = Box<Outcome>;

/// A 1x1 transparent PNG: every generated image, so clients can decode a real one.
pub const PNG_1X1_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
/// Audio bytes per streamed speech chunk (the first chunk also carries the header).
pub const SPEECH_CHUNK_BYTES: usize = 1024;
const SPEECH_FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];
const TRANSCRIPTION_FORMATS: &[&str] = &[
    "json",
    "text",
    "srt",
    "verbose_json",
    "vtt",
    "diarized_json",
];
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// The moderation categories of `omni-moderation-*`, in OpenAI's order.
const MODERATION_CATEGORIES: &[&str] = &[
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];
/// Categories whose scores also apply to images (the others are text-only).
const IMAGE_CATEGORIES: &[&str] = &[
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "violence",
    "violence/graphic",
];

fn error(status: StatusCode, message: &str, param: Option<&str>, code: Option<&str>) -> Rejection {
    Box::new(
        json_response(
            status,
            openai::error_body(message, "invalid_request_error", param, code),
        )
        .into(),
    )
}

fn bad(message: &str, param: &str, code: &str) -> Rejection {
    error(StatusCode::BAD_REQUEST, message, Some(param), Some(code))
}

fn missing(param: &str) -> Rejection {
    bad(
        &format!("Missing required parameter: '{param}'."),
        param,
        "missing_required_parameter",
    )
}

fn invalid_value(param: &str, value: &str, allowed: &[&str]) -> Rejection {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    bad(
        &format!(
            "Invalid value: '{value}'. Supported values are: {}.",
            quoted.join(", ")
        ),
        param,
        "invalid_value",
    )
}

fn invalid_type(param: &str, expected: &str) -> Rejection {
    bad(
        &format!("Invalid type for '{param}': expected {expected}."),
        param,
        "invalid_type",
    )
}

fn object(body: &[u8]) -> Result<Object, Rejection> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "Invalid request body: expected a JSON object.",
            None,
            None,
        )),
        Err(e) => Err(Box::new(invalid_json(&e))),
    }
}

fn optional_str<'a>(obj: &'a Object, field: &str) -> Result<Option<&'a str>, Rejection> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_type(field, "a string")),
    }
}

fn required_str<'a>(obj: &'a Object, field: &str) -> Result<&'a str, Rejection> {
    optional_str(obj, field)?.ok_or_else(|| missing(field))
}

fn one_of<'a>(
    field: &str,
    value: Option<&'a str>,
    default: &'a str,
    allowed: &[&str],
) -> Result<&'a str, Rejection> {
    let value = value.unwrap_or(default);
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(invalid_value(field, value, allowed))
    }
}

fn hex_id(prefix: &str) -> String {
    format!("{prefix}{:016x}{:08x}", next_u64(), next_u64() as u32)
}

/// Deterministic value in `[0, 1)` from `seed` and `salt`.
fn unit(seed: u64, salt: u64) -> f64 {
    (splitmix64(seed ^ splitmix64(salt)) >> 11) as f64 / (1u64 << 53) as f64
}

fn with_outcome<T>(result: Result<T, Rejection>, f: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(value) => f(value),
        Err(outcome) => *outcome,
    }
}

// ------------------------------------------------------------------ images

/// `POST /v1/images/generations`.
pub(crate) fn images(config: &MockConfig, body: &Bytes) -> Outcome {
    if let Some(outcome) = pre_fault(config.fault, false) {
        return outcome;
    }
    with_outcome(image_answer(body), |answer| {
        json_response(StatusCode::OK, answer.to_string()).into()
    })
}

fn image_answer(body: &[u8]) -> Result<Value, Rejection> {
    let obj = object(body)?;
    // OpenAI's default image model when the request names none.
    let model = optional_str(&obj, "model")?.unwrap_or("dall-e-2");
    let prompt = required_str(&obj, "prompt")?;
    if prompt.is_empty() {
        return Err(bad(
            "Invalid 'prompt': empty string. Expected a string with minimum length 1.",
            "prompt",
            "empty_string",
        ));
    }
    let gpt_image = model.starts_with("gpt-image");
    let n = match obj.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=10).contains(&n) => n,
            _ => {
                return Err(bad(
                    &format!("Invalid 'n': {v}. Expected a value between 1 and 10."),
                    "n",
                    "invalid_value",
                ))
            }
        },
    };
    if model == "dall-e-3" && n != 1 {
        return Err(bad(
            "Invalid 'n': dall-e-3 only supports n=1.",
            "n",
            "invalid_value",
        ));
    }
    let sizes: &[&str] = match model {
        "dall-e-2" => &["256x256", "512x512", "1024x1024"],
        "dall-e-3" => &["1024x1024", "1792x1024", "1024x1792"],
        _ if gpt_image => &["auto", "1024x1024", "1536x1024", "1024x1536"],
        _ => &[
            "auto",
            "256x256",
            "512x512",
            "1024x1024",
            "1536x1024",
            "1024x1536",
            "1792x1024",
            "1024x1792",
        ],
    };
    let size = one_of(
        "size",
        optional_str(&obj, "size")?,
        if gpt_image { "auto" } else { "1024x1024" },
        sizes,
    )?;
    let format = one_of(
        "response_format",
        optional_str(&obj, "response_format")?,
        "url",
        &["url", "b64_json"],
    )?;
    let created = openai::unix_now();
    if gpt_image {
        // GPT image models always answer in base64 and report token usage.
        let quality = one_of(
            "quality",
            optional_str(&obj, "quality")?,
            "auto",
            &["auto", "low", "medium", "high"],
        )?;
        let quality = if quality == "auto" { "medium" } else { quality };
        let size = if size == "auto" { "1024x1024" } else { size };
        let per_image: u64 = match (quality, size == "1024x1024") {
            ("low", true) => 272,
            ("low", false) => 408,
            ("medium", true) => 1056,
            ("medium", false) => 1584,
            (_, true) => 4160,
            (_, false) => 6240,
        };
        let input_tokens = prompt_tokens(prompt.as_bytes());
        let output_tokens = per_image * n;
        let data: Vec<Value> = (0..n).map(|_| json!({"b64_json": PNG_1X1_B64})).collect();
        return Ok(json!({
            "created": created,
            "background": optional_str(&obj, "background")?.filter(|b| *b != "auto").unwrap_or("opaque"),
            "data": data,
            "output_format": optional_str(&obj, "output_format")?.unwrap_or("png"),
            "quality": quality,
            "size": size,
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": input_tokens},
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        }));
    }
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut image = Map::new();
            if format == "b64_json" {
                image.insert("b64_json".into(), Value::from(PNG_1X1_B64));
            } else {
                image.insert(
                    "url".into(),
                    Value::from(format!(
                        "https://mock-upstream.invalid/images/{}-{i}.png",
                        hex_id("img-")
                    )),
                );
            }
            if model == "dall-e-3" {
                image.insert(
                    "revised_prompt".into(),
                    Value::from(format!("A detailed rendering of: {prompt}")),
                );
            }
            Value::Object(image)
        })
        .collect();
    Ok(json!({"created": created, "data": data}))
}

// ------------------------------------------------------------------ speech

/// The `Content-Type` OpenAI answers each speech `response_format` with.
pub fn speech_content_type(format: &str) -> &'static str {
    match format {
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    }
}

/// The first bytes of a file in `format`, so the audio looks like what it claims.
fn audio_header(format: &str, payload_len: usize) -> Vec<u8> {
    match format {
        // ID3v2.4 tag with no frames.
        "mp3" => b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec(),
        "opus" => b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00OpusHead".to_vec(),
        // An ADTS frame header (AAC LC, 24 kHz, mono).
        "aac" => vec![0xFF, 0xF1, 0x58, 0x40, 0x00, 0x1F, 0xFC],
        "flac" => b"fLaC".to_vec(),
        "wav" => {
            // 24 kHz, 16-bit, mono PCM: what OpenAI's wav answers carry.
            let data_len = u32::try_from(payload_len).unwrap_or(u32::MAX);
            let mut h = Vec::with_capacity(44);
            h.extend_from_slice(b"RIFF");
            h.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
            h.extend_from_slice(b"WAVEfmt ");
            h.extend_from_slice(&16u32.to_le_bytes());
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&24_000u32.to_le_bytes());
            h.extend_from_slice(&48_000u32.to_le_bytes());
            h.extend_from_slice(&2u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(b"data");
            h.extend_from_slice(&data_len.to_le_bytes());
            h
        }
        _ => Vec::new(),
    }
}

/// The audio for `input`, already cut into `chunks` pieces.
pub fn speech_chunks(input: &str, format: &str, chunks: usize) -> Vec<Vec<u8>> {
    let chunks = chunks.max(1);
    let seed = fnv1a(input.as_bytes()) ^ fnv1a(format.as_bytes());
    let mut out: Vec<Vec<u8>> = (0..chunks)
        .map(|c| {
            (0..SPEECH_CHUNK_BYTES / 8)
                .flat_map(|i| {
                    splitmix64(seed.wrapping_add((c * SPEECH_CHUNK_BYTES + i) as u64)).to_le_bytes()
                })
                .collect()
        })
        .collect();
    let header = audio_header(format, chunks * SPEECH_CHUNK_BYTES);
    if let Some(first) = out.first_mut() {
        first.splice(0..0, header);
    }
    out
}

/// The checked `(input, response_format, stream_format is sse)` of a speech request.
fn speech_request(body: &[u8]) -> Result<(String, String, bool), Rejection> {
    let obj = object(body)?;
    required_str(&obj, "model")?;
    let input = required_str(&obj, "input")?.to_owned();
    if input.chars().count() > 4096 {
        return Err(bad(
            "Invalid 'input': string too long. Expected a string with maximum length 4096.",
            "input",
            "string_above_max_length",
        ));
    }
    match obj.get("voice") {
        None | Some(Value::Null) => return Err(missing("voice")),
        Some(Value::String(_)) => {}
        Some(Value::Object(v)) if v.get("id").is_some_and(Value::is_string) => {}
        Some(_) => return Err(invalid_type("voice", "a string or an object with an `id`")),
    }
    let format = one_of(
        "response_format",
        optional_str(&obj, "response_format")?,
        "mp3",
        SPEECH_FORMATS,
    )?
    .to_owned();
    if let Some(speed) = obj.get("speed").filter(|s| !s.is_null()) {
        if !speed.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s)) {
            return Err(bad(
                &format!("Invalid 'speed': {speed}. Expected a value between 0.25 and 4."),
                "speed",
                "invalid_value",
            ));
        }
    }
    let sse = one_of(
        "stream_format",
        optional_str(&obj, "stream_format")?,
        "audio",
        &["audio", "sse"],
    )? == "sse";
    Ok((input, format, sse))
}

/// `POST /v1/audio/speech`: binary audio in the requested format, sent as
/// `chunks` pieces paced by `chunk_interval_ms`, or SSE with `stream_format: sse`.
pub(crate) fn speech(shared: &Arc<Shared>, body: &Bytes) -> Outcome {
    let config = &shared.config;
    if let Some(outcome) = pre_fault(config.fault, true) {
        return outcome;
    }
    let (input, format, sse) = match speech_request(body) {
        Ok(request) => request,
        Err(outcome) => return *outcome,
    };
    let pieces = speech_chunks(&input, &format, config.chunks);
    let count = pieces.len();
    let mut frames: Vec<PacedFrame> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, data)| PacedFrame {
            step: u32::try_from(i).unwrap_or(u32::MAX),
            data: if sse {
                let delta = json!({
                    "type": "speech.audio.delta",
                    "audio": base64::engine::general_purpose::STANDARD.encode(&data),
                });
                Bytes::from(format!("data: {delta}\n\n"))
            } else {
                Bytes::from(data)
            },
        })
        .collect();
    if sse {
        let input_tokens = prompt_tokens(input.as_bytes());
        let output_tokens = (count * SPEECH_CHUNK_BYTES / 64) as u64;
        let done = json!({
            "type": "speech.audio.done",
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        });
        frames.push(PacedFrame {
            step: u32::try_from(count.saturating_sub(1)).unwrap_or(u32::MAX),
            data: Bytes::from(format!("data: {done}\n\n")),
        });
    }
    let end = match config.fault {
        Some(Fault::TruncateStream) => {
            frames.truncate(count / 2);
            StreamEnd::Truncate
        }
        Some(Fault::Stall) => {
            frames.truncate(1);
            StreamEnd::Stall
        }
        _ => StreamEnd::Done,
    };
    let body = SseBody::new(
        frames,
        end,
        Duration::from_millis(config.chunk_interval_ms),
        Arc::clone(shared),
    );
    let content_type = if sse {
        TEXT_EVENT_STREAM
    } else {
        speech_content_type(&format)
    };
    response(StatusCode::OK, content_type, MockBody::Sse(Box::new(body))).into()
}

// ------------------------------------------------------------------ transcriptions

/// The transcript the mock "hears" in an upload: it names what arrived, so a test
/// can check the model rewrite and that the file came through byte for byte.
pub fn transcript_text(model: &str, filename: &str, file: &[u8]) -> String {
    format!(
        "Transcript of {filename} ({} bytes, fnv1a {:016x}) by {model}.",
        file.len(),
        fnv1a(file)
    )
}

fn timestamp(seconds: f64, decimal: char) -> String {
    let millis = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{decimal}{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// `POST /v1/audio/transcriptions`: a multipart upload with `file` and `model`.
pub(crate) fn transcriptions(config: &MockConfig, headers: &HeaderMap, body: &Bytes) -> Outcome {
    if let Some(outcome) = pre_fault(config.fault, false) {
        return outcome;
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = form::boundary(content_type) else {
        return *error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Invalid Content-Type header ({content_type}), expected multipart/form-data. (HINT: If you're using curl, you can pass -F 'key=value' to send multipart/form-data.)"
            ),
            None,
            None,
        );
    };
    let parts = match form::parse(body, &boundary) {
        Ok(parts) => parts,
        Err(e) => {
            return *error(
                StatusCode::BAD_REQUEST,
                &format!("Could not parse multipart form: {e}."),
                None,
                None,
            )
        }
    };
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let Some(file) = field("file") else {
        return *missing("file");
    };
    if file.filename.is_none() {
        return *invalid_type("file", "a file upload");
    }
    let Some(model) = field("model")
        .and_then(|p| p.text())
        .filter(|m| !m.is_empty())
    else {
        return *missing("model");
    };
    let format = match one_of(
        "response_format",
        field("response_format").and_then(|p| p.text()),
        "json",
        TRANSCRIPTION_FORMATS,
    ) {
        Ok(format) => format,
        Err(outcome) => return *outcome,
    };
    let whisper = model.starts_with("whisper");
    let diarize = model.contains("diarize");
    let allowed_for_model: &[&str] = if whisper {
        &["json", "text", "srt", "verbose_json", "vtt"]
    } else if diarize {
        &["json", "text", "diarized_json"]
    } else {
        &["json"]
    };
    if !allowed_for_model.contains(&format) {
        return *bad(
            &format!("response_format '{format}' is not compatible with model '{model}'."),
            "response_format",
            "unsupported_value",
        );
    }
    let granularities: Vec<&str> = parts
        .iter()
        .filter(|p| p.name == "timestamp_granularities[]" || p.name == "timestamp_granularities")
        .filter_map(|p| p.text())
        .collect();
    let filename = file.filename.as_deref().unwrap_or("file");
    let text = transcript_text(model, filename, file.data);
    // As if the upload were 16 kHz, 16-bit mono PCM.
    let duration = ((file.data.len() as f64 / 32_000.0).max(0.5) * 100.0).round() / 100.0;
    let usage = if whisper {
        json!({"type": "duration", "seconds": duration.ceil() as u64})
    } else {
        let audio_tokens = (file.data.len() as u64 / 320).max(1);
        let output_tokens = prompt_tokens(text.as_bytes());
        json!({
            "type": "tokens",
            "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": output_tokens,
            "total_tokens": audio_tokens + output_tokens,
        })
    };
    let plain = |body: String| response(StatusCode::OK, TEXT_PLAIN, MockBody::full(body)).into();
    match format {
        "text" => plain(format!("{text}\n")),
        "srt" => plain(format!(
            "1\n{} --> {}\n{text}\n\n",
            timestamp(0.0, ','),
            timestamp(duration, ',')
        )),
        "vtt" => plain(format!(
            "WEBVTT\n\n{} --> {}\n{text}\n\n",
            timestamp(0.0, '.'),
            timestamp(duration, '.')
        )),
        "verbose_json" => {
            let mut answer = json!({
                "task": "transcribe",
                "language": "english",
                "duration": duration,
                "text": text,
                "usage": usage,
            });
            let words: Vec<&str> = text.split_whitespace().collect();
            if granularities.is_empty() || granularities.contains(&"segment") {
                answer["segments"] = json!([{
                    "id": 0,
                    "seek": 0,
                    "start": 0.0,
                    "end": duration,
                    "text": format!(" {text}"),
                    "tokens": (0..words.len()).map(|i| 50_364 + i as u64).collect::<Vec<_>>(),
                    "temperature": 0.0,
                    "avg_logprob": -0.25,
                    "compression_ratio": 1.1,
                    "no_speech_prob": 0.01,
                }]);
            }
            if granularities.contains(&"word") {
                let step = duration / words.len().max(1) as f64;
                answer["words"] = words
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        json!({"word": w, "start": i as f64 * step, "end": (i + 1) as f64 * step})
                    })
                    .collect();
            }
            json_response(StatusCode::OK, answer.to_string()).into()
        }
        "diarized_json" => json_response(
            StatusCode::OK,
            json!({
                "task": "transcribe",
                "duration": duration,
                "text": text,
                "segments": [{
                    "type": "transcript.text.segment",
                    "id": "seg_0",
                    "start": 0.0,
                    "end": duration,
                    "text": text,
                    "speaker": "A",
                }],
                "usage": usage,
            })
            .to_string(),
        )
        .into(),
        _ => json_response(
            StatusCode::OK,
            json!({"text": text, "usage": usage}).to_string(),
        )
        .into(),
    }
}

// ------------------------------------------------------------------ moderations

/// Words that get an input flagged, and the category they fall in.
const FLAG_WORDS: &[(&str, &str)] = &[
    ("kill", "violence"),
    ("hate", "hate"),
    ("bomb", "illicit/violent"),
];

fn moderation_result(texts: &[&str], images: bool) -> Value {
    let joined = texts.join(" ").to_lowercase();
    let seed = fnv1a(joined.as_bytes());
    let mut categories = Map::new();
    let mut scores = Map::new();
    let mut applied = Map::new();
    let mut flagged = false;
    for (i, category) in MODERATION_CATEGORIES.iter().enumerate() {
        let hit = FLAG_WORDS
            .iter()
            .any(|(word, c)| c == category && joined.contains(word));
        flagged |= hit;
        let score = if hit {
            0.9 + unit(seed, i as u64) * 0.09
        } else {
            unit(seed, i as u64) * 0.001
        };
        categories.insert((*category).into(), Value::Bool(hit));
        scores.insert((*category).into(), json!(score));
        let mut types = Vec::new();
        if !texts.is_empty() {
            types.push("text");
        }
        if images && IMAGE_CATEGORIES.contains(category) {
            types.push("image");
        }
        applied.insert((*category).into(), json!(types));
    }
    json!({
        "flagged": flagged,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    })
}

/// `POST /v1/moderations`.
pub(crate) fn moderations(config: &MockConfig, body: &Bytes) -> Outcome {
    if let Some(outcome) = pre_fault(config.fault, false) {
        return outcome;
    }
    with_outcome(moderation_answer(body), |answer| {
        json_response(StatusCode::OK, answer.to_string()).into()
    })
}

fn moderation_answer(body: &[u8]) -> Result<Value, Rejection> {
    let obj = object(body)?;
    // OpenAI's default when the request names no model.
    let model = optional_str(&obj, "model")?.unwrap_or("omni-moderation-latest");
    let results = match obj.get("input") {
        None | Some(Value::Null) => return Err(missing("input")),
        Some(Value::String(s)) => vec![moderation_result(&[s], false)],
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(bad(
                "Invalid 'input': empty array. Expected an array with minimum length 1.",
                "input",
                "empty_array",
            ))
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| moderation_result(&[s], false))
            .collect(),
        // Multi-modal input: the parts together are one input with one result.
        Some(Value::Array(items)) => {
            let mut texts = Vec::new();
            let mut images = false;
            for item in items {
                match item.get("type").and_then(Value::as_str) {
                    Some("text") => match item.get("text").and_then(Value::as_str) {
                        Some(t) => texts.push(t),
                        None => return Err(missing("input[].text")),
                    },
                    Some("image_url") => {
                        if !item["image_url"]["url"].is_string() {
                            return Err(missing("input[].image_url.url"));
                        }
                        images = true;
                    }
                    _ => return Err(invalid_type(
                        "input",
                        "a string, an array of strings, or an array of text and image_url objects",
                    )),
                }
            }
            vec![moderation_result(&texts, images)]
        }
        Some(_) => {
            return Err(invalid_type(
                "input",
                "a string, an array of strings, or an array of text and image_url objects",
            ))
        }
    };
    Ok(json!({"id": hex_id("modr-"), "model": model, "results": results}))
}

// ------------------------------------------------------------------ rerank

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How relevant `document` is to `query`: the share of the query's words it
/// contains, with a small deterministic jitter to break ties.
pub fn relevance(query: &str, document: &str) -> f64 {
    let query_words = words(query);
    let doc_words = words(document);
    let hits = query_words.iter().filter(|w| doc_words.contains(w)).count();
    let share = hits as f64 / query_words.len().max(1) as f64;
    let jitter = unit(fnv1a(document.as_bytes()), fnv1a(query.as_bytes())) * 0.01;
    0.05 + 0.9 * share + jitter
}

/// `POST /v1/rerank`, as vLLM's and Jina's OpenAI-compatible servers answer it.
pub(crate) fn rerank(config: &MockConfig, body: &Bytes) -> Outcome {
    if let Some(outcome) = pre_fault(config.fault, false) {
        return outcome;
    }
    with_outcome(rerank_answer(body), |answer| {
        json_response(StatusCode::OK, answer.to_string()).into()
    })
}

fn rerank_answer(body: &[u8]) -> Result<Value, Rejection> {
    let obj = object(body)?;
    let model = required_str(&obj, "model")?;
    let query = required_str(&obj, "query")?;
    let documents: Vec<&str> = match obj.get("documents") {
        None | Some(Value::Null) => return Err(missing("documents")),
        Some(Value::Array(docs)) if docs.is_empty() => {
            return Err(bad(
                "Invalid 'documents': empty array. Expected at least one document.",
                "documents",
                "empty_array",
            ))
        }
        Some(Value::Array(docs)) => {
            let mut texts = Vec::with_capacity(docs.len());
            for doc in docs {
                match doc
                    .as_str()
                    .or_else(|| doc.get("text").and_then(Value::as_str))
                {
                    Some(text) => texts.push(text),
                    None => {
                        return Err(invalid_type(
                            "documents",
                            "an array of strings or of objects with a `text` string",
                        ))
                    }
                }
            }
            texts
        }
        Some(_) => return Err(invalid_type("documents", "an array")),
    };
    let top_n = match obj.get("top_n") {
        None | Some(Value::Null) => documents.len(),
        Some(v) => match v.as_u64() {
            // vLLM reads 0 as "all of them".
            Some(0) => documents.len(),
            Some(n) => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(documents.len()),
            None => return Err(invalid_type("top_n", "a non-negative integer")),
        },
    };
    let return_documents = match obj.get("return_documents") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid_type("return_documents", "a boolean")),
    };
    let mut scored: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(i, doc)| (i, relevance(query, doc)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let results: Vec<Value> = scored
        .into_iter()
        .take(top_n)
        .map(|(index, score)| {
            let mut result = json!({"index": index, "relevance_score": score});
            if return_documents {
                result["document"] = json!({"text": documents[index]});
            }
            result
        })
        .collect();
    let query_tokens = prompt_tokens(query.as_bytes());
    let total_tokens: u64 = documents
        .iter()
        .map(|d| query_tokens + prompt_tokens(d.as_bytes()))
        .sum();
    Ok(json!({
        "id": hex_id("rerank-"),
        "model": model,
        "usage": {"total_tokens": total_tokens},
        "results": results,
    }))
}

// ------------------------------------------------------------------ OCR

/// Pages in a document given by URL; images are always one page.
pub const OCR_DOCUMENT_PAGES: u64 = 2;

/// The decoded size of a `data:...;base64,` URL, or `None` for other URLs.
fn data_url_size(url: &str) -> Result<Option<usize>, ()> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Ok(None);
    };
    let (meta, data) = rest.split_once(',').ok_or(())?;
    if !meta.ends_with(";base64") {
        return Ok(Some(data.len()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map(|bytes| Some(bytes.len()))
        .map_err(|_| ())
}

/// `POST /v1/ocr`, in Mistral's OCR request and response shape.
pub(crate) fn ocr(config: &MockConfig, body: &Bytes) -> Outcome {
    if let Some(outcome) = pre_fault(config.fault, false) {
        return outcome;
    }
    with_outcome(ocr_answer(body), |answer| {
        json_response(StatusCode::OK, answer.to_string()).into()
    })
}

fn ocr_answer(body: &[u8]) -> Result<Value, Rejection> {
    let obj = object(body)?;
    let model = required_str(&obj, "model")?;
    let document = match obj.get("document") {
        None | Some(Value::Null) => return Err(missing("document")),
        Some(Value::Object(doc)) => doc,
        Some(_) => return Err(invalid_type("document", "an object")),
    };
    let kind = required_str(document, "type").map_err(|_| missing("document.type"))?;
    let (url, mut pages) = match kind {
        "document_url" => (
            required_str(document, "document_url").map_err(|_| missing("document.document_url"))?,
            OCR_DOCUMENT_PAGES,
        ),
        "image_url" => {
            let url = match document.get("image_url") {
                Some(Value::String(url)) => url.as_str(),
                Some(Value::Object(image)) => match image.get("url") {
                    Some(Value::String(url)) => url.as_str(),
                    _ => return Err(missing("document.image_url.url")),
                },
                _ => return Err(missing("document.image_url")),
            };
            (url, 1)
        }
        "file" => (
            required_str(document, "file_id").map_err(|_| missing("document.file_id"))?,
            OCR_DOCUMENT_PAGES,
        ),
        other => {
            return Err(invalid_value(
                "document.type",
                other,
                &["document_url", "image_url", "file"],
            ))
        }
    };
    if url.is_empty() {
        return Err(bad(
            "Invalid 'document': the URL is empty.",
            "document",
            "empty_string",
        ));
    }
    let size = data_url_size(url).map_err(|()| {
        bad(
            "Invalid 'document': the data URL is not valid base64.",
            "document",
            "invalid_value",
        )
    })?;
    let wanted: Option<Vec<u64>> = match obj.get("pages") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|p| {
                    p.as_u64()
                        .ok_or_else(|| invalid_type("pages", "an array of page indices"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(invalid_type("pages", "an array of page indices")),
    };
    let indices: Vec<u64> = match wanted {
        Some(list) => list.into_iter().filter(|p| *p < pages).collect(),
        None => (0..pages).collect(),
    };
    pages = indices.len() as u64;
    let with_images = obj.get("include_image_base64").and_then(Value::as_bool) == Some(true);
    let name = document
        .get("document_name")
        .and_then(Value::as_str)
        .unwrap_or(kind);
    let page_objects: Vec<Value> = indices
        .iter()
        .map(|&index| {
            let image_id = format!("img-{index}.jpeg");
            let mut markdown = format!(
                "# Page {}\n\nMock OCR of the {name} by {model}, page {}.",
                index + 1,
                index + 1
            );
            let images = if with_images {
                markdown.push_str(&format!("\n\n![{image_id}]({image_id})"));
                vec![json!({
                    "id": image_id,
                    "top_left_x": 100,
                    "top_left_y": 200,
                    "bottom_right_x": 600,
                    "bottom_right_y": 700,
                    "image_base64": format!("data:image/png;base64,{PNG_1X1_B64}"),
                })]
            } else {
                Vec::new()
            };
            json!({
                "index": index,
                "markdown": markdown,
                "images": images,
                "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
            })
        })
        .collect();
    Ok(json!({
        "pages": page_objects,
        "model": model,
        "document_annotation": null,
        "usage_info": {"pages_processed": pages, "doc_size_bytes": size},
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn speech_chunks_carry_the_format_header_and_differ_by_input() {
        let wav = speech_chunks("hello", "wav", 3);
        assert_eq!(wav.len(), 3);
        assert!(wav[0].starts_with(b"RIFF"));
        assert_eq!(&wav[0][8..12], b"WAVE");
        assert_eq!(wav[1].len(), SPEECH_CHUNK_BYTES);
        assert!(speech_chunks("hello", "mp3", 1)[0].starts_with(b"ID3"));
        assert_ne!(speech_chunks("a", "pcm", 1), speech_chunks("b", "pcm", 1));
    }

    #[test]
    fn relevance_prefers_documents_sharing_the_query_words() {
        let q = "capital of France";
        assert!(
            relevance(q, "Paris is the capital of France.") > relevance(q, "Berlin is in Germany.")
        );
    }

    #[test]
    fn timestamps_use_the_format_separator() {
        assert_eq!(timestamp(3723.5, ','), "01:02:03,500");
        assert_eq!(timestamp(0.25, '.'), "00:00:00.250");
    }
}
