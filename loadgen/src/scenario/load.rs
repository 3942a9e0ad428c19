//! `[load]`, its `[[load.stages]]` and `[find_max]`: the model, rates, users, durations and the
//! ramp, each field checked with its file:line:col.

use super::*;

/// `replay`: the scenario has `[replay]`, which supplies the stages ([`super::replay`]).
pub(super) fn parse_load(
    cx: &Cx,
    raw: &Spanned<RawLoad>,
    replay: bool,
) -> Result<LoadSpec, ScenarioError> {
    let load = raw.get_ref();
    let model = match &load.model {
        None => LoadModel::Open,
        Some(m) => match m.get_ref().as_str() {
            "open" => LoadModel::Open,
            "closed" => LoadModel::Closed,
            other => {
                return Err(cx.err(
                    &m.span(),
                    "load.model",
                    &format!("`{other}` is not a load model; use \"open\" (a rate) or \"closed\" (users + think_time)"),
                ));
            }
        },
    };
    let users = match &load.users {
        None => 32,
        Some(u) => usize::try_from(*u.get_ref())
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| cx.err(&u.span(), "load.users", "must be 1..=10000"))?,
    };
    let max_users = match &load.max_users {
        None => (users * DEFAULT_MAX_USERS_FACTOR).min(MAX_USERS_LIMIT.max(users)),
        Some(m) => {
            if model == LoadModel::Closed {
                return Err(cx.err(
                    &m.span(),
                    "load.max_users",
                    "max_users belongs to the open model (users grow while every user is busy); the closed model runs exactly `users`",
                ));
            }
            usize::try_from(*m.get_ref())
                .ok()
                .filter(|n| (users..=MAX_USERS_LIMIT).contains(n))
                .ok_or_else(|| {
                    cx.err(
                        &m.span(),
                        "load.max_users",
                        &format!("must be users ({users})..=10000"),
                    )
                })?
        }
    };
    let generator_threads = match &load.generator_threads {
        None => None,
        Some(t) => Some(
            usize::try_from(*t.get_ref())
                .ok()
                .filter(|n| (1..=MAX_GENERATOR_THREADS).contains(n))
                .ok_or_else(|| {
                    cx.err(
                        &t.span(),
                        "load.generator_threads",
                        &format!("must be 1..={MAX_GENERATOR_THREADS} (default: one per CPU the generator may use)"),
                    )
                })?,
        ),
    };
    let max_error_rate = match &load.max_error_rate {
        None => crate::verdict::DEFAULT_MAX_ERROR_RATE,
        Some(r) => {
            let rate = *r.get_ref();
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(cx.err(
                    &r.span(),
                    "load.max_error_rate",
                    &format!("must be a fraction in (0, 1] (0.5 = half the requests), got {rate}"),
                ));
            }
            rate
        }
    };
    let warmup = match &load.warmup {
        None => Duration::ZERO,
        Some(w) => duration_field(cx, w, "load.warmup")?,
    };
    let request_timeout = match &load.timeout {
        None => Duration::from_secs(10),
        Some(t) => duration_field(cx, t, "load.timeout")?,
    };
    if request_timeout.is_zero() {
        return Err(cx.err(
            &load.timeout.as_ref().map_or(raw.span(), |t| t.span()),
            "load.timeout",
            "must be > 0",
        ));
    }
    let duration = match &load.duration {
        None => None,
        Some(d) => {
            let parsed = duration_field(cx, d, "load.duration")?;
            if parsed.is_zero() {
                return Err(cx.err(&d.span(), "load.duration", "must be > 0"));
            }
            Some(parsed)
        }
    };
    match model {
        LoadModel::Open => {
            if let Some(t) = &load.think_time {
                return Err(cx.err(
                    &t.span(),
                    "load.think_time",
                    "think_time belongs to the closed model; the open model sends on a schedule",
                ));
            }
            let stages = if replay {
                Vec::new() // set from the recording by `replay::parse_replay`
            } else if let Some(stages) = &load.stages {
                if let Some(r) = &load.rate_per_sec {
                    return Err(cx.err(
                        &r.span(),
                        "load.rate_per_sec",
                        "[[load.stages]] replace rate_per_sec and duration; remove one of them",
                    ));
                }
                if let Some(d) = &load.duration {
                    return Err(cx.err(
                        &d.span(),
                        "load.duration",
                        "[[load.stages]] replace rate_per_sec and duration; remove one of them",
                    ));
                }
                parse_stages(cx, stages, "load.stages")?
            } else {
                let Some(rate) = &load.rate_per_sec else {
                    return Err(cx.err(
                        &raw.span(),
                        "load.rate_per_sec",
                        "the open model needs rate_per_sec (or [[load.stages]])",
                    ));
                };
                let Some(duration) = duration else {
                    return Err(cx.err(
                        &raw.span(),
                        "load.duration",
                        "missing; e.g. duration = \"20s\"",
                    ));
                };
                vec![Stage {
                    rate_per_sec: rate_field(cx, rate, "load.rate_per_sec")?,
                    duration,
                }]
            };
            let duration = stages.iter().map(|s| s.duration).sum();
            Ok(LoadSpec {
                model,
                users,
                max_users,
                generator_threads,
                max_error_rate,
                warmup,
                stages,
                duration,
                think_time: Duration::ZERO,
                request_timeout,
                replay: None,
            })
        }
        LoadModel::Closed => {
            if let Some(r) = &load.rate_per_sec {
                return Err(cx.err(
                    &r.span(),
                    "load.rate_per_sec",
                    "the closed model has no rate: users send back to back with think_time between",
                ));
            }
            if let Some(s) = &load.stages {
                return Err(cx.err(&s.span(), "load.stages", "stages belong to the open model"));
            }
            let Some(duration) = duration else {
                return Err(cx.err(
                    &raw.span(),
                    "load.duration",
                    "missing; e.g. duration = \"20s\"",
                ));
            };
            let think_time = match &load.think_time {
                None => Duration::ZERO,
                Some(t) => duration_field(cx, t, "load.think_time")?,
            };
            Ok(LoadSpec {
                model,
                users,
                max_users: users,
                generator_threads,
                max_error_rate,
                warmup,
                stages: Vec::new(),
                duration,
                think_time,
                request_timeout,
                replay: None,
            })
        }
    }
}

pub(super) fn parse_find_max(
    cx: &Cx,
    raw: &Spanned<RawFindMax>,
    load: &LoadSpec,
) -> Result<FindMaxSpec, ScenarioError> {
    let f = raw.get_ref();
    if load.model != LoadModel::Open {
        return Err(cx.err(
            &raw.span(),
            "find_max",
            "[find_max] ramps an arrival rate; it needs the open model ([load] model = \"open\")",
        ));
    }
    let p99_budget_ms = match &f.p99_budget_ms {
        None => DEFAULT_P99_BUDGET_MS,
        Some(b) => {
            let ms = *b.get_ref();
            if !(ms.is_finite() && ms > 0.0 && ms <= 3_600_000.0) {
                return Err(cx.err(
                    &b.span(),
                    "find_max.p99_budget_ms",
                    &format!("must be > 0 milliseconds, got {ms}"),
                ));
            }
            ms
        }
    };
    let max_error_rate = match &f.max_error_rate {
        None => DEFAULT_MAX_ERROR_RATE,
        Some(r) => {
            let rate = *r.get_ref();
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(cx.err(
                    &r.span(),
                    "find_max.max_error_rate",
                    &format!(
                        "must be a fraction in (0, 1] (0.001 = 0.1 % of requests), got {rate}"
                    ),
                ));
            }
            rate
        }
    };
    let settle = match &f.settle {
        None => DEFAULT_SETTLE,
        Some(s) => duration_field(cx, s, "find_max.settle")?,
    };
    let stop_after_failures = match &f.stop_after_failures {
        None => 1,
        Some(n) => u32::try_from(*n.get_ref())
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| {
                cx.err(
                    &n.span(),
                    "find_max.stop_after_failures",
                    "must be 0..=1000 (0: run every stage)",
                )
            })?,
    };
    let Some(raw_stages) = &f.stages else {
        return Err(cx.err(
            &raw.span(),
            "find_max.stages",
            "missing; add [[find_max.stages]] with rate_per_sec and duration, rising",
        ));
    };
    let stages = parse_stages(cx, raw_stages, "find_max.stages")?;
    for (stage, raw_stage) in stages.iter().zip(raw_stages.get_ref()) {
        if stage.duration <= settle {
            return Err(cx.err(
                &raw_stage.get_ref().duration.span(),
                "find_max.stages.duration",
                &format!(
                    "must be longer than find_max.settle ({} ms), which is not measured",
                    settle.as_millis()
                ),
            ));
        }
    }
    Ok(FindMaxSpec {
        budget: StageBudget {
            p99_budget_us: (p99_budget_ms * 1000.0).round() as u64,
            max_error_rate,
        },
        settle,
        stages,
        stop_after_failures,
    })
}

/// `[[…stages]]`: a non-empty list of positive rates with positive durations.
fn parse_stages(
    cx: &Cx,
    stages: &Spanned<Vec<Spanned<RawStage>>>,
    field: &str,
) -> Result<Vec<Stage>, ScenarioError> {
    if stages.get_ref().is_empty() {
        return Err(cx.err(&stages.span(), field, "must not be empty"));
    }
    let mut out = Vec::new();
    let mut total = Duration::ZERO;
    for stage in stages.get_ref() {
        let s = stage.get_ref();
        let duration_name = format!("{field}.duration");
        let duration = duration_field(cx, &s.duration, &duration_name)?;
        if duration.is_zero() {
            return Err(cx.err(&s.duration.span(), &duration_name, "must be > 0"));
        }
        // The load's duration is the stages' sum: it must not overflow.
        total = total.checked_add(duration).ok_or_else(|| {
            cx.err(
                &s.duration.span(),
                &duration_name,
                "the stages' durations add up to more than 2^64 seconds",
            )
        })?;
        out.push(Stage {
            rate_per_sec: rate_field(cx, &s.rate_per_sec, &format!("{field}.rate_per_sec"))?,
            duration,
        });
    }
    Ok(out)
}
