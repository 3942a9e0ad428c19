//! JSON response bodies per the `json_buffer` knob: axum's `Json` (a 128-byte buffer that
//! doubles while serde writes into it) or a buffer sized up front from the value's own strings
//! ([`JsonSize`]), so that a list of posts is written without a chain of reallocations and
//! copies. Both write exactly the same bytes with the same `Content-Type`; only the allocations
//! differ. This module never decides *what* is serialised — the types' `Serialize` impls do.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::JsonBuffer;
use crate::db::{Post, PostWithAuthor, User};
use crate::error::ApiError;

/// An upper estimate of a value's JSON length in bytes, from its variable-length parts plus the
/// fixed keys and punctuation (strings that need escapes may still make the buffer grow once).
pub trait JsonSize {
    fn json_size(&self) -> usize;
}

/// `{"id":…,"email":"…","name":"…","created_at":"2026-11-27T12:00:00.000Z"}` with a 20-digit id.
const USER_FIXED_BYTES: usize = 88;
/// `{"id":…,"author_id":…,"title":"…","body":"…","created_at":"…"}` with 20-digit ids.
const POST_FIXED_BYTES: usize = 121;
/// `,"author":` between a post's fields and its author.
const AUTHOR_KEY_BYTES: usize = 10;
/// `{"users":` or `{"posts":` before a list, and `}` after it.
pub const LIST_WRAPPER_BYTES: usize = 10;

impl JsonSize for User {
    fn json_size(&self) -> usize {
        USER_FIXED_BYTES + self.email.len() + self.name.len()
    }
}

impl JsonSize for Post {
    fn json_size(&self) -> usize {
        POST_FIXED_BYTES + self.title.len() + self.body.len()
    }
}

impl JsonSize for PostWithAuthor {
    fn json_size(&self) -> usize {
        self.post.json_size() + AUTHOR_KEY_BYTES + self.author.json_size()
    }
}

impl<T: JsonSize> JsonSize for [T] {
    /// The items, their commas and the brackets.
    fn json_size(&self) -> usize {
        2 + self.iter().map(|item| item.json_size() + 1).sum::<usize>()
    }
}

/// `value` serialised into a buffer of `value.json_size()` bytes (presized) or a growing one.
pub fn to_vec<T: Serialize + JsonSize + ?Sized>(
    value: &T,
    buffer: JsonBuffer,
) -> Result<Vec<u8>, ApiError> {
    let written = match buffer {
        JsonBuffer::Presized => {
            let mut bytes = Vec::with_capacity(value.json_size());
            serde_json::to_writer(&mut bytes, value).map(|()| bytes)
        }
        JsonBuffer::Default => serde_json::to_vec(value),
    };
    written.map_err(|e| ApiError::Internal(anyhow::anyhow!("serialising a response body: {e}")))
}

/// A `200 application/json` response with `value`, as the `json_buffer` knob says to write it.
pub fn response<T: Serialize + JsonSize + ?Sized>(
    value: &T,
    buffer: JsonBuffer,
) -> Result<Response, ApiError> {
    match buffer {
        JsonBuffer::Default => Ok(Json(value).into_response()),
        JsonBuffer::Presized => {
            let bytes = to_vec(value, buffer)?;
            Ok((
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(JSON_CONTENT_TYPE),
                )],
                Body::from(bytes),
            )
                .into_response())
        }
    }
}

/// The `Content-Type` axum's `Json` sends, so both buffers answer alike.
const JSON_CONTENT_TYPE: &str = "application/json";

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;

    fn user(id: i64, name: &str) -> User {
        User {
            id,
            email: format!("{name}@example.com"),
            name: name.to_owned(),
            created_at: Utc
                .timestamp_millis_opt(1_700_000_000_123)
                .single()
                .unwrap_or_default(),
        }
    }

    fn post(id: i64, body: &str) -> PostWithAuthor {
        PostWithAuthor {
            post: Post {
                id,
                author_id: i64::MAX,
                title: "t".repeat(200),
                body: body.to_owned(),
                created_at: Utc
                    .timestamp_millis_opt(1_700_000_000_000)
                    .single()
                    .unwrap_or_default(),
            },
            author: user(i64::MAX, "ann"),
        }
    }

    #[test]
    fn presized_and_default_write_the_same_bytes_and_the_estimate_is_enough() {
        let one = user(i64::MAX, "ann");
        let posts: Vec<PostWithAuthor> = (1..=20).map(|i| post(i, &"b".repeat(900))).collect();
        for buffer in [JsonBuffer::Presized, JsonBuffer::Default] {
            assert_eq!(
                to_vec(&one, buffer).ok(),
                serde_json::to_vec(&one).ok(),
                "{buffer:?}"
            );
            assert_eq!(
                to_vec(posts.as_slice(), buffer).ok(),
                serde_json::to_vec(&posts).ok(),
                "{buffer:?}"
            );
        }
        // With the widest ids and no escapes the estimate covers the whole body: no regrowth.
        let written = to_vec(&one, JsonBuffer::Presized).unwrap_or_default();
        assert!(
            written.len() <= one.json_size(),
            "{} > {}",
            written.len(),
            one.json_size()
        );
        let written = to_vec(posts.as_slice(), JsonBuffer::Presized).unwrap_or_default();
        assert!(written.len() <= posts.json_size());
        // ...and overshoots by little (here: the 20-digit room of the short post ids).
        assert!(
            posts.json_size() < written.len() + written.len() / 20,
            "a gross overestimate: {} for {} bytes",
            posts.json_size(),
            written.len()
        );
    }
}
