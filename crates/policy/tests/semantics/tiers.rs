//! ClusterSecurityPolicy tiers around AdminNetworkPolicy, NetworkPolicy and the baseline,
//! Pass, the zero-trust posture, and explanations of every stage.

use super::*;

/// A ClusterSecurityPolicy on the pods of namespace x with one ingress rule.
fn csp_x(name: &str, tier: &str, priority: u32, action: &str, from: &str) -> String {
    format!(
        r#"---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {{name: {name}}}
spec:
  tier: {tier}
  priority: {priority}
  subject: {{namespaceSelector: {{matchLabels: {{team: red}}}}}}
  ingress:
  - name: {name}-rule
    action: {action}
    from: [{from}]
"#
    )
}

fn anp_x(name: &str, priority: u32, action: &str, from: &str) -> String {
    format!(
        r#"---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: {name}}}
spec:
  priority: {priority}
  subject: {{namespaces: {{matchLabels: {{team: red}}}}}}
  ingress:
  - action: {action}
    from: [{from}]
"#
    )
}

const BLUE: &str = "{namespaceSelector: {matchLabels: {team: blue}}}";
const ALL_NS: &str = "{namespaceSelector: {}}";

#[test]
fn security_tier_comes_before_admin_network_policy() {
    let c = Cluster::new(
        &(csp_x("sec-deny-blue", "security", 900, "Deny", BLUE)
            + &anp_x("anp-allow-all", 0, "Allow", "{namespaces: {}}")),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy sec-deny-blue"),
    );
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Allow,
        Admin,
        Some("AdminNetworkPolicy anp-allow-all"),
    );
}

#[test]
fn admin_tier_interleaves_with_admin_network_policy_by_priority() {
    let policies = csp_x("csp-deny-blue-10", "admin", 10, "Deny", BLUE)
        + &anp_x(
            "anp-allow-a-5",
            5,
            "Allow",
            "{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: a}}}}",
        )
        + &anp_x("anp-allow-all-20", 20, "Allow", "{namespaces: {}}")
        + &csp_x("csp-deny-all-30", "admin", 30, "Deny", ALL_NS);
    let c = Cluster::new(&policies);
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Admin,
        Some("AdminNetworkPolicy anp-allow-a-5"),
    );
    c.expect(
        &c.tcp("y/b", "x/b", 8080),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy csp-deny-blue-10"),
    );
    c.expect(
        &c.tcp("x/c", "x/b", 8080),
        Allow,
        Admin,
        Some("AdminNetworkPolicy anp-allow-all-20"),
    );
}

#[test]
fn baseline_tier_comes_after_networkpolicy_and_before_the_banp() {
    let policies = csp_x("base-deny-blue", "baseline", 10, "Deny", BLUE)
        + &csp_x(
            "base-allow-z",
            "baseline",
            20,
            "Allow",
            "{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}",
        )
        + r#"---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: z}}}]
  - action: Allow
    from: [{namespaces: {}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-blue, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
"#;
    let c = Cluster::new(&policies);
    // Selected by a NetworkPolicy: the baseline tier is never reached.
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy b-from-blue"),
    );
    // Not selected: the baseline tier decides before the BANP.
    c.expect(
        &c.tcp("y/a", "x/c", 8000),
        Deny,
        Baseline,
        Some("ClusterSecurityPolicy base-deny-blue"),
    );
    c.expect(
        &c.tcp("z/a", "x/c", 8000),
        Allow,
        Baseline,
        Some("ClusterSecurityPolicy base-allow-z"),
    );
    // No baseline-tier rule matches: the BANP decides.
    c.expect(
        &c.tcp("w/a", "x/c", 8000),
        Allow,
        Baseline,
        Some("BaselineAdminNetworkPolicy default"),
    );
    // Outside the CSP subject (namespace x), the BANP's own Deny applies.
    c.expect(
        &c.tcp("z/a", "y/b", 8080),
        Deny,
        Baseline,
        Some("BaselineAdminNetworkPolicy default"),
    );
}

#[test]
fn pass_skips_the_rest_of_its_tier_only() {
    let policies = csp_x("sec-pass-blue", "security", 1, "Pass", BLUE)
        + &csp_x("sec-deny-all", "security", 2, "Deny", ALL_NS)
        + &anp_x(
            "anp-allow-blue",
            50,
            "Allow",
            "{namespaces: {matchLabels: {team: blue}}}",
        )
        + r#"---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - action: Allow
    from: [{namespaces: {}}]
"#;
    let c = Cluster::new(&policies);
    // Security Pass skips the security-tier Deny; the admin tier then allows.
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Admin,
        Some("AdminNetworkPolicy anp-allow-blue"),
    );
    // Not passed: the security-tier Deny.
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy sec-deny-all"),
    );
    // The security tier does not apply to y's pods; the baseline tier does not either, so the
    // BANP's Allow decides.
    c.expect(
        &c.tcp("z/a", "y/b", 8080),
        Allow,
        Baseline,
        Some("BaselineAdminNetworkPolicy default"),
    );
}

#[test]
fn baseline_pass_hands_over_to_the_banp() {
    let policies = csp_x("admin-pass-all", "admin", 1, "Pass", ALL_NS)
        + &csp_x(
            "base-pass-z",
            "baseline",
            1,
            "Pass",
            "{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}",
        )
        + &csp_x("base-deny-all", "baseline", 2, "Deny", ALL_NS)
        + r#"---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - action: Allow
    from: [{namespaces: {}}]
"#;
    let c = Cluster::new(&policies);
    c.expect(
        &c.tcp("z/a", "x/b", 8080),
        Allow,
        Baseline,
        Some("BaselineAdminNetworkPolicy default"),
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Baseline,
        Some("ClusterSecurityPolicy base-deny-all"),
    );
}

#[test]
fn cluster_policy_pod_selector_peers_span_every_namespace() {
    let c = Cluster::new(&csp_x(
        "deny-db",
        "admin",
        1,
        "Deny",
        "{podSelector: {matchLabels: {tier: db}}}",
    ));
    c.expect(
        &c.tcp("y/b", "x/a", 80),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy deny-db"),
    );
    c.expect(
        &c.tcp("x/b", "x/a", 80),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy deny-db"),
    );
    c.expect(&c.tcp("y/a", "x/a", 80), Allow, DefaultStage, None);
}

#[test]
fn zero_trust_posture_denies_what_no_policy_allows() {
    let policies = r#"
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
metadata: {name: b-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
"#;
    let c = Cluster::with_posture(policies, Posture::Deny);
    c.expect(
        &c.tcp("x/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy b-from-a"),
    );
    // Unselected on both sides.
    let v = c.tcp("y/a", "y/b", 8080);
    c.expect(&v, Deny, DefaultStage, None);
    assert_eq!(v.egress.unwrap().reason, Reason::Posture);
    assert_eq!(v.decisive().unwrap().direction, Direction::Egress);
    // Egress allowed by policy, ingress unselected.
    let v = c.tcp("x/a", "x/b", 8080);
    assert!(v.egress.unwrap().allowed && v.ingress.unwrap().allowed);
    let v = c.pod_to_ip("y/a", "8.8.8.8", 53, UDP);
    c.expect(&v, Deny, DefaultStage, None);
    // The same policies under the Kubernetes default allow.
    let k = Cluster::new(policies);
    k.expect(&k.tcp("y/a", "y/b", 8080), Allow, DefaultStage, None);

    // The posture set by a PalisadeConfig is the one `Engine::compile` uses.
    let snap = load(&format!(
        "{policies}---\napiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {{name: local}}\nspec:\n  defaultPosture: deny\n"
    ));
    assert_eq!(snap.posture(), Posture::Deny);
    let c = Cluster {
        engine: Engine::compile(&snap),
    };
    c.expect(&c.tcp("y/a", "y/b", 8080), Deny, DefaultStage, None);
    c.expect(
        &c.tcp("x/a", "x/b", 8080),
        Allow,
        Namespace,
        Some("NetworkPolicy b-from-a"),
    );
    let v = c.tcp("x/a", "x/c", 8000);
    c.expect_rule(
        &v,
        Deny,
        Namespace,
        "NetworkPolicy a-to-b",
        Direction::Egress,
        "default",
    );
}

#[test]
fn explain_mentions_every_stage() {
    let policies = anp_x(
        "pass-blue",
        10,
        "Pass",
        "{namespaces: {matchLabels: {team: blue}}}",
    ) + r#"---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-blue, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {matchLabels: {team: blue}}}]
"#;
    let c = Cluster::new(&policies);
    let flow = |from: &str, to: &str| Flow {
        src: Endpoint::Pod(c.pod(from)),
        dst: Endpoint::Pod(c.pod(to)),
        port: 8080,
        protocol: TCP,
        http: None,
    };
    // Admin Pass → NetworkPolicy allows → allowed.
    let e = c.engine.explain(&flow("y/a", "x/b"));
    assert_eq!(e.verdict, Allow);
    assert!(
        e.summary.contains("AdminNetworkPolicy pass-blue"),
        "{}",
        e.summary
    );
    assert!(e.summary.contains("Pass (priority 10)"), "{}", e.summary);
    assert!(
        e.summary.contains("NetworkPolicy x/b-from-blue"),
        "{}",
        e.summary
    );
    assert!(e.summary.contains("allows"), "{}", e.summary);
    assert!(e.summary.ends_with("allowed"), "{}", e.summary);
    let outcomes: Vec<(Direction, Stage, &str)> = e
        .steps
        .iter()
        .map(|s| (s.direction, s.stage, s.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Direction::Egress, Namespace, "not-selected"),
            (Direction::Egress, DefaultStage, "default-allow"),
            (Direction::Ingress, Admin, "pass"),
            (Direction::Ingress, Namespace, "allow"),
        ]
    );
    assert_eq!(e.policy.unwrap().name, "b-from-blue");
    // Admin Pass → not isolated → Baseline deny → denied.
    let e = c.engine.explain(&flow("y/a", "x/c"));
    assert_eq!(e.verdict, Deny);
    assert!(e.summary.contains("Pass"), "{}", e.summary);
    assert!(
        e.summary
            .contains("no NetworkPolicy or SecurityPolicy selects x/c for ingress"),
        "{}",
        e.summary
    );
    assert!(
        e.summary.contains("BaselineAdminNetworkPolicy default"),
        "{}",
        e.summary
    );
    assert!(e.summary.ends_with("denied"), "{}", e.summary);
    assert_eq!(e.policy.unwrap().stage, Baseline);
    // Isolated with no allowing rule → denied.
    let e = c.engine.explain(&flow("z/a", "x/b"));
    assert!(
        e.summary
            .contains("x/b is selected by NetworkPolicy x/b-from-blue and no rule allows"),
        "{}",
        e.summary
    );
    assert!(e.summary.ends_with("denied"), "{}", e.summary);
    // The default posture, both ways.
    let e = c.engine.explain(&flow("z/a", "y/b"));
    assert!(
        e.summary.contains("default posture allows"),
        "{}",
        e.summary
    );
    assert!(e.policy.is_none());
    let d = Cluster::with_posture("", Posture::Deny);
    let e = d.engine.explain(&Flow {
        src: Endpoint::Pod(d.pod("z/a")),
        dst: Endpoint::Pod(d.pod("y/b")),
        port: 80,
        protocol: TCP,
        http: None,
    });
    assert_eq!(e.verdict, Deny);
    assert!(
        e.summary.contains("default posture denies (zero trust)"),
        "{}",
        e.summary
    );
    assert!(e.summary.ends_with("denied"), "{}", e.summary);
}
