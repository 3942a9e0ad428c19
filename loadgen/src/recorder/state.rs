//! `recording.json`: a measured phase's whole [`Recording`] (every histogram, every counter, but
//! not the 1 s intervals — those are in `latency.hlog`) plus the engine's own figures, saved so a
//! run can be merged exactly with others (`apibench merge` adds the shards' recordings and builds
//! the summary one process would have built) or its figures recomputed.
//!
//! Histograms are stored as HdrHistogram V2-deflate + base64 (the interval log's encoding), so a
//! reader in any language with an HdrHistogram library can decode them.

use super::{Recording, RequestRecording, base64_decode, decode_v2_histogram};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file's layout version.
pub const RECORDING_STATE_VERSION: u32 = 1;

/// One measured phase, as `recording.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingState {
    pub version: u32,
    /// Successes' latency, TTFB, failures' latency, send lag (after the warm-up).
    pub latency: String,
    pub ttfb: String,
    pub error_latency: String,
    pub send_lag: String,
    pub successes_in_window: u64,
    pub completions_in_window: u64,
    pub drain_requests: u64,
    pub backlogged_at_cap_sends: u64,
    pub service_sum_us: u64,
    /// Absent from files written before it existed: an empty histogram.
    #[serde(default)]
    pub service: String,
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub status_counts: BTreeMap<u16, u64>,
    pub sends: u64,
    pub generator_late_sends: u64,
    pub backlogged_sends: u64,
    pub warmup_requests: u64,
    pub first_measured_send_us: Option<u64>,
    pub last_measured_send_us: Option<u64>,
    pub last_measured_completion_us: Option<u64>,
    pub window_end_us: u64,
    pub by_request: Vec<RequestState>,
    pub engine: EngineFigures,
}

/// One request name's histograms and counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestState {
    pub name: String,
    pub latency: String,
    pub ttfb: String,
    pub error_latency: String,
    pub requests: u64,
    pub errors: u64,
}

/// What the engine knew besides the samples (for the verdict of a rebuilt or merged phase).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineFigures {
    pub users_started: u64,
    pub peak_users_busy: u64,
    pub max_users: u64,
    pub generator_threads: u64,
    /// The runtime probes' wake-up lateness, µs (encoded like the latencies).
    pub probe_lag: String,
    pub cancelled: bool,
    /// `--start-at`: how long before the start the phase was ready (negative: late), ms.
    #[serde(default)]
    pub start_lead_ms: Option<i64>,
    /// How late the first send left after its due time, µs.
    #[serde(default)]
    pub first_send_late_us: Option<u64>,
    /// This host's clock minus the target's (from its `Date` header), ms, and its ± resolution.
    #[serde(default)]
    pub clock_offset_ms: Option<f64>,
    #[serde(default)]
    pub clock_offset_resolution_ms: Option<f64>,
}

impl EngineFigures {
    /// What the engine reported at the phase's end (the start and clock figures are the
    /// runner's to add).
    pub fn from_outcome(outcome: &crate::engine::EngineOutcome) -> EngineFigures {
        EngineFigures {
            users_started: outcome.users_started as u64,
            peak_users_busy: outcome.peak_users_busy as u64,
            max_users: outcome.max_users as u64,
            generator_threads: outcome.generator_threads as u64,
            probe_lag: encode_histogram(&outcome.probe_lag),
            cancelled: outcome.cancelled,
            first_send_late_us: outcome.first_send_late_us,
            ..EngineFigures::default()
        }
    }
}

/// Why a `recording.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("histogram `{field}`: {why}")]
    Histogram { field: String, why: String },
    #[error("layout version {0} is not one this apibench reads ({RECORDING_STATE_VERSION})")]
    Version(u32),
}

/// V2-deflate + base64.
pub fn encode_histogram(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec only fails on a histogram too large to encode: keep it empty then
    // (the decoder reports it).
    if V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .is_err()
    {
        bytes.clear();
    }
    base64_encode(&bytes)
}

/// The inverse of [`encode_histogram`], with the interval log's checks (a header that claims
/// gigabytes, or a count that overflows, is an error, not an allocation or a panic).
pub fn decode_histogram(field: &str, text: &str) -> Result<Histogram<u64>, StateError> {
    let raw = base64_decode(text);
    decode_v2_histogram(&mut Deserializer::new(), &raw).map_err(|why| StateError::Histogram {
        field: field.to_string(),
        why,
    })
}

impl RecordingState {
    /// Everything of `recording` but its intervals, with the engine's figures.
    pub fn of(recording: &Recording, engine: EngineFigures) -> RecordingState {
        RecordingState {
            version: RECORDING_STATE_VERSION,
            latency: encode_histogram(&recording.latency),
            ttfb: encode_histogram(&recording.ttfb),
            error_latency: encode_histogram(&recording.error_latency),
            send_lag: encode_histogram(&recording.send_lag),
            successes_in_window: recording.successes_in_window,
            completions_in_window: recording.completions_in_window,
            drain_requests: recording.drain_requests,
            backlogged_at_cap_sends: recording.backlogged_at_cap_sends,
            service_sum_us: recording.service_sum_us,
            service: encode_histogram(&recording.service),
            requests: recording.requests,
            errors: recording.errors,
            timeouts: recording.timeouts,
            status_counts: recording.status_counts.clone(),
            sends: recording.sends,
            generator_late_sends: recording.generator_late_sends,
            backlogged_sends: recording.backlogged_sends,
            warmup_requests: recording.warmup_requests,
            first_measured_send_us: recording.first_measured_send_us,
            last_measured_send_us: recording.last_measured_send_us,
            last_measured_completion_us: recording.last_measured_completion_us,
            window_end_us: recording.window_end_us,
            by_request: recording
                .by_request
                .iter()
                .map(|r| RequestState {
                    name: r.name.clone(),
                    latency: encode_histogram(&r.latency),
                    ttfb: encode_histogram(&r.ttfb),
                    error_latency: encode_histogram(&r.error_latency),
                    requests: r.requests,
                    errors: r.errors,
                })
                .collect(),
            engine,
        }
    }

    /// The recording back (no intervals: read those from `latency.hlog`).
    pub fn to_recording(&self) -> Result<Recording, StateError> {
        if self.version != RECORDING_STATE_VERSION {
            return Err(StateError::Version(self.version));
        }
        let mut by_request = Vec::with_capacity(self.by_request.len());
        for r in &self.by_request {
            by_request.push(RequestRecording {
                name: r.name.clone(),
                latency: decode_histogram(&format!("{}.latency", r.name), &r.latency)?,
                ttfb: decode_histogram(&format!("{}.ttfb", r.name), &r.ttfb)?,
                error_latency: decode_histogram(
                    &format!("{}.error_latency", r.name),
                    &r.error_latency,
                )?,
                requests: r.requests,
                errors: r.errors,
            });
        }
        Ok(Recording {
            latency: decode_histogram("latency", &self.latency)?,
            ttfb: decode_histogram("ttfb", &self.ttfb)?,
            error_latency: decode_histogram("error_latency", &self.error_latency)?,
            send_lag: decode_histogram("send_lag", &self.send_lag)?,
            successes_in_window: self.successes_in_window,
            completions_in_window: self.completions_in_window,
            drain_requests: self.drain_requests,
            backlogged_at_cap_sends: self.backlogged_at_cap_sends,
            service_sum_us: self.service_sum_us,
            service: if self.service.is_empty() {
                super::new_histogram()
            } else {
                decode_histogram("service", &self.service)?
            },
            by_request,
            intervals: BTreeMap::new(),
            requests: self.requests,
            errors: self.errors,
            timeouts: self.timeouts,
            status_counts: self.status_counts.clone(),
            sends: self.sends,
            generator_late_sends: self.generator_late_sends,
            backlogged_sends: self.backlogged_sends,
            warmup_requests: self.warmup_requests,
            first_measured_send_us: self.first_measured_send_us,
            last_measured_send_us: self.last_measured_send_us,
            last_measured_completion_us: self.last_measured_completion_us,
            window_end_us: self.window_end_us,
        })
    }
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Sample;

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)), bytes, "{len} bytes");
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert_eq!(base64_encode(b"M"), "TQ==");
    }

    #[test]
    fn a_recording_survives_the_file_exactly() {
        let names = vec!["read".to_string(), "write".to_string()];
        let mut recording = Recording::new(&names);
        recording.window_end_us = 3_000_000;
        for i in 0..500u64 {
            let mut s = Sample::success(
                (i % 2) as u16,
                100 + i * 7,
                1_000_000 + i * 3_000,
                false,
                i % 5,
            );
            if i % 50 == 0 {
                s.error = true;
                s.status = 503;
            }
            recording.record(&s);
        }
        let state = RecordingState::of(
            &recording,
            EngineFigures {
                users_started: 4,
                probe_lag: encode_histogram(&crate::recorder::new_histogram()),
                ..EngineFigures::default()
            },
        );
        let text = serde_json::to_string(&state).expect("serializes");
        let back: RecordingState = serde_json::from_str(&text).expect("parses");
        let rebuilt = back.to_recording().expect("decodes");
        assert_eq!(rebuilt.latency, recording.latency);
        assert_eq!(rebuilt.error_latency, recording.error_latency);
        assert_eq!(rebuilt.send_lag, recording.send_lag);
        assert_eq!(rebuilt.requests, 500);
        assert_eq!(rebuilt.status_counts, recording.status_counts);
        assert_eq!(
            rebuilt.by_request[1].latency,
            recording.by_request[1].latency
        );
        assert_eq!(back.engine.users_started, 4);
    }

    #[test]
    fn a_damaged_histogram_is_named() {
        let recording = Recording::new(&["read".to_string()]);
        let mut state = RecordingState::of(&recording, EngineFigures::default());
        state.by_request[0].ttfb = "!!!!".into();
        let err = state.to_recording().expect_err("damaged");
        assert!(err.to_string().contains("read.ttfb"), "{err}");
    }
}
