//! A small `multipart/form-data` reader (RFC 7578), written independently of the
//! proxy's so that a bug in one cannot hide the same bug in the other. Public so
//! tests can read back the upload the mock recorded.

/// One part of a form, borrowed from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: &'a [u8],
}

impl FormPart<'_> {
    /// The content as text, for the non-file fields.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(self.data).ok()
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `name="value"` (quoted or not) from a `Content-Disposition` header value.
fn disposition_param(header: &str, key: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(key) {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_owned(),
        )
    })
}

/// Every part of `body`, in order; an error names what is malformed.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<FormPart<'a>>, &'static str> {
    let opening = format!("--{boundary}");
    let between = format!("\r\n--{boundary}");
    let start = find(body, opening.as_bytes()).ok_or("the body does not contain the boundary")?;
    let mut pos = start + opening.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let line_end = find(rest, b"\r\n").ok_or("a boundary line is not terminated")?;
        let head_start = pos + line_end + 2;
        let head_len =
            find(&body[head_start..], b"\r\n\r\n").ok_or("a part's headers are not terminated")?;
        let head = std::str::from_utf8(&body[head_start..head_start + head_len])
            .map_err(|_| "a part's headers are not UTF-8")?;
        let content_start = head_start + head_len + 4;
        let content_len = find(&body[content_start..], between.as_bytes())
            .ok_or("the body ends without its closing boundary")?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(value, "name");
                filename = disposition_param(value, "filename");
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_owned());
            }
        }
        parts.push(FormPart {
            name: name.ok_or("a part has no Content-Disposition name")?,
            filename,
            content_type,
            data: &body[content_start..content_start + content_len],
        });
        pos = content_start + content_len + between.len();
    }
}

/// Parses a recorded request's form from its `Content-Type` and body.
pub fn parse_form<'a>(
    content_type: &str,
    body: &'a [u8],
) -> Result<Vec<FormPart<'a>>, &'static str> {
    let boundary = boundary(content_type).ok_or("not multipart/form-data with a boundary")?;
    parse(body, &boundary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parts_keep_their_bytes_including_crlf_and_lookalike_boundaries() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.wav\"\r\nContent-Type: audio/wav\r\n\r\nRI\r\n--X\r\nFF\r\n--XX--\r\n";
        let parts = parse_form("multipart/form-data; boundary=\"XX\"", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "model");
        assert_eq!(parts[0].text(), Some("whisper-1"));
        assert_eq!(parts[1].filename.as_deref(), Some("a b.wav"));
        assert_eq!(parts[1].content_type.as_deref(), Some("audio/wav"));
        assert_eq!(parts[1].data, b"RI\r\n--X\r\nFF");
    }

    #[test]
    fn unterminated_bodies_and_other_content_types_are_errors() {
        assert!(parse_form("application/json", b"{}").is_err());
        let cut = b"--XX\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper";
        assert!(parse_form("multipart/form-data; boundary=XX", cut).is_err());
    }
}
