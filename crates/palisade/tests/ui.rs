//! The web UI of `palisade up`, in a real browser: Debian's `chromium`, headless, loads the
//! UI of a running `palisade up` on the bundled example with recorded events, and the test
//! checks the rendered DOM (the example's workloads as nodes, a denied edge), the JSON API
//! and `/metrics`, and saves a screenshot (`target/ui.png`; also `docs/ui.png` when
//! `PALISADE_UPDATE_SCREENSHOT=1`). Skipped, saying so, when chromium or curl is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

struct Up(Child);
impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn curl(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The engine's verdict for a connection of the example (`palisade explain`).
fn verdict(from: &str, to: &str, port: u16, proto: &str, http: Option<(&str, &str)>) -> String {
    let ex = repo().join("examples/genai");
    let port_s = port.to_string();
    let mut args = vec![
        "explain",
        ex.to_str().unwrap(),
        "--from",
        from,
        "--to",
        to,
        "--port",
        &port_s,
        "--protocol",
        proto,
        "-o",
        "json",
    ];
    if let Some((m, p)) = http {
        args.extend(["--method", m, "--path", p]);
    }
    let out = Command::new(bin()).args(&args).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["verdict"].as_str().unwrap().to_string()
}

fn pod_ep(key: &str) -> serde_json::Value {
    let (ns, name) = key.split_once('/').unwrap();
    let app = match name.rsplit_once('-') {
        Some(("ingress-gateway", _)) => "palisade-ingress",
        Some((a, _)) => a,
        None => name,
    };
    serde_json::json!({"kind": "pod", "namespace": ns, "name": name, "workload": format!("{ns}/{app}"), "labels": {"app": app}})
}

/// Recorded traffic of the example, each verdict as the engine decides it.
fn events_jsonl() -> String {
    let now = palisade_events::now_micros() - 300_000_000;
    let mut lines = Vec::new();
    let mut id = 0;
    let mut push = |v: serde_json::Value| {
        lines.push(v.to_string());
    };
    let flows: &[(&str, &str, u16, &str, u32)] = &[
        (
            "training/trainer-0",
            "training/feature-store-0",
            8080,
            "TCP",
            40,
        ),
        (
            "training/trainer-1",
            "training/feature-store-0",
            8080,
            "TCP",
            35,
        ),
        ("training/trainer-0", "kube-system/coredns-0", 53, "UDP", 12),
        (
            "palisade-system/ingress-gateway-0",
            "inference/vllm-0",
            8000,
            "TCP",
            120,
        ),
        (
            "palisade-system/ingress-gateway-0",
            "inference/vllm-1",
            8000,
            "TCP",
            110,
        ),
        (
            "monitoring/prometheus-0",
            "inference/vllm-1",
            9100,
            "TCP",
            6,
        ),
        ("ingestion/crawler-0", "inference/vllm-0", 8000, "TCP", 9),
        (
            "ingestion/crawler-0",
            "training/feature-store-0",
            8080,
            "TCP",
            4,
        ),
    ];
    for (from, to, port, proto, n) in flows {
        let v = verdict(from, to, *port, proto, None);
        let mut dst = pod_ep(to);
        dst["port"] = (*port).into();
        for _ in 0..*n {
            id += 1;
            push(
                serde_json::json!({"id": format!("ui{id:05}"), "time": palisade_events::format_rfc3339_micros(now + id * 1000),
                "type": "flow", "source": pod_ep(from), "destination": dst, "protocol": proto, "verdict": v,
                "flow": {"state": if v == "deny" {"denied"} else {"new"}}}),
            );
        }
    }
    let requests: &[(&str, &str, &str, u32)] = &[
        ("GET", "/api/models/bert", "huggingface.co", 20),
        ("POST", "/api/upload", "huggingface.co", 3),
    ];
    for (m, p, host, n) in requests {
        let v = verdict("training/trainer-0", host, 443, "TCP", Some((m, p)));
        for _ in 0..*n {
            id += 1;
            push(
                serde_json::json!({"id": format!("ui{id:05}"), "time": palisade_events::format_rfc3339_micros(now + id * 1000),
                "type": "http", "source": pod_ep("training/trainer-0"), "destination": {"kind": "fqdn", "fqdn": host, "port": 443},
                "protocol": "TCP", "verdict": v, "http": {"method": m, "host": host, "path": p, "status": if v == "deny" {403} else {200},
                "durationMs": 40, "tls": "intercepted"}}),
            );
        }
    }
    // The detectors' finding about the crawler, citing its denied attempts.
    let evidence: Vec<String> = (324..=328).map(|i| format!("ui{i:05}")).collect();
    id += 1;
    push(
        serde_json::json!({"id": format!("ui{id:05}"), "time": palisade_events::format_rfc3339_micros(now + id * 1000),
        "type": "alert", "source": pod_ep("ingestion/crawler-0"),
        "alert": {"kind": "lateral-movement", "severity": "high", "subject": "ingestion/crawler",
                  "summary": "ingestion/crawler tried 13 denied connections to 2 workloads", "evidence": evidence}}),
    );
    lines.join("\n") + "\n"
}

#[test]
fn ui_shows_the_example_graph_with_a_denied_edge_in_chromium() {
    if !have("chromium") || !have("curl") {
        eprintln!("skipping: the browser test needs Debian's chromium and curl");
        return;
    }
    let d = std::env::temp_dir().join(format!("palisade-ui-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let data = d.join("data");
    let events = d.join("events.jsonl");
    std::fs::write(&events, events_jsonl()).unwrap();
    let imported = Command::new(bin())
        .args([
            "events",
            "--data-dir",
            data.to_str().unwrap(),
            "--import",
            events.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let port = free_port();
    let config = d.join("palisade.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {{name: ui-test}}\nspec:\n  manifests: {}\n  dataDir: {}\n  admin: {{listen: \"127.0.0.1:{port}\"}}\n",
            repo().join("examples/genai").display(),
            data.display()
        ),
    )
    .unwrap();
    let _up = Up(Command::new(bin())
        .args(["up", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while curl(&format!("{base}/readyz")).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "palisade up did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The JSON API behind the graph.
    let (code, body) = curl(&format!("{base}/api/v1/graph?since=1h"));
    assert_eq!(code, 200, "{body}");
    let g: serde_json::Value = serde_json::from_str(&body).unwrap();
    let edge = |s: &str, t: &str| {
        g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == s && e["target"] == t)
            .cloned()
    };
    let denied = edge("ingestion/crawler", "inference/vllm").expect("crawler edge");
    assert_eq!(
        (denied["verdict"].as_str(), denied["deny"].as_u64()),
        (Some("deny"), Some(9))
    );
    let allowed = edge("palisade-system/palisade-ingress", "inference/vllm").expect("gateway edge");
    assert_eq!(
        (allowed["verdict"].as_str(), allowed["allow"].as_u64()),
        (Some("allow"), Some(230))
    );
    let hub = edge("training/trainer", "huggingface.co").expect("hub edge");
    assert_eq!(
        (hub["allow"].as_u64(), hub["deny"].as_u64()),
        (Some(20), Some(3))
    );
    assert_eq!(
        g["nodes"].as_array().unwrap().len(),
        10,
        "9 workloads + huggingface.co: {body}"
    );
    // Filters, alerts with their evidence, bad input.
    let (_, body) = curl(&format!(
        "{base}/api/v1/ui/events?type=flow&verdict=deny&workload=ingestion/crawler&since=1h"
    ));
    let ev: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ev["events"].as_array().unwrap().len(), 13, "{body}");
    let (_, body) = curl(&format!("{base}/api/v1/alerts?since=1h"));
    let al: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        al["alerts"][0]["evidence"].as_array().unwrap().len(),
        5,
        "{body}"
    );
    assert!(
        al["alerts"][0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["verdict"] == "deny"),
        "{body}"
    );
    assert_eq!(curl(&format!("{base}/api/v1/ui/events?since=soon")).0, 400);
    // Prometheus metrics counted from the store.
    let start = Instant::now();
    let metrics = loop {
        let (code, text) = curl(&format!("{base}/metrics"));
        assert_eq!(code, 200);
        if text.contains("palisade_alerts_total{kind=\"lateral-movement\",severity=\"high\"} 1")
            || start.elapsed() > Duration::from_secs(10)
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        metrics.contains("palisade_alerts_total{kind=\"lateral-movement\",severity=\"high\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("palisade_events_total{type=\"http\"} 23"),
        "{metrics}"
    );
    assert!(
        metrics.contains("palisade_http_duration_seconds_bucket{le=\"0.05\"} 23"),
        "{metrics}"
    );
    assert!(metrics.contains("verdict=\"deny\""), "{metrics}");
    // The page in a real browser: the rendered DOM has the example's workloads and the
    // denied edge.
    let chromium = |extra: &[&str]| {
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
        ];
        args.extend_from_slice(extra);
        let ui = format!("{base}/ui/");
        args.push(&ui);
        Command::new("chromium")
            .args(&args)
            .stderr(Stdio::null())
            .output()
            .unwrap()
    };
    let dom = String::from_utf8_lossy(&chromium(&["--dump-dom"]).stdout).into_owned();
    for w in [
        "training/trainer",
        "training/feature-store",
        "inference/vllm",
        "ingestion/crawler",
        "kube-system/coredns",
        "monitoring/prometheus",
        "huggingface.co",
    ] {
        assert!(
            dom.contains(&format!("data-id=\"{w}\"")),
            "no node {w} in the page:\n{dom}"
        );
    }
    assert!(
        dom.contains("class=\"edge deny\"")
            && dom.contains("data-source=\"ingestion/crawler\" data-target=\"inference/vllm\""),
        "no denied crawler edge in the page:\n{dom}"
    );
    assert!(dom.contains("10 nodes · "), "status line: {dom}");
    let shot = repo().join("target/ui.png");
    let out = chromium(&[
        "--window-size=1500,760",
        &format!("--screenshot={}", shot.display()),
    ]);
    assert!(
        out.status.success() && shot.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot"
    );
    if std::env::var("PALISADE_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        std::fs::copy(&shot, repo().join("docs/ui.png")).unwrap();
    }
    let _ = std::fs::remove_dir_all(&d);
}
