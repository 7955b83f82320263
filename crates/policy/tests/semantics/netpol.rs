//! `networking.k8s.io/v1 NetworkPolicy`, as upstream defines it: which pods are isolated
//! in which direction, and which peers the selectors mean.

use super::*;

#[test]
fn isolation_only_in_the_selected_direction() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-ingress, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
"#,
    );
    let v = c.tcp("x/a", "x/b", 8080);
    c.expect_rule(
        &v,
        Deny,
        Namespace,
        "NetworkPolicy b-ingress",
        Direction::Ingress,
        "default",
    );
    assert_eq!(v.ingress.unwrap().reason, Reason::NoRuleAllows);
    // x/b's egress is not isolated.
    c.expect(&c.tcp("x/b", "x/a", 80), Allow, DefaultStage, None);
    // Pods the policy does not select are not isolated.
    c.expect(&c.tcp("x/a", "x/c", 8000), Allow, DefaultStage, None);
}

#[test]
fn policy_types_default_to_ingress_when_there_are_no_egress_rules() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: a}}
"#,
    );
    c.expect_rule(
        &c.tcp("x/a", "x/b", 8080),
        Allow,
        Namespace,
        "NetworkPolicy b-from-a",
        Direction::Ingress,
        "ingress[0]",
    );
    c.expect(
        &c.tcp("x/c", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy b-from-a"),
    );
    // Egress of x/b stays open: the defaulted policyTypes is [Ingress].
    c.expect(&c.tcp("x/b", "x/c", 8000), Allow, DefaultStage, None);
    c.expect(
        &c.pod_to_ip("x/b", "8.8.8.8", 53, UDP),
        Allow,
        DefaultStage,
        None,
    );
}

#[test]
fn policy_types_default_includes_egress_when_egress_rules_exist() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-to-c, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  egress:
  - to:
    - podSelector: {matchLabels: {app: c}}
"#,
    );
    c.expect_rule(
        &c.tcp("x/b", "x/c", 8000),
        Allow,
        Namespace,
        "NetworkPolicy b-to-c",
        Direction::Egress,
        "egress[0]",
    );
    c.expect_rule(
        &c.tcp("x/b", "x/a", 80),
        Deny,
        Namespace,
        "NetworkPolicy b-to-c",
        Direction::Egress,
        "default",
    );
    // Ingress is isolated too (Ingress is always among the defaulted types), with no rules.
    c.expect_rule(
        &c.tcp("x/c", "x/b", 8080),
        Deny,
        Namespace,
        "NetworkPolicy b-to-c",
        Direction::Ingress,
        "default",
    );
}

#[test]
fn explicit_egress_policy_type_without_rules_denies_all_egress() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-no-egress, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Egress]
"#,
    );
    c.expect_rule(
        &c.tcp("x/b", "x/a", 80),
        Deny,
        Namespace,
        "NetworkPolicy b-no-egress",
        Direction::Egress,
        "default",
    );
    c.expect(
        &c.pod_to_ip("x/b", "8.8.8.8", 53, UDP),
        Deny,
        Namespace,
        Some("NetworkPolicy b-no-egress"),
    );
    c.expect(
        &c.pods("x/b", "y/a", 9000, SCTP),
        Deny,
        Namespace,
        Some("NetworkPolicy b-no-egress"),
    );
    // Ingress is not isolated: policyTypes names only Egress.
    c.expect(&c.tcp("x/a", "x/b", 8080), Allow, DefaultStage, None);
}

#[test]
fn empty_pod_selector_selects_every_pod_of_the_namespace_only() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
"#,
    );
    for to in ["x/a", "x/b", "x/c"] {
        c.expect(
            &c.tcp("y/a", to, 80),
            Deny,
            Namespace,
            Some("NetworkPolicy deny-all"),
        );
        c.expect(
            &c.tcp("z/a", to, 80),
            Deny,
            Namespace,
            Some("NetworkPolicy deny-all"),
        );
    }
    // Other namespaces are untouched.
    c.expect(&c.tcp("y/a", "y/b", 8080), Allow, DefaultStage, None);
    c.expect(&c.tcp("x/a", "z/a", 80), Allow, DefaultStage, None);
}

#[test]
fn pod_and_namespace_selector_in_one_peer_are_anded() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-blue-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
      podSelector: {matchLabels: {app: a}}
"#,
    );
    c.expect_rule(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Namespace,
        "NetworkPolicy from-blue-a",
        Direction::Ingress,
        "ingress[0]",
    );
    // Namespace matches but the pod does not.
    c.expect(
        &c.tcp("y/b", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-blue-a"),
    );
    // Pod matches but the namespace does not (including the policy's own namespace).
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-blue-a"),
    );
    c.expect(
        &c.tcp("x/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-blue-a"),
    );
}

#[test]
fn two_peers_are_ored() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-blue-or-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
    - podSelector: {matchLabels: {app: a}}
"#,
    );
    c.expect(
        &c.tcp("y/b", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-blue-or-a"),
    );
    c.expect(
        &c.tcp("x/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-blue-or-a"),
    );
    c.expect(
        &c.tcp("x/c", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-blue-or-a"),
    );
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-blue-or-a"),
    );
}

#[test]
fn pod_selector_alone_means_the_policys_namespace() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-local-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: a}}
"#,
    );
    c.expect(
        &c.tcp("x/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-local-a"),
    );
    for from in ["y/a", "z/a", "w/a"] {
        c.expect(
            &c.tcp(from, "x/b", 8080),
            Deny,
            Namespace,
            Some("NetworkPolicy from-local-a"),
        );
    }
}

#[test]
fn empty_namespace_selector_means_every_namespace() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-all-pods, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - namespaceSelector: {}
"#,
    );
    for from in ["x/a", "x/c", "y/a", "y/b", "z/a", "w/a"] {
        c.expect(
            &c.tcp(from, "x/b", 8080),
            Allow,
            Namespace,
            Some("NetworkPolicy from-all-pods"),
        );
    }
    // Pods only: an address outside the cluster is no pod of any namespace.
    c.expect(
        &c.ip_to_pod("203.0.113.7", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-all-pods"),
    );
}

#[test]
fn host_network_pods_are_not_subject_to_policy_and_not_matched_by_selectors() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-any-a, namespace: y}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector: {matchLabels: {app: a}}
"#,
    );
    // The deny-all in x does not apply to the host-network pod, either way.
    let v = c.tcp("y/a", "x/node-agent", 80);
    assert_eq!(v.action, Allow);
    assert_eq!(v.ingress.unwrap().reason, Reason::HostNetwork);
    let v = c.tcp("x/node-agent", "z/a", 80);
    assert_eq!(v.action, Allow);
    assert_eq!(v.egress.unwrap().reason, Reason::HostNetwork);
    // app=a in any namespace may reach y/b, but not the host-network pod labelled app=a.
    c.expect(
        &c.tcp("z/a", "y/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-any-a"),
    );
    let v = c.tcp("x/node-agent", "y/b", 8080);
    c.expect_rule(
        &v,
        Deny,
        Namespace,
        "NetworkPolicy from-any-a",
        Direction::Ingress,
        "default",
    );
    // And a pod of x is held by deny-all.
    c.expect(
        &c.tcp("x/a", "y/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy deny-all"),
    );
}

#[test]
fn match_expressions_operators() {
    // (operator, values, sources allowed, sources denied) for sources y/a (tier=web),
    // y/b (tier=db), z/a and x/c (no tier).
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("In", "[web]", &["y/a"], &["y/b", "z/a", "x/c"]),
        ("NotIn", "[db]", &["y/a", "z/a", "x/c"], &["y/b"]),
        ("Exists", "[]", &["y/a", "y/b"], &["z/a", "x/c"]),
        ("DoesNotExist", "[]", &["z/a", "x/c"], &["y/a", "y/b"]),
    ];
    for (op, values, allowed, denied) in cases {
        let c = Cluster::new(&format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: expr, namespace: x}}
spec:
  podSelector:
    matchExpressions:
    - {{key: app, operator: In, values: [b]}}
  ingress:
  - from:
    - namespaceSelector: {{}}
      podSelector:
        matchExpressions:
        - {{key: tier, operator: {op}, values: {values}}}
"#
        ));
        for from in *allowed {
            let v = c.tcp(from, "x/b", 8080);
            assert_eq!(v.action, Allow, "{op}: {from} → x/b");
            c.expect(&v, Allow, Namespace, Some("NetworkPolicy expr"));
        }
        for from in *denied {
            let v = c.tcp(from, "x/b", 8080);
            assert_eq!(v.action, Deny, "{op}: {from} → x/b");
            c.expect(&v, Deny, Namespace, Some("NetworkPolicy expr"));
        }
    }
}

#[test]
fn namespaces_carry_their_name_label() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-z-and-w, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: In, values: [z, w]}
"#,
    );
    // z is declared without labels; w has no Namespace object at all.
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-z-and-w"),
    );
    c.expect(
        &c.tcp("w/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy from-z-and-w"),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-z-and-w"),
    );
    c.expect(
        &c.tcp("x/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy from-z-and-w"),
    );
}

#[test]
fn any_policy_that_allows_is_enough() {
    let c = Cluster::new(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
"#,
    );
    c.expect(
        &c.tcp("y/b", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy b-from-y"),
    );
    c.expect(
        &c.tcp("y/b", "x/a", 80),
        Deny,
        Namespace,
        Some("NetworkPolicy deny-all"),
    );
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy b-from-y"),
    );
}

/// A finished pod (phase `Succeeded` or `Failed`) keeps its IP in status after the kubelet
/// has released it, and a new pod may hold it already: the address is the running pod's,
/// and a rule naming the finished pod opens nothing for it. On the old code the pod listed
/// last owned the address whatever its phase, so a rule for a finished job let its
/// address's new holder in.
#[test]
fn a_finished_pod_holds_no_address() {
    let c = Cluster::new(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: new, namespace: x, labels: {app: new}}
spec: {containers: [{name: c}]}
status: {phase: Running, podIP: 10.0.9.9}
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: x, labels: {app: done}}
spec: {containers: [{name: c}]}
status: {phase: Succeeded, podIP: 10.0.9.9}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-done, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: done}}}]
"#,
    );
    let ip = "10.0.9.9".parse().unwrap();
    assert_eq!(c.engine.pod_by_ip(ip), Some(c.pod("x/new")));
    assert!(c.engine.pods()[c.pod("x/done") as usize].ips.is_empty());
    let from_the_address = c.engine.verdict(&Flow {
        src: c.engine.endpoint_for_ip(ip),
        dst: Endpoint::Pod(c.pod("x/b")),
        port: 8080,
        protocol: TCP,
        http: None,
    });
    c.expect(
        &from_the_address,
        Deny,
        Namespace,
        Some("NetworkPolicy b-from-done"),
    );
}
