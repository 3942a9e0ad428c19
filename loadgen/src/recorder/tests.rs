//! The recorder's tests: exact merges, the warm-up, errors apart, bounded intervals.

use super::hlog::base64_decode;
use super::*;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use std::time::{Instant, SystemTime};

fn sample(request: u16, latency_us: u64, completed_offset_us: u64, in_warmup: bool) -> Sample {
    Sample::success(request, latency_us, completed_offset_us, in_warmup, 40)
}

#[test]
fn workers_recordings_merge_exactly_into_what_one_recorder_makes() {
    let names = vec!["a".to_string(), "b".to_string()];
    let samples: Vec<Sample> = (0..3_000u64)
        .map(|i| {
            let mut s = sample((i % 2) as u16, 100 + i * 37 % 9_000, i * 1_000, i < 500);
            s.error = i % 11 == 0;
            s.status = if s.error { 503 } else { 200 };
            s.backlogged = i % 7 == 0;
            s
        })
        .collect();
    // Reference: one recorder sees every sample.
    let mut one = Recording::new(&names);
    one.window_end_us = 2_500_000;
    for s in &samples {
        one.record(s);
    }
    // Three workers each see every third sample, then the collector merges them.
    let (collector, sink) = Collector::start(names.clone(), Instant::now(), 2_500_000);
    let mut workers: Vec<WorkerRecorder> = (0..3).map(|_| sink.worker_recorder()).collect();
    for (i, s) in samples.iter().enumerate() {
        workers[i % 3].record(s);
    }
    let live = collector.live();
    drop(workers);
    drop(sink);
    let merged = collector.finish();
    assert_eq!(merged.latency, one.latency);
    assert_eq!(merged.ttfb, one.ttfb);
    assert_eq!(merged.error_latency, one.error_latency);
    assert_eq!(merged.send_lag, one.send_lag);
    assert_eq!(
        (
            merged.requests,
            merged.errors,
            merged.sends,
            merged.warmup_requests
        ),
        (one.requests, one.errors, one.sends, one.warmup_requests)
    );
    assert_eq!(
        (
            merged.successes_in_window,
            merged.drain_requests,
            merged.backlogged_sends
        ),
        (
            one.successes_in_window,
            one.drain_requests,
            one.backlogged_sends
        )
    );
    assert_eq!(merged.status_counts, one.status_counts);
    assert_eq!(merged.service_sum_us, one.service_sum_us);
    assert_eq!(
        (
            merged.first_measured_send_us,
            merged.last_measured_completion_us
        ),
        (one.first_measured_send_us, one.last_measured_completion_us)
    );
    assert_eq!(merged.intervals.len(), one.intervals.len());
    for (index, interval) in &one.intervals {
        let m = &merged.intervals[index];
        assert_eq!(
            (&m.latency, &m.errors, &m.send_lag),
            (&interval.latency, &interval.errors, &interval.send_lag)
        );
    }
    for (m, o) in merged.by_request.iter().zip(&one.by_request) {
        assert_eq!(
            (m.requests, m.errors, &m.latency),
            (o.requests, o.errors, &o.latency)
        );
    }
    // The live figures saw every completed interval's counts.
    let live = live.lock().expect("live").clone();
    assert!(live.completed > 0 && live.completed <= 3_000, "{live:?}");
}

#[test]
fn collector_excludes_warmup_but_logs_every_interval() {
    let (collector, tx) = Collector::start(vec!["a".into(), "b".into()], Instant::now(), 2_000_000);
    let mut user = UserRecorder::new(tx);
    user.push(sample(0, 1_000, 500_000, true));
    user.push(sample(0, 2_000, 1_500_000, false));
    user.push(sample(1, 400_000, 2_100_000, false));
    drop(user);
    let recording = collector.finish();
    assert_eq!(recording.requests, 2);
    assert_eq!(recording.warmup_requests, 1);
    assert_eq!(recording.sends, 2);
    assert_eq!(recording.intervals.len(), 3);
    assert_eq!(recording.by_request[1].requests, 1);
    assert!(recording.latency.max() >= 399_000);

    let mut log = Vec::new();
    recording
        .write_hlog(&mut log, SystemTime::now(), "test")
        .expect("hlog writes");
    let mut deserializer = Deserializer::new();
    let mut untagged = 0;
    for entry in IntervalLogIterator::new(&log) {
        if let Ok(LogEntry::Interval(interval)) = entry {
            let bytes = base64_decode(interval.encoded_histogram());
            let h: Histogram<u64> = deserializer
                .deserialize(&mut bytes.as_slice())
                .expect("histogram decodes");
            if interval.tag().is_none() {
                untagged += h.len();
            }
        }
    }
    assert_eq!(untagged, 3, "warm-up intervals are logged too");
    let read = read_hlog(&log).expect("reads back");
    assert_eq!(read.iter().filter(|i| i.tag.is_none()).count(), 3);
    let lag: u64 = read
        .iter()
        .filter(|i| i.tag.as_deref() == Some("send_lag"))
        .map(|i| i.histogram.len())
        .sum();
    assert_eq!(lag, 3, "every send's lag is logged");
    // Completed at 2.1 s, after the window's end at 2 s: the drain, not goodput.
    assert_eq!(recording.successes_in_window, 1);
    assert_eq!(recording.drain_requests, 1);
}

#[test]
fn errors_and_successes_have_separate_latencies() {
    let (collector, tx) = Collector::start(vec!["a".into()], Instant::now(), u64::MAX);
    let mut user = UserRecorder::new(tx);
    for i in 0..90 {
        user.push(sample(0, 10_000, 100_000 + i, false));
    }
    for i in 0..10 {
        // Instant 503s.
        user.push(Sample {
            status: 503,
            error: true,
            ..sample(0, 50, 200_000 + i, false)
        });
    }
    drop(user);
    let recording = collector.finish();
    assert_eq!(recording.latency.len(), 90);
    assert_eq!(recording.error_latency.len(), 10);
    assert!(
        recording.latency.value_at_quantile(0.01) >= 9_990,
        "503s left out"
    );
    assert!(recording.error_latency.max() <= 51);
    assert_eq!(recording.by_request[0].error_latency.len(), 10);
    assert_eq!(recording.successes_in_window, 90);
    assert_eq!(recording.completions_in_window, 100);
    let mut log = Vec::new();
    recording
        .write_hlog(&mut log, SystemTime::now(), "test")
        .expect("hlog writes");
    let read = read_hlog(&log).expect("reads back");
    let errors: u64 = read
        .iter()
        .filter(|i| i.tag.as_deref() == Some("errors"))
        .map(|i| i.histogram.len())
        .sum();
    assert_eq!(errors, 10);
}

/// A collector streaming to a fresh log in `dir`.
fn streaming(dir: &std::path::Path, names: &[String]) -> (Collector, Sink, std::path::PathBuf) {
    let path = dir.join("latency.hlog");
    let (collector, sink) = Collector::start_with(
        names.to_vec(),
        Instant::now(),
        u64::MAX,
        IntervalOutput::Stream(HlogStream {
            path: path.clone(),
            comment: "test".into(),
            started_at: std::sync::Arc::new(std::sync::OnceLock::new()),
        }),
    )
    .expect("the log is created");
    (collector, sink, path)
}

#[test]
fn a_streamed_run_holds_a_bounded_number_of_intervals_whatever_its_length() {
    const INTERVALS: u64 = 3_000;
    let names = vec!["a".to_string()];
    let dir = tempfile::tempdir().expect("tempdir");
    let (collector, sink, path) = streaming(dir.path(), &names);
    // The reference keeps everything: what the streamed log must hold, interval by interval.
    let mut reference = Recording::new(&names);
    let mut workers: Vec<WorkerRecorder> = (0..2).map(|_| sink.worker_recorder()).collect();
    let mut worker_peak = 0;
    for second in 0..INTERVALS {
        for k in 0..6u64 {
            let s = sample(
                0,
                200 + (second * 7 + k * 13) % 5_000,
                second * 1_000_000 + k * 150_000,
                second < 2,
            );
            reference.record(&s);
            workers[(k % 2) as usize].record(&s);
        }
        for worker in &mut workers {
            worker_peak = worker_peak.max(worker.held_intervals());
        }
    }
    drop(workers);
    drop(sink);
    let (recording, stats) = collector.finish_with_stats();
    // Each worker holds the interval it is in; the collector a few behind the latest report.
    assert_eq!(worker_peak, 1);
    assert!(
        stats.peak_held_intervals <= INTERVAL_GRACE as usize + 2,
        "{stats:?}"
    );
    assert!(recording.intervals.is_empty(), "everything went to the log");
    assert_eq!(
        (stats.intervals_written, stats.late_entries),
        (INTERVALS, 0)
    );
    assert_eq!(stats.write_error, None);
    // The totals are untouched by streaming.
    assert_eq!(recording.requests, reference.requests);
    assert_eq!(recording.latency, reference.latency);

    let log = std::fs::read(&path).expect("log");
    let read = read_hlog(&log).expect("reads back");
    let untagged: Vec<&LoggedInterval> = read.iter().filter(|i| i.tag.is_none()).collect();
    assert_eq!(untagged.len() as u64, INTERVALS);
    for interval in untagged {
        let index = interval.start.as_secs();
        assert_eq!(
            interval.histogram, reference.intervals[&index].latency,
            "interval {index}"
        );
    }
}

#[test]
fn an_idle_worker_ships_on_its_tick_and_a_late_piece_is_added_not_lost() {
    let names = vec!["a".to_string()];
    let dir = tempfile::tempdir().expect("tempdir");
    let (collector, sink, path) = streaming(dir.path(), &names);
    let mut busy = sink.worker_recorder();
    let mut idle = sink.worker_recorder();
    let mut stalled = sink.worker_recorder();
    idle.record(&sample(0, 100, 500_000, false));
    stalled.record(&sample(0, 300, 600_000, false));
    // The idle worker sees no sample after 0.5 s: its tick ships interval 0 anyway.
    idle.tick(1_200_000);
    assert_eq!(idle.held_intervals(), 0);
    // Another worker runs on; interval 0 is written once it is INTERVAL_GRACE behind.
    for second in 1..10 {
        busy.record(&sample(0, 200, second * 1_000_000, false));
    }
    // The stalled worker wakes after interval 0 went to the log: its piece is a second entry.
    stalled.tick(10_000_000);
    drop((busy, idle, stalled));
    drop(sink);
    let (_, stats) = collector.finish_with_stats();
    assert_eq!(stats.late_entries, 1, "{stats:?}");
    let read = read_hlog(&std::fs::read(&path).expect("log")).expect("reads");
    let first = read
        .iter()
        .find(|i| i.tag.is_none() && i.start.as_secs() == 0)
        .expect("interval 0");
    assert_eq!(first.histogram.len(), 2, "both pieces of interval 0, added");
    let total: u64 = read
        .iter()
        .filter(|i| i.tag.is_none())
        .map(|i| i.histogram.len())
        .sum();
    assert_eq!(total, 11);
}

#[test]
fn a_streamed_log_is_on_disk_before_the_run_ends() {
    let names = vec!["a".to_string()];
    let dir = tempfile::tempdir().expect("tempdir");
    let (collector, sink, path) = streaming(dir.path(), &names);
    let mut worker = sink.worker_recorder();
    for second in 0..8 {
        worker.record(&sample(0, 200, second * 1_000_000, false));
    }
    // Still running: the intervals written so far are readable, whole lines only.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let on_disk = loop {
        let log = std::fs::read(&path).expect("log");
        let read = read_hlog(&log).expect("whole lines");
        let untagged = read.iter().filter(|i| i.tag.is_none()).count();
        if untagged >= 5 || Instant::now() > deadline {
            assert!(log.ends_with(b"\n"));
            break untagged;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(on_disk, 8 - 1 - INTERVAL_GRACE as usize);
    drop(worker);
    drop(sink);
    let (_, stats) = collector.finish_with_stats();
    assert_eq!(stats.intervals_written, 8);
}
