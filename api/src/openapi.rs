//! The OpenAPI 3.1 document of docs/CONTRACT.md, generated from the Rust types: the handlers'
//! `#[utoipa::path]` attributes (routes, parameters, success responses), the request and
//! response types, and [`ApiError`] itself (every error response's status, `code` and message).
//!
//! `GET /openapi.json` serves [`document_json`]. docs/openapi.json is its committed copy — what
//! the Node.js baseline serves and what `make test-schema` (schemathesis) checks both servers
//! against. `tests/openapi.rs` fails when the copy is stale (and says how to regenerate it) and
//! when the document and CONTRACT.md disagree on a route, a method or a status code. Never edit
//! docs/openapi.json by hand.
//!
//! The row types of [`crate::db`] and the [`Knobs`] of [`crate::config`] do not derive `ToSchema`
//! themselves; their schemas are implemented here — `User`, `Post`, `PostWithAuthor` from
//! stand-in structs whose fields `tests/openapi.rs` compares with the real serialised values,
//! `Knobs` straight from the knobs' serialised defaults and their clap definitions, so a new knob
//! appears in the document by itself.
//!
//! This module builds a document and nothing else: it never touches the database and never
//! logs (building an [`ApiError`] response would log internal errors: examples are built from
//! [`ApiError::status`], [`ApiError::code`] and its `Display` instead).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat,
    Type,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, OpenApi, PartialSchema, ToSchema};

use crate::config::Knobs;
use crate::db::{Post, PostWithAuthor, User};
use crate::error::{ApiError, FieldErrors};
use crate::routes;

/// The document: every operation of CONTRACT.md's "Endpoints" table.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "apibench HTTP contract",
        description = "The HTTP contract of docs/CONTRACT.md, which the Rust API (`api/`) and the \
            Node.js baseline (`baselines/node/`) both implement and serve at `GET /openapi.json`. \
            Generated from the Rust types by api/src/openapi.rs; do not edit docs/openapi.json \
            by hand."
    ),
    paths(
        routes::users::create,
        routes::users::get,
        routes::users::list,
        routes::posts::create,
        routes::posts::list,
        routes::posts::get,
        routes::health::healthz,
        metrics,
    ),
    components(schemas(ErrorResponse)),
    tags(
        (name = "users", description = "Users (never the password or its hash)"),
        (name = "posts", description = "Posts, with their authors in lists"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// The document as served and as committed (docs/openapi.json): pretty-printed, ending in a
/// newline.
pub fn document_json() -> Result<String, serde_json::Error> {
    ApiDoc::openapi()
        .to_pretty_json()
        .map(|json| format!("{json}\n"))
}

/// `GET /openapi.json` → the document, built once per process (each response shares its bytes).
pub async fn serve() -> Response {
    static DOCUMENT: OnceLock<Result<Bytes, String>> = OnceLock::new();
    let document =
        DOCUMENT.get_or_init(|| document_json().map(Bytes::from).map_err(|e| e.to_string()));
    match document {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json.clone(),
        )
            .into_response(),
        Err(cause) => {
            ApiError::Internal(anyhow::anyhow!("serialising the OpenAPI document: {cause}"))
                .into_response()
        }
    }
}

/// `GET /metrics` is served by [`crate::metrics::render`]; this function only carries its
/// description, so that the metrics module stays about metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "The contract's metrics (`api_requests_total`, `api_request_duration_seconds`, \
        `api_db_pool_size`, `api_db_pool_idle`) in the Prometheus text format. 404 in the error \
        shape when the `metrics` knob is off.",
    responses(
        (
            status = 200,
            description = "Prometheus text exposition",
            content_type = "text/plain",
            body = String
        ),
        MetricsErrors,
    )
)]
#[allow(dead_code)] // documentation only: see above
fn metrics() {}

/// `created_at`: RFC 3339 in UTC with milliseconds and `Z`, as `Date.toISOString()` prints it
/// (and [`crate::db::serialize_timestamp`] writes it).
fn timestamp() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some(
            r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$",
        ))
        .examples(["2026-11-26T17:25:51.123Z"])
        .build()
}

/// The JSON of [`User`] (stand-in: see the module doc).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(description = "A user, never with the password or its hash.")]
#[allow(dead_code)] // only its schema is used
struct UserJson {
    #[schema(minimum = 1)]
    id: i64,
    /// Stored trimmed and lower-cased.
    #[schema(format = Email)]
    email: String,
    /// Stored trimmed.
    name: String,
    #[schema(schema_with = timestamp)]
    created_at: String,
}

/// The JSON of [`Post`] (stand-in: see the module doc).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(description = "A post.")]
#[allow(dead_code)] // only its schema is used
struct PostJson {
    #[schema(minimum = 1)]
    id: i64,
    #[schema(minimum = 1)]
    author_id: i64,
    title: String,
    body: String,
    #[schema(schema_with = timestamp)]
    created_at: String,
}

/// The JSON of [`PostWithAuthor`] (stand-in: see the module doc). Written out flat rather than
/// as `allOf` so that both objects can refuse unknown properties.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(description = "A post in a list: the post plus its author.")]
#[allow(dead_code)] // only its schema is used
struct PostWithAuthorJson {
    #[schema(minimum = 1)]
    id: i64,
    #[schema(minimum = 1)]
    author_id: i64,
    title: String,
    body: String,
    #[schema(schema_with = timestamp)]
    created_at: String,
    author: User,
}

/// Implements `ToSchema` for a type of another module through its stand-in, under the type's
/// own name.
macro_rules! schema_via {
    ($ty:ty, $stand_in:ty, $name:literal) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                <$stand_in as PartialSchema>::schema()
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                <$stand_in as ToSchema>::schemas(schemas);
            }
        }
    };
}

schema_via!(User, UserJson, "User");
schema_via!(Post, PostJson, "Post");
schema_via!(PostWithAuthor, PostWithAuthorJson, "PostWithAuthor");

/// The value a target reports for a knob it cannot honour (docs/KNOBS.md).
const KNOB_NOT_APPLICABLE: &str = "n/a";

impl PartialSchema for Knobs {
    /// Every knob by name, typed as the Rust API serialises it (booleans, integers, the
    /// lower-case names of an enumeration's values), or `"n/a"`.
    fn schema() -> RefOr<Schema> {
        let defaults = serde_json::to_value(Knobs::default()).unwrap_or(Value::Null);
        let command = <Knobs as clap::Args>::augment_args(clap::Command::new("knobs"));
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Every knob of docs/KNOBS.md by name; a target reports \"n/a\" for a knob it \
                 cannot honour.",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for (name, default) in defaults.as_object().into_iter().flatten() {
            let help = command
                .get_arguments()
                .find(|arg| arg.get_id() == name.as_str());
            let typed = match default {
                Value::Bool(_) => ObjectBuilder::new().schema_type(Type::Boolean),
                Value::Number(_) => ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
                _ => ObjectBuilder::new().schema_type(Type::String).enum_values(
                    help.map(|arg| {
                        arg.get_possible_values()
                            .into_iter()
                            .map(|value| value.get_name().to_owned())
                            .collect::<Vec<_>>()
                    })
                    .filter(|values| !values.is_empty()),
                ),
            };
            let not_applicable = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([KNOB_NOT_APPLICABLE]));
            let property = AnyOfBuilder::new()
                .item(typed)
                .item(not_applicable)
                .description(help.and_then(|arg| arg.get_help()).map(|h| h.to_string()));
            object = object.property(name, property).required(name);
        }
        RefOr::T(Schema::Object(object.build()))
    }
}

impl ToSchema for Knobs {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Knobs")
    }
}

/// The one error shape of CONTRACT.md ("Errors"): `{"error": {"code", "message", "fields"?}}`.
pub struct ErrorResponse;

impl PartialSchema for ErrorResponse {
    fn schema() -> RefOr<Schema> {
        let codes: Vec<&str> = every_error().iter().map(ApiError::code).collect();
        let fields = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Only for `validation_failed`: one message per failing field.",
            ))
            .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)));
        let detail = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(codes)),
            )
            .required("code")
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .required("message")
            .property("fields", fields)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("error", detail)
                .required("error")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .build(),
        ))
    }
}

impl ToSchema for ErrorResponse {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Error")
    }
}

/// One of each [`ApiError`] variant (the database's 500 is the same response as any other 500,
/// so it is left out). The `match` makes a new variant a compile error here until it is added.
fn every_error() -> Vec<ApiError> {
    let errors = vec![
        validation_failed(),
        crate::extract::bad_id(),
        invalid_json(),
        unprocessable_entity(),
        ApiError::NotFound("user not found"),
        ApiError::MethodNotAllowed,
        ApiError::EmailTaken,
        ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType,
        unavailable(),
        internal(),
    ];
    for error in &errors {
        match error {
            ApiError::Validation(_)
            | ApiError::BadRequest(_)
            | ApiError::InvalidJson(_)
            | ApiError::UnprocessableEntity(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed
            | ApiError::EmailTaken
            | ApiError::PayloadTooLarge
            | ApiError::UnsupportedMediaType
            | ApiError::Unavailable(_)
            | ApiError::Database(_)
            | ApiError::Internal(_) => {}
        }
    }
    errors
}

/// What `POST /api/users` answers to `{"email": "ann", "name": " "}`, computed by the real
/// validation rules.
fn validation_failed() -> ApiError {
    use validator::Validate as _;
    let sample = routes::users::NewUser {
        email: Some("ann".to_owned()),
        password: None,
        name: Some(" ".to_owned()),
    };
    match sample.validate() {
        Err(errors) => ApiError::Validation(crate::extract::field_messages(&errors)),
        Ok(()) => ApiError::Validation(FieldErrors::new()),
    }
}

/// What the body `{"email": ` gets, from the real parser.
fn invalid_json() -> ApiError {
    crate::extract::parse_json::<routes::users::NewUser>(br#"{"email": "#)
        .err()
        .unwrap_or_else(|| ApiError::InvalidJson(String::new()))
}

/// What the body `{"email": 5}` gets, from the real parser.
fn unprocessable_entity() -> ApiError {
    crate::extract::parse_json::<routes::users::NewUser>(br#"{"email": 5}"#)
        .err()
        .unwrap_or_else(|| ApiError::UnprocessableEntity(String::new()))
}

fn unavailable() -> ApiError {
    ApiError::Unavailable(sqlx::Error::PoolTimedOut.into())
}

fn internal() -> ApiError {
    ApiError::Internal(anyhow::anyhow!("never shown"))
}

/// The body an [`ApiError`] is answered with (the shape of [`ErrorResponse`]).
fn error_body(error: &ApiError) -> Value {
    let mut detail = json!({"code": error.code(), "message": error.to_string()});
    if let ApiError::Validation(fields) = error {
        detail["fields"] = json!(fields);
    }
    json!({ "error": detail })
}

/// The error responses of an operation, one per status, each with one named example per
/// error code it can carry; 503 documents its `Retry-After`.
fn error_responses(errors: Vec<ApiError>) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let mut by_status: BTreeMap<u16, Vec<ApiError>> = BTreeMap::new();
    for error in errors {
        by_status
            .entry(error.status().as_u16())
            .or_default()
            .push(error);
    }
    by_status
        .into_iter()
        .map(|(status, errors)| {
            let codes: Vec<String> = errors.iter().map(|e| format!("`{}`", e.code())).collect();
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorResponse::name())))
                .examples_from_iter(errors.iter().map(|error| {
                    (
                        error.code(),
                        ExampleBuilder::new().value(Some(error_body(error))).build(),
                    )
                }))
                .build();
            let mut response = ResponseBuilder::new()
                .description(codes.join(", "))
                .content("application/json", content);
            if status == 503 {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some("Always `1` (seconds)."))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// Declares types whose `IntoResponses` are the error responses of the listed [`ApiError`]s.
macro_rules! error_sets {
    ($($(#[$doc:meta])* $name:ident => [$($errors:expr),+ $(,)?];)+) => {$(
        $(#[$doc])*
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                error_responses([$($errors),+].into_iter().flatten().collect())
            }
        }
    )+};
}

/// What any body-taking endpoint can answer before its own rules: CONTRACT.md's order.
fn json_body_errors() -> Vec<ApiError> {
    vec![
        ApiError::UnsupportedMediaType,
        ApiError::PayloadTooLarge,
        invalid_json(),
        unprocessable_entity(),
    ]
}

/// What any endpoint that reads the database can answer because of it.
fn database_errors() -> Vec<ApiError> {
    vec![unavailable(), internal()]
}

error_sets! {
    /// `POST /api/users`: the body, its fields, a taken email, the database.
    CreateUserErrors => [
        json_body_errors(),
        vec![validation_failed(), ApiError::EmailTaken],
        database_errors(),
    ];
    /// `POST /api/posts`: the body, its fields (an unknown author too), the database.
    CreatePostErrors => [
        json_body_errors(),
        vec![ApiError::field("author_id", "must reference an existing user")],
        database_errors(),
    ];
    /// `GET /api/users/{id}`: a bad id, an absent user, the database.
    GetUserErrors => [
        vec![crate::extract::bad_id(), ApiError::NotFound("user not found")],
        database_errors(),
    ];
    /// `GET /api/posts/{id}`: a bad id, an absent post, the database.
    GetPostErrors => [
        vec![crate::extract::bad_id(), ApiError::NotFound("post not found")],
        database_errors(),
    ];
    /// `GET /api/users?ids=…`: a bad `ids`, the database.
    ListUsersErrors => [vec![crate::extract::bad_ids()], database_errors()];
    /// `GET /api/posts?limit=N`: a bad `limit`, the database.
    ListPostsErrors => [vec![crate::extract::bad_limit()], database_errors()];
    /// `GET /healthz`: the database unreachable or the pool exhausted.
    HealthErrors => [database_errors()];
    /// `GET /metrics`: metrics off (then no route matches).
    MetricsErrors => [vec![ApiError::NotFound(routes::NO_SUCH_ROUTE), internal()]];
}

/// The `{id}` of `/api/users/{id}` and `/api/posts/{id}`, as [`crate::extract::PathId`] parses
/// it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only its description is used
pub struct IdParam {
    /// A positive integer (i64) in ASCII digits only: no sign, spaces, exponent or decimal point.
    #[param(minimum = 1)]
    id: i64,
}
