//! A minimal incremental SSE splitter and classifier for OpenAI chat streams.
//!
//! Bytes go in as they arrive; complete events (terminated by a blank line) come out
//! classified. Only what the benchmark needs is recognised: `[DONE]`, an error event,
//! a chunk whose `delta.content` is a non-empty string, and everything else.

/// What one complete SSE event carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A `data:` event whose `delta.content` is a non-empty string.
    Content,
    /// Any other `data:` JSON event (role chunk, finish chunk, usage chunk).
    Other,
    /// `data: [DONE]`.
    Done,
    /// `data: {"error": ...}`, which is how a proxy reports a failure mid-stream.
    Error,
}

#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
}

impl Splitter {
    /// Appends `bytes` and calls `on_event` for every event completed by them.
    /// Blocks without a `data:` line (comments, keep-alives) are skipped.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(Event)) {
        self.buf.extend_from_slice(bytes);
        let mut consumed = 0;
        while let Some((end, sep_len)) = find_event_end(&self.buf[consumed..]) {
            let block = &self.buf[consumed..consumed + end];
            if let Some(event) = classify(block) {
                on_event(event);
            }
            consumed += end + sep_len;
        }
        if consumed > 0 {
            self.buf.drain(..consumed);
        }
    }

    /// Bytes received that do not (yet) form a complete event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Position and length of the first blank-line separator (`\n\n` or `\r\n\r\n`).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = find(buf, b"\n\n").map(|i| (i, 2));
    let crlf = find(buf, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn classify(block: &[u8]) -> Option<Event> {
    let mut data: Option<&[u8]> = None;
    for line in block.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            // One data line per event in OpenAI streams; keep the first.
            if data.is_none() {
                data = Some(rest.strip_prefix(b" ").unwrap_or(rest));
            }
        }
    }
    let data = data?;
    if data == b"[DONE]" {
        return Some(Event::Done);
    }
    if data.starts_with(b"{\"error\"") {
        return Some(Event::Error);
    }
    if has_content(data) {
        Some(Event::Content)
    } else {
        Some(Event::Other)
    }
}

/// True when the chunk has a `"content":"..."` value that is not the empty string.
/// A substring test, not a JSON parse: the load generator shares the machine with the
/// code under test, so it must stay cheap.
fn has_content(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    let mut rest = data;
    while let Some(i) = find(rest, KEY) {
        let after = &rest[i + KEY.len()..];
        if after.first().is_some_and(|b| *b != b'"') {
            return true;
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<Event> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |e| out.push(e));
        }
        out
    }

    #[test]
    fn classifies_an_openai_stream() {
        let role = br#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}"#;
        let content = br#"data: {"choices":[{"index":0,"delta":{"content":"tok0 "}}]}"#;
        let finish = br#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        let mut all = Vec::new();
        for part in [&role[..], &content[..], &finish[..], b"data: [DONE]"] {
            all.extend_from_slice(part);
            all.extend_from_slice(b"\n\n");
        }
        assert_eq!(
            events(&[&all]),
            vec![Event::Other, Event::Content, Event::Other, Event::Done]
        );
    }

    #[test]
    fn events_split_across_reads_and_crlf() {
        let got = events(&[
            b"data: {\"delta\":{\"cont",
            b"ent\":\"x\"}}\r\n",
            b"\r\n: keep-alive\n\ndata: [DO",
            b"NE]\n\n",
        ]);
        assert_eq!(got, vec![Event::Content, Event::Done]);
    }

    #[test]
    fn error_event_and_pending_bytes() {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        s.feed(
            b"data: {\"error\":{\"message\":\"upstream\"}}\n\ndata: {",
            |e| out.push(e),
        );
        assert_eq!(out, vec![Event::Error]);
        assert_eq!(s.pending(), 7);
    }
}
