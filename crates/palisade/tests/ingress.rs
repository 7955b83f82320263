//! `palisade ingress`: configuration errors name the file, line and field; from a
//! PalisadeConfig the gateway serves the manifests' AIGateways and writes events.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/fake_k8s.rs"]
mod fake_k8s;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "palisade-ingress-cli-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_missing_keys_file_is_reported_with_file_line_and_field() {
    let d = dir("bad");
    let f = d.join("gw.yaml");
    std::fs::write(
        &f,
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata:\n  name: gw\nspec:\n  routes:\n    - name: chat\n      backend: http://127.0.0.1:9\n      auth:\n        apiKeysFile: nope.yaml\n",
    )
    .unwrap();
    let out = Command::new(exe())
        .args([
            "ingress",
            "--config",
            f.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gw.yaml:1: spec.routes[0].auth.apiKeysFile:"),
        "{err}"
    );
    assert!(err.contains("nope.yaml"), "{err}");
}

/// A backend answering every request with one chat completion.
fn backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || answer(s));
        }
    });
    port
}

fn answer(mut s: TcpStream) {
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                break;
            }
        }
    }
    let body = r#"{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#;
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn request(port: u16, key: &str) -> String {
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn wait_port(port: u16) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn serves_the_manifests_gateways_and_writes_events() {
    let d = dir("cfg");
    let up = backend();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::create_dir_all(d.join("manifests")).unwrap();
    std::fs::write(d.join("manifests/keys.txt"), "alice: key-of-alice\n").unwrap();
    std::fs::write(
        d.join("manifests/gw.yaml"),
        format!("apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata:\n  name: gw\n  namespace: ml\nspec:\n  routes:\n    - name: chat\n      pathPrefix: /v1\n      backend: http://127.0.0.1:{up}\n      auth:\n        apiKeysFile: keys.txt\n  consumers:\n    - name: alice\n      models: [gpt-4o-mini]\n"),
    )
    .unwrap();
    let cfg = d.join("palisade.yaml");
    std::fs::write(
        &cfg,
        format!("apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata:\n  name: t\nspec:\n  cluster: c1\n  node: n1\n  manifests: manifests\n  dataDir: data\n  ingress:\n    listen: 127.0.0.1:{port}\n  events:\n    jsonl: events.jsonl\n"),
    )
    .unwrap();
    let mut child = Command::new(exe())
        .args(["ingress", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if !wait_port(port) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "gateway did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ok = request(port, "key-of-alice");
    let bad = request(port, "key-of-mallory");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"content\":\"hi\""), "{ok}");
    assert!(bad.starts_with("HTTP/1.1 401"), "{bad}");
    assert!(bad.contains("invalid_api_key"), "{bad}");
    let events = std::fs::read_to_string(Path::new(&d).join("data/events.jsonl"))
        .or_else(|_| std::fs::read_to_string(d.join("events.jsonl")))
        .unwrap_or_default();
    let lines: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("\"type\":\"http\""))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("\"consumer\":\"alice\"")
            && l.contains("\"status\":200")
            && l.contains("\"cluster\":\"c1\"")
            && l.contains("\"promptTokens\":9")),
        "{events}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"status\":401") && l.contains("\"verdict\":\"deny\"")),
        "{events}"
    );
}

/// In a cluster (`deploy/ingress.yaml`) the gateway's routes are AIGateway resources read
/// from the API (`--source kubernetes`), not files: a route listed by the API serves, its
/// API keys (a file mounted from a Secret, absolute path) authenticate. On the old code
/// `palisade ingress` did not accept `--source` and the manifest's pod could not start.
#[test]
fn serves_aigateways_from_the_kubernetes_api() {
    let d = dir("k8s");
    let up = backend();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let keys = d.join("keys.txt");
    std::fs::write(&keys, "alice: key-of-alice\n").unwrap();
    let api = fake_k8s::serve(serde_json::json!({
        "metadata": {"name": "gw", "namespace": "ml", "uid": "u1", "resourceVersion": "5"},
        "spec": {
            "routes": [{"name": "chat", "pathPrefix": "/v1",
                        "backend": format!("http://127.0.0.1:{up}"),
                        "auth": {"apiKeysFile": keys.to_str().unwrap()}}],
            "consumers": [{"name": "alice", "models": ["gpt-4o-mini"]}]
        }
    }));
    let kubeconfig = fake_k8s::kubeconfig(&d, api);
    // No AIGateway in the (empty) manifests folder: routes can only come from the API.
    std::fs::create_dir_all(d.join("manifests")).unwrap();
    let cfg = d.join("palisade.yaml");
    std::fs::write(
        &cfg,
        format!("apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata:\n  name: t\nspec:\n  cluster: c1\n  node: n1\n  manifests: manifests\n  dataDir: data\n  ingress:\n    listen: 127.0.0.1:{port}\n"),
    )
    .unwrap();
    let mut child = Command::new(exe())
        .args(["ingress", "--source", "kubernetes", "--config"])
        .arg(&cfg)
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = wait_port(port);
    let (ok, bad) = if started {
        (
            request(port, "key-of-alice"),
            request(port, "key-of-mallory"),
        )
    } else {
        Default::default()
    };
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started, "gateway did not start: {stderr}");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}\n{stderr}");
    assert!(ok.contains("\"content\":\"hi\""), "{ok}");
    assert!(bad.starts_with("HTTP/1.1 401"), "{bad}");
}

/// A file of AIGateways has no event store or settings: `--source kubernetes` needs a
/// PalisadeConfig, and says so.
#[test]
fn the_kubernetes_source_needs_a_palisade_config() {
    let d = dir("k8s-file");
    let f = d.join("gw.yaml");
    std::fs::write(
        &f,
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata:\n  name: gw\nspec:\n  routes:\n    - name: chat\n      backend: http://127.0.0.1:9\n",
    )
    .unwrap();
    let out = Command::new(exe())
        .args([
            "ingress",
            "--source",
            "kubernetes",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--source kubernetes needs a PalisadeConfig"),
        "{err}"
    );
}
