//! What the user sees: a progress bar per variant on stderr, the summary table on stdout.
//! A latency figure is always printed next to the rate that produced it, and next to the
//! generator's own send lag (which it excludes), and every row says whose numbers they are: its
//! verdict (valid / saturated / invalid) with the reason under any row that is not plainly valid.
//!
//! The display helpers every view shares live here ([`verdict_state`], [`goodput_rps`],
//! [`format_rate`], [`stage_mark`]), so the terminal, the report and the migration table cannot
//! disagree about a row. The tables are returned as strings; the binary prints them.

use crate::recorder::LiveStats;
use crate::results::{Measurement, StageFigures, Summary};
use crate::verdict::State;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A merged run's shards, one line each: what each sent, its own lag and CPU, its start skew
/// and verdict (empty for a run that was not merged).
pub fn shard_table(shards: &[crate::shard::ShardRow]) -> String {
    if shards.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n{:<7} {:<20} {:>10} {:>10} {:>12} {:>8} {:>12}  {}\n",
        "shard", "host", "requests", "sent/s", "send-lag p99", "gen CPU", "start skew", "verdict"
    );
    for s in shards {
        out.push_str(&format!(
            "{:<7} {:<20} {:>10} {:>10.1} {:>12} {:>8} {:>12}  {}{}\n",
            s.index,
            s.host.chars().take(20).collect::<String>(),
            s.requests,
            s.achieved_send_rate_per_sec,
            format_us(s.send_lag_p99_us),
            s.generator_cpu_mean_percent
                .map_or_else(|| "-".into(), |c| format!("{c:.0} %")),
            s.start_skew_ms.map_or_else(
                || "unknown".into(),
                |k| format!(
                    "{k:.1} ± {:.1} ms",
                    s.start_skew_resolution_ms.unwrap_or(0.0)
                )
            ),
            s.verdict,
            s.invalid_reason
                .as_deref()
                .map_or_else(String::new, |r| format!(" — {r}")),
        ));
    }
    out
}

/// Human-readable microseconds.
pub fn format_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

/// A warning before a run starts (stderr, even with `--quiet`: it is about the figures' worth).
pub fn warn(text: &str) {
    eprintln!("apibench: warning: {text}");
}

/// Progress of the run's own steps (stderr; the caller skips it under `--quiet`).
pub fn note(text: &str) {
    eprintln!("apibench: {text}");
}

/// `[baseline]`: the database's ceiling and each variant's throughput as a fraction of it.
pub fn baseline_lines(summary: &Summary) -> String {
    let Some(b) = &summary.baseline else {
        return String::new();
    };
    let mut out = format!(
        "\ndatabase ceiling: {} {} point reads/s ({}; {} clients, {} s{}{})\n",
        b.tool,
        format_rate(b.tps),
        b.query,
        b.clients,
        b.seconds,
        b.cpus
            .as_deref()
            .map_or_else(String::new, |c| format!(", on CPUs {c}")),
        b.samples_note()
            .map_or_else(String::new, |note| format!("; {note}"))
    );
    for v in &summary.variants {
        if let Some(share) = crate::baseline::fraction_of_ceiling(b, &v.figures) {
            out.push_str(&format!(
                "  {}: {} {}{} req/s = {}{:.2} of the database's ceiling{}\n",
                v.name,
                share.what,
                share.bound(),
                format_rate(share.rate_per_sec),
                share.bound(),
                share.fraction,
                if v.figures.valid {
                    ""
                } else {
                    " (run not valid)"
                }
            ));
        }
    }
    out
}

pub fn format_bytes(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".into(),
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// A span of time as a clock shows it: "0:42" and "12:05" under an hour, "2:00:00" from one.
/// Whole seconds, rounded down.
pub fn format_clock(span: Duration) -> String {
    let total_s = span.as_secs();
    let (hours, minutes, seconds) = (total_s / 3600, total_s / 60 % 60, total_s % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

/// A count in a few characters: "8 400", "845 000", then three significant digits: "6.84 M",
/// "88.9 M", "1.20 G" (a long run's totals would otherwise push the progress line past the
/// terminal's width).
pub fn format_count(count: u64) -> String {
    let (scaled, unit) = match count {
        0..1_000_000 => return format_rate(count as f64),
        1_000_000..1_000_000_000 => (count as f64 / 1e6, "M"),
        _ => (count as f64 / 1e9, "G"),
    };
    let decimals = if scaled < 10.0 {
        2
    } else if scaled < 100.0 {
        1
    } else {
        0
    };
    format!("{scaled:.decimals$} {unit}")
}

/// The progress line after the bar: where the phase is in its plan, the latest complete 1 s
/// interval's rate and p99 (once there is one), and the totals. About 76 columns for a run of
/// hours at tens of thousands of requests per second (with the label and the bar: 100):
/// "1:02:03/2:00:00 57:57 left  12 345 req/s p99 12.3 ms  errors 12  done 88.9 M"
pub fn progress_message(elapsed: Duration, planned: Duration, live: &LiveStats) -> String {
    let mut text = format!(
        "{}/{} {} left",
        format_clock(elapsed),
        format_clock(planned),
        format_clock(planned.saturating_sub(elapsed))
    );
    if live.recent_interval.is_some() {
        text.push_str(&format!(
            "  {} req/s p99 {}",
            format_count(live.recent_rate_per_sec),
            format_us(live.recent_p99_us)
        ));
    }
    text.push_str(&format!(
        "  errors {}  done {}",
        format_count(live.errors),
        format_count(live.completed)
    ));
    text
}

/// A progress bar for one load phase, refreshed from the collector's live figures.
pub struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(
        label: &str,
        planned: Duration,
        live: Arc<Mutex<LiveStats>>,
        quiet: bool,
    ) -> Progress {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(planned.as_secs().max(1))
        };
        // 14 + 1 + 8 + 1 columns before the message: see `progress_message` for the rest.
        let style = ProgressStyle::with_template("{prefix:>14} {bar:8.cyan/blue} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_prefix(label.to_string());
        let ticking = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(250));
            loop {
                interval.tick().await;
                let elapsed = started.elapsed();
                ticking.set_position(elapsed.as_secs());
                if let Ok(live) = live.lock() {
                    ticking.set_message(progress_message(elapsed, planned, &live));
                }
            }
        });
        Progress { bar, ticker }
    }

    pub fn finish(self, note: &str) {
        self.ticker.abort();
        self.bar.finish_with_message(note.to_string());
    }
}

/// A rate with its thousands grouped by a space: "1 850", "200", "12 000".
pub fn format_rate(rate: f64) -> String {
    let digits = format!("{:.0}", rate.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if rate < 0.0 && digits != "0" {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The measurement's verdict. Files written before `verdict` existed (empty string) fall back to
/// `valid`/`saturated`; an aggregate of repetitions ("valid; saturated") takes the worst state.
/// `valid: false` is always invalid, whatever the string says.
pub fn verdict_state(m: &Measurement) -> State {
    if !m.valid || m.users_exhausted || m.verdict.contains(State::Invalid.as_str()) {
        State::Invalid
    } else if m.saturated || m.verdict.contains(State::Saturated.as_str()) {
        State::Saturated
    } else {
        State::Valid
    }
}

/// The one-sentence reason for the verdict; older files only have `invalid_reason`.
pub fn verdict_reason(m: &Measurement) -> Option<&str> {
    m.verdict_reason
        .as_deref()
        .or(m.invalid_reason.as_deref())
        .filter(|r| !r.is_empty())
}

/// A stage's verdict, with the same fallbacks (a stage written before verdicts existed is
/// invalid only when its generator was).
pub fn stage_state(s: &StageFigures) -> State {
    if s.client_limited || !s.generator_valid || s.verdict.contains(State::Invalid.as_str()) {
        State::Invalid
    } else if s.verdict.contains(State::Saturated.as_str()) {
        State::Saturated
    } else {
        State::Valid
    }
}

/// A ramp stage against its budget: "✓" within, "✗" over (the server's doing), or
/// "client-limited" (users exhausted or generator-bound: it says nothing about the server).
pub fn stage_mark(s: &StageFigures) -> &'static str {
    if s.client_limited {
        "client-limited"
    } else if s.within_budget {
        "✓"
    } else {
        "✗"
    }
}

/// Successful completions per second of the measured window — the throughput figure shown
/// everywhere; files written before goodput existed fall back to all completions.
pub fn goodput_rps(m: &Measurement) -> f64 {
    m.goodput_rps.unwrap_or(m.throughput_rps)
}

/// A ramp's stages by rate, so the bisection's stages sit between the ones they split.
pub fn stages_by_rate(m: &Measurement) -> Vec<&StageFigures> {
    let mut stages: Vec<&StageFigures> = m.stages.iter().collect();
    stages.sort_by(|a, b| a.rate_per_sec.total_cmp(&b.rate_per_sec));
    stages
}

/// A stage's goodput, falling back to its completions per second.
pub fn stage_goodput_rps(s: &StageFigures) -> f64 {
    s.goodput_rps.unwrap_or(s.achieved_rps)
}

/// The end-of-run table (stdout).
pub fn summary_table(summary: &Summary) -> String {
    let row = |cells: [&str; 10]| {
        format!(
            "{:<18} {:<6} {:>20} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8],
            cells[9]
        )
    };
    let mut out = row([
        "variant",
        "model",
        "goodput target/achvd",
        "p50",
        "p99",
        "p99.9",
        "lag p99",
        "errors",
        "RSS peak",
        "verdict",
    ]);
    for v in &summary.variants {
        let m: &Measurement = &v.figures;
        let target = m
            .target_rate_per_sec
            .map_or("closed".to_string(), |r| format!("{r:.0}"));
        let state = verdict_state(m);
        let verdict = match state {
            State::Valid => "valid",
            State::Saturated => "SATURATED",
            State::Invalid => "INVALID",
        };
        out.push_str(&row([
            &v.name,
            &v.load_model.to_string(),
            &format!("{target}/{:.1}/s", goodput_rps(m)),
            &format_us(m.latency_us.p50),
            &format_us(m.latency_us.p99),
            &format_us(m.latency_us.p999),
            &if m.send_lag_us.count > 0 {
                format_us(m.send_lag_us.p99)
            } else {
                "-".into()
            },
            &m.errors.to_string(),
            &format_bytes(m.target_rss_peak_bytes),
            verdict,
        ]));
        if state != State::Valid {
            let reason = verdict_reason(m).unwrap_or(match state {
                State::Saturated => "every user was busy past its slots (the server's backlog)",
                _ => "the measurement could not be trusted",
            });
            out.push_str(&format!("{:<18} {}: {reason}\n", "", state.as_str()));
        }
    }
    let origin = match summary.load_model {
        crate::scenario::LoadModel::Open => {
            "latency from the scheduled send time (open model, coordinated-omission corrected)"
        }
        crate::scenario::LoadModel::Closed => {
            "CLOSED model: latency from the actual send; a stalled server slows the load instead of showing up here"
        }
    };
    out.push_str(&format!(
        "{origin}; percentiles are at the goodput shown (successful requests only)\n"
    ));
    out.push_str(
        "latency excludes the generator's own send lag, shown apart (lag p99: actual send − the \
         moment it could have gone)\n",
    );
    if summary.partial {
        out.push_str("PARTIAL: the run was interrupted; figures cover what was measured\n");
    }
    for v in &summary.variants {
        if let Some(note) = &v.figures.stopped_early {
            out.push_str(&format!(
                "STOPPED EARLY: {}: {note}; figures cover what was sent\n",
                v.name
            ));
        }
        if v.figures.flow_steps_skipped > 0 {
            out.push_str(&format!(
                "{}: {} flow steps skipped after a failed step (see the per-step errors)\n",
                v.name, v.figures.flow_steps_skipped
            ));
        }
    }
    out.push_str(&ramp_table(summary));
    out.push_str(&faults_lines(summary));
    out.push_str(&baseline_lines(summary));
    for table in crate::migration::tables(summary) {
        out.push_str(&crate::migration::render_text(&table));
    }
    out
}

/// `[[faults]]`: a line per fault of each measurement (errors and statuses, recovery).
fn faults_lines(summary: &Summary) -> String {
    let mut out = String::new();
    for v in &summary.variants {
        let measurements = crate::saved::measurements_of(v);
        for (k, m) in measurements.iter().enumerate() {
            let name = if measurements.len() > 1 {
                format!("{} #{}", v.name, k + 1)
            } else {
                v.name.clone()
            };
            for fault in &m.faults {
                out.push_str(&format!(
                    "{name:<18} {}\n",
                    crate::faults::record_line(fault)
                ));
            }
        }
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "\nfaults (at = after the warm-up; recovered = first 1 s interval without errors and p99 \
         within {}x the pre-fault p99)\n{out}",
        crate::faults::recovery::RECOVERED_P99_FACTOR
    )
}

/// The `[find_max]` ramp per variant: each stage's p99 at its rate and its mark, and the maximum
/// with its resolution.
fn ramp_table(summary: &Summary) -> String {
    if summary.variants.iter().all(|v| v.figures.stages.is_empty()) {
        return String::new();
    }
    let mut out = String::from(
        "\nmax sustainable throughput (ramp; p99 per stage at its rate: ✓ within budget, ✗ over \
         budget, client-limited = users exhausted or generator-bound, never the server's ceiling \
         (a stage whose server's own p99 was over budget is ✗ even then); * = added by \
         bisection)\n",
    );
    let maxima: Vec<String> = summary
        .variants
        .iter()
        .map(crate::migration::max_sustainable_text)
        .collect();
    let width = maxima.iter().map(|m| m.chars().count()).max().unwrap_or(0);
    for (v, max) in summary.variants.iter().zip(&maxima) {
        let stages: Vec<String> = stages_by_rate(&v.figures)
            .iter()
            .map(|s| {
                format!(
                    "{}{}/s {} {}",
                    if s.bisection { "*" } else { "" },
                    format_rate(s.rate_per_sec),
                    format_us(s.p99_us),
                    stage_mark(s)
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<18} {max:>width$}  {}\n",
            v.name,
            stages.join(" · ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Percentiles, VariantSummary};
    use crate::scenario::LoadModel;

    fn variant(name: &str, figures: Measurement) -> VariantSummary {
        VariantSummary {
            name: name.into(),
            target_kind: "api".into(),
            knobs: Default::default(),
            load_model: LoadModel::Open,
            latency_origin: "scheduled".into(),
            repetitions: vec![figures.clone()],
            figures,
        }
    }

    fn summary(variants: Vec<VariantSummary>) -> Summary {
        Summary {
            schema_version: 1,
            scenario: "t".into(),
            load_model: LoadModel::Open,
            partial: false,
            repeat: 1,
            started_at: String::new(),
            finished_at: String::new(),
            variants,
            migration_table: None,
            shards: Vec::new(),
            baseline: None,
        }
    }

    fn measured(verdict: &str, reason: &str) -> Measurement {
        Measurement {
            valid: verdict != "invalid",
            saturated: verdict == "saturated",
            verdict: verdict.into(),
            verdict_reason: Some(reason.into()),
            invalid_reason: (verdict == "invalid").then(|| reason.into()),
            target_rate_per_sec: Some(500.0),
            throughput_rps: 499.0,
            goodput_rps: Some(480.0),
            requests: 1000,
            latency_us: Percentiles {
                p50: 300,
                p99: 2_500,
                ..Percentiles::default()
            },
            send_lag_us: Percentiles {
                p50: 40,
                p99: 37_000,
                max: 52_000,
                count: 1000,
                ..Percentiles::default()
            },
            ..Measurement::default()
        }
    }

    #[test]
    fn the_table_shows_goodput_send_lag_and_every_reason_but_a_plain_valid_ones() {
        let text = summary_table(&summary(vec![
            variant(
                "healthy",
                measured("valid", "generator healthy: send-lag p99 0.04 ms"),
            ),
            variant(
                "slow",
                measured("saturated", "server saturated: 12.0 % of sends waited"),
            ),
            variant(
                "starved",
                measured("invalid", "generator-bound, not the server"),
            ),
        ]));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("goodput") && lines[0].contains("lag p99"),
            "{text}"
        );
        // Goodput (480), not all completions (499), is the throughput figure.
        assert!(lines[1].contains("500/480.0/s"), "{text}");
        assert!(
            lines[1].contains("37.0 ms"),
            "send-lag p99 beside latency: {text}"
        );
        assert!(lines[1].trim_end().ends_with("valid"), "{text}");
        assert!(
            !text.contains("generator healthy"),
            "a valid row has no reason line"
        );
        assert!(lines[2].trim_end().ends_with("SATURATED"), "{text}");
        assert!(
            lines[3].contains("saturated: server saturated: 12.0 % of sends waited"),
            "{text}"
        );
        assert!(lines[4].trim_end().ends_with("INVALID"), "{text}");
        assert!(
            lines[5].contains("invalid: generator-bound, not the server"),
            "{text}"
        );
        assert!(
            text.contains("latency excludes the generator's own send lag, shown apart"),
            "{text}"
        );
    }

    #[test]
    fn files_without_a_verdict_string_still_say_whose_numbers_they_are() {
        let mut old = measured("", "");
        old.verdict_reason = None;
        old.goodput_rps = None;
        assert_eq!(verdict_state(&old), State::Valid);
        assert_eq!(goodput_rps(&old), 499.0);
        old.saturated = true;
        assert_eq!(verdict_state(&old), State::Saturated);
        old.valid = false;
        old.invalid_reason = Some("generator late".into());
        assert_eq!(verdict_state(&old), State::Invalid);
        assert_eq!(verdict_reason(&old), Some("generator late"));
        // Repetitions aggregate their strings: the worst state wins.
        let mut merged = measured("valid; saturated", "a; b");
        merged.saturated = false;
        assert_eq!(verdict_state(&merged), State::Saturated);
    }

    #[test]
    fn the_ramp_marks_client_limited_and_bisection_stages_and_a_lower_bound() {
        let stage = |rate: f64, ok: bool, client_limited: bool, bisection: bool| StageFigures {
            rate_per_sec: rate,
            p99_us: 4_000,
            requests: 100,
            generator_valid: !client_limited,
            within_budget: ok,
            client_limited,
            bisection,
            ..StageFigures::default()
        };
        let mut m = measured("valid", "healthy");
        m.stages = vec![
            stage(1600.0, true, false, false),
            stage(3200.0, false, false, false),
            stage(2400.0, true, false, true),
            stage(2800.0, false, true, true),
        ];
        m.max_sustainable_rps = Some(2400.0);
        m.max_sustainable_resolution_rps = Some(400.0);
        m.max_sustainable_is_lower_bound = true;
        let text = summary_table(&summary(vec![variant("tuned", m.clone())]));
        let ramp = text
            .lines()
            .find(|l| l.starts_with("tuned") && l.contains("1 600/s"))
            .unwrap_or_else(|| panic!("no ramp row: {text}"));
        assert!(ramp.contains("≥ 2 400 req/s"), "{ramp}");
        assert!(ramp.contains("*2 800/s 4.0 ms client-limited"), "{ramp}");
        assert!(ramp.contains("*2 400/s 4.0 ms ✓"), "{ramp}");
        assert!(ramp.contains("3 200/s 4.0 ms ✗"), "{ramp}");
        // Sorted by rate, bisection stages in place.
        let at = |s: &str| ramp.find(s).unwrap_or(usize::MAX);
        assert!(at("1 600/s") < at("2 400/s") && at("2 800/s") < at("3 200/s"));

        // An exact ceiling carries its resolution.
        m.max_sustainable_is_lower_bound = false;
        m.stages[3].client_limited = false;
        let text = summary_table(&summary(vec![variant("tuned", m)]));
        assert!(text.contains("2 400 req/s ±400"), "{text}");
    }

    #[test]
    fn clocks_read_as_minutes_under_an_hour_and_hours_from_one() {
        let clock = |s: u64| format_clock(Duration::from_secs(s));
        assert_eq!(clock(0), "0:00");
        assert_eq!(clock(42), "0:42");
        assert_eq!(clock(725), "12:05");
        assert_eq!(clock(3_599), "59:59");
        assert_eq!(clock(3_600), "1:00:00");
        assert_eq!(clock(7_323), "2:02:03");
        assert_eq!(clock(100 * 3_600), "100:00:00");
        assert_eq!(
            format_clock(Duration::from_millis(1_999)),
            "0:01",
            "rounded down"
        );
    }

    #[test]
    fn the_progress_line_shows_plan_latest_interval_and_totals_within_100_columns() {
        let mut live = LiveStats {
            completed: 88_901_234,
            errors: 12,
            recent_interval: Some(3_722),
            recent_p99_us: 12_345,
            recent_rate_per_sec: 12_345,
        };
        let text = progress_message(
            Duration::from_secs(3_723),
            Duration::from_secs(7_200),
            &live,
        );
        assert_eq!(
            text,
            "1:02:03/2:00:00 57:57 left  12 345 req/s p99 12.3 ms  errors 12  done 88.9 M"
        );
        // The label (14) and the bar (8) with their spaces take 24 columns.
        assert!(24 + text.chars().count() <= 100, "{text}");
        live.errors = 1_234_567;
        let text = progress_message(
            Duration::from_secs(3_723),
            Duration::from_secs(7_200),
            &live,
        );
        assert!(text.contains("errors 1.23 M"), "{text}");

        // Seconds-long phases read as m:ss; before the first interval closes, no rate yet; past
        // the plan (the drain), nothing is left.
        let start = LiveStats::default();
        let text = progress_message(Duration::from_secs(0), Duration::from_secs(30), &start);
        assert_eq!(text, "0:00/0:30 0:30 left  errors 0  done 0");
        let text = progress_message(Duration::from_secs(31), Duration::from_secs(30), &live);
        assert!(
            text.starts_with("0:31/0:30 0:00 left  12 345 req/s"),
            "{text}"
        );
    }

    #[test]
    fn counts_stay_short() {
        assert_eq!(format_count(8_400), "8 400");
        assert_eq!(format_count(999_999), "999 999");
        assert_eq!(format_count(6_840_000), "6.84 M");
        assert_eq!(format_count(88_901_234), "88.9 M");
        assert_eq!(format_count(123_456_789), "123 M");
        assert_eq!(format_count(1_200_000_000), "1.20 G");
    }

    #[test]
    fn rates_group_thousands() {
        assert_eq!(format_rate(1850.0), "1 850");
        assert_eq!(format_rate(200.0), "200");
        assert_eq!(format_rate(12_000.4), "12 000");
        assert_eq!(format_rate(1_234_567.0), "1 234 567");
    }
}
