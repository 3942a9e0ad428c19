//! `POST /api/users`, `GET /api/users/{id}`, `GET /api/users?ids=1,2,3`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use validator::{Validate, ValidationError};

use crate::AppState;
use crate::db::{self, User};
use crate::error::ApiError;
use crate::extract::{PathId, ValidatedJson, parse_id_list};

/// The body of `POST /api/users`. Fields are optional so that a missing one is a per-field
/// validation error; `email` and `name` are checked (and stored) trimmed.
#[derive(Debug, Deserialize, Validate)]
pub struct NewUser {
    #[validate(
        required(message = "is required"),
        custom(function = "check_email", message = "must be a valid email address")
    )]
    pub email: Option<String>,
    #[validate(
        required(message = "is required"),
        length(min = 8, max = 128, message = "must be 8 to 128 characters")
    )]
    pub password: Option<String>,
    #[validate(
        required(message = "is required"),
        custom(function = "check_name", message = "must be 1 to 100 characters")
    )]
    pub name: Option<String>,
}

/// The longest email accepted, in characters.
const MAX_EMAIL_CHARS: usize = 254;

fn check_email(email: &str) -> Result<(), ValidationError> {
    use validator::ValidateEmail as _;
    let email = email.trim();
    if email.chars().count() <= MAX_EMAIL_CHARS && email.validate_email() {
        Ok(())
    } else {
        Err(ValidationError::new("email"))
    }
}

fn check_name(name: &str) -> Result<(), ValidationError> {
    if (1..=100).contains(&name.trim().chars().count()) {
        Ok(())
    } else {
        Err(ValidationError::new("length"))
    }
}

/// The form an email is stored and compared in: trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// `POST /api/users` → 201 user (the password is hashed, never returned).
pub async fn create(
    State(state): State<AppState>,
    ValidatedJson(new_user): ValidatedJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let (Some(email), Some(password), Some(name)) =
        (new_user.email, new_user.password, new_user.name)
    else {
        // `validate()` has rejected missing fields already; this is unreachable in practice.
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated user payload lacks a field"
        )));
    };
    let password_hash = state.hasher.hash(password).await?;
    let user = db::insert_user(
        &state.db,
        &normalize_email(&email),
        name.trim(),
        &password_hash,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `GET /api/users/{id}` → 200 user | 404.
pub async fn get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<User>, ApiError> {
    db::get_user(&state.db, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("user not found"))
}

/// The query string of `GET /api/users`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub ids: Option<String>,
}

/// The body of `GET /api/users?ids=…`.
#[derive(Debug, Serialize)]
pub struct UserList {
    pub users: Vec<User>,
}

/// `GET /api/users?ids=1,2,3` → the existing users among the ids, ordered by id, one query.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<UserList>, ApiError> {
    let Query(query) = query?;
    let ids = parse_id_list(query.ids.as_deref())?;
    let users = db::get_users(&state.db, &ids).await?;
    Ok(Json(UserList { users }))
}
