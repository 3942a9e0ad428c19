//! The interval log (`latency.hlog`, HdrHistogram's V2-deflate interval-log format): written
//! whole from a [`Recording`] (tests, fixtures), streamed interval by interval by the collector
//! ([`HlogStream`], [`StreamWriter`]), read back whole ([`read_hlog`]) or entry by entry
//! ([`for_each_hlog_interval`]: memory stays one histogram whatever the log's length).
//!
//! A streamed log is written one `write` per flushed group of intervals, each entry a whole line,
//! so a killed run leaves whole lines but for, at worst, the last one.

use super::{IntervalRecording, Recording, add};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder, Tag};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// The max column's unit: milliseconds (values are microseconds).
const MAX_VALUE_DIVISOR: f64 = 1_000.0;
const UNITS_COMMENT: &str = "values in microseconds; the max column in milliseconds";

impl Recording {
    /// Writes the 1 s intervals (untagged: successes' latency; tags `ttfb`, `errors` and
    /// `send_lag`) in the HdrHistogram interval-log format. Values are microseconds; the max
    /// column is in ms. Empty `errors` histograms are left out.
    pub fn write_hlog(
        &self,
        out: &mut impl std::io::Write,
        started_at: SystemTime,
        comment: &str,
    ) -> std::io::Result<()> {
        let mut serializer = V2DeflateSerializer::new();
        let mut writer = log_header(started_at, comment).begin_log_with(out, &mut serializer)?;
        write_entries(&mut writer, self.intervals.values())
    }
}

/// A whole log's header: the comment, the units, StartTime = BaseTime = `started_at`, the max
/// column's divisor.
fn log_header(started_at: SystemTime, comment: &str) -> IntervalLogWriterBuilder {
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(comment)
        .add_comment(UNITS_COMMENT)
        .with_start_time(started_at)
        .with_base_time(started_at)
        .with_max_value_divisor(MAX_VALUE_DIVISOR);
    builder
}

/// Writes each interval's entries (untagged: successes' latency; `ttfb`, `errors` when any,
/// `send_lag`).
fn write_entries<'a, W: Write>(
    writer: &mut IntervalLogWriter<'_, '_, W, V2DeflateSerializer>,
    intervals: impl IntoIterator<Item = &'a IntervalRecording>,
) -> std::io::Result<()> {
    let ttfb_tag = Tag::new("ttfb");
    let errors_tag = Tag::new("errors");
    let send_lag_tag = Tag::new("send_lag");
    for interval in intervals {
        let start = Duration::from_secs(interval.index);
        let length = Duration::from_secs(1);
        let entries = [
            (&interval.latency, None),
            (&interval.ttfb, ttfb_tag),
            (&interval.errors, errors_tag),
            (&interval.send_lag, send_lag_tag),
        ];
        for (histogram, tag) in entries {
            if tag == errors_tag && histogram.is_empty() {
                continue;
            }
            writer
                .write_histogram(histogram, start, length, tag)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
    }
    Ok(())
}

/// Where the collector streams a phase's intervals.
#[derive(Debug, Clone)]
pub struct HlogStream {
    pub path: PathBuf,
    /// The log's first comment line (what it holds).
    pub comment: String,
    /// The schedule's start on the wall clock (the log's StartTime and BaseTime): set when the
    /// schedule starts, read when the first interval is written.
    pub started_at: Arc<OnceLock<SystemTime>>,
}

/// The open log of an [`HlogStream`]: the header goes in with the first intervals.
pub(crate) struct StreamWriter {
    stream: HlogStream,
    file: std::fs::File,
    serializer: V2DeflateSerializer,
    buffer: Vec<u8>,
    header_written: bool,
}

impl StreamWriter {
    /// Creates (truncates) the file now, so a path error shows before the load starts.
    pub(crate) fn create(stream: HlogStream) -> std::io::Result<StreamWriter> {
        if let Some(parent) = stream.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::File::create(&stream.path)?;
        Ok(StreamWriter {
            stream,
            file,
            serializer: V2DeflateSerializer::new(),
            buffer: Vec::new(),
            header_written: false,
        })
    }

    /// Appends `intervals` (in one `write`), the header first if this is the first time.
    pub(crate) fn write(&mut self, intervals: &[IntervalRecording]) -> std::io::Result<()> {
        if intervals.is_empty() && self.header_written {
            return Ok(());
        }
        self.buffer.clear();
        let mut builder = IntervalLogWriterBuilder::new();
        builder.with_max_value_divisor(MAX_VALUE_DIVISOR);
        if !self.header_written {
            let started = *self.stream.started_at.get_or_init(SystemTime::now);
            builder
                .add_comment(&self.stream.comment)
                .add_comment(UNITS_COMMENT)
                .with_start_time(started)
                .with_base_time(started);
        }
        {
            let mut writer = builder.begin_log_with(&mut self.buffer, &mut self.serializer)?;
            write_entries(&mut writer, intervals)?;
        }
        let body = if self.header_written {
            // The builder always states the divisor; the header already did, once.
            let first_line = self
                .buffer
                .iter()
                .position(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            &self.buffer[first_line..]
        } else {
            &self.buffer[..]
        };
        self.file.write_all(body)?;
        self.header_written = true;
        Ok(())
    }
}

/// One interval read back from an interval log.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    pub tag: Option<String>,
    pub start: Duration,
    /// Usually 1 s; the last interval of a run is shorter (the drain after the schedule).
    pub duration: Duration,
    pub histogram: Histogram<u64>,
}

/// Reads an interval log written by [`Recording::write_hlog`] or streamed by the collector (or
/// any V2 / V2-deflate log), whole: entries sorted by start then tag, and entries that share a
/// start and a tag (a late batch written after its interval was flushed) added into one. Holds
/// every histogram in memory: for long logs use [`for_each_hlog_interval`].
pub fn read_hlog(bytes: &[u8]) -> Result<Vec<LoggedInterval>, String> {
    let mut by_key: BTreeMap<(Duration, Option<String>), LoggedInterval> = BTreeMap::new();
    for_each_hlog_interval(bytes, |interval| {
        match by_key.entry((interval.start, interval.tag.clone())) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(interval);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                let held = slot.get_mut();
                add(&mut held.histogram, &interval.histogram);
                held.duration = held.duration.max(interval.duration);
            }
        }
        Ok(())
    })?;
    Ok(by_key.into_values().collect())
}

/// Streams an interval log: `visit` gets each interval entry in file order, decoded one at a
/// time (memory stays one histogram whatever the log's length). A streamed log may hold a
/// (start, tag) twice — a batch that arrived after its interval was written goes in as a second
/// entry — so a consumer that keys by start adds them. The first error (from the log or from
/// `visit`) stops the walk.
pub fn for_each_hlog_interval(
    bytes: &[u8],
    visit: impl FnMut(LoggedInterval) -> Result<(), String>,
) -> Result<(), String> {
    for_each_hlog_interval_tagged(bytes, |_| true, visit)
}

/// [`for_each_hlog_interval`] for the entries whose tag `wanted` accepts (`None`: untagged);
/// the others are skipped before their histogram is decoded — most of a long log's reading
/// time when only the latencies are needed.
pub fn for_each_hlog_interval_tagged(
    bytes: &[u8],
    wanted: impl Fn(Option<&str>) -> bool,
    mut visit: impl FnMut(LoggedInterval) -> Result<(), String>,
) -> Result<(), String> {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry {
            Ok(LogEntry::Interval(interval)) if !wanted(interval.tag().map(|t| t.as_str())) => {}
            Ok(LogEntry::Interval(interval)) => {
                visit(logged_interval(&interval, &mut deserializer)?)?;
            }
            Ok(_) => {}
            Err(e) => return Err(format!("bad interval log: {e:?}")),
        }
    }
    Ok(())
}

/// An interval log's entries one at a time, decoded as they are pulled (like
/// [`for_each_hlog_interval`], but the caller drives: several logs can be walked side by side).
pub struct HlogIntervals<'a> {
    entries: hdrhistogram::serialization::interval_log::IntervalLogIterator<'a>,
    deserializer: hdrhistogram::serialization::Deserializer,
}

/// Walks `bytes`' interval entries in file order.
pub fn hlog_intervals(bytes: &[u8]) -> HlogIntervals<'_> {
    HlogIntervals {
        entries: hdrhistogram::serialization::interval_log::IntervalLogIterator::new(bytes),
        deserializer: hdrhistogram::serialization::Deserializer::new(),
    }
}

impl Iterator for HlogIntervals<'_> {
    type Item = Result<LoggedInterval, String>;

    fn next(&mut self) -> Option<Self::Item> {
        use hdrhistogram::serialization::interval_log::LogEntry;
        loop {
            match self.entries.next()? {
                Ok(LogEntry::Interval(interval)) => {
                    return Some(logged_interval(&interval, &mut self.deserializer));
                }
                Ok(_) => {}
                Err(e) => return Some(Err(format!("bad interval log: {e:?}"))),
            }
        }
    }
}

/// The log's `#[StartTime: …]` (absolute), when it has one: shards' logs align on it.
pub fn hlog_start_time(bytes: &[u8]) -> Option<SystemTime> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    for entry in IntervalLogIterator::new(bytes) {
        match entry {
            Ok(LogEntry::StartTime(since_epoch)) => {
                return SystemTime::UNIX_EPOCH.checked_add(since_epoch);
            }
            Ok(LogEntry::Interval(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}

/// Writes intervals read back from logs (e.g. several shards' added together) as one log with
/// this StartTime; entries in the order given.
pub fn write_logged_intervals(
    out: &mut impl Write,
    started_at: SystemTime,
    comment: &str,
    intervals: &[LoggedInterval],
) -> std::io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = log_header(started_at, comment).begin_log_with(out, &mut serializer)?;
    for interval in intervals {
        let tag = interval.tag.as_deref().and_then(Tag::new);
        writer
            .write_histogram(&interval.histogram, interval.start, interval.duration, tag)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}

/// Standard base64 (the interval log's histogram encoding); invalid characters are skipped.
pub(super) fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        buffer = (buffer << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// Latest an entry may start after the log's base time, and longest it may last (136 years):
/// readers add starts, durations and shard offsets without overflow checks.
const MAX_LOGGED_SECONDS: u64 = 1 << 32;

/// One interval entry, checked and decoded.
fn logged_interval(
    interval: &hdrhistogram::serialization::interval_log::IntervalLogHistogram<'_>,
    deserializer: &mut hdrhistogram::serialization::Deserializer,
) -> Result<LoggedInterval, String> {
    let (start, duration) = (interval.start_timestamp(), interval.duration());
    if start.as_secs() >= MAX_LOGGED_SECONDS || duration.as_secs() >= MAX_LOGGED_SECONDS {
        return Err(format!(
            "bad interval log: an entry at {} s lasting {} s (each must be below 2^32 s)",
            start.as_secs(),
            duration.as_secs()
        ));
    }
    let raw = base64_decode(interval.encoded_histogram());
    Ok(LoggedInterval {
        tag: interval.tag().map(|t| t.as_str().to_string()),
        start,
        duration,
        histogram: decode_v2_histogram(deserializer, &raw)?,
    })
}

/// The V2 encodings' cookies (hdrhistogram's, word size 8): plain and zlib-deflated.
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;
/// A V2 header: cookie, payload length, normalizing offset, digits (4 bytes each), lowest and
/// highest trackable value (8 each), integer-to-double ratio (8).
const V2_HEADER_BYTES: usize = 40;
/// Most counters a logged histogram may have (16 MiB of `u64`): this harness writes 17 408
/// (1 µs..60 s at 3 digits); 5 digits up to half an hour still fit.
const MAX_LOGGED_COUNTS: u64 = 1 << 21;
/// Most bytes a histogram may inflate to: its header and one varint (≤ 9 bytes) per counter.
const MAX_INFLATED_BYTES: u64 = V2_HEADER_BYTES as u64 + 9 * MAX_LOGGED_COUNTS;

/// Decodes one logged histogram (V2 or V2-deflate, after base64), checking what hdrhistogram's
/// decoder trusts first: it allocates the counts array and the payload buffer a header claims
/// (a few bytes of base64 may claim 4 GiB), and a count that decodes to `i64::MIN` overflows
/// its negation. A bad entry is an error naming the problem, never an allocation or a panic.
pub(super) fn decode_v2_histogram(
    deserializer: &mut hdrhistogram::serialization::Deserializer,
    raw: &[u8],
) -> Result<Histogram<u64>, String> {
    use std::io::Read;
    let be_u32 = |bytes: &[u8], at: usize| {
        let word: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(word))
    };
    let be_u64 = |bytes: &[u8], at: usize| {
        let word: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(word))
    };
    let inflated;
    let plain = match be_u32(raw, 0) {
        Some(V2_COOKIE) => raw,
        Some(V2_DEFLATE_COOKIE) => {
            let claimed = be_u32(raw, 4).unwrap_or(0) as usize;
            let compressed = raw.get(8..).unwrap_or_default();
            if claimed > compressed.len() {
                return Err(format!(
                    "bad histogram: {claimed} compressed bytes claimed, {} present",
                    compressed.len()
                ));
            }
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&compressed[..claimed])
                .take(MAX_INFLATED_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("bad histogram: cannot inflate it: {e}"))?;
            if out.len() as u64 > MAX_INFLATED_BYTES {
                return Err(format!(
                    "bad histogram: inflates past {MAX_INFLATED_BYTES} bytes"
                ));
            }
            if be_u32(&out, 0) != Some(V2_COOKIE) {
                return Err("bad histogram: its deflated content is not a V2 histogram".into());
            }
            inflated = out;
            &inflated[..]
        }
        _ => return Err("bad histogram: not an HdrHistogram V2 or V2-deflate encoding".into()),
    };
    let (Some(payload_bytes), Some(digits), Some(lowest), Some(highest)) = (
        be_u32(plain, 4),
        be_u32(plain, 12),
        be_u64(plain, 16),
        be_u64(plain, 24),
    ) else {
        return Err("bad histogram: its header is cut short".into());
    };
    let payload = &plain[V2_HEADER_BYTES.min(plain.len())..];
    if payload_bytes as usize > payload.len() {
        return Err(format!(
            "bad histogram: {payload_bytes} bytes of counts claimed, {} present",
            payload.len()
        ));
    }
    if digits > 5 {
        return Err(format!(
            "bad histogram: {digits} significant digits (at most 5)"
        ));
    }
    let counts = counts_len(lowest, highest, digits);
    if counts > MAX_LOGGED_COUNTS {
        return Err(format!(
            "bad histogram: {lowest}..={highest} at {digits} digits needs {counts} counters \
             (at most {MAX_LOGGED_COUNTS})"
        ));
    }
    // Nine 0xff bytes are the varint of u64::MAX, which zig-zags to i64::MIN; no run of them
    // occurs in a real payload, where a 9-byte varint already means a count above 2^55.
    if payload[..payload_bytes as usize]
        .windows(9)
        .any(|w| w == [0xff; 9])
    {
        return Err("bad histogram: a count of -2^63".into());
    }
    deserializer
        .deserialize(&mut &plain[..])
        .map_err(|e| format!("bad histogram: {e:?}"))
}

/// How many counters `Histogram::new_with_bounds(lowest, highest, digits)` allocates:
/// half-buckets of 2×10^digits values (rounded up to a power of two) for each bucket, the
/// buckets doubling from `lowest` until `highest` fits.
fn counts_len(lowest: u64, highest: u64, digits: u32) -> u64 {
    let sub_bucket_magnitude = (2 * 10u64.pow(digits.min(5))).next_power_of_two().ilog2();
    let unit_magnitude = lowest.max(1).ilog2();
    let buckets = (highest.max(1).ilog2() + 2)
        .saturating_sub(sub_bucket_magnitude + unit_magnitude)
        .max(1);
    u64::from(buckets + 1) << (sub_bucket_magnitude - 1)
}

#[cfg(test)]
mod checks {
    use super::*;
    use hdrhistogram::serialization::Deserializer;

    /// A plain V2 histogram: header claiming `payload_bytes` of counts, then `payload`.
    fn v2(payload_bytes: u32, digits: u32, highest: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [V2_COOKIE, payload_bytes, 0, digits] {
            out.extend(word.to_be_bytes());
        }
        out.extend(1u64.to_be_bytes());
        out.extend(highest.to_be_bytes());
        out.extend(1.0f64.to_be_bytes());
        out.extend(payload);
        out
    }

    fn decode(raw: &[u8]) -> Result<Histogram<u64>, String> {
        decode_v2_histogram(&mut Deserializer::new(), raw)
    }

    #[test]
    fn counts_len_is_what_hdrhistogram_allocates() {
        for (lowest, highest, digits) in [
            (1, 60_000_000, 3),
            (1, 2, 0),
            (1, u64::MAX, 5),
            (1_000, 3_600_000_000_000, 2),
            (7, 1 << 40, 4),
            (1 << 20, u64::MAX, 1),
        ] {
            let histogram = Histogram::<u8>::new_with_bounds(lowest, highest, digits as u8)
                .expect("valid bounds");
            assert_eq!(
                counts_len(lowest, highest, digits),
                histogram.distinct_values() as u64,
                "{lowest}..={highest} at {digits} digits"
            );
        }
    }

    #[test]
    fn a_plain_histogram_decodes_and_a_broken_header_is_named() {
        // 100 empty counters, then a count of 5 (zig-zag varints).
        let payload = [199, 1, 10];
        let histogram = decode(&v2(3, 3, 60_000_000, &payload)).expect("valid");
        assert_eq!((histogram.len(), histogram.max()), (5, 100));

        let err = decode(&v2(u32::MAX, 3, 60_000_000, &payload)).expect_err("4 GiB claimed");
        assert!(
            err.contains("4294967295 bytes of counts claimed, 3 present"),
            "{err}"
        );
        let err = decode(&v2(3, 5, u64::MAX, &payload)).expect_err("50 MiB of counters");
        assert!(err.contains("needs 6291456 counters"), "{err}");
        let mut min = vec![0xff; 9];
        min.extend(payload);
        let err = decode(&v2(12, 3, 60_000_000, &min)).expect_err("i64::MIN");
        assert!(err.contains("-2^63"), "{err}");
        let err = decode(&v2(3, 3, 60_000_000, &payload)[..30]).expect_err("cut");
        assert!(err.contains("cut short"), "{err}");
    }
}
