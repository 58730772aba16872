//! Summaries of samples, in milliseconds.

use serde::{Deserialize, Serialize};

/// A summary of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Sample count.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median (mean of the middle two for even counts).
    pub median: f64,
    /// 95th percentile, nearest rank.
    pub p95: f64,
    /// 99th percentile, nearest rank.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when empty.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some(Self {
            n,
            min: s[0],
            median,
            p95: percentile(&s, 95),
            p99: percentile(&s, 99),
            max: s[n - 1],
            mean: s.iter().sum::<f64>() / s.len() as f64,
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
fn percentile(sorted: &[f64], pct: usize) -> f64 {
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_twenty() {
        let samples: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!((s.n, s.min, s.max), (20, 1.0, 20.0));
        assert_eq!(s.median, 10.5);
        assert_eq!(s.p95, 19.0);
        assert_eq!(s.p99, 20.0);
        assert_eq!(s.mean, 10.5);
    }

    #[test]
    fn summary_of_one_and_none() {
        let s = Summary::of(&[7.0]).unwrap();
        assert_eq!((s.median, s.p95), (7.0, 7.0));
        assert!(Summary::of(&[]).is_none());
    }
}
