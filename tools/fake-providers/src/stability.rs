//! A fake of Stability AI's Stable Image generation API (v2beta), written from
//! the public API reference:
//! `POST /v2beta/stable-image/generate/{ultra,core,sd3}`.
//!
//! It checks what the real API checks: `Authorization: Bearer <key>`, a
//! `multipart/form-data` body (parsed with the fakes' own small parser, so a
//! bug in the proxy's form builder cannot hide behind a shared one), a non-empty
//! `prompt` of at most 10000 characters, the documented values of
//! `aspect_ratio`, `output_format`, `seed`, `style_preset` and (sd3) `model`,
//! and an `Accept` of `application/json` or `image/*`. It is stricter than the
//! real API in one way: form fields the reference does not list for the service
//! are refused, so a translation that leaks an OpenAI field (`n`, `size`,
//! `response_format`, `user`) fails a test instead of passing silently.
//!
//! With `Accept: application/json` the answer is `{image, finish_reason, seed}`
//! (the image base64); with `image/*` (the API's default) it is the image bytes
//! with `finish-reason` and `seed` headers. A prompt containing
//! [`FILTER_TRIGGER`] comes back `finish_reason: CONTENT_FILTERED`, as the real
//! API does for output its moderation blurred; one containing
//! [`MODERATION_TRIGGER`] is refused with 403 `content_moderation`. Errors use
//! Stability's shape: `{"id","name","errors":["..."]}`.

use crate::common::{bearer, bind_local, read_multipart, respond, KeyedState, Server};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A prompt containing this comes back with `finish_reason: CONTENT_FILTERED`.
pub const FILTER_TRIGGER: &str = "[filter-output]";
/// A prompt containing this is refused with 403 `content_moderation`.
pub const MODERATION_TRIGGER: &str = "[flag-prompt]";

/// A real, decodable 1x1 PNG; every generation returns it.
pub const PNG_1X1_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

const ASPECT_RATIOS: &[&str] = &[
    "16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21",
];
const STYLE_PRESETS: &[&str] = &[
    "3d-model",
    "analog-film",
    "anime",
    "cinematic",
    "comic-book",
    "digital-art",
    "enhance",
    "fantasy-art",
    "isometric",
    "line-art",
    "low-poly",
    "modeling-compound",
    "neon-punk",
    "origami",
    "photographic",
    "pixel-art",
    "tile-texture",
];
const SD3_MODELS: &[&str] = &[
    "sd3.5-large",
    "sd3.5-large-turbo",
    "sd3.5-medium",
    "sd3.5-flash",
    "sd3-large",
    "sd3-large-turbo",
    "sd3-medium",
];

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    /// The form's text fields in order, as `(name, value)`; file parts are
    /// recorded with their byte length as the value.
    pub fields: Vec<(String, String)>,
    pub raw: Bytes,
}

impl RecordedRequest {
    /// A form field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The form as a JSON object of its fields (for `GET /__requests`).
    pub fn fields_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.fields {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        Value::Object(m)
    }

    pub fn to_json(&self) -> Value {
        crate::common::request_json(
            &self.method,
            &self.path,
            None,
            &self.headers,
            &self.fields_json(),
        )
    }
}

type Shared = KeyedState<RecordedRequest, (u16, String)>;

/// A running fake. Dropping it stops the server.
pub struct FakeStability {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0`; requests must carry `Authorization: Bearer <api_key>`.
pub async fn start(api_key: &str) -> std::io::Result<FakeStability> {
    start_on(bind_local().await?, api_key).await
}

/// Serves on a listener the caller bound; also answers `GET /__requests`.
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeStability> {
    let shared = Shared::new(api_key);
    let app = Router::new()
        .route("/v2beta/stable-image/generate/{service}", post(generate))
        .route("/__requests", get(recorded))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(FakeStability { shared, server })
}

impl FakeStability {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, the shape of `https://api.stability.ai`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// The next request gets this status and raw body (after the auth check).
    pub fn set_next_error(&self, status: u16, body: impl Into<String>) {
        self.shared.faults.push((status, body.into()));
    }
}

/// Stability's error body.
pub fn error_body(name: &str, errors: &[&str]) -> String {
    json!({"id": "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4", "name": name, "errors": errors}).to_string()
}

fn error(status: u16, name: &str, message: &str) -> Response {
    respond(status, "application/json", error_body(name, &[message]))
}

fn bad_request(message: &str) -> Response {
    error(400, "bad_request", message)
}

async fn recorded(State(shared): State<Arc<Shared>>) -> Response {
    let all = shared.requests.to_json(RecordedRequest::to_json);
    respond(200, "application/json", all.to_string())
}

async fn not_found() -> Response {
    error(404, "not_found", "The requested resource was not found")
}

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

/// The form fields the reference lists for each service.
fn allowed_fields(service: &str) -> Option<&'static [&'static str]> {
    Some(match service {
        "ultra" => &[
            "prompt",
            "negative_prompt",
            "aspect_ratio",
            "seed",
            "style_preset",
            "output_format",
            "image",
            "strength",
        ],
        "core" => &[
            "prompt",
            "negative_prompt",
            "aspect_ratio",
            "seed",
            "style_preset",
            "output_format",
        ],
        "sd3" => &[
            "prompt",
            "mode",
            "image",
            "strength",
            "model",
            "aspect_ratio",
            "seed",
            "output_format",
            "negative_prompt",
            "cfg_scale",
            "style_preset",
        ],
        _ => return None,
    })
}

async fn generate(
    State(shared): State<Arc<Shared>>,
    Path(service): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    raw: Bytes,
) -> Response {
    let parsed = read_multipart(&headers, &raw, "content-type: must be multipart/form-data");
    let fields: Vec<(String, String)> = match &parsed {
        Ok(parts) => parts
            .iter()
            .map(|p| {
                let value = match &p.filename {
                    Some(_) => format!("<file {} bytes>", p.data.len()),
                    None => String::from_utf8_lossy(&p.data).into_owned(),
                };
                (p.name.clone(), value)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    shared.requests.push(RecordedRequest {
        method: "POST".into(),
        path: uri.path().to_string(),
        headers: headers.clone(),
        fields: fields.clone(),
        raw: raw.clone(),
    });

    if bearer(&headers) != Some(shared.api_key.as_str()) {
        return error(
            401,
            "unauthorized",
            "authorization: invalid or missing header value",
        );
    }
    if let Some((status, body)) = shared.faults.pop() {
        return respond(status, "application/json", body);
    }
    let Some(allowed) = allowed_fields(&service) else {
        return error(404, "not_found", "The requested resource was not found");
    };
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("image/*");
    let wants_json = match accept {
        "application/json" => true,
        "image/*" | "*/*" => false,
        _ => return bad_request("accept: must be either `application/json` or `image/*`"),
    };
    let parts = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("body: {e}")),
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    for (name, _) in &fields {
        if !allowed.contains(&name.as_str()) {
            return bad_request(&format!("{name}: is not a parameter of this endpoint"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &fields {
        if !seen.insert(name.as_str()) {
            return bad_request(&format!("{name}: was given more than once"));
        }
    }
    if parts
        .iter()
        .any(|p| p.filename.is_some() && p.name != "image")
    {
        return bad_request("body: only `image` may be a file");
    }
    let prompt = match field("prompt") {
        Some(p) if !p.trim().is_empty() && p.chars().count() <= 10_000 => p,
        Some(p) if !p.trim().is_empty() => {
            return bad_request("prompt: must be at most 10000 characters")
        }
        _ => return bad_request("prompt: cannot be empty"),
    };
    if let Some(r) = field("aspect_ratio") {
        if !ASPECT_RATIOS.contains(&r) {
            return bad_request(&format!(
                "aspect_ratio: must be one of {}",
                ASPECT_RATIOS.join(", ")
            ));
        }
    }
    let formats: &[&str] = if service == "sd3" {
        &["png", "jpeg"]
    } else {
        &["png", "jpeg", "webp"]
    };
    let output_format = field("output_format").unwrap_or("png");
    if !formats.contains(&output_format) {
        return bad_request(&format!(
            "output_format: must be one of {}",
            formats.join(", ")
        ));
    }
    if let Some(s) = field("style_preset") {
        if !STYLE_PRESETS.contains(&s) {
            return bad_request("style_preset: is not a known style preset");
        }
    }
    let seed = match field("seed") {
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n <= 4_294_967_294 => n,
            _ => return bad_request("seed: must be an integer from 0 to 4294967294"),
        },
        None => 0,
    };
    if service == "sd3" {
        if let Some(m) = field("model") {
            if !SD3_MODELS.contains(&m) {
                return bad_request(&format!("model: must be one of {}", SD3_MODELS.join(", ")));
            }
        }
        if let Some(c) = field("cfg_scale") {
            if !c.parse::<f64>().is_ok_and(|c| (1.0..=10.0).contains(&c)) {
                return bad_request("cfg_scale: must be a number from 1 to 10");
            }
        }
    }
    if prompt.contains(MODERATION_TRIGGER) {
        return error(
            403,
            "content_moderation",
            "Your request was flagged by our content moderation system, as a result your request was denied and you were not charged.",
        );
    }
    // The real API picks a random seed for 0; a fixed one keeps tests exact.
    let seed = if seed == 0 { 1_234_567_890 } else { seed };
    let finish = if prompt.contains(FILTER_TRIGGER) {
        "CONTENT_FILTERED"
    } else {
        "SUCCESS"
    };
    if wants_json {
        return respond(
            200,
            "application/json",
            json!({"image": PNG_1X1_BASE64, "finish_reason": finish, "seed": seed}).to_string(),
        );
    }
    let mut r = respond(200, "image/png", Body::from(png_bytes()));
    r.headers_mut()
        .insert("finish-reason", HeaderValue::from_static(finish));
    if let Ok(v) = HeaderValue::from_str(&seed.to_string()) {
        r.headers_mut().insert("seed", v);
    }
    r
}

/// [`PNG_1X1_BASE64`] decoded.
fn png_bytes() -> Vec<u8> {
    decode_base64(PNG_1X1_BASE64).unwrap_or_default()
}

/// Standard base64 (with padding) to bytes; `None` if it is not valid base64.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for (j, b) in quad.iter().enumerate() {
            let v = if j >= 4 - pad { 0 } else { value(*b)? };
            n = (n << 6) | v;
        }
        let chunk = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&chunk[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_the_png() {
        let png = png_bytes();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{png:?}");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a=bc").is_none());
    }
}
