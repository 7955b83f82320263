//! The letter of the upstream specifications, one sentence per test: the NetworkPolicy
//! API (`networking.k8s.io/v1` types.go comments and API server validation) and
//! AdminNetworkPolicy / BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`
//! types.go comments and CRD validation). Each test quotes the sentence it checks.

use super::*;

/// Errors (not warnings) `policies` gets when loaded beside the fixture.
fn load_errors(policies: &str) -> Vec<String> {
    let mut m = Manifests::new();
    m.add_file("workloads.yaml", &workloads());
    m.add_file("policies.yaml", policies);
    m.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect()
}

/// NetworkPolicySpec.podSelector: "This field is optional. If it is not specified, it
/// defaults to an empty selector." NetworkPolicy.spec is `+optional` too. Both shapes
/// (what `kubectl get -o yaml` prints for such a policy) used to be refused as a missing
/// field, which kept the whole set from loading.
#[test]
fn a_missing_pod_selector_or_spec_selects_every_pod_of_the_namespace() {
    let without_selector = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  policyTypes: [Ingress]
"#;
    let without_spec = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
"#;
    for policy in [without_selector, without_spec] {
        assert_eq!(load_errors(policy), Vec::<String>::new(), "{policy}");
        let c = Cluster::new(policy);
        for to in ["x/a", "x/b", "x/c"] {
            c.expect_rule(
                &c.tcp("y/a", to, 80),
                Deny,
                Namespace,
                "NetworkPolicy deny-all",
                Direction::Ingress,
                "default",
            );
        }
        // Only the policy's namespace, and only ingress (policyTypes defaults to [Ingress]).
        c.expect(&c.tcp("x/a", "y/b", 8080), Allow, DefaultStage, None);
    }
}
