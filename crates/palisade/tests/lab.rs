//! Kernel enforcement tests: nftables in network namespaces (root only; skipped, saying
//! so, elsewhere).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let nft = Command::new("nft")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !(root && nft) {
        eprintln!("skipping: kernel lab tests need root and nftables");
    }
    root && nft
}

/// [`can_run`], and the `conntrack` tool the close pass uses (saying so when it is missing).
fn can_run_with_conntrack() -> bool {
    if !can_run() {
        return false;
    }
    let ok = Command::new("conntrack").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipping: needs conntrack (conntrack-tools)");
    }
    ok
}

/// A scratch folder under the system temp dir, removed when dropped (also on failure).
struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(name: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("palisade-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: app, labels: {app: api}}
spec: {containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
status: {podIP: 10.77.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: app, labels: {app: web}}
spec: {containers: [{name: c}]}
status: {podIP: 10.77.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: data, labels: {app: db}}
spec: {containers: [{name: c, ports: [{containerPort: 5432, name: pg}]}]}
status: {podIP: 10.77.2.1}
"#;

fn verify(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "lab",
        "verify",
        dir.to_str().unwrap(),
        "--port",
        "8080",
        "--port",
        "5432",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn cell(report: &serde_json::Value, port: u16, from: &str, to: &str) -> bool {
    let p = report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap();
    p["matrix"][from][to].as_bool().unwrap()
}

#[test]
fn zero_trust_posture_is_enforced_by_the_kernel() {
    if !can_run() {
        return;
    }
    let d = tmpdir("zt");
    std::fs::write(d.join("pods.yaml"), PODS).unwrap();
    std::fs::write(
        d.join("policy.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-to-api, namespace: app}\nspec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: http}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-egress, namespace: app}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: api}}}]\n",
    )
    .unwrap();
    let r = verify(&d, &["--default-posture", "deny"]);
    assert_eq!(r["disagreements"].as_array().unwrap().len(), 0, "{r}");
    assert!(cell(&r, 8080, "app/web", "app/api"));
    // Under zero trust, what no policy allows is dropped.
    assert!(!cell(&r, 8080, "data/db", "app/api"));
    assert!(!cell(&r, 5432, "app/api", "data/db"));
    assert!(!cell(&r, 5432, "app/web", "data/db"));
    // The same manifests under the Kubernetes default posture: db is open.
    let r = verify(&d, &[]);
    assert_eq!(r["disagreements"].as_array().unwrap().len(), 0, "{r}");
    assert!(cell(&r, 5432, "app/api", "data/db"));
    assert!(
        !cell(&r, 5432, "app/web", "data/db"),
        "web's egress is isolated"
    );
}

#[test]
fn audit_mode_logs_would_deny_and_lets_traffic_pass() {
    if !can_run() {
        return;
    }
    let d = tmpdir("audit");
    std::fs::write(d.join("pods.yaml"), PODS).unwrap();
    std::fs::write(
        d.join("policy.yaml"),
        "apiVersion: palisade.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: lock-db, namespace: data}\nspec:\n  mode: Audit\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: app}}, podSelector: {matchLabels: {app: api}}}]\n",
    )
    .unwrap();
    let r = verify(&d, &[]);
    assert_eq!(r["disagreements"].as_array().unwrap().len(), 0, "{r}");
    assert!(cell(&r, 5432, "app/web", "data/db"), "audit denies nothing");
    let ex = run(&[
        "explain",
        d.to_str().unwrap(),
        "--from",
        "app/web",
        "--to",
        "data/db",
        "--port",
        "5432",
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&ex.stdout).unwrap();
    assert_eq!(v["verdict"], "audit");
    assert_eq!(v["policy"]["name"], "lock-db");
    assert_eq!(v["policy"]["mode"], "Audit");
}

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn list_table(ns: &str) -> Option<String> {
    let o = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "table", "inet", "palisade",
        ])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn bad_input_keeps_the_previous_ruleset_and_other_tables() {
    if !can_run() {
        return;
    }
    let ns = Netns(format!("pl-agent-{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    // A table of someone else's that Palisade must never touch.
    let other = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "add table ip theirs; add chain ip theirs c { type filter hook input priority 0; }",
        ])
        .status()
        .unwrap();
    assert!(other.success());
    let d = tmpdir("agent");
    std::fs::write(d.join("pods.yaml"), PODS).unwrap();
    std::fs::write(
        d.join("config.yaml"),
        "apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {name: t}\nspec:\n  manifests: .\n  agent: {allNodes: true}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("policy.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-db, namespace: data}\nspec:\n  podSelector: {}\n",
    )
    .unwrap();
    let cfg = d.join("config.yaml");
    let once = |extra: &[&str]| {
        let mut args = vec![
            "agent",
            "--config",
            cfg.to_str().unwrap(),
            "--netns",
            &ns.0,
            "--once",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = once(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = list_table(&ns.0).expect("table applied");
    assert!(
        before.contains("10.77.2.1 : jump i_") && before.contains("drop"),
        "{before}"
    );
    // Broken manifests: nothing is applied, the table in force stays as it was.
    std::fs::write(d.join("policy.yaml"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-db, namespace: data}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 0}]\n").unwrap();
    let out = once(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.ingress[0].ports[0].port"));
    assert_eq!(list_table(&ns.0).as_deref(), Some(before.as_str()));
    // A transaction nft rejects leaves the previous ruleset in force.
    let bad = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "flush table inet palisade; add rule inet palisade forward ip saddr @no_such_set drop",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert_eq!(list_table(&ns.0).as_deref(), Some(before.as_str()));
    // The other table was never touched.
    let theirs = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "nft", "list", "table", "ip", "theirs",
        ])
        .output()
        .unwrap();
    assert!(theirs.status.success());
}

#[test]
fn flow_events_come_from_the_kernel_with_the_deciding_policy() {
    if !can_run() {
        return;
    }
    let d = tmpdir("flows");
    std::fs::write(d.join("pods.yaml"), PODS).unwrap();
    std::fs::write(
        d.join("policy.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-to-api, namespace: app}\nspec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: http}]\n",
    )
    .unwrap();
    let events = d.join("events");
    let r = verify(&d, &["--events", events.to_str().unwrap()]);
    assert_eq!(r["disagreements"].as_array().unwrap().len(), 0, "{r}");
    let out = run(&[
        "events",
        "--data-dir",
        events.to_str().unwrap(),
        "--type",
        "flow",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |from: &str, to: &str, port: u16| {
        evs.iter()
            .find(|e| {
                e["source"]["name"] == from
                    && e["destination"]["name"] == to
                    && e["destination"]["port"] == port
            })
            .unwrap_or_else(|| panic!("no flow event {from} -> {to}:{port} in {evs:#?}"))
    };
    let allowed = find("web", "api", 8080);
    assert_eq!(allowed["verdict"], "allow");
    assert_eq!(allowed["flow"]["state"], "new");
    assert_eq!(allowed["policy"]["name"], "web-to-api");
    assert_eq!(allowed["protocol"], "TCP");
    let denied = find("db", "api", 8080);
    assert_eq!(denied["verdict"], "deny");
    assert_eq!(denied["flow"]["state"], "denied");
    assert_eq!(denied["policy"]["name"], "web-to-api");
    assert_eq!(denied["policy"]["stage"], "namespace");
    assert_eq!(denied["source"]["namespace"], "data");
    // Finished connections carry their byte and packet counts (conntrack accounting).
    if Command::new("conntrack")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        let end = evs
            .iter()
            .find(|e| {
                e["flow"]["state"] == "end"
                    && e["source"]["name"] == "web"
                    && e["destination"]["port"] == 8080
            })
            .unwrap_or_else(|| panic!("no end event for web -> api:8080 in {evs:#?}"));
        assert!(end["flow"]["bytesReceived"].as_u64().unwrap() >= 3, "{end}");
        assert!(end["flow"]["packets"].as_u64().unwrap() >= 4, "{end}");
        assert_eq!(end["verdict"], "allow");
    } else {
        eprintln!("skipping byte counts: conntrack-tools not installed");
    }
}

fn compile(yaml: &str) -> palisade_policy::Engine {
    let mut m = palisade_policy::Manifests::new();
    m.add_file("lab.yaml", yaml);
    assert!(!m.has_errors(), "{:#?}", m.diagnostics);
    palisade_policy::Engine::compile(&palisade_policy::Snapshot::from_manifests(&m))
}

/// Packets that reached a lab pod, counted by an nft table in its own namespace (before
/// anything else there sees them): `rules` are match expressions, one counter each.
fn observer(ns: &str, rules: &[&str]) {
    observer_at(ns, "prerouting priority -500", rules)
}

/// Like [`observer`], at hook and priority `at` (`input priority 10`: after the agent).
fn observer_at(ns: &str, at: &str, rules: &[&str]) {
    let body: String = rules.iter().map(|r| format!("{r} counter; ")).collect();
    let script =
        format!("table inet obs {{ chain c {{ type filter hook {at}; policy accept; {body}}}; }}");
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "nft", &script])
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}

/// The packet counts of the observer's rules, in order.
fn observed(ns: &str) -> Vec<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "table", "inet", "obs"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("packets ").nth(1))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

const TRIO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
status: {podIP: 10.78.1.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: 203.0.113.0/24}}]
    ports: [{port: 8080}]
"#;

/// A lab session of `TRIO` (or `yaml`) with the agent's table applied through the runtime
/// (pod interfaces discovered from the node's routes, as on a real node).
fn trio_session(
    name: &str,
    yaml: &str,
) -> (
    palisade_agent::lab::Session,
    palisade_policy::Engine,
    palisade_agent::runtime::Agent,
) {
    let eng = compile(yaml);
    let pods: Vec<(u32, String, std::net::IpAddr)> = eng
        .sorted_pods()
        .into_iter()
        .map(|id| {
            let p = &eng.pods()[id as usize];
            (id, p.key(), p.ips[0])
        })
        .collect();
    let (session, mut agent) = lab_with_agent(name, &pods);
    agent.reconcile(&eng).expect("ruleset applied");
    (session, eng, agent)
}

/// A lab of `pods` (engine id, key, address) serving TCP 8080, and an agent for node `n1`
/// applying inside it (nothing applied yet).
fn lab_with_agent(
    name: &str,
    pods: &[(u32, String, std::net::IpAddr)],
) -> (palisade_agent::lab::Session, palisade_agent::runtime::Agent) {
    let session = palisade_agent::lab::Session::start(
        &format!("pl{name}{}", std::process::id() % 10000),
        pods,
        &[(8080, palisade_policy::Protocol::TCP)],
        |_| Vec::new(),
        PathBuf::from(bin()),
        std::time::Duration::from_millis(300),
        false,
    )
    .expect("lab");
    let agent = palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
        node: "n1".into(),
        all_nodes: false,
        netns: Some(session.node_ns().to_string()),
        log_flows: false,
        node_services: Vec::new(),
    });
    (session, agent)
}

fn netns_of(s: &palisade_agent::lab::Session, key: &str) -> String {
    s.lab
        .pods
        .iter()
        .find(|p| p.key == key)
        .unwrap()
        .netns
        .clone()
}

#[test]
fn a_pod_cannot_pass_for_another_pod_or_an_allowed_ip_block() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let (s, eng, _agent) = trio_session("sp", TRIO);
    let (a, c) = (netns_of(&s, "x/a"), netns_of(&s, "x/c"));
    let (b_ip, c_ip, outside) = (
        "10.78.1.2".parse().unwrap(),
        "10.78.1.3".parse().unwrap(),
        "203.0.113.7".parse().unwrap(),
    );
    observer(
        &c,
        &[
            "ip saddr 10.78.1.2 tcp dport 8080",
            "ip saddr 203.0.113.7 tcp dport 8080",
            "ip saddr 10.78.1.1",
        ],
    );
    // `a` may not reach `c`; it claims to be `b`, then a host in the allowed ipBlock, with a
    // SYN and with a bare ACK (conntrack picks up mid-stream connections as new).
    for (src, sport) in [(b_ip, 41000), (outside, 41001)] {
        for flags in [craft::SYN, craft::ACK] {
            craft::send_ipv4(&a, &craft::tcp(src, c_ip, sport, 8080, flags)).unwrap();
        }
    }
    // Its own address on a port `c` does not allow: dropped too (the control).
    craft::send_ipv4(
        &a,
        &craft::tcp("10.78.1.1".parse().unwrap(), c_ip, 41002, 8080, craft::SYN),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(observed(&c), [0, 0, 0], "spoofed packets reached c");
    // The node itself: its services (the DNS proxy) tell pods apart by source address.
    let node = s.node_ns().to_string();
    observer_at(
        &node,
        "input priority 10",
        &[
            "ip saddr 10.78.1.2 udp dport 5300",
            "ip saddr 10.78.1.1 udp dport 5300",
        ],
    );
    let mut udp = vec![0x9c, 0x41, 0x14, 0xb4, 0, 12, 0, 0];
    udp.extend_from_slice(b"dns?");
    let to_node = "169.254.1.1".parse().unwrap();
    craft::send_ipv4(&a, &craft::ipv4(b_ip, to_node, 17, &udp)).unwrap();
    let a_ip = "10.78.1.1".parse().unwrap();
    craft::send_ipv4(&a, &craft::ipv4(a_ip, to_node, 17, &udp)).unwrap();
    craft::send_ipv4(&netns_of(&s, "x/b"), &craft::ipv4(b_ip, to_node, 17, &udp)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(&node),
        [1, 1],
        "only each pod's own packet reached the node"
    );
    // Nothing allowed is lost: b reaches c, a does not, as the engine says.
    let (probes, dis) = s
        .observe(&eng, &[(8080, palisade_policy::Protocol::TCP)])
        .unwrap();
    assert!(dis.is_empty(), "{dis:#?}");
    assert!(probes[0].matrix["x/b"]["x/c"]);
    assert!(!probes[0].matrix["x/a"]["x/c"]);
    assert!(observed(&c)[0] > 0, "b's real connection was counted");
}

/// A finished pod keeps its address in status while a new pod on the node reuses it. The
/// update must still apply (one map key per address), and the new pod be isolated.
#[test]
fn a_reused_pod_address_does_not_keep_the_ruleset_out() {
    if !can_run() {
        return;
    }
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: done-job, namespace: x, labels: {app: job}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {phase: Succeeded, podIP: 10.78.2.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.2.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: x, labels: {app: db}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 8080}]}]}
status: {podIP: 10.78.2.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-closed, namespace: x}
spec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: job-from-client, namespace: x}
spec:
  podSelector: {matchLabels: {app: job}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
"#;
    let eng = compile(yaml);
    // Only the live pods get namespaces; the engine knows all three.
    let live: Vec<(u32, String, std::net::IpAddr)> = ["x/client", "x/db"]
        .iter()
        .map(|k| {
            let id = eng.pod_by_key(k).unwrap();
            (id, k.to_string(), eng.pods()[id as usize].ips[0])
        })
        .collect();
    let (s, mut agent) = lab_with_agent("ru", &live);
    agent
        .reconcile(&eng)
        .expect("the ruleset applies despite two pods with one address");
    let (probes, dis) = s
        .observe(&eng, &[(8080, palisade_policy::Protocol::TCP)])
        .unwrap();
    assert!(dis.is_empty(), "{dis:#?}");
    assert!(!probes[0].matrix["x/client"]["x/db"], "db is isolated");
}

/// A peer allowed on one TCP port gets nothing else through: no other IP protocol (raw 253,
/// ICMP echo), no UDP on the same port number, no bare ACK on another port; only its SYN to
/// the allowed port arrives.
#[test]
fn an_allowed_port_opens_nothing_else() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let (s, _eng, _agent) = trio_session("pr", TRIO);
    let (b, c) = (netns_of(&s, "x/b"), netns_of(&s, "x/c"));
    let (b_ip, c_ip) = ("10.78.1.2".parse().unwrap(), "10.78.1.3".parse().unwrap());
    observer(
        &c,
        &[
            "ip saddr 10.78.1.2 meta l4proto 253",
            "ip saddr 10.78.1.2 meta l4proto icmp",
            "ip saddr 10.78.1.2 udp dport 8080",
            "ip saddr 10.78.1.2 tcp dport 9090",
            "ip saddr 10.78.1.2 tcp dport 8080",
        ],
    );
    let mut udp = vec![0x9c, 0x40, 0x1f, 0x90, 0, 12, 0, 0];
    udp.extend_from_slice(b"ping");
    let echo = {
        let mut m = vec![8, 0, 0, 0, 0, 1, 0, 1];
        let c = craft::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    };
    for p in [
        craft::ipv4(b_ip, c_ip, 253, b"raw"),
        craft::ipv4(b_ip, c_ip, 1, &echo),
        craft::ipv4(b_ip, c_ip, 17, &udp),
        craft::tcp(b_ip, c_ip, 42000, 9090, craft::ACK),
        craft::tcp(b_ip, c_ip, 42001, 8080, craft::SYN),
    ] {
        craft::send_ipv4(&b, &p).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let got = observed(&c);
    assert_eq!(&got[..4], [0, 0, 0, 0], "{got:?}");
    assert!(got[4] >= 1, "the allowed SYN arrives: {got:?}");
}

/// Conntrack picks a TCP connection up from any mid-stream packet. After the agent deleted
/// the entry of a connection that policy now denies (b → c), the allowed side's next packet
/// (c's reply, c → b is open) opened a fresh entry in that direction, and b's packets then
/// passed as its replies: the closed connection came back. In CI the held connection of
/// `tightened_policy_refuses_new_connections_and_closes_open_ones` stayed alive that way
/// now and then. Now a pod's new TCP flow must start with a SYN, so neither side's
/// mid-stream packet opens an entry.
#[test]
fn a_denied_connection_is_not_picked_up_again_from_the_allowed_side() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let (s, _eng, mut agent) = trio_session("pk", TRIO);
    let tight = compile(&TRIO.replace(
        "- from: [{podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: 203.0.113.0/24}}]",
        "- from: [{ipBlock: {cidr: 203.0.113.0/24}}]",
    ));
    agent.reconcile(&tight).expect("tightened ruleset");
    let (b, c) = (netns_of(&s, "x/b"), netns_of(&s, "x/c"));
    let (b_ip, c_ip) = ("10.78.1.2".parse().unwrap(), "10.78.1.3".parse().unwrap());
    // b has no socket on the port: keep its kernel's RST from closing the picked-up entry.
    let st = Command::new("ip")
        .args(["netns", "exec", &b, "nft"])
        .arg("table inet quiet { chain o { type filter hook output priority 0; tcp flags rst drop; }; }")
        .status()
        .unwrap();
    assert!(st.success());
    observer(&c, &["ip saddr 10.78.1.2 tcp dport 8080"]);
    // c's reply of the old connection (c → b is allowed: b has no policy), then b's data.
    craft::send_ipv4(&c, &craft::tcp(c_ip, b_ip, 8080, 42000, craft::ACK)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    for _ in 0..3 {
        craft::send_ipv4(&b, &craft::tcp(b_ip, c_ip, 42000, 8080, craft::ACK)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(observed(&c), [0], "b's packets reached c as replies");
}

/// When policy tightens, a new connection is refused by the very next update, and one
/// already open is closed (CONVENTIONS: open connections are checked again and those now
/// denied are closed): the agent deletes its conntrack entry, so its next packet meets the
/// new ruleset. On the old code the held connection stayed alive.
#[test]
fn tightened_policy_refuses_new_connections_and_closes_open_ones() {
    use std::io::Read;
    if !can_run_with_conntrack() {
        return;
    }
    let (s, _eng, mut agent) = trio_session("tt", TRIO);
    let c_ip = "10.78.1.3".parse().unwrap();
    let mut held = s
        .hold("x/b", c_ip, 8080)
        .expect("b holds a connection to c");
    // a connection the new policy still allows: c → b is not touched by the change.
    let mut kept = s
        .hold("x/c", "10.78.1.2".parse().unwrap(), 8080)
        .expect("c holds a connection to b");
    // b loses its right to reach c.
    let tight = compile(&TRIO.replace(
        "- from: [{podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: 203.0.113.0/24}}]",
        "- from: [{ipBlock: {cidr: 203.0.113.0/24}}]",
    ));
    let stats = agent.reconcile(&tight).expect("tightened ruleset");
    assert!(stats.incremental, "{stats:?}");
    let closed = agent.close_denied(&tight).expect("conntrack listed");
    assert_eq!(closed, 1, "exactly b's connection to c is closed");
    let (probes, dis) = s
        .observe(&tight, &[(8080, palisade_policy::Protocol::TCP)])
        .unwrap();
    assert!(dis.is_empty(), "{dis:#?}");
    assert!(
        !probes[0].matrix["x/b"]["x/c"],
        "a new connection is refused"
    );
    // Give the held connections time to try the wire again (they ping every interval and
    // wait 2 s for the echo).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let outcome = |child: &mut std::process::Child| {
        drop(child.stdin.take());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = child.wait();
        out
    };
    let held_out = outcome(&mut held);
    let kept_out = outcome(&mut kept);
    assert!(held_out.trim().starts_with("broken"), "b → c: {held_out}");
    assert!(kept_out.trim().starts_with("alive"), "c → b: {kept_out}");
}

/// A host firewall reload (`nft flush ruleset`) removes the agent's table behind its back.
/// Reconciles apply differences only, so nothing would bring it back until policy changed;
/// the periodic resync does, and the pod is isolated again.
#[test]
fn a_flushed_ruleset_is_rebuilt_by_the_resync() {
    if !can_run() {
        return;
    }
    let (s, eng, mut agent) = trio_session("rs", TRIO);
    let probe = |e: &palisade_policy::Engine| {
        let (p, dis) = s
            .observe(e, &[(8080, palisade_policy::Protocol::TCP)])
            .unwrap();
        (p[0].matrix["x/a"]["x/c"], dis.len())
    };
    assert_eq!(probe(&eng), (false, 0));
    assert!(agent.table_intact());
    let st = Command::new("ip")
        .args(["netns", "exec", s.node_ns(), "nft", "flush", "ruleset"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!agent.table_intact());
    // Nothing changed in policy: a reconcile has nothing to do, and a reaches c.
    assert!(agent.reconcile(&eng).unwrap().unchanged);
    assert!(probe(&eng).0, "with the table gone, c is open");
    let rebuilt = agent.resync(&eng).unwrap().expect("rebuilt");
    assert!(!rebuilt.incremental);
    assert!(agent.table_intact());
    assert_eq!(probe(&eng), (false, 0), "c is isolated again");
    assert!(
        agent.resync(&eng).unwrap().is_none(),
        "intact: nothing to do"
    );
}

/// A pod whose host route appears after the agent saw it is anti-spoofed from the next
/// resync on, without any policy change.
#[test]
fn a_late_pod_route_is_picked_up_by_the_resync() {
    if !can_run() {
        return;
    }
    let (s, eng, mut agent) = trio_session("lr", TRIO);
    let node = s.node_ns().to_string();
    let src_set = || list_set(&node, "pod_src_4");
    assert!(src_set().contains("10.78.1.3"), "{}", src_set());
    let c_if = netns_if_of(&node, "10.78.1.3");
    let st = Command::new("ip")
        .args(["-n", &node, "route", "del", "10.78.1.3/32"])
        .status()
        .unwrap();
    assert!(st.success());
    agent.reconcile(&eng).unwrap();
    assert!(!src_set().contains("10.78.1.3"), "{}", src_set());
    let st = Command::new("ip")
        .args(["-n", &node, "route", "add", "10.78.1.3/32", "dev", &c_if])
        .status()
        .unwrap();
    assert!(st.success());
    let stats = agent
        .resync(&eng)
        .unwrap()
        .expect("the new route changed the sets");
    assert!(stats.incremental, "{stats:?}");
    assert!(
        src_set().contains(&format!("\"{c_if}\" . 10.78.1.3")),
        "{}",
        src_set()
    );
}

fn list_set(ns: &str, set: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "set", "inet", "palisade", set,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interface `ns` routes `ip` to.
fn netns_if_of(ns: &str, ip: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "route", "get", ip])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            return words.next().unwrap_or_default().to_string();
        }
    }
    panic!("no route to {ip} in {ns}: {text}")
}

/// Pods of node `n1` for the pod-to-node tests: `iso` may send nothing (egress deny-all),
/// `blk` may reach only the node's address 10.79.0.1 (ipBlock), `open` has no policy.
const TO_NODE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: iso, namespace: x, labels: {app: iso}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.3.1}
---
apiVersion: v1
kind: Pod
metadata: {name: blk, namespace: x, labels: {app: blk}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.3.2}
---
apiVersion: v1
kind: Pod
metadata: {name: open, namespace: x, labels: {app: open}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.3.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: iso-sends-nothing, namespace: x}
spec: {podSelector: {matchLabels: {app: iso}}, policyTypes: [Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: blk-to-the-node, namespace: x}
spec:
  podSelector: {matchLabels: {app: blk}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.79.0.1/32}}], ports: [{port: 10250}]}]
"#;

/// Whether a TCP connection from namespace `ns` to `ip:port` is answered.
fn connects(ns: &str, ip: &str, port: u16) -> bool {
    let targets = format!("[{{\"ip\":\"{ip}\",\"port\":{port},\"protocol\":\"TCP\"}}]");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, bin(), "lab", "probe", "--targets"])
        .arg(&targets)
        .args(["--timeout-ms", "500"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("\"ok\":true")
}

/// A `palisade lab serve` in namespace `ns` on `ports` (every address there), killed on drop.
struct NodeServer(std::process::Child);

impl NodeServer {
    fn start(ns: &str, ports: &[u16]) -> NodeServer {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, bin(), "lab", "serve"]);
        for p in ports {
            cmd.args(["--tcp", &p.to_string()]);
        }
        let child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        NodeServer(child)
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The node gets the address 10.79.0.1 (on its loopback, as a node's own address) with a
/// "kubelet" listening on 10250 there. A pod whose egress allows nothing must not reach
/// it: its own node is no exception to its egress policy. On the old code only `forward`
/// held policy and `input` checked source addresses alone, so `iso` connected.
#[test]
fn an_egress_isolated_pod_cannot_reach_its_own_node() {
    if !can_run() {
        return;
    }
    let (s, _eng, _agent) = trio_session("hn", TO_NODE);
    let node = s.node_ns().to_string();
    let st = Command::new("ip")
        .args(["-n", &node, "addr", "add", "10.79.0.1/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(st.success());
    let _kubelet = NodeServer::start(&node, &[10250, 10255]);
    let (iso, blk, open) = (
        netns_of(&s, "x/iso"),
        netns_of(&s, "x/blk"),
        netns_of(&s, "x/open"),
    );
    assert!(
        !connects(&iso, "10.79.0.1", 10250),
        "the egress-isolated pod reached its node's kubelet"
    );
    assert!(
        !connects(&iso, "169.254.1.1", 10250),
        "the egress-isolated pod reached its node through its gateway address"
    );
    assert!(
        connects(&blk, "10.79.0.1", 10250),
        "an ipBlock naming the node's address allows it"
    );
    assert!(
        !connects(&blk, "10.79.0.1", 10255),
        "the ipBlock rule's port is held too"
    );
    assert!(
        connects(&open, "10.79.0.1", 10250),
        "a pod without egress policy reaches its node"
    );
    assert!(connects(&open, "169.254.1.1", 10255));
}

/// Palisade's own node services stay reachable for a pod whose egress allows nothing: the
/// DNS proxy (here a TCP listener on 5300 named as a node service, as `spec.dns.listen`
/// names it), directly and through a `redirect` from a "kube-dns" Service address, as a
/// node's nat rules send DNS to it. A redirect to any other node port is no exemption.
#[test]
fn an_egress_isolated_pod_still_reaches_palisades_node_services() {
    if !can_run() {
        return;
    }
    let eng = compile(TO_NODE);
    let pods: Vec<(u32, String, std::net::IpAddr)> = eng
        .sorted_pods()
        .into_iter()
        .map(|id| {
            (
                id,
                eng.pods()[id as usize].key(),
                eng.pods()[id as usize].ips[0],
            )
        })
        .collect();
    let (s, _) = lab_with_agent("hs", &pods);
    let node = s.node_ns().to_string();
    let mut agent = palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
        node: "n1".into(),
        all_nodes: false,
        netns: Some(node.clone()),
        log_flows: false,
        node_services: palisade_agent::hostfw::NodeService::from_listen(
            "0.0.0.0:5300",
            &[palisade_policy::Protocol::TCP],
        )
        .unwrap(),
    });
    agent.reconcile(&eng).expect("ruleset applied");
    let nat = "table ip redir {\n chain pre {\n  type nat hook prerouting priority dstnat;\n  \
               ip daddr 10.96.0.10 tcp dport 53 redirect to :5300\n  \
               ip daddr 10.96.0.11 tcp dport 80 redirect to :10250\n }\n}\n";
    let st = Command::new("ip")
        .args(["netns", "exec", &node, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(nat.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(st.success(), "{nat}");
    let _servers = NodeServer::start(&node, &[5300, 10250]);
    let iso = netns_of(&s, "x/iso");
    assert!(
        connects(&iso, "10.96.0.10", 53),
        "DNS redirected to the node's proxy"
    );
    assert!(
        connects(&iso, "169.254.1.1", 5300),
        "the node's proxy, directly"
    );
    assert!(
        !connects(&iso, "10.96.0.11", 80),
        "a redirect to another node port"
    );
    assert!(!connects(&iso, "169.254.1.1", 10250), "another node port");
    assert!(agent.table_intact());
    // The resync check notices a hand edit that empties the pod-to-node rules.
    let st = Command::new("ip")
        .args([
            "netns", "exec", &node, "nft", "flush", "chain", "inet", "palisade", "input",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        connects(&iso, "169.254.1.1", 10250),
        "open with input flushed"
    );
    assert!(!agent.table_intact());
    agent.resync(&eng).unwrap().expect("rebuilt");
    assert!(!connects(&iso, "169.254.1.1", 10250), "closed again");
}

/// The Python for the IPv6 link-local client and server (`PALISADE_TEST_PYTHON`, else
/// `python3`); `None`, saying so, when there is none.
fn python() -> Option<String> {
    let py = std::env::var("PALISADE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import socket"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: needs Python ({py})");
    }
    ok.then_some(py)
}

/// Every pod has an IPv6 link-local address on its link to the node, and the node one on
/// the pod's veth, IPv4-only cluster or not. On the old code `input` accepted anything
/// from a link-local source before any check, so a pod whose egress allows nothing
/// reached every node service listening on `[::]` (kubelet does) at the node's link-local
/// address. Now only ICMPv6 (neighbour discovery and the like) passes from link-local
/// sources on a pod interface.
#[test]
fn an_egress_isolated_pod_cannot_reach_its_node_over_ipv6_link_local() {
    if !can_run() {
        return;
    }
    let Some(py) = python() else { return };
    let (s, _eng, _agent) = trio_session("ll", TO_NODE);
    let node = s.node_ns().to_string();
    let veth = netns_if_of(&node, "10.78.3.1");
    // The node's link-local address on iso's veth, once duplicate address detection is done.
    let mut ll = String::new();
    for _ in 0..50 {
        let out = Command::new("ip")
            .args(["-n", &node, "-6", "-o", "addr", "show", "dev", &veth])
            .args(["scope", "link", "-tentative"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(a) = text.split_whitespace().find(|w| w.starts_with("fe80::")) {
            ll = a.split('/').next().unwrap_or_default().to_string();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if ll.is_empty() {
        eprintln!("skipping: no IPv6 link-local address on the lab's veth (IPv6 off?)");
        return;
    }
    let server = "import socket\ns=socket.socket(socket.AF_INET6)\n\
                  s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                  s.bind(('::',10251))\ns.listen(8)\nwhile True:\n c,_=s.accept()\n \
                  c.sendall(b'ok')\n c.close()\n";
    let mut srv = Command::new("ip")
        .args(["netns", "exec", &node, &py, "-c", server])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let client = format!(
        "import socket\ns=socket.socket(socket.AF_INET6)\ns.settimeout(1)\n\
         try:\n s.connect(('{ll}',10251,0,socket.if_nametoindex('eth0')))\n \
         print(s.recv(2).decode())\nexcept OSError as e:\n print('refused',e)\n"
    );
    let reach = |pod: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &netns_of(&s, pod), &py, "-c", &client])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The pod's own link-local address must be past duplicate address detection too, or
    // `connect` fails at once with EADDRNOTAVAIL and proves nothing either way.
    let pod_ns = netns_of(&s, "x/iso");
    for _ in 0..50 {
        let out = Command::new("ip")
            .args(["-n", &pod_ns, "-6", "-o", "addr", "show", "dev", "eth0"])
            .args(["scope", "link", "-tentative"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("fe80::") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let refused = reach("x/iso");
    // The control: the rule the old code had first in `input` lets the same client in.
    let st = Command::new("ip")
        .args([
            "netns", "exec", &node, "nft", "insert", "rule", "inet", "palisade",
        ])
        .args(["input", "ip6", "saddr", "fe80::/10", "accept"])
        .status()
        .unwrap();
    assert!(st.success());
    let old_rule = reach("x/iso");
    let _ = srv.kill();
    let _ = srv.wait();
    // Dropped, so the client times out (an address error would mean the test never ran).
    assert!(
        refused.starts_with("refused") && refused.contains("timed out"),
        "iso over link-local: {refused}"
    );
    assert_eq!(old_rule, "ok", "with the old rule, iso reaches the node");
}

/// A lab of `TO_NODE` whose node has the address 10.79.0.1 with listeners on 10250, 10255
/// and 5300, and an agent for `n1` that counts TCP 5300 as Palisade's DNS proxy (a node
/// service), its ruleset applied.
fn node_lab(
    name: &str,
) -> (
    palisade_agent::lab::Session,
    palisade_agent::runtime::Agent,
    NodeServer,
) {
    let eng = compile(TO_NODE);
    let pods: Vec<(u32, String, std::net::IpAddr)> = eng
        .sorted_pods()
        .into_iter()
        .map(|id| {
            let p = &eng.pods()[id as usize];
            (id, p.key(), p.ips[0])
        })
        .collect();
    let (s, _) = lab_with_agent(name, &pods);
    let node = s.node_ns().to_string();
    let mut agent = palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
        node: "n1".into(),
        all_nodes: false,
        netns: Some(node.clone()),
        log_flows: false,
        node_services: palisade_agent::hostfw::NodeService::from_listen(
            "0.0.0.0:5300",
            &[palisade_policy::Protocol::TCP],
        )
        .unwrap(),
    });
    agent.reconcile(&eng).expect("ruleset applied");
    let st = Command::new("ip")
        .args(["-n", &node, "addr", "add", "10.79.0.1/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(st.success());
    let servers = NodeServer::start(&node, &[10250, 10255, 5300]);
    (s, agent, servers)
}

/// `TO_NODE` with `open` (no policy so far) now allowed only 10.79.0.1:10255 out.
fn open_tightened() -> palisade_policy::Engine {
    compile(&format!(
        "{TO_NODE}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: open-to-10255, namespace: x}}\nspec:\n  \
         podSelector: {{matchLabels: {{app: open}}}}\n  policyTypes: [Egress]\n  \
         egress: [{{to: [{{ipBlock: {{cidr: 10.79.0.1/32}}}}], ports: [{{port: 10255}}]}}]\n"
    ))
}

/// When policy tightens, a pod's open connection to its own node that the new policy
/// denies is closed too, as pod-to-pod ones are: `open` holds connections to the node's
/// "kubelet" (10250), to 10255 and to Palisade's DNS proxy (5300, a node service); its new
/// egress policy allows only 10255. The 10250 connection breaks, the 10255 one and the one
/// to the node service stay. On the old code the agent decided pod-to-pod connections
/// only, so the held connection to 10250 stayed alive (and nothing was closed).
#[test]
fn tightened_policy_closes_a_pods_open_connection_to_its_own_node() {
    use std::io::Read;
    if !can_run_with_conntrack() {
        return;
    }
    let (s, mut agent, _servers) = node_lab("nc");
    let node_ip = "10.79.0.1".parse().unwrap();
    let mut held = s.hold("x/open", node_ip, 10250).expect("open holds 10250");
    let mut kept = s.hold("x/open", node_ip, 10255).expect("open holds 10255");
    let mut svc = s
        .hold("x/open", "169.254.1.1".parse().unwrap(), 5300)
        .expect("open holds the node service");
    let tight = open_tightened();
    agent.reconcile(&tight).expect("tightened ruleset");
    let closed = agent.close_denied(&tight).expect("conntrack listed");
    assert_eq!(closed, 1, "exactly the connection to 10250 is closed");
    let open = netns_of(&s, "x/open");
    assert!(!connects(&open, "10.79.0.1", 10250), "a new one is refused");
    assert!(
        connects(&open, "10.79.0.1", 10255),
        "10255 is still allowed"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let outcome = |child: &mut std::process::Child| {
        drop(child.stdin.take());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = child.wait();
        out
    };
    let (held_out, kept_out, svc_out) = (outcome(&mut held), outcome(&mut kept), outcome(&mut svc));
    assert!(held_out.trim().starts_with("broken"), "→ 10250: {held_out}");
    assert!(kept_out.trim().starts_with("alive"), "→ 10255: {kept_out}");
    assert!(
        svc_out.trim().starts_with("alive"),
        "→ node service: {svc_out}"
    );
}

/// After the agent deleted the entry of a pod's connection to its node, the node's next
/// packet on it (an ACK, data) opened a fresh entry in the node-to-pod direction
/// (conntrack's loose pickup) and the pod's packets then reached the node as its replies,
/// past the pod's egress policy. Now the node opens TCP flows to its pods only with a SYN.
#[test]
fn a_closed_connection_to_the_node_is_not_picked_up_again_from_the_nodes_side() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let (s, mut agent, _servers) = node_lab("np");
    agent
        .reconcile(&open_tightened())
        .expect("tightened ruleset");
    let node = s.node_ns().to_string();
    let open = netns_of(&s, "x/open");
    let (pod_ip, node_ip) = ("10.78.3.3".parse().unwrap(), "10.79.0.1".parse().unwrap());
    // Neither side has a socket on these ports: keep their kernels' RSTs out of the way.
    for ns in [&node, &open] {
        let st = Command::new("ip")
            .args(["netns", "exec", ns, "nft"])
            .arg("table inet quiet { chain o { type filter hook output priority 10; tcp flags rst drop; }; }")
            .status()
            .unwrap();
        assert!(st.success());
    }
    observer_at(
        &node,
        "input priority 10",
        &["ip saddr 10.78.3.3 tcp dport 10250"],
    );
    // The node's side of the old connection, then the pod's.
    // (Refused at once by the new `output` rule: the kernel reports EPERM to the sender.)
    let sent = craft::send_ipv4(
        &node,
        &craft::tcp(node_ip, pod_ip, 10250, 43000, craft::ACK),
    );
    assert!(
        sent.as_ref().map_or_else(
            |e| e.kind() == std::io::ErrorKind::PermissionDenied,
            |_| true
        ),
        "{sent:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    for _ in 0..3 {
        craft::send_ipv4(
            &open,
            &craft::tcp(pod_ip, node_ip, 43000, 10250, craft::ACK),
        )
        .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(&node),
        [0],
        "the pod's packets reached the node as replies"
    );
}

/// An outside host for the lab's node: namespace `<node>-ext` with 198.51.100.1, routed
/// from the node through a veth (`xo0`, which owns 169.254.1.1 as pod veths do), serving
/// TCP 8080 and 9090. Removed on drop.
struct Outside {
    _server: NodeServer,
    _ns: Netns,
    ns: String,
}

impl Outside {
    fn start(node: &str) -> Outside {
        let ns = format!("{node}-ext");
        let guard = Netns(ns.clone());
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        for cmd in [
            format!("ip netns add {ns}"),
            format!("ip -n {node} link add xo0 type veth peer name eth0 netns {ns}"),
            format!("ip -n {node} link set xo0 up"),
            format!("ip -n {node} addr add 169.254.1.1/32 dev xo0"),
            format!("ip -n {node} route add 198.51.100.1/32 dev xo0"),
            format!("ip -n {ns} link set lo up"),
            format!("ip -n {ns} link set eth0 up"),
            format!("ip -n {ns} addr add 198.51.100.1/32 dev eth0"),
            format!("ip -n {ns} route add 169.254.1.1 dev eth0 scope link"),
            format!("ip -n {ns} route add default via 169.254.1.1 dev eth0"),
        ] {
            let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
            assert!(st.success(), "{cmd}");
        }
        Outside {
            _server: NodeServer::start(&ns, &[8080, 9090]),
            _ns: guard,
            ns,
        }
    }

    /// A connection held from the outside host to `to:port` (`palisade lab hold`).
    fn hold(&self, to: &str, port: u16) -> std::process::Child {
        use std::io::Read;
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.ns, bin(), "lab", "hold", "--target"])
            .arg(format!("{to}:{port}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = Vec::new();
        let mut byte = [0u8; 1];
        let out = c.stdout.as_mut().unwrap();
        while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            first.push(byte[0]);
        }
        assert_eq!(first, b"ready", "the outside host holds {to}:{port}");
        c
    }
}

/// What a held connection says when its stdin closes: `alive N` or `broken N`.
fn hold_outcome(child: &mut std::process::Child) -> String {
    use std::io::Read;
    drop(child.stdin.take());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    out.trim().to_string()
}

/// When policy tightens, open connections between a pod and an outside address are closed
/// too: `a` held 8080 and 9090 at an outside host, and the host held one to `c`; now `a`
/// may reach the host on 9090 only and `c` takes 8080 from `b` only. `a`'s 8080 and the
/// host's connection to `c` break, `a`'s 9090 stays. On the old code only connections
/// between two pods were decided: nothing was closed and all three stayed alive.
#[test]
fn tightened_policy_closes_open_connections_to_and_from_outside_addresses() {
    if !can_run_with_conntrack() {
        return;
    }
    let (s, _eng, mut agent) = trio_session("xo", TRIO);
    let ext = Outside::start(s.node_ns());
    let host = "198.51.100.1".parse().unwrap();
    // The old TRIO lets 203.0.113.0/24 and b reach c: widen it for the outside host first.
    let open = compile(&TRIO.replace("203.0.113.0/24", "198.51.100.0/24"));
    agent.reconcile(&open).expect("ruleset");
    let mut a_8080 = s.hold("x/a", host, 8080).expect("a holds 8080 outside");
    let mut a_9090 = s.hold("x/a", host, 9090).expect("a holds 9090 outside");
    let mut to_c = ext.hold("10.78.1.3", 8080);
    let tight = compile(&format!(
        "{}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: a-out, namespace: x}}\nspec:\n  \
         podSelector: {{matchLabels: {{app: a}}}}\n  policyTypes: [Egress]\n  \
         egress: [{{to: [{{ipBlock: {{cidr: 198.51.100.1/32}}}}], ports: [{{port: 9090}}]}}]\n",
        TRIO.replace(
            "- from: [{podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: 203.0.113.0/24}}]",
            "- from: [{podSelector: {matchLabels: {app: b}}}]",
        )
    ));
    agent.reconcile(&tight).expect("tightened ruleset");
    let closed = agent.close_denied(&tight).expect("conntrack listed");
    assert_eq!(closed, 2, "a's 8080 and the host's connection to c");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (o8080, o9090, oc) = (
        hold_outcome(&mut a_8080),
        hold_outcome(&mut a_9090),
        hold_outcome(&mut to_c),
    );
    assert!(o8080.starts_with("broken"), "a → outside:8080: {o8080}");
    assert!(o9090.starts_with("alive"), "a → outside:9090: {o9090}");
    assert!(oc.starts_with("broken"), "outside → c: {oc}");
}

/// A port a pod's FQDN rule allows kept every open connection on it alive after a policy
/// change, even one a tiered Deny now refuses, which the kernel decides before any FQDN
/// rule: `a` (egress: `**.models.test` and the outside host on 8080) held 8080 at the host;
/// a security-tier ClusterSecurityPolicy then denied the host. On the old code the close
/// pass skipped the connection (0 closed) and it stayed alive; now it is closed.
#[test]
fn a_tiered_deny_closes_a_connection_on_a_port_an_fqdn_rule_allows() {
    if !can_run_with_conntrack() {
        return;
    }
    let open = format!(
        "{TRIO}---\napiVersion: palisade.dev/v1alpha1\nkind: SecurityPolicy\n\
         metadata: {{name: a-out, namespace: x}}\nspec:\n  \
         podSelector: {{matchLabels: {{app: a}}}}\n  egress:\n  \
         - {{to: [{{fqdn: \"**.models.test\"}}, {{ipBlock: {{cidr: 198.51.100.1/32}}}}], ports: [{{port: 8080}}]}}\n"
    );
    let (s, _eng, mut agent) = trio_session("fd", &open);
    let ext = Outside::start(s.node_ns());
    let host = "198.51.100.1".parse().unwrap();
    let mut held = s.hold("x/a", host, 8080).expect("a holds 8080 outside");
    let tight = compile(&format!(
        "{open}---\napiVersion: palisade.dev/v1alpha1\nkind: ClusterSecurityPolicy\n\
         metadata: {{name: block}}\nspec:\n  tier: security\n  egress:\n  \
         - {{action: Deny, to: [{{ipBlock: {{cidr: 198.51.100.0/24}}}}], ports: [{{port: 8080}}]}}\n"
    ));
    agent.reconcile(&tight).expect("tightened ruleset");
    let closed = agent.close_denied(&tight).expect("conntrack listed");
    assert_eq!(closed, 1, "a's connection to the denied host");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let o = hold_outcome(&mut held);
    assert!(o.starts_with("broken"), "a → outside:8080: {o}");
    drop(ext);
}

/// A UDP datagram (header and `payload`; no checksum, which IPv4 allows).
fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

/// A lab where `b`'s UDP conversation with `c` (b:40000 → c:5353) was open under the old
/// policy and has just been closed by tightening it (`c` no longer takes 5353 from `b`):
/// the session, the agent, `b`'s and `c`'s namespaces and their datagrams. `c`'s observer
/// counts `b`'s datagrams to 5353 (one so far).
struct ClosedUdp {
    s: palisade_agent::lab::Session,
    agent: palisade_agent::runtime::Agent,
    tight: palisade_policy::Engine,
    b: String,
    c: String,
    b_to_c: Vec<u8>,
    c_to_b: Vec<u8>,
}

impl ClosedUdp {
    fn start(name: &str) -> ClosedUdp {
        use palisade_agent::lab::craft;
        let with_udp = TRIO.replace(
            "ports: [{port: 8080}]",
            "ports: [{port: 8080}, {port: 5353, protocol: UDP}]",
        );
        let (s, _eng, mut agent) = trio_session(name, &with_udp);
        let (b, c) = (netns_of(&s, "x/b"), netns_of(&s, "x/c"));
        let (b_ip, c_ip) = ("10.78.1.2".parse().unwrap(), "10.78.1.3".parse().unwrap());
        // No sockets on these ports: keep the pods' port-unreachable errors out of the way.
        for ns in [&b, &c] {
            let st = Command::new("ip")
                .args(["netns", "exec", ns, "nft"])
                .arg("table inet quiet { chain o { type filter hook output priority 0; meta l4proto icmp drop; }; }")
                .status()
                .unwrap();
            assert!(st.success());
        }
        observer(&c, &["ip saddr 10.78.1.2 udp dport 5353"]);
        let b_to_c = craft::ipv4(b_ip, c_ip, 17, &udp(40000, 5353, b"query"));
        let c_to_b = craft::ipv4(c_ip, b_ip, 17, &udp(5353, 40000, b"answer"));
        craft::send_ipv4(&b, &b_to_c).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        craft::send_ipv4(&c, &c_to_b).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(
            observed(&c),
            [1],
            "the conversation is open under the old policy"
        );
        let tight = compile(&with_udp.replace(
            "- from: [{podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: 203.0.113.0/24}}]",
            "- from: [{ipBlock: {cidr: 203.0.113.0/24}}]",
        ));
        agent.reconcile(&tight).expect("tightened ruleset");
        let closed = agent.close_denied(&tight).expect("conntrack listed");
        assert_eq!(closed, 1, "b's conversation with c is closed");
        ClosedUdp {
            s,
            agent,
            tight,
            b,
            c,
            b_to_c,
            c_to_b,
        }
    }

    /// `c` speaks first (c → b is allowed on its own: b has no policy), then `b`, three
    /// times; `b`'s datagrams that reached `c` since the start.
    fn c_then_b(&self) -> Vec<u64> {
        use palisade_agent::lab::craft;
        craft::send_ipv4(&self.c, &self.c_to_b).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        for _ in 0..3 {
            craft::send_ipv4(&self.b, &self.b_to_c).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        observed(&self.c)
    }
}

/// UDP has no SYN to tell who began. After the agent deleted the entry of a UDP
/// conversation that policy now denies (b → c:5353), the allowed side's next datagram (c
/// keeps sending, as a QUIC server does) opened a fresh entry in c's direction, and b's
/// datagrams then reached c as its replies. Now a closed UDP conversation is remembered
/// for ten minutes and refused in both directions.
#[test]
fn a_closed_udp_conversation_is_not_picked_up_again_from_the_allowed_side() {
    if !can_run_with_conntrack() {
        return;
    }
    let closed = ClosedUdp::start("ud");
    assert_eq!(closed.c_then_b(), [1], "b's datagrams reached c as replies");
}

/// The memory of closed UDP conversations lived only in the kernel's set, and a full
/// rebuild of the table (after a host firewall reload removed it, or when the agent
/// restarts) started that set empty: c's next datagram re-opened the conversation and b's
/// reached c again as replies (on the old code: 4 datagrams counted, not 1). Now the agent
/// carries what it remembers over a rebuild, and a restarted agent adopts what the kernel
/// remembers, each with the time left.
#[test]
fn a_closed_udp_conversation_stays_closed_over_a_full_rebuild() {
    if !can_run_with_conntrack() {
        return;
    }
    let mut closed = ClosedUdp::start("ur");
    let node = closed.s.node_ns().to_string();
    let st = Command::new("ip")
        .args(["netns", "exec", &node, "nft", "delete table inet palisade"])
        .status()
        .unwrap();
    assert!(st.success());
    let stats = closed
        .agent
        .resync(&closed.tight)
        .unwrap()
        .expect("rebuilt");
    assert!(!stats.incremental, "{stats:?}");
    assert_eq!(
        closed.c_then_b(),
        [1],
        "after the rebuild b's datagrams reached c as replies"
    );
    // A restarted agent: its first reconcile replaces the table whole.
    let mut restarted =
        palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
            node: "n1".into(),
            all_nodes: false,
            netns: Some(node.clone()),
            log_flows: false,
            node_services: Vec::new(),
        });
    let stats = restarted.reconcile(&closed.tight).expect("ruleset applied");
    assert!(!stats.incremental && !stats.unchanged, "{stats:?}");
    assert_eq!(
        closed.c_then_b(),
        [1],
        "after a restart b's datagrams reached c as replies"
    );
}

/// While a host firewall reload has flushed the agent's table, anything connects; the
/// resync rebuilds the table, and now also closes what was opened meanwhile that policy
/// denies: `a`'s connection to `c` breaks, `b`'s (allowed) stays. On the old code the
/// rebuilt table refused new connections only, and `a`'s held connection stayed alive.
#[test]
fn connections_opened_while_the_table_was_flushed_are_closed_by_the_resync() {
    if !can_run_with_conntrack() {
        return;
    }
    let (s, eng, mut agent) = trio_session("fl", TRIO);
    // The reload: every table flushed, the host firewall's own rules back (they track
    // connections, as kube-proxy's and most host firewalls do, so conntrack stays on).
    let st = Command::new("ip")
        .args(["netns", "exec", s.node_ns(), "nft"])
        .arg("flush ruleset; table ip hostfw { chain i { type filter hook input priority 0; ct state established accept; }; }")
        .status()
        .unwrap();
    assert!(st.success());
    let c_ip = "10.78.1.3".parse().unwrap();
    let mut denied = s
        .hold("x/a", c_ip, 8080)
        .expect("a reaches c, the table gone");
    let mut allowed = s.hold("x/b", c_ip, 8080).expect("b reaches c");
    agent.resync(&eng).unwrap().expect("rebuilt");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (d, a) = (hold_outcome(&mut denied), hold_outcome(&mut allowed));
    assert!(d.starts_with("broken"), "a → c: {d}");
    assert!(a.starts_with("alive"), "b → c: {a}");
}

/// The SYN requirement held only for pods whose interface the agent knows (a host route
/// `/32` to it): with a subnet route to a pod (bridge CNIs, or a route not there yet), an
/// outside host's mid-stream packet re-opened a connection the agent had closed, and the
/// pod's packets passed as its replies past its egress policy. Now the requirement holds
/// for every local pod address. Here `a` is routed by a `/31` and its egress to the
/// outside host is withdrawn; the host speaks first, then `a`.
#[test]
fn a_pod_without_a_known_interface_is_not_picked_up_again_either() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let (s, _eng, mut agent) = trio_session("bu", TRIO);
    let node = s.node_ns().to_string();
    let ext = Outside::start(&node);
    let a_if = netns_if_of(&node, "10.78.1.1");
    for cmd in [
        format!("ip -n {node} route del 10.78.1.1/32"),
        format!("ip -n {node} route add 10.78.1.0/31 dev {a_if}"),
    ] {
        let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
        assert!(st.success(), "{cmd}");
    }
    let tight = compile(&format!(
        "{TRIO}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: a-out, namespace: x}}\nspec:\n  \
         podSelector: {{matchLabels: {{app: a}}}}\n  policyTypes: [Egress]\n  \
         egress: [{{to: [{{ipBlock: {{cidr: 198.51.100.1/32}}}}], ports: [{{port: 9090}}]}}]\n"
    ));
    agent.reconcile(&tight).expect("tightened ruleset");
    assert!(
        !list_set(&node, "pod_src_4").contains("10.78.1.1"),
        "a's interface is unknown to the agent"
    );
    let a = netns_of(&s, "x/a");
    for ns in [&a, &ext.ns] {
        let st = Command::new("ip")
            .args(["netns", "exec", ns, "nft"])
            .arg("table inet quiet { chain o { type filter hook output priority 0; tcp flags rst drop; }; }")
            .status()
            .unwrap();
        assert!(st.success());
    }
    observer(&ext.ns, &["ip saddr 10.78.1.1 tcp dport 8080"]);
    let (a_ip, host) = (
        "10.78.1.1".parse().unwrap(),
        "198.51.100.1".parse().unwrap(),
    );
    craft::send_ipv4(&ext.ns, &craft::tcp(host, a_ip, 8080, 43000, craft::ACK)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    for _ in 0..3 {
        craft::send_ipv4(&a, &craft::tcp(a_ip, host, 43000, 8080, craft::ACK)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(&ext.ns),
        [0],
        "a's packets reached the host as replies"
    );
}

/// A node whose three pods (`NET.1` to `NET.3`, `/24`) sit behind one Linux bridge `br0`
/// (`NET.254`), as flannel's `cni0` or the `bridge` plugin lay them out. `None` (saying why)
/// when br_netfilter is not loaded. Its namespaces go on drop.
struct BridgedNode {
    node: String,
    pods: Vec<String>,
    _namespaces: Vec<Netns>,
}

impl BridgedNode {
    /// br_netfilter's switch for IPv4.
    const SWITCH: &'static str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

    fn create(name: &str, net: &str) -> Option<BridgedNode> {
        if !Path::new(Self::SWITCH).exists() {
            eprintln!(
                "skipping: br_netfilter is not loaded ({} is missing)",
                Self::SWITCH
            );
            return None;
        }
        let prefix = format!("{name}{}", std::process::id() % 10000);
        let node = format!("{prefix}-node");
        let mut namespaces = vec![Netns(node.clone())];
        let sh = |cmd: String| {
            let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
            assert!(st.success(), "{cmd}");
        };
        sh(format!("ip netns add {node}"));
        sh(format!(
            "ip -n {node} link set lo up && ip -n {node} link add br0 type bridge && \
             ip -n {node} link set br0 up && ip -n {node} addr add {net}.254/24 dev br0"
        ));
        let mut pods = Vec::new();
        for i in 0..3 {
            let ns = format!("{prefix}-p{i}");
            namespaces.push(Netns(ns.clone()));
            sh(format!("ip netns add {ns}"));
            sh(format!(
                "ip -n {node} link add v{i} type veth peer name eth0 netns {ns} && \
                 ip -n {node} link set v{i} master br0 up && ip -n {ns} link set lo up && \
                 ip -n {ns} link set eth0 up && ip -n {ns} addr add {net}.{}/24 dev eth0 && \
                 ip -n {ns} route add default via {net}.254",
                i + 1
            ));
            pods.push(ns);
        }
        Some(BridgedNode {
            node,
            pods,
            _namespaces: namespaces,
        })
    }
}

/// Pods behind one Linux bridge (flannel's `cni0`, the `bridge` plugin): their frames are
/// switched, not routed, and meet the policy in `forward` only through br_netfilter. With
/// `net.bridge.bridge-nf-call-iptables` off, `a` reached `c` although `c` takes 8080 from
/// `b` only (the old code warned about addresses without a host route and left it there).
/// The agent now turns the switch on for such pods: `a` is refused, `b` still connects.
#[test]
fn pods_behind_a_bridge_meet_the_policy() {
    if !can_run() {
        return;
    }
    let Some(bridged) = BridgedNode::create("plbr", "10.78.1") else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let switch = BridgedNode::SWITCH;
    let read_switch = || {
        let o = Command::new("ip")
            .args(["netns", "exec", node, "cat", switch])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            node,
            "sh",
            "-c",
            &format!("echo 0 > {switch}"),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "switch turned off");
    let _server = NodeServer::start(&pod_ns[2], &[8080]);
    assert!(
        connects(&pod_ns[0], "10.78.1.3", 8080),
        "the bridge switches a's SYN to c before any policy"
    );
    let mut agent = palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
        node: "n1".into(),
        all_nodes: false,
        netns: Some(node.clone()),
        log_flows: false,
        node_services: Vec::new(),
    });
    agent.reconcile(&compile(TRIO)).expect("ruleset applied");
    assert_eq!(read_switch(), "1", "the agent turned bridge filtering on");
    assert!(
        !connects(&pod_ns[0], "10.78.1.3", 8080),
        "a → c:8080 must be refused: c takes 8080 from b only"
    );
    assert!(
        connects(&pod_ns[1], "10.78.1.3", 8080),
        "b → c:8080 is allowed"
    );
}

/// Pods of node `n1` under zero trust for the new-pod tests: `a` and `b` may reach and be
/// reached from the lab's addresses by `ipBlock`; `n` (when the snapshot holds it) takes
/// 8080 from `a` only and may reach the lab's addresses.
fn new_pod_manifests(with_n: bool) -> String {
    let mut yaml = String::from(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: PalisadeConfig
metadata: {name: zt}
spec: {defaultPosture: deny}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.6.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.6.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: lab-open, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [a, b]}]}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{ipBlock: {cidr: 10.78.0.0/16}}]}]
  egress: [{to: [{ipBlock: {cidr: 10.78.0.0/16}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: n-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: n}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 8080}]}]
  egress: [{to: [{ipBlock: {cidr: 10.78.0.0/16}}]}]
"#,
    );
    if with_n {
        yaml.push_str(
            "---\napiVersion: v1\nkind: Pod\n\
             metadata: {name: n, namespace: x, labels: {app: n}}\n\
             spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.78.6.3}\n",
        );
    }
    yaml
}

/// A pod that has started (its interface `h2` is up and routed, matching the configured
/// pod interface prefix `h`) but that the agent's snapshot does not hold yet is held to the
/// zero-trust posture: it reaches no pod and no pod reaches it, though `a`'s and `b`'s
/// `ipBlock` rules would let its traffic through. Once the snapshot includes it, its own
/// policy decides at once (`a` reaches it, `b` does not; it reaches both). On the old code
/// (the same as no prefixes) its address was in no verdict map and all four connections
/// went through: `n` to `a` and `b` (its egress unchecked, their ingress allows the block),
/// `a` and `b` to `n` (its ingress unchecked). The same for what it sends to its node
/// (`input`), Palisade's node services excepted.
#[test]
fn a_pod_the_agent_does_not_know_yet_is_held_to_zero_trust() {
    if !can_run() {
        return;
    }
    let all = compile(&new_pod_manifests(true));
    let known = compile(&new_pod_manifests(false));
    assert!(known.pod_by_ip("10.78.6.3".parse().unwrap()).is_none());
    let pods: Vec<(u32, String, std::net::IpAddr)> = all
        .sorted_pods()
        .into_iter()
        .map(|id| {
            let p = &all.pods()[id as usize];
            (id, p.key(), p.ips[0])
        })
        .collect();
    let (s, _) = lab_with_agent("np", &pods);
    let mut agent = palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
        node: "n1".into(),
        all_nodes: false,
        netns: Some(s.node_ns().to_string()),
        log_flows: false,
        node_services: palisade_agent::hostfw::NodeService::from_listen(
            "0.0.0.0:5300",
            &[palisade_policy::Protocol::TCP],
        )
        .unwrap(),
    })
    .with_pod_interface_prefixes(vec!["h".into()]);
    let node = s.node_ns().to_string();
    // The node's own address inside the lab's block, a "kubelet" on 10250 and a Palisade
    // node service on 5300 there.
    let st = Command::new("ip")
        .args(["-n", &node, "addr", "add", "10.78.9.9/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(st.success());
    let _node_server = NodeServer::start(&node, &[10250, 5300]);
    assert!(
        netns_if_of(&node, "10.78.6.3").starts_with('h'),
        "n's interface matches the prefix"
    );
    let (a, b, n) = (
        netns_of(&s, "x/a"),
        netns_of(&s, "x/b"),
        netns_of(&s, "x/n"),
    );
    agent.reconcile(&known).expect("ruleset applied");
    assert!(connects(&a, "10.78.6.2", 8080), "a → b is allowed");
    assert!(connects(&b, "10.78.6.1", 8080), "b → a is allowed");
    assert!(
        !connects(&n, "10.78.6.2", 8080),
        "unknown n → b must be dropped (zero trust)"
    );
    assert!(
        !connects(&n, "10.78.6.1", 8080),
        "unknown n → a must be dropped"
    );
    assert!(
        !connects(&a, "10.78.6.3", 8080),
        "a → unknown n must be dropped"
    );
    assert!(
        !connects(&b, "10.78.6.3", 8080),
        "b → unknown n must be dropped"
    );
    assert!(connects(&a, "10.78.9.9", 10250), "a → its node is allowed");
    assert!(
        !connects(&n, "10.78.9.9", 10250),
        "unknown n → its node must be dropped"
    );
    assert!(
        connects(&n, "10.78.9.9", 5300),
        "Palisade's node services decide for themselves"
    );
    // The reconcile that includes n: its policy, nothing else, decides from now on.
    let stats = agent.reconcile(&all).expect("ruleset with n applied");
    assert!(stats.incremental, "{stats:?}");
    assert!(
        connects(&a, "10.78.6.3", 8080),
        "a → n: n takes 8080 from a"
    );
    assert!(
        !connects(&b, "10.78.6.3", 8080),
        "b → n: n takes 8080 from a only"
    );
    assert!(connects(&n, "10.78.6.2", 8080), "n → b is allowed");
    assert!(connects(&n, "10.78.6.1", 8080), "n → a is allowed");
    assert!(connects(&n, "10.78.9.9", 10250), "n → its node is allowed");
    assert!(connects(&a, "10.78.6.2", 8080), "a → b is still allowed");
}

/// The same hold for pods behind a Linux bridge (flannel's `cni0`, the `bridge` plugin):
/// br_netfilter hands their packets to `forward` with the bridge as both interfaces, so the
/// bridge's name is the prefix (`br` here). Unknown `n` reaches no pod and no pod reaches it
/// until the snapshot holds it; then its policy decides (`a` reaches it, `b` does not).
#[test]
fn a_pod_the_agent_does_not_know_yet_behind_a_bridge_is_held_too() {
    if !can_run() {
        return;
    }
    let Some(bridged) = BridgedNode::create("plnb", "10.78.6") else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let _servers: Vec<NodeServer> = pod_ns
        .iter()
        .map(|ns| NodeServer::start(ns, &[8080]))
        .collect();
    let (a, b, n) = (&pod_ns[0], &pod_ns[1], &pod_ns[2]);
    let mut agent = palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
        node: "n1".into(),
        all_nodes: false,
        netns: Some(node.clone()),
        log_flows: false,
        node_services: Vec::new(),
    })
    .with_pod_interface_prefixes(vec!["br".into()]);
    agent
        .reconcile(&compile(&new_pod_manifests(false)))
        .expect("ruleset applied");
    assert!(connects(a, "10.78.6.2", 8080), "a → b is allowed");
    assert!(
        !connects(n, "10.78.6.2", 8080),
        "unknown n → b must be dropped"
    );
    assert!(
        !connects(a, "10.78.6.3", 8080),
        "a → unknown n must be dropped"
    );
    agent
        .reconcile(&compile(&new_pod_manifests(true)))
        .expect("ruleset with n applied");
    assert!(connects(a, "10.78.6.3", 8080), "a → n: n takes 8080 from a");
    assert!(!connects(b, "10.78.6.3", 8080), "b → n: from a only");
    assert!(connects(n, "10.78.6.2", 8080), "n → b is allowed");
}

/// `a`, `b` and `c` behind one bridge; `c` takes 8080 from `a` only.
const BRIDGED_TRIO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.7.1, podIPs: [{ip: 10.78.7.1}, {ip: 'fd78:7::1'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.7.2, podIPs: [{ip: 10.78.7.2}, {ip: 'fd78:7::2'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.7.3, podIPs: [{ip: 10.78.7.3}, {ip: 'fd78:7::3'}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 8080}]}]
"#;

/// An ARP request sent on `ns`'s `eth0` from its own MAC, claiming `sender` (Python, raw
/// `AF_PACKET` socket).
fn send_arp(ns: &str, sender: &str, target: &str) {
    let script = format!(
        "import socket\n\
         s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
         s.bind(('eth0',0))\n\
         mac=s.getsockname()[4]\n\
         a=socket.inet_aton\n\
         s.send(b'\\xff'*6+mac+b'\\x08\\x06'+b'\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x01'+mac+a('{sender}')+b'\\x00'*6+a('{target}'))\n"
    );
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .status()
        .unwrap();
    assert!(st.success(), "ARP sent from {ns}");
}

/// Pods behind a Linux bridge were not anti-spoofed: only addresses with a host route to
/// their own interface were checked, and behind a bridge every pod address is routed to the
/// bridge. `b` sent as `a` (IPv4 source, a SYN and a bare ACK) and reached `c`, which takes
/// 8080 from `a` only; its ARP claiming `a`'s address reached `c` too, and so did its
/// IPv6 SYN from `a`'s IPv6 address. Now the agent binds each bridged pod address (IPv4
/// and IPv6) to the bridge port its MAC was learned on (`table bridge palisade`): `b`'s
/// forged packets are dropped at its port, `a` still connects.
#[test]
fn a_pod_behind_a_bridge_cannot_pass_for_another_pod() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let Some(bridged) = BridgedNode::create("plbs", "10.78.7") else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, b, c) = (&pod_ns[0], &pod_ns[1], &pod_ns[2]);
    let _server = NodeServer::start(c, &[8080]);
    // IPv6 too: the bridge and the pods on one /64.
    let sh = |cmd: String| {
        let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh(format!("ip -n {node} addr add fd78:7::fe/64 dev br0 nodad"));
    for (i, ns) in pod_ns.iter().enumerate() {
        sh(format!(
            "ip -n {ns} addr add fd78:7::{}/64 dev eth0 nodad",
            i + 1
        ));
    }
    let mut agent = palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
        node: "n1".into(),
        all_nodes: false,
        netns: Some(node.clone()),
        log_flows: false,
        node_services: Vec::new(),
    });
    agent
        .reconcile(&compile(BRIDGED_TRIO))
        .expect("ruleset applied");
    assert!(connects(a, "10.78.7.3", 8080), "a → c:8080 is allowed");
    assert!(!connects(b, "10.78.7.3", 8080), "b → c:8080 is denied");
    observer(
        c,
        &["ip saddr 10.78.7.1 tcp dport 8080 tcp sport 41000-41001"],
    );
    let st = Command::new("ip")
        .args(["netns", "exec", c, "nft"])
        .arg("table arp obs { chain c { type filter hook input priority 0; arp saddr ip 10.78.7.1 counter; }; }")
        .status()
        .unwrap();
    assert!(st.success());
    let (a_ip, c_ip) = ("10.78.7.1".parse().unwrap(), "10.78.7.3".parse().unwrap());
    craft::send_ipv4(b, &craft::tcp(a_ip, c_ip, 41000, 8080, craft::SYN)).unwrap();
    craft::send_ipv4(b, &craft::tcp(a_ip, c_ip, 41001, 8080, craft::ACK)).unwrap();
    send_arp(b, "10.78.7.1", "10.78.7.3");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(c),
        [0],
        "b's packets claiming a's address reached c"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", c, "nft", "list", "table", "arp", "obs"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("packets 0 "),
        "b's ARP claiming a's address reached c: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The real a is not affected, and its own ARP still passes.
    send_arp(a, "10.78.7.1", "10.78.7.3");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let out = Command::new("ip")
        .args(["netns", "exec", c, "nft", "list", "table", "arp", "obs"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("packets 0 "),
        "a's own ARP reached c"
    );
    assert!(connects(a, "10.78.7.3", 8080), "a → c:8080 still connects");
    // IPv6: b knows c's link address (its own connection attempt), then sends from a's
    // address, which it has taken on as well.
    observer(c, &["ip6 saddr fd78:7::1 tcp dport 8080"]);
    tcp6_syn(a, "fd78:7::1", "fd78:7::3");
    tcp6_syn(b, "fd78:7::2", "fd78:7::3");
    // The observer's second rule (its first counts b's IPv4 forgeries, none).
    let before = observed(c)[1];
    assert_eq!(before, 1, "a's own IPv6 SYN reached c");
    sh(format!("ip -n {b} addr add fd78:7::1/128 dev eth0 nodad"));
    tcp6_syn(b, "fd78:7::1", "fd78:7::3");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(c)[1],
        before,
        "b's IPv6 packets claiming a's address reached c"
    );
}

/// One TCP connection attempt from `src` to `[dst]:8080` inside `ns` (Python), waiting at
/// most half a second; whether it connects does not matter.
fn tcp6_syn(ns: &str, src: &str, dst: &str) {
    let script = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET6,socket.SOCK_STREAM)\n\
         s.bind(('{src}',0))\n\
         s.settimeout(0.5)\n\
         try: s.connect(('{dst}',8080))\n\
         except OSError: pass\n"
    );
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .status()
        .unwrap();
    assert!(st.success(), "python in {ns}");
}

/// `a` and (when `with_c`) the new pod `c` behind one bridge (`b`, on the same bridge, is
/// not in the snapshot yet); `a` takes 8080 from `c` only.
fn bridged_new_pods(net: &str, with_c: bool) -> String {
    let pod = |name: &str, i: u8| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {{app: {name}}}}}\n\
             spec: {{nodeName: n1, containers: [{{name: c}}]}}\nstatus: {{podIP: {net}.{i}}}\n---\n"
        )
    };
    let mut yaml = pod("a", 1);
    if with_c {
        yaml += &pod("c", 3);
    }
    yaml += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-from-c, namespace: x}\n\
             spec:\n  podSelector: {matchLabels: {app: a}}\n  \
             ingress: [{from: [{podSelector: {matchLabels: {app: c}}}], ports: [{port: 8080}]}]\n";
    yaml
}

fn bridged_agent(node: &str) -> palisade_agent::runtime::Agent {
    palisade_agent::runtime::Agent::new(palisade_agent::runtime::AgentSettings {
        node: "n1".into(),
        all_nodes: false,
        netns: Some(node.to_string()),
        log_flows: false,
        node_services: Vec::new(),
    })
}

/// A bridged pod's address was bound to the port the node learned its MAC on, so the first
/// pod to answer for an address got it: `b`, a pod the agent does not know yet (its status
/// not seen), claimed the new pod `c`'s address (an ARP request from `c`'s address to the
/// node) before `c` sent anything; the agent bound `c`'s address to `b`'s port, so `b`'s
/// SYN from `c`'s address reached `a`, which takes 8080 from `c` only, and `c`'s own
/// connection was dropped. Now the binding comes from the
/// addresses configured on each port's veth peer (the pod's `eth0`, read over rtnetlink by
/// namespace id): `c`'s address is bound to `c`'s port from the start, `b`'s forgeries are
/// dropped at its port, and `c` connects.
#[test]
fn a_pod_answering_first_for_a_new_pods_address_does_not_get_it() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let net = "10.78.8";
    let Some(bridged) = BridgedNode::create("plbf", net) else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, b, c) = (&pod_ns[0], &pod_ns[1], &pod_ns[2]);
    let _server = NodeServer::start(a, &[8080]);
    let mut agent = bridged_agent(node);
    agent
        .reconcile(&compile(&bridged_new_pods(net, false)))
        .expect("ruleset applied");
    // b learns a's link address (its own, refused, connection attempt).
    assert!(!connects(b, "10.78.8.1", 8080), "b → a:8080 is denied");
    // c is created (its address configured) and sends nothing; b claims c's address first.
    send_arp(b, "10.78.8.3", "10.78.8.254");
    let neigh = Command::new("ip")
        .args(["-n", node, "neigh", "show", "10.78.8.3"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&neigh.stdout).trim().is_empty(),
        "the node learned b's claim"
    );
    agent
        .reconcile(&compile(&bridged_new_pods(net, true)))
        .expect("ruleset with c applied");
    assert_eq!(
        agent.bridge_ports().get(&"10.78.8.3".parse().unwrap()),
        Some(&"v2".to_string()),
        "c's address is bound to c's port"
    );
    observer(
        a,
        &["ip saddr 10.78.8.3 tcp dport 8080 tcp sport 41000-41001"],
    );
    let (c_ip, a_ip) = ("10.78.8.3".parse().unwrap(), "10.78.8.1".parse().unwrap());
    craft::send_ipv4(b, &craft::tcp(c_ip, a_ip, 41000, 8080, craft::SYN)).unwrap();
    craft::send_ipv4(b, &craft::tcp(c_ip, a_ip, 41001, 8080, craft::ACK)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(a),
        [0],
        "b's packets claiming the new pod c's address reached a"
    );
    assert!(connects(c, "10.78.8.1", 8080), "c → a:8080 is allowed");
    assert!(!connects(b, "10.78.8.1", 8080), "b → a:8080 is denied");
}

/// A pod address reused while the old pod's port still existed stayed bound to the old
/// port (the binding held while anyone wanted the address), so the new pod's traffic was
/// dropped until that port went. Now a port serves the pod it was first bound to, and the
/// new pod's port, whose peer has the address configured, wins: the new pod `d`, reusing
/// the deleted `a`'s address, connects; the old port sending as that address is dropped.
#[test]
fn a_reused_address_goes_to_the_new_pods_bridge_port() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let net = "10.78.9";
    let Some(bridged) = BridgedNode::create("plbu", net) else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, b) = (&pod_ns[0], &pod_ns[1]);
    let d = format!("{node}-d");
    let sh = |cmd: String| {
        let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh(format!("ip netns add {d}"));
    let _d_ns = Netns(d.clone());
    let _server = NodeServer::start(b, &[8080]);
    // b takes 8080 from a (and, later, from d, which has a's labels).
    let yaml = |first: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {first}, namespace: x, labels: {{app: a}}}}\n\
             spec: {{nodeName: n1, containers: [{{name: c}}]}}\nstatus: {{podIP: {net}.1}}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {{name: b, namespace: x, labels: {{app: b}}}}\n\
             spec: {{nodeName: n1, containers: [{{name: c}}]}}\nstatus: {{podIP: {net}.2}}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {{name: c, namespace: x, labels: {{app: c}}}}\n\
             spec: {{nodeName: n1, containers: [{{name: c}}]}}\nstatus: {{podIP: {net}.3}}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: b-from-a, namespace: x}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: b}}}}\n  \
             ingress: [{{from: [{{podSelector: {{matchLabels: {{app: a}}}}}}], ports: [{{port: 8080}}]}}]\n"
        )
    };
    let mut agent = bridged_agent(node);
    agent
        .reconcile(&compile(&yaml("a")))
        .expect("ruleset applied");
    assert!(connects(a, "10.78.9.2", 8080), "a → b:8080 is allowed");
    // a is deleted, its sandbox (and port) not yet; d gets a's address on a new port.
    sh(format!(
        "ip -n {node} link add v3 type veth peer name eth0 netns {d} && \
         ip -n {node} link set v3 master br0 up && ip -n {d} link set lo up && \
         ip -n {d} link set eth0 up && ip -n {d} addr add {net}.1/24 dev eth0 && \
         ip -n {d} route add default via {net}.254"
    ));
    agent
        .reconcile(&compile(&yaml("d")))
        .expect("ruleset with d applied");
    assert_eq!(
        agent.bridge_ports().get(&"10.78.9.1".parse().unwrap()),
        Some(&"v3".to_string()),
        "the reused address is bound to the new pod's port"
    );
    assert!(connects(&d, "10.78.9.2", 8080), "d → b:8080 is allowed");
    observer(b, &["ip saddr 10.78.9.1 tcp dport 8080 tcp sport 41000"]);
    let (a_ip, b_ip) = ("10.78.9.1".parse().unwrap(), "10.78.9.2".parse().unwrap());
    craft::send_ipv4(a, &craft::tcp(a_ip, b_ip, 41000, 8080, craft::SYN)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(b),
        [0],
        "the old port still sent as the reused address"
    );
}

// ---------------------------------------------------------------------------------------
// Frames a hostile pod behind a bridge puts on the wire (`bridgerev`).
// ---------------------------------------------------------------------------------------

/// The MAC address of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> Vec<u8> {
    let o = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", dev])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["address"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// Sends one whole Ethernet frame on `ns`'s `eth0` (Python, raw `AF_PACKET` socket).
fn send_frame(ns: &str, frame: &[u8]) {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket\n\
         s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
         s.bind(('eth0',0))\n\
         s.send(bytes.fromhex('{hex}'))\n"
    );
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .status()
        .unwrap();
    assert!(st.success(), "frame sent from {ns}");
}

/// An Ethernet frame, with an 802.1Q tag (`tci`: priority and VLAN id) when given.
fn ether(dst: &[u8], src: &[u8], tci: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(src);
    if let Some(tci) = tci {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const BROADCAST: [u8; 6] = [0xff; 6];
/// `ff02::1` (all nodes) as a MAC.
const ALL_NODES: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// An ARP packet (`op` 1 request, 2 reply) from `mac` claiming `sender`.
fn arp(op: u16, mac: &[u8], sender: &str, target: &str) -> Vec<u8> {
    let ip4 = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(mac);
    a.extend_from_slice(&ip4(sender));
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&ip4(target));
    a
}

/// An IPv6 packet (hop limit 255, as neighbour discovery wants) carrying the ICMPv6
/// message `icmp`, its checksum filled in.
fn icmp6(src: &str, dst: &str, icmp: &[u8]) -> Vec<u8> {
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let mut m = icmp.to_vec();
    m[2] = 0;
    m[3] = 0;
    let mut pseudo = s.octets().to_vec();
    pseudo.extend_from_slice(&d.octets());
    pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&m);
    let c = palisade_agent::lab::craft::checksum(&pseudo);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(m.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 255]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend(m);
    p
}

/// A neighbour advertisement (override set) saying `target` is at `mac`, to all nodes
/// from the link-local `src`, as a whole frame from `mac`.
fn na_frame(mac: &[u8], src: &str, target: &str) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    m.extend_from_slice(&target.parse::<std::net::Ipv6Addr>().unwrap().octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(mac);
    ether(&ALL_NODES, mac, None, 0x86dd, &icmp6(src, "ff02::1", &m))
}

/// [`na_frame`] with a destination options header (padding only) before the ICMPv6
/// message, which Linux takes as the same advertisement.
fn na_frame_with_options(mac: &[u8], src: &str, target: &str) -> Vec<u8> {
    let mut f = na_frame(mac, src, target);
    // Ethernet 14 + IPv6 40: the IPv6 header's next header (offset 6) and payload length.
    let mut ip = f.split_off(14);
    let icmp = ip.split_off(40);
    ip[6] = 60;
    ip[4..6].copy_from_slice(&((icmp.len() + 8) as u16).to_be_bytes());
    ip.extend_from_slice(&[58, 0, 1, 4, 0, 0, 0, 0]);
    ip.extend(icmp);
    f.extend(ip);
    f
}

/// A router advertisement (a default router for 30 minutes) to all nodes from the
/// link-local `src`, as a whole frame from `mac`.
fn ra_frame(mac: &[u8], src: &str) -> Vec<u8> {
    let mut m = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(mac);
    ether(&ALL_NODES, mac, None, 0x86dd, &icmp6(src, "ff02::1", &m))
}

/// `rules` counted by `table arp obs` in `ns` (ARP input, before anything else there).
fn arp_observer(ns: &str, rules: &[&str]) {
    let body: String = rules.iter().map(|r| format!("{r} counter; ")).collect();
    let script = format!(
        "table arp obs {{ chain c {{ type filter hook input priority -500; policy accept; {body}}}; }}"
    );
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "nft", &script])
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}

/// The packet counts of [`arp_observer`]'s rules, in order.
fn arp_observed(ns: &str) -> Vec<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "table", "arp", "obs"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("packets ").nth(1))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// Pods `names` (from `a`, `b`, `c`: `NET.1` to `NET.3`, and `V6::1` to `V6::3` when
/// given) of node `n1`, and `extra` YAML.
fn bridged_pods(net: &str, v6: Option<&str>, names: &[&str], extra: &str) -> String {
    let mut yaml = String::new();
    for name in names {
        let i = match *name {
            "a" => 1,
            "b" => 2,
            _ => 3,
        };
        let ips = match v6 {
            Some(p) => format!("podIP: {net}.{i}, podIPs: [{{ip: {net}.{i}}}, {{ip: '{p}::{i}'}}]"),
            None => format!("podIP: {net}.{i}"),
        };
        yaml += &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {{app: {name}}}}}\n\
             spec: {{nodeName: n1, containers: [{{name: c}}]}}\nstatus: {{{ips}}}\n---\n"
        );
    }
    if extra.is_empty() {
        yaml.trim_end_matches("---\n").to_string()
    } else {
        yaml + extra
    }
}

/// Gives the bridge `V6::fe/64` and each pod `V6::N/64`, without duplicate detection.
fn bridged_ipv6(bridged: &BridgedNode, v6: &str) {
    let sh = |cmd: String| {
        let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
        assert!(st.success(), "{cmd}");
    };
    sh(format!(
        "ip -n {} addr add {v6}::fe/64 dev br0 nodad",
        bridged.node
    ));
    for (i, ns) in bridged.pods.iter().enumerate() {
        sh(format!(
            "ip -n {ns} addr add {v6}::{}/64 dev eth0 nodad",
            i + 1
        ));
    }
}

/// The raw 128-bit value of an IPv6 address, as nft's `@th,64,128` compares it.
fn raw6(ip: &str) -> String {
    format!(
        "0x{:032x}",
        u128::from(ip.parse::<std::net::Ipv6Addr>().unwrap())
    )
}

/// Only a neighbour advertisement's IPv6 source was checked at a port serving no pod (a pod
/// the agent does not know yet, `b` here), and a link-local source passes: `b` advertised
/// the bound `a`'s IPv6 address (also behind a destination options header), and the
/// node's own, as its link address, and `c` (like the node) took it. `b`'s ARP claiming the node's gateway address reached `c` too (the node's
/// addresses were in no set), and so did its ARP claiming `a`'s address inside a VLAN 0
/// tag (`arp` matches depend on the outer EtherType, which the tag hides; the receiving
/// kernel takes VLAN 0 as untagged), and its router advertisement (pods are no routers).
/// Once `b` is known and bound, it may advertise only its own address. Now all of these are
/// dropped at `b`'s port; `a`'s own advertisement and ARP still reach `c`.
#[test]
fn a_bridged_pod_cannot_advertise_another_pods_or_the_nodes_address() {
    if !can_run() {
        return;
    }
    let (net, v6) = ("10.78.11", "fd78:b");
    let Some(bridged) = BridgedNode::create("plna", net) else {
        return;
    };
    bridged_ipv6(&bridged, v6);
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, b, c) = (&pod_ns[0], &pod_ns[1], &pod_ns[2]);
    let mut agent = bridged_agent(node);
    agent
        .reconcile(&compile(&bridged_pods(net, Some(v6), &["a", "c"], "")))
        .expect("ruleset applied");
    let (a_v6, gw_v6) = (format!("{v6}::1"), format!("{v6}::fe"));
    observer(
        c,
        &[
            format!("icmpv6 type nd-neighbor-advert @th,64,128 {}", raw6(&a_v6)).as_str(),
            format!("icmpv6 type nd-neighbor-advert @th,64,128 {}", raw6(&gw_v6)).as_str(),
            "icmpv6 type nd-router-advert",
        ],
    );
    arp_observer(
        c,
        &[
            format!("arp saddr ip {net}.1").as_str(),
            format!("arp saddr ip {net}.254").as_str(),
        ],
    );
    let (a_mac, b_mac) = (mac_of(a, "eth0"), mac_of(b, "eth0"));
    // b, which the agent does not know yet.
    send_frame(b, &na_frame(&b_mac, "fe80::b", &a_v6));
    send_frame(b, &na_frame_with_options(&b_mac, "fe80::b", &a_v6));
    send_frame(b, &na_frame(&b_mac, "fe80::b", &gw_v6));
    send_frame(b, &ra_frame(&b_mac, "fe80::b"));
    let gw = format!("{net}.254");
    let (a_ip, c_ip) = (format!("{net}.1"), format!("{net}.3"));
    send_frame(
        b,
        &ether(
            &BROADCAST,
            &b_mac,
            None,
            0x0806,
            &arp(2, &b_mac, &a_ip, &a_ip),
        ),
    );
    send_frame(
        b,
        &ether(
            &BROADCAST,
            &b_mac,
            None,
            0x0806,
            &arp(1, &b_mac, &gw, &c_ip),
        ),
    );
    send_frame(
        b,
        &ether(
            &BROADCAST,
            &b_mac,
            Some(0),
            0x0806,
            &arp(2, &b_mac, &a_ip, &a_ip),
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(c),
        [0, 0, 0],
        "an unknown pod's advertisements (a's address, the node's, a router) reached c"
    );
    assert_eq!(
        arp_observed(c),
        [0, 0],
        "an unknown pod's ARP claiming a's address (tagged or not) or the node's reached c"
    );
    // a's own advertisement and ARP pass.
    send_frame(a, &na_frame(&a_mac, "fe80::a", &a_v6));
    send_arp(a, &a_ip, &c_ip);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(observed(c)[0], 1, "a's own advertisement reached c");
    assert_eq!(arp_observed(c)[0], 1, "a's own ARP reached c");
    // b known and bound: its own address only.
    agent
        .reconcile(&compile(&bridged_pods(net, Some(v6), &["a", "b", "c"], "")))
        .expect("ruleset with b applied");
    send_frame(b, &na_frame(&b_mac, "fe80::b", &a_v6));
    send_frame(b, &na_frame_with_options(&b_mac, "fe80::b", &a_v6));
    send_frame(b, &na_frame(&b_mac, "fe80::b", &gw_v6));
    send_frame(b, &ra_frame(&b_mac, "fe80::b"));
    send_frame(
        b,
        &ether(
            &BROADCAST,
            &b_mac,
            None,
            0x0806,
            &arp(2, &b_mac, &a_ip, &a_ip),
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(observed(c), [1, 0, 0], "a bound pod advertised others");
    assert_eq!(
        arp_observed(c),
        [1, 0],
        "a bound pod's ARP claimed a's address"
    );
}

/// `br_netfilter` hands VLAN-tagged frames to no `inet` hook, and the receiving pod's
/// kernel takes a VLAN 0 (priority) tag as no tag: `b`, bound to its port and refused by
/// `c`'s policy, sent its own SYN to `c` in such a tag and it reached `c` (the bridge
/// table's `ip saddr` match depends on the protocol inside the tag, so the tagged frame
/// passed as `b`'s own). Now pod ports send no tagged frames; `a` still connects.
#[test]
fn a_bridged_pod_cannot_slip_past_the_policy_in_a_vlan_tag() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let net = "10.78.12";
    let Some(bridged) = BridgedNode::create("plbv", net) else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, b, c) = (&pod_ns[0], &pod_ns[1], &pod_ns[2]);
    let _server = NodeServer::start(c, &[8080]);
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c-from-a, namespace: x}\n\
                  spec:\n  podSelector: {matchLabels: {app: c}}\n  \
                  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 8080}]}]\n";
    let mut agent = bridged_agent(node);
    agent
        .reconcile(&compile(&bridged_pods(net, None, &["a", "b", "c"], policy)))
        .expect("ruleset applied");
    assert!(
        connects(a, &format!("{net}.3"), 8080),
        "a → c:8080 is allowed"
    );
    assert!(
        !connects(b, &format!("{net}.3"), 8080),
        "b → c:8080 is denied"
    );
    observer(
        c,
        &[format!("ip saddr {net}.2 tcp dport 8080 tcp sport 41000-41001").as_str()],
    );
    let (b_ip, c_ip) = (
        format!("{net}.2").parse().unwrap(),
        format!("{net}.3").parse().unwrap(),
    );
    let (b_mac, c_mac) = (mac_of(b, "eth0"), mac_of(c, "eth0"));
    for (sport, tci) in [(41000, 0x0000), (41001, 0xe000)] {
        let syn = craft::tcp(b_ip, c_ip, sport, 8080, craft::SYN);
        send_frame(b, &ether(&c_mac, &b_mac, Some(tci), 0x0800, &syn));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(c),
        [0],
        "b's SYN in a VLAN 0 tag reached c past c's policy"
    );
    assert!(
        connects(a, &format!("{net}.3"), 8080),
        "a → c:8080 still connects"
    );
}

/// A pod that took its own address off its interface left its port unbound, and an unbound
/// port may send from any address no pod is bound to: `b` (bound, then without its address)
/// sent a SYN from an address of `c`'s allowed `ipBlock` and reached `c`, and its ARP
/// claiming the node's gateway address reached `c` as well. Now a port that serves a pod
/// stays held to that pod's bound addresses, none left or not.
#[test]
fn a_bridged_pod_that_takes_its_address_off_is_still_held_at_its_port() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let net = "10.78.13";
    let Some(bridged) = BridgedNode::create("plbo", net) else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, b, c) = (&pod_ns[0], &pod_ns[1], &pod_ns[2]);
    let _server = NodeServer::start(c, &[8080]);
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c-from-outside, namespace: x}\n\
                  spec:\n  podSelector: {matchLabels: {app: c}}\n  \
                  ingress: [{from: [{ipBlock: {cidr: 198.51.100.0/24}}], ports: [{port: 8080}]}]\n";
    let yaml = bridged_pods(net, None, &["a", "b", "c"], policy);
    let mut agent = bridged_agent(node);
    agent.reconcile(&compile(&yaml)).expect("ruleset applied");
    assert_eq!(
        agent
            .bridge_ports()
            .get(&format!("{net}.2").parse().unwrap()),
        Some(&"v1".to_string()),
        "b's address is bound to b's port"
    );
    let st = Command::new("ip")
        .args([
            "-n",
            b,
            "addr",
            "del",
            &format!("{net}.2/24"),
            "dev",
            "eth0",
        ])
        .status()
        .unwrap();
    assert!(st.success(), "b took its address off");
    agent
        .reconcile(&compile(&yaml))
        .expect("ruleset applied again");
    observer(c, &["ip saddr 198.51.100.7 tcp dport 8080"]);
    let gw = format!("{net}.254");
    let (a_ip, c_ip) = (format!("{net}.1"), format!("{net}.3"));
    arp_observer(
        c,
        &[
            format!("arp saddr ip {gw}").as_str(),
            format!("arp saddr ip {a_ip}").as_str(),
        ],
    );
    let (b_mac, c_mac) = (mac_of(b, "eth0"), mac_of(c, "eth0"));
    let syn = craft::tcp(
        "198.51.100.7".parse().unwrap(),
        c_ip.parse().unwrap(),
        41000,
        8080,
        craft::SYN,
    );
    send_frame(b, &ether(&c_mac, &b_mac, None, 0x0800, &syn));
    send_frame(
        b,
        &ether(
            &BROADCAST,
            &b_mac,
            None,
            0x0806,
            &arp(1, &b_mac, &gw, &c_ip),
        ),
    );
    send_arp(a, &a_ip, &c_ip);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(c),
        [0],
        "b, without its address, sent from c's allowed ipBlock and reached c"
    );
    assert_eq!(
        arp_observed(c),
        [0, 1],
        "b's ARP claiming the gateway reached c (or a's own did not)"
    );
}

/// Bridged pod addresses were checked only at their bridge port, and in `inet palisade`
/// not at all: a host outside the node (here on the node's uplink) sent a SYN from `a`'s
/// address to `c`, which takes 8080 from `a` only, and reached it. Now bridged pod
/// addresses may reach `forward` and `input` from the node's bridges only.
#[test]
fn a_bridged_pods_address_from_outside_the_node_is_dropped() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let net = "10.78.14";
    let Some(bridged) = BridgedNode::create("plbx", net) else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, c) = (&pod_ns[0], &pod_ns[2]);
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let ext = Outside::start(node);
    let _server = NodeServer::start(c, &[8080]);
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c-from-a, namespace: x}\n\
                  spec:\n  podSelector: {matchLabels: {app: c}}\n  \
                  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 8080}]}]\n";
    let mut agent = bridged_agent(node);
    agent
        .reconcile(&compile(&bridged_pods(net, None, &["a", "b", "c"], policy)))
        .expect("ruleset applied");
    assert!(
        connects(a, &format!("{net}.3"), 8080),
        "a → c:8080 is allowed"
    );
    observer(
        c,
        &[format!("ip saddr {net}.1 tcp dport 8080 tcp sport 41000").as_str()],
    );
    let syn = craft::tcp(
        format!("{net}.1").parse().unwrap(),
        format!("{net}.3").parse().unwrap(),
        41000,
        8080,
        craft::SYN,
    );
    craft::send_ipv4(&ext.ns, &syn).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        observed(c),
        [0],
        "a SYN from outside the node with a's address reached c"
    );
    assert!(
        connects(a, &format!("{net}.3"), 8080),
        "a → c:8080 still connects"
    );
}

/// The bridge port `br0` of `node` last learned `mac` on.
fn fdb_port(node: &str, mac: &[u8]) -> Option<String> {
    let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    let mac = mac.join(":");
    let o = Command::new("bridge")
        .args(["-n", node, "-j", "fdb", "show", "br", "br0"])
        .output()
        .unwrap();
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
    v.iter()
        .filter(|e| e["mac"] == mac.as_str() && e["state"] != "permanent")
        .find_map(|e| e["ifname"].as_str().map(String::from))
}

/// Nothing bound a pod's frames to its own MAC: `b` sent its own (allowed) packet with
/// `a`'s MAC as source, and the bridge learned `a`'s MAC on `b`'s port, so what the node
/// and `c` sent to `a` went to `b`. Now a port that serves a pod sends only its pod's MAC
/// (read from the pod's interface when the port is first bound) and no pod port sends
/// another's: the bridge keeps `a`'s MAC on `a`'s port and `a` still connects.
#[test]
fn a_bridged_pod_cannot_take_another_pods_mac() {
    use palisade_agent::lab::craft;
    if !can_run() {
        return;
    }
    let net = "10.78.15";
    let Some(bridged) = BridgedNode::create("plbm", net) else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, b, c) = (&pod_ns[0], &pod_ns[1], &pod_ns[2]);
    let _server = NodeServer::start(c, &[8080]);
    let mut agent = bridged_agent(node);
    agent
        .reconcile(&compile(&bridged_pods(net, None, &["a", "b", "c"], "")))
        .expect("ruleset applied");
    assert!(
        connects(a, &format!("{net}.3"), 8080),
        "a → c:8080 is allowed"
    );
    let (a_mac, c_mac) = (mac_of(a, "eth0"), mac_of(c, "eth0"));
    assert_eq!(
        fdb_port(node, &a_mac).as_deref(),
        Some("v0"),
        "a's MAC on a's port"
    );
    let syn = craft::tcp(
        format!("{net}.2").parse().unwrap(),
        format!("{net}.3").parse().unwrap(),
        41000,
        8080,
        craft::SYN,
    );
    send_frame(b, &ether(&c_mac, &a_mac, None, 0x0800, &syn));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        fdb_port(node, &a_mac).as_deref(),
        Some("v0"),
        "b's frame with a's MAC moved a's MAC to b's port"
    );
    assert!(
        connects(a, &format!("{net}.3"), 8080),
        "a → c:8080 still connects"
    );
}

/// `input` held a pod to its egress policy only for packets arriving on a pod interface,
/// and pods behind a bridge arrive on the bridge: `a`, whose egress allows nothing,
/// reached a service of its own node on the bridge's address. Now their packets meet their
/// egress policy there too (their addresses are checked as coming from the bridge); `b`,
/// without egress policy, still connects.
#[test]
fn an_egress_isolated_pod_behind_a_bridge_cannot_reach_its_node() {
    if !can_run() {
        return;
    }
    let net = "10.78.16";
    let Some(bridged) = BridgedNode::create("plbe", net) else {
        return;
    };
    let (node, pod_ns) = (&bridged.node, &bridged.pods);
    let (a, b) = (&pod_ns[0], &pod_ns[1]);
    let _kubelet = NodeServer::start(node, &[10250]);
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-isolated, namespace: x}\n\
                  spec:\n  podSelector: {matchLabels: {app: a}}\n  policyTypes: [Egress]\n";
    let mut agent = bridged_agent(node);
    agent
        .reconcile(&compile(&bridged_pods(net, None, &["a", "b"], policy)))
        .expect("ruleset applied");
    let gw = format!("{net}.254");
    assert!(
        !connects(a, &gw, 10250),
        "the egress-isolated bridged pod reached its node"
    );
    assert!(connects(b, &gw, 10250), "b reaches its node");
}
