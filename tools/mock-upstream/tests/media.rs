//! The mock's non-chat endpoints answer in the shapes the providers document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use mock_upstream::{form, Fault, MockConfig, MockServer};
use serde_json::{json, Value};

async fn server(config: MockConfig) -> MockServer {
    MockServer::start(config).await.unwrap()
}

async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", server.base_url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let ct = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(ct, "application/json");
    serde_json::from_str(&text).unwrap()
}

async fn error_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    let error = body["error"].clone();
    assert!(error["message"].is_string(), "{body}");
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    error
}

const BOUNDARY: &str = "mockTestBoundary7MA4YWxk";

fn form_body(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    if let Some((filename, data)) = file {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn transcribe(server: &MockServer, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/audio/transcriptions", server.base_url()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

// ------------------------------------------------------------------ images

#[tokio::test(flavor = "multi_thread")]
async fn gpt_image_answers_base64_pngs_with_token_usage() {
    let server = server(MockConfig::default()).await;
    let v = ok_json(
        post(
            &server,
            "/images/generations",
            &json!({"model": "gpt-image-1", "prompt": "a red fox", "n": 2, "quality": "low"}),
        )
        .await,
    )
    .await;
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let png = base64::engine::general_purpose::STANDARD
        .decode(data[0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(data[0].get("url").is_none());
    assert_eq!(v["size"], "1024x1024");
    assert_eq!(v["quality"], "low");
    let usage = &v["usage"];
    assert_eq!(usage["output_tokens"], 2 * 272);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        usage["input_tokens_details"]["text_tokens"],
        usage["input_tokens"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dall_e_answers_urls_by_default_and_base64_on_request() {
    let server = server(MockConfig::default()).await;
    let urls = ok_json(
        post(
            &server,
            "/images/generations",
            &json!({"model": "dall-e-3", "prompt": "a lighthouse", "size": "1792x1024"}),
        )
        .await,
    )
    .await;
    let image = &urls["data"][0];
    assert!(image["url"].as_str().unwrap().starts_with("https://"));
    assert!(image["revised_prompt"]
        .as_str()
        .unwrap()
        .contains("a lighthouse"));
    assert!(
        urls.get("usage").is_none(),
        "DALL-E reports no usage: {urls}"
    );

    let b64 = ok_json(
        post(
            &server,
            "/images/generations",
            &json!({"model": "dall-e-2", "prompt": "x", "n": 3, "response_format": "b64_json", "size": "256x256"}),
        )
        .await,
    )
    .await;
    assert_eq!(b64["data"].as_array().unwrap().len(), 3);
    assert!(b64["data"][2]["b64_json"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn image_requests_are_validated_like_openai() {
    let server = server(MockConfig::default()).await;
    for (body, param) in [
        (json!({"model": "gpt-image-1"}), "prompt"),
        (json!({"model": "gpt-image-1", "prompt": ""}), "prompt"),
        (json!({"model": "dall-e-2", "prompt": "x", "n": 11}), "n"),
        (json!({"model": "dall-e-3", "prompt": "x", "n": 2}), "n"),
        (
            json!({"model": "dall-e-2", "prompt": "x", "size": "1792x1024"}),
            "size",
        ),
        (
            json!({"model": "dall-e-2", "prompt": "x", "response_format": "png"}),
            "response_format",
        ),
    ] {
        let error = error_of(post(&server, "/images/generations", &body).await, 400).await;
        assert_eq!(error["param"], param, "{body}");
    }
}

// ------------------------------------------------------------------ speech

#[tokio::test(flavor = "multi_thread")]
async fn speech_is_binary_audio_with_the_format_content_type() {
    let server = server(MockConfig {
        chunks: 3,
        ..MockConfig::default()
    })
    .await;
    for (format, content_type, magic) in [
        ("mp3", "audio/mpeg", b"ID3".as_slice()),
        ("opus", "audio/opus", b"OggS"),
        ("aac", "audio/aac", b"\xFF\xF1"),
        ("flac", "audio/flac", b"fLaC"),
        ("wav", "audio/wav", b"RIFF"),
        ("pcm", "audio/pcm", b""),
    ] {
        let response = post(
            &server,
            "/audio/speech",
            &json!({"model": "tts-1", "input": "Hello there", "voice": "alloy", "response_format": format}),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], content_type);
        let bytes = response.bytes().await.unwrap();
        let expected: Vec<u8> = mock_upstream::speech_chunks("Hello there", format, 3).concat();
        assert_eq!(&bytes[..], &expected[..], "{format}");
        assert!(bytes.starts_with(magic), "{format}");
    }
    // mp3 is the default.
    let response = post(
        &server,
        "/audio/speech",
        &json!({"model": "tts-1", "input": "x", "voice": "alloy"}),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
}

#[tokio::test(flavor = "multi_thread")]
async fn speech_arrives_in_paced_chunks() {
    let server = server(MockConfig {
        chunks: 4,
        chunk_interval_ms: 60,
        ..MockConfig::default()
    })
    .await;
    let started = Instant::now();
    let mut response = post(
        &server,
        "/audio/speech",
        &json!({"model": "tts-1", "input": "paced", "voice": "alloy", "response_format": "pcm"}),
    )
    .await;
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(
        server.streams_completed(),
        0,
        "the first chunk came before the end"
    );
    let mut total = first.len();
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 4 * mock_upstream::SPEECH_CHUNK_BYTES);
    assert!(started.elapsed() >= first_at + Duration::from_millis(150));
    assert_eq!(server.streams_completed(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn speech_sse_stream_format_sends_base64_deltas_then_done_with_usage() {
    let server = server(MockConfig {
        chunks: 2,
        ..MockConfig::default()
    })
    .await;
    let response = post(
        &server,
        "/audio/speech",
        &json!({"model": "gpt-4o-mini-tts", "input": "hi", "voice": "coral", "stream_format": "sse"}),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    let audio: Vec<u8> = events[..2]
        .iter()
        .flat_map(|e| {
            assert_eq!(e["type"], "speech.audio.delta");
            base64::engine::general_purpose::STANDARD
                .decode(e["audio"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(audio, mock_upstream::speech_chunks("hi", "mp3", 2).concat());
    assert_eq!(events[2]["type"], "speech.audio.done");
    assert!(events[2]["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn speech_requests_are_validated_like_openai() {
    let server = server(MockConfig::default()).await;
    for (body, param) in [
        (json!({"input": "x", "voice": "alloy"}), "model"),
        (json!({"model": "tts-1", "voice": "alloy"}), "input"),
        (json!({"model": "tts-1", "input": "x"}), "voice"),
        (
            json!({"model": "tts-1", "input": "x", "voice": "alloy", "response_format": "ogg"}),
            "response_format",
        ),
        (
            json!({"model": "tts-1", "input": "x", "voice": "alloy", "speed": 5}),
            "speed",
        ),
        (
            json!({"model": "tts-1", "input": "x".repeat(4097), "voice": "alloy"}),
            "input",
        ),
    ] {
        let error = error_of(post(&server, "/audio/speech", &body).await, 400).await;
        assert_eq!(error["param"], param, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn truncating_speech_cuts_the_connection_mid_audio() {
    let server = server(MockConfig {
        chunks: 4,
        fault: Some(Fault::TruncateStream),
        ..MockConfig::default()
    })
    .await;
    let mut response = post(
        &server,
        "/audio/speech",
        &json!({"model": "tts-1", "input": "x", "voice": "alloy", "response_format": "pcm"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut got = 0;
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => got += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(outcome.is_err(), "a cut body is an error, not a clean end");
    assert_eq!(got, 2 * mock_upstream::SPEECH_CHUNK_BYTES);
}

// ------------------------------------------------------------------ transcriptions

#[tokio::test(flavor = "multi_thread")]
async fn transcription_json_names_the_model_and_the_uploaded_bytes() {
    let server = server(MockConfig::default()).await;
    let audio: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let v = ok_json(
        transcribe(
            &server,
            form_body(&[("model", "whisper-1")], Some(("speech.wav", &audio))),
        )
        .await,
    )
    .await;
    assert_eq!(
        v["text"],
        mock_upstream::transcript_text("whisper-1", "speech.wav", &audio)
    );
    assert_eq!(v["usage"]["type"], "duration");
    assert_eq!(v["usage"]["seconds"], 3);

    let tokens = ok_json(
        transcribe(
            &server,
            form_body(&[("model", "gpt-4o-transcribe")], Some(("a.wav", b"RIFF"))),
        )
        .await,
    )
    .await;
    assert_eq!(tokens["usage"]["type"], "tokens");
    assert!(tokens["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn transcription_text_formats_are_plain_text() {
    let server = server(MockConfig::default()).await;
    let expected = mock_upstream::transcript_text("whisper-1", "a.wav", b"RIFFdata");
    for (format, check) in [
        ("text", format!("{expected}\n")),
        (
            "srt",
            format!("1\n00:00:00,000 --> 00:00:00,500\n{expected}\n\n"),
        ),
        (
            "vtt",
            format!("WEBVTT\n\n00:00:00.000 --> 00:00:00.500\n{expected}\n\n"),
        ),
    ] {
        let response = transcribe(
            &server,
            form_body(
                &[("model", "whisper-1"), ("response_format", format)],
                Some(("a.wav", b"RIFFdata")),
            ),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(response.text().await.unwrap(), check, "{format}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verbose_json_has_segments_and_words_when_asked() {
    let server = server(MockConfig::default()).await;
    let v = ok_json(
        transcribe(
            &server,
            form_body(
                &[
                    ("model", "whisper-1"),
                    ("response_format", "verbose_json"),
                    ("timestamp_granularities[]", "word"),
                    ("timestamp_granularities[]", "segment"),
                ],
                Some(("a.wav", b"RIFFdata")),
            ),
        )
        .await,
    )
    .await;
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "english");
    assert!(v["duration"].as_f64().unwrap() > 0.0);
    let segment = &v["segments"][0];
    for field in [
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    ] {
        assert!(segment.get(field).is_some(), "segment lacks {field}: {v}");
    }
    assert!(v["words"][0]["word"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn transcription_uploads_are_validated() {
    let server = server(MockConfig::default()).await;
    let no_file = error_of(
        transcribe(&server, form_body(&[("model", "whisper-1")], None)).await,
        400,
    )
    .await;
    assert_eq!(no_file["param"], "file");
    let no_model = error_of(
        transcribe(&server, form_body(&[], Some(("a.wav", b"x")))).await,
        400,
    )
    .await;
    assert_eq!(no_model["param"], "model");
    let bad_format = error_of(
        transcribe(
            &server,
            form_body(
                &[("model", "whisper-1"), ("response_format", "docx")],
                Some(("a.wav", b"x")),
            ),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(bad_format["param"], "response_format");
    // gpt-4o transcription models only answer JSON.
    let srt_4o = error_of(
        transcribe(
            &server,
            form_body(
                &[("model", "gpt-4o-transcribe"), ("response_format", "srt")],
                Some(("a.wav", b"x")),
            ),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(srt_4o["param"], "response_format");
    let json_body = post(
        &server,
        "/audio/transcriptions",
        &json!({"model": "whisper-1"}),
    )
    .await;
    let error = error_of(json_body, 400).await;
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("multipart/form-data"));
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_uploads_can_be_read_back_part_by_part() {
    let server = server(MockConfig::default()).await;
    let audio = b"\x00\x01\r\n--not-a-boundary\r\n\xff".to_vec();
    transcribe(
        &server,
        form_body(&[("model", "whisper-1")], Some(("a.wav", &audio))),
    )
    .await;
    let recorded = &server.requests()[0];
    let content_type = recorded.headers["content-type"].to_str().unwrap();
    let parts = form::parse_form(content_type, &recorded.body).unwrap();
    let file = parts.iter().find(|p| p.name == "file").unwrap();
    assert_eq!(file.data, &audio[..]);
}

// ------------------------------------------------------------------ moderations

#[tokio::test(flavor = "multi_thread")]
async fn moderation_results_follow_openais_shape() {
    let server = server(MockConfig::default()).await;
    let v = ok_json(
        post(
            &server,
            "/moderations",
            &json!({"model": "omni-moderation-latest", "input": ["I will kill them", "a nice day"]}),
        )
        .await,
    )
    .await;
    assert!(v["id"].as_str().unwrap().starts_with("modr-"));
    assert_eq!(v["model"], "omni-moderation-latest");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["flagged"], true);
    assert_eq!(results[0]["categories"]["violence"], true);
    assert!(results[0]["category_scores"]["violence"].as_f64().unwrap() > 0.5);
    assert_eq!(results[1]["flagged"], false);
    for category in [
        "harassment",
        "hate",
        "self-harm",
        "sexual/minors",
        "violence/graphic",
    ] {
        assert!(
            results[1]["categories"][category].is_boolean(),
            "{category}"
        );
        assert!(
            results[1]["category_scores"][category].is_f64(),
            "{category}"
        );
    }
    assert_eq!(
        results[1]["category_applied_input_types"]["violence"],
        json!(["text"])
    );

    let multimodal = ok_json(
        post(
            &server,
            "/moderations",
            &json!({"model": "omni-moderation-latest", "input": [
                {"type": "text", "text": "hello"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ]}),
        )
        .await,
    )
    .await;
    assert_eq!(multimodal["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        multimodal["results"][0]["category_applied_input_types"]["violence"],
        json!(["text", "image"])
    );
    let error = error_of(
        post(&server, "/moderations", &json!({"model": "m", "input": []})).await,
        400,
    )
    .await;
    assert_eq!(error["param"], "input");
}

// ------------------------------------------------------------------ rerank

#[tokio::test(flavor = "multi_thread")]
async fn rerank_orders_documents_by_relevance_with_indices_into_the_request() {
    let server = server(MockConfig::default()).await;
    let v = ok_json(
        post(
            &server,
            "/rerank",
            &json!({
                "model": "BAAI/bge-reranker-v2-m3",
                "query": "capital of France",
                "documents": ["Berlin is in Germany.", {"text": "Paris is the capital of France."}, "Tokyo"],
                "top_n": 2,
            }),
        )
        .await,
    )
    .await;
    assert_eq!(v["model"], "BAAI/bge-reranker-v2-m3");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["index"], 1);
    assert_eq!(
        results[0]["document"]["text"],
        "Paris is the capital of France."
    );
    assert!(
        results[0]["relevance_score"].as_f64().unwrap()
            > results[1]["relevance_score"].as_f64().unwrap()
    );
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let bare = ok_json(
        post(
            &server,
            "/rerank",
            &json!({"model": "m", "query": "q", "documents": ["a"], "return_documents": false}),
        )
        .await,
    )
    .await;
    assert!(bare["results"][0].get("document").is_none());
    for (body, param) in [
        (
            json!({"model": "m", "query": "q", "documents": []}),
            "documents",
        ),
        (json!({"model": "m", "documents": ["a"]}), "query"),
        (json!({"query": "q", "documents": ["a"]}), "model"),
    ] {
        let error = error_of(post(&server, "/rerank", &body).await, 400).await;
        assert_eq!(error["param"], param, "{body}");
    }
}

// ------------------------------------------------------------------ OCR

#[tokio::test(flavor = "multi_thread")]
async fn ocr_answers_in_mistrals_shape() {
    let server = server(MockConfig::default()).await;
    let pdf = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7 fake");
    let v = ok_json(
        post(
            &server,
            "/ocr",
            &json!({
                "model": "mistral-ocr-latest",
                "document": {"type": "document_url", "document_url": format!("data:application/pdf;base64,{pdf}")},
                "include_image_base64": true,
            }),
        )
        .await,
    )
    .await;
    assert_eq!(v["model"], "mistral-ocr-latest");
    let pages = v["pages"].as_array().unwrap();
    assert_eq!(pages.len() as u64, mock_upstream::OCR_DOCUMENT_PAGES);
    assert_eq!(pages[1]["index"], 1);
    assert!(pages[0]["markdown"]
        .as_str()
        .unwrap()
        .starts_with("# Page 1"));
    assert_eq!(pages[0]["dimensions"]["dpi"], 200);
    assert!(pages[0]["images"][0]["image_base64"].is_string());
    assert_eq!(v["usage_info"]["pages_processed"], pages.len());
    assert_eq!(v["usage_info"]["doc_size_bytes"], 13);

    let image = ok_json(
        post(
            &server,
            "/ocr",
            &json!({"model": "m", "document": {"type": "image_url", "image_url": {"url": "https://example.com/r.png"}}}),
        )
        .await,
    )
    .await;
    assert_eq!(image["pages"].as_array().unwrap().len(), 1);
    assert_eq!(image["usage_info"]["doc_size_bytes"], Value::Null);

    for (body, param) in [
        (json!({"model": "m"}), "document"),
        (
            json!({"model": "m", "document": {"type": "video_url", "video_url": "x"}}),
            "document.type",
        ),
        (
            json!({"model": "m", "document": {"type": "document_url", "document_url": "data:application/pdf;base64,%%%"}}),
            "document",
        ),
    ] {
        let error = error_of(post(&server, "/ocr", &body).await, 400).await;
        assert_eq!(error["param"], param, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn new_routes_check_the_api_key_and_method() {
    let server = server(MockConfig {
        expected_api_key: Some("sk-right".into()),
        ..MockConfig::default()
    })
    .await;
    for path in [
        "/images/generations",
        "/audio/speech",
        "/audio/transcriptions",
        "/moderations",
        "/rerank",
        "/ocr",
    ] {
        let response = post(&server, path, &json!({"model": "m"})).await;
        assert_eq!(response.status(), 401, "{path}");
        let get = reqwest::Client::new()
            .get(format!("{}{path}", server.base_url()))
            .bearer_auth("sk-right")
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 405, "{path}");
    }
}
