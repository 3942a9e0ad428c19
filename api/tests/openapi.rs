//! The OpenAPI document (`GET /openapi.json`, committed as docs/openapi.json) against what it is
//! made from and what it describes:
//! - the committed file is exactly what the Rust types generate (`UPDATE_OPENAPI=1` rewrites it);
//! - every route, method and status code of docs/CONTRACT.md is in the document, and the
//!   document has none that CONTRACT.md does not list;
//! - the schemas written for types that cannot derive them match those types' real JSON, and the
//!   request schemas' bounds are the validation rules';
//! - the router serves the generated (so the committed) bytes.
//!
//! No database: the router test uses a pool that never connects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use api::routes::health::Health;
use api::routes::posts::NewPost;
use api::routes::users::NewUser;
use api::{AppState, Knobs, Post, PostWithAuthor, User, app};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeZone as _, Utc};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// How to bring docs/openapi.json up to date; printed by every failure that calls for it.
const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p api --test openapi";

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn generated_json() -> String {
    api::openapi::document_json().expect("serialising the generated OpenAPI document")
}

fn generated() -> Value {
    serde_json::from_str(&generated_json()).expect("the generated document is JSON")
}

#[test]
fn committed_document_is_what_the_rust_types_generate() {
    let path = repo_file("docs/openapi.json");
    let generated = generated_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}\ncreate it with `{REGENERATE}` and commit it",
            path.display()
        )
    });
    if committed != generated {
        let (line, ours, theirs) = committed
            .lines()
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(generated.lines().map(Some).chain(std::iter::repeat(None)))
            .take_while(|pair| *pair != (None, None))
            .enumerate()
            .find(|(_, (c, g))| c != g)
            .map(|(i, (c, g))| (i + 1, c.unwrap_or("<end>"), g.unwrap_or("<end>")))
            .unwrap_or((0, "", "(only line endings differ)"));
        panic!(
            "docs/openapi.json is not what the Rust types generate (first difference at line \
             {line}:\n  committed: {ours}\n  generated: {theirs})\n\
             The Node.js baseline serves that file: regenerate it with `{REGENERATE}` and commit \
             it."
        );
    }
}

#[test]
fn document_is_openapi_3_1() {
    let doc = generated();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

// ---------------------------------------------------------------------------------------------
// docs/CONTRACT.md, read as it is written: the "Endpoints" table (request, success, notes) and
// the "Errors" table (status, code, when).

/// The cells of a Markdown table row; a `|` inside a code span does not split.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    for c in row.chars() {
        if c == '|' && !in_code {
            cells.push(cell.trim().to_owned());
            cell.clear();
            continue;
        }
        if c == '`' {
            in_code = !in_code;
        }
        cell.push(c);
    }
    cells.push(cell.trim().to_owned());
    cells
}

/// The body rows (header and separator skipped) of the first table in the section that opens
/// with the line `## {heading}…`.
fn table_after(markdown: &str, heading: &str) -> Vec<Vec<String>> {
    let wanted = format!("## {heading}");
    let mut rows: Vec<Vec<String>> = markdown
        .lines()
        .skip_while(|line| !line.starts_with(&wanted))
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .skip_while(|line| !line.trim_start().starts_with('|'))
        .take_while(|line| line.trim_start().starts_with('|'))
        .map(cells)
        .collect();
    assert!(
        rows.len() > 2,
        "docs/CONTRACT.md: no table under `{wanted}`"
    );
    rows.split_off(2)
}

/// Text outside code spans (so `ids=1,,2` or `max-age=3600` are never read as statuses).
fn prose(text: &str) -> String {
    text.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The HTTP statuses a cell names: words of exactly three digits from 200 to 599.
fn statuses_in(text: &str) -> BTreeSet<u16> {
    prose(text)
        .split_whitespace()
        .map(|word| word.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|word| word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|word| word.parse::<u16>().ok())
        .filter(|status| (200..600).contains(status))
        .collect()
}

type Operation = (String, String);

struct Contract {
    /// (METHOD, path template) → the statuses its row names.
    endpoints: BTreeMap<Operation, BTreeSet<u16>>,
    /// (status, error code) of the "Errors" table.
    errors: BTreeSet<(u16, String)>,
}

fn contract() -> Contract {
    let path = repo_file("docs/CONTRACT.md");
    let markdown = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut endpoints = BTreeMap::new();
    for row in table_after(&markdown, "Endpoints") {
        let [request, success, notes] = &row[..] else {
            panic!("CONTRACT.md Endpoints: expected 3 cells, got {row:?}");
        };
        let first_code_span = request.split('`').nth(1).unwrap_or_default();
        let mut words = first_code_span.split_whitespace();
        let (Some(method), Some(target)) = (words.next(), words.next()) else {
            panic!("CONTRACT.md Endpoints: no `METHOD /path` in {request:?}");
        };
        let path = target.split('?').next().unwrap_or(target);
        let success_status = success
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("CONTRACT.md Endpoints: no status in {success:?}"));
        let mut statuses = statuses_in(notes);
        statuses.insert(success_status);
        endpoints.insert((method.to_owned(), path.to_owned()), statuses);
    }
    let errors = table_after(&markdown, "Errors")
        .into_iter()
        .map(|row| {
            let status = row
                .first()
                .and_then(|s| s.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("CONTRACT.md Errors: no status in {row:?}"));
            let code = row
                .get(1)
                .map(|c| c.trim_matches('`').to_owned())
                .unwrap_or_else(|| panic!("CONTRACT.md Errors: no code in {row:?}"));
            (status, code)
        })
        .collect();
    Contract { endpoints, errors }
}

struct Documented {
    /// (METHOD, path) → status → the error codes its examples name (empty for successes).
    operations: BTreeMap<Operation, BTreeMap<u16, BTreeSet<String>>>,
    /// The `Error` schema's `code` enumeration.
    error_codes: BTreeSet<String>,
}

fn documented(doc: &Value) -> Documented {
    let mut operations = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let mut responses = BTreeMap::new();
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let status: u16 = status
                    .parse()
                    .unwrap_or_else(|_| panic!("{method} {path}: response {status:?}"));
                let codes = response["content"]["application/json"]["examples"]
                    .as_object()
                    .map(|examples| {
                        examples
                            .values()
                            .filter_map(|e| e["value"]["error"]["code"].as_str())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                responses.insert(status, codes);
            }
            operations.insert((method.to_uppercase(), path.clone()), responses);
        }
    }
    let error_codes =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the Error schema enumerates its codes")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    Documented {
        operations,
        error_codes,
    }
}

/// Error-table rows that answer requests outside the documented operations: an OpenAPI
/// document lists the methods a path serves, and 405 answers the others, so no operation can
/// carry it. (The `Error` schema still lists its code.)
const OUTSIDE_OPERATIONS: &[(u16, &str)] = &[(405, "method_not_allowed")];

/// Every disagreement between CONTRACT.md and the document, as sentences (empty: they agree).
fn disagreements(contract: &Contract, documented: &Documented) -> Vec<String> {
    let mut problems = Vec::new();
    for operation in contract.endpoints.keys() {
        if !documented.operations.contains_key(operation) {
            problems.push(format!(
                "CONTRACT.md's {operation:?} is not in the document"
            ));
        }
    }
    for operation in documented.operations.keys() {
        if !contract.endpoints.contains_key(operation) {
            problems.push(format!(
                "the document's {operation:?} is not in CONTRACT.md"
            ));
        }
    }

    let error_statuses: BTreeSet<u16> = contract.errors.iter().map(|(s, _)| *s).collect();
    for (operation, named) in &contract.endpoints {
        let Some(responses) = documented.operations.get(operation) else {
            continue;
        };
        for status in named {
            if !responses.contains_key(status) {
                problems.push(format!(
                    "{operation:?}: CONTRACT.md names {status}, the document does not"
                ));
            }
        }
        for (status, codes) in responses {
            if !named.contains(status) && !error_statuses.contains(status) {
                problems.push(format!(
                    "{operation:?}: the document has {status}, which neither its CONTRACT.md \
                     row ({named:?}) nor the Errors table lists"
                ));
            }
            for code in codes {
                if !contract.errors.contains(&(*status, code.clone())) {
                    problems.push(format!(
                        "{operation:?}: the document's {status} `{code}` is not a row of \
                         CONTRACT.md's Errors table"
                    ));
                }
            }
        }
    }

    let contract_codes: BTreeSet<String> = contract.errors.iter().map(|(_, c)| c.clone()).collect();
    if contract_codes != documented.error_codes {
        problems.push(format!(
            "CONTRACT.md's error codes {contract_codes:?} differ from the Error schema's {:?}",
            documented.error_codes
        ));
    }
    for (status, code) in &contract.errors {
        let carried_by: Vec<&Operation> = documented
            .operations
            .iter()
            .filter(|(_, responses)| responses.get(status).is_some_and(|c| c.contains(code)))
            .map(|(operation, _)| operation)
            .collect();
        let outside = OUTSIDE_OPERATIONS.contains(&(*status, code.as_str()));
        if outside && !carried_by.is_empty() {
            problems.push(format!(
                "{status} `{code}` is documented on {carried_by:?}: drop it from \
                 OUTSIDE_OPERATIONS"
            ));
        } else if !outside && carried_by.is_empty() {
            problems.push(format!(
                "CONTRACT.md's {status} `{code}` is on no operation of the document"
            ));
        }
    }
    problems
}

#[test]
fn contract_routes_methods_and_statuses_are_documented_and_nothing_else() {
    let problems = disagreements(&contract(), &documented(&generated()));
    assert!(
        problems.is_empty(),
        "docs/CONTRACT.md and the OpenAPI document disagree (fix the routes' \
         #[utoipa::path] or api/src/openapi.rs, then `{REGENERATE}`):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn a_document_that_strays_from_the_contract_is_caught() {
    let contract = contract();
    let mut doc = generated();
    let paths = doc["paths"].as_object_mut().expect("paths");
    paths.remove("/healthz");
    let get_user = &mut paths["/api/users/{id}"]["get"]["responses"];
    get_user.as_object_mut().expect("responses").remove("404");
    get_user["418"] = json!({"description": "a teapot"});
    let post_user = &mut paths["/api/users"]["post"]["responses"];
    post_user["400"]["content"]["application/json"]["examples"]["x"] =
        json!({"value": {"error": {"code": "email_taken"}}});
    let problems = disagreements(&contract, &documented(&doc)).join("\n");
    for expected in [
        r#"CONTRACT.md's ("GET", "/healthz") is not in the document"#,
        r#"("GET", "/api/users/{id}"): CONTRACT.md names 404"#,
        r#"("GET", "/api/users/{id}"): the document has 418"#,
        r#"("POST", "/api/users"): the document's 400 `email_taken`"#,
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }
}

#[test]
fn contract_parsing_reads_the_tables() {
    // Guards the parser above against reading nothing: a few facts CONTRACT.md states plainly.
    let contract = contract();
    let get_user = ("GET".to_owned(), "/api/users/{id}".to_owned());
    assert_eq!(
        contract.endpoints.get(&get_user),
        Some(&BTreeSet::from([200, 400, 404]))
    );
    let get_post = ("GET".to_owned(), "/api/posts/{id}".to_owned());
    assert!(contract.endpoints[&get_post].contains(&304));
    assert!(
        contract
            .errors
            .contains(&(415, "unsupported_media_type".to_owned()))
    );
    assert_eq!(
        statuses_in("`limit=100` then → 304; SHA-256, 1000 entries, 503."),
        BTreeSet::from([304, 503])
    );
}

// ---------------------------------------------------------------------------------------------
// Schemas written by hand for types that cannot derive theirs, and request bounds.

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no components.schemas.{name}");
    schema
}

/// The property names and the required ones of an object schema.
fn properties(schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let names = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let required = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    (names, required)
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every key of the real JSON is a property, every property is required and present, and no
/// other property is allowed.
fn assert_schema_fits(doc: &Value, name: &str, real: &Value) {
    let schema = schema(doc, name);
    let (names, required) = properties(schema);
    assert_eq!(
        keys(real),
        names,
        "{name}: real JSON keys (left) vs schema properties (right)"
    );
    assert_eq!(required, names, "{name}: every property is always sent");
    assert_eq!(schema["additionalProperties"], json!(false), "{name}");
}

#[test]
fn stand_in_schemas_match_the_real_json() {
    let doc = generated();
    let created_at = Utc
        .with_ymd_and_hms(2026, 11, 26, 17, 25, 51)
        .single()
        .expect("a valid time")
        + chrono::TimeDelta::milliseconds(123);
    let user = User {
        id: 1,
        email: "ann@example.com".to_owned(),
        name: "Ann".to_owned(),
        created_at,
    };
    let post = Post {
        id: 2,
        author_id: 1,
        title: "t".to_owned(),
        body: "b".to_owned(),
        created_at,
    };
    let with_author = PostWithAuthor {
        post: post.clone(),
        author: user.clone(),
    };
    let health = Health {
        status: "ok",
        database: "ok",
        knobs: Knobs::default(),
        version: env!("CARGO_PKG_VERSION"),
    };
    assert_schema_fits(&doc, "User", &to_json(&user));
    assert_schema_fits(&doc, "Post", &to_json(&post));
    assert_schema_fits(&doc, "PostWithAuthor", &to_json(&with_author));
    assert_schema_fits(&doc, "Health", &to_json(&health));
    assert_schema_fits(&doc, "Knobs", &to_json(&Knobs::default()));

    let timestamp = to_json(&user)["created_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pattern = doc["components"]["schemas"]["User"]["properties"]["created_at"]["pattern"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(timestamp, "2026-11-26T17:25:51.123Z");
    assert!(
        pattern.starts_with('^') && pattern.contains(r"\.[0-9]{3}Z$"),
        "created_at pattern {pattern:?}"
    );
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialising a row type")
}

/// The fields `validate()` rejects in `body`.
fn rejected<T: serde::de::DeserializeOwned + validator::Validate>(
    body: &Value,
) -> BTreeSet<String> {
    let value: T = serde_json::from_value(body.clone()).expect("the sample has the right shape");
    match value.validate() {
        Ok(()) => BTreeSet::new(),
        Err(errors) => errors
            .field_errors()
            .keys()
            .map(|k| k.to_string())
            .collect(),
    }
}

/// For each string property with length bounds (and no format of its own), a value at each
/// bound passes `validate()` and one past it fails; integer minimums likewise.
fn assert_bounds_agree<T: serde::de::DeserializeOwned + validator::Validate>(
    doc: &Value,
    name: &str,
    valid: Value,
) {
    let schema = schema(doc, name);
    assert_eq!(
        rejected::<T>(&valid),
        BTreeSet::new(),
        "{name}: the valid sample"
    );
    let mut checked = 0;
    for (field, property) in schema["properties"].as_object().expect("properties") {
        let with = |value: Value| {
            let mut body = valid.clone();
            body[field.as_str()] = value;
            rejected::<T>(&body).contains(field.as_str())
        };
        let min_length = property["minLength"].as_u64();
        let max_length = property["maxLength"].as_u64();
        if property["format"].is_null() && (min_length.is_some() || max_length.is_some()) {
            let text = |n: u64| json!("é".repeat(n as usize)); // 2 bytes, 1 character
            if let Some(min) = min_length {
                assert!(
                    !with(text(min)),
                    "{name}.{field}: {min} characters rejected"
                );
                if min > 0 {
                    assert!(
                        with(text(min - 1)),
                        "{name}.{field}: {} characters accepted",
                        min - 1
                    );
                }
            }
            if let Some(max) = max_length {
                assert!(
                    !with(text(max)),
                    "{name}.{field}: {max} characters rejected"
                );
                assert!(
                    with(text(max + 1)),
                    "{name}.{field}: {} characters accepted",
                    max + 1
                );
            }
            checked += 1;
        }
        if property["pattern"] == json!(r"^[^\u0000]*$") {
            assert!(!with(json!("a")), "{name}.{field}: \"a\" rejected");
            assert!(with(json!("a\u{0}")), "{name}.{field}: a NUL accepted");
            checked += 1;
        }
        if let Some(min) = property["minimum"].as_i64() {
            assert!(!with(json!(min)), "{name}.{field}: {min} rejected");
            assert!(with(json!(min - 1)), "{name}.{field}: {} accepted", min - 1);
            checked += 1;
        }
    }
    assert!(checked > 0, "{name}: no bounds found");
    let (names, required) = properties(schema);
    assert_eq!(names, required, "{name}: every field is required");
}

#[test]
fn request_schema_bounds_are_the_validation_rules() {
    let doc = generated();
    assert_bounds_agree::<NewUser>(
        &doc,
        "NewUser",
        json!({"email": "ann@example.com", "password": "12345678", "name": "Ann"}),
    );
    assert_bounds_agree::<NewPost>(
        &doc,
        "NewPost",
        json!({"author_id": 1, "title": "t", "body": "b"}),
    );
    // `email` has a format of its own: its length bound separately, with valid addresses.
    assert_eq!(
        doc["components"]["schemas"]["NewUser"]["properties"]["email"]["maxLength"],
        254
    );
    let email = |domain_tail: usize| {
        format!(
            "{}@{}.{}.{}",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(domain_tail)
        )
    };
    let body = |email: String| json!({"email": email, "password": "12345678", "name": "Ann"});
    assert_eq!(email(61).chars().count(), 254);
    assert!(rejected::<NewUser>(&body(email(61))).is_empty());
    assert!(rejected::<NewUser>(&body(email(62))).contains("email"));
}

// ---------------------------------------------------------------------------------------------
// The router serves the generated (so the committed) bytes.

#[tokio::test]
async fn router_serves_the_committed_document() {
    // A pool that never connects: serving the document touches no database.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:9/none")
        .expect("a lazy pool");
    let knobs = Knobs {
        pool_min: 0,
        ..Knobs::default()
    };
    let state = AppState::new(pool, knobs).expect("valid knobs");
    let response = app(state)
        .oneshot(
            Request::get("/openapi.json")
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("reading the body")
        .to_bytes();
    // The generated document, which the first test holds equal to docs/openapi.json.
    assert!(
        body.as_ref() == generated_json().as_bytes(),
        "GET /openapi.json differs from the generated document"
    );
}
