//! The Prometheus text exposition (format 0.0.4) of a [`Snapshot`]: what `GET /metrics`
//! answers. Pure text from figures already collected; it must never compute a figure of its own
//! (a rate, a percentile) — Prometheus does that from the counters and buckets.
//!
//! Names follow Prometheus' conventions: an `apibench_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters, histograms with cumulative `le` buckets ending at
//! `+Inf` plus `_sum` and `_count`. A family with no sample yet is left out.

use super::{Buckets, Snapshot};
use std::fmt::Write as _;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = Exposition::default();

    if let Some(phase) = &snapshot.phase {
        out.family(
            "apibench_phase_info",
            "gauge",
            "The load phase running now (or last): its variant, kind (measure, ramp, bisect) and repetition.",
        );
        out.sample(
            "apibench_phase_info",
            &[
                ("scenario", snapshot.scenario.as_str()),
                ("variant", phase.variant.as_str()),
                ("phase", phase.phase.as_str()),
                ("repetition", &phase.repetition.to_string()),
            ],
            1.0,
        );
    }

    let variants = &snapshot.variants;
    let requests = variants
        .iter()
        .flat_map(|(v, f)| f.by_request.iter().map(move |(r, c)| (v, r, c)));
    out.counter_family(
        "apibench_requests_total",
        "Requests completed after the warm-up, by variant and request name (as summary.json counts them).",
        requests.clone().map(|(v, r, c)| {
            (
                vec![("variant", v.to_string()), ("request", r.to_string())],
                c.0 as f64,
            )
        }),
    );
    out.counter_family(
        "apibench_request_errors_total",
        "Failed requests after the warm-up (unexpected status, no response, timeout), by variant and request name.",
        requests.map(|(v, r, c)| {
            (
                vec![("variant", v.to_string()), ("request", r.to_string())],
                c.1 as f64,
            )
        }),
    );
    out.counter_family(
        "apibench_responses_total",
        "Requests completed after the warm-up by HTTP status (0: no response).",
        variants.iter().flat_map(|(v, f)| {
            f.by_status.iter().map(move |(status, n)| {
                (
                    vec![("variant", v.to_string()), ("status", status.to_string())],
                    *n as f64,
                )
            })
        }),
    );
    out.counter_family(
        "apibench_warmup_requests_total",
        "Requests completed during the warm-up (not in the run's figures).",
        variants
            .iter()
            .map(|(v, f)| (vec![("variant", v.to_string())], f.warmup_requests as f64)),
    );

    out.histogram_family(
        "apibench_request_duration_seconds",
        "Request latency as the run records it (open model: from the scheduled send time), every completed request including the warm-up, by outcome.",
        variants.iter().flat_map(|(v, f)| {
            [
                (vec![("variant", v.to_string()), ("outcome", "success".into())], &f.latency_success),
                (vec![("variant", v.to_string()), ("outcome", "error".into())], &f.latency_error),
            ]
        }),
    );
    out.histogram_family(
        "apibench_send_lag_seconds",
        "The generator's own lateness per send: actual send minus the moment it could have gone.",
        variants
            .iter()
            .map(|(v, f)| (vec![("variant", v.to_string())], &f.send_lag)),
    );

    out.gauge(
        "apibench_users_busy",
        "Users waiting for a response now, over every generator worker.",
        Some(snapshot.users_busy as f64),
    );
    let r = snapshot.resources.unwrap_or_default();
    let has = snapshot.resources.is_some();
    let cores = |percent: Option<f64>| percent.map(|p| p / 100.0);
    out.gauge(
        "apibench_target_resident_memory_bytes",
        "Resident memory of the target's process tree (summed per process: an upper bound).",
        r.target_rss_bytes.map(|b| b as f64),
    );
    out.gauge(
        "apibench_target_cpu_ratio",
        "CPU used by the target's process tree over the last sample, in cores (1 = one core busy).",
        cores(r.target_cpu_percent),
    );
    out.gauge(
        "apibench_target_processes",
        "Processes in the target's tree.",
        r.target_processes.map(f64::from),
    );
    out.gauge(
        "apibench_postgres_resident_memory_bytes",
        "Resident memory of PostgreSQL's processes (shared buffers counted once per process).",
        r.postgres_rss_bytes.map(|b| b as f64),
    );
    out.gauge(
        "apibench_postgres_proportional_memory_bytes",
        "Proportional set size (PSS) of PostgreSQL's processes: shared pages divided among them.",
        r.postgres_pss_bytes.map(|b| b as f64),
    );
    out.gauge(
        "apibench_postgres_cpu_ratio",
        "CPU used by PostgreSQL over the last sample, in cores.",
        cores(r.postgres_cpu_percent),
    );
    out.gauge(
        "apibench_generator_resident_memory_bytes",
        "Resident memory of apibench itself.",
        has.then_some(r.generator_rss_bytes as f64),
    );
    out.gauge(
        "apibench_generator_cpu_ratio",
        "CPU used by apibench itself over the last sample, in cores.",
        has.then(|| r.generator_cpu_percent / 100.0),
    );
    out.text
}

/// Seconds, exactly, from µs: `2_500` → `0.0025` (no float rounding in a bucket bound).
pub(super) fn seconds_from_us(us: u64) -> String {
    let (whole, micros) = (us / 1_000_000, us % 1_000_000);
    if micros == 0 {
        return whole.to_string();
    }
    let fraction = format!("{micros:06}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// A label value with `\`, `"` and newlines escaped.
pub(super) fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: integers without a fraction, `NaN` and infinities as the format spells them.
fn value_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", value_text(value));
    }

    fn counter_family(
        &mut self,
        name: &str,
        help: &str,
        samples: impl Iterator<Item = (Labels, f64)>,
    ) {
        let mut samples = samples.peekable();
        if samples.peek().is_none() {
            return;
        }
        self.family(name, "counter", help);
        for (labels, value) in samples {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.sample(name, &labels, value);
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: Option<f64>) {
        if let Some(value) = value {
            self.family(name, "gauge", help);
            self.sample(name, &[], value);
        }
    }

    fn histogram_family<'a>(
        &mut self,
        name: &str,
        help: &str,
        series: impl Iterator<Item = (Labels, &'a Buckets)>,
    ) {
        let mut series = series.peekable();
        if series.peek().is_none() {
            return;
        }
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (labels, buckets) in series {
            let base: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut cumulative = 0u64;
            for (bound_us, count) in buckets.bounds_us.iter().zip(&buckets.counts) {
                cumulative += count;
                let le = seconds_from_us(*bound_us);
                let mut with_le = base.clone();
                with_le.push(("le", &le));
                self.sample(&bucket, &with_le, cumulative as f64);
            }
            let mut with_le = base.clone();
            with_le.push(("le", "+Inf"));
            self.sample(&bucket, &with_le, buckets.count as f64);
            self.sample(&format!("{name}_sum"), &base, buckets.sum_seconds);
            self.sample(&format!("{name}_count"), &base, buckets.count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LiveState, PhaseInfo, ResourceReading};
    use super::*;
    use crate::recorder::{Recording, Sample};
    use std::time::Instant;

    fn snapshot_with_traffic(variant: &str, request: &str) -> Snapshot {
        let state = LiveState::new("sc\"en\\ario");
        let names = vec![request.to_string()];
        let feed = state.begin_phase(
            PhaseInfo {
                variant: variant.into(),
                phase: "measure".into(),
                repetition: 1,
                rate_per_sec: None,
            },
            &names,
        );
        let mut recording = Recording::new(&names);
        for (latency_us, completed) in [
            (800, 10),
            (3_000, 20),
            (3_000, 1_000_030),
            (90_000, 1_000_040),
        ] {
            recording.record(&Sample::success(0, latency_us, completed, false, 40));
        }
        let mut failed = Sample::success(0, 20_000, 1_000_050, false, 40);
        failed.error = true;
        failed.status = 503;
        recording.record(&failed);
        let mut published = Default::default();
        feed.publish_counts(&recording, &mut published, true);
        feed.intervals_closed(Instant::now(), &recording.take_intervals_before(u64::MAX));
        feed.set_resources(ResourceReading {
            target_rss_bytes: Some(12_345_678),
            target_cpu_percent: Some(150.0),
            target_processes: Some(1),
            generator_rss_bytes: 1_000,
            generator_cpu_percent: 20.0,
            ..ResourceReading::default()
        });
        state.set_users_busy(3);
        state.snapshot()
    }

    /// The sample lines of `name` (exactly that name, any labels).
    fn lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    fn value(line: &str) -> f64 {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value in {line}"))
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("two\nlines"), "two\\nlines");
        let text = render(&snapshot_with_traffic("v\"1", "get \\ \"user\"\n"));
        assert!(
            text.contains(
                r#"apibench_requests_total{variant="v\"1",request="get \\ \"user\"\n"} 5"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"scenario="sc\"en\\ario""#), "{text}");
        assert!(
            text.lines().all(|l| !l.is_empty()),
            "a raw newline in a label would split a sample"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_end_at_inf_and_match_sum_and_count() {
        let text = render(&snapshot_with_traffic("v", "r"));
        let buckets: Vec<&str> = lines(&text, "apibench_request_duration_seconds_bucket")
            .into_iter()
            .filter(|l| l.contains("outcome=\"success\""))
            .collect();
        assert_eq!(buckets.len(), super::super::LATENCY_BOUNDS_US.len() + 1);
        let counts: Vec<f64> = buckets.iter().map(|l| value(l)).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        let last = buckets.last().copied().unwrap_or_default();
        assert!(last.contains("le=\"+Inf\""), "{last}");
        assert_eq!(value(last), 4.0);
        // 800 µs is within 0.001 s, the two 3 ms within 0.005, 90 ms within 0.1.
        let at = |le: &str| {
            value(
                buckets
                    .iter()
                    .find(|l| l.contains(&format!("le=\"{le}\"")))
                    .unwrap_or_else(|| panic!("no le={le}")),
            )
        };
        assert_eq!((at("0.0005"), at("0.001"), at("0.0025")), (0.0, 1.0, 1.0));
        assert_eq!((at("0.005"), at("0.05"), at("0.1")), (3.0, 3.0, 4.0));
        let count = lines(&text, "apibench_request_duration_seconds_count");
        let sum = lines(&text, "apibench_request_duration_seconds_sum");
        let success = |ls: &[&str]| {
            value(
                ls.iter()
                    .find(|l| l.contains("success"))
                    .unwrap_or_else(|| panic!("no success series")),
            )
        };
        assert_eq!(success(&count), 4.0);
        assert!((success(&sum) - 0.0968).abs() < 0.001, "{}", success(&sum));
        // The failure went to its own series, and its status to the responses.
        assert!(text.contains(
            "apibench_request_duration_seconds_count{variant=\"v\",outcome=\"error\"} 1"
        ));
        assert!(text.contains("apibench_responses_total{variant=\"v\",status=\"503\"} 1"));
        assert!(text.contains("apibench_request_errors_total{variant=\"v\",request=\"r\"} 1"));
    }

    #[test]
    fn every_family_has_help_and_type_once_and_gauges_carry_units() {
        let text = render(&snapshot_with_traffic("v", "r"));
        for family in [
            "apibench_phase_info",
            "apibench_requests_total",
            "apibench_send_lag_seconds",
            "apibench_users_busy",
            "apibench_target_resident_memory_bytes",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {family} ")).count(),
                1,
                "{family}"
            );
        }
        assert_eq!(value(lines(&text, "apibench_users_busy")[0]), 3.0);
        assert_eq!(value(lines(&text, "apibench_target_cpu_ratio")[0]), 1.5);
        assert_eq!(
            value(lines(&text, "apibench_target_resident_memory_bytes")[0]),
            12_345_678.0
        );
        // Postgres is not watched: no sample rather than a made-up zero.
        assert!(lines(&text, "apibench_postgres_cpu_ratio").is_empty());
    }

    #[test]
    fn bounds_are_exact_decimal_seconds() {
        assert_eq!(seconds_from_us(100), "0.0001");
        assert_eq!(seconds_from_us(2_500), "0.0025");
        assert_eq!(seconds_from_us(1_000_000), "1");
        assert_eq!(seconds_from_us(2_500_000), "2.5");
        assert_eq!(value_text(f64::INFINITY), "+Inf");
        assert_eq!(value_text(3.0), "3");
    }
}
