//! OpenAI wire shapes, written by hand into byte buffers: the fixed parts of every
//! payload are literals and only ids, timestamps, the model name and counts are spliced in,
//! which keeps the mock far cheaper than the code it is used to measure.

use std::fmt::Write as _;
use std::sync::LazyLock;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};

use crate::body::PacedFrame;
use crate::rng::{fnv1a, splitmix64};

pub(crate) const CONTENT: &str = "Hello from mock-upstream.";
/// Completion tokens billed per choice for a non-streamed answer.
pub(crate) const COMPLETION_TOKENS: u64 = 5;
pub(crate) const DEFAULT_EMBEDDING_DIMS: usize = 8;
pub(crate) const MAX_EMBEDDING_DIMS: usize = 4096;

pub(crate) const SERVER_ERROR_BODY: &[u8] = br#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#;
pub(crate) const RATE_LIMIT_BODY: &[u8] = br#"{"error":{"message":"Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again later.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
pub(crate) const INVALID_KEY_BODY: &[u8] = br#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
pub(crate) const MISSING_KEY_BODY: &[u8] = br#"{"error":{"message":"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
pub(crate) const GARBAGE_BODY: &[u8] = b"mock-upstream garbage, not JSON: {\"choices\": [ <<<";
pub(crate) const HTML_ERROR_BODY: &[u8] = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>mock-upstream</center>\r\n</body>\r\n</html>\r\n";
pub(crate) const DONE_FRAME: &str = "data: [DONE]\n\n";

/// `{"error":{...}}` with arbitrary message/param/code, fields in OpenAI's order.
pub(crate) fn error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Bytes {
    let or_null = |value: Option<&str>| value.map_or_else(|| String::from("null"), json_str);
    Bytes::from(format!(
        r#"{{"error":{{"message":{},"type":{},"param":{},"code":{}}}}}"#,
        json_str(message),
        json_str(kind),
        or_null(param),
        or_null(code)
    ))
}

/// Quotes and escapes `s` as a JSON string.
pub(crate) fn json_str(s: &str) -> String {
    let needs_escape = s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    if needs_escape {
        serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
    } else {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        out
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
}

impl Usage {
    fn write_chat(self, out: &mut impl std::fmt::Write) {
        let _ = write!(
            out,
            r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}"#,
            self.prompt_tokens,
            self.completion_tokens,
            self.prompt_tokens + self.completion_tokens
        );
    }

    fn write_legacy(self, out: &mut impl std::fmt::Write) {
        let _ = write!(
            out,
            r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}"#,
            self.prompt_tokens,
            self.completion_tokens,
            self.prompt_tokens + self.completion_tokens
        );
    }
}

/// Which OpenAI generation endpoint a payload is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Legacy,
}

pub(crate) struct Completion<'a> {
    pub(crate) api: Api,
    pub(crate) id: u64,
    pub(crate) created: u64,
    /// Already JSON-quoted.
    pub(crate) model_json: &'a str,
    pub(crate) n: u32,
    pub(crate) usage: Usage,
}

impl Completion<'_> {
    fn write_head(&self, out: &mut impl std::fmt::Write, object: &str) {
        let id_prefix = match self.api {
            Api::Chat => "chatcmpl",
            Api::Legacy => "cmpl",
        };
        let _ = write!(
            out,
            r#"{{"id":"{id_prefix}-{}","object":"{object}","created":{},"model":{},"#,
            self.id, self.created, self.model_json
        );
    }

    /// The complete non-streamed response body.
    pub(crate) fn full_body(&self) -> Bytes {
        let mut out = String::with_capacity(640 + 200 * self.n as usize);
        match self.api {
            Api::Chat => {
                self.write_head(&mut out, "chat.completion");
                out.push_str(r#""choices":["#);
                for index in 0..self.n {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(
                        out,
                        r#"{{"index":{index},"message":{{"role":"assistant","content":"{CONTENT}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}"#
                    );
                }
                out.push_str(r#"],"usage":"#);
                self.usage.write_chat(&mut out);
                out.push_str(r#","service_tier":"default","system_fingerprint":"fp_mock"}"#);
            }
            Api::Legacy => {
                self.write_head(&mut out, "text_completion");
                out.push_str(r#""system_fingerprint":"fp_mock","choices":["#);
                for index in 0..self.n {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(
                        out,
                        r#"{{"text":"{CONTENT}","index":{index},"logprobs":null,"finish_reason":"stop"}}"#
                    );
                }
                out.push_str(r#"],"usage":"#);
                self.usage.write_legacy(&mut out);
                out.push('}');
            }
        }
        Bytes::from(out)
    }

    /// The frames of a streamed response.
    ///
    /// `content_chunks` content steps are emitted (one frame per choice each); `tail` adds
    /// the finish chunk(s), the usage chunk when `include_usage` and `data: [DONE]`.
    /// Chat streams open with a role chunk at step 0; content step `i` is step `i + 1`;
    /// the tail shares the step of the `total_chunks`-th content chunk so it follows the
    /// last content immediately.
    pub(crate) fn stream_frames(
        &self,
        total_chunks: usize,
        content_chunks: usize,
        tail: bool,
        include_usage: bool,
    ) -> Vec<PacedFrame> {
        let mut prefix = String::with_capacity(200);
        prefix.push_str("data: ");
        match self.api {
            Api::Chat => self.write_head(&mut prefix, "chat.completion.chunk"),
            Api::Legacy => self.write_head(&mut prefix, "text_completion"),
        }
        prefix.push_str(r#""system_fingerprint":"fp_mock","choices":["#);
        let close = if include_usage {
            "],\"usage\":null}\n\n"
        } else {
            "]}\n\n"
        };

        let n = self.n as usize;
        let frame_count = n * (content_chunks + 2) + 2;
        let mut frames = FrameWriter::with_capacity(frame_count, frame_count * (prefix.len() + 96));
        let step_of = |content_index: usize| u32::try_from(content_index + 1).unwrap_or(u32::MAX);

        if self.api == Api::Chat {
            for index in 0..n {
                frames.push_choice(
                    0,
                    &prefix,
                    format_args!(
                        r#"{{"index":{index},"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}"#
                    ),
                    close,
                );
            }
        }
        for chunk in 0..content_chunks {
            for index in 0..n {
                match self.api {
                    Api::Chat => frames.push_choice(
                        step_of(chunk),
                        &prefix,
                        format_args!(
                            r#"{{"index":{index},"delta":{{"content":"tok{chunk} "}},"logprobs":null,"finish_reason":null}}"#
                        ),
                        close,
                    ),
                    Api::Legacy => frames.push_choice(
                        step_of(chunk),
                        &prefix,
                        format_args!(
                            r#"{{"text":"tok{chunk} ","index":{index},"logprobs":null,"finish_reason":null}}"#
                        ),
                        close,
                    ),
                }
            }
        }
        if tail {
            let tail_step = if total_chunks == 0 {
                0
            } else {
                step_of(total_chunks - 1)
            };
            for index in 0..n {
                match self.api {
                    Api::Chat => frames.push_choice(
                        tail_step,
                        &prefix,
                        format_args!(
                            r#"{{"index":{index},"delta":{{}},"logprobs":null,"finish_reason":"stop"}}"#
                        ),
                        close,
                    ),
                    Api::Legacy => frames.push_choice(
                        tail_step,
                        &prefix,
                        format_args!(
                            r#"{{"text":"","index":{index},"logprobs":null,"finish_reason":"stop"}}"#
                        ),
                        close,
                    ),
                }
            }
            if include_usage {
                frames.push_str(&prefix);
                frames.push_str("],\"usage\":");
                match self.api {
                    Api::Chat => self.usage.write_chat(&mut frames.buf),
                    Api::Legacy => self.usage.write_legacy(&mut frames.buf),
                }
                frames.push_str("}\n\n");
                frames.end(tail_step);
            }
            frames.push_str(DONE_FRAME);
            frames.end(tail_step);
        }
        frames.finish()
    }
}

/// Serialises all frames of a stream into one buffer, then hands out zero-copy slices.
struct FrameWriter {
    buf: BytesMut,
    marks: Vec<(u32, usize)>,
}

impl FrameWriter {
    fn with_capacity(frames: usize, bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(bytes),
            marks: Vec::with_capacity(frames),
        }
    }

    fn push_str(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn end(&mut self, step: u32) {
        self.marks.push((step, self.buf.len()));
    }

    fn push_choice(
        &mut self,
        step: u32,
        prefix: &str,
        choice: std::fmt::Arguments<'_>,
        close: &str,
    ) {
        self.push_str(prefix);
        let _ = self.buf.write_fmt(choice);
        self.push_str(close);
        self.end(step);
    }

    fn finish(self) -> Vec<PacedFrame> {
        let mut all = self.buf.freeze();
        let mut consumed = 0;
        self.marks
            .into_iter()
            .map(|(step, end)| {
                let data = all.split_to(end - consumed);
                consumed = end;
                PacedFrame { step, data }
            })
            .collect()
    }
}

/// `/v1/embeddings` response: one deterministic unit vector per input, derived from the
/// input's own bytes so the same text always embeds the same way.
pub(crate) fn embeddings_body(
    model_json: &str,
    inputs: &[&[u8]],
    dims: usize,
    base64: bool,
    prompt_tokens: u64,
) -> Bytes {
    let mut out = String::with_capacity(96 + inputs.len() * (64 + dims * 14));
    out.push_str(r#"{"object":"list","data":["#);
    let mut vector = Vec::with_capacity(dims);
    for (index, input) in inputs.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        deterministic_vector(input, dims, &mut vector);
        let _ = write!(
            out,
            r#"{{"object":"embedding","index":{index},"embedding":"#
        );
        if base64 {
            let raw: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(&raw, &mut out);
            out.push('"');
        } else {
            out.push('[');
            for (i, v) in vector.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{v}");
            }
            out.push(']');
        }
        out.push('}');
    }
    let _ = write!(
        out,
        r#"],"model":{model_json},"usage":{{"prompt_tokens":{prompt_tokens},"total_tokens":{prompt_tokens}}}}}"#
    );
    Bytes::from(out)
}

fn deterministic_vector(input: &[u8], dims: usize, out: &mut Vec<f32>) {
    out.clear();
    let seed = fnv1a(input);
    for j in 0..dims as u64 {
        // 24 random bits map exactly onto an f32 mantissa, giving a value in [-1, 1).
        let bits = (splitmix64(seed.wrapping_add(j)) >> 40) as u32;
        out.push(bits as f32 / (1u32 << 23) as f32 - 1.0);
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|v| *v /= norm);
    }
}

/// `(id, created)` of the models the mock claims to serve.
pub(crate) const MODELS: &[(&str, u64)] = &[
    ("gpt-4o", 1_715_367_049),
    ("gpt-4o-mini", 1_721_172_741),
    ("gpt-4.1", 1_744_316_542),
    ("o3-mini", 1_737_146_383),
    ("gpt-3.5-turbo-instruct", 1_692_901_427),
    ("text-embedding-3-small", 1_705_948_997),
    ("gpt-image-1", 1_745_517_030),
    ("dall-e-3", 1_698_785_189),
    ("tts-1", 1_681_940_951),
    ("gpt-4o-mini-tts", 1_742_403_959),
    ("whisper-1", 1_677_532_384),
    ("gpt-4o-transcribe", 1_742_068_463),
    ("omni-moderation-latest", 1_731_689_265),
];

fn write_model(out: &mut String, id: &str, created: u64) {
    let _ = write!(
        out,
        r#"{{"id":{},"object":"model","created":{created},"owned_by":"mock"}}"#,
        json_str(id)
    );
}

pub(crate) static MODELS_BODY: LazyLock<Bytes> = LazyLock::new(|| {
    let mut out = String::from(r#"{"object":"list","data":["#);
    for (i, (id, created)) in MODELS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_model(&mut out, id, *created);
    }
    out.push_str("]}");
    Bytes::from(out)
});

pub(crate) fn model_body(id: &str) -> Option<Bytes> {
    let (id, created) = MODELS.iter().find(|(known, _)| *known == id)?;
    let mut out = String::new();
    write_model(&mut out, id, *created);
    Some(Bytes::from(out))
}
