//! Is a change real, or noise? One rule for `apibench compare` and `apibench gate --baseline`.
//!
//! A change is called (improved / regressed) only when B's figure differs from A's by more than a
//! relative threshold *and*, where repetitions exist, the two runs' spreads (min–max over the
//! repetitions) do not overlap — B lies outside A's spread and A outside B's. Without
//! repetitions there is no noise estimate: the threshold alone decides, and the judgement says
//! so. This module only decides; it never reads files or prints.

use crate::saved::Spread;
use serde::Serialize;

/// Which way is good for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Latency, errors, memory.
    Lower,
    /// Throughput.
    Higher,
}

impl Better {
    pub fn label(self) -> &'static str {
        match self {
            Better::Lower => "lower is better",
            Better::Higher => "higher is better",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Improved,
    Regressed,
    WithinNoise,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::WithinNoise => "within noise",
        }
    }
}

/// The outcome of comparing one figure of two runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// B's median over A's; `None` when A is 0 and B is not (an infinite ratio).
    pub ratio: Option<f64>,
    /// Both runs had repetitions, so their spreads took part in the verdict.
    pub noise_estimated: bool,
}

/// Compares figure `b` against `a`. `threshold` is relative (0.05 = 5 %).
pub fn judge(a: &Spread, b: &Spread, better: Better, threshold: f64) -> Judgement {
    let noise_estimated = a.has_spread() && b.has_spread();
    let ratio = if a.median == 0.0 {
        (b.median == 0.0).then_some(1.0)
    } else {
        Some(b.median / a.median)
    };
    let beyond_threshold = match ratio {
        Some(r) => (r - 1.0).abs() > threshold,
        None => true,
    };
    // A single value is a spread of width zero, so one run with repetitions still counts.
    let spreads_apart = b.min > a.max || b.max < a.min;
    let outside_noise = if a.has_spread() || b.has_spread() {
        spreads_apart
    } else {
        true
    };
    let verdict = if beyond_threshold && outside_noise && b.median != a.median {
        let increased = b.median > a.median;
        match (better, increased) {
            (Better::Lower, false) | (Better::Higher, true) => Verdict::Improved,
            _ => Verdict::Regressed,
        }
    } else {
        Verdict::WithinNoise
    };
    Judgement {
        verdict,
        ratio,
        noise_estimated,
    }
}

/// Parses a percentage flag: `10%`, `10` (both ten percent) or `2.5%`; returns a fraction.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage (e.g. 10%)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{text}`: a percentage must be zero or more"));
    }
    Ok(value / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(values: &[f64]) -> Spread {
        Spread::of(values).expect("values")
    }

    #[test]
    fn a_change_inside_either_spread_is_noise() {
        let a = s(&[100.0, 110.0, 130.0]);
        let b = s(&[125.0, 140.0, 150.0]);
        let j = judge(&a, &b, Better::Lower, 0.05);
        assert_eq!(j.verdict, Verdict::WithinNoise);
        assert!(j.noise_estimated);
    }

    #[test]
    fn separated_spreads_beyond_threshold_are_called_with_direction() {
        let a = s(&[100.0, 105.0, 110.0]);
        let b = s(&[140.0, 150.0, 160.0]);
        assert_eq!(
            judge(&a, &b, Better::Lower, 0.05).verdict,
            Verdict::Regressed
        );
        assert_eq!(
            judge(&a, &b, Better::Higher, 0.05).verdict,
            Verdict::Improved
        );
    }

    #[test]
    fn separated_but_below_threshold_is_noise() {
        let a = s(&[100.0, 100.5, 101.0]);
        let b = s(&[102.0, 102.5, 103.0]);
        assert_eq!(
            judge(&a, &b, Better::Lower, 0.05).verdict,
            Verdict::WithinNoise
        );
    }

    #[test]
    fn without_repetitions_the_threshold_decides_and_says_so() {
        let j = judge(&s(&[100.0]), &s(&[120.0]), Better::Lower, 0.05);
        assert_eq!(j.verdict, Verdict::Regressed);
        assert!(!j.noise_estimated);
        assert_eq!(j.ratio, Some(1.2));
    }

    #[test]
    fn zero_to_something_has_no_finite_ratio() {
        let j = judge(&s(&[0.0]), &s(&[3.0]), Better::Lower, 0.05);
        assert_eq!(j.ratio, None);
        assert_eq!(j.verdict, Verdict::Regressed);
        let same = judge(&s(&[0.0]), &s(&[0.0]), Better::Lower, 0.05);
        assert_eq!(same.verdict, Verdict::WithinNoise);
    }

    #[test]
    fn percentages_parse_with_or_without_sign() {
        assert_eq!(parse_percent("10%"), Ok(0.1));
        assert_eq!(parse_percent("5"), Ok(0.05));
        assert!(parse_percent("ten").is_err());
        assert!(parse_percent("-3%").is_err());
    }
}
