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
    let data = import_events(&d, &events_jsonl());
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

/// A data folder with `events` imported and a config listening on `listen`.
struct Setup {
    dir: PathBuf,
    config: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Imports `events` (JSON lines) into the store of `dir/data` with `palisade events
/// --import`; returns the data folder.
fn import_events(dir: &std::path::Path, events: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    let file = dir.join("events.jsonl");
    std::fs::write(&file, events).unwrap();
    let imported = Command::new(bin())
        .args(["events", "--data-dir"])
        .arg(&data)
        .arg("--import")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    data
}

fn setup(tag: &str, events: &str, listen: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("palisade-ui-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Removed on drop, also when a step below fails.
    let s = Setup {
        config: dir.join("palisade.yaml"),
        dir: dir.clone(),
    };
    let data = import_events(&dir, events);
    std::fs::write(
        &s.config,
        format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {{name: ui-test}}\nspec:\n  manifests: {}\n  dataDir: {}\n  admin: {{listen: \"{listen}\"}}\n",
            repo().join("examples/genai").display(),
            data.display()
        ),
    )
    .unwrap();
    s
}

fn start(s: &Setup, extra: &[&str], base: &str, token: Option<&str>) -> Up {
    let mut args = vec!["up", "--config", s.config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let up = Up(Command::new(bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let start = Instant::now();
    while curl_with(&format!("{base}/readyz"), &[]).0 != 200
        || curl_with(
            &format!("{base}/api/v1/status"),
            &auth
                .iter()
                .flat_map(|a| ["-H", a.as_str()])
                .collect::<Vec<_>>(),
        )
        .0 != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "palisade up did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    up
}

/// Status, response headers (lower-case names) and body.
fn curl_with(url: &str, extra: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "--path-as-is", "-D", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (
        code.trim().parse().unwrap_or(0),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

/// Events whose names and paths a hostile pod chose: markup, quotes, script.
fn hostile_events() -> String {
    let now = palisade_events::now_micros() - 60_000_000;
    let payloads = [
        "<img src=x onerror=\"document.title='pwned-img'\">.evil.test",
        "\"><svg onload=\"document.title='pwned-svg'\">",
        "'-alert(1)-'.evil.test",
        "</title><script>document.title='pwned-script'</script>",
    ];
    let mut lines = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let t = palisade_events::format_rfc3339_micros(now + i as i64 * 1000);
        lines.push(serde_json::json!({"id": format!("x{i:03}"), "time": t, "type": "http",
            "source": pod_ep("training/trainer-0"), "destination": {"kind": "fqdn", "fqdn": p, "port": 443},
            "protocol": "TCP", "verdict": "allow",
            "http": {"method": "GET", "host": p, "path": format!("/{p}"), "status": 200}}).to_string());
        lines.push(serde_json::json!({"id": format!("y{i:03}"), "time": t, "type": "dns",
            "source": pod_ep("training/trainer-0"), "destination": {"kind": "fqdn", "fqdn": p, "port": 53},
            "protocol": "UDP", "verdict": "allow",
            "dns": {"query": p, "qtype": "A", "rcode": "NOERROR", "answers": []}}).to_string());
    }
    let t = palisade_events::format_rfc3339_micros(now + 10_000);
    lines.push(
        serde_json::json!({"id": "z000", "time": t, "type": "alert",
        "source": pod_ep("training/trainer-0"),
        "alert": {"kind": "new-destination", "severity": "high", "subject": "training/trainer",
                  "summary": payloads[0], "evidence": ["x000", "y001"]}})
        .to_string(),
    );
    lines.join("\n") + "\n"
}

/// The DOM of `url` after its scripts ran, in headless chromium.
fn rendered(url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No markup from `hostile_events` became markup and no script of theirs ran.
fn assert_inert(dom: &str) {
    assert!(
        dom.contains("<title>Palisade</title>"),
        "an event's script ran:\n{dom}"
    );
    assert!(
        !dom.contains("<img") && !dom.contains("<svg onload") && !dom.contains("<script>document"),
        "markup from an event became markup:\n{dom}"
    );
    assert!(
        dom.contains("&lt;img src=x onerror="),
        "the name is not shown as text:\n{dom}"
    );
}

#[test]
fn ui_answers_only_loopback_names_and_sends_security_headers() {
    if !have("curl") {
        eprintln!("skipping: needs curl");
        return;
    }
    let port = free_port();
    let s = setup("headers", &hostile_events(), &format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let _up = start(&s, &[], &base, None);
    // DNS rebinding: a web page whose own name now points at 127.0.0.1 reads the API with
    // its name in Host. Refused; the loopback names work.
    let (code, _, body) = curl_with(
        &format!("{base}/api/v1/graph?since=1h"),
        &["-H", &format!("Host: rebind.attacker.test:{port}")],
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("host-not-allowed"), "{body}");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (code, _, body) = curl_with(
            &format!("{base}/api/v1/graph?since=1h"),
            &["-H", &format!("Host: {host}")],
        );
        assert_eq!(code, 200, "{host}: {body}");
    }
    // The page: its own script and style only, never framed, no sniffing.
    let (code, head, body) = curl_with(&format!("{base}/ui/"), &[]);
    assert_eq!(code, 200);
    assert!(
        !body.contains("<style") && !body.contains("style="),
        "{body}"
    );
    for want in [
        "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self';",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
    ] {
        assert!(head.contains(want), "no {want:?} in\n{head}");
    }
    let (code, head, _) = curl_with(&format!("{base}/ui/app.css"), &[]);
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/css"), "{head}");
    // No cross-origin reads of the traffic.
    let (code, head, _) = curl_with(
        &format!("{base}/api/v1/ui/events?since=1h"),
        &["-H", "Origin: https://evil.test"],
    );
    assert_eq!(code, 200);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    // Bounded and checked parameters: 400 with a reason, never everything.
    for (q, reason) in [
        ("limit=0", "bad-limit"),
        ("limit=-1", "bad-query"),
        ("limit=abc", "bad-query"),
        ("limit=99999999999999999999999", "bad-query"),
        ("since=99999999999999999999d", "bad-since"),
        ("type=%3Cscript%3E", "bad-type"),
        ("verdict=%27%20OR%201=1", "bad-verdict"),
    ] {
        let (code, _, body) = curl_with(&format!("{base}/api/v1/ui/events?{q}"), &[]);
        assert_eq!(code, 400, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], reason, "{q}: {body}");
    }
    // The admin API's event query: limit 0 is not "everything" either.
    let (code, _, body) = curl_with(&format!("{base}/api/v1/events?limit=0"), &[]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad-limit"), "{body}");
    let (code, _, body) = curl_with(&format!("{base}/api/v1/events?limit=3"), &[]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 3, "{body}");
    // The workload filter is a value, not SQL or a pattern.
    let (_, _, body) = curl_with(
        &format!("{base}/api/v1/ui/events?since=1h&workload=%25"),
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 0, "{body}");
    let (_, _, body) = curl_with(
        &format!("{base}/api/v1/ui/events?since=1h&workload=x%27%20OR%20%271%27=%271"),
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 0, "{body}");
    // Static files are embedded: no path leads to the file system.
    for p in [
        "/ui/../../../../etc/passwd",
        "/ui/%2e%2e/%2e%2e/etc/passwd",
        "/ui/app.js/..%2f..%2fetc%2fpasswd",
    ] {
        let (code, _, body) = curl_with(&format!("{base}{p}"), &[]);
        assert!(code == 404 || code == 400, "{p}: {code}");
        assert!(!body.contains("root:"), "{p}");
    }
    // Names that are markup stay text in the rendered page: graph, events, alerts.
    if have("chromium") {
        let dom = rendered(&format!("{base}/ui/"));
        assert!(dom.contains("nodes · "), "the graph did not render:\n{dom}");
        assert_inert(&dom);
        let dom = rendered(&format!("{base}/ui/?tab=events"));
        assert!(
            dom.contains("/&lt;img src=x onerror="),
            "no events rendered:\n{dom}"
        );
        assert_inert(&dom);
        let dom = rendered(&format!("{base}/ui/?tab=alerts"));
        assert!(
            dom.contains("evidence (2 ids, 2 found)"),
            "no alert rendered:\n{dom}"
        );
        assert_inert(&dom);
    } else {
        eprintln!("chromium missing: the rendered-page part is skipped");
    }
}

#[test]
fn up_refuses_a_non_loopback_admin_address_without_a_token() {
    let port = free_port();
    let s = setup("open", &hostile_events(), &format!("0.0.0.0:{port}"));
    let mut child = Command::new(bin())
        .args(["up", "--config", s.config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > Duration::from_secs(10) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut up = Up(child);
    let status = status.expect("palisade up served the traffic API on 0.0.0.0 with no token");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(up.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("is not a loopback address") && err.contains("--admin-token-file"),
        "{err}"
    );
}

#[test]
fn with_a_token_the_api_wants_it_and_the_ui_sends_it() {
    if !have("curl") {
        eprintln!("skipping: needs curl");
        return;
    }
    let port = free_port();
    let s = setup("token", &events_jsonl(), &format!("0.0.0.0:{port}"));
    let token = "s3cret-token-0123456789";
    let token_file = s.dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _up = start(
        &s,
        &["--admin-token-file", token_file.to_str().unwrap()],
        &base,
        Some(token),
    );
    let bearer = format!("Authorization: Bearer {token}");
    for path in [
        "/api/v1/graph?since=1h",
        "/api/v1/ui/events?since=1h",
        "/api/v1/alerts",
        "/api/v1/events",
        "/api/v1/status",
        "/api/v1/explain?from=training/trainer-0&to=huggingface.co&port=443",
        "/metrics",
    ] {
        let (code, head, body) = curl_with(&format!("{base}{path}"), &[]);
        assert_eq!(code, 401, "{path}: {body}");
        assert!(head.contains("www-authenticate: bearer"), "{path}: {head}");
        let (code, _, _) = curl_with(
            &format!("{base}{path}"),
            &["-H", "Authorization: Bearer wrong-token-0123456789"],
        );
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, _, body) = curl_with(&format!("{base}{path}"), &["-H", &bearer]);
        assert_eq!(code, 200, "{path}: {body}");
    }
    // Probes and the page itself (no data) need no token.
    for path in ["/healthz", "/readyz", "/ui/", "/ui/app.js", "/ui/app.css"] {
        assert_eq!(curl_with(&format!("{base}{path}"), &[]).0, 200, "{path}");
    }
    if have("chromium") {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=10000",
                "--dump-dom",
                &format!("{base}/ui/#token={token}"),
            ])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            dom.contains("10 nodes · "),
            "the UI did not send the token:\n{dom}"
        );
        assert!(dom.contains("data-id=\"inference/vllm\""), "{dom}");
    }
}

#[test]
fn graph_reads_only_the_newest_events_and_folds_names_a_pod_made_up() {
    if !have("curl") {
        eprintln!("skipping: needs curl");
        return;
    }
    // 100,050 requests to as many made-up names, then 5 to the hub: the graph reads the
    // newest 100,000 (the hub's among them), draws 200 outside names and folds the rest.
    let n = palisade_observe::web::GRAPH_MAX_EVENTS as i64 + 50;
    let now = palisade_events::now_micros() - 600_000_000;
    let src = pod_ep("training/trainer-0").to_string();
    let mut text = String::with_capacity(n as usize * 330);
    for i in 0..n + 5 {
        let host = if i >= n {
            "hub.test".to_string()
        } else {
            format!("x{i}.tunnel.test")
        };
        text.push_str(&format!(
            "{{\"id\":\"g{i:07}\",\"time\":\"{}\",\"type\":\"http\",\"source\":{src},\"destination\":{{\"kind\":\"fqdn\",\"fqdn\":\"{host}\",\"port\":443}},\"protocol\":\"TCP\",\"verdict\":\"allow\",\"http\":{{\"method\":\"GET\",\"host\":\"{host}\",\"path\":\"/\",\"status\":200}}}}\n",
            palisade_events::format_rfc3339_micros(now + i * 1000)
        ));
    }
    let port = free_port();
    let s = setup("bounds", &text, &format!("127.0.0.1:{port}"));
    drop(text);
    let base = format!("http://127.0.0.1:{port}");
    let _up = start(&s, &[], &base, None);
    let (code, _, body) = curl_with(&format!("{base}/api/v1/graph?since=all"), &[]);
    assert_eq!(code, 200);
    let g: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        g["events"].as_u64(),
        Some(palisade_observe::web::GRAPH_MAX_EVENTS as u64)
    );
    assert_eq!(g["truncated"], true);
    let outside = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] != "workload")
        .count();
    assert_eq!(
        outside,
        palisade_observe::graph::MAX_OUTSIDE_NODES + 1,
        "200 names and the folded node"
    );
    let hub = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == "hub.test")
        .expect("the newest events are read, the hub's among them");
    assert_eq!(hub["allow"], 5);
    assert!(g["folded"].as_u64().unwrap() > 99_000, "{}", g["folded"]);
    let (code, _, body) = curl_with(&format!("{base}/api/v1/alerts?limit=0"), &[]);
    assert_eq!(code, 400, "{body}");
    // The events view shows the newest of the range (oldest first), not the oldest.
    let (_, _, body) = curl_with(&format!("{base}/api/v1/ui/events?since=all&limit=5"), &[]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let hosts: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["http"]["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["hub.test"; 5], "{body}");
    let ids: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "oldest first");
}

/// Runs `palisade up` with `extra` arguments expecting it to refuse to start: its stderr.
fn up_refuses(s: &Setup, extra: &[&str]) -> String {
    let mut args = vec!["up", "--config", s.config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut child = Command::new(bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > Duration::from_secs(10) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut up = Up(child);
    let status = status.unwrap_or_else(|| panic!("palisade up {extra:?} started"));
    assert!(!status.success(), "{extra:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(up.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}

/// `--metrics-listen` served `/metrics` to anyone, on any address, even when the admin API
/// wanted a token (on the old code the first request below got 200). Now it wants the admin
/// token (or `--metrics-token-file`'s), answers only loopback names when there is no token,
/// refuses a non-loopback address without one, and serves everyone only with
/// `--metrics-unauthenticated`.
#[test]
fn the_metrics_listener_wants_a_token_unless_told_otherwise() {
    if !have("curl") {
        eprintln!("skipping: needs curl");
        return;
    }
    let port = free_port();
    let s = setup("metrics", &events_jsonl(), &format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let token = "admin-token-0123456789";
    let token_file = s.dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    // The admin token guards the metrics listener too.
    let mport = free_port();
    let murl = format!("http://127.0.0.1:{mport}/metrics");
    {
        let _up = start(
            &s,
            &[
                "--admin-token-file",
                token_file.to_str().unwrap(),
                "--metrics-listen",
                &format!("127.0.0.1:{mport}"),
            ],
            &base,
            Some(token),
        );
        let (code, head, body) = curl_with(&murl, &[]);
        assert_eq!(code, 401, "no token: {body}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
        assert_eq!(
            curl_with(&murl, &["-H", &bearer("wrong-token-0123456789")]).0,
            401
        );
        let (code, _, body) = curl_with(&murl, &["-H", &bearer(token)]);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("palisade_events_total"), "{body}");
    }
    // A token of its own: the admin token does not open it, its own does.
    let metrics_token = "metrics-token-0123456789";
    let metrics_token_file = s.dir.join("metrics-token");
    std::fs::write(&metrics_token_file, metrics_token).unwrap();
    let mport = free_port();
    let murl = format!("http://127.0.0.1:{mport}/metrics");
    {
        let _up = start(
            &s,
            &[
                "--admin-token-file",
                token_file.to_str().unwrap(),
                "--metrics-listen",
                &format!("0.0.0.0:{mport}"),
                "--metrics-token-file",
                metrics_token_file.to_str().unwrap(),
            ],
            &base,
            Some(token),
        );
        assert_eq!(curl_with(&murl, &[]).0, 401);
        assert_eq!(curl_with(&murl, &["-H", &bearer(token)]).0, 401);
        assert_eq!(curl_with(&murl, &["-H", &bearer(metrics_token)]).0, 200);
        // The metrics listener serves metrics only.
        let api = format!("http://127.0.0.1:{mport}/api/v1/status");
        assert_eq!(curl_with(&api, &["-H", &bearer(metrics_token)]).0, 404);
    }
    // No token: loopback names only, and a non-loopback address is refused...
    let mport = free_port();
    let murl = format!("http://127.0.0.1:{mport}/metrics");
    {
        let _up = start(
            &s,
            &["--metrics-listen", &format!("127.0.0.1:{mport}")],
            &base,
            None,
        );
        assert_eq!(curl_with(&murl, &[]).0, 200);
        let (code, _, body) = curl_with(&murl, &["-H", "Host: rebind.attacker.test"]);
        assert_eq!(code, 403, "{body}");
    }
    let err = up_refuses(&s, &["--metrics-listen", &format!("0.0.0.0:{mport}")]);
    assert!(
        err.contains("--metrics-unauthenticated") && err.contains("--metrics-token-file"),
        "{err}"
    );
    // ... unless unauthenticated scraping is chosen.
    {
        let _up = start(
            &s,
            &[
                "--metrics-listen",
                &format!("0.0.0.0:{mport}"),
                "--metrics-unauthenticated",
            ],
            &base,
            None,
        );
        let (code, _, body) = curl_with(&murl, &["-H", "Host: prometheus.scraper.test"]);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("palisade_events_total"), "{body}");
    }
    // The two ways do not go together.
    let err = up_refuses(
        &s,
        &[
            "--metrics-listen",
            &format!("0.0.0.0:{mport}"),
            "--metrics-unauthenticated",
            "--metrics-token-file",
            metrics_token_file.to_str().unwrap(),
        ],
    );
    assert!(err.contains("cannot be used with"), "{err}");
}

/// Reads from `s` until the server closes the connection; the time that took, or `None`
/// when it was still open after `wait`.
fn closed_within(mut s: std::net::TcpStream, wait: Duration) -> Option<Duration> {
    use std::io::Read;
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = wait.checked_sub(start.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed())
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn slow_and_idle_clients_are_disconnected_from_the_admin_api() {
    // Slowloris: a client that sends half a request head, one that connects and says
    // nothing, and one that keeps its connection alive after a response are all closed
    // after the header timeout (10 s), so they cannot hold the listener's connections.
    if !have("curl") {
        eprintln!("skipping: needs curl");
        return;
    }
    use std::io::{Read, Write};
    let port = free_port();
    let s = setup("slowloris", &events_jsonl(), &format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let _up = start(&s, &[], &base, None);
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut half = connect();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
        .unwrap();
    let silent = connect();
    let mut idle = connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let waits: Vec<_> = [
        ("half a head", half),
        ("nothing sent", silent),
        ("idle", idle),
    ]
    .into_iter()
    .map(|(what, c)| std::thread::spawn(move || (what, closed_within(c, Duration::from_secs(20)))))
    .collect();
    for w in waits {
        let (what, closed) = w.join().unwrap();
        let t = closed.unwrap_or_else(|| panic!("{what}: still open after 20 s"));
        assert!(t >= Duration::from_secs(5), "{what}: closed after {t:?}");
    }
    // The server still answers.
    assert_eq!(curl_with(&format!("{base}/healthz"), &[]).0, 200);
}
