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

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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
