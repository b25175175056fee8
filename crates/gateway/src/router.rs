//! Client-facing model names → deployments.
//!
//! A name used by several `[[models]]` entries is a group whose deployments take
//! turns. Names not configured may still match an `[[aliases]]` pattern, which
//! lets a client call `provider/model` directly.

use crate::balance::DeploymentState;
use crate::glob::Glob;
use crate::oauth::{TokenSource, IBM_IAM_URL};
use crate::pricing::{prices_for, PriceTable, Prices};
use http::{HeaderName, HeaderValue};
use liter_llm_config::{Config, ModelEntry, Secret};
use liter_llm_providers::adapters::watsonx::WatsonxScope;
use liter_llm_providers::adapters::{native, ChatAdapter};
use liter_llm_providers::adapters::{AwsCredentials, ProviderOptions};
use liter_llm_providers::auth::static_key_header;
use liter_llm_providers::registry::AuthStyle;
use liter_llm_providers::registry::{Adapter, ProviderSpec, Registry};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One upstream target: a provider, its model id, URL and credentials.
#[derive(Debug)]
pub struct Deployment {
    /// Stable identifier, `<name>#<index>` for configured entries.
    pub id: String,
    /// `id` as a header value, made once (`None` if it cannot be one).
    pub id_header: Option<HeaderValue>,
    pub model_name: String,
    pub provider: &'static ProviderSpec,
    /// The model id the provider expects: `provider_model` without the provider prefix.
    pub upstream_model: String,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Parsed once because chat is the hot path.
    pub chat_url: reqwest::Url,
    /// `chat_url` as the HTTP client takes it (printed and re-parsed, as reqwest
    /// did per request).
    pub chat_uri: http::Uri,
    pub auth: Option<(HeaderName, HeaderValue)>,
    /// `Authorization: Basic` from credentials written into `base_url`
    /// (`https://user:pass@host/v1`), sent when nothing else sets
    /// `Authorization`, as reqwest did with such URLs.
    pub basic_auth: Option<HeaderValue>,
    pub timeout: Duration,
    /// Limit on opening a connection to this deployment (TCP and TLS).
    pub connect_timeout: Duration,
    /// `None` for OpenAI-compatible providers, whose requests are forwarded as
    /// the client's bytes; otherwise the translation to the provider's API.
    pub adapter: Option<&'static dyn ChatAdapter>,
    /// Share of traffic under the `weighted` strategy.
    pub weight: u32,
    /// USD per token; `None` when neither the table nor the config knows.
    pub prices: Option<Prices>,
    /// What some adapters need beyond URL and key (api-version, AWS region and credentials).
    pub options: ProviderOptions,
    /// Where the bearer token comes from for OAuth providers (Vertex AI,
    /// watsonx.ai); shared by every deployment with the same credentials.
    pub token_source: Option<Arc<TokenSource>>,
    pub state: DeploymentState,
}

impl Deployment {
    pub fn url(&self, endpoint_path: &str) -> String {
        format!("{}{}", self.base_url, endpoint_path)
    }
}

#[derive(Debug)]
pub struct ModelGroup {
    pub name: String,
    pub deployments: Vec<Arc<Deployment>>,
    /// Tried in order once this group is exhausted.
    pub fallbacks: Vec<String>,
    /// Used instead of this group when the prompt is too long for it.
    pub context_window_fallbacks: Vec<String>,
    /// The smallest context window among the group's deployments.
    pub max_input_tokens: Option<u64>,
    pub(crate) rr: AtomicU64,
}

impl ModelGroup {
    pub fn owned_by(&self) -> &str {
        self.deployments
            .first()
            .map(|d| d.provider.name.as_str())
            .unwrap_or("liter-llm")
    }
}

#[derive(Debug)]
struct AliasRoute {
    glob: Glob,
    api_key: Option<Secret>,
    base_url: Option<String>,
}

/// What a request is routed to.
#[derive(Debug, Clone)]
pub enum Target<'a> {
    Group(&'a ModelGroup),
    Alias(Arc<Deployment>),
}

impl Target<'_> {
    pub fn deployments(&self) -> &[Arc<Deployment>] {
        match self {
            Target::Group(g) => &g.deployments,
            Target::Alias(d) => std::slice::from_ref(d),
        }
    }

    pub fn group(&self) -> Option<&ModelGroup> {
        match self {
            Target::Group(g) => Some(g),
            Target::Alias(_) => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    UnknownModel(String),
    /// Matched an alias, but the provider cannot be routed in this build.
    Unroutable {
        model: String,
        reason: String,
    },
}

/// A config problem found while building the router; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RouterError(pub String);

pub struct Router {
    groups: HashMap<String, ModelGroup>,
    /// Group names in config order, for listings.
    order: Vec<String>,
    aliases: Vec<AliasRoute>,
    registry: &'static Registry,
    env: liter_llm_config::EnvLookup,
    default_timeout: Duration,
    default_connect_timeout: Duration,
    /// Token sources by provider and credential digest, so deployments (and
    /// alias routes, built per request) with one credential share one token.
    tokens: Mutex<HashMap<String, Arc<TokenSource>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("groups", &self.order)
            .finish_non_exhaustive()
    }
}

/// Builds a token source from the credential material it is cached under.
type SourceMaker<'a> = Box<dyn Fn(&str) -> Result<TokenSource, String> + 'a>;

/// The watsonx.ai project or space of a deployment: the entry's fields, else
/// `WATSONX_PROJECT_ID` / `WATSONX_SPACE_ID`; exactly one of the two.
fn watsonx_scope(
    spec: &DeploymentSpec<'_>,
    provider: &ProviderSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WatsonxScope, String> {
    let non_empty = |v: Option<&String>| v.filter(|s| !s.is_empty()).cloned();
    let mut project = non_empty(spec.entry.and_then(|e| e.watsonx_project_id.as_ref()));
    let mut space = non_empty(spec.entry.and_then(|e| e.watsonx_space_id.as_ref()));
    if project.is_none() && space.is_none() {
        project = env("WATSONX_PROJECT_ID");
        space = env("WATSONX_SPACE_ID");
    }
    match (project, space) {
        (Some(p), None) => Ok(WatsonxScope::Project(p)),
        (None, Some(s)) => Ok(WatsonxScope::Space(s)),
        (Some(_), Some(_)) => Err(format!(
            "`{}` ({}): set either `watsonx_project_id` or `watsonx_space_id` for provider `{}`, not both",
            spec.field, spec.model_name, provider.name
        )),
        (None, None) => Err(format!(
            "`{}` ({}): set `watsonx_project_id` or `watsonx_space_id` (or WATSONX_PROJECT_ID / WATSONX_SPACE_ID) for provider `{}`",
            spec.field, spec.model_name, provider.name
        )),
    }
}

/// Why a provider cannot be routed in this build, or `None` if it can.
fn unroutable_reason(p: &ProviderSpec) -> Option<String> {
    match p.adapter {
        Adapter::Openai => None,
        native_kind if native(native_kind).is_some() => None,
        Adapter::Unsupported => Some(format!(
            "provider `{}` is not supported: {}",
            p.name,
            p.notes
                .as_deref()
                .unwrap_or("it is not a chat model provider")
        )),
        native => Some(format!(
            "provider `{}` needs the native `{}` adapter, which this build does not include yet",
            p.name,
            native.as_str()
        )),
    }
}

struct DeploymentSpec<'a> {
    /// The `[[models]]` entry, for provider options; `None` for alias routes.
    entry: Option<&'a ModelEntry>,
    id: String,
    model_name: &'a str,
    provider_model: &'a str,
    api_key: Option<&'a Secret>,
    base_url: Option<&'a str>,
    timeout: Duration,
    connect_timeout: Duration,
    field: &'a str,
}

impl Router {
    pub fn from_config(
        config: &Config,
        registry: &'static Registry,
        env: liter_llm_config::EnvLookup,
    ) -> Result<Router, RouterError> {
        let default_timeout = Duration::from_secs(config.general.default_timeout_secs);
        let default_connect_timeout = Duration::from_secs(config.general.connect_timeout_secs);
        let mut router = Router {
            groups: HashMap::new(),
            order: Vec::new(),
            aliases: Vec::new(),
            registry,
            env,
            default_timeout,
            default_connect_timeout,
            tokens: Mutex::new(HashMap::new()),
        };
        for (i, m) in config.models.iter().enumerate() {
            let field = format!("models[{i}]");
            let index = router
                .groups
                .get(&m.name)
                .map_or(0, |g| g.deployments.len());
            let deployment = router
                .build_deployment(DeploymentSpec {
                    entry: Some(m),
                    id: format!("{}#{index}", m.name),
                    model_name: &m.name,
                    provider_model: &m.provider_model,
                    api_key: m.api_key.as_ref(),
                    base_url: m.base_url.as_deref(),
                    timeout: m.timeout_secs.map_or(default_timeout, Duration::from_secs),
                    connect_timeout: m
                        .connect_timeout_secs
                        .map_or(default_connect_timeout, Duration::from_secs),
                    field: &field,
                })
                .map_err(RouterError)?;
            let prices = prices_for(
                m,
                &field,
                deployment.provider.name.as_str(),
                &deployment.upstream_model,
            )
            .map_err(RouterError)?;
            if prices.is_none() {
                tracing::warn!(
                    model = %m.name, provider_model = %m.provider_model,
                    "no known price for this model: its requests are costed at 0 (set input_cost_per_token / output_cost_per_token)"
                );
            }
            for (name, v) in [("rpm", m.rpm), ("tpm", m.tpm)] {
                if v == Some(0) {
                    return Err(RouterError(format!("`{field}.{name}` must be at least 1")));
                }
            }
            let deployment = Deployment {
                weight: m.weight.unwrap_or(1),
                prices,
                state: DeploymentState::with_limits(m.rpm, m.tpm),
                ..deployment
            };
            if m.weight == Some(0) {
                return Err(RouterError(format!("`{field}.weight` must be at least 1")));
            }
            let group = router
                .groups
                .entry(m.name.clone())
                .or_insert_with(|| ModelGroup {
                    name: m.name.clone(),
                    deployments: Vec::new(),
                    fallbacks: Vec::new(),
                    context_window_fallbacks: Vec::new(),
                    max_input_tokens: None,
                    rr: AtomicU64::new(0),
                });
            if group.deployments.is_empty() {
                router.order.push(m.name.clone());
            }
            group.deployments.push(Arc::new(deployment));
            // A group's lists are the union of its entries', in config order.
            for f in &m.fallbacks {
                if !group.fallbacks.contains(f) {
                    group.fallbacks.push(f.clone());
                }
            }
            for f in &m.context_window_fallbacks {
                if !group.context_window_fallbacks.contains(f) {
                    group.context_window_fallbacks.push(f.clone());
                }
            }
            if let Some(limit) = m.max_input_tokens {
                group.max_input_tokens =
                    Some(group.max_input_tokens.map_or(limit, |l: u64| l.min(limit)));
            }
        }
        for (i, m) in config.models.iter().enumerate() {
            for (list, field) in [
                (&m.fallbacks, "fallbacks"),
                (&m.context_window_fallbacks, "context_window_fallbacks"),
            ] {
                for f in list {
                    if f == &m.name {
                        return Err(RouterError(format!(
                            "`models[{i}].{field}` names the model itself (`{f}`)"
                        )));
                    }
                    if !router.groups.contains_key(f) {
                        return Err(RouterError(format!(
                            "`models[{i}].{field}` names `{f}`, which is not a [[models]] name"
                        )));
                    }
                }
            }
        }
        for (i, a) in config.aliases.iter().enumerate() {
            let glob = Glob::new(&a.pattern);
            // A pattern like `groq/*` names its provider up front, so a typo or an
            // unroutable provider can be reported now instead of on first use.
            let prefix = glob.literal_prefix();
            if let Some(slash) = prefix.find('/') {
                // The registry's longest-name match, so `together_ai/meta-llama/*`
                // resolves to `together_ai` even though the model part has a slash.
                let provider = registry
                    .resolve(prefix)
                    .map(|(p, _)| p)
                    .filter(|p| prefix.starts_with(&format!("{}/", p.name)));
                match provider {
                    None => {
                        return Err(RouterError(format!(
                            "`aliases[{i}].pattern` `{}`: unknown provider `{}`; run `liter-llm providers` for the list",
                            a.pattern,
                            &prefix[..slash]
                        )))
                    }
                    Some(p) => {
                        if let Some(reason) = unroutable_reason(p) {
                            return Err(RouterError(format!("`aliases[{i}].pattern` `{}`: {reason}", a.pattern)));
                        }
                    }
                }
            }
            router.aliases.push(AliasRoute {
                glob,
                api_key: a.api_key.clone(),
                base_url: a.base_url.clone(),
            });
        }
        Ok(router)
    }

    fn build_deployment(&self, spec: DeploymentSpec<'_>) -> Result<Deployment, String> {
        let field = spec.field;
        let (provider, upstream_model) = self.registry.resolve(spec.provider_model).ok_or_else(|| {
            format!(
                "`{field}.provider_model` `{}`: unknown provider; write it as `provider/model-id` (run `liter-llm providers` for the list)",
                spec.provider_model
            )
        })?;
        if let Some(reason) = unroutable_reason(provider) {
            return Err(format!(
                "`{field}.provider_model` `{}`: {reason}",
                spec.provider_model
            ));
        }
        if upstream_model.is_empty() {
            return Err(format!(
                "`{field}.provider_model` `{}` has no model id after the provider",
                spec.provider_model
            ));
        }
        let options = self.provider_options(&spec, provider)?;
        let templated;
        let base_url = match (spec.base_url, provider.base_url.as_deref()) {
            // Vertex AI's URL names the project and location, in the registry's
            // template or in a configured `base_url` that keeps the placeholders.
            (u, Some(default)) if provider.adapter == Adapter::VertexAi => {
                templated = self.vertex_url(u.unwrap_or(default), &spec)?;
                templated.as_str()
            }
            (Some(u), _) => u,
            (None, Some(u)) if !provider.requires_base_url && !u.contains('{') => u,
            // A regional endpoint such as Bedrock's, once the region is known.
            (None, Some(u)) if u.contains("{region}") && options.region.is_some() => {
                templated = u.replace("{region}", options.region.as_deref().unwrap_or_default());
                templated.as_str()
            }
            _ => {
                return Err(format!(
                    "`{field}`: provider `{}` has no fixed URL; set `base_url`",
                    provider.name
                ))
            }
        };
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(format!(
                "`{field}.base_url` must start with http:// or https://"
            ));
        }
        let (base_url, basic_auth) = split_credentials(&base_url)
            .map_err(|e| format!("`{field}.base_url` is not a valid URL: {e}"))?;
        let env_key;
        // Signed (SigV4) providers authenticate in their adapter; token (OAuth)
        // providers exchange the key (if they have one) for tokens below.
        let signed = provider.auth == AuthStyle::Sigv4;
        let key: Option<&str> = match spec.api_key {
            _ if signed => None,
            Some(k) => Some(k.expose()),
            None => match provider.env_var.as_deref() {
                Some(var) => {
                    env_key = (self.env)(var).filter(|v| !v.is_empty());
                    match (&env_key, provider.requires_base_url) {
                        (Some(k), _) => Some(k.as_str()),
                        // Self-hosted OpenAI-style servers usually run without a
                        // key; a provider with its own key header (Azure) never does.
                        (None, true)
                            if matches!(provider.auth, AuthStyle::Bearer | AuthStyle::None) =>
                        {
                            None
                        }
                        (None, _) => {
                            return Err(format!(
                                "`{field}` ({}): no `api_key`, and `{var}` is not set",
                                spec.model_name
                            ))
                        }
                    }
                }
                None => None,
            },
        };
        let (auth, token_source) = match (provider.auth, key) {
            (AuthStyle::Oauth, key) => (None, Some(self.token_source(&spec, provider, key)?)),
            (style, Some(k)) => (
                static_key_header(style, k).map_err(|e| format!("`{field}.api_key`: {e}"))?,
                None,
            ),
            (_, None) => (None, None),
        };
        let chat_url = reqwest::Url::parse(&format!("{base_url}/chat/completions"))
            .map_err(|e| format!("`{field}.base_url` `{base_url}` is not a valid URL: {e}"))?;
        let chat_uri = http::Uri::try_from(chat_url.as_str())
            .map_err(|e| format!("`{field}.base_url` `{base_url}` is not a valid URL: {e}"))?;
        Ok(Deployment {
            id_header: HeaderValue::from_str(&spec.id).ok(),
            id: spec.id,
            model_name: spec.model_name.to_string(),
            provider,
            upstream_model: upstream_model.to_string(),
            chat_url,
            chat_uri,
            base_url,
            auth,
            basic_auth,
            timeout: spec.timeout,
            connect_timeout: spec.connect_timeout,
            adapter: native(provider.adapter),
            weight: 1,
            options,
            token_source,
            prices: PriceTable::builtin()
                .ok()
                .and_then(|t| t.lookup(provider.name.as_str(), upstream_model)),
            state: DeploymentState::default(),
        })
    }

    /// Region, credentials and api-version, from the entry or the standard
    /// environment variables.
    fn provider_options(
        &self,
        spec: &DeploymentSpec<'_>,
        provider: &ProviderSpec,
    ) -> Result<ProviderOptions, String> {
        let entry = spec.entry;
        let env = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        let mut options = ProviderOptions {
            api_version: entry.and_then(|e| e.api_version.clone()),
            ..ProviderOptions::default()
        };
        if provider.auth == AuthStyle::Sigv4 {
            options.region = entry
                .and_then(|e| e.aws_region.clone())
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION"));
            let secret = |field: Option<&Secret>, var: &str| {
                field.map(|s| s.expose().to_string()).or_else(|| env(var))
            };
            let id = secret(
                entry.and_then(|e| e.aws_access_key_id.as_ref()),
                "AWS_ACCESS_KEY_ID",
            );
            let key = secret(
                entry.and_then(|e| e.aws_secret_access_key.as_ref()),
                "AWS_SECRET_ACCESS_KEY",
            );
            let token = secret(
                entry.and_then(|e| e.aws_session_token.as_ref()),
                "AWS_SESSION_TOKEN",
            );
            match (id, key) {
                (Some(access_key_id), Some(secret_access_key)) => {
                    options.aws = Some(AwsCredentials {
                        access_key_id,
                        secret_access_key,
                        session_token: token,
                    })
                }
                _ => {
                    return Err(format!(
                        "`{}` ({}): provider `{}` signs requests with AWS credentials; set aws_access_key_id and aws_secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                        spec.field, spec.model_name, provider.name
                    ))
                }
            }
            if options.region.is_none() && spec.base_url.is_none() {
                return Err(format!(
                    "`{}` ({}): set `aws_region` (or AWS_REGION) for provider `{}`",
                    spec.field, spec.model_name, provider.name
                ));
            }
        }
        if provider.adapter == Adapter::Watsonx {
            options.watsonx = Some(watsonx_scope(spec, provider, &env)?);
        }
        Ok(options)
    }

    /// The Vertex AI base URL with `{project}` and `{location}` filled in.
    fn vertex_url(&self, template: &str, spec: &DeploymentSpec<'_>) -> Result<String, String> {
        let env = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        let mut url = template.to_string();
        for (placeholder, field, var, value) in [
            (
                "{project}",
                "vertex_project",
                "VERTEXAI_PROJECT",
                spec.entry.and_then(|e| e.vertex_project.clone()),
            ),
            (
                "{location}",
                "vertex_location",
                "VERTEXAI_LOCATION",
                spec.entry.and_then(|e| e.vertex_location.clone()),
            ),
        ] {
            if !url.contains(placeholder) {
                continue;
            }
            let value = value
                .filter(|v| !v.is_empty())
                .or_else(|| env(var))
                .ok_or_else(|| {
                    format!(
                        "`{}` ({}): set `{field}` (or {var}) for provider `vertex_ai`",
                        spec.field, spec.model_name
                    )
                })?;
            // Pasted into the URL's host and path, so it must stay one label.
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(format!(
                    "`{}.{field}` `{value}` is not a valid Google Cloud {}",
                    spec.field,
                    &placeholder[1..placeholder.len() - 1]
                ));
            }
            url = url.replace(placeholder, &value);
        }
        Ok(url)
    }

    /// The token source for an OAuth provider's credentials, shared with every
    /// deployment that uses the same ones. `api_key` is the key the provider
    /// exchanges for tokens, if it has one (watsonx.ai's IBM Cloud API key).
    fn token_source(
        &self,
        spec: &DeploymentSpec<'_>,
        provider: &ProviderSpec,
        api_key: Option<&str>,
    ) -> Result<Arc<TokenSource>, String> {
        let field = spec.field;
        let env = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        let (material, make): (String, SourceMaker<'_>) =
            match provider.adapter {
                Adapter::VertexAi => {
                    if spec.api_key.is_some() {
                        return Err(format!(
                            "`{field}.api_key`: provider `vertex_ai` authenticates with a service account, not an API key; set `vertex_credentials` instead"
                        ));
                    }
                    let credentials = spec
                        .entry
                        .and_then(|e| e.vertex_credentials.as_ref())
                        .map(|s| s.expose().to_string())
                        .or_else(|| env("GOOGLE_APPLICATION_CREDENTIALS"))
                        .ok_or_else(|| {
                            format!(
                                "`{field}` ({}): set `vertex_credentials` (a service-account key file or its JSON) or GOOGLE_APPLICATION_CREDENTIALS for provider `vertex_ai`",
                                spec.model_name
                            )
                        })?;
                    (
                        credentials,
                        Box::new(move |c: &str| {
                            TokenSource::google_service_account(c)
                                .map_err(|e| format!("`{field}.vertex_credentials`: {e}"))
                        }),
                    )
                }
                Adapter::Watsonx => {
                    let key = api_key.ok_or_else(|| {
                        format!(
                            "`{field}` ({}): set `api_key` (an IBM Cloud API key) or WATSONX_APIKEY for provider `{}`",
                            spec.model_name, provider.name
                        )
                    })?;
                    let url = spec
                        .entry
                        .and_then(|e| e.watsonx_iam_url.clone())
                        .unwrap_or_else(|| IBM_IAM_URL.to_string());
                    (
                        format!("{key}\0{url}"),
                        Box::new(move |_: &str| {
                            TokenSource::ibm_iam(key, &url)
                                .map_err(|e| format!("`{field}.watsonx_iam_url`: {e}"))
                        }),
                    )
                }
                other => {
                    return Err(format!(
                        "`{field}`: provider `{}` needs OAuth tokens the `{}` adapter cannot obtain in this build",
                        provider.name,
                        other.as_str()
                    ))
                }
            };
        let digest = Sha256::digest(material.as_bytes());
        let cache_key = format!("{}:{}", provider.adapter.as_str(), hex::encode(digest));
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(source) = tokens.get(&cache_key) {
            return Ok(source.clone());
        }
        let source = Arc::new(make(&material)?);
        tokens.insert(cache_key, source.clone());
        Ok(source)
    }

    pub fn resolve(&self, requested: &str) -> Result<Target<'_>, ResolveError> {
        if let Some(g) = self.groups.get(requested) {
            return Ok(Target::Group(g));
        }
        let Some(alias) = self.aliases.iter().find(|a| a.glob.matches(requested)) else {
            return Err(ResolveError::UnknownModel(requested.to_string()));
        };
        self.build_deployment(DeploymentSpec {
            entry: None,
            id: requested.to_string(),
            model_name: requested,
            provider_model: requested,
            api_key: alias.api_key.as_ref(),
            base_url: alias.base_url.as_deref(),
            timeout: self.default_timeout,
            connect_timeout: self.default_connect_timeout,
            field: "aliases",
        })
        .map(|d| Target::Alias(Arc::new(d)))
        .map_err(|reason| ResolveError::Unroutable {
            model: requested.to_string(),
            reason,
        })
    }

    pub fn groups(&self) -> impl Iterator<Item = &ModelGroup> {
        self.order.iter().filter_map(|n| self.groups.get(n))
    }

    /// Every connect timeout a deployment can have, the default first: the
    /// upstream client keeps one connection pool per value.
    pub fn connect_timeouts(&self) -> Vec<Duration> {
        let mut all = vec![self.default_connect_timeout];
        for d in self.groups().flat_map(|g| g.deployments.iter()) {
            if !all.contains(&d.connect_timeout) {
                all.push(d.connect_timeout);
            }
        }
        all
    }

    pub fn alias_patterns(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().map(|a| a.glob.as_str())
    }

    pub fn has_name(&self, name: &str) -> bool {
        self.groups.contains_key(name) || self.aliases.iter().any(|a| a.glob.matches(name))
    }
}

/// `base_url` without the `user:pass@` it may carry, and those credentials as
/// a Basic authorization value (percent-decoded, as reqwest sent them). The
/// credentials must not stay in the URL: it is printed in logs and errors.
fn split_credentials(base_url: &str) -> Result<(String, Option<HeaderValue>), String> {
    let mut url = reqwest::Url::parse(base_url).map_err(|e| e.to_string())?;
    if url.username().is_empty() && url.password().is_none() {
        return Ok((base_url.to_string(), None));
    }
    use liter_llm_providers::adapters::bedrock::sigv4::percent_decode as decode;
    let user = decode(url.username());
    let pass = url.password().map(decode);
    let mut plain = user;
    plain.push(b':');
    if let Some(p) = pass {
        plain.extend_from_slice(&p);
    }
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
    let mut value =
        HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|e| e.to_string())?;
    value.set_sensitive(true);
    url.set_username("")
        .and_then(|()| url.set_password(None))
        .map_err(|()| "cannot remove the credentials".to_string())?;
    Ok((url.as_str().trim_end_matches('/').to_string(), Some(value)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_url_credentials_are_percent_decoded_into_basic_auth() {
        let (url, basic) = split_credentials("https://a%40b:p%3Aw%20x@h.example:8443/v1").unwrap();
        assert_eq!(url, "https://h.example:8443/v1");
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode("a@b:p:w x");
        assert_eq!(basic.unwrap(), format!("Basic {expected}").as_str());
        let (url, basic) = split_credentials("http://127.0.0.1:8000/v1").unwrap();
        assert_eq!((url.as_str(), basic), ("http://127.0.0.1:8000/v1", None));
        let (_, basic) = split_credentials("http://user@h/v1").unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("user:");
        assert_eq!(basic.unwrap(), format!("Basic {expected}").as_str());
    }
}
