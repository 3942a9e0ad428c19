//! [`ApiError`]: every way a request can fail, and the one JSON shape it is answered with.
//!
//! `{"error": {"code": "...", "message": "...", "fields": {...}}}` with `Content-Type:
//! application/json` — `fields` only for `validation_failed`. Internal causes (SQL errors, join
//! errors) are logged here at `error!` and never reach the body: a 500 always says
//! `"internal server error"`. Database constraint violations that are the client's fault are
//! turned into 4xx by [`on_constraint`], the one place that knows the schema's constraint names.
//!
//! [`json_error_fallback`] is the safety net that keeps any plain-text error produced outside
//! the handlers (axum's own 405, a tower layer) from escaping.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Per-field validation messages, ordered by field name so the body is deterministic.
pub type FieldErrors = BTreeMap<String, String>;

/// The largest accepted request body; larger bodies get 413 `payload_too_large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A failed request, as the contract (docs/CONTRACT.md, "Errors") names it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `validation_failed`, every failing field at once.
    #[error("request validation failed")]
    Validation(FieldErrors),
    /// 400 `bad_request`: a bad path id or query string.
    #[error("{0}")]
    BadRequest(String),
    /// 400 `invalid_json`: the body is not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// 422 `unprocessable_entity`: JSON of the wrong shape.
    #[error("request body has the wrong shape: {0}")]
    UnprocessableEntity(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(&'static str),
    /// 405 `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 `email_taken`.
    #[error("email is already registered")]
    EmailTaken,
    /// 413 `payload_too_large`.
    #[error("request body exceeds {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    /// 415 `unsupported_media_type`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 503 `service_unavailable` (with `Retry-After: 1`): pool exhausted, database down or
    /// restarting, a statement cancelled by the server's `statement_timeout`, or no answer at all
    /// within the query timeout (an I/O error of kind `TimedOut`, see `db::Db::query_timeout`).
    /// The cause is logged, never sent.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] DbFailure),
    /// 500 `internal`, from the database. The cause is logged, never sent.
    #[error("internal server error")]
    Database(#[source] DbFailure),
    /// 500 `internal`, anything else. The cause is logged, never sent.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

/// What went wrong with the database, from whichever driver ran the statement (the `db_driver`
/// knob): both map to the same [`ApiError`]s, so a response never tells the drivers apart.
#[derive(Debug, thiserror::Error)]
pub enum DbFailure {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error("{}", with_cause(.0))]
    TokioPostgres(#[from] tokio_postgres::Error),
    /// No answer within the client-side bound (connecting or running a statement).
    #[error(transparent)]
    NoAnswer(std::io::Error),
}

/// tokio-postgres displays only the kind of an error ("db error"); the log wants the cause too.
fn with_cause(err: &tokio_postgres::Error) -> String {
    match std::error::Error::source(err) {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a FieldErrors>,
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) | ApiError::InvalidJson(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnprocessableEntity(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::EmailTaken => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Database(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnprocessableEntity(_) => "unprocessable_entity",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::EmailTaken => "email_taken",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Database(_) | ApiError::Internal(_) => "internal",
        }
    }

    /// A validation error on one field.
    pub fn field(field: &str, message: &str) -> ApiError {
        ApiError::Validation(FieldErrors::from([(field.to_owned(), message.to_owned())]))
    }
}

impl From<sqlx::Error> for ApiError {
    /// Client-caused constraint violations become 4xx, an unreachable or exhausted database
    /// becomes 503, everything else 500.
    fn from(err: sqlx::Error) -> Self {
        if let Some(mapped) = err.as_database_error().and_then(on_constraint) {
            return mapped;
        }
        if is_unavailable(&err) {
            ApiError::Unavailable(err.into())
        } else {
            ApiError::Database(err.into())
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    /// The same mapping as for sqlx: the same SQLSTATEs are 503, a closed connection or an I/O
    /// failure is 503, and anything else (a column that does not decode) is 500.
    fn from(err: tokio_postgres::Error) -> Self {
        let unavailable = match err.code() {
            Some(code) => is_unavailable_sqlstate(code.code()),
            None => {
                err.is_closed()
                    || std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>())
            }
        };
        if unavailable {
            ApiError::Unavailable(err.into())
        } else {
            ApiError::Database(err.into())
        }
    }
}

/// Maps a violation of a named schema constraint (migrations/0001_init.sql) to the client error
/// it stands for; `None` for anything else.
pub fn on_constraint(err: &dyn sqlx::error::DatabaseError) -> Option<ApiError> {
    match err.constraint()? {
        "users_email_key" => Some(ApiError::EmailTaken),
        "posts_author_id_fkey" => Some(ApiError::field(
            "author_id",
            "must reference an existing user",
        )),
        _ => None,
    }
}

/// True for the errors that mean "the database cannot serve us right now" rather than "this
/// query is wrong": the pool's acquire timeout, a closed pool, a broken connection, and
/// PostgreSQL's SQLSTATEs for shutdown / cannot connect now (57P0x), connection failures
/// (08xxx), insufficient resources such as too many connections (53xxx) and a statement
/// cancelled by `statement_timeout` (57014, the server side of `query_timeout_ms`). The Node.js
/// baseline maps the same set (`baselines/node/src/errors.js`).
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_sqlstate(&code)),
        _ => false,
    }
}

/// The SQLSTATEs of [`is_unavailable`].
fn is_unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("57P0") || code.starts_with("08") || code.starts_with("53") || code == "57014"
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(format!("invalid query string: {}", rejection.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Database(cause) => {
                tracing::error!(error = %cause, "database error while handling a request");
            }
            ApiError::Internal(cause) => {
                tracing::error!(
                    error = format!("{cause:#}"),
                    "internal error while handling a request"
                );
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable, answering 503");
            }
            _ => {}
        }
        let message = self.to_string();
        let fields = match &self {
            ApiError::Validation(fields) => Some(fields),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: &message,
                fields,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Middleware (`axum::middleware::map_response`) that rewrites any error response that is not
/// already JSON — axum's bare 405, a rejection or a tower layer's plain-text body — into the
/// contract's shape, keeping its status and headers (e.g. `Allow`).
pub async fn json_error_fallback(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("not found"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::UnprocessableEntity("request could not be processed".to_owned())
        }
        status if status.is_client_error() => ApiError::BadRequest(
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_owned(),
        ),
        _ => ApiError::Internal(anyhow::anyhow!("a layer answered {status} without a body")),
    };
    let (mut parts, _) = response.into_parts();
    let replacement = error.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    for (name, value) in replacement.headers() {
        parts.headers.insert(name, value.clone());
    }
    let (_, body) = replacement.into_parts();
    Response::from_parts(parts, body)
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
