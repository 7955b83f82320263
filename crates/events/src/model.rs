//! The event envelope: common fields, endpoints, the deciding policy, and the body.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::details::{AlertInfo, DnsInfo, FlowInfo, HttpInfo};
use crate::time::Timestamp;
use crate::EventError;

/// The `type` field: which per-type object the event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A connection (`flow` object).
    Flow,
    /// A DNS query (`dns` object).
    Dns,
    /// An HTTP exchange through a gateway (`http` object).
    Http,
    /// A detector finding (`alert` object).
    Alert,
}

impl EventType {
    /// All types, in schema order.
    pub const ALL: [EventType; 4] = [Self::Flow, Self::Dns, Self::Http, Self::Alert];

    /// The wire name: `flow`, `dns`, `http` or `alert`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flow => "flow",
            Self::Dns => "dns",
            Self::Http => "http",
            Self::Alert => "alert",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = EventError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| EventError::UnknownValue {
                field: "type",
                value: s.chars().take(64).collect(),
            })
    }
}

/// The outcome of policy for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// Allowed, but an Audit-mode policy would have denied it.
    Audit,
}

impl Verdict {
    /// The wire name: `allow`, `deny` or `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = EventError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Allow, Self::Deny, Self::Audit]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| EventError::UnknownValue {
                field: "verdict",
                value: s.chars().take(64).collect(),
            })
    }
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// What an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A pod in the cluster.
    Pod,
    /// A node (host network).
    Node,
    /// An address outside the cluster.
    External,
    /// A name outside the cluster, address unknown.
    Fqdn,
}

impl EndpointKind {
    /// The wire name: `pod`, `node`, `external` or `fqdn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Node => "node",
            Self::External => "external",
            Self::Fqdn => "fqdn",
        }
    }
}

/// The `source` or `destination` of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// `pod`, `node`, `external` or `fqdn`.
    pub kind: EndpointKind,
    /// Pod namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod (or node) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `namespace/<owner>`: what baselines key on, stable across pod restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Port (destination port for destinations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// Pod labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Pod service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

impl Endpoint {
    /// An endpoint of `kind` with every other field unknown.
    pub fn new(kind: EndpointKind) -> Self {
        Endpoint {
            kind,
            namespace: None,
            name: None,
            workload: None,
            ip: None,
            port: None,
            fqdn: None,
            labels: BTreeMap::new(),
            service_account: None,
        }
    }

    /// A pod endpoint with its namespace and name.
    pub fn pod(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Endpoint {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Self::new(EndpointKind::Pod)
        }
    }

    /// An external endpoint at `ip`.
    pub fn external(ip: IpAddr) -> Self {
        Endpoint {
            ip: Some(ip),
            ..Self::new(EndpointKind::External)
        }
    }

    /// How people name it: `namespace/name` for pods, else the fqdn, else the ip, else the
    /// name, else the kind. The store indexes this value.
    pub fn display_name(&self) -> String {
        if let (EndpointKind::Pod, Some(ns), Some(name)) = (self.kind, &self.namespace, &self.name)
        {
            return format!("{ns}/{name}");
        }
        if let Some(fqdn) = &self.fqdn {
            return fqdn.clone();
        }
        if let Some(ip) = self.ip {
            return ip.to_string();
        }
        match &self.name {
            Some(name) => name.clone(),
            None => self.kind.as_str().to_string(),
        }
    }
}

/// The `policy` field: the policy and rule that decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// Resource kind, e.g. `SecurityPolicy`.
    pub kind: String,
    /// Namespace; absent for cluster-scoped policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Resource name.
    pub name: String,
    /// Rule path inside the policy, e.g. `egress[0]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `admin`, `namespace`, `baseline` or `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Policy mode, e.g. `Enforce`, `Audit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// For a global policy (federation): the revision it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation_revision: Option<u64>,
}

/// The per-type object; its variant is the event's `type`.
// `http` events, the largest, are also the most frequent (one per gateway request): boxing
// them would cost an allocation each to save memory on the rarer kinds.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// `type: flow`.
    Flow(FlowInfo),
    /// `type: dns`.
    Dns(DnsInfo),
    /// `type: http`.
    Http(HttpInfo),
    /// `type: alert`.
    Alert(AlertInfo),
}

impl EventBody {
    /// The `type` this body implies.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Flow(_) => EventType::Flow,
            Self::Dns(_) => EventType::Dns,
            Self::Http(_) => EventType::Http,
            Self::Alert(_) => EventType::Alert,
        }
    }
}

/// One security event, as in EVENTS.md. The `type` field and the single per-type object
/// both come from [`Event::body`], so they cannot disagree.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawEvent")]
pub struct Event {
    /// Unique id, sortable by time (a ULID).
    pub id: String,
    /// When it was observed.
    pub time: Timestamp,
    /// Cluster name.
    pub cluster: Option<String>,
    /// Node name.
    pub node: Option<String>,
    /// Who initiated.
    pub source: Option<Endpoint>,
    /// Who was contacted.
    pub destination: Option<Endpoint>,
    /// Transport protocol.
    pub protocol: Option<Protocol>,
    /// Outcome of policy.
    pub verdict: Option<Verdict>,
    /// The deciding policy; `None` for default-allow.
    pub policy: Option<PolicyRef>,
    /// The `flow`, `dns`, `http` or `alert` object.
    pub body: EventBody,
}

impl Event {
    /// An event with only the id, time and body set.
    pub fn new(id: impl Into<String>, time: Timestamp, body: EventBody) -> Self {
        Event {
            id: id.into(),
            time,
            cluster: None,
            node: None,
            source: None,
            destination: None,
            protocol: None,
            verdict: None,
            policy: None,
            body,
        }
    }

    /// The `type` field.
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }

    /// Parses one JSON line (surrounding whitespace allowed). Unknown fields are ignored,
    /// so readers keep working when the schema gains fields. Never panics.
    pub fn from_json_line(line: &str) -> Result<Event, EventError> {
        let line = line.trim();
        if line.is_empty() {
            return Err(EventError::Empty);
        }
        let raw: RawEvent = serde_json::from_str(line)?;
        Event::try_from(raw)
    }

    /// The event as one line of JSON, without the trailing newline.
    ///
    /// Written by the crate's own compact writer, byte-identical to `serde_json`'s output.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(768);
        // Cannot fail: every map key is a string. The writer writes UTF-8 only.
        match crate::json::write(&mut out, self) {
            Ok(()) => String::from_utf8(out).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Appends the event as JSON plus `\n` to `out` (nothing if it cannot be written).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        out.reserve(768);
        // Cannot fail: every map key is a string. On error nothing is appended.
        if crate::json::write(out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (mut flow, mut dns, mut http, mut alert) = (None, None, None, None);
        match &self.body {
            EventBody::Flow(b) => flow = Some(b),
            EventBody::Dns(b) => dns = Some(b),
            EventBody::Http(b) => http = Some(b),
            EventBody::Alert(b) => alert = Some(b),
        }
        RawEventRef {
            id: &self.id,
            time: self.time,
            event_type: self.event_type(),
            cluster: self.cluster.as_deref(),
            node: self.node.as_deref(),
            source: self.source.as_ref(),
            destination: self.destination.as_ref(),
            protocol: self.protocol,
            verdict: self.verdict,
            policy: self.policy.as_ref(),
            flow,
            dns,
            http,
            alert,
        }
        .serialize(serializer)
    }
}

/// Wire shape for writing, borrowing from an [`Event`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RawEventRef<'a> {
    id: &'a str,
    time: Timestamp,
    #[serde(rename = "type")]
    event_type: EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<&'a Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a PolicyRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a FlowInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<&'a DnsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<&'a HttpInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<&'a AlertInfo>,
}

/// Wire shape for reading; checked into an [`Event`] by `TryFrom`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    id: String,
    time: Timestamp,
    #[serde(rename = "type")]
    event_type: EventType,
    cluster: Option<String>,
    node: Option<String>,
    source: Option<Endpoint>,
    destination: Option<Endpoint>,
    protocol: Option<Protocol>,
    verdict: Option<Verdict>,
    policy: Option<PolicyRef>,
    flow: Option<FlowInfo>,
    dns: Option<DnsInfo>,
    http: Option<HttpInfo>,
    alert: Option<AlertInfo>,
}

impl TryFrom<RawEvent> for Event {
    type Error = EventError;

    fn try_from(raw: RawEvent) -> Result<Self, Self::Error> {
        let event_type = raw.event_type;
        let present = [
            (EventType::Flow, raw.flow.is_some()),
            (EventType::Dns, raw.dns.is_some()),
            (EventType::Http, raw.http.is_some()),
            (EventType::Alert, raw.alert.is_some()),
        ];
        if let Some((extra, _)) = present.iter().find(|(t, p)| *p && *t != event_type) {
            return Err(EventError::ExtraBody {
                event_type,
                extra: *extra,
            });
        }
        let body = match event_type {
            EventType::Flow => raw.flow.map(EventBody::Flow),
            EventType::Dns => raw.dns.map(EventBody::Dns),
            EventType::Http => raw.http.map(EventBody::Http),
            EventType::Alert => raw.alert.map(EventBody::Alert),
        }
        .ok_or(EventError::MissingBody { event_type })?;
        Ok(Event {
            id: raw.id,
            time: raw.time,
            cluster: raw.cluster,
            node: raw.node,
            source: raw.source,
            destination: raw.destination,
            protocol: raw.protocol,
            verdict: raw.verdict,
            policy: raw.policy,
            body,
        })
    }
}
