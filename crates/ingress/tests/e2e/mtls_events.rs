//! Security events for refused client certificates: a handshake refused for a revoked
//! certificate, one of unknown revocation status, one from another CA, an expired one or
//! none (`clientAuth: required`) writes an `http` event with verdict `deny`, the reason, the
//! client's address and the certificate (subject, SANs, serial), at most
//! `MAX_PER_SECOND` per gateway with the rest counted; and an open connection whose
//! certificate is revoked finishes the requests in flight (HTTP/2 GOAWAY, HTTP/1.1
//! `Connection: close`) before it is closed, with an event. Checked with `curl --cert` and
//! a rustls client.

use crate::drain;
use crate::mtls::{client_cert, crl, gateway_yaml, get_models_once, in_a_day, replace_bytes, CHAT};
use crate::tls_files::{ca, scratch, serve, write_server_pair};
use palisade_events::{Event, EventBody, EventReceiver, HttpInfo, Verdict};
use palisade_ingress::proxy::refused::MAX_PER_SECOND;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// What `curl` came back with.
#[derive(Debug)]
struct Curl {
    /// HTTP status (0: no answer).
    status: u16,
    /// The local port of its connection.
    port: u16,
    /// Status line, headers and body (`-i`).
    output: String,
    stderr: String,
}

/// `curl -i https://localhost:PORT{path}` with the client certificate `cert` (files
/// `cert.crt`/`cert.key` in `dir`) when given, and `extra` arguments.
async fn curl(dir: &Path, gw: SocketAddr, path: &str, cert: Option<&str>, extra: &[&str]) -> Curl {
    let mut args: Vec<String> = [
        "-sS",
        "-i",
        "--max-time",
        "30",
        "-w",
        "\n%{http_code} %{local_port}",
        "--cacert",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(dir.join("server-ca.pem").display().to_string());
    args.push("--resolve".into());
    args.push(format!("localhost:{}:127.0.0.1", gw.port()));
    if let Some(c) = cert {
        args.push("--cert".into());
        args.push(dir.join(format!("{c}.crt")).display().to_string());
        args.push("--key".into());
        args.push(dir.join(format!("{c}.key")).display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("https://localhost:{}{path}", gw.port()));
    let out = tokio::task::spawn_blocking(move || Command::new("curl").args(&args).output())
        .await
        .unwrap()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (output, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut nums = last.split_whitespace().map(|n| n.parse().unwrap_or(0));
    Curl {
        status: nums.next().unwrap_or(0),
        port: nums.next().unwrap_or(0),
        output: output.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The client-certificate refusal events among `events`.
fn refusals(events: &[Event]) -> Vec<(&Event, &HttpInfo)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Http(h)
                if h.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("client_certificate_")) =>
            {
                Some((e, h))
            }
            _ => None,
        })
        .collect()
}

/// Collects events until `enough` holds for those gathered (up to 15 s).
fn gather(rx: &EventReceiver, enough: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut all = Vec::new();
    while !enough(&all) && Instant::now() < deadline {
        all.extend(drain(rx));
    }
    all
}

/// Writes `cert`'s files as `name.crt` / `name.key` in `dir`.
fn write_cert(dir: &Path, name: &str, (c, k): (String, String)) {
    std::fs::write(dir.join(format!("{name}.crt")), c).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), k).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_certificates_are_recorded_as_events() {
    let up = crate::upstream::start().await;
    let dir = scratch("mtls-events");
    let server_ca = ca("Palisade server CA");
    let client_ca = ca("Palisade client CA");
    let uncovered_ca = ca("Palisade CA without a CRL");
    let foreign_ca = ca("Some other CA");
    let roots = server_ca.pem();
    write_server_pair(&dir, &server_ca);
    std::fs::write(dir.join("server-ca.pem"), &roots).unwrap();
    std::fs::write(
        dir.join("client-ca.pem"),
        format!("{}{}", client_ca.pem(), uncovered_ca.pem()),
    )
    .unwrap();
    std::fs::write(
        dir.join("client.crl"),
        crl(&client_ca, 1, &[2], in_a_day()).pem().unwrap(),
    )
    .unwrap();
    let revoked = client_cert(&client_ca, CHAT, 2, None);
    write_cert(&dir, "revoked", revoked.clone());
    write_cert(&dir, "good", client_cert(&client_ca, CHAT, 3, None));
    write_cert(&dir, "foreign", client_cert(&foreign_ca, CHAT, 4, None));
    write_cert(&dir, "uncovered", client_cert(&uncovered_ca, CHAT, 5, None));
    let yesterday = SystemTime::now() - Duration::from_secs(86_400);
    write_cert(
        &dir,
        "expired",
        client_cert(&client_ca, CHAT, 6, Some(yesterday)),
    );
    let (gw, events) = serve(&dir, &gateway_yaml(up, ", clientCrlFiles: [client.crl]")).await;

    // A good certificate is served and writes no refusal.
    let r = curl(&dir, gw, "/v1/models", Some("good"), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let all = drain(&events);
    assert!(refusals(&all).is_empty(), "{all:?}");

    // Each refused handshake writes one event naming why, the client and the certificate
    // (before, each was a debug log line and nothing else).
    for (cert, serial, issuer, reason) in [
        (
            Some("revoked"),
            "02",
            "Palisade client CA",
            "client_certificate_revoked",
        ),
        (
            Some("uncovered"),
            "05",
            "Palisade CA without a CRL",
            "client_certificate_revocation_unknown",
        ),
        (
            Some("foreign"),
            "04",
            "Some other CA",
            "client_certificate_unknown_ca",
        ),
        (
            Some("expired"),
            "06",
            "Palisade client CA",
            "client_certificate_expired",
        ),
        (None, "", "", "client_certificate_required"),
    ] {
        let r = curl(&dir, gw, "/v1/models", cert, &[]).await;
        assert_eq!(r.status, 0, "{cert:?} was served: {r:?}");
        let all = gather(&events, |a| !refusals(a).is_empty());
        let found = refusals(&all);
        assert_eq!(found.len(), 1, "{cert:?}: {all:?}");
        let (e, h) = found[0];
        assert_eq!(h.reason.as_deref(), Some(reason), "{e:?}");
        assert_eq!(e.verdict, Some(Verdict::Deny));
        assert_eq!(h.host.as_deref(), Some("localhost"));
        assert_eq!(h.suppressed, None);
        let policy = e.policy.as_ref().expect("the gateway is named");
        assert_eq!(
            (
                policy.kind.as_str(),
                policy.namespace.as_deref(),
                policy.name.as_str()
            ),
            ("AIGateway", Some("ml"), "gw")
        );
        let src = e.source.as_ref().unwrap();
        assert_eq!(src.ip, Some("127.0.0.1".parse().unwrap()));
        assert!(src.port.is_some_and(|p| p != gw.port()), "{src:?}");
        if r.port != 0 {
            assert_eq!(src.port, Some(r.port), "the client's port");
        }
        match cert {
            Some(_) => {
                let c = h.client_certificate.as_ref().expect("the certificate");
                assert_eq!(c.serial.as_deref(), Some(serial), "{c:?}");
                assert_eq!(c.subject.as_deref(), Some("CN=client"), "{c:?}");
                assert_eq!(
                    c.issuer.as_deref(),
                    Some(format!("CN={issuer}").as_str()),
                    "{c:?}"
                );
                assert_eq!(c.names, [CHAT], "{c:?}");
                assert_eq!(src.name.as_deref(), Some(CHAT));
                assert_eq!(src.namespace.as_deref(), Some("apps"));
                assert_eq!(src.service_account.as_deref(), Some("chat"));
            }
            None => {
                assert_eq!(h.client_certificate, None);
                assert_eq!(src.name, None);
            }
        }
        // The schema's JSON line carries it.
        let json = e.to_json();
        assert!(json.contains(&format!(r#""reason":"{reason}""#)), "{json}");
    }

    // A flood of refused handshakes: at most MAX_PER_SECOND events a second; the others
    // are counted in the next event written (`suppressed`), so nothing goes unaccounted.
    // (Before, none was written at all.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    const FLOOD: u64 = 60;
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..FLOOD {
        let (roots, revoked) = (roots.clone(), revoked.clone());
        tasks.spawn(async move { get_models_once(gw, &roots, &revoked).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.unwrap().is_err(), "a revoked certificate was served");
    }
    let flood_secs = started.elapsed().as_secs() + 1;
    // No further handshake: the count of a burst that stopped comes within the next reload
    // tick (2 s) as its last refusal's event.
    let all = gather(&events, |a| {
        let f = refusals(a);
        f.len() as u64 + f.iter().filter_map(|(_, h)| h.suppressed).sum::<u64>() >= FLOOD
    });
    let found = refusals(&all);
    let written = found.len() as u64;
    let suppressed: u64 = found.iter().filter_map(|(_, h)| h.suppressed).sum();
    assert!(
        found
            .iter()
            .all(|(_, h)| h.reason.as_deref() == Some("client_certificate_revoked")),
        "{found:?}"
    );
    assert!(
        written <= u64::from(MAX_PER_SECOND) * (flood_secs + 1) + 1 && written < FLOOD,
        "{written} events for {FLOOD} refusals in {flood_secs} s"
    );
    assert_eq!(written + suppressed, FLOOD, "every refusal is counted");
    assert!(suppressed > 0, "{found:?}");
    for (e, h) in &found {
        let c = h.client_certificate.as_ref().unwrap();
        assert_eq!(c.serial.as_deref(), Some("02"), "{e:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend that answers every request `held done` once `release` turns true; counts the
/// requests that arrived.
async fn held_backend(
    release: tokio::sync::watch::Receiver<bool>,
    arrived: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> SocketAddr {
    use bytes::Bytes;
    use http_body_util::Full;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let (release, arrived) = (release.clone(), arrived.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let (mut release, arrived) = (release.clone(), arrived.clone());
                    async move {
                        arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = release.wait_for(|r| *r).await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"held done"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_connections_finish_requests_in_flight_then_close() {
    let (release, released) = tokio::sync::watch::channel(false);
    let arrived = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let up = held_backend(released, arrived.clone()).await;
    let dir = scratch("mtls-graceful");
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
    write_cert(&dir, "chat", client_cert(&client_ca, CHAT, 2, None));
    let (gw, events) = serve(&dir, &gateway_yaml(up, ", clientCrlFiles: [client.crl]")).await;

    // One request in flight on an HTTP/2 connection, one on an HTTP/1.1 connection, both
    // waiting for the backend.
    let h2 = tokio::spawn({
        let dir = dir.clone();
        async move { curl(&dir, gw, "/v1/held", Some("chat"), &["--http2", "-v"]).await }
    });
    let h1 = tokio::spawn({
        let dir = dir.clone();
        async move { curl(&dir, gw, "/v1/held", Some("chat"), &["--http1.1"]).await }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while arrived.load(std::sync::atomic::Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(arrived.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(refusals(&drain(&events)).is_empty());

    // The CA revokes the certificate: both connections are shut down, each writing an
    // event naming its connection (HTTP version, how long it was open).
    replace_bytes(
        &crl_path,
        crl(&client_ca, 2, &[2], in_a_day())
            .pem()
            .unwrap()
            .as_bytes(),
    );
    let all = gather(&events, |a| refusals(a).len() >= 2);
    let found = refusals(&all);
    assert_eq!(found.len(), 2, "{all:?}");
    // The requests in flight are still answered (before, the connections were dropped
    // under them).
    release.send(true).unwrap();
    let (h2, h1) = (h2.await.unwrap(), h1.await.unwrap());
    assert_eq!(h2.status, 200, "{h2:?}");
    assert!(h2.output.ends_with("held done"), "{h2:?}");
    assert!(h2.stderr.contains("GOAWAY"), "no GOAWAY: {h2:?}");
    assert_eq!(h1.status, 200, "{h1:?}");
    assert!(h1.output.ends_with("held done"), "{h1:?}");
    assert!(
        h1.output
            .lines()
            .any(|l| l.eq_ignore_ascii_case("connection: close")),
        "no Connection: close: {h1:?}"
    );
    for (curl, version) in [
        (&h2, palisade_events::HttpVersion::Http2),
        (&h1, palisade_events::HttpVersion::Http11),
    ] {
        let (e, h) = found
            .iter()
            .find(|(_, h)| h.version == Some(version))
            .unwrap_or_else(|| panic!("no event for {version:?}: {found:?}"));
        assert_eq!(h.reason.as_deref(), Some("client_certificate_revoked"));
        assert_eq!(e.verdict, Some(Verdict::Deny));
        let src = e.source.as_ref().unwrap();
        assert_eq!(src.port, Some(curl.port), "{e:?}");
        assert_eq!(src.name.as_deref(), Some(CHAT));
        let c = h.client_certificate.as_ref().unwrap();
        assert_eq!(c.serial.as_deref(), Some("02"));
        assert!(h.duration_ms.is_some(), "{h:?}");
    }
    // A new handshake with it is refused (and recorded).
    let r = curl(&dir, gw, "/v1/held", Some("chat"), &[]).await;
    assert_eq!(r.status, 0, "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
