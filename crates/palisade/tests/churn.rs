//! Churn in the kernel: pods come and go, labels change, policies are added, edited and
//! deleted while traffic runs. After every change the agent's incremental update must make
//! the kernel match the engine within one second, and an established connection that stays
//! allowed must never be cut. Root only (skipped, saying so, elsewhere).

use palisade_agent::lab::Session;
use palisade_agent::runtime::{Agent, AgentSettings};
use palisade_policy::{Engine, Manifests, Protocol, Snapshot};
use std::io::Read;
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn can_run() -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let nft = std::process::Command::new("nft")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !(root && nft) {
        eprintln!("skipping: churn test needs root and nftables");
    }
    root && nft
}

fn pod(ns: &str, name: &str, role: &str, ip: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{role: {role}}}}}\nspec: {{nodeName: n1, containers: [{{name: c, ports: [{{containerPort: 8080, name: http}}]}}]}}\nstatus: {{podIP: {ip}}}\n"
    )
}

const NP_B: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-a, namespace: b}\nspec:\n  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: a}}, podSelector: {matchLabels: {role: ROLE}}}]\n    ports: [{port: http}]\n  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: a}}}]\n    ports: [{port: 9000}]\n";

const ANP: &str = "---\napiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: no-a2}\nspec:\n  priority: 5\n  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: b}}}\n  ingress:\n  - name: deny-a2\n    action: Deny\n    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {role: blocked}}}}]\n";

fn engine(yaml: &str) -> Engine {
    let mut m = Manifests::new();
    m.add_file("churn.yaml", yaml);
    assert!(!m.has_errors(), "{:#?}", m.diagnostics);
    Engine::compile(&Snapshot::from_manifests(&m))
}

#[test]
fn kernel_follows_every_change_without_cutting_established_connections() {
    if !can_run() {
        return;
    }
    let universe: Vec<(u32, String, IpAddr)> = [
        ("a/a1", "10.88.1.1"),
        ("a/a2", "10.88.1.2"),
        ("b/b1", "10.88.2.1"),
        ("b/b2", "10.88.2.2"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (k, ip))| (i as u32, k.to_string(), ip.parse().unwrap()))
    .collect();
    let probes = [(8080u16, Protocol::TCP), (9000, Protocol::TCP)];
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_palisade"));
    let session = Session::start(
        &format!("plc{}", std::process::id() % 10000),
        &universe,
        &probes,
        |_| Vec::new(),
        exe,
        Duration::from_millis(300),
        false,
    )
    .expect("lab");
    let mut agent = Agent::new(AgentSettings {
        node: "n1".into(),
        all_nodes: true,
        netns: Some(session.node_ns().to_string()),
        log_flows: false,
        node_services: Vec::new(),
    });

    let steps: Vec<(&str, String)> = vec![
        (
            "initial",
            [
                pod("a", "a1", "web", "10.88.1.1"),
                pod("a", "a2", "web", "10.88.1.2"),
                pod("b", "b1", "db", "10.88.2.1"),
                NP_B.replace("ROLE", "web"),
            ]
            .concat(),
        ),
        (
            "pod b2 added",
            [
                pod("a", "a1", "web", "10.88.1.1"),
                pod("a", "a2", "web", "10.88.1.2"),
                pod("b", "b1", "db", "10.88.2.1"),
                pod("b", "b2", "db", "10.88.2.2"),
                NP_B.replace("ROLE", "web"),
            ]
            .concat(),
        ),
        (
            "policy edited",
            [
                pod("a", "a1", "web", "10.88.1.1"),
                pod("a", "a2", "web", "10.88.1.2"),
                pod("b", "b1", "db", "10.88.2.1"),
                pod("b", "b2", "db", "10.88.2.2"),
                NP_B.replace("ROLE", "api"),
            ]
            .concat(),
        ),
        (
            "label changed",
            [
                pod("a", "a1", "api", "10.88.1.1"),
                pod("a", "a2", "blocked", "10.88.1.2"),
                pod("b", "b1", "db", "10.88.2.1"),
                pod("b", "b2", "db", "10.88.2.2"),
                NP_B.replace("ROLE", "api"),
            ]
            .concat(),
        ),
        (
            "admin policy added",
            [
                pod("a", "a1", "api", "10.88.1.1"),
                pod("a", "a2", "blocked", "10.88.1.2"),
                pod("b", "b1", "db", "10.88.2.1"),
                pod("b", "b2", "db", "10.88.2.2"),
                NP_B.replace("ROLE", "api"),
                ANP.to_string(),
            ]
            .concat(),
        ),
        (
            "pod a2 removed",
            [
                pod("a", "a1", "api", "10.88.1.1"),
                pod("b", "b1", "db", "10.88.2.1"),
                pod("b", "b2", "db", "10.88.2.2"),
                NP_B.replace("ROLE", "api"),
                ANP.to_string(),
            ]
            .concat(),
        ),
        (
            "policies deleted",
            [
                pod("a", "a1", "api", "10.88.1.1"),
                pod("b", "b1", "db", "10.88.2.1"),
                pod("b", "b2", "db", "10.88.2.2"),
            ]
            .concat(),
        ),
    ];
    let mut held = None;
    let mut report = Vec::new();
    for (i, (name, yaml)) in steps.iter().enumerate() {
        let eng = engine(yaml);
        let t = Instant::now();
        let stats = agent
            .reconcile(&eng)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, dis) = session.observe(&eng, &probes).unwrap();
        let elapsed = t.elapsed();
        assert!(
            dis.is_empty(),
            "step {name}: kernel and engine disagree: {dis:#?}"
        );
        assert!(
            elapsed < Duration::from_millis(1000) + Duration::from_millis(700),
            "step {name}: took {elapsed:?}"
        );
        assert!(
            i == 0 || stats.incremental || stats.unchanged,
            "step {name}: expected an incremental update, got {stats:?}"
        );
        report.push(format!(
            "{name}: apply {} µs ({}), matrix verified in {:?}",
            stats.apply_us,
            if stats.incremental {
                "incremental"
            } else {
                "full"
            },
            elapsed
        ));
        if i == 0 {
            // a1 -> b1:9000 stays allowed through every step.
            held = Some(
                session
                    .hold("a/a1", "10.88.2.1".parse().unwrap(), 9000)
                    .expect("hold"),
            );
        }
    }
    let mut h = held.unwrap();
    drop(h.stdin.take());
    let mut out = String::new();
    h.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = h.wait();
    assert!(out.trim().starts_with("alive"), "held connection: {out}");
    let rounds: u64 = out.trim().trim_start_matches("alive ").parse().unwrap_or(0);
    assert!(rounds > 5, "{out}");
    eprintln!("{}\nheld connection: {}", report.join("\n"), out.trim());
}
