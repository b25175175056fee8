//! Bearer auth: the master key and `[[keys]]` virtual keys.
//!
//! Keys are held only as SHA-256 digests. A presented token is hashed once and
//! looked up by digest; the master key digest is compared in constant time. No
//! error message ever contains the presented token.

use crate::error::ErrorResponse;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use http::request::Parts;
use http::HeaderMap;
use liter_llm_config::Config;
use liter_llm_gateway::glob::Glob;
use liter_llm_gateway::pipeline::{Caller, KeyLimits};
use liter_llm_gateway::Router;
use liter_llm_protocol::{ApiError, ErrorKind};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use subtle::ConstantTimeEq;

type KeyHash = [u8; 32];

fn hash(token: &str) -> KeyHash {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug)]
pub enum AllowList {
    All,
    Only {
        exact: HashSet<String>,
        globs: Vec<Glob>,
    },
}

impl AllowList {
    pub fn allows(&self, model: &str) -> bool {
        match self {
            AllowList::All => true,
            AllowList::Only { exact, globs } => {
                exact.contains(model) || globs.iter().any(|g| g.matches(model))
            }
        }
    }
}

#[derive(Debug)]
pub struct VirtualKey {
    /// A short digest prefix, safe to log, that identifies the key to operators.
    pub id: Arc<str>,
    pub description: Option<String>,
    pub allow: AllowList,
    /// `None` when the key has no limits of its own.
    pub limits: Option<Arc<KeyLimits>>,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    Master,
    Key(Arc<VirtualKey>),
    /// Only with `[general].allow_unauthenticated = true` and no credential sent.
    Anonymous,
}

static MASTER_ID: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("master"));
static ANONYMOUS_ID: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from("anonymous"));

impl Principal {
    /// The caller as the pipeline sees it: a loggable id and the key's limits.
    pub fn caller(&self) -> Caller {
        match self {
            Principal::Master => Caller {
                key_id: MASTER_ID.clone(),
                limits: None,
            },
            Principal::Anonymous => Caller {
                key_id: ANONYMOUS_ID.clone(),
                limits: None,
            },
            Principal::Key(k) => Caller {
                key_id: k.id.clone(),
                limits: k.limits.clone(),
            },
        }
    }

    pub fn may_use(&self, model: &str) -> bool {
        match self {
            Principal::Master | Principal::Anonymous => true,
            Principal::Key(k) => k.allow.allows(model),
        }
    }

    /// 403 without echoing the key; the key's safe id helps the operator.
    pub fn check_model(&self, model: &str) -> Result<(), ApiError> {
        if self.may_use(model) {
            return Ok(());
        }
        let id = match self {
            Principal::Key(k) => &*k.id,
            _ => "",
        };
        Err(ApiError::new(
            ErrorKind::PermissionDenied,
            format!("this API key (id {id}) is not allowed to use model `{model}`"),
        )
        .with_param("model")
        .with_code("model_not_allowed"))
    }
}

pub struct KeyStore {
    master: Option<KeyHash>,
    keys: HashMap<KeyHash, Arc<VirtualKey>>,
    allow_unauthenticated: bool,
}

impl KeyStore {
    pub fn from_config(config: &Config, router: &Router) -> Result<KeyStore, String> {
        let master = config.general.master_key.as_ref().map(|k| hash(k.expose()));
        if master.is_none() && config.keys.is_empty() && !config.general.allow_unauthenticated {
            return Err("no master key (`general.master_key`, --master-key or LITER_LLM_MASTER_KEY) and no [[keys]]: \
                 refusing to serve /v1/* without authentication. Configure a key, or set \
                 `general.allow_unauthenticated = true` to run open on purpose"
                .to_string());
        }
        let mut keys = HashMap::new();
        for (i, k) in config.keys.iter().enumerate() {
            let digest = hash(k.key.expose());
            // Checked here, after --master-key / LITER_LLM_MASTER_KEY apply, so a
            // virtual key can never silently carry master rights.
            if master.as_ref() == Some(&digest) {
                return Err(format!("`keys[{i}].key` is the same as the master key"));
            }
            let allow = if k.models.is_empty() {
                AllowList::All
            } else {
                let mut exact = HashSet::new();
                let mut globs = Vec::new();
                for name in &k.models {
                    let g = Glob::new(name);
                    if !g.is_literal() {
                        globs.push(g);
                    } else if router.has_name(name) {
                        exact.insert(name.clone());
                    } else {
                        return Err(format!(
                            "`keys[{i}].models` names `{name}`, which is neither a [[models]] name nor matched by an [[aliases]] pattern"
                        ));
                    }
                }
                AllowList::Only { exact, globs }
            };
            let id: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            let limits =
                (k.rpm.is_some() || k.tpm.is_some() || k.budget_limit.is_some()).then(|| {
                    Arc::new(KeyLimits {
                        rpm: k.rpm,
                        tpm: k.tpm,
                        budget_limit: k.budget_limit,
                        budget_period: k.budget_period,
                    })
                });
            tracing::info!(
                key_id = %id,
                description = k.description.as_deref().unwrap_or(""),
                models = ?k.models,
                "virtual key loaded"
            );
            keys.insert(
                digest,
                Arc::new(VirtualKey {
                    id: Arc::from(id),
                    description: k.description.clone(),
                    allow,
                    limits,
                }),
            );
        }
        Ok(KeyStore {
            master,
            keys,
            allow_unauthenticated: config.general.allow_unauthenticated,
        })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let presented = presented_token(headers).map_err(|()| {
            ApiError::new(
                ErrorKind::Authentication,
                "malformed Authorization header: expected `Authorization: Bearer <key>`",
            )
            .with_code("invalid_api_key")
        })?;
        let Some(token) = presented else {
            if self.allow_unauthenticated {
                return Ok(Principal::Anonymous);
            }
            return Err(ApiError::new(
                ErrorKind::Authentication,
                "missing API key: send it as `Authorization: Bearer <key>`",
            )
            .with_code("missing_api_key"));
        };
        let digest = hash(token);
        let is_master = self
            .master
            .as_ref()
            .is_some_and(|m| bool::from(m.as_slice().ct_eq(digest.as_slice())));
        if is_master {
            return Ok(Principal::Master);
        }
        match self.keys.get(&digest) {
            Some(k) => Ok(Principal::Key(k.clone())),
            None => Err(ApiError::new(ErrorKind::Authentication, "invalid API key")
                .with_code("invalid_api_key")),
        }
    }
}

/// `Authorization: Bearer`, or the `x-api-key` / `api-key` headers that the
/// Anthropic and Azure SDKs send. A credential header that is present but
/// unusable is an error, never "no credential": with `allow_unauthenticated` a
/// garbled key must not quietly become an anonymous request.
fn presented_token(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| ())?.trim();
        let (scheme, rest) = v.split_once(' ').ok_or(())?;
        let token = rest.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(());
        }
        return Ok(Some(token));
    }
    match ["x-api-key", "api-key"]
        .iter()
        .find_map(|h| headers.get(*h))
    {
        None => Ok(None),
        Some(v) => {
            let token = v.to_str().map_err(|_| ())?.trim();
            if token.is_empty() {
                return Err(());
            }
            Ok(Some(token))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ErrorResponse;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state
            .keys
            .authenticate(&parts.headers)
            .map_err(ErrorResponse)
    }
}
