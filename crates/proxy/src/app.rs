//! The route table and the HTTP layers around it.
//!
//! Layer order, outermost first, and why:
//! 1. sensitive headers: marks credentials before anything can log them;
//! 2. request id: set (or keep the incoming one) before the trace span opens;
//! 3. trace: one span per request, headers shown redacted;
//! 4. request-id propagation: copies the id onto every response, errors included;
//! 5. CORS: answers preflights before auth, as browsers require;
//! 6. compression: skips `text/event-stream`, so stream chunks are never held;
//! 7. panic catch: innermost, so a panic becomes a 500 that still gets the
//!    request id and CORS headers on its way out.
//!
//! Auth is an extractor on each `/v1/*` handler rather than a layer, so the
//! public routes need no exemption list.

use crate::error::error_response;
use crate::http_layers::HttpLayers;
use crate::routes::chat::model_route;
use crate::routes::{health, models, spend, unimplemented};
use crate::state::AppState;
use axum::body::Body;
use axum::routing::{get, post};
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
use http::{HeaderName, HeaderValue};
use liter_llm_gateway::pipeline::Endpoint;
use liter_llm_protocol::{ApiError, ErrorKind};
use std::convert::Infallible;
use std::sync::Arc;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every spec route. The ones later work implements answer 501 for now.
pub fn routes(state: Arc<AppState>) -> axum::Router {
    let todo = unimplemented::not_implemented;
    axum::Router::new()
        .route(
            "/v1/chat/completions",
            model_route(Endpoint::ChatCompletions),
        )
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{*model}", get(models::retrieve_model))
        .route("/v1/embeddings", model_route(Endpoint::Embeddings))
        .route(
            "/v1/images/generations",
            model_route(Endpoint::ImageGenerations),
        )
        .route("/v1/audio/speech", model_route(Endpoint::AudioSpeech))
        .route(
            "/v1/audio/transcriptions",
            model_route(Endpoint::AudioTranscriptions),
        )
        .route("/v1/moderations", model_route(Endpoint::Moderations))
        .route("/v1/rerank", model_route(Endpoint::Rerank))
        .route("/v1/search", model_route(Endpoint::Search))
        .route("/v1/ocr", model_route(Endpoint::Ocr))
        .route("/v1/completions", model_route(Endpoint::Completions))
        .route("/v1/files", post(todo).get(todo))
        .route("/v1/files/{file_id}", get(todo).delete(todo))
        .route("/v1/files/{file_id}/content", get(todo))
        .route("/v1/batches", post(todo).get(todo))
        .route("/v1/batches/{batch_id}", get(todo))
        .route("/v1/batches/{batch_id}/cancel", post(todo))
        .route("/v1/responses", post(todo))
        .route("/v1/responses/{response_id}", get(todo))
        .route("/v1/responses/{response_id}/cancel", post(todo))
        .route("/health", get(health::health))
        .route("/health/liveness", get(health::liveness))
        .route("/health/readiness", get(health::readiness))
        .route("/openapi.json", get(health::openapi))
        .route("/metrics", get(health::metrics))
        .route("/spend/logs", get(spend::logs))
        .route("/spend/totals", get(spend::totals))
        .fallback(unimplemented::not_found)
        .method_not_allowed_fallback(unimplemented::method_not_allowed)
        .with_state(state)
}

fn cors(origins: &[String]) -> Result<CorsLayer, String> {
    let base = CorsLayer::new()
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers(Any)
        .max_age(std::time::Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return Ok(base.allow_origin(Any));
    }
    let list = origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o.trim_end_matches('/'))
                .map_err(|_| format!("`server.cors_origins` entry `{o}` is not a valid origin"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(base.allow_origin(AllowOrigin::list(list)))
}

fn http_layers(cors_origins: &[String]) -> Result<HttpLayers, String> {
    Ok(HttpLayers {
        sensitive: Arc::new([
            AUTHORIZATION,
            PROXY_AUTHORIZATION,
            COOKIE,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("api-key"),
        ]),
        request_id: REQUEST_ID.clone(),
        cors: cors(cors_origins)?,
        on_panic: || {
            error_response(&ApiError::new(
                ErrorKind::Internal,
                "internal error: the request handler panicked; the proxy is still serving",
            ))
        },
    })
}

/// Wrap any router in the proxy's HTTP layers. Public so tests can put the same
/// layers around a handler that panics.
pub fn with_http_layers(
    router: axum::Router,
    cors_origins: &[String],
) -> Result<axum::Router, String> {
    Ok(router.layer(http_layers(cors_origins)?))
}

/// The routes inside the HTTP layers. The layers wrap the router once, rather
/// than each route, so a request goes through one stack and is boxed once.
pub fn build_app(
    state: Arc<AppState>,
    cors_origins: &[String],
) -> Result<
    impl Service<
            http::Request<Body>,
            Response = http::Response<
                impl http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + 'static,
            >,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
    String,
> {
    Ok(http_layers(cors_origins)?.layer(routes(state)))
}
