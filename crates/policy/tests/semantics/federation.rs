//! Federation semantics: global policies as the highest-precedence tier, `clusters:`
//! selecting the member clusters that enforce a policy, and peers in other clusters.

use super::*;
use palisade_policy::model::{ClusterIdentity, RemoteWorkload};
use std::collections::BTreeMap;

/// Parses ClusterSecurityPolicies meant to be global.
fn globals(
    yaml: &str,
) -> Vec<(
    palisade_policy::model::ClusterSecurityPolicy,
    palisade_policy::Origin,
)> {
    let s = load(yaml);
    assert!(!s.cluster_security_policies.is_empty());
    s.cluster_security_policies
}

fn csp(name: &str, tier: &str, priority: u32, action: &str, from: &str, extra: &str) -> String {
    format!(
        r#"---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {{name: {name}}}
spec:
  tier: {tier}
  priority: {priority}
{extra}  subject: {{namespaceSelector: {{matchLabels: {{team: red}}}}}}
  ingress:
  - action: {action}
    from: [{from}]
"#
    )
}

const BLUE: &str = "{namespaceSelector: {matchLabels: {team: blue}}}";

fn identity(name: &str, labels: &[(&str, &str)]) -> ClusterIdentity {
    ClusterIdentity {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn compile(
    local: &str,
    global: &str,
    cluster: ClusterIdentity,
    remote: Vec<RemoteWorkload>,
) -> Cluster {
    let mut snap = load(local);
    if !global.is_empty() {
        snap.global_policies = globals(global);
    }
    snap.cluster = Some(cluster);
    snap.remote_workloads = remote;
    Cluster {
        engine: Engine::compile_with(&snap, Posture::Allow),
    }
}

#[test]
fn global_policy_comes_before_the_local_security_tier() {
    let c = compile(
        &csp("local-allow-blue", "security", 0, "Allow", BLUE, ""),
        &csp("global-deny-blue", "admin", 900, "Deny", BLUE, ""),
        identity("east", &[]),
        vec![],
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy global-deny-blue"),
    );
    // Without the global revision the local policy decides.
    let c = compile(
        &csp("local-allow-blue", "security", 0, "Allow", BLUE, ""),
        "",
        identity("east", &[]),
        vec![],
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Allow,
        Admin,
        Some("ClusterSecurityPolicy local-allow-blue"),
    );
}

#[test]
fn global_baseline_comes_before_local_baseline_but_after_namespaced_policy() {
    let c = compile(
        &csp("local-base-allow", "baseline", 0, "Allow", BLUE, ""),
        &csp("global-base-deny", "baseline", 900, "Deny", BLUE, ""),
        identity("east", &[]),
        vec![],
    );
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Baseline,
        Some("ClusterSecurityPolicy global-base-deny"),
    );
}

#[test]
fn clusters_selector_picks_the_member_clusters_that_enforce_a_policy() {
    let prod_only = csp(
        "deny-blue-in-prod",
        "security",
        0,
        "Deny",
        BLUE,
        "  clusters: {matchLabels: {env: prod}}\n",
    );
    let c = compile("", &prod_only, identity("east", &[("env", "prod")]), vec![]);
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy deny-blue-in-prod"),
    );
    let c = compile("", &prod_only, identity("west", &[("env", "dev")]), vec![]);
    c.expect(&c.tcp("y/a", "x/b", 8080), Allow, DefaultStage, None);
    // Every cluster carries its name as a label.
    let by_name = csp(
        "deny-blue-in-west",
        "security",
        0,
        "Deny",
        BLUE,
        "  clusters: {matchLabels: {palisade.dev/cluster: west}}\n",
    );
    let c = compile("", &by_name, identity("west", &[]), vec![]);
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy deny-blue-in-west"),
    );
    let c = compile("", &by_name, identity("east", &[]), vec![]);
    c.expect(&c.tcp("y/a", "x/b", 8080), Allow, DefaultStage, None);
}

fn remote(cluster: &str, ns: &str, name: &str, app: &str, ip: &str) -> RemoteWorkload {
    RemoteWorkload {
        cluster: cluster.into(),
        namespace: ns.into(),
        name: name.into(),
        labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        namespace_labels: BTreeMap::from([("team".to_string(), "ml".to_string())]),
        ips: vec![ip.into()],
    }
}

fn from_ip(c: &Cluster, ip: &str, to: &str, port: u16) -> Verdict {
    let src = c.engine.endpoint_for_ip(ip.parse().unwrap());
    c.engine.verdict(&Flow {
        src,
        dst: Endpoint::Pod(c.pod(to)),
        port,
        protocol: Protocol::TCP,
        http: None,
    })
}

#[test]
fn peers_in_another_cluster_are_selected_exactly() {
    let policy = r#"
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: trainer-from-east}
spec:
  tier: security
  subject: {namespaceSelector: {matchLabels: {team: red}}}
  ingress:
  - action: Allow
    from:
    - cluster: east
      namespaceSelector: {matchLabels: {team: ml}}
      podSelector: {matchLabels: {app: trainer}}
  - action: Deny
    from: [{ipBlock: {cidr: 0.0.0.0/0}}]
"#;
    let workloads = vec![
        remote("east", "ml", "trainer-0", "trainer", "10.9.0.5"),
        remote("east", "ml", "notebook-0", "notebook", "10.9.0.6"),
        remote("south", "ml", "trainer-0", "trainer", "10.8.0.5"),
    ];
    let c = compile("", policy, identity("west", &[]), workloads);
    // The remote trainer is a pod of the engine (known by its IP) and is allowed...
    assert!(matches!(
        c.engine.endpoint_for_ip("10.9.0.5".parse().unwrap()),
        Endpoint::Pod(_)
    ));
    c.expect(
        &from_ip(&c, "10.9.0.5", "x/b", 8080),
        Allow,
        Admin,
        Some("ClusterSecurityPolicy trainer-from-east"),
    );
    // ...its neighbour with other labels, and a trainer in another cluster, are not.
    for ip in ["10.9.0.6", "10.8.0.5"] {
        c.expect(
            &from_ip(&c, ip, "x/b", 8080),
            Deny,
            Admin,
            Some("ClusterSecurityPolicy trainer-from-east"),
        );
    }
}

#[test]
fn selectors_without_cluster_never_match_remote_pods() {
    let policy = csp(
        "deny-all-local-ns",
        "security",
        0,
        "Deny",
        "{namespaceSelector: {}}",
        "",
    );
    let c = compile(
        "",
        &policy,
        identity("west", &[]),
        vec![remote("east", "x", "a", "a", "10.9.0.7")],
    );
    // A local pod is denied; the remote pod (even in a namespace named x) is not selected.
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Admin,
        Some("ClusterSecurityPolicy deny-all-local-ns"),
    );
    let v = from_ip(&c, "10.9.0.7", "x/b", 8080);
    assert_eq!(v.action, Allow, "{v:#?}");
    // The remote pod's own egress is its cluster's business: not evaluated here.
    assert!(v.egress.is_none(), "{v:#?}");
    // A remote workload claiming this cluster's name is ignored.
    let c = compile(
        "",
        "",
        identity("west", &[]),
        vec![remote("west", "x", "ghost", "a", "10.9.0.8")],
    );
    assert!(matches!(
        c.engine.endpoint_for_ip("10.9.0.8".parse().unwrap()),
        Endpoint::Ip(_)
    ));
}

#[test]
fn a_decision_by_a_global_policy_names_its_federation_revision() {
    let mut snap = load(&csp("local-allow-blue", "baseline", 0, "Allow", BLUE, ""));
    snap.global_policies = globals(&csp("global-deny-blue", "admin", 900, "Deny", BLUE, ""));
    snap.cluster = Some(identity("east", &[]));
    snap.federation_revision = Some(7);
    let engine = Engine::compile_with(&snap, Posture::Allow);
    let c = Cluster { engine };
    let v = c.tcp("y/a", "x/b", 8080);
    let r = c.engine.policy_ref(v.decisive().unwrap()).unwrap();
    assert_eq!(
        (r.name.as_str(), r.federation_revision),
        ("global-deny-blue", Some(7))
    );
    let info = c
        .engine
        .policies()
        .iter()
        .find(|p| p.name == "global-deny-blue")
        .unwrap();
    assert_eq!(info.federation_revision, Some(7));

    // The cluster's own policy never carries one.
    snap.global_policies.clear();
    let c = Cluster {
        engine: Engine::compile_with(&snap, Posture::Allow),
    };
    let v = c.tcp("y/a", "x/b", 8080);
    let r = c.engine.policy_ref(v.decisive().unwrap()).unwrap();
    assert_eq!(
        (r.name.as_str(), r.federation_revision),
        ("local-allow-blue", None)
    );
}
