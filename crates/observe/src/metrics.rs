//! Prometheus metrics from the event stream, in the text exposition format (version
//! 0.0.4), written by hand: verdicts by deciding policy, events by type, events dropped by
//! each component's queue, DNS and HTTP latency histograms, and detector alerts.
//!
//! [`Metrics`] is fed the events as they are stored (`palisade up` tails the store, so
//! every component's events count, whichever process wrote them); queue drops are read
//! from the channels registered with [`watch_channel`].
//!
//! Policy names in events are chosen by whoever wrote them (events imported from a file or
//! from another cluster say anything), and every distinct name would be a new series. So
//! `palisade_verdicts_total` has series for at most [`MAX_POLICY_SERIES`] distinct deciding
//! policies (the first seen); the verdicts of any other policy are counted under
//! [`OVERFLOW_LABEL`], and `palisade_metrics_label_overflow_total` counts them.

use std::collections::{BTreeMap, BTreeSet};
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

/// Most distinct deciding policies (kind, namespace, name) with series of their own in
/// `palisade_verdicts_total`.
pub const MAX_POLICY_SERIES: usize = 1_000;

/// The `policy_kind`, `policy_namespace` and `policy` label value under which verdicts of
/// policies beyond [`MAX_POLICY_SERIES`] are counted (no Kubernetes name has parentheses).
pub const OVERFLOW_LABEL: &str = "(other)";

/// Longest label value kept (bytes; Kubernetes names are at most 253): longer ones are cut.
pub const MAX_LABEL_BYTES: usize = 253;

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
    /// The policies with series of their own (at most `max_policies`).
    policies: BTreeSet<(String, String, String)>,
    max_policies: usize,
    /// Verdicts counted under [`OVERFLOW_LABEL`].
    overflow: u64,
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
            policies: BTreeSet::new(),
            max_policies: MAX_POLICY_SERIES,
            overflow: 0,
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

/// `v` cut to at most [`MAX_LABEL_BYTES`] bytes (on a character boundary).
fn cut(v: &str) -> String {
    let mut end = v.len().min(MAX_LABEL_BYTES);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_string()
}

impl Counters {
    /// The labels a verdict of `policy` is counted under: its own while fewer than
    /// `max_policies` policies have series (or it already has), else [`OVERFLOW_LABEL`].
    fn policy_labels(&mut self, policy: (String, String, String)) -> (String, String, String) {
        if self.policies.contains(&policy) {
            return policy;
        }
        if self.policies.len() < self.max_policies {
            self.policies.insert(policy.clone());
            return policy;
        }
        self.overflow += 1;
        let o = || OVERFLOW_LABEL.to_string();
        (o(), o(), o())
    }
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

    /// An empty registry with series for at most `max` distinct deciding policies in
    /// `palisade_verdicts_total` (the default is [`MAX_POLICY_SERIES`]).
    pub fn with_policy_limit(max: usize) -> Metrics {
        let m = Metrics::default();
        m.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .max_policies = max;
        m
    }

    /// Counts `events`.
    pub fn record<'a>(&self, events: impl IntoIterator<Item = &'a Event>) {
        let mut c = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        for e in events {
            *c.events.entry(e.event_type().as_str()).or_default() += 1;
            c.newest_us = c.newest_us.max(e.time.as_micros());
            if let Some(v) = e.verdict {
                let (kind, ns, name) = match &e.policy {
                    Some(p) => c.policy_labels((
                        cut(&p.kind),
                        cut(p.namespace.as_deref().unwrap_or_default()),
                        cut(&p.name),
                    )),
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
        out.push_str("# HELP palisade_metrics_label_overflow_total Verdicts counted under policy=\"(other)\" because palisade_verdicts_total already had series for the most distinct policies it keeps.\n# TYPE palisade_metrics_label_overflow_total counter\n");
        let _ = writeln!(
            out,
            "palisade_metrics_label_overflow_total{{metric=\"palisade_verdicts_total\"}} {}",
            c.overflow
        );
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
        for c in counters() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                (c.read)(),
                name = c.name,
                help = c.help
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

/// Most stored events read at once while following the store: a follower that fell behind
/// (a burst of events, a slow disk) reads its backlog in steps of this many.
pub const TAIL_CHUNK: i64 = 20_000;

/// Where [`tail_store`] is in the event store.
#[derive(Debug, Default)]
pub struct StoreTail {
    after: Option<i64>,
}

impl StoreTail {
    /// A follower that starts with the newest [`TAIL_HISTORY`] stored events.
    pub fn new() -> StoreTail {
        StoreTail::default()
    }

    /// Counts the next events stored (at most [`TAIL_CHUNK`] of them, by sequence number)
    /// into `metrics`; returns how many were read and whether more are waiting.
    pub fn step(
        &mut self,
        store: &palisade_store::Store,
        metrics: &Metrics,
    ) -> Result<(usize, bool), palisade_store::StoreError> {
        let latest = store.latest_seq()?.unwrap_or(0);
        let after = *self
            .after
            .get_or_insert_with(|| latest.saturating_sub(TAIL_HISTORY).max(0));
        if latest <= after {
            return Ok((0, false));
        }
        // Every row up to `latest` is committed: the window can be skipped past as a whole.
        let through = after.saturating_add(TAIL_CHUNK).min(latest);
        let q = palisade_store::Query {
            after_seq: Some(after),
            through_seq: Some(through),
            ..palisade_store::Query::default()
        };
        let rows = store.query(&q)?;
        metrics.record(rows.iter().map(|(_, e)| e));
        self.after = Some(through);
        Ok((rows.len(), through < latest))
    }
}

/// Follows the event store at `path` forever: counts up to [`TAIL_HISTORY`] of the newest
/// stored events, then every event stored after, checking every `interval` (reading at most
/// [`TAIL_CHUNK`] events at once). Runs on the calling thread; errors (no store yet, a
/// locked file) are retried.
pub fn tail_store(path: &std::path::Path, metrics: &Metrics, interval: std::time::Duration) -> ! {
    let mut tail = StoreTail::new();
    let mut store = None;
    loop {
        if store.is_none() && path.exists() {
            store = palisade_store::Store::open(path).ok();
        }
        if let Some(s) = &store {
            if let Ok((_, true)) = tail.step(s, metrics) {
                continue;
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

/// A counter a component keeps itself (not built from events), read when `/metrics` is
/// rendered.
#[derive(Clone)]
struct Counter {
    name: &'static str,
    help: &'static str,
    read: std::sync::Arc<dyn Fn() -> u64 + Send + Sync>,
}

fn counter_registry() -> &'static Mutex<Vec<Counter>> {
    static COUNTERS: OnceLock<Mutex<Vec<Counter>>> = OnceLock::new();
    COUNTERS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Registers a counter kept by a component of this process (e.g. the DNS proxy's queries
/// refused for their client's rate), rendered in `/metrics` as `name` with `help` and the
/// value `read` returns then. Registering the same name again replaces the earlier one.
pub fn watch_counter(
    name: &'static str,
    help: &'static str,
    read: impl Fn() -> u64 + Send + Sync + 'static,
) {
    let mut r = counter_registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    r.retain(|c| c.name != name);
    r.push(Counter {
        name,
        help,
        read: std::sync::Arc::new(read),
    });
}

/// The registered counters.
fn counters() -> Vec<Counter> {
    counter_registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
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
    fn the_policy_limit_can_be_set() {
        let m = Metrics::with_policy_limit(2);
        let events: Vec<Event> = ["a", "b", "c", "a", "d"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut e = Event::new(
                    format!("e{i}"),
                    Timestamp(1),
                    EventBody::Dns(DnsInfo::default()),
                );
                e.verdict = Some(Verdict::Allow);
                e.policy = Some(PolicyRef {
                    kind: "NetworkPolicy".into(),
                    namespace: Some("ns".into()),
                    name: (*name).into(),
                    rule: None,
                    stage: None,
                    mode: None,
                    federation_revision: None,
                });
                e
            })
            .collect();
        m.record(&events);
        let text = m.render("");
        for (policy, n) in [("a", 2), ("b", 1), ("(other)", 2)] {
            assert!(
                text.contains(&format!("policy=\"{policy}\"}} {n}\n")),
                "{text}"
            );
        }
        assert!(!text.contains("policy=\"c\""), "{text}");
        assert!(
            text.contains(
                "palisade_metrics_label_overflow_total{metric=\"palisade_verdicts_total\"} 2\n"
            ),
            "{text}"
        );
    }

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
        assert!(
            text.contains(
                "palisade_metrics_label_overflow_total{metric=\"palisade_verdicts_total\"} 0\n"
            ),
            "{text}"
        );
        // A watch is not a sender: dropping the sender closes the channel.
        drop(tx);
        assert_eq!(rx.recv_batch(10, std::time::Duration::ZERO).len(), 1);
        assert!(rx.is_closed());
    }

    #[test]
    fn registered_counters_are_rendered_with_their_current_value() {
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
        let read = std::sync::Arc::clone(&n);
        watch_counter("palisade_test_things_total", "Things counted.", move || {
            read.load(std::sync::atomic::Ordering::Relaxed)
        });
        let text = Metrics::new().render("");
        assert!(
            text.contains("# HELP palisade_test_things_total Things counted.\n# TYPE palisade_test_things_total counter\npalisade_test_things_total 3\n"),
            "{text}"
        );
        n.store(7, std::sync::atomic::Ordering::Relaxed);
        assert!(Metrics::new()
            .render("")
            .contains("\npalisade_test_things_total 7\n"));
    }
}
