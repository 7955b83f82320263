//! AdminNetworkPolicy and BaselineAdminNetworkPolicy, as network-policy-api defines them.

use super::*;

/// An ANP on the pods of namespace x with one ingress rule from `from` (YAML flow map).
fn anp_x(name: &str, priority: u32, action: &str, from: &str) -> String {
    format!(
        r#"---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: {name}}}
spec:
  priority: {priority}
  subject:
    namespaces: {{matchLabels: {{kubernetes.io/metadata.name: x}}}}
  ingress:
  - name: {name}-rule
    action: {action}
    from: [{from}]
"#
    )
}

const NP_X_DENY_ALL: &str = r#"---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
"#;

const NP_X_ALLOW_ALL: &str = r#"---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {}
  ingress: [{}]
"#;

#[test]
fn lower_priority_number_wins_whatever_the_file_order() {
    let all = "namespaces: {}";
    let c =
        Cluster::new(&(anp_x("allow-30", 30, "Allow", all) + &anp_x("deny-20", 20, "Deny", all)));
    let v = c.tcp("y/a", "x/b", 8080);
    c.expect_rule(
        &v,
        Deny,
        Admin,
        "AdminNetworkPolicy deny-20",
        Direction::Ingress,
        "ingress[0]",
    );
    assert_eq!(
        c.engine
            .policy_ref(v.decisive().unwrap())
            .unwrap()
            .rule_name
            .as_deref(),
        Some("deny-20-rule")
    );
    let c =
        Cluster::new(&(anp_x("deny-20", 20, "Deny", all) + &anp_x("allow-10", 10, "Allow", all)));
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Admin,
        Some("AdminNetworkPolicy allow-10"),
    );
    // Pods outside the subject are untouched.
    c.expect(&c.tcp("y/a", "y/b", 8080), Allow, DefaultStage, None);
}

#[test]
fn first_matching_rule_wins_within_a_policy() {
    let c = Cluster::new(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: ordered}
spec:
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {team: red}}
      podSelector: {matchLabels: {app: a}}
  ingress:
  - name: deny-db
    action: Deny
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {tier: db}}}}]
  - name: allow-blue
    action: Allow
    from: [{namespaces: {matchLabels: {team: blue}}}]
  - name: deny-rest
    action: Deny
    from: [{namespaces: {}}]
"#,
    );
    let v = c.tcp("y/b", "x/a", 80);
    c.expect_rule(
        &v,
        Deny,
        Admin,
        "AdminNetworkPolicy ordered",
        Direction::Ingress,
        "ingress[0]",
    );
    let r = c.engine.policy_ref(v.decisive().unwrap()).unwrap();
    assert_eq!(r.rule_name.as_deref(), Some("deny-db"));
    c.expect_rule(
        &c.tcp("y/a", "x/a", 80),
        Allow,
        Admin,
        "AdminNetworkPolicy ordered",
        Direction::Ingress,
        "ingress[1]",
    );
    c.expect_rule(
        &c.tcp("z/a", "x/a", 80),
        Deny,
        Admin,
        "AdminNetworkPolicy ordered",
        Direction::Ingress,
        "ingress[2]",
    );
    // x/b (app=b) is not a subject.
    c.expect(&c.tcp("z/a", "x/b", 8080), Allow, DefaultStage, None);
}

#[test]
fn admin_allow_overrides_a_networkpolicy_deny() {
    let c = Cluster::new(
        &(anp_x(
            "allow-blue",
            10,
            "Allow",
            "namespaces: {matchLabels: {team: blue}}",
        ) + NP_X_DENY_ALL),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Admin,
        Some("AdminNetworkPolicy allow-blue"),
    );
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy deny-all"),
    );
}

#[test]
fn admin_deny_overrides_a_networkpolicy_allow() {
    let c = Cluster::new(
        &(anp_x(
            "deny-blue",
            10,
            "Deny",
            "namespaces: {matchLabels: {team: blue}}",
        ) + NP_X_ALLOW_ALL),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Admin,
        Some("AdminNetworkPolicy deny-blue"),
    );
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy allow-all"),
    );
}

#[test]
fn pass_hands_the_decision_to_networkpolicy() {
    let policies = anp_x(
        "pass-blue",
        1,
        "Pass",
        "namespaces: {matchLabels: {team: blue}}",
    ) + &anp_x("deny-everyone", 50, "Deny", "namespaces: {}")
        + r#"---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-blue-a, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
      podSelector: {matchLabels: {app: a}}
"#;
    let c = Cluster::new(&policies);
    // Passed, then the NetworkPolicy allows; the lower-priority Deny is skipped.
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-blue-a"),
    );
    // Passed, then the NetworkPolicy has no rule for y/b.
    c.expect(
        &c.tcp("y/b", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-blue-a"),
    );
    // Not passed: the priority-50 Deny decides.
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Deny,
        Admin,
        Some("AdminNetworkPolicy deny-everyone"),
    );
}

#[test]
fn pass_without_networkpolicy_reaches_the_baseline() {
    let policies = anp_x(
        "pass-blue",
        1,
        "Pass",
        "namespaces: {matchLabels: {team: blue}}",
    ) + r#"---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - name: deny-blue
    action: Deny
    from: [{namespaces: {matchLabels: {team: blue}}}]
"#;
    let c = Cluster::new(&policies);
    let v = c.tcp("y/a", "x/b", 8080);
    c.expect_rule(
        &v,
        Deny,
        Baseline,
        "BaselineAdminNetworkPolicy default",
        Direction::Ingress,
        "ingress[0]",
    );
    // Not matched by the BANP either: the default posture.
    c.expect(&c.tcp("z/a", "x/b", 8080), Allow, DefaultStage, None);
}

#[test]
fn baseline_applies_only_to_pods_no_networkpolicy_selects() {
    let c = Cluster::new(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
"#,
    );
    c.expect(
        &c.tcp("x/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy b-from-a"),
    );
    c.expect(
        &c.tcp("x/c", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy b-from-a"),
    );
    c.expect(
        &c.tcp("x/a", "x/c", 8000),
        Deny,
        Baseline,
        Some("BaselineAdminNetworkPolicy default"),
    );
    c.expect(
        &c.tcp("y/a", "y/b", 8080),
        Deny,
        Baseline,
        Some("BaselineAdminNetworkPolicy default"),
    );
}

#[test]
fn baseline_allow_beats_the_zero_trust_posture() {
    let c = Cluster::with_posture(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - action: Allow
    from: [{namespaces: {matchLabels: {team: red}}}]
  egress:
  - action: Allow
    to: [{namespaces: {}}]
"#,
        Posture::Deny,
    );
    c.expect(
        &c.tcp("x/a", "y/b", 8080),
        Allow,
        Baseline,
        Some("BaselineAdminNetworkPolicy default"),
    );
    let v = c.tcp("z/a", "y/b", 8080);
    c.expect(&v, Deny, DefaultStage, None);
    assert_eq!(v.decisive().unwrap().direction, Direction::Ingress);
}

#[test]
fn networks_peers_match_pod_ips() {
    let c = Cluster::new(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-y-net}
spec:
  priority: 5
  subject: {namespaces: {matchLabels: {team: red}}}
  egress:
  - name: deny-y-net
    action: Deny
    to: [{networks: [10.0.2.0/24]}]
"#,
    );
    c.expect_rule(
        &c.tcp("x/a", "y/a", 80),
        Deny,
        Admin,
        "AdminNetworkPolicy no-y-net",
        Direction::Egress,
        "egress[0]",
    );
    c.expect(
        &c.tcp("x/a", "y/b", 8080),
        Deny,
        Admin,
        Some("AdminNetworkPolicy no-y-net"),
    );
    c.expect(
        &c.pod_to_ip("x/a", "10.0.2.99", 80, TCP),
        Deny,
        Admin,
        Some("AdminNetworkPolicy no-y-net"),
    );
    c.expect(&c.tcp("x/a", "z/a", 80), Allow, DefaultStage, None);
}

#[test]
fn domain_names_star_matches_one_or_more_labels() {
    let c = Cluster::new(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: k8s-docs-only}
spec:
  priority: 5
  subject: {namespaces: {matchLabels: {team: red}}}
  egress:
  - name: allow-k8s
    action: Allow
    to: [{domainNames: ["*.kubernetes.io"]}]
  - name: deny-internet
    action: Deny
    to: [{networks: [0.0.0.0/0]}]
"#,
    );
    let ip = Some("203.0.113.9");
    for name in [
        "docs.kubernetes.io",
        "a.b.kubernetes.io",
        "DOCS.Kubernetes.IO.",
    ] {
        let v = c.pod_to_fqdn("x/a", name, ip, 443, None);
        c.expect_rule(
            &v,
            Allow,
            Admin,
            "AdminNetworkPolicy k8s-docs-only",
            Direction::Egress,
            "egress[0]",
        );
    }
    for name in [
        "kubernetes.io",
        "kubernetes.io.evil.test",
        "notkubernetes.io",
    ] {
        let v = c.pod_to_fqdn("x/a", name, ip, 443, None);
        c.expect_rule(
            &v,
            Deny,
            Admin,
            "AdminNetworkPolicy k8s-docs-only",
            Direction::Egress,
            "egress[1]",
        );
    }
}

#[test]
fn named_port_resolves_on_the_destination_pod() {
    let c = Cluster::new(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-web}
spec:
  priority: 5
  subject: {namespaces: {matchLabels: {team: red}}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
    ports: [{namedPort: web}, {namedPort: dns}]
"#,
    );
    c.expect(
        &c.tcp("y/a", "x/a", 80),
        Deny,
        Admin,
        Some("AdminNetworkPolicy no-web"),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Admin,
        Some("AdminNetworkPolicy no-web"),
    );
    c.expect(&c.tcp("y/a", "x/a", 8080), Allow, DefaultStage, None);
    c.expect(&c.tcp("y/a", "x/b", 80), Allow, DefaultStage, None);
    // The protocol comes from the container port: web is TCP, dns is UDP.
    c.expect(&c.pods("y/a", "x/a", 80, UDP), Allow, DefaultStage, None);
    c.expect(
        &c.pods("y/a", "x/a", 53, UDP),
        Deny,
        Admin,
        Some("AdminNetworkPolicy no-web"),
    );
    c.expect(&c.pods("y/a", "x/a", 53, TCP), Allow, DefaultStage, None);
}

#[test]
fn port_range_and_port_number() {
    let c = Cluster::new(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: ports}
spec:
  priority: 5
  subject: {namespaces: {matchLabels: {team: red}}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
    ports:
    - portRange: {protocol: TCP, start: 8000, end: 9000}
    - portNumber: {protocol: UDP, port: 53}
"#,
    );
    for port in [8000, 8500, 9000] {
        c.expect(
            &c.tcp("y/a", "x/b", port),
            Deny,
            Admin,
            Some("AdminNetworkPolicy ports"),
        );
    }
    for port in [7999, 9001] {
        c.expect(&c.tcp("y/a", "x/b", port), Allow, DefaultStage, None);
    }
    c.expect(&c.pods("y/a", "x/b", 8500, UDP), Allow, DefaultStage, None);
    c.expect(
        &c.pods("y/a", "x/b", 53, UDP),
        Deny,
        Admin,
        Some("AdminNetworkPolicy ports"),
    );
    c.expect(&c.pods("y/a", "x/b", 53, TCP), Allow, DefaultStage, None);
}

#[test]
fn admin_peers_do_not_match_host_network_pods() {
    let c = Cluster::new(&anp_x(
        "deny-a",
        5,
        "Deny",
        "pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: a}}}",
    ));
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Admin,
        Some("AdminNetworkPolicy deny-a"),
    );
    // The host-network pod is labelled app=a but is node traffic.
    c.expect(
        &c.tcp("x/node-agent", "x/b", 8080),
        Allow,
        DefaultStage,
        None,
    );
    // And it is no subject of the ANP on namespace x.
    let v = c.tcp("y/a", "x/node-agent", 80);
    assert_eq!(v.action, Allow);
    assert_eq!(v.ingress.unwrap().reason, Reason::HostNetwork);
}
