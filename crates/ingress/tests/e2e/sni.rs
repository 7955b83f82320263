//! The request's host is tied to the TLS handshake's server name: two gateways share one
//! TLS listener and one certificate (`open.test`, no authentication; `locked.test`, API
//! keys), and `curl` shakes hands as one and names the other, over HTTP/1.1 and HTTP/2.
//! Before, routing followed the request's host whatever the handshake said; now a request
//! naming another host than its connection's SNI is `421 misdirected_request`.

use crate::{sha, ALICE};
use palisade_policy::{Manifests, Snapshot};
use std::net::SocketAddr;
use std::path::Path;

fn gateways(up: SocketAddr) -> String {
    let tls = "  tls: {certFile: tls.crt, keyFile: tls.key}\n";
    format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: a-open}}\nspec:\n  hosts: [open.test]\n{tls}  routes:\n    - name: open\n      pathPrefix: /v1\n      backend: http://{up}\n\
---\napiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: b-locked}}\nspec:\n  hosts: [locked.test]\n{tls}  routes:\n    - name: locked\n      pathPrefix: /v1\n      backend: http://{up}\n      auth: {{apiKeysFile: keys.yaml}}\n\
---\napiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: z-any}}\nspec:\n  routes:\n    - name: any\n      pathPrefix: /v1\n      backend: http://{up}\n"
    )
}

/// `curl` POSTing a chat request to `https://NAME:PORT` (`NAME` resolved to the gateway,
/// so it is the SNI; or the gateway's address, then no SNI is sent); the status and body.
async fn curl(dir: &Path, addr: SocketAddr, name: &str, extra: &[&str]) -> (u16, String) {
    let port = addr.port();
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "10".into(),
        "--cacert".into(),
        dir.join("tls.crt").display().to_string(),
        "--resolve".into(),
        format!("{name}:{port}:127.0.0.1"),
        "-H".into(),
        "content-type: application/json".into(),
        "--data".into(),
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("https://{name}:{port}/v1/chat/completions"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(&args)
            .output()
            .expect("curl is installed")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        eprintln!("curl: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_host_must_be_the_tls_server_name() {
    let up = crate::upstream::start().await;
    let dir = std::env::temp_dir().join(format!("palisade-ingress-sni-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c =
        rcgen::generate_simple_self_signed(vec!["open.test".into(), "locked.test".into()]).unwrap();
    std::fs::write(dir.join("tls.crt"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), c.signing_key.serialize_pem()).unwrap();
    std::fs::write(
        dir.join("keys.yaml"),
        format!("alice: sha256:{}\n", sha(ALICE)),
    )
    .unwrap();
    let file = dir.join("gateways.yaml");
    let text = gateways(up);
    std::fs::write(&file, &text).unwrap();
    let mut m = Manifests::new();
    m.add_file(&file.display().to_string(), &text);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    let compiled = palisade_ingress::compile(&Snapshot::from_manifests(&m).gateways).unwrap();
    let (gw, _events) = crate::serve_gateway(compiled).await;
    let key = format!("authorization: Bearer {ALICE}");

    for version in ["--http1.1", "--http2"] {
        // What agrees is served as before.
        let (s, _) = curl(&dir, gw, "open.test", &[version]).await;
        assert_eq!(s, 200, "{version}: open.test without a key");
        let (s, _) = curl(&dir, gw, "locked.test", &[version]).await;
        assert_eq!(s, 401, "{version}: locked.test without a key");
        let (s, _) = curl(&dir, gw, "locked.test", &[version, "-H", &key]).await;
        assert_eq!(s, 200, "{version}: locked.test with a key");
        // A trailing dot names the same host (before: no host-bound route matched it and
        // the catch-all route served it without a key).
        let (s, _) = curl(
            &dir,
            gw,
            "locked.test",
            &[version, "-H", "host: locked.test."],
        )
        .await;
        assert_eq!(s, 401, "{version}: locked.test. without a key");

        // Handshake as one gateway, name the other (HTTP/2: `:authority`): 421 both ways.
        let (s, body) = curl(&dir, gw, "open.test", &[version, "-H", "host: locked.test"]).await;
        assert_eq!(s, 421, "{version}: SNI open.test, host locked.test: {body}");
        assert!(body.contains("misdirected_request"), "{body}");
        let (s, body) = curl(&dir, gw, "locked.test", &[version, "-H", "host: open.test"]).await;
        assert_eq!(s, 421, "{version}: SNI locked.test, host open.test: {body}");
        // A host no gateway names, which the catch-all route would serve.
        let (s, _) = curl(
            &dir,
            gw,
            "locked.test",
            &[version, "-H", "host: other.test"],
        )
        .await;
        assert_eq!(s, 421, "{version}: SNI locked.test, host other.test");

        // No SNI (connecting to an address): the first gateway's certificate, so only
        // hosts that choose it.
        let ip = "127.0.0.1";
        let (s, _) = curl(&dir, gw, ip, &[version, "-k", "-H", "host: open.test"]).await;
        assert_eq!(s, 200, "{version}: no SNI, host open.test");
        let (s, body) = curl(&dir, gw, ip, &[version, "-k", "-H", "host: locked.test"]).await;
        assert_eq!(s, 421, "{version}: no SNI, host locked.test: {body}");
    }

    // A refusal over HTTP/2 while the client is still sending its body arrives as the
    // answer (before, the body was dropped unread and the stream reset with CANCEL, which
    // curl reports as "Stream error in the HTTP/2 framing layer" instead of the status).
    std::fs::write(dir.join("big.json"), vec![b' '; 512 * 1024]).unwrap();
    let big = format!("@{}", dir.join("big.json").display());
    for (name, host, want) in [
        ("locked.test", "locked.test", 401),
        ("open.test", "locked.test", 421),
    ] {
        let host = format!("host: {host}");
        let extra = ["--http2", "-H", &host, "--data-binary", &big];
        let (s, body) = curl(&dir, gw, name, &extra).await;
        assert_eq!(s, want, "HTTP/2, 512 KiB body, SNI {name}, {host}: {body}");
    }

    // `--connect-to` keeps the URL's name as SNI: the host must still be that name.
    let to = format!("locked.test:{0}:127.0.0.1:{0}", gw.port());
    let (s, _) = curl(&dir, gw, "locked.test", &["--connect-to", &to, "-H", &key]).await;
    assert_eq!(s, 200, "--connect-to, host locked.test");
    let (s, _) = curl(
        &dir,
        gw,
        "locked.test",
        &["--connect-to", &to, "-H", "host: open.test"],
    )
    .await;
    assert_eq!(s, 421, "--connect-to, host open.test");
    let _ = std::fs::remove_dir_all(&dir);
}
