//! `networking.k8s.io/v1 NetworkPolicy`, as upstream defines it: ipBlocks, ports, named
//! ports and protocols, and the two ends of a connection.

use super::*;

#[test]
fn missing_or_empty_from_and_ports_allow_everything() {
    for rule in ["- {}", "- from: []\n    ports: []", "- ports: []"] {
        let c = Cluster::new(&format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-any, namespace: x}}
spec:
  podSelector: {{matchLabels: {{app: b}}}}
  policyTypes: [Ingress]
  ingress:
  {rule}
"#
        ));
        c.expect(
            &c.tcp("z/a", "x/b", 1),
            Allow,
            Namespace,
            Some("NetworkPolicy allow-any"),
        );
        c.expect(
            &c.pods("y/a", "x/b", 5353, UDP),
            Allow,
            Namespace,
            Some("NetworkPolicy allow-any"),
        );
        c.expect(
            &c.pods("y/a", "x/b", 9000, SCTP),
            Allow,
            Namespace,
            Some("NetworkPolicy allow-any"),
        );
        c.expect(
            &c.ip_to_pod("198.51.100.1", "x/b", 65535),
            Allow,
            Namespace,
            Some("NetworkPolicy allow-any"),
        );
    }
}

#[test]
fn missing_ports_means_every_port_of_the_listed_peers() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-a-any-port, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: a}}
"#,
    );
    for (port, proto) in [(1, TCP), (8080, TCP), (65535, TCP), (53, UDP), (9000, SCTP)] {
        c.expect(
            &c.pods("x/a", "x/b", port, proto),
            Allow,
            Namespace,
            Some("NetworkPolicy from-a-any-port"),
        );
        c.expect(
            &c.pods("x/c", "x/b", port, proto),
            Deny,
            Namespace,
            Some("NetworkPolicy from-a-any-port"),
        );
    }
}

#[test]
fn ip_block_with_except() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-to-net, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 203.0.113.0/24
        except: [203.0.113.128/25]
"#,
    );
    c.expect_rule(
        &c.pod_to_ip("x/a", "203.0.113.5", 443, TCP),
        Allow,
        Namespace,
        "NetworkPolicy a-to-net",
        Direction::Egress,
        "egress[0]",
    );
    c.expect(
        &c.pod_to_ip("x/a", "203.0.113.127", 443, TCP),
        Allow,
        Namespace,
        Some("NetworkPolicy a-to-net"),
    );
    c.expect(
        &c.pod_to_ip("x/a", "203.0.113.128", 443, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy a-to-net"),
    );
    c.expect(
        &c.pod_to_ip("x/a", "203.0.113.200", 443, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy a-to-net"),
    );
    c.expect(
        &c.pod_to_ip("x/a", "198.51.100.1", 443, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy a-to-net"),
    );
}

#[test]
fn ip_block_matches_pod_ips() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-y-net, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.2.0/24, except: [10.0.2.2/32]}
"#,
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-y-net"),
    );
    c.expect(
        &c.tcp("y/b", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-y-net"),
    );
    c.expect(
        &c.tcp("x/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-y-net"),
    );
    // The same addresses arriving as plain IPs.
    c.expect(
        &c.ip_to_pod("10.0.2.77", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-y-net"),
    );
}

#[test]
fn end_port_ranges_are_inclusive_and_per_protocol() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: range, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - ports:
    - {port: 8000, endPort: 8100}
"#,
    );
    for port in [8000, 8050, 8100] {
        c.expect(
            &c.tcp("x/a", "x/b", port),
            Allow,
            Namespace,
            Some("NetworkPolicy range"),
        );
    }
    for port in [7999, 8101] {
        c.expect(
            &c.tcp("x/a", "x/b", port),
            Deny,
            Namespace,
            Some("NetworkPolicy range"),
        );
    }
    c.expect(
        &c.pods("x/a", "x/b", 8050, UDP),
        Deny,
        Namespace,
        Some("NetworkPolicy range"),
    );
}

#[test]
fn named_ports_resolve_against_the_destination_pod() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - ports: [{port: web}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-web-out, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: web}]
"#,
    );
    // Ingress: `web` is 80 on x/a and 8080 on x/b.
    c.expect(
        &c.tcp("y/a", "x/a", 80),
        Allow,
        Namespace,
        Some("NetworkPolicy web-in"),
    );
    c.expect(
        &c.tcp("y/a", "x/a", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy web-in"),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy web-in"),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 80),
        Deny,
        Namespace,
        Some("NetworkPolicy web-in"),
    );
    // Egress from x/c: resolved on the pod it connects to, not on x/c (web = 8000).
    c.expect(
        &c.tcp("x/c", "y/a", 80),
        Allow,
        Namespace,
        Some("NetworkPolicy c-web-out"),
    );
    c.expect(
        &c.tcp("x/c", "y/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy c-web-out"),
    );
    c.expect(
        &c.tcp("x/c", "y/b", 80),
        Deny,
        Namespace,
        Some("NetworkPolicy c-web-out"),
    );
    c.expect(
        &c.tcp("x/c", "y/a", 8000),
        Deny,
        Namespace,
        Some("NetworkPolicy c-web-out"),
    );
    // An address that is no pod has no named ports.
    c.expect(
        &c.pod_to_ip("x/c", "203.0.113.1", 80, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy c-web-out"),
    );
}

#[test]
fn named_port_with_the_wrong_protocol_does_not_match() {
    // `dns` is 53/UDP on every pod; the policy's protocol defaults to TCP.
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns-tcp, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - ports: [{port: dns}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns-udp, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress:
  - ports: [{port: dns, protocol: UDP}]
"#,
    );
    c.expect(
        &c.pods("x/a", "x/b", 53, UDP),
        Deny,
        Namespace,
        Some("NetworkPolicy dns-tcp"),
    );
    c.expect(
        &c.pods("x/a", "x/b", 53, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy dns-tcp"),
    );
    c.expect(
        &c.pods("x/a", "x/c", 53, UDP),
        Allow,
        Namespace,
        Some("NetworkPolicy dns-udp"),
    );
    c.expect(
        &c.pods("x/a", "x/c", 53, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy dns-udp"),
    );
}

#[test]
fn udp_and_sctp_are_not_tcp() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: protos, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - ports:
    - {protocol: UDP, port: 53}
    - {protocol: SCTP, port: 9000}
    - {port: 80}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: any-sctp, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress:
  - ports: [{protocol: SCTP}]
"#,
    );
    c.expect(
        &c.pods("x/a", "x/b", 53, UDP),
        Allow,
        Namespace,
        Some("NetworkPolicy protos"),
    );
    c.expect(
        &c.pods("x/a", "x/b", 53, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy protos"),
    );
    c.expect(
        &c.pods("x/a", "x/b", 9000, SCTP),
        Allow,
        Namespace,
        Some("NetworkPolicy protos"),
    );
    c.expect(
        &c.pods("x/a", "x/b", 9000, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy protos"),
    );
    c.expect(
        &c.pods("x/a", "x/b", 9000, UDP),
        Deny,
        Namespace,
        Some("NetworkPolicy protos"),
    );
    c.expect(
        &c.pods("x/a", "x/b", 80, TCP),
        Allow,
        Namespace,
        Some("NetworkPolicy protos"),
    );
    c.expect(
        &c.pods("x/a", "x/b", 80, UDP),
        Deny,
        Namespace,
        Some("NetworkPolicy protos"),
    );
    c.expect(
        &c.pods("x/a", "x/b", 80, SCTP),
        Deny,
        Namespace,
        Some("NetworkPolicy protos"),
    );
    // A protocol with no port: every port of that protocol, nothing of the others.
    c.expect(
        &c.pods("x/a", "x/c", 1, SCTP),
        Allow,
        Namespace,
        Some("NetworkPolicy any-sctp"),
    );
    c.expect(
        &c.pods("x/a", "x/c", 9000, SCTP),
        Allow,
        Namespace,
        Some("NetworkPolicy any-sctp"),
    );
    c.expect(
        &c.pods("x/a", "x/c", 9000, TCP),
        Deny,
        Namespace,
        Some("NetworkPolicy any-sctp"),
    );
}

#[test]
fn sender_egress_and_receiver_ingress_must_both_allow() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-to-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: b}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-c, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: c}}}]
"#,
    );
    // Egress allows, ingress refuses.
    let v = c.tcp("x/a", "x/b", 8080);
    c.expect_rule(
        &v,
        Deny,
        Namespace,
        "NetworkPolicy b-from-c",
        Direction::Ingress,
        "default",
    );
    assert!(v.egress.unwrap().allowed);
    assert!(!v.ingress.unwrap().allowed);
    // Ingress would allow, egress refuses.
    let v = c.tcp("x/a", "x/c", 8000);
    c.expect_rule(
        &v,
        Deny,
        Namespace,
        "NetworkPolicy a-to-b",
        Direction::Egress,
        "default",
    );
    // Both allow (x/c's egress is not isolated).
    c.expect(
        &c.tcp("x/c", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy b-from-c"),
    );
}
