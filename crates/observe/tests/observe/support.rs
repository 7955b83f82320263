//! Synthetic recorded traffic shared by the tests.

use palisade_events::Event;
use palisade_policy::{Engine, Manifests, Posture, Severity, Snapshot};
use serde_json::{json, Value};

pub(crate) fn pod(ns: &str, name: &str, app: &str, ip: &str) -> Value {
    let owner = app;
    json!({"kind": "pod", "namespace": ns, "name": name, "workload": format!("{ns}/{owner}"),
           "ip": ip, "labels": {"app": app, "pod-template-hash": name}, "serviceAccount": app})
}

pub(crate) fn ext(ip: &str, fqdn: Option<&str>) -> Value {
    match fqdn {
        Some(n) => json!({"kind": "external", "ip": ip, "fqdn": n}),
        None => json!({"kind": "external", "ip": ip}),
    }
}

fn with_port(mut v: Value, port: u16) -> Value {
    v["port"] = json!(port);
    v
}

pub(crate) fn flow(
    id: u32,
    src: Value,
    dst: Value,
    proto: &str,
    port: u16,
    verdict: &str,
) -> Event {
    let state = if verdict == "deny" { "denied" } else { "new" };
    let v = json!({"id": format!("e{id:04}"), "time": format!("2026-11-26T10:{:02}:{:02}.000000Z", id / 60, id % 60),
        "type": "flow", "source": src, "destination": with_port(dst, port), "protocol": proto,
        "verdict": verdict, "flow": {"state": state}});
    Event::from_json_line(&v.to_string()).unwrap()
}

pub(crate) fn http(
    id: u32,
    src: Value,
    host: &str,
    method: &str,
    path: &str,
    verdict: &str,
) -> Event {
    let v = json!({"id": format!("e{id:04}"), "time": format!("2026-11-26T10:{:02}:{:02}.000000Z", id / 60, id % 60),
        "type": "http", "source": src, "destination": {"kind": "fqdn", "fqdn": host, "port": 443},
        "protocol": "TCP", "verdict": verdict,
        "http": {"method": method, "host": host, "path": path, "status": 200, "tls": "intercepted"}});
    Event::from_json_line(&v.to_string()).unwrap()
}

pub(crate) fn dns(id: u32, src: Value, query: &str, answer: &str) -> Event {
    let v = json!({"id": format!("e{id:04}"), "time": format!("2026-11-26T10:{:02}:{:02}.000000Z", id / 60, id % 60),
        "type": "dns", "source": src, "destination": with_port(pod("kube-system", "coredns-0", "coredns", "10.0.0.10"), 53),
        "protocol": "UDP", "verdict": "allow",
        "dns": {"query": query, "qtype": "A", "rcode": "NOERROR", "answers": [answer]}});
    Event::from_json_line(&v.to_string()).unwrap()
}

pub(crate) fn trainer(n: &str, ip: &str) -> Value {
    pod("ml", n, "trainer", ip)
}
pub(crate) fn store() -> Value {
    pod("ml", "feature-store-0", "feature-store", "10.0.1.20")
}
pub(crate) fn coredns() -> Value {
    pod("kube-system", "coredns-0", "coredns", "10.0.0.10")
}
pub(crate) fn gateway() -> Value {
    pod("palisade-system", "ingress-0", "ingress", "10.0.3.1")
}
pub(crate) fn vllm() -> Value {
    pod("serve", "vllm-0", "vllm", "10.0.2.5")
}

/// A day of recorded traffic: training reads the feature store, resolves names, downloads
/// from the hub; the ingress gateway calls the model server; one denied attempt.
pub(crate) fn recorded() -> Vec<Event> {
    let ta = || trainer("trainer-a", "10.0.1.5");
    let tb = || trainer("trainer-b", "10.0.1.6");
    vec![
        flow(1, ta(), store(), "TCP", 8080, "allow"),
        flow(2, tb(), store(), "TCP", 8080, "allow"),
        flow(3, ta(), coredns(), "UDP", 53, "allow"),
        flow(4, tb(), coredns(), "UDP", 53, "allow"),
        flow(
            5,
            ta(),
            ext("203.0.113.7", Some("huggingface.co")),
            "TCP",
            443,
            "allow",
        ),
        http(
            6,
            ta(),
            "huggingface.co",
            "GET",
            "/api/models/bert",
            "allow",
        ),
        http(
            7,
            ta(),
            "huggingface.co",
            "HEAD",
            "/api/models/gpt2",
            "allow",
        ),
        http(
            8,
            tb(),
            "huggingface.co",
            "GET",
            "/datasets/wiki/resolve/main/x.parquet",
            "allow",
        ),
        dns(9, tb(), "cdn-lfs.hf.co", "198.51.100.9"),
        flow(10, tb(), ext("198.51.100.9", None), "TCP", 443, "allow"),
        flow(11, gateway(), vllm(), "TCP", 8000, "allow"),
        flow(12, ext("192.0.2.10", None), gateway(), "TCP", 8443, "allow"),
        flow(13, vllm(), ta(), "TCP", 8080, "deny"),
        flow(14, vllm(), ext("203.0.113.50", None), "TCP", 9000, "audit"),
    ]
}

/// Compiles manifests given as (file, text); panics with every error.
pub(crate) fn engine(files: &[(&str, &str)], posture: Posture) -> Engine {
    let mut m = Manifests::new();
    for (f, t) in files {
        m.add_file(f, t);
    }
    let errors: Vec<String> = m
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    Engine::compile_with(&Snapshot::from_manifests(&m), posture)
}
