//! `GET /healthz`: the database answers `SELECT 1` through the pool; the body carries every
//! knob so a harness can check it is measuring the configuration it asked for.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::config::Knobs;
use crate::db;
use crate::error::ApiError;
use crate::openapi::HealthErrors;

/// The body of a healthy `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)] // for the document: no other property
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    #[schema(example = "ok")]
    pub database: &'static str,
    pub knobs: Knobs,
    /// The server's version.
    #[schema(example = "0.1.0")]
    pub version: &'static str,
}

/// `GET /healthz` → 200 when the database answers; 503 in the error shape when it does not.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "Health and configuration",
    responses(
        (
            status = 200,
            description = "The database answers; every knob as configured",
            body = Health
        ),
        HealthErrors,
    )
)]
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
