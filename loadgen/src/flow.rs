//! The runtime side of flows: what a step does with its answer (checks, then extractions into
//! the user's variables), and how an iteration draws its data-file rows.
//!
//! The scenario parser builds these types ([`crate::scenario`], `flows.rs`); the engine calls
//! [`evaluate`] after a step's response is complete — after its latency was taken, so parsing
//! the body never counts as the server's time — and [`DataFeeds::draw`] once per iteration.
//!
//! Only a step with an extraction or a body check captures its answer ([`Captured`]: the
//! headers, and the body up to [`MAX_CAPTURED_BODY_BYTES`]); every other request keeps reading
//! and dropping the body's frames. Nothing here may log or return a rendered value, an
//! extracted value or a response body: a step's failure is described by the step's *TOML text*
//! ([`Check::describe`], [`Extraction::describe`]) only, because a value may be a secret.

use crate::scenario::data::{DataOrder, DataTable, OnExhausted};
use crate::schedule::ShardSlice;
use crate::template::{RenderContext, Template};
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, HeaderName};
use rand::Rng;
use std::borrow::Cow;
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A step keeps at most this much of a response body (on the wire, before gzip is undone):
/// checks and extractions see the first 1 MiB, and a JSON body cut there does not parse.
pub const MAX_CAPTURED_BODY_BYTES: usize = 1 << 20;

/// The most a gzip/deflate body may inflate to before the rest is ignored.
const MAX_DECODED_BODY_BYTES: u64 = 8 << 20;

/// What a request does beyond method, path and body: its header templates, checks and
/// extractions. Empty (the default) for a plain request: the engine's fast path.
#[derive(Debug, Clone, Default)]
pub struct StepSpec {
    /// Headers whose value has a placeholder (`authorization = "Bearer {{token}}"`,
    /// `x-key = "{{env.API_KEY}}"`), compiled; the others are sent as written.
    pub headers: Vec<(String, Template)>,
    /// Run in order after the response, before the extractions.
    pub checks: Vec<Check>,
    pub extract: Vec<Extraction>,
}

impl StepSpec {
    /// Whether the step needs its answer's headers and body kept.
    pub fn captures(&self) -> bool {
        !self.extract.is_empty()
            || self
                .checks
                .iter()
                .any(|c| !matches!(c.kind, CheckKind::Status(_)))
    }

    /// Whether the step needs its answer's body (not only its headers).
    pub fn captures_body(&self) -> bool {
        self.extract
            .iter()
            .any(|e| !matches!(e.source, ExtractSource::Header(_)))
            || self
                .checks
                .iter()
                .any(|c| matches!(c.kind, CheckKind::Json { .. } | CheckKind::BodyContains(_)))
    }

    /// Whether the step does anything but send (the engine's plain path is for the rest).
    pub fn is_plain(&self) -> bool {
        self.checks.is_empty() && self.extract.is_empty()
    }
}

/// `extract = { id = { json = "/id" } }`: one variable of the user, set from the answer.
#[derive(Debug, Clone)]
pub struct Extraction {
    /// The user's variable slot it writes.
    pub slot: usize,
    pub source: ExtractSource,
    /// `id = { json = "/id" }`, for messages.
    pub describe: String,
}

/// Where an extraction reads.
#[derive(Debug, Clone)]
pub enum ExtractSource {
    /// A JSON pointer into the body (RFC 6901): strings as they are, numbers and booleans as
    /// their JSON text, objects and arrays as compact JSON; missing or `null` fails.
    Json(String),
    /// The first value of a response header.
    Header(HeaderName),
    /// The first capture group of a regex's first match in the body (as UTF-8, lossily).
    Regex(regex::Regex),
}

/// `checks = [ … ]`: one assertion on the answer; a failed one makes the request an error.
#[derive(Debug, Clone)]
pub struct Check {
    pub kind: CheckKind,
    /// `{ json = "/email", equals = "{{accounts.email}}" }`, for messages.
    pub describe: String,
}

/// What a check asserts.
#[derive(Debug, Clone)]
pub enum CheckKind {
    /// The status code.
    Status(u16),
    /// The JSON pointer's value: [`JsonExpect`].
    Json { pointer: String, expect: JsonExpect },
    /// The body contains the rendered text.
    BodyContains(Template),
}

/// What a JSON check expects at its pointer.
#[derive(Debug, Clone)]
pub enum JsonExpect {
    /// `exists = true` (a value, `null` included) or `exists = false` (no such member).
    Exists(bool),
    /// `equals = …`: a JSON string equals the rendered text; any other JSON value equals it
    /// when its JSON text does (`equals = 42` matches `42` and `"42"`).
    Equals(Template),
}

/// A step's answer, kept for its checks and extractions.
#[derive(Debug, Default)]
pub struct Captured {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_CAPTURED_BODY_BYTES`]; the rest was read and dropped.
    pub truncated: bool,
    /// Keep the body (else only the headers are kept).
    pub wants_body: bool,
}

impl Captured {
    /// Ready for the next answer; `wants_body` says whether to keep the body.
    pub fn reset(&mut self, wants_body: bool) {
        self.headers.clear();
        self.body.clear();
        self.truncated = false;
        self.wants_body = wants_body;
    }

    /// Appends a body frame, up to the cap.
    pub fn push(&mut self, data: &[u8]) {
        if !self.wants_body {
            return;
        }
        let room = MAX_CAPTURED_BODY_BYTES.saturating_sub(self.body.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.body.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The body with a gzip or deflate `Content-Encoding` undone (`None`: an encoding this
    /// cannot undo).
    fn decoded_body(&self) -> Option<Cow<'_, [u8]>> {
        let encoding = self
            .headers
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let mut out = Vec::new();
        let read = match encoding.as_deref() {
            None | Some("" | "identity") => return Some(Cow::Borrowed(&self.body)),
            Some("gzip" | "x-gzip") => flate2::read::MultiGzDecoder::new(self.body.as_slice())
                .take(MAX_DECODED_BODY_BYTES)
                .read_to_end(&mut out),
            Some("deflate") => flate2::read::ZlibDecoder::new(self.body.as_slice())
                .take(MAX_DECODED_BODY_BYTES)
                .read_to_end(&mut out),
            Some(_) => return None,
        };
        // A body cut at the cap ends mid-stream: keep what inflated.
        match read {
            Ok(_) => Some(Cow::Owned(out)),
            Err(_) if self.truncated && !out.is_empty() => Some(Cow::Owned(out)),
            Err(_) => None,
        }
    }
}

/// Why a step failed after its answer arrived (the request counts as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepFailure {
    /// Check `.0` (its index in the step) failed.
    Check(usize),
    /// Extraction `.0` found nothing.
    Extract(usize),
}

impl StepFailure {
    /// One line naming what failed by its TOML text (never a value).
    pub fn describe(&self, step: &StepSpec) -> String {
        match self {
            StepFailure::Check(i) => format!(
                "check {} failed",
                step.checks.get(*i).map_or("?", |c| c.describe.as_str())
            ),
            StepFailure::Extract(i) => format!(
                "extraction {} found nothing",
                step.extract.get(*i).map_or("?", |e| e.describe.as_str())
            ),
        }
    }
}

/// The checks, then the extractions, of `step` on its answer: the variables are written only
/// when every check passed. `scratch` is a reusable buffer for rendering expected values.
pub fn evaluate(
    step: &StepSpec,
    status: u16,
    captured: &Captured,
    ctx: &mut RenderContext,
    scratch: &mut String,
) -> Result<(), StepFailure> {
    let body = if step.captures_body() {
        captured.decoded_body()
    } else {
        None
    };
    let body_bytes: &[u8] = body.as_deref().unwrap_or(&[]);
    // Parsed once, and only when a JSON check or extraction asks.
    let needs_json = step
        .checks
        .iter()
        .any(|c| matches!(c.kind, CheckKind::Json { .. }))
        || step
            .extract
            .iter()
            .any(|e| matches!(e.source, ExtractSource::Json(_)));
    let document: Option<serde_json::Value> = if needs_json {
        serde_json::from_slice(body_bytes).ok()
    } else {
        None
    };
    for (i, check) in step.checks.iter().enumerate() {
        let passed = match &check.kind {
            CheckKind::Status(expected) => status == *expected,
            CheckKind::BodyContains(text) => {
                text.render_into(scratch, ctx);
                body.is_some() && contains(body_bytes, scratch.as_bytes())
            }
            CheckKind::Json { pointer, expect } => {
                let value = document.as_ref().and_then(|d| d.pointer(pointer));
                match expect {
                    JsonExpect::Exists(wanted) => document.is_some() && value.is_some() == *wanted,
                    JsonExpect::Equals(expected) => {
                        expected.render_into(scratch, ctx);
                        value.is_some_and(|v| match v {
                            serde_json::Value::String(s) => s == scratch,
                            other => {
                                // 42, true: compared as their JSON text.
                                let text = other.to_string();
                                text == *scratch
                            }
                        })
                    }
                }
            }
        };
        if !passed {
            return Err(StepFailure::Check(i));
        }
    }
    for (i, extraction) in step.extract.iter().enumerate() {
        let value = match &extraction.source {
            ExtractSource::Json(pointer) => {
                match document.as_ref().and_then(|d| d.pointer(pointer)) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                }
            }
            ExtractSource::Header(name) => captured
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ExtractSource::Regex(regex) => body.as_ref().and_then(|b| {
                let text = String::from_utf8_lossy(b);
                regex
                    .captures(&text)
                    .and_then(|c| c.get(1))
                    .map(|m| m.as_str().to_string())
            }),
        };
        match (value, ctx.vars.get_mut(extraction.slot)) {
            (Some(value), Some(slot)) => *slot = value,
            _ => return Err(StepFailure::Extract(i)),
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A data file as the engine uses it: its rows and how an iteration picks one.
#[derive(Debug, Clone)]
pub struct DataFeedSpec {
    pub table: Arc<DataTable>,
    pub order: DataOrder,
    pub on_exhausted: OnExhausted,
}

/// One load phase's row counters, shared by all users: one per data file.
#[derive(Debug)]
pub struct DataFeeds {
    specs: Vec<DataFeedSpec>,
    /// Draws so far, per file (sequential and unique).
    taken: Vec<AtomicU64>,
    shard: ShardSlice,
    /// Set by the first draw that found a `unique` + `stop` file exhausted.
    exhausted: AtomicBool,
    /// Which file, and after how many of its rows (this process's share).
    exhausted_note: std::sync::OnceLock<String>,
}

/// A unique file with `on_exhausted = "stop"` has no row left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl DataFeeds {
    /// Counters from the first row; shard `I/N` takes rows `I, I + N, …` (as `{{seq}}` does).
    pub fn new(specs: &[DataFeedSpec], shard: ShardSlice) -> DataFeeds {
        DataFeeds {
            taken: specs.iter().map(|_| AtomicU64::new(0)).collect(),
            specs: specs.to_vec(),
            shard,
            exhausted: AtomicBool::new(false),
            exhausted_note: std::sync::OnceLock::new(),
        }
    }

    /// True once a unique file stopped the load.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// `data file accounts exhausted after N rows`, once a unique file stopped the load.
    pub fn exhausted_note(&self) -> Option<String> {
        self.exhausted_note.get().cloned()
    }

    /// Draws this iteration's row of each file in `files` into `ctx.rows`.
    pub fn draw(&self, files: &[usize], ctx: &mut RenderContext) -> Result<(), Exhausted> {
        if ctx.rows.len() < self.specs.len() {
            ctx.rows.resize(self.specs.len(), 0);
        }
        for &file in files {
            let (Some(spec), Some(taken)) = (self.specs.get(file), self.taken.get(file)) else {
                continue;
            };
            let rows = spec.table.len().max(1) as u64;
            let row = match spec.order {
                DataOrder::Random => ctx.rng.gen_range(0..rows),
                DataOrder::Sequential | DataOrder::Unique => {
                    let k = taken.fetch_add(1, Ordering::Relaxed);
                    let global = self.shard.global_slot(k).unwrap_or(u64::MAX);
                    if global >= rows
                        && spec.order == DataOrder::Unique
                        && spec.on_exhausted == OnExhausted::Stop
                    {
                        self.exhausted.store(true, Ordering::Relaxed);
                        let share = self.shard.share_of(rows);
                        let _ = self.exhausted_note.set(format!(
                            "data file {} exhausted after {share} rows",
                            spec.table.name
                        ));
                        return Err(Exhausted);
                    }
                    global % rows
                }
            };
            if let Some(slot) = ctx.rows.get_mut(file) {
                *slot = usize::try_from(row).unwrap_or(0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::SharedTemplateState;
    use http::HeaderValue;

    fn ctx(vars: usize) -> RenderContext {
        let mut ctx = RenderContext::new(
            1,
            0,
            Arc::new(SharedTemplateState {
                users: 1,
                posts: 1,
                run_nonce: "n".into(),
                seq: 1.into(),
                seq_step: 1,
            }),
        );
        ctx.vars = vec![String::new(); vars];
        ctx
    }

    fn answer(body: &str, headers: &[(&'static str, &'static str)]) -> Captured {
        let mut captured = Captured::default();
        captured.reset(true);
        for (name, value) in headers {
            captured
                .headers
                .insert(*name, HeaderValue::from_static(value));
        }
        captured.push(body.as_bytes());
        captured
    }

    fn template(text: &str) -> Template {
        Template::compile(text).expect("template")
    }

    #[test]
    fn extracts_by_json_pointer_header_and_regex() {
        let step = StepSpec {
            extract: vec![
                Extraction {
                    slot: 0,
                    source: ExtractSource::Json("/user/id".into()),
                    describe: "id".into(),
                },
                Extraction {
                    slot: 1,
                    source: ExtractSource::Header(HeaderName::from_static("x-token")),
                    describe: "token".into(),
                },
                Extraction {
                    slot: 2,
                    source: ExtractSource::Regex(regex::Regex::new(r"count=(\d+)").expect("re")),
                    describe: "n".into(),
                },
            ],
            ..StepSpec::default()
        };
        let mut ctx = ctx(3);
        let captured = answer(
            r#"{"user":{"id":42},"note":"count=17"}"#,
            &[("x-token", "t0k")],
        );
        evaluate(&step, 200, &captured, &mut ctx, &mut String::new()).expect("extracts");
        assert_eq!(ctx.vars, ["42", "t0k", "17"]);
        let missing = answer(r#"{"user":{}}"#, &[("x-token", "t")]);
        assert_eq!(
            evaluate(&step, 200, &missing, &mut ctx, &mut String::new()),
            Err(StepFailure::Extract(0))
        );
    }

    #[test]
    fn checks_fail_by_index_and_gzip_bodies_are_read() {
        let step = StepSpec {
            checks: vec![
                Check {
                    kind: CheckKind::Status(200),
                    describe: "status".into(),
                },
                Check {
                    kind: CheckKind::Json {
                        pointer: "/email".into(),
                        expect: JsonExpect::Equals(template("a@x.test")),
                    },
                    describe: "email".into(),
                },
                Check {
                    kind: CheckKind::Json {
                        pointer: "/id".into(),
                        expect: JsonExpect::Equals(template("7")),
                    },
                    describe: "id".into(),
                },
                Check {
                    kind: CheckKind::Json {
                        pointer: "/gone".into(),
                        expect: JsonExpect::Exists(false),
                    },
                    describe: "gone".into(),
                },
                Check {
                    kind: CheckKind::BodyContains(template("x.test")),
                    describe: "contains".into(),
                },
            ],
            ..StepSpec::default()
        };
        let mut ctx = ctx(0);
        let body = r#"{"email":"a@x.test","id":7}"#;
        let mut scratch = String::new();
        assert_eq!(
            evaluate(&step, 200, &answer(body, &[]), &mut ctx, &mut scratch),
            Ok(())
        );
        assert_eq!(
            evaluate(&step, 201, &answer(body, &[]), &mut ctx, &mut scratch),
            Err(StepFailure::Check(0))
        );
        assert_eq!(
            evaluate(
                &step,
                200,
                &answer(r#"{"email":"b@x.test","id":7}"#, &[]),
                &mut ctx,
                &mut scratch
            ),
            Err(StepFailure::Check(1))
        );
        assert_eq!(
            evaluate(
                &step,
                200,
                &answer("not json x.test", &[]),
                &mut ctx,
                &mut scratch
            ),
            Err(StepFailure::Check(1))
        );
        // The same body, gzipped by the server.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, body.as_bytes()).expect("gzip");
        let mut captured = answer("", &[("content-encoding", "gzip")]);
        captured.push(&gz.finish().expect("gzip"));
        assert_eq!(
            evaluate(&step, 200, &captured, &mut ctx, &mut scratch),
            Ok(())
        );
    }

    #[test]
    fn captured_bodies_stop_at_the_cap() {
        let mut captured = Captured::default();
        captured.reset(true);
        captured.push(&vec![b'a'; MAX_CAPTURED_BODY_BYTES - 1]);
        captured.push(b"bc");
        assert!(captured.truncated);
        assert_eq!(captured.body.len(), MAX_CAPTURED_BODY_BYTES);
        captured.reset(false);
        captured.push(b"ignored");
        assert!(captured.body.is_empty());
    }

    fn feed(order: DataOrder, on_exhausted: OnExhausted, rows: usize) -> DataFeedSpec {
        DataFeedSpec {
            table: Arc::new(DataTable::new(
                "accounts",
                vec!["n".into()],
                (0..rows).map(|r| vec![r.to_string()]).collect(),
            )),
            order,
            on_exhausted,
        }
    }

    fn draws(feeds: &DataFeeds, n: usize, ctx: &mut RenderContext) -> Vec<Option<usize>> {
        (0..n)
            .map(|_| feeds.draw(&[0], ctx).ok().map(|()| ctx.rows[0]))
            .collect()
    }

    #[test]
    fn sequential_wraps_unique_stops_or_wraps_and_shards_interleave() {
        let mut ctx = ctx(0);
        let seq = DataFeeds::new(
            &[feed(DataOrder::Sequential, OnExhausted::Stop, 3)],
            ShardSlice::WHOLE,
        );
        assert_eq!(
            draws(&seq, 5, &mut ctx),
            [Some(0), Some(1), Some(2), Some(0), Some(1)]
        );
        assert!(!seq.is_exhausted());

        let stop = DataFeeds::new(
            &[feed(DataOrder::Unique, OnExhausted::Stop, 3)],
            ShardSlice::WHOLE,
        );
        assert_eq!(draws(&stop, 4, &mut ctx), [Some(0), Some(1), Some(2), None]);
        assert!(stop.is_exhausted());
        assert_eq!(
            stop.exhausted_note().as_deref(),
            Some("data file accounts exhausted after 3 rows")
        );

        let wrap = DataFeeds::new(
            &[feed(DataOrder::Unique, OnExhausted::Wrap, 2)],
            ShardSlice::WHOLE,
        );
        assert_eq!(draws(&wrap, 3, &mut ctx), [Some(0), Some(1), Some(0)]);

        let shard = ShardSlice { index: 1, count: 2 };
        let sharded = DataFeeds::new(&[feed(DataOrder::Unique, OnExhausted::Stop, 5)], shard);
        assert_eq!(draws(&sharded, 3, &mut ctx), [Some(1), Some(3), None]);
        assert_eq!(
            sharded.exhausted_note().as_deref(),
            Some("data file accounts exhausted after 2 rows")
        );

        let random = DataFeeds::new(
            &[feed(DataOrder::Random, OnExhausted::Stop, 4)],
            ShardSlice::WHOLE,
        );
        let picked = draws(&random, 200, &mut ctx);
        assert!(picked.iter().all(|r| r.is_some_and(|r| r < 4)));
        assert!(
            (0..4).all(|r| picked.contains(&Some(r))),
            "every row drawn: {picked:?}"
        );
    }
}
