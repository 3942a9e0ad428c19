//! HTTP handlers, one module per resource. Handlers only translate between HTTP and
//! [`crate::db`]: extract and check input, call one query function, shape the response.

pub mod health;
pub mod posts;
pub mod users;

use crate::error::ApiError;

/// The message of the 404 for a path no route matches.
pub const NO_SUCH_ROUTE: &str = "no such route";

/// The fallback for any path no route matches: 404 in the error shape.
pub async fn not_found() -> ApiError {
    ApiError::NotFound(NO_SUCH_ROUTE)
}

/// The fallback for a known path with a method it does not serve: 405 in the error shape.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
