//! `palisade controller`'s admin API with `--admin-token-file`: everything but the probes
//! wants the token (against a minimal Kubernetes API server).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/fake_k8s.rs"]
mod fake_k8s;

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-controller-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `GET path` with optional bearer token → status code.
fn get(port: u16, path: &str, token: Option<&str>) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 10.0.0.9:{port}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn with_a_token_file_the_admin_api_wants_the_token_but_probes_do_not() {
    let d = dir("token");
    let api = fake_k8s::serve(serde_json::json!({"metadata": {"name": "none"}}));
    let kubeconfig = fake_k8s::kubeconfig(&d, api);
    let token = "s3cret-admin-token-0123456789";
    std::fs::write(d.join("token"), format!("{token}\n")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "controller",
            "--admin",
            &format!("127.0.0.1:{port}"),
            "--identity",
            "r1",
        ])
        .args(["--lease-namespace", "palisade-system", "--admin-token-file"])
        .arg(d.join("token"))
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while get(port, "/healthz", None).is_none() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The kubelet probes by the pod's address, without a token.
    let healthz = get(port, "/healthz", None);
    let without = get(port, "/api/v1/status", None);
    let wrong = get(
        port,
        "/api/v1/status",
        Some("s3cret-admin-token-0123456780"),
    );
    let with = get(port, "/api/v1/status", Some(token));
    let explain = get(port, "/api/v1/explain?from=x/a&to=x/b&port=80", None);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(healthz, Some(200), "{stderr}");
    assert_eq!(without, Some(401));
    assert_eq!(wrong, Some(401));
    assert_eq!(with, Some(200));
    assert_eq!(explain, Some(401));
}

#[test]
fn a_short_admin_token_is_refused_before_anything_starts() {
    let d = dir("short");
    std::fs::write(d.join("token"), "short\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["controller", "--admin", "127.0.0.1:0", "--admin-token-file"])
        .arg(d.join("token"))
        .env("KUBECONFIG", d.join("none"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 characters"), "{err}");
}
