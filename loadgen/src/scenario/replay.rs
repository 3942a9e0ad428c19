//! `[replay]` of a scenario: the open model driven by a recording instead of a constant rate.
//! `file` names the arrivals (`offset_us,request` per line, next to the scenario, written by
//! `apibench import-har|import-log --timing …`) and `timing` their speed (`"original"` or
//! `"scaled:2.0"`, twice as fast). Every error names file:line (and column) and the field, in the
//! scenario or in the arrivals file.
//!
//! It reads the arrivals file and nothing else: no network, no process. It never reorders or
//! drops an arrival — a file that is not sorted, or names a request the scenario does not have,
//! is refused with its line.

use super::*;
use crate::schedule::{ReplayArrival, SchedulePlan};
use std::sync::Arc;

/// The arrivals file's first line.
pub const REPLAY_FILE_HEADER: &str = "offset_us,request";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplay {
    timing: Option<Spanned<String>>,
    file: Spanned<String>,
}

impl RawReplay {
    /// The arrivals file as written and as [`parse_replay`] reads it (for the scenario's hash).
    pub(super) fn arrivals_path(&self, scenario_path: &Path) -> (String, std::path::PathBuf) {
        let written = self.file.get_ref().trim();
        (
            written.to_string(),
            scenario_path
                .parent()
                .unwrap_or(Path::new(""))
                .join(written),
        )
    }
}

/// How fast a recording is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayTiming {
    /// The recording's own timing.
    Original,
    /// `scaled:F`: F times as fast (2.0 halves every gap).
    Scaled(f64),
}

impl ReplayTiming {
    /// How many times as fast as recorded.
    pub fn speed(self) -> f64 {
        match self {
            ReplayTiming::Original => 1.0,
            ReplayTiming::Scaled(speed) => speed,
        }
    }
}

impl std::fmt::Display for ReplayTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayTiming::Original => f.write_str("original"),
            ReplayTiming::Scaled(speed) => write!(f, "scaled:{speed:?}"),
        }
    }
}

impl std::str::FromStr for ReplayTiming {
    type Err = String;
    /// `original` or `scaled:F` with 0 < F <= 1000.
    fn from_str(text: &str) -> Result<ReplayTiming, String> {
        let text = text.trim();
        if text == "original" {
            return Ok(ReplayTiming::Original);
        }
        let usage = || {
            format!(
                "`{text}` is not a timing: use \"original\" or \"scaled:F\" (F times as fast, \
                 0 < F <= 1000), e.g. \"scaled:2.0\""
            )
        };
        let speed: f64 = text
            .strip_prefix("scaled:")
            .ok_or_else(usage)?
            .trim()
            .parse()
            .map_err(|_| usage())?;
        if speed.is_finite() && speed > 0.0 && speed <= 1000.0 {
            Ok(ReplayTiming::Scaled(speed))
        } else {
            Err(usage())
        }
    }
}

/// A validated `[replay]`.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    pub timing: ReplayTiming,
    /// The arrivals file, as found from the scenario's directory.
    pub file: PathBuf,
    /// Sorted by offset; `request` is an index into the scenario's `[[requests]]`.
    pub arrivals: Arc<[ReplayArrival]>,
}

impl ReplaySpec {
    /// The schedule of a load phase replaying this recording; `warmup` is the recording's own
    /// first part (see [`SchedulePlan::replay`]).
    pub fn schedule_plan(&self, warmup: Duration) -> SchedulePlan {
        SchedulePlan::replay(warmup, Arc::clone(&self.arrivals), self.timing.speed())
    }
}

/// `[replay]`, once the requests are known: refuses what a replay replaces (a rate, stages, a
/// duration, `[find_max]`, the closed model), reads the arrivals and sets `load`'s duration and
/// its one stage (the replay's mean rate, for run.json and the report) from them.
pub(super) fn parse_replay(
    cx: &Cx,
    raw: &RawScenario,
    scenario_path: &Path,
    load: &mut LoadSpec,
    requests: usize,
) -> Result<(), ScenarioError> {
    let Some(raw_replay) = &raw.replay else {
        return Ok(());
    };
    let raw_load = raw.load.get_ref();
    let model_span = raw_load.model.as_ref().map(Spanned::span);
    let refused = [
        (
            (load.model == LoadModel::Closed).then(|| model_span.unwrap_or(raw_replay.span())),
            "load.model",
            "it is an open model; remove model = \"closed\" or [replay]",
        ),
        (
            raw_load.rate_per_sec.as_ref().map(Spanned::span),
            "load.rate_per_sec",
            "remove rate_per_sec (its rate is the recording's) or [replay]",
        ),
        (
            raw_load.stages.as_ref().map(Spanned::span),
            "load.stages",
            "remove [[load.stages]] or [replay]",
        ),
        (
            raw_load.duration.as_ref().map(Spanned::span),
            "load.duration",
            "it lasts as long as the recording; remove duration (cut a recording with \
             `apibench import-… --limit N`)",
        ),
        (
            raw.find_max.as_ref().map(Spanned::span),
            "find_max",
            "[find_max] ramps constant rates; remove [find_max] or [replay]",
        ),
    ];
    for (span, field, what) in refused {
        if let Some(span) = span {
            return Err(cx.err(
                &span,
                field,
                &format!("a replay sends what the recording sent, when it sent it: {what}"),
            ));
        }
    }
    let r = raw_replay.get_ref();
    let timing = match &r.timing {
        None => ReplayTiming::Original,
        Some(t) => t
            .get_ref()
            .parse()
            .map_err(|m: String| cx.err(&t.span(), "replay.timing", &m))?,
    };
    let name = r.file.get_ref().trim();
    if name.is_empty() {
        return Err(cx.err(
            &r.file.span(),
            "replay.file",
            "must name the arrivals file, e.g. \"checkout.replay.csv\" (next to this scenario)",
        ));
    }
    let file = scenario_path.parent().unwrap_or(Path::new("")).join(name);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        cx.err(
            &r.file.span(),
            "replay.file",
            &format!(
                "cannot read {}: {e} (the path is relative to the scenario's directory)",
                file.display()
            ),
        )
    })?;
    let arrivals: Arc<[ReplayArrival]> = parse_arrivals(&text, &file, requests)?.into();
    let spec = ReplaySpec {
        timing,
        file,
        arrivals,
    };
    let plan = spec.schedule_plan(load.warmup);
    if plan.warmup_slots() >= plan.total_slots() {
        let span = raw_load
            .warmup
            .as_ref()
            .map_or(raw_replay.span(), |w| w.span());
        return Err(cx.err(
            &span,
            "load.warmup",
            &format!(
                "with a replay the warm-up is the recording's first {} ms, but the last of its {} \
                 requests is due at {} ms ({timing}): nothing would be measured; shorten the \
                 warm-up",
                load.warmup.as_millis(),
                plan.total_slots(),
                plan.offset_of(plan.total_slots().saturating_sub(1))
                    .unwrap_or_default()
                    .as_millis()
            ),
        ));
    }
    let measured = plan.end_offset().saturating_sub(load.warmup);
    load.stages = vec![Stage {
        rate_per_sec: plan.measured_rate_per_sec(),
        duration: measured,
    }];
    load.duration = measured;
    load.replay = Some(spec);
    Ok(())
}

/// The arrivals file: [`REPLAY_FILE_HEADER`], then `offset_us,request` per line (offsets from
/// the recording's first request, never decreasing; `request` an index into `[[requests]]`).
/// Blank lines and `#` comments are skipped.
pub fn parse_arrivals(
    text: &str,
    file: &Path,
    requests: usize,
) -> Result<Vec<ReplayArrival>, ScenarioError> {
    let err = |line: usize, column: usize, field: &str, message: String| ScenarioError::Invalid {
        file: file.display().to_string(),
        line,
        column,
        field: field.to_string(),
        message,
    };
    let mut arrivals = Vec::new();
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == REPLAY_FILE_HEADER => {}
        _ => {
            return Err(err(
                1,
                1,
                "(header)",
                format!("the first line must be `{REPLAY_FILE_HEADER}`"),
            ));
        }
    }
    let mut previous: Option<(u64, usize)> = None;
    for (index, line) in lines {
        let line_number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((offset_text, request_text)) = line.split_once(',') else {
            return Err(err(
                line_number,
                1,
                "(line)",
                format!("`{trimmed}` is not `offset_us,request`"),
            ));
        };
        let offset_us: u64 = offset_text.trim().parse().map_err(|_| {
            err(
                line_number,
                1,
                "offset_us",
                format!(
                    "`{}` is not a whole number of microseconds",
                    offset_text.trim()
                ),
            )
        })?;
        let request_column = offset_text.chars().count() + 2;
        let request = request_text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|r| (*r as usize) < requests)
            .ok_or_else(|| {
                err(
                    line_number,
                    request_column,
                    "request",
                    format!(
                        "`{}` is not a request: the scenario has {requests} [[requests]], \
                         numbered 0..={} in file order",
                        request_text.trim(),
                        requests.saturating_sub(1)
                    ),
                )
            })?;
        if let Some((before, before_line)) = previous
            && offset_us < before
        {
            return Err(err(
                line_number,
                1,
                "offset_us",
                format!(
                    "{offset_us} comes after {before} (line {before_line}): offsets must not \
                     decrease"
                ),
            ));
        }
        previous = Some((offset_us, line_number));
        arrivals.push(ReplayArrival { offset_us, request });
    }
    if arrivals.is_empty() {
        return Err(err(
            1,
            1,
            "(file)",
            "no arrivals: a replay needs at least one `offset_us,request` line".into(),
        ));
    }
    Ok(arrivals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals(text: &str) -> Result<Vec<ReplayArrival>, String> {
        parse_arrivals(text, Path::new("x.replay.csv"), 3).map_err(|e| e.to_string())
    }

    #[test]
    fn arrivals_parse_and_bad_lines_are_named_with_file_line_and_field() {
        assert_eq!(
            arrivals("offset_us,request\n0,2\n# a comment\n\n1500,0\n1500,1\n"),
            Ok(vec![
                ReplayArrival {
                    offset_us: 0,
                    request: 2
                },
                ReplayArrival {
                    offset_us: 1500,
                    request: 0
                },
                ReplayArrival {
                    offset_us: 1500,
                    request: 1
                },
            ])
        );
        let cases = [
            ("0,1\n", "x.replay.csv:1:1: (header)"),
            (
                "offset_us,request\n0,1\nabc,1\n",
                "x.replay.csv:3:1: offset_us: `abc`",
            ),
            (
                "offset_us,request\n10,3\n",
                "x.replay.csv:2:4: request: `3` is not a request",
            ),
            ("offset_us,request\n10,-1\n", "x.replay.csv:2:4: request"),
            ("offset_us,request\n10\n", "x.replay.csv:2:1: (line)"),
            (
                "offset_us,request\n10,0\n5,0\n",
                "x.replay.csv:3:1: offset_us: 5 comes after 10 (line 2)",
            ),
            (
                "offset_us,request\n",
                "x.replay.csv:1:1: (file): no arrivals",
            ),
        ];
        for (text, expected) in cases {
            let message = arrivals(text).expect_err(text);
            assert!(message.starts_with(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn timings_parse_and_refuse_nonsense() {
        assert_eq!("original".parse(), Ok(ReplayTiming::Original));
        assert_eq!("scaled:2.0".parse(), Ok(ReplayTiming::Scaled(2.0)));
        assert_eq!(
            "scaled:0.5".parse::<ReplayTiming>().map(|t| t.speed()),
            Ok(0.5)
        );
        for bad in [
            "",
            "fast",
            "scaled:",
            "scaled:0",
            "scaled:-1",
            "scaled:inf",
            "scaled:NaN",
        ] {
            assert!(bad.parse::<ReplayTiming>().is_err(), "{bad}");
        }
        assert_eq!(ReplayTiming::Scaled(2.0).to_string(), "scaled:2.0");
        assert_eq!(
            ReplayTiming::Scaled(2.0).to_string().parse(),
            Ok(ReplayTiming::Scaled(2.0))
        );
    }
}
