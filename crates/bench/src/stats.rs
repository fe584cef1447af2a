//! Latency summaries. Every sample is kept (a phase of a few seconds yields
//! at most a few million), so percentiles are exact rather than bucketed.

use serde_json::{json, Value};
use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

impl Samples {
    pub fn record(&mut self, d: Duration) {
        self.0
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn summary(mut self) -> Summary {
        self.0.sort_unstable();
        Summary {
            count: self.0.len(),
            p50: percentile(&self.0, 50.0),
            p99: percentile(&self.0, 99.0),
            max: self.0.last().copied(),
        }
    }
}

/// Nearest-rank percentile of sorted samples: the smallest value such that at
/// least `p` percent of the samples are at or below it.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

impl Summary {
    /// `p50 1.23 ms, p99 4.56 ms, max 7.89 ms`, or `no samples`.
    pub fn describe(&self, with_max: bool) -> String {
        match (self.p50, self.p99, self.max) {
            (Some(p50), Some(p99), Some(max)) => {
                let mut s = format!("p50 {}, p99 {}", ms(p50), ms(p99));
                if with_max {
                    s.push_str(&format!(", max {}", ms(max)));
                }
                s
            }
            _ => "no samples".into(),
        }
    }

    pub fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "p50_ms": self.p50.map(micros_to_ms),
            "p99_ms": self.p99.map(micros_to_ms),
            "max_ms": self.max.map(micros_to_ms),
        })
    }
}

fn micros_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Events per second over `elapsed`, 0 when nothing elapsed.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // With few samples p99 is the slowest one, not an interpolation.
        assert_eq!(percentile(&[1, 2, 3, 1000], 99.0), Some(1000));
    }

    #[test]
    fn summary_sorts_and_reports_in_milliseconds() {
        let mut s = Samples::default();
        for us in [3000, 1000, 2000, 10_500] {
            s.record(Duration::from_micros(us));
        }
        let mut other = Samples::default();
        other.record(Duration::from_micros(500));
        s.merge(other);
        let summary = s.summary();
        assert_eq!(summary.count, 5);
        assert_eq!(summary.p50, Some(2000));
        assert_eq!(summary.p99, Some(10_500));
        assert_eq!(summary.max, Some(10_500));
        assert_eq!(
            summary.describe(true),
            "p50 2.00 ms, p99 10.50 ms, max 10.50 ms"
        );
        assert_eq!(summary.to_json()["p99_ms"], 10.5);
        assert_eq!(Samples::default().summary().describe(true), "no samples");
    }

    #[test]
    fn rate_is_per_second() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }
}
