//! Nearest-rank statistics for the benchmarks' figures, and rounding for their reports.
#![allow(dead_code)] // each benchmark uses part of it

use serde_json::{Map, Value, json};

/// Count, median, p90, p99, max and mean of a set of values (in whatever unit they came).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub count: usize,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Stats {
    /// The statistics of `values` (all zero when there are none).
    pub fn of(values: &[f64]) -> Stats {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Stats {
            count: sorted.len(),
            median: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied().unwrap_or(0.0),
            mean: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
        }
    }

    /// Every figure moved by `by` (a constant added to each value).
    pub fn shifted(self, by: f64) -> Stats {
        Stats {
            count: self.count,
            median: self.median + by,
            p90: self.p90 + by,
            p99: self.p99 + by,
            max: self.max + by,
            mean: self.mean + by,
        }
    }

    /// `{"count", "median_UNIT", "p90_UNIT", "p99_UNIT", "max_UNIT"}`, rounded to `digits`
    /// decimals.
    pub fn to_json(self, unit: &str, digits: i32) -> Value {
        let mut figures = Map::new();
        figures.insert("count".into(), json!(self.count));
        for (name, value) in [
            ("median", self.median),
            ("p90", self.p90),
            ("p99", self.p99),
            ("max", self.max),
        ] {
            figures.insert(format!("{name}_{unit}"), json!(round(value, digits)));
        }
        Value::Object(figures)
    }

    /// Like [`to_json`](Stats::to_json), with the mean too.
    pub fn to_json_with_mean(self, unit: &str, digits: i32) -> Value {
        let mut figures = self.to_json(unit, digits);
        figures[format!("mean_{unit}")] = json!(round(self.mean, digits));
        figures
    }
}

/// Nearest-rank percentile `p` (0–100) of sorted values; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `x` rounded to `digits` decimals.
pub fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}
