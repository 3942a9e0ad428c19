//! `GET /healthz`: the database answers `SELECT 1` through the pool; the body carries every
//! knob so a harness can check it is measuring the configuration it asked for.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::AppState;
use crate::config::Knobs;
use crate::db;
use crate::error::ApiError;

/// The body of a healthy `/healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub database: &'static str,
    pub knobs: Knobs,
    pub version: &'static str,
}

/// `GET /healthz` → 200 when the database answers; 503 in the error shape when it does not.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    db::ping(&state.db).await.map_err(|e| match e {
        ApiError::Database(cause) => ApiError::Unavailable(cause),
        other => other,
    })?;
    Ok(Json(Health {
        status: "ok",
        database: "ok",
        knobs: Knobs::clone(&state.knobs),
        version: env!("CARGO_PKG_VERSION"),
    }))
}
