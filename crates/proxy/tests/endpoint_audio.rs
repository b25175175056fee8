//! `POST /v1/audio/speech` (binary audio relayed as it arrives) and
//! `POST /v1/audio/transcriptions` (a multipart upload with the model spliced in)
//! through an OpenAI-compatible deployment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
mod endpoint_common;

use common::*;
use endpoint_common::*;
use mock_upstream::{form, Fault, MockConfig, MockServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn speech(input: &str, format: Option<&str>) -> Value {
    let mut body = json!({"model": "tts", "input": input, "voice": "alloy"});
    if let Some(f) = format {
        body["response_format"] = f.into();
    }
    body
}

// ------------------------------------------------------------------ speech

#[tokio::test(flavor = "multi_thread")]
async fn speech_comes_back_in_every_format_with_its_content_type() {
    let mock = start_mock(MockConfig {
        chunks: 3,
        ..MockConfig::default()
    })
    .await;
    let p = start_proxy(&endpoint_config(&mock, "", "")).await;
    for (format, content_type) in [
        (None, "audio/mpeg"),
        (Some("mp3"), "audio/mpeg"),
        (Some("opus"), "audio/opus"),
        (Some("aac"), "audio/aac"),
        (Some("flac"), "audio/flac"),
        (Some("wav"), "audio/wav"),
        (Some("pcm"), "audio/pcm"),
    ] {
        let input = format!("Say it as {format:?}");
        let resp = post_json(&p, MASTER, "/v1/audio/speech", &speech(&input, format)).await;
        assert_eq!(resp.status(), 200, "{format:?}");
        assert_eq!(resp.headers()["content-type"], content_type);
        assert_model_id(&resp);
        let audio = resp.bytes().await.unwrap();
        let expected = mock_upstream::speech_chunks(&input, format.unwrap_or("mp3"), 3).concat();
        assert_eq!(&audio[..], &expected[..], "{format:?}: audio bytes differ");
    }
    let request = mock.requests().pop().unwrap();
    assert_eq!(request.path, "/v1/audio/speech");
    assert_spliced(
        &serde_json::to_vec(&speech("Say it as Some(\"pcm\")", Some("pcm"))).unwrap(),
        &request.body,
        "tts",
        "tts-1",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_audio_chunk_reaches_the_client_before_the_upstream_has_finished() {
    let mock = start_mock(MockConfig {
        chunks: 5,
        chunk_interval_ms: 150,
        ..MockConfig::default()
    })
    .await;
    let p = start_proxy(&endpoint_config(&mock, "", "")).await;
    let started = Instant::now();
    let mut resp = post_json(
        &p,
        MASTER,
        "/v1/audio/speech",
        &speech("stream me", Some("pcm")),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    let first_at = started.elapsed();
    assert!(!first.is_empty());
    assert_eq!(
        mock.streams_completed(),
        0,
        "the client had audio while the upstream was still sending"
    );
    let mut total = first.len();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 5 * mock_upstream::SPEECH_CHUNK_BYTES);
    assert_eq!(mock.streams_completed(), 1);
    // The last chunk left the mock 600 ms after the first.
    assert!(
        started.elapsed() >= first_at + Duration::from_millis(450),
        "first at {first_at:?}, all at {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn speech_as_server_sent_events_is_relayed_as_text_event_stream() {
    let mock = start_mock(MockConfig {
        chunks: 2,
        ..MockConfig::default()
    })
    .await;
    let p = start_proxy(&endpoint_config(&mock, "", "")).await;
    let mut body = speech("hi", None);
    body["stream_format"] = "sse".into();
    let resp = post_json(&p, MASTER, "/v1/audio/speech", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 3, "{text}");
    assert!(events[2].contains("speech.audio.done"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_speech_requests_are_400s_naming_the_field_and_never_sent() {
    let (mock, p) = start_endpoints().await;
    for (body, param, code) in [
        (
            speech("hi", Some("ogg")),
            "response_format",
            Some("unsupported_value"),
        ),
        (speech("", None), "input", None),
        (json!({"model": "tts", "input": "hi"}), "voice", None),
        (
            json!({"model": "tts", "input": "hi", "voice": "alloy", "speed": 9}),
            "speed",
            None,
        ),
        (
            json!({"model": "tts", "input": "hi", "voice": "alloy", "stream_format": "chunks"}),
            "stream_format",
            Some("unsupported_value"),
        ),
    ] {
        let (msg, v) =
            error_message(post_json(&p, MASTER, "/v1/audio/speech", &body).await, 400).await;
        assert_eq!(v["error"]["param"], param, "{body}: {msg}");
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{body}: {msg}");
        }
    }
    let (msg, _) = error_message(
        post_json(&p, MASTER, "/v1/audio/speech", &speech("hi", Some("ogg"))).await,
        400,
    )
    .await;
    assert!(
        msg.contains("mp3") && msg.contains("pcm"),
        "lists the formats: {msg}"
    );
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn audio_cut_by_the_upstream_is_cut_for_the_client_and_recorded_incomplete() {
    let mock = start_mock(MockConfig {
        chunks: 4,
        fault: Some(Fault::TruncateStream),
        ..MockConfig::default()
    })
    .await;
    let p = start_proxy(&endpoint_config(&mock, "enable_cost_tracking = true", "")).await;
    let mut resp = post_json(&p, MASTER, "/v1/audio/speech", &speech("cut", Some("pcm"))).await;
    assert_eq!(resp.status(), 200);
    let mut got = 0;
    let ended = loop {
        match resp.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        ended.is_err(),
        "a clean end would pass a truncated file off as whole"
    );
    assert_eq!(got, 2 * mock_upstream::SPEECH_CHUNK_BYTES);
    let log = p.state.spend.clone().unwrap();
    let record = loop {
        log.flush().await;
        if let Some(r) = log.recent(10).into_iter().next() {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record.model_group, "tts");
    assert!(!record.completed);
}

// ------------------------------------------------------------------ transcriptions

/// A form part as `(name, filename, bytes)`.
type OwnedPart = (String, Option<String>, Vec<u8>);

/// The one recorded upload: its parts and its body.
fn recorded_upload(mock: &MockServer) -> (Vec<OwnedPart>, Vec<u8>) {
    let request = only_request(mock);
    assert_eq!(request.path, "/v1/audio/transcriptions");
    let content_type = request.headers["content-type"].to_str().unwrap();
    assert_eq!(
        content_type,
        format!("multipart/form-data; boundary={BOUNDARY}"),
        "the boundary travels with the body"
    );
    let parts = form::parse_form(content_type, &request.body)
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.filename, p.data.to_vec()))
        .collect();
    (parts, request.body.to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upload_arrives_byte_for_byte_with_the_model_rewritten_inside_the_form() {
    let (mock, p) = start_endpoints().await;
    let audio = tricky_audio(200_000);
    let body = multipart(
        &[("model", "stt"), ("language", "en"), ("temperature", "0.2")],
        Some(("meeting.wav", &audio)),
    );
    let resp = post_multipart(&p, MASTER, body.clone()).await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_model_id(&resp);
    let v = json_ok(resp).await;
    assert_eq!(
        v["text"],
        mock_upstream::transcript_text("whisper-1", "meeting.wav", &audio)
    );
    assert_eq!(v["usage"]["type"], "duration");

    let (parts, received) = recorded_upload(&mock);
    let names: Vec<&str> = parts.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["model", "language", "temperature", "file"]);
    assert_eq!(parts[0].2, b"whisper-1");
    assert_eq!(parts[3].1.as_deref(), Some("meeting.wav"));
    assert!(parts[3].2 == audio, "the file part changed on the way");
    // Nothing but the model's bytes changed.
    let from = b"\r\n\r\nstt\r\n";
    let at = body.windows(from.len()).position(|w| w == from).unwrap();
    let mut expected = body[..at + 4].to_vec();
    expected.extend_from_slice(b"whisper-1");
    expected.extend_from_slice(&body[at + 7..]);
    assert!(
        received == expected,
        "the form was rewritten beyond `model`"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn text_srt_and_vtt_transcripts_pass_through_as_plain_text() {
    let (_mock, p) = start_endpoints().await;
    let audio = tricky_audio(48_000);
    let text = mock_upstream::transcript_text("whisper-1", "a.wav", &audio);
    for (format, expected) in [
        ("text", format!("{text}\n")),
        (
            "srt",
            format!("1\n00:00:00,000 --> 00:00:01,500\n{text}\n\n"),
        ),
        (
            "vtt",
            format!("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n{text}\n\n"),
        ),
    ] {
        let resp = post_multipart(
            &p,
            MASTER,
            multipart(
                &[("model", "stt"), ("response_format", format)],
                Some(("a.wav", &audio)),
            ),
        )
        .await;
        assert_eq!(resp.status(), 200, "{format}");
        assert_eq!(
            resp.headers()["content-type"],
            "text/plain; charset=utf-8",
            "{format}"
        );
        assert_eq!(resp.text().await.unwrap(), expected, "{format}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_and_verbose_json_transcripts_are_json() {
    let (_mock, p) = start_endpoints().await;
    let verbose = json_ok(
        post_multipart(
            &p,
            MASTER,
            multipart(
                &[
                    ("model", "stt"),
                    ("response_format", "verbose_json"),
                    ("timestamp_granularities[]", "word"),
                ],
                Some(("a.wav", b"RIFF")),
            ),
        )
        .await,
    )
    .await;
    assert_eq!(verbose["task"], "transcribe");
    assert!(verbose["words"][0]["word"].is_string(), "{verbose}");
    assert!(verbose["duration"].as_f64().unwrap() > 0.0);
    let tokens = json_ok(
        post_multipart(
            &p,
            MASTER,
            multipart(&[("model", "stt-4o")], Some(("a.wav", b"RIFF"))),
        )
        .await,
    )
    .await;
    assert_eq!(
        tokens["text"],
        mock_upstream::transcript_text("gpt-4o-transcribe", "a.wav", b"RIFF")
    );
    assert_eq!(tokens["usage"]["type"], "tokens");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_uploads_are_refused_before_the_upstream() {
    let mock = start_mock(MockConfig::default()).await;
    let p = start_proxy(&endpoint_config(
        &mock,
        "",
        "[server]\nbody_limit_bytes = 65536\n",
    ))
    .await;
    for (body, param) in [
        (multipart(&[("model", "stt")], None), "file"),
        (multipart(&[], Some(("a.wav", b"RIFF"))), "model"),
        (multipart(&[("model", "stt")], Some(("a.wav", b""))), "file"),
        (
            multipart(
                &[("model", "stt"), ("response_format", "docx")],
                Some(("a.wav", b"RIFF")),
            ),
            "response_format",
        ),
    ] {
        let (msg, v) = error_message(post_multipart(&p, MASTER, body).await, 400).await;
        assert_eq!(v["error"]["param"], param, "{msg}");
    }
    // JSON where a form belongs.
    let (msg, v) = error_message(
        post_json(
            &p,
            MASTER,
            "/v1/audio/transcriptions",
            &json!({"model": "stt", "file": "a.wav"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "invalid_content_type", "{msg}");
    assert!(msg.contains("multipart/form-data"), "{msg}");
    // A form cut off before its closing boundary.
    let mut cut = multipart(&[("model", "stt")], Some(("a.wav", b"RIFF")));
    cut.truncate(cut.len() - 10);
    let (msg, _) = error_message(post_multipart(&p, MASTER, cut).await, 400).await;
    assert!(msg.contains("multipart"), "{msg}");
    // Larger than [server].body_limit_bytes.
    let big = multipart(
        &[("model", "stt")],
        Some(("big.wav", &tricky_audio(100_000))),
    );
    let (msg, _) = error_message(post_multipart(&p, MASTER, big).await, 413).await;
    assert!(msg.contains("65536"), "names the limit: {msg}");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_format_the_upstream_model_refuses_comes_back_as_its_400() {
    let (_mock, p) = start_endpoints().await;
    let (msg, v) = error_message(
        post_multipart(
            &p,
            MASTER,
            multipart(
                &[("model", "stt-4o"), ("response_format", "srt")],
                Some(("a.wav", b"RIFF")),
            ),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(v["error"]["param"], "response_format");
    assert!(msg.contains("gpt-4o-transcribe"), "{msg}");
}
