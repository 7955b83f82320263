//! `http` events in the shared schema (EVENTS.md), one per request or tunnel.

use std::net::IpAddr;
use std::time::Duration;

use palisade_events::from_policy::{pod_endpoint, verdict};
use palisade_events::{
    Endpoint, EndpointKind, Event, EventBody, HttpInfo, HttpVersion, PolicyRef, Protocol,
    Timestamp, TlsMode,
};
use palisade_policy::{Engine, PodId};

/// Reason code: the upstream sent no answer head within the upstream idle timeout (`504`).
pub const UPSTREAM_TIMEOUT: &str = "upstream-timeout";

/// Reason code: the upstream went silent in the middle of its answer's body, which was cut.
pub const UPSTREAM_IDLE_TIMEOUT: &str = "upstream-idle-timeout";

/// The facts one `http` event records.
#[derive(Debug, Clone)]
pub struct HttpLog {
    /// The client's address.
    pub client: IpAddr,
    /// The client pod, when known.
    pub pod: Option<PodId>,
    /// Destination name (or IP literal).
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// The upstream address connected to, when one was.
    pub ip: Option<IpAddr>,
    /// Request method (`CONNECT` for tunnels).
    pub method: String,
    /// Path without the query, when visible.
    pub path: Option<String>,
    /// Status sent to the client.
    pub status: u16,
    /// Request body bytes (tunnels: client to server).
    pub bytes_in: u64,
    /// Response body bytes (tunnels: server to client).
    pub bytes_out: u64,
    /// Request start to end of response (or tunnel).
    pub duration: Duration,
    /// Whether policy allowed it.
    pub allowed: bool,
    /// Allowed, but an Audit-mode policy would have denied it.
    pub audit: bool,
    /// The deciding rule.
    pub policy: Option<palisade_policy::PolicyRef>,
    /// How TLS was handled.
    pub tls: TlsMode,
    /// The HTTP version the client spoke (`HTTP/1.1`, `HTTP/2`), when it spoke HTTP.
    pub version: Option<HttpVersion>,
    /// What the content detectors found.
    pub detections: Vec<palisade_events::Detection>,
    /// Set when the request was an AI API call.
    pub ai: Option<palisade_events::AiInfo>,
    /// The reason code of a refusal by the gateway (`DenyReason::code`), or of an answer
    /// the gateway cut off ([`UPSTREAM_TIMEOUT`], [`UPSTREAM_IDLE_TIMEOUT`]).
    pub reason: Option<&'static str>,
}

/// Where the gateway runs, for the events' `cluster` and `node`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Cluster name.
    pub cluster: Option<String>,
    /// Node name.
    pub node: Option<String>,
}

/// The events' name for an HTTP version (none for HTTP/0.9, which the gateway never serves).
pub fn http_version(v: hyper::Version) -> Option<HttpVersion> {
    match v {
        hyper::Version::HTTP_10 => Some(HttpVersion::Http10),
        hyper::Version::HTTP_11 => Some(HttpVersion::Http11),
        hyper::Version::HTTP_2 => Some(HttpVersion::Http2),
        hyper::Version::HTTP_3 => Some(HttpVersion::Http3),
        _ => None,
    }
}

/// The `http` event for one request or tunnel.
pub fn http_event(engine: Option<&Engine>, origin: &Origin, log: HttpLog) -> Event {
    let mut e = Event::new(
        palisade_events::new_id(),
        Timestamp::now(),
        EventBody::Http(HttpInfo {
            method: (!log.method.is_empty()).then_some(log.method),
            host: Some(log.host.clone()),
            path: log.path,
            status: Some(log.status),
            bytes_in: Some(log.bytes_in),
            bytes_out: Some(log.bytes_out),
            duration_ms: Some(u64::try_from(log.duration.as_millis()).unwrap_or(u64::MAX)),
            tls: Some(log.tls),
            version: log.version,
            detections: log.detections,
            ai: log.ai,
            reason: log.reason.map(str::to_string),
            ..HttpInfo::default()
        }),
    );
    e.cluster = origin.cluster.clone();
    e.node = origin.node.clone();
    e.source = Some(pod_endpoint(engine, log.pod, Some(log.client)));
    let mut dst = Endpoint::new(if log.ip.is_some() {
        EndpointKind::External
    } else {
        EndpointKind::Fqdn
    });
    dst.ip = log.ip;
    dst.port = Some(log.port);
    // A name unless it is an IP literal (checked cheaply first: names have letters).
    let maybe_ip = log
        .host
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':' || b == b'[' || b == b']');
    if !maybe_ip || log.host.parse::<IpAddr>().is_err() {
        dst.fqdn = Some(log.host);
    }
    e.destination = Some(dst);
    e.protocol = Some(Protocol::Tcp);
    e.verdict = Some(verdict(log.allowed, log.audit));
    e.policy = log.policy.map(PolicyRef::from);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::{Mode, Stage};

    #[test]
    fn a_denied_request_in_the_schema() {
        let log = HttpLog {
            client: "10.0.0.5".parse().unwrap(),
            pod: None,
            host: "evil.test".into(),
            port: 80,
            ip: None,
            method: "POST".into(),
            path: Some("/upload".into()),
            status: 403,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::from_millis(3),
            allowed: false,
            audit: false,
            policy: Some(palisade_policy::PolicyRef {
                kind: "SecurityPolicy".into(),
                namespace: Some("ml".into()),
                name: "hub".into(),
                rule: "default".into(),
                rule_name: None,
                stage: Stage::Namespace,
                mode: Mode::Enforce,
                federation_revision: None,
            }),
            tls: TlsMode::None,
            version: Some(HttpVersion::Http2),
            reason: Some("fqdn-not-allowed"),
            detections: Vec::new(),
            ai: None,
        };
        let origin = Origin {
            cluster: Some("c1".into()),
            node: None,
        };
        let json = http_event(None, &origin, log).to_json();
        for want in [
            r#""type":"http""#,
            r#""verdict":"deny""#,
            r#""destination":{"kind":"fqdn","port":80,"fqdn":"evil.test"}"#,
            r#""policy":{"kind":"SecurityPolicy","namespace":"ml","name":"hub","rule":"default","stage":"namespace","mode":"Enforce"}"#,
            r#""http":{"method":"POST","host":"evil.test","path":"/upload","status":403,"bytesIn":0,"bytesOut":0,"durationMs":3,"tls":"none","version":"HTTP/2","reason":"fqdn-not-allowed"}"#,
        ] {
            assert!(json.contains(want), "{want} not in {json}");
        }
        assert!(Event::from_json_line(&json).is_ok());
    }
}
