//! Prometheus metrics from the event stream, in the text exposition format (version
//! 0.0.4), written by hand: verdicts by deciding policy, events by type, events dropped by
//! each component's queue, DNS and HTTP latency histograms, and detector alerts.
//!
//! [`Metrics`] is fed the events as they are stored (`palisade up` tails the store, so
//! every component's events count, whichever process wrote them); queue drops are read
//! from the channels registered with [`watch_channel`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

use palisade_events::{ChannelWatch, Event, EventBody};

/// Upper bounds (seconds) of the DNS latency buckets.
pub const DNS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds (seconds) of the HTTP duration buckets.
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these bucket bounds.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one observation (seconds).
    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str) {
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// Counters built from events.
#[derive(Debug, Clone)]
struct Counters {
    events: BTreeMap<&'static str, u64>,
    verdicts: BTreeMap<(String, String, String, String, String), u64>,
    alerts: BTreeMap<(String, String), u64>,
    dns: Histogram,
    http: Histogram,
    newest_us: i64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            events: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            alerts: BTreeMap::new(),
            dns: Histogram::new(DNS_BUCKETS),
            http: Histogram::new(HTTP_BUCKETS),
            newest_us: 0,
        }
    }
}

/// The metrics registry. Cheap to share behind an `Arc`; updates take one short lock.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn json_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts `events`.
    pub fn record<'a>(&self, events: impl IntoIterator<Item = &'a Event>) {
        let mut c = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        for e in events {
            *c.events.entry(e.event_type().as_str()).or_default() += 1;
            c.newest_us = c.newest_us.max(e.time.as_micros());
            if let Some(v) = e.verdict {
                let (kind, ns, name) = match &e.policy {
                    Some(p) => (
                        p.kind.clone(),
                        p.namespace.clone().unwrap_or_default(),
                        p.name.clone(),
                    ),
                    None => (String::new(), String::new(), String::new()),
                };
                let key = (
                    e.event_type().as_str().to_string(),
                    v.as_str().to_string(),
                    kind,
                    ns,
                    name,
                );
                *c.verdicts.entry(key).or_default() += 1;
            }
            match &e.body {
                EventBody::Dns(d) => {
                    if let Some(us) = d.latency_us {
                        c.dns.observe(us as f64 / 1e6);
                    }
                }
                EventBody::Http(h) => {
                    if let Some(ms) = h.duration_ms {
                        c.http.observe(ms as f64 / 1e3);
                    }
                }
                EventBody::Alert(a) => {
                    let key = (json_name(&a.kind), json_name(&a.severity));
                    *c.alerts.entry(key).or_default() += 1;
                }
                EventBody::Flow(_) => {}
            }
        }
    }

    /// The exposition text, with `extra` (already formatted metric families) appended.
    pub fn render(&self, extra: &str) -> String {
        let c = self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP palisade_events_total Events stored, by type.\n# TYPE palisade_events_total counter\n");
        for t in ["flow", "dns", "http", "alert"] {
            let n = c.events.get(t).copied().unwrap_or(0);
            let _ = writeln!(out, "palisade_events_total{{type=\"{t}\"}} {n}");
        }
        out.push_str("# HELP palisade_verdicts_total Verdicts, by event type, verdict and deciding policy (empty policy: default posture).\n# TYPE palisade_verdicts_total counter\n");
        for ((t, v, kind, ns, name), n) in &c.verdicts {
            let _ = writeln!(
                out,
                "palisade_verdicts_total{{type=\"{t}\",verdict=\"{v}\",policy_kind=\"{}\",policy_namespace=\"{}\",policy=\"{}\"}} {n}",
                esc(kind),
                esc(ns),
                esc(name)
            );
        }
        out.push_str("# HELP palisade_alerts_total Detector alerts, by kind and severity.\n# TYPE palisade_alerts_total counter\n");
        for ((kind, sev), n) in &c.alerts {
            let _ = writeln!(
                out,
                "palisade_alerts_total{{kind=\"{}\",severity=\"{}\"}} {n}",
                esc(kind),
                esc(sev)
            );
        }
        out.push_str("# HELP palisade_dns_latency_seconds Time from DNS query to answer.\n# TYPE palisade_dns_latency_seconds histogram\n");
        c.dns.write(&mut out, "palisade_dns_latency_seconds");
        out.push_str("# HELP palisade_http_duration_seconds Time from HTTP request to end of response, through a gateway.\n# TYPE palisade_http_duration_seconds histogram\n");
        c.http.write(&mut out, "palisade_http_duration_seconds");
        out.push_str("# HELP palisade_events_dropped_total Events dropped because a component's event queue was full.\n# TYPE palisade_events_dropped_total counter\n");
        out.push_str("# HELP palisade_events_queued Events waiting in a component's queue.\n# TYPE palisade_events_queued gauge\n");
        for (component, w) in watched() {
            let s = w.stats();
            let _ = writeln!(
                out,
                "palisade_events_dropped_total{{component=\"{}\"}} {}",
                esc(&component),
                s.dropped
            );
            let _ = writeln!(
                out,
                "palisade_events_queued{{component=\"{}\"}} {}",
                esc(&component),
                s.queued
            );
        }
        out.push_str("# HELP palisade_newest_event_timestamp_seconds Time of the newest event counted.\n# TYPE palisade_newest_event_timestamp_seconds gauge\n");
        let _ = writeln!(
            out,
            "palisade_newest_event_timestamp_seconds {}",
            c.newest_us as f64 / 1e6
        );
        out.push_str(extra);
        out
    }
}

/// Stored events counted at start, at most (the newest ones), before following new ones.
pub const TAIL_HISTORY: i64 = 100_000;

/// Follows the event store at `path` forever: counts up to [`TAIL_HISTORY`] of the newest
/// stored events, then every event stored after, checking every `interval`. Runs on the
/// calling thread; errors (no store yet, a locked file) are retried.
pub fn tail_store(path: &std::path::Path, metrics: &Metrics, interval: std::time::Duration) -> ! {
    let mut after: Option<i64> = None;
    let mut store = None;
    loop {
        if store.is_none() && path.exists() {
            store = palisade_store::Store::open(path).ok();
        }
        if let Some(s) = &store {
            if after.is_none() {
                after = s
                    .latest_seq()
                    .ok()
                    .map(|l| l.map_or(0, |l| (l - TAIL_HISTORY).max(0)));
            }
            let q = palisade_store::Query {
                after_seq: after,
                ..palisade_store::Query::default()
            };
            if let Ok(rows) = s.query(&q) {
                metrics.record(rows.iter().map(|(_, e)| e));
                if let Some(max) = rows.iter().map(|(seq, _)| *seq).max() {
                    after = Some(max);
                }
            }
        }
        std::thread::sleep(interval);
    }
}

fn registry() -> &'static Mutex<Vec<(String, ChannelWatch)>> {
    static CHANNELS: OnceLock<Mutex<Vec<(String, ChannelWatch)>>> = OnceLock::new();
    CHANNELS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Registers a component's event queue, so its drops show in `/metrics`. Registering the
/// same component again replaces the earlier queue.
pub fn watch_channel(component: &str, watch: ChannelWatch) {
    let mut r = registry().lock().unwrap_or_else(PoisonError::into_inner);
    r.retain(|(c, _)| c != component);
    r.push((component.to_string(), watch));
}

/// The registered queues.
fn watched() -> Vec<(String, ChannelWatch)> {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_events::{AlertInfo, AlertKind, DnsInfo, PolicyRef, Severity, Timestamp, Verdict};

    #[test]
    fn exposition_counts_verdicts_latency_alerts_and_drops() {
        let m = Metrics::new();
        let mut dns = Event::new(
            "d1",
            Timestamp(2_000_000),
            EventBody::Dns(DnsInfo {
                query: "x.example".into(),
                latency_us: Some(1_500),
                ..DnsInfo::default()
            }),
        );
        dns.verdict = Some(Verdict::Deny);
        dns.policy = Some(PolicyRef {
            kind: "SecurityPolicy".into(),
            namespace: Some("ml".into()),
            name: "hub \"only\"".into(),
            rule: None,
            stage: None,
            mode: None,
            federation_revision: None,
        });
        let alert = Event::new(
            "a1",
            Timestamp(3_000_000),
            EventBody::Alert(AlertInfo {
                kind: AlertKind::DnsTunnel,
                severity: Severity::High,
                subject: "ml/trainer".into(),
                summary: "s".into(),
                evidence: vec!["d1".into()],
            }),
        );
        m.record([&dns, &dns, &alert]);
        let (tx, rx) = palisade_events::channel(1);
        assert!(tx.try_send(alert.clone()));
        assert!(!tx.try_send(alert.clone()));
        watch_channel("test-queue", tx.watch());
        let text = m.render("");
        assert!(
            text.contains("palisade_events_total{type=\"dns\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("palisade_verdicts_total{type=\"dns\",verdict=\"deny\",policy_kind=\"SecurityPolicy\",policy_namespace=\"ml\",policy=\"hub \\\"only\\\"\"} 2\n"), "{text}");
        assert!(
            text.contains("palisade_alerts_total{kind=\"dns-tunnel\",severity=\"high\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("palisade_dns_latency_seconds_bucket{le=\"0.001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("palisade_dns_latency_seconds_bucket{le=\"0.0025\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("palisade_dns_latency_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("palisade_events_dropped_total{component=\"test-queue\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("palisade_events_queued{component=\"test-queue\"} 1\n"),
            "{text}"
        );
        // A watch is not a sender: dropping the sender closes the channel.
        drop(tx);
        assert_eq!(rx.recv_batch(10, std::time::Duration::ZERO).len(), 1);
        assert!(rx.is_closed());
    }
}
