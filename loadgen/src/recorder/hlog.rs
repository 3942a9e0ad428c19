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
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(comment)
            .add_comment(UNITS_COMMENT)
            .with_start_time(started_at)
            .with_base_time(started_at)
            .with_max_value_divisor(MAX_VALUE_DIVISOR);
        let mut writer = builder.begin_log_with(out, &mut serializer)?;
        write_entries(&mut writer, self.intervals.values())
    }
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
                let raw = base64_decode(interval.encoded_histogram());
                let histogram: Histogram<u64> = deserializer
                    .deserialize(&mut raw.as_slice())
                    .map_err(|e| format!("bad histogram: {e:?}"))?;
                visit(LoggedInterval {
                    tag: interval.tag().map(|t| t.as_str().to_string()),
                    start: interval.start_timestamp(),
                    duration: interval.duration(),
                    histogram,
                })?;
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
                    let raw = base64_decode(interval.encoded_histogram());
                    let decoded: Result<Histogram<u64>, _> =
                        self.deserializer.deserialize(&mut raw.as_slice());
                    return Some(match decoded {
                        Ok(histogram) => Ok(LoggedInterval {
                            tag: interval.tag().map(|t| t.as_str().to_string()),
                            start: interval.start_timestamp(),
                            duration: interval.duration(),
                            histogram,
                        }),
                        Err(e) => Err(format!("bad histogram: {e:?}")),
                    });
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
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(comment)
        .add_comment(UNITS_COMMENT)
        .with_start_time(started_at)
        .with_base_time(started_at)
        .with_max_value_divisor(MAX_VALUE_DIVISOR);
    let mut writer = builder.begin_log_with(out, &mut serializer)?;
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
