//! End-to-end tests of the `palisade` binary: check, analyze, explain, events, up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/genai")
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run palisade")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_accepts_the_example() {
    let out = run(&["check", example().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 error(s)"), "{stdout}");
}

#[test]
fn check_reports_file_line_and_field_and_exits_1() {
    let d = tmpdir("check");
    std::fs::write(
        d.join("bad.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: x\nspec:\n  podSelector: {}\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/16\n        except:\n        - 10.1.0.0/16\n",
    )
    .unwrap();
    let out = run(&["check", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:13:11: error: spec.egress[0].to[0].ipBlock.except[0]: 10.1.0.0/16 is not inside cidr 10.0.0.0/16"),
        "{err}"
    );
}

#[test]
fn analyze_json_has_the_contract_shape() {
    let out = run(&[
        "analyze",
        example().to_str().unwrap(),
        "--port",
        "8000",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probe = &v["probes"][0];
    assert_eq!(probe["port"], 8000);
    assert_eq!(probe["protocol"], "TCP");
    let m = probe["matrix"].as_object().unwrap();
    assert_eq!(m.len(), 11, "every pod is a row");
    for row in m.values() {
        assert_eq!(row.as_object().unwrap().len(), 11, "every pod is a column");
    }
    // Inference is reachable only through the ingress gateway.
    assert_eq!(
        m["palisade-system/ingress-gateway-0"]["inference/vllm-0"],
        true
    );
    assert_eq!(m["ingestion/crawler-0"]["inference/vllm-0"], false);
    assert_eq!(m["training/trainer-0"]["inference/vllm-1"], false);
}

#[test]
fn analyze_table_shows_exposure() {
    let out = run(&["analyze", example().to_str().unwrap(), "--port", "8080"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("8080/TCP:"), "{s}");
    assert!(s.contains("unrestricted egress:"), "{s}");
    assert!(s.contains("namespaces without any policy:"), "{s}");
}

#[test]
fn explain_download_allowed_upload_denied() {
    let ex = example();
    let ex = ex.to_str().unwrap();
    let get = run(&[
        "explain",
        ex,
        "--from",
        "training/trainer-0",
        "--to",
        "cdn-lfs.huggingface.co",
        "--port",
        "443",
        "--method",
        "GET",
        "--path",
        "/repos/m/file",
        "--output",
        "json",
    ]);
    assert!(get.status.success());
    let v: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["policy"]["name"], "model-hub-download-only");
    let post = run(&[
        "explain",
        ex,
        "--from",
        "training/trainer-0",
        "--to",
        "huggingface.co",
        "--port",
        "443",
        "--method",
        "POST",
        "--path",
        "/api/upload",
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&post.stdout).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["policy"]["stage"], "namespace");
    let other = run(&[
        "explain",
        ex,
        "--from",
        "training/trainer-0",
        "--to",
        "pastebin.com",
        "--port",
        "443",
    ]);
    let s = String::from_utf8_lossy(&other.stdout);
    assert!(s.starts_with("DENIED"), "{s}");
}

#[test]
fn explain_walks_every_stage() {
    let out = run(&[
        "explain",
        example().to_str().unwrap(),
        "--from",
        "palisade-system/ingress-gateway-0",
        "--to",
        "inference/vllm-0",
        "--port",
        "8000",
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with("ALLOWED"), "{s}");
    assert!(s.contains("AdminNetworkPolicy tenant-isolation rule ingress[1] 'pass-platform' Pass (priority 10)"), "{s}");
    assert!(
        s.contains("NetworkPolicy inference/only-from-ingress-gateway rule ingress[0] allows"),
        "{s}"
    );
}

#[test]
fn explain_rejects_unknown_pods() {
    let out = run(&[
        "explain",
        example().to_str().unwrap(),
        "--from",
        "nope/nope",
        "--to",
        "x/y",
        "--port",
        "80",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pod nope/nope"));
}

#[test]
fn events_reads_the_store_by_filter() {
    use palisade_events::{
        DnsInfo, Endpoint, Event, EventBody, FlowInfo, FlowState, Timestamp, Verdict,
    };
    let d = tmpdir("events");
    let mut store = palisade_store::Store::open(d.join("events.db")).unwrap();
    let now = Timestamp::now().as_micros();
    let mut evs = Vec::new();
    for i in 0..30 {
        let body = if i % 3 == 0 {
            EventBody::Dns(DnsInfo {
                query: format!("q{i}.example.com"),
                ..Default::default()
            })
        } else {
            EventBody::Flow(FlowInfo {
                state: FlowState::New,
                bytes_sent: None,
                bytes_received: None,
                packets: None,
                duration_ms: None,
            })
        };
        let mut e = Event::new(
            palisade_events::new_id(),
            Timestamp(now - (30 - i) * 1_000_000),
            body,
        );
        e.source = Some(Endpoint::pod("training", format!("trainer-{i}")));
        e.verdict = Some(if i % 2 == 0 {
            Verdict::Allow
        } else {
            Verdict::Deny
        });
        evs.push(e);
    }
    store.insert_batch(&evs).unwrap();
    drop(store);
    let out = run(&[
        "events",
        "--data-dir",
        d.to_str().unwrap(),
        "--type",
        "dns",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    assert!(lines
        .iter()
        .all(|l| l["type"] == "dns" && l["dns"].is_object()));
    let out = run(&[
        "events",
        "--data-dir",
        d.to_str().unwrap(),
        "--type",
        "flow",
        "--verdict",
        "deny",
        "--output",
        "json",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10);
    let out = run(&[
        "events",
        "--data-dir",
        d.to_str().unwrap(),
        "--since",
        "10s",
        "--output",
        "json",
    ]);
    let n = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!((9..=11).contains(&n), "{n}");
    let bad = run(&[
        "events",
        "--data-dir",
        d.to_str().unwrap(),
        "--type",
        "bogus",
    ]);
    assert_eq!(bad.status.code(), Some(1));
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

struct Up(Child);
impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn up_serves_admin_api_and_keeps_last_good_snapshot() {
    let d = tmpdir("up");
    for f in std::fs::read_dir(example()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, d.join(f.file_name().unwrap())).unwrap();
    }
    let port = 20000 + (std::process::id() % 20000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let cfg = std::fs::read_to_string(d.join("palisade.yaml"))
        .unwrap()
        .replace("127.0.0.1:9900", &addr)
        .replace(
            "../../.palisade-data/genai",
            d.join("data").to_str().unwrap(),
        )
        .replace("reloadIntervalMs: 1000", "reloadIntervalMs: 100");
    std::fs::write(d.join("palisade.yaml"), cfg).unwrap();
    let _up = Up(Command::new(bin())
        .args(["up", "--config", d.join("palisade.yaml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let (code, body) = wait_for(|| http_get(&addr, "/healthz"));
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, _) = http_get(&addr, "/readyz").unwrap();
    assert_eq!(code, 200);
    let explain = "/api/v1/explain?from=ingestion/crawler-0&to=inference/vllm-0&port=8000";
    let (code, body) = http_get(&addr, explain).unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["explanation"]["verdict"], "deny");
    assert_eq!(v["generation"], 1);
    // Bad request: a status code and a reason, no internals.
    let (code, body) = http_get(&addr, "/api/v1/explain?from=a&to=b&port=99999").unwrap();
    assert_eq!(code, 400);
    assert!(body.contains("bad-query"), "{body}");
    // A broken change is rejected whole; the last good snapshot stays.
    std::fs::write(d.join("inference.yaml"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: inference}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 70000\n").unwrap();
    let status = wait_for(|| {
        let (_, b) = http_get(&addr, "/api/v1/status")?;
        let v: serde_json::Value = serde_json::from_str(&b).ok()?;
        (v["lastReload"]["applied"] == false).then_some(v)
    });
    assert_eq!(status["enforcing"]["generation"], 1);
    let err = &status["lastReload"]["errors"][0];
    assert_eq!(err["path"], "spec.ingress[0].ports[0].port");
    assert_eq!(err["line"], 8);
    let (_, body) = http_get(&addr, explain).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["explanation"]["verdict"], "deny",
        "old policy still enforced"
    );
    // A good change is applied atomically as the next generation: the gateway may now use
    // every port of the model servers.
    let good = std::fs::read_to_string(example().join("inference.yaml"))
        .unwrap()
        .replace("    ports:\n    - port: http\n", "");
    assert!(!good.contains("port: http"));
    std::fs::write(d.join("inference.yaml"), good).unwrap();
    let v = wait_for(|| {
        let (_, b) = http_get(
            &addr,
            "/api/v1/explain?from=palisade-system/ingress-gateway-0&to=inference/vllm-0&port=9999",
        )?;
        let v: serde_json::Value = serde_json::from_str(&b).ok()?;
        (v["generation"] == 2).then_some(v)
    });
    assert_eq!(v["explanation"]["verdict"], "allow");
    let (code, body) = http_get(&addr, "/api/v1/events?type=flow&since=1h").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"events\""));
}

#[test]
fn readyz_says_not_ready_without_showing_the_policys_content() {
    let d = tmpdir("up-broken");
    for f in std::fs::read_dir(example()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, d.join(f.file_name().unwrap())).unwrap();
    }
    // Broken from the start: no snapshot is ever published.
    std::fs::write(
        d.join("secret-name.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: inference}\nspec:\n  podSelector: {matchLabels: {team: s3cr3t-label-value}}\n  ingress:\n  - ports:\n    - port: 70000\n",
    )
    .unwrap();
    let port = 20000 + ((std::process::id() + 7919) % 20000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let cfg = std::fs::read_to_string(d.join("palisade.yaml"))
        .unwrap()
        .replace("127.0.0.1:9900", &addr)
        .replace(
            "../../.palisade-data/genai",
            d.join("data").to_str().unwrap(),
        );
    std::fs::write(d.join("palisade.yaml"), cfg).unwrap();
    let _up = Up(Command::new(bin())
        .args(["up", "--config", d.join("palisade.yaml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let (code, body) = wait_for(|| {
        let (code, body) = http_get(&addr, "/readyz")?;
        body.contains("error").then_some((code, body))
    });
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        body.trim(),
        "not ready: the policy has 1 error(s); see /api/v1/status or the log"
    );
    // The details are where the token (or a loopback Host) is needed.
    let (_, status) = http_get(&addr, "/api/v1/status").unwrap();
    assert!(status.contains("secret-name.yaml"), "{status}");
}

#[test]
fn kubectl_dump_is_read_as_it_is() {
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubectl-dump.yaml");
    let dump = dump.to_str().unwrap();
    let out = run(&["check", "--verbose", dump]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apps/v1 Deployment is not used by Palisade; skipped"),
        "{err}"
    );
    let out = run(&["analyze", dump, "--port", "5432", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &v["probes"][0]["matrix"];
    assert_eq!(m["shop/frontend-7c9d8f6b5-x2k9q"]["shop/db-0"], true);
    // Host-network pods are node traffic: the pod selector does not match them.
    assert_eq!(m["kube-system/kube-proxy-abcde"]["shop/db-0"], false);
    let out = run(&[
        "explain",
        dump,
        "--from",
        "10.244.1.7",
        "--to",
        "10.244.2.9",
        "--port",
        "5432",
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["policy"]["name"], "db-from-frontend");
}

#[test]
fn federation_flags_are_checked_before_anything_starts() {
    let o = run(&["controller", "--federation", "etcd://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--cluster-name is required with --federation"),
        "{o:?}"
    );
    let o = run(&[
        "controller",
        "--federation",
        "etcd://127.0.0.1:1",
        "--cluster-name",
        "Bad Name",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cluster name \"Bad Name\" must be"),
        "{o:?}"
    );
    let config = example().join("palisade.yaml");
    let o = run(&[
        "egress",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--federation",
        "ftp://x",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("--federation: etcd endpoint \"ftp://x\" is not host:port"),
        "{o:?}"
    );
    let o = run(&[
        "controller",
        "--federation",
        "etcd://127.0.0.1:1",
        "--cluster-name",
        "west",
        "--member-network",
        "east=10.1.0.0/33",
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("\"east=10.1.0.0/33\""),
        "{o:?}"
    );
}

/// A one-shot HTTP server on loopback: answers each connection with `answer(request)`.
fn fake_member(answer: fn(&str) -> Vec<u8>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 8192];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = c.write_all(&answer(&req));
        }
    });
    addr
}

/// `explain --member` talks to another cluster's admin API. On the old code it read the
/// whole answer into memory however long it was, printed an error body raw (escape sequences
/// reached the operator's terminal; 20 MB of it here) and could not send the admin token a
/// member with `--admin-token-file` wants. Now the answer is capped (16 MiB), what the
/// member wrote is escaped and cut, and `--admin-token-file` sends the token.
#[test]
fn explain_member_bounds_and_escapes_what_a_member_answers() {
    let huge = fake_member(|_| {
        let mut a =
            b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\n\r\n\x1b[2Jfake line\n".to_vec();
        a.extend(std::iter::repeat_n(b'x', 20 << 20));
        a
    });
    let args = |addr: &str| -> Vec<String> {
        [
            "explain", "--member", addr, "--from", "a/b", "--to", "c/d", "--port", "80",
        ]
        .map(String::from)
        .to_vec()
    };
    let out = Command::new(bin()).args(args(&huge)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", &err[..err.len().min(300)]);
    assert!(err.len() < 4096, "stderr is {} bytes", err.len());
    assert!(!err.contains('\u{1b}'), "{err:?}");
    // A member that wants a token, and answers with escape sequences in its steps.
    let token = "tok-0123456789abcdef";
    let guarded = fake_member(|req| {
        let body = if req.contains("\r\nAuthorization: Bearer tok-0123456789abcdef\r\n") {
            "{\"explanation\":{\"verdict\":\"deny\",\"steps\":[{\"direction\":\"egress\",\"stage\":\"x\\u001b[31m\",\"text\":\"t\\nALLOWED: fake\"}],\"summary\":\"s\\u001b]0;x\\u0007\"},\"federationRevision\":3,\"generation\":1}"
        } else {
            "{\"error\":{\"code\":\"unauthorized\",\"message\":\"no token\"}}"
        };
        let status = if body.contains("unauthorized") {
            "401 Unauthorized"
        } else {
            "200 OK"
        };
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    });
    let d = tmpdir("member-token");
    let tf = d.join("token");
    std::fs::write(&tf, format!("{token}\n")).unwrap();
    let out = Command::new(bin()).args(args(&guarded)).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    let out = Command::new(bin())
        .args(args(&guarded))
        .args(["--admin-token-file", tf.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("DENIED"), "{stdout}");
    assert!(stdout.contains("federation revision 3"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("ALLOWED")),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
