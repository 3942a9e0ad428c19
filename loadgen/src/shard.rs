//! Sharded runs: `apibench run SCENARIO --shard I/N --start-at T` sends one share of the
//! open-model schedule (slot s when s mod N = I — [`crate::schedule::ShardSlice`]) or of a closed
//! model's users, starting the schedule at the same wall-clock instant as every other shard.
//! `apibench merge` ([`crate::merge`]) adds the shards' histograms back into one run.
//!
//! This module holds what a shard records about itself (`shard.json`: which share, the host, how
//! early it was ready, how late its first send left, its clock against the target's), the default
//! start instant, and the per-shard row a merged summary carries. A shard never starts a target
//! or seeds a database: it loads a URL ([`check_shardable`]).

use crate::schedule::ShardSlice;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The file every shard writes beside its run.json.
pub const SHARD_FILE: &str = "shard.json";

/// Lead given to shards without `--start-at`: now + this, rounded up to a whole 10 s on the
/// wall clock, so shards launched together within a few seconds agree without being told.
pub const DEFAULT_START_LEAD: Duration = Duration::from_secs(5);

/// A start instant already this far in the past is refused: the shard would begin with a
/// backlog the others do not have.
pub const START_AT_TOLERANCE: Duration = Duration::from_secs(1);

/// `run.json`'s record of a shard's share and start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRunInfo {
    pub index: u32,
    pub count: u32,
    /// RFC 3339, UTC, milliseconds.
    pub start_at: String,
}

/// `shard.json`: one shard's facts, read by `apibench merge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    pub index: u32,
    pub count: u32,
    pub host: String,
    pub start_at: String,
    pub scenario_sha256: String,
    pub variant: String,
    /// How long before `start_at` the shard was ready to send (negative: it was late).
    pub start_lead_ms: Option<i64>,
    /// How late its first request left after that request's due time, µs (the start's own
    /// error on this shard's clock).
    pub first_send_late_us: Option<u64>,
    /// This host's clock minus the target's, ms, from the target's `Date` header flipping
    /// seconds (see [`probe_clock_offset`]); `None` when the target sent no usable `Date`.
    pub clock_offset_ms: Option<f64>,
    /// The offset's uncertainty (±), ms.
    pub clock_offset_resolution_ms: Option<f64>,
}

/// One shard's row in a merged run's summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardRow {
    pub index: u32,
    pub host: String,
    pub dir: String,
    pub requests: u64,
    pub achieved_send_rate_per_sec: f64,
    pub send_lag_p99_us: u64,
    pub generator_cpu_mean_percent: Option<f64>,
    pub valid: bool,
    pub verdict: String,
    pub invalid_reason: Option<String>,
    pub first_send_late_us: Option<u64>,
    pub clock_offset_ms: Option<f64>,
    pub clock_offset_resolution_ms: Option<f64>,
    /// This shard's start relative to the earliest shard's, as the target's clock saw it (from
    /// the clock offsets; ms), and that figure's uncertainty (±, ms).
    pub start_skew_ms: Option<f64>,
    #[serde(default)]
    pub start_skew_resolution_ms: Option<f64>,
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses `--start-at` (RFC 3339, any offset).
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(SystemTime::from)
        .map_err(|e| {
            format!("`{text}` is not an RFC 3339 instant ({e}); e.g. 2026-11-27T10:30:00Z")
        })
}

/// The default start: `now` + [`DEFAULT_START_LEAD`], rounded up to a whole 10 s.
pub fn default_start_at(now: SystemTime) -> SystemTime {
    let earliest = now + DEFAULT_START_LEAD;
    let secs = earliest
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.div_ceil(10) * 10)
}

/// Refuses a start already more than [`START_AT_TOLERANCE`] past.
pub fn check_start_at(start_at: SystemTime, now: SystemTime) -> Result<(), String> {
    match now.duration_since(start_at) {
        Ok(late) if late > START_AT_TOLERANCE => Err(format!(
            "--start-at {} is {:.1} s in the past: every shard must be running before it \
             (give a later instant, e.g. a minute ahead when pods still pull images)",
            rfc3339(start_at),
            late.as_secs_f64()
        )),
        _ => Ok(()),
    }
}

/// Why a run cannot be one shard of several: a shard never starts a target or seeds a database,
/// and each shard must run the same single phase.
pub fn check_shardable(
    shard: ShardSlice,
    variants: &[(String, &'static str)],
    repeat: u32,
    has_find_max: bool,
) -> Result<(), String> {
    if let Some((name, kind)) = variants.iter().find(|(_, kind)| *kind != "url") {
        return Err(format!(
            "--shard {shard}: variant `{name}` is kind \"{kind}\", but a shard never starts the \
             target or seeds the database — start the target once, then give every shard \
             --target-url URL (or use a scenario whose variants are kind = \"url\")"
        ));
    }
    if variants.len() != 1 {
        return Err(format!(
            "--shard {shard}: the scenario has {} variants; a sharded run measures one \
             (choose it with --variants NAME)",
            variants.len()
        ));
    }
    if repeat > 1 {
        return Err(format!(
            "--shard {shard}: --repeat {repeat} is not supported for shards (run the shards \
             again, each with its own --start-at, and merge each set)"
        ));
    }
    if has_find_max {
        return Err(format!(
            "--shard {shard}: a scenario with [find_max] cannot be sharded (each ramp stage \
             would need its own common start)"
        ));
    }
    Ok(())
}

/// This machine's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else "unknown").
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// One probe of the target's clock: the local wall clock when the request left and when the
/// answer came, and the whole second its `Date` header named.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DateProbe {
    pub sent: SystemTime,
    pub received: SystemTime,
    pub date_secs: u64,
}

/// The local clock minus the target's, ms (±resolution), from consecutive probes across a flip
/// of the target's `Date` second: the flip happened after probe `a` was answered by the server
/// (so after `a.sent`) and before `b` was (so before `b.received`); the target's clock read
/// `b.date_secs` at that moment. `None` when no two consecutive probes straddle a flip.
pub fn clock_offset_from(probes: &[DateProbe]) -> Option<(f64, f64)> {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    probes
        .windows(2)
        .filter(|w| w[1].date_secs == w[0].date_secs + 1)
        .map(|w| {
            let (low, high) = (secs(w[0].sent), secs(w[1].received));
            let local_at_flip = (low + high) / 2.0;
            (
                (local_at_flip - w[1].date_secs as f64) * 1000.0,
                (high - low) / 2.0 * 1000.0,
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Estimates this host's clock against the target's from its `Date` header turning a second —
/// all shards measure against the same clock, so their offsets tell their start skew. First
/// every ~10 ms until a flip (at most ~1.1 s), which places the target's second boundaries to
/// ±10 ms; then, just before the next boundary, back to back for at most 40 ms: ± about half a
/// round trip. About 150 small requests in ~2 s.
pub async fn probe_clock_offset(base_url: &str) -> Option<(f64, f64)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let url = format!("{}/", base_url.trim_end_matches('/'));
    let coarse = probe_until_flip(
        &client,
        &url,
        Duration::from_millis(10),
        Duration::from_millis(1_100),
    )
    .await?;
    // The target's next second begins 1 s after the flip just seen: on this clock at
    // (flip second + 1) + offset.
    let (offset_ms, _) = coarse;
    let next_flip = probe_date_secs(&client, &url).await?.0 + 1;
    let next_flip_local =
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(next_flip as f64 + offset_ms / 1000.0);
    let wake = next_flip_local - Duration::from_millis(15);
    if let Ok(wait) = wake.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let fine = probe_until_flip(&client, &url, Duration::ZERO, Duration::from_millis(40)).await;
    match fine {
        Some(f) if f.1 < coarse.1 => Some(f),
        _ => Some(coarse),
    }
}

/// One probe: the `Date` second the target named, with the local send and receive times.
async fn probe_date_secs(client: &reqwest::Client, url: &str) -> Option<(u64, DateProbe)> {
    let sent = SystemTime::now();
    let response = client.get(url).send().await.ok()?;
    let received = SystemTime::now();
    let date = response
        .headers()
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())?;
    let date_secs = u64::try_from(date.timestamp()).ok()?;
    Some((
        date_secs,
        DateProbe {
            sent,
            received,
            date_secs,
        },
    ))
}

/// Probes every `every` (back to back when zero) for at most `budget`, until two consecutive
/// answers straddle a flip of the target's second; the offset and its resolution.
async fn probe_until_flip(
    client: &reqwest::Client,
    url: &str,
    every: Duration,
    budget: Duration,
) -> Option<(f64, f64)> {
    let deadline = std::time::Instant::now() + budget;
    let mut last: Option<DateProbe> = None;
    while std::time::Instant::now() < deadline {
        let (_, probe) = probe_date_secs(client, url).await?;
        if let Some(previous) = last
            && probe.date_secs == previous.date_secs + 1
        {
            return clock_offset_from(&[previous, probe]);
        }
        last = Some(probe);
        if !every.is_zero() {
            tokio::time::sleep(every).await;
        }
    }
    None
}

/// Start skews from clock offsets (each `(offset, ±resolution)`, ms): each shard's start
/// relative to the earliest starter on the target's clock, with its uncertainty (its own
/// resolution plus the earliest's). Every shard began at `start_at` on its own clock, so a clock
/// ahead by d began d early on the target's.
pub fn start_skews_ms(offsets_ms: &[Option<(f64, f64)>]) -> Vec<Option<(f64, f64)>> {
    let earliest = offsets_ms
        .iter()
        .flatten()
        .copied()
        .reduce(|a, b| if b.0 > a.0 { b } else { a });
    let Some((latest_clock, its_resolution)) = earliest else {
        return vec![None; offsets_ms.len()];
    };
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    offsets_ms
        .iter()
        .map(|o| {
            o.map(|(offset, resolution)| {
                let same = offset == latest_clock;
                (
                    round3(latest_clock - offset),
                    round3(if same {
                        0.0
                    } else {
                        resolution + its_resolution
                    }),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    #[test]
    fn default_start_is_at_least_five_seconds_ahead_on_a_ten_second_mark() {
        assert_eq!(default_start_at(at(1_000.0)), at(1_010.0));
        assert_eq!(default_start_at(at(1_004.9)), at(1_010.0));
        assert_eq!(default_start_at(at(1_005.1)), at(1_020.0));
    }

    #[test]
    fn a_start_in_the_past_is_refused_with_the_reason() {
        assert!(check_start_at(at(100.0), at(100.5)).is_ok());
        assert!(check_start_at(at(100.0), at(50.0)).is_ok());
        let err = check_start_at(at(100.0), at(112.3)).expect_err("late");
        assert!(err.contains("12.3 s in the past"), "{err}");
        assert!(parse_start_at("tomorrow").is_err());
        assert_eq!(parse_start_at("1970-01-01T00:16:40+00:00"), Ok(at(1_000.0)));
    }

    #[test]
    fn only_a_single_url_phase_shards() {
        let shard = ShardSlice { index: 0, count: 2 };
        let url = [("remote".to_string(), "url")];
        assert!(check_shardable(shard, &url, 1, false).is_ok());
        let api = [("rust".to_string(), "api")];
        let err = check_shardable(shard, &api, 1, false).expect_err("api");
        assert!(
            err.contains("--target-url") && err.contains("`rust`"),
            "{err}"
        );
        let two = [("a".to_string(), "url"), ("b".to_string(), "url")];
        assert!(check_shardable(shard, &two, 1, false).is_err());
        assert!(check_shardable(shard, &url, 3, false).is_err());
        assert!(check_shardable(shard, &url, 1, true).is_err());
    }

    #[test]
    fn clock_offset_comes_from_the_flip_of_the_target_second() {
        // Local clock 250 ms ahead of the target's: the target's second 1001 begins at local
        // 1001.25; probes every 10 ms with 1 ms round trips.
        let probes: Vec<DateProbe> = (0..40)
            .map(|i| {
                let sent = 1_000.9 + f64::from(i) * 0.01;
                let received = sent + 0.001;
                let server = sent + 0.0005 - 0.25;
                DateProbe {
                    sent: at(sent),
                    received: at(received),
                    date_secs: server.floor() as u64,
                }
            })
            .collect();
        let (offset, resolution) = clock_offset_from(&probes).expect("a flip");
        assert!(
            (offset - 250.0).abs() <= resolution + 0.001,
            "{offset} ± {resolution}"
        );
        assert!(resolution <= 6.0, "{resolution}");
        assert_eq!(clock_offset_from(&probes[..5]), None, "no flip in 50 ms");
    }

    #[test]
    fn skews_are_relative_to_the_earliest_starter() {
        // Shard 1's clock is 3 ms behind shard 0's: it starts 3 ms later on the target's clock,
        // known to the sum of both measurements' resolutions.
        let skews = start_skews_ms(&[Some((10.0, 0.5)), Some((7.0, 0.25)), None]);
        assert_eq!(skews, vec![Some((0.0, 0.0)), Some((3.0, 0.75)), None]);
        assert_eq!(start_skews_ms(&[None]), vec![None]);
    }
}
