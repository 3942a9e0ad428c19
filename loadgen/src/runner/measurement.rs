//! A recording → a [`Measurement`]: throughput, goodput and drain over the measured window, the
//! percentiles, the generator's self-check ([`verdict`]), resources. The runner calls it after
//! each load phase; `apibench merge` calls it on the shards' recordings added together, so a
//! merged run's figures are computed exactly as one process's.

use super::*;

/// The schedule's end from its start, µs: completions after it are the drain.
pub(super) fn window_end_us(plan: &SchedulePlan) -> u64 {
    u64::try_from(plan.end_offset().as_micros()).unwrap_or(u64::MAX)
}

/// What a load phase knew besides its recording.
pub struct PhaseFacts<'a> {
    pub model: LoadModel,
    pub max_error_rate: f64,
    pub outcome: &'a engine::EngineOutcome,
    pub resources: &'a ResourceSummary,
    /// Stopped early (Ctrl-C).
    pub partial: bool,
    /// The CPUs the generator may run on ([`sampler::cpus_allowed`]).
    pub generator_cpus_allowed: u32,
}

/// Turns a recording into the summary figures and applies the generator's self-check.
pub fn build_measurement(
    recording: &Recording,
    plan: &SchedulePlan,
    facts: &PhaseFacts<'_>,
    files: MeasurementFiles,
) -> Measurement {
    let (model, resources, partial) = (facts.model, facts.resources, facts.partial);
    let warmup_us = u64::try_from(plan.warmup().as_micros()).unwrap_or(0);
    let planned_us =
        u64::try_from(plan.end_offset().saturating_sub(plan.warmup()).as_micros()).unwrap_or(0);
    // The measured window: from the warm-up's end to the schedule's end (to the last send when
    // interrupted). Completions after it are the drain, reported apart.
    let window_secs = if partial {
        recording
            .last_measured_send_us
            .map_or(0, |l| l.saturating_sub(warmup_us)) as f64
            / 1e6
    } else {
        planned_us as f64 / 1e6
    };
    let send_secs = if partial {
        window_secs
    } else {
        let actual = recording
            .last_measured_send_us
            .map_or(0, |l| l.saturating_sub(warmup_us));
        actual.max(planned_us) as f64 / 1e6
    };
    let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    // With flows a slot is an iteration of several requests: the target is the slot rate times
    // the requests an iteration sent, so it compares with the requests actually sent.
    let requests_per_slot = match facts.outcome.iterations_measured {
        Some(iterations) if iterations > 0 && recording.sends > 0 => {
            recording.sends as f64 / iterations as f64
        }
        _ => 1.0,
    };
    let target_rate_per_sec = match model {
        LoadModel::Open => Some(plan.measured_rate_per_sec() * requests_per_slot),
        LoadModel::Closed => None,
    };
    let achieved_send_rate_per_sec = per_sec(recording.sends, send_secs);
    let send_lag_us = Percentiles::of(&recording.send_lag);
    let probe_lag_us = Percentiles::of(&facts.outcome.probe_lag);
    let cpus_allowed = facts.generator_cpus_allowed;
    let successes = recording.requests.saturating_sub(recording.errors);
    let verdict = verdict::judge(&Evidence {
        // A partial run never reached its schedule's end: judge lateness, not the rate.
        target_rate_per_sec: if partial { None } else { target_rate_per_sec },
        achieved_send_rate_per_sec,
        sends: recording.sends,
        backlogged_sends: recording.backlogged_sends,
        backlogged_at_cap_sends: recording.backlogged_at_cap_sends,
        requests: recording.requests,
        errors: recording.errors,
        max_error_rate: facts.max_error_rate,
        send_lag_p50_us: send_lag_us.p50,
        send_lag_p99_us: send_lag_us.p99,
        probe_lag_p99_us: (probe_lag_us.count > 0).then_some(probe_lag_us.p99),
        generator_cpu_percent: resources.generator_cpu_mean_percent,
        generator_cpus_allowed: cpus_allowed,
        max_users: facts.outcome.max_users as u64,
        peak_users_busy: facts.outcome.peak_users_busy as u64,
        mean_service_us: (successes > 0)
            .then(|| recording.service_sum_us as f64 / successes as f64),
    });
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let drain_ms = match recording.last_measured_completion_us {
        Some(last) if !partial => last.saturating_sub(recording.window_end_us) / 1000,
        _ => 0,
    };
    Measurement {
        valid: verdict.valid(),
        invalid_reason: (!verdict.valid()).then(|| verdict.reason.clone()),
        partial,
        stopped_early: facts.outcome.stopped_early.clone(),
        flow_steps_skipped: facts.outcome.flow_steps_skipped,
        saturated: verdict.saturated(),
        verdict: verdict.state.as_str().to_string(),
        verdict_reason: Some(verdict.reason.clone()),
        target_rate_per_sec: target_rate_per_sec.map(round2),
        throughput_rps: round2(per_sec(recording.completions_in_window, window_secs)),
        goodput_rps: Some(round2(per_sec(recording.successes_in_window, window_secs))),
        drain_ms,
        drain_requests: recording.drain_requests,
        dropped_sends: match model {
            // Slots: with flows, requests over requests per slot.
            LoadModel::Open if !partial => plan.total_slots().saturating_sub(
                ((recording.sends + recording.warmup_requests) as f64 / requests_per_slot).round()
                    as u64,
            ),
            _ => 0,
        },
        achieved_send_rate_per_sec: round2(achieved_send_rate_per_sec),
        measured_duration_ms: (window_secs * 1000.0).round() as u64,
        warmup_ms: warmup_us / 1000,
        requests: recording.requests,
        errors: recording.errors,
        timeouts: recording.timeouts,
        error_rate: if recording.requests > 0 {
            recording.errors as f64 / recording.requests as f64
        } else {
            0.0
        },
        status_counts: recording
            .status_counts
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect(),
        latency_us: Percentiles::of(&recording.latency),
        ttfb_us: Percentiles::of(&recording.ttfb),
        error_latency_us: Percentiles::of(&recording.error_latency),
        send_lag_us,
        probe_lag_us,
        users_started: facts.outcome.users_started as u64,
        peak_users_busy: facts.outcome.peak_users_busy as u64,
        max_users: facts.outcome.max_users as u64,
        users_exhausted: verdict.users_exhausted,
        generator_cpus_allowed: Some(cpus_allowed),
        generator_cpu_share: resources
            .generator_cpu_mean_percent
            .map(|cpu| round2(cpu / (100.0 * f64::from(cpus_allowed.max(1))))),
        requests_by_name: recording
            .by_request
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    RequestSummary {
                        requests: r.requests,
                        errors: r.errors,
                        latency_us: Percentiles::of(&r.latency),
                        ttfb_us: Percentiles::of(&r.ttfb),
                        error_latency_us: Percentiles::of(&r.error_latency),
                    },
                )
            })
            .collect(),
        target_rss_peak_bytes: resources.target_rss_peak_bytes,
        target_cpu_mean_percent: resources.target_cpu_mean_percent.map(round2),
        postgres_rss_peak_bytes: resources.postgres_rss_peak_bytes,
        postgres_memory_is_pss: resources.postgres_memory_is_pss,
        target_rss_hwm_bytes: resources.target_rss_hwm_bytes,
        postgres_cpu_mean_percent: resources.postgres_cpu_mean_percent.map(round2),
        generator_rss_peak_bytes: resources.generator_rss_peak_bytes,
        generator_cpu_mean_percent: resources.generator_cpu_mean_percent.map(round2),
        generator_late_sends: recording.generator_late_sends,
        generator_late_share: if recording.sends > 0 {
            recording.generator_late_sends as f64 / recording.sends as f64
        } else {
            0.0
        },
        backlogged_sends: recording.backlogged_sends,
        sends: recording.sends,
        files,
        gc_pause_total_ms: None,
        gc_pauses: None,
        stages: Vec::new(),
        max_sustainable_rps: None,
        max_sustainable_resolution_rps: None,
        max_sustainable_is_lower_bound: false,
        faults: Vec::new(),
    }
}

/// One ramp stage's figures from its measurement (the settle period was its warm-up). A stage
/// the client limited (users exhausted, generator-bound) is never within budget and never
/// counts as the server's ceiling.
pub fn stage_figures(stage: &Stage, m: &Measurement, budget: &StageBudget) -> StageFigures {
    let client_limited = !m.valid
        && (m.users_exhausted
            || m.invalid_reason
                .as_deref()
                .is_some_and(|r| r.contains("generator-bound")));
    StageFigures {
        rate_per_sec: stage.rate_per_sec,
        achieved_rps: m.throughput_rps,
        p99_us: m.latency_us.p99,
        requests: m.requests,
        error_rate: m.error_rate,
        generator_valid: !client_limited,
        within_budget: !client_limited
            && budget.admits(m.latency_us.p99, m.error_rate, true, m.requests),
        verdict: m.verdict.clone(),
        verdict_reason: m.verdict_reason.clone(),
        client_limited,
        bisection: false,
        goodput_rps: m.goodput_rps,
        send_lag_p99_us: m.send_lag_us.p99,
        peak_users_busy: m.peak_users_busy,
        target_cpu_mean_percent: m.target_cpu_mean_percent,
        target_rss_peak_bytes: m.target_rss_peak_bytes,
        postgres_cpu_mean_percent: m.postgres_cpu_mean_percent,
        postgres_rss_peak_bytes: m.postgres_rss_peak_bytes,
        generator_cpu_mean_percent: m.generator_cpu_mean_percent,
    }
}
