//! Mutual TLS beyond the CA check: revocation lists (`tls.clientCrlFiles`, reloaded with
//! the certificates), no TLS session resumption on gateways that verify client certificates
//! (a resumed session would keep its first handshake's verdict), and `tls.clientAuth:
//! optional` (routes without `auth.mtls` serve clients without a certificate). Checked with
//! a rustls client (the alert the server sends), `openssl s_client` resuming a saved session,
//! and `curl --cert`.

use crate::tls_files::{ca, connect, http, models, scratch, serve, write_server_pair};
use rcgen::{
    CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType, KeyIdMethod,
    KeyPair, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

pub(crate) const CHAT: &str = "spiffe://cluster.local/ns/apps/sa/chat";

/// A client certificate from `ca` naming `spiffe`, with serial number `serial`, valid until
/// `not_after` (default: far off): (certificate PEM, key PEM).
pub(crate) fn client_cert(
    ca: &CertifiedIssuer<'static, KeyPair>,
    spiffe: &str,
    serial: u64,
    not_after: Option<SystemTime>,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names
        .push(SanType::URI(spiffe.try_into().unwrap()));
    p.distinguished_name.push(DnType::CommonName, "client");
    p.serial_number = Some(SerialNumber::from(serial));
    if let Some(t) = not_after {
        p.not_after = t.into();
    }
    let c = p.signed_by(&key, ca).unwrap();
    (c.pem(), key.serialize_pem())
}

/// A CRL of `ca` numbered `number` revoking `serials`, whose `nextUpdate` is `next_update`.
pub(crate) fn crl(
    ca: &CertifiedIssuer<'static, KeyPair>,
    number: u64,
    serials: &[u64],
    next_update: SystemTime,
) -> rcgen::CertificateRevocationList {
    let now = SystemTime::now();
    CertificateRevocationListParams {
        this_update: (next_update.min(now) - Duration::from_secs(3600)).into(),
        next_update: next_update.into(),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: (now - Duration::from_secs(60)).into(),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(ca)
    .unwrap()
}

pub(crate) fn in_a_day() -> SystemTime {
    SystemTime::now() + Duration::from_secs(86_400)
}

/// Replaces `path`'s content at once (write aside, rename), as a Secret volume does.
pub(crate) fn replace_bytes(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `GET /v1/models` over a new TLS connection with the client certificate `(cert, key)`:
/// the status, or why the handshake was refused.
pub(crate) async fn get_models(
    gw: SocketAddr,
    roots: &str,
    cert: &(String, String),
) -> Result<u16, String> {
    // On a loaded machine the server's alert can come after the 300 ms wait below; the
    // request then meets a closed connection and the alert is lost to the reset. Such an
    // ending says nothing about why: ask again (a refusal is refused again, with its alert).
    let mut last = Err(String::new());
    for _ in 0..5 {
        last = get_models_once(gw, roots, cert).await;
        match &last {
            Err(e)
                if e.contains("close_notify")
                    || e.contains("reset")
                    || e.contains("Broken pipe") => {}
            _ => break,
        }
    }
    last
}

/// One attempt of [`get_models`]: every call is exactly one handshake.
pub(crate) async fn get_models_once(
    gw: SocketAddr,
    roots: &str,
    cert: &(String, String),
) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect(gw, roots, Some((&cert.0, &cert.1)))
        .await
        .map_err(|e| e.to_string())?;
    // TLS 1.3: the client learns of a refusal (the server's alert) at its first read; read
    // before writing, so a write into the closed connection cannot reset it first.
    let mut first = [0u8; 1];
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), tls.read(&mut first)).await {
        return Err(match r {
            Err(e) => e.to_string(),
            Ok(n) => format!("{n} bytes before the request"),
        });
    }
    tls.write_all(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text}"))
}

/// Polls (up to 15 s, the files are read every 2 s) until `check` holds for `get_models`.
async fn until(
    gw: SocketAddr,
    roots: &str,
    cert: &(String, String),
    check: impl Fn(&Result<u16, String>) -> bool,
) -> Result<u16, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = get_models(gw, roots, cert).await;
        if check(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn gateway_yaml(up: SocketAddr, tls_extra: &str) -> String {
    format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw, namespace: ml}}\nspec:\n  hosts: [localhost]\n  tls: {{certFile: tls.crt, keyFile: tls.key, clientCaFile: client-ca.pem{tls_extra}}}\n  routes:\n    - name: models\n      pathPrefix: /v1\n      backend: http://{up}\n      auth:\n        mtls:\n          identities: {{\"{CHAT}\": chat-bot}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_client_certificates_are_refused_and_crls_reload() {
    let up = crate::upstream::start().await;
    let dir = scratch("mtls-crl");
    let server_ca = ca("Palisade server CA");
    let client_ca = ca("Palisade client CA");
    // A second client CA with no revocation list.
    let uncovered_ca = ca("Palisade CA without a CRL");
    let roots = server_ca.pem();
    write_server_pair(&dir, &server_ca);
    std::fs::write(
        dir.join("client-ca.pem"),
        format!("{}{}", client_ca.pem(), uncovered_ca.pem()),
    )
    .unwrap();
    let crl_path = dir.join("client.crl");
    std::fs::write(
        &crl_path,
        crl(&client_ca, 1, &[2], in_a_day()).pem().unwrap(),
    )
    .unwrap();
    let yaml = gateway_yaml(up, ", clientCrlFiles: [client.crl]");
    let (gw, _events) = serve(&dir, &yaml).await;

    let revoked = client_cert(&client_ca, CHAT, 2, None);
    let good = client_cert(&client_ca, CHAT, 3, None);
    let other = client_cert(&client_ca, CHAT, 4, None);
    let uncovered = client_cert(&uncovered_ca, CHAT, 5, None);
    // The revoked certificate is refused in the handshake (before, any certificate from
    // the CA was taken); the others of that CA are served.
    let r = get_models(gw, &roots, &revoked).await;
    assert!(
        matches!(&r, Err(e) if e.contains("CertificateRevoked")),
        "{r:?}"
    );
    assert_eq!(get_models(gw, &roots, &good).await, Ok(200));
    assert_eq!(get_models(gw, &roots, &other).await, Ok(200));
    // A certificate whose issuer has no CRL: its status is unknown, refused.
    let r = get_models(gw, &roots, &uncovered).await;
    assert!(matches!(&r, Err(e) if e.contains("UnknownCA")), "{r:?}");

    // The CA publishes a new list, in DER, revoking `good` too: taken within the reload.
    replace_bytes(
        &crl_path,
        crl(&client_ca, 2, &[2, 3], in_a_day()).der().as_ref(),
    );
    let r = until(gw, &roots, &good, |r| r.is_err()).await;
    assert!(
        matches!(&r, Err(e) if e.contains("CertificateRevoked")),
        "the updated CRL was not taken: {r:?}"
    );
    assert_eq!(get_models(gw, &roots, &other).await, Ok(200));

    // A broken list (half written): logged, the last good set stays — `good` is still
    // revoked and `other` still served.
    let der = crl(&client_ca, 3, &[], in_a_day()).der().to_vec();
    replace_bytes(&crl_path, &der[..der.len() / 2]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = get_models(gw, &roots, &good).await;
    assert!(
        matches!(&r, Err(e) if e.contains("CertificateRevoked")),
        "a broken CRL replaced the good one: {r:?}"
    );
    assert_eq!(get_models(gw, &roots, &other).await, Ok(200));
    replace_bytes(
        &crl_path,
        b"-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n",
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(get_models(gw, &roots, &other).await, Ok(200));
    let r = get_models(gw, &roots, &good).await;
    assert!(
        matches!(&r, Err(e) if e.contains("CertificateRevoked")),
        "{r:?}"
    );

    // A list past its nextUpdate says nothing current: every certificate of that CA is
    // refused until a fresh one arrives.
    let stale = SystemTime::now() - Duration::from_secs(3600);
    replace_bytes(
        &crl_path,
        crl(&client_ca, 4, &[], stale).pem().unwrap().as_bytes(),
    );
    let r = until(gw, &roots, &other, |r| r.is_err()).await;
    assert!(matches!(&r, Err(e) if e.contains("UnknownCA")), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_closed_when_their_certificate_is_revoked() {
    let up = crate::upstream::start().await;
    let dir = scratch("mtls-open");
    let server_ca = ca("Palisade server CA");
    let client_ca = ca("Palisade client CA");
    let roots = server_ca.pem();
    write_server_pair(&dir, &server_ca);
    std::fs::write(dir.join("client-ca.pem"), client_ca.pem()).unwrap();
    let crl_path = dir.join("client.crl");
    std::fs::write(
        &crl_path,
        crl(&client_ca, 1, &[], in_a_day()).pem().unwrap(),
    )
    .unwrap();
    let (gw, _events) = serve(&dir, &gateway_yaml(up, ", clientCrlFiles: [client.crl]")).await;
    let revoked = client_cert(&client_ca, CHAT, 2, None);
    let kept = client_cert(&client_ca, CHAT, 3, None);
    let open = |cert: (String, String)| {
        let roots = roots.clone();
        async move {
            let tls = connect(gw, &roots, Some((&cert.0, &cert.1))).await.unwrap();
            http(tls).await
        }
    };
    // Two kept-alive connections, each serving.
    let mut a = open(revoked.clone()).await;
    let mut b = open(kept).await;
    assert_eq!(models(&mut a).await.map(|r| r.0), Ok(200));
    assert_eq!(models(&mut b).await.map(|r| r.0), Ok(200));

    // The CA revokes the first certificate: its open connection is closed (before, it was
    // served for as long as the client kept it open), the other one still serves.
    replace_bytes(
        &crl_path,
        crl(&client_ca, 2, &[2], in_a_day())
            .pem()
            .unwrap()
            .as_bytes(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = models(&mut a).await.map(|r| r.0);
    while last.is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = models(&mut a).await.map(|r| r.0);
    }
    assert!(
        last.is_err(),
        "the revoked certificate's connection still served: {last:?}"
    );
    assert_eq!(models(&mut b).await.map(|r| r.0), Ok(200));
    // And a new handshake with it is refused.
    let r = get_models(gw, &roots, &revoked).await;
    assert!(
        matches!(&r, Err(e) if e.contains("CertificateRevoked")),
        "{r:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `openssl s_client` GETting `/v1/models` with a client certificate, saving the session it
/// gets to `sess` and, with `resume`, offering the one saved there: whether the session was
/// resumed, and the HTTP status (`None`: the server refused the connection).
fn s_client(
    gw: SocketAddr,
    dir: &Path,
    cert: &str,
    version: &str,
    sess: &Path,
    resume: bool,
) -> (bool, Option<u16>) {
    use std::io::Write;
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &gw.to_string(),
        "-servername",
        "localhost",
    ])
    .arg("-CAfile")
    .arg(dir.join("server-ca.pem"))
    .arg("-cert")
    .arg(dir.join(format!("{cert}.crt")))
    .arg("-key")
    .arg(dir.join(format!("{cert}.key")))
    .args([version, "-ign_eof", "-sess_out"])
    .arg(sess);
    // No session saved (the server issued no TLS 1.3 ticket): nothing to offer.
    if resume && sess.exists() {
        cmd.arg("-sess_in").arg(sess);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reused = stdout.lines().any(|l| l.starts_with("Reused,"));
    let status = stdout
        .lines()
        .find_map(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse().ok());
    eprintln!(
        "s_client {cert} {version} resume={resume}: reused={reused} status={status:?} {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("alert") || l.contains("error"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    (reused, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_sessions_do_not_skip_the_certificate_check() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: no openssl binary");
        return;
    }
    let up = crate::upstream::start().await;
    let dir = scratch("mtls-resume");
    let server_ca = ca("Palisade server CA");
    let client_ca = ca("Palisade client CA");
    write_server_pair(&dir, &server_ca);
    std::fs::write(dir.join("server-ca.pem"), server_ca.pem()).unwrap();
    std::fs::write(dir.join("client-ca.pem"), client_ca.pem()).unwrap();
    let crl_path = dir.join("client.crl");
    std::fs::write(
        &crl_path,
        crl(&client_ca, 1, &[], in_a_day()).pem().unwrap(),
    )
    .unwrap();
    let write = |name: &str, (c, k): (String, String)| {
        std::fs::write(dir.join(format!("{name}.crt")), c).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), k).unwrap();
    };
    write("good", client_cert(&client_ca, CHAT, 2, None));
    // Expires a few seconds after the gateway starts.
    let expiry = SystemTime::now() + Duration::from_secs(6);
    write("brief", client_cert(&client_ca, CHAT, 3, Some(expiry)));
    let (gw, _events) = serve(&dir, &gateway_yaml(up, ", clientCrlFiles: [client.crl]")).await;

    let s_client = |cert: &'static str, version: &'static str, sess: &'static str, resume| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            s_client(gw, &dir, cert, version, &dir.join(sess), resume)
        })
    };
    // A full handshake, then an offer to resume it: never resumed (before, TLS 1.3 and
    // TLS 1.2 sessions were, without the certificate being verified again).
    for (version, sess) in [("-tls1_3", "s13"), ("-tls1_2", "s12")] {
        assert_eq!(
            s_client("good", version, sess, false).await.unwrap(),
            (false, Some(200))
        );
        assert_eq!(
            s_client("good", version, sess, true).await.unwrap(),
            (false, Some(200)),
            "{version}: a session was resumed"
        );
    }
    // A certificate that expired since its session began: resuming gets no 200 (before,
    // the resumed session served it).
    for (version, sess) in [("-tls1_3", "b13"), ("-tls1_2", "b12")] {
        assert_eq!(
            s_client("brief", version, sess, false).await.unwrap(),
            (false, Some(200))
        );
    }
    let wait = expiry.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_secs(2)).await;
    for (version, sess) in [("-tls1_3", "b13"), ("-tls1_2", "b12")] {
        assert_eq!(
            s_client("brief", version, sess, true).await.unwrap(),
            (false, None),
            "{version}: an expired certificate was served"
        );
    }
    // The CA revokes `good`: a session of it offered again is refused too.
    replace_bytes(
        &crl_path,
        crl(&client_ca, 2, &[2], in_a_day())
            .pem()
            .unwrap()
            .as_bytes(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = (true, Some(200));
    while Instant::now() < deadline {
        last = s_client("good", "-tls1_3", "s13", true).await.unwrap();
        if last.1.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(last, (false, None), "a revoked certificate was served");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `curl` at `https://localhost:PORT{path}` (a POST when `body` is given), with the client
/// certificate `cert` (files `cert.crt`/`cert.key` in `dir`) when given: the status (0: the
/// handshake failed) and the body.
async fn curl(
    dir: &Path,
    gw: SocketAddr,
    path: &str,
    body: Option<&str>,
    cert: Option<&str>,
) -> (u16, String) {
    let mut args = vec![
        "-sS".to_string(),
        "-o".into(),
        "-".into(),
        "-w".into(),
        "\n%{http_code}".into(),
        "--cacert".into(),
        dir.join("server-ca.pem").display().to_string(),
        "--resolve".into(),
        format!("localhost:{}:127.0.0.1", gw.port()),
    ];
    if let Some(c) = cert {
        args.push("--cert".into());
        args.push(dir.join(format!("{c}.crt")).display().to_string());
        args.push("--key".into());
        args.push(dir.join(format!("{c}.key")).display().to_string());
    }
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "content-type: application/json".into(),
            "-d".into(),
            b.into(),
        ]);
    }
    args.push(format!("https://localhost:{}{path}", gw.port()));
    let out = tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output())
        .await
        .unwrap()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    if !out.status.success() {
        eprintln!("curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_leave_other_routes_open() {
    let up = crate::upstream::start().await;
    let dir = scratch("mtls-optional");
    let server_ca = ca("Palisade server CA");
    let client_ca = ca("Palisade client CA");
    let other_ca = ca("Some other CA");
    write_server_pair(&dir, &server_ca);
    std::fs::write(dir.join("server-ca.pem"), server_ca.pem()).unwrap();
    std::fs::write(dir.join("client-ca.pem"), client_ca.pem()).unwrap();
    std::fs::write(
        dir.join("client.crl"),
        crl(&client_ca, 1, &[9], in_a_day()).pem().unwrap(),
    )
    .unwrap();
    let write = |name: &str, (c, k): (String, String)| {
        std::fs::write(dir.join(format!("{name}.crt")), c).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), k).unwrap();
    };
    write("mapped", client_cert(&client_ca, CHAT, 2, None));
    write(
        "unmapped",
        client_cert(
            &client_ca,
            "spiffe://cluster.local/ns/apps/sa/other",
            3,
            None,
        ),
    );
    write("foreign", client_cert(&other_ca, CHAT, 4, None));
    write("revoked", client_cert(&client_ca, CHAT, 9, None));
    // `/v1/models` needs a mapped certificate; the rest of `/v1` is open.
    let yaml = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw, namespace: ml}}\nspec:\n  hosts: [localhost]\n  tls:\n    certFile: tls.crt\n    keyFile: tls.key\n    clientCaFile: client-ca.pem\n    clientCrlFiles: [client.crl]\n    clientAuth: optional\n  routes:\n    - name: locked\n      pathPrefix: /v1/models\n      backend: http://{up}\n      auth:\n        mtls:\n          identities: {{\"{CHAT}\": chat-bot}}\n    - name: open\n      pathPrefix: /v1\n      backend: http://{up}\n"
    );
    let (gw, _events) = serve(&dir, &yaml).await;
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;

    // Without a certificate: the open route serves (before, the handshake was refused),
    // the certificate route answers 401 client_certificate_required.
    let (s, body) = curl(&dir, gw, "/v1/chat/completions", Some(chat), None).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = curl(&dir, gw, "/v1/models", None, None).await;
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("client_certificate_required"), "{body}");
    // A mapped certificate: both routes serve.
    let (s, body) = curl(&dir, gw, "/v1/models", None, Some("mapped")).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = curl(&dir, gw, "/v1/chat/completions", Some(chat), Some("mapped")).await;
    assert_eq!(s, 200, "{body}");
    // A verified certificate naming no mapped identity: 401 on the certificate route.
    let (s, body) = curl(&dir, gw, "/v1/models", None, Some("unmapped")).await;
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("client_certificate_not_allowed"), "{body}");
    // A certificate presented that fails verification (another CA, revoked) fails the
    // handshake, on the open route too.
    for cert in ["foreign", "revoked"] {
        for (path, body) in [("/v1/chat/completions", Some(chat)), ("/v1/models", None)] {
            let (s, out) = curl(&dir, gw, path, body, Some(cert)).await;
            assert_eq!(s, 0, "{cert} {path}: {out}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
