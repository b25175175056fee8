//! The tower layers of the chat pipeline and the order they are stacked in.
//!
//! Outermost first:
//! 1. telemetry — the span must cover everything, rejections included;
//! 2. rate limit — cheapest rejection, and a request is a request even when
//!    the cache answers it;
//! 3. budget — reserves the worst-case cost before anything is spent;
//!    then cost — the `x-liter-llm-cost` header and the spend record, outside
//!    the cache so that hits are recorded too (at cost 0);
//! 4. cache — a hit skips the upstream, and settles with no tokens and no cost,
//!    so the layers above release their reservations;
//! 5. dispatch — routing, cooldown, retries, fallbacks, the upstream call.

pub mod budget;
pub mod cache;
pub mod ratelimit;
pub mod telemetry;

use crate::pipeline::dispatch::Dispatch;
use crate::pipeline::ChatService;
use crate::pricing::Prices;
use crate::router::Router;
use crate::spend::{SpendLog, SpendOptions};
use budget::{BudgetLayer, CostLayer, WorstPrices};
use cache::CacheLayer;
use liter_llm_config::Config;
use ratelimit::RateLimitLayer;
use std::sync::Arc;
use telemetry::TelemetryLayer;

/// The layers that exist for this config; `None` means not configured, and then
/// the layer is not in the stack at all.
#[derive(Clone, Default)]
pub struct Layers {
    pub telemetry: Option<TelemetryLayer>,
    pub budget: Option<BudgetLayer>,
    /// Cost header and spend records, with `[general].enable_cost_tracking`.
    pub cost: Option<CostLayer>,
    pub spend: Option<Arc<SpendLog>>,
    pub cache: Option<CacheLayer>,
    pub rate_limit: Option<RateLimitLayer>,
}

/// A group's dearest prices: what a budget must reserve before it knows which
/// deployment will answer.
fn worst_prices(router: Arc<Router>) -> WorstPrices {
    Arc::new(move |name: &str| {
        let group = router.groups().find(|g| g.name == name)?;
        group
            .deployments
            .iter()
            .filter_map(|d| d.prices)
            .reduce(Prices::max)
    })
}

impl Layers {
    /// Build every configured layer. With `start_background`, exporters and the
    /// spend writer start here; without it (for `config check`) everything is
    /// validated and nothing starts.
    pub fn from_config(
        config: &Config,
        router: &Arc<Router>,
        start_background: bool,
    ) -> Result<Layers, String> {
        let known = |name: &str| router.groups().any(|g| g.name == name);
        let budget = BudgetLayer::from_config(config, worst_prices(router.clone()), &known)?;
        let cache = CacheLayer::from_config(config)?;
        let rate_limit = RateLimitLayer::from_config(config)?;
        if !start_background {
            TelemetryLayer::validate(config)?;
            return Ok(Layers {
                budget,
                cache,
                rate_limit,
                ..Layers::default()
            });
        }
        let spend = config
            .general
            .enable_cost_tracking
            .then(|| SpendLog::start(SpendOptions::default(), Vec::new()));
        Ok(Layers {
            telemetry: TelemetryLayer::from_config(config)?,
            budget,
            cost: config
                .general
                .enable_cost_tracking
                .then(|| CostLayer::new(spend.clone())),
            spend,
            cache,
            rate_limit,
        })
    }

    /// Flush what the layers still hold (spans) before the process exits.
    pub fn shutdown(&self) {
        if let Some(t) = &self.telemetry {
            t.shutdown();
        }
    }
}

/// Stack the layers around `dispatch`, outermost first (see the module docs).
pub fn build(layers: &Layers, dispatch: Dispatch) -> ChatService {
    let stack = tower::ServiceBuilder::new()
        .option_layer(layers.telemetry.clone())
        .option_layer(layers.rate_limit.clone())
        .option_layer(layers.budget.clone())
        .option_layer(layers.cost.clone())
        .option_layer(layers.cache.clone())
        .service(dispatch);
    ChatService::new(stack)
}
