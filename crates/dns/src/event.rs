//! `dns` events in the shared schema (EVENTS.md).

use std::net::IpAddr;

use palisade_events::from_policy::{pod_endpoint, verdict};
use palisade_events::{
    Centi, DnsFeatures, DnsInfo, Endpoint, EndpointKind, Event, EventBody, PolicyRef, Protocol,
    Timestamp,
};
use palisade_policy::{Engine, PodId};

/// Who asked, what, and what came of it: the facts one `dns` event records.
#[derive(Debug, Clone, Default)]
pub struct QueryLog {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The client pod, when the engine knows the address.
    pub pod: Option<PodId>,
    /// The name asked for (normalised).
    pub query: String,
    /// Record type, e.g. `A`.
    pub qtype: String,
    /// Response code sent to the client, e.g. `NOERROR`, `REFUSED`.
    pub rcode: String,
    /// Answer records as text; `None` when the upstream was not asked.
    pub answers: Option<Vec<String>>,
    /// Smallest TTL of the answers.
    pub ttl: Option<u32>,
    /// Time from query to reply.
    pub latency_us: u64,
    /// Whether the name was allowed.
    pub allowed: bool,
    /// The deciding rule.
    pub policy: Option<palisade_policy::PolicyRef>,
    /// Transport the client used.
    pub tcp: bool,
    /// Shape of the name, for tunnelling detection.
    pub features: Option<crate::wire::NameFeatures>,
}

/// Where the proxy runs, for the events' `cluster` and `node` fields.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Cluster name.
    pub cluster: Option<String>,
    /// Node name.
    pub node: Option<String>,
}

/// The `dns` event for one query.
pub fn dns_event(engine: Option<&Engine>, origin: &Origin, log: QueryLog) -> Event {
    let mut e = Event::new(
        palisade_events::new_id(),
        Timestamp::now(),
        EventBody::Dns(DnsInfo {
            query: log.query.clone(),
            qtype: Some(log.qtype),
            rcode: Some(log.rcode),
            answers: log.answers,
            ttl: log.ttl,
            latency_us: Some(log.latency_us),
            features: log.features.map(|f| DnsFeatures {
                labels: f.labels,
                longest_label: f.longest_label,
                length: f.length,
                entropy: Centi::from_f32(f.entropy),
            }),
        }),
    );
    e.cluster = origin.cluster.clone();
    e.node = origin.node.clone();
    e.source = Some(pod_endpoint(engine, log.pod, log.client));
    let mut dst = Endpoint::new(EndpointKind::Fqdn);
    dst.fqdn = Some(log.query);
    e.destination = Some(dst);
    e.protocol = Some(if log.tcp {
        Protocol::Tcp
    } else {
        Protocol::Udp
    });
    let audit = log
        .policy
        .as_ref()
        .is_some_and(|p| p.mode == palisade_policy::Mode::Audit);
    e.verdict = Some(verdict(log.allowed, audit));
    e.policy = log.policy.map(PolicyRef::from);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_events::Verdict;
    use palisade_policy::{Mode, Stage};

    fn policy(mode: Mode) -> palisade_policy::PolicyRef {
        palisade_policy::PolicyRef {
            kind: "SecurityPolicy".into(),
            namespace: Some("ml".into()),
            name: "model-hub".into(),
            rule: "egress[0]".into(),
            rule_name: None,
            stage: Stage::Namespace,
            federation_revision: None,
            mode,
        }
    }

    #[test]
    fn verdicts_and_policy_in_the_schema() {
        let origin = Origin {
            cluster: Some("c1".into()),
            node: Some("n1".into()),
        };
        let log = |allowed, mode| QueryLog {
            client: Some("10.0.0.5".parse().unwrap()),
            query: "cdn.models.test".into(),
            qtype: "A".into(),
            rcode: "NOERROR".into(),
            allowed,
            policy: Some(policy(mode)),
            ..QueryLog::default()
        };
        let e = dns_event(None, &origin, log(true, Mode::Enforce));
        assert_eq!(e.verdict, Some(Verdict::Allow));
        let json = e.to_json();
        for want in [
            r#""type":"dns""#,
            r#""cluster":"c1""#,
            r#""source":{"kind":"external","ip":"10.0.0.5"}"#,
            r#""destination":{"kind":"fqdn","fqdn":"cdn.models.test"}"#,
            r#""protocol":"UDP""#,
            r#""rule":"egress[0]","stage":"namespace","mode":"Enforce""#,
            r#""dns":{"query":"cdn.models.test","qtype":"A","rcode":"NOERROR","latencyUs":0}"#,
        ] {
            assert!(json.contains(want), "{want} not in {json}");
        }
        let back = Event::from_json_line(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            dns_event(None, &origin, log(true, Mode::Audit)).verdict,
            Some(Verdict::Audit)
        );
        assert_eq!(
            dns_event(None, &origin, log(false, Mode::Enforce)).verdict,
            Some(Verdict::Deny)
        );
    }
}
