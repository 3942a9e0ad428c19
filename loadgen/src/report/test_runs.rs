//! Saved runs built in memory for the report's unit tests.

use crate::results::{Measurement, Summary, VariantSummary};
use crate::saved::{IntervalPoint, ResourceRow, SavedMeasurement, SavedRun, SavedVariant};

/// A run of one variant and one measurement with these chart points and resource rows.
pub fn run_of(
    duration_s: u64,
    chart_bucket_s: u64,
    chart_intervals: Vec<IntervalPoint>,
    resources: Vec<ResourceRow>,
) -> SavedRun {
    let figures = Measurement {
        warmup_ms: 60_000,
        measured_duration_ms: duration_s * 1000 - 60_000,
        target_rate_per_sec: Some(100.0),
        ..Measurement::default()
    };
    let summary = VariantSummary {
        name: "soak".into(),
        target_kind: "api".into(),
        knobs: Default::default(),
        load_model: crate::scenario::LoadModel::Open,
        latency_origin: "scheduled".into(),
        figures,
        repetitions: Vec::new(),
    };
    SavedRun {
        dir: "run".into(),
        summary: Summary {
            schema_version: crate::results::SCHEMA_VERSION,
            scenario: "soak".into(),
            load_model: crate::scenario::LoadModel::Open,
            partial: false,
            repeat: 1,
            started_at: String::new(),
            finished_at: String::new(),
            variants: vec![summary.clone()],
            migration_table: None,
            shards: Vec::new(),
            baseline: None,
        },
        info: None,
        variants: vec![SavedVariant {
            summary,
            measurements: vec![SavedMeasurement {
                repetition: 1,
                intervals: chart_intervals.clone(),
                chart_intervals,
                chart_bucket_s,
                merged: crate::recorder::new_histogram(),
                resources,
                drift: None,
            }],
            merged: crate::recorder::new_histogram(),
        }],
    }
}
