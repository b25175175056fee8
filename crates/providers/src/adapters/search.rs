//! Web search APIs behind one OpenAI-style endpoint, `POST /v1/search`.
//!
//! Every provider here takes the same request and answers in the same shape;
//! the adapter translates both ways and maps the provider's own error bodies.
//!
//! **Request** (JSON): `model`, `query` (required), `max_results` (1–100),
//! `search_domain_filter` (domains; a leading `-` excludes a domain instead of
//! restricting to it) and `country` (ISO 3166-1 alpha-2, e.g. `us`).
//!
//! **Response**:
//!
//! ```json
//! {"object": "search", "model": "<the model the client asked for>",
//!  "results": [{"title": "...", "url": "...", "snippet": "...", "date": "2025-01-15"}]}
//! ```
//!
//! `snippet` is plain text (HTML highlighting and entities removed); `date` is
//! the publication date the provider reports, as `YYYY-MM-DD`, or `null` when it
//! reports none or only a relative age ("3 days ago"). At most `max_results`
//! results are returned, in the provider's order. Search APIs report no tokens,
//! so the answer carries no `usage`.
//!
//! How each provider gets the fields (checked against its API reference):
//!
//! | provider | call | `max_results` | domains | `country` |
//! | --- | --- | --- | --- | --- |
//! | Tavily | `POST /search` | `max_results` (≤ 20) | `include_domains` / `exclude_domains` | `country` as Tavily's lowercase English name, general topic only |
//! | Brave | `GET /web/search?q=` | `count` (≤ 20) | `site:` / `-site:` operators in `q` | `country` (upper case) |
//! | Exa | `POST /search` | `numResults` (≤ 100) | `includeDomains` / `excludeDomains` | `userLocation` |
//! | Firecrawl | `POST /search` (v2) | `limit` (≤ 100) | `includeDomains` / `excludeDomains` | `country` (upper case) |
//! | Serper | `POST /search` | `num` (≤ 100) | `site:` / `-site:` operators in `q` | `gl` (lower case) |
//! | Linkup | `POST /search` | `maxResults` | `includeDomains` / `excludeDomains` | no equivalent: ignored |
//! | SearXNG | `GET /search?format=json` | trimmed locally | `site:` operators, then filtered locally | no equivalent: ignored |
//!
//! A `max_results` above a provider's cap is lowered to the cap (the client asked
//! for at most that many, and gets at most that many). The part of the model id
//! after the provider prefix selects a mode where the provider has one: Tavily
//! `news`/`finance` (topic) or `basic`/`advanced`/`fast`/`ultra-fast` (depth);
//! Exa's search `type` (`auto`, `neural`, `fast`, `deep`, ...); Linkup's `depth`
//! (`fast`, `standard` (default), `deep`); SearXNG `news` (category). Any other
//! id (`tavily/search`, `brave/web-search`) uses the provider's defaults.

use super::common::{
    bad_upstream, invalid, kind_for_status, percent_encode, post, provider_error, with_code,
};
use super::{
    ChatAdapter, ChatContext, EndpointRequest, Translated, UpstreamRequest, UpstreamTarget,
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use liter_llm_protocol::{ApiError, Endpoint, ErrorKind};
use serde_json::{json, Map, Value};

/// The cap `inspect` enforces on `max_results`; repeated so the adapter stays
/// correct when called on its own.
const MAX_RESULTS: u64 = 100;

/// Joins Exa's highlights into one snippet.
const HIGHLIGHT_SEPARATOR: &str = " ... ";

// ---------------------------------------------------------------------------
// The OpenAI-style request
// ---------------------------------------------------------------------------

/// A checked `/v1/search` request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SearchQuery {
    query: String,
    max_results: Option<u64>,
    /// Domains to restrict results to.
    include: Vec<String>,
    /// Domains whose results are unwanted (`-domain` in the filter).
    exclude: Vec<String>,
    /// ISO 3166-1 alpha-2, upper case.
    country: Option<String>,
}

impl SearchQuery {
    /// `max_results` lowered to a provider's cap.
    fn limit(&self, cap: u64) -> Option<u64> {
        self.max_results.map(|n| n.min(cap))
    }

    /// The query with `site:` operators for the domain filter, for providers
    /// whose only domain control is the query syntax (Brave, Google via Serper).
    fn with_site_operators(&self) -> String {
        let mut q = self.query.trim().to_string();
        match self.include.as_slice() {
            [] => {}
            [one] => {
                q.push_str(" site:");
                q.push_str(one);
            }
            many => {
                let sites: Vec<String> = many.iter().map(|d| format!("site:{d}")).collect();
                q.push_str(" (");
                q.push_str(&sites.join(" OR "));
                q.push(')');
            }
        }
        for d in &self.exclude {
            q.push_str(" -site:");
            q.push_str(d);
        }
        q
    }
}

fn parse_request(body: &[u8]) -> Result<SearchQuery, ApiError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Some(req) = parsed.as_object() else {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    };
    let query = match req.get("query") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) => return Err(invalid("query", "`query` must not be empty")),
        None | Some(Value::Null) => {
            return Err(invalid("query", "missing required parameter: `query`"))
        }
        Some(_) => return Err(invalid("query", "`query` must be a string")),
    };
    let max_results = match req.get("max_results") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_RESULTS).contains(&n) => Some(n),
            _ => {
                return Err(invalid(
                    "max_results",
                    format!("`max_results` must be an integer from 1 to {MAX_RESULTS}"),
                ))
            }
        },
    };
    let (include, exclude) = domain_filter(req)?;
    let country = match req.get("country") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let c = s.trim();
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(invalid(
                    "country",
                    format!("`country` must be an ISO 3166-1 alpha-2 code such as `us`, not `{s}`"),
                ));
            }
            Some(c.to_ascii_uppercase())
        }
        Some(_) => return Err(invalid("country", "`country` must be a string")),
    };
    Ok(SearchQuery {
        query,
        max_results,
        include,
        exclude,
        country,
    })
}

/// `search_domain_filter` split into domains to keep and (`-` prefixed) to drop.
fn domain_filter(req: &Map<String, Value>) -> Result<(Vec<String>, Vec<String>), ApiError> {
    const PARAM: &str = "search_domain_filter";
    let items = match req.get(PARAM) {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(invalid(
                PARAM,
                "`search_domain_filter` must be an array of domain strings",
            ))
        }
    };
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for item in items {
        let Some(raw) = item.as_str() else {
            return Err(invalid(
                PARAM,
                "`search_domain_filter` must be an array of domain strings",
            ));
        };
        let raw = raw.trim();
        let (list, domain) = match raw.strip_prefix('-') {
            Some(d) => (&mut exclude, d.trim()),
            None => (&mut include, raw),
        };
        // A domain goes into query operators and URL filters, so anything that
        // is not a plain host name would change the search rather than narrow it.
        let plain = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !plain {
            return Err(invalid(
                PARAM,
                format!("`{raw}` is not a domain name (e.g. `example.com`, or `-example.com` to exclude it)"),
            ));
        }
        list.push(domain.to_ascii_lowercase());
    }
    Ok((include, exclude))
}

/// The provider mode named by the model id: the part after its last `/`
/// (`exa/deep` resolved by model prefix arrives whole), lower-cased.
fn mode(ctx: &ChatContext<'_>) -> String {
    ctx.upstream_model
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

// ---------------------------------------------------------------------------
// The normalised answer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    title: String,
    url: String,
    snippet: String,
    date: Option<String>,
}

fn answer(ctx: &ChatContext<'_>, hits: Vec<Hit>, max: Option<u64>) -> Result<Translated, ApiError> {
    let keep = max.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let results: Vec<Value> = hits
        .into_iter()
        .take(keep)
        .map(|h| json!({"title": h.title, "url": h.url, "snippet": h.snippet, "date": h.date}))
        .collect();
    let body = json!({
        "object": "search",
        "model": ctx.requested_model,
        "results": results,
    });
    serde_json::to_vec(&body)
        .map(Translated::json)
        .map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("could not encode the search answer: {e}"),
            )
        })
}

/// Which results the proxy itself drops after the provider answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalFilter {
    /// Trim to `max_results` only: the provider applied the domain filter.
    Count,
    /// Also enforce the domain filter (SearXNG's engines may ignore `site:`).
    CountAndDomains,
}

/// The provider's answer normalised. `request` is the client's body when the
/// gateway passes it; it was checked when the upstream request was built, so a
/// body that no longer parses only loses the local trimming.
fn translate(
    provider: &str,
    endpoint: Endpoint,
    request: Option<&[u8]>,
    upstream_body: &[u8],
    ctx: &ChatContext<'_>,
    hits: fn(&Value) -> Result<Vec<Hit>, ApiError>,
) -> Result<Translated, ApiError> {
    translate_with(
        provider,
        endpoint,
        request,
        upstream_body,
        ctx,
        hits,
        LocalFilter::Count,
    )
}

fn translate_with(
    provider: &str,
    endpoint: Endpoint,
    request: Option<&[u8]>,
    upstream_body: &[u8],
    ctx: &ChatContext<'_>,
    hits: fn(&Value) -> Result<Vec<Hit>, ApiError>,
    filter: LocalFilter,
) -> Result<Translated, ApiError> {
    if endpoint != Endpoint::Search {
        return Err(super::not_offered(endpoint));
    }
    let v = upstream_json(provider, upstream_body)?;
    let mut found = hits(&v)?;
    let q = request.and_then(|b| parse_request(b).ok());
    if let (Some(q), LocalFilter::CountAndDomains) = (&q, filter) {
        found.retain(|h| domain_allowed(&h.url, &q.include, &q.exclude));
    }
    answer(ctx, found, q.and_then(|q| q.max_results))
}

/// The host of an absolute URL, lower-cased, without port or credentials.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether `url` is on one of `include` (or a subdomain of one), when any are
/// given, and on none of `exclude`.
fn domain_allowed(url: &str, include: &[String], exclude: &[String]) -> bool {
    let Some(host) = host_of(url) else {
        return include.is_empty();
    };
    let on = |d: &String| host == *d || host.ends_with(&format!(".{d}"));
    (include.is_empty() || include.iter().any(on)) && !exclude.iter().any(on)
}

/// The provider's answer as JSON, or a 502 naming the provider.
fn upstream_json(provider: &str, body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|_| {
        bad_upstream(format!(
            "{provider} returned a search answer that is not valid JSON"
        ))
    })
}

/// The array at `path` in the provider's answer; a missing or mistyped list is
/// a 502 rather than an empty result, which would hide a changed API.
fn result_list<'a>(provider: &str, v: &'a Value, path: &[&str]) -> Result<&'a [Value], ApiError> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key).ok_or_else(|| {
            bad_upstream(format!(
                "{provider}: the search answer has no `{}`",
                path.join(".")
            ))
        })?;
    }
    cur.as_array().map(Vec::as_slice).ok_or_else(|| {
        bad_upstream(format!(
            "{provider}: `{}` in the search answer is not a list",
            path.join(".")
        ))
    })
}

/// A string field of a result, `""` when absent or null.
fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A result's URL; a result without one is a malformed answer.
fn url_of(provider: &str, v: &Value, key: &str) -> Result<String, ApiError> {
    match v.get(key).and_then(Value::as_str) {
        Some(u) if !u.is_empty() => Ok(u.to_string()),
        _ => Err(bad_upstream(format!(
            "{provider}: a search result has no `{key}`"
        ))),
    }
}

/// Text with HTML tags removed and the common entities decoded; Brave marks
/// query terms with `<strong>` and escapes quotes in titles and snippets.
fn plain_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix('<') {
            // Only drop what looks like a tag, so "a < b" survives.
            match after.find('>') {
                Some(end) if is_tag(&after[..end]) => rest = &after[end + 1..],
                _ => {
                    out.push('<');
                    rest = after;
                }
            }
        } else {
            match decode_entity(tail) {
                Some((c, len)) => {
                    out.push(c);
                    rest = &tail[len..];
                }
                None => {
                    out.push('&');
                    rest = &tail[1..];
                }
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_tag(inner: &str) -> bool {
    let name = inner.strip_prefix('/').unwrap_or(inner);
    let name = name.strip_suffix('/').unwrap_or(name);
    let word = name.split_whitespace().next().unwrap_or_default();
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The character an entity at the start of `s` stands for, and its length.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    let end = s.get(..12).unwrap_or(s).find(';')?;
    let name = &s[1..end];
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((c, end + 1))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month_number(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.').to_ascii_lowercase();
    if w.len() < 3 {
        return None;
    }
    let n = MONTHS.iter().position(|m| w.starts_with(m))?;
    u32::try_from(n + 1).ok()
}

fn ymd(year: u32, month: u32, day: u32) -> Option<String> {
    let ok = (1000..=9999).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day);
    ok.then(|| format!("{year:04}-{month:02}-{day:02}"))
}

/// A provider's publication date as `YYYY-MM-DD`. Understands ISO 8601 dates and
/// date-times, RFC 2822 (`Tue, 14 Jan 2025 09:30:00 GMT`), `Jan 14, 2025` and
/// `14 Jan 2025`; anything else (relative ages such as "3 days ago") is `None`,
/// since a date computed from the proxy's clock would not be the provider's.
fn normalize_date(raw: &str) -> Option<String> {
    let s = raw.trim();
    if let Some(head) = s.get(..10) {
        let b = head.as_bytes();
        if b[4] == b'-' && b[7] == b'-' {
            let year = head.get(..4)?.parse().ok()?;
            let month = head.get(5..7)?.parse().ok()?;
            let day = head.get(8..10)?.parse().ok()?;
            return ymd(year, month, day);
        }
    }
    // Drop a leading weekday ("Tue,") and split the rest into words.
    let s = match s.split_once(',') {
        Some((first, rest)) if first.chars().all(|c| c.is_ascii_alphabetic()) => rest,
        _ => s,
    };
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let num = |w: &str| w.parse::<u32>().ok();
    match words.as_slice() {
        // 14 Jan 2025 [time zone]
        [d, m, y, ..] if num(d).is_some() && month_number(m).is_some() => {
            ymd(num(y)?, month_number(m)?, num(d)?)
        }
        // Jan 14, 2025
        [m, d, y, ..] if month_number(m).is_some() && num(d).is_some() => {
            ymd(num(y)?, month_number(m)?, num(d)?)
        }
        _ => None,
    }
}

/// `normalize_date` of an optional string field.
fn date_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).and_then(normalize_date)
}

// ---------------------------------------------------------------------------
// Upstream requests
// ---------------------------------------------------------------------------

fn post_json(path: &str, body: &Value) -> Result<UpstreamRequest, ApiError> {
    let body = serde_json::to_vec(body).map_err(|e| {
        ApiError::new(
            ErrorKind::Internal,
            format!("could not encode the search request: {e}"),
        )
    })?;
    Ok(UpstreamRequest {
        headers: vec![accept_json()],
        ..post(path, None, Bytes::from(body))
    })
}

fn get(path_and_query: String) -> UpstreamRequest {
    UpstreamRequest {
        method: Method::GET,
        path: path_and_query,
        headers: vec![accept_json()],
        content_type: None,
        body: Bytes::new(),
    }
}

fn accept_json() -> (HeaderName, HeaderValue) {
    (
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    )
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What a provider's error body says, beyond its HTTP status.
#[derive(Default)]
struct Detail {
    message: Option<String>,
    /// The provider's own error code, for the message.
    code: Option<String>,
    /// The proxy's credentials were refused, whatever the status says.
    auth: bool,
    /// The account is out of credit or over its plan.
    billing: bool,
}

/// An OpenAI-shaped error for a provider's non-2xx answer: the request's own
/// faults keep their status, the proxy's credentials or billing being refused
/// is the operator's problem (502), and a 429 stays a 429.
fn search_error(provider: &str, status: u16, body: &[u8], detail: Detail) -> ApiError {
    if detail.auth || matches!(status, 401 | 403) {
        // The provider's text may quote the key; it goes to the operator's log only.
        tracing::warn!(provider, status, message = ?detail.message, "search provider rejected the proxy's credentials");
        return ApiError::new(
            ErrorKind::BadGateway,
            format!("{provider} rejected the proxy's credentials ({status}); the operator must check this model's api_key"),
        )
        .with_code("upstream_auth_failed");
    }
    let Some(message) = detail.message else {
        return provider_error(provider, status, body);
    };
    let message = match &detail.code {
        Some(code) => format!("{provider}: {message} ({code})"),
        None => format!("{provider}: {message}"),
    };
    if detail.billing || status == 402 {
        return ApiError::new(ErrorKind::BadGateway, message).with_code("upstream_billing");
    }
    let (kind, code) = kind_for_status(status);
    with_code(ApiError::new(kind, message), code)
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str().map(str::to_string)
}

// ---------------------------------------------------------------------------
// The adapters
// ---------------------------------------------------------------------------

/// Implements [`ChatAdapter`] for a search adapter from its three functions:
/// `request(&SearchQuery, mode, &ChatContext)`, `hits(&Value)` and
/// `error(status, body)`.
macro_rules! search_adapter {
    ($ty:ident, $provider:literal) => {
        impl ChatAdapter for $ty {
            fn offers(&self, endpoint: Endpoint) -> bool {
                endpoint == Endpoint::Search
            }

            fn endpoint_request(
                &self,
                req: &EndpointRequest<'_>,
                ctx: &ChatContext<'_>,
                _target: &UpstreamTarget<'_>,
            ) -> Result<UpstreamRequest, ApiError> {
                if req.endpoint != Endpoint::Search {
                    return Err(super::not_offered(req.endpoint));
                }
                let q = parse_request(req.body)?;
                $ty::request(&q, &mode(ctx))
            }

            fn endpoint_response(
                &self,
                endpoint: Endpoint,
                upstream_body: &[u8],
                ctx: &ChatContext<'_>,
            ) -> Result<Translated, ApiError> {
                translate($provider, endpoint, None, upstream_body, ctx, $ty::hits)
            }

            fn endpoint_response_for(
                &self,
                req: &EndpointRequest<'_>,
                upstream_body: &[u8],
                ctx: &ChatContext<'_>,
            ) -> Result<Translated, ApiError> {
                translate(
                    $provider,
                    req.endpoint,
                    Some(req.body),
                    upstream_body,
                    ctx,
                    $ty::hits,
                )
            }

            fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
                $ty::error(status, upstream_body)
            }
        }
    };
}

// ----------------------------------------------------------------- Tavily

/// Tavily Search (`POST https://api.tavily.com/search`, `Authorization: Bearer`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TavilyAdapter;

/// Tavily's largest `max_results`.
const TAVILY_MAX: u64 = 20;

impl TavilyAdapter {
    fn request(q: &SearchQuery, mode: &str) -> Result<UpstreamRequest, ApiError> {
        let mut body = Map::new();
        body.insert("query".into(), Value::from(q.query.as_str()));
        let topic = match mode {
            "news" | "finance" => Some(mode),
            _ => None,
        };
        if let Some(t) = topic {
            body.insert("topic".into(), Value::from(t));
        }
        if matches!(mode, "basic" | "advanced" | "fast" | "ultra-fast") {
            body.insert("search_depth".into(), Value::from(mode));
        }
        if let Some(n) = q.limit(TAVILY_MAX) {
            body.insert("max_results".into(), Value::from(n));
        }
        if !q.include.is_empty() {
            body.insert("include_domains".into(), strings(&q.include));
        }
        if !q.exclude.is_empty() {
            body.insert("exclude_domains".into(), strings(&q.exclude));
        }
        // Tavily boosts a country only for the general topic, by English name.
        if let (Some(code), None) = (q.country.as_deref(), topic) {
            let name = tavily_country(code).ok_or_else(|| {
                invalid(
                    "country",
                    format!(
                        "tavily cannot boost results from country `{}`",
                        code.to_ascii_lowercase()
                    ),
                )
            })?;
            body.insert("country".into(), Value::from(name));
        }
        post_json("/search", &Value::Object(body))
    }

    fn hits(v: &Value) -> Result<Vec<Hit>, ApiError> {
        result_list("tavily", v, &["results"])?
            .iter()
            .map(|r| {
                Ok(Hit {
                    title: text(r, "title"),
                    url: url_of("tavily", r, "url")?,
                    snippet: text(r, "content"),
                    date: date_field(r, "published_date"),
                })
            })
            .collect()
    }

    /// Tavily's errors are `{"detail": {"error": "..."}}`; 432 and 433 are its
    /// plan and pay-as-you-go limits.
    fn error(status: u16, body: &[u8]) -> ApiError {
        let v = json_body(body);
        let detail = Detail {
            message: str_at(&v, &["detail", "error"]).or_else(|| str_at(&v, &["detail"])),
            billing: matches!(status, 432 | 433),
            ..Detail::default()
        };
        search_error("tavily", status, body, detail)
    }
}

search_adapter!(TavilyAdapter, "tavily");

/// ISO 3166-1 alpha-2 codes to the country names Tavily's `country` accepts.
const TAVILY_COUNTRIES: &[(&str, &str)] = &[
    ("AD", "andorra"),
    ("AE", "united arab emirates"),
    ("AF", "afghanistan"),
    ("AL", "albania"),
    ("AM", "armenia"),
    ("AO", "angola"),
    ("AR", "argentina"),
    ("AT", "austria"),
    ("AU", "australia"),
    ("AZ", "azerbaijan"),
    ("BA", "bosnia and herzegovina"),
    ("BB", "barbados"),
    ("BD", "bangladesh"),
    ("BE", "belgium"),
    ("BF", "burkina faso"),
    ("BG", "bulgaria"),
    ("BH", "bahrain"),
    ("BI", "burundi"),
    ("BJ", "benin"),
    ("BN", "brunei"),
    ("BO", "bolivia"),
    ("BR", "brazil"),
    ("BS", "bahamas"),
    ("BT", "bhutan"),
    ("BW", "botswana"),
    ("BY", "belarus"),
    ("BZ", "belize"),
    ("CA", "canada"),
    ("CF", "central african republic"),
    ("CG", "congo"),
    ("CH", "switzerland"),
    ("CL", "chile"),
    ("CM", "cameroon"),
    ("CN", "china"),
    ("CO", "colombia"),
    ("CR", "costa rica"),
    ("CU", "cuba"),
    ("CV", "cape verde"),
    ("CY", "cyprus"),
    ("CZ", "czech republic"),
    ("DE", "germany"),
    ("DJ", "djibouti"),
    ("DK", "denmark"),
    ("DO", "dominican republic"),
    ("DZ", "algeria"),
    ("EC", "ecuador"),
    ("EE", "estonia"),
    ("EG", "egypt"),
    ("ER", "eritrea"),
    ("ES", "spain"),
    ("ET", "ethiopia"),
    ("FI", "finland"),
    ("FJ", "fiji"),
    ("FR", "france"),
    ("GA", "gabon"),
    ("GB", "united kingdom"),
    ("GE", "georgia"),
    ("GH", "ghana"),
    ("GM", "gambia"),
    ("GN", "guinea"),
    ("GQ", "equatorial guinea"),
    ("GR", "greece"),
    ("GT", "guatemala"),
    ("HN", "honduras"),
    ("HR", "croatia"),
    ("HT", "haiti"),
    ("HU", "hungary"),
    ("ID", "indonesia"),
    ("IE", "ireland"),
    ("IL", "israel"),
    ("IN", "india"),
    ("IQ", "iraq"),
    ("IR", "iran"),
    ("IS", "iceland"),
    ("IT", "italy"),
    ("JM", "jamaica"),
    ("JO", "jordan"),
    ("JP", "japan"),
    ("KE", "kenya"),
    ("KG", "kyrgyzstan"),
    ("KH", "cambodia"),
    ("KM", "comoros"),
    ("KP", "north korea"),
    ("KR", "south korea"),
    ("KW", "kuwait"),
    ("KZ", "kazakhstan"),
    ("LB", "lebanon"),
    ("LI", "liechtenstein"),
    ("LK", "sri lanka"),
    ("LR", "liberia"),
    ("LS", "lesotho"),
    ("LT", "lithuania"),
    ("LU", "luxembourg"),
    ("LV", "latvia"),
    ("LY", "libya"),
    ("MA", "morocco"),
    ("MC", "monaco"),
    ("MD", "moldova"),
    ("ME", "montenegro"),
    ("MG", "madagascar"),
    ("MK", "north macedonia"),
    ("ML", "mali"),
    ("MM", "myanmar"),
    ("MN", "mongolia"),
    ("MR", "mauritania"),
    ("MT", "malta"),
    ("MU", "mauritius"),
    ("MV", "maldives"),
    ("MW", "malawi"),
    ("MX", "mexico"),
    ("MY", "malaysia"),
    ("MZ", "mozambique"),
    ("NA", "namibia"),
    ("NE", "niger"),
    ("NG", "nigeria"),
    ("NI", "nicaragua"),
    ("NL", "netherlands"),
    ("NO", "norway"),
    ("NP", "nepal"),
    ("NZ", "new zealand"),
    ("OM", "oman"),
    ("PA", "panama"),
    ("PE", "peru"),
    ("PG", "papua new guinea"),
    ("PH", "philippines"),
    ("PK", "pakistan"),
    ("PL", "poland"),
    ("PT", "portugal"),
    ("PY", "paraguay"),
    ("QA", "qatar"),
    ("RO", "romania"),
    ("RS", "serbia"),
    ("RU", "russia"),
    ("RW", "rwanda"),
    ("SA", "saudi arabia"),
    ("SD", "sudan"),
    ("SE", "sweden"),
    ("SG", "singapore"),
    ("SI", "slovenia"),
    ("SK", "slovakia"),
    ("SN", "senegal"),
    ("SO", "somalia"),
    ("SS", "south sudan"),
    ("SV", "el salvador"),
    ("SY", "syria"),
    ("TD", "chad"),
    ("TG", "togo"),
    ("TH", "thailand"),
    ("TJ", "tajikistan"),
    ("TM", "turkmenistan"),
    ("TN", "tunisia"),
    ("TR", "turkey"),
    ("TT", "trinidad and tobago"),
    ("TW", "taiwan"),
    ("TZ", "tanzania"),
    ("UA", "ukraine"),
    ("UG", "uganda"),
    ("US", "united states"),
    ("UY", "uruguay"),
    ("UZ", "uzbekistan"),
    ("VE", "venezuela"),
    ("VN", "vietnam"),
    ("YE", "yemen"),
    ("ZA", "south africa"),
    ("ZM", "zambia"),
    ("ZW", "zimbabwe"),
];

fn tavily_country(code: &str) -> Option<&'static str> {
    TAVILY_COUNTRIES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
}

// ----------------------------------------------------------------- Brave

/// Brave Web Search (`GET https://api.search.brave.com/res/v1/web/search`,
/// `X-Subscription-Token`).
#[derive(Debug, Default, Clone, Copy)]
pub struct BraveAdapter;

/// Brave's largest web `count`.
const BRAVE_MAX: u64 = 20;

impl BraveAdapter {
    fn request(q: &SearchQuery, _mode: &str) -> Result<UpstreamRequest, ApiError> {
        let mut path = format!("/web/search?q={}", percent_encode(&q.with_site_operators()));
        if let Some(n) = q.limit(BRAVE_MAX) {
            path.push_str(&format!("&count={n}"));
        }
        if let Some(c) = &q.country {
            path.push_str(&format!("&country={c}"));
        }
        Ok(get(path))
    }

    fn hits(v: &Value) -> Result<Vec<Hit>, ApiError> {
        // Brave leaves `web` out when nothing matched.
        if v.get("web").is_none() && v.get("type").and_then(Value::as_str) == Some("search") {
            return Ok(Vec::new());
        }
        result_list("brave", v, &["web", "results"])?
            .iter()
            .map(|r| {
                Ok(Hit {
                    title: plain_text(&text(r, "title")),
                    url: url_of("brave", r, "url")?,
                    snippet: plain_text(&text(r, "description")),
                    date: date_field(r, "page_age").or_else(|| date_field(r, "age")),
                })
            })
            .collect()
    }

    /// Brave's errors are `{"type": "ErrorResponse", "error": {"code", "detail",
    /// "status"}}`; an invalid token is a 422 `SUBSCRIPTION_TOKEN_INVALID`, not a 401.
    fn error(status: u16, body: &[u8]) -> ApiError {
        let v = json_body(body);
        let err = v
            .get("error")
            .filter(|e| e.is_object())
            .or_else(|| v.get("errors").and_then(|e| e.get(0)))
            .unwrap_or(&Value::Null);
        let code = str_at(err, &["code"]);
        let detail = Detail {
            message: str_at(err, &["detail"]),
            auth: code.as_deref().is_some_and(|c| {
                c.starts_with("SUBSCRIPTION_TOKEN") || c == "SUBSCRIPTION_NOT_FOUND"
            }),
            billing: false,
            code,
        };
        search_error("brave", status, body, detail)
    }
}

search_adapter!(BraveAdapter, "brave");

// ----------------------------------------------------------------- Exa

/// Exa Search (`POST https://api.exa.ai/search`, `x-api-key`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ExaAdapter;

/// Exa's largest `numResults`.
const EXA_MAX: u64 = 100;

/// Exa's search `type` values; a model id naming one selects it.
const EXA_TYPES: &[&str] = &[
    "auto",
    "neural",
    "fast",
    "deep",
    "deep-lite",
    "deep-reasoning",
    "instant",
    "keyword",
];

impl ExaAdapter {
    fn request(q: &SearchQuery, mode: &str) -> Result<UpstreamRequest, ApiError> {
        let mut body = Map::new();
        body.insert("query".into(), Value::from(q.query.as_str()));
        if EXA_TYPES.contains(&mode) {
            body.insert("type".into(), Value::from(mode));
        }
        if let Some(n) = q.limit(EXA_MAX) {
            body.insert("numResults".into(), Value::from(n));
        }
        if !q.include.is_empty() {
            body.insert("includeDomains".into(), strings(&q.include));
        }
        if !q.exclude.is_empty() {
            body.insert("excludeDomains".into(), strings(&q.exclude));
        }
        if let Some(c) = &q.country {
            body.insert("userLocation".into(), Value::from(c.as_str()));
        }
        // Without contents Exa returns no text at all; highlights are the
        // query-relevant excerpts, the nearest thing to a snippet.
        body.insert("contents".into(), json!({"highlights": true}));
        post_json("/search", &Value::Object(body))
    }

    fn hits(v: &Value) -> Result<Vec<Hit>, ApiError> {
        result_list("exa_ai", v, &["results"])?
            .iter()
            .map(|r| {
                let highlights: Vec<&str> = r
                    .get("highlights")
                    .and_then(Value::as_array)
                    .map(|h| h.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let snippet = if highlights.is_empty() {
                    Some(text(r, "summary"))
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| text(r, "text"))
                } else {
                    highlights.join(HIGHLIGHT_SEPARATOR)
                };
                Ok(Hit {
                    title: text(r, "title"),
                    url: url_of("exa_ai", r, "url")?,
                    snippet,
                    date: date_field(r, "publishedDate"),
                })
            })
            .collect()
    }

    /// Exa's errors are `{"requestId", "error", "tag"}`.
    fn error(status: u16, body: &[u8]) -> ApiError {
        let v = json_body(body);
        let detail = Detail {
            message: str_at(&v, &["error"]),
            code: str_at(&v, &["tag"]),
            ..Detail::default()
        };
        search_error("exa_ai", status, body, detail)
    }
}

search_adapter!(ExaAdapter, "exa_ai");

// ----------------------------------------------------------------- Firecrawl

/// Firecrawl Search v2 (`POST https://api.firecrawl.dev/v2/search`, Bearer).
#[derive(Debug, Default, Clone, Copy)]
pub struct FirecrawlAdapter;

/// Firecrawl's largest `limit`.
const FIRECRAWL_MAX: u64 = 100;

impl FirecrawlAdapter {
    fn request(q: &SearchQuery, _mode: &str) -> Result<UpstreamRequest, ApiError> {
        let mut body = Map::new();
        body.insert("query".into(), Value::from(q.query.as_str()));
        if let Some(n) = q.limit(FIRECRAWL_MAX) {
            body.insert("limit".into(), Value::from(n));
        }
        if !q.include.is_empty() {
            body.insert("includeDomains".into(), strings(&q.include));
        }
        if !q.exclude.is_empty() {
            body.insert("excludeDomains".into(), strings(&q.exclude));
        }
        if let Some(c) = &q.country {
            body.insert("country".into(), Value::from(c.as_str()));
        }
        post_json("/search", &Value::Object(body))
    }

    fn hits(v: &Value) -> Result<Vec<Hit>, ApiError> {
        // v2 groups results by source; only web was asked for, and an answer
        // with no web results may leave the group out.
        if v.get("data")
            .is_some_and(|d| d.is_object() && d.get("web").is_none())
        {
            return Ok(Vec::new());
        }
        result_list("firecrawl", v, &["data", "web"])?
            .iter()
            .map(|r| {
                Ok(Hit {
                    title: text(r, "title"),
                    url: url_of("firecrawl", r, "url")?,
                    snippet: text(r, "description"),
                    date: None,
                })
            })
            .collect()
    }

    /// Firecrawl's errors are `{"success": false, "error": "..."}`.
    fn error(status: u16, body: &[u8]) -> ApiError {
        let v = json_body(body);
        let detail = Detail {
            message: str_at(&v, &["error"]),
            ..Detail::default()
        };
        search_error("firecrawl", status, body, detail)
    }
}

search_adapter!(FirecrawlAdapter, "firecrawl");

// ----------------------------------------------------------------- Serper

/// Serper, Google results (`POST https://google.serper.dev/search`, `X-API-KEY`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SerperAdapter;

/// Serper's largest `num`.
const SERPER_MAX: u64 = 100;

impl SerperAdapter {
    fn request(q: &SearchQuery, _mode: &str) -> Result<UpstreamRequest, ApiError> {
        let mut body = Map::new();
        body.insert("q".into(), Value::from(q.with_site_operators()));
        if let Some(n) = q.limit(SERPER_MAX) {
            body.insert("num".into(), Value::from(n));
        }
        if let Some(c) = &q.country {
            body.insert("gl".into(), Value::from(c.to_ascii_lowercase()));
        }
        post_json("/search", &Value::Object(body))
    }

    fn hits(v: &Value) -> Result<Vec<Hit>, ApiError> {
        // Serper leaves `organic` out when Google found nothing.
        if v.get("organic").is_none() && v.get("searchParameters").is_some() {
            return Ok(Vec::new());
        }
        result_list("serper", v, &["organic"])?
            .iter()
            .map(|r| {
                Ok(Hit {
                    title: text(r, "title"),
                    url: url_of("serper", r, "link")?,
                    snippet: text(r, "snippet"),
                    date: date_field(r, "date"),
                })
            })
            .collect()
    }

    /// Serper's errors are `{"message", "statusCode"}`; a bad key is a 403 and an
    /// exhausted account a 400 "Not enough credits".
    fn error(status: u16, body: &[u8]) -> ApiError {
        let v = json_body(body);
        let message = str_at(&v, &["message"]);
        let detail = Detail {
            billing: message
                .as_deref()
                .is_some_and(|m| m.to_ascii_lowercase().contains("credits")),
            message,
            ..Detail::default()
        };
        search_error("serper", status, body, detail)
    }
}

search_adapter!(SerperAdapter, "serper");

// ----------------------------------------------------------------- Linkup

/// Linkup Search (`POST https://api.linkup.so/v1/search`, Bearer), asked for
/// `outputType: searchResults`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkupAdapter;

impl LinkupAdapter {
    fn request(q: &SearchQuery, mode: &str) -> Result<UpstreamRequest, ApiError> {
        let depth = match mode {
            "fast" | "deep" => mode,
            _ => "standard",
        };
        let mut body = Map::new();
        body.insert("q".into(), Value::from(q.query.as_str()));
        body.insert("depth".into(), Value::from(depth));
        body.insert("outputType".into(), Value::from("searchResults"));
        if let Some(n) = q.max_results {
            body.insert("maxResults".into(), Value::from(n));
        }
        if !q.include.is_empty() {
            body.insert("includeDomains".into(), strings(&q.include));
        }
        if !q.exclude.is_empty() {
            body.insert("excludeDomains".into(), strings(&q.exclude));
        }
        post_json("/search", &Value::Object(body))
    }

    fn hits(v: &Value) -> Result<Vec<Hit>, ApiError> {
        result_list("linkup", v, &["results"])?
            .iter()
            // Image results have no text to show as a snippet.
            .filter(|r| r.get("type").and_then(Value::as_str).unwrap_or("text") == "text")
            .map(|r| {
                Ok(Hit {
                    title: text(r, "name"),
                    url: url_of("linkup", r, "url")?,
                    snippet: text(r, "content"),
                    date: None,
                })
            })
            .collect()
    }

    /// Linkup's errors are `{"statusCode", "error": {"code", "message", "details"}}`.
    fn error(status: u16, body: &[u8]) -> ApiError {
        let v = json_body(body);
        let code = str_at(&v, &["error", "code"]);
        let detail = Detail {
            message: str_at(&v, &["error", "message"]),
            billing: code.as_deref() == Some("INSUFFICIENT_FUNDS_CREDITS"),
            code,
            ..Detail::default()
        };
        search_error("linkup", status, body, detail)
    }
}

search_adapter!(LinkupAdapter, "linkup");

// ----------------------------------------------------------------- SearXNG

/// A self-hosted SearXNG instance (`GET {base_url}/search?format=json`); the
/// instance must list `json` in `search.formats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SearxngAdapter;

impl SearxngAdapter {
    fn request(q: &SearchQuery, mode: &str) -> Result<UpstreamRequest, ApiError> {
        let mut path = format!(
            "/search?q={}&format=json",
            percent_encode(&q.with_site_operators())
        );
        if mode == "news" {
            path.push_str("&categories=news");
        }
        Ok(get(path))
    }

    fn hits(v: &Value) -> Result<Vec<Hit>, ApiError> {
        result_list("searxng", v, &["results"])?
            .iter()
            .map(|r| {
                Ok(Hit {
                    title: text(r, "title"),
                    url: url_of("searxng", r, "url")?,
                    snippet: plain_text(&text(r, "content")),
                    date: date_field(r, "publishedDate"),
                })
            })
            .collect()
    }
}

impl ChatAdapter for SearxngAdapter {
    fn offers(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::Search
    }

    fn endpoint_request(
        &self,
        req: &EndpointRequest<'_>,
        ctx: &ChatContext<'_>,
        _target: &UpstreamTarget<'_>,
    ) -> Result<UpstreamRequest, ApiError> {
        if req.endpoint != Endpoint::Search {
            return Err(super::not_offered(req.endpoint));
        }
        SearxngAdapter::request(&parse_request(req.body)?, &mode(ctx))
    }

    fn endpoint_response(
        &self,
        endpoint: Endpoint,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        translate_with(
            "searxng",
            endpoint,
            None,
            upstream_body,
            ctx,
            SearxngAdapter::hits,
            LocalFilter::CountAndDomains,
        )
    }

    /// SearXNG has no result count and its engines may ignore `site:`, so the
    /// count and the domain filter are applied here.
    fn endpoint_response_for(
        &self,
        req: &EndpointRequest<'_>,
        upstream_body: &[u8],
        ctx: &ChatContext<'_>,
    ) -> Result<Translated, ApiError> {
        translate_with(
            "searxng",
            req.endpoint,
            Some(req.body),
            upstream_body,
            ctx,
            SearxngAdapter::hits,
            LocalFilter::CountAndDomains,
        )
    }

    /// SearXNG answers 403 when the JSON format is not enabled and 429 from its
    /// limiter, both as HTML.
    fn error(&self, status: u16, upstream_body: &[u8]) -> ApiError {
        if status == 403 {
            return ApiError::new(
                ErrorKind::BadGateway,
                "searxng refused `format=json` (403): the instance must list `json` in `search.formats` of its settings.yml",
            )
            .with_code("upstream_error");
        }
        provider_error("searxng", status, upstream_body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::common::testing::{receive, send};
    use super::*;

    fn ctx(upstream_model: &str) -> ChatContext<'_> {
        ChatContext {
            upstream_model,
            requested_model: "web",
            stream: false,
            include_usage: false,
        }
    }

    fn search(
        adapter: &dyn ChatAdapter,
        model: &str,
        body: &Value,
    ) -> Result<UpstreamRequest, ApiError> {
        let raw = body.to_string();
        let base_url = "https://search.example";
        send(
            adapter,
            &ctx(model),
            base_url,
            Endpoint::Search,
            raw.as_bytes(),
            None,
        )
    }

    fn build(adapter: &dyn ChatAdapter, model: &str, body: Value) -> UpstreamRequest {
        search(adapter, model, &body).unwrap()
    }

    fn build_err(adapter: &dyn ChatAdapter, body: Value) -> ApiError {
        search(adapter, "search", &body).unwrap_err()
    }

    fn sent(r: &UpstreamRequest) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    fn translate_answer(adapter: &dyn ChatAdapter, request: Value, upstream: Value) -> Value {
        let (raw, upstream) = (request.to_string(), upstream.to_string());
        let ctx = ctx("search");
        let t = receive(
            adapter,
            &ctx,
            Endpoint::Search,
            raw.as_bytes(),
            None,
            upstream.as_bytes(),
        )
        .unwrap();
        assert_eq!(t.content_type, "application/json");
        serde_json::from_slice(&t.body).unwrap()
    }

    fn full() -> Value {
        json!({
            "model": "web",
            "query": "rust async",
            "max_results": 3,
            "search_domain_filter": ["docs.rs", "-spam.example"],
            "country": "de",
        })
    }

    #[test]
    fn search_is_the_only_endpoint_offered() {
        for a in [
            &TavilyAdapter as &dyn ChatAdapter,
            &BraveAdapter,
            &ExaAdapter,
            &FirecrawlAdapter,
            &SerperAdapter,
            &LinkupAdapter,
            &SearxngAdapter,
        ] {
            assert!(a.offers(Endpoint::Search));
            assert!(!a.offers(Endpoint::ChatCompletions));
            assert!(!a.offers(Endpoint::Embeddings));
        }
    }

    #[test]
    fn tavily_request_carries_domains_count_and_country_name() {
        let r = build(&TavilyAdapter, "search", full());
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/search");
        assert_eq!(
            sent(&r),
            json!({
                "query": "rust async",
                "max_results": 3,
                "include_domains": ["docs.rs"],
                "exclude_domains": ["spam.example"],
                "country": "germany",
            })
        );
    }

    #[test]
    fn tavily_modes_select_topic_or_depth_and_news_drops_the_country() {
        let body = json!({"query": "q", "country": "us", "max_results": 50});
        let news = sent(&build(&TavilyAdapter, "news", body.clone()));
        assert_eq!(
            news,
            json!({"query": "q", "topic": "news", "max_results": 20})
        );
        let deep = sent(&build(&TavilyAdapter, "advanced", body));
        assert_eq!(deep["search_depth"], "advanced");
        assert_eq!(deep["country"], "united states");
    }

    #[test]
    fn tavily_refuses_a_country_it_cannot_boost() {
        let e = build_err(&TavilyAdapter, json!({"query": "q", "country": "aq"}));
        assert_eq!(e.status(), 400);
        assert_eq!(e.param.as_deref(), Some("country"));
    }

    #[test]
    fn brave_request_is_a_get_with_site_operators_count_and_country() {
        let r = build(&BraveAdapter, "web-search", full());
        assert_eq!(r.method, Method::GET);
        assert!(r.body.is_empty());
        assert_eq!(
            r.path,
            "/web/search?q=rust%20async%20site%3Adocs.rs%20-site%3Aspam.example&count=3&country=DE"
        );
        let two = build(
            &BraveAdapter,
            "web-search",
            json!({"query": "x", "search_domain_filter": ["a.com", "b.org"], "max_results": 99}),
        );
        assert_eq!(
            two.path,
            "/web/search?q=x%20%28site%3Aa.com%20OR%20site%3Ab.org%29&count=20"
        );
    }

    #[test]
    fn exa_request_uses_its_names_type_and_highlights() {
        let r = build(&ExaAdapter, "exa/deep", full());
        assert_eq!(
            sent(&r),
            json!({
                "query": "rust async",
                "type": "deep",
                "numResults": 3,
                "includeDomains": ["docs.rs"],
                "excludeDomains": ["spam.example"],
                "userLocation": "DE",
                "contents": {"highlights": true},
            })
        );
        assert!(sent(&build(&ExaAdapter, "exa/search", full()))
            .get("type")
            .is_none());
    }

    #[test]
    fn firecrawl_serper_and_linkup_requests() {
        assert_eq!(
            sent(&build(&FirecrawlAdapter, "search", full())),
            json!({
                "query": "rust async",
                "limit": 3,
                "includeDomains": ["docs.rs"],
                "excludeDomains": ["spam.example"],
                "country": "DE",
            })
        );
        assert_eq!(
            sent(&build(&SerperAdapter, "search", full())),
            json!({"q": "rust async site:docs.rs -site:spam.example", "num": 3, "gl": "de"})
        );
        assert_eq!(
            sent(&build(&LinkupAdapter, "deep", full())),
            json!({
                "q": "rust async",
                "depth": "deep",
                "outputType": "searchResults",
                "maxResults": 3,
                "includeDomains": ["docs.rs"],
                "excludeDomains": ["spam.example"],
            })
        );
        assert_eq!(
            sent(&build(&LinkupAdapter, "search", json!({"query": "q"})))["depth"],
            "standard"
        );
    }

    #[test]
    fn searxng_request_asks_for_json() {
        let r = build(&SearxngAdapter, "news", json!({"query": "a&b"}));
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.path, "/search?q=a%26b&format=json&categories=news");
    }

    #[test]
    fn bad_requests_name_the_field() {
        for (body, param) in [
            (json!({"model": "m"}), "query"),
            (json!({"query": "  "}), "query"),
            (json!({"query": 3}), "query"),
            (json!({"query": "q", "max_results": 0}), "max_results"),
            (json!({"query": "q", "max_results": 101}), "max_results"),
            (json!({"query": "q", "country": "usa"}), "country"),
            (
                json!({"query": "q", "search_domain_filter": "a.com"}),
                "search_domain_filter",
            ),
            (
                json!({"query": "q", "search_domain_filter": ["a.com b"]}),
                "search_domain_filter",
            ),
            (
                json!({"query": "q", "search_domain_filter": ["https://a.com/"]}),
                "search_domain_filter",
            ),
            (
                json!({"query": "q", "search_domain_filter": ["-"]}),
                "search_domain_filter",
            ),
        ] {
            let e = build_err(&ExaAdapter, body.clone());
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn tavily_answer_is_normalised_and_trimmed() {
        let v = translate_answer(
            &TavilyAdapter,
            json!({"query": "q", "max_results": 1}),
            json!({"query": "q", "results": [
                {"title": "T", "url": "https://a.com/1", "content": "C", "score": 0.9,
                 "published_date": "Tue, 14 Jan 2025 09:30:00 GMT"},
                {"title": "U", "url": "https://a.com/2", "content": "D", "score": 0.8},
            ], "response_time": 0.4}),
        );
        assert_eq!(
            v,
            json!({"object": "search", "model": "web", "results": [
                {"title": "T", "url": "https://a.com/1", "snippet": "C", "date": "2025-01-14"},
            ]})
        );
    }

    #[test]
    fn brave_answer_loses_html_and_keeps_only_absolute_dates() {
        let v = translate_answer(
            &BraveAdapter,
            json!({"query": "q"}),
            json!({"type": "search", "web": {"results": [
                {"title": "A &amp; B", "url": "https://a.com", "description": "<strong>q</strong> it&#x27;s",
                 "page_age": "2025-01-14T09:30:00", "age": "January 14, 2025"},
                {"title": "C", "url": "https://c.com", "description": "1 < 2", "age": "2 days ago"},
                {"title": "D", "url": "https://d.com", "description": "", "age": "March 3, 2024"},
            ]}}),
        );
        let r = &v["results"];
        assert_eq!(
            r[0],
            json!({"title": "A & B", "url": "https://a.com", "snippet": "q it's", "date": "2025-01-14"})
        );
        assert_eq!(r[1]["snippet"], "1 < 2");
        assert_eq!(r[1]["date"], Value::Null);
        assert_eq!(r[2]["date"], "2024-03-03");
        let none = translate_answer(
            &BraveAdapter,
            json!({"query": "q"}),
            json!({"type": "search", "query": {"original": "q"}}),
        );
        assert_eq!(none["results"], json!([]));
    }

    #[test]
    fn other_answers_are_normalised() {
        let exa = translate_answer(
            &ExaAdapter,
            json!({"query": "q"}),
            json!({"requestId": "r", "results": [
                {"id": "x", "url": "https://x.com", "title": "X", "publishedDate": "2023-11-16T01:36:32.547Z",
                 "highlights": ["one", "two"]},
                {"id": "y", "url": "https://y.com", "title": null, "publishedDate": null},
            ]}),
        );
        assert_eq!(
            exa["results"][0],
            json!({"title": "X", "url": "https://x.com", "snippet": "one ... two", "date": "2023-11-16"})
        );
        assert_eq!(
            exa["results"][1],
            json!({"title": "", "url": "https://y.com", "snippet": "", "date": null})
        );

        let fc = translate_answer(
            &FirecrawlAdapter,
            json!({"query": "q"}),
            json!({"success": true, "data": {"web": [{"url": "https://f.com", "title": "F", "description": "D", "position": 1}]}}),
        );
        assert_eq!(
            fc["results"],
            json!([{"title": "F", "url": "https://f.com", "snippet": "D", "date": null}])
        );

        let serper = translate_answer(
            &SerperAdapter,
            json!({"query": "q"}),
            json!({"searchParameters": {"q": "q"}, "organic": [{"title": "S", "link": "https://s.com", "snippet": "N", "date": "Jan 5, 2024", "position": 1}]}),
        );
        assert_eq!(
            serper["results"],
            json!([{"title": "S", "url": "https://s.com", "snippet": "N", "date": "2024-01-05"}])
        );

        let linkup = translate_answer(
            &LinkupAdapter,
            json!({"query": "q"}),
            json!({"results": [
                {"type": "text", "name": "L", "url": "https://l.com", "content": "K"},
                {"type": "image", "name": "img", "url": "https://l.com/i.png"},
            ]}),
        );
        assert_eq!(
            linkup["results"],
            json!([{"title": "L", "url": "https://l.com", "snippet": "K", "date": null}])
        );
    }

    #[test]
    fn searxng_answer_is_filtered_to_the_domains_and_the_count() {
        let v = translate_answer(
            &SearxngAdapter,
            json!({"query": "q", "max_results": 2, "search_domain_filter": ["a.com", "-b.a.com"]}),
            json!({"query": "q site:a.com", "results": [
                {"url": "https://www.a.com/1", "title": "1", "content": "x", "publishedDate": "2025-01-14T09:30:00"},
                {"url": "https://other.com/2", "title": "2", "content": "x"},
                {"url": "https://b.a.com/3", "title": "3", "content": "x"},
                {"url": "https://a.com/4", "title": "4", "content": "x"},
                {"url": "https://a.com/5", "title": "5", "content": "x"},
            ]}),
        );
        let titles: Vec<&str> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["1", "4"]);
        assert_eq!(v["results"][0]["date"], "2025-01-14");
    }

    #[test]
    fn malformed_answers_are_bad_gateway() {
        for (adapter, body) in [
            (&TavilyAdapter as &dyn ChatAdapter, "<html>oops</html>"),
            (&TavilyAdapter, r#"{"results": "nope"}"#),
            (&BraveAdapter, r#"{"web": {}}"#),
            (&ExaAdapter, r#"{"results": [{"title": "no url"}]}"#),
            (&FirecrawlAdapter, r#"{"success": true, "data": [1]}"#),
            (&SerperAdapter, r#"{"nothing": true}"#),
            (&LinkupAdapter, r#"[]"#),
            (&SearxngAdapter, r#"{"results": null}"#),
        ] {
            let e = adapter
                .endpoint_response(Endpoint::Search, body.as_bytes(), &ctx("search"))
                .unwrap_err();
            assert_eq!(e.status(), 502, "{body}");
            assert_eq!(
                e.code.as_deref(),
                Some("upstream_invalid_response"),
                "{body}"
            );
        }
    }

    #[test]
    fn provider_errors_map_to_openai_errors() {
        // (adapter, upstream status, upstream body, client status, client code)
        type Case<'a> = (&'a dyn ChatAdapter, u16, &'a str, u16, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (
                &TavilyAdapter,
                400,
                r#"{"detail":{"error":"Invalid topic."}}"#,
                400,
                None,
            ),
            (
                &TavilyAdapter,
                401,
                r#"{"detail":{"error":"Unauthorized: missing or invalid API key."}}"#,
                502,
                Some("upstream_auth_failed"),
            ),
            (
                &TavilyAdapter,
                429,
                r#"{"detail":{"error":"Too many."}}"#,
                429,
                Some("upstream_rate_limited"),
            ),
            (
                &TavilyAdapter,
                432,
                r#"{"detail":{"error":"This request exceeds your plan's set usage limit."}}"#,
                502,
                Some("upstream_billing"),
            ),
            (
                &BraveAdapter,
                422,
                r#"{"type":"ErrorResponse","error":{"code":"SUBSCRIPTION_TOKEN_INVALID","detail":"The provided subscription token is invalid.","status":422}}"#,
                502,
                Some("upstream_auth_failed"),
            ),
            (
                &BraveAdapter,
                422,
                r#"{"type":"ErrorResponse","error":{"code":"VALIDATION","detail":"Unable to validate request parameter(s)","status":422}}"#,
                400,
                None,
            ),
            (
                &BraveAdapter,
                429,
                r#"{"type":"ErrorResponse","errors":[{"code":"RATE_LIMITED","detail":"Request rate limit exceeded for plan.","status":429}]}"#,
                429,
                Some("upstream_rate_limited"),
            ),
            (
                &ExaAdapter,
                402,
                r#"{"requestId":"r","error":"You have run out of credits","tag":"NO_MORE_CREDITS"}"#,
                502,
                Some("upstream_billing"),
            ),
            (
                &ExaAdapter,
                400,
                r#"{"requestId":"r","error":"Invalid request body","tag":"INVALID_REQUEST_BODY"}"#,
                400,
                None,
            ),
            (
                &FirecrawlAdapter,
                402,
                r#"{"success":false,"error":"Insufficient credits"}"#,
                502,
                Some("upstream_billing"),
            ),
            (
                &SerperAdapter,
                403,
                r#"{"message":"Unauthorized.","statusCode":403}"#,
                502,
                Some("upstream_auth_failed"),
            ),
            (
                &SerperAdapter,
                400,
                r#"{"message":"Not enough credits","statusCode":400}"#,
                502,
                Some("upstream_billing"),
            ),
            (
                &LinkupAdapter,
                401,
                r#"{"statusCode":401,"error":{"code":"UNAUTHORIZED","message":"Unauthorized action","details":[]}}"#,
                502,
                Some("upstream_auth_failed"),
            ),
            (
                &LinkupAdapter,
                500,
                r#"{"statusCode":500,"error":{"code":"INTERNAL_SERVER_ERROR","message":"boom","details":[]}}"#,
                502,
                Some("upstream_error"),
            ),
            (
                &SearxngAdapter,
                403,
                "<html>Forbidden</html>",
                502,
                Some("upstream_error"),
            ),
            (
                &SearxngAdapter,
                429,
                "<html>Too Many Requests</html>",
                429,
                Some("upstream_rate_limited"),
            ),
        ];
        for (adapter, status, body, want, code) in cases {
            let e = adapter.error(status, body.as_bytes());
            assert_eq!(e.status(), want, "{status} {body}: {}", e.message);
            assert_eq!(e.code.as_deref(), code, "{status} {body}");
        }
        let e = BraveAdapter.error(422, br#"{"error":{"code":"VALIDATION","detail":"Unable to validate request parameter(s)"}}"#);
        assert_eq!(
            e.message,
            "brave: Unable to validate request parameter(s) (VALIDATION)"
        );
        let e = TavilyAdapter.error(401, br#"{"detail":{"error":"tvly-secret is invalid"}}"#);
        assert!(!e.message.contains("tvly-secret"), "{}", e.message);
    }

    #[test]
    fn dates_are_normalised_to_calendar_days() {
        for (raw, want) in [
            ("2025-01-14", Some("2025-01-14")),
            ("2023-11-16T01:36:32.547Z", Some("2023-11-16")),
            ("Tue, 14 Jan 2025 09:30:00 GMT", Some("2025-01-14")),
            ("14 Jan 2025", Some("2025-01-14")),
            ("Jan 5, 2024", Some("2024-01-05")),
            ("September 30, 2023", Some("2023-09-30")),
            ("2 days ago", None),
            ("", None),
            ("2025-13-01", None),
            ("Foo 5, 2024", None),
        ] {
            assert_eq!(normalize_date(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn helpers_encode_strip_and_match_hosts() {
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(percent_encode("nova-3"), "nova-3");
        assert_eq!(percent_encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(
            plain_text("<b>x</b> &lt;y&gt; &amp;&#39;&#x27; & <3"),
            "x <y> &'' & <3"
        );
        assert!(domain_allowed(
            "https://docs.rs/x",
            &["docs.rs".into()],
            &[]
        ));
        assert!(domain_allowed(
            "https://user@sub.docs.rs:8443/x",
            &["docs.rs".into()],
            &[]
        ));
        assert!(!domain_allowed(
            "https://notdocs.rs/x",
            &["docs.rs".into()],
            &[]
        ));
        assert!(!domain_allowed(
            "https://a.spam.example/",
            &[],
            &["spam.example".into()]
        ));
    }
}
