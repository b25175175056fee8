#![forbid(unsafe_code)]
//! Routing: model groups and their deployments, aliases, the upstream call with
//! retries, and the pass-through SSE stream.

pub mod balance;
pub mod glob;
pub mod health;
pub mod layers;
pub mod oauth;
pub mod pipeline;
pub mod pricing;
pub mod router;
pub mod spend;
pub mod stream;
pub mod tap;
pub mod transport;
pub mod upstream;

pub use router::{Deployment, ModelGroup, ResolveError, Router, RouterError};
pub use upstream::Upstream;
