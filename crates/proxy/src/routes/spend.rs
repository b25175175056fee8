//! Admin: spend records and totals (master key only), with
//! `[general].enable_cost_tracking`.

use crate::auth::Principal;
use crate::error::ErrorResponse;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::Json;
use liter_llm_gateway::spend::SpendLog;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
pub struct LogsQuery {
    limit: Option<usize>,
}

fn admin_spend(state: &AppState, principal: &Principal) -> Result<Arc<SpendLog>, ApiError> {
    if !matches!(principal, Principal::Master) {
        return Err(ApiError::new(
            ErrorKind::PermissionDenied,
            "spend records need the master key",
        )
        .with_code("admin_only"));
    }
    state.spend.clone().ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            "spend tracking is off; set `general.enable_cost_tracking = true`",
        )
        .with_code("cost_tracking_disabled")
    })
}

pub async fn logs(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Value>, ErrorResponse> {
    let spend = admin_spend(&state, &principal)?;
    let records = spend.recent(q.limit.unwrap_or(100).min(1000));
    Ok(Json(json!({ "object": "list", "data": records })))
}

pub async fn totals(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Value>, ErrorResponse> {
    let spend = admin_spend(&state, &principal)?;
    Ok(Json(json!(spend.totals())))
}
