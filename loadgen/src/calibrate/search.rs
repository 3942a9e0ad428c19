//! The search for the generator's ceiling, as a pure state machine: [`Search::next_rate`] says
//! which rate to run next, [`Search::record`] takes what that run showed, [`Search::result`]
//! reads the ceiling off. No clock, no network: the driver (`run.rs`) runs the rates, the tests
//! feed made-up outcomes.
//!
//! The ceiling is the highest rate whose run was valid. Before anything has failed the rate
//! doubles; before anything has passed it halves (or drops straight under what a failing run
//! managed to send, when that is lower); once a passing rate lies under a failing one, the gap
//! is bisected (geometrically while it spans more than a factor of two) until it is within the
//! resolution. A run the *server* could not keep up with ends the search: above it, nothing
//! more can be learnt about the generator, and the ceiling found is a lower bound.

/// What one run at a fixed rate showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Valid: the generator kept its schedule and the server kept up.
    Pass,
    /// The generator was healthy but the server formed a backlog (verdict `saturated`): the
    /// generator sustains this rate, and the server will not show more.
    Saturated,
    /// Invalid, generator-bound: above the generator's ceiling. `achieved_rate_per_sec` is what
    /// it managed to send, a hint where the ceiling lies.
    GeneratorBound { achieved_rate_per_sec: f64 },
    /// Invalid for a reason that is not the generator's (users exhausted behind a slow server,
    /// too many errors, nothing completed): the server, not the generator, was the limit.
    ServerLimited,
}

/// The search's bounds and budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchPlan {
    pub start_rate_per_sec: f64,
    /// Below this the search gives up (the generator cannot sustain even this).
    pub min_rate_per_sec: f64,
    /// Never run above this; passing here ends the search (the ceiling is a lower bound).
    pub max_rate_per_sec: f64,
    /// Stop when (lowest failing − highest passing) ≤ this share of the highest passing rate.
    pub resolution: f64,
    /// At most this many runs.
    pub max_steps: usize,
}

/// Why the search ended where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitedBy {
    /// A rate above the ceiling was generator-bound: the ceiling is the generator's.
    Generator,
    /// The server could not keep up first: the generator's ceiling is at least this.
    Server,
    /// `--max-rate` (or the step budget) was reached with every run passing: at least this.
    MaxRate,
}

impl LimitedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitedBy::Generator => "generator",
            LimitedBy::Server => "server",
            LimitedBy::MaxRate => "max_rate",
        }
    }
}

/// What the search found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchResult {
    /// The highest rate that passed; `None` when nothing did.
    pub ceiling_rate_per_sec: Option<f64>,
    /// The lowest generator-bound rate above the ceiling, if any ran.
    pub lowest_failing_rate_per_sec: Option<f64>,
    pub limited_by: LimitedBy,
}

impl SearchResult {
    /// lowest failing − ceiling, when both are known.
    pub fn resolution_rps(&self) -> Option<f64> {
        match (self.ceiling_rate_per_sec, self.lowest_failing_rate_per_sec) {
            (Some(pass), Some(fail)) => Some(fail - pass),
            _ => None,
        }
    }
}

/// The search's state.
#[derive(Debug, Clone)]
pub struct Search {
    plan: SearchPlan,
    highest_pass: Option<f64>,
    lowest_fail: Option<f64>,
    /// What the lowest failing run managed to send.
    fail_hint: Option<f64>,
    server_limited: bool,
    steps: usize,
}

impl Search {
    pub fn new(plan: SearchPlan) -> Search {
        Search {
            plan,
            highest_pass: None,
            lowest_fail: None,
            fail_hint: None,
            server_limited: false,
            steps: 0,
        }
    }

    /// The next rate to run, or `None` when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        let plan = &self.plan;
        if self.server_limited || self.steps >= plan.max_steps {
            return None;
        }
        let clamp = |rate: f64| {
            rate.round()
                .clamp(plan.min_rate_per_sec, plan.max_rate_per_sec)
        };
        match (self.highest_pass, self.lowest_fail) {
            (None, None) => Some(clamp(plan.start_rate_per_sec)),
            (Some(pass), None) => (pass < plan.max_rate_per_sec).then(|| clamp(2.0 * pass)),
            (None, Some(fail)) => {
                if fail <= plan.min_rate_per_sec {
                    return None;
                }
                // Under what the failing run managed to send, but not absurdly far down.
                let halved = fail / 2.0;
                let below_hint = self
                    .fail_hint
                    .map_or(halved, |sent| (0.9 * sent).max(fail / 8.0));
                Some(clamp(halved.min(below_hint)))
            }
            (Some(pass), Some(fail)) => {
                if fail - pass <= plan.resolution * pass {
                    return None;
                }
                let middle = if fail > 2.0 * pass {
                    (pass * fail).sqrt()
                } else {
                    (pass + fail) / 2.0
                };
                let rounded = round_readable(middle);
                let rate = if rounded > pass && rounded < fail {
                    rounded
                } else {
                    middle.round()
                };
                (rate > pass && rate < fail).then_some(rate)
            }
        }
    }

    /// Takes what the run at `rate_per_sec` showed.
    pub fn record(&mut self, rate_per_sec: f64, outcome: Outcome) {
        self.steps += 1;
        match outcome {
            Outcome::Pass => {
                self.highest_pass = Some(
                    self.highest_pass
                        .map_or(rate_per_sec, |p| p.max(rate_per_sec)),
                );
            }
            Outcome::Saturated => {
                self.highest_pass = Some(
                    self.highest_pass
                        .map_or(rate_per_sec, |p| p.max(rate_per_sec)),
                );
                self.server_limited = true;
            }
            Outcome::GeneratorBound {
                achieved_rate_per_sec,
            } => {
                if self.lowest_fail.is_none_or(|f| rate_per_sec < f) {
                    self.lowest_fail = Some(rate_per_sec);
                    self.fail_hint = Some(achieved_rate_per_sec);
                }
            }
            Outcome::ServerLimited => self.server_limited = true,
        }
        // A pass above a failure (noise near the edge): the failure no longer bounds anything.
        if let (Some(pass), Some(fail)) = (self.highest_pass, self.lowest_fail)
            && pass >= fail
        {
            self.lowest_fail = None;
            self.fail_hint = None;
        }
    }

    pub fn result(&self) -> SearchResult {
        let limited_by = if self.server_limited {
            LimitedBy::Server
        } else if self.lowest_fail.is_some() || self.highest_pass.is_none() {
            LimitedBy::Generator
        } else {
            LimitedBy::MaxRate
        };
        SearchResult {
            ceiling_rate_per_sec: self.highest_pass,
            lowest_failing_rate_per_sec: self.lowest_fail,
            limited_by,
        }
    }
}

/// Rounds to two significant digits past the leading one (27 316 → 27 300), so the rates in
/// the progress lines and the file read easily.
fn round_readable(rate: f64) -> f64 {
    if rate < 1000.0 {
        return rate.round();
    }
    let step = 10f64.powi((rate.log10().floor() as i32) - 2);
    (rate / step).round() * step
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> SearchPlan {
        SearchPlan {
            start_rate_per_sec: 5_000.0,
            min_rate_per_sec: 100.0,
            max_rate_per_sec: 1_000_000.0,
            resolution: 0.05,
            max_steps: 20,
        }
    }

    /// Runs the search against a generator that sends at most `ceiling`/s (and, if given, a
    /// server that saturates above `server`/s); returns the result and the rates tried.
    fn simulate(plan: SearchPlan, ceiling: f64, server: Option<f64>) -> (SearchResult, Vec<f64>) {
        let mut search = Search::new(plan);
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            assert!(!tried.contains(&rate), "{rate} tried twice: {tried:?}");
            tried.push(rate);
            let outcome = if server.is_some_and(|s| rate > s) {
                Outcome::Saturated
            } else if rate <= ceiling {
                Outcome::Pass
            } else {
                Outcome::GeneratorBound {
                    achieved_rate_per_sec: ceiling * 1.02,
                }
            };
            search.record(rate, outcome);
        }
        (search.result(), tried)
    }

    #[test]
    fn a_ceiling_above_the_start_is_bracketed_by_doubling_then_bisected_to_the_resolution() {
        let (result, tried) = simulate(plan(), 31_000.0, None);
        assert_eq!(&tried[..4], [5_000.0, 10_000.0, 20_000.0, 40_000.0]);
        assert_eq!(result.limited_by, LimitedBy::Generator);
        let ceiling = result.ceiling_rate_per_sec.expect("a ceiling");
        let fail = result.lowest_failing_rate_per_sec.expect("a failing rate");
        assert!(ceiling <= 31_000.0 && fail > 31_000.0, "{result:?}");
        assert!(fail - ceiling <= 0.05 * ceiling, "{result:?}");
        assert!(tried.len() <= 9, "{tried:?}");
    }

    #[test]
    fn a_ceiling_below_the_start_is_found_from_what_the_failing_run_sent() {
        // A debug build: 1 300/s at most. The first run fails having sent ~1 330/s; the next
        // rate goes under that at once instead of halving twice.
        let (result, tried) = simulate(plan(), 1_300.0, None);
        assert_eq!(tried[0], 5_000.0);
        assert!(tried[1] < 1_300.0, "{tried:?}");
        let ceiling = result.ceiling_rate_per_sec.expect("a ceiling");
        assert!(
            (0.95 * 1_300.0 / 1.05..=1_300.0).contains(&ceiling),
            "{result:?}"
        );
        assert_eq!(result.limited_by, LimitedBy::Generator);
    }

    #[test]
    fn a_saturated_server_ends_the_search_with_a_lower_bound() {
        let (result, tried) = simulate(plan(), 50_000.0, Some(15_000.0));
        assert_eq!(tried, [5_000.0, 10_000.0, 20_000.0]);
        assert_eq!(result.limited_by, LimitedBy::Server);
        // The generator was healthy at 20 000/s; the server was not.
        assert_eq!(result.ceiling_rate_per_sec, Some(20_000.0));
        assert_eq!(result.resolution_rps(), None);
    }

    #[test]
    fn a_server_that_fails_outright_keeps_the_last_pass() {
        let mut search = Search::new(plan());
        search.record(5_000.0, Outcome::Pass);
        assert_eq!(search.next_rate(), Some(10_000.0));
        search.record(10_000.0, Outcome::ServerLimited);
        assert_eq!(search.next_rate(), None);
        let result = search.result();
        assert_eq!(result.ceiling_rate_per_sec, Some(5_000.0));
        assert_eq!(result.limited_by, LimitedBy::Server);
    }

    #[test]
    fn passing_at_max_rate_stops_with_max_rate_as_the_reason() {
        let plan = SearchPlan {
            max_rate_per_sec: 30_000.0,
            ..plan()
        };
        let (result, tried) = simulate(plan, 1e9, None);
        assert_eq!(tried, [5_000.0, 10_000.0, 20_000.0, 30_000.0]);
        assert_eq!(result.ceiling_rate_per_sec, Some(30_000.0));
        assert_eq!(result.limited_by, LimitedBy::MaxRate);
    }

    #[test]
    fn a_generator_that_fails_at_the_minimum_gives_no_ceiling() {
        let (result, tried) = simulate(plan(), 10.0, None);
        assert_eq!(tried.last(), Some(&100.0));
        assert_eq!(result.ceiling_rate_per_sec, None);
        assert_eq!(result.limited_by, LimitedBy::Generator);
    }

    #[test]
    fn the_step_budget_bounds_the_search() {
        let plan = SearchPlan {
            max_steps: 5,
            resolution: 0.001,
            ..plan()
        };
        let (result, tried) = simulate(plan, 31_000.0, None);
        assert_eq!(tried.len(), 5);
        assert_eq!(result.ceiling_rate_per_sec, Some(30_000.0));
        assert_eq!(result.resolution_rps(), Some(10_000.0));
    }

    #[test]
    fn a_noisy_pass_above_a_failure_reopens_the_search_upwards() {
        let mut search = Search::new(plan());
        search.record(
            20_000.0,
            Outcome::GeneratorBound {
                achieved_rate_per_sec: 19_000.0,
            },
        );
        search.record(25_000.0, Outcome::Pass);
        assert_eq!(search.result().lowest_failing_rate_per_sec, None);
        assert_eq!(search.next_rate(), Some(50_000.0));
    }

    #[test]
    fn rates_are_rounded_to_read_easily() {
        assert_eq!(round_readable(27_316.4), 27_300.0);
        assert_eq!(round_readable(1_234.0), 1_230.0);
        assert_eq!(round_readable(456.6), 457.0);
    }
}
