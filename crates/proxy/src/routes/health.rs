//! Public health endpoints and the OpenAPI document.

use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::CONTENT_TYPE;
use http::StatusCode;
use serde_json::json;
use std::sync::Arc;

static OPENAPI: &str = include_str!("../../openapi.json");

fn status_word(state: &AppState) -> &'static str {
    if state.is_draining() {
        "draining"
    } else if state.is_ready() {
        "ok"
    } else {
        "starting"
    }
}

pub async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let models: Vec<_> = state
        .router
        .groups()
        .map(|g| {
            json!({
                "name": g.name,
                "deployments": g.deployments.iter().map(|d| {
                    let probe = d.state.probe_report().map(|p| json!({
                        "healthy": p.healthy,
                        "checked_unix": p.checked_unix,
                        "latency_ms": p.latency_ms,
                        "error": p.error,
                    }));
                    json!({
                        "id": d.id,
                        "provider": d.provider.name,
                        "model": d.upstream_model,
                        "healthy": d.state.is_healthy(),
                        "cooldown_remaining_secs": d.state.cooldown_remaining().map(|r| r.as_secs_f64().ceil() as u64),
                        "in_flight": d.state.in_flight(),
                        "last_probe": probe,
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "status": status_word(&state),
        "version": env!("CARGO_PKG_VERSION"),
        "models": models,
        "aliases": state.router.alias_patterns().collect::<Vec<_>>(),
    }))
}

pub async fn liveness() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

pub async fn readiness(State(state): State<Arc<AppState>>) -> Response {
    let code = if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({ "status": status_word(&state) }))).into_response()
}

pub async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}
