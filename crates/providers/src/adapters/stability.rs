//! Stability AI's Stable Image API behind OpenAI's `POST /v1/images/generations`.
//!
//! Stability's v2beta generation endpoints take a `multipart/form-data` form and,
//! with `Accept: application/json`, answer `{image, finish_reason, seed}` with the
//! image as base64. The service is chosen by the provider model id:
//!
//! | model id | upstream request |
//! |---|---|
//! | `stable-image-ultra` (or `ultra`) | `POST /v2beta/stable-image/generate/ultra` |
//! | `stable-image-core` (or `core`) | `POST /v2beta/stable-image/generate/core` |
//! | `sd3…` (`sd3.5-large`, `sd3.5-large-turbo`, `sd3.5-medium`, …) | `POST /v2beta/stable-image/generate/sd3` with form field `model` = the id |
//!
//! Request mapping (OpenAI → form field):
//!
//! - `prompt` → `prompt`.
//! - `size` `WxH` → `aspect_ratio`: the Stability ratio (`1:1`, `16:9`, `21:9`,
//!   `2:3`, `3:2`, `4:5`, `5:4`, `9:16`, `9:21`) within 3% of `W/H`, so the OpenAI
//!   sizes map as `1024x1024` → `1:1`, `1792x1024` → `16:9`, `1024x1792` → `9:16`,
//!   `1536x1024` → `3:2`, `1024x1536` → `2:3`. Stability picks the pixel size
//!   itself; only the shape is honoured. `auto` or no `size` sends nothing (1:1).
//! - `output_format` (`png` | `jpeg` | `webp`, as in OpenAI's gpt-image API) →
//!   `output_format`; `png` when absent.
//! - Stability's own fields may be sent as extra body fields and go through as
//!   form fields: `negative_prompt`, `seed`, `style_preset`, `aspect_ratio`
//!   (instead of `size`), `cfg_scale`.
//! - `user` is accepted and not forwarded (Stability has no end-user field).
//!
//! What cannot be served is a 400 naming the field, before anything is sent:
//!
//! - `response_format: "url"`: Stability returns image bytes and hosts nothing,
//!   so only `b64_json` exists; it is also the default here (as for OpenAI's
//!   gpt-image models), whereas dall-e models default to `url`.
//! - `n` > 1: one generation is one image and one upstream call; a gateway that
//!   fanned out would multiply cost and partial failures behind one request.
//! - `quality` other than `auto`/`standard`, and any `style`: there is no
//!   Stability equivalent (use the model id and `style_preset`).
//! - any other field, so nothing the client asked for is silently dropped.
//!
//! Answers become `{created, data: [{b64_json}]}`. `finish_reason:
//! CONTENT_FILTERED` is Stability's moderation blurring the output: that is a
//! 400 `content_policy_violation`, as OpenAI reports a refused prompt, rather
//! than a blurred image presented as success. Errors
//! (`{"id","name","errors":[...]}`) keep their meaning; a 403 named
//! `content_moderation` is the client's prompt, not the proxy's key, so it is a
//! 400 `content_policy_violation` too.

use super::common::{
    bad_upstream, form_content_type, invalid, kind_for_status, now_secs, post, provider_error,
    with_code,
};
use super::{
    not_offered, ChatAdapter, ChatContext, EndpointRequest, Translated, UpstreamRequest,
    UpstreamTarget,
};
use http::header::ACCEPT;
use http::HeaderValue;
use liter_llm_protocol::multipart::FormBuilder;
use liter_llm_protocol::{ApiError, Endpoint};
use serde_json::{json, Map, Value};

pub struct StabilityAdapter;

/// Stability's aspect ratios as `(name, width, height)`.
const ASPECT_RATIOS: &[(&str, f64, f64)] = &[
    ("1:1", 1.0, 1.0),
    ("16:9", 16.0, 9.0),
    ("21:9", 21.0, 9.0),
    ("2:3", 2.0, 3.0),
    ("3:2", 3.0, 2.0),
    ("4:5", 4.0, 5.0),
    ("5:4", 5.0, 4.0),
    ("9:16", 9.0, 16.0),
    ("9:21", 9.0, 21.0),
];

/// How far (as a natural-log ratio, about 3%) a size may be from the ratio it
/// maps to: wide enough for dall-e-3's 1792x1024 (7:4) to be 16:9, narrow
/// enough that 4:3 is refused rather than silently cropped to 5:4 or 3:2.
const RATIO_TOLERANCE: f64 = 0.03;

const OUTPUT_FORMATS: &[&str] = &["png", "jpeg", "webp"];

/// Stability form fields a client may send as extra body fields.
const PASS_THROUGH: &[&str] = &[
    "negative_prompt",
    "seed",
    "style_preset",
    "aspect_ratio",
    "cfg_scale",
];

/// The upstream path for a model id, and the `model` form field sd3 needs.
fn service(model: &str) -> Option<(&'static str, Option<&str>)> {
    match model {
        "stable-image-ultra" | "ultra" => Some(("/v2beta/stable-image/generate/ultra", None)),
        "stable-image-core" | "core" => Some(("/v2beta/stable-image/generate/core", None)),
        m if m.starts_with("sd3") => Some(("/v2beta/stable-image/generate/sd3", Some(m))),
        _ => None,
    }
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    invalid(param, message).with_code("unsupported_value")
}

/// The Stability aspect ratio for an OpenAI `size`; `None` for `auto`.
fn aspect_ratio(size: &str) -> Result<Option<&'static str>, ApiError> {
    if size == "auto" {
        return Ok(None);
    }
    let parsed = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|(w, h)| *w > 0 && *h > 0);
    let Some((w, h)) = parsed else {
        return Err(invalid(
            "size",
            format!("`size` must be `auto` or `WIDTHxHEIGHT` (e.g. `1024x1024`), got `{size}`"),
        ));
    };
    let wanted = (f64::from(w) / f64::from(h)).ln();
    let best = ASPECT_RATIOS.iter().min_by(|a, b| {
        let da = ((a.1 / a.2).ln() - wanted).abs();
        let db = ((b.1 / b.2).ln() - wanted).abs();
        da.total_cmp(&db)
    });
    match best {
        Some((name, rw, rh)) if ((rw / rh).ln() - wanted).abs() <= RATIO_TOLERANCE => {
            Ok(Some(name))
        }
        _ => Err(unsupported(
            "size",
            format!(
                "Stability AI generates only the aspect ratios {}; `{size}` is none of them",
                ASPECT_RATIOS
                    .iter()
                    .map(|r| r.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn optional_str<'a>(req: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(key, format!("`{key}` must be a string"))),
    }
}

/// A pass-through field's form value: strings as they are, numbers as written.
fn form_value(key: &str, v: &Value) -> Result<String, ApiError> {
    match (key, v) {
        ("seed", Value::Number(n)) if n.as_u64().is_some_and(|s| s <= 4_294_967_294) => {
            Ok(n.to_string())
        }
        ("seed", _) => Err(invalid(
            "seed",
            "`seed` must be an integer from 0 to 4294967294",
        )),
        ("cfg_scale", Value::Number(n)) => Ok(n.to_string()),
        ("cfg_scale", _) => Err(invalid("cfg_scale", "`cfg_scale` must be a number")),
        (_, Value::String(s)) => Ok(s.clone()),
        _ => Err(invalid(key, format!("`{key}` must be a string"))),
    }
}

/// The multipart form and path for an OpenAI images request.
fn image_request(body: &[u8], upstream_model: &str) -> Result<UpstreamRequest, ApiError> {
    let req: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(format!("request body is not a JSON object: {e}"))
    })?;
    let Some((path, sd3_model)) = service(upstream_model) else {
        return Err(unsupported(
            "model",
            format!(
                "Stability AI model `{upstream_model}` is not one this proxy knows how to call; use \
                 `stable-image-ultra`, `stable-image-core` or an `sd3…` model id"
            ),
        ));
    };
    let prompt = match optional_str(&req, "prompt")? {
        Some(p) if !p.trim().is_empty() => p,
        _ => return Err(invalid("prompt", "missing required parameter: `prompt`")),
    };
    match req.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => {
            return Err(unsupported(
                "n",
                "Stability AI returns one image per request; `n` must be 1 (send one request per image)",
            ))
        }
    }
    match optional_str(&req, "response_format")? {
        None | Some("b64_json") => {}
        Some(other) => {
            return Err(unsupported(
                "response_format",
                format!(
                    "Stability AI returns image data, not hosted URLs; `response_format` `{other}` \
                     cannot be served, use `b64_json`"
                ),
            ))
        }
    }
    match optional_str(&req, "quality")? {
        None | Some("auto") | Some("standard") => {}
        Some(q) => {
            return Err(unsupported(
                "quality",
                format!(
                "Stability AI has no `quality` setting; `{q}` cannot be honoured (pick the model \
                     instead: stable-image-ultra, stable-image-core, sd3.5-large, ...)"
            ),
            ))
        }
    }
    if req.get("style").is_some_and(|s| !s.is_null()) {
        return Err(unsupported(
            "style",
            "Stability AI has no `style`; send Stability's `style_preset` (e.g. `photographic`) instead",
        ));
    }
    let output_format = optional_str(&req, "output_format")?.unwrap_or("png");
    if !OUTPUT_FORMATS.contains(&output_format) {
        return Err(unsupported(
            "output_format",
            format!(
                "`output_format` must be one of {}",
                OUTPUT_FORMATS.join(", ")
            ),
        ));
    }
    let from_size = match optional_str(&req, "size")? {
        Some(size) => aspect_ratio(size)?,
        None => None,
    };
    if from_size.is_some() && req.get("aspect_ratio").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "aspect_ratio",
            "send either `size` or `aspect_ratio`, not both",
        ));
    }
    for key in req.keys() {
        let known = matches!(
            key.as_str(),
            "model"
                | "prompt"
                | "n"
                | "size"
                | "response_format"
                | "quality"
                | "style"
                | "user"
                | "output_format"
                | "stream"
        ) || PASS_THROUGH.contains(&key.as_str());
        if !known {
            return Err(unsupported(
                key,
                format!("`{key}` is not supported by Stability AI's image generation API"),
            ));
        }
    }

    let mut form = FormBuilder::new().text("prompt", prompt);
    if let Some(model) = sd3_model {
        form = form.text("model", model);
    }
    if let Some(ratio) = from_size {
        form = form.text("aspect_ratio", ratio);
    }
    for key in PASS_THROUGH {
        if let Some(v) = req.get(*key).filter(|v| !v.is_null()) {
            form = form.text(key, &form_value(key, v)?);
        }
    }
    form = form.text("output_format", output_format);
    let (content_type, body) = form.finish();
    Ok(UpstreamRequest {
        headers: vec![(ACCEPT, HeaderValue::from_static("application/json"))],
        ..post(path, Some(form_content_type(&content_type)?), body)
    })
}

fn content_filtered(detail: &str) -> ApiError {
    ApiError::invalid_request(format!(
        "stability: the request was rejected by Stability AI's content moderation ({detail})"
    ))
    .with_code("content_policy_violation")
}

fn image_response(body: &[u8]) -> Result<Translated, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| bad_upstream("stability: the answer is not JSON"))?;
    match v.get("finish_reason").and_then(Value::as_str) {
        Some("CONTENT_FILTERED") => return Err(content_filtered("the output was filtered")),
        Some("SUCCESS") | None => {}
        Some(other) => {
            return Err(bad_upstream(format!(
                "stability: the generation finished with `{other}`"
            )))
        }
    }
    let Some(image) = v.get("image").and_then(Value::as_str) else {
        return Err(bad_upstream("stability: the answer has no `image`"));
    };
    let out = json!({
        "created": now_secs(),
        "data": [{"b64_json": image}],
    });
    Ok(Translated::json(out.to_string()))
}

/// Stability's errors: `{"id","name","errors":["field: problem", ...]}`.
fn stability_error(status: u16, body: &[u8]) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let name = parsed
        .as_ref()
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str);
    let errors: Vec<&str> = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if name == Some("content_moderation") {
        let detail = if errors.is_empty() {
            "flagged".to_string()
        } else {
            errors.join("; ")
        };
        return content_filtered(&detail);
    }
    if errors.is_empty() || matches!(status, 401 | 403) {
        return provider_error("stability", status, body);
    }
    let (kind, code) = kind_for_status(status);
    let mut message = String::from("stability: ");
    if let Some(n) = name {
        message.push_str(n);
        message.push_str(": ");
    }
    message.push_str(&errors.join("; "));
    let mut e = with_code(ApiError::new(kind, message), code);
    // "prompt: cannot be empty" names the form field, which has the OpenAI name.
    if let Some(field) = errors
        .first()
        .and_then(|m| m.split_once(':'))
        .map(|(f, _)| f.trim())
        .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        e = e.with_param(field);
    }
    e
}

impl ChatAdapter for StabilityAdapter {
    fn offers(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::ImageGenerations
    }

    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        _target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match req.endpoint {
            Endpoint::ImageGenerations => image_request(req.body, ctx.upstream_model),
            other => Err(not_offered(other)),
        }
    }

    fn endpoint_response(
        &self,
        endpoint: Endpoint,
        upstream_body: &[u8],
        _ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        match endpoint {
            Endpoint::ImageGenerations => image_response(upstream_body),
            other => Err(not_offered(other)),
        }
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        stability_error(status, upstream_body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::common::testing::send;
    use super::*;
    use liter_llm_protocol::multipart;

    fn ctx(model: &str) -> ChatContext<'_> {
        ChatContext {
            upstream_model: model,
            requested_model: "img",
            stream: false,
            include_usage: true,
        }
    }

    fn build(model: &str, body: Value) -> Result<UpstreamRequest, ApiError> {
        let (raw, endpoint) = (body.to_string(), Endpoint::ImageGenerations);
        let base_url = "https://api.stability.ai";
        send(
            &StabilityAdapter,
            &ctx(model),
            base_url,
            endpoint,
            raw.as_bytes(),
            None,
        )
    }

    fn fields(up: &UpstreamRequest) -> Vec<(String, String)> {
        let ct = up.content_type.as_ref().unwrap().to_str().unwrap();
        let b = multipart::boundary(ct).unwrap();
        multipart::parse(&up.body, b)
            .unwrap()
            .iter()
            .map(|p| (p.name.to_string(), p.text(&up.body).unwrap().to_string()))
            .collect()
    }

    #[test]
    fn openai_sizes_map_to_the_nearest_stability_ratio() {
        for (size, ratio) in [
            ("256x256", "1:1"),
            ("1024x1024", "1:1"),
            ("1792x1024", "16:9"),
            ("1024x1792", "9:16"),
            ("1536x1024", "3:2"),
            ("1024x1536", "2:3"),
            ("2100x900", "21:9"),
        ] {
            assert_eq!(aspect_ratio(size).unwrap(), Some(ratio), "{size}");
        }
        assert_eq!(aspect_ratio("auto").unwrap(), None);
        assert_eq!(
            aspect_ratio("1024x768").unwrap_err().param.as_deref(),
            Some("size")
        );
        assert_eq!(
            aspect_ratio("big").unwrap_err().param.as_deref(),
            Some("size")
        );
        assert_eq!(
            aspect_ratio("0x10").unwrap_err().param.as_deref(),
            Some("size")
        );
    }

    #[test]
    fn model_id_picks_the_service_and_sd3_names_its_model() {
        let up = build(
            "sd3.5-large",
            json!({"prompt": "a cat", "size": "1792x1024"}),
        )
        .unwrap();
        assert_eq!(up.path, "/v2beta/stable-image/generate/sd3");
        assert_eq!(
            up.headers,
            vec![(ACCEPT, HeaderValue::from_static("application/json"))]
        );
        assert_eq!(
            fields(&up),
            [
                ("prompt", "a cat"),
                ("model", "sd3.5-large"),
                ("aspect_ratio", "16:9"),
                ("output_format", "png"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let up = build("stable-image-core", json!({"prompt": "x"})).unwrap();
        assert_eq!(up.path, "/v2beta/stable-image/generate/core");
        assert_eq!(
            build("ultra", json!({"prompt": "x"})).unwrap().path,
            "/v2beta/stable-image/generate/ultra"
        );
        let e = build("dall-e-3", json!({"prompt": "x"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
    }

    #[test]
    fn stability_fields_pass_through_and_user_is_dropped() {
        let up = build(
            "stable-image-core",
            json!({"prompt": "x", "negative_prompt": "blur", "seed": 42, "style_preset": "anime",
                   "aspect_ratio": "4:5", "output_format": "webp", "user": "u1",
                   "response_format": "b64_json", "n": 1, "quality": "auto"}),
        )
        .unwrap();
        let f = fields(&up);
        assert!(f.contains(&("seed".into(), "42".into())), "{f:?}");
        assert!(f.contains(&("aspect_ratio".into(), "4:5".into())));
        assert!(f.contains(&("style_preset".into(), "anime".into())));
        assert!(f.contains(&("negative_prompt".into(), "blur".into())));
        assert!(f.contains(&("output_format".into(), "webp".into())));
        assert!(!f.iter().any(|(k, _)| k == "user"));
    }

    #[test]
    fn what_stability_cannot_do_is_a_400_naming_the_field() {
        for (body, param) in [
            (
                json!({"prompt": "x", "response_format": "url"}),
                "response_format",
            ),
            (json!({"prompt": "x", "n": 2}), "n"),
            (json!({"prompt": "x", "quality": "hd"}), "quality"),
            (json!({"prompt": "x", "style": "vivid"}), "style"),
            (
                json!({"prompt": "x", "background": "transparent"}),
                "background",
            ),
            (
                json!({"prompt": "x", "output_format": "gif"}),
                "output_format",
            ),
            (json!({"prompt": "x", "seed": -1}), "seed"),
            (
                json!({"prompt": "x", "size": "1024x1024", "aspect_ratio": "1:1"}),
                "aspect_ratio",
            ),
            (json!({"prompt": " "}), "prompt"),
        ] {
            let e = build("stable-image-core", body.clone()).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn answers_become_b64_json_and_filtered_output_is_refused() {
        let ok = image_response(br#"{"image":"iVBORw0KGgo=","finish_reason":"SUCCESS","seed":7}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&ok.body).unwrap();
        assert_eq!(v["data"][0]["b64_json"], "iVBORw0KGgo=");
        assert!(v["created"].as_u64().unwrap() > 0);
        let e = image_response(br#"{"image":"x","finish_reason":"CONTENT_FILTERED","seed":7}"#)
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("content_policy_violation"));
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(image_response(b"nope").unwrap_err().status().as_u16(), 502);
    }

    #[test]
    fn errors_keep_their_meaning() {
        let e = stability_error(
            400,
            br#"{"id":"a1","name":"bad_request","errors":["aspect_ratio: must be one of 1:1"]}"#,
        );
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.param.as_deref(), Some("aspect_ratio"));
        assert!(e.message.contains("must be one of"), "{}", e.message);
        let e = stability_error(403, br#"{"id":"a2","name":"content_moderation","errors":["Your request was flagged by our content moderation system."]}"#);
        assert_eq!(
            (e.status().as_u16(), e.code.as_deref()),
            (400, Some("content_policy_violation"))
        );
        let e = stability_error(401, br#"{"id":"a3","name":"unauthorized","errors":["authorization: invalid or missing header value"]}"#);
        assert_eq!(
            (e.status().as_u16(), e.code.as_deref()),
            (502, Some("upstream_auth_failed"))
        );
        let e = stability_error(429, br#"{"id":"a4","name":"rate_limit_exceeded","errors":["You have exceeded the rate limit"]}"#);
        assert_eq!(e.status().as_u16(), 429);
    }
}
