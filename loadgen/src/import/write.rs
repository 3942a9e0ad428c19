//! A [`Recording`] → the scenario's text (and a replay's arrivals file): the header comments
//! (what was not copied and why), the top-level keys, `[load]` (the mean rate) or `[replay]`, and
//! the distinct requests as `[[requests]]` weighted by their counts.
//!
//! Pure: it reads and writes no file and never sees a secret's value (the readers keep only the
//! names). Every string goes through [`toml_string`], so a recorded path or body can never break
//! out of its TOML value.

use super::{DEFAULT_BASE_URL, REDACTED, RecordedRequest, Recording};
use crate::scenario::{REPLAY_FILE_HEADER, ReplayTiming};
use crate::schedule::recording_end_us;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// The most a `weight` may be (the scenario parser's limit): larger counts are scaled down.
const MAX_WEIGHT: u64 = 1_000_000;

/// What [`build`] needs besides the recording.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub name: String,
    /// For the header comment, e.g. `apibench import-har checkout.har`.
    pub command_line: String,
    /// The recording's path, for the description.
    pub source: String,
    pub limit: Option<u64>,
    pub timing: Option<ReplayTiming>,
    /// `None`: the recording's origin, else [`DEFAULT_BASE_URL`].
    pub base_url: Option<String>,
    /// A replay's arrivals file name, relative to the scenario.
    pub replay_file: Option<String>,
}

/// The texts an import writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub scenario: String,
    /// A replay's arrivals file.
    pub arrivals: Option<String>,
    pub distinct: usize,
    pub recorded: usize,
    pub span_us: u64,
    /// For stderr: the target guessed, what was not copied.
    pub notes: Vec<String>,
}

/// One distinct request and how often it was recorded.
struct Distinct<'a> {
    request: &'a RecordedRequest,
    count: u64,
}

/// What makes two recorded requests the same `[[requests]]` entry: method, path and query,
/// body, kept headers.
type RequestKey<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a BTreeMap<String, String>,
);

/// The scenario (and a replay's arrivals) for `recording`; `None` when it has no request.
pub fn build(recording: &Recording, options: &BuildOptions) -> Option<Built> {
    let mut requests: Vec<&RecordedRequest> = recording.requests.iter().collect();
    // Stable: requests recorded at the same instant keep the recording's order.
    requests.sort_by_key(|r| r.at_us);
    if let Some(limit) = options.limit {
        requests.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let first_us = requests.first()?.at_us;
    let offsets: Vec<u64> = requests
        .iter()
        .map(|r| u64::try_from(r.at_us.saturating_sub(first_us)).unwrap_or(0))
        .collect();
    let (distinct, arrival_requests) = distinct_requests(&requests);
    let count = requests.len() as u64;
    let span_us = recording_end_us(offsets.last().copied().unwrap_or(0), count);

    let mut notes = Vec::new();
    let target_url = match (&options.base_url, &recording.origin) {
        (Some(url), _) => url.clone(),
        (None, Some(origin)) => origin.clone(),
        (None, None) => {
            notes.push(format!(
                "the recording names no host: the scenario's target is {DEFAULT_BASE_URL}; pass \
                 --base-url, edit `target`, or run it with `apibench run --target-url URL`"
            ));
            DEFAULT_BASE_URL.to_string()
        }
    };
    let mut text = format!(
        "# Written by `{}`: {count} requests over {:.3} s, {} distinct.\n",
        options.command_line,
        span_us as f64 / 1e6,
        distinct.len()
    );
    header_comments(&mut text, &mut notes, recording);
    let described = match options.timing {
        Some(timing) => format!(", replayed ({timing})"),
        None => ", at their mean rate".to_string(),
    };
    let _ = writeln!(
        text,
        "name = {}\ndescription = {}\ntarget = {{ kind = \"url\", url = {} }}",
        toml_string(&options.name),
        toml_string(&format!(
            "{count} requests recorded in {}{described}",
            options.source
        )),
        toml_string(&target_url)
    );
    load_sections(&mut text, options, count, span_us);
    requests_section(&mut text, &distinct);

    let arrivals = options.timing.map(|_| {
        let mut csv = String::with_capacity(requests.len() * 12 + 32);
        let _ = writeln!(csv, "{REPLAY_FILE_HEADER}");
        for (offset, request) in offsets.iter().zip(&arrival_requests) {
            let _ = writeln!(csv, "{offset},{request}");
        }
        csv
    });
    Some(Built {
        scenario: text,
        arrivals,
        distinct: distinct.len(),
        recorded: requests.len(),
        span_us,
        notes,
    })
}

/// The distinct requests in order of first appearance, and each arrival's index among them.
fn distinct_requests<'a>(requests: &[&'a RecordedRequest]) -> (Vec<Distinct<'a>>, Vec<usize>) {
    let mut distinct: Vec<Distinct> = Vec::new();
    let mut index_of: HashMap<RequestKey, usize> = HashMap::new();
    let mut arrival_requests = Vec::with_capacity(requests.len());
    for r in requests {
        let key = (
            r.method.as_str(),
            r.path.as_str(),
            r.body.as_deref(),
            &r.headers,
        );
        let index = *index_of.entry(key).or_insert_with(|| {
            distinct.push(Distinct {
                request: r,
                count: 0,
            });
            distinct.len() - 1
        });
        if let Some(d) = distinct.get_mut(index) {
            d.count += 1;
        }
        arrival_requests.push(index);
    }
    (distinct, arrival_requests)
}

/// What was not copied (names only) and what to check, as comments and notes.
fn header_comments(text: &mut String, notes: &mut Vec<String>, recording: &Recording) {
    if !recording.secret_headers.is_empty() {
        let names = listed(&recording.secret_headers, usize::MAX);
        let _ = writeln!(
            text,
            "# Not copied, as secrets: the {names} header(s). To send one, read it from the\n\
             # environment in a request, e.g. headers = {{ authorization = \"Bearer \
             {{{{env.API_TOKEN}}}}\" }} — never the value itself."
        );
        notes.push(format!(
            "not copied (secrets): {names}; see the comment at the top of the scenario"
        ));
    }
    if !recording.redacted_parameters.is_empty() {
        let names = listed(&recording.redacted_parameters, usize::MAX);
        let _ = writeln!(
            text,
            "# Token-like query parameters ({names}) are written as {REDACTED}: put \
             {{{{env.NAME}}}} there\n# to send a real one."
        );
        notes.push(format!("query parameters written as {REDACTED}: {names}"));
    }
    if !recording.dropped_headers.is_empty() {
        let _ = writeln!(
            text,
            "# Other recorded headers are not sent: {}.",
            listed(&recording.dropped_headers, 12)
        );
    }
    text.push_str(if recording.records_bodies {
        "# Bodies are copied as recorded: check them for passwords or tokens before committing \
         this file.\n"
    } else {
        "# The recording has no bodies: POST, PUT and PATCH requests are sent without one; add \
         body = \"…\"\n# (and a content-type header) where the API needs one.\n"
    });
}

/// `[load]` at the mean rate for the recording's span, or `[load]` + `[replay]`.
fn load_sections(text: &mut String, options: &BuildOptions, count: u64, span_us: u64) {
    text.push_str(
        "\n[load]\nmodel = \"open\"\n# users = 32 (the default) connections start at once; more \
         are added while all are busy\n",
    );
    match (options.timing, &options.replay_file) {
        (Some(timing), Some(file)) => {
            let _ = writeln!(
                text,
                "# A replay: {file} says when each request goes out. A warmup, if you add one, \
                 is the\n# recording's own first part (sent, not measured).\n\n[replay]\n\
                 timing = {}\nfile = {}",
                toml_string(&timing.to_string()),
                toml_string(file)
            );
        }
        _ => {
            // Whole milliseconds, and a rate that sends exactly `count` requests in them.
            let duration_ms = span_us.div_ceil(1000).max(1);
            let rate_per_sec = count as f64 / (duration_ms as f64 / 1e3);
            let _ = writeln!(
                text,
                "# The recording's mean rate: {count} requests in {duration_ms} ms.\n\
                 rate_per_sec = {}\nduration = \"{duration_ms}ms\"",
                decimal(rate_per_sec)
            );
        }
    }
}

/// One `[[requests]]` per distinct request, weighted by its count.
fn requests_section(text: &mut String, distinct: &[Distinct]) {
    let total: u64 = distinct.iter().map(|d| d.count).sum();
    let largest = distinct.iter().map(|d| d.count).max().unwrap_or(1);
    let mut names = BTreeSet::new();
    for d in distinct {
        let r = d.request;
        let name = unique_name(&mut names, &request_name(&r.method, &r.path));
        let weight = if largest > MAX_WEIGHT {
            // Keeps the proportions within the parser's limit; no request drops to 0.
            (d.count * MAX_WEIGHT / largest).max(1)
        } else {
            d.count
        };
        let _ = writeln!(
            text,
            "\n[[requests]]\nname = {}\nmethod = {}\npath = {}",
            toml_string(&name),
            toml_string(&r.method),
            toml_string(&r.path)
        );
        if let Some(body) = &r.body {
            let _ = writeln!(text, "body = {}", toml_string(body));
        }
        if !r.headers.is_empty() {
            let pairs: Vec<String> = r
                .headers
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
                .collect();
            let _ = writeln!(text, "headers = {{ {} }}", pairs.join(", "));
        }
        let _ = writeln!(text, "weight = {weight} # {} of {total} recorded", d.count);
    }
}

/// `a, b, c` (the first `most` names, then `and N more`).
fn listed(names: &BTreeSet<String>, most: usize) -> String {
    let shown: Vec<&str> = names.iter().take(most).map(String::as_str).collect();
    let more = names.len() - shown.len();
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// A TOML basic string (quoted and escaped).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// At most 6 decimals, no trailing zeros: `12.5`, `3.333333`.
fn decimal(value: f64) -> String {
    let text = format!("{value:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// `GET /api/users/1?x=2` → `get-api-users-1`.
fn request_name(method: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut name = method.to_ascii_lowercase();
    let mut dash = true;
    for c in path.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            if dash {
                name.push('-');
                dash = false;
            }
            name.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    if name.len() == method.len() {
        name.push_str("-root");
    }
    name.chars().take(56).collect()
}

/// `base`, or `base-2`, `base-3`, … if taken.
fn unique_name(taken: &mut BTreeSet<String>, base: &str) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn recorded(at_us: i64, method: &str, path: &str) -> RecordedRequest {
        RecordedRequest {
            at_us,
            method: method.into(),
            path: path.into(),
            body: None,
            headers: BTreeMap::new(),
        }
    }

    fn options(timing: Option<ReplayTiming>) -> BuildOptions {
        BuildOptions {
            name: "t".into(),
            command_line: "apibench import-log t.log".into(),
            source: "t.log".into(),
            limit: None,
            timing,
            base_url: None,
            replay_file: timing.map(|_| "t.replay.csv".into()),
        }
    }

    #[test]
    fn names_are_slugs_and_unique() {
        assert_eq!(request_name("GET", "/api/users/1?x=2"), "get-api-users-1");
        assert_eq!(request_name("POST", "/"), "post-root");
        assert_eq!(request_name("GET", "/a//b.json"), "get-a-b.json");
        let mut taken = BTreeSet::new();
        assert_eq!(unique_name(&mut taken, "get-a"), "get-a");
        assert_eq!(unique_name(&mut taken, "get-a"), "get-a-2");
        assert_eq!(unique_name(&mut taken, "get-a"), "get-a-3");
        assert!(request_name("GET", &"/x".repeat(100)).len() <= 56);
    }

    #[test]
    fn the_mean_rate_covers_the_recording_and_sends_as_many_requests() {
        // 5 requests over 2 s: the recording ends one mean gap (0.5 s) after the last.
        let recording = Recording {
            requests: (0..5)
                .map(|i| recorded(1_000_000 + i * 500_000, "GET", "/a"))
                .collect(),
            ..Recording::default()
        };
        let built = build(&recording, &options(None)).expect("built");
        assert!(
            built
                .scenario
                .contains("rate_per_sec = 2\nduration = \"2500ms\"\n"),
            "{}",
            built.scenario
        );
        assert!(built.scenario.contains("weight = 5 # 5 of 5 recorded"));
        assert_eq!(built.arrivals, None);
        let scenario =
            crate::scenario::parse(&built.scenario, Path::new("t.toml")).expect("parses");
        let plan = crate::runner::schedule_plan(&scenario);
        assert_eq!(plan.total_slots(), 5);
    }

    #[test]
    fn huge_counts_are_scaled_into_the_weight_limit() {
        let mut requests: Vec<RecordedRequest> =
            (0..1_200_000).map(|i| recorded(i, "GET", "/hot")).collect();
        requests.push(recorded(1_200_000, "GET", "/cold"));
        let recording = Recording {
            requests,
            ..Recording::default()
        };
        let built = build(&recording, &options(None)).expect("built");
        assert!(
            built
                .scenario
                .contains("weight = 1000000 # 1200000 of 1200001 recorded")
        );
        assert!(
            built
                .scenario
                .contains("weight = 1 # 1 of 1200001 recorded")
        );
    }
}
