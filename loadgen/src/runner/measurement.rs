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
    let mean_service_us =
        (successes > 0).then(|| recording.service_sum_us as f64 / successes as f64);
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
        mean_service_us,
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
        service_us: Percentiles::of(&recording.service),
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
/// counts as the server's ceiling — unless the server's own time was already over the budget
/// (see [`server_over_budget`]): then it is the server's failure.
pub fn stage_figures(stage: &Stage, m: &Measurement, budget: &StageBudget) -> StageFigures {
    let client_flagged = !m.valid
        && (m.users_exhausted
            || m.invalid_reason
                .as_deref()
                .is_some_and(|r| r.contains("generator-bound")));
    let over = client_flagged
        .then(|| server_over_budget(m, budget))
        .flatten();
    let client_limited = client_flagged && over.is_none();
    let verdict_reason = match (&over, &m.verdict_reason) {
        (Some(why), Some(reason)) => Some(format!("{reason}; {why}")),
        (Some(why), None) => Some(why.clone()),
        (None, reason) => reason.clone(),
    };
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
        verdict_reason,
        client_limited,
        server_over_budget: over.is_some(),
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

/// Whether a stage the client was flagged for had in fact already failed on the server's side:
/// the server's own p99 from the actual send (no backlog in it), less the runtime probe's p99
/// lateness (how late the generator could have stamped a completion), over the p99 budget.
/// Neither more users (they would only add requests to the server's queue: capping them can
/// only have shortened its times) nor a faster generator (it would only offer more) lowers it.
/// Returns the sentence the stage's reason gains, `None` when the client may have been the
/// limit (or no response time was recorded: files from before it was).
pub fn server_over_budget(m: &Measurement, budget: &StageBudget) -> Option<String> {
    if m.service_us.count == 0 {
        return None;
    }
    let service_us = m.service_us.p99;
    let probe_us = m.probe_lag_us.p99;
    let server_us = service_us.saturating_sub(probe_us);
    (server_us > budget.p99_budget_us).then(|| {
        format!(
            "counted as the server's: its own p99 from the actual send was {:.1} ms (less the probe's p99 {:.1} ms: {:.1} ms) against a p99 budget of {:.1} ms, which no number of users could lower",
            service_us as f64 / 1000.0,
            probe_us as f64 / 1000.0,
            server_us as f64 / 1000.0,
            budget.p99_budget_us as f64 / 1000.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Percentiles;

    fn budget() -> StageBudget {
        StageBudget {
            p99_budget_us: 20_000,
            max_error_rate: 0.001,
        }
    }

    fn stage() -> Stage {
        Stage {
            rate_per_sec: 18_000.0,
            duration: std::time::Duration::from_secs(3),
        }
    }

    /// Users ran out at 18 000/s: `service_us` is the server's own p99 (0: none recorded),
    /// `probe_us` the runtime probe's p99 lateness.
    fn exhausted(service_us: u64, probe_us: u64, reason: &str) -> Measurement {
        Measurement {
            valid: false,
            verdict: "invalid".into(),
            invalid_reason: Some(reason.into()),
            verdict_reason: Some(reason.into()),
            users_exhausted: reason.contains("users exhausted"),
            requests: 50_000,
            latency_us: Percentiles {
                p99: 115_000,
                ..Percentiles::default()
            },
            service_us: Percentiles {
                p99: service_us,
                count: u64::from(service_us > 0),
                ..Percentiles::default()
            },
            probe_lag_us: Percentiles {
                p99: probe_us,
                ..Percentiles::default()
            },
            ..Measurement::default()
        }
    }

    #[test]
    fn users_held_by_a_server_over_budget_are_the_servers_failure() {
        let m = exhausted(
            60_000,
            3_290,
            "users exhausted: 2048 of 2048 busy while 99.0 % of sends waited for one",
        );
        let s = stage_figures(&stage(), &m, &budget());
        assert!(
            !s.client_limited && s.server_over_budget && !s.within_budget,
            "{s:?}"
        );
        assert_eq!(crate::output::stage_mark(&s), "✗");
        let reason = s.verdict_reason.unwrap_or_default();
        assert!(reason.starts_with("users exhausted"), "{reason}");
        assert!(reason.contains("counted as the server's"), "{reason}");
        assert!(reason.contains("60.0 ms"), "{reason}");
    }

    #[test]
    fn a_fast_server_with_too_few_users_stays_client_limited() {
        // 1 ms of the server's own time: more users would have carried the rate.
        let m = exhausted(1_000, 300, "users exhausted: 64 of 64 busy");
        let s = stage_figures(&stage(), &m, &budget());
        assert!(
            s.client_limited && !s.server_over_budget && !s.within_budget,
            "{s:?}"
        );
        assert_eq!(crate::output::stage_mark(&s), "client-limited");
    }

    #[test]
    fn the_probes_lateness_is_taken_off_before_blaming_the_server() {
        // 22 ms at p99, but completions may have been stamped up to 4 ms late: 18 ms ≤ 20 ms.
        let m = exhausted(
            22_000,
            4_000,
            "generator-bound, not the server: runtime probe woke 4.00 ms late at p99",
        );
        let s = stage_figures(&stage(), &m, &budget());
        assert!(s.client_limited && !s.server_over_budget, "{s:?}");
        // 25 ms − 4 ms = 21 ms > 20 ms: the server's.
        let m = exhausted(
            25_000,
            4_000,
            "generator-bound, not the server: runtime probe woke 4.00 ms late at p99",
        );
        let s = stage_figures(&stage(), &m, &budget());
        assert!(!s.client_limited && s.server_over_budget, "{s:?}");
    }

    #[test]
    fn a_valid_stage_is_never_reclassified() {
        let mut m = exhausted(30_000, 100, "server saturated");
        m.valid = true;
        m.users_exhausted = false;
        m.verdict = "saturated".into();
        m.invalid_reason = None;
        let s = stage_figures(&stage(), &m, &budget());
        assert!(
            !s.client_limited && !s.server_over_budget && !s.within_budget,
            "{s:?}"
        );
        assert_eq!(s.verdict_reason.as_deref(), Some("server saturated"));
    }

    #[test]
    fn a_measurement_without_a_service_time_stays_client_limited() {
        let m = exhausted(0, 0, "users exhausted: 64 of 64 busy");
        assert_eq!(m.service_us.count, 0);
        assert!(server_over_budget(&m, &budget()).is_none());
        assert!(stage_figures(&stage(), &m, &budget()).client_limited);
    }
}
