//! Recorded events as questions to the engine: the [`Flow`] an event describes, and the
//! verdict the engine gives it.

use palisade_events::{EndpointKind, Event, EventBody, FlowState, Verdict as EventVerdict};
use palisade_policy::{Action, Endpoint, Engine, Flow, HttpRequest, Protocol};
use std::collections::HashMap;
use std::net::IpAddr;

use crate::identity::workload_key;

/// Why an event could not be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unevaluable {
    /// Not a flow or HTTP event (or a flow's `end`, which repeats its `new`).
    NotAConnection,
    /// No source or destination, or no address, name or pod to evaluate.
    MissingEndpoint,
    /// No destination port.
    MissingPort,
}

/// The names pods resolved: per workload, which name each answered address belongs to.
/// A flow to such an address is a connection to the name, as the data plane sees it (the
/// DNS proxy opens answered addresses for the name's rules).
#[derive(Debug, Clone, Default)]
pub struct NameBook {
    names: HashMap<(String, IpAddr), String>,
}

impl NameBook {
    /// Learns from the allowed DNS answers among `events`.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> NameBook {
        let mut book = NameBook::default();
        for e in events {
            book.learn(e);
        }
        book
    }

    /// Learns from one event (ignored unless an allowed DNS answer from a pod).
    pub fn learn(&mut self, e: &Event) {
        let EventBody::Dns(d) = &e.body else { return };
        if e.verdict == Some(EventVerdict::Deny) {
            return;
        }
        let Some(w) = e.source.as_ref().and_then(workload_key) else {
            return;
        };
        let name = d.query.trim_end_matches('.').to_ascii_lowercase();
        for a in d.answers.iter().flatten() {
            if let Some(ip) = a
                .split_whitespace()
                .last()
                .and_then(|s| s.parse::<IpAddr>().ok())
            {
                self.names.insert((w.clone(), ip), name.clone());
            }
        }
    }

    /// The name `workload` resolved to `ip`, if any.
    pub fn name(&self, workload: &str, ip: IpAddr) -> Option<&str> {
        self.names
            .get(&(workload.to_string(), ip))
            .map(String::as_str)
    }
}

/// The engine's endpoint for an event endpoint.
fn endpoint<'a>(
    engine: &Engine,
    ep: &'a palisade_events::Endpoint,
    host: Option<&'a str>,
) -> Option<Endpoint<'a>> {
    if ep.kind == EndpointKind::Pod {
        if let (Some(ns), Some(name)) = (&ep.namespace, &ep.name) {
            if let Some(id) = engine.pod_id(ns, name) {
                return Some(Endpoint::Pod(id));
            }
        }
    }
    if let Some(name) = ep.fqdn.as_deref().or(host) {
        if ep.kind != EndpointKind::Pod {
            return Some(Endpoint::Fqdn { name, ip: ep.ip });
        }
    }
    ep.ip.map(|ip| engine.endpoint_for_ip(ip))
}

fn protocol(p: Option<palisade_events::Protocol>) -> Protocol {
    match p {
        Some(palisade_events::Protocol::Udp) => Protocol::UDP,
        Some(palisade_events::Protocol::Sctp) => Protocol::SCTP,
        _ => Protocol::TCP,
    }
}

/// The host of an HTTP event without a port.
fn http_host(e: &Event) -> Option<&str> {
    let EventBody::Http(h) = &e.body else {
        return None;
    };
    let host = h.host.as_deref()?;
    Some(match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host,
    })
}

/// Evaluates the connection (or request) an event records with `engine`; an address the
/// source pod resolved (per `names`) is evaluated as the name.
pub fn evaluate(
    engine: &Engine,
    e: &Event,
    names: &NameBook,
) -> Result<palisade_policy::Verdict, Unevaluable> {
    let http = match &e.body {
        EventBody::Flow(f) if f.state == FlowState::End => return Err(Unevaluable::NotAConnection),
        EventBody::Flow(_) => None,
        EventBody::Http(h) => Some(h),
        _ => return Err(Unevaluable::NotAConnection),
    };
    let (Some(s), Some(d)) = (&e.source, &e.destination) else {
        return Err(Unevaluable::MissingEndpoint);
    };
    let resolved = match (s.kind, d.kind, d.fqdn.as_deref(), d.ip) {
        (EndpointKind::Pod, EndpointKind::External | EndpointKind::Node, None, Some(ip)) => {
            workload_key(s).and_then(|w| names.name(&w, ip))
        }
        _ => None,
    };
    let host = http_host(e).or(resolved);
    let src = endpoint(engine, s, None).ok_or(Unevaluable::MissingEndpoint)?;
    let dst = endpoint(engine, d, host).ok_or(Unevaluable::MissingEndpoint)?;
    let port = d
        .port
        .or_else(|| {
            http.map(|h| match h.tls {
                Some(palisade_events::TlsMode::None) => 80,
                _ => 443,
            })
        })
        .ok_or(Unevaluable::MissingPort)?;
    let request = http.and_then(|h| {
        Some(HttpRequest {
            method: h.method.as_deref()?,
            path: h.path.as_deref().unwrap_or("/"),
            host,
            headers: &[],
        })
    });
    Ok(engine.verdict(&Flow {
        src,
        dst,
        port,
        protocol: protocol(e.protocol),
        http: request,
    }))
}

/// The event schema's verdict for an engine action.
pub fn event_verdict(a: Action) -> EventVerdict {
    match a {
        Action::Allow => EventVerdict::Allow,
        Action::Deny => EventVerdict::Deny,
        Action::Audit => EventVerdict::Audit,
    }
}

/// `TCP`, `UDP` or `SCTP` (TCP when unknown).
pub fn protocol_name(p: Option<palisade_events::Protocol>) -> &'static str {
    protocol(p).as_str()
}
