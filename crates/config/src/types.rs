//! The config schema. Field names and meanings follow the reference
//! implementation's `liter-llm-proxy.toml`, so existing files run unchanged.

use crate::{ConfigError, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub general: General,
    #[serde(default)]
    pub server: Server,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<AliasEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<CooldownSection>,
    #[serde(default)]
    pub router: RouterSection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySection>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<Secret>,
    pub default_timeout_secs: u64,
    /// Limit on opening a connection to an upstream (TCP connect and TLS
    /// handshake), for deployments without their own `connect_timeout_secs`.
    pub connect_timeout_secs: u64,
    pub max_retries: u32,
    pub enable_cost_tracking: bool,
    pub enable_tracing: bool,
    /// Serve `/v1/*` without any key. Off by default: a proxy with no master key
    /// and no virtual keys refuses to start rather than run open by accident.
    pub allow_unauthenticated: bool,
}

impl Default for General {
    fn default() -> Self {
        General {
            master_key: None,
            default_timeout_secs: 120,
            connect_timeout_secs: 10,
            max_retries: 3,
            enable_cost_tracking: false,
            enable_tracing: false,
            allow_unauthenticated: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub request_timeout_secs: u64,
    pub body_limit_bytes: u64,
    pub cors_origins: Vec<String>,
    /// How long in-flight requests and streams may run after SIGTERM before the
    /// process exits anyway.
    pub drain_timeout_secs: u64,
    /// Add `x-liter-llm-overhead-us` (the proxy's own time, upstream wait
    /// excluded) to every proxied response.
    pub overhead_header: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            host: "0.0.0.0".to_string(),
            port: 4000,
            request_timeout_secs: 600,
            body_limit_bytes: 10 * 1024 * 1024,
            cors_origins: vec!["*".to_string()],
            drain_timeout_secs: 30,
            overhead_header: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub provider_model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// This deployment's limit on opening a connection (TCP and TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Models to use instead when the prompt is too long for this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_window_fallbacks: Vec<String>,
    /// The model's context window in tokens; longer prompts go to `context_window_fallbacks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u64>,
    /// Share of traffic under the `weighted` strategy (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Requests per minute this deployment may receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute this deployment may receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Price overrides, USD per token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_cost_per_token: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cost_per_token: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_token_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_token_cost: Option<f64>,
    /// Azure OpenAI / Azure AI `api-version` (the adapter has a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// AWS region for Bedrock and SageMaker (else `AWS_REGION` / `AWS_DEFAULT_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,
    /// AWS credentials (else `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_access_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_session_token: Option<Secret>,
    /// Google Cloud project for Vertex AI (else `VERTEXAI_PROJECT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex_project: Option<String>,
    /// Vertex AI region, e.g. `us-central1` (else `VERTEXAI_LOCATION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex_location: Option<String>,
    /// A service-account key: the path of its JSON file, or the JSON itself
    /// (else `GOOGLE_APPLICATION_CREDENTIALS`). A secret: it holds a private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex_credentials: Option<Secret>,
    /// watsonx.ai project the requests run in (else `WATSONX_PROJECT_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watsonx_project_id: Option<String>,
    /// watsonx.ai deployment space, instead of a project (else `WATSONX_SPACE_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watsonx_space_id: Option<String>,
    /// IBM Cloud IAM token endpoint (default `https://iam.cloud.ibm.com/identity/token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watsonx_iam_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AliasEntry {
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub key: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_limit: Option<f64>,
    /// When `budget_limit` resets; none means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<BudgetPeriod>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Requests per minute for each model group (the reference's meaning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute for each model group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests per minute across the whole proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_rpm: Option<u64>,
    /// Tokens per minute across the whole proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_tpm: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    #[default]
    Hard,
    Soft,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_limits: BTreeMap<String, f64>,
    #[serde(default)]
    pub enforcement: Enforcement,
    /// When the global and per-model budgets reset; none means never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<BudgetPeriod>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    pub max_entries: u64,
    pub ttl_seconds: u64,
    pub backend: String,
    pub backend_config: toml::Table,
    /// `key`: each API key has its own entries; `shared`: every key shares them.
    pub scope: CacheScope,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    #[default]
    Key,
    Shared,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            max_entries: 256,
            ttl_seconds: 300,
            backend: "memory".to_string(),
            backend_config: toml::Table::new(),
            scope: CacheScope::Key,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesSection {
    pub backend: String,
    pub prefix: String,
    pub backend_config: toml::Table,
}

impl Default for FilesSection {
    fn default() -> Self {
        FilesSection {
            backend: "memory".to_string(),
            prefix: "liter-llm-files/".to_string(),
            backend_config: toml::Table::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_model: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CooldownSection {
    pub duration_secs: u64,
    /// Failures within `window_secs` that put a deployment in cooldown.
    #[serde(default = "default_allowed_fails")]
    pub allowed_fails: u32,
    #[serde(default = "default_fail_window")]
    pub window_secs: u64,
}

fn default_allowed_fails() -> u32 {
    3
}

fn default_fail_window() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    Weighted,
    LeastInFlight,
    LowestLatency,
    LowestCost,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSection {
    pub strategy: Strategy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    #[default]
    Http,
    Grpc,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// OTLP collector endpoint, e.g. `http://127.0.0.1:4318` (HTTP) or `:4317` (gRPC).
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Fraction of requests traced, 0.0 to 1.0.
    #[serde(default = "default_sampling")]
    pub sampling_ratio: f64,
}

fn default_service_name() -> String {
    "liter-llm".to_string()
}

fn default_sampling() -> f64 {
    1.0
}

impl Config {
    /// Value checks that the types alone cannot express. Routing checks (does the
    /// provider exist, is it routable) live with the router, which owns that logic.
    pub(crate) fn check_values(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Some(k) = &self.general.master_key {
            if k.is_empty() {
                return invalid("`general.master_key` is empty; an empty key would authenticate nothing safely. Remove it or set a value".into());
            }
        }
        if self.server.request_timeout_secs == 0 {
            return invalid("`server.request_timeout_secs` must be at least 1".into());
        }
        if self.server.body_limit_bytes == 0 {
            return invalid("`server.body_limit_bytes` must be at least 1".into());
        }
        if self.general.default_timeout_secs == 0 {
            return invalid("`general.default_timeout_secs` must be at least 1".into());
        }
        if self.general.connect_timeout_secs == 0 {
            return invalid("`general.connect_timeout_secs` must be at least 1".into());
        }
        // Far beyond any sane value, and far below where deadline arithmetic overflows.
        const MAX_TIMEOUT_SECS: u64 = 365 * 24 * 3600;
        for (field, v) in [
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
            ),
            ("server.drain_timeout_secs", self.server.drain_timeout_secs),
            (
                "general.default_timeout_secs",
                self.general.default_timeout_secs,
            ),
            (
                "general.connect_timeout_secs",
                self.general.connect_timeout_secs,
            ),
        ] {
            if v > MAX_TIMEOUT_SECS {
                return invalid(format!(
                    "`{field}` = {v} is more than a year; use at most {MAX_TIMEOUT_SECS}"
                ));
            }
        }
        for o in &self.server.cors_origins {
            let valid = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && o.bytes().all(|b| b.is_ascii_graphic()));
            if !valid {
                return invalid(format!(
                    "`server.cors_origins` entry `{o}` is not an origin: use \"*\" or a scheme and host like \"https://app.example.com\""
                ));
            }
        }
        if self.server.cors_origins.is_empty() {
            return invalid("`server.cors_origins` is empty; use [\"*\"] to allow any origin or list the allowed ones".into());
        }
        for (i, m) in self.models.iter().enumerate() {
            if m.name.trim().is_empty() {
                return invalid(format!("`models[{i}].name` is empty"));
            }
            if m.provider_model.trim().is_empty() {
                return invalid(format!("`models[{i}].provider_model` is empty"));
            }
            for (field, v) in [
                ("timeout_secs", m.timeout_secs),
                ("connect_timeout_secs", m.connect_timeout_secs),
            ] {
                if v == Some(0) || v.is_some_and(|t| t > MAX_TIMEOUT_SECS) {
                    return invalid(format!(
                        "`models[{i}].{field}` must be between 1 and {MAX_TIMEOUT_SECS}"
                    ));
                }
            }
            if m.api_key.as_ref().is_some_and(Secret::is_empty) {
                return invalid(format!("`models[{i}].api_key` is empty; remove it to use the provider's environment variable"));
            }
        }
        for (i, a) in self.aliases.iter().enumerate() {
            if a.pattern.trim().is_empty() {
                return invalid(format!("`aliases[{i}].pattern` is empty"));
            }
            if a.api_key.as_ref().is_some_and(Secret::is_empty) {
                return invalid(format!("`aliases[{i}].api_key` is empty"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            if k.key.is_empty() {
                return invalid(format!("`keys[{i}].key` is empty"));
            }
            if !seen.insert(k.key.expose()) {
                return invalid(format!("`keys[{i}].key` duplicates an earlier key"));
            }
            // A key equal to the master key is refused by the key store, after the
            // --master-key / LITER_LLM_MASTER_KEY override has been applied.
        }
        self.reject_unimplemented()
    }

    /// Settings this build accepts by name (so reference configs parse) but does
    /// not yet enforce. A limit that silently does nothing is worse than a clear
    /// refusal, so each one is an error until its layer exists.
    fn reject_unimplemented(&self) -> Result<(), ConfigError> {
        let mut found: Vec<String> = Vec::new();
        let sections = [("[files]", self.files.is_some())];
        found.extend(
            sections
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| n.to_string()),
        );
        if found.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Invalid(format!(
            "this build does not enforce {} yet; remove {} rather than run with a setting that has no effect (see docs/configuration.md)",
            found.join(", "),
            if found.len() == 1 { "it" } else { "them" }
        )))
    }
}
