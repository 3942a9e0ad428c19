//! `POST /api/users`, `GET /api/users/{id}`, `GET /api/users?ids=1,2,3`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use validator::{Validate, ValidationError};

use crate::AppState;
use crate::db::{self, User};
use crate::error::ApiError;
use crate::extract::{PathId, ValidatedJson, parse_id_list};
use crate::json::{self, JsonSize};
use crate::openapi::{CreateUserErrors, GetUserErrors, ListUsersErrors};

/// The body of `POST /api/users`. Fields are optional so that a missing one is a per-field
/// validation error; `email` and `name` are checked (and stored) trimmed. The `#[schema]`
/// attributes describe the same rules in the OpenAPI document (`tests/openapi.rs` checks that
/// the bounds agree with `validate()`).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[schema(
    description = "A new user. Unknown fields are ignored; a missing or `null` field is a \
        validation failure."
)]
pub struct NewUser {
    #[validate(
        required(message = "is required"),
        custom(function = "check_email", message = "must be a valid email address")
    )]
    #[schema(
        value_type = String,
        required = true,
        format = Email,
        max_length = 254,
        example = "ann@example.com"
    )]
    pub email: Option<String>,
    #[validate(
        required(message = "is required"),
        length(min = 8, max = 128, message = "must be 8 to 128 characters")
    )]
    #[schema(
        value_type = String,
        required = true,
        min_length = 8,
        max_length = 128,
        example = "correct horse"
    )]
    pub password: Option<String>,
    /// 1 to 100 characters after trimming.
    #[validate(
        required(message = "is required"),
        custom(function = "check_name", message = "must be 1 to 100 characters"),
        custom(
            function = "crate::extract::storable_text",
            message = "must not contain NUL characters"
        )
    )]
    #[schema(
        value_type = String,
        required = true,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*$",
        example = "Ann"
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
#[utoipa::path(
    post,
    path = "/api/users",
    operation_id = "create_user",
    tag = "users",
    summary = "Create a user",
    description = "The password is hashed with argon2id; an email already registered (after \
        trimming and lower-casing) is 409. Checks run in this order: 415, 413, 400 \
        `invalid_json`, 422, 400 `validation_failed` (every failing field at once).",
    request_body(content = NewUser, content_type = "application/json"),
    responses(
        (status = 201, description = "The new user", body = User),
        CreateUserErrors,
    )
)]
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
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    operation_id = "get_user",
    tag = "users",
    summary = "Read a user",
    params(crate::openapi::IdParam),
    responses(
        (status = 200, description = "The user", body = User),
        GetUserErrors,
    )
)]
pub async fn get(State(state): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let user = db::get_user(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("user not found"))?;
    json::response(&user, state.knobs.json_buffer)
}

/// The query string of `GET /api/users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated positive integers (i64), 1 to 1000 entries (counted before duplicates
    /// collapse).
    #[param(
        value_type = String,
        required = true,
        pattern = r"^0*[1-9][0-9]*(,0*[1-9][0-9]*)*$",
        example = "1,2,3"
    )]
    pub ids: Option<String>,
}

/// The body of `GET /api/users?ids=…`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)] // for the document: no other property
pub struct UserList {
    /// Ordered by id; absent ids are simply not returned.
    pub users: Vec<User>,
}

impl JsonSize for UserList {
    fn json_size(&self) -> usize {
        json::LIST_WRAPPER_BYTES + self.users.json_size()
    }
}

/// `GET /api/users?ids=1,2,3` → the existing users among the ids, ordered by id, one query.
#[utoipa::path(
    get,
    path = "/api/users",
    operation_id = "list_users",
    tag = "users",
    summary = "Read several users",
    params(ListQuery),
    responses(
        (
            status = 200,
            description = "The existing users among `ids`, ordered by id",
            body = UserList
        ),
        ListUsersErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let ids = parse_id_list(query.ids.as_deref())?;
    let users = db::get_users(&state.db, &ids).await?;
    json::response(&UserList { users }, state.knobs.json_buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(user: NewUser) -> Vec<(String, String)> {
        match user.validate() {
            Ok(()) => Vec::new(),
            Err(errors) => crate::extract::field_messages(&errors)
                .into_iter()
                .collect(),
        }
    }

    fn user(name: &str) -> NewUser {
        NewUser {
            email: Some("ann@example.com".to_owned()),
            password: Some("12345678".to_owned()),
            name: Some(name.to_owned()),
        }
    }

    #[test]
    fn a_nul_in_the_name_is_a_field_error_not_a_failed_insert() {
        assert_eq!(messages(user("Ann")), vec![]);
        let nul = vec![(
            "name".to_owned(),
            "must not contain NUL characters".to_owned(),
        )];
        assert_eq!(messages(user("A\0nn")), nul);
        // The length rule is reported first, as the Node.js baseline does.
        let too_long = format!("{}\0", "a".repeat(100));
        assert_eq!(
            messages(user(&too_long)),
            vec![("name".to_owned(), "must be 1 to 100 characters".to_owned())]
        );
        // The password is hashed, never stored: a NUL there is fine.
        let mut with_nul_password = user("Ann");
        with_nul_password.password = Some("1234\u{0}5678".to_owned());
        assert_eq!(messages(with_nul_password), vec![]);
    }
}
