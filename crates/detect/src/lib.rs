//! Palisade's anomaly detectors: streaming, deterministic detectors over the event stream
//! of `EVENTS.md` that turn flows, DNS queries and HTTP exchanges into `alert` events with
//! evidence.
//!
//! Everything runs on event time, never on the wall clock, so replaying the same events
//! gives the same alerts. Baselines are kept per workload (the source endpoint's
//! `workload`, stable across pod restarts) or per consumer, each with a learning window
//! counted from its first event. The detectors are:
//!
//! - new external destination after the learning window ([`AlertKind::NewDestination`]);
//! - egress volume spikes per (workload, destination) against a median/MAD baseline
//!   ([`AlertKind::EgressVolume`]);
//! - DNS tunnelling per (workload, registered domain) ([`AlertKind::DnsTunnel`]);
//! - fan-out of denied connections ([`AlertKind::LateralMovement`]);
//! - inference abuse per consumer: rate bursts, near-duplicate requests, repeated
//!   prompt-injection hits ([`AlertKind::InferenceAbuse`]).
//!
//! This crate does no I/O: the caller feeds [`Detector::observe`] events in time order,
//! calls [`Detector::finish`] at the end, and may persist baselines with
//! [`Detector::save`] / [`Detector::load`]. Thresholds live in [`DetectConfig`].

mod book;
mod config;
mod dnstunnel;
mod inference;
mod lateral;
mod newdest;
#[cfg(feature = "test-util")]
pub mod tracegen;
mod util;
mod volume;

use std::collections::HashMap;
use std::net::IpAddr;

use palisade_events::{EndpointKind, Event, EventBody, FlowState, Verdict};
use serde::{Deserialize, Serialize};

pub use config::{
    DetectConfig, DnsTunnelConfig, EgressVolumeConfig, InferenceAbuseConfig, LateralMovementConfig,
    NewDestinationConfig,
};
pub use palisade_events::AlertKind;

use book::AlertBook;
use util::{has_suffix, normalize_name, workload_of};

/// Why a configuration or saved state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The configuration is not valid JSON or has unknown fields.
    #[error("invalid detector configuration: {0}")]
    Config(#[source] serde_json::Error),
    /// The configuration has out-of-range values (all of them listed).
    #[error("invalid detector configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// Saved baselines that do not parse.
    #[error("invalid saved detector state: {0}")]
    State(#[source] serde_json::Error),
    /// Saved baselines of another format version.
    #[error("saved detector state has version {found}, expected {expected}")]
    StateVersion {
        /// Version in the saved state.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
}

const STATE_VERSION: u32 = 1;
const SECOND: i64 = 1_000_000;
const MAX_IP_NAMES: usize = 200_000;
const SWEEP_EVERY: i64 = 10 * SECOND;

/// Everything the detectors remember: baselines, windows, pending alerts.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    /// Latest event time seen (microseconds).
    now: i64,
    last_sweep: i64,
    /// First event time of each workload and `consumer:<name>`.
    first_seen: HashMap<String, i64>,
    /// Latest event time of each of them (absent: its first), for eviction.
    #[serde(default)]
    last_seen: HashMap<String, i64>,
    /// Workloads and consumers evicted so far (`maxSubjects`).
    #[serde(default)]
    evicted: u64,
    /// Address → name, from DNS answers, so flows to an address count for its name.
    ip_names: HashMap<IpAddr, String>,
    book: AlertBook,
    new_destination: newdest::State,
    egress_volume: volume::State,
    dns_tunnel: dnstunnel::State,
    lateral: lateral::State,
    inference: inference::State,
}

/// The streaming detectors. Feed events in time order with [`Detector::observe`].
#[derive(Debug)]
pub struct Detector {
    cfg: DetectConfig,
    state: State,
}

/// What detectors get to see besides the event: configuration, the alert book, time.
pub(crate) struct Ctx<'a> {
    pub(crate) cfg: &'a DetectConfig,
    pub(crate) book: &'a mut AlertBook,
    /// Event time, microseconds (never earlier than an event seen before).
    pub(crate) now: i64,
}

impl<'a> Ctx<'a> {
    /// The configuration, borrowed for as long as the context's.
    pub(crate) fn cfg(&self) -> &'a DetectConfig {
        self.cfg
    }

    pub(crate) fn signal(&mut self, s: book::Signal) -> bool {
        self.book.signal(s, self.cfg.max_evidence)
    }
}

impl Detector {
    /// Detectors with empty baselines.
    pub fn new(cfg: DetectConfig) -> Self {
        Detector {
            cfg,
            state: State {
                version: STATE_VERSION,
                now: i64::MIN,
                ..State::default()
            },
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// The baselines, windows and pending alerts as a JSON string.
    pub fn save(&self) -> String {
        serde_json::to_string(&self.state).unwrap_or_default()
    }

    /// Detectors that continue from [`Detector::save`]d state, with `cfg` as thresholds.
    pub fn load(cfg: DetectConfig, saved: &str) -> Result<Self, DetectError> {
        let state: State = serde_json::from_str(saved).map_err(DetectError::State)?;
        if state.version != STATE_VERSION {
            return Err(DetectError::StateVersion {
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        Ok(Detector { cfg, state })
    }

    /// Looks at one event; returns the alerts that became due (possibly about earlier
    /// events). Events older than the newest seen are treated as happening now. `alert`
    /// events are ignored.
    pub fn observe(&mut self, e: &Event) -> Vec<Event> {
        if matches!(e.body, EventBody::Alert(_)) {
            return Vec::new();
        }
        let now = e.time.as_micros().max(self.state.now);
        self.state.now = now;
        if self.state.last_sweep == 0 || now >= self.state.last_sweep + SWEEP_EVERY {
            self.state.last_sweep = now;
            let mut ctx = Ctx {
                cfg: &self.cfg,
                book: &mut self.state.book,
                now,
            };
            self.state.egress_volume.sweep(&mut ctx);
            self.state.inference.sweep(&mut ctx);
            self.state.dns_tunnel.sweep(&mut ctx);
            self.state.lateral.sweep(&mut ctx);
        }
        self.dispatch(e, now);
        self.state.book.due(now, self.cfg.alert_hold_secs)
    }

    /// Ends the stream: closes open buckets and emits every pending alert.
    pub fn finish(&mut self) -> Vec<Event> {
        let now = self.state.now;
        let mut ctx = Ctx {
            cfg: &self.cfg,
            book: &mut self.state.book,
            now,
        };
        self.state.egress_volume.close_all(&mut ctx);
        self.state.inference.close_all(&mut ctx);
        self.state.book.flush(self.cfg.alert_hold_secs)
    }

    /// Workloads and consumers evicted so far because there were more than `maxSubjects`
    /// (the caller logs or counts the increase).
    pub fn evicted(&self) -> u64 {
        self.state.evicted
    }

    fn learn_until(&mut self, key: &str, now: i64) -> i64 {
        if !self.state.first_seen.contains_key(key)
            && self.state.first_seen.len() >= self.cfg.max_subjects
        {
            self.evict_quietest();
        }
        let first = *self.state.first_seen.entry(key.to_string()).or_insert(now);
        match self.state.last_seen.get_mut(key) {
            Some(t) => *t = now,
            None => {
                self.state.last_seen.insert(key.to_string(), now);
            }
        }
        first + self.cfg.learning_window_secs * SECOND
    }

    /// Pods and clients decide how many workloads and consumers there are: past
    /// `maxSubjects`, the tenth that was quiet longest (ties by name) is forgotten by every
    /// detector, so a subject seen again starts a new learning window.
    fn evict_quietest(&mut self) {
        let st = &mut self.state;
        let mut by_quiet: Vec<(i64, &String)> = st
            .first_seen
            .iter()
            .map(|(k, first)| (st.last_seen.get(k).copied().unwrap_or(*first), k))
            .collect();
        let n = (self.cfg.max_subjects / 10).max(1).min(by_quiet.len());
        if n == 0 {
            return;
        }
        by_quiet.select_nth_unstable(n - 1);
        let gone: std::collections::HashSet<String> =
            by_quiet[..n].iter().map(|(_, k)| (*k).clone()).collect();
        for k in &gone {
            st.first_seen.remove(k);
            st.last_seen.remove(k);
        }
        st.new_destination.forget(&gone);
        st.egress_volume.forget(&gone);
        st.dns_tunnel.forget(&gone);
        st.lateral.forget(&gone);
        st.inference.forget(&gone);
        st.evicted += gone.len() as u64;
    }

    fn is_internal(&self, name: &str) -> bool {
        !name.contains('.')
            || self
                .cfg
                .internal_suffixes
                .iter()
                .any(|s| has_suffix(name, s))
    }

    fn dispatch(&mut self, e: &Event, now: i64) {
        if let EventBody::Http(h) = &e.body {
            if let Some(consumer) = h.consumer.as_deref() {
                if self.cfg.inference_abuse.enabled {
                    let key = format!("consumer:{consumer}");
                    let learn_until = self.learn_until(&key, now);
                    let mut ctx = Ctx {
                        cfg: &self.cfg,
                        book: &mut self.state.book,
                        now,
                    };
                    self.state
                        .inference
                        .observe(&mut ctx, &key, learn_until, e, h);
                }
                return;
            }
        }
        let Some(workload) = e.source.as_ref().and_then(workload_of) else {
            return;
        };
        let learn_until = self.learn_until(&workload, now);
        match &e.body {
            EventBody::Dns(d) => self.on_dns(e, d, &workload, learn_until, now),
            EventBody::Flow(f) => self.on_flow(e, f, &workload, learn_until, now),
            EventBody::Http(h) => self.on_http(e, h, &workload, learn_until, now),
            EventBody::Alert(_) => {}
        }
    }

    fn on_dns(
        &mut self,
        e: &Event,
        d: &palisade_events::DnsInfo,
        workload: &str,
        learn_until: i64,
        now: i64,
    ) {
        let name = normalize_name(&d.query);
        if name.is_empty() || self.is_internal(&name) {
            return;
        }
        let noerror = d
            .rcode
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case("NOERROR"));
        if noerror {
            for a in d.answers.iter().flatten() {
                if let Ok(ip) = a.trim().parse::<IpAddr>() {
                    if self.state.ip_names.len() >= MAX_IP_NAMES {
                        self.state.ip_names.clear();
                    }
                    self.state.ip_names.insert(ip, name.clone());
                }
            }
        }
        let shape = util::name_shape(d, &name);
        let tunnel_like = dnstunnel::is_suspicious(&self.cfg.dns_tunnel, &shape, &name);
        let mut ctx = Ctx {
            cfg: &self.cfg,
            book: &mut self.state.book,
            now,
        };
        if self.cfg.dns_tunnel.enabled {
            self.state
                .dns_tunnel
                .observe(&mut ctx, workload, e, d, &name, tunnel_like);
        }
        if self.cfg.new_destination.enabled && noerror && !tunnel_like {
            self.state
                .new_destination
                .observe(&mut ctx, workload, learn_until, &name, true, &e.id);
        }
    }

    fn on_flow(
        &mut self,
        e: &Event,
        f: &palisade_events::FlowInfo,
        workload: &str,
        learn_until: i64,
        now: i64,
    ) {
        let denied = f.state == FlowState::Denied || e.verdict == Some(Verdict::Deny);
        let Some(dst) = e.destination.as_ref() else {
            return;
        };
        if denied {
            if self.cfg.lateral_movement.enabled && lateral::is_internal(dst) {
                let mut ctx = Ctx {
                    cfg: &self.cfg,
                    book: &mut self.state.book,
                    now,
                };
                self.state
                    .lateral
                    .observe(&mut ctx, workload, learn_until, e, dst);
            }
            return;
        }
        if !matches!(dst.kind, EndpointKind::External | EndpointKind::Fqdn) {
            return;
        }
        let (dest, is_name) = match (&dst.fqdn, dst.ip) {
            (Some(n), _) => (normalize_name(n), true),
            (None, Some(ip)) => match self.state.ip_names.get(&ip) {
                Some(n) => (n.clone(), true),
                None => (ip.to_string(), false),
            },
            (None, None) => return,
        };
        let sent = f.bytes_sent.filter(|_| f.state == FlowState::End);
        let reached = Reached {
            workload,
            learn_until,
            now,
        };
        self.on_destination(&reached, &dest, is_name, sent, &e.id);
    }

    fn on_http(
        &mut self,
        e: &Event,
        h: &palisade_events::HttpInfo,
        workload: &str,
        learn_until: i64,
        now: i64,
    ) {
        if e.verdict == Some(Verdict::Deny) {
            return;
        }
        let dst = e.destination.as_ref();
        if dst.is_some_and(|d| matches!(d.kind, EndpointKind::Pod | EndpointKind::Node)) {
            return;
        }
        let dest = h
            .host
            .as_deref()
            .map(normalize_name)
            .or_else(|| dst.and_then(|d| d.fqdn.as_deref()).map(normalize_name))
            .or_else(|| dst.and_then(|d| d.ip).map(|ip| ip.to_string()));
        let Some(dest) = dest.filter(|d| !d.is_empty()) else {
            return;
        };
        let is_name = dest.parse::<IpAddr>().is_err();
        let reached = Reached {
            workload,
            learn_until,
            now,
        };
        self.on_destination(&reached, &dest, is_name, h.bytes_in, &e.id);
    }

    /// A workload reached an outside destination (a flow or an HTTP request): the
    /// new-destination detector sees it and the bytes it sent, when known, count towards
    /// its egress volume. Names inside the cluster are left out.
    fn on_destination(
        &mut self,
        at: &Reached<'_>,
        dest: &str,
        is_name: bool,
        sent: Option<u64>,
        event_id: &str,
    ) {
        if is_name && self.is_internal(dest) {
            return;
        }
        let mut ctx = Ctx {
            cfg: &self.cfg,
            book: &mut self.state.book,
            now: at.now,
        };
        if self.cfg.new_destination.enabled {
            self.state.new_destination.observe(
                &mut ctx,
                at.workload,
                at.learn_until,
                dest,
                is_name,
                event_id,
            );
        }
        if let Some(bytes) = sent.filter(|_| self.cfg.egress_volume.enabled) {
            self.state.egress_volume.add(
                &mut ctx,
                at.workload,
                dest,
                at.learn_until,
                bytes,
                event_id,
            );
        }
    }
}

/// Who reached a destination, and when.
struct Reached<'a> {
    workload: &'a str,
    learn_until: i64,
    now: i64,
}
