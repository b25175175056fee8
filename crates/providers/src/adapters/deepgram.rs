//! Deepgram: pre-recorded speech to text for `/v1/audio/transcriptions` and
//! Aura text to speech for `/v1/audio/speech`.
//!
//! A transcription upload is unpacked: the file part's bytes are the whole body
//! of `POST /v1/listen`, with the file part's `Content-Type`, and OpenAI's
//! fields become query parameters (`model`, `language`, `smart_format=true` for
//! the punctuated, formatted text OpenAI returns). Without a `language`,
//! `detect_language=true` keeps OpenAI's auto-detection; subtitles and verbose
//! JSON also ask for `utterances=true`, whose timed phrases become segments.
//! `prompt` and `temperature` have no Deepgram equivalent and are dropped.
//!
//! Speech is `POST /v1/speak?model=..&encoding=..` with `{"text"}`; each OpenAI
//! format maps to an `encoding`/`container` pair (24 kHz for PCM and WAV, as
//! OpenAI's). In Deepgram the voice is the model (`aura-2-thalia-en`), so an
//! Aura name in `voice` picks the voice; any other `voice` (OpenAI's `alloy`)
//! leaves the deployment's model in charge.
//!
//! Errors are `{"err_code", "err_msg", "request_id"}` or, for malformed JSON,
//! `{"category", "message", "details"}`.

use super::common::{
    bad_upstream, invalid, kind_for_status, percent_encode, post, provider_error, with_code,
};
use super::speech::{self, Segment, Transcript, Word};
use super::{
    ChatAdapter, ChatContext, EndpointRequest, Translated, UpstreamRequest, UpstreamTarget,
};
use bytes::Bytes;
use http::HeaderValue;
use liter_llm_protocol::{ApiError, Endpoint, ErrorKind};
use serde_json::{json, Value};

pub struct DeepgramAdapter;

/// The query for each OpenAI speech format (`/v1/speak`).
fn speak_encoding(format: &str) -> Option<&'static str> {
    Some(match format {
        "mp3" => "encoding=mp3",
        "opus" => "encoding=opus&container=ogg",
        "aac" => "encoding=aac",
        "flac" => "encoding=flac",
        "wav" => "encoding=linear16&container=wav&sample_rate=24000",
        "pcm" => "encoding=linear16&container=none&sample_rate=24000",
        _ => return None,
    })
}

const SPEECH_FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];

impl ChatAdapter for DeepgramAdapter {
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
            Endpoint::AudioTranscriptions => listen_request(req, ctx),
            Endpoint::AudioSpeech => speak_request(req.body, ctx),
            other => Err(super::not_offered(other)),
        }
    }

    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        _ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        speech::transcription_response(req, upstream_body, |body, upload| {
            let mut transcript = read_listen(body)?;
            if transcript.language.is_none() {
                transcript.language = upload.language.map(str::to_string);
            }
            Ok(transcript)
        })
    }

    fn relayed_content_type(
        &self,
        req: &EndpointRequest<'_>,
        _upstream: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        speech::relayed_content_type(req)
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        deepgram_error(status, upstream_body)
    }
}

fn listen_request(
    req: &EndpointRequest<'_>,
    ctx: &ChatContext<'_>,
) -> Result<UpstreamRequest, ApiError> {
    let upload = speech::read_upload(req)?;
    let mut path = format!(
        "/listen?model={}&smart_format=true",
        percent_encode(ctx.upstream_model)
    );
    match upload.language {
        Some(lang) => {
            path.push_str("&language=");
            path.push_str(&percent_encode(lang));
        }
        None => path.push_str("&detect_language=true"),
    }
    if upload.format.needs_segments() {
        path.push_str("&utterances=true");
    }
    let content_type = HeaderValue::from_str(speech::audio_type(&upload)).map_err(|_| {
        invalid(
            "file",
            "the file part's Content-Type is not a valid header value",
        )
    })?;
    Ok(post(
        path,
        Some(content_type),
        Bytes::copy_from_slice(upload.file),
    ))
}

fn speak_request(body: &[u8], ctx: &ChatContext<'_>) -> Result<UpstreamRequest, ApiError> {
    let sr = speech::read_speech(body)?;
    let encoding = speak_encoding(&sr.format)
        .ok_or_else(|| speech::unsupported_speech_format("Deepgram", &sr.format, SPEECH_FORMATS))?;
    if sr.speed.is_some() {
        return Err(invalid(
            "speed",
            "`speed` other than 1.0 is not supported for Deepgram voices through this proxy",
        ));
    }
    let model = if sr.voice.starts_with("aura") {
        sr.voice.as_str()
    } else {
        ctx.upstream_model
    };
    Ok(post(
        format!("/speak?model={}&{encoding}", percent_encode(model)),
        None,
        Bytes::from(json!({"text": sr.input}).to_string()),
    ))
}

/// Deepgram's pre-recorded answer: `metadata.duration`, the first channel's
/// first alternative (`transcript`, `words`), `detected_language`, and
/// `results.utterances` when asked for.
fn read_listen(body: &[u8]) -> Result<Transcript, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad_upstream(format!("deepgram: the transcript is not JSON: {e}")))?;
    let channel = v
        .pointer("/results/channels/0")
        .ok_or_else(|| bad_upstream("deepgram: the answer has no `results.channels`"))?;
    let alt = channel
        .pointer("/alternatives/0")
        .ok_or_else(|| bad_upstream("deepgram: the answer's channel has no alternatives"))?;
    let text = alt
        .get("transcript")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_upstream("deepgram: the alternative has no `transcript`"))?;
    let words = alt
        .get("words")
        .and_then(Value::as_array)
        .map(|ws| {
            ws.iter()
                .filter_map(|w| {
                    let text = w
                        .get("punctuated_word")
                        .or_else(|| w.get("word"))?
                        .as_str()?;
                    Some(Word {
                        text: text.to_string(),
                        start: w.get("start")?.as_f64()?,
                        end: w.get("end")?.as_f64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let segments = v
        .pointer("/results/utterances")
        .and_then(Value::as_array)
        .map(|us| {
            us.iter()
                .filter(|u| u.get("channel").and_then(Value::as_u64).unwrap_or(0) == 0)
                .filter_map(|u| {
                    Some(Segment {
                        start: u.get("start")?.as_f64()?,
                        end: u.get("end")?.as_f64()?,
                        text: u.get("transcript")?.as_str()?.to_string(),
                        confidence: u.get("confidence").and_then(Value::as_f64),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Transcript {
        text: text.to_string(),
        language: channel
            .get("detected_language")
            .and_then(Value::as_str)
            .map(str::to_string),
        duration: v.pointer("/metadata/duration").and_then(Value::as_f64),
        words,
        segments,
    })
}

/// Maps `{"err_code","err_msg"}` and `{"category","message","details"}`.
fn deepgram_error(status: u16, body: &[u8]) -> ApiError {
    if matches!(status, 401 | 403) {
        return provider_error("deepgram", status, body);
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text = |key: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let message = match (text("err_msg").or_else(|| text("message")), text("details")) {
        (Some(m), Some(d)) => format!("{m} ({d})"),
        (Some(m), None) => m.to_string(),
        (None, _) => return provider_error("deepgram", status, body),
    };
    let (kind, code) = kind_for_status(status);
    let e = with_code(ApiError::new(kind, format!("deepgram: {message}")), code);
    if kind == ErrorKind::InvalidRequest && text("err_code") == Some("Bad Request") {
        // Deepgram's 400 for audio it cannot decode names nothing but the file.
        if message.contains("audio") {
            return e.with_param("file");
        }
    }
    e
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::adapters::common::testing::{receive, send};
    use liter_llm_protocol::multipart::FormBuilder;

    fn ctx(model: &str) -> ChatContext<'_> {
        ChatContext {
            upstream_model: model,
            requested_model: "stt",
            stream: false,
            include_usage: true,
        }
    }

    fn request(
        endpoint: Endpoint,
        body: &[u8],
        ct: Option<&str>,
        model: &str,
    ) -> Result<UpstreamRequest, ApiError> {
        let base_url = "https://api.deepgram.com/v1";
        send(&DeepgramAdapter, &ctx(model), base_url, endpoint, body, ct)
    }

    fn upload(fields: &[(&str, &str)]) -> (String, Bytes) {
        let mut f =
            FormBuilder::new().file("file", "speech.wav", "audio/wav", b"RIFF\r\n--x\x00\xff");
        for (k, v) in fields {
            f = f.text(k, v);
        }
        f.text("model", "whisper-1").finish()
    }

    #[test]
    fn the_audio_is_the_body_and_fields_become_query_parameters() {
        let (ct, body) = upload(&[
            ("language", "en"),
            ("response_format", "json"),
            ("prompt", "x"),
        ]);
        let up = request(Endpoint::AudioTranscriptions, &body, Some(&ct), "nova-3").unwrap();
        assert_eq!(
            up.path,
            "/listen?model=nova-3&smart_format=true&language=en"
        );
        assert_eq!(&up.body[..], b"RIFF\r\n--x\x00\xff");
        assert_eq!(up.content_type.unwrap(), "audio/wav");
    }

    #[test]
    fn subtitles_ask_for_utterances_and_no_language_asks_for_detection() {
        let (ct, body) = upload(&[("response_format", "srt")]);
        let up = request(Endpoint::AudioTranscriptions, &body, Some(&ct), "nova-3").unwrap();
        assert_eq!(
            up.path,
            "/listen?model=nova-3&smart_format=true&detect_language=true&utterances=true"
        );
    }

    const LISTEN: &[u8] = br#"{
      "metadata": {"request_id": "a1b2", "created": "2024-05-01T00:00:00.000Z", "duration": 3.5, "channels": 1},
      "results": {
        "channels": [{"detected_language": "en", "language_confidence": 0.99, "alternatives": [{
          "transcript": "Hello there. How are you?",
          "confidence": 0.98,
          "words": [
            {"word": "hello", "start": 0.1, "end": 0.4, "confidence": 0.99, "punctuated_word": "Hello"},
            {"word": "there", "start": 0.5, "end": 0.9, "confidence": 0.97, "punctuated_word": "there."},
            {"word": "how", "start": 1.5, "end": 1.7, "confidence": 0.99, "punctuated_word": "How"},
            {"word": "are", "start": 1.8, "end": 1.9, "confidence": 0.99, "punctuated_word": "are"},
            {"word": "you", "start": 2.0, "end": 2.4, "confidence": 0.99, "punctuated_word": "you?"}
          ]}]}],
        "utterances": [
          {"start": 0.1, "end": 0.9, "confidence": 0.98, "channel": 0, "transcript": "Hello there.", "words": [], "speaker": 0, "id": "u1"},
          {"start": 1.5, "end": 2.4, "confidence": 0.99, "channel": 0, "transcript": "How are you?", "words": [], "speaker": 0, "id": "u2"}
        ]
      }
    }"#;

    fn respond(fields: &[(&str, &str)]) -> Translated {
        let (ct, body) = upload(fields);
        let endpoint = Endpoint::AudioTranscriptions;
        receive(
            &DeepgramAdapter,
            &ctx("nova-3"),
            endpoint,
            &body,
            Some(&ct),
            LISTEN,
        )
        .unwrap()
    }

    #[test]
    fn each_response_format_is_written_from_the_deepgram_answer() {
        let v: Value = serde_json::from_slice(&respond(&[]).body).unwrap();
        assert_eq!(
            v,
            json!({"text": "Hello there. How are you?", "usage": {"type": "duration", "seconds": 4}})
        );
        let text = respond(&[("response_format", "text")]);
        assert_eq!(&text.body[..], b"Hello there. How are you?\n");
        assert_eq!(text.content_type, "text/plain; charset=utf-8");
        let vtt = respond(&[("response_format", "vtt")]);
        assert_eq!(
            std::str::from_utf8(&vtt.body).unwrap(),
            "WEBVTT\n\n00:00:00.100 --> 00:00:00.900\nHello there.\n\n00:00:01.500 --> 00:00:02.400\nHow are you?\n\n"
        );
        let verbose: Value = serde_json::from_slice(
            &respond(&[
                ("response_format", "verbose_json"),
                ("timestamp_granularities[]", "word"),
            ])
            .body,
        )
        .unwrap();
        assert_eq!(verbose["language"], "english");
        assert_eq!(verbose["duration"], 3.5);
        assert_eq!(verbose["segments"][1]["text"], "How are you?");
        assert_eq!(
            verbose["words"][1],
            json!({"word": "there.", "start": 0.5, "end": 0.9})
        );
    }

    #[test]
    fn speech_maps_formats_and_an_aura_voice_picks_the_model() {
        let up = request(
            Endpoint::AudioSpeech,
            br#"{"model":"tts","input":"Hi","voice":"aura-2-thalia-en","response_format":"pcm"}"#,
            None,
            "aura-2-andromeda-en",
        )
        .unwrap();
        assert_eq!(
            up.path,
            "/speak?model=aura-2-thalia-en&encoding=linear16&container=none&sample_rate=24000"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&up.body).unwrap(),
            json!({"text": "Hi"})
        );
        let alloy = request(
            Endpoint::AudioSpeech,
            br#"{"model":"tts","input":"Hi","voice":"alloy","response_format":"opus"}"#,
            None,
            "aura-2-andromeda-en",
        )
        .unwrap();
        assert_eq!(
            alloy.path,
            "/speak?model=aura-2-andromeda-en&encoding=opus&container=ogg"
        );
    }

    #[test]
    fn errors_keep_deepgrams_message_and_status_meaning() {
        let e = DeepgramAdapter.error(
            400,
            br#"{"err_code":"Bad Request","err_msg":"Bad Request: failed to process audio: corrupt or unsupported data","request_id":"r"}"#,
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert_eq!(e.param.as_deref(), Some("file"));
        assert!(e.message.contains("corrupt or unsupported data"));
        let paid = DeepgramAdapter.error(
            402,
            br#"{"err_code":"ASR_PAYMENT_REQUIRED","err_msg":"Project does not have enough credits for an ASR request.","request_id":"r"}"#,
        );
        assert_eq!(paid.code.as_deref(), Some("upstream_billing"));
        let auth = DeepgramAdapter.error(
            401,
            br#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"r"}"#,
        );
        assert_eq!(auth.code.as_deref(), Some("upstream_auth_failed"));
        let json_err = DeepgramAdapter.error(
            400,
            br#"{"category":"INVALID_JSON","message":"Invalid JSON submitted.","details":"missing field `text`","request_id":"r"}"#,
        );
        assert!(
            json_err.message.contains("missing field `text`"),
            "{}",
            json_err.message
        );
    }
}
