//! Shared state, built once at startup and read by every request.

use crate::auth::KeyStore;
use crate::metrics::Metrics;
use liter_llm_config::Config;
use liter_llm_gateway::balance::CooldownPolicy;
use liter_llm_gateway::health::HealthChecker;
use liter_llm_gateway::layers::{build as build_stack, Layers};
use liter_llm_gateway::pipeline::dispatch::{Dispatch, DispatchCore, Pricer};
use liter_llm_gateway::pipeline::ChatService;
use liter_llm_gateway::pricing::cost_of;
use liter_llm_gateway::spend::SpendLog;
use liter_llm_gateway::{Router, Upstream};
use liter_llm_providers::client::{ClientOptions, ClientsByConnectTimeout};
use liter_llm_providers::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct AppState {
    pub router: Arc<Router>,
    /// The chat pipeline: the configured layers around the dispatcher.
    pub chat: ChatService,
    /// Kept to flush them at shutdown.
    pub layers: Layers,
    /// Spend records, with `[general].enable_cost_tracking`.
    pub spend: Option<Arc<SpendLog>>,
    pub keys: KeyStore,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub started_unix: u64,
    pub metrics: Metrics,
    /// Started by `serve` when `[health]` is configured.
    pub health: Option<HealthChecker>,
    /// `[server].overhead_header`: report the proxy's own time on each response.
    pub overhead_header: bool,
    ready: AtomicBool,
    draining: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Config(String),
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
}

impl AppState {
    /// Build everything a request needs. Every config problem that can be found
    /// before serving is found here, so `config check` and `api` agree.
    pub fn build(
        config: &Config,
        env: liter_llm_config::EnvLookup,
    ) -> Result<AppState, BuildError> {
        Self::build_with(config, env, true)
    }

    /// `start_background = false` validates everything but starts no exporter or
    /// other background work: what `config check` needs.
    pub fn build_with(
        config: &Config,
        env: liter_llm_config::EnvLookup,
        start_background: bool,
    ) -> Result<AppState, BuildError> {
        let registry = Registry::builtin()
            .map_err(|e| BuildError::Config(format!("provider registry: {e}")))?;
        let router = Arc::new(
            Router::from_config(config, registry, env).map_err(|e| BuildError::Config(e.0))?,
        );
        let keys = KeyStore::from_config(config, &router).map_err(BuildError::Config)?;
        let connect_timeouts = router.connect_timeouts();
        let clients = ClientsByConnectTimeout::new(&ClientOptions::default(), &connect_timeouts)
            .map_err(|e| BuildError::Client(e.to_string()))?;
        let cooldown = match &config.cooldown {
            Some(c) => CooldownPolicy {
                enabled: c.duration_secs > 0,
                duration: Duration::from_secs(c.duration_secs),
                allowed_fails: c.allowed_fails.max(1),
                window: Duration::from_secs(c.window_secs.max(1)),
            },
            None => CooldownPolicy::default(),
        };
        let pricer: Pricer = Arc::new(|d, usage| cost_of(d.prices.as_ref(), usage));
        let dispatch = Dispatch::new(DispatchCore {
            router: router.clone(),
            upstream: Upstream::new(
                &clients,
                &ClientOptions::default(),
                config.general.max_retries,
            )
            .map_err(BuildError::Client)?,
            strategy: config.router.strategy,
            cooldown,
            pricer,
        });
        let health = match &config.health {
            None => None,
            Some(h) => {
                let interval = h.interval_secs.filter(|s| *s > 0).ok_or_else(|| {
                    BuildError::Config(
                        "`health.interval_secs` is required (at least 1) when [health] is present"
                            .into(),
                    )
                })?;
                if let Some(m) = &h.probe_model {
                    if router.groups().all(|g| &g.name != m) {
                        return Err(BuildError::Config(format!(
                            "`health.probe_model` names `{m}`, which is not a [[models]] name"
                        )));
                    }
                }
                Some(HealthChecker {
                    router: router.clone(),
                    clients: clients.clone(),
                    interval: Duration::from_secs(interval),
                    probe_model: h.probe_model.clone(),
                })
            }
        };
        let layers =
            Layers::from_config(config, &router, start_background).map_err(BuildError::Config)?;
        let chat = build_stack(&layers, dispatch);
        Ok(AppState {
            router,
            chat,
            spend: layers.spend.clone(),
            layers,
            keys,
            body_limit: usize::try_from(config.server.body_limit_bytes).unwrap_or(usize::MAX),
            request_timeout: Duration::from_secs(config.server.request_timeout_secs),
            metrics: Metrics::default(),
            health,
            overhead_header: config.server.overhead_header,
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Ready once serving, not draining, and (when probes run) while at least
    /// one deployment can serve.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
            && self.can_serve()
    }

    fn can_serve(&self) -> bool {
        if self.health.is_none() {
            return true;
        }
        let mut deployments = self
            .router
            .groups()
            .flat_map(|g| g.deployments.iter())
            .peekable();
        deployments.peek().is_none() || deployments.any(|d| d.state.is_healthy())
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
