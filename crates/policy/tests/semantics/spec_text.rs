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

/// Warnings `policies` gets when loaded beside the fixture.
fn load_warnings(policies: &str) -> Vec<String> {
    let mut m = Manifests::new();
    m.add_file("workloads.yaml", &workloads());
    m.add_file("policies.yaml", policies);
    m.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
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

/// An engine for one node-aware cluster: namespace x with pod `web` on node n1, a
/// host-network `agent` on n1 and another, `far-agent`, on n2, and pod `web3` on node n3
/// (192.168.1.3, known only as its `status.hostIP`); `policies` beside them.
fn nodes_cluster(policies: &str) -> Engine {
    let mut y = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n");
    for (name, node, ip, host) in [
        ("web", "n1", "10.0.1.5", false),
        ("agent", "n1", "192.168.1.1", true),
        ("far-agent", "n2", "192.168.1.2", true),
        ("web3", "n3", "10.0.3.5", false),
    ] {
        let host_ip = format!("192.168.1.{}", &node[1..]);
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {{app: {name}}}}}\n\
             spec:\n  nodeName: {node}\n  hostNetwork: {host}\n  containers: [{{name: main}}]\n\
             status:\n  podIP: {ip}\n  hostIP: {host_ip}\n"
        ));
    }
    let mut m = Manifests::new();
    m.add_file("workloads.yaml", &y);
    m.add_file("policies.yaml", policies);
    let errors: Vec<String> = m
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    Engine::compile_with(&Snapshot::from_manifests(&m), Posture::Allow)
}

/// NetworkPolicySpec.ingress: "Traffic is allowed to a pod if there are no
/// NetworkPolicies selecting the pod (and cluster policy otherwise allows the traffic), OR
/// if the traffic source is the pod's local node, OR if the traffic matches at least one
/// ingress rule". A default-deny policy used to refuse the kubelet's own node too (the
/// agent's forward-hook ruleset never sees node-originated traffic, so the kernel let it
/// through while `analyze`/`explain` said denied).
#[test]
fn ingress_from_the_pods_own_node_is_allowed_by_networkpolicy() {
    let e = nodes_cluster(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
"#,
    );
    let pod = |k: &str| e.pod_by_key(k).unwrap();
    let flow = |src: Endpoint<'static>| Flow {
        src,
        dst: Endpoint::Pod(pod("x/web")),
        port: 8080,
        protocol: TCP,
        http: None,
    };
    for src in [
        Endpoint::Pod(pod("x/agent")),
        Endpoint::Ip("192.168.1.1".parse().unwrap()),
    ] {
        let v = e.verdict(&flow(src));
        assert_eq!(v.action, Allow, "{v:#?}");
        let i = v.ingress.unwrap();
        assert_eq!((i.stage, i.reason), (Namespace, Reason::LocalNode));
    }
    // Another node is not the pod's local node: the policy decides.
    for src in [
        Endpoint::Pod(pod("x/far-agent")),
        Endpoint::Ip("192.168.1.2".parse().unwrap()),
        Endpoint::Ip("10.9.9.9".parse().unwrap()),
    ] {
        let v = e.verdict(&flow(src));
        assert_eq!(v.action, Deny, "{v:#?}");
        assert_eq!(v.ingress.unwrap().reason, Reason::NoRuleAllows);
    }
    // A node address known only from `status.hostIP` is local to the pods on that node.
    let to3 = |ip: &str| Flow {
        src: Endpoint::Ip(ip.parse().unwrap()),
        dst: Endpoint::Pod(pod("x/web3")),
        port: 8080,
        protocol: TCP,
        http: None,
    };
    assert_eq!(e.verdict(&to3("192.168.1.3")).action, Allow);
    assert_eq!(e.verdict(&to3("192.168.1.1")).action, Deny);
    assert_eq!(
        e.verdict(&flow(Endpoint::Ip("192.168.1.3".parse().unwrap())))
            .action,
        Deny
    );
    // The explanation says why.
    let steps = e.explain(&flow(Endpoint::Pod(pod("x/agent"))));
    assert!(format!("{steps:?}").contains("local-node"), "{steps:#?}");
}

/// `ValidateNetworkPolicySpec`: "may not specify more than two policyTypes" is refused; a
/// repeated entry is not (the list is atomic), so a cluster's own object must load. A
/// duplicate used to be an error, which kept the whole set from loading.
#[test]
fn policy_types_may_repeat_but_not_exceed_two() {
    let np = |types: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\n\
             spec:\n  podSelector: {{}}\n  policyTypes: {types}\n"
        )
    };
    let twice = np("[Ingress, Ingress]");
    assert_eq!(load_errors(&twice), Vec::<String>::new());
    assert!(
        load_warnings(&twice)
            .iter()
            .any(|w| w.contains("duplicate policy type")),
        "{:?}",
        load_warnings(&twice)
    );
    let c = Cluster::new(&twice);
    c.expect(
        &c.tcp("y/a", "x/b", 8080),
        Deny,
        Namespace,
        Some("NetworkPolicy p"),
    );
    c.expect(&c.tcp("x/b", "y/a", 80), Allow, DefaultStage, None);
    let three = load_errors(&np("[Ingress, Egress, Ingress]"));
    assert!(
        three
            .iter()
            .any(|e| e.contains("may not specify more than two policyTypes")),
        "{three:?}"
    );
}

fn anp_egress(rule: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {{name: a}}\n\
         spec:\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  egress:\n  - {rule}\n"
    )
}

/// AdminNetworkPolicyEgressRule's CEL rule: "networks/nodes/domainNames peer cannot be set
/// with namedPorts since there are no namedPorts for networks/nodes/domainNames". The API
/// server refuses such a rule; Palisade used to accept it.
#[test]
fn named_ports_cannot_go_with_networks_nodes_or_domain_names() {
    for peer in [
        "{networks: [10.0.0.0/8]}",
        "{nodes: {}}",
        "{domainNames: [example.com]}",
    ] {
        let errs = load_errors(&anp_egress(&format!(
            "{{action: Allow, to: [{{namespaces: {{}}}}, {peer}], ports: [{{portNumber: {{port: 80}}}}, {{namedPort: web}}]}}"
        )));
        assert!(
            errs.iter()
                .any(|e| e.contains("cannot be set with namedPorts")),
            "{peer}: {errs:?}"
        );
    }
    // Pods and namespaces peers take named ports.
    let ok = anp_egress("{action: Allow, to: [{namespaces: {}}], ports: [{namedPort: web}]}");
    assert_eq!(load_errors(&ok), Vec::<String>::new());
}

/// BaselineAdminNetworkPolicyEgressPeer has namespaces, pods, nodes and networks: no
/// domainNames (an unknown field the API server drops or, strictly, refuses). Palisade used
/// to accept and enforce it.
#[test]
fn a_baseline_egress_peer_has_no_domain_names() {
    let errs = load_errors(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  egress:
  - action: Allow
    to: [{domainNames: [example.com]}]
"#,
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("BaselineAdminNetworkPolicy egress peer has no domainNames")),
        "{errs:?}"
    );
}

/// DomainName: "'*' may only be specified as a prefix" and the CRD pattern
/// `^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`:
/// at least two labels after the optional `*.`, each starting and ending with a letter or
/// digit. `localhost`, `*.com` and `_dmarc.example.com` used to be accepted.
#[test]
fn domain_names_follow_the_crd_pattern() {
    for bad in ["localhost", "*.com", "_dmarc.example.com", "example_.com"] {
        let errs = load_errors(&anp_egress(&format!(
            "{{action: Allow, to: [{{domainNames: ['{bad}']}}]}}"
        )));
        assert!(
            errs.iter().any(|e| e.contains("domainNames[0]")),
            "{bad}: {errs:?}"
        );
    }
    for good in [
        "kubernetes.io",
        "*.kubernetes.io",
        "blog.kubernetes.io.",
        "my_host.example.com",
    ] {
        let text = anp_egress(&format!(
            "{{action: Allow, to: [{{domainNames: ['{good}']}}]}}"
        ));
        assert_eq!(load_errors(&text), Vec::<String>::new(), "{good}");
    }
}

/// AdminNetworkPolicyEgressPeer.domainNames: "DomainNames is only supported for ALLOW
/// rules." Not enforced by the API server, so a warning, not an error.
#[test]
fn domain_names_in_a_deny_rule_are_warned_about() {
    let text = anp_egress("{action: Deny, to: [{domainNames: [example.com]}]}");
    assert_eq!(load_errors(&text), Vec::<String>::new());
    let w = load_warnings(&text);
    assert!(
        w.iter()
            .any(|w| w.contains("only supported for Allow rules")),
        "{w:?}"
    );
}

/// AdminNetworkPolicyEgressPeer.nodes: "It selects the nodeIPs [...]. This field follows
/// standard label selector semantics; if present but empty, it selects all Nodes." A
/// `nodes` peer used to match nothing at all, so `Deny` to `nodes: {}` let traffic to the
/// nodes (host-network pods, the nodes' addresses) through. Without Node objects a
/// labelled selector matches nothing, and `palisade check` says so.
#[test]
fn an_empty_nodes_peer_selects_every_known_node_address() {
    let policy = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-nodes}
spec:
  priority: 5
  subject: {namespaces: {}}
  egress:
  - name: deny-nodes
    action: Deny
    to: [{nodes: {}}]
"#;
    let e = nodes_cluster(policy);
    for dst in [
        Endpoint::Pod(e.pod_by_key("x/agent").unwrap()),
        Endpoint::Ip("192.168.1.2".parse().unwrap()),
        // Known only as a pod's `status.hostIP`.
        Endpoint::Ip("192.168.1.3".parse().unwrap()),
    ] {
        let v = from_web(&e, dst, 10250);
        assert_eq!(v.action, Deny, "{v:#?}");
        assert_eq!(v.egress.unwrap().stage, Admin);
    }
    // Not a node address.
    assert_eq!(
        from_web(&e, Endpoint::Ip("10.9.9.9".parse().unwrap()), 10250).action,
        Allow
    );
    // A labelled selector with no Node objects to match: warned about, matches nothing.
    let labelled = policy.replace("nodes: {}", "nodes: {matchLabels: {role: control}}");
    let w = lint_warnings(&labelled);
    assert!(
        w.iter()
            .any(|w| w.contains("matches no address") && w.contains("no Node objects")),
        "{w:?}"
    );
    let e = nodes_cluster(&labelled);
    let agent = Endpoint::Pod(e.pod_by_key("x/agent").unwrap());
    assert_eq!(from_web(&e, agent, 10250).action, Allow);
}

/// The verdict for TCP from `x/web` of [`nodes_cluster`] to `dst` on `port`.
fn from_web(e: &Engine, dst: Endpoint<'_>, port: u16) -> palisade_policy::Verdict {
    e.verdict(&Flow {
        src: Endpoint::Pod(e.pod_by_key("x/web").unwrap()),
        dst,
        port,
        protocol: TCP,
        http: None,
    })
}

/// Lint warnings (`palisade check`) for `policies` beside the node-aware cluster.
fn lint_warnings(policies: &str) -> Vec<String> {
    let mut m = Manifests::new();
    m.add_file("policies.yaml", policies);
    palisade_policy::lint::lint(&Snapshot::from_manifests(&m))
        .iter()
        .map(|d| d.to_string())
        .collect()
}

/// Two Node objects for [`nodes_cluster`]: n1 (`role: control`, an InternalIP, an
/// ExternalIP and a Hostname entry) and n2 (`role: worker`); n3 has none.
const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {role: control, kubernetes.io/hostname: n1}}
status:
  addresses:
  - {type: InternalIP, address: 192.168.1.1}
  - {type: ExternalIP, address: 203.0.113.1}
  - {type: Hostname, address: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {role: worker, kubernetes.io/hostname: n2}}
status:
  addresses: [{type: InternalIP, address: 192.168.1.2}]
---
"#;

/// AdminNetworkPolicyEgressPeer.nodes: "Nodes defines a way to select a set of nodes in the
/// cluster (based on the node's labels). It selects the nodeIPs as the peer type by matching
/// on the IPs present in the node.Status.Addresses field of the node." A labelled selector
/// used to match nothing (Node objects were not read), so `Deny` to the control-plane nodes
/// let everything through.
#[test]
fn a_nodes_selector_selects_the_addresses_of_the_matching_node_objects() {
    let policy = format!(
        "{NODES}{}",
        r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: no-control-plane}
spec:
  priority: 5
  subject: {namespaces: {}}
  egress:
  - name: deny-control
    action: Deny
    to: [{nodes: {matchExpressions: [{key: role, operator: In, values: [control]}]}}]
"#
    );
    let e = nodes_cluster(&policy);
    let verdict = |dst: Endpoint<'static>| from_web(&e, dst, 6443);
    for dst in [
        // n1's InternalIP, held by a host-network pod there.
        Endpoint::Pod(e.pod_by_key("x/agent").unwrap()),
        Endpoint::Ip("192.168.1.1".parse().unwrap()),
        // n1's ExternalIP: only the Node object knows it.
        Endpoint::Ip("203.0.113.1".parse().unwrap()),
    ] {
        let v = verdict(dst);
        assert_eq!(v.action, Deny, "{v:#?}");
        assert_eq!(v.egress.unwrap().stage, Admin);
    }
    // n2 (a worker) and n3 (no Node object) are not selected.
    for ip in ["192.168.1.2", "192.168.1.3"] {
        assert_eq!(
            verdict(Endpoint::Ip(ip.parse().unwrap())).action,
            Allow,
            "{ip}"
        );
    }
    assert!(!lint_warnings(&policy)
        .iter()
        .any(|w| w.contains("matches no address")),);
    // `nodes: {}` now includes addresses only Node objects carry.
    let all = policy.replace(
        "{matchExpressions: [{key: role, operator: In, values: [control]}]}",
        "{}",
    );
    let e = nodes_cluster(&all);
    let v = from_web(&e, Endpoint::Ip("203.0.113.1".parse().unwrap()), 6443);
    assert_eq!(v.action, Deny);
    // A selector no Node matches is warned about.
    let w = lint_warnings(&policy.replace("values: [control]", "values: [gpu]"));
    assert!(
        w.iter()
            .any(|w| w.contains("matches no address") && w.contains("none of the 2 Node objects")),
        "{w:?}"
    );
}

/// What the API server stores must be enforced, not refused: a refused object is left out,
/// and a left-out deny policy opens what it closed. NetworkPolicy `ipBlock.cidr` is parsed
/// by the API server with `ParseCIDRSloppy` unless strict IP validation is on (1.33+, off by
/// default): "010.0.0.0/8" is stored and means 10.0.0.0/8 (decimal, not octal). The
/// AdminNetworkPolicy CRD types `namedPort` as a string with no pattern. Both used to be
/// errors, which dropped the whole policy.
#[test]
fn what_the_api_server_stores_is_enforced_leading_zeros_and_any_named_port() {
    let np = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-ten, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 010.000.0.0/8, except: [010.9.0.0/16]}}]
"#;
    assert!(load_errors(np).is_empty(), "{:?}", load_errors(np));
    let w = load_warnings(np);
    assert!(
        w.iter().any(|w| w.contains("read as decimal 10.0.0.0/8")),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.contains("read as decimal 10.9.0.0/16")));
    let c = Cluster::new(np);
    for (ip, allowed) in [("10.1.2.3", true), ("10.9.0.1", false), ("8.1.2.3", false)] {
        let v = c.pod_to_ip("x/a", ip, 443, TCP);
        assert_eq!(v.allowed(), allowed, "{ip}: {v:#?}");
    }
    // ANP networks go through the CRD's CEL isCIDR, which refuses leading zeros.
    let anp = anp_egress("{action: Allow, to: [{networks: [010.0.0.0/8]}]}");
    assert!(!load_errors(&anp).is_empty());

    let anp = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: odd-port-name}
spec:
  priority: 5
  subject: {namespaces: {}}
  egress:
  - {name: deny-web, action: Deny, to: [{namespaces: {}}], ports: [{namedPort: web}, {namedPort: Not_A_Name}]}
"#;
    assert!(load_errors(anp).is_empty(), "{:?}", load_errors(anp));
    assert!(
        load_warnings(anp)
            .iter()
            .any(|w| w.contains("matches none")),
        "{:?}",
        load_warnings(anp)
    );
    // The policy is enforced: its valid named port is denied.
    let c = Cluster::new(anp);
    c.expect(
        &c.tcp("x/a", "y/a", 80),
        Deny,
        Admin,
        Some("AdminNetworkPolicy odd-port-name"),
    );
}

/// AdminNetworkPolicySpec.priority: "If two (or more) policies with the same priority could
/// both match a connection, then the implementation can apply any of the matching policies
/// to the connection, and there is no way for the user to reliably determine which one it
/// will choose." Palisade's choice is deterministic (by name, whatever the file order), and
/// `palisade check` now says so where it matters: policies at one priority over shared pods.
#[test]
fn same_priority_policies_over_shared_pods_go_by_name_and_are_warned_about() {
    let anp = |name: &str, subject: &str, action: &str| {
        format!(
            "---\napiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n\
             metadata: {{name: {name}}}\nspec:\n  priority: 7\n  subject: {subject}\n  ingress:\n  \
             - {{action: {action}, from: [{{namespaces: {{}}}}]}}\n"
        )
    };
    let allow = anp(
        "b-allow",
        "{namespaces: {matchLabels: {team: red}}}",
        "Allow",
    );
    let deny = anp(
        "a-deny",
        "{pods: {namespaceSelector: {matchLabels: {team: red}}, podSelector: {matchLabels: {app: b}}}}",
        "Deny",
    );
    let elsewhere = anp(
        "c-elsewhere",
        "{namespaces: {matchLabels: {team: blue}}}",
        "Allow",
    );
    for policies in [
        format!("{allow}{deny}{elsewhere}"),
        format!("{elsewhere}{deny}{allow}"),
    ] {
        let c = Cluster::new(&policies);
        // x/b is in both subjects: a-deny comes first by name.
        c.expect(
            &c.tcp("y/a", "x/b", 8080),
            Deny,
            Admin,
            Some("AdminNetworkPolicy a-deny"),
        );
        c.expect(
            &c.tcp("y/a", "x/a", 80),
            Allow,
            Admin,
            Some("AdminNetworkPolicy b-allow"),
        );
        let warnings: Vec<String> = palisade_policy::lint::lint(&load(&policies))
            .iter()
            .filter(|d| d.code == "same-priority")
            .map(|d| d.to_string())
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("[AdminNetworkPolicy b-allow]")
                && warnings[0].contains("a-deny first"),
            "{warnings:?}"
        );
    }
}
