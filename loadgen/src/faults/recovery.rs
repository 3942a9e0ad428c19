//! The recovery rule, as pure functions over per-interval figures, and the two passes over a
//! phase's `latency.hlog` that feed it.
//!
//! A fault has recovered at the first 1 s interval, from the one its injection ended in, whose
//! completions include successes and no failure, and whose successes' p99 is at most
//! [`RECOVERED_P99_FACTOR`] × the pre-fault p99 — the median of the 1 s intervals' p99s over the
//! measured intervals before the first fault (the warm-up's when the first fault leaves none; no
//! p99 condition when there is neither): an interval's p99 is compared with a typical interval's,
//! and one stall before the fault does not make the rule lenient. Time to recover runs from the fault's start to that
//! interval's start (never less than the injection's own length); the search stops at the next
//! fault's interval or the schedule's end, and a fault that reaches either says so. Intervals are
//! by completion time, so the resolution is 1 s.
//!
//! Errors "during" are those that completed in the intervals from the fault's start to its end;
//! "after" those in the intervals after that, up to the recovery (or the next fault, or the end).

use crate::recorder::{self, for_each_hlog_interval_tagged};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::ops::Range;

/// An interval is recovered when its p99 is at most this many times the pre-fault p99.
pub const RECOVERED_P99_FACTOR: u64 = 2;

const US_PER_S: u64 = 1_000_000;

/// One injected fault, µs from the schedule's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultWindow {
    pub start_us: u64,
    /// When the injection was over (equal to `start_us` for an instant one).
    pub end_us: u64,
}

/// One 1 s interval's completions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalFigures {
    pub successes: u64,
    pub errors: u64,
    /// The successes' p99 (0 without successes).
    pub p99_us: u64,
    /// The failed requests by status (0 = no response).
    pub error_statuses: BTreeMap<u16, u64>,
}

/// A phase's intervals by index (seconds from the schedule's start) and its measured span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub intervals: BTreeMap<u64, IntervalFigures>,
    /// The first interval wholly after the warm-up.
    pub first_measured: u64,
    /// Intervals from this one on started after the schedule's end (the drain).
    pub end: u64,
}

impl Timeline {
    /// `warmup_us` and `schedule_end_us` from the schedule's start.
    pub fn new(warmup_us: u64, schedule_end_us: u64) -> Timeline {
        Timeline {
            intervals: BTreeMap::new(),
            first_measured: warmup_us.div_ceil(US_PER_S),
            end: schedule_end_us.div_ceil(US_PER_S),
        }
    }

    fn tally(&self, span: Range<u64>) -> Tally {
        let mut tally = Tally::default();
        for figures in self.intervals.range(span).map(|(_, f)| f) {
            tally.errors += figures.errors;
            for (status, n) in &figures.error_statuses {
                *tally.statuses.entry(*status).or_insert(0) += n;
            }
        }
        tally
    }
}

/// Failed requests and their statuses over some intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
}

/// One fault's recovery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    pub during: Tally,
    pub after: Tally,
    /// The start of the first recovered interval, µs from the schedule's start.
    pub recovered_at_us: Option<u64>,
    pub time_to_recover_us: Option<u64>,
    /// The intervals whose successes make "p99 during recovery": from the fault's to the
    /// recovered one (that one alone when the fault's own interval recovered).
    pub recovery_span: Range<u64>,
    pub not_recovered: Option<String>,
    pub pre_fault_p99_us: Option<u64>,
    pub recovery_p99_us: Option<u64>,
}

/// Whether an interval counts as recovered against `pre_fault_p99_us`.
pub fn interval_recovered(figures: &IntervalFigures, pre_fault_p99_us: Option<u64>) -> bool {
    figures.successes > 0
        && figures.errors == 0
        && pre_fault_p99_us
            .is_none_or(|p99| figures.p99_us <= p99.saturating_mul(RECOVERED_P99_FACTOR))
}

/// The intervals the pre-fault p99 comes from: the measured ones before the first fault's
/// interval, else the warm-up's; empty when there are none.
pub fn pre_fault_span(timeline: &Timeline, first_fault_start_us: Option<u64>) -> Range<u64> {
    let fault_interval = first_fault_start_us.map_or(timeline.end, |us| us / US_PER_S);
    let measured = timeline.first_measured..fault_interval.min(timeline.end);
    let has_successes = |span: &Range<u64>| {
        timeline
            .intervals
            .range(span.clone())
            .any(|(_, f)| f.successes > 0)
    };
    if has_successes(&measured) {
        return measured;
    }
    let warmup = 0..timeline.first_measured.min(fault_interval);
    if has_successes(&warmup) { warmup } else { 0..0 }
}

/// The pre-fault p99: the median of the p99s of the intervals in `span` that had successes.
pub fn pre_fault_p99(timeline: &Timeline, span: Range<u64>) -> Option<u64> {
    let mut p99s: Vec<u64> = timeline
        .intervals
        .range(span)
        .filter(|(_, f)| f.successes > 0)
        .map(|(_, f)| f.p99_us)
        .collect();
    p99s.sort_unstable();
    p99s.get(p99s.len() / 2).copied()
}

/// Each fault's recovery (faults in time order, as injected), judged against
/// `pre_fault_p99_us`. `recovery_p99_us` is left for the caller (it needs the histograms).
pub fn assess_timeline(
    timeline: &Timeline,
    faults: &[FaultWindow],
    pre_fault_p99_us: Option<u64>,
) -> Vec<Recovery> {
    faults
        .iter()
        .enumerate()
        .map(|(i, fault)| {
            let first = fault.start_us / US_PER_S;
            let last = (fault.end_us / US_PER_S).max(first);
            let next_fault = faults.get(i + 1).map(|next| next.start_us / US_PER_S);
            let limit = next_fault.map_or(timeline.end, |n| n.min(timeline.end));
            let recovered = (last..limit).find(|k| {
                timeline
                    .intervals
                    .get(k)
                    .is_some_and(|f| interval_recovered(f, pre_fault_p99_us))
            });
            let after_end = recovered.unwrap_or(limit).max(last + 1);
            let recovery_span = match recovered {
                Some(k) if k == first => k..k + 1,
                Some(k) => first..k,
                None => first..limit.max(first + 1),
            };
            let not_recovered = recovered.is_none().then(|| match next_fault {
                Some(n) if n < timeline.end => {
                    format!(
                        "not recovered before the next fault, {} s later",
                        n.saturating_sub(first)
                    )
                }
                _ => "not recovered before the end of the load".to_string(),
            });
            let recovered_at_us = recovered.map(|k| k.saturating_mul(US_PER_S));
            Recovery {
                during: timeline.tally(first..last + 1),
                after: timeline.tally(last + 1..after_end),
                recovered_at_us,
                time_to_recover_us: recovered_at_us
                    .map(|at| at.max(fault.end_us).saturating_sub(fault.start_us)),
                recovery_span,
                not_recovered,
                pre_fault_p99_us,
                recovery_p99_us: None,
            }
        })
        .collect()
}

/// The recoveries of `faults` from a phase's interval log (untagged: successes; `errors`) and
/// the failed requests' statuses per interval. Two passes over the log, holding one histogram
/// per fault, never one per interval: the first gives every interval's counts and p99, the
/// second merges each fault's recovery span.
pub fn assess_log(
    hlog: &[u8],
    error_statuses_by_interval: &BTreeMap<u64, BTreeMap<u16, u64>>,
    faults: &[FaultWindow],
    warmup_us: u64,
    schedule_end_us: u64,
) -> Result<Vec<Recovery>, String> {
    if faults.is_empty() {
        return Ok(Vec::new());
    }
    let mut timeline = Timeline::new(warmup_us, schedule_end_us);
    for_each_hlog_interval_tagged(
        hlog,
        |tag| tag.is_none() || tag == Some("errors"),
        |interval| {
            let index = interval.start.as_secs();
            let figures = timeline.intervals.entry(index).or_default();
            match interval.tag.as_deref() {
                Some(_) => figures.errors += interval.histogram.len(),
                None => {
                    let h = &interval.histogram;
                    figures.successes += h.len();
                    // A late piece of an interval comes as a second entry: its p99 cannot be
                    // added to the first's, so take the higher (it can only delay "recovered").
                    if !h.is_empty() {
                        figures.p99_us = figures.p99_us.max(h.value_at_quantile(0.99));
                    }
                }
            }
            Ok(())
        },
    )?;
    for (index, statuses) in error_statuses_by_interval {
        timeline.intervals.entry(*index).or_default().error_statuses = statuses.clone();
    }
    let span = pre_fault_span(&timeline, faults.first().map(|f| f.start_us));
    let pre_fault_p99_us = pre_fault_p99(&timeline, span);
    let mut recoveries = assess_timeline(&timeline, faults, pre_fault_p99_us);

    let spans: Vec<Range<u64>> = recoveries.iter().map(|r| r.recovery_span.clone()).collect();
    let mut merged: Vec<Histogram<u64>> = spans.iter().map(|_| recorder::new_histogram()).collect();
    for_each_hlog_interval_tagged(
        hlog,
        |tag| tag.is_none(),
        |interval| {
            let index = interval.start.as_secs();
            for (span, histogram) in spans.iter().zip(merged.iter_mut()) {
                if span.contains(&index) {
                    add(histogram, &interval.histogram);
                }
            }
            Ok(())
        },
    )?;
    for (recovery, histogram) in recoveries.iter_mut().zip(&merged) {
        recovery.recovery_p99_us =
            (!histogram.is_empty()).then(|| histogram.value_at_quantile(0.99));
    }
    Ok(recoveries)
}

fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if !from.is_empty() {
        let _ = into.add(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Collector, Sample};
    use std::time::{Instant, SystemTime};

    fn ok(successes: u64, p99_us: u64) -> IntervalFigures {
        IntervalFigures {
            successes,
            p99_us,
            ..IntervalFigures::default()
        }
    }

    fn failing(successes: u64, p99_us: u64, errors: &[(u16, u64)]) -> IntervalFigures {
        IntervalFigures {
            successes,
            errors: errors.iter().map(|(_, n)| n).sum(),
            p99_us,
            error_statuses: errors.iter().copied().collect(),
        }
    }

    /// 3 s warm-up, a 20 s schedule (intervals 3..23 measured).
    fn timeline(intervals: impl IntoIterator<Item = (u64, IntervalFigures)>) -> Timeline {
        Timeline {
            intervals: intervals.into_iter().collect(),
            ..Timeline::new(3_000_000, 23_000_000)
        }
    }

    #[test]
    fn a_fault_recovers_at_the_first_clean_interval_within_twice_the_pre_fault_p99() {
        // Steady at 2 ms; a restart at 10 s: 503s for two seconds, then slow, then normal.
        let mut intervals: Vec<(u64, IntervalFigures)> =
            (3..23).map(|k| (k, ok(300, 2_000))).collect();
        intervals[7].1 = failing(100, 2_000, &[(503, 180), (0, 20)]); // 10
        intervals[8].1 = failing(250, 9_000, &[(503, 40)]); // 11
        intervals[9].1 = ok(300, 4_100); // 12: no errors but p99 over 2 × 2 ms
        intervals[10].1 = ok(300, 3_900); // 13: recovered
        let t = timeline(intervals);
        let fault = FaultWindow {
            start_us: 10_000_000,
            end_us: 10_600_000,
        };
        assert_eq!(pre_fault_span(&t, Some(fault.start_us)), 3..10);
        let [r] = assess_timeline(&t, &[fault], Some(2_000))
            .try_into()
            .expect("one");
        assert_eq!(r.recovered_at_us, Some(13_000_000));
        assert_eq!(r.time_to_recover_us, Some(3_000_000));
        assert_eq!(r.during.errors, 200);
        assert_eq!(r.during.statuses, BTreeMap::from([(0, 20), (503, 180)]));
        assert_eq!(r.after.errors, 40);
        assert_eq!(r.after.statuses, BTreeMap::from([(503, 40)]));
        assert_eq!(r.recovery_span, 10..13);
        assert_eq!(r.not_recovered, None);
    }

    #[test]
    fn a_fault_that_never_recovers_says_so_and_spans_to_the_end() {
        let mut intervals: Vec<(u64, IntervalFigures)> =
            (3..23).map(|k| (k, ok(300, 2_000))).collect();
        for (_, figures) in intervals.iter_mut().filter(|(k, _)| *k >= 15) {
            *figures = failing(10, 50_000, &[(503, 290)]);
        }
        let t = timeline(intervals);
        let fault = FaultWindow {
            start_us: 15_000_000,
            end_us: 15_000_000,
        };
        let r = &assess_timeline(&t, &[fault], Some(2_000))[0];
        assert_eq!(r.recovered_at_us, None);
        assert_eq!(r.time_to_recover_us, None);
        assert_eq!(
            r.not_recovered.as_deref(),
            Some("not recovered before the end of the load")
        );
        assert_eq!(r.recovery_span, 15..23);
        assert_eq!(r.during.errors, 290);
        assert_eq!(r.after.errors, 290 * 7);
        // An interval with nothing completed (a paused server) is never "recovered".
        let quiet = timeline((3..23).map(|k| (k, ok(if k >= 15 { 0 } else { 300 }, 0))));
        assert!(
            assess_timeline(&quiet, &[fault], Some(2_000))[0]
                .not_recovered
                .is_some()
        );
    }

    #[test]
    fn errors_before_the_fault_are_not_the_fault_s_and_an_unfelt_fault_recovers_at_once() {
        let mut intervals: Vec<(u64, IntervalFigures)> =
            (3..23).map(|k| (k, ok(300, 2_000))).collect();
        intervals[2].1 = failing(290, 2_000, &[(500, 10)]); // 5: before the fault
        let t = timeline(intervals);
        let fault = FaultWindow {
            start_us: 10_000_000,
            end_us: 10_000_200,
        };
        let r = &assess_timeline(&t, &[fault], Some(2_000))[0];
        assert_eq!(r.during, Tally::default());
        assert_eq!(r.after, Tally::default());
        assert_eq!(r.recovered_at_us, Some(10_000_000));
        // Never less than the injection itself took.
        assert_eq!(r.time_to_recover_us, Some(200));
        assert_eq!(r.recovery_span, 10..11);
    }

    #[test]
    fn a_pause_recovers_no_earlier_than_its_end_and_the_next_fault_bounds_the_search() {
        let mut intervals: Vec<(u64, IntervalFigures)> =
            (3..23).map(|k| (k, ok(300, 2_000))).collect();
        // Paused 8..11: nothing completes, then the backlog arrives slow.
        for k in 8..11 {
            intervals[k - 3].1 = ok(0, 0);
        }
        intervals[8].1 = ok(1_200, 3_000_000); // 11
        intervals[9].1 = ok(300, 900_000); // 12
        let t = timeline(intervals);
        let pause = FaultWindow {
            start_us: 8_000_000,
            end_us: 11_000_000,
        };
        let next = FaultWindow {
            start_us: 12_000_000,
            end_us: 12_000_000,
        };
        let [first, second] = assess_timeline(&t, &[pause, next], Some(2_000))
            .try_into()
            .expect("two");
        assert_eq!(
            first.not_recovered.as_deref(),
            Some("not recovered before the next fault, 4 s later")
        );
        assert_eq!(first.recovery_span, 8..12);
        assert_eq!(second.recovered_at_us, Some(13_000_000));
        assert_eq!(second.time_to_recover_us, Some(1_000_000));
    }

    #[test]
    fn the_pre_fault_p99_is_a_typical_interval_s_one_stall_does_not_move_it() {
        let mut intervals: Vec<(u64, IntervalFigures)> =
            (3..10).map(|k| (k, ok(300, 2_000))).collect();
        intervals[2].1 = ok(300, 900_000); // 5: a one-second stall before any fault
        intervals[4].1 = ok(0, 0); // 7: nothing completed: not a reference
        let t = timeline(intervals);
        assert_eq!(pre_fault_p99(&t, 3..10), Some(2_000));
        assert_eq!(pre_fault_p99(&t, 7..8), None);
    }

    #[test]
    fn without_measured_intervals_before_the_fault_the_warmup_is_the_reference() {
        let t = timeline((0..23).map(|k| (k, ok(100, 2_000))));
        assert_eq!(pre_fault_span(&t, Some(3_000_000)), 0..3);
        assert_eq!(pre_fault_span(&t, Some(9_500_000)), 3..9);
        let empty = timeline([]);
        assert_eq!(pre_fault_span(&empty, Some(3_000_000)), 0..0);
        // No reference: errors alone decide.
        assert!(interval_recovered(&ok(1, 9_000_000), None));
        assert!(!interval_recovered(&failing(1, 1, &[(503, 1)]), None));
    }

    /// A log written the way a run writes it: the p99 and the merged recovery p99 come back.
    #[test]
    fn the_log_gives_counts_the_pre_fault_p99_and_the_recovery_p99() {
        let (collector, sink) = Collector::start(vec!["r".into()], Instant::now(), 10_000_000);
        let mut user = crate::recorder::UserRecorder::new(sink);
        for second in 0..10u64 {
            for i in 0..100u64 {
                let at = second * US_PER_S + i * 10_000 + 1;
                let slow = matches!(second, 5 | 6);
                let mut sample =
                    Sample::success(0, if slow { 40_000 } else { 1_000 + i }, at, second < 1, 0);
                if second == 5 && i < 30 {
                    sample.error = true;
                    sample.status = 503;
                }
                user.push(sample);
            }
        }
        drop(user);
        let recording = collector.finish();
        let mut log = Vec::new();
        recording
            .write_hlog(&mut log, SystemTime::now(), "test")
            .expect("writes");
        let statuses = BTreeMap::from([(5, BTreeMap::from([(503, 30)]))]);
        let fault = FaultWindow {
            start_us: 5_000_000,
            end_us: 5_000_000,
        };
        let [r] = assess_log(&log, &statuses, &[fault], 1_000_000, 10_000_000)
            .expect("reads")
            .try_into()
            .expect("one");
        let pre = r.pre_fault_p99_us.expect("a reference");
        assert!((1_090..=1_100).contains(&pre), "{pre}");
        assert_eq!(r.during.errors, 30);
        assert_eq!(r.during.statuses, BTreeMap::from([(503, 30)]));
        assert_eq!(r.recovered_at_us, Some(7_000_000));
        assert_eq!(r.recovery_span, 5..7);
        let p99 = r.recovery_p99_us.expect("merged");
        assert!((39_900..=40_100).contains(&p99), "{p99}");
    }
}
