//! Reading usage and finish reasons off an OpenAI SSE stream on its way past.
//!
//! Chunks are forwarded as they are (no copy) whenever they hold only whole
//! events without a usage object. Only an event carrying `"usage": {...}` is
//! parsed, and it is dropped when the proxy itself asked the upstream for usage
//! (`stream_options.include_usage`) on behalf of a client that did not.

use crate::pipeline::Usage;
use bytes::{Bytes, BytesMut};
use memchr::memmem::{Finder, FinderRev};
use serde::Deserialize;
use std::sync::LazyLock;

#[derive(Deserialize, Default)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    /// Images and gpt-4o transcriptions say `input_tokens` / `output_tokens`.
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    /// Rerank servers report only a total: all of it is input.
    #[serde(default)]
    total_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Usage {
        let mut prompt_tokens = w.prompt_tokens.max(w.input_tokens);
        let completion_tokens = w.completion_tokens.max(w.output_tokens);
        if prompt_tokens == 0 && completion_tokens == 0 {
            prompt_tokens = w.total_tokens;
        }
        Usage {
            prompt_tokens,
            completion_tokens,
            cached_tokens: w
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: w
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cache_creation_input_tokens)
                .unwrap_or(0),
            reasoning_tokens: w
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    #[serde(borrow, default)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

/// The fields the proxy reads from an answer or a chunk.
#[derive(Deserialize)]
pub(crate) struct WireAnswer<'a> {
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
    #[serde(borrow, default)]
    pub(crate) model: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<WireChoice<'a>>>,
}

impl WireAnswer<'_> {
    pub(crate) fn finish_reasons(&self) -> impl Iterator<Item = &str> {
        self.choices
            .iter()
            .flatten()
            .filter_map(|c| c.finish_reason.as_deref())
    }

    fn has_no_choices(&self) -> bool {
        self.choices.as_ref().is_some_and(Vec::is_empty)
    }
}

/// What a non-streaming answer says about itself; `None` if it is not JSON.
pub fn read_answer(body: &[u8]) -> Option<(Option<Usage>, Option<String>, Vec<String>)> {
    let a: WireAnswer<'_> = serde_json::from_slice(body).ok()?;
    let reasons = a.finish_reasons().map(str::to_string).collect();
    Some((
        a.usage.map(Usage::from),
        a.model.map(|m| m.into_owned()),
        reasons,
    ))
}

#[derive(Default)]
pub struct UsageTap {
    partial: BytesMut,
    /// Drop the usage-only chunk: the client did not ask for it.
    strip_usage_chunk: bool,
    pub usage: Option<Usage>,
    pub response_model: Option<String>,
    pub finish_reasons: Vec<String>,
}

/// Searchers built once: `memmem::find` builds one on every call, which cost
/// more than the search itself on chunks of a few hundred bytes.
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static FINISH_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"finish_reason\":"));
static EVENT_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
static LAST_EVENT_END: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"\n\n"));

/// Whether `event` mentions a usage object (not `"usage":null`).
fn mentions_usage(event: &[u8]) -> bool {
    let mut rest = event;
    while let Some(i) = USAGE_KEY.find(rest) {
        let after = &rest[i + 7..];
        let value = after
            .iter()
            .position(|b| !matches!(b, b' ' | b':' | b'\t'))
            .map(|p| after[p]);
        if value == Some(b'{') {
            return true;
        }
        rest = after;
    }
    false
}

/// Whether `event` has a finish reason that is a string (`"finish_reason":"`
/// or `"finish_reason": "`), not `null`.
fn mentions_finish(event: &[u8]) -> bool {
    FINISH_KEY.find_iter(event).any(|at| {
        let after = &event[at + FINISH_KEY.needle().len()..];
        after.strip_prefix(b" ").unwrap_or(after).first() == Some(&b'"')
    })
}

impl UsageTap {
    pub fn new(strip_usage_chunk: bool) -> UsageTap {
        UsageTap {
            strip_usage_chunk,
            ..UsageTap::default()
        }
    }

    /// The bytes to forward for `chunk` (possibly empty while an event is incomplete).
    pub fn process(&mut self, chunk: Bytes) -> Bytes {
        if self.partial.is_empty() && chunk.ends_with(b"\n\n") && !mentions_usage(&chunk) {
            if mentions_finish(&chunk) {
                self.inspect_events(&chunk);
            }
            return chunk;
        }
        self.partial.extend_from_slice(&chunk);
        let Some(end) = LAST_EVENT_END.rfind(&self.partial) else {
            return Bytes::new();
        };
        let complete = self.partial.split_to(end + 2).freeze();
        if !mentions_usage(&complete) && !mentions_finish(&complete) {
            return complete;
        }
        let mut out = BytesMut::with_capacity(complete.len());
        for event in split_events(&complete) {
            if self.inspect(event) {
                out.extend_from_slice(event);
            }
        }
        out.freeze()
    }

    /// Whatever is left when the stream ends (an unterminated final event).
    pub fn flush(&mut self) -> Bytes {
        std::mem::take(&mut self.partial).freeze()
    }

    fn inspect_events(&mut self, chunk: &[u8]) {
        for event in split_events(chunk) {
            self.inspect(event);
        }
    }

    /// Record what the event says; `false` means drop it.
    fn inspect(&mut self, event: &[u8]) -> bool {
        if !mentions_usage(event) && !mentions_finish(event) {
            return true;
        }
        let Some(json) = event_data(event) else {
            return true;
        };
        let Ok(answer) = serde_json::from_slice::<WireAnswer<'_>>(json) else {
            return true;
        };
        self.finish_reasons
            .extend(answer.finish_reasons().map(str::to_string));
        if self.response_model.is_none() {
            self.response_model = answer.model.as_deref().map(str::to_string);
        }
        let usage_only = answer.has_no_choices();
        if let Some(u) = answer.usage {
            self.usage = Some(u.into());
            if self.strip_usage_chunk && usage_only {
                return false;
            }
        }
        true
    }
}

/// Whole events, each with its trailing blank line.
fn split_events(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = EVENT_END.find(rest).map_or(rest.len(), |i| i + 2);
        let (event, tail) = rest.split_at(end);
        rest = tail;
        Some(event)
    })
}

/// The `data:` payload of an event (single-line data, as OpenAI sends).
fn event_data(event: &[u8]) -> Option<&[u8]> {
    event.split(|b| *b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let data = line.strip_prefix(b"data:")?;
        Some(data.strip_prefix(b" ").unwrap_or(data))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_other_endpoints_is_read() {
        let (images, _, _) = read_answer(
            br#"{"created":1,"data":[],"usage":{"input_tokens":50,"output_tokens":4160,"total_tokens":4210}}"#,
        )
        .unwrap();
        let images = images.unwrap();
        assert_eq!((images.prompt_tokens, images.completion_tokens), (50, 4160));
        let (rerank, _, _) = read_answer(br#"{"results":[],"usage":{"total_tokens":37}}"#).unwrap();
        let rerank = rerank.unwrap();
        assert_eq!((rerank.prompt_tokens, rerank.completion_tokens), (37, 0));
        let (chat, _, _) =
            read_answer(br#"{"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#)
                .unwrap();
        assert_eq!(chat.unwrap().total(), 5);
    }

    const CHUNK: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    const FINISH: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    const USAGE: &[u8] = b"data: {\"id\":\"c\",\"model\":\"gpt-4o-2024\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";

    fn run(tap: &mut UsageTap, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&tap.process(Bytes::copy_from_slice(c)));
        }
        out.extend_from_slice(&tap.flush());
        out
    }

    #[test]
    fn plain_chunks_pass_without_copy() {
        let mut tap = UsageTap::new(false);
        let chunk = Bytes::from_static(CHUNK);
        let out = tap.process(chunk.clone());
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }

    #[test]
    fn usage_is_read_and_kept_when_client_asked() {
        let mut tap = UsageTap::new(false);
        let all = [CHUNK, FINISH, USAGE, DONE].concat();
        let out = run(&mut tap, &[CHUNK, FINISH, USAGE, DONE]);
        assert_eq!(out, all);
        let u = tap.usage.unwrap_or_default();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (11, 7, 3)
        );
        assert_eq!(tap.finish_reasons, vec!["stop"]);
        assert_eq!(tap.response_model.as_deref(), Some("gpt-4o-2024"));
    }

    #[test]
    fn injected_usage_chunk_is_stripped_even_when_split() {
        let mut tap = UsageTap::new(true);
        let all = [CHUNK, FINISH, USAGE, DONE].concat();
        // Split at every possible point, one cut each.
        for cut in 1..all.len() {
            let mut tap2 = UsageTap::new(true);
            let out = run(&mut tap2, &[&all[..cut], &all[cut..]]);
            assert_eq!(out, [CHUNK, FINISH, DONE].concat(), "cut at {cut}");
            assert_eq!(tap2.usage.map(|u| u.total()), Some(18));
        }
        let out = run(&mut tap, &[CHUNK, FINISH, USAGE, DONE]);
        assert_eq!(out, [CHUNK, FINISH, DONE].concat());
    }
}
