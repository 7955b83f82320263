//! One `http` event per request in the shared schema (EVENTS.md): the consumer, route,
//! model, prompt and completion tokens, latency, WAF rule ids and anomaly score, guard
//! score, output-filter hits and the verdict; and one per client certificate refused (a
//! TLS handshake, or an open connection whose certificate was revoked).

use palisade_events::{
    AiInfo, Detection, DetectionAction, Endpoint, EndpointKind, Event, EventBody, HttpInfo,
    PolicyRef, Protocol, Timestamp, TlsMode, Verdict,
};
use std::net::SocketAddr;
use std::time::Duration;

/// Where the gateway runs.
#[derive(Debug, Clone, Default)]
pub struct EventOrigin {
    /// Cluster name.
    pub cluster: Option<String>,
    /// Node name.
    pub node: Option<String>,
}

/// What one exchange recorded.
#[derive(Debug, Clone, Default)]
pub struct ExchangeLog {
    /// Client address.
    pub client: Option<SocketAddr>,
    /// Method.
    pub method: String,
    /// Host asked for.
    pub host: String,
    /// Path without the query.
    pub path: String,
    /// Status sent.
    pub status: u16,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Start to end of response.
    pub duration: Duration,
    /// Authenticated consumer.
    pub consumer: Option<String>,
    /// Route name.
    pub route: Option<String>,
    /// Backend `host:port`.
    pub backend: Option<String>,
    /// Whether TLS was terminated here.
    pub tls: bool,
    /// Model asked for.
    pub model: Option<String>,
    /// API operation.
    pub operation: Option<String>,
    /// Prompt tokens (backend's usage, else counted).
    pub prompt_tokens: Option<u64>,
    /// Completion tokens (backend's usage, else counted).
    pub completion_tokens: Option<u64>,
    /// Detections.
    pub detections: Vec<Detection>,
    /// Refused (by auth, limits or a blocking detection).
    pub denied: bool,
    /// Audit mode and something would have been blocked.
    pub audit: bool,
    /// Refusal reason code.
    pub reason: Option<String>,
    /// The HTTP version the client spoke.
    pub version: Option<palisade_events::HttpVersion>,
    /// The client-certificate identity that authenticated the consumer (mutual TLS).
    pub client_identity: Option<String>,
}

/// A detection entry.
pub fn detection(
    detector: &str,
    action: DetectionAction,
    score: Option<f64>,
    rules: Vec<String>,
) -> Detection {
    Detection {
        detector: detector.to_string(),
        action,
        score,
        rules,
    }
}

/// The event for one exchange.
pub fn http_event(origin: &EventOrigin, log: ExchangeLog) -> Event {
    let ai = (log.model.is_some() || log.operation.is_some()).then(|| AiInfo {
        provider: Some(
            if log.operation.as_deref() == Some("messages") {
                "anthropic"
            } else {
                "openai"
            }
            .into(),
        ),
        model: log.model.clone(),
        operation: log.operation.clone(),
        prompt_tokens: log.prompt_tokens,
        completion_tokens: log.completion_tokens,
        ..AiInfo::default()
    });
    let mut e = Event::new(
        palisade_events::new_id(),
        Timestamp::now(),
        EventBody::Http(HttpInfo {
            method: Some(log.method),
            host: Some(log.host),
            path: Some(log.path),
            status: Some(log.status),
            bytes_in: Some(log.bytes_in),
            bytes_out: Some(log.bytes_out),
            duration_ms: Some(u64::try_from(log.duration.as_millis()).unwrap_or(u64::MAX)),
            consumer: log.consumer,
            route: log.route,
            tls: Some(if log.tls {
                TlsMode::Intercepted
            } else {
                TlsMode::None
            }),
            version: log.version,
            ai,
            detections: log.detections,
            reason: log.reason.clone(),
            client_certificate: None,
            suppressed: None,
        }),
    );
    e.cluster = origin.cluster.clone();
    e.node = origin.node.clone();
    if let Some(c) = log.client {
        e.source = Some(client_endpoint(c, log.client_identity));
    }
    if let Some(b) = log.backend {
        let mut dst = Endpoint::new(EndpointKind::Fqdn);
        if let Some((h, p)) = b.rsplit_once(':') {
            match h.parse() {
                Ok(ip) => {
                    dst.kind = EndpointKind::External;
                    dst.ip = Some(ip);
                }
                Err(_) => dst.fqdn = Some(h.to_string()),
            }
            dst.port = p.parse().ok();
        }
        e.destination = Some(dst);
    }
    e.protocol = Some(Protocol::Tcp);
    e.verdict = Some(match (log.denied, log.audit) {
        (true, _) => Verdict::Deny,
        (false, true) => Verdict::Audit,
        (false, false) => Verdict::Allow,
    });
    e
}

/// The client's endpoint: its address and, when a certificate named it, that identity.
fn client_endpoint(c: SocketAddr, identity: Option<String>) -> Endpoint {
    let mut src = Endpoint::new(EndpointKind::External);
    src.ip = Some(c.ip());
    src.port = Some(c.port());
    if let Some(id) = identity {
        // A SPIFFE ID of Kubernetes' shape names the namespace and service account.
        let mut parts = id.strip_prefix("spiffe://").map(|p| p.split('/').skip(1));
        if let Some(["ns", ns, "sa", sa]) = parts.as_mut().map(|p| p.collect::<Vec<_>>()).as_deref()
        {
            src.namespace = Some(ns.to_string());
            src.service_account = Some(sa.to_string());
        }
        src.name = Some(id);
    }
    src
}

/// A client certificate refused: in a TLS handshake, or later on an open connection.
#[derive(Debug, Clone)]
pub struct CertificateRefusal {
    /// Client address.
    pub client: SocketAddr,
    /// `namespace/name` of the gateway.
    pub gateway: String,
    /// The server name the client asked for (SNI).
    pub host: Option<String>,
    /// Reason code, e.g. `client_certificate_revoked`.
    pub reason: &'static str,
    /// The certificate presented, if any.
    pub certificate: Option<Box<palisade_events::ClientCertificate>>,
    /// The first identity it names (URI SAN, DNS SAN, subject CN).
    pub identity: Option<String>,
    /// The HTTP version of a connection closed after serving.
    pub version: Option<palisade_events::HttpVersion>,
    /// How long a connection closed after serving was open.
    pub duration: Option<Duration>,
    /// Refusal events of this gateway suppressed (rate limit) since its previous one.
    pub suppressed: u64,
}

/// The event for a refused client certificate: an `http` event with verdict `deny`, the
/// reason, the certificate, and the gateway as the deciding resource (`policy`).
pub fn certificate_event(origin: &EventOrigin, r: CertificateRefusal) -> Event {
    let mut e = Event::new(
        palisade_events::new_id(),
        Timestamp::now(),
        EventBody::Http(HttpInfo {
            host: r.host,
            tls: Some(TlsMode::Intercepted),
            version: r.version,
            duration_ms: r
                .duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            reason: Some(r.reason.to_string()),
            client_certificate: r.certificate,
            suppressed: (r.suppressed > 0).then_some(r.suppressed),
            ..HttpInfo::default()
        }),
    );
    e.cluster = origin.cluster.clone();
    e.node = origin.node.clone();
    e.source = Some(client_endpoint(r.client, r.identity));
    e.protocol = Some(Protocol::Tcp);
    e.verdict = Some(Verdict::Deny);
    let (namespace, name) = match r.gateway.split_once('/') {
        Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
        None => (None, r.gateway),
    };
    e.policy = Some(PolicyRef {
        kind: "AIGateway".into(),
        namespace,
        name,
        rule: Some("tls".into()),
        stage: None,
        mode: None,
        federation_revision: None,
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ai_exchange_in_the_schema() {
        let log = ExchangeLog {
            client: Some("10.1.2.3:5555".parse().unwrap()),
            method: "POST".into(),
            host: "llm.test".into(),
            path: "/v1/chat/completions".into(),
            status: 403,
            consumer: Some("alice".into()),
            route: Some("chat".into()),
            backend: Some("127.0.0.1:8000".into()),
            model: Some("gpt-4o-mini".into()),
            operation: Some("chat".into()),
            prompt_tokens: Some(12),
            detections: vec![detection(
                "crs",
                DetectionAction::Block,
                Some(5.0),
                vec!["942100".into()],
            )],
            denied: true,
            ..Default::default()
        };
        let json = http_event(&EventOrigin::default(), log).to_json();
        for want in [
            r#""type":"http""#,
            r#""verdict":"deny""#,
            r#""consumer":"alice""#,
            r#""route":"chat""#,
            r#""ai":{"provider":"openai","model":"gpt-4o-mini","operation":"chat","promptTokens":12}"#,
            r#""detections":[{"detector":"crs","action":"block","score":5.0,"rules":["942100"]}]"#,
        ] {
            assert!(json.contains(want), "{want} not in {json}");
        }
        assert!(Event::from_json_line(&json).is_ok());
    }

    #[test]
    fn a_refused_client_certificate_in_the_schema() {
        let r = CertificateRefusal {
            client: "10.1.2.3:5555".parse().unwrap(),
            gateway: "ml/gw".into(),
            host: Some("llm.test".into()),
            reason: "client_certificate_revoked",
            certificate: Some(Box::new(palisade_events::ClientCertificate {
                subject: Some("CN=client".into()),
                issuer: Some("CN=Client CA".into()),
                serial: Some("02".into()),
                names: vec!["spiffe://cluster.local/ns/apps/sa/chat".into()],
            })),
            identity: Some("spiffe://cluster.local/ns/apps/sa/chat".into()),
            version: None,
            duration: None,
            suppressed: 3,
        };
        let json = certificate_event(&EventOrigin::default(), r).to_json();
        for want in [
            r#""type":"http""#,
            r#""verdict":"deny""#,
            r#""policy":{"kind":"AIGateway","namespace":"ml","name":"gw","rule":"tls"}"#,
            r#""namespace":"apps""#,
            r#""serviceAccount":"chat""#,
            r#""reason":"client_certificate_revoked","clientCertificate":{"subject":"CN=client","issuer":"CN=Client CA","serial":"02","names":["spiffe://cluster.local/ns/apps/sa/chat"]},"suppressed":3"#,
        ] {
            assert!(json.contains(want), "{want} not in {json}");
        }
        assert!(!json.contains(r#""status""#), "{json}");
        assert!(Event::from_json_line(&json).is_ok());
    }
}
