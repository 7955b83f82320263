//! The gateway's own TLS: certificates reloaded when their files change (as cert-manager
//! rotates a mounted Secret), never a half-loaded pair, open connections kept; and mutual
//! TLS, client certificates verified against the gateway's `clientCaFile` and mapped to
//! consumers by `auth.mtls`. Checked with a real rustls client handshake (what certificate
//! is served, what the server refuses) and HTTP over it.

use crate::drain;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use palisade_events::{EventBody, Verdict};
use palisade_policy::{Manifests, Snapshot};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `localhost` from `ca`: (certificate PEM, key PEM, certificate DER).
/// A server pair for `localhost` from `ca`, written as `tls.crt` / `tls.key` in `dir`.
pub(crate) fn write_server_pair(dir: &std::path::Path, ca: &CertifiedIssuer<'static, KeyPair>) {
    let (c, k, _) = server_pair(ca);
    std::fs::write(dir.join("tls.crt"), c).unwrap();
    std::fs::write(dir.join("tls.key"), k).unwrap();
}

pub(crate) fn server_pair(ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let c = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (c.pem(), key.serialize_pem(), c.der().to_vec())
}

/// A client certificate from `ca` with a SPIFFE ID and a common name.
fn client_pair(ca: &CertifiedIssuer<'static, KeyPair>, spiffe: &str, cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names
        .push(SanType::URI(spiffe.try_into().unwrap()));
    p.distinguished_name.push(DnType::CommonName, cn);
    let c = p.signed_by(&key, ca).unwrap();
    (c.pem(), key.serialize_pem())
}

pub(crate) fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-ingress-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Replaces `path`'s content at once (write aside, rename), as a Secret volume does.
pub(crate) fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(crate) async fn serve(dir: &Path, yaml: &str) -> (SocketAddr, palisade_events::EventReceiver) {
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut m = Manifests::new();
    m.add_file(&file.display().to_string(), yaml);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    let compiled = palisade_ingress::compile(&Snapshot::from_manifests(&m).gateways).unwrap();
    crate::serve_gateway(compiled).await
}

/// A TLS connection to the gateway as `localhost`, trusting `roots`, with a client
/// certificate when given: the stream, or the handshake's error.
pub(crate) async fn connect(
    gw: SocketAddr,
    roots: &str,
    client: Option<(&str, &str)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut store = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots.as_bytes()) {
        store.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store);
    let mut cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

use rustls::pki_types::pem::PemObject;

/// The leaf certificate the gateway serves now.
async fn served(gw: SocketAddr, roots: &str) -> Vec<u8> {
    let tls = connect(gw, roots, None).await.expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// An HTTP/1.1 connection over a TLS stream.
pub(crate) async fn http(
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> SendRequest<Full<Bytes>> {
    let (tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

/// GETs `/v1/models`: status and body, or the error (the server refused the connection).
pub(crate) async fn models(tx: &mut SendRequest<Full<Bytes>>) -> Result<(u16, String), String> {
    let req = http::Request::get("/v1/models")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits (up to 15 s, the reload polls every 2 s) until the gateway serves `want`.
async fn until_served(gw: SocketAddr, roots: &str, want: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if served(gw, roots).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_are_served_and_broken_ones_never() {
    let up = crate::upstream::start().await;
    let dir = scratch("tls-rotate");
    let ca = ca("Palisade rotation CA");
    let roots = ca.pem();
    let (c1, k1, d1) = server_pair(&ca);
    std::fs::write(dir.join("tls.crt"), &c1).unwrap();
    std::fs::write(dir.join("tls.key"), &k1).unwrap();
    let yaml = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw, namespace: ml}}\nspec:\n  hosts: [localhost]\n  tls: {{certFile: tls.crt, keyFile: tls.key}}\n  routes:\n    - name: models\n      pathPrefix: /v1\n      backend: http://{up}\n"
    );
    let (gw, _events) = serve(&dir, &yaml).await;
    assert_eq!(served(gw, &roots).await, d1);
    // A connection opened before the rotation.
    let mut before = http(connect(gw, &roots, None).await.unwrap()).await;
    assert_eq!(models(&mut before).await.unwrap().0, 200);

    // cert-manager rotates the Secret: the new pair is served to new handshakes (before,
    // the first pair was served until the gateway restarted).
    let (c2, k2, d2) = server_pair(&ca);
    replace(&dir.join("tls.key"), &k2);
    replace(&dir.join("tls.crt"), &c2);
    assert!(
        until_served(gw, &roots, &d2).await,
        "the rotated certificate is not served"
    );
    // The connection from before still works.
    assert_eq!(models(&mut before).await.unwrap().0, 200);

    // A half-rotated pair (new certificate, old key), then a truncated certificate: each is
    // refused and the last good pair stays in use — every handshake still succeeds.
    let (c3, k3, d3) = server_pair(&ca);
    replace(&dir.join("tls.crt"), &c3);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(served(gw, &roots).await, d2, "a mismatched pair was served");
    replace(&dir.join("tls.crt"), &c3[..c3.len() / 2]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        served(gw, &roots).await,
        d2,
        "a broken certificate was served"
    );
    // Completed: the new pair is taken.
    replace(&dir.join("tls.crt"), &c3);
    replace(&dir.join("tls.key"), &k3);
    assert!(
        until_served(gw, &roots, &d3).await,
        "the repaired pair is not served"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Why the server refused a handshake: the handshake's error, or (TLS 1.3, where the
/// client finishes first) the alert read right after it.
pub(crate) async fn refusal(
    tls: std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut tls = match tls {
        Err(e) => return e.to_string(),
        Ok(t) => t,
    };
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut b)).await {
        Ok(Err(e)) => e.to_string(),
        other => format!("not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_name_the_consumer() {
    let up = crate::upstream::start().await;
    let dir = scratch("mtls");
    let server_ca = ca("Palisade server CA");
    let client_ca = ca("Palisade client CA");
    let other_ca = ca("Some other CA");
    let roots = server_ca.pem();
    write_server_pair(&dir, &server_ca);
    std::fs::write(dir.join("client-ca.pem"), client_ca.pem()).unwrap();
    const CHAT: &str = "spiffe://cluster.local/ns/apps/sa/chat";
    let yaml = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw, namespace: ml}}\nspec:\n  hosts: [localhost]\n  tls: {{certFile: tls.crt, keyFile: tls.key, clientCaFile: client-ca.pem}}\n  routes:\n    - name: models\n      pathPrefix: /v1\n      backend: http://{up}\n      auth:\n        mtls:\n          identities: {{\"{CHAT}\": chat-bot}}\n  consumers:\n    - name: chat-bot\n"
    );
    let (gw, events) = serve(&dir, &yaml).await;

    // No certificate: refused (TLS 1.3 clients learn it at their first read).
    let refused = refusal(connect(gw, &roots, None).await).await;
    assert!(refused.contains("CertificateRequired"), "{refused}");
    // A certificate from another CA, with the same identity: refused.
    let (oc, ok) = client_pair(&other_ca, CHAT, "chat");
    let refused = refusal(connect(gw, &roots, Some((&oc, &ok))).await).await;
    assert!(refused.contains("UnknownCA"), "{refused}");
    // A valid certificate naming no mapped identity: verified, but 401.
    let (uc, uk) = client_pair(&client_ca, "spiffe://cluster.local/ns/apps/sa/other", "x");
    let tls = connect(gw, &roots, Some((&uc, &uk))).await.unwrap();
    let (status, body) = models(&mut http(tls).await).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("client_certificate_not_allowed"), "{body}");
    // A valid certificate naming the identity: served as its consumer.
    let (vc, vk) = client_pair(&client_ca, CHAT, "chat");
    let tls = connect(gw, &roots, Some((&vc, &vk))).await.unwrap();
    let (status, body) = models(&mut http(tls).await).await.unwrap();
    assert_eq!(status, 200, "{body}");

    let all = drain(&events);
    let ok = all
        .iter()
        .find(|e| e.verdict == Some(Verdict::Allow))
        .expect("an allowed request");
    let EventBody::Http(h) = &ok.body else {
        panic!("{ok:?}")
    };
    assert_eq!(h.consumer.as_deref(), Some("chat-bot"));
    let src = ok.source.as_ref().unwrap();
    assert_eq!(src.name.as_deref(), Some(CHAT));
    assert_eq!(src.namespace.as_deref(), Some("apps"));
    assert_eq!(src.service_account.as_deref(), Some("chat"));
    let mut denied = all
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Http(h) => h.reason.as_deref(),
            _ => None,
        })
        .collect::<Vec<_>>();
    // The refused handshakes are events too (`tests/e2e/mtls_events.rs`).
    denied.sort_unstable();
    assert_eq!(
        denied,
        [
            "client_certificate_not_allowed",
            "client_certificate_required",
            "client_certificate_unknown_ca"
        ],
        "{all:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
