//! What the speech adapters (ElevenLabs, Deepgram) share: reading the OpenAI
//! SDK's speech and transcription requests, and writing a provider's transcript
//! in whichever of OpenAI's transcription formats the client asked for.
//!
//! Providers report words with timings; OpenAI's formats want text, segments
//! and subtitles. The conversion lives here once so both adapters cut segments
//! and write SRT/VTT the same way.

use super::common::invalid;
use super::{EndpointRequest, Translated};
use http::HeaderValue;
use liter_llm_protocol::{multipart, ApiError, Endpoint};
use serde_json::{json, Map, Value};

/// OpenAI's `response_format` for `/v1/audio/transcriptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TranscriptFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl TranscriptFormat {
    fn parse(s: Option<&str>) -> Result<TranscriptFormat, ApiError> {
        Ok(match s.map(str::trim) {
            None | Some("json") => TranscriptFormat::Json,
            Some("text") => TranscriptFormat::Text,
            Some("srt") => TranscriptFormat::Srt,
            Some("vtt") => TranscriptFormat::Vtt,
            Some("verbose_json") => TranscriptFormat::VerboseJson,
            Some(other) => {
                return Err(invalid(
                    "response_format",
                    format!(
                        "unsupported `response_format` `{other}`; expected one of: json, text, srt, vtt, verbose_json"
                    ),
                )
                .with_code("unsupported_value"))
            }
        })
    }

    /// Whether the answer needs timed segments (subtitles, verbose JSON).
    pub(crate) fn needs_segments(self) -> bool {
        matches!(
            self,
            TranscriptFormat::Srt | TranscriptFormat::Vtt | TranscriptFormat::VerboseJson
        )
    }
}

/// A transcription upload as the OpenAI SDK sends it, borrowed from the body.
#[derive(Debug)]
pub(crate) struct Upload<'a> {
    pub(crate) file: &'a [u8],
    pub(crate) filename: Option<&'a str>,
    /// The file part's own `Content-Type`, if it had one.
    pub(crate) file_type: Option<&'a str>,
    pub(crate) language: Option<&'a str>,
    pub(crate) temperature: Option<f64>,
    pub(crate) format: TranscriptFormat,
    /// `timestamp_granularities[]` includes `word`: verbose JSON lists words.
    pub(crate) word_timestamps: bool,
}

/// Reads the multipart upload; the proxy has already checked the `file` and
/// `model` parts, so errors here are for requests that skipped that check.
pub(crate) fn read_upload<'a>(req: &EndpointRequest<'a>) -> Result<Upload<'a>, ApiError> {
    let body = req.body;
    let boundary = req
        .content_type
        .and_then(multipart::boundary)
        .ok_or_else(|| {
            ApiError::invalid_request(
                "`/v1/audio/transcriptions` takes multipart/form-data with a `file` part",
            )
            .with_code("invalid_content_type")
        })?;
    let parts = multipart::parse(body, boundary)
        .map_err(|e| ApiError::invalid_request(format!("malformed multipart body: {e}")))?;
    let text = |name: &str| -> Result<Option<&'a str>, ApiError> {
        match parts.iter().find(|p| p.name == name) {
            None => Ok(None),
            Some(p) => p
                .text(body)
                .map(|t| Some(t.trim()).filter(|t| !t.is_empty()))
                .ok_or_else(|| invalid(name, format!("`{name}` must be UTF-8 text"))),
        }
    };
    let file = parts
        .iter()
        .find(|p| p.name == "file")
        .ok_or_else(|| invalid("file", "missing required parameter: `file`"))?;
    let temperature = match text("temperature")? {
        None => None,
        Some(t) => match t.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Some(v),
            _ => {
                return Err(invalid(
                    "temperature",
                    "`temperature` must be a number from 0 to 1",
                ))
            }
        },
    };
    let mut word_timestamps = false;
    for p in parts.iter().filter(|p| {
        matches!(
            p.name,
            "timestamp_granularities[]" | "timestamp_granularities"
        )
    }) {
        match p.text(body).map(str::trim) {
            Some("word") => word_timestamps = true,
            Some("segment") => {}
            _ => {
                return Err(invalid(
                    "timestamp_granularities",
                    "`timestamp_granularities` must be `word` and/or `segment`",
                ))
            }
        }
    }
    let format = TranscriptFormat::parse(text("response_format")?)?;
    if word_timestamps && format != TranscriptFormat::VerboseJson {
        return Err(invalid(
            "timestamp_granularities",
            "`timestamp_granularities` needs `response_format` `verbose_json`",
        ));
    }
    Ok(Upload {
        file: file.data(body),
        filename: file.filename,
        file_type: file.content_type.filter(|t| {
            !t.trim().is_empty() && !t.eq_ignore_ascii_case("application/octet-stream")
        }),
        language: text("language")?,
        temperature,
        format,
        word_timestamps,
    })
}

/// The audio's media type: the part's own, else one guessed from the file
/// name, so the provider does not have to sniff an `application/octet-stream`.
pub(crate) fn audio_type<'a>(upload: &Upload<'a>) -> &'a str {
    if let Some(t) = upload.file_type {
        return t;
    }
    let ext = upload
        .filename
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mp3" | "mpga" | "mpeg") => "audio/mpeg",
        Some("wav") => "audio/wav",
        Some("m4a") => "audio/mp4",
        Some("mp4") => "video/mp4",
        Some("webm") => "audio/webm",
        Some("ogg" | "oga" | "opus") => "audio/ogg",
        Some("flac") => "audio/flac",
        _ => "application/octet-stream",
    }
}

/// OpenAI's `/v1/audio/speech` request, checked.
#[derive(Debug)]
pub(crate) struct SpeechRequest {
    pub(crate) input: String,
    pub(crate) voice: String,
    /// `mp3` when the client did not say.
    pub(crate) format: String,
    /// `None` when absent or exactly 1.
    pub(crate) speed: Option<f64>,
}

/// Reads a speech request. `stream_format: "sse"` asks for OpenAI's event
/// stream of base64 audio, which no raw-audio provider produces.
pub(crate) fn read_speech(body: &[u8]) -> Result<SpeechRequest, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid_request("request body must be a JSON object"))?;
    let string = |key: &str| -> Result<Option<String>, ApiError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(key, format!("`{key}` must be a string"))),
        }
    };
    let input = string("input")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid("input", "missing required parameter: `input`"))?;
    let voice = match obj.get("voice") {
        // The SDK's custom-voice form: `{"id": "..."}`.
        Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_string),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
    .filter(|s| !s.trim().is_empty())
    .ok_or_else(|| invalid("voice", "missing required parameter: `voice`"))?;
    if let Some(sf) = string("stream_format")? {
        if sf != "audio" {
            return Err(invalid(
                "stream_format",
                format!("`stream_format` `{sf}` is not supported by this provider; only `audio` (raw audio bytes) is"),
            )
            .with_code("unsupported_value"));
        }
    }
    let speed = match obj.get("speed") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(s) if (s - 1.0).abs() < f64::EPSILON => None,
            Some(s) => Some(s),
            None => return Err(invalid("speed", "`speed` must be a number")),
        },
    };
    Ok(SpeechRequest {
        input,
        voice,
        format: string("response_format")?.unwrap_or_else(|| "mp3".to_string()),
        speed,
    })
}

/// The content type OpenAI answers each speech format with; the proxy is an
/// OpenAI API, so its clients see these whatever the provider labels its bytes.
pub(crate) fn speech_content_type(format: &str) -> Option<HeaderValue> {
    let t = match format {
        "mp3" => "audio/mpeg",
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => return None,
    };
    Some(HeaderValue::from_static(t))
}

/// The `response_format` of a speech request, without checking the rest.
pub(crate) fn speech_format(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("response_format")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "mp3".to_string())
}

/// A 400 for a speech format the provider cannot produce, listing those it can.
pub(crate) fn unsupported_speech_format(
    provider: &str,
    format: &str,
    offered: &[&str],
) -> ApiError {
    invalid(
        "response_format",
        format!(
            "{provider} cannot produce `response_format` `{format}`; this model supports: {}",
            offered.join(", ")
        ),
    )
    .with_code("unsupported_value")
}

/// Whether a speech adapter offers `endpoint`: speech and transcriptions.
pub(crate) fn offers(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::AudioSpeech | Endpoint::AudioTranscriptions
    )
}

/// The content type relayed speech is labelled with: OpenAI's for the format
/// the client asked for ([`speech_content_type`]); `None` for other endpoints.
pub(crate) fn relayed_content_type(req: &EndpointRequest<'_>) -> Option<HeaderValue> {
    (req.endpoint == Endpoint::AudioSpeech)
        .then(|| speech_content_type(&speech_format(req.body)))
        .flatten()
}

/// The client's answer to its transcription upload `req`: the transcript
/// `read` makes of the provider's answer (given the upload), in the format the
/// upload asked for.
pub(crate) fn transcription_response(
    req: &EndpointRequest<'_>,
    upstream_body: &[u8],
    read: impl FnOnce(&[u8], &Upload<'_>) -> Result<Transcript, ApiError>,
) -> Result<Translated, ApiError> {
    if req.endpoint != Endpoint::AudioTranscriptions {
        return Err(super::not_offered(req.endpoint));
    }
    let upload = read_upload(req)?;
    let transcript = read(upstream_body, &upload)?;
    Ok(render(&transcript, upload.format, upload.word_timestamps))
}

/// One recognised word with its timing in seconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Word {
    pub(crate) text: String,
    pub(crate) start: f64,
    pub(crate) end: f64,
}

/// A stretch of speech (an utterance or a sentence) with its timing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) text: String,
    /// The provider's confidence (0–1), reported as `avg_logprob`.
    pub(crate) confidence: Option<f64>,
}

/// A provider's transcript, normalised.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transcript {
    pub(crate) text: String,
    /// ISO 639 code, as detected or as requested.
    pub(crate) language: Option<String>,
    /// Seconds of audio.
    pub(crate) duration: Option<f64>,
    pub(crate) words: Vec<Word>,
    pub(crate) segments: Vec<Segment>,
}

/// A pause this long ends a segment built from words.
const SEGMENT_GAP_SECS: f64 = 1.0;
/// Subtitles stay readable: a segment built from words holds at most this many.
const SEGMENT_MAX_WORDS: usize = 24;

/// Cuts words into segments at sentence ends, long pauses and a size cap, for
/// providers that return words but no utterances.
pub(crate) fn segments_from_words(words: &[Word]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut current: Vec<&Word> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        current.push(w);
        let sentence_end = w.text.ends_with(['.', '?', '!']);
        let pause = words
            .get(i + 1)
            .is_some_and(|next| next.start - w.end >= SEGMENT_GAP_SECS);
        if sentence_end || pause || current.len() >= SEGMENT_MAX_WORDS {
            out.push(join(&current));
            current.clear();
        }
    }
    if !current.is_empty() {
        out.push(join(&current));
    }
    out
}

fn join(words: &[&Word]) -> Segment {
    Segment {
        start: words.first().map_or(0.0, |w| w.start),
        end: words.last().map_or(0.0, |w| w.end),
        text: words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        confidence: None,
    }
}

/// Writes `t` as OpenAI writes `format`.
pub(crate) fn render(t: &Transcript, format: TranscriptFormat, with_words: bool) -> Translated {
    let text = |body: String, ct: &'static str| Translated {
        body: body.into(),
        content_type: HeaderValue::from_static(ct),
    };
    match format {
        TranscriptFormat::Json => {
            let mut v = json!({"text": t.text});
            add_usage(&mut v, t.duration);
            Translated::json(v.to_string())
        }
        TranscriptFormat::Text => text(format!("{}\n", t.text), "text/plain; charset=utf-8"),
        TranscriptFormat::Srt => text(srt(&subtitle_segments(t)), "text/plain; charset=utf-8"),
        TranscriptFormat::Vtt => text(vtt(&subtitle_segments(t)), "text/vtt; charset=utf-8"),
        TranscriptFormat::VerboseJson => {
            let segments: Vec<Value> = subtitle_segments(t)
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    json!({
                        "id": i,
                        "seek": 0,
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "tokens": [],
                        "temperature": 0.0,
                        "avg_logprob": s.confidence.filter(|c| *c > 0.0).map_or(0.0, f64::ln),
                        "compression_ratio": 0.0,
                        "no_speech_prob": 0.0,
                    })
                })
                .collect();
            let mut v = json!({
                "task": "transcribe",
                "language": t.language.as_deref().map_or("", language_name),
                "duration": t.duration.unwrap_or_else(|| t.words.last().map_or(0.0, |w| w.end)),
                "text": t.text,
                "segments": segments,
            });
            if with_words {
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(
                        "words".into(),
                        t.words
                            .iter()
                            .map(|w| json!({"word": w.text, "start": w.start, "end": w.end}))
                            .collect(),
                    );
                }
            }
            add_usage(&mut v, t.duration);
            Translated::json(v.to_string())
        }
    }
}

/// Whisper's usage shape: billed by the second of audio.
fn add_usage(v: &mut Value, duration: Option<f64>) {
    if let (Some(d), Some(obj)) = (duration, v.as_object_mut()) {
        let mut usage = Map::new();
        usage.insert("type".into(), "duration".into());
        usage.insert("seconds".into(), json!(d.max(0.0).ceil() as u64));
        obj.insert("usage".into(), Value::Object(usage));
    }
}

/// The segments to write: the provider's, else cut from words, else the whole
/// text as one.
fn subtitle_segments(t: &Transcript) -> Vec<Segment> {
    if !t.segments.is_empty() {
        return t.segments.clone();
    }
    if !t.words.is_empty() {
        return segments_from_words(&t.words);
    }
    if t.text.trim().is_empty() {
        return Vec::new();
    }
    vec![Segment {
        start: 0.0,
        end: t.duration.unwrap_or(0.0),
        text: t.text.clone(),
        confidence: None,
    }]
}

/// `HH:MM:SS<sep>mmm`.
fn timestamp(secs: f64, sep: char) -> String {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn srt(segments: &[Segment]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            timestamp(s.start, ','),
            timestamp(s.end, ','),
            s.text.trim()
        ));
    }
    out
}

fn vtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in segments {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(s.start, '.'),
            timestamp(s.end, '.'),
            s.text.trim()
        ));
    }
    out
}

/// ISO 639-1 and 639-3 codes of the languages Whisper names, with the name
/// OpenAI's verbose JSON reports.
const LANGUAGES: &[(&str, &str, &str)] = &[
    ("af", "afr", "afrikaans"),
    ("ar", "ara", "arabic"),
    ("bg", "bul", "bulgarian"),
    ("ca", "cat", "catalan"),
    ("cs", "ces", "czech"),
    ("cy", "cym", "welsh"),
    ("da", "dan", "danish"),
    ("de", "deu", "german"),
    ("el", "ell", "greek"),
    ("en", "eng", "english"),
    ("es", "spa", "spanish"),
    ("et", "est", "estonian"),
    ("fa", "fas", "persian"),
    ("fi", "fin", "finnish"),
    ("fr", "fra", "french"),
    ("he", "heb", "hebrew"),
    ("hi", "hin", "hindi"),
    ("hr", "hrv", "croatian"),
    ("hu", "hun", "hungarian"),
    ("id", "ind", "indonesian"),
    ("it", "ita", "italian"),
    ("ja", "jpn", "japanese"),
    ("ko", "kor", "korean"),
    ("lt", "lit", "lithuanian"),
    ("lv", "lav", "latvian"),
    ("ms", "msa", "malay"),
    ("nl", "nld", "dutch"),
    ("no", "nor", "norwegian"),
    ("pl", "pol", "polish"),
    ("pt", "por", "portuguese"),
    ("ro", "ron", "romanian"),
    ("ru", "rus", "russian"),
    ("sk", "slk", "slovak"),
    ("sl", "slv", "slovenian"),
    ("sr", "srp", "serbian"),
    ("sv", "swe", "swedish"),
    ("sw", "swa", "swahili"),
    ("ta", "tam", "tamil"),
    ("th", "tha", "thai"),
    ("tl", "tgl", "tagalog"),
    ("tr", "tur", "turkish"),
    ("uk", "ukr", "ukrainian"),
    ("ur", "urd", "urdu"),
    ("vi", "vie", "vietnamese"),
    ("zh", "zho", "chinese"),
];

/// The language name OpenAI reports for a code (`en`, `en-US`, `eng`); an
/// unknown code is passed through.
pub(crate) fn language_name(code: &str) -> &str {
    let base = code.split(['-', '_']).next().unwrap_or(code);
    LANGUAGES
        .iter()
        .find(|(one, three, _)| base.eq_ignore_ascii_case(one) || base.eq_ignore_ascii_case(three))
        .map_or(code, |(_, _, name)| name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use liter_llm_protocol::Endpoint;

    fn word(text: &str, start: f64, end: f64) -> Word {
        Word {
            text: text.into(),
            start,
            end,
        }
    }

    fn upload_req<'a>(ct: &'a str, body: &'a [u8]) -> EndpointRequest<'a> {
        EndpointRequest {
            endpoint: Endpoint::AudioTranscriptions,
            body,
            content_type: Some(ct),
        }
    }

    #[test]
    fn the_sdk_upload_is_read_with_every_field() {
        let (ct, body) = multipart::FormBuilder::new()
            .file("file", "talk.wav", "audio/x-wav", b"RIFF\x00\x01")
            .text("model", "whisper-1")
            .text("language", "de")
            .text("temperature", "0.2")
            .text("response_format", "verbose_json")
            .text("timestamp_granularities[]", "word")
            .text("timestamp_granularities[]", "segment")
            .finish();
        let up = read_upload(&upload_req(&ct, &body)).unwrap();
        assert_eq!(up.file, b"RIFF\x00\x01");
        assert_eq!(up.filename, Some("talk.wav"));
        assert_eq!(audio_type(&up), "audio/x-wav");
        assert_eq!(up.language, Some("de"));
        assert_eq!(up.temperature, Some(0.2));
        assert_eq!(up.format, TranscriptFormat::VerboseJson);
        assert!(up.word_timestamps);
    }

    #[test]
    fn word_timestamps_without_verbose_json_are_refused() {
        let (ct, body) = multipart::FormBuilder::new()
            .file("file", "a.mp3", "audio/mpeg", b"ID3")
            .text("model", "m")
            .text("timestamp_granularities[]", "word")
            .finish();
        let e = read_upload(&upload_req(&ct, &body)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("timestamp_granularities"));
    }

    #[test]
    fn an_untyped_file_gets_a_type_from_its_name() {
        let (ct, body) = multipart::FormBuilder::new()
            .file("file", "a.MP3", "application/octet-stream", b"ID3")
            .text("model", "m")
            .finish();
        let up = read_upload(&upload_req(&ct, &body)).unwrap();
        assert_eq!(audio_type(&up), "audio/mpeg");
    }

    #[test]
    fn words_are_cut_into_segments_at_sentences_and_pauses() {
        let words = [
            word("Hello", 0.0, 0.4),
            word("there.", 0.5, 0.9),
            word("How", 1.0, 1.2),
            word("are", 1.3, 1.5),
            word("you", 3.0, 3.2),
        ];
        let segs = segments_from_words(&words);
        let texts: Vec<&str> = segs.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["Hello there.", "How are", "you"]);
        assert_eq!((segs[1].start, segs[1].end), (1.0, 1.5));
    }

    #[test]
    fn subtitles_have_their_formats_timestamps() {
        let t = Transcript {
            text: "Hello there. General Kenobi.".into(),
            segments: vec![
                Segment {
                    start: 0.0,
                    end: 1.25,
                    text: "Hello there.".into(),
                    confidence: None,
                },
                Segment {
                    start: 3661.5,
                    end: 3662.0,
                    text: "General Kenobi.".into(),
                    confidence: None,
                },
            ],
            ..Transcript::default()
        };
        let s = render(&t, TranscriptFormat::Srt, false);
        assert_eq!(
            std::str::from_utf8(&s.body).unwrap(),
            "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n2\n01:01:01,500 --> 01:01:02,000\nGeneral Kenobi.\n\n"
        );
        let v = render(&t, TranscriptFormat::Vtt, false);
        assert_eq!(
            std::str::from_utf8(&v.body).unwrap(),
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n\n01:01:01.500 --> 01:01:02.000\nGeneral Kenobi.\n\n"
        );
        assert_eq!(v.content_type, "text/vtt; charset=utf-8");
    }

    #[test]
    fn verbose_json_names_the_language_and_lists_words_when_asked() {
        let t = Transcript {
            text: "Hallo Welt.".into(),
            language: Some("deu".into()),
            duration: Some(1.2),
            words: vec![word("Hallo", 0.1, 0.5), word("Welt.", 0.6, 1.0)],
            segments: Vec::new(),
        };
        let out = render(&t, TranscriptFormat::VerboseJson, true);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["task"], "transcribe");
        assert_eq!(v["language"], "german");
        assert_eq!(v["duration"], 1.2);
        assert_eq!(v["segments"][0]["text"], "Hallo Welt.");
        assert_eq!(v["segments"][0]["start"], 0.1);
        assert_eq!(
            v["words"][1],
            json!({"word": "Welt.", "start": 0.6, "end": 1.0})
        );
        assert_eq!(v["usage"], json!({"type": "duration", "seconds": 2}));
        let plain = render(&t, TranscriptFormat::VerboseJson, false);
        let v: Value = serde_json::from_slice(&plain.body).unwrap();
        assert!(v.get("words").is_none());
    }

    #[test]
    fn speech_requests_refuse_sse_streams_and_read_custom_voices() {
        let e = read_speech(br#"{"model":"m","input":"hi","voice":"v","stream_format":"sse"}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stream_format"));
        let r =
            read_speech(br#"{"model":"m","input":"hi","voice":{"id":"voice_123"},"speed":1.0}"#)
                .unwrap();
        assert_eq!(r.voice, "voice_123");
        assert_eq!(r.format, "mp3");
        assert_eq!(r.speed, None);
    }
}
