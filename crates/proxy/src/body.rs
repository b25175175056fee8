//! Reading a request body under `[server].body_limit_bytes`.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use liter_llm_protocol::{ApiError, ErrorKind};
use std::time::Duration;

/// After the limit is hit, keep reading (and discarding) up to this many bytes so
/// the client has finished sending when the 413 arrives. Closing a socket with
/// unread data makes the kernel send RST, which can destroy the 413 before the
/// client reads it and turn a clear error into a connection reset.
const DRAIN_CAP: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        format!("request body is larger than the proxy's limit of {limit} bytes ([server].body_limit_bytes)"),
    )
    .with_code("request_too_large")
}

pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            if len <= DRAIN_CAP as u64 {
                drain(body).await;
            }
            return Err(too_large(limit));
        }
    }
    let mut body = body;
    let mut buf = BytesMut::with_capacity(declared.map_or(8 * 1024, |l| l as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::invalid_request(format!("failed to read the request body: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(d) = frame.into_data() {
                seen += d.len();
                if seen > DRAIN_CAP {
                    break;
                }
            }
        }
    })
    .await;
}
