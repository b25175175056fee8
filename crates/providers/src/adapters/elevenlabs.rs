//! ElevenLabs: text to speech for `/v1/audio/speech` and Scribe speech to
//! text for `/v1/audio/transcriptions`.
//!
//! Speech goes to `POST /v1/text-to-speech/{voice_id}/stream?output_format=..`
//! with `{text, model_id, voice_settings?}`: the streaming endpoint sends audio
//! while it is still being generated, so the proxy's relay starts playback
//! sooner than with the whole-file endpoint. OpenAI's `voice` is the ElevenLabs
//! voice id and `speed` becomes `voice_settings.speed`. Each OpenAI format maps
//! to the ElevenLabs `output_format` closest to OpenAI's (24 kHz PCM, 44.1 kHz
//! MP3); `wav` is published only for the whole-file endpoint
//! (`/v1/text-to-speech/{voice_id}`), which still answers in chunks the relay
//! passes on. ElevenLabs has no AAC or FLAC output, so those are refused before
//! anything is sent. The client sees OpenAI's content type for the format it
//! asked for, whatever label ElevenLabs puts on the bytes.
//!
//! Transcription rebuilds the upload as `POST /v1/speech-to-text` with
//! `model_id`, `file`, `language_code`, `temperature`, word timestamps and
//! `tag_audio_events=false` (OpenAI's transcripts do not carry "(laughter)"
//! markers). `prompt` has no ElevenLabs equivalent and is dropped. The answer's
//! words become OpenAI's text, verbose JSON, SRT or VTT.
//!
//! Errors come as `{"detail": {"status", "message"}}` (or FastAPI's
//! `{"detail": [{"loc", "msg"}]}` for a 422); a 401 `quota_exceeded` is the
//! operator's account running dry, not a bad key.

use super::common::{
    bad_upstream, form_content_type, kind_for_status, percent_encode, post, provider_error,
    with_code,
};
use super::speech::{self, Transcript, Word};
use super::{
    ChatAdapter, ChatContext, EndpointRequest, Translated, UpstreamRequest, UpstreamTarget,
};
use bytes::Bytes;
use http::HeaderValue;
use liter_llm_protocol::multipart::FormBuilder;
use liter_llm_protocol::{ApiError, Endpoint, ErrorKind};
use serde_json::{json, Map, Value};

pub struct ElevenLabsAdapter;

/// OpenAI formats ElevenLabs can produce, in OpenAI's order.
const SPEECH_FORMATS: &[&str] = &["mp3", "opus", "wav", "pcm"];

/// ElevenLabs' documented `voice_settings.speed` range.
const SPEED_RANGE: (f64, f64) = (0.7, 1.2);

/// (`output_format`, whether the streaming endpoint publishes it).
fn output_format(format: &str) -> Option<(&'static str, bool)> {
    Some(match format {
        "mp3" => ("mp3_44100_128", true),
        "opus" => ("opus_48000_64", true),
        "pcm" => ("pcm_24000", true),
        "wav" => ("wav_24000", false),
        _ => return None,
    })
}

impl ChatAdapter for ElevenLabsAdapter {
    fn offers(&self, endpoint: Endpoint) -> bool {
        speech::offers(endpoint)
    }

    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        _target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match req.endpoint {
            Endpoint::AudioSpeech => speech_request(req.body, ctx),
            Endpoint::AudioTranscriptions => transcription_request(req, ctx),
            other => Err(super::not_offered(other)),
        }
    }

    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        _ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        speech::transcription_response(req, upstream_body, |body, _| read_transcript(body))
    }

    fn relayed_content_type(
        &self,
        req: &EndpointRequest<'_>,
        _upstream: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        speech::relayed_content_type(req)
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        elevenlabs_error(status, upstream_body)
    }
}

fn speech_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<UpstreamRequest, ApiError> {
    let sr = speech::read_speech(body)?;
    let (output, streams) = output_format(&sr.format).ok_or_else(|| {
        speech::unsupported_speech_format("ElevenLabs", &sr.format, SPEECH_FORMATS)
    })?;
    let mut out = Map::new();
    out.insert("text".into(), Value::String(sr.input));
    out.insert(
        "model_id".into(),
        Value::String(ctx.upstream_model.to_string()),
    );
    if let Some(speed) = sr.speed {
        if !(SPEED_RANGE.0..=SPEED_RANGE.1).contains(&speed) {
            return Err(super::common::invalid(
                "speed",
                format!(
                    "ElevenLabs voices take `speed` from {} to {}",
                    SPEED_RANGE.0, SPEED_RANGE.1
                ),
            ));
        }
        out.insert("voice_settings".into(), json!({"speed": speed}));
    }
    let path = format!(
        "/v1/text-to-speech/{}{}?output_format={output}",
        percent_encode(&sr.voice),
        if streams { "/stream" } else { "" }
    );
    Ok(post(
        path,
        None,
        Bytes::from(Value::Object(out).to_string()),
    ))
}

fn transcription_request(
    req: &EndpointRequest<'_>,
    ctx: &ChatContext<'_>,
) -> Result<UpstreamRequest, ApiError> {
    let upload = speech::read_upload(req)?;
    let mut form = FormBuilder::new()
        .text("model_id", ctx.upstream_model)
        .file(
            "file",
            upload.filename.unwrap_or("audio"),
            speech::audio_type(&upload),
            upload.file,
        )
        .text("tag_audio_events", "false")
        .text("timestamps_granularity", "word");
    if let Some(lang) = upload.language {
        form = form.text("language_code", lang);
    }
    if let Some(t) = upload.temperature {
        form = form.text("temperature", &t.to_string());
    }
    let (content_type, body) = form.finish();
    Ok(post(
        "/v1/speech-to-text",
        Some(form_content_type(&content_type)?),
        body,
    ))
}

/// Scribe's answer: `{language_code, text, words: [{text, start, end, type}]}`,
/// where `type` is `word`, `spacing` or `audio_event`.
fn read_transcript(body: &[u8]) -> Result<Transcript, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad_upstream(format!("elevenlabs: the transcript is not JSON: {e}")))?;
    let text = v
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_upstream("elevenlabs: the transcript has no `text`"))?;
    let words = v
        .get("words")
        .and_then(Value::as_array)
        .map(|ws| {
            ws.iter()
                .filter(|w| w.get("type").and_then(Value::as_str).unwrap_or("word") == "word")
                .filter_map(|w| {
                    Some(Word {
                        text: w.get("text")?.as_str()?.trim().to_string(),
                        start: w.get("start")?.as_f64()?,
                        end: w.get("end")?.as_f64()?,
                    })
                })
                .filter(|w| !w.text.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(Transcript {
        text: text.trim().to_string(),
        language: v
            .get("language_code")
            .and_then(Value::as_str)
            .map(str::to_string),
        duration: v.get("audio_duration_secs").and_then(Value::as_f64),
        words,
        segments: Vec::new(),
    })
}

/// Maps `{"detail": {"status", "message"}}` and FastAPI's validation list.
fn elevenlabs_error(status: u16, body: &[u8]) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let detail = parsed.as_ref().and_then(|v| v.get("detail"));
    let reason = detail
        .and_then(|d| d.get("status").or_else(|| d.get("code")))
        .and_then(Value::as_str);
    let message = match detail {
        Some(Value::Object(d)) => d.get("message").and_then(Value::as_str).map(str::to_string),
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(items)) => {
            let list: Vec<String> = items
                .iter()
                .filter_map(|i| {
                    let msg = i.get("msg")?.as_str()?;
                    let loc: Vec<String> = i
                        .get("loc")
                        .and_then(Value::as_array)
                        .map(|l| {
                            l.iter()
                                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(if loc.is_empty() {
                        msg.to_string()
                    } else {
                        format!("{}: {msg}", loc.join("."))
                    })
                })
                .collect();
            (!list.is_empty()).then(|| list.join("; "))
        }
        _ => None,
    };
    let Some(message) = message else {
        return provider_error("elevenlabs", status, body);
    };
    match reason {
        Some("quota_exceeded") => {
            return ApiError::new(
                ErrorKind::BadGateway,
                format!("elevenlabs: the proxy's ElevenLabs account is out of quota: {message}"),
            )
            .with_code("upstream_billing")
        }
        Some("voice_not_found") => {
            return ApiError::new(
                if status == 404 {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::InvalidRequest
                },
                format!("elevenlabs: {message}"),
            )
            .with_param("voice")
            .with_code("voice_not_found")
        }
        Some("max_character_limit_exceeded") => {
            return ApiError::invalid_request(format!("elevenlabs: {message}"))
                .with_param("input")
                .with_code("max_character_limit_exceeded")
        }
        _ => {}
    }
    if matches!(status, 401 | 403) {
        return provider_error("elevenlabs", status, body);
    }
    let (kind, code) = kind_for_status(status);
    with_code(ApiError::new(kind, format!("elevenlabs: {message}")), code)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::adapters::common::testing::{receive, send};
    use liter_llm_protocol::multipart;

    fn ctx(model: &str) -> ChatContext<'_> {
        ChatContext {
            upstream_model: model,
            requested_model: "tts",
            stream: false,
            include_usage: true,
        }
    }

    fn request(
        endpoint: Endpoint,
        body: &[u8],
        ct: Option<&str>,
    ) -> Result<UpstreamRequest, ApiError> {
        let ctx = ctx("eleven_multilingual_v2");
        send(
            &ElevenLabsAdapter,
            &ctx,
            "https://api.elevenlabs.io",
            endpoint,
            body,
            ct,
        )
    }

    #[test]
    fn speech_goes_to_the_streaming_endpoint_with_the_voice_in_the_path() {
        let up = request(
            Endpoint::AudioSpeech,
            br#"{"model":"tts","input":"Hello there","voice":"JBFqnCBsd6RMkjVDRZzb","response_format":"pcm","speed":1.1}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            up.path,
            "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream?output_format=pcm_24000"
        );
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            body,
            json!({"text": "Hello there", "model_id": "eleven_multilingual_v2", "voice_settings": {"speed": 1.1}})
        );
    }

    #[test]
    fn mp3_is_the_default_and_wav_uses_the_whole_file_endpoint() {
        let up = request(
            Endpoint::AudioSpeech,
            br#"{"model":"tts","input":"Hi","voice":"v1"}"#,
            None,
        )
        .unwrap();
        assert!(
            up.path.ends_with("/stream?output_format=mp3_44100_128"),
            "{}",
            up.path
        );
        let wav = request(
            Endpoint::AudioSpeech,
            br#"{"model":"tts","input":"Hi","voice":"v1","response_format":"wav"}"#,
            None,
        )
        .unwrap();
        assert_eq!(wav.path, "/v1/text-to-speech/v1?output_format=wav_24000");
    }

    #[test]
    fn formats_elevenlabs_cannot_produce_are_a_400_naming_response_format() {
        for format in ["aac", "flac"] {
            let body = format!(
                r#"{{"model":"tts","input":"Hi","voice":"v","response_format":"{format}"}}"#
            );
            let e = request(Endpoint::AudioSpeech, body.as_bytes(), None).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("response_format"));
            assert_eq!(e.code.as_deref(), Some("unsupported_value"));
            assert!(e.message.contains("mp3, opus, wav, pcm"), "{}", e.message);
        }
    }

    #[test]
    fn speed_outside_the_voice_range_is_refused() {
        let e = request(
            Endpoint::AudioSpeech,
            br#"{"model":"tts","input":"Hi","voice":"v","speed":2.0}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("speed"));
    }

    #[test]
    fn relayed_audio_is_labelled_with_openais_content_type() {
        let label = |body: &[u8]| {
            ElevenLabsAdapter.relayed_content_type(
                &EndpointRequest {
                    endpoint: Endpoint::AudioSpeech,
                    body,
                    content_type: None,
                },
                Some(&HeaderValue::from_static("application/octet-stream")),
            )
        };
        assert_eq!(
            label(br#"{"input":"a","voice":"v"}"#).unwrap(),
            "audio/mpeg"
        );
        assert_eq!(
            label(br#"{"input":"a","voice":"v","response_format":"pcm"}"#).unwrap(),
            "audio/pcm"
        );
    }

    fn upload(format: &str) -> (String, Bytes) {
        multipart::FormBuilder::new()
            .file("file", "clip.mp3", "audio/mpeg", b"ID3\x04\x00audio")
            .text("model", "scribe")
            .text("language", "en")
            .text("prompt", "names: Kenobi")
            .text("response_format", format)
            .finish()
    }

    #[test]
    fn transcription_upload_is_rebuilt_with_scribe_fields() {
        let (ct, body) = upload("json");
        let up = request(Endpoint::AudioTranscriptions, &body, Some(&ct)).unwrap();
        assert_eq!(up.path, "/v1/speech-to-text");
        let sent_ct = up.content_type.unwrap();
        let sent_ct = sent_ct.to_str().unwrap();
        let parts = multipart::parse(&up.body, multipart::boundary(sent_ct).unwrap()).unwrap();
        let field = |n: &str| {
            parts
                .iter()
                .find(|p| p.name == n)
                .map(|p| p.data(&up.body).to_vec())
        };
        assert_eq!(field("model_id").unwrap(), b"eleven_multilingual_v2");
        assert_eq!(field("file").unwrap(), b"ID3\x04\x00audio");
        assert_eq!(field("language_code").unwrap(), b"en");
        assert_eq!(field("tag_audio_events").unwrap(), b"false");
        assert!(field("prompt").is_none() && field("model").is_none());
    }

    const SCRIBE: &[u8] = br#"{"language_code":"en","language_probability":0.98,"text":"Hello world. Bye.","words":[
        {"text":"Hello","start":0.0,"end":0.4,"type":"word","speaker_id":"speaker_1","logprob":-0.1},
        {"text":" ","start":0.4,"end":0.5,"type":"spacing"},
        {"text":"world.","start":0.5,"end":0.9,"type":"word"},
        {"text":"(laughs)","start":1.0,"end":1.4,"type":"audio_event"},
        {"text":"Bye.","start":2.0,"end":2.3,"type":"word"}]}"#;

    fn respond(format: &str) -> Translated {
        let (ct, body) = upload(format);
        let endpoint = Endpoint::AudioTranscriptions;
        receive(
            &ElevenLabsAdapter,
            &ctx("scribe_v1"),
            endpoint,
            &body,
            Some(&ct),
            SCRIBE,
        )
        .unwrap()
    }

    #[test]
    fn transcripts_are_written_in_each_response_format() {
        let json_out: Value = serde_json::from_slice(&respond("json").body).unwrap();
        assert_eq!(json_out["text"], "Hello world. Bye.");
        assert_eq!(&respond("text").body[..], b"Hello world. Bye.\n");
        let srt = respond("srt");
        assert_eq!(
            std::str::from_utf8(&srt.body).unwrap(),
            "1\n00:00:00,000 --> 00:00:00,900\nHello world.\n\n2\n00:00:02,000 --> 00:00:02,300\nBye.\n\n"
        );
        let verbose: Value = serde_json::from_slice(&respond("verbose_json").body).unwrap();
        assert_eq!(verbose["language"], "english");
        assert_eq!(verbose["segments"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn errors_map_quota_voice_and_validation_shapes() {
        let quota = ElevenLabsAdapter.error(
            401,
            br#"{"detail":{"status":"quota_exceeded","message":"This request exceeds your quota of 10000."}}"#,
        );
        assert_eq!(quota.kind, ErrorKind::BadGateway);
        assert_eq!(quota.code.as_deref(), Some("upstream_billing"));
        let key = ElevenLabsAdapter.error(
            401,
            br#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#,
        );
        assert_eq!(key.code.as_deref(), Some("upstream_auth_failed"));
        let voice = ElevenLabsAdapter.error(
            400,
            br#"{"detail":{"status":"voice_not_found","message":"A voice with voice_id nope does not exist."}}"#,
        );
        assert_eq!(voice.param.as_deref(), Some("voice"));
        assert_eq!(voice.kind, ErrorKind::InvalidRequest);
        let validation = ElevenLabsAdapter.error(
            422,
            br#"{"detail":[{"loc":["body","text"],"msg":"field required","type":"value_error.missing"}]}"#,
        );
        assert_eq!(validation.kind, ErrorKind::InvalidRequest);
        assert!(
            validation.message.contains("body.text: field required"),
            "{}",
            validation.message
        );
        let busy = ElevenLabsAdapter.error(
            429,
            br#"{"detail":{"status":"too_many_concurrent_requests","message":"Too many concurrent requests."}}"#,
        );
        assert_eq!(busy.kind, ErrorKind::RateLimited);
    }
}
