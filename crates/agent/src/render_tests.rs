//! Rendering checks that need no kernel: what the ruleset holds for policies whose kernel
//! form is easy to get wrong (dual stack, named ports and host-network pods).

use crate::hostfw::NodeService;
use crate::ruleset::{render, RenderOptions, Ruleset};
use palisade_policy::{Endpoint, Engine, Flow, Manifests, Protocol, Snapshot};
use std::collections::BTreeMap;
use std::net::IpAddr;

fn engine(yaml: &str) -> Engine {
    let mut m = Manifests::new();
    m.add_file("t.yaml", yaml);
    assert!(!m.has_errors(), "{:#?}", m.diagnostics);
    Engine::compile(&Snapshot::from_manifests(&m))
}

fn rendered(e: &Engine, local: Vec<u32>, ifs: BTreeMap<IpAddr, String>) -> Ruleset {
    render(
        e,
        &RenderOptions {
            local_pods: local,
            log_denied: false,
            log_allowed: false,
            pod_interfaces: ifs,
            node_services: Vec::new(),
            pod_interface_prefixes: Vec::new(),
        },
    )
}

/// A dual-stack pod isolated by an IPv4-only policy: its IPv6 address is in the ingress
/// map too, its chain allows IPv4 sources only (IPv6 falls to the drop), and its IPv6
/// address is bound to its interface like the IPv4 one.
#[test]
fn ipv4_only_policy_isolates_a_dual_stack_pod_in_both_families() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.0.3}, {ip: "fd00::3"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v4-only, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}]}]
"#;
    let e = engine(yaml);
    let ifs: BTreeMap<IpAddr, String> = [
        ("10.0.0.3".parse().unwrap(), "h0".to_string()),
        ("fd00::3".parse().unwrap(), "h0".to_string()),
    ]
    .into_iter()
    .collect();
    let rs = rendered(&e, vec![0], ifs);
    let entry = |map: &str| -> String {
        let el = rs.sets[map].elements.iter().next().expect(map).clone();
        el.rsplit(' ').next().unwrap().to_string()
    };
    let (c4, c6) = (entry("ingress_4"), entry("ingress_6"));
    assert_eq!(c4, c6, "both families go through the same chain");
    let chain = &rs.chains[&c4];
    assert_eq!(chain.last().map(String::as_str), Some("drop"), "{chain:?}");
    for rule in &chain[..chain.len() - 1] {
        assert!(rule.starts_with("ip saddr 10.0.0.0/8 "), "{rule}");
    }
    let el = |n: &str| rs.sets[n].elements.iter().cloned().collect::<Vec<_>>();
    assert_eq!(el("pod_src_6"), ["\"h0\" . fd00::3"]);
    assert_eq!(el("pod_src_4"), ["\"h0\" . 10.0.0.3"]);
}

/// An egress rule with a named port and no peer (or an ipBlock peer) opens that port on
/// pods declaring the name; a host-network pod's node address is not one of them (the
/// engine denies that flow, so the kernel must too).
#[test]
fn named_ports_do_not_open_host_network_addresses() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {nodeName: n2, containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: exporter, namespace: x, labels: {app: exporter}}
spec: {nodeName: n2, hostNetwork: true, containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
status: {podIP: 192.168.1.5}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-out, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: http}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: http}]
"#;
    let e = engine(yaml);
    let a = e.pod_by_key("x/a").unwrap();
    let rs = rendered(&e, vec![a], BTreeMap::new());
    let rules: Vec<&String> = rs.chains.values().flatten().collect();
    assert!(
        rules
            .iter()
            .any(|r| r.contains("10.0.0.2") && r.contains("dport 8080")),
        "{rules:#?}"
    );
    assert!(
        !rules.iter().any(|r| r.contains("192.168.1.5")),
        "{rules:#?}"
    );
    // The engine agrees: the node address is denied, the pod allowed.
    let flow = |dst| Flow {
        src: Endpoint::Pod(a),
        dst,
        port: 8080,
        protocol: Protocol::TCP,
        http: None,
    };
    let node = e.endpoint_for_ip("192.168.1.5".parse().unwrap());
    assert!(!e.verdict(&flow(node)).allowed());
    let web = Endpoint::Pod(e.pod_by_key("x/web").unwrap());
    assert!(e.verdict(&flow(web)).allowed());
}

/// Connections from a pod to its own node meet the pod's egress policy in `input`, after
/// anti-spoofing and replies, with Palisade's own node services (the DNS proxy here, and
/// whatever a `redirect` sends to it) exempt. On the old code `input` ended at the
/// anti-spoofing jump: an egress-isolated pod reached every service of its node.
#[test]
fn input_holds_pods_to_their_egress_policy_except_palisades_node_services() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: iso, namespace: x, labels: {app: iso}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.0.0.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: iso-out, namespace: x}
spec: {podSelector: {matchLabels: {app: iso}}, policyTypes: [Egress]}
"#;
    let e = engine(yaml);
    let mut services =
        NodeService::from_listen("169.254.1.1:53", &[Protocol::UDP, Protocol::TCP]).unwrap();
    services.extend(NodeService::from_listen("[::]:15001", &[Protocol::TCP]).unwrap());
    let rs = render(
        &e,
        &RenderOptions {
            local_pods: vec![0],
            log_denied: false,
            log_allowed: false,
            pod_interfaces: [("10.0.0.1".parse().unwrap(), "h0".to_string())]
                .into_iter()
                .collect(),
            pod_interface_prefixes: Vec::new(),
            node_services: services,
        },
    );
    assert_eq!(
        rs.chains["input"],
        [
            "ip6 saddr { ::, fe80::/10 } meta l4proto ipv6-icmp accept",
            "jump pod_source",
            "ct state established,related accept",
            "meta l4proto . th dport @node_svc accept",
            "ip daddr . meta l4proto . th dport @node_svc_4 accept",
            "ip6 daddr . meta l4proto . th dport @node_svc_6 accept",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
            "iifname . ip saddr @pod_src_4 ip saddr vmap @egress_4",
            "iifname . ip6 saddr @pod_src_6 ip6 saddr vmap @egress_6",
        ]
    );
    // The node opens TCP flows to its pods only with a SYN (a closed connection is not
    // picked up again from the node's side).
    assert_eq!(
        rs.chains["output"][..3],
        [
            "ct state != new accept",
            "ct state new ip daddr @local_pods_4 tcp flags & (fin | syn | rst | ack) != syn drop",
            "ct state new ip6 daddr @local_pods_6 tcp flags & (fin | syn | rst | ack) != syn drop",
        ]
    );
    assert_eq!(
        rs.sets["local_pods_4"].elements.iter().collect::<Vec<_>>(),
        ["10.0.0.1"]
    );
    let el = |n: &str| rs.sets[n].elements.iter().cloned().collect::<Vec<_>>();
    assert_eq!(el("node_svc"), ["tcp . 15001"]);
    assert_eq!(
        el("node_svc_4"),
        ["169.254.1.1 . tcp . 53", "169.254.1.1 . udp . 53"]
    );
    assert!(el("node_svc_6").is_empty());
    // The same egress chain as `forward`: it drops everything for the isolated pod.
    let entry = el("egress_4");
    assert_eq!(entry.len(), 1, "{entry:?}");
    let chain = entry[0]
        .strip_prefix("10.0.0.1 : jump ")
        .expect("iso's entry");
    assert_eq!(rs.chains[chain], ["drop"]);
    // The full script declares the sets before the rules use them.
    let script = rs.full_script();
    let set_at = script.find("set node_svc_4 {").expect("declared");
    let rule_at = script.find("@node_svc_4 accept").expect("used");
    assert!(set_at < rule_at);
}

/// Pod interface prefixes under zero trust: the rules holding unknown pods come after
/// `ct state established,related accept` in `forward` (established traffic of known pods
/// pays nothing for them) and before the verdict maps, and in `input` after Palisade's node
/// services; under the allowing posture nothing is added.
#[test]
fn unknown_pod_interfaces_are_held_after_established_traffic() {
    let pods = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.0.0.1}
"#;
    let with = |e: &Engine| {
        render(
            e,
            &RenderOptions {
                local_pods: vec![0],
                log_denied: false,
                log_allowed: false,
                pod_interfaces: BTreeMap::new(),
                node_services: Vec::new(),
                pod_interface_prefixes: vec!["cali".into()],
            },
        )
    };
    let deny = engine(&format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {{name: zt}}\n\
         spec: {{defaultPosture: deny}}\n---{pods}"
    ));
    let rs = with(&deny);
    let fwd = &rs.chains["forward"];
    let at = |r: &str| {
        fwd.iter()
            .position(|l| l == r)
            .unwrap_or_else(|| panic!("{r} in {fwd:#?}"))
    };
    let established = at("ct state established,related accept");
    let from = at("iifname \"cali*\" ip saddr != @local_pods_4 drop");
    let to = at("oifname \"cali*\" ip6 daddr != @local_pods_6 drop");
    let maps = at("ip saddr vmap @egress_4");
    assert!(established < from && from < to && to < maps, "{fwd:#?}");
    let input = &rs.chains["input"];
    let svc = input
        .iter()
        .position(|l| l.contains("@node_svc accept"))
        .unwrap();
    let held = input
        .iter()
        .position(|l| l == "iifname \"cali*\" ip saddr != @local_pods_4 drop")
        .expect("held in input");
    assert!(svc < held, "{input:#?}");
    let open = with(&engine(pods));
    let rules = |rs: &Ruleset| {
        rs.chains
            .values()
            .flatten()
            .filter(|l| l.contains("cali"))
            .count()
    };
    assert_eq!(rules(&open), 0);
    assert_eq!(rules(&rs), 6);
}
