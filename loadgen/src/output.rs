//! What the user sees: a progress bar per variant on stderr, the summary table on stdout.
//! A latency figure is always printed next to the rate that produced it.

use crate::recorder::LiveStats;
use crate::results::{Measurement, Summary};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

pub fn format_bytes(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".into(),
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
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
        let style = ProgressStyle::with_template(
            "{prefix:>14} [{elapsed_precise}] {bar:25.cyan/blue} {pos}/{len}s {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_prefix(label.to_string());
        let ticking = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(250));
            loop {
                interval.tick().await;
                ticking.set_position(started.elapsed().as_secs());
                if let Ok(live) = live.lock() {
                    ticking.set_message(format!(
                        "{} req/s  p99 {} at that rate  errors {}  done {}",
                        live.recent_rate_per_sec,
                        format_us(live.recent_p99_us),
                        live.errors,
                        live.completed
                    ));
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

/// The end-of-run table (stdout).
pub fn summary_table(summary: &Summary) -> String {
    let mut out = String::new();
    let header = format!(
        "{:<18} {:<6} {:>19} {:>9} {:>9} {:>9} {:>8} {:>10} {:<5}",
        "variant",
        "model",
        "rate target/achvd",
        "p50",
        "p99",
        "p99.9",
        "errors",
        "RSS peak",
        "valid"
    );
    out.push_str(&header);
    out.push('\n');
    for v in &summary.variants {
        let m: &Measurement = &v.figures;
        let target = m
            .target_rate_per_sec
            .map_or("closed".to_string(), |r| format!("{r:.0}"));
        let valid = if m.valid {
            if m.saturated {
                "yes (saturated)"
            } else {
                "yes"
            }
        } else {
            "NO"
        };
        out.push_str(&format!(
            "{:<18} {:<6} {:>19} {:>9} {:>9} {:>9} {:>8} {:>10} {:<5}\n",
            v.name,
            v.load_model.to_string(),
            format!("{target}/{:.1}/s", m.throughput_rps),
            format_us(m.latency_us.p50),
            format_us(m.latency_us.p99),
            format_us(m.latency_us.p999),
            m.errors,
            format_bytes(m.target_rss_peak_bytes),
            valid
        ));
        if let Some(reason) = &m.invalid_reason {
            out.push_str(&format!("{:<18} invalid: {reason}\n", ""));
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
        "{origin}; percentiles are at the achieved rate shown\n"
    ));
    if summary.partial {
        out.push_str("PARTIAL: the run was interrupted; figures cover what was measured\n");
    }
    out.push_str(&ramp_table(summary));
    if let Some(table) = crate::migration::table(summary) {
        out.push_str(&crate::migration::render_text(&table));
    }
    out
}

/// The `[find_max]` ramp per variant: each stage's p99 at its rate, and the maximum.
fn ramp_table(summary: &Summary) -> String {
    if summary.variants.iter().all(|v| v.figures.stages.is_empty()) {
        return String::new();
    }
    let mut out = String::from(
        "\nmax sustainable throughput (ramp; p99 per stage at its rate, ✓ = within budget)\n",
    );
    for v in &summary.variants {
        let stages: Vec<String> = v
            .figures
            .stages
            .iter()
            .map(|s| {
                format!(
                    "{:.0}/s {} {}",
                    s.rate_per_sec,
                    format_us(s.p99_us),
                    if s.within_budget { "✓" } else { "✗" }
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<18} {:>26}  {}\n",
            v.name,
            crate::migration::max_sustainable_text(v),
            stages.join(" · ")
        ));
    }
    out
}
