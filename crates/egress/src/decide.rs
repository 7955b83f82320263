//! The engine question for one request or tunnel, and the short reason codes a denied
//! client sees. Pure and synchronous.

use std::net::IpAddr;

use std::sync::Arc;

use palisade_policy::{
    Action, Endpoint, Engine, Flow, GatewayDemands, HttpRequest, PodId, PolicyRef, Posture,
    Protocol,
};

/// Why a request was refused. The code is all a client learns; the event has the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No policy snapshot has been loaded yet (fail closed).
    NotReady,
    /// The client is not a known pod and the posture is zero trust.
    UnknownClient,
    /// Policy does not allow this destination name (and port).
    FqdnNotAllowed,
    /// The destination is allowed, but not this method / path / headers.
    L7NotAllowed,
    /// Only some requests to the destination are allowed, and a tunnel hides them.
    NeedsInspection,
    /// A proxy credential was given and is not known.
    BadCredential,
    /// Inside intercepted TLS, `Host` names another server than the tunnel (fronting).
    HostMismatch,
    /// A DLP detector found something in the body and the action is block.
    Dlp,
    /// The destination IP is not one this pod's DNS answers gave for the name it presents.
    DnsMismatch,
    /// The request body is larger than the allowing rule's `maxBodyBytes` (`413`).
    BodyTooLarge,
    /// The pod has used up its upload budget under this rule for now (`429`).
    UploadBudget,
    /// DLP is on and the body is compressed (`Content-Encoding`), so a scan of its bytes
    /// would see nothing (`415`).
    EncodedBody,
}

impl DenyReason {
    /// The stable code (also the metrics label).
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::NotReady => "not-ready",
            DenyReason::UnknownClient => "unknown-client",
            DenyReason::FqdnNotAllowed => "fqdn-not-allowed",
            DenyReason::L7NotAllowed => "l7-not-allowed",
            DenyReason::NeedsInspection => "needs-inspection",
            DenyReason::BadCredential => "bad-credential",
            DenyReason::HostMismatch => "host-mismatch",
            DenyReason::Dlp => "dlp",
            DenyReason::DnsMismatch => "dns-mismatch",
            DenyReason::BodyTooLarge => "body-too-large",
            DenyReason::UploadBudget => "upload-budget",
            DenyReason::EncodedBody => "encoded-body",
        }
    }

    /// The HTTP status of the refusal: `403`, or `407`, `413`, `415`, `429` for those reasons.
    pub fn status(self) -> u16 {
        match self {
            DenyReason::BadCredential => 407,
            DenyReason::BodyTooLarge => 413,
            DenyReason::UploadBudget => 429,
            DenyReason::EncodedBody => 415,
            _ => 403,
        }
    }

    /// The response body: `palisade: denied (<code>)`.
    pub fn body(self) -> &'static str {
        match self {
            DenyReason::NotReady => "palisade: denied (not-ready)\n",
            DenyReason::UnknownClient => "palisade: denied (unknown-client)\n",
            DenyReason::FqdnNotAllowed => "palisade: denied (fqdn-not-allowed)\n",
            DenyReason::L7NotAllowed => "palisade: denied (l7-not-allowed)\n",
            DenyReason::NeedsInspection => "palisade: denied (needs-inspection)\n",
            DenyReason::BadCredential => "palisade: denied (bad-credential)\n",
            DenyReason::HostMismatch => "palisade: denied (host-mismatch)\n",
            DenyReason::Dlp => "palisade: denied (dlp)\n",
            DenyReason::DnsMismatch => "palisade: denied (dns-mismatch)\n",
            DenyReason::BodyTooLarge => "palisade: denied (body-too-large)\n",
            DenyReason::UploadBudget => "palisade: denied (upload-budget)\n",
            DenyReason::EncodedBody => "palisade: denied (encoded-body)\n",
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Host name (lower case, no trailing dot) or IP literal.
    pub host: &'a str,
    /// The address being connected to, when known.
    pub ip: Option<IpAddr>,
    /// Destination port.
    pub port: u16,
}

/// The outcome for one request or tunnel.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Whether it may pass.
    pub allowed: bool,
    /// Allowed, but an Audit-mode policy would have denied it.
    pub audit: bool,
    /// Why not, when denied.
    pub deny: Option<DenyReason>,
    /// The deciding rule.
    pub policy: Option<PolicyRef>,
    /// Allowed at the connection level by a rule whose HTTP conditions still need checking
    /// per request (only when the request was not given).
    pub l7_pending: bool,
    /// What the allowing rule asks of the gateway (interception, body limit, DLP, upload
    /// budget).
    pub demands: Option<Arc<GatewayDemands>>,
}

impl Decision {
    /// A refusal with no deciding rule.
    pub fn denied(reason: DenyReason) -> Self {
        Decision {
            allowed: false,
            audit: false,
            deny: Some(reason),
            policy: None,
            l7_pending: false,
            demands: None,
        }
    }

    /// Allowed, but only with TLS terminated: the rule has HTTP conditions that a tunnel
    /// would hide, or asks for inspection (`inspectTLS`).
    pub fn needs_inspection(&self) -> bool {
        self.allowed && (self.l7_pending || self.demands.as_ref().is_some_and(|d| d.inspect_tls))
    }
}

/// Decides a request (with `http`) or a connection (without) from `pod` (or a client that
/// is no pod, at `client`) to `target`.
pub fn decide(
    engine: Option<&Engine>,
    pod: Option<PodId>,
    client: IpAddr,
    target: Target<'_>,
    http: Option<HttpRequest<'_>>,
) -> Decision {
    let Some(engine) = engine else {
        return Decision::denied(DenyReason::NotReady);
    };
    let src = match pod {
        Some(p) => Endpoint::Pod(p),
        None if engine.posture() == Posture::Deny => {
            return Decision::denied(DenyReason::UnknownClient)
        }
        None => Endpoint::Ip(client),
    };
    let dst = match classify_host(target.host) {
        HostKind::Ip(ip) => engine.endpoint_for_ip(ip),
        HostKind::Name => Endpoint::Fqdn {
            name: target.host,
            ip: target.ip.map(|ip| ip.to_canonical()),
        },
        // A numeric form the system resolver reads as an address (`2852039166`,
        // `0xa9.0xfe.0xa9.0xfe`, `169.254.43518`): decided as a name it would dodge every
        // address rule, so it is no name policy can allow.
        HostKind::NumericName => return Decision::denied(DenyReason::FqdnNotAllowed),
    };
    let mut flow = Flow {
        src,
        dst,
        port: target.port,
        protocol: Protocol::TCP,
        http,
    };
    let v = engine.verdict(&flow);
    let policy = v.decisive().and_then(|d| engine.policy_ref(d));
    if !v.allowed() {
        let reason = if flow.http.is_some() && {
            flow.http = None;
            engine.verdict(&flow).allowed()
        } {
            DenyReason::L7NotAllowed
        } else {
            DenyReason::FqdnNotAllowed
        };
        return Decision {
            allowed: false,
            audit: false,
            deny: Some(reason),
            policy,
            l7_pending: false,
            demands: None,
        };
    }
    let l7_pending = http.is_none() && [v.egress, v.ingress].iter().flatten().any(|d| d.l7);
    Decision {
        allowed: true,
        audit: v.action == Action::Audit,
        deny: None,
        policy,
        l7_pending,
        demands: engine.gateway_demands(&v).cloned(),
    }
}

/// What a destination host string names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// An IP literal (`192.0.2.1`, `::1`, `[::1]`), IPv4-mapped IPv6 read as IPv4.
    Ip(IpAddr),
    /// A DNS name.
    Name,
    /// Not an IP literal, yet all of it digits, dots and hex prefixes in a way that
    /// `inet_aton` and the system resolver read as an address (`2130706433`, `0x7f.1`,
    /// `127.1`): a DNS name's last label is never numeric (RFC 3696 §2).
    NumericName,
}

/// Reads a destination host (lower case, no trailing dot, IPv6 possibly in brackets).
pub fn classify_host(host: &str) -> HostKind {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return HostKind::Ip(ip.to_canonical());
    }
    let last = host.rsplit('.').next().unwrap_or(host);
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if numeric {
        HostKind::NumericName
    } else {
        HostKind::Name
    }
}

/// What the client's DNS answers say about a redirected connection's name and original
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsCheck {
    /// The client was told the name lives at that address (or the name is that address).
    Agrees,
    /// The client's answers are known and do not include it: refuse (`dns-mismatch`).
    Disagrees,
    /// Nothing is known about the client's DNS (no DNS proxy in its path, or every answer
    /// it got has expired): the original destination is not trusted, the gateway connects
    /// to the name itself, as the explicit proxy does.
    Unknown,
}

/// Checks a redirected connection's name and original destination against the client's
/// DNS answers (when they are known).
pub fn dns_check(
    answers: Option<&dyn crate::answers::ResolvedNames>,
    client: IpAddr,
    host: &str,
    ip: IpAddr,
) -> DnsCheck {
    match classify_host(host) {
        // An IP literal names itself, and only itself: the connection must go there (an
        // allowed address in `Host` / SNI cannot carry a connection to another one).
        HostKind::Ip(named) if named == ip.to_canonical() => DnsCheck::Agrees,
        HostKind::Ip(_) | HostKind::NumericName => DnsCheck::Disagrees,
        HostKind::Name => match answers.and_then(|a| a.agrees(client, host, ip)) {
            Some(true) => DnsCheck::Agrees,
            Some(false) => DnsCheck::Disagrees,
            None => DnsCheck::Unknown,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::{Manifests, Snapshot};

    const POLICY: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: trainer, namespace: ml, labels: {app: trainer}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.5}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: hub, namespace: ml}
spec:
  podSelector: {matchLabels: {app: trainer}}
  egress:
  - to: [{fqdn: "api.allowed.test"}]
  - to: [{fqdn: "hub.test"}]
    http: [{methods: [GET, HEAD]}]
"#;

    fn engine(posture: Posture) -> Engine {
        let mut m = Manifests::new();
        m.add_file("p.yaml", POLICY);
        assert!(!m.has_errors(), "{:?}", m.diagnostics);
        Engine::compile_with(&Snapshot::from_manifests(&m), posture)
    }

    fn target(host: &str) -> Target<'_> {
        Target {
            host,
            ip: None,
            port: 443,
        }
    }

    fn get(method: &str) -> HttpRequest<'_> {
        HttpRequest {
            method,
            path: "/x",
            host: None,
            headers: &[],
        }
    }

    #[test]
    fn names_and_methods() {
        let e = engine(Posture::Allow);
        let pod = e.pod_by_ip("10.0.0.5".parse().unwrap());
        let ip = "10.0.0.5".parse().unwrap();
        let d = decide(Some(&e), pod, ip, target("api.allowed.test"), None);
        assert!(d.allowed && !d.l7_pending, "{d:?}");
        assert_eq!(d.policy.unwrap().rule, "egress[0]");

        let d = decide(Some(&e), pod, ip, target("evil.test"), Some(get("GET")));
        assert_eq!(d.deny, Some(DenyReason::FqdnNotAllowed));
        assert_eq!(d.policy.unwrap().name, "hub");

        let d = decide(Some(&e), pod, ip, target("hub.test"), Some(get("GET")));
        assert!(d.allowed, "{d:?}");
        let d = decide(Some(&e), pod, ip, target("hub.test"), Some(get("POST")));
        assert_eq!(d.deny, Some(DenyReason::L7NotAllowed));
        // A tunnel to it is allowed only pending per-request checks.
        let d = decide(Some(&e), pod, ip, target("hub.test"), None);
        assert!(d.allowed && d.l7_pending, "{d:?}");
    }

    #[test]
    fn redirected_connections_must_agree_with_dns_answers() {
        use crate::answers::AnswerBook;
        let book = AnswerBook::new();
        let pod: IpAddr = "10.0.0.5".parse().unwrap();
        let cdn: IpAddr = "203.0.113.7".parse().unwrap();
        book.record(pod, "hub.test", cdn, std::time::Duration::from_secs(30));
        let a = Some(&book as &dyn crate::answers::ResolvedNames);
        assert_eq!(dns_check(a, pod, "hub.test", cdn), DnsCheck::Agrees);
        // SNI names an allowed host, but the IP was resolved for another name: refused.
        assert_eq!(dns_check(a, pod, "other.test", cdn), DnsCheck::Disagrees);
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        assert_eq!(dns_check(a, pod, "hub.test", other), DnsCheck::Disagrees);
        // No DNS proxy in the path, or a client it never answered: unknown.
        assert_eq!(dns_check(None, pod, "other.test", cdn), DnsCheck::Unknown);
        let stranger: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(dns_check(a, stranger, "other.test", cdn), DnsCheck::Unknown);
        // An IP literal names itself, and nothing else, whoever asks.
        let lit: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(dns_check(a, pod, "203.0.113.9", lit), DnsCheck::Agrees);
        assert_eq!(
            dns_check(None, pod, "203.0.113.9", cdn),
            DnsCheck::Disagrees
        );
        assert_eq!(dns_check(a, stranger, "[::1]", cdn), DnsCheck::Disagrees);
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(
            dns_check(None, pod, "203.0.113.9", mapped),
            DnsCheck::Agrees
        );
        assert_eq!(dns_check(None, pod, "3405803785", lit), DnsCheck::Disagrees);
    }

    #[test]
    fn hosts_are_read_as_addresses_wherever_a_resolver_would() {
        use HostKind::*;
        let v4 = |s: &str| Ip(s.parse().unwrap());
        assert_eq!(classify_host("192.0.2.1"), v4("192.0.2.1"));
        assert_eq!(classify_host("[fd00::1]"), v4("fd00::1"));
        assert_eq!(classify_host("::1"), v4("::1"));
        assert_eq!(
            classify_host("[::ffff:169.254.169.254]"),
            v4("169.254.169.254")
        );
        for numeric in [
            "2852039166",
            "0xa9fea9fe",
            "169.254.43518",
            "0xa9.0xfe.0xa9.0xfe",
        ] {
            assert_eq!(classify_host(numeric), NumericName, "{numeric}");
        }
        for name in ["hub.test", "1.example", "0x.test", "xn--bcher-kva.example"] {
            assert_eq!(classify_host(name), Name, "{name}");
        }
    }

    /// Address rules hold whatever spelling of the address the client uses: a cluster-wide
    /// `Deny` of the metadata service, and a pod allowed one address only.
    #[test]
    fn address_rules_hold_for_every_spelling_of_an_address() {
        let policy = r#"
apiVersion: v1
kind: Pod
metadata: {name: trainer, namespace: ml, labels: {app: trainer}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.5}
---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: no-metadata}
spec:
  tier: security
  subject: {namespaceSelector: {}}
  egress:
  - action: Deny
    to: [{ipBlock: {cidr: 169.254.169.254/32}}, {ipBlock: {cidr: "fd00:ec2::254/128"}}]
"#;
        let mut m = Manifests::new();
        m.add_file("p.yaml", policy);
        assert!(!m.has_errors(), "{:?}", m.diagnostics);
        let e = Engine::compile_with(&Snapshot::from_manifests(&m), Posture::Allow);
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let pod = e.pod_by_ip(ip);
        assert!(decide(Some(&e), pod, ip, target("hub.test"), None).allowed);
        for host in [
            "169.254.169.254",
            "[fd00:ec2::254]",
            "[::ffff:169.254.169.254]",
            "::ffff:a9fe:a9fe",
            "2852039166",
            "0xa9fea9fe",
            "169.254.43518",
            "0251.0376.0251.0376",
        ] {
            let d = decide(Some(&e), pod, ip, target(host), None);
            assert!(!d.allowed, "{host}: {d:?}");
            assert_eq!(d.deny, Some(DenyReason::FqdnNotAllowed), "{host}");
        }
    }

    #[test]
    fn fail_closed_and_unknown_clients() {
        let ip = "192.0.2.1".parse().unwrap();
        let d = decide(None, None, ip, target("api.allowed.test"), None);
        assert_eq!(d.deny, Some(DenyReason::NotReady));
        let e = engine(Posture::Deny);
        let d = decide(Some(&e), None, ip, target("api.allowed.test"), None);
        assert_eq!(d.deny, Some(DenyReason::UnknownClient));
        let e = engine(Posture::Allow);
        assert!(decide(Some(&e), None, ip, target("evil.test"), None).allowed);
    }
}
