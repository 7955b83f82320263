//! New external destination: a name or external address a workload had not used during
//! its learning window. Each new destination alerts once; events to it within the hold
//! time join the alert as evidence.

use std::collections::HashMap;

use palisade_events::{AlertKind, Severity};
use serde::{Deserialize, Serialize};

use crate::book::Signal;
use crate::util::registered_domain;
use crate::{Ctx, SECOND};

/// Destinations per workload.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    workloads: HashMap<String, Known>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Known {
    /// Destination → `None` when learned, `Some(t)` when first seen after learning at t.
    dests: HashMap<String, Option<i64>>,
    /// Registered domain → distinct names learned under it.
    domains: HashMap<String, usize>,
}

impl State {
    pub(crate) fn observe(
        &mut self,
        ctx: &mut Ctx<'_>,
        workload: &str,
        learn_until: i64,
        dest: &str,
        is_name: bool,
        id: &str,
    ) {
        let known = self.workloads.entry(workload.to_string()).or_default();
        let learning = ctx.now < learn_until;
        match known.dests.get(dest) {
            Some(None) => return,
            Some(Some(first)) => {
                // Still collecting evidence for the alert about this destination.
                if ctx.now - first <= ctx.cfg.alert_hold_secs * SECOND
                    && ctx.book.is_pending(AlertKind::NewDestination, workload)
                {
                    ctx.signal(signal(ctx.cfg, workload, dest, ctx.now, id));
                }
                return;
            }
            None => {}
        }
        if learning {
            known.dests.insert(dest.to_string(), None);
            if is_name {
                *known
                    .domains
                    .entry(registered_domain(dest).to_string())
                    .or_default() += 1;
            }
            return;
        }
        if is_name
            && known
                .domains
                .get(registered_domain(dest))
                .is_some_and(|n| *n >= ctx.cfg.new_destination.domain_known_after_names)
        {
            known.dests.insert(dest.to_string(), None);
            return;
        }
        known.dests.insert(dest.to_string(), Some(ctx.now));
        ctx.signal(signal(ctx.cfg, workload, dest, ctx.now, id));
    }
}

fn signal(cfg: &crate::DetectConfig, workload: &str, dest: &str, now: i64, id: &str) -> Signal {
    Signal {
        kind: AlertKind::NewDestination,
        subject: workload.to_string(),
        time: now,
        severity: Severity::Medium,
        topic: dest.to_string(),
        reason: format!(
            "contacted {dest}, an external destination not seen in its {}h learning window",
            cfg.learning_window_secs / 3600
        ),
        evidence: vec![id.to_string()],
        cooldown_secs: 0,
    }
}
