#![forbid(unsafe_code)]
//! The small part of OpenAI's wire format the proxy has to understand.
//!
//! The proxy never deserialises a whole request: it peeks at the few fields that
//! drive routing and forwards the client's original bytes, so fields it does not
//! know reach the upstream untouched.

pub mod endpoint;
pub mod error;
pub mod multipart;
pub mod peek;

pub use endpoint::Endpoint;
pub use error::{ApiError, ErrorKind};
pub use peek::{peek_request, rewrite_model, PeekError, RequestPeek, Requirements};
