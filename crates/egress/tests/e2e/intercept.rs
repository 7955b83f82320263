//! TLS interception: `curl` trusts the gateway's CA; the upstream is a local HTTPS server
//! with a certificate from a second, test-only CA that the gateway is told to trust.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use palisade_egress::tls::{generate_ca, Interceptor};
use palisade_events::HttpVersion;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

pub(crate) fn roots(ca_pem: &str) -> RootCertStore {
    let mut r = RootCertStore::empty();
    r.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    r
}

/// An HTTPS server for `name` answering like the toy upstream (HTTP/1.1 only).
pub(crate) async fn https_upstream(upstream_ca: &Interceptor, name: &str) -> u16 {
    counted_https_upstream(upstream_ca, name).await.0
}

/// The same, with the count of connections it accepted.
pub(crate) async fn counted_https_upstream(
    upstream_ca: &Interceptor,
    name: &str,
) -> (u16, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let mut cfg = (*upstream_ca.server_config(name).unwrap()).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&cfg));
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    serve_toy(tls).await;
                }
            });
        }
    });
    (port, accepted)
}

/// A gateway that intercepts TLS to a local HTTPS `hub.test`.
pub(crate) struct Intercepting {
    pub(crate) s: Setup,
    /// The upstream's port.
    pub(crate) port: u16,
    /// Connections the upstream accepted.
    pub(crate) upstream_conns: Arc<AtomicUsize>,
    /// The gateway CA's PEM (what clients trust).
    pub(crate) ca_pem: String,
    /// The same, in a file (for curl's `--cacert`).
    pub(crate) cacert: String,
    dir: std::path::PathBuf,
}

impl Drop for Intercepting {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts an HTTPS `hub.test` (test CA) and a gateway intercepting it (its own CA).
pub(crate) async fn intercepting(test: &str) -> Intercepting {
    intercepting_with(test, |_| {}).await
}

/// The same, with the gateway's configuration adjusted by `tweak`.
pub(crate) async fn intercepting_with(
    test: &str,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> Intercepting {
    let (up_cert, up_key) = generate_ca("test upstream CA").unwrap();
    let upstream_ca = Interceptor::new(&up_cert, &up_key, roots(&up_cert)).unwrap();
    let (port, upstream_conns) = counted_https_upstream(&upstream_ca, "hub.test").await;
    let (gw_cert, gw_key) = generate_ca("test gateway CA").unwrap();
    let gw = Interceptor::new(&gw_cert, &gw_key, roots(&up_cert)).unwrap();
    let dir = std::env::temp_dir().join(format!("palisade-egress-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("gateway-ca.crt");
    std::fs::write(&ca_file, &gw_cert).unwrap();
    let gw = Arc::new(gw);
    let s = start_with(Posture::Allow, &[], move |cfg, _| {
        cfg.intercept = Some(gw);
        tweak(cfg);
    })
    .await;
    Intercepting {
        s,
        port,
        upstream_conns,
        ca_pem: gw_cert,
        cacert: ca_file.display().to_string(),
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_requests_are_decided_one_by_one() {
    let i = intercepting("intercept").await;
    let (s, cacert) = (&i.s, &i.cacert);
    let url = format!("https://hub.test:{}/api/models/x", i.port);

    let (body, code) = curl(via(
        s,
        &["--http1.1", "--cacert", cacert, "-w", "\n%{http_code}"],
        &url,
    ))
    .await;
    assert_eq!((body.as_str(), code.as_str()), ("hello", "200"));
    let e = next_event(&s.events).await;
    let EventBody::Http(h) = &e.body else {
        panic!()
    };
    assert_eq!(
        (h.method.as_deref(), h.path.as_deref(), h.tls, h.version),
        (
            Some("GET"),
            Some("/api/models/x"),
            Some(palisade_events::TlsMode::Intercepted),
            Some(HttpVersion::Http11)
        )
    );

    let (body, code) = curl(via(
        s,
        &[
            "--http1.1",
            "--cacert",
            cacert,
            "-d",
            "weights",
            "-w",
            "\n%{http_code}",
        ],
        &url,
    ))
    .await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (l7-not-allowed)", "403")
    );
    let e = next_event(&s.events).await;
    assert_eq!(e.verdict, Some(Verdict::Deny));

    // Fronting: Host names another server inside the tunnel.
    let (body, code) = curl(via(
        s,
        &[
            "--http1.1",
            "--cacert",
            cacert,
            "-H",
            "Host: allowed.test",
            "-w",
            "\n%{http_code}",
        ],
        &url,
    ))
    .await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (host-mismatch)", "403")
    );

    // Without trusting the gateway's CA the client refuses (no silent downgrade).
    let (_, code) = curl(via(s, &["-w", "\n%{http_code}"], &url)).await;
    assert_eq!(code, "000");
}
