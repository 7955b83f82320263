//! The DNS question: may this pod resolve this name?
//!
//! A name resolves where the pod could connect to it: the DNS proxy refuses names that no
//! rule lets the pod reach, so a pod whose egress is governed by names learns only the
//! addresses it may use. The answer is the engine's own verdict for a connection to the name
//! on the ports the matching rules mention, so DNS and the data plane never disagree.

use super::*;

/// Ports tried when the rules naming a destination give no port of their own.
const DEFAULT_PORTS: [u16; 2] = [443, 80];

/// Whether a pod may resolve a name, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsDecision {
    /// The name may be resolved.
    pub allowed: bool,
    /// The pod's egress is governed by names (an FQDN rule applies to it, or the posture is
    /// zero trust). Ungoverned pods may resolve anything.
    pub governed: bool,
    /// The rule that decided (allowing or denying), when one did.
    pub policy: Option<PolicyRef>,
}

impl Engine {
    /// Whether `pod` may resolve `name` (any case, trailing dot or not).
    ///
    /// A pod is governed when one of its egress rules has an FQDN peer, or when the posture
    /// is [`Posture::Deny`]. A governed pod may resolve a name when a connection to it is
    /// allowed on some port that the egress rules naming it (or naming any destination)
    /// mention, falling back to TCP 443 and 80.
    ///
    /// The address is not known before the answer, so rules that match only by CIDR
    /// (`ipBlock`, `networks`) do not decide here: a name a CIDR rule denies still resolves,
    /// and the data plane refuses the connection to its addresses.
    pub fn dns_decision(&self, pod: PodId, name: &str) -> DnsDecision {
        let lower = name.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        let Some(rules) = self.per_pod.get(pod as usize).map(|r| &r.egress) else {
            return DnsDecision {
                allowed: false,
                governed: true,
                policy: None,
            };
        };
        let ids = || {
            rules
                .tiered
                .iter()
                .chain(&rules.ns_rules)
                .chain(&rules.baseline)
                .map(|&id| &self.rules[id as usize])
        };
        let has_fqdn = |r: &Rule| {
            r.peers
                .as_deref()
                .is_some_and(|ps| ps.iter().any(|p| matches!(p, PeerMatch::Fqdn(_))))
        };
        let governed = self.posture == Posture::Deny || ids().any(has_fqdn);
        if !governed {
            return DnsDecision {
                allowed: true,
                governed: false,
                policy: None,
            };
        }
        let mut candidates: Vec<(u16, Protocol)> = Vec::new();
        let mut add = |c: (u16, Protocol)| {
            if !candidates.contains(&c) {
                candidates.push(c);
            }
        };
        for r in ids() {
            let names_it = match r.peers.as_deref() {
                None => true,
                Some(ps) => ps
                    .iter()
                    .any(|p| matches!(p, PeerMatch::Fqdn(f) if f.matches(name))),
            };
            if !names_it {
                continue;
            }
            for c in rule_ports(r.ports.as_deref()) {
                add(c);
            }
        }
        for port in DEFAULT_PORTS {
            add((port, Protocol::TCP));
        }
        let mut first_denied = None;
        for (port, protocol) in candidates {
            let v = self.verdict(&Flow {
                src: Endpoint::Pod(pod),
                dst: Endpoint::Fqdn { name, ip: None },
                port,
                protocol,
                http: None,
            });
            let policy = v.decisive().and_then(|d| self.policy_ref(d));
            if v.allowed() {
                return DnsDecision {
                    allowed: true,
                    governed: true,
                    policy,
                };
            }
            first_denied.get_or_insert(policy);
        }
        DnsDecision {
            allowed: false,
            governed: true,
            policy: first_denied.flatten(),
        }
    }
}

/// The (port, protocol) pairs worth trying for a rule's ports.
fn rule_ports(ports: Option<&[PortMatch]>) -> Vec<(u16, Protocol)> {
    let defaults = |p: Protocol| DEFAULT_PORTS.iter().map(move |&n| (n, p));
    match ports {
        None => defaults(Protocol::TCP).collect(),
        Some(ps) => ps
            .iter()
            .flat_map(|pm| match pm {
                PortMatch::Range(p, lo, _) => vec![(*lo, *p)],
                PortMatch::Proto(p) => defaults(*p).collect(),
                // Named ports belong to pods; a name outside the cluster has none.
                PortMatch::Named(..) => Vec::new(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Manifests, Severity, Snapshot};

    const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: trainer, namespace: x, labels: {app: trainer}}
spec: {containers: [{name: main}]}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {containers: [{name: main}]}
status: {podIP: 10.0.1.2}
"#;

    const HUB: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: model-hub, namespace: x}
spec:
  podSelector: {matchLabels: {app: trainer}}
  egress:
  - to: [{fqdn: "**.models.test"}]
    ports: [{port: 443}]
  - to: [{fqdn: "*.api.test"}]
  - to: [{fqdn: "dns.alt.test"}]
    ports: [{port: 853}]
"#;

    fn engine(policies: &str, posture: Posture) -> Engine {
        let mut m = Manifests::new();
        m.add_file("pods.yaml", PODS);
        m.add_file("policies.yaml", policies);
        let errors: Vec<String> = m
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        Engine::compile_with(&Snapshot::from_manifests(&m), posture)
    }

    fn pod(e: &Engine, key: &str) -> PodId {
        e.pod_by_key(key).unwrap()
    }

    #[test]
    fn fqdn_rules_allow_matching_names_only() {
        let e = engine(HUB, Posture::Allow);
        let t = pod(&e, "x/trainer");
        let d = e.dns_decision(t, "cdn.models.test");
        assert!(d.allowed && d.governed, "{d:?}");
        let p = d.policy.expect("an allowing rule");
        assert_eq!(
            (p.name.as_str(), p.rule.as_str()),
            ("model-hub", "egress[0]")
        );
        assert!(e.dns_decision(t, "a.b.cdn.models.test").allowed);
        // Ports other than 443/80 come from the rule naming the host.
        let d = e.dns_decision(t, "dns.alt.test");
        assert!(d.allowed);
        assert_eq!(d.policy.unwrap().rule, "egress[2]");

        let d = e.dns_decision(t, "evil.test");
        assert!(!d.allowed && d.governed, "{d:?}");
        let p = d.policy.expect("the isolating policy");
        assert_eq!((p.name.as_str(), p.rule.as_str()), ("model-hub", "default"));
    }

    #[test]
    fn wildcards_do_not_match_the_apex() {
        let e = engine(HUB, Posture::Allow);
        let t = pod(&e, "x/trainer");
        assert!(!e.dns_decision(t, "models.test").allowed);
        assert!(!e.dns_decision(t, "api.test").allowed);
        assert!(e.dns_decision(t, "v1.api.test").allowed);
        // `*.` is exactly one label.
        assert!(!e.dns_decision(t, "a.v1.api.test").allowed);
    }

    #[test]
    fn case_and_trailing_dot_are_ignored() {
        let e = engine(HUB, Posture::Allow);
        let t = pod(&e, "x/trainer");
        for name in ["CDN.Models.TEST", "cdn.models.test.", "Cdn.MODELS.test."] {
            assert!(e.dns_decision(t, name).allowed, "{name}");
        }
        assert!(!e.dns_decision(t, "EVIL.test.").allowed);
    }

    #[test]
    fn ungoverned_pods_resolve_anything() {
        let e = engine(HUB, Posture::Allow);
        let d = e.dns_decision(pod(&e, "x/web"), "evil.test");
        assert_eq!(
            d,
            DnsDecision {
                allowed: true,
                governed: false,
                policy: None
            }
        );
    }

    #[test]
    fn zero_trust_posture_governs_every_pod() {
        let e = engine(HUB, Posture::Deny);
        let d = e.dns_decision(pod(&e, "x/web"), "evil.test");
        assert!(!d.allowed && d.governed, "{d:?}");
        let t = pod(&e, "x/trainer");
        assert!(e.dns_decision(t, "cdn.models.test").allowed);
        assert!(!e.dns_decision(t, "evil.test").allowed);
    }

    #[test]
    fn a_rule_to_any_destination_lets_names_resolve() {
        let e = engine(
            r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: open-8443, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - ports: [{port: 8443}]
"#,
            Posture::Deny,
        );
        let d = e.dns_decision(pod(&e, "x/web"), "anything.test");
        assert!(d.allowed && d.governed, "{d:?}");
        assert_eq!(d.policy.unwrap().name, "open-8443");
    }

    #[test]
    fn admin_network_policy_domain_names() {
        let e = engine(
            r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: docs-only}
spec:
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  egress:
  - name: allow-docs
    action: Allow
    to: [{domainNames: ["*.kubernetes.test"]}]
    ports: [{portNumber: {port: 443, protocol: TCP}}]
  - name: deny-evil
    action: Deny
    to: [{domainNames: ["evil.test"]}]
"#,
            Posture::Allow,
        );
        let web = pod(&e, "x/web");
        // ANP `*.` is one or more labels.
        let d = e.dns_decision(web, "a.b.kubernetes.test");
        assert!(d.allowed && d.governed, "{d:?}");
        assert_eq!(d.policy.unwrap().rule, "egress[0]");
        let d = e.dns_decision(web, "evil.test");
        assert!(!d.allowed, "{d:?}");
        let p = d.policy.unwrap();
        assert_eq!(
            (p.name.as_str(), p.rule.as_str()),
            ("docs-only", "egress[1]")
        );
        // Governed, but names no rule mentions still pass to the default posture (allow).
        assert!(e.dns_decision(web, "other.test").allowed);
    }

    #[test]
    fn audit_mode_allows_and_names_the_policy() {
        let e = engine(
            &HUB.replace("spec:\n", "spec:\n  mode: Audit\n"),
            Posture::Allow,
        );
        let d = e.dns_decision(pod(&e, "x/trainer"), "evil.test");
        assert!(d.allowed && d.governed, "{d:?}");
        let p = d.policy.expect("the Audit-mode policy that would deny");
        assert_eq!((p.name.as_str(), p.mode), ("model-hub", crate::Mode::Audit));
    }

    #[test]
    fn unknown_pod_is_refused() {
        let e = engine("", Posture::Allow);
        assert!(!e.dns_decision(9999, "cdn.models.test").allowed);
    }
}
