use super::*;
use std::path::PathBuf;

fn pair(name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn entry(dir: &Path) -> TlsEntry {
    TlsEntry {
        gateway: "ml/gw".into(),
        hosts: vec!["gw.test".into()],
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        client_ca: None,
        client_crls: Vec::new(),
        client_cert_optional: false,
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-tls-unit-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_rotated_pair_replaces_the_old_and_a_bad_one_never_does() {
    let dir = scratch("rotate");
    let e = entry(&dir);
    let (c1, k1) = pair("gw.test");
    std::fs::write(&e.cert, &c1).unwrap();
    std::fs::write(&e.key, &k1).unwrap();
    let t = TlsServer::load(std::slice::from_ref(&e)).unwrap();
    let first = t.choose(Some("gw.test")).unwrap().config;
    assert!(!t.reload(std::slice::from_ref(&e)), "nothing changed");

    // Half rotated: the new certificate with the old key.
    let (c2, k2) = pair("gw.test");
    std::fs::write(&e.cert, &c2).unwrap();
    assert!(!t.reload(std::slice::from_ref(&e)));
    assert!(Arc::ptr_eq(
        &first,
        &t.choose(Some("gw.test")).unwrap().config
    ));
    // Garbage, and a missing key: the old pair still.
    std::fs::write(&e.key, "-----BEGIN PRIVATE KEY-----\nnot base64\n").unwrap();
    assert!(!t.reload(std::slice::from_ref(&e)));
    std::fs::remove_file(&e.key).unwrap();
    assert!(!t.reload(std::slice::from_ref(&e)));
    assert!(Arc::ptr_eq(&first, &t.choose(None).unwrap().config));

    // The whole new pair: swapped in.
    std::fs::write(&e.key, &k2).unwrap();
    assert!(t.reload(std::slice::from_ref(&e)));
    let second = t.choose(Some("gw.test")).unwrap();
    assert!(!Arc::ptr_eq(&first, &second.config));
    assert_eq!(second.gateway, "ml/gw");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_mismatched_pair_does_not_load_at_start() {
    let dir = scratch("mismatch");
    let e = entry(&dir);
    let (c1, _) = pair("gw.test");
    let (_, k2) = pair("gw.test");
    std::fs::write(&e.cert, &c1).unwrap();
    std::fs::write(&e.key, &k2).unwrap();
    let err = TlsServer::load(std::slice::from_ref(&e)).err().unwrap();
    assert!(err.contains("tls.crt"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn client_identities_are_uri_then_dns_sans_then_the_common_name() {
    let mut p = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    p.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://cluster.local/ns/apps/sa/chat".try_into().unwrap(),
    ));
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "chat-client");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    assert_eq!(
        client_identities(cert.der()),
        [
            "spiffe://cluster.local/ns/apps/sa/chat",
            "client.test",
            "chat-client"
        ]
    );
    assert!(client_identities(&CertificateDer::from(vec![1u8, 2, 3])).is_empty());
}

/// Before, the TLS configuration was built once at bind: a gateway added by a reload of
/// the resources was served the first gateway's certificate.
#[test]
fn gateways_added_by_a_reload_get_their_own_certificate() {
    let dir = scratch("added");
    let a = entry(&dir);
    let (c1, k1) = pair("gw.test");
    std::fs::write(&a.cert, &c1).unwrap();
    std::fs::write(&a.key, &k1).unwrap();
    let t = TlsServer::load(std::slice::from_ref(&a)).unwrap();
    let b = TlsEntry {
        gateway: "ml/other".into(),
        hosts: vec!["other.test".into()],
        cert: dir.join("other.crt"),
        key: dir.join("other.key"),
        client_ca: None,
        client_crls: Vec::new(),
        client_cert_optional: false,
    };
    // Its files are not there yet: nothing changes.
    assert!(!t.reload(&[a.clone(), b.clone()]));
    assert_eq!(t.choose(Some("other.test")).unwrap().gateway, "ml/gw");
    let (c2, k2) = pair("other.test");
    std::fs::write(&b.cert, &c2).unwrap();
    std::fs::write(&b.key, &k2).unwrap();
    assert!(t.reload(&[a.clone(), b.clone()]));
    assert_eq!(t.choose(Some("other.test")).unwrap().gateway, "ml/other");
    assert_eq!(t.choose(Some("gw.test")).unwrap().gateway, "ml/gw");
    assert_eq!(t.choose(None).unwrap().gateway, "ml/gw");
    // Resources without TLS any more: the listener still terminates TLS, with what it had.
    assert!(!t.reload(&[]));
    assert_eq!(t.choose(Some("other.test")).unwrap().gateway, "ml/other");
    let _ = std::fs::remove_dir_all(&dir);
}

/// CRL files in PEM (several lists) or DER load; an empty, non-CRL or truncated one is an
/// error naming the file, at start and at a reload (which keeps the last good set); client
/// certificate gateways resume no sessions.
#[test]
fn revocation_lists_load_from_pem_or_der_and_bad_ones_are_refused() {
    let dir = scratch("crl");
    let mut e = entry(&dir);
    let (c, k) = pair("gw.test");
    std::fs::write(&e.cert, &c).unwrap();
    std::fs::write(&e.key, &k).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let crl = |n: u64| {
        let now = std::time::SystemTime::now();
        rcgen::CertificateRevocationListParams {
            this_update: now.into(),
            next_update: (now + std::time::Duration::from_secs(3600)).into(),
            crl_number: rcgen::SerialNumber::from(n),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&ca)
        .unwrap()
    };
    e.client_ca = Some(dir.join("ca.pem"));
    e.client_crls = vec![dir.join("a.crl"), dir.join("b.crl")];
    let (a, b) = (crl(1), crl(2));
    std::fs::write(&e.client_crls[0], a.pem().unwrap() + &b.pem().unwrap()).unwrap();
    std::fs::write(&e.client_crls[1], b.der()).unwrap();
    let t = TlsServer::load(std::slice::from_ref(&e)).unwrap();
    let cfg = t.choose(Some("gw.test")).unwrap().config;
    assert_eq!(cfg.send_tls13_tickets, 0);
    assert!(!cfg.session_storage.can_cache());
    for bad in [&b""[..], b"not a CRL", &b.der()[..b.der().len() / 2]] {
        std::fs::write(&e.client_crls[1], bad).unwrap();
        let err = TlsServer::load(std::slice::from_ref(&e)).err().unwrap();
        assert!(err.contains("b.crl"), "{err}");
        assert!(!t.reload(std::slice::from_ref(&e)), "a bad CRL was taken");
        assert!(Arc::ptr_eq(&t.choose(None).unwrap().config, &cfg));
    }
    std::fs::write(&e.client_crls[1], crl(3).der()).unwrap();
    assert!(
        t.reload(std::slice::from_ref(&e)),
        "a new CRL was not taken"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What open connections are checked against: a connection without a certificate is
/// accepted while client certificates are optional, not once they are required; a gateway
/// no longer configured accepts nothing; every change is announced.
#[test]
fn open_connections_are_checked_against_the_client_auth_in_force() {
    let dir = scratch("still");
    let mut e = entry(&dir);
    let (c, k) = pair("gw.test");
    std::fs::write(&e.cert, &c).unwrap();
    std::fs::write(&e.key, &k).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    e.client_ca = Some(dir.join("ca.pem"));
    e.client_cert_optional = true;
    let t = TlsServer::load(std::slice::from_ref(&e)).unwrap();
    let changes = t.subscribe();
    assert!(t.still_accepts("ml/gw", None));
    assert!(!t.still_accepts("ml/other", None));
    e.client_cert_optional = false;
    assert!(t.reload(std::slice::from_ref(&e)));
    assert!(changes.has_changed().unwrap());
    assert!(!t.still_accepts("ml/gw", None));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_crl_past_its_next_update_is_stale() {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
    let crl = |next: std::time::SystemTime| {
        rcgen::CertificateRevocationListParams {
            this_update: (next - std::time::Duration::from_secs(7200)).into(),
            next_update: next.into(),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&ca)
        .unwrap()
        .der()
        .clone()
    };
    let now = std::time::SystemTime::now();
    let hour = std::time::Duration::from_secs(3600);
    assert!(stale(&crl(now - hour)));
    assert!(!stale(&crl(now + hour)));
}
