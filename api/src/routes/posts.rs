//! `POST /api/posts`, `GET /api/posts?limit=N`, `GET /api/posts/{id}` (the cacheable one).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use validator::Validate;

use crate::AppState;
use crate::db::{self, Post, PostWithAuthor};
use crate::error::ApiError;
use crate::extract::{PathId, ValidatedJson, parse_limit};

/// The body of `POST /api/posts`; optional fields so a missing one is a per-field error.
#[derive(Debug, Deserialize, Validate)]
pub struct NewPost {
    #[validate(
        required(message = "is required"),
        range(min = 1, message = "must be a positive integer")
    )]
    pub author_id: Option<i64>,
    #[validate(
        required(message = "is required"),
        length(min = 1, max = 200, message = "must be 1 to 200 characters")
    )]
    pub title: Option<String>,
    #[validate(
        required(message = "is required"),
        length(min = 1, max = 10000, message = "must be 1 to 10000 characters")
    )]
    pub body: Option<String>,
}

/// `POST /api/posts` → 201 post; an unknown author is 400 on `fields.author_id`.
pub async fn create(
    State(state): State<AppState>,
    ValidatedJson(new_post): ValidatedJson<NewPost>,
) -> Result<(StatusCode, Json<Post>), ApiError> {
    let (Some(author_id), Some(title), Some(body)) =
        (new_post.author_id, new_post.title, new_post.body)
    else {
        // `validate()` has rejected missing fields already; this is unreachable in practice.
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated post payload lacks a field"
        )));
    };
    let post = db::insert_post(&state.db, author_id, &title, &body).await?;
    Ok((StatusCode::CREATED, Json(post)))
}

/// The query string of `GET /api/posts`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<String>,
}

/// The body of `GET /api/posts`.
#[derive(Debug, Serialize)]
pub struct PostList {
    pub posts: Vec<PostWithAuthor>,
}

/// `GET /api/posts?limit=N` → newest posts with authors, by the `posts_strategy` knob.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PostList>, ApiError> {
    let Query(query) = query?;
    let limit = parse_limit(query.limit.as_deref())?;
    let posts = db::list_posts(&state.db, limit, state.knobs.posts_strategy).await?;
    Ok(Json(PostList { posts }))
}

/// `GET /api/posts/{id}` → 200 post with `ETag` + `Cache-Control` (when the `cache_headers`
/// knob is on), 304 with no body when `If-None-Match` matches, 404 when absent.
pub async fn get(
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let post = db::get_post(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("post not found"))?;
    let body = serde_json::to_vec(&post)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serialising post {id}: {e}")))?;
    let mut response_headers = HeaderMap::new();
    if state.knobs.cache_headers {
        let etag = etag_of(&body);
        let cache_control = format!("public, max-age={}", state.knobs.cache_max_age_secs);
        response_headers.insert(header::ETAG, header_value(&etag)?);
        response_headers.insert(header::CACHE_CONTROL, header_value(&cache_control)?);
        if if_none_match_matches(&headers, &etag) {
            return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
        }
    }
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok((StatusCode::OK, response_headers, Body::from(body)).into_response())
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("building header {value:?}: {e}")))
}

/// A strong entity tag for a representation: the first 32 hex digits of the SHA-256 of its
/// bytes, quoted (`"3f2a…"`).
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex = hex::encode(digest);
    format!("\"{}\"", &hex[..32])
}

/// RFC 9110 §13.1.2: `If-None-Match` is `*` or a list of entity tags, compared weakly (a `W/`
/// prefix on either side is ignored). Several header lines count as one list.
pub fn if_none_match_matches(headers: &HeaderMap, etag: &str) -> bool {
    let ours = strip_weak(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || strip_weak(candidate) == ours)
}

fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("x")),
            );
        }
        headers
    }

    #[test]
    fn etag_is_quoted_32_hex_digits() {
        let tag = etag_of(b"{}");
        assert_eq!(tag.len(), 34);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert!(tag[1..33].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(etag_of(b"{}"), etag_of(b"[]"));
    }

    #[test]
    fn if_none_match_lists_weak_and_star() {
        let tag = "\"abc\"";
        assert!(if_none_match_matches(&with(&["\"abc\""]), tag));
        assert!(if_none_match_matches(&with(&["W/\"abc\""]), tag));
        assert!(if_none_match_matches(&with(&["\"x\", W/\"abc\""]), tag));
        assert!(if_none_match_matches(&with(&["\"x\"", "\"abc\""]), tag));
        assert!(if_none_match_matches(&with(&["*"]), tag));
        assert!(!if_none_match_matches(&with(&["\"abd\""]), tag));
        assert!(!if_none_match_matches(&with(&["abc"]), tag));
        assert!(!if_none_match_matches(&with(&[]), tag));
    }
}
