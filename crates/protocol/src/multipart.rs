//! Just enough `multipart/form-data` (RFC 7578) to route an upload: find the
//! parts, read the small text fields, and splice a new `model` value in without
//! copying the file part through a parser's buffers.

use bytes::Bytes;

/// One part of a form, borrowed from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// Byte range of the part's content in the body.
    pub span: (usize, usize),
}

impl Part<'_> {
    pub fn data<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        &body[self.span.0..self.span.1]
    }

    /// The content as text (form fields other than files).
    pub fn text<'b>(&self, body: &'b [u8]) -> Option<&'b str> {
        std::str::from_utf8(self.data(body)).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the Content-Type is not multipart/form-data with a boundary")]
    NoBoundary,
    #[error("the multipart body does not start with its boundary")]
    NoFirstBoundary,
    #[error("a multipart part has no blank line after its headers")]
    UnterminatedHeaders,
    #[error("a multipart part has no Content-Disposition with a name")]
    NoName,
    #[error("the multipart body ends without its closing boundary")]
    Unterminated,
}

/// The boundary from a `multipart/form-data; boundary=...` content type.
pub fn boundary(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 70).then_some(v)
    })
}

/// Every part of `body`, in order.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let finder = memchr::memmem::Finder::new(delimiter);
    let mut pos = finder.find(body).ok_or(MultipartError::NoFirstBoundary)? + delimiter.len();
    // Later delimiters are preceded by CRLF, which belongs to the delimiter.
    let next_delimiter = [b"\r\n".as_slice(), delimiter].concat();
    let next_finder = memchr::memmem::Finder::new(&next_delimiter);
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then CRLF.
        let line_end = memchr::memmem::find(rest, b"\r\n").ok_or(MultipartError::Unterminated)?;
        pos += line_end + 2;
        let header_end = memchr::memmem::find(&body[pos..], b"\r\n\r\n")
            .map(|i| pos + i)
            .or_else(|| {
                body[pos..]
                    .starts_with(b"\r\n")
                    .then_some(pos.saturating_sub(2))
            })
            .ok_or(MultipartError::UnterminatedHeaders)?;
        let headers = std::str::from_utf8(&body[pos..header_end.max(pos)])
            .map_err(|_| MultipartError::NoName)?;
        let content_start = header_end + 4;
        let content_end = next_finder
            .find(&body[content_start.min(body.len())..])
            .map(|i| content_start + i)
            .ok_or(MultipartError::Unterminated)?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in headers.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim();
            if key.eq_ignore_ascii_case("content-disposition") {
                name = param(value, "name");
                filename = param(value, "filename");
            } else if key.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim());
            }
        }
        parts.push(Part {
            name: name.ok_or(MultipartError::NoName)?,
            filename,
            content_type,
            span: (content_start, content_end),
        });
        pos = content_end + next_delimiter.len();
    }
}

/// A `key="value"` (or unquoted) parameter of a Content-Disposition header.
fn param<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = header;
    while let Some(i) = rest.find(key) {
        let before = rest[..i].trim_end();
        let after = &rest[i + key.len()..];
        rest = after;
        if !(before.is_empty() || before.ends_with(';')) {
            continue;
        }
        let Some(after) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let after = after.trim_start();
        if let Some(quoted) = after.strip_prefix('"') {
            return quoted.find('"').map(|end| &quoted[..end]);
        }
        let end = after.find(';').unwrap_or(after.len());
        return Some(after[..end].trim());
    }
    None
}

/// `body` with the bytes in `span` replaced by `value`.
pub fn splice(body: &Bytes, span: (usize, usize), value: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..span.0]);
    out.extend_from_slice(value);
    out.extend_from_slice(&body[span.1..]);
    Bytes::from(out)
}

/// Builds a `multipart/form-data` body, for providers whose upload differs from
/// the client's.
pub struct FormBuilder {
    boundary: String,
    body: Vec<u8>,
}

impl Default for FormBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FormBuilder {
    pub fn new() -> FormBuilder {
        FormBuilder {
            boundary: format!("liter-llm-{:016x}", fastrand_u64()),
            body: Vec::new(),
        }
    }

    pub fn text(mut self, name: &str, value: &str) -> FormBuilder {
        self.header(name, None, None);
        self.body.extend_from_slice(value.as_bytes());
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn file(
        mut self,
        name: &str,
        filename: &str,
        content_type: &str,
        data: &[u8],
    ) -> FormBuilder {
        self.header(name, Some(filename), Some(content_type));
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    fn header(&mut self, name: &str, filename: Option<&str>, content_type: Option<&str>) {
        let clean = |s: &str| s.replace(['"', '\r', '\n'], "_");
        self.body.extend_from_slice(b"--");
        self.body.extend_from_slice(self.boundary.as_bytes());
        self.body
            .extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        self.body.extend_from_slice(clean(name).as_bytes());
        self.body.push(b'"');
        if let Some(f) = filename {
            self.body.extend_from_slice(b"; filename=\"");
            self.body.extend_from_slice(clean(f).as_bytes());
            self.body.push(b'"');
        }
        if let Some(ct) = content_type {
            self.body.extend_from_slice(b"\r\nContent-Type: ");
            self.body.extend_from_slice(clean(ct).as_bytes());
        }
        self.body.extend_from_slice(b"\r\n\r\n");
    }

    /// The content type (with boundary) and the body.
    pub fn finish(mut self) -> (String, Bytes) {
        self.body.extend_from_slice(b"--");
        self.body.extend_from_slice(self.boundary.as_bytes());
        self.body.extend_from_slice(b"--\r\n");
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            Bytes::from(self.body),
        )
    }
}

/// A boundary only has to be absent from the content; time-seeded variety is
/// plenty and keeps this crate free of an RNG dependency.
fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";
    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--Xy\r\ndata\r\n--XyZ--\r\n";

    #[test]
    fn boundary_is_read_from_the_content_type() {
        assert_eq!(boundary(CT), Some("XyZ"));
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\""),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn parts_are_found_with_their_names_and_content() {
        let parts = parse(BODY, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "model");
        assert_eq!(parts[0].text(BODY), Some("whisper-1"));
        assert_eq!(parts[1].name, "file");
        assert_eq!(parts[1].filename, Some("a.wav"));
        assert_eq!(parts[1].content_type, Some("audio/wav"));
        // A line that merely starts like the boundary is content, not a delimiter.
        assert_eq!(parts[1].data(BODY), b"RIFF\r\n--Xy\r\ndata");
    }

    #[test]
    fn splicing_the_model_keeps_the_rest_byte_for_byte() {
        let body = Bytes::from_static(BODY);
        let parts = parse(BODY, "XyZ").unwrap();
        let out = splice(&body, parts[0].span, b"whisper-large-v3");
        let again = parse(&out, "XyZ").unwrap();
        assert_eq!(again[0].text(&out), Some("whisper-large-v3"));
        assert_eq!(again[1].data(&out), parts[1].data(BODY));
    }

    #[test]
    fn truncated_bodies_are_errors() {
        assert_eq!(
            parse(&BODY[..BODY.len() - 10], "XyZ"),
            Err(MultipartError::Unterminated)
        );
        assert_eq!(
            parse(&BODY[..BODY.len() - 40], "XyZ"),
            Err(MultipartError::UnterminatedHeaders)
        );
        assert_eq!(parse(b"hello", "XyZ"), Err(MultipartError::NoFirstBoundary));
    }

    #[test]
    fn built_forms_parse_back() {
        let (ct, body) = FormBuilder::new()
            .text("model_id", "scribe_v1")
            .file("file", "a.mp3", "audio/mpeg", b"ID3\x00\x01")
            .finish();
        let b = boundary(&ct).unwrap().to_string();
        let parts = parse(&body, &b).unwrap();
        assert_eq!(parts[0].text(&body), Some("scribe_v1"));
        assert_eq!(parts[1].data(&body), b"ID3\x00\x01");
    }
}
