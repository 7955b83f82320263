//! `palisade recommend` and `palisade replay` end to end: from recorded events (a JSON-lines
//! file), and the round trip in the kernel lab (root only; skipped, saying so, elsewhere):
//! traffic in network namespaces → flow events → recommended policy → enforced by nftables
//! → the same traffic passes and new connections are dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-observe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pod(ns: &str, name: &str, app: &str, ip: &str) -> serde_json::Value {
    serde_json::json!({"kind": "pod", "namespace": ns, "name": name, "workload": format!("{ns}/{app}"),
        "ip": ip, "labels": {"app": app}})
}

fn flow(
    i: u32,
    src: serde_json::Value,
    dst: serde_json::Value,
    port: u16,
    verdict: &str,
) -> String {
    let mut dst = dst;
    dst["port"] = port.into();
    serde_json::json!({"id": format!("e{i:03}"), "time": format!("2026-11-26T10:00:{i:02}.000000Z"),
        "type": "flow", "source": src, "destination": dst, "protocol": "TCP", "verdict": verdict,
        "flow": {"state": if verdict == "deny" {"denied"} else {"new"}}})
    .to_string()
}

#[test]
fn recommend_output_passes_check_and_replay_lists_what_a_stricter_set_denies() {
    let d = tmpdir("cli");
    let web = || pod("app", "web-7f9c", "web", "10.9.0.2");
    let api = || pod("app", "api-0", "api", "10.9.0.3");
    let db = || pod("data", "db-0", "db", "10.9.1.3");
    let hub =
        serde_json::json!({"kind": "external", "ip": "203.0.113.7", "fqdn": "huggingface.co"});
    let lines = [
        flow(1, web(), api(), 8080, "allow"),
        flow(2, web(), api(), 8080, "allow"),
        flow(3, api(), db(), 5432, "allow"),
        flow(4, api(), hub.clone(), 443, "allow"),
        flow(5, db(), api(), 8080, "deny"),
    ];
    let events = d.join("events.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let yaml = ok(&run(&["recommend", "--store", events.to_str().unwrap()]));
    assert!(
        yaml.contains("kind: NetworkPolicy") && yaml.contains("fqdn: huggingface.co"),
        "{yaml}"
    );
    let rec = d.join("recommended.yaml");
    std::fs::write(&rec, &yaml).unwrap();
    ok(&run(&["check", rec.to_str().unwrap()]));
    // Replaying the recommendation itself changes nothing.
    let same = ok(&run(&[
        "replay",
        "--policies",
        rec.to_str().unwrap(),
        "--store",
        events.to_str().unwrap(),
        "-o",
        "json",
    ]));
    let same: serde_json::Value = serde_json::from_str(&same).unwrap();
    assert_eq!(same["changes"].as_array().unwrap().len(), 0, "{same:#}");
    assert_eq!(same["evaluated"], 5);
    // Without the database rule, exactly api → db is denied (once), by api's policy.
    let stricter = yaml.replace(
        "  egress:\n  - to:\n    - namespaceSelector:\n        matchLabels: {kubernetes.io/metadata.name: data}\n      podSelector:\n        matchLabels: {app: db}\n    ports:\n    - protocol: TCP\n      port: 5432\n",
        "  egress: []\n",
    );
    assert_ne!(stricter, yaml, "{yaml}");
    let strict = d.join("stricter.yaml");
    std::fs::write(&strict, &stricter).unwrap();
    let table = ok(&run(&[
        "replay",
        "--policies",
        strict.to_str().unwrap(),
        "--store",
        events.to_str().unwrap(),
    ]));
    let changed: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(" -> ") && l.starts_with("allow"))
        .collect();
    assert_eq!(changed.len(), 1, "{table}");
    assert!(changed[0].starts_with("allow -> deny  app/api-0 -> data/db-0:5432/TCP  (x1)  by NetworkPolicy app/recommended-api"), "{table}");
    // A bad proposed file is reported with file:line and nothing is replayed.
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: a}\nspec:\n  podSelector: 5\n").unwrap();
    let out = run(&[
        "replay",
        "--policies",
        bad.to_str().unwrap(),
        "--store",
        events.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.yaml:5"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A broken line of recorded events is reported with file:line, never a panic.
    let broken = d.join("broken.jsonl");
    std::fs::write(&broken, format!("{}\n{{\"id\": 1}}\n", lines[0])).unwrap();
    for args in [
        vec!["recommend", "--store", broken.to_str().unwrap()],
        vec![
            "events",
            "--data-dir",
            d.join("imp").to_str().unwrap(),
            "--import",
            broken.to_str().unwrap(),
        ],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("broken.jsonl:2: invalid event JSON"),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

fn can_run_lab() -> bool {
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
        eprintln!("skipping: the lab round trip needs root and nftables");
    }
    root && nft
}

const PODS: &str = "apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: app, labels: {app: api, pod-template-hash: a1}}
spec: {containers: [{name: c, ports: [{containerPort: 8080, name: http}]}]}
status: {podIP: 10.78.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: app, labels: {app: web}}
spec: {containers: [{name: c}]}
status: {podIP: 10.78.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: data, labels: {app: db}}
spec: {containers: [{name: c, ports: [{containerPort: 5432, name: pg}]}]}
status: {podIP: 10.78.2.1}
";

/// The policy in force while traffic is recorded: api only from web on 8080, db only
/// from api on 5432; everything else open (Kubernetes default).
const PHASE1: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-to-api, namespace: app}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-to-db, namespace: data}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: app}}, podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 5432}]
";

fn verify(dir: &Path, ports: &[u16], extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "lab".to_string(),
        "verify".into(),
        dir.to_str().unwrap().into(),
        "--output".into(),
        "json".into(),
    ];
    for p in ports {
        args.push("--port".into());
        args.push(p.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new(bin()).args(&args).output().unwrap();
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        r["disagreements"].as_array().unwrap().len(),
        0,
        "kernel and engine disagree: {r}"
    );
    r
}

fn matrix(r: &serde_json::Value, port: u16) -> serde_json::Value {
    r["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap()["matrix"]
        .clone()
}

#[test]
fn lab_round_trip_recommended_policy_passes_observed_traffic_and_drops_new() {
    if !can_run_lab() {
        return;
    }
    let d = tmpdir("lab");
    let (rec1, rec2) = (d.join("phase1"), d.join("phase2"));
    std::fs::create_dir_all(&rec1).unwrap();
    std::fs::create_dir_all(&rec2).unwrap();
    std::fs::write(rec1.join("pods.yaml"), PODS).unwrap();
    std::fs::write(rec1.join("policy.yaml"), PHASE1).unwrap();
    let events = d.join("events");
    // 1. Traffic in network namespaces, enforced by nftables, recorded from NFLOG.
    let before = verify(
        &rec1,
        &[8080, 5432],
        &["--events", events.to_str().unwrap()],
    );
    // 2. Recommend from the recorded flow events.
    let yaml = ok(&run(&["recommend", "--store", events.to_str().unwrap()]));
    assert!(yaml.contains("matchLabels: {app: api}"), "{yaml}");
    assert!(!yaml.contains("pod-template-hash"), "{yaml}");
    // 3. Apply it instead of the original policy.
    std::fs::write(rec2.join("pods.yaml"), PODS).unwrap();
    std::fs::write(rec2.join("recommended.yaml"), &yaml).unwrap();
    ok(&run(&["check", rec2.to_str().unwrap()]));
    let after = verify(&rec2, &[8080, 5432, 9000], &[]);
    // The same traffic passes, and what was dropped before is dropped now.
    for port in [8080, 5432] {
        assert_eq!(
            matrix(&after, port),
            matrix(&before, port),
            "port {port}\n{yaml}"
        );
    }
    let m = matrix(&before, 8080);
    assert_eq!(m["app/web-0"]["app/api-0"], true);
    assert_eq!(m["data/db-0"]["app/api-0"], false);
    // A new connection (a port never used) is dropped everywhere, though the old policy
    // left it open.
    let new = matrix(&after, 9000);
    for (from, row) in new.as_object().unwrap() {
        for (to, allowed) in row.as_object().unwrap() {
            if from != to {
                assert_eq!(allowed, false, "{from} -> {to}:9000 allowed\n{yaml}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Names in events are what a pod chose (a `Host` header, a DNS query). On the old code
/// `palisade events` printed the source and destination names raw in its table, so a name
/// with an escape sequence drove the operator's terminal and one with a line break printed
/// a made-up event line. Now control and line-separator characters are escaped.
#[test]
fn events_table_escapes_names_a_pod_chose() {
    let d = tmpdir("escape");
    let evil = "evil.test\u{1b}]0;pwned\u{7}\u{1b}[2J\n2026-11-26T10:00:00.000000Z flow  x/a -> x/b:80 allow\u{2028}";
    let src = pod("ml", "trainer-0", "trainer", "10.0.1.5");
    let line = serde_json::json!({"id": "h1", "time": "2026-11-26T10:00:01.000000Z",
        "type": "http", "source": src,
        "destination": {"kind": "fqdn", "fqdn": evil, "port": 443}, "protocol": "TCP",
        "verdict": "allow", "policy": {"kind": "SecurityPolicy", "namespace": "ml",
        "name": "p\u{1b}[31m"},
        "http": {"method": "GET", "host": evil, "path": "/", "status": 200}})
    .to_string();
    let file = d.join("evil.jsonl");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let data = d.join("data");
    ok(&run(&[
        "events",
        "--data-dir",
        data.to_str().unwrap(),
        "--import",
        file.to_str().unwrap(),
    ]));
    let out = ok(&run(&["events", "--data-dir", data.to_str().unwrap()]));
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{2028}'),
        "{out:?}"
    );
    assert!(out.contains("evil.test\\u{1b}]0;pwned"), "{out:?}");
    let _ = std::fs::remove_dir_all(&d);
}
