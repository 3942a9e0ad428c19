//! `apibench import-har FILE` and `apibench import-log FILE`: turn recorded traffic into a
//! scenario. The readers ([`har`], [`access_log`]) produce a [`Recording`] — requests with their
//! arrival times, plus what they skipped and why — and [`write`] turns it into the scenario text:
//! the distinct requests as `[[requests]]` weighted by their counts, and either a constant-rate
//! `[load]` at the recording's mean rate (the default) or, with `--timing`, a `[replay]` whose
//! arrivals go to a sidecar file (`NAME.replay.csv`: `offset_us,request` then one such line per
//! request, `request` an index into `[[requests]]`; read back by `scenario::parse_arrivals`).
//! This file holds the command line, the shared types, the secret rules both readers apply, and
//! [`import`]: read, build, check that the scenario loads, write.
//!
//! What it must never do: copy a secret (cookies, authorization and token-like headers are named
//! in a comment, never their values; token-like query parameters are written as `REDACTED`),
//! overwrite a file without `--force`, panic or give up on a malformed line or entry (each is
//! skipped, counted and shown with its line or index), or write a scenario that
//! `scenario::load` refuses (the text is checked before it is written). It never prints: the
//! command returns its output as a [`CommandOutcome`].

pub mod access_log;
pub mod har;
pub mod write;

use crate::saved::CommandOutcome;
use crate::scenario::{self, ReplayTiming};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
pub use write::{BuildOptions, Built, build};

/// How many skipped lines or entries the command names (the rest are counted).
const SHOWN_SKIPPED: usize = 5;
/// Where an access log's scenario points when `--base-url` is not given (the API's default).
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";
/// What a token-like query parameter's value is replaced with.
pub const REDACTED: &str = "REDACTED";

/// What both importers' `--help` ends with.
macro_rules! import_after_help {
    () => {
        "The scenario holds the distinct requests as [[requests]], weighted by how often each was
recorded, and a [load] at the recording's mean rate for as long as it lasted. With --timing it
replays the recording instead: [replay] plus NAME.replay.csv beside the scenario (one line per
request: its offset from the first in microseconds and its index in [[requests]]), so each
request goes out when it was recorded (scaled:2.0: twice as fast).

Cookies, authorization and token-like headers are never copied (a comment names them and shows
how to send one from the environment with {{env.NAME}}); token-like query parameters are written
as REDACTED. Bodies are copied as recorded: check them before committing the scenario.

Exit codes: 0 written, 2 bad input (unreadable recording, nothing importable, the output exists
without --force)."
    };
}

/// `apibench import-har` / `apibench import-log`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The recording: a HAR 1.2 file (import-har) or an access log in the common or combined
    /// format (import-log)
    pub file: PathBuf,

    /// Write the scenario here [default: NAME.toml in the current directory]; a replay's
    /// arrivals go beside it (NAME.replay.csv)
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Overwrite the scenario (and its arrivals file) when it exists
    #[arg(long)]
    pub force: bool,

    /// The scenario's name [default: the recording's file name without its extension]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Import only the first N requests of the recording (in time order)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Replay the recorded arrival times instead of a constant mean rate: `original`, or
    /// `scaled:F` for F times as fast (e.g. `scaled:2.0`)
    #[arg(long, value_name = "TIMING", value_parser = clap::value_parser!(ReplayTiming))]
    pub timing: Option<ReplayTiming>,

    /// Send the requests to this URL, e.g. http://10.0.0.5:8080 [default: the HAR's main host;
    /// for an access log, which records no host, http://127.0.0.1:8080]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}

pub const IMPORT_HAR_AFTER_HELP: &str = concat!(
    "Examples:
  apibench import-har checkout.har
      checkout.toml: the HAR's requests to its main host at their mean rate
  apibench import-har checkout.har --timing scaled:2.0 -o scenarios/checkout.toml
      a replay twice as fast: scenarios/checkout.toml + scenarios/checkout.replay.csv
  apibench import-har session.har --base-url http://127.0.0.1:8080 --limit 500 --force
      the first 500 requests, sent to a local server instead of the recorded host

Entries for other hosts than the most frequent one (CDNs, analytics) are skipped and counted.

",
    import_after_help!()
);

pub const IMPORT_LOG_AFTER_HELP: &str = concat!(
    "Examples:
  apibench import-log /var/log/nginx/access.log --base-url http://10.0.0.5:8080
      access.toml: every logged request at the log's mean rate
  apibench import-log access.log --timing original --name monday-peak -o scenarios/peak.toml
      replay the log's own timing: scenarios/peak.toml + scenarios/peak.replay.csv

Lines look like (common, then combined):
  127.0.0.1 - - [10/Oct/2026:13:55:36 +0000] \"GET /api/users/1 HTTP/1.1\" 200 2326
  127.0.0.1 - - [10/Oct/2026:13:55:36 +0000] \"GET /api/users/1 HTTP/1.1\" 200 2326 \"-\" \"curl/8\"
Logs record whole seconds: the requests of one second are spread evenly across it, in log
order. Logs record no bodies: POST and PUT requests are imported without one. Lines that do not
parse are skipped, counted and shown with their line numbers.

",
    import_after_help!()
);

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// When it arrived, µs since the Unix epoch.
    pub at_us: i64,
    /// Upper case, one of [`scenario::METHODS`].
    pub method: String,
    /// Path and query, starting with `/`.
    pub path: String,
    pub body: Option<String>,
    /// Lower-case names; only the ones worth sending again (never a secret).
    pub headers: BTreeMap<String, String>,
}

/// A line or entry a reader could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `line 7` or `log.entries[3]`.
    pub at: String,
    pub reason: String,
}

/// What a reader got out of a recording.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub requests: Vec<RecordedRequest>,
    pub skipped: Vec<Skipped>,
    /// The recorded server (`https://host:port`), when the recording names one.
    pub origin: Option<String>,
    /// Secret-looking headers seen and not copied (names only).
    pub secret_headers: BTreeSet<String>,
    /// Other headers seen and not copied (names only).
    pub dropped_headers: BTreeSet<String>,
    /// Token-like query parameters whose values were replaced by [`REDACTED`].
    pub redacted_parameters: BTreeSet<String>,
    /// Whether the recording has request bodies at all (access logs do not).
    pub records_bodies: bool,
}

/// Which reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Har,
    AccessLog,
}

impl Format {
    fn command(self) -> &'static str {
        match self {
            Format::Har => "import-har",
            Format::AccessLog => "import-log",
        }
    }
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: no request could be imported{}", path.display(), skipped_text(skipped, *total_skipped))]
    Empty {
        path: PathBuf,
        skipped: Vec<Skipped>,
        total_skipped: usize,
    },
    #[error("{}: exists; pass --force to overwrite it, or -o to write elsewhere", .0.display())]
    Exists(PathBuf),
    #[error("{0}")]
    BadArgument(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the scenario written from the recording does not load ({0}); this is a bug in the importer"
    )]
    Invalid(String),
}

fn skipped_text(skipped: &[Skipped], total: usize) -> String {
    if total == 0 {
        return String::new();
    }
    let mut text = format!(" ({total} skipped:");
    for s in skipped.iter().take(SHOWN_SKIPPED) {
        let _ = write!(text, " {}: {};", s.at, s.reason);
    }
    if total > SHOWN_SKIPPED {
        let _ = write!(text, " …");
    }
    text.push(')');
    text
}

/// The files an import produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub scenario_path: PathBuf,
    /// A replay's arrivals file.
    pub replay_path: Option<PathBuf>,
    /// What was written, with its counts and notes.
    pub built: Built,
    pub skipped: Vec<Skipped>,
}

/// `apibench import-har|import-log`: 0 written, 2 bad input.
pub fn command(format: Format, args: &ImportArgs) -> CommandOutcome {
    match import(format, args) {
        Ok(imported) => {
            let mut stdout = format!(
                "wrote {}: {} distinct requests from {} recorded over {:.3} s\n",
                imported.scenario_path.display(),
                imported.built.distinct,
                imported.built.recorded,
                imported.built.span_us as f64 / 1e6
            );
            if let Some(replay) = &imported.replay_path {
                let _ = writeln!(
                    stdout,
                    "wrote {}: {} arrivals",
                    replay.display(),
                    imported.built.recorded
                );
            }
            let _ = writeln!(
                stdout,
                "run it: apibench run {}",
                imported.scenario_path.display()
            );
            let mut stderr = String::new();
            if !imported.skipped.is_empty() {
                let _ = writeln!(
                    stderr,
                    "{} {}: skipped {}{}",
                    format.command(),
                    args.file.display(),
                    imported.skipped.len(),
                    match format {
                        Format::Har => " entries",
                        Format::AccessLog => " lines",
                    }
                );
                for s in imported.skipped.iter().take(SHOWN_SKIPPED) {
                    let _ = writeln!(stderr, "  {}: {}", s.at, s.reason);
                }
                if imported.skipped.len() > SHOWN_SKIPPED {
                    let _ = writeln!(
                        stderr,
                        "  … and {} more",
                        imported.skipped.len() - SHOWN_SKIPPED
                    );
                }
            }
            for note in &imported.built.notes {
                let _ = writeln!(
                    stderr,
                    "{} {}: {note}",
                    format.command(),
                    args.file.display()
                );
            }
            CommandOutcome {
                stdout,
                stderr,
                exit_code: 0,
            }
        }
        Err(e) => CommandOutcome::bad_input(format!("{}: {e}", format.command())),
    }
}

/// Reads the recording, writes the scenario (and a replay's arrivals), checks that it loads.
pub fn import(format: Format, args: &ImportArgs) -> Result<Imported, ImportError> {
    let name = match &args.name {
        Some(name) => {
            let name = name.trim();
            if !is_scenario_name(name) {
                return Err(ImportError::BadArgument(format!(
                    "--name `{name}`: use 1..=64 characters of A-Z a-z 0-9 - _ . (it names a directory)"
                )));
            }
            name.to_string()
        }
        None => name_from_file(&args.file),
    };
    let base_url = match &args.base_url {
        Some(url) => Some(check_base_url(url)?),
        None => None,
    };
    let text = std::fs::read_to_string(&args.file).map_err(|source| ImportError::Read {
        path: args.file.clone(),
        source,
    })?;
    let recording = match format {
        Format::Har => har::parse(&text, &args.file)?,
        Format::AccessLog => access_log::parse(&text),
    };
    let scenario_path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
    let replay_path = args.timing.map(|_| replay_path_for(&scenario_path));
    for path in std::iter::once(&scenario_path).chain(replay_path.as_ref()) {
        if path.exists() && !args.force {
            return Err(ImportError::Exists(path.clone()));
        }
    }
    let built = build(
        &recording,
        &BuildOptions {
            name,
            command_line: format!(
                "apibench {} {}",
                format.command(),
                args.file.file_name().map_or_else(
                    || args.file.display().to_string(),
                    |f| f.to_string_lossy().into()
                )
            ),
            source: args.file.display().to_string(),
            limit: args.limit,
            timing: args.timing,
            base_url,
            replay_file: replay_path
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|f| f.to_string_lossy().into_owned()),
        },
    )
    .ok_or_else(|| ImportError::Empty {
        path: args.file.clone(),
        skipped: recording
            .skipped
            .iter()
            .take(SHOWN_SKIPPED)
            .cloned()
            .collect(),
        total_skipped: recording.skipped.len(),
    })?;

    let write = |path: &Path, text: &str| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ImportError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(path, text).map_err(|source| ImportError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    // The arrivals first: the scenario is checked with them, exactly as `run` will read them.
    if let (Some(path), Some(arrivals)) = (&replay_path, &built.arrivals) {
        write(path, arrivals)?;
    }
    if let Err(e) = scenario::parse(&built.scenario, &scenario_path) {
        if let Some(path) = &replay_path {
            let _ = std::fs::remove_file(path);
        }
        return Err(ImportError::Invalid(e.to_string()));
    }
    write(&scenario_path, &built.scenario)?;
    Ok(Imported {
        scenario_path,
        replay_path,
        built,
        skipped: recording.skipped,
    })
}

/// `scenarios/checkout.toml` → `scenarios/checkout.replay.csv`.
pub fn replay_path_for(scenario_path: &Path) -> PathBuf {
    let stem = scenario_path
        .file_stem()
        .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
    scenario_path.with_file_name(format!("{stem}.replay.csv"))
}

/// The scenario parser's rule for names (they name directories).
fn is_scenario_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `logs/access.log` → `access`; anything else becomes `-`.
fn name_from_file(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if is_scenario_name(&name) {
        name
    } else {
        "imported".to_string()
    }
}

/// An http(s) URL with a host, without a trailing `/`.
fn check_base_url(url: &str) -> Result<String, ImportError> {
    let text = url.trim().trim_end_matches('/').to_string();
    match reqwest::Url::parse(&text) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            Ok(text)
        }
        _ => Err(ImportError::BadArgument(format!(
            "--base-url `{text}` is not an http(s) URL, e.g. http://127.0.0.1:8080"
        ))),
    }
}

/// Headers sent again as recorded: what the server needs to read the request the same way.
const KEPT_HEADERS: &[&str] = &["content-type", "accept", "accept-language"];

/// Whether a header or query parameter name looks like it carries a credential.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "cookie" | "authorization" | "proxy-authorization" | "set-cookie"
    ) || [
        "token",
        "secret",
        "session",
        "auth",
        "api-key",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "csrf",
        "xsrf",
        "signature",
        "credential",
    ]
    .iter()
    .any(|part| name.contains(part))
}

/// Sorts one recorded header into kept, secret or dropped.
fn sort_header(
    recording: &mut Recording,
    kept: &mut BTreeMap<String, String>,
    name: &str,
    value: &str,
) {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name.starts_with(':') {
        return; // HTTP/2 pseudo-headers: the method, path and host are elsewhere.
    }
    if is_secret_name(&name) {
        recording.secret_headers.insert(name);
    } else if KEPT_HEADERS.contains(&name.as_str()) && !value.contains("{{") {
        kept.insert(name, value.trim().to_string());
    } else {
        recording.dropped_headers.insert(name);
    }
}

/// `path?query` with token-like parameter values replaced by [`REDACTED`] (the rest byte for
/// byte as recorded).
fn redact_query(recording: &mut Recording, path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                recording.redacted_parameters.insert(name.to_string());
                format!("{name}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", parameters.join("&"))
}

/// Why a request cannot be written as a scenario request, if it cannot.
fn unusable(method: &str, path: &str, body: Option<&str>) -> Option<String> {
    if !scenario::METHODS.contains(&method) {
        return Some(format!(
            "method `{method}` is not one of {}",
            scenario::METHODS.join(", ")
        ));
    }
    if !path.starts_with('/') {
        return Some(format!("`{path}` is not a path starting with `/`"));
    }
    if http::uri::PathAndQuery::try_from(path).is_err() {
        return Some(format!("`{path}` is not a valid request target"));
    }
    if path.contains("{{") || body.is_some_and(|b| b.contains("{{")) {
        return Some(
            "contains `{{`, which a scenario would read as a template placeholder".to_string(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_recording_file() {
        assert_eq!(name_from_file(Path::new("logs/access.log")), "access");
        assert_eq!(name_from_file(Path::new("my capture.har")), "my-capture");
        assert_eq!(name_from_file(Path::new("/")), "imported");
        assert_eq!(
            replay_path_for(Path::new("scenarios/checkout.toml")),
            Path::new("scenarios/checkout.replay.csv")
        );
    }

    #[test]
    fn secret_names_and_query_values_are_recognised() {
        for secret in [
            "Cookie",
            "authorization",
            "X-Api-Key",
            "x-csrf-token",
            "X-Session-Id",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        for plain in ["content-type", "accept", "user-agent", "x-request-id"] {
            assert!(!is_secret_name(plain), "{plain}");
        }
        let mut recording = Recording::default();
        assert_eq!(
            redact_query(&mut recording, "/s?q=shoes&access_token=abc&page=2"),
            "/s?q=shoes&access_token=REDACTED&page=2"
        );
        assert_eq!(redact_query(&mut recording, "/plain"), "/plain");
        assert!(recording.redacted_parameters.contains("access_token"));
    }

    #[test]
    fn unusable_requests_say_why() {
        assert_eq!(unusable("GET", "/a?b=c", None), None);
        assert!(unusable("CONNECT", "/", None).is_some_and(|w| w.contains("CONNECT")));
        assert!(unusable("GET", "*", None).is_some());
        assert!(unusable("GET", "/a b", None).is_some());
        assert!(unusable("POST", "/a", Some("{{x}}")).is_some_and(|w| w.contains("{{")));
    }
}
