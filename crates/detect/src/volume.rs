//! Egress volume spikes per (workload, destination): bytes sent (flow `end` `bytesSent`,
//! http `bytesIn`) per time bucket against a robust baseline of the pair's past non-empty
//! buckets (median, MAD and maximum).

use std::collections::{HashMap, VecDeque};

use palisade_events::{AlertKind, Severity};
use serde::{Deserialize, Serialize};

use crate::book::Signal;
use crate::util::{human_bytes, robust_stats};
use crate::{Ctx, SECOND};

/// Open buckets and baselines per pair.
/// The destination of a workload's pair for the destinations beyond
/// `egressVolume.maxPairs`.
pub(crate) const OTHER_DESTINATIONS: &str = "(other destinations)";

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    pairs: HashMap<String, Pair>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pair {
    workload: String,
    dest: String,
    learn_until: i64,
    bucket: i64,
    bytes: u64,
    events: Vec<(String, u64)>,
    history: VecDeque<u64>,
}

impl State {
    /// Forgets the pairs of evicted workloads.
    pub(crate) fn forget(&mut self, gone: &std::collections::HashSet<String>) {
        self.pairs.retain(|_, p| !gone.contains(&p.workload));
    }

    pub(crate) fn add(
        &mut self,
        ctx: &mut Ctx<'_>,
        workload: &str,
        dest: &str,
        learn_until: i64,
        bytes: u64,
        id: &str,
    ) {
        let width = ctx.cfg.egress_volume.bucket_secs * SECOND;
        let bucket = ctx.now.div_euclid(width);
        let mut key = format!("{workload}\u{1f}{dest}");
        let mut dest = dest;
        if self.pairs.len() >= ctx.cfg.egress_volume.max_pairs && !self.pairs.contains_key(&key) {
            // Pods choose where they send: beyond the limit, new destinations share one
            // pair per workload (created past the limit, at most one per workload).
            key = format!("{workload}\u{1f}{OTHER_DESTINATIONS}");
            dest = OTHER_DESTINATIONS;
        }
        let pair = self.pairs.entry(key).or_insert_with(|| Pair {
            workload: workload.to_string(),
            dest: dest.to_string(),
            learn_until,
            bucket,
            ..Pair::default()
        });
        if pair.bucket != bucket {
            pair.close(ctx);
            pair.bucket = bucket;
        }
        pair.bytes = pair.bytes.saturating_add(bytes);
        pair.events.push((id.to_string(), bytes));
        // Evidence is at most `maxEvidence` of the largest transfers (`close`): the others
        // of a busy bucket need not be kept.
        let keep = ctx.cfg.max_evidence;
        if pair.events.len() >= 2 * keep.max(1) {
            pair.events.sort_by(by_size);
            pair.events.truncate(keep);
        }
    }

    /// Closes buckets that ended before `ctx.now`, in key order.
    pub(crate) fn sweep(&mut self, ctx: &mut Ctx<'_>) {
        let width = ctx.cfg.egress_volume.bucket_secs * SECOND;
        let current = ctx.now.div_euclid(width);
        let mut keys: Vec<&String> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.bucket < current && !p.events.is_empty())
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        let keys: Vec<String> = keys.into_iter().cloned().collect();
        for k in keys {
            if let Some(p) = self.pairs.get_mut(&k) {
                p.close(ctx);
            }
        }
    }

    /// Closes every open bucket (end of stream).
    pub(crate) fn close_all(&mut self, ctx: &mut Ctx<'_>) {
        let mut keys: Vec<String> = self.pairs.keys().cloned().collect();
        keys.sort();
        for k in keys {
            if let Some(p) = self.pairs.get_mut(&k) {
                p.close(ctx);
            }
        }
    }
}

impl Pair {
    fn close(&mut self, ctx: &mut Ctx<'_>) {
        // A bucket with only zero-byte sends (downloads) still counts as activity.
        if self.events.is_empty() {
            return;
        }
        let cfg = &ctx.cfg().egress_volume;
        let width = cfg.bucket_secs * SECOND;
        let bytes = self.bytes;
        let events = std::mem::take(&mut self.events);
        self.bytes = 0;
        let bucket_end = (self.bucket + 1) * width;
        let learning = bucket_end <= self.learn_until;
        let (med, mad, max) = robust_stats(self.history.iter().map(|b| *b as f64));
        // The largest bucket seen always counts, even in a short history: a pair used
        // only for occasional checkpoint uploads has few, big buckets.
        let floor = (cfg.min_bytes as f64).max(max * cfg.max_ratio);
        let (threshold, median) = if self.history.len() >= cfg.min_history_buckets {
            let t = floor
                .max(med * cfg.median_ratio)
                .max(med + cfg.mad_factor * 1.4826 * mad);
            (t, med)
        } else {
            (floor.max(cfg.new_pair_bytes as f64), 0.0)
        };
        if !learning && bytes as f64 > threshold {
            // Evidence: the fewest largest transfers without which the bucket would not
            // be a spike (not the routine traffic of the same bucket).
            let mut ev = events;
            ev.sort_by(by_size);
            let mut rest = bytes as f64;
            let mut evidence = Vec::new();
            for (id, b) in ev {
                if rest <= threshold || evidence.len() >= ctx.cfg.max_evidence {
                    break;
                }
                rest -= b as f64;
                evidence.push(id);
            }
            let severity = if bytes as f64 >= 10.0 * threshold {
                Severity::High
            } else {
                Severity::Medium
            };
            let reason = format!(
                "sent {} to {} in {}s, above its threshold of {} (baseline median {})",
                human_bytes(bytes as f64),
                self.dest,
                cfg.bucket_secs,
                human_bytes(threshold),
                human_bytes(median)
            );
            let s = Signal {
                kind: AlertKind::EgressVolume,
                subject: self.workload.clone(),
                time: ctx.now,
                severity,
                topic: self.dest.clone(),
                reason,
                evidence,
                cooldown_secs: cfg.cooldown_secs,
            };
            ctx.signal(s);
            return;
        }
        self.history.push_back(bytes);
        while self.history.len() > cfg.history_buckets.max(1) {
            self.history.pop_front();
        }
    }
}

/// Largest transfer first; equal ones by event id.
fn by_size(a: &(String, u64), b: &(String, u64)) -> std::cmp::Ordering {
    b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0))
}
