//! The tower layers of the chat pipeline and the order they are stacked in.
//!
//! Outermost first:
//! 1. telemetry — the span must cover everything, rejections included;
//! 2. rate limit — cheapest rejection, and a request is a request even when
//!    the cache answers it;
//! 3. budget — reserves the worst-case cost before anything is spent;
//! 4. cache — a hit skips the upstream, and settles with no tokens and no cost,
//!    so the layers above release their reservations;
//! 5. dispatch — routing, cooldown, retries, fallbacks, the upstream call.

pub mod budget;
pub mod cache;
pub mod ratelimit;
pub mod telemetry;

use crate::pipeline::dispatch::Dispatch;
use crate::pipeline::ChatService;
use liter_llm_config::Config;
use telemetry::TelemetryLayer;

/// The layers that exist for this config; `None` means not configured, and then
/// the layer is not in the stack at all.
#[derive(Clone, Default)]
pub struct Layers {
    pub telemetry: Option<TelemetryLayer>,
}

impl Layers {
    /// Build every configured layer. Exporters and other background work start here.
    pub fn from_config(config: &Config) -> Result<Layers, String> {
        Ok(Layers {
            telemetry: TelemetryLayer::from_config(config)?,
        })
    }

    /// Check the same settings without starting anything (for `config check`).
    pub fn validate(config: &Config) -> Result<(), String> {
        TelemetryLayer::validate(config)?;
        Ok(())
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
        .service(dispatch);
    ChatService::new(stack)
}
