//! The `application/vnd.amazon.eventstream` binary framing that Bedrock's
//! ConverseStream answers with.
//!
//! One message on the wire:
//!
//! ```text
//! total length  u32 BE   (the whole message, these 4 bytes and the trailing CRC included)
//! headers len   u32 BE
//! prelude CRC   u32 BE   CRC-32 (IEEE) of the 8 bytes above
//! headers       name len u8, name, value type u8, value (see `HeaderValue`)
//! payload       total - headers len - 16 bytes
//! message CRC   u32 BE   CRC-32 of everything before it
//! ```
//!
//! The decoder takes bytes in arbitrary pieces. The prelude CRC is checked as
//! soon as 12 bytes are in, before trusting the length (a corrupted length must
//! not make it wait for gigabytes), and the message CRC once the message is
//! complete. Any failure is final: once the framing is lost there is no safe
//! place to resume, so every later call returns the same error.

use std::fmt;

/// The prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// Prelude plus the trailing message CRC.
const OVERHEAD: usize = PRELUDE_LEN + 4;
/// A cap on one message. AWS's own decoders accept messages over 16 MiB, and a
/// Bedrock event is a few hundred bytes; this only stops a runaway length.
pub const MAX_MESSAGE_LEN: usize = 32 * 1024 * 1024;

/// A header's value, by the type byte that precedes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false): no value bytes.
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6: u16 length, then bytes.
    Bytes(Vec<u8>),
    /// Type 7: u16 length, then UTF-8.
    String(String),
    /// Type 8: milliseconds since the epoch, i64.
    Timestamp(i64),
    /// Type 9: 16 bytes.
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// A string header's value (`:event-type`, `:message-type`, …).
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why the framing could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    PreludeCrc {
        expected: u32,
        actual: u32,
    },
    MessageCrc {
        expected: u32,
        actual: u32,
    },
    /// The total length is below the 16-byte minimum or above [`MAX_MESSAGE_LEN`],
    /// or the headers do not fit in it.
    Length {
        total: u32,
        headers: u32,
    },
    /// The headers section is malformed (truncated value, unknown type, bad UTF-8).
    Header(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::PreludeCrc { expected, actual } => write!(
                f,
                "prelude CRC mismatch (frame says {expected:#010x}, bytes give {actual:#010x})"
            ),
            DecodeError::MessageCrc { expected, actual } => write!(
                f,
                "message CRC mismatch (frame says {expected:#010x}, bytes give {actual:#010x})"
            ),
            DecodeError::Length { total, headers } => write!(
                f,
                "impossible frame lengths (total {total}, headers {headers})"
            ),
            DecodeError::Header(why) => write!(f, "malformed headers: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// CRC-32 (IEEE 802.3, the zlib/PNG polynomial), as the framing uses.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = b.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}

/// Incremental decoder: [`push`](Self::push) bytes, then [`next_message`](Self::next_message)
/// until it returns `Ok(None)`.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed; dropped lazily so a run of small
    /// messages does not shift the buffer once per message.
    start: usize,
    /// Whether the prelude of the message at `start` has been checked.
    prelude_ok: bool,
    failed: Option<DecodeError>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a complete message.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.decode() {
            Ok(m) => Ok(m),
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = Vec::new();
                self.start = 0;
                Err(e)
            }
        }
    }

    fn decode(&mut self) -> Result<Option<Message>, DecodeError> {
        let avail = &self.buf[self.start..];
        if avail.len() < PRELUDE_LEN {
            self.compact();
            return Ok(None);
        }
        let total = be_u32(avail, 0);
        let headers_len = be_u32(avail, 4);
        if !self.prelude_ok {
            let expected = be_u32(avail, 8);
            let actual = crc32(&avail[..8]);
            if expected != actual {
                return Err(DecodeError::PreludeCrc { expected, actual });
            }
            let t = total as usize;
            if !(OVERHEAD..=MAX_MESSAGE_LEN).contains(&t) || headers_len as usize > t - OVERHEAD {
                return Err(DecodeError::Length {
                    total,
                    headers: headers_len,
                });
            }
            self.prelude_ok = true;
        }
        let total = total as usize;
        if avail.len() < total {
            self.compact();
            return Ok(None);
        }
        let frame = &avail[..total];
        let expected = be_u32(frame, total - 4);
        let actual = crc32(&frame[..total - 4]);
        if expected != actual {
            return Err(DecodeError::MessageCrc { expected, actual });
        }
        let headers_end = PRELUDE_LEN + headers_len as usize;
        let headers = parse_headers(&frame[PRELUDE_LEN..headers_end])?;
        let payload = frame[headers_end..total - 4].to_vec();
        self.start += total;
        self.prelude_ok = false;
        Ok(Some(Message { headers, payload }))
    }

    /// Drop consumed bytes once they dominate the buffer.
    fn compact(&mut self) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

fn take<'a>(b: &'a [u8], at: &mut usize, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
    let end = at
        .checked_add(n)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| DecodeError::Header(format!("{what} runs past the headers section")))?;
    let s = &b[*at..end];
    *at = end;
    Ok(s)
}

fn fixed<const N: usize>(b: &[u8], at: &mut usize, what: &str) -> Result<[u8; N], DecodeError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(b, at, N, what)?);
    Ok(out)
}

fn parse_headers(b: &[u8]) -> Result<Vec<(String, HeaderValue)>, DecodeError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let name_len = usize::from(take(b, &mut at, 1, "a header name length")?[0]);
        if name_len == 0 {
            return Err(DecodeError::Header("empty header name".into()));
        }
        let name = std::str::from_utf8(take(b, &mut at, name_len, "a header name")?)
            .map_err(|_| DecodeError::Header("header name is not UTF-8".into()))?
            .to_string();
        let ty = take(b, &mut at, 1, "a header type")?[0];
        let value = match ty {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(fixed::<1>(b, &mut at, &name)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(fixed::<2>(b, &mut at, &name)?)),
            4 => HeaderValue::Int(i32::from_be_bytes(fixed::<4>(b, &mut at, &name)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(fixed::<8>(b, &mut at, &name)?)),
            6 | 7 => {
                let len = usize::from(u16::from_be_bytes(fixed::<2>(b, &mut at, &name)?));
                let bytes = take(b, &mut at, len, &name)?;
                if ty == 6 {
                    HeaderValue::Bytes(bytes.to_vec())
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(bytes)
                            .map_err(|_| {
                                DecodeError::Header(format!("header `{name}` is not UTF-8"))
                            })?
                            .to_string(),
                    )
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(fixed::<8>(b, &mut at, &name)?)),
            9 => HeaderValue::Uuid(fixed::<16>(b, &mut at, &name)?),
            other => {
                return Err(DecodeError::Header(format!(
                    "header `{name}` has unknown value type {other}"
                )))
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Encodes a message with string headers (what Bedrock sends); for tests and fakes.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = OVERHEAD + h.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    // aws-c-event-stream's test vectors: an empty message, a payload-only
    // message, and one with a `content-type` string header.
    const EMPTY: [u8; 16] = [
        0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8,
        0xff,
    ];
    const PAYLOAD_ONLY: [u8; 29] = [
        0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, b'{', b'\'', b'f',
        b'o', b'o', b'\'', b':', b'\'', b'b', b'a', b'r', b'\'', b'}', 0xc3, 0x65, 0x39, 0x36,
    ];

    fn with_header() -> Vec<u8> {
        let mut v = vec![
            0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96, 0x0C,
        ];
        v.extend_from_slice(b"content-type");
        v.extend_from_slice(&[0x07, 0x00, 0x10]);
        v.extend_from_slice(b"application/json");
        v.extend_from_slice(b"{'foo':'bar'}");
        v.extend_from_slice(&[0x8D, 0x9C, 0x08, 0xB1]);
        v
    }

    fn decode_all(bytes: &[u8], piece: usize) -> Result<Vec<Message>, DecodeError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            d.push(chunk);
            while let Some(m) = d.next_message()? {
                out.push(m);
            }
        }
        assert_eq!(d.buffered(), 0);
        Ok(out)
    }

    #[test]
    fn published_vectors_decode() {
        let mut all = EMPTY.to_vec();
        all.extend_from_slice(&PAYLOAD_ONLY);
        all.extend_from_slice(&with_header());
        let msgs = decode_all(&all, usize::MAX).unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0], Message::default());
        assert_eq!(msgs[1].payload, b"{'foo':'bar'}");
        assert!(msgs[1].headers.is_empty());
        assert_eq!(msgs[2].header_str("content-type"), Some("application/json"));
        assert_eq!(msgs[2].payload, b"{'foo':'bar'}");
    }

    #[test]
    fn encoder_reproduces_the_published_bytes() {
        assert_eq!(encode(&[], b""), EMPTY);
        assert_eq!(encode(&[], b"{'foo':'bar'}"), PAYLOAD_ONLY);
        assert_eq!(
            encode(&[("content-type", "application/json")], b"{'foo':'bar'}"),
            with_header()
        );
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        let mut all = with_header();
        all.extend_from_slice(&EMPTY);
        all.extend_from_slice(&PAYLOAD_ONLY);
        let whole = decode_all(&all, usize::MAX).unwrap();
        for piece in 1..=all.len() {
            assert_eq!(decode_all(&all, piece).unwrap(), whole, "pieces of {piece}");
        }
        // Two pieces split at every boundary.
        for cut in 0..=all.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for part in [&all[..cut], &all[cut..]] {
                d.push(part);
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_an_error_and_stays_one() {
        let frame = with_header();
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            let mut d = Decoder::new();
            d.push(&bad);
            let first = d.next_message();
            assert!(first.is_err(), "byte {i} flipped still decoded: {first:?}");
            // Nothing after a broken frame is trusted, even a valid one.
            d.push(&EMPTY);
            assert!(d.next_message().is_err(), "byte {i}");
        }
    }

    #[test]
    fn prelude_crc_is_checked_before_waiting_for_the_body() {
        // aws-c-event-stream's corrupted-prelude case: byte 9 altered.
        let mut bad = EMPTY;
        bad[9] = 0xc3;
        let mut d = Decoder::new();
        d.push(&bad[..12]);
        assert!(matches!(
            d.next_message(),
            Err(DecodeError::PreludeCrc { .. })
        ));
        // A huge claimed length with a valid prelude CRC is refused outright.
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        let mut d = Decoder::new();
        d.push(&prelude);
        assert!(matches!(d.next_message(), Err(DecodeError::Length { .. })));
    }

    #[test]
    fn message_crc_mismatch_is_reported() {
        let mut bad = PAYLOAD_ONLY;
        bad[28] ^= 0xff;
        let mut d = Decoder::new();
        d.push(&bad);
        assert!(matches!(
            d.next_message(),
            Err(DecodeError::MessageCrc { .. })
        ));
    }

    #[test]
    fn all_header_types_parse() {
        let mut h = Vec::new();
        let mut add = |name: &str, ty: u8, value: &[u8]| {
            h.push(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.push(ty);
            h.extend_from_slice(value);
        };
        add("t", 0, &[]);
        add("f", 1, &[]);
        add("b", 2, &[0xff]);
        add("s", 3, &[0x01, 0x02]);
        add("i", 4, &[0, 0, 1, 0]);
        add("l", 5, &[0, 0, 0, 0, 0, 0, 0, 7]);
        add("y", 6, &[0, 2, 0xde, 0xad]);
        add("str", 7, &[0, 2, b'h', b'i']);
        add("ts", 8, &[0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
        add("u", 9, &[7; 16]);
        let total = 16 + h.len();
        let mut frame = Vec::new();
        frame.extend_from_slice(&(total as u32).to_be_bytes());
        frame.extend_from_slice(&(h.len() as u32).to_be_bytes());
        let crc = crc32(&frame);
        frame.extend_from_slice(&crc.to_be_bytes());
        frame.extend_from_slice(&h);
        let crc = crc32(&frame);
        frame.extend_from_slice(&crc.to_be_bytes());
        let msgs = decode_all(&frame, 3).unwrap();
        let hs = &msgs[0].headers;
        assert_eq!(hs[0].1, HeaderValue::Bool(true));
        assert_eq!(hs[1].1, HeaderValue::Bool(false));
        assert_eq!(hs[2].1, HeaderValue::Byte(-1));
        assert_eq!(hs[3].1, HeaderValue::Short(0x0102));
        assert_eq!(hs[4].1, HeaderValue::Int(256));
        assert_eq!(hs[5].1, HeaderValue::Long(7));
        assert_eq!(hs[6].1, HeaderValue::Bytes(vec![0xde, 0xad]));
        assert_eq!(msgs[0].header_str("str"), Some("hi"));
        assert_eq!(hs[8].1, HeaderValue::Timestamp(1000));
        assert_eq!(hs[9].1, HeaderValue::Uuid([7; 16]));
    }

    #[test]
    fn unknown_header_type_and_overruns_are_errors() {
        for h in [
            vec![1, b'x', 42],            // unknown type
            vec![1, b'x', 7, 0, 9, b'a'], // string longer than the section
            vec![5, b'x'],                // name longer than the section
            vec![0, 7, 0, 0],             // empty name
        ] {
            let total = 16 + h.len();
            let mut frame = Vec::new();
            frame.extend_from_slice(&(total as u32).to_be_bytes());
            frame.extend_from_slice(&(h.len() as u32).to_be_bytes());
            let crc = crc32(&frame);
            frame.extend_from_slice(&crc.to_be_bytes());
            frame.extend_from_slice(&h);
            let crc = crc32(&frame);
            frame.extend_from_slice(&crc.to_be_bytes());
            let mut d = Decoder::new();
            d.push(&frame);
            assert!(
                matches!(d.next_message(), Err(DecodeError::Header(_))),
                "{h:?}"
            );
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
