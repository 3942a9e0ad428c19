//! `POST /api/posts`, `GET /api/posts?limit=N`, `GET /api/posts/{id}` (the cacheable one).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::AppState;
use crate::db::{self, Post, PostWithAuthor};
use crate::error::ApiError;
use crate::extract::{PathId, ValidatedJson, parse_limit};
use crate::json::{self, JsonSize};
use crate::openapi::{CreatePostErrors, GetPostErrors, ListPostsErrors};

/// The body of `POST /api/posts`; optional fields so a missing one is a per-field error. The
/// `#[schema]` attributes describe the same rules in the OpenAPI document (`tests/openapi.rs`
/// checks that the bounds agree with `validate()`).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[schema(
    description = "A new post. Unknown fields are ignored; a missing or `null` field is a \
        validation failure."
)]
pub struct NewPost {
    /// An existing user's id.
    #[validate(
        required(message = "is required"),
        range(min = 1, message = "must be a positive integer")
    )]
    #[schema(value_type = i64, required = true, minimum = 1, example = 1)]
    pub author_id: Option<i64>,
    #[validate(
        required(message = "is required"),
        length(min = 1, max = 200, message = "must be 1 to 200 characters"),
        custom(
            function = "crate::extract::storable_text",
            message = "must not contain NUL characters"
        )
    )]
    #[schema(
        value_type = String,
        required = true,
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*$",
        example = "Hello"
    )]
    pub title: Option<String>,
    #[validate(
        required(message = "is required"),
        length(min = 1, max = 10000, message = "must be 1 to 10000 characters"),
        custom(
            function = "crate::extract::storable_text",
            message = "must not contain NUL characters"
        )
    )]
    #[schema(
        value_type = String,
        required = true,
        min_length = 1,
        max_length = 10000,
        pattern = r"^[^\u0000]*$",
        example = "World"
    )]
    pub body: Option<String>,
}

/// `POST /api/posts` → 201 post; an unknown author is 400 on `fields.author_id`.
#[utoipa::path(
    post,
    path = "/api/posts",
    operation_id = "create_post",
    tag = "posts",
    summary = "Create a post",
    description = "An unknown author is 400 `validation_failed` on `fields.author_id`. Checks \
        run in this order: 415, 413, 400 `invalid_json`, 422, 400 `validation_failed` (every \
        failing field at once).",
    request_body(content = NewPost, content_type = "application/json"),
    responses(
        (status = 201, description = "The new post", body = Post),
        CreatePostErrors,
    )
)]
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
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many posts, 1 to 100 (digits only); 20 when absent.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<String>,
}

/// The body of `GET /api/posts`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)] // for the document: no other property
pub struct PostList {
    /// Newest first (`created_at DESC, id DESC`).
    pub posts: Vec<PostWithAuthor>,
}

impl JsonSize for PostList {
    fn json_size(&self) -> usize {
        json::LIST_WRAPPER_BYTES + self.posts.json_size()
    }
}

/// `GET /api/posts?limit=N` → newest posts with authors, by the `posts_strategy` knob.
#[utoipa::path(
    get,
    path = "/api/posts",
    operation_id = "list_posts",
    tag = "posts",
    summary = "The newest posts, with their authors",
    params(ListQuery),
    responses(
        (status = 200, description = "Newest first", body = PostList),
        ListPostsErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let limit = parse_limit(query.limit.as_deref())?;
    let posts = db::list_posts(&state.db, limit, state.knobs.posts_strategy).await?;
    json::response(&PostList { posts }, state.knobs.json_buffer)
}

/// `GET /api/posts/{id}` → 200 post with `ETag` + `Cache-Control` (when the `cache_headers`
/// knob is on), 304 with no body when `If-None-Match` matches, 404 when absent.
#[utoipa::path(
    get,
    path = "/api/posts/{id}",
    operation_id = "get_post",
    tag = "posts",
    summary = "Read a post (cacheable)",
    description = "With the `cache_headers` knob on: a strong `ETag` and `Cache-Control`, and \
        304 when `If-None-Match` matches. With it off neither header is sent and there is \
        never a 304.",
    params(
        crate::openapi::IdParam,
        (
            "If-None-Match" = Option<String>,
            Header,
            nullable = false,
            description = "`*` or a comma-separated list of entity tags, compared weakly"
        ),
    ),
    responses(
        (
            status = 200,
            description = "The post",
            body = Post,
            headers(
                (
                    "ETag" = String,
                    description = "`\"` + the first 32 hex digits of the SHA-256 of the body + \
                        `\"` (cache headers on)"
                ),
                ("Cache-Control" = String, description = "`public, max-age=N` (cache headers on)"),
            )
        ),
        (
            status = 304,
            description = "`If-None-Match` matched: no body",
            headers(
                ("ETag" = String, description = "As for 200"),
                ("Cache-Control" = String, description = "As for 200"),
            )
        ),
        GetPostErrors,
    )
)]
pub async fn get(
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let post = db::get_post(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("post not found"))?;
    let body = json::to_vec(&post, state.knobs.json_buffer)?;
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
    fn a_nul_in_the_title_or_body_is_a_field_error_not_a_failed_insert() {
        let post = |title: &str, body: &str| NewPost {
            author_id: Some(1),
            title: Some(title.to_owned()),
            body: Some(body.to_owned()),
        };
        let fields = |post: NewPost| match post.validate() {
            Ok(()) => Vec::new(),
            Err(errors) => crate::extract::field_messages(&errors)
                .into_iter()
                .collect::<Vec<_>>(),
        };
        assert_eq!(fields(post("t", "b")), vec![]);
        let nul = "must not contain NUL characters".to_owned();
        assert_eq!(
            fields(post("t\0", "\0b")),
            vec![("body".to_owned(), nul.clone()), ("title".to_owned(), nul)]
        );
        assert_eq!(
            fields(post(&format!("{}\0", "t".repeat(200)), "b")),
            vec![("title".to_owned(), "must be 1 to 200 characters".to_owned())]
        );
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
