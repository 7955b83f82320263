//! HTTPS backends: the gateway verifies the backend's certificate against the route's CA
//! bundle (a test CA made here), sends the URL's host as SNI, reuses its connections, and
//! answers `502` with a clear reason when the certificate is not trusted or does not name
//! the backend.

use crate::drain;
use palisade_events::EventBody;
use palisade_policy::{Manifests, Snapshot};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// POSTs a chat request with `Host: host`; the status and the body.
async fn ask(addr: SocketAddr, host: &str) -> (u16, Value) {
    let (status, _, body) = ask_raw(addr, host, false).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// POSTs a chat request (streamed when `stream`); status, content type and body text.
async fn ask_raw(addr: SocketAddr, host: &str, stream: bool) -> (u16, String, String) {
    use http_body_util::{BodyExt, Full};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","stream":{stream},"messages":[{{"role":"user","content":"hello"}}]}}"#
    );
    let req = http::Request::post("/v1/chat/completions")
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8_lossy(&b).into_owned())
}

fn compile(dir: &std::path::Path, yaml: &str) -> Result<palisade_ingress::Compiled, Vec<String>> {
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut m = Manifests::new();
    m.add_file(&file.display().to_string(), yaml);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    palisade_ingress::compile(&Snapshot::from_manifests(&m).gateways)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_are_verified_against_the_route_ca() {
    let dir = std::env::temp_dir().join(format!("palisade-ingress-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good_ca = ca("Palisade test CA");
    let wrong_ca = ca("Some other CA");
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &good_ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), good_ca.pem()).unwrap();
    std::fs::write(dir.join("wrong-ca.pem"), wrong_ca.pem()).unwrap();
    let (up, accepted) = crate::upstream::start_tls(&leaf.pem(), &leaf_key.serialize_pem()).await;
    let port = up.port();
    let route = |name: &str, backend: String, ca: Option<&str>| {
        let ca = ca
            .map(|c| format!("      backendCaFile: {c}\n"))
            .unwrap_or_default();
        format!("    - name: {name}\n      host: {name}.test\n      pathPrefix: /v1\n      backend: {backend}\n{ca}")
    };
    let yaml = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata:\n  name: tls-backends\nspec:\n  routes:\n{}{}{}{}",
        route("good", format!("https://localhost:{port}"), Some("ca.pem")),
        route("wrong", format!("https://localhost:{port}"), Some("wrong-ca.pem")),
        route("system", format!("https://localhost:{port}"), None),
        route("byip", format!("https://127.0.0.1:{port}"), Some("ca.pem")),
    );
    let compiled = match compile(&dir, &yaml) {
        Ok(c) => c,
        Err(e) if e.iter().any(|e| e.contains("system trust anchors")) => {
            eprintln!("note: no system CA bundle here; the system-roots route is left out: {e:?}");
            let yaml = yaml.replace(
                &route("system", format!("https://localhost:{port}"), None),
                "",
            );
            compile(&dir, &yaml).unwrap()
        }
        Err(e) => panic!("{e:?}"),
    };
    let has_system = compiled.routes.iter().any(|r| r.name == "system");
    let (addr, rx) = crate::serve_gateway(compiled).await;

    // The right CA: answered, over pooled TLS connections. Each `ask` is a new client
    // connection, which any gateway worker thread may serve; the pause lets the previous
    // backend connection go back to the pool (it does once the response body is sent).
    for _ in 0..3 {
        let (status, body) = ask(addr, "good.test").await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "Echo: 5 characters received."
        );
    }
    // A streamed answer over the same pooled connection.
    let (status, ctype, text) = ask_raw(addr, "good.test", true).await;
    assert_eq!(
        (status, ctype.as_str()),
        (200, "text/event-stream"),
        "{text}"
    );
    assert!(
        text.contains(r#""content":"Echo:""#) && text.trim_end().ends_with("data: [DONE]"),
        "{text}"
    );
    // Four requests: at most one connection per worker thread racing for the pool.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        accepted.load(Ordering::SeqCst) <= workers.min(2),
        "connections were not reused: {}",
        accepted.load(Ordering::SeqCst)
    );
    // A CA that did not sign the backend's certificate, the system's anchors (which do not
    // know the test CA), and a URL whose host the certificate does not name: 502.
    let mut refused = vec!["wrong.test", "byip.test"];
    if has_system {
        refused.push("system.test");
    }
    for host in refused {
        let (status, body) = ask(addr, host).await;
        assert_eq!(status, 502, "{host}: {body}");
        assert_eq!(
            body["error"]["code"], "upstream_certificate_invalid",
            "{host}: {body}"
        );
        assert_eq!(
            body["error"]["message"],
            "The model backend's TLS certificate could not be verified."
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "an unverified handshake completed"
    );
    let events = drain(&rx);
    let reasons: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Http(h) => Some((h.status, h.reason.clone())),
            _ => None,
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(s, r)| *s == Some(502) && r.as_deref() == Some("upstream_certificate_invalid")),
        "{reasons:?}"
    );

    // Configuration errors name the field.
    let errs = compile(
        &dir,
        &yaml.replace("backendCaFile: wrong-ca.pem", "backendCaFile: missing.pem"),
    )
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.routes[1].backendCaFile") && e.contains("missing.pem")),
        "{errs:?}"
    );
    let errs = compile(
        &dir,
        &yaml.replace(
            &format!("https://127.0.0.1:{port}"),
            &format!("http://127.0.0.1:{port}"),
        ),
    )
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.routes[3].backendCaFile") && e.contains("only https")),
        "{errs:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
