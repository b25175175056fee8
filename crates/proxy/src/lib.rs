#![forbid(unsafe_code)]
//! The HTTP face of the proxy: routes, auth, the HTTP layers, and the server
//! lifecycle (readiness, graceful drain).

mod app;
mod auth;
mod body;
mod error;
mod http_layers;
mod metrics;
mod routes;
mod server;
mod state;

pub use app::build_app;
pub use app::with_http_layers;
pub use auth::{KeyStore, Principal};
pub use server::{serve, shutdown_signal, ServeOptions};
pub use state::{AppState, BuildError};
