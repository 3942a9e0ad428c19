//! The generator's self-check: is a measurement trustworthy?
//!
//! - The target is *healthy* when fewer than half the requests failed and the users were not
//!   saturated. A saturated run (every user busy past its slots: a slow server, or too few users
//!   for its latency) is valid — the numbers are the server's, and the latency carries the
//!   backlog — but it says `saturated: true`.
//! - While the target is healthy, the run is invalid when the achieved send rate is more than
//!   5 % below target, or more than 1 % of sends left over 10 ms late by the generator's own doing.

/// Below this share of target rate, the generator fell behind.
pub const MIN_ACHIEVED_SHARE: f64 = 0.95;
/// Above this share of late sends, the generator fell behind.
pub const MAX_LATE_SHARE: f64 = 0.01;
/// Above this share of backlogged sends, the users were saturated.
pub const SATURATED_SHARE: f64 = 0.01;
/// At or above this error rate the target is not healthy.
pub const UNHEALTHY_ERROR_RATE: f64 = 0.5;

/// What the verdict looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence {
    pub target_rate_per_sec: Option<f64>,
    pub achieved_send_rate_per_sec: f64,
    pub sends: u64,
    pub generator_late_sends: u64,
    pub backlogged_sends: u64,
    pub requests: u64,
    pub errors: u64,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub valid: bool,
    pub invalid_reason: Option<String>,
    pub saturated: bool,
}

pub fn judge(e: &Evidence) -> Verdict {
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let saturated = share(e.backlogged_sends, e.sends) > SATURATED_SHARE;
    let error_rate = share(e.errors, e.requests);
    let healthy = error_rate < UNHEALTHY_ERROR_RATE && !saturated;
    let mut reasons = Vec::new();
    if e.requests == 0 {
        reasons.push("no request completed after the warm-up".to_string());
    }
    if healthy {
        if let Some(target) = e.target_rate_per_sec
            && target > 0.0
            && e.achieved_send_rate_per_sec < MIN_ACHIEVED_SHARE * target
        {
            reasons.push(format!(
                "generator fell behind: sent {:.1}/s of {:.1}/s target ({:.1} %)",
                e.achieved_send_rate_per_sec,
                target,
                100.0 * e.achieved_send_rate_per_sec / target
            ));
        }
        let late = share(e.generator_late_sends, e.sends);
        if late > MAX_LATE_SHARE {
            reasons.push(format!(
                "generator late: {:.2} % of sends left > 10 ms after they could have",
                100.0 * late
            ));
        }
    }
    Verdict {
        valid: reasons.is_empty(),
        invalid_reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        saturated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Evidence {
        Evidence {
            target_rate_per_sec: Some(500.0),
            achieved_send_rate_per_sec: 499.0,
            sends: 10_000,
            requests: 10_000,
            ..Evidence::default()
        }
    }

    #[test]
    fn healthy_on_time_run_is_valid() {
        let v = judge(&healthy());
        assert!(v.valid && !v.saturated, "{v:?}");
    }

    #[test]
    fn slow_generator_is_invalid() {
        let v = judge(&Evidence {
            achieved_send_rate_per_sec: 400.0,
            ..healthy()
        });
        assert!(!v.valid);
        assert!(v.invalid_reason.unwrap_or_default().contains("fell behind"));
        let v = judge(&Evidence {
            generator_late_sends: 200,
            ..healthy()
        });
        assert!(!v.valid);
    }

    #[test]
    fn saturation_by_a_slow_server_is_valid_but_flagged() {
        let v = judge(&Evidence {
            achieved_send_rate_per_sec: 100.0,
            backlogged_sends: 5_000,
            ..healthy()
        });
        assert!(v.valid && v.saturated, "{v:?}");
    }

    #[test]
    fn nothing_completed_is_invalid() {
        let v = judge(&Evidence {
            requests: 0,
            ..healthy()
        });
        assert!(!v.valid);
    }
}
