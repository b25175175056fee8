//! Fakes of seven web search APIs on one server, each under its own path
//! prefix so one process can stand in for all of them:
//!
//! | provider | route (prefix + the real path) | auth the fake requires |
//! | --- | --- | --- |
//! | Tavily | `POST /tavily/search` | `Authorization: Bearer <key>` |
//! | Brave | `GET /brave/res/v1/web/search?q=` | `X-Subscription-Token: <key>` |
//! | Exa | `POST /exa/search` | `x-api-key: <key>` |
//! | Firecrawl | `POST /firecrawl/v2/search` | `Authorization: Bearer <key>` |
//! | Serper | `POST /serper/search` | `X-API-KEY: <key>` |
//! | Linkup | `POST /linkup/v1/search` | `Authorization: Bearer <key>` |
//! | SearXNG | `GET /searxng/search?q=&format=json` | none (a credential is an error) |
//!
//! Written from each provider's API reference: the fake refuses what the real
//! API refuses (missing query, out-of-range counts, unknown country codes) in
//! that provider's own error shape, and is stricter in one way: fields and
//! query parameters the reference does not list are refused, so a translation
//! that leaks an OpenAI field fails a test instead of passing silently.
//!
//! Answers are deterministic: `n` results (the requested count, else the
//! provider's default) spread over the requested domains (else
//! `example.com`/`example.org`/`example.net`), with each provider's own field
//! names, date formats and quirks (Brave's `<strong>` highlighting and HTML
//! entities, Linkup's image results, Exa's highlights, SearXNG ignoring
//! `site:` for one result and having no result count).
//!
//! `GET /__requests` returns what was received; `POST /__fault` queues a fault
//! for another process: `{"status": 429}` (the provider's documented error for
//! that status) or `{"malformed": "<raw 200 body>"}`.

use crate::common::{bearer, bind_local, is_json, respond, unknown_key, KeyedState, Server};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The providers this fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    Tavily,
    Brave,
    Exa,
    Firecrawl,
    Serper,
    Linkup,
    Searxng,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Provider::Tavily,
        Provider::Brave,
        Provider::Exa,
        Provider::Firecrawl,
        Provider::Serper,
        Provider::Linkup,
        Provider::Searxng,
    ];

    /// The provider's name in liter-llm's registry.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Tavily => "tavily",
            Provider::Brave => "brave",
            Provider::Exa => "exa_ai",
            Provider::Firecrawl => "firecrawl",
            Provider::Serper => "serper",
            Provider::Linkup => "linkup",
            Provider::Searxng => "searxng",
        }
    }

    /// The base URL path, shaped like the real base URL
    /// (`https://api.search.brave.com/res/v1` → `/brave/res/v1`).
    pub fn base_path(self) -> &'static str {
        match self {
            Provider::Tavily => "/tavily",
            Provider::Brave => "/brave/res/v1",
            Provider::Exa => "/exa",
            Provider::Firecrawl => "/firecrawl/v2",
            Provider::Serper => "/serper",
            Provider::Linkup => "/linkup/v1",
            Provider::Searxng => "/searxng",
        }
    }

    /// The search route under the base URL.
    pub fn search_path(self) -> String {
        match self {
            Provider::Brave => format!("{}/web/search", self.base_path()),
            _ => format!("{}/search", self.base_path()),
        }
    }

    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub provider: Provider,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The query string decoded, in order.
    pub params: Vec<(String, String)>,
    pub headers: HeaderMap,
    /// The parsed body, `Null` when empty or not JSON.
    pub body: Value,
    pub raw: Bytes,
}

impl RecordedRequest {
    /// The decoded value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `{provider, method, path, query, params, headers, body}`.
    pub fn to_json(&self) -> Value {
        let mut v = crate::common::request_json(
            &self.method,
            &self.path,
            self.query.as_deref(),
            &self.headers,
            &self.body,
        );
        if let Some(obj) = v.as_object_mut() {
            obj.insert("provider".into(), Value::from(self.provider.name()));
            let params: Map<String, Value> = self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            obj.insert("params".into(), Value::Object(params));
        }
        v
    }
}

/// A way to make the next request go wrong, consumed by that request after
/// the auth check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The provider's documented error body for this status (429 adds
    /// `retry-after: 1`).
    Documented(u16),
    /// This status, content type and raw body.
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// A 200 `application/json` answer with this raw body.
    Malformed(String),
}

type Shared = KeyedState<RecordedRequest, Fault>;

/// A running fake. Dropping it stops the server.
pub struct FakeSearch {
    shared: Arc<Shared>,
    server: Server,
}

/// Binds `127.0.0.1:0`; keyed providers must send `api_key`.
pub async fn start(api_key: &str) -> std::io::Result<FakeSearch> {
    let listener = bind_local().await?;
    start_on(listener, api_key).await
}

/// Serves on a listener the caller bound (the `fake-providers` binary).
pub async fn start_on(listener: TcpListener, api_key: &str) -> std::io::Result<FakeSearch> {
    let shared = Shared::new(api_key);
    let mut app = Router::new();
    for provider in Provider::ALL {
        let handler =
            move |state: State<Arc<Shared>>,
                  method: Method,
                  uri: Uri,
                  headers: HeaderMap,
                  raw: Bytes| { serve(provider, state, method, uri, headers, raw) };
        app = app.route(&provider.search_path(), any(handler));
    }
    let app = app
        .route("/__requests", get(recorded))
        .route("/__fault", post(queue_fault))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app)?;
    Ok(FakeSearch { shared, server })
}

impl FakeSearch {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn root(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The base URL to configure for `provider`.
    pub fn base_url(&self, provider: Provider) -> String {
        format!("{}{}", self.root(), provider.base_path())
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.all()
    }

    /// Queue a fault; each request consumes one.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults.push(fault);
    }
}

// ---------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------

fn json_response(status: u16, v: &Value) -> Response {
    respond(status, "application/json", v.to_string())
}

/// SearXNG's (Flask's) HTML error page.
fn html_page(status: u16, title: &str) -> String {
    format!("<!DOCTYPE html><html><head><title>{status} {title}</title></head><body><h1>{title}</h1></body></html>")
}

fn html(status: u16, title: &str) -> Response {
    respond(status, "text/html; charset=utf-8", html_page(status, title))
}

async fn recorded(State(shared): State<Arc<Shared>>) -> Response {
    let all = shared.requests.to_json(RecordedRequest::to_json);
    json_response(200, &all)
}

async fn not_found() -> Response {
    json_response(404, &json!({"error": "not found"}))
}

/// `POST /__fault`: `{"status": 429}` or `{"malformed": "<raw body>"}`.
async fn queue_fault(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let fault = if let Some(body) = v.get("malformed").and_then(Value::as_str) {
        Fault::Malformed(body.to_string())
    } else if let Some(status) = v
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
    {
        Fault::Documented(status)
    } else {
        return json_response(
            400,
            &json!({"error": "expected {\"status\": N} or {\"malformed\": \"...\"}"}),
        );
    };
    shared.faults.push(fault);
    json_response(200, &json!({"queued": true}))
}

/// Records a request to `provider`'s search route and lets the provider answer.
async fn serve(
    provider: Provider,
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let req = record(&shared, provider, &method, &uri, &headers, &raw);
    let answer = match provider {
        Provider::Tavily => tavily,
        Provider::Brave => brave,
        Provider::Exa => exa,
        Provider::Firecrawl => firecrawl,
        Provider::Serper => serper,
        Provider::Linkup => linkup,
        Provider::Searxng => searxng,
    };
    answer(&shared, &req)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode_component(k), decode_component(v)),
            None => (decode_component(kv), String::new()),
        })
        .collect()
}

fn record(
    shared: &Shared,
    provider: Provider,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
) -> RecordedRequest {
    let req = RecordedRequest {
        provider,
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        params: parse_query(uri.query()),
        headers: headers.clone(),
        body: serde_json::from_slice(raw).unwrap_or(Value::Null),
        raw: raw.clone(),
    };
    shared.requests.push(req.clone());
    req
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The fault queued for this request, as the provider would answer it.
fn take_fault(shared: &Shared, provider: Provider) -> Option<Response> {
    let fault = shared.faults.pop()?;
    Some(match fault {
        Fault::Documented(status) => {
            let (content_type, body) = documented_error(provider, status);
            let mut r = respond(status, content_type, body);
            if status == 429 {
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            r
        }
        Fault::Raw {
            status,
            content_type,
            body,
        } => respond(status, content_type, body),
        Fault::Malformed(body) => respond(200, "application/json", body),
    })
}

/// The error body `provider` documents for `status`, and its content type.
pub fn documented_error(provider: Provider, status: u16) -> (&'static str, String) {
    let json_ct = "application/json";
    match provider {
        Provider::Tavily => {
            let msg = match status {
                400 => "Invalid topic. Must be 'general', 'news' or 'finance'.",
                401 => "Unauthorized: missing or invalid API key.",
                429 => "Your request has been blocked due to excessive requests. Please reduce rate of requests.",
                432 => "This request exceeds your plan's set usage limit. Please upgrade your plan or contact support@tavily.com",
                433 => "This request exceeds the pay-as-you-go limit. You can increase your limit on the Tavily dashboard.",
                _ => "Internal Server Error",
            };
            (json_ct, tavily_error(msg).to_string())
        }
        Provider::Brave => {
            let (code, detail) = match status {
                422 => (
                    "SUBSCRIPTION_TOKEN_INVALID",
                    "The provided subscription token is invalid.",
                ),
                429 => ("RATE_LIMITED", "Request rate limit exceeded for plan."),
                404 => ("SUBSCRIPTION_NOT_FOUND", "No subscription found."),
                _ => ("INTERNAL_ERROR", "An internal error occurred."),
            };
            (
                json_ct,
                brave_error(status, code, detail, Value::Null).to_string(),
            )
        }
        Provider::Exa => {
            let (tag, msg) = match status {
                400 => ("INVALID_REQUEST_BODY", "Invalid request body"),
                401 => ("INVALID_API_KEY", "Invalid API key"),
                402 => (
                    "NO_MORE_CREDITS",
                    "You have run out of credits. Please top up at dashboard.exa.ai.",
                ),
                429 => (
                    "RATE_LIMIT_EXCEEDED",
                    "You've exceeded your rate limit. Please slow down.",
                ),
                _ => ("INTERNAL_ERROR", "Internal server error"),
            };
            (json_ct, exa_error(msg, tag).to_string())
        }
        Provider::Firecrawl => {
            let msg = match status {
                401 => "Unauthorized: Invalid token",
                402 => "Insufficient credits to perform this request. For more credits, you can upgrade your plan at https://firecrawl.dev/pricing.",
                429 => "Rate limit exceeded. Consumed (req/min): 101, Remaining (req/min): 0. Upgrade your plan at https://firecrawl.dev/pricing for increased rate limits or please retry after 60s, resets at Tue Jan 14 2025 09:31:00 GMT+0000 (Coordinated Universal Time)",
                _ => "An unexpected error occurred. Please contact help@firecrawl.com for help.",
            };
            (json_ct, json!({"success": false, "error": msg}).to_string())
        }
        Provider::Serper => {
            let msg = match status {
                400 => "Not enough credits",
                403 => "Unauthorized.",
                429 => "Too many requests",
                _ => "Internal server error",
            };
            (
                json_ct,
                json!({"message": msg, "statusCode": status}).to_string(),
            )
        }
        Provider::Linkup => {
            let (code, msg) = match status {
                401 => ("UNAUTHORIZED", "Unauthorized action"),
                402 => (
                    "INSUFFICIENT_FUNDS_CREDITS",
                    "You do not have enough credits to perform this request.",
                ),
                429 => ("TOO_MANY_REQUESTS", "Too many requests, please slow down."),
                _ => ("INTERNAL_SERVER_ERROR", "Internal server error"),
            };
            (
                json_ct,
                linkup_error(status, code, msg, Value::Array(Vec::new())).to_string(),
            )
        }
        Provider::Searxng => {
            let title = match status {
                403 => "Forbidden",
                429 => "Too Many Requests",
                _ => "Internal Server Error",
            };
            ("text/html; charset=utf-8", html_page(status, title))
        }
    }
}

fn tavily_error(message: &str) -> Value {
    json!({"detail": {"error": message}})
}

fn brave_error(status: u16, code: &str, detail: &str, meta: Value) -> Value {
    json!({
        "type": "ErrorResponse",
        "error": {
            "id": "5d832250-9396-4f6e-b84a-2a1fe524cd7d",
            "status": status,
            "code": code,
            "detail": detail,
            "meta": meta,
        },
        "time": 1_736_847_000,
    })
}

fn exa_error(message: &str, tag: &str) -> Value {
    json!({"requestId": "b5947044c4b78efa9552a7c89b306d95", "error": message, "tag": tag})
}

fn linkup_error(status: u16, code: &str, message: &str, details: Value) -> Value {
    json!({"statusCode": status, "error": {"code": code, "message": message, "details": details}})
}

// ---------------------------------------------------------------------------
// Deterministic results
// ---------------------------------------------------------------------------

const DEFAULT_DOMAINS: [&str; 3] = ["example.com", "example.org", "example.net"];

/// One generated result before a provider shapes it.
struct Made {
    index: usize,
    title: String,
    url: String,
    domain: String,
    text: String,
}

fn slug(query: &str) -> String {
    let words: Vec<String> = query
        .split_whitespace()
        .filter(|w| !w.contains(':') && !w.starts_with('(') && !w.starts_with('-'))
        .map(|w| {
            w.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        "page".to_string()
    } else {
        words.join("-")
    }
}

/// The query without `site:` operators, as the results quote it.
fn bare_query(query: &str) -> String {
    query
        .split_whitespace()
        .filter(|w| {
            let w = w.trim_start_matches('(').trim_start_matches('-');
            !w.starts_with("site:") && w != "OR" && w != ")"
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn make(query: &str, n: usize, domains: &[String], excluded: &[String]) -> Vec<Made> {
    let pool: Vec<String> = if domains.is_empty() {
        DEFAULT_DOMAINS
            .iter()
            .map(|d| d.to_string())
            .filter(|d| !excluded.contains(d))
            .collect()
    } else {
        domains.to_vec()
    };
    let pool = if pool.is_empty() {
        vec!["example.edu".to_string()]
    } else {
        pool
    };
    let bare = bare_query(query);
    (1..=n)
        .map(|i| {
            let domain = pool[(i - 1) % pool.len()].clone();
            Made {
                index: i,
                title: format!("Result {i} for {bare}"),
                url: format!("https://{domain}/{}/{i}", slug(query)),
                domain,
                text: format!("Snippet {i} about {bare}."),
            }
        })
        .collect()
}

/// `site:`/`-site:` operators in a query: (included, excluded).
fn site_operators(query: &str) -> (Vec<String>, Vec<String>) {
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for w in query.split_whitespace() {
        let w = w.trim_start_matches('(').trim_end_matches(')');
        if let Some(d) = w.strip_prefix("-site:") {
            exclude.push(d.to_string());
        } else if let Some(d) = w.strip_prefix("site:") {
            include.push(d.to_string());
        }
    }
    (include, exclude)
}

fn string_list(v: Option<&Value>) -> Result<Vec<String>, ()> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or(()))
            .collect(),
        Some(_) => Err(()),
    }
}

/// Why a JSON provider refused a body before its own checks.
enum BodyFault<'a> {
    NotJson,
    NotObject,
    Unknown(&'a str),
    NoQuery,
}

/// The checks every JSON provider makes first, in order: a JSON content type,
/// an object body, only `allowed` fields, and a non-blank string `query_field`.
/// `Ok` is the body and the query.
fn json_body<'a>(
    req: &'a RecordedRequest,
    allowed: &[&str],
    query_field: &str,
) -> Result<(&'a Map<String, Value>, &'a str), BodyFault<'a>> {
    if !is_json(&req.headers) {
        return Err(BodyFault::NotJson);
    }
    let body = req.body.as_object().ok_or(BodyFault::NotObject)?;
    if let Some(k) = unknown_key(body, allowed) {
        return Err(BodyFault::Unknown(k));
    }
    match body.get(query_field).and_then(Value::as_str) {
        Some(q) if !q.trim().is_empty() => Ok((body, q)),
        _ => Err(BodyFault::NoQuery),
    }
}

fn count(v: Option<&Value>, min: u64, max: u64) -> Result<Option<u64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(()),
        },
    }
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------
// Tavily
// ---------------------------------------------------------------------------

/// Tavily's `country` values: lowercase English names.
const TAVILY_COUNTRIES: &[&str] = &[
    "afghanistan",
    "albania",
    "algeria",
    "andorra",
    "angola",
    "argentina",
    "armenia",
    "australia",
    "austria",
    "azerbaijan",
    "bahamas",
    "bahrain",
    "bangladesh",
    "barbados",
    "belarus",
    "belgium",
    "belize",
    "benin",
    "bhutan",
    "bolivia",
    "bosnia and herzegovina",
    "botswana",
    "brazil",
    "brunei",
    "bulgaria",
    "burkina faso",
    "burundi",
    "cambodia",
    "cameroon",
    "canada",
    "cape verde",
    "central african republic",
    "chad",
    "chile",
    "china",
    "colombia",
    "comoros",
    "congo",
    "costa rica",
    "croatia",
    "cuba",
    "cyprus",
    "czech republic",
    "denmark",
    "djibouti",
    "dominican republic",
    "ecuador",
    "egypt",
    "el salvador",
    "equatorial guinea",
    "eritrea",
    "estonia",
    "ethiopia",
    "fiji",
    "finland",
    "france",
    "gabon",
    "gambia",
    "georgia",
    "germany",
    "ghana",
    "greece",
    "guatemala",
    "guinea",
    "haiti",
    "honduras",
    "hungary",
    "iceland",
    "india",
    "indonesia",
    "iran",
    "iraq",
    "ireland",
    "israel",
    "italy",
    "jamaica",
    "japan",
    "jordan",
    "kazakhstan",
    "kenya",
    "kuwait",
    "kyrgyzstan",
    "latvia",
    "lebanon",
    "lesotho",
    "liberia",
    "libya",
    "liechtenstein",
    "lithuania",
    "luxembourg",
    "madagascar",
    "malawi",
    "malaysia",
    "maldives",
    "mali",
    "malta",
    "mauritania",
    "mauritius",
    "mexico",
    "moldova",
    "monaco",
    "mongolia",
    "montenegro",
    "morocco",
    "mozambique",
    "myanmar",
    "namibia",
    "nepal",
    "netherlands",
    "new zealand",
    "nicaragua",
    "niger",
    "nigeria",
    "north korea",
    "north macedonia",
    "norway",
    "oman",
    "pakistan",
    "panama",
    "papua new guinea",
    "paraguay",
    "peru",
    "philippines",
    "poland",
    "portugal",
    "qatar",
    "romania",
    "russia",
    "rwanda",
    "saudi arabia",
    "senegal",
    "serbia",
    "singapore",
    "slovakia",
    "slovenia",
    "somalia",
    "south africa",
    "south korea",
    "south sudan",
    "spain",
    "sri lanka",
    "sudan",
    "sweden",
    "switzerland",
    "syria",
    "taiwan",
    "tajikistan",
    "tanzania",
    "thailand",
    "togo",
    "trinidad and tobago",
    "tunisia",
    "turkey",
    "turkmenistan",
    "uganda",
    "ukraine",
    "united arab emirates",
    "united kingdom",
    "united states",
    "uruguay",
    "uzbekistan",
    "venezuela",
    "vietnam",
    "yemen",
    "zambia",
    "zimbabwe",
];

const TAVILY_FIELDS: &[&str] = &[
    "query",
    "auto_parameters",
    "topic",
    "search_depth",
    "chunks_per_source",
    "max_results",
    "time_range",
    "days",
    "start_date",
    "end_date",
    "include_answer",
    "include_raw_content",
    "include_images",
    "include_image_descriptions",
    "include_favicon",
    "include_domains",
    "exclude_domains",
    "country",
    "include_usage",
];

fn tavily(shared: &Shared, req: &RecordedRequest) -> Response {
    let (method, headers) = (req.method.as_str(), &req.headers);
    if method != "POST" {
        return json_response(405, &json!({"detail": "Method Not Allowed"}));
    }
    if bearer(headers) != Some(shared.api_key.as_str()) {
        return json_response(
            401,
            &tavily_error("Unauthorized: missing or invalid API key."),
        );
    }
    if let Some(r) = take_fault(shared, Provider::Tavily) {
        return r;
    }
    let bad = |m: &str| json_response(400, &tavily_error(m));
    let (body, query) = match json_body(req, TAVILY_FIELDS, "query") {
        Ok(b) => b,
        Err(BodyFault::NotJson) => return bad("Content-Type must be application/json"),
        Err(BodyFault::NotObject) => return bad("Request body must be a JSON object"),
        Err(BodyFault::Unknown(k)) => return bad(&format!("Unknown field: {k}")),
        Err(BodyFault::NoQuery) => return bad("Query is missing."),
    };
    if query.chars().count() > 400 {
        return bad("Query is too long. Max query length is 400 characters.");
    }
    let topic = body
        .get("topic")
        .and_then(Value::as_str)
        .unwrap_or("general");
    if !["general", "news", "finance"].contains(&topic) {
        return bad("Invalid topic. Must be 'general', 'news' or 'finance'.");
    }
    let depth = body
        .get("search_depth")
        .and_then(Value::as_str)
        .unwrap_or("basic");
    if !["basic", "advanced", "fast", "ultra-fast"].contains(&depth) {
        return bad("Invalid search depth. Must be 'basic', 'advanced', 'fast' or 'ultra-fast'.");
    }
    let Ok(max) = count(body.get("max_results"), 0, 20) else {
        return bad("max_results must be between 0 and 20.");
    };
    let (Ok(include), Ok(exclude)) = (
        string_list(body.get("include_domains")),
        string_list(body.get("exclude_domains")),
    ) else {
        return bad("include_domains and exclude_domains must be lists of strings.");
    };
    if let Some(country) = body.get("country").filter(|c| !c.is_null()) {
        let Some(c) = country.as_str().filter(|c| TAVILY_COUNTRIES.contains(c)) else {
            return bad(
                "Invalid country. Country names must be written in lowercase, plain English.",
            );
        };
        if topic != "general" {
            return bad(&format!(
                "Country is only available for the general topic, not '{c}' with '{topic}'."
            ));
        }
    }
    let results: Vec<Value> = make(query, usize_of(max.unwrap_or(5)), &include, &exclude)
        .into_iter()
        .map(|m| {
            let mut r = json!({
                "title": m.title,
                "url": m.url,
                "content": m.text,
                "score": 0.9 - (m.index as f64) * 0.05,
                "raw_content": null,
            });
            if topic == "news" {
                if let Some(obj) = r.as_object_mut() {
                    obj.insert(
                        "published_date".into(),
                        Value::from(format!("Tue, {:02} Jan 2025 09:30:00 GMT", 13 + m.index)),
                    );
                }
            }
            r
        })
        .collect();
    json_response(
        200,
        &json!({
            "query": query,
            "follow_up_questions": null,
            "answer": null,
            "images": [],
            "results": results,
            "response_time": 0.42,
            "request_id": "123e4567-e89b-12d3-a456-426614174111",
        }),
    )
}

// ---------------------------------------------------------------------------
// Brave
// ---------------------------------------------------------------------------

/// Brave's supported `country` codes (its "Country Codes" table).
const BRAVE_COUNTRIES: &[&str] = &[
    "ALL", "AR", "AU", "AT", "BE", "BR", "CA", "CL", "DK", "FI", "FR", "DE", "HK", "IN", "ID",
    "IT", "JP", "KR", "MY", "MX", "NL", "NZ", "NO", "CN", "PL", "PT", "PH", "RU", "SA", "ZA", "ES",
    "SE", "CH", "TW", "TR", "GB", "US",
];

const BRAVE_PARAMS: &[&str] = &[
    "q",
    "country",
    "search_lang",
    "ui_lang",
    "count",
    "offset",
    "safesearch",
    "freshness",
    "text_decorations",
    "spellcheck",
    "result_filter",
    "goggles_id",
    "goggles",
    "units",
    "extra_snippets",
    "summary",
];

fn brave_validation(loc: &[&str], msg: &str) -> Response {
    json_response(
        422,
        &brave_error(
            422,
            "VALIDATION",
            "Unable to validate request parameter(s)",
            json!({"errors": [{"type": "value_error", "loc": loc, "msg": msg}]}),
        ),
    )
}

fn brave(shared: &Shared, req: &RecordedRequest) -> Response {
    let (method, headers) = (req.method.as_str(), &req.headers);
    if method != "GET" {
        return json_response(405, &json!({"detail": "Method Not Allowed"}));
    }
    match header(headers, "x-subscription-token") {
        None => return brave_validation(&["header", "x-subscription-token"], "Field required"),
        Some(t) if t != shared.api_key => {
            return json_response(
                422,
                &brave_error(
                    422,
                    "SUBSCRIPTION_TOKEN_INVALID",
                    "The provided subscription token is invalid.",
                    json!({"component": "authentication"}),
                ),
            )
        }
        Some(_) => {}
    }
    if let Some(r) = take_fault(shared, Provider::Brave) {
        return r;
    }
    if !req.raw.is_empty() {
        return brave_validation(&["body"], "A GET request carries no body");
    }
    if let Some((k, _)) = req
        .params
        .iter()
        .find(|(k, _)| !BRAVE_PARAMS.contains(&k.as_str()))
    {
        return brave_validation(&["query", k], "Extra inputs are not permitted");
    }
    let q = match req.param("q") {
        Some(q) if !q.trim().is_empty() => q.to_string(),
        _ => return brave_validation(&["query", "q"], "Field required"),
    };
    if q.chars().count() > 400 || q.split_whitespace().count() > 50 {
        return brave_validation(
            &["query", "q"],
            "The query is limited to 400 characters and 50 words",
        );
    }
    let n = match req.param("count") {
        None => 20,
        Some(c) => match c.parse::<usize>() {
            Ok(n) if (1..=20).contains(&n) => n,
            _ => {
                return brave_validation(
                    &["query", "count"],
                    "Input should be less than or equal to 20",
                )
            }
        },
    };
    if let Some(c) = req.param("country") {
        if !BRAVE_COUNTRIES.contains(&c) {
            return brave_validation(
                &["query", "country"],
                "Input should be a supported country code",
            );
        }
    }
    let (include, exclude) = site_operators(&q);
    let results: Vec<Value> = make(&q, n, &include, &exclude)
        .into_iter()
        .map(|m| {
            let bare = bare_query(&q);
            let mut r = json!({
                "type": "search_result",
                "title": format!("{} &amp; more", m.title),
                "url": m.url,
                "is_source_local": false,
                "is_source_both": false,
                "description": format!("All about <strong>{bare}</strong>: it&#x27;s result {}.", m.index),
                "language": "en",
                "family_friendly": true,
                "profile": {"name": m.domain, "url": format!("https://{}", m.domain)},
                "meta_url": {"scheme": "https", "netloc": m.domain, "hostname": m.domain},
            });
            if let Some(obj) = r.as_object_mut() {
                // The first result has both dates, the second only a relative age.
                match m.index {
                    1 => {
                        obj.insert("page_age".into(), Value::from("2025-01-14T09:30:00"));
                        obj.insert("age".into(), Value::from("January 14, 2025"));
                    }
                    2 => {
                        obj.insert("age".into(), Value::from("2 days ago"));
                    }
                    _ => {}
                }
            }
            r
        })
        .collect();
    json_response(
        200,
        &json!({
            "type": "search",
            "query": {"original": q, "more_results_available": false},
            "mixed": {"type": "mixed", "main": [], "top": [], "side": []},
            "web": {"type": "search", "results": results, "family_friendly": true},
        }),
    )
}

// ---------------------------------------------------------------------------
// Exa
// ---------------------------------------------------------------------------

const EXA_FIELDS: &[&str] = &[
    "query",
    "additionalQueries",
    "type",
    "category",
    "userLocation",
    "numResults",
    "includeDomains",
    "excludeDomains",
    "startCrawlDate",
    "endCrawlDate",
    "startPublishedDate",
    "endPublishedDate",
    "includeText",
    "excludeText",
    "moderation",
    "contents",
    "stream",
    "outputSchema",
    "systemPrompt",
];

fn exa(shared: &Shared, req: &RecordedRequest) -> Response {
    let (method, headers) = (req.method.as_str(), &req.headers);
    if method != "POST" {
        return json_response(405, &exa_error("Method not allowed", "METHOD_NOT_ALLOWED"));
    }
    let key = header(headers, "x-api-key").or_else(|| bearer(headers));
    if key != Some(shared.api_key.as_str()) {
        return json_response(401, &exa_error("Invalid API key", "INVALID_API_KEY"));
    }
    if let Some(r) = take_fault(shared, Provider::Exa) {
        return r;
    }
    let bad = |m: &str| json_response(400, &exa_error(m, "INVALID_REQUEST_BODY"));
    let (body, query) = match json_body(req, EXA_FIELDS, "query") {
        Ok(b) => b,
        Err(BodyFault::NotJson) => return bad("Content-Type must be application/json"),
        Err(BodyFault::NotObject) => return bad("Request body must be a JSON object"),
        Err(BodyFault::Unknown(k)) => return bad(&format!("Unrecognized key in body: '{k}'")),
        Err(BodyFault::NoQuery) => return bad("query: Required"),
    };
    let types = [
        "auto",
        "neural",
        "fast",
        "deep",
        "deep-lite",
        "deep-reasoning",
        "instant",
        "keyword",
    ];
    let search_type = body.get("type").and_then(Value::as_str).unwrap_or("auto");
    if !types.contains(&search_type) {
        return bad("type: Invalid enum value");
    }
    let Ok(n) = count(body.get("numResults"), 1, 100) else {
        return json_response(
            400,
            &exa_error(
                "numResults must be between 1 and 100",
                "INVALID_NUM_RESULTS",
            ),
        );
    };
    let (Ok(include), Ok(exclude)) = (
        string_list(body.get("includeDomains")),
        string_list(body.get("excludeDomains")),
    ) else {
        return bad("includeDomains/excludeDomains: Expected array of strings");
    };
    if let Some(loc) = body.get("userLocation").filter(|l| !l.is_null()) {
        let ok = loc
            .as_str()
            .is_some_and(|l| l.len() == 2 && l.bytes().all(|b| b.is_ascii_alphabetic()));
        if !ok {
            return bad("userLocation: must be a two-letter ISO country code");
        }
    }
    let highlights = match body.get("contents").and_then(|c| c.get("highlights")) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(_)) => true,
        None | Some(Value::Null) => false,
        Some(_) => return bad("contents.highlights: Expected boolean or object"),
    };
    let results: Vec<Value> = make(query, usize_of(n.unwrap_or(10)), &include, &exclude)
        .into_iter()
        .map(|m| {
            let mut r = json!({
                "id": m.url,
                "url": m.url,
                "title": m.title,
                "author": if m.index % 2 == 1 { Value::from("Jane Doe") } else { Value::Null },
                "publishedDate": if m.index % 2 == 1 {
                    Value::from(format!("2025-01-{:02}T09:30:00.000Z", 13 + m.index))
                } else {
                    Value::Null
                },
            });
            if highlights {
                if let Some(obj) = r.as_object_mut() {
                    obj.insert(
                        "highlights".into(),
                        json!([m.text, format!("Second excerpt {}.", m.index)]),
                    );
                    obj.insert("highlightScores".into(), json!([0.61, 0.42]));
                }
            }
            r
        })
        .collect();
    json_response(
        200,
        &json!({
            "requestId": "b5947044c4b78efa9552a7c89b306d95",
            "resolvedSearchType": if search_type == "auto" { "neural" } else { search_type },
            "searchType": search_type,
            "results": results,
            "costDollars": {"total": 0.005, "search": {"neural": 0.005}},
        }),
    )
}

// ---------------------------------------------------------------------------
// Firecrawl
// ---------------------------------------------------------------------------

const FIRECRAWL_FIELDS: &[&str] = &[
    "query",
    "limit",
    "sources",
    "categories",
    "tbs",
    "location",
    "country",
    "timeout",
    "ignoreInvalidURLs",
    "scrapeOptions",
    "includeDomains",
    "excludeDomains",
    "lang",
    "safe",
    "filter",
    "origin",
    "integration",
];

fn firecrawl(shared: &Shared, req: &RecordedRequest) -> Response {
    let (method, headers) = (req.method.as_str(), &req.headers);
    if method != "POST" {
        return json_response(
            405,
            &json!({"success": false, "error": "Method not allowed"}),
        );
    }
    if bearer(headers) != Some(shared.api_key.as_str()) {
        return json_response(
            401,
            &json!({"success": false, "error": "Unauthorized: Invalid token"}),
        );
    }
    if let Some(r) = take_fault(shared, Provider::Firecrawl) {
        return r;
    }
    let bad = |path: &str, m: &str| {
        json_response(
            400,
            &json!({
                "success": false,
                "error": "Invalid request body",
                "details": [{"code": "invalid_type", "path": [path], "message": m}],
            }),
        )
    };
    let (body, query) = match json_body(req, FIRECRAWL_FIELDS, "query") {
        Ok(b) => b,
        Err(BodyFault::NotJson) => return bad("", "Content-Type must be application/json"),
        Err(BodyFault::NotObject) => return bad("", "Expected object"),
        Err(BodyFault::Unknown(k)) => return bad(k, "Unrecognized key in body"),
        Err(BodyFault::NoQuery) => return bad("query", "Required"),
    };
    let Ok(n) = count(body.get("limit"), 1, 100) else {
        return bad("limit", "Number must be between 1 and 100");
    };
    let (Ok(include), Ok(exclude)) = (
        string_list(body.get("includeDomains")),
        string_list(body.get("excludeDomains")),
    ) else {
        return bad("includeDomains", "Expected array of strings");
    };
    if let Some(c) = body.get("country").filter(|c| !c.is_null()) {
        let ok = c
            .as_str()
            .is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()));
        if !ok {
            return bad("country", "Expected an ISO country code");
        }
    }
    let web: Vec<Value> = make(query, usize_of(n.unwrap_or(5)), &include, &exclude)
        .into_iter()
        .map(
            |m| json!({"url": m.url, "title": m.title, "description": m.text, "position": m.index}),
        )
        .collect();
    json_response(
        200,
        &json!({
            "success": true,
            "data": {"web": web},
            "creditsUsed": 2,
            "id": "0194c2a5-7d1e-7c3a-9f1e-5b2d4a6c8e01",
        }),
    )
}

// ---------------------------------------------------------------------------
// Serper
// ---------------------------------------------------------------------------

const SERPER_FIELDS: &[&str] = &[
    "q",
    "gl",
    "hl",
    "num",
    "page",
    "tbs",
    "autocorrect",
    "location",
];

fn serper(shared: &Shared, req: &RecordedRequest) -> Response {
    let (method, headers) = (req.method.as_str(), &req.headers);
    let err =
        |status: u16, m: &str| json_response(status, &json!({"message": m, "statusCode": status}));
    if method != "POST" {
        return err(405, "Method not allowed");
    }
    if header(headers, "x-api-key") != Some(shared.api_key.as_str()) {
        return err(403, "Unauthorized.");
    }
    if let Some(r) = take_fault(shared, Provider::Serper) {
        return r;
    }
    let (body, q) = match json_body(req, SERPER_FIELDS, "q") {
        Ok(b) => b,
        Err(BodyFault::NotJson) => return err(400, "Content-Type must be application/json"),
        Err(BodyFault::NotObject) => return err(400, "Body must be a JSON object"),
        Err(BodyFault::Unknown(k)) => return err(400, &format!("Unknown parameter: {k}")),
        Err(BodyFault::NoQuery) => return err(400, "Missing query parameter (q)"),
    };
    let Ok(n) = count(body.get("num"), 1, 100) else {
        return err(400, "num must be between 1 and 100");
    };
    if let Some(gl) = body.get("gl").filter(|g| !g.is_null()) {
        let ok = gl
            .as_str()
            .is_some_and(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_lowercase()));
        if !ok {
            return err(
                400,
                "Invalid gl: expected a lowercase two-letter country code",
            );
        }
    }
    let (include, exclude) = site_operators(q);
    let organic: Vec<Value> = make(q, usize_of(n.unwrap_or(10)), &include, &exclude)
        .into_iter()
        .map(|m| {
            let mut r =
                json!({"title": m.title, "link": m.url, "snippet": m.text, "position": m.index});
            if m.index == 1 {
                if let Some(obj) = r.as_object_mut() {
                    obj.insert("date".into(), Value::from("Jan 14, 2025"));
                }
            }
            r
        })
        .collect();
    let mut params = json!({"q": q, "type": "search", "engine": "google"});
    if let Some(obj) = params.as_object_mut() {
        for k in ["gl", "num"] {
            if let Some(v) = body.get(k) {
                obj.insert(k.into(), v.clone());
            }
        }
    }
    json_response(
        200,
        &json!({"searchParameters": params, "organic": organic, "credits": 1}),
    )
}

// ---------------------------------------------------------------------------
// Linkup
// ---------------------------------------------------------------------------

const LINKUP_FIELDS: &[&str] = &[
    "q",
    "depth",
    "outputType",
    "structuredOutputSchema",
    "includeSources",
    "includeImages",
    "fromDate",
    "toDate",
    "includeDomains",
    "excludeDomains",
    "maxResults",
    "includeInlineCitations",
];

fn linkup(shared: &Shared, req: &RecordedRequest) -> Response {
    let (method, headers) = (req.method.as_str(), &req.headers);
    if method != "POST" {
        return json_response(
            405,
            &linkup_error(405, "METHOD_NOT_ALLOWED", "Method not allowed", json!([])),
        );
    }
    if bearer(headers) != Some(shared.api_key.as_str()) {
        return json_response(
            401,
            &linkup_error(401, "UNAUTHORIZED", "Unauthorized action", json!([])),
        );
    }
    if let Some(r) = take_fault(shared, Provider::Linkup) {
        return r;
    }
    let bad = |field: &str, m: &str| {
        json_response(
            400,
            &linkup_error(
                400,
                "VALIDATION_ERROR",
                "Validation failed",
                json!([{"field": field, "message": m}]),
            ),
        )
    };
    let (body, q) = match json_body(req, LINKUP_FIELDS, "q") {
        Ok(b) => b,
        Err(BodyFault::NotJson) => return bad("body", "Content-Type must be application/json"),
        Err(BodyFault::NotObject) => return bad("body", "must be an object"),
        Err(BodyFault::Unknown(k)) => return bad(k, "property should not exist"),
        Err(BodyFault::NoQuery) => return bad("q", "q should not be empty"),
    };
    match body.get("depth").and_then(Value::as_str) {
        Some("fast" | "standard" | "deep") => {}
        _ => {
            return bad(
                "depth",
                "depth must be one of the following values: fast, standard, deep",
            )
        }
    }
    match body.get("outputType").and_then(Value::as_str) {
        Some("searchResults") => {}
        Some("sourcedAnswer" | "structured") => {
            return bad("outputType", "this fake answers searchResults only")
        }
        _ => {
            return bad(
                "outputType",
                "outputType must be one of the following values: searchResults, sourcedAnswer, structured",
            )
        }
    }
    let Ok(n) = count(body.get("maxResults"), 1, 1000) else {
        return bad("maxResults", "maxResults must be a positive integer");
    };
    let (Ok(include), Ok(exclude)) = (
        string_list(body.get("includeDomains")),
        string_list(body.get("excludeDomains")),
    ) else {
        return bad(
            "includeDomains",
            "each value in includeDomains must be a string",
        );
    };
    let mut results: Vec<Value> = make(q, usize_of(n.unwrap_or(5)), &include, &exclude)
        .into_iter()
        .map(|m| {
            json!({
                "type": "text",
                "name": m.title,
                "url": m.url,
                "content": m.text,
                "favicon": format!("https://{}/favicon.ico", m.domain),
            })
        })
        .collect();
    // Linkup mixes image results into the list.
    results.insert(
        1,
        json!({"type": "image", "name": "A chart", "url": "https://images.example.com/chart.png"}),
    );
    json_response(200, &json!({"results": results}))
}

// ---------------------------------------------------------------------------
// SearXNG
// ---------------------------------------------------------------------------

/// What one SearXNG page holds; it has no count parameter.
const SEARXNG_PAGE: usize = 12;

const SEARXNG_PARAMS: &[&str] = &[
    "q",
    "format",
    "categories",
    "engines",
    "language",
    "pageno",
    "time_range",
    "safesearch",
    "image_proxy",
    "autocomplete",
    "enabled_plugins",
    "disabled_plugins",
    "enabled_engines",
    "disabled_engines",
];

fn searxng(shared: &Shared, req: &RecordedRequest) -> Response {
    let (method, headers) = (req.method.as_str(), &req.headers);
    if !(method == "GET" || method == "POST") {
        return html(405, "Method Not Allowed");
    }
    // A self-hosted instance takes no key; one arriving means the proxy
    // attached a credential it should not have.
    if headers.contains_key("authorization") {
        return html(400, "Unexpected Authorization header");
    }
    if let Some(r) = take_fault(shared, Provider::Searxng) {
        return r;
    }
    if let Some((k, _)) = req
        .params
        .iter()
        .find(|(k, _)| !SEARXNG_PARAMS.contains(&k.as_str()))
    {
        return html(400, &format!("Unknown parameter {k}"));
    }
    // Without `json` in `search.formats`, SearXNG refuses the format.
    if req.param("format") != Some("json") {
        return html(403, "Forbidden");
    }
    let q = match req.param("q") {
        Some(q) if !q.trim().is_empty() => q.to_string(),
        _ => return html(400, "Bad Request"),
    };
    let category = req.param("categories").unwrap_or("general").to_string();
    let (include, exclude) = site_operators(&q);
    let mut made = make(&q, SEARXNG_PAGE, &include, &exclude);
    // One engine ignored `site:`: its result is off the requested domains.
    if !include.is_empty() {
        if let Some(m) = made.get_mut(1) {
            m.url = format!("https://offsite.example/{}/2", slug(&q));
            m.domain = "offsite.example".to_string();
        }
    }
    let results: Vec<Value> = made
        .into_iter()
        .map(|m| {
            json!({
                "url": m.url,
                "title": m.title,
                "content": format!("{} Tom &amp; Jerry", m.text),
                "engine": "duckduckgo",
                "engines": ["duckduckgo", "brave"],
                "positions": [m.index],
                "score": 2.0 / (m.index as f64),
                "category": category,
                "publishedDate": if m.index == 1 { Value::from("2025-01-14T09:30:00") } else { Value::Null },
                "parsed_url": ["https", m.domain, format!("/{}/{}", slug(&q), m.index), "", "", ""],
            })
        })
        .collect();
    json_response(
        200,
        &json!({
            "query": q,
            "number_of_results": 0,
            "results": results,
            "answers": [],
            "corrections": [],
            "infoboxes": [],
            "suggestions": [],
            "unresponsive_engines": [],
        }),
    )
}
