//! A figure over a variant's repetitions: its min, median and max ([`Spread`]), and its value in
//! each repetition (what [`crate::noise`]'s repetitions bootstrap resamples). Reads figures from
//! `summary.json` only.

use crate::results::{Measurement, VariantSummary};

/// Min, median and max of a figure over repetitions (one value without repetitions).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// How many values: 1 means no spread is known.
    pub n: usize,
}

impl Spread {
    /// `None` for no values; NaNs are ignored.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
            n,
        })
    }

    /// Whether repetitions give this figure a spread at all.
    pub fn has_spread(&self) -> bool {
        self.n >= 2
    }
}

/// A figure's value in each repetition (empty without repetitions): what the repetitions
/// bootstrap of [`crate::noise`] resamples.
pub fn repetition_values(
    variant: &VariantSummary,
    figure: impl Fn(&Measurement) -> Option<f64>,
) -> Vec<f64> {
    variant
        .repetitions
        .iter()
        .filter_map(figure)
        .filter(|v| !v.is_nan())
        .collect()
}

/// A figure of a variant over its repetitions: each repetition's value when there are several,
/// else the variant's own figure. The median of `Spread` then matches the summary's figure.
pub fn spread_of(
    variant: &VariantSummary,
    figure: impl Fn(&Measurement) -> Option<f64>,
) -> Option<Spread> {
    if variant.repetitions.len() >= 2 {
        let values: Vec<f64> = variant.repetitions.iter().filter_map(&figure).collect();
        if let Some(s) = Spread::of(&values) {
            return Some(s);
        }
    }
    figure(&variant.figures).and_then(|v| Spread::of(&[v]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_min_median_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).expect("values");
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        assert!(Spread::of(&[]).is_none());
    }
}
