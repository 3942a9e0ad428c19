//! Request templates: `/api/users/{{user_id}}` compiled once, at scenario parse time, into
//! literal and placeholder segments, so that rendering on the hot path is a few appends and a
//! draw from the user's own seeded RNG — no parsing, no lock, no shared RNG.
//!
//! Placeholders: `{{user_id}}` and `{{post_id}}` (uniform over the seeded rows), `{{ids:N}}`
//! (N distinct user ids, comma-separated), `{{seq}}` (a run-wide counter), `{{uuid}}` (random v4),
//! `{{unique_email}}` (an address no seeded row and no other request of the run uses).
//!
//! Flow placeholders, resolved at parse time through [`Names`] so that rendering never looks a
//! name up: `{{id}}` (a variable an earlier flow step extracted: the user's slot, by index),
//! `{{accounts.email}}` (a data-file column of the iteration's row, by index) and
//! `{{env.NAME}}` (read from the environment once, at parse time). An `{{env.*}}` value is a
//! secret: it is kept in a [`Secret`] that never prints, and a template that holds one says so
//! ([`Template::has_secret`]) so that nothing renders it into an error message or a log.

use crate::scenario::data::DataTable;
use rand::Rng;
use rand::rngs::StdRng;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The placeholder names a template may use, for error messages.
pub const PLACEHOLDERS: &[&str] = &["user_id", "post_id", "ids:N", "seq", "uuid", "unique_email"];

/// Most ids one `{{ids:N}}` may ask for (the API's batch limit).
pub const MAX_IDS: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    UserId,
    PostId,
    Ids(u64),
    Seq,
    Uuid,
    UniqueEmail,
    /// A flow variable: the user's variable slot `.0` ([`RenderContext::vars`]).
    Var(usize),
    /// Column `column` of data file `file`'s row for this iteration ([`RenderContext::rows`]).
    Data {
        file: usize,
        column: usize,
        table: Arc<DataTable>,
    },
    /// `{{env.NAME}}`: the value, read at parse time.
    Env(Secret),
}

/// A value read from the environment (`{{env.NAME}}`): it renders into requests, but its
/// `Debug` never shows it, so a `{:?}` of a scenario cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the environment.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a template's names mean where it is written (a flow step, a top-level request): the
/// scenario parser implements it; [`NoNames`] knows only the built-in placeholders.
pub trait Names {
    /// The user's variable slot of `name`, or why `name` is not known here.
    fn variable(&self, name: &str) -> Result<usize, String>;
    /// Data file `file`'s column `column`: (the file's index, the table, the column's index).
    fn data_column(
        &self,
        file: &str,
        column: &str,
    ) -> Result<(usize, Arc<DataTable>, usize), String>;
    /// The environment variable `name` (`None` when it is not set).
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Only the built-in placeholders (and `{{env.NAME}}`): no variables, no data files.
pub struct NoNames;

impl Names for NoNames {
    fn variable(&self, name: &str) -> Result<usize, String> {
        Err(format!(
            "unknown template `{{{{{name}}}}}`; known: {}",
            PLACEHOLDERS
                .iter()
                .map(|p| format!("{{{{{p}}}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
    fn data_column(
        &self,
        file: &str,
        _column: &str,
    ) -> Result<(usize, Arc<DataTable>, usize), String> {
        Err(format!(
            "unknown data file `{file}`: declare it with [[data_files]] name = \"{file}\""
        ))
    }
}

/// Whether `name` may name a flow variable: a built-in placeholder's name may not.
pub fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "user_id" | "post_id" | "seq" | "uuid" | "unique_email" | "env"
    ) || name.starts_with("ids:")
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Why a template did not compile; `offset` is the byte offset in the template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl Template {
    /// Compiles `text`; every `{{…}}` must be a built-in placeholder or `{{env.NAME}}`.
    pub fn compile(text: &str) -> Result<Template, TemplateError> {
        Template::compile_with(text, &NoNames)
    }

    /// Compiles `text`, resolving variables, data columns and `{{env.NAME}}` through `names`.
    pub fn compile_with(text: &str, names: &dyn Names) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut consumed = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Literal(rest[..open].to_string()));
            }
            let after_open = &rest[open + 2..];
            let Some(close) = after_open.find("}}") else {
                return Err(TemplateError {
                    offset: consumed + open,
                    message: "`{{` without a closing `}}`".into(),
                });
            };
            let name = after_open[..close].trim();
            let segment = match name {
                "user_id" => Segment::UserId,
                "post_id" => Segment::PostId,
                "seq" => Segment::Seq,
                "uuid" => Segment::Uuid,
                "unique_email" => Segment::UniqueEmail,
                other if !other.starts_with("ids:") => {
                    let at = consumed + open;
                    resolve(other, names).map_err(|message| TemplateError {
                        offset: at,
                        message,
                    })?
                }
                other => match other.strip_prefix("ids:").map(|n| n.trim().parse::<u64>()) {
                    Some(Ok(n)) if (1..=MAX_IDS).contains(&n) => Segment::Ids(n),
                    Some(_) => {
                        return Err(TemplateError {
                            offset: consumed + open,
                            message: format!(
                                "`{{{{{other}}}}}`: N in {{{{ids:N}}}} must be 1..={MAX_IDS}"
                            ),
                        });
                    }
                    None => {
                        return Err(TemplateError {
                            offset: consumed + open,
                            message: format!("unknown template `{{{{{other}}}}}`"),
                        });
                    }
                },
            };
            segments.push(segment);
            let advance = open + 2 + close + 2;
            consumed += advance;
            rest = &rest[advance..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_string()));
        }
        Ok(Template { segments })
    }

    /// The largest `N` of any `{{ids:N}}` in the template, 0 if none.
    pub fn max_ids(&self) -> u64 {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Ids(n) => Some(*n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// True when the template has no placeholder (rendering is a copy).
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// True when every render gives the same text (literals and `{{env.*}}` only): it can be
    /// rendered once, when the request is prepared.
    pub fn is_constant(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_) | Segment::Env(_)))
    }

    /// True when a render contains an `{{env.*}}` value: never log or report its rendering.
    pub fn has_secret(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Env(_)))
    }

    /// The data files (their indices) a render reads a row of.
    pub fn data_files(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Data { file, .. } => Some(*file),
            _ => None,
        })
    }

    /// The variable slots a render reads.
    pub fn variables(&self) -> impl Iterator<Item = usize> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(slot) => Some(*slot),
            _ => None,
        })
    }

    /// Renders into `out` (cleared first), drawing from the user's RNG.
    pub fn render_into(&self, out: &mut String, ctx: &mut RenderContext) {
        out.clear();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::UserId => {
                    let id = ctx.rng.gen_range(1..=ctx.shared.users.max(1));
                    let _ = write!(out, "{id}");
                }
                Segment::PostId => {
                    let id = ctx.rng.gen_range(1..=ctx.shared.posts.max(1));
                    let _ = write!(out, "{id}");
                }
                Segment::Ids(n) => {
                    let population = ctx.shared.users.max(1);
                    let amount = (*n).min(population);
                    let picked = rand::seq::index::sample(
                        &mut ctx.rng,
                        usize::try_from(population).unwrap_or(usize::MAX),
                        usize::try_from(amount).unwrap_or(1),
                    );
                    for (i, index) in picked.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{}", index + 1);
                    }
                }
                Segment::Seq => {
                    let seq = ctx.shared.next_seq();
                    let _ = write!(out, "{seq}");
                }
                Segment::Uuid => {
                    let bits: u128 = ctx.rng.r#gen();
                    // RFC 4122 version 4, variant 10.
                    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
                    let hex = format!("{bits:032x}");
                    let _ = write!(
                        out,
                        "{}-{}-{}-{}-{}",
                        &hex[0..8],
                        &hex[8..12],
                        &hex[12..16],
                        &hex[16..20],
                        &hex[20..32]
                    );
                }
                Segment::UniqueEmail => {
                    let seq = ctx.shared.next_seq();
                    let _ = write!(out, "load-{}-{seq}@apibench.test", ctx.shared.run_nonce);
                }
                Segment::Var(slot) => {
                    if let Some(value) = ctx.vars.get(*slot) {
                        out.push_str(value);
                    }
                }
                Segment::Data {
                    file,
                    column,
                    table,
                } => {
                    let row = ctx.rows.get(*file).copied().unwrap_or(0);
                    out.push_str(table.cell(row, *column));
                }
                Segment::Env(secret) => out.push_str(secret.expose()),
            }
        }
    }
}

/// What all users of one load phase share: the seeded row counts and the run-wide counter.
#[derive(Debug)]
pub struct SharedTemplateState {
    /// Seeded users: `{{user_id}}` draws from 1..=users.
    pub users: u64,
    /// Seeded posts: `{{post_id}}` draws from 1..=posts.
    pub posts: u64,
    /// Distinguishes this run's unique emails from any earlier run's against the same database.
    pub run_nonce: String,
    /// `{{seq}}` and `{{unique_email}}` counter: its next value.
    pub seq: AtomicU64,
    /// What each use adds to `seq` (≥ 1): a shard `I/N` counts `I + 1, I + 1 + N, …` so no two
    /// shards ever render the same sequence number.
    pub seq_step: u64,
}

impl SharedTemplateState {
    /// The next `{{seq}}` value.
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(self.seq_step.max(1), Ordering::Relaxed)
    }
}

/// One user's rendering state: its own seeded RNG (deterministic per seed and user index), and
/// for flows its variables and the current iteration's data-file rows.
pub struct RenderContext {
    pub rng: StdRng,
    pub shared: Arc<SharedTemplateState>,
    /// The user's flow variables by slot (empty for a scenario without flows).
    pub vars: Vec<String>,
    /// The row of each data file for the current iteration (empty without data files).
    pub rows: Vec<usize>,
}

impl RenderContext {
    /// A context for user `user_index` of a run seeded with `seed`.
    pub fn new(seed: u64, user_index: u64, shared: Arc<SharedTemplateState>) -> RenderContext {
        use rand::SeedableRng;
        let mixed = seed ^ user_index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        RenderContext {
            rng: StdRng::seed_from_u64(mixed),
            shared,
            vars: Vec::new(),
            rows: Vec::new(),
        }
    }
}

/// A `{{name}}` that is no built-in placeholder: `env.NAME`, `file.column` or a variable.
fn resolve(name: &str, names: &dyn Names) -> Result<Segment, String> {
    if let Some(variable) = name.strip_prefix("env.") {
        let variable = variable.trim();
        let valid = !variable.is_empty()
            && variable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`{{{{env.{variable}}}}}`: an environment variable name is A-Z a-z 0-9 _"
            ));
        }
        return match names.env(variable) {
            Some(value) => Ok(Segment::Env(Secret::new(value))),
            None => Err(format!(
                "environment variable `{variable}` is not set (`{{{{env.{variable}}}}}`)"
            )),
        };
    }
    if let Some((file, column)) = name.split_once('.') {
        let (file, table, column) = names.data_column(file.trim(), column.trim())?;
        return Ok(Segment::Data {
            file,
            column,
            table,
        });
    }
    names.variable(name).map(Segment::Var)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(users: u64, posts: u64) -> RenderContext {
        RenderContext::new(
            7,
            1,
            Arc::new(SharedTemplateState {
                users,
                posts,
                run_nonce: "abc".into(),
                seq: AtomicU64::new(1),
                seq_step: 1,
            }),
        )
    }

    fn render(template: &str, ctx: &mut RenderContext) -> String {
        let mut out = String::new();
        Template::compile(template)
            .expect("test template compiles")
            .render_into(&mut out, ctx);
        out
    }

    #[test]
    fn placeholders_render_within_the_seeded_ranges() {
        let mut ctx = context(10, 3);
        for _ in 0..200 {
            let id: u64 = render("{{user_id}}", &mut ctx).parse().expect("number");
            assert!((1..=10).contains(&id));
            let post: u64 = render("/p/{{post_id}}", &mut ctx)[3..]
                .parse()
                .expect("number");
            assert!((1..=3).contains(&post));
        }
        let ids = render("{{ids:5}}", &mut ctx);
        let mut parsed: Vec<u64> = ids.split(',').map(|s| s.parse().expect("id")).collect();
        parsed.sort_unstable();
        parsed.dedup();
        assert_eq!(parsed.len(), 5, "ids are distinct: {ids}");
        assert!(parsed.iter().all(|id| (1..=10).contains(id)));
    }

    #[test]
    fn seq_and_unique_email_never_repeat_and_uuid_is_v4() {
        let mut ctx = context(10, 10);
        assert_eq!(render("n{{seq}}", &mut ctx), "n1");
        assert_eq!(render("n{{seq}}", &mut ctx), "n2");
        let a = render("{{unique_email}}", &mut ctx);
        let b = render("{{unique_email}}", &mut ctx);
        assert_ne!(a, b);
        assert!(a.starts_with("load-abc-") && a.ends_with("@apibench.test"));
        let uuid = render("{{uuid}}", &mut ctx);
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn same_seed_same_sequence() {
        let a = render("{{user_id}},{{user_id}},{{uuid}}", &mut context(1000, 1));
        let b = render("{{user_id}},{{user_id}},{{uuid}}", &mut context(1000, 1));
        assert_eq!(a, b);
    }

    /// Variables `id` (slot 1) and `token` (slot 0), a data file `accounts` with columns
    /// `email`, `name`, and one environment variable.
    struct TestNames(Arc<DataTable>);

    impl Names for TestNames {
        fn variable(&self, name: &str) -> Result<usize, String> {
            match name {
                "token" => Ok(0),
                "id" => Ok(1),
                other => Err(format!("no `{other}`")),
            }
        }
        fn data_column(
            &self,
            file: &str,
            column: &str,
        ) -> Result<(usize, Arc<DataTable>, usize), String> {
            match (file, self.0.column(column)) {
                ("accounts", Some(c)) => Ok((0, Arc::clone(&self.0), c)),
                _ => Err(format!("no `{file}.{column}`")),
            }
        }
        fn env(&self, name: &str) -> Option<String> {
            (name == "API_KEY").then(|| "s3cr3t".to_string())
        }
    }

    #[test]
    fn variables_data_columns_and_env_values_render_from_indices() {
        let table = Arc::new(DataTable::new(
            "accounts",
            vec!["email".into(), "name".into()],
            vec![
                vec!["a@x".into(), "Ann".into()],
                vec!["b@x".into(), "Bob".into()],
            ],
        ));
        let names = TestNames(table);
        let template = Template::compile_with(
            "/u/{{id}}?t={{ token }}&e={{accounts.email}}&n={{accounts.name}}&k={{env.API_KEY}}",
            &names,
        )
        .expect("compiles");
        assert!(template.has_secret() && !template.is_constant());
        assert_eq!(template.data_files().collect::<Vec<_>>(), [0, 0]);
        assert_eq!(template.variables().collect::<Vec<_>>(), [1, 0]);
        assert!(
            !format!("{template:?}").contains("s3cr3t"),
            "Debug never shows a secret"
        );
        let mut ctx = context(1, 1);
        ctx.vars = vec!["tok".into(), "42".into()];
        ctx.rows = vec![1];
        let mut out = String::new();
        template.render_into(&mut out, &mut ctx);
        assert_eq!(out, "/u/42?t=tok&e=b@x&n=Bob&k=s3cr3t");

        let constant = Template::compile_with("Key {{env.API_KEY}}", &names).expect("compiles");
        assert!(constant.is_constant() && !constant.is_literal());
        let missing = Template::compile_with("x{{env.NOPE}}", &names).unwrap_err();
        assert_eq!(missing.offset, 1);
        assert!(
            missing.message.contains("`NOPE` is not set"),
            "{}",
            missing.message
        );
        assert!(Template::compile_with("{{env.A-B}}", &names).is_err());
        let unknown = Template::compile_with("{{accounts.zip}}", &names).unwrap_err();
        assert!(
            unknown.message.contains("accounts.zip"),
            "{}",
            unknown.message
        );
        // Without names a bare word is still an unknown placeholder.
        assert!(Template::compile("{{id}}").is_err());
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_rejected_with_offsets() {
        let err = Template::compile("/api/{{foo}}").unwrap_err();
        assert_eq!(err.offset, 5);
        assert!(err.message.contains("unknown template `{{foo}}`"));
        assert!(Template::compile("/api/{{user_id").is_err());
        assert!(Template::compile("{{ids:0}}").is_err());
        assert!(Template::compile("{{ids:1001}}").is_err());
        assert!(Template::compile("/plain").expect("literal").is_literal());
    }
}
