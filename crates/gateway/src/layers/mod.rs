//! The tower layers of the chat pipeline and the order they are stacked in.

pub mod budget;
pub mod cache;
pub mod ratelimit;
pub mod telemetry;
