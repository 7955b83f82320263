//! Measures the controller's reconcile path at cluster scale on synthetic API objects:
//! initial list ingest, snapshot, compile, and the cost of one pod event.
//!
//! `cargo run --release -p palisade-k8s --example scale -- PODS [NODES]`
//! (docs/architecture.md quotes its output for 150,000 pods and 5,000 nodes).

use palisade_k8s::reconcile::{Change, Reconciler};
use palisade_k8s::resources::{by_kind, RESOURCES};
use palisade_policy::{Engine, Posture};
use serde_json::{json, Value};
use std::time::Instant;

const PODS_PER_NS: usize = 75;
const APPS: usize = 5;

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn pod(ns: usize, i: usize, nodes: usize, rv: u64, ip_bump: usize) -> Value {
    let n = ns * PODS_PER_NS + i + ip_bump;
    json!({
        "metadata": {"name": format!("app-{}-{i}", i % APPS), "namespace": format!("ns-{ns}"),
            "uid": format!("uid-{ns}-{i}"), "resourceVersion": rv.to_string(),
            "labels": {"app": format!("app-{}", i % APPS), "tier": if i.is_multiple_of(2) {"web"} else {"backend"}},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{}", i % APPS), "uid": "x", "controller": true}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}, "f:podIP": {}}}}]},
        "spec": {"nodeName": format!("node-{}", n % nodes), "serviceAccountName": "default",
            "containers": [{"name": "main", "image": "registry.local/app:1.0", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}, "env": [{"name": "A", "value": "b"}]}],
            "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]},
        "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255),
            "hostIP": format!("172.16.{}.{}", (n % nodes) >> 8, (n % nodes) & 255),
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "image": "registry.local/app:1.0", "imageID": "sha256:abc", "started": true, "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]}
    })
}

fn list(items: Vec<Value>) -> Change {
    Change::Listed {
        items,
        resource_version: "1".into(),
        absent: false,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pods: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(150_000);
    let nodes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let namespaces = pods.div_ceil(PODS_PER_NS);
    let mut r = Reconciler::new();

    let t = Instant::now();
    let nss: Vec<Value> = (0..namespaces)
        .map(|n| json!({"metadata": {"name": format!("ns-{n}"), "labels": {"kubernetes.io/metadata.name": format!("ns-{n}"), "team": format!("t{}", n % 20)}}}))
        .collect();
    let mut pod_items = Vec::with_capacity(pods);
    for n in 0..namespaces {
        for i in 0..PODS_PER_NS.min(pods - n * PODS_PER_NS) {
            pod_items.push(pod(n, i, nodes, 1, 0));
        }
    }
    // Per namespace: app-k accepts app-(k-1) on 8080 and the monitoring namespace; one
    // SecurityPolicy gives the backends egress to two FQDNs and the namespace's pods.
    let mut nps = Vec::new();
    let mut sps = Vec::new();
    for n in 0..namespaces {
        for k in 0..APPS {
            nps.push(json!({"metadata": {"name": format!("app-{k}"), "namespace": format!("ns-{n}"), "generation": 1},
                "spec": {"podSelector": {"matchLabels": {"app": format!("app-{k}")}}, "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("app-{}", (k + APPS - 1) % APPS)}}},
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                        "ports": [{"port": 8080}]}]}}));
        }
        sps.push(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityPolicy",
            "metadata": {"name": "backend-egress", "namespace": format!("ns-{n}"), "generation": 1},
            "spec": {"podSelector": {"matchLabels": {"tier": "backend"}}, "egress": [
                {"to": [{"fqdn": "api.openai.com"}, {"fqdn": "**.huggingface.co"}], "ports": [{"port": 443}]},
                {"to": [{"podSelector": {}}]}]}}));
    }
    let bytes: usize = pod_items.iter().map(|p| p.to_string().len()).sum();
    println!(
        "generated {pods} pods ({:.1} KiB JSON each), {namespaces} namespaces, {} NetworkPolicies, {} SecurityPolicies in {:.1}s",
        bytes as f64 / pods as f64 / 1024.0,
        nps.len(),
        sps.len(),
        t.elapsed().as_secs_f64()
    );
    let before = rss_mib();

    let t = Instant::now();
    for res in RESOURCES {
        let items = match res.kind {
            "Namespace" => nss.clone(),
            "Pod" => std::mem::take(&mut pod_items),
            "NetworkPolicy" => nps.clone(),
            "SecurityPolicy" => sps.clone(),
            _ => Vec::new(),
        };
        r.apply(res, list(items));
    }
    let ingest = t.elapsed();
    let (valid, invalid) = r.counts();
    println!(
        "initial list ingest: {:.2}s ({:.1} µs/object), {valid} valid, {invalid} invalid, RSS +{} MiB",
        ingest.as_secs_f64(),
        ingest.as_secs_f64() * 1e6 / (valid + invalid) as f64,
        rss_mib().saturating_sub(before)
    );

    let t = Instant::now();
    let snap = r.snapshot().expect("synced");
    let snap_time = t.elapsed();
    let t = Instant::now();
    let engine = Engine::compile_with(&snap, Posture::Allow);
    let compile = t.elapsed();
    println!(
        "snapshot: {:.0} ms; compile: {:.0} ms ({} pods, {} policies); RSS {} MiB",
        snap_time.as_secs_f64() * 1e3,
        compile.as_secs_f64() * 1e3,
        engine.pods().len(),
        engine.policies().len(),
        rss_mib()
    );

    // One pod event: readiness only (no change), and a new IP (a change).
    let res = by_kind("Pod").unwrap();
    let n = 1000.min(pods);
    let t = Instant::now();
    let mut changed = 0;
    for i in 0..n {
        let mut p = pod(i / PODS_PER_NS, i % PODS_PER_NS, nodes, 2, 0);
        p["status"]["conditions"][0]["status"] = json!("False");
        changed += r.apply(res, Change::Applied(p)).changed as usize;
    }
    let noop = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        let p = pod(i / PODS_PER_NS, i % PODS_PER_NS, nodes, 3, pods);
        changed += r.apply(res, Change::Applied(p)).changed as usize;
    }
    let ipchange = t.elapsed();
    println!(
        "pod event: readiness-only {:.1} µs (no snapshot), IP change {:.1} µs to apply; {changed} of {} changed the snapshot",
        noop.as_secs_f64() * 1e6 / n as f64,
        ipchange.as_secs_f64() * 1e6 / n as f64,
        2 * n
    );
}
