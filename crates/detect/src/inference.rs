//! Inference abuse per consumer (http events with `consumer`): request-rate bursts against
//! the consumer's own baseline, many near-duplicate requests (same path or model and
//! nearly the same prompt size: systematic variation of one prompt, as in model
//! extraction), and repeated prompt-injection detections. All three feed one alert per
//! consumer and incident.

use std::collections::{HashMap, VecDeque};

use palisade_events::{AlertKind, Event, HttpInfo, Severity};
use serde::{Deserialize, Serialize};

use crate::book::Signal;
use crate::util::robust_stats;
use crate::{Ctx, SECOND};

/// Per-consumer state, and the busiest bucket of any consumer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    consumers: HashMap<String, Consumer>,
    global_peak: u64,
    all_requests: u64,
    all_injections: u64,
}

/// Weight, in requests, of everyone's injection rate in a consumer's expected rate.
const PRIOR_REQUESTS: f64 = 500.0;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Consumer {
    learn_until: i64,
    // Rate.
    bucket: i64,
    count: u64,
    ids: Vec<String>,
    history: VecDeque<u64>,
    // Near-duplicates, per tumbling period.
    period: i64,
    period_total: usize,
    sigs: HashMap<String, Sig>,
    period_top: usize,
    period_alerted: bool,
    dup_peak: usize,
    // Prompt-injection hits and request times in the sliding window, and the totals
    // of quiet periods.
    injections: VecDeque<(i64, String)>,
    requests: VecDeque<i64>,
    injection_alerted: bool,
    request_total: u64,
    injection_total: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Sig {
    count: usize,
    ids: Vec<String>,
}

impl State {
    /// Forgets evicted consumers (`consumer:<name>`).
    pub(crate) fn forget(&mut self, gone: &std::collections::HashSet<String>) {
        self.consumers.retain(|c, _| !gone.contains(c));
    }

    pub(crate) fn observe(
        &mut self,
        ctx: &mut Ctx<'_>,
        subject: &str,
        learn_until: i64,
        e: &Event,
        h: &HttpInfo,
    ) {
        let cfg = &ctx.cfg().inference_abuse;
        let max_ev = ctx.cfg.max_evidence;
        let global_peak = self.global_peak;
        let c = self
            .consumers
            .entry(subject.to_string())
            .or_insert_with(|| Consumer {
                learn_until,
                bucket: ctx.now.div_euclid(cfg.bucket_secs * SECOND),
                period: ctx.now.div_euclid(cfg.window_secs * SECOND),
                ..Consumer::default()
            });

        // Rate.
        let bucket = ctx.now.div_euclid(cfg.bucket_secs * SECOND);
        if bucket != c.bucket {
            let peak = c.close_bucket(ctx, subject, global_peak);
            self.global_peak = self.global_peak.max(peak);
            c.bucket = bucket;
        }
        c.count += 1;
        if c.ids.len() < max_ev {
            c.ids.push(e.id.clone());
        }

        // Near-duplicates.
        let period = ctx.now.div_euclid(cfg.window_secs * SECOND);
        if period != c.period {
            if !c.period_alerted {
                c.dup_peak = c.dup_peak.max(c.period_top);
            }
            c.period = period;
            c.period_total = 0;
            c.sigs.clear();
            c.period_top = 0;
            c.period_alerted = false;
        }
        c.period_total += 1;
        if let Some((what, slot)) = signature(h, cfg.size_tolerance) {
            let key = format!("{what}\u{1f}{slot}");
            let sig = c.sigs.entry(key).or_default();
            sig.count += 1;
            if sig.ids.len() < max_ev {
                sig.ids.push(e.id.clone());
            }
            let near: usize = [slot - 1, slot, slot + 1]
                .iter()
                .filter_map(|s| c.sigs.get(&format!("{what}\u{1f}{s}")))
                .map(|s| s.count)
                .sum();
            c.period_top = c.period_top.max(near);
            let limit = (cfg.min_near_duplicates as f64).max(cfg.peak_factor * c.dup_peak as f64);
            // Judged only against a learned baseline: fixed-size batch clients are normal.
            if ctx.now >= c.learn_until
                && !c.period_alerted
                && near as f64 >= limit
                && near as f64 >= cfg.near_duplicate_share * c.period_total as f64
            {
                c.period_alerted = true;
                let mut evidence = Vec::new();
                for s in [slot - 1, slot, slot + 1] {
                    if let Some(sig) = c.sigs.get(&format!("{what}\u{1f}{s}")) {
                        evidence.extend(sig.ids.iter().cloned());
                    }
                }
                ctx.signal(Signal {
                    kind: AlertKind::InferenceAbuse,
                    subject: subject.to_string(),
                    time: ctx.now,
                    severity: Severity::Medium,
                    topic: "near-duplicates".into(),
                    reason: format!(
                        "sent {near} of {} requests to {what} with nearly the same size within {} minutes, systematic prompt variation typical of model extraction",
                        c.period_total,
                        cfg.window_secs / 60
                    ),
                    evidence,
                    cooldown_secs: cfg.cooldown_secs,
                });
            }
        }

        // Prompt injection: more hits in the window than the consumer's own hit rate
        // (or, while it has few requests, everyone's) explains.
        let window = cfg.window_secs * SECOND;
        let before = ctx.now - window;
        // What leaves the window teaches the baseline, unless it was alerted on.
        let learn = !c.injection_alerted;
        while c.injections.front().is_some_and(|(t, _)| *t < before) {
            c.injections.pop_front();
            if learn {
                c.injection_total += 1;
                self.all_injections += 1;
            }
        }
        while c.requests.front().is_some_and(|t| *t < before) {
            c.requests.pop_front();
            if learn {
                c.request_total += 1;
                self.all_requests += 1;
            }
        }
        if c.injections.is_empty() {
            c.injection_alerted = false;
        }
        c.requests.push_back(ctx.now);
        let hit = h.detections.iter().any(|d| d.detector == "prompt-guard");
        if hit {
            c.injections.push_back((ctx.now, e.id.clone()));
        }
        let global_rate = (self.all_injections as f64 + 1.0) / (self.all_requests as f64 + 1000.0);
        let rate = (c.injection_total as f64 + PRIOR_REQUESTS * global_rate)
            / (c.request_total as f64 + PRIOR_REQUESTS);
        let expected = rate * c.requests.len() as f64;
        let limit = (cfg.min_injections as f64)
            .max(cfg.injection_factor * expected + 3.0 * expected.sqrt());
        let alarming = hit && c.injections.len() as f64 >= limit;
        if alarming {
            let evidence = if c.injection_alerted {
                vec![e.id.clone()]
            } else {
                c.injections.iter().map(|(_, id)| id.clone()).collect()
            };
            c.injection_alerted = true;
            ctx.signal(Signal {
                kind: AlertKind::InferenceAbuse,
                subject: subject.to_string(),
                time: ctx.now,
                severity: Severity::High,
                topic: "prompt-injection".into(),
                reason: format!(
                    "triggered {} prompt-injection detections in {} requests within {} minutes (about {expected:.1} expected)",
                    c.injections.len(),
                    c.requests.len(),
                    cfg.window_secs / 60
                ),
                evidence,
                cooldown_secs: cfg.cooldown_secs,
            });
        }
    }

    /// Closes rate buckets that ended before `ctx.now`.
    pub(crate) fn sweep(&mut self, ctx: &mut Ctx<'_>) {
        let current = ctx
            .now
            .div_euclid(ctx.cfg.inference_abuse.bucket_secs * SECOND);
        self.close_where(ctx, |c| c.bucket < current);
    }

    /// Closes every open rate bucket (end of stream).
    pub(crate) fn close_all(&mut self, ctx: &mut Ctx<'_>) {
        self.close_where(ctx, |_| true);
    }

    fn close_where(&mut self, ctx: &mut Ctx<'_>, pick: impl Fn(&Consumer) -> bool) {
        let mut keys: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.count > 0 && pick(c))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        for k in keys {
            let global_peak = self.global_peak;
            if let Some(c) = self.consumers.get_mut(&k) {
                let peak = c.close_bucket(ctx, &k, global_peak);
                self.global_peak = self.global_peak.max(peak);
            }
        }
    }
}

/// What a request was for (model, else path) and its size slot: sizes in the same or an
/// adjacent slot differ by at most about `tolerance`. `None` when the size is unknown.
fn signature(h: &HttpInfo, tolerance: f64) -> Option<(String, i64)> {
    let ai = h.ai.as_ref();
    let size = ai
        .and_then(|a| a.prompt_tokens)
        .or(h.bytes_in)
        .filter(|s| *s > 0)?;
    let what = ai
        .and_then(|a| a.model.clone())
        .or_else(|| h.path.clone())
        .unwrap_or_default();
    let slot = ((size as f64).ln() / (1.0 + tolerance.max(0.001)).ln()).floor() as i64;
    Some((what, slot))
}

impl Consumer {
    /// Evaluates the finished rate bucket; returns its count when it joined the baseline.
    fn close_bucket(&mut self, ctx: &mut Ctx<'_>, subject: &str, global_peak: u64) -> u64 {
        let cfg = &ctx.cfg().inference_abuse;
        let count = std::mem::take(&mut self.count);
        let ids = std::mem::take(&mut self.ids);
        if count == 0 {
            return 0;
        }
        let bucket_end = (self.bucket + 1) * cfg.bucket_secs * SECOND;
        let learning = bucket_end <= self.learn_until;
        let (med, mad, max) = robust_stats(self.history.iter().map(|c| *c as f64));
        let threshold = if !learning && self.history.len() >= 10 {
            (cfg.min_requests as f64)
                .max(med + cfg.mad_factor * 1.4826 * mad)
                .max(cfg.max_ratio * max)
        } else {
            (cfg.new_consumer_requests as f64)
                .max(cfg.max_ratio * global_peak as f64)
                .max(cfg.max_ratio * max)
        };
        if count as f64 > threshold {
            ctx.signal(Signal {
                kind: AlertKind::InferenceAbuse,
                subject: subject.to_string(),
                time: ctx.now,
                severity: Severity::Medium,
                topic: "rate".into(),
                reason: format!(
                    "made {count} requests in {}s, above its threshold of {threshold:.0} (baseline median {med:.0}, busiest {max:.0})",
                    cfg.bucket_secs
                ),
                evidence: ids,
                cooldown_secs: cfg.cooldown_secs,
            });
            return 0;
        }
        self.history.push_back(count);
        while self.history.len() > cfg.history_buckets.max(1) {
            self.history.pop_front();
        }
        count
    }
}
