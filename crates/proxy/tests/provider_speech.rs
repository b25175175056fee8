//! OpenAI audio clients through the real proxy to provider-faithful fakes of
//! ElevenLabs (text to speech, Scribe) and Deepgram (`/v1/listen`,
//! `/v1/speak`). The fakes refuse what the real APIs refuse, and any field
//! their references do not list, so a passing test proves the translation in
//! both directions, including that audio is relayed as it streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::*;
use fake_providers::deepgram::{self as dg, FakeDeepgram};
use fake_providers::elevenlabs::{self as el, FakeElevenLabs};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const EL_KEY: &str = "el-test-key";
const DG_KEY: &str = "dg-test-key";
const VOICE: &str = "JBFqnCBsd6RMkjVDRZzb";
const SPOKEN: &str = "The first move is what sets everything in motion";

/// Both fakes behind one proxy: `el-tts`, `el-stt`, `dg-stt`, `dg-tts`, and
/// `el-badkey` whose configured key ElevenLabs does not accept.
async fn setup() -> (FakeElevenLabs, FakeDeepgram, TestProxy) {
    let el = el::start(EL_KEY).await.unwrap();
    let dg = dg::start(DG_KEY).await.unwrap();
    let (elb, dgb) = (el.base_url(), dg.base_url());
    let proxy = start_proxy(&fake_proxy_config(&[
        fake_model(
            "el-tts",
            "elevenlabs/eleven_multilingual_v2",
            &elb,
            EL_KEY,
            "",
        ),
        fake_model("el-stt", "elevenlabs/scribe_v1", &elb, EL_KEY, ""),
        fake_model(
            "el-badkey",
            "elevenlabs/eleven_multilingual_v2",
            &elb,
            "wrong",
            "",
        ),
        fake_model("dg-stt", "deepgram/nova-3", &dgb, DG_KEY, ""),
        fake_model("dg-tts", "deepgram/aura-2-andromeda-en", &dgb, DG_KEY, ""),
        fake_model("dg-badkey", "deepgram/nova-3", &dgb, "wrong", ""),
    ]))
    .await;
    (el, dg, proxy)
}

async fn post_speech(p: &TestProxy, body: &Value) -> reqwest::Response {
    post_master(p, "/v1/audio/speech", body).await
}

/// The body as it streams: every chunk with the time it arrived, and the
/// error that ended it, if one did.
async fn read_chunks(resp: reqwest::Response) -> (Vec<(Duration, Vec<u8>)>, Option<String>) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => out.push((started.elapsed(), c.to_vec())),
            Err(e) => return (out, Some(format!("{e:?}"))),
        }
    }
    (out, None)
}

fn concat(chunks: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    chunks.iter().flat_map(|(_, c)| c.clone()).collect()
}

fn expected(chunks: Vec<bytes::Bytes>) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.to_vec()).collect()
}

/// A `multipart/form-data` upload as the OpenAI SDK sends it: text fields,
/// then the file part with its own content type.
fn upload(
    fields: &[(&str, &str)],
    filename: &str,
    file_type: &str,
    audio: &[u8],
) -> (String, Vec<u8>) {
    let boundary = "sdk-boundary-9f8e7d";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {file_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Fake audio with CRLFs, a boundary look-alike and bytes that are not UTF-8,
/// so any re-encoding or form parsing on the way shows.
fn audio() -> Vec<u8> {
    let mut a = b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00".to_vec();
    a.extend_from_slice(b"\r\n--sdk-boundary-9f8e\r\n");
    a.extend((0..=255u8).cycle().take(3000));
    a
}

async fn transcribe(
    p: &TestProxy,
    model: &str,
    fields: &[(&str, &str)],
    audio: &[u8],
) -> reqwest::Response {
    let mut all = vec![("model", model)];
    all.extend_from_slice(fields);
    let (ct, body) = upload(&all, "speech.wav", "audio/wav", audio);
    client()
        .post(p.url("/v1/audio/transcriptions"))
        .bearer_auth(MASTER)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn ok_text(resp: reqwest::Response) -> (String, String) {
    let status = resp.status();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    (ct, text)
}

// ---------------------------------------------------------------------------
// ElevenLabs text to speech
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn elevenlabs_speech_arrives_as_it_streams_with_openais_content_type() {
    let (el, _dg, proxy) = setup().await;
    let resp = post_speech(
        &proxy,
        &json!({"model": "el-tts", "input": SPOKEN, "voice": VOICE}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/mpeg");
    let (chunks, err) = read_chunks(resp).await;
    assert_eq!(err, None);
    assert_eq!(
        concat(&chunks),
        expected(el::audio_chunks(SPOKEN, "mp3_44100_128"))
    );
    // Ten words at 25 ms apart: the first bytes must reach the client long
    // before the last are produced, or the proxy buffered the answer.
    let first = chunks.first().unwrap().0;
    let last = chunks.last().unwrap().0;
    assert!(chunks.len() > 3, "{} chunks", chunks.len());
    assert!(
        last - first >= Duration::from_millis(150),
        "first {first:?}, last {last:?}"
    );

    let reqs = el.requests();
    assert_eq!(reqs.len(), 1);
    let sent = &reqs[0];
    assert_eq!(sent.path, format!("/v1/text-to-speech/{VOICE}/stream"));
    assert_eq!(sent.query.as_deref(), Some("output_format=mp3_44100_128"));
    assert_eq!(sent.headers["xi-api-key"], EL_KEY);
    assert!(sent.headers.get("authorization").is_none());
    assert_master_key_absent(&sent.headers);
    assert_eq!(
        sent.body,
        json!({"text": SPOKEN, "model_id": "eleven_multilingual_v2"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn elevenlabs_formats_map_to_output_formats_and_content_types() {
    let (el, _dg, proxy) = setup().await;
    for (format, output, content_type, path_end) in [
        ("pcm", "pcm_24000", "audio/pcm", "/stream"),
        ("opus", "opus_48000_64", "audio/opus", "/stream"),
        ("wav", "wav_24000", "audio/wav", ""),
    ] {
        let resp = post_speech(
            &proxy,
            &json!({"model": "el-tts", "input": "Hello there", "voice": VOICE, "response_format": format, "speed": 1.1}),
        )
        .await;
        assert_eq!(resp.status(), 200, "{format}");
        assert_eq!(resp.headers()["content-type"], content_type, "{format}");
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            body.to_vec(),
            expected(el::audio_chunks("Hello there", output))
        );
        let sent = el.requests().pop().unwrap();
        assert_eq!(sent.path, format!("/v1/text-to-speech/{VOICE}{path_end}"));
        assert_eq!(sent.query_param("output_format"), Some(output));
        assert_eq!(sent.body["voice_settings"], json!({"speed": 1.1}));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn formats_elevenlabs_cannot_produce_are_refused_before_any_upstream_call() {
    let (el, _dg, proxy) = setup().await;
    for format in ["aac", "flac"] {
        let resp = post_speech(
            &proxy,
            &json!({"model": "el-tts", "input": "Hi", "voice": VOICE, "response_format": format}),
        )
        .await;
        let (message, v) = error_message(resp, 400).await;
        assert_eq!(v["error"]["param"], "response_format");
        assert_eq!(v["error"]["code"], "unsupported_value");
        assert!(
            message.contains(format) && message.contains("mp3, opus, wav, pcm"),
            "{message}"
        );
    }
    let resp = post_speech(
        &proxy,
        &json!({"model": "el-tts", "input": "Hi", "voice": VOICE, "speed": 3.0}),
    )
    .await;
    let (_, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["param"], "speed");
    assert!(el.requests().is_empty(), "nothing may reach ElevenLabs");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_elevenlabs_stream_cut_mid_audio_is_not_a_complete_response() {
    let (el, _dg, proxy) = setup().await;
    el.push_fault(el::Fault::CutStream { after: 3 });
    let resp = post_speech(
        &proxy,
        &json!({"model": "el-tts", "input": SPOKEN, "voice": VOICE}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (chunks, err) = read_chunks(resp).await;
    assert!(
        err.is_some(),
        "a cut upstream must end the body with an error"
    );
    let full = expected(el::audio_chunks(SPOKEN, "mp3_44100_128"));
    let got = concat(&chunks);
    assert!(
        got.len() < full.len() && full.starts_with(&got),
        "{} of {} bytes",
        got.len(),
        full.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn elevenlabs_errors_become_openai_errors() {
    let (el, _dg, proxy) = setup().await;
    let speak = json!({"model": "el-tts", "input": "Hi", "voice": VOICE});

    el.push_fault(el::Fault::Error {
        status: 401,
        body: el::documented_error(401),
    });
    let (message, v) = error_message(post_speech(&proxy, &speak).await, 502).await;
    assert_eq!(v["error"]["code"], "upstream_billing");
    assert!(message.contains("quota"), "{message}");

    el.push_fault(el::Fault::Error {
        status: 429,
        body: el::documented_error(429),
    });
    let (_, v) = error_message(post_speech(&proxy, &speak).await, 429).await;
    assert_eq!(v["error"]["code"], "upstream_rate_limited");

    let unknown_voice = json!({"model": "el-tts", "input": "Hi", "voice": "no-such-voice"});
    let (message, v) = error_message(post_speech(&proxy, &unknown_voice).await, 400).await;
    assert_eq!(v["error"]["param"], "voice");
    assert!(message.contains("no-such-voice"), "{message}");

    let bad_key = json!({"model": "el-badkey", "input": "Hi", "voice": VOICE});
    let (message, v) = error_message(post_speech(&proxy, &bad_key).await, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(!message.contains("wrong"), "{message}");
}

// ---------------------------------------------------------------------------
// ElevenLabs Scribe
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn elevenlabs_transcription_rebuilds_the_upload_for_scribe() {
    let (el, _dg, proxy) = setup().await;
    let audio = audio();
    let resp = transcribe(
        &proxy,
        "el-stt",
        &[
            ("language", "en"),
            ("prompt", "spelling: Kenobi"),
            ("temperature", "0.3"),
        ],
        &audio,
    )
    .await;
    let v = json_ok(resp).await;
    // `tag_audio_events=false`: no "(laughs)" in an OpenAI transcript.
    assert_eq!(v["text"], el::transcript_text(audio.len()));

    let sent = el.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/speech-to-text");
    assert_eq!(sent.headers["xi-api-key"], EL_KEY);
    assert_eq!(sent.body["model_id"], "scribe_v1");
    assert_eq!(sent.body["language_code"], "en");
    assert_eq!(sent.body["temperature"], "0.3");
    assert_eq!(sent.body["tag_audio_events"], "false");
    assert_eq!(sent.body["file"]["filename"], "speech.wav");
    assert_eq!(sent.body["file"]["content_type"], "audio/wav");
    assert_eq!(sent.body["file"]["size"], audio.len());
    assert!(sent.raw.windows(audio.len()).any(|w| w == audio.as_slice()));
    assert!(sent.body.get("prompt").is_none() && sent.body.get("model").is_none());

    let (ct, srt) =
        ok_text(transcribe(&proxy, "el-stt", &[("response_format", "srt")], &audio).await).await;
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(srt.starts_with("1\n00:00:00,000 --> 00:00:01,"), "{srt}");
    assert!(
        srt.contains("\n\n2\n") && srt.ends_with("bytes long.\n\n"),
        "{srt}"
    );
}

// ---------------------------------------------------------------------------
// Deepgram speech to text
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn deepgram_receives_the_audio_byte_for_byte_with_fields_as_query() {
    let (_el, dg, proxy) = setup().await;
    let audio = audio();
    let v = json_ok(
        transcribe(
            &proxy,
            "dg-stt",
            &[("language", "en"), ("prompt", "x"), ("temperature", "0")],
            &audio,
        )
        .await,
    )
    .await;
    assert_eq!(v["text"], dg::transcript_text(audio.len()));
    assert!(v["usage"]["seconds"].as_u64().unwrap() >= 1, "{v}");

    let reqs = dg.requests();
    assert_eq!(reqs.len(), 1);
    let sent = &reqs[0];
    assert_eq!(sent.path, "/v1/listen");
    assert_eq!(
        sent.query.as_deref(),
        Some("model=nova-3&smart_format=true&language=en")
    );
    assert_eq!(
        sent.raw.to_vec(),
        audio,
        "the audio must arrive byte for byte"
    );
    assert_eq!(sent.headers["content-type"], "audio/wav");
    assert_eq!(
        sent.headers["authorization"],
        format!("Token {DG_KEY}").as_str()
    );
    assert_master_key_absent(&sent.headers);
}

#[tokio::test(flavor = "multi_thread")]
async fn deepgram_transcripts_come_back_in_each_response_format() {
    let (_el, dg, proxy) = setup().await;
    let audio = audio();
    let text = dg::transcript_text(audio.len());

    let (ct, plain) =
        ok_text(transcribe(&proxy, "dg-stt", &[("response_format", "text")], &audio).await).await;
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(plain, format!("{text}\n"));
    // No language: Deepgram detects it, as OpenAI does.
    assert_eq!(
        dg.requests().pop().unwrap().query_param("detect_language"),
        Some("true")
    );

    let (_, srt) =
        ok_text(transcribe(&proxy, "dg-stt", &[("response_format", "srt")], &audio).await).await;
    assert_eq!(
        srt,
        format!(
            "1\n00:00:00,080 --> 00:00:02,000\nHello from the fake Deepgram.\n\n2\n00:00:02,680 --> 00:00:04,600\nYour audio was {} bytes.\n\n",
            audio.len()
        )
    );
    assert_eq!(
        dg.requests().pop().unwrap().query_param("utterances"),
        Some("true")
    );

    let (ct, vtt) =
        ok_text(transcribe(&proxy, "dg-stt", &[("response_format", "vtt")], &audio).await).await;
    assert!(ct.starts_with("text/vtt"), "{ct}");
    assert!(
        vtt.starts_with("WEBVTT\n\n00:00:00.080 --> 00:00:02.000\nHello from the fake Deepgram.\n"),
        "{vtt}"
    );

    let v = json_ok(
        transcribe(
            &proxy,
            "dg-stt",
            &[
                ("response_format", "verbose_json"),
                ("timestamp_granularities[]", "word"),
            ],
            &audio,
        )
        .await,
    )
    .await;
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "english");
    assert_eq!(v["text"], text);
    assert_eq!(v["segments"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["segments"][1]["text"],
        format!("Your audio was {} bytes.", audio.len())
    );
    assert_eq!(
        v["words"][0],
        json!({"word": "Hello", "start": 0.08, "end": 0.4})
    );
    assert!(v["duration"].as_f64().unwrap() > 4.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn deepgram_errors_become_openai_errors() {
    let (_el, dg, proxy) = setup().await;
    let audio = audio();
    dg.push_fault(dg::Fault::Error {
        status: 402,
        body: dg::documented_error(402),
    });
    let (message, v) = error_message(transcribe(&proxy, "dg-stt", &[], &audio).await, 502).await;
    assert_eq!(v["error"]["code"], "upstream_billing");
    assert!(message.contains("credits"), "{message}");

    dg.push_fault(dg::Fault::Error {
        status: 400,
        body: dg::documented_error(400),
    });
    let (message, v) = error_message(transcribe(&proxy, "dg-stt", &[], &audio).await, 400).await;
    assert_eq!(v["error"]["param"], "file");
    assert!(message.contains("corrupt or unsupported data"), "{message}");

    let (_, v) = error_message(transcribe(&proxy, "dg-badkey", &[], &audio).await, 502).await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
}

// ---------------------------------------------------------------------------
// Deepgram text to speech
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn deepgram_speech_covers_every_openai_format() {
    let (_el, dg, proxy) = setup().await;
    for (format, encoding, container, content_type) in [
        ("mp3", "mp3", "none", "audio/mpeg"),
        ("opus", "opus", "ogg", "audio/opus"),
        ("aac", "aac", "none", "audio/aac"),
        ("flac", "flac", "none", "audio/flac"),
        ("wav", "linear16", "wav", "audio/wav"),
        ("pcm", "linear16", "none", "audio/pcm"),
    ] {
        let resp = post_speech(
            &proxy,
            &json!({"model": "dg-tts", "input": "Hello there", "voice": "alloy", "response_format": format}),
        )
        .await;
        assert_eq!(resp.status(), 200, "{format}");
        assert_eq!(resp.headers()["content-type"], content_type, "{format}");
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            body.to_vec(),
            expected(dg::audio_chunks("Hello there", encoding, container))
        );
        let sent = dg.requests().pop().unwrap();
        assert_eq!(sent.path, "/v1/speak");
        assert_eq!(sent.query_param("model"), Some("aura-2-andromeda-en"));
        assert_eq!(sent.query_param("encoding"), Some(encoding));
        assert_eq!(sent.body, json!({"text": "Hello there"}));
    }
    // An Aura voice name picks the voice.
    let resp = post_speech(
        &proxy,
        &json!({"model": "dg-tts", "input": "Hi", "voice": "aura-2-thalia-en"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        dg.requests().pop().unwrap().query_param("model"),
        Some("aura-2-thalia-en")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deepgram_stream_cut_mid_audio_is_not_a_complete_response() {
    let (_el, dg, proxy) = setup().await;
    dg.push_fault(dg::Fault::CutStream { after: 2 });
    let resp = post_speech(
        &proxy,
        &json!({"model": "dg-tts", "input": SPOKEN, "voice": "alloy"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (chunks, err) = read_chunks(resp).await;
    assert!(
        err.is_some(),
        "a cut upstream must end the body with an error"
    );
    let full = expected(dg::audio_chunks(SPOKEN, "mp3", "none"));
    let got = concat(&chunks);
    assert!(got.len() < full.len() && full.starts_with(&got));
}

#[tokio::test(flavor = "multi_thread")]
async fn deepgram_speed_is_refused_before_any_upstream_call() {
    let (_el, dg, proxy) = setup().await;
    let resp = post_speech(
        &proxy,
        &json!({"model": "dg-tts", "input": "Hi", "voice": "alloy", "speed": 1.5}),
    )
    .await;
    let (_, v) = error_message(resp, 400).await;
    assert_eq!(v["error"]["param"], "speed");
    assert!(dg.requests().is_empty());
}
