//! Evaluation of a guard on labelled prompts: precision, recall, F1, false-positive rate
//! and the latency of [`Guard::assess`] per prompt (p50, p99, wall clock, median of
//! [`LATENCY_RUNS`] runs per prompt).

use crate::{Example, Guard};
use serde::Serialize;
use std::time::Instant;

/// Each prompt is assessed this many times; its latency is the median of the runs, so
/// that a run preempted by another process on a busy machine does not count as the
/// guard's cost (the verdict is the same every time: the guard is deterministic).
pub const LATENCY_RUNS: usize = 5;

/// Detection quality and latency on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Of the prompts flagged, the share labelled injection.
    pub precision: f64,
    /// Of the injections, the share flagged.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Of the benign prompts, the share flagged.
    pub false_positive_rate: f64,
    /// Median latency per prompt, microseconds (each prompt's median of [`LATENCY_RUNS`]).
    pub p50_us: f64,
    /// 99th percentile latency per prompt, microseconds.
    pub p99_us: f64,
    /// Slowest prompt, microseconds.
    pub max_us: f64,
    /// Timed runs per prompt.
    pub latency_runs_per_prompt: usize,
    /// Number of prompts.
    pub prompts: usize,
    /// Injections flagged.
    pub true_positives: usize,
    /// Benign prompts flagged.
    pub false_positives: usize,
    /// Benign prompts passed.
    pub true_negatives: usize,
    /// Injections passed.
    pub false_negatives: usize,
}

/// Counts of a binary confusion matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Confusion {
    pub(crate) tp: usize,
    pub(crate) fp: usize,
    pub(crate) tn: usize,
    pub(crate) fn_: usize,
}

impl Confusion {
    pub(crate) fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, false) => self.tn += 1,
            (false, true) => self.fn_ += 1,
        }
    }
    pub(crate) fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub(crate) fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub(crate) fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    pub(crate) fn fpr(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the guard on every example.
pub fn evaluate(guard: &Guard, examples: &[Example]) -> EvalReport {
    let mut c = Confusion::default();
    let mut lat = Vec::with_capacity(examples.len());
    for e in examples {
        let mut runs = [0f64; LATENCY_RUNS];
        let mut verdict = false;
        for r in &mut runs {
            let t = Instant::now();
            verdict = guard.assess(&e.text).injection;
            *r = t.elapsed().as_secs_f64() * 1e6;
        }
        runs.sort_by(f64::total_cmp);
        lat.push(runs[LATENCY_RUNS / 2]);
        c.add(verdict, e.injection);
    }
    lat.sort_by(f64::total_cmp);
    EvalReport {
        precision: c.precision(),
        recall: c.recall(),
        f1: c.f1(),
        false_positive_rate: c.fpr(),
        p50_us: quantile(&lat, 0.5),
        p99_us: quantile(&lat, 0.99),
        max_us: lat.last().copied().unwrap_or(0.0),
        latency_runs_per_prompt: LATENCY_RUNS,
        prompts: examples.len(),
        true_positives: c.tp,
        false_positives: c.fp,
        true_negatives: c.tn,
        false_negatives: c.fn_,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_metrics() {
        let mut c = Confusion::default();
        for (p, a) in [
            (true, true),
            (true, true),
            (true, false),
            (false, true),
            (false, false),
        ] {
            c.add(p, a);
        }
        assert!((c.precision() - 2.0 / 3.0).abs() < 1e-9);
        assert!((c.recall() - 2.0 / 3.0).abs() < 1e-9);
        assert!((c.fpr() - 0.5).abs() < 1e-9);
        assert!((c.f1() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(Confusion::default().f1(), 0.0);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
