//! The alert book: turns detector signals into alerts, one per anomaly. A first signal
//! opens a pending alert that collects evidence for `alertHoldSecs`; then the alert is
//! emitted and its (kind, subject) stays quiet until no signal came for the detector's
//! cooldown.

use std::collections::BTreeMap;

use palisade_events::{AlertInfo, AlertKind, Event, EventBody, Severity, Timestamp, Ulid};
use serde::{Deserialize, Serialize};

/// One finding of a detector about a subject.
pub(crate) struct Signal {
    /// Alert kind.
    pub(crate) kind: AlertKind,
    /// Workload or `consumer:<name>`.
    pub(crate) subject: String,
    /// Event time of the finding, in microseconds.
    pub(crate) time: i64,
    /// How urgent.
    pub(crate) severity: Severity,
    /// What the finding is about (a destination, a domain, a signal name): the summary
    /// keeps the first reason per topic.
    pub(crate) topic: String,
    /// A clause of the summary, e.g. `sent 2 GiB to x in one minute`.
    pub(crate) reason: String,
    /// Ids of the events that show it.
    pub(crate) evidence: Vec<String>,
    /// Seconds without a signal before the same (kind, subject) alerts again.
    pub(crate) cooldown_secs: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    kind: AlertKind,
    subject: String,
    severity: Severity,
    opened: i64,
    last: i64,
    cooldown_secs: i64,
    reasons: Vec<(String, String)>,
    /// Signals about further topics, beyond [`MAX_REASONS`].
    #[serde(default)]
    more: u64,
    evidence: Vec<String>,
}

/// Most topics an alert's summary names: pods decide how many there are (every new
/// destination is one); further ones are counted.
const MAX_REASONS: usize = 10;

/// Pending alerts, quiet periods and the id sequence.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AlertBook {
    pending: BTreeMap<String, Pending>,
    quiet_until: BTreeMap<String, i64>,
    seq: u64,
}

const SECOND: i64 = 1_000_000;

fn kind_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::NewDestination => "new-destination",
        AlertKind::EgressVolume => "egress-volume",
        AlertKind::DnsTunnel => "dns-tunnel",
        AlertKind::LateralMovement => "lateral-movement",
        AlertKind::InferenceAbuse => "inference-abuse",
        AlertKind::PromptInjectionCampaign => "prompt-injection-campaign",
    }
}

impl AlertBook {
    /// Records a signal. Returns false when it was absorbed by a quiet period.
    pub(crate) fn signal(&mut self, s: Signal, max_evidence: usize) -> bool {
        let key = format!("{}|{}", kind_name(s.kind), s.subject);
        if let Some(p) = self.pending.get_mut(&key) {
            p.last = p.last.max(s.time);
            p.severity = p.severity.max(s.severity);
            if !p.reasons.iter().any(|(t, _)| *t == s.topic) {
                if p.reasons.len() < MAX_REASONS {
                    p.reasons.push((s.topic, s.reason));
                } else {
                    p.more += 1;
                }
            }
            for id in s.evidence {
                if p.evidence.len() >= max_evidence {
                    break;
                }
                if !p.evidence.contains(&id) {
                    p.evidence.push(id);
                }
            }
            return true;
        }
        if let Some(until) = self.quiet_until.get_mut(&key) {
            if *until > s.time {
                *until = (*until).max(s.time + s.cooldown_secs * SECOND);
                return false;
            }
        }
        let mut evidence = Vec::new();
        for id in s.evidence {
            if evidence.len() >= max_evidence {
                break;
            }
            if !evidence.contains(&id) {
                evidence.push(id);
            }
        }
        self.pending.insert(
            key,
            Pending {
                kind: s.kind,
                subject: s.subject,
                severity: s.severity,
                opened: s.time,
                last: s.time,
                cooldown_secs: s.cooldown_secs,
                reasons: vec![(s.topic, s.reason)],
                more: 0,
                evidence,
            },
        );
        true
    }

    /// True while (kind, subject) has a pending alert.
    pub(crate) fn is_pending(&self, kind: AlertKind, subject: &str) -> bool {
        self.pending
            .contains_key(&format!("{}|{}", kind_name(kind), subject))
    }

    /// Emits the pending alerts whose hold time has passed at `now`, in (time, kind,
    /// subject) order; forgets quiet periods that are over.
    pub(crate) fn due(&mut self, now: i64, hold_secs: i64) -> Vec<Event> {
        let ready: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.opened + hold_secs * SECOND <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = self.emit(ready, hold_secs);
        self.quiet_until.retain(|_, until| *until > now);
        out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// Emits every pending alert.
    pub(crate) fn flush(&mut self, hold_secs: i64) -> Vec<Event> {
        let keys: Vec<String> = self.pending.keys().cloned().collect();
        let mut out = self.emit(keys, hold_secs);
        out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        out
    }

    fn emit(&mut self, keys: Vec<String>, hold_secs: i64) -> Vec<Event> {
        let mut ready: Vec<(String, Pending)> = keys
            .into_iter()
            .filter_map(|k| self.pending.remove(&k).map(|p| (k, p)))
            .collect();
        ready.sort_by(|a, b| a.1.opened.cmp(&b.1.opened).then_with(|| a.0.cmp(&b.0)));
        let mut out = Vec::with_capacity(ready.len());
        for (key, p) in ready {
            self.quiet_until
                .insert(key, p.last + p.cooldown_secs * SECOND);
            let time = p.opened + hold_secs * SECOND;
            let ms = u64::try_from(time / 1000).unwrap_or(0);
            self.seq += 1;
            let id = Ulid::from_parts(ms, u128::from(self.seq)).to_string();
            let reasons: Vec<&str> = p.reasons.iter().map(|(_, r)| r.as_str()).collect();
            let summary = if p.more > 0 {
                format!(
                    "{} {}; and {} more signals like these.",
                    p.subject,
                    reasons.join("; "),
                    p.more
                )
            } else {
                format!("{} {}.", p.subject, reasons.join("; "))
            };
            out.push(Event::new(
                id,
                Timestamp(time),
                EventBody::Alert(AlertInfo {
                    kind: p.kind,
                    severity: p.severity,
                    subject: p.subject,
                    summary,
                    evidence: p.evidence,
                }),
            ));
        }
        out
    }
}
