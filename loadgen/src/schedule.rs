//! The open model's shared schedule: request `i` is due at `start + i / rate` (piecewise over
//! stages) — or, replaying a recording ([`SchedulePlan::replay`]), at `start + offset_i / speed`
//! with the recorded request ([`Slot::request`]). Users take the next slot of their worker's lane (slot i belongs to lane i mod N), sleep until it is due and send;
//! latency counts from the *due* time, so a request that waited behind a stalled server carries
//! that wait (wrk2's rule against coordinated omission). When the generator falls behind, slots
//! are already due when taken and go out at once: the schedule catches up rather than silently
//! stretching.
//!
//! Everything except [`Schedule::take`] is pure arithmetic on offsets, tested without a clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A send is generator-late when it left more than this after the later of its due time and the
/// moment its user became free. The pacer keeps sends to tens of µs; a millisecond is the
/// generator's own fault.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(1);

/// A slot is backlogged when it was already this overdue when a user got to it (every user was
/// busy): the server's backlog, and the open model's cue to add a user.
pub const BACKLOG_THRESHOLD: Duration = Duration::from_millis(1);

/// A constant rate for a while.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    pub rate_per_sec: f64,
    #[serde(with = "duration_ms")]
    pub duration: Duration,
}

/// Serde helper: a `Duration` as integer milliseconds.
pub mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    start_offset_secs: f64,
    first_slot: u64,
    slots: u64,
    rate_per_sec: f64,
}

/// Which share of a schedule this process sends: slot `s` of the whole schedule belongs to shard
/// `s mod count`, so `count` shards together send exactly the single-process schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardSlice {
    pub index: u32,
    pub count: u32,
}

impl ShardSlice {
    /// The whole schedule (one shard of one).
    pub const WHOLE: ShardSlice = ShardSlice { index: 0, count: 1 };

    /// How many of the first `slots` slots of the whole schedule are this shard's.
    pub fn share_of(self, slots: u64) -> u64 {
        let (index, count) = (u64::from(self.index), u64::from(self.count.max(1)));
        if slots > index {
            (slots - index - 1) / count + 1
        } else {
            0
        }
    }

    /// The whole schedule's slot for this shard's `local` slot.
    pub fn global_slot(self, local: u64) -> Option<u64> {
        local
            .checked_mul(u64::from(self.count.max(1)))?
            .checked_add(u64::from(self.index))
    }
}

impl std::fmt::Display for ShardSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for ShardSlice {
    type Err = String;
    /// `I/N` with `0 <= I < N`, e.g. `0/2`.
    fn from_str(text: &str) -> Result<ShardSlice, String> {
        let usage = || format!("`{text}` is not a shard: expected I/N with 0 <= I < N, e.g. 0/2");
        let (index, count) = text.trim().split_once('/').ok_or_else(usage)?;
        let index: u32 = index.trim().parse().map_err(|_| usage())?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 || index >= count {
            return Err(usage());
        }
        Ok(ShardSlice { index, count })
    }
}

/// One recorded request of a replay: when it arrived, from the recording's first request, and
/// which `[[requests]]` entry it was (its index in file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayArrival {
    pub offset_us: u64,
    pub request: u32,
}

/// A replay's arrivals (sorted by offset, shared, never copied per phase) and its speed.
#[derive(Debug, Clone, PartialEq)]
struct Replay {
    arrivals: Arc<[ReplayArrival]>,
    /// 1.0 replays the recording's own timing; 2.0 twice as fast.
    speed: f64,
}

impl Replay {
    /// A recorded offset on the replay's clock.
    fn due(&self, offset_us: u64) -> Duration {
        // In whole nanoseconds: exact at speed 1.0 and 2.0, rounded (not truncated) otherwise.
        Duration::from_nanos((offset_us as f64 * 1e3 / self.speed).round() as u64)
    }
}

/// Where a recording of `count` requests, the last at `last_offset_us`, ends: one mean gap
/// after its last request (as a constant-rate schedule of the same count and mean rate ends), or
/// 1 s after it when there is no gap to take the mean of.
pub fn recording_end_us(last_offset_us: u64, count: u64) -> u64 {
    let mean_gap_us = if count > 1 && last_offset_us > 0 {
        (last_offset_us / (count - 1)).max(1)
    } else {
        1_000_000
    };
    last_offset_us.saturating_add(mean_gap_us)
}

/// The whole schedule of one load phase, as offsets from its start — or one shard's share of it
/// ([`SchedulePlan::shard`]): then slot numbers are the shard's own (0, 1, 2, …) and each maps to
/// the whole schedule's slot `local × count + index`, due when that slot is due.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulePlan {
    segments: Vec<Segment>,
    /// A recording's arrivals instead of rates (then `segments` is empty).
    replay: Option<Replay>,
    total_slots: u64,
    warmup_slots: u64,
    warmup: Duration,
    end_offset: Duration,
    shard: ShardSlice,
}

impl SchedulePlan {
    /// A warm-up at the first stage's rate, then the stages.
    pub fn new(warmup: Duration, stages: &[Stage]) -> SchedulePlan {
        let mut all = Vec::with_capacity(stages.len() + 1);
        if let Some(first) = stages.first()
            && !warmup.is_zero()
        {
            all.push(Stage {
                rate_per_sec: first.rate_per_sec,
                duration: warmup,
            });
        }
        all.extend_from_slice(stages);
        let mut segments = Vec::with_capacity(all.len());
        let mut offset_secs = 0.0;
        let mut first_slot = 0;
        for stage in &all {
            let secs = stage.duration.as_secs_f64();
            // Rounded, so 500/s for 20 s is exactly 10 000 requests.
            let slots = (stage.rate_per_sec * secs).round().max(0.0) as u64;
            segments.push(Segment {
                start_offset_secs: offset_secs,
                first_slot,
                slots,
                rate_per_sec: stage.rate_per_sec,
            });
            offset_secs += secs;
            first_slot += slots;
        }
        let warmup_slots = if warmup.is_zero() || stages.is_empty() {
            0
        } else {
            segments.first().map_or(0, |s| s.slots)
        };
        SchedulePlan {
            segments,
            replay: None,
            total_slots: first_slot,
            warmup_slots,
            warmup,
            end_offset: Duration::from_secs_f64(offset_secs),
            shard: ShardSlice::WHOLE,
        }
    }

    /// A recording replayed: slot `k` is the `k`-th arrival, due at `offset_k / speed` (2.0: twice
    /// as fast), and carries its recorded request. The warm-up is the recording's own first
    /// `warmup` (on the replay's clock), not extra traffic before it: those arrivals are sent but
    /// not measured. The schedule ends one mean gap after the last arrival, as a constant-rate
    /// schedule of the same count and mean rate would. `arrivals` must be sorted by offset (the
    /// scenario parser refuses a file that is not).
    pub fn replay(warmup: Duration, arrivals: Arc<[ReplayArrival]>, speed: f64) -> SchedulePlan {
        let replay = Replay {
            arrivals,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        };
        let count = replay.arrivals.len() as u64;
        let last_us = replay.arrivals.last().map_or(0, |a| a.offset_us);
        let end_offset = replay.due(recording_end_us(last_us, count));
        let warmup_slots = replay
            .arrivals
            .partition_point(|a| replay.due(a.offset_us) < warmup)
            as u64;
        SchedulePlan {
            segments: Vec::new(),
            total_slots: count,
            warmup_slots,
            warmup,
            end_offset,
            shard: ShardSlice::WHOLE,
            replay: Some(replay),
        }
    }

    /// Whether slots carry recorded requests ([`SchedulePlan::replay`]).
    pub fn is_replay(&self) -> bool {
        self.replay.is_some()
    }

    /// This shard's share of the schedule: the same due times, every `count`-th slot.
    pub fn shard(mut self, shard: ShardSlice) -> SchedulePlan {
        self.shard = shard;
        self
    }

    /// The share of the whole schedule this plan sends.
    pub fn shard_slice(&self) -> ShardSlice {
        self.shard
    }

    /// How many requests the schedule (this shard's share) holds, warm-up included.
    pub fn total_slots(&self) -> u64 {
        self.shard.share_of(self.total_slots)
    }

    /// Requests due during the warm-up (the first `warmup_slots` slots of this share).
    pub fn warmup_slots(&self) -> u64 {
        self.shard.share_of(self.warmup_slots)
    }

    pub fn warmup(&self) -> Duration {
        self.warmup
    }

    /// When the last stage ends, from the start.
    pub fn end_offset(&self) -> Duration {
        self.end_offset
    }

    /// The mean target rate after the warm-up.
    pub fn measured_rate_per_sec(&self) -> f64 {
        let secs = self.end_offset.saturating_sub(self.warmup).as_secs_f64();
        if secs > 0.0 {
            (self.total_slots() - self.warmup_slots()) as f64 / secs
        } else {
            0.0
        }
    }

    /// When slot `slot` (of this share) is due, from the start; `None` past the end.
    pub fn offset_of(&self, slot: u64) -> Option<Duration> {
        let slot = self.shard.global_slot(slot)?;
        if slot >= self.total_slots {
            return None;
        }
        if let Some(replay) = &self.replay {
            let arrival = replay.arrivals.get(usize::try_from(slot).ok()?)?;
            return Some(replay.due(arrival.offset_us));
        }
        // Few segments: a linear scan from the back beats a binary search.
        let segment = self
            .segments
            .iter()
            .rev()
            .find(|s| s.first_slot <= slot && s.slots > 0)?;
        let within = (slot - segment.first_slot) as f64 / segment.rate_per_sec;
        Some(Duration::from_secs_f64(segment.start_offset_secs + within))
    }

    /// The recorded request of slot `slot` (of this share): `None` for a rate schedule, whose
    /// users pick by weight.
    pub fn request_of(&self, slot: u64) -> Option<usize> {
        let replay = self.replay.as_ref()?;
        let slot = usize::try_from(self.shard.global_slot(slot)?).ok()?;
        replay.arrivals.get(slot).map(|a| a.request as usize)
    }

    /// The target rate at `offset` (for the progress display; a replay's: its arrivals in the
    /// second before `offset`).
    pub fn rate_at(&self, offset: Duration) -> f64 {
        if let Some(replay) = &self.replay {
            let due = |a: &ReplayArrival| replay.due(a.offset_us);
            let from = replay
                .arrivals
                .partition_point(|a| due(a) < offset.saturating_sub(Duration::from_secs(1)));
            let to = replay.arrivals.partition_point(|a| due(a) <= offset);
            return to.saturating_sub(from) as f64;
        }
        let secs = offset.as_secs_f64();
        self.segments
            .iter()
            .rev()
            .find(|s| s.start_offset_secs <= secs)
            .map_or(0.0, |s| s.rate_per_sec)
    }
}

/// What a user does with the slot it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Due in the future: sleep this long, then send.
    Sleep(Duration),
    /// Already due (catch-up): send now; it is this far behind its schedule.
    SendNow { behind: Duration },
}

/// Pure: what to do with a slot due at `due` when the clock reads `now` (both offsets).
pub fn wait_for(due: Duration, now: Duration) -> Wait {
    if due > now {
        Wait::Sleep(due - now)
    } else {
        Wait::SendNow { behind: now - due }
    }
}

/// Pure: the generator's lateness rule. `free_at` is when the user finished its previous request:
/// waiting for a busy user is the server's doing (a backlog), not the generator's.
pub fn is_generator_late(due: Instant, user_free_at: Instant, sent_at: Instant) -> bool {
    send_lag(due, user_free_at, sent_at) > LATE_THRESHOLD
}

/// Pure: the generator's own lateness — the actual send minus the moment it could have gone.
pub fn send_lag(due: Instant, user_free_at: Instant, sent_at: Instant) -> Duration {
    sent_at.saturating_duration_since(due.max(user_free_at))
}

/// Pure: the slot was already overdue when its user became free — every user was busy.
pub fn is_backlogged(due: Instant, user_free_at: Instant) -> bool {
    user_free_at.saturating_duration_since(due) > BACKLOG_THRESHOLD
}

/// The schedule shared by all users of one load phase, split into lanes: lane `w` of `N` hands
/// out slots `w, w + N, w + 2N, …` from its own counter, so each generator worker takes slots
/// without touching a counter another worker writes (each lane on its own cache line).
#[derive(Debug)]
pub struct Schedule {
    plan: SchedulePlan,
    lanes: Box<[Lane]>,
    start: OnceLock<Instant>,
}

/// One lane's counter: how many slots it has handed out.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Lane(AtomicU64);

/// A slot a user took.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub index: u64,
    pub due: Instant,
    pub in_warmup: bool,
    /// A replay's recorded request (index into `[[requests]]`); `None` for a rate schedule.
    pub request: Option<usize>,
}

impl Schedule {
    /// One lane: every slot from one counter.
    pub fn new(plan: SchedulePlan) -> Schedule {
        Schedule::with_lanes(plan, 1)
    }

    /// `lanes` (≥ 1) lanes: lane `w` hands out slots `w, w + lanes, …`.
    pub fn with_lanes(plan: SchedulePlan, lanes: usize) -> Schedule {
        Schedule {
            plan,
            lanes: (0..lanes.max(1)).map(|_| Lane::default()).collect(),
            start: OnceLock::new(),
        }
    }

    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    pub fn plan(&self) -> &SchedulePlan {
        &self.plan
    }

    /// The schedule's start: fixed by the first call (the first user ready to send).
    pub fn start(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    /// Fixes the start in advance (`--start-at`: every shard at the same wall-clock instant);
    /// no-op once started.
    pub fn set_start(&self, at: Instant) {
        let _ = self.start.set(at);
    }

    /// The start, if the schedule has started.
    pub fn started_at(&self) -> Option<Instant> {
        self.start.get().copied()
    }

    /// Takes the next slot of lane 0; `None` once the schedule is exhausted.
    pub fn take(&self) -> Option<Slot> {
        self.take_from(0)
    }

    /// Takes lane `lane`'s next slot; `None` once its share of the schedule is exhausted.
    pub fn take_from(&self, lane: usize) -> Option<Slot> {
        let start = self.start();
        let lanes = self.lanes.len() as u64;
        let taken = self.lanes.get(lane)?.0.fetch_add(1, Ordering::Relaxed);
        let index = taken.checked_mul(lanes)?.checked_add(lane as u64)?;
        let offset = self.plan.offset_of(index)?;
        Some(Slot {
            index,
            due: start + offset,
            in_warmup: index < self.plan.warmup_slots(),
            request: self.plan.request_of(index),
        })
    }

    /// Stops handing out slots, in every lane (Ctrl-C, or the drain's end).
    pub fn exhaust(&self) {
        for lane in &self.lanes {
            lane.0.store(u64::MAX / 2, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(rate_per_sec: f64, secs: u64) -> Stage {
        Stage {
            rate_per_sec,
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn constant_rate_slots_are_evenly_spaced() {
        let plan = SchedulePlan::new(Duration::ZERO, &[stage(500.0, 20)]);
        assert_eq!(plan.total_slots(), 10_000);
        assert_eq!(plan.offset_of(0), Some(Duration::ZERO));
        assert_eq!(plan.offset_of(1), Some(Duration::from_millis(2)));
        assert_eq!(plan.offset_of(500), Some(Duration::from_secs(1)));
        assert_eq!(
            plan.offset_of(9_999),
            Some(Duration::from_micros(19_998_000))
        );
        assert_eq!(plan.offset_of(10_000), None);
        assert_eq!(plan.measured_rate_per_sec(), 500.0);
    }

    #[test]
    fn stages_are_piecewise_and_warmup_runs_at_the_first_rate() {
        let plan = SchedulePlan::new(
            Duration::from_secs(2),
            &[stage(100.0, 10), stage(1000.0, 5)],
        );
        assert_eq!(plan.warmup_slots(), 200);
        assert_eq!(plan.total_slots(), 200 + 1_000 + 5_000);
        // Warm-up: 100/s.
        assert_eq!(plan.offset_of(199), Some(Duration::from_millis(1_990)));
        // First measured stage starts at 2 s.
        assert_eq!(plan.offset_of(200), Some(Duration::from_secs(2)));
        // Second stage starts at 12 s and spaces requests 1 ms apart.
        assert_eq!(plan.offset_of(1_200), Some(Duration::from_secs(12)));
        assert_eq!(plan.offset_of(1_201), Some(Duration::from_millis(12_001)));
        assert_eq!(plan.end_offset(), Duration::from_secs(17));
        assert_eq!(plan.rate_at(Duration::from_secs(13)), 1000.0);
        assert_eq!(plan.measured_rate_per_sec(), 6_000.0 / 15.0);
    }

    #[test]
    fn overdue_slots_go_out_at_once_and_count_their_backlog() {
        // A 500 ms stall at 100/s leaves 50 slots overdue; each is sent immediately and knows
        // how far behind it is — that is what the latency from the schedule then includes.
        let plan = SchedulePlan::new(Duration::ZERO, &[stage(100.0, 10)]);
        let resume = Duration::from_millis(1_500);
        let overdue: Vec<Wait> = (100..150)
            .map(|slot| wait_for(plan.offset_of(slot).expect("in range"), resume))
            .collect();
        assert!(overdue.iter().all(|w| matches!(w, Wait::SendNow { .. })));
        assert_eq!(
            overdue[0],
            Wait::SendNow {
                behind: Duration::from_millis(500)
            }
        );
        assert_eq!(
            wait_for(plan.offset_of(151).expect("in range"), resume),
            Wait::Sleep(Duration::from_millis(10))
        );
    }

    #[test]
    fn lateness_blames_the_generator_only_when_the_user_was_free() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        // User free before the due time, sent 15 ms after it: generator-late.
        assert!(is_generator_late(t0 + ms(100), t0, t0 + ms(115)));
        // 1.5 ms late is late too (tokio's timer alone made ~1.2 ms).
        assert!(is_generator_late(t0 + ms(100), t0, t0 + us(101_500)));
        // Sent 200 µs after due: fine.
        assert!(!is_generator_late(t0 + ms(100), t0, t0 + us(100_200)));
        // The user was busy until 400 ms (slow server) and sent 300 µs later: not the
        // generator's fault, but the slot was backlogged.
        assert!(!is_generator_late(
            t0 + ms(100),
            t0 + ms(400),
            t0 + us(400_300)
        ));
        assert!(is_backlogged(t0 + ms(100), t0 + ms(400)));
        assert!(!is_backlogged(t0 + ms(100), t0 + ms(50)));
    }

    #[test]
    fn lanes_share_the_slots_without_gaps_or_repeats() {
        let schedule =
            Schedule::with_lanes(SchedulePlan::new(Duration::ZERO, &[stage(10.0, 1)]), 3);
        let mut taken: Vec<(usize, u64)> = Vec::new();
        for lane in [0, 1, 2, 2, 0, 1, 1, 1, 1, 0, 0, 0, 2, 2, 2] {
            if let Some(slot) = schedule.take_from(lane) {
                taken.push((lane, slot.index));
            }
        }
        assert!(taken.iter().all(|(lane, index)| index % 3 == *lane as u64));
        let mut indexes: Vec<u64> = taken.iter().map(|(_, i)| *i).collect();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..10).collect::<Vec<_>>());
        assert!(schedule.take_from(3).is_none(), "no such lane");
        schedule.exhaust();
        assert!((0..3).all(|lane| schedule.take_from(lane).is_none()));
    }

    /// A recording with bursts, gaps and a repeated request, for the replay tests.
    fn recording() -> Arc<[ReplayArrival]> {
        [
            (0, 0),
            (100_000, 2),
            (100_000, 1),
            (150_000, 1),
            (1_000_000, 0),
            (1_000_001, 2),
            (2_400_000, 1),
        ]
        .into_iter()
        .map(|(offset_us, request)| ReplayArrival { offset_us, request })
        .collect()
    }

    #[test]
    fn shards_together_send_exactly_the_whole_schedule() {
        let staged = SchedulePlan::new(Duration::from_secs(1), &[stage(7.0, 3), stage(13.0, 2)]);
        // A replay at 1.5x speed whose warm-up (the recording's first 100 ms on the replay's
        // clock) ends inside a burst.
        let replay = SchedulePlan::replay(Duration::from_millis(100), recording(), 1.5);
        for whole in [staged, replay] {
            for count in 1..=5u32 {
                let mut dues: Vec<(Duration, bool, Option<usize>)> = Vec::new();
                let mut warmup = 0;
                for index in 0..count {
                    let shard = whole.clone().shard(ShardSlice { index, count });
                    warmup += shard.warmup_slots();
                    let schedule = Schedule::with_lanes(shard.clone(), 2);
                    let start = schedule.start();
                    for lane in 0..2 {
                        while let Some(slot) = schedule.take_from(lane) {
                            dues.push((slot.due - start, slot.in_warmup, slot.request));
                        }
                    }
                }
                assert_eq!(warmup, whole.warmup_slots(), "{count} shards");
                assert_eq!(dues.len() as u64, whole.total_slots(), "{count} shards");
                dues.sort();
                let mut expected: Vec<(Duration, bool, Option<usize>)> = (0..whole.total_slots())
                    .map(|s| {
                        (
                            whole.offset_of(s).expect("in range"),
                            s < whole.warmup_slots(),
                            whole.request_of(s),
                        )
                    })
                    .collect();
                expected.sort();
                assert_eq!(
                    dues, expected,
                    "{count} shards send the single-process schedule"
                );
            }
        }
    }

    #[test]
    fn replay_slots_are_due_at_the_recorded_offsets_over_the_speed_with_their_request() {
        let original = SchedulePlan::replay(Duration::ZERO, recording(), 1.0);
        assert!(original.is_replay());
        assert_eq!(original.total_slots(), 7);
        assert_eq!(original.offset_of(3), Some(Duration::from_millis(150)));
        assert_eq!(
            original.offset_of(5),
            Some(Duration::from_micros(1_000_001))
        );
        assert_eq!(original.offset_of(7), None);
        assert_eq!(original.request_of(1), Some(2));
        assert_eq!(original.request_of(2), Some(1));
        assert_eq!(original.request_of(7), None);
        // Ends one mean gap (2.4 s / 6) after the last arrival.
        assert_eq!(original.end_offset(), Duration::from_millis(2_800));
        assert_eq!(original.measured_rate_per_sec(), 7.0 / 2.8);

        // Twice as fast: every due time halves; the recording's first 120 ms (60 ms of the
        // replay) are its warm-up, sent but not measured.
        let fast = SchedulePlan::replay(Duration::from_millis(60), recording(), 2.0);
        assert_eq!(fast.offset_of(1), Some(Duration::from_millis(50)));
        assert_eq!(fast.offset_of(6), Some(Duration::from_millis(1_200)));
        assert_eq!(fast.end_offset(), Duration::from_millis(1_400));
        assert_eq!(fast.warmup_slots(), 3);
        assert!((fast.measured_rate_per_sec() - 4.0 / 1.34).abs() < 1e-9);
        // The progress display's rate: the arrivals of the last second.
        assert_eq!(fast.rate_at(Duration::from_millis(1_000)), 6.0);

        let schedule = Schedule::new(fast);
        let start = schedule.start();
        let slots: Vec<Slot> = std::iter::from_fn(|| schedule.take()).collect();
        let seen: Vec<(u64, Option<usize>, bool)> = slots
            .iter()
            .map(|s| {
                (
                    u64::try_from((s.due - start).as_micros()).expect("small"),
                    s.request,
                    s.in_warmup,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, Some(0), true),
                (50_000, Some(2), true),
                (50_000, Some(1), true),
                (75_000, Some(1), false),
                (500_000, Some(0), false),
                (500_000, Some(2), false),
                (1_200_000, Some(1), false),
            ]
        );
    }

    #[test]
    fn a_rate_schedule_leaves_the_request_to_the_weighted_pick() {
        let schedule = Schedule::new(SchedulePlan::new(Duration::ZERO, &[stage(10.0, 1)]));
        let slot = schedule.take().expect("a slot");
        assert_eq!(slot.request, None);
        assert!(!schedule.plan().is_replay());
    }

    #[test]
    fn shard_slices_parse_and_refuse_nonsense() {
        assert_eq!(
            "1/4".parse::<ShardSlice>(),
            Ok(ShardSlice { index: 1, count: 4 })
        );
        for bad in ["4/4", "0/0", "1", "a/2", "-1/2", "1/2/3"] {
            assert!(bad.parse::<ShardSlice>().is_err(), "{bad}");
        }
        let share = ShardSlice { index: 2, count: 3 };
        assert_eq!(share.share_of(2), 0);
        assert_eq!(share.share_of(3), 1);
        assert_eq!(share.share_of(10), 3); // 2, 5, 8
        assert_eq!(share.to_string(), "2/3");
    }

    #[test]
    fn exhausted_schedule_hands_out_nothing() {
        let schedule = Schedule::new(SchedulePlan::new(Duration::ZERO, &[stage(10.0, 1)]));
        assert_eq!(schedule.take().map(|s| s.index), Some(0));
        schedule.exhaust();
        assert!(schedule.take().is_none());
    }
}
