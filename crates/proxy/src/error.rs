//! Rendering `ApiError` as an axum response.

use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::HeaderValue;
use liter_llm_protocol::ApiError;

pub struct ErrorResponse(pub ApiError);

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        ErrorResponse(e)
    }
}

pub fn error_response(e: &ApiError) -> Response {
    let mut resp = (e.status(), e.to_json()).into_response();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = e.retry_after_secs {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}
