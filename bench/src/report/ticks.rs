//! Axis ticks chosen by the report, not by plotters: plotters' defaults put a label on every
//! multiple of 100 of a log axis (`900` and `1000` then run together) and fractional ticks on an
//! integer axis (`0 1 2 2 3 4 4` once formatted). These pick few, distinct, round values that fit
//! the axis' length, so labels cannot collide.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

/// An f64 axis (linear or log) whose tick marks are exactly `ticks` (plotters' `with_key_points`
/// loses the f64 axis' label formatter, so this carries its own).
#[derive(Debug, Clone)]
pub struct Ticked<R> {
    inner: R,
    ticks: Vec<f64>,
}

impl<R: Ranged<ValueType = f64>> Ticked<R> {
    /// `inner` with ticks at `ticks`.
    pub fn new(inner: impl Into<R>, ticks: Vec<f64>) -> Self {
        Self {
            inner: inner.into(),
            ticks,
        }
    }
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticked<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Light mesh lines are not drawn: only the labelled ticks.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }

    fn axis_pixel_range(&self, limit: (i32, i32)) -> Range<i32> {
        self.inner.axis_pixel_range(limit)
    }
}

/// At most this many labels per 100 px of axis (a label is ≤ 6 characters, ~40 px).
const PX_PER_LABEL: f64 = 70.0;

/// How many labels an axis `px` long can hold (at least 2).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // on-screen sizes, tick counts, decade exponents: small, ≥ 0
pub fn fit(px: u32) -> usize {
    ((f64::from(px) / PX_PER_LABEL) as usize).max(2)
}

/// Round ticks (1, 2 or 5 × 10^k apart) within `lo..=hi`, at most `max`; with `integer`, the step
/// is a whole number so every tick is an integer.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // on-screen sizes, tick counts, decade exponents: small, ≥ 0
pub fn linear(lo: f64, hi: f64, max: usize, integer: bool) -> Vec<f64> {
    if hi.is_nan() || lo.is_nan() || hi <= lo || max < 2 {
        return vec![lo];
    }
    let raw = (hi - lo) / (max - 1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    if integer {
        step = step.max(1.0).round();
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Ticks of a log axis within `lo..=hi`: 1-2-5 per decade when at most `max` fit, else 1 and 3
/// per decade, else powers of ten only.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // on-screen sizes, tick counts, decade exponents: small, ≥ 0
pub fn log(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    if hi.is_nan() || lo.is_nan() || hi <= lo || lo <= 0.0 {
        return vec![lo.max(1.0)];
    }
    let from = lo.log10().floor() as i32;
    let to = hi.log10().ceil() as i32;
    for mantissas in [&[1.0, 2.0, 5.0][..], &[1.0, 3.0][..], &[1.0][..]] {
        let t: Vec<f64> = (from..=to)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect();
        if t.len() <= max {
            return t;
        }
    }
    let t: Vec<f64> = (from..=to)
        .map(|e| 10f64.powi(e))
        .filter(|v| *v >= lo && *v <= hi)
        .collect();
    let every = t.len().div_ceil(max).max(1);
    t.into_iter().step_by(every).collect()
}

/// The label of a tick: no decimals for whole numbers, else as few as tell it apart.
pub fn label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if (v * 10.0 - (v * 10.0).round()).abs() < 1e-9 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(t: &[f64]) -> Vec<String> {
        t.iter().map(|v| label(*v)).collect()
    }

    #[test]
    fn an_integer_axis_gets_integer_ticks_only() {
        // The density axis of 4 pods: 0.5..4.5 used to read "0 1 2 2 3 4 4".
        assert_eq!(labels(&linear(0.5, 4.5, 8, true)), ["1", "2", "3", "4"]);
        let t = linear(0.5, 30.5, 6, true);
        assert!(t.len() <= 6 && t.iter().all(|v| v.fract() == 0.0), "{t:?}");
    }

    #[test]
    fn linear_ticks_are_round_and_bounded() {
        assert_eq!(
            labels(&linear(0.0, 1.0, 6, false)),
            ["0", "0.2", "0.4", "0.6", "0.8", "1"]
        );
        assert_eq!(
            labels(&linear(0.0, 1627.0, 6, false)),
            ["0", "500", "1000", "1500"]
        );
    }

    #[test]
    fn log_ticks_thin_out_instead_of_colliding() {
        // 900 and 1000 are never both labelled.
        assert_eq!(
            labels(&log(80.0, 2500.0, 11)),
            ["100", "200", "500", "1000", "2000"]
        );
        assert_eq!(labels(&log(80.0, 2500.0, 3)), ["100", "300", "1000"]);
        assert_eq!(labels(&log(1.0, 1e6, 3)), ["1", "1000", "1000000"]);
    }
}
