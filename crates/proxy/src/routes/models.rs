//! `GET /v1/models` and `GET /v1/models/{model}`, filtered by the key's allow-list.

use crate::auth::Principal;
use crate::error::ErrorResponse;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use liter_llm_protocol::{ApiError, ErrorKind};
use serde_json::{json, Value};
use std::sync::Arc;

fn model_object(id: &str, owned_by: &str, created: u64) -> Value {
    json!({ "id": id, "object": "model", "created": created, "owned_by": owned_by })
}

/// Configured groups, then alias patterns, that this principal may use.
fn visible(state: &AppState, principal: &Principal) -> Vec<Value> {
    let created = state.started_unix;
    let groups = state
        .router
        .groups()
        .filter(|g| principal.may_use(&g.name))
        .map(|g| model_object(&g.name, g.owned_by(), created));
    let aliases = state
        .router
        .alias_patterns()
        .filter(|p| principal.may_use(p))
        .map(|p| model_object(p, "alias", created));
    groups.chain(aliases).collect()
}

pub async fn list_models(State(state): State<Arc<AppState>>, principal: Principal) -> Json<Value> {
    Json(json!({ "object": "list", "data": visible(&state, &principal) }))
}

pub async fn retrieve_model(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(model): Path<String>,
) -> Result<Json<Value>, ErrorResponse> {
    if !state.router.has_name(&model) {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("the model `{model}` does not exist on this proxy"),
        )
        .with_param("model")
        .with_code("model_not_found")
        .into());
    }
    principal.check_model(&model)?;
    let owned_by = state
        .router
        .groups()
        .find(|g| g.name == model)
        .map_or("alias", |g| g.owned_by());
    Ok(Json(model_object(&model, owned_by, state.started_unix)))
}
