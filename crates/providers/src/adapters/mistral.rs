//! Mistral AI's API (`https://api.mistral.ai/v1`), and the Mistral OCR model as
//! Azure AI Foundry serves it.
//!
//! Most of Mistral's API is OpenAI-shaped, so most of this adapter stays out of
//! the way: chat completions (streams included), embeddings, OCR (`/v1/ocr`,
//! Mistral's own shape, which the proxy's `/v1/ocr` follows) and audio
//! transcriptions go upstream as the client sent them with only `model`
//! replaced, and the answers come back byte for byte. (A chat request carrying
//! what OpenAI SDKs add and Mistral refuses, `max_completion_tokens`, `seed`,
//! a `developer` message, `user`, `stream_options`, ..., is rewritten: see
//! [`CHAT_RENAMES`] and [`CHAT_DROPPED`].) Nothing is added to the
//! request: Mistral refuses fields it does not know (422 "Extra inputs are not
//! permitted"), `stream_options` included, and it reports `usage` in the last
//! chunk of every stream anyway, so streams are metered without asking. That is
//! why this provider has its own adapter rather than the generic pass-through,
//! which adds `stream_options` to streams.
//!
//! **Moderations** are translated. OpenAI's `{model, input}` becomes Mistral's
//! `{model, input}` (a string or a list of strings; OpenAI's multimodal input is
//! accepted when it is text only, its parts joined into one string), and
//! Mistral's `{id, model, results: [{categories, category_scores}]}` becomes
//! OpenAI's shape. Categories are mapped where they mean the same thing:
//!
//! | Mistral | OpenAI |
//! |---|---|
//! | `sexual` | `sexual` |
//! | `hate_and_discrimination` | `hate` |
//! | `violence_and_threats` | `violence` |
//! | `selfharm` | `self-harm` |
//! | `dangerous_and_criminal_content` (2411), `criminal` (2603) | `illicit` |
//!
//! Mistral's other categories (`health`, `financial`, `law`, `pii`, and 2603's
//! `dangerous` and `jailbreaking`) are kept under their Mistral names. OpenAI
//! categories Mistral does not assess (`harassment`, `sexual/minors`,
//! `violence/graphic`, ...) are present, as OpenAI clients expect every key, with
//! `false`, score `0`, and an empty `category_applied_input_types` list, which is
//! how the answer says they were not assessed; assessed ones list `["text"]`.
//! `flagged` is true when any category is, Mistral-only ones included, as
//! OpenAI defines it ("any of the categories").
//!
//! **Completions** are Codestral fill-in-the-middle: OpenAI's legacy
//! `/v1/completions` (`prompt`, `suffix`, `max_tokens`, `temperature`, `top_p`,
//! `stop`, `seed` → `random_seed`, and Mistral's `min_tokens`) becomes
//! `POST /fim/completions`, and Mistral's chat-shaped answer becomes a
//! `text_completion`. Streaming completions are refused with a 400 naming
//! `stream`: the stream translator is shared with chat and cannot tell a FIM
//! stream (which would need re-shaping into `text_completion` chunks) from a
//! chat one. Fields FIM has no equivalent for (`n` > 1, `echo`, `logprobs`,
//! `best_of` > 1, `logit_bias`, penalties) are a 400 naming the field.
//!
//! **OCR on Azure AI Foundry** ([`azure_ocr_request`], used by the `azure_ai`
//! adapter): Foundry serves Mistral's OCR models (`mistral-document-ai-2505`,
//! `mistral-ocr-2503`, ...) with Mistral's request and response shapes at
//! `https://{resource}.services.ai.azure.com/providers/mistral/azure/ocr`, and
//! serverless deployments at `{endpoint}/v1/ocr`. Azure's OCR endpoint cannot
//! fetch URLs: documents must be base64 `data:` URLs, so an `http(s)` URL is a
//! 400 naming the field before anything is sent (the proxy does not fetch
//! client-supplied URLs itself).

use super::common::{bad_upstream, invalid, kind_for_status, post, provider_error, with_code};
use super::{
    not_offered, ChatAdapter, ChatContext, EndpointRequest, StreamTranslator, Translated,
    UpstreamRequest, UpstreamTarget,
};
use bytes::Bytes;
use http::HeaderValue;
use liter_llm_protocol::multipart;
use liter_llm_protocol::peek::{peek_request, Requirements};
use liter_llm_protocol::{ApiError, Endpoint, ErrorKind};
use serde_json::{json, Map, Value};

pub struct MistralAdapter;

/// OpenAI's moderation categories, every one of which an OpenAI answer carries.
const OPENAI_CATEGORIES: &[&str] = &[
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// Mistral category → the OpenAI category with the same meaning.
fn openai_category(mistral: &str) -> Option<&'static str> {
    Some(match mistral {
        "sexual" => "sexual",
        "hate_and_discrimination" => "hate",
        "violence_and_threats" => "violence",
        "selfharm" => "self-harm",
        "dangerous_and_criminal_content" | "criminal" => "illicit",
        _ => return None,
    })
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Internal, message)
}

/// The client's JSON body with `model` replaced; every other byte is kept.
pub(crate) fn json_with_model(body: &[u8], model: &str) -> Result<Bytes, ApiError> {
    let peek = peek_request(body, Requirements::MODEL_ONLY).map_err(|e| {
        let err = ApiError::invalid_request(e.to_string());
        match e.param() {
            Some(p) => err.with_param(p),
            None => err,
        }
    })?;
    if peek.model == model {
        return Ok(Bytes::copy_from_slice(body));
    }
    let encoded = serde_json::to_string(model)
        .map_err(|e| internal(format!("could not encode the model name: {e}")))?;
    let (start, end) = peek.model_span;
    let mut out = Vec::with_capacity(body.len() + encoded.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(&body[end..]);
    Ok(Bytes::from(out))
}

/// OpenAI request fields Mistral spells differently or does not take. Mistral
/// refuses unknown fields (422), so what OpenAI SDKs add routinely must be
/// renamed or left out: `max_completion_tokens` is `max_tokens`, `seed` is
/// `random_seed`, a `developer` message is a `system` one; `user`, `store`,
/// `metadata`, `service_tier` are bookkeeping Mistral has no place for, and
/// `stream_options` is moot because Mistral reports usage on every stream.
const CHAT_RENAMES: &[(&str, &str)] = &[
    ("max_completion_tokens", "max_tokens"),
    ("seed", "random_seed"),
];
const CHAT_DROPPED: &[&str] = &[
    "user",
    "store",
    "metadata",
    "service_tier",
    "stream_options",
];

/// The chat body for Mistral: byte for byte with only `model` replaced, unless
/// it carries something Mistral would refuse (see [`CHAT_RENAMES`]).
fn chat_body(body: &[u8], model: &str) -> Result<Bytes, ApiError> {
    // A key, not a value: `"user"` is also the commonest role.
    let mentions = |key: &str| {
        let quoted = format!("\"{key}\"");
        memchr::memmem::find_iter(body, quoted.as_bytes()).any(|i| {
            body[i + quoted.len()..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                == Some(&b':')
        })
    };
    let needs_rewrite = CHAT_RENAMES.iter().any(|(from, _)| mentions(from))
        || CHAT_DROPPED.iter().any(|k| mentions(k))
        || memchr::memmem::find(body, b"\"developer\"").is_some();
    if !needs_rewrite {
        return json_with_model(body, model);
    }
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Some(obj) = v.as_object_mut() else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    obj.insert("model".into(), Value::from(model));
    for (from, to) in CHAT_RENAMES {
        if let Some(value) = obj.remove(*from) {
            // The Mistral name wins when a client sent both.
            obj.entry(to.to_string()).or_insert(value);
        }
    }
    for key in CHAT_DROPPED {
        obj.remove(*key);
    }
    if let Some(messages) = obj.get_mut("messages").and_then(Value::as_array_mut) {
        for m in messages {
            if m.get("role").and_then(Value::as_str) == Some("developer") {
                m["role"] = Value::from("system");
            }
        }
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| internal(format!("could not encode the request: {e}")))
}

/// A multipart upload with its `model` field's content replaced.
fn multipart_with_model(body: &[u8], content_type: &str, model: &str) -> Result<Bytes, ApiError> {
    let boundary = multipart::boundary(content_type).ok_or_else(|| {
        ApiError::invalid_request("the upload is not multipart/form-data with a boundary")
    })?;
    let parts = multipart::parse(body, boundary)
        .map_err(|e| ApiError::invalid_request(format!("malformed multipart body: {e}")))?;
    let field = parts
        .iter()
        .find(|p| p.name == "model")
        .ok_or_else(|| invalid("model", "missing required parameter: `model`"))?;
    let body = Bytes::copy_from_slice(body);
    if field.data(&body) == model.as_bytes() {
        return Ok(body);
    }
    Ok(multipart::splice(&body, field.span, model.as_bytes()))
}

// ---------------------------------------------------------------------------
// Moderations
// ---------------------------------------------------------------------------

/// OpenAI's `input` as Mistral takes it: a string or a list of strings.
fn moderation_input(input: Option<&Value>) -> Result<Value, ApiError> {
    match input {
        Some(Value::String(s)) if !s.is_empty() => Ok(Value::String(s.clone())),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Ok(Value::Array(items.clone()))
        }
        // OpenAI's multimodal form is one input made of parts: one text for Mistral.
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let mut texts = Vec::with_capacity(items.len());
            for (i, part) in items.iter().enumerate() {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => texts.push(t),
                    (Some("image_url"), _) => {
                        return Err(invalid(
                            format!("input[{i}]"),
                            "Mistral's moderation API classifies text only; image inputs cannot be moderated by this model",
                        )
                        .with_code("unsupported_value"))
                    }
                    _ => {
                        return Err(invalid(
                            format!("input[{i}]"),
                            "each input part must be `{\"type\": \"text\", \"text\": ...}`",
                        ))
                    }
                }
            }
            Ok(Value::String(texts.join("\n")))
        }
        _ => Err(invalid(
            "input",
            "`input` must be a non-empty string, an array of strings, or an array of text parts",
        )),
    }
}

fn moderation_request(body: &[u8], model: &str) -> Result<UpstreamRequest, ApiError> {
    let req: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(format!("request body is not a JSON object: {e}"))
    })?;
    if let Some(extra) = req
        .keys()
        .find(|k| !matches!(k.as_str(), "model" | "input"))
    {
        return Err(invalid(
            extra.as_str(),
            format!("`{extra}` is not a moderation parameter"),
        ));
    }
    let input = moderation_input(req.get("input"))?;
    let out = json!({"model": model, "input": input});
    Ok(post("/moderations", None, Bytes::from(out.to_string())))
}

/// One Mistral classification result in OpenAI's shape.
fn moderation_result(result: &Value) -> Result<Value, ApiError> {
    let cats = result
        .get("categories")
        .and_then(Value::as_object)
        .ok_or_else(|| bad_upstream("mistral: a moderation result has no `categories`"))?;
    let scores = result.get("category_scores").and_then(Value::as_object);
    let mut categories = Map::new();
    let mut category_scores = Map::new();
    let mut applied = Map::new();
    for name in OPENAI_CATEGORIES {
        categories.insert((*name).to_string(), Value::Bool(false));
        category_scores.insert((*name).to_string(), json!(0.0));
        applied.insert((*name).to_string(), json!([]));
    }
    let mut flagged = false;
    for (name, value) in cats {
        let hit = value.as_bool().unwrap_or(false);
        let score = scores
            .and_then(|s| s.get(name))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        flagged |= hit;
        let key = openai_category(name).map_or_else(|| name.clone(), str::to_string);
        // Two Mistral categories never share a key within one model's answer; if
        // they ever did, the stronger signal wins.
        let was_hit = categories
            .get(&key)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let was_score = category_scores
            .get(&key)
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        categories.insert(key.clone(), Value::Bool(hit || was_hit));
        category_scores.insert(key.clone(), json!(score.max(was_score)));
        applied.insert(key, json!(["text"]));
    }
    Ok(json!({
        "flagged": flagged,
        "categories": categories,
        "category_scores": category_scores,
        "category_applied_input_types": applied,
    }))
}

fn moderation_response(body: &[u8], ctx: &ChatContext<'_>) -> Result<Translated, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| bad_upstream("mistral: the moderation answer is not JSON"))?;
    let results = v
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream("mistral: the moderation answer has no `results`"))?;
    let results = results
        .iter()
        .map(moderation_result)
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = json!({
        "id": v.get("id").cloned().unwrap_or_else(|| json!("modr-mistral")),
        "model": ctx.requested_model,
        "results": results,
    });
    if let (Some(usage), Some(obj)) = (
        v.get("usage").filter(|u| u.is_object()),
        out.as_object_mut(),
    ) {
        obj.insert("usage".to_string(), usage.clone());
    }
    Ok(Translated::json(out.to_string()))
}

// ---------------------------------------------------------------------------
// Completions (Codestral fill-in-the-middle)
// ---------------------------------------------------------------------------

fn fim_request(body: &[u8], model: &str) -> Result<UpstreamRequest, ApiError> {
    let req: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_request(format!("request body is not a JSON object: {e}"))
    })?;
    let mut out = Map::new();
    out.insert("model".into(), Value::String(model.to_string()));
    for (key, value) in &req {
        let unset = value.is_null();
        match key.as_str() {
            "model" | "user" => {}
            "prompt" => {
                let prompt = match value {
                    Value::String(p) => p.clone(),
                    Value::Array(a) if a.len() == 1 && a[0].is_string() => {
                        a[0].as_str().unwrap_or_default().to_string()
                    }
                    _ => {
                        return Err(invalid(
                            "prompt",
                            "Codestral fill-in-the-middle takes one string `prompt`",
                        ))
                    }
                };
                out.insert("prompt".into(), Value::String(prompt));
            }
            "suffix" | "max_tokens" | "temperature" | "top_p" | "stop" | "min_tokens" => {
                if !unset {
                    out.insert(key.clone(), value.clone());
                }
            }
            "seed" => {
                if !unset {
                    out.insert("random_seed".into(), value.clone());
                }
            }
            "stream" if value.as_bool() == Some(true) => {
                return Err(unsupported(
                    "stream",
                    "streaming completions are not available for Codestral fill-in-the-middle through this proxy; send `stream: false`",
                ))
            }
            "stream" | "stream_options" => {}
            "n" | "best_of" if unset || value.as_u64() == Some(1) => {}
            "echo" if unset || value.as_bool() == Some(false) => {}
            "logprobs" | "logit_bias" if unset => {}
            "presence_penalty" | "frequency_penalty"
                if unset || value.as_f64() == Some(0.0) => {}
            other => {
                return Err(unsupported(
                    other,
                    format!("`{other}` has no equivalent in Codestral fill-in-the-middle"),
                ))
            }
        }
    }
    if !out.contains_key("prompt") {
        return Err(invalid("prompt", "missing required parameter: `prompt`"));
    }
    Ok(post(
        "/fim/completions",
        None,
        Bytes::from(Value::Object(out).to_string()),
    ))
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    invalid(param, message).with_code("unsupported_value")
}

/// Mistral's chat-shaped FIM answer as an OpenAI `text_completion`.
fn fim_response(body: &[u8], ctx: &ChatContext<'_>) -> Result<Translated, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| bad_upstream("mistral: the completion is not JSON"))?;
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_upstream("mistral: the completion has no `choices`"))?;
    let choices: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let text = c
                .get("message")
                .and_then(|m| m.get("content"))
                .map(|content| match content {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect(),
                    _ => String::new(),
                })
                .unwrap_or_default();
            let finish = match c.get("finish_reason").and_then(Value::as_str) {
                Some("length" | "model_length") => json!("length"),
                Some(_) => json!("stop"),
                None => Value::Null,
            };
            json!({
                "text": text,
                "index": c.get("index").cloned().unwrap_or_else(|| json!(i)),
                "logprobs": null,
                "finish_reason": finish,
            })
        })
        .collect();
    let mut out = json!({
        "id": v.get("id").cloned().unwrap_or_else(|| json!("cmpl-mistral")),
        "object": "text_completion",
        "created": v.get("created").cloned().unwrap_or_else(|| json!(super::common::now_secs())),
        "model": ctx.requested_model,
        "choices": choices,
    });
    if let (Some(usage), Some(obj)) = (
        v.get("usage").filter(|u| u.is_object()),
        out.as_object_mut(),
    ) {
        obj.insert("usage".to_string(), usage.clone());
    }
    Ok(Translated::json(out.to_string()))
}

// ---------------------------------------------------------------------------
// OCR
// ---------------------------------------------------------------------------

/// Where Azure serves Mistral OCR relative to the deployment's base URL. The
/// Foundry inference base (`…/models`) and Foundry's OpenAI v1 base
/// (`…/openai/v1`) sit below the resource root, where the OCR route lives, so
/// the path climbs out of them (the URL parser resolves the `..`). A base
/// ending in `/v1` is a serverless deployment, whose OCR route is `/v1/ocr`.
pub(crate) fn azure_ocr_path(base_url: &str) -> &'static str {
    let base = base_url.trim_end_matches('/').to_ascii_lowercase();
    if base.ends_with("/openai/v1") {
        "/../../providers/mistral/azure/ocr"
    } else if base.ends_with("/models") {
        "/../providers/mistral/azure/ocr"
    } else if base.ends_with("/v1") {
        "/ocr"
    } else {
        "/providers/mistral/azure/ocr"
    }
}

/// An OCR request for Mistral OCR on Azure AI Foundry: the client's body with
/// `model` set to the deployment, once the document is known to be inline.
pub(crate) fn azure_ocr_request(
    body: &[u8],
    model: &str,
    base_url: &str,
) -> Result<UpstreamRequest, ApiError> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let doc = req.get("document");
    let kind = doc
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("document_url");
    let url = doc.and_then(|d| d.get(kind)).and_then(Value::as_str);
    let field = format!("document.{kind}");
    match url {
        Some(u) if is_base64_data_url(u) => {}
        Some(u) if u.starts_with("data:") => {
            return Err(invalid(
                field,
                "data URLs must be base64-encoded (`data:<type>;base64,...`)",
            ))
        }
        Some(_) => {
            return Err(invalid(
                field,
                "Azure AI Foundry's Mistral OCR cannot fetch URLs: send the document inline as a \
                 base64 `data:` URL (e.g. `data:application/pdf;base64,...`)",
            )
            .with_code("unsupported_value"))
        }
        None => {
            return Err(invalid(
                "document",
                format!("missing required parameter: `{field}`"),
            ))
        }
    }
    let body = json_with_model(body, model)?;
    Ok(post(azure_ocr_path(base_url), None, body))
}

fn is_base64_data_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("data:") else {
        return false;
    };
    rest.split_once(',').is_some_and(|(meta, _)| {
        meta.split(';')
            .skip(1)
            .any(|p| p.eq_ignore_ascii_case("base64"))
    })
}

/// A JSON answer passed on as received, once it is known to be a JSON object.
pub(crate) fn json_pass_through(label: &str, body: &[u8]) -> Result<Translated, ApiError> {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => {
            Ok(Translated::json(Bytes::copy_from_slice(body)))
        }
        _ => Err(bad_upstream(format!(
            "{label}: the upstream's answer is not a JSON object"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// At a line start, as the gateway's own scanner looks for it.
const DONE_MARKER: &[u8] = b"\ndata: [DONE]";

/// Passes an OpenAI-format stream on unchanged, watching only for `[DONE]`
/// (including one split across chunks) so a cut stream is reported as one.
struct PassThroughStream {
    /// The last bytes seen, enough to complete a marker split across chunks;
    /// starts as a newline because the stream start is a line start.
    tail: Vec<u8>,
    done: bool,
}

impl PassThroughStream {
    fn new() -> Self {
        PassThroughStream {
            tail: vec![b'\n'],
            done: false,
        }
    }

    fn scan(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        let head = &chunk[..chunk.len().min(DONE_MARKER.len())];
        let mut joined = Vec::with_capacity(self.tail.len() + head.len());
        joined.extend_from_slice(&self.tail);
        joined.extend_from_slice(head);
        self.done = contains(&joined, DONE_MARKER) || contains(chunk, DONE_MARKER);
        let keep = DONE_MARKER.len() - 1;
        if chunk.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl StreamTranslator for PassThroughStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), ApiError> {
        self.scan(chunk);
        out.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.done {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorKind::BadGateway,
            "upstream provider `mistral` closed the stream before it finished (no [DONE])",
        )
        .with_code("upstream_stream_truncated"))
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Mistral's error bodies: `{"object":"error","message":"...","type","param","code"}`,
/// with `message` sometimes a validation `{"detail":[{"loc","msg","type"}]}`;
/// a bare `{"detail":[...]}`; or `{"message":"..."}` (auth, rate limits).
pub(crate) fn mistral_error(label: &str, status: u16, body: &[u8]) -> ApiError {
    let Some(v) = serde_json::from_slice::<Value>(body).ok() else {
        return provider_error(label, status, body);
    };
    if matches!(status, 401 | 403) {
        return provider_error(label, status, body);
    }
    let detail = v
        .get("message")
        .and_then(|m| m.get("detail"))
        .or_else(|| v.get("detail"))
        .and_then(Value::as_array);
    let mut param = v.get("param").and_then(Value::as_str).map(str::to_string);
    let message = if let Some(items) = detail.filter(|d| !d.is_empty()) {
        let described: Vec<String> = items
            .iter()
            .map(|d| {
                let loc = location(d);
                let msg = d.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                match &loc {
                    Some(l) => format!("{l}: {msg}"),
                    None => msg.to_string(),
                }
            })
            .collect();
        if param.is_none() {
            param = items.first().and_then(location);
        }
        described.join("; ")
    } else if let Some(m) = v.get("message").and_then(Value::as_str) {
        m.to_string()
    } else {
        return provider_error(label, status, body);
    };
    let (kind, our_code) = kind_for_status(status);
    let mut e = with_code(ApiError::new(kind, format!("{label}: {message}")), our_code);
    if our_code.is_none() {
        if let Some(c) = v
            .get("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        {
            e = e.with_code(c);
        }
    }
    if let Some(p) = param {
        e = e.with_param(p);
    }
    e
}

/// Whether an error body is in one of Mistral's shapes (`"object": "error"`,
/// or a validation `detail` list) rather than, say, Azure's `{"error": {...}}`.
pub(crate) fn is_mistral_error(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    v.get("object").and_then(Value::as_str) == Some("error")
        || v.get("detail").is_some_and(Value::is_array)
}

/// A validation error's `loc` without the leading `body`: `["body","top_p"]` → `top_p`.
fn location(detail: &Value) -> Option<String> {
    let parts: Vec<String> = detail
        .get("loc")?
        .as_array()?
        .iter()
        .filter_map(|p| match p {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    let parts = match parts.first().map(String::as_str) {
        Some("body") => &parts[1..],
        _ => &parts[..],
    };
    (!parts.is_empty()).then(|| parts.join("."))
}

// ---------------------------------------------------------------------------
// The adapter
// ---------------------------------------------------------------------------

impl ChatAdapter for MistralAdapter {
    fn offers(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Embeddings
                | Endpoint::Moderations
                | Endpoint::Ocr
                | Endpoint::AudioTranscriptions
        )
    }

    fn chat_request(
        &self,
        openai_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        let body = chat_body(openai_body, ctx.upstream_model)?;
        Ok(post("/chat/completions", None, body))
    }

    fn chat_response(
        &self,
        upstream_body: &[u8],
        _ctx: &ChatContext<'_>,
    ) -> Result<Bytes, ApiError> {
        json_pass_through("mistral", upstream_body).map(|t| t.body)
    }

    fn chat_stream(&self, _ctx: &ChatContext<'_>) -> Box<dyn StreamTranslator> {
        Box::new(PassThroughStream::new())
    }

    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        _target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        match req.endpoint {
            Endpoint::Embeddings | Endpoint::Ocr => {
                let body = json_with_model(req.body, ctx.upstream_model)?;
                Ok(post(req.endpoint.path(), None, body))
            }
            Endpoint::Moderations => moderation_request(req.body, ctx.upstream_model),
            Endpoint::Completions => fim_request(req.body, ctx.upstream_model),
            Endpoint::AudioTranscriptions => {
                let content_type = req.content_type.ok_or_else(|| {
                    ApiError::invalid_request("transcriptions take multipart/form-data")
                })?;
                let body = multipart_with_model(req.body, content_type, ctx.upstream_model)?;
                let header = HeaderValue::from_str(content_type).map_err(|_| {
                    ApiError::invalid_request("the Content-Type header is not valid")
                })?;
                Ok(post(req.endpoint.path(), Some(header), body))
            }
            other => Err(not_offered(other)),
        }
    }

    fn endpoint_response(
        &self,
        endpoint: Endpoint,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        match endpoint {
            Endpoint::Moderations => moderation_response(upstream_body, ctx),
            Endpoint::Completions => fim_response(upstream_body, ctx),
            Endpoint::Embeddings | Endpoint::Ocr | Endpoint::AudioTranscriptions => {
                json_pass_through("mistral", upstream_body)
            }
            other => Err(not_offered(other)),
        }
    }

    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        if req.wants_text() {
            return Ok(Translated {
                body: Bytes::copy_from_slice(upstream_body),
                content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
            });
        }
        self.endpoint_response(req.endpoint, upstream_body, ctx)
    }

    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        mistral_error("mistral", status, upstream_body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ctx() -> ChatContext<'static> {
        ChatContext {
            upstream_model: "mistral-moderation-latest",
            requested_model: "mod",
            stream: false,
            include_usage: true,
        }
    }

    #[test]
    fn chat_body_is_forwarded_byte_for_byte_but_the_model() {
        let body = br#"{ "model" : "small",  "messages":[{"role":"user","content":"hi"}],"stream":true ,"x":1}"#;
        let up = MistralAdapter
            .chat_request(
                body,
                &ChatContext {
                    upstream_model: "mistral-small-latest",
                    requested_model: "small",
                    stream: true,
                    include_usage: true,
                },
            )
            .unwrap();
        assert_eq!(up.path, "/chat/completions");
        assert_eq!(
            &up.body[..],
            &br#"{ "model" : "mistral-small-latest",  "messages":[{"role":"user","content":"hi"}],"stream":true ,"x":1}"#[..]
        );
    }

    #[test]
    fn stream_passes_through_and_needs_done_even_when_split() {
        let all = b"data: {\"id\":\"a\",\"choices\":[]}\n\ndata: [DONE]\n\n";
        for cut in 0..all.len() {
            let mut s = PassThroughStream::new();
            let mut out = Vec::new();
            s.feed(&all[..cut], &mut out).unwrap();
            s.feed(&all[cut..], &mut out).unwrap();
            assert_eq!(out, all.to_vec());
            assert!(s.finish(&mut out).is_ok(), "cut at {cut}");
        }
        let mut s = PassThroughStream::new();
        let mut out = Vec::new();
        s.feed(b"data: {\"content\":\"data: [DONE]\"}\n\n", &mut out)
            .unwrap();
        let e = s.finish(&mut out).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("upstream_stream_truncated"));
    }

    #[test]
    fn moderation_input_forms() {
        assert_eq!(moderation_input(Some(&json!("a"))).unwrap(), json!("a"));
        assert_eq!(
            moderation_input(Some(&json!(["a", "b"]))).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            moderation_input(Some(
                &json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
            ))
            .unwrap(),
            json!("a\nb")
        );
        let e = moderation_input(Some(
            &json!([{"type": "image_url", "image_url": {"url": "x"}}]),
        ))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0]"));
        assert_eq!(
            moderation_input(Some(&json!(3)))
                .unwrap_err()
                .param
                .as_deref(),
            Some("input")
        );
        let up = moderation_request(
            br#"{"model":"mod","input":"hi"}"#,
            "mistral-moderation-latest",
        )
        .unwrap();
        assert_eq!(up.path, "/moderations");
        assert_eq!(
            serde_json::from_slice::<Value>(&up.body).unwrap(),
            json!({"model": "mistral-moderation-latest", "input": "hi"})
        );
        assert_eq!(
            moderation_request(br#"{"model":"m","input":"x","foo":1}"#, "m")
                .unwrap_err()
                .param
                .as_deref(),
            Some("foo")
        );
    }

    #[test]
    fn moderation_answer_maps_categories_and_computes_flagged() {
        let upstream = json!({
            "id": "mod-1", "model": "mistral-moderation-latest",
            "results": [
                {"categories": {"sexual": false, "hate_and_discrimination": false, "violence_and_threats": true,
                                "dangerous_and_criminal_content": false, "selfharm": false, "health": false,
                                "financial": false, "law": false, "pii": false},
                 "category_scores": {"sexual": 0.01, "hate_and_discrimination": 0.02, "violence_and_threats": 0.99,
                                     "dangerous_and_criminal_content": 0.03, "selfharm": 0.04, "health": 0.0,
                                     "financial": 0.0, "law": 0.0, "pii": 0.0}},
                {"categories": {"sexual": false, "law": true}, "category_scores": {"sexual": 0.0, "law": 0.8}},
                {"categories": {"sexual": false}, "category_scores": {"sexual": 0.0}},
            ]
        });
        let t = moderation_response(upstream.to_string().as_bytes(), &ctx()).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["id"], "mod-1");
        assert_eq!(v["model"], "mod");
        let r = &v["results"][0];
        assert_eq!(r["flagged"], true);
        assert_eq!(r["categories"]["violence"], true);
        assert_eq!(r["category_scores"]["violence"], 0.99);
        assert_eq!(r["category_scores"]["hate"], 0.02);
        assert_eq!(r["category_scores"]["illicit"], 0.03);
        assert_eq!(r["category_scores"]["self-harm"], 0.04);
        assert_eq!(r["categories"]["pii"], false);
        assert!(r["categories"].get("violence_and_threats").is_none());
        assert_eq!(r["categories"]["harassment"], false);
        assert_eq!(r["category_applied_input_types"]["harassment"], json!([]));
        assert_eq!(
            r["category_applied_input_types"]["violence"],
            json!(["text"])
        );
        for name in OPENAI_CATEGORIES {
            assert!(r["categories"][name].is_boolean(), "{name}");
            assert!(r["category_scores"][name].is_number(), "{name}");
        }
        assert_eq!(
            v["results"][1]["flagged"], true,
            "Mistral-only categories count"
        );
        assert_eq!(v["results"][1]["categories"]["law"], true);
        assert_eq!(v["results"][2]["flagged"], false);
        assert!(moderation_response(b"{}", &ctx()).is_err());
    }

    #[test]
    fn completions_become_codestral_fim_and_back() {
        let up = fim_request(
            br#"{"model":"c","prompt":"def f(","suffix":"return x","max_tokens":32,"seed":3,"n":1,"echo":false,"stop":["\n\n"],"user":"u"}"#,
            "codestral-latest",
        )
        .unwrap();
        assert_eq!(up.path, "/fim/completions");
        assert_eq!(
            serde_json::from_slice::<Value>(&up.body).unwrap(),
            json!({"model": "codestral-latest", "prompt": "def f(", "suffix": "return x",
                   "max_tokens": 32, "random_seed": 3, "stop": ["\n\n"]})
        );
        for (body, param) in [
            (r#"{"model":"c","prompt":"x","stream":true}"#, "stream"),
            (r#"{"model":"c","prompt":"x","n":2}"#, "n"),
            (r#"{"model":"c","prompt":"x","logprobs":2}"#, "logprobs"),
            (r#"{"model":"c","prompt":["a","b"]}"#, "prompt"),
        ] {
            let e = fim_request(body.as_bytes(), "m").unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        let answer = json!({"id": "f1", "object": "chat.completion", "created": 5, "model": "codestral-latest",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x):", "prefix": false}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}});
        let t = fim_response(answer.to_string().as_bytes(), &ctx()).unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "x):");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["total_tokens"], 6);
        assert_eq!(v["model"], "mod");
    }

    #[test]
    fn azure_ocr_paths_follow_the_base_url() {
        assert_eq!(
            azure_ocr_path("https://r.services.ai.azure.com/models"),
            "/../providers/mistral/azure/ocr"
        );
        assert_eq!(
            azure_ocr_path("https://r.services.ai.azure.com/openai/v1/"),
            "/../../providers/mistral/azure/ocr"
        );
        assert_eq!(
            azure_ocr_path("https://r.services.ai.azure.com"),
            "/providers/mistral/azure/ocr"
        );
        assert_eq!(
            azure_ocr_path("https://x.eastus2.models.ai.azure.com/v1"),
            "/ocr"
        );
        for (base, want) in [
            (
                "https://r.services.ai.azure.com/models",
                "https://r.services.ai.azure.com/providers/mistral/azure/ocr",
            ),
            (
                "https://r.services.ai.azure.com/openai/v1",
                "https://r.services.ai.azure.com/providers/mistral/azure/ocr",
            ),
        ] {
            let url = reqwest::Url::parse(&format!("{base}{}", azure_ocr_path(base))).unwrap();
            assert_eq!(url.as_str(), want);
        }
    }

    #[test]
    fn azure_ocr_takes_inline_documents_only() {
        let ok = br#"{"model":"ocr","document":{"type":"document_url","document_url":"data:application/pdf;base64,JVBERi0="}}"#;
        let up = azure_ocr_request(
            ok,
            "mistral-document-ai-2505",
            "https://r.services.ai.azure.com/models",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(v["model"], "mistral-document-ai-2505");
        let url = br#"{"model":"ocr","document":{"type":"image_url","image_url":"https://example.com/a.png"}}"#;
        let e = azure_ocr_request(url, "m", "https://r").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("document.image_url"));
        assert_eq!(e.status().as_u16(), 400);
        let plain =
            br#"{"model":"ocr","document":{"type":"image_url","image_url":"data:image/png,abc"}}"#;
        assert!(azure_ocr_request(plain, "m", "https://r").is_err());
    }

    #[test]
    fn errors_name_the_field_mistral_validated() {
        let body = br#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","stream_options"],"msg":"Extra inputs are not permitted","input":{}}]},"type":"invalid_request_error","param":null,"code":null}"#;
        let e = mistral_error("mistral", 422, body);
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.param.as_deref(), Some("stream_options"));
        assert!(
            e.message.contains("Extra inputs are not permitted"),
            "{}",
            e.message
        );
        let e = mistral_error("mistral", 400, br#"{"object":"error","message":"Assistant message must have either content or tool_calls","type":"invalid_request_error","param":null,"code":"3230"}"#);
        assert_eq!(
            (e.status().as_u16(), e.code.as_deref()),
            (400, Some("3230"))
        );
        let e = mistral_error(
            "mistral",
            401,
            br#"{"message":"Unauthorized","request_id":"r"}"#,
        );
        assert_eq!(
            (e.status().as_u16(), e.code.as_deref()),
            (502, Some("upstream_auth_failed"))
        );
        let e = mistral_error(
            "mistral",
            429,
            br#"{"message":"Requests rate limit exceeded"}"#,
        );
        assert_eq!(e.status().as_u16(), 429);
    }
}
