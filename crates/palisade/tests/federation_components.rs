//! A component of a member cluster joined with `--federation` (here the egress gateway,
//! `palisade egress`) follows the global policy as a watch-only member: a pushed revision
//! changes its decisions without any local change, a rollback restores them, a restart
//! during an etcd outage enforces the saved revision at once, and it writes nothing to
//! etcd (the cluster's controller or `palisade up` publishes the workloads and status).
//!
//! Real etcd cluster, real `curl` through the gateway to a local upstream. Skipped, saying
//! why, when `etcd` or `curl` is not installed.

#[path = "federation/harness.rs"]
#[allow(dead_code)] // shared with federation.rs
mod harness;

use harness::{exe, federation, federation_with, free_ports, wait_until, Etcd};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Revisions that contain it: trainers may not reach loopback addresses.
const DENY_LOOPBACK: &str = r#"apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: trainer-no-loopback}
spec:
  tier: security
  subject:
    podSelector: {matchLabels: {app: trainer}}
  egress:
  - name: no-loopback
    action: Deny
    to: [{ipBlock: {cidr: 127.0.0.0/8}}]
"#;

/// A global policy that changes nothing for the trainer.
const HARMLESS: &str = r#"apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: notebooks-no-loopback}
spec:
  tier: security
  subject:
    podSelector: {matchLabels: {app: notebook}}
  egress:
  - action: Deny
    to: [{ipBlock: {cidr: 127.0.0.0/8}}]
"#;

fn can_run() -> bool {
    if !Etcd::available() {
        eprintln!("skipped: etcd is not installed (apt install etcd-server)");
        return false;
    }
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed");
        return false;
    }
    true
}

/// An upstream that answers every request `200 upstream`.
fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nupstream",
                );
            });
        }
    });
    port
}

/// The HTTP status `curl` gets for `GET http://127.0.0.1:up/` through the gateway as the
/// trainer (0 when nothing answered).
fn status(proxy: u16, up: u16) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
        ])
        .args(["-x", &format!("http://trainer:try-me@127.0.0.1:{proxy}")])
        .arg(format!("http://127.0.0.1:{up}/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

struct Gateway {
    child: Child,
}

impl Gateway {
    fn start(dir: &Path, etcd_url: &str) -> Gateway {
        Gateway::start_with(dir, etcd_url, &[])
    }

    fn start_with(dir: &Path, etcd_url: &str, extra: &[&str]) -> Gateway {
        let log = std::fs::File::create(dir.join("egress.log")).unwrap();
        let child = Command::new(exe())
            .args(["egress", "--config"])
            .arg(dir.join("config.yaml"))
            .args(["--federation", etcd_url, "--federation-set", "test"])
            .args(["--cluster-name", "east", "--cluster-label", "env=prod"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Gateway { child }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_cluster(dir: &Path, proxy: u16) {
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {{name: east}}\nspec:\n  cluster: east\n  manifests: manifests\n  dataDir: data\n  reloadIntervalMs: 200\n  egress:\n    listen: 127.0.0.1:{proxy}\n    proxyUsers:\n    - {{username: trainer, password: try-me, pod: ml/trainer-0}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("manifests/workloads.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml, labels: {team: ml}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: trainer-0, namespace: ml, labels: {app: trainer}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.1.0.7}\n",
    )
    .unwrap();
}

/// The gateway's `deny` http events, from its store.
fn denied_events(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(exe())
        .args([
            "events",
            "--type",
            "http",
            "--verdict",
            "deny",
            "--output",
            "json",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn push(etcd_url: &str, dir: &Path, name: &str, yaml: &str) {
    let file = dir.join(name);
    std::fs::write(&file, yaml).unwrap();
    let (ok, out, err) = federation(etcd_url, &["push", file.to_str().unwrap()]);
    assert!(ok, "push {name}: {out}{err}");
}

#[test]
fn the_egress_gateway_follows_the_federation_as_a_watch_only_member() {
    if !can_run() {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("palisade-fedcomp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut etcd = Etcd::start(&tmp);
    let url = etcd.url();
    wait_until("etcd to answer", Duration::from_secs(20), || {
        federation(&url, &["status"]).0
    });
    let dir = tmp.join("east");
    let proxy = free_ports(1)[0];
    write_cluster(&dir, proxy);
    let up = upstream();
    let mut gw = Gateway::start(&dir, &url);
    let log = || std::fs::read_to_string(dir.join("egress.log")).unwrap_or_default();

    // No revision yet: the local policy (none; posture allow) decides.
    wait_until("the gateway to answer 200", Duration::from_secs(20), || {
        status(proxy, up) == 200
    });

    // Revision 1 denies the trainer's loopback egress: the gateway follows within seconds.
    push(&url, &tmp, "deny.yaml", DENY_LOOPBACK);
    wait_until("403 under revision 1", Duration::from_secs(15), || {
        status(proxy, up) == 403
    });

    // The refusal's event names the global policy and the revision it came from.
    wait_until("the refusal's event", Duration::from_secs(15), || {
        denied_events(&dir).iter().any(|e| {
            e["policy"]["name"] == "trainer-no-loopback" && e["policy"]["federationRevision"] == 1
        })
    });

    // A watch-only member writes nothing: no status and no identities for east.
    let (ok, out, err) = federation(&url, &["status", "--output", "json"]);
    assert!(ok, "{out}{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(st["currentRevision"], 1, "{st}");
    assert_eq!(st["members"].as_array().map(Vec::len), Some(0), "{st}");
    assert!(
        !out.contains("\"east\""),
        "the gateway published nothing: {st}"
    );

    // Revision 2 leaves the trainer alone: allowed again.
    push(&url, &tmp, "harmless.yaml", HARMLESS);
    wait_until("200 under revision 2", Duration::from_secs(15), || {
        status(proxy, up) == 200
    });

    // A rollback to revision 1 (as revision 3) denies again.
    let (ok, out, err) = federation(&url, &["rollback", "1"]);
    assert!(ok, "rollback: {out}{err}");
    wait_until("403 after the rollback", Duration::from_secs(15), || {
        status(proxy, up) == 403
    });

    // etcd goes away entirely and the gateway restarts: it enforces the saved revision at
    // once instead of falling back to the local policy.
    for i in 0..3 {
        etcd.kill(i);
    }
    drop(gw);
    gw = Gateway::start(&dir, &url);
    wait_until(
        "an answer after the restart",
        Duration::from_secs(20),
        || status(proxy, up) != 0,
    );
    assert_eq!(
        status(proxy, up),
        403,
        "the saved revision is enforced while etcd is down: {}",
        log()
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `palisade federation keygen`, `push --signing-key` and `--trust-key` end to end: the
/// gateway given the public key applies the signed revision and refuses an unsigned one
/// (pushed by anyone who can write etcd; on the old code it was applied and the trainer let
/// through), keeping the signed revision in force and logging why; a bad key file is an
/// error naming it, and a member without trusted keys warns at start.
#[test]
fn the_gateway_applies_only_revisions_signed_by_a_trusted_key() {
    if !can_run() {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("palisade-fedsign-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let keys = tmp.join("keys");
    let out = Command::new(exe())
        .args(["federation", "keygen", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (private, public) = (
        keys.join("federation-signing.key"),
        keys.join("federation-signing.pub"),
    );
    let etcd = Etcd::start(&tmp);
    let url = etcd.url();
    wait_until("etcd to answer", Duration::from_secs(20), || {
        federation(&url, &["status"]).0
    });
    let dir = tmp.join("east");
    let proxy = free_ports(1)[0];
    write_cluster(&dir, proxy);
    let up = upstream();
    let log = || std::fs::read_to_string(dir.join("egress.log")).unwrap_or_default();

    // A trusted key file that is not one: the gateway does not start, and says which file.
    let bad = tmp.join("bad.pub");
    std::fs::write(&bad, "ssh-ed25519 AAAA\n").unwrap();
    let mut gw = Gateway::start_with(&dir, &url, &["--trust-key", bad.to_str().unwrap()]);
    let st = gw.child.wait().unwrap();
    assert!(!st.success());
    assert!(
        log().contains(&format!("--trust-key {}", bad.display())),
        "{}",
        log()
    );

    let signed = |name: &str, yaml: &str| {
        let file = tmp.join(name);
        std::fs::write(&file, yaml).unwrap();
        let (ok, out, err) = federation_with(
            &url,
            &["push", file.to_str().unwrap()],
            &["--signing-key".into(), private.display().to_string()],
        );
        assert!(ok, "signed push {name}: {out}{err}");
    };
    let _gw = Gateway::start_with(&dir, &url, &["--trust-key", public.to_str().unwrap()]);
    wait_until("the gateway to answer 200", Duration::from_secs(20), || {
        status(proxy, up) == 200
    });
    signed("deny.yaml", DENY_LOOPBACK);
    wait_until(
        "403 under signed revision 1",
        Duration::from_secs(15),
        || status(proxy, up) == 403,
    );
    // Anyone who can write etcd pushes an unsigned revision that would let the trainer out.
    push(&url, &tmp, "harmless.yaml", HARMLESS);
    wait_until(
        "the unsigned revision refused",
        Duration::from_secs(15),
        || log().contains("revision 2 refused, keeping revision 1: revision 2 is not signed"),
    );
    assert_eq!(status(proxy, up), 403, "{}", log());
    // The same policies, signed, are applied.
    signed("harmless-signed.yaml", HARMLESS);
    wait_until(
        "200 under signed revision 3",
        Duration::from_secs(15),
        || status(proxy, up) == 200,
    );
    drop(_gw);

    // Without a trusted key the gateway says so.
    let _gw = Gateway::start(&dir, &url);
    wait_until("the no-key warning", Duration::from_secs(15), || {
        log().contains("no trusted signing key (--trust-key)")
    });
    drop(_gw);
    drop(gw);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Keys under the federation set `test` holding this cluster's identities or status.
fn published_keys(etcd: &Etcd, cluster: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Ok(mut c) = etcd_client::Client::connect(etcd.endpoints(), None).await else {
            return vec!["(etcd unreachable)".into()];
        };
        let layout = palisade_federation::Layout::new("test");
        let mut keys = Vec::new();
        for k in [layout.identity(cluster), layout.member(cluster)] {
            if let Ok(r) = c.get(k.clone(), None).await {
                if !r.kvs().is_empty() {
                    keys.push(k);
                }
            }
        }
        keys
    })
}

/// The controller's member publishes only while its replica holds the Lease, so replicas
/// never overwrite each other's identities; all of them follow the global policy.
#[test]
fn a_controller_replica_publishes_only_while_it_leads() {
    if !can_run() {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("palisade-fedlead-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let etcd = Etcd::start(&tmp);
    let url = etcd.url();
    wait_until("etcd to answer", Duration::from_secs(20), || {
        federation(&url, &["status"]).0
    });
    push(&url, &tmp, "deny.yaml", DENY_LOOPBACK);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = palisade_federation::member::MemberSettings {
        etcd: palisade_federation::EtcdOptions::parse(&url).unwrap(),
        layout: palisade_federation::Layout::new("test"),
        cluster: palisade_policy::model::ClusterIdentity {
            name: "north".into(),
            labels: Default::default(),
        },
        identity_ttl_secs: 2,
        state_file: None,
        member_networks: Default::default(),
        trusted_keys: Default::default(),
    };
    let (lead_tx, lead_rx) = tokio::sync::watch::channel(false);
    let (_local_tx, local_rx) = tokio::sync::watch::channel(Vec::new());
    let (_enforced_tx, enforced_rx) = tokio::sync::watch::channel(Some((1, 1)));
    let member = rt.block_on(async {
        palisade_federation::member::start_publishing_while(
            settings,
            local_rx,
            enforced_rx,
            lead_rx,
        )
    });

    // Following: the view has revision 1, and nothing is published.
    wait_until(
        "the follower to see revision 1",
        Duration::from_secs(15),
        || {
            member
                .view
                .borrow()
                .as_ref()
                .is_some_and(|v| v.revision == 1)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(published_keys(&etcd, "north"), Vec::<String>::new());

    // Leading: identities and status appear.
    lead_tx.send_replace(true);
    wait_until(
        "identities and status while leading",
        Duration::from_secs(15),
        || published_keys(&etcd, "north").len() == 2,
    );

    // Stepping down: the lease is no longer renewed, so the identities expire (the status
    // stays, as a stopped member's does, and shows its heartbeat ageing).
    lead_tx.send_replace(false);
    wait_until(
        "the identities to expire after stepping down",
        Duration::from_secs(15),
        || {
            published_keys(&etcd, "north")
                == vec![palisade_federation::Layout::new("test").member("north")]
        },
    );
    drop(rt);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&tmp);
}
