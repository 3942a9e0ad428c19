//! Extractors that turn raw request parts into checked values or an [`ApiError`].
//!
//! [`ValidatedJson`] runs the contract's checks in the contract's order: media type (415), size
//! (413), JSON syntax (400 `invalid_json`), shape (422), field rules (400 `validation_failed`
//! with every failing field). [`PathId`] and the `parse_*` helpers handle ids and query strings
//! (400 `bad_request`). Nothing here touches the database.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::{DeserializeOwned, IgnoredAny};
use validator::{Validate, ValidationErrors};

use crate::error::{ApiError, FieldErrors};

/// A JSON body of type `T` that has passed `T`'s `validator` rules.
///
/// Payload types make every field an `Option` so that a missing field is reported by the
/// `required` rule in `fields`, as the contract asks, instead of as a shape error.
#[derive(Debug, Clone)]
pub struct ValidatedJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidatedJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // `Bytes` honours the router's `DefaultBodyLimit`; over the limit it rejects with 413.
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                    _ => ApiError::BadRequest(rejection.body_text()),
                })?;
        let value = parse_json::<T>(&bytes)?;
        value
            .validate()
            .map_err(|errors| ApiError::Validation(field_messages(&errors)))?;
        Ok(ValidatedJson(value))
    }
}

/// `application/json`, with or without parameters such as `charset`; case-insensitive.
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses in one pass on the happy path; on failure tells "not JSON" (400) from "JSON of the
/// wrong shape" (422) — serde stops at the first error, so a shape error early in a document
/// that is also broken later is re-checked for syntax before it is called a shape error.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice::<T>(bytes) {
        Ok(value) => Ok(value),
        Err(err) if err.is_data() => match serde_json::from_slice::<IgnoredAny>(bytes) {
            Ok(_) => Err(ApiError::UnprocessableEntity(err.to_string())),
            Err(syntax) => Err(ApiError::InvalidJson(syntax.to_string())),
        },
        Err(err) => Err(ApiError::InvalidJson(err.to_string())),
    }
}

/// One message per failing field: the first rule that failed, by its message (or code).
pub(crate) fn field_messages(errors: &ValidationErrors) -> FieldErrors {
    errors
        .field_errors()
        .into_iter()
        .filter_map(|(field, errors)| {
            let first = errors.first()?;
            let message = first
                .message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_else(|| first.code.to_string());
            Some((field.to_string(), message))
        })
        .collect()
}

/// The rule for every text field that is stored: PostgreSQL's `text` cannot hold U+0000, so
/// a NUL would fail the INSERT (a 500) instead of the request (a 400 on the field).
pub fn storable_text(text: &str) -> Result<(), validator::ValidationError> {
    if text.contains('\0') {
        Err(validator::ValidationError::new("nul"))
    } else {
        Ok(())
    }
}

/// A `{id}` path segment that is a positive `i64` written in decimal digits; else 400.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        parse_positive_id(&raw).map(PathId).ok_or_else(bad_id)
    }
}

/// The answer to a bad `{id}` (also the OpenAPI document's example).
pub(crate) fn bad_id() -> ApiError {
    ApiError::BadRequest("id must be a positive integer".to_owned())
}

/// A positive `i64` made of ASCII digits only (no sign, no spaces, no exponent).
pub fn parse_positive_id(raw: &str) -> Option<i64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<i64>().ok().filter(|id| *id > 0)
}

/// The most ids one `GET /api/users?ids=` may ask for (counted before duplicates collapse).
pub const MAX_IDS: usize = 1000;

/// Parses `ids=1,2,3`: each entry a positive integer, 1..=[`MAX_IDS`] entries; the result is
/// sorted and without duplicates.
pub fn parse_id_list(raw: Option<&str>) -> Result<Vec<i64>, ApiError> {
    let raw = raw.ok_or_else(bad_ids)?;
    let entries: Vec<&str> = raw.split(',').collect();
    if entries.len() > MAX_IDS {
        return Err(bad_ids());
    }
    let mut ids = entries
        .into_iter()
        .map(|entry| parse_positive_id(entry.trim()).ok_or_else(bad_ids))
        .collect::<Result<Vec<i64>, ApiError>>()?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The answer to a bad `ids` (also the OpenAPI document's example).
pub(crate) fn bad_ids() -> ApiError {
    ApiError::BadRequest(format!(
        "ids must be a comma-separated list of 1 to {MAX_IDS} positive integers"
    ))
}

/// The default and the bounds of `GET /api/posts?limit=`.
pub const DEFAULT_POSTS_LIMIT: i64 = 20;
/// The largest `limit` accepted.
pub const MAX_POSTS_LIMIT: i64 = 100;

/// Parses `limit`: absent → [`DEFAULT_POSTS_LIMIT`]; else an integer in 1..=[`MAX_POSTS_LIMIT`].
pub fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_POSTS_LIMIT);
    };
    parse_positive_id(raw.trim())
        .filter(|limit| *limit <= MAX_POSTS_LIMIT)
        .ok_or_else(bad_limit)
}

/// The answer to a bad `limit` (also the OpenAPI document's example).
pub(crate) fn bad_limit() -> ApiError {
    ApiError::BadRequest(format!(
        "limit must be an integer from 1 to {MAX_POSTS_LIMIT}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_sort_and_collapse() {
        assert_eq!(parse_id_list(Some("3,1,3, 2")).ok(), Some(vec![1, 2, 3]));
        for bad in [
            "",
            ",,,",
            "1,,2",
            "a",
            "0",
            "-1",
            "1.5",
            "99999999999999999999",
        ] {
            assert!(parse_id_list(Some(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(parse_id_list(None).is_err());
        let thousand = vec!["1"; MAX_IDS].join(",");
        assert!(parse_id_list(Some(&thousand)).is_ok());
        let too_many = vec!["1"; MAX_IDS + 1].join(",");
        assert!(parse_id_list(Some(&too_many)).is_err());
    }

    #[test]
    fn limit_bounds() {
        assert_eq!(parse_limit(None).ok(), Some(DEFAULT_POSTS_LIMIT));
        assert_eq!(parse_limit(Some("1")).ok(), Some(1));
        assert_eq!(parse_limit(Some("100")).ok(), Some(100));
        for bad in ["0", "101", "abc", "", "-5", "1e2"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn json_syntax_versus_shape() {
        #[derive(serde::Deserialize, Debug)]
        struct Shape {
            _name: Option<String>,
        }
        assert!(matches!(
            parse_json::<Shape>(b""),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_json::<Shape>(b"{"),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_json::<Shape>(br#"{"_name": 5"#),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_json::<Shape>(br#"{"_name": 5}"#),
            Err(ApiError::UnprocessableEntity(_))
        ));
        assert!(matches!(
            parse_json::<Shape>(b"[1]"),
            Err(ApiError::UnprocessableEntity(_))
        ));
    }
}
