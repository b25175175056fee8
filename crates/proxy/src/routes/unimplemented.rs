//! The fallbacks: 501 for the spec routes this build does not serve yet (files,
//! batches and the Responses API; every stateless endpoint goes through the
//! pipeline in `chat.rs`), 404 for unknown routes and 405 for wrong methods.
//! The 501 handler authenticates first, so an unauthenticated caller cannot probe
//! which routes exist.

use crate::auth::Principal;
use crate::error::ErrorResponse;
use axum::extract::{MatchedPath, OriginalUri};
use http::Method;
use liter_llm_protocol::{ApiError, ErrorKind};

pub async fn not_implemented(
    _principal: Principal,
    method: Method,
    matched: Option<MatchedPath>,
    OriginalUri(uri): OriginalUri,
) -> ErrorResponse {
    let path = matched.as_ref().map_or(uri.path(), |m| m.as_str());
    ApiError::new(
        ErrorKind::NotImplemented,
        format!("`{method} {path}` is not implemented in this build yet"),
    )
    .with_code("not_implemented")
    .into()
}

pub async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ErrorResponse {
    ApiError::new(
        ErrorKind::NotFound,
        format!("no route for `{method} {}`", uri.path()),
    )
    .with_code("unknown_route")
    .into()
}

pub async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ErrorResponse {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("method `{method}` is not allowed on `{}`", uri.path()),
    )
    .with_code("method_not_allowed")
    .into()
}
