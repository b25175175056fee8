//! Exact percentiles over all samples (sorted, nearest rank). At benchmark sizes
//! (at most a few hundred thousand samples) sorting is cheaper than getting a
//! bucketed histogram's error bounds right.

use serde::Serialize;

/// Summary of a set of durations, all in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: Option<u64>,
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub p999: Option<u64>,
    pub max: Option<u64>,
    pub mean: Option<f64>,
}

/// Nearest-rank percentile of sorted samples: the smallest value with at least `p`
/// percent of the samples at or below it.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let index = rank.clamp(1, n) - 1;
    sorted.get(index).copied()
}

pub fn summarize(mut samples: Vec<u64>) -> Summary {
    samples.sort_unstable();
    let count = samples.len();
    let mean = if count == 0 {
        None
    } else {
        Some(samples.iter().map(|v| *v as f64).sum::<f64>() / count as f64)
    };
    Summary {
        count,
        min: samples.first().copied(),
        p50: percentile(&samples, 50.0),
        p90: percentile(&samples, 90.0),
        p99: percentile(&samples, 99.0),
        p999: percentile(&samples, 99.9),
        max: samples.last().copied(),
        mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.9), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
    }

    #[test]
    fn summary_sorts_first() {
        let s = summarize(vec![30, 10, 20]);
        assert_eq!(s.count, 3);
        assert_eq!(s.min, Some(10));
        assert_eq!(s.p50, Some(20));
        assert_eq!(s.max, Some(30));
        assert_eq!(s.mean, Some(20.0));
    }
}
