//! Federation over TLS, end to end: a real etcd (Debian `etcd-server`) serving clients on
//! `https://` with client-certificate authentication, certificates from a test CA made here.
//!
//! - `palisade federation push | status | rollback` with `--etcd-cacert/--etcd-cert/--etcd-key`
//!   work; without a client certificate, with a CA that did not sign etcd's certificate, or
//!   in plain text, they fail with a clear error and write nothing.
//! - A `palisade up` member joined with the same flags enforces the pushed revision.
//! - `--keep-revisions` prunes old revisions in the push that makes them fall out, and a
//!   rollback to a pruned one is refused with a clear message.
//!
//! Skipped, saying why, when `etcd` is not installed.

#[path = "federation/harness.rs"]
#[allow(dead_code)] // shared with federation.rs
mod harness;

use harness::{federation_with, free_ports, wait_until, Etcd, Member};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const POLICY: &str = r#"apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: db-from-api-only}
spec:
  tier: security
  subject:
    podSelector: {matchLabels: {app: db}}
  ingress:
  - action: Deny
    from: [{podSelector: {matchLabels: {app: web}}}]
"#;

const WORKLOADS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-0, namespace: shop, labels: {app: db}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.9.0.5}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, labels: {app: web}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.9.0.6}\n";

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// Writes `NAME.pem` and `NAME.key`, a leaf for `names` with `usage`, signed by `issuer`.
fn leaf(
    dir: &Path,
    name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// One etcd member serving clients over TLS and asking them for a certificate.
struct TlsEtcd {
    child: Child,
    port: u16,
}

impl TlsEtcd {
    fn start(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> TlsEtcd {
        let ports = free_ports(2);
        let client = format!("https://127.0.0.1:{}", ports[0]);
        let peer = format!("http://127.0.0.1:{}", ports[1]);
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args([
                "--name=tls0".to_string(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=tls0={peer}"),
                "--initial-cluster-state=new".into(),
                format!("--cert-file={}", cert.display()),
                format!("--key-file={}", key.display()),
                format!("--trusted-ca-file={}", ca.display()),
                "--client-cert-auth".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        TlsEtcd {
            child,
            port: ports[0],
        }
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_args(ca: &Path, cert: Option<(&Path, &Path)>) -> Vec<String> {
    let mut a = vec!["--etcd-cacert".to_string(), ca.display().to_string()];
    if let Some((c, k)) = cert {
        a.extend([
            "--etcd-cert".to_string(),
            c.display().to_string(),
            "--etcd-key".to_string(),
            k.display().to_string(),
        ]);
    }
    a
}

/// A failed command: exit status not 0, an `error` line saying `hint`, and no panic.
fn assert_clear_failure(what: &str, hint: &str, (ok, out, err): (bool, String, String)) {
    assert!(!ok, "{what} should fail: {out}{err}");
    assert!(
        err.to_lowercase().contains("error"),
        "{what}: no error message: {out}{err}"
    );
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
    assert!(
        err.contains(hint),
        "{what}: the error does not say {hint:?}: {err}"
    );
    eprintln!("{what}: {}", err.trim());
}

#[test]
fn federation_over_mutual_tls_pushes_enforces_and_prunes() {
    if !Etcd::available() {
        eprintln!("skipping: etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("palisade-federation-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let good = ca("Palisade federation test CA");
    let other = ca("Some other CA");
    let ca_pem = tmp.join("ca.pem");
    let other_pem = tmp.join("other-ca.pem");
    std::fs::write(&ca_pem, good.pem()).unwrap();
    std::fs::write(&other_pem, other.pem()).unwrap();
    let (srv_c, srv_k) = leaf(
        &tmp,
        "etcd-server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &good,
    );
    let (cli_c, cli_k) = leaf(
        &tmp,
        "palisade-client",
        &["palisade"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &good,
    );
    let (rogue_c, rogue_k) = leaf(
        &tmp,
        "rogue-client",
        &["palisade"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &other,
    );
    let etcd = TlsEtcd::start(&tmp, &ca_pem, &srv_c, &srv_k);
    let url = format!("https://127.0.0.1:{}", etcd.port);
    let mtls = tls_args(&ca_pem, Some((&cli_c, &cli_k)));
    wait_until("etcd over TLS", Duration::from_secs(20), || {
        federation_with(&url, &["status"], &mtls).0
    });

    // The member joins over mutual TLS, through a TCP proxy (TLS end to end).
    let member_dir = tmp.join("members");
    std::fs::create_dir_all(&member_dir).unwrap();
    let member = Member::start_with(
        &member_dir,
        "east",
        &["env=prod"],
        WORKLOADS,
        vec![format!("127.0.0.1:{}", etcd.port)],
        &mtls,
    );
    let (v, rev) = member.explain("shop/web-0", "shop/db-0", 5432);
    assert_eq!((v.as_str(), rev), ("ALLOWED", None));

    // Refused connections write nothing, and say so.
    let set = tmp.join("set");
    std::fs::create_dir_all(&set).unwrap();
    std::fs::write(set.join("policy.yaml"), POLICY).unwrap();
    let set = set.display().to_string();
    assert_clear_failure(
        "push without a client certificate",
        "give --etcd-cert and --etcd-key",
        federation_with(&url, &["push", &set], &tls_args(&ca_pem, None)),
    );
    assert_clear_failure(
        "push with a client certificate from another CA",
        "refused the client certificate",
        federation_with(
            &url,
            &["push", &set],
            &tls_args(&ca_pem, Some((&rogue_c, &rogue_k))),
        ),
    );
    assert_clear_failure(
        "push trusting a CA that did not sign etcd's certificate",
        "--etcd-cacert must be the CA that signed it",
        federation_with(
            &url,
            &["push", &set],
            &tls_args(&other_pem, Some((&cli_c, &cli_k))),
        ),
    );
    assert_clear_failure(
        "push in plain text to a TLS etcd",
        "write https:// endpoints",
        federation_with(
            &format!("http://127.0.0.1:{}", etcd.port),
            &["push", &set],
            &[],
        ),
    );
    assert_clear_failure(
        "TLS files with http:// endpoints",
        "write https://",
        federation_with(
            &format!("http://127.0.0.1:{}", etcd.port),
            &["push", &set],
            &mtls,
        ),
    );
    let (ok, st, err) = federation_with(&url, &["status", "-o", "json"], &mtls);
    assert!(ok, "{err}");
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert!(
        st["currentRevision"].is_null() || st["currentRevision"] == 0,
        "a refused push wrote something: {st}"
    );

    // Over mutual TLS: three pushes keeping 2 revisions.
    for n in 1..=3u64 {
        let (ok, out, err) = federation_with(&url, &["push", &set, "--keep-revisions", "2"], &mtls);
        assert!(ok, "push {n}: {out}{err}");
        assert!(out.contains(&format!("revision {n} written")), "{out}");
    }
    wait_until(
        "the member to enforce revision 3",
        Duration::from_secs(15),
        || member.explain("shop/web-0", "shop/db-0", 5432) == ("DENIED".to_string(), Some(3)),
    );
    // The web pod's traffic to anything else is unaffected.
    assert_eq!(
        member.explain("shop/db-0", "shop/web-0", 8080).0,
        "ALLOWED".to_string()
    );

    // Revision 1 fell out when 3 was written; 2 is still there.
    let (ok, st, err) = federation_with(&url, &["status", "-o", "json"], &mtls);
    assert!(ok, "{err}");
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["revisions"], serde_json::json!([2, 3]), "{st}");
    let refused = federation_with(&url, &["rollback", "1"], &mtls);
    assert_clear_failure("rollback to a pruned revision", "no revision 1", refused);
    let (ok, out, err) = federation_with(&url, &["rollback", "2", "--keep-revisions", "2"], &mtls);
    assert!(ok, "rollback to 2: {out}{err}");
    assert!(out.contains("revision 4 written"), "{out}");
    let (ok, st, err) = federation_with(&url, &["status", "-o", "json"], &mtls);
    assert!(ok, "{err}");
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["currentRevision"], 4, "{st}");
    assert_eq!(st["revisions"], serde_json::json!([3, 4]), "{st}");
    wait_until(
        "the member to enforce revision 4",
        Duration::from_secs(15),
        || member.explain("shop/web-0", "shop/db-0", 5432).1 == Some(4),
    );
    drop(member);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&tmp);
}
