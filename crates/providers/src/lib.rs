#![forbid(unsafe_code)]
//! Everything that knows about upstream providers: the registry (data), the one
//! pooled HTTP client, and how each auth style turns into request headers.

pub mod adapters;
pub mod auth;
pub mod client;
pub mod registry;
