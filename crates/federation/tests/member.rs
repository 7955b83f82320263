//! A watch-only member against a real etcd (one `etcd` process on free loopback ports in a
//! temporary folder, started by the test; skipped with a message when `etcd` is not
//! installed): what one member cluster's writes can do to what another enforces, bad
//! identity documents, and an etcd whose history went back (rebuilt or restored).

use palisade_federation::identities::IdentityDoc;
use palisade_federation::member::{self, FederationView, MemberSettings};
use palisade_federation::revision::RevisionFile;
use palisade_federation::{EtcdOptions, Layout};
use palisade_policy::model::{ClusterIdentity, RemoteWorkload};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Etcd {
    dir: PathBuf,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Etcd {
    fn available() -> bool {
        let ok = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: etcd is not installed");
        }
        ok
    }

    fn start(name: &str) -> Etcd {
        let dir =
            std::env::temp_dir().join(format!("palisade-fed-member-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (client, peer) = {
            let a = TcpListener::bind("127.0.0.1:0").unwrap();
            let b = TcpListener::bind("127.0.0.1:0").unwrap();
            (
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port(),
            )
        };
        let mut e = Etcd {
            dir,
            client,
            peer,
            child: None,
        };
        e.run();
        e
    }

    fn run(&mut self) {
        let c = format!("http://127.0.0.1:{}", self.client);
        let p = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args([
                "--name=e0".to_string(),
                format!("--data-dir={}", self.dir.join("data").display()),
                format!("--listen-client-urls={c}"),
                format!("--advertise-client-urls={c}"),
                format!("--listen-peer-urls={p}"),
                format!("--initial-advertise-peer-urls={p}"),
                format!("--initial-cluster=e0={p}"),
                "--heartbeat-interval=50".into(),
                "--election-timeout=500".into(),
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops etcd, throws its data away and starts an empty one on the same address: what a
    /// member sees when the store is rebuilt or restored from an older backup (its history,
    /// and so its revision numbers, go back).
    fn rebuild(&mut self) {
        self.stop();
        std::fs::remove_dir_all(self.dir.join("data")).unwrap();
        self.run();
    }

    fn options(&self) -> EtcdOptions {
        let mut o = EtcdOptions::parse(&format!("etcd://127.0.0.1:{}", self.client)).unwrap();
        o.timeout = Duration::from_secs(2);
        o
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn client(opts: &EtcdOptions) -> etcd_client::Client {
    let start = Instant::now();
    loop {
        match opts.connect().await {
            Ok(c) => return c,
            Err(e) if start.elapsed() > Duration::from_secs(20) => panic!("etcd: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn settings(opts: &EtcdOptions, cluster: &str) -> MemberSettings {
    MemberSettings {
        etcd: opts.clone(),
        layout: Layout::new("test"),
        cluster: ClusterIdentity {
            name: cluster.into(),
            labels: Default::default(),
        },
        identity_ttl_secs: 10,
        state_file: None,
        member_networks: Default::default(),
        trusted_keys: Default::default(),
    }
}

fn workload(cluster: &str, name: &str, app: &str, ip: &str) -> RemoteWorkload {
    RemoteWorkload {
        cluster: cluster.into(),
        namespace: "ml".into(),
        name: name.into(),
        labels: [("app".to_string(), app.to_string())].into(),
        ips: vec![ip.into()],
        ..Default::default()
    }
}

fn identity(cluster: &str, workloads: Vec<RemoteWorkload>) -> Vec<u8> {
    serde_json::to_vec(&IdentityDoc {
        cluster: cluster.into(),
        workloads,
    })
    .unwrap()
}

/// Writes `workloads` as `cluster`'s identity document (set `test`).
async fn publish(c: &mut etcd_client::Client, cluster: &str, workloads: Vec<RemoteWorkload>) {
    let key = Layout::new("test").identity(cluster);
    c.put(key, identity(cluster, workloads), None)
        .await
        .unwrap();
}

fn policy(name: &str) -> RevisionFile {
    RevisionFile {
        name: format!("{name}.yaml"),
        yaml: format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: ClusterSecurityPolicy\nmetadata:\n  name: {name}\nspec:\n  tier: security\n  subject:\n    podSelector:\n      matchLabels: {{app: db}}\n  ingress:\n  - action: Deny\n    from:\n    - namespaceSelector: {{}}\n"
        ),
    }
}

async fn wait_for(
    what: &str,
    view: &mut tokio::sync::watch::Receiver<Option<Arc<FederationView>>>,
    f: impl Fn(&FederationView) -> bool,
) -> Arc<FederationView> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = view.borrow_and_update().clone() {
            if f(&v) {
                return v;
            }
        }
        if tokio::time::timeout_at(deadline, view.changed())
            .await
            .is_err()
        {
            let last = view.borrow().clone();
            panic!(
                "timed out waiting for {what}; last view: {:?}",
                last.map(|v| (
                    v.revision,
                    v.policies
                        .iter()
                        .map(|(p, _)| p.metadata.name.clone())
                        .collect::<Vec<_>>(),
                    v.remote_workloads.clone()
                ))
            );
        }
    }
}

fn holders(v: &FederationView, ip: &str) -> Vec<String> {
    v.remote_workloads
        .iter()
        .filter(|w| w.ips.iter().any(|i| i == ip))
        .map(|w| format!("{}/{}/{}", w.cluster, w.namespace, w.name))
        .collect()
}

/// A member cluster may write its own `identities/<cluster>` key. An address two clusters
/// publish is nobody's: it is dropped from both and reported, whichever claimed it first.
/// On the old code the older identity key won, which a member can arrange: `a-evil`
/// publishing east's next pod address before east does (or after east's key expired and was
/// created again) kept it, and every other cluster took 10.1.0.5 for a-evil's trainer (a
/// policy allowing a-evil's pods reached east's pod, a Deny naming east's pods missed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cluster_cannot_take_over_a_members_addresses() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("claims");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    // a-evil claims the address first (east's pod is not scheduled yet), and one of its own.
    publish(
        &mut c,
        "a-evil",
        vec![
            workload("a-evil", "trainer-0", "trainer", "10.1.0.5"),
            workload("a-evil", "web-0", "web", "10.9.0.1"),
        ],
    )
    .await;
    let m = member::start_watch_only(settings(&opts, "west"));
    let mut view = m.view.clone();
    wait_for("a-evil's workloads", &mut view, |v| {
        holders(v, "10.9.0.1") == ["a-evil/ml/web-0"]
    })
    .await;
    // East's pod gets the address and east publishes it: nobody holds it now.
    publish(
        &mut c,
        "east",
        vec![workload("east", "trainer-0", "trainer", "10.1.0.5")],
    )
    .await;
    let v = wait_for("east's claim", &mut view, |v| {
        v.remote_workloads.iter().any(|w| w.cluster == "east")
    })
    .await;
    assert_eq!(holders(&v, "10.1.0.5"), Vec::<String>::new());
    assert_eq!(holders(&v, "10.9.0.1"), ["a-evil/ml/web-0"]);
    let h = m.health.borrow().clone();
    for (who, other) in [("a-evil", "east"), ("east", "a-evil")] {
        assert_refused(
            &h.ignored_keys,
            who,
            &["10.1.0.5", &format!("which {other} also claims")],
        );
    }
    // The same when east claimed it first (the order of claims decides nothing).
    publish(&mut c, "a-evil", vec![]).await;
    wait_for("east's trainer alone", &mut view, |v| {
        holders(v, "10.1.0.5") == ["east/ml/trainer-0"]
    })
    .await;
    publish(
        &mut c,
        "a-evil",
        vec![workload("a-evil", "trainer-0", "trainer", "10.1.0.5")],
    )
    .await;
    let v = wait_for("the contested address dropped", &mut view, |v| {
        holders(v, "10.1.0.5").is_empty()
    })
    .await;
    assert_eq!(v.remote_workloads.len(), 2);
    // When east lets the address go, the remaining claim is taken.
    publish(&mut c, "east", vec![]).await;
    wait_for("the address released by east", &mut view, |v| {
        holders(v, "10.1.0.5") == ["a-evil/ml/trainer-0"]
    })
    .await;
}

/// On the old code an identity document that did not parse removed that cluster's workloads
/// from the view (its pods became unknown addresses everywhere): one bad write wiped the
/// last good identities. Now the last good document stays, and the bad one is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_identity_document_keeps_the_last_good_one() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("badids");
    let opts = etcd.options();
    let layout = Layout::new("test");
    let mut c = client(&opts).await;
    publish(
        &mut c,
        "east",
        vec![workload("east", "trainer-0", "trainer", "10.1.0.5")],
    )
    .await;
    let m = member::start_watch_only(settings(&opts, "west"));
    let mut view = m.view.clone();
    wait_for("east's trainer", &mut view, |v| {
        holders(v, "10.1.0.5") == ["east/ml/trainer-0"]
    })
    .await;
    for bad in [
        b"{not json".to_vec(),
        identity("south", vec![]),
        identity("east", vec![workload("east", "x", "x", "not-an-ip")]),
    ] {
        let before = m.health.borrow().ignored_keys.len();
        c.put(layout.identity("east"), bad, None).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.health.borrow().ignored_keys.len() == before {
            assert!(
                Instant::now() < deadline,
                "the bad document was not reported"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let v = view.borrow().clone().unwrap();
        assert_eq!(holders(&v, "10.1.0.5"), ["east/ml/trainer-0"]);
    }
    // A deletion (east's lease expired) still removes them.
    c.delete(layout.identity("east"), None).await.unwrap();
    wait_for("east's workloads gone", &mut view, |v| {
        v.remote_workloads.is_empty()
    })
    .await;
}

/// An etcd rebuilt or restored from an older backup starts again at a lower revision. On the
/// old code a member resumed its watch after the last revision it had seen, so it waited for
/// the new store's history to pass that number and applied none of the pushes meanwhile;
/// and a push that reused the revision number the member had applied (numbers start again
/// at 1) was taken as "already applied". Now the member sees the history went back (or the
/// cluster changed), re-reads, and compares the document, not only its number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_etcd_is_followed() {
    if !Etcd::available() {
        return;
    }
    let mut etcd = Etcd::start("rebuilt");
    let opts = etcd.options();
    let layout = Layout::new("test");
    let mut c = client(&opts).await;
    // Some history, so the member's etcd revision is well past what a new store reaches.
    for i in 0..20 {
        c.put(format!("/elsewhere/{i}"), "x", None).await.unwrap();
    }
    let m = member::start_watch_only(settings(&opts, "west"));
    let mut view = m.view.clone();
    for name in ["a", "b"] {
        palisade_federation::push::push(&opts, &layout, vec![policy(name)], 100)
            .await
            .unwrap();
    }
    let names = |v: &FederationView| -> Vec<String> {
        v.policies
            .iter()
            .map(|(p, _)| p.metadata.name.clone())
            .collect()
    };
    wait_for("revision 2 (b)", &mut view, |v| {
        v.revision == 2 && names(v) == ["b"]
    })
    .await;
    drop(c);
    etcd.rebuild();
    let mut c = client(&opts).await;
    // The member keeps enforcing what it had while the new store is empty.
    let r = c.get(layout.current(), None).await.unwrap();
    assert!(r.kvs().is_empty());
    for name in ["c", "d"] {
        palisade_federation::push::push(&opts, &layout, vec![policy(name)], 100)
            .await
            .unwrap();
    }
    let v = wait_for("revision 2 of the new store (d)", &mut view, |v| {
        names(v) == ["d"]
    })
    .await;
    assert_eq!(v.revision, 2);
}

/// A member's identity document decides who an address is in every other cluster. On the old
/// code a cluster could publish the cloud metadata service (169.254.169.254, also written
/// `::ffff:169.254.169.254`), loopback or other node-internal addresses as its pods'; a
/// global policy allowing egress to that cluster's pods then reached them. Now those
/// addresses are dropped from the view and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_internal_addresses_are_not_taken_from_identities() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("internal");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    let mut w = workload("east", "store-0", "store", "10.1.0.7");
    w.ips.extend(
        [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "127.0.0.1",
            "0.0.0.0",
            "fe80::1",
        ]
        .map(String::from),
    );
    publish(&mut c, "east", vec![w]).await;
    let m = member::start_watch_only(settings(&opts, "west"));
    let mut view = m.view.clone();
    let v = wait_for("east's store", &mut view, |v| {
        !holders(v, "10.1.0.7").is_empty()
    })
    .await;
    assert_eq!(v.remote_workloads.len(), 1);
    assert_eq!(v.remote_workloads[0].ips, ["10.1.0.7"]);
    let h = m.health.borrow().clone();
    assert!(
        h.ignored_keys.iter().any(|k| k.contains("169.254.169.254")),
        "{:?}",
        h.ignored_keys
    );
}

/// With `member_networks` naming a member's pod CIDRs, an address it publishes outside them
/// (here a public address, which a global allow to its pods would then open) is dropped
/// and reported; one inside is kept. On the old code every such claim was taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_outside_a_members_networks_are_not_taken() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("networks");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    let mut w = workload("east", "store-0", "store", "10.1.0.7");
    w.ips.extend(["8.8.8.8", "10.2.0.9"].map(String::from));
    publish(&mut c, "east", vec![w]).await;
    // A member no network is given for claims nothing once networks are given (on the old
    // code it could claim any address, 10.1.0.8 in east's network included).
    publish(
        &mut c,
        "south",
        vec![workload("south", "web-0", "web", "10.1.0.8")],
    )
    .await;
    let mut s = settings(&opts, "west");
    s.member_networks
        .insert("east".into(), vec!["10.1.0.0/16".parse().unwrap()]);
    let m = member::start_watch_only(s);
    let mut view = m.view.clone();
    let v = wait_for("east's store and south's claim", &mut view, |v| {
        !holders(v, "10.1.0.7").is_empty() && v.remote_workloads.len() == 2
    })
    .await;
    assert_eq!(holders(&v, "10.1.0.7"), ["east/ml/store-0"]);
    assert_eq!(holders(&v, "10.1.0.8"), Vec::<String>::new());
    let east = v.remote_workloads.iter().find(|w| w.cluster == "east");
    assert_eq!(east.unwrap().ips, ["10.1.0.7"]);
    let h = m.health.borrow().clone();
    for ip in ["8.8.8.8", "10.2.0.9"] {
        assert_refused(
            &h.ignored_keys,
            "east",
            &[ip, "outside the networks given for it (--member-network)"],
        );
    }
    assert_refused(
        &h.ignored_keys,
        "south",
        &["10.1.0.8", "no networks are declared for south"],
    );
}

/// Asserts that a member reported a refused claim of `who`'s identities whose message
/// contains every one of `parts`.
fn assert_refused(ignored_keys: &[String], who: &str, parts: &[&str]) {
    let prefix = format!("identities of {who}:");
    assert!(
        ignored_keys
            .iter()
            .any(|k| k.starts_with(&prefix) && parts.iter().all(|p| k.contains(p))),
        "{who} {parts:?}: {ignored_keys:?}"
    );
}

/// The operator declares each member's networks once, in the pushed revision
/// (`push_with_networks`, `palisade federation push --member-network`): every member applies
/// the same limits with the policies they come with, without a flag on each process. An
/// address outside a member's declared networks, and every address of a member not
/// declared, is refused; a later push of policies alone keeps the networks; a revision whose
/// networks do not parse is refused whole. On the old code there was no such declaration:
/// a member without `--member-network` took 8.8.8.8 and south's 10.1.0.8 (in east's network).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_claim_only_in_the_networks_the_revision_declares() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("declared");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    let layout = Layout::new("test");
    let nets: std::collections::BTreeMap<String, Vec<String>> = [
        ("east".to_string(), vec!["10.1.0.0/16".to_string()]),
        ("north".to_string(), vec!["10.4.0.0/16".to_string()]),
    ]
    .into();
    let pushed = palisade_federation::push::push_with_networks(
        &opts,
        &layout,
        vec![policy("one")],
        Some(nets.clone()),
        10,
    )
    .await
    .unwrap();
    assert_eq!(pushed.revision, 1);
    // Policies alone: the networks stay.
    let pushed = palisade_federation::push::push(&opts, &layout, vec![policy("two")], 10)
        .await
        .unwrap();
    assert_eq!(pushed.revision, 2);
    let stored = c.get(layout.revision(2), None).await.unwrap();
    let doc: palisade_federation::revision::RevisionDoc =
        serde_json::from_slice(stored.kvs()[0].value()).unwrap();
    assert_eq!(doc.member_networks, nets);
    let mut w = workload("east", "store-0", "store", "10.1.0.7");
    w.ips.push("8.8.8.8".into());
    publish(&mut c, "east", vec![w]).await;
    publish(
        &mut c,
        "south",
        vec![workload("south", "web-0", "web", "10.1.0.8")],
    )
    .await;
    let m = member::start_watch_only(settings(&opts, "west"));
    let mut view = m.view.clone();
    let v = wait_for("revision 2 and both clusters", &mut view, |v| {
        v.revision == 2 && v.remote_workloads.len() == 2
    })
    .await;
    let east = v.remote_workloads.iter().find(|w| w.cluster == "east");
    assert_eq!(east.unwrap().ips, ["10.1.0.7"]);
    let south = v.remote_workloads.iter().find(|w| w.cluster == "south");
    assert_eq!(south.unwrap().ips, Vec::<String>::new());
    let h = m.health.borrow().clone();
    assert!(
        h.ignored_keys.iter().any(|k| k.contains("8.8.8.8")
            && k.contains("outside the networks declared for it (memberNetworks)")),
        "{:?}",
        h.ignored_keys
    );
    assert!(
        h.ignored_keys
            .iter()
            .any(|k| k.contains("10.1.0.8") && k.contains("no networks are declared for south")),
        "{:?}",
        h.ignored_keys
    );
    // A revision whose networks do not parse is refused whole: revision 2 stays.
    let mut bad = doc.clone();
    bad.revision = 3;
    bad.files = vec![policy("three")];
    bad.member_networks
        .insert("south".into(), vec!["10.3.0.0/99".into()]);
    c.put(layout.revision(3), serde_json::to_vec(&bad).unwrap(), None)
        .await
        .unwrap();
    c.put(layout.current(), "3", None).await.unwrap();
    let h = wait_health("revision 3 refused", &m, |h| {
        h.refused
            .as_deref()
            .is_some_and(|r| r.contains("revision 3 refused") && r.contains("10.3.0.0/99"))
    })
    .await;
    assert_eq!(h.applied_revision, 2);
    let v = m.view.borrow().clone().unwrap();
    assert_eq!(v.revision, 2);
    assert_eq!(v.policies[0].0.metadata.name, "two");
    // Networks removed (an empty declaration): back to taking any pod-holdable address.
    palisade_federation::push::push_with_networks(
        &opts,
        &layout,
        vec![policy("four")],
        Some(Default::default()),
        10,
    )
    .await
    .unwrap();
    wait_for("south's address taken", &mut view, |v| {
        v.revision == 4 && holders(v, "10.1.0.8") == ["south/ml/web-0"]
    })
    .await;
}

/// Refusals and ignored keys are kept in the member's health (served on the admin API and
/// written to its status in etcd on every heartbeat). On the old code a revision with
/// thousands of errors, or a key of 200 kB, was kept whole (up to 100 of them): now each
/// message is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_refusals_are_reported_in_bounded_space() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("bounded");
    let opts = etcd.options();
    let layout = Layout::new("test");
    let mut c = client(&opts).await;
    let bad = "apiVersion: palisade.dev/v1alpha1\nkind: ClusterSecurityPolicy\nmetadata:\n  name: x\nspec:\n  priority: 5000\n";
    let doc = palisade_federation::revision::RevisionDoc {
        revision: 1,
        created_at_us: 0,
        rolled_back_from: None,
        member_networks: Default::default(),
        files: (0..3000)
            .map(|i| RevisionFile {
                name: format!("f{i}.yaml"),
                yaml: bad.into(),
            })
            .collect(),
    };
    c.put(layout.revision(1), serde_json::to_vec(&doc).unwrap(), None)
        .await
        .unwrap();
    c.put(layout.current(), "1", None).await.unwrap();
    let m = member::start_watch_only(settings(&opts, "west"));
    let mut view = m.view.clone();
    wait_for("the first read", &mut view, |_| true).await;
    c.put(
        format!("{}junk/{}", layout.prefix(), "x".repeat(200_000)),
        "x",
        None,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = m.health.borrow().clone();
        if let (Some(r), false) = (&h.refused, h.ignored_keys.is_empty()) {
            assert!(
                r.starts_with("revision 1 refused"),
                "{}",
                r.chars().take(200).collect::<String>()
            );
            assert!(r.len() <= 4096, "refused is {} bytes", r.len());
            assert!(r.contains("more"), "{r}");
            assert!(h.ignored_keys.iter().all(|k| k.len() <= 4096));
            break;
        }
        assert!(Instant::now() < deadline, "nothing reported: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A revision key at the largest number (garbage under the prefix): on the old code the
/// next push wrapped around to revision 0 and wrote `current = 0`, a pointer every member
/// refuses, and every later push did the same. Now the push fails and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_numbers_do_not_wrap_around() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("wrap");
    let opts = etcd.options();
    let layout = Layout::new("test");
    let mut c = client(&opts).await;
    palisade_federation::push::push(&opts, &layout, vec![policy("a")], 100)
        .await
        .unwrap();
    c.put(layout.revision(u64::MAX), "garbage", None)
        .await
        .unwrap();
    let r = palisade_federation::push::push(&opts, &layout, vec![policy("b")], 100).await;
    assert!(r.is_err(), "{r:?}");
    let cur = c.get(layout.current(), None).await.unwrap();
    assert_eq!(cur.kvs()[0].value(), b"1");
}

/// Keys written one by one, the pointer first: a restore that replays keys in key order
/// (`current` sorts before `revisions/…`), or a tool that does not use one transaction. On
/// the old code the member refused the pointer (its revision was not stored yet) and then
/// ignored the revision when it arrived ("a revision written without moving the pointer is
/// not applied"), so it enforced nothing until the next push. Now a revision that arrives
/// for the pointer already seen is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_written_before_its_revision_is_applied_when_the_revision_arrives() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("order");
    let opts = etcd.options();
    let layout = Layout::new("test");
    let mut c = client(&opts).await;
    let m = member::start_watch_only(settings(&opts, "west"));
    let mut view = m.view.clone();
    wait_for("the first read", &mut view, |_| true).await;
    let doc = |n: u64, name: &str| {
        serde_json::to_vec(&palisade_federation::revision::RevisionDoc {
            revision: n,
            created_at_us: 0,
            rolled_back_from: None,
            member_networks: Default::default(),
            files: vec![policy(name)],
        })
        .unwrap()
    };
    c.put(layout.current(), "1", None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.health.borrow().refused.is_none() {
        assert!(
            Instant::now() < deadline,
            "the missing revision was not reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.put(layout.revision(1), doc(1, "a"), None).await.unwrap();
    let v = wait_for("revision 1 once stored", &mut view, |v| v.revision == 1).await;
    assert_eq!(v.policies[0].0.metadata.name, "a");
    assert_eq!(m.health.borrow().refused, None);
    // The pointer's revision rewritten in place (revisions are immutable; this is not a
    // push): followed, as a member starting now would read it, rather than kept silently
    // different from the other members.
    c.put(layout.revision(1), doc(1, "c"), None).await.unwrap();
    let v = wait_for("revision 1 rewritten", &mut view, |v| {
        v.policies
            .first()
            .is_some_and(|(p, _)| p.metadata.name == "c")
    })
    .await;
    assert_eq!(v.revision, 1);
    // A revision that is not the pointer's is still not applied.
    c.put(layout.revision(2), doc(2, "b"), None).await.unwrap();
    c.put("/elsewhere/x", "y", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(view.borrow().as_ref().unwrap().revision, 1);
}

/// A TCP proxy between a member and etcd that the test can cut (close every connection and
/// refuse new ones) or mute (hold what the member sends, while etcd's side still reaches
/// it): a member partitioned from etcd, or one whose requests stop getting through
/// mid-stream.
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    cut: std::sync::atomic::AtomicBool,
    mute: std::sync::atomic::AtomicBool,
    conns: std::sync::Mutex<Vec<std::net::TcpStream>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState::default());
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { continue };
                if st.cut.load(Ordering::SeqCst) {
                    let _ = down.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.push(down.try_clone().unwrap());
                    conns.push(up.try_clone().unwrap());
                }
                // Member → etcd: held while muted.
                let (mut from, mut to, s) = (
                    down.try_clone().unwrap(),
                    up.try_clone().unwrap(),
                    Arc::clone(&st),
                );
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        while s.mute.load(Ordering::SeqCst) && !s.cut.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        if n == 0
                            || s.cut.load(Ordering::SeqCst)
                            || to.write_all(&buf[..n]).is_err()
                        {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                    let _ = from.shutdown(std::net::Shutdown::Both);
                });
                // etcd → member.
                let (mut from, mut to) = (up, down);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                    let _ = from.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy { port, state }
    }

    fn options(&self) -> EtcdOptions {
        let mut o = EtcdOptions::parse(&format!("etcd://127.0.0.1:{}", self.port)).unwrap();
        o.timeout = Duration::from_secs(2);
        o
    }

    /// Closes every connection through the proxy and refuses new ones.
    fn cut(&self) {
        self.state
            .cut
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Holds what the member sends from now on (etcd's side still reaches it).
    fn mute(&self) {
        self.state
            .mute
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets new connections through again.
    fn heal(&self) {
        self.state
            .mute
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.state
            .cut
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits until `f` holds for the member's health.
async fn wait_health(
    what: &str,
    m: &member::Member,
    f: impl Fn(&member::Health) -> bool,
) -> member::Health {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = m.health.borrow().clone();
        if f(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The member resumes its watch from the last etcd revision it processed, and moves that
/// position past a watch response only once the response's events were processed
/// (docs/federation.md). Two ways it can break, both checked without a re-read (which would
/// hide them; `fullReloads` stays 1):
///
/// - a member cut off from etcd while a push happens must apply that push on reconnecting
///   (a member that resumed from etcd's revision at reconnection would skip it);
/// - a member that received the pointer's move but could not fetch the revision it names
///   (its requests stopped reaching etcd) must see the move again after reconnecting and
///   apply it (a member that took the response's revision before processing it, or whatever
///   the outcome, would have moved past the move and keep the old revision until the next
///   push).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_resumes_at_the_last_processed_revision() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("resume");
    let direct = etcd.options();
    let proxy = Proxy::start(etcd.client);
    let layout = Layout::new("test");
    let mut c = client(&direct).await;
    let m = member::start_watch_only(settings(&proxy.options(), "west"));
    let mut view = m.view.clone();
    palisade_federation::push::push(&direct, &layout, vec![policy("a")], 100)
        .await
        .unwrap();
    wait_for("revision 1", &mut view, |v| v.revision == 1).await;
    let names = |v: &FederationView| -> Vec<String> {
        v.policies
            .iter()
            .map(|(p, _)| p.metadata.name.clone())
            .collect()
    };

    // 1. Cut off while revision 2 is pushed.
    proxy.cut();
    wait_health("the member to notice the cut", &m, |h| !h.connected).await;
    palisade_federation::push::push(&direct, &layout, vec![policy("b")], 100)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(view.borrow().as_ref().unwrap().revision, 1, "the cut held");
    proxy.heal();
    let v = wait_for("revision 2 after reconnecting", &mut view, |v| {
        v.revision == 2
    })
    .await;
    assert_eq!(names(&v), ["b"]);
    assert_eq!(m.health.borrow().full_reloads, 1, "resumed, not re-read");

    // 2. The pointer's move arrives, the fetch of its revision does not get through.
    let doc = serde_json::to_vec(&palisade_federation::revision::RevisionDoc {
        revision: 3,
        created_at_us: 0,
        rolled_back_from: None,
        member_networks: Default::default(),
        files: vec![policy("c")],
    })
    .unwrap();
    let put = c.put(layout.revision(3), doc, None).await.unwrap();
    let doc_at = put.header().unwrap().revision();
    wait_health("the revision document processed", &m, |h| {
        h.etcd_revision >= doc_at && h.connected
    })
    .await;
    proxy.mute();
    let put = c.put(layout.current(), "3", None).await.unwrap();
    let pointer_at = put.header().unwrap().revision();
    let h = wait_health("the fetch to fail", &m, |h| !h.connected).await;
    assert_eq!(h.seen_revision, Some(3), "the move was received: {h:?}");
    assert!(
        h.etcd_revision < pointer_at,
        "the position moved past the unprocessed move: {} >= {pointer_at}",
        h.etcd_revision
    );
    assert_eq!(view.borrow().as_ref().unwrap().revision, 2);
    proxy.cut();
    proxy.heal();
    let v = wait_for("revision 3 after reconnecting", &mut view, |v| {
        v.revision == 3
    })
    .await;
    assert_eq!(names(&v), ["c"]);
    let h = m.health.borrow().clone();
    assert_eq!(h.full_reloads, 1, "resumed, not re-read: {h:?}");
    assert!(h.etcd_revision >= pointer_at);
}

/// Refused address claims are surfaced in `federation status`, not only in each member's
/// logs and admin API: the publishing member writes them to its status key and the table
/// lists them under the member that refuses them. On the old code the status had no such
/// field: a contested address was visible only on each member's health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_claims_are_shown_in_the_federation_status() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("claimstatus");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    publish(
        &mut c,
        "east",
        vec![workload("east", "trainer-0", "trainer", "10.1.0.5")],
    )
    .await;
    publish(
        &mut c,
        "a-evil",
        vec![workload("a-evil", "trainer-0", "trainer", "10.1.0.5")],
    )
    .await;
    let mut s = settings(&opts, "west");
    s.identity_ttl_secs = 3;
    let (_local_tx, local) = tokio::sync::watch::channel(Vec::new());
    let (_enforced_tx, enforced) = tokio::sync::watch::channel(None);
    let m = member::start(s, local, enforced);
    wait_health("the refused claims", &m, |h| h.refused_claims.len() == 2).await;
    let layout = Layout::new("test");
    let deadline = Instant::now() + Duration::from_secs(15);
    let st = loop {
        let st = palisade_federation::status::read(&opts, &layout, "test")
            .await
            .unwrap();
        if st
            .members
            .iter()
            .any(|m| m.status.cluster == "west" && m.status.refused_claims.len() == 2)
        {
            break st;
        }
        assert!(Instant::now() < deadline, "no refused claims in {st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let table = palisade_federation::status::render_table(&st);
    for who in ["a-evil", "east"] {
        assert!(
            table.lines().any(|l| l.starts_with("refused by west: ")
                && l.contains(&format!("identities of {who}:"))
                && l.contains("10.1.0.5")),
            "{table}"
        );
    }
}

/// Revision numbers only grow: push and rollback write a new, highest revision and move the
/// pointer there. On the old code a pointer written back to an older revision (by hand, or
/// by a writer holding only `current`) was applied: a replay of revoked policies. Now it is
/// refused while a newer revision is stored, by a member that applied the newer one and by a
/// member starting now alike (no divergence), and a proper push moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_moved_back_to_an_older_revision_is_refused() {
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("replay");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    let layout = Layout::new("test");
    for name in ["old", "new"] {
        palisade_federation::push::push(&opts, &layout, vec![policy(name)], 10)
            .await
            .unwrap();
    }
    let m = member::start_watch_only(settings(&opts, "west"));
    let mut view = m.view.clone();
    wait_for("revision 2", &mut view, |v| v.revision == 2).await;
    c.put(layout.current(), "1", None).await.unwrap();
    let h = wait_health("the replay refused", &m, |h| {
        h.seen_revision == Some(1)
            && h.refused
                .as_deref()
                .is_some_and(|r| r.contains("revision 2 is stored: the pointer went back"))
    })
    .await;
    assert_eq!(h.applied_revision, 2);
    let v = m.view.borrow().clone().unwrap();
    assert_eq!(
        (v.revision, v.policies[0].0.metadata.name.as_str()),
        (2, "new")
    );
    // A member starting now refuses it too: it applies nothing rather than revision 1.
    let fresh = member::start_watch_only(settings(&opts, "south"));
    let h = wait_health("the fresh member's refusal", &fresh, |h| {
        h.refused
            .as_deref()
            .is_some_and(|r| r.contains("went back"))
    })
    .await;
    assert_eq!(h.applied_revision, 0);
    // A push moves on (and a rollback is a push).
    let pushed = palisade_federation::push::rollback(&opts, &layout, 1, 10)
        .await
        .unwrap();
    assert_eq!(pushed.revision, 3);
    let v = wait_for("revision 3", &mut view, |v| v.revision == 3).await;
    assert_eq!(v.policies[0].0.metadata.name, "old");
}

/// Signed revisions (docs/federation.md, "Signed revisions"). On the old code a member
/// applied whatever revision the pointer named: anyone with write access to the prefix (a
/// member cluster's credentials) set every cluster's global policy. A member given a trusted
/// key now applies the signed revision and refuses, keeping it in force and saying why in
/// its health and in `federation status`: an unsigned revision, one signed by another key,
/// one altered after signing, a valid signed revision copied under another number, and an
/// older signed revision replayed after the newer ones were deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_revisions_signed_by_a_trusted_key_are_applied() {
    use palisade_federation::push::{push, push_signed};
    use palisade_federation::revision::RevisionDoc;
    use palisade_federation::signing::{self, SigningKey, TrustedKeys};
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("signed");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    let layout = Layout::new("test");
    let keys = etcd.dir.join("keys");
    let (private, public, _) = signing::keygen(&keys).unwrap();
    let (other_private, _, _) = signing::keygen(&keys.join("other")).unwrap();
    let key = SigningKey::load(&private).unwrap();
    let other = SigningKey::load(&other_private).unwrap();

    let r1 = push_signed(&opts, &layout, vec![policy("signed")], None, 10, Some(&key))
        .await
        .unwrap();
    assert_eq!(r1.revision, 1);
    let mut s = settings(&opts, "west");
    s.trusted_keys = TrustedKeys::load(&[public]).unwrap();
    let (_local_tx, local) = tokio::sync::watch::channel(Vec::new());
    let (_enforced_tx, enforced) = tokio::sync::watch::channel(None);
    let m = member::start(s, local, enforced);
    let mut view = m.view.clone();
    wait_for("signed revision 1", &mut view, |v| v.revision == 1).await;

    let doc = |n: u64, name: &str| {
        serde_json::to_vec(&RevisionDoc {
            revision: n,
            created_at_us: 1,
            rolled_back_from: None,
            files: vec![policy(name)],
            member_networks: Default::default(),
        })
        .unwrap()
    };
    let stored_r1 = c.get(layout.revision(1), None).await.unwrap().kvs()[0]
        .value()
        .to_vec();
    let cases: Vec<(u64, Vec<u8>, &str)> = vec![
        (2, doc(2, "unsigned"), "revision 2 is not signed"),
        (
            3,
            other.seal("test", 3, 2, &doc(3, "other-key")),
            "which this member does not trust",
        ),
        (
            4,
            replaced(
                key.seal("test", 4, 3, &doc(4, "signed")),
                b"name: signed",
                b"name: evil-1",
            ),
            "altered after signing",
        ),
        (
            5,
            stored_r1.clone(),
            "signed as revision 1 (a signature copied onto another revision number)",
        ),
    ];
    for (n, bytes, why) in cases {
        put_revision(&mut c, &layout, n, bytes).await;
        let h = wait_health(why, &m, |h| {
            h.seen_revision == Some(n)
                && h.refused.as_deref().is_some_and(|r| {
                    r.contains(&format!("revision {n} refused, keeping revision 1"))
                        && r.contains(why)
                })
        })
        .await;
        assert_eq!(h.applied_revision, 1, "{why}");
        let v = m.view.borrow().clone().unwrap();
        assert_eq!(
            (
                v.revision,
                v.policies.len(),
                v.policies[0].0.metadata.name.as_str()
            ),
            (1, 1, "signed"),
            "{why}"
        );
    }
    // The refusal is in the member's status, which `federation status` shows.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = palisade_federation::status::read(&opts, &layout, "test")
            .await
            .unwrap();
        let west = st.members.iter().find(|m| m.status.cluster == "west");
        if let Some(w) = west.filter(|w| {
            w.status
                .error
                .as_deref()
                .is_some_and(|e| e.contains("signed as revision 1"))
        }) {
            assert_eq!(w.status.enforced_revision, None); // nothing reported it enforced
            assert!(w.drift);
            assert!(palisade_federation::status::render_table(&st).contains("signed as revision 1"));
            break;
        }
        assert!(Instant::now() < deadline, "no refusal in {st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An unsigned push through the API is refused the same way; a signed one is applied.
    push(&opts, &layout, vec![policy("unsigned-push")], 10)
        .await
        .unwrap();
    wait_health("the unsigned push refused", &m, |h| {
        h.seen_revision == Some(6)
            && h.refused
                .as_deref()
                .is_some_and(|r| r.contains("not signed"))
    })
    .await;
    let r7 = push_signed(&opts, &layout, vec![policy("next")], None, 10, Some(&key))
        .await
        .unwrap();
    assert_eq!(r7.revision, 7);
    let v = wait_for("signed revision 7", &mut view, |v| v.revision == 7).await;
    assert_eq!(v.policies[0].0.metadata.name, "next");
    assert_eq!(m.health.borrow().refused, None);
    // Revision 1, validly signed, replayed after every newer revision was deleted.
    c.delete(
        layout.revision(2),
        Some(etcd_client::DeleteOptions::new().with_range(layout.revision(8))),
    )
    .await
    .unwrap();
    c.put(layout.current(), "1", None).await.unwrap();
    let h = wait_health("the replay refused", &m, |h| {
        h.seen_revision == Some(1)
            && h.refused
                .as_deref()
                .is_some_and(|r| r.contains("older than the applied revision"))
    })
    .await;
    assert_eq!(h.applied_revision, 7);
}

/// Identity keys were not bounded: on the old code a writer under `identities/` that kept
/// creating cluster names had every one merged by every member. Now a member holds at most
/// `MAX_REMOTE_CLUSTERS` other clusters, reports the rest (at start and as they arrive) and
/// keeps following the ones it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_holds_a_bounded_number_of_other_clusters() {
    use palisade_federation::member::MAX_REMOTE_CLUSTERS;
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("churn");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    let layout = Layout::new("test");
    let names: Vec<String> = (0..=MAX_REMOTE_CLUSTERS)
        .map(|i| format!("c{i:04}"))
        .collect();
    for chunk in names.chunks(100) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|n| {
                // One address each: no contested claims in the report.
                let i: usize = n[1..].parse().unwrap();
                let ip = format!("10.9.{}.{}", i / 200, i % 200 + 1);
                let w = workload(n, "p", "app", &ip);
                etcd_client::TxnOp::put(layout.identity(n), identity(n, vec![w]), None)
            })
            .collect();
        c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    }
    let m = member::start_watch_only(settings(&opts, "west"));
    let over = |h: &member::Health, who: &str| {
        h.ignored_keys.iter().any(|k| {
            k.starts_with(&format!("identities of {who}: "))
                && k.contains("other clusters already publish")
        })
    };
    let h = wait_health("the cluster past the bound refused", &m, |h| {
        h.remote_clusters.len() == MAX_REMOTE_CLUSTERS && over(h, &names[MAX_REMOTE_CLUSTERS])
    })
    .await;
    assert!(!h.remote_clusters.contains(&names[MAX_REMOTE_CLUSTERS]));
    // One more name through the watch: refused too; a held cluster still updates.
    publish(
        &mut c,
        "late",
        vec![workload("late", "p", "app", "10.8.0.2")],
    )
    .await;
    publish(
        &mut c,
        "c0000",
        vec![workload("c0000", "q", "app", "10.8.0.3")],
    )
    .await;
    let mut view = m.view.clone();
    wait_for("c0000's update", &mut view, |v| {
        v.remote_workloads
            .iter()
            .any(|w| w.cluster == "c0000" && w.name == "q")
    })
    .await;
    let h = wait_health("the late cluster refused", &m, |h| over(h, "late")).await;
    assert_eq!(h.remote_clusters.len(), MAX_REMOTE_CLUSTERS);
    assert!(!h.remote_clusters.iter().any(|c| c == "late"));
}

/// Writes revision `n` and moves the pointer to it in one transaction, as any writer
/// holding the prefix could.
async fn put_revision(c: &mut etcd_client::Client, layout: &Layout, n: u64, bytes: Vec<u8>) {
    let txn = etcd_client::Txn::new().and_then([
        etcd_client::TxnOp::put(layout.revision(n), bytes, None),
        etcd_client::TxnOp::put(layout.current(), n.to_string(), None),
    ]);
    assert!(c.txn(txn).await.unwrap().succeeded());
}

/// `bytes` with the first `from` replaced by `to` (same length: the envelope stays
/// well-formed, only the signed document changes).
fn replaced(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    bytes[at..at + from.len()].copy_from_slice(to);
    bytes
}

/// The hub must not sign what a writer of the prefix chose. On the old code `rollback
/// --signing-key` re-signed whatever was stored under the revision rolled back to, and a push
/// without `--member-network` copied the networks of whatever revision the pointer named:
/// a writer holding only a member's credentials put an unsigned revision (its own policy,
/// networks giving its cluster everyone's addresses), moved the pointer to it (refused by
/// members), and the operator's next signed rollback or push carried it to every member,
/// validly signed. Now the hub takes policies and networks only from revisions its own key
/// signed, and refuses otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_signs_only_what_it_signed_before() {
    use palisade_federation::push::{push_signed, rollback_signed};
    use palisade_federation::revision::RevisionDoc;
    use palisade_federation::signing::{self, SigningKey, TrustedKeys};
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("oracle");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    let layout = Layout::new("test");
    let (private, public, _) = signing::keygen(&etcd.dir.join("keys")).unwrap();
    let key = SigningKey::load(&private).unwrap();
    let east: std::collections::BTreeMap<String, Vec<String>> =
        [("east".to_string(), vec!["10.1.0.0/16".to_string()])].into();
    let r1 = push_signed(
        &opts,
        &layout,
        vec![policy("signed")],
        Some(east.clone()),
        10,
        Some(&key),
    )
    .await
    .unwrap();
    assert_eq!(r1.revision, 1);
    let mut s = settings(&opts, "west");
    s.trusted_keys = TrustedKeys::load(&[public]).unwrap();
    let m = member::start_watch_only(s);
    let mut view = m.view.clone();
    wait_for("signed revision 1", &mut view, |v| v.revision == 1).await;

    // The attacker's revision 2: its policy, and every address for its cluster.
    let evil = serde_json::to_vec(&RevisionDoc {
        revision: 2,
        created_at_us: 1,
        rolled_back_from: None,
        files: vec![policy("evil")],
        member_networks: [("evil".to_string(), vec!["10.0.0.0/8".to_string()])].into(),
    })
    .unwrap();
    put_revision(&mut c, &layout, 2, evil).await;
    wait_health("the unsigned revision refused", &m, |h| {
        h.seen_revision == Some(2)
            && h.refused
                .as_deref()
                .is_some_and(|r| r.contains("not signed"))
    })
    .await;

    // A signed rollback to it is refused (the old code signed it as revision 3).
    let err = rollback_signed(&opts, &layout, 2, 10, Some(&key))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("revision 2 cannot be rolled back to with this signing key")
            && err.contains("not signed"),
        "{err}"
    );
    // A rollback to the hub's own revision 1 is fine.
    let r3 = rollback_signed(&opts, &layout, 1, 10, Some(&key))
        .await
        .unwrap();
    assert_eq!(r3.revision, 3);
    let v = wait_for("the rollback", &mut view, |v| v.revision == 3).await;
    assert_eq!(v.policies[0].0.metadata.name, "signed");

    // The attacker moves the pointer to its revision again; a signed push of policies alone
    // keeps the networks of the hub's newest own revision, not the attacker's.
    let evil4 = serde_json::to_vec(&RevisionDoc {
        revision: 4,
        created_at_us: 1,
        rolled_back_from: None,
        files: vec![policy("signed")],
        member_networks: [("evil".to_string(), vec!["10.0.0.0/8".to_string()])].into(),
    })
    .unwrap();
    put_revision(&mut c, &layout, 4, evil4).await;
    let r5 = push_signed(&opts, &layout, vec![policy("next")], None, 10, Some(&key))
        .await
        .unwrap();
    assert_eq!(r5.revision, 5);
    let stored = c.get(layout.revision(5), None).await.unwrap().kvs()[0]
        .value()
        .to_vec();
    let doc: RevisionDoc = serde_json::from_slice(&signing::document(&stored)).unwrap();
    assert_eq!(doc.member_networks, east);
    let v = wait_for("revision 5", &mut view, |v| v.revision == 5).await;
    assert_eq!(v.policies[0].0.metadata.name, "next");

    // With none of the hub's own revisions left (all deleted), a push that does not say which
    // networks hold is refused rather than signing the attacker's or silently dropping them.
    c.delete(
        layout.revisions(),
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    let evil6 = serde_json::to_vec(&RevisionDoc {
        revision: 6,
        created_at_us: 1,
        rolled_back_from: None,
        files: vec![policy("signed")],
        member_networks: [("evil".to_string(), vec!["10.0.0.0/8".to_string()])].into(),
    })
    .unwrap();
    put_revision(&mut c, &layout, 6, evil6).await;
    let err = push_signed(&opts, &layout, vec![policy("next")], None, 10, Some(&key))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--member-network"), "{err}");
    let r7 = push_signed(
        &opts,
        &layout,
        vec![policy("next")],
        Some(east.clone()),
        10,
        Some(&key),
    )
    .await
    .unwrap();
    assert_eq!(r7.revision, 7);
    // The pointer deleted: the networks of the hub's newest own revision still hold (the old
    // code took "no pointer" as "no networks" and dropped them).
    c.delete(layout.current(), None).await.unwrap();
    let r8 = push_signed(&opts, &layout, vec![policy("next")], None, 10, Some(&key))
        .await
        .unwrap();
    assert_eq!(r8.revision, 8);
    let stored = c.get(layout.revision(8), None).await.unwrap().kvs()[0]
        .value()
        .to_vec();
    let doc: RevisionDoc = serde_json::from_slice(&signing::document(&stored)).unwrap();
    assert_eq!(doc.member_networks, east);
}

/// The bound on other clusters was first come, first held: on the old code a writer under
/// `identities/` that created `MAX_REMOTE_CLUSTERS` names (sorting before the real ones, or
/// created while a real cluster's key had expired) locked the real clusters out of every
/// member: their pods became unknown addresses (a policy allowing them denied, a Deny naming
/// them missed). Now a cluster the operator names (signed `memberNetworks`, or
/// `--member-network`) is always held, at start, through the watch, and when a new revision
/// names a cluster refused before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_clusters_are_held_past_the_bound() {
    use palisade_federation::member::MAX_REMOTE_CLUSTERS;
    use palisade_federation::push::push_signed;
    use palisade_federation::signing::{self, SigningKey, TrustedKeys};
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("lockout");
    let opts = etcd.options();
    let mut c = client(&opts).await;
    let layout = Layout::new("test");
    let (private, public, _) = signing::keygen(&etcd.dir.join("keys")).unwrap();
    let key = SigningKey::load(&private).unwrap();
    let nets = |names: &[&str]| -> std::collections::BTreeMap<String, Vec<String>> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), vec![format!("10.{}.0.0/16", 100 + i)]))
            .collect()
    };
    push_signed(
        &opts,
        &layout,
        vec![policy("p")],
        Some(nets(&["zz-east"])),
        10,
        Some(&key),
    )
    .await
    .unwrap();
    let names: Vec<String> = (0..MAX_REMOTE_CLUSTERS)
        .map(|i| format!("a{i:04}"))
        .collect();
    for chunk in names.chunks(100) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|n| {
                let w = workload(n, "p", "app", "10.9.0.1");
                etcd_client::TxnOp::put(layout.identity(n), identity(n, vec![w]), None)
            })
            .collect();
        c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    }
    publish(
        &mut c,
        "zz-east",
        vec![workload("zz-east", "api", "api", "10.100.0.5")],
    )
    .await;
    let mut s = settings(&opts, "west");
    s.trusted_keys = TrustedKeys::load(&[public]).unwrap();
    let m = member::start_watch_only(s);
    let mut view = m.view.clone();
    let v = wait_for("zz-east held at start", &mut view, |v| {
        v.revision == 1 && !holders(v, "10.100.0.5").is_empty()
    })
    .await;
    assert_eq!(holders(&v, "10.100.0.5"), ["zz-east/ml/api"]);
    assert_eq!(
        m.health.borrow().remote_clusters.len(),
        MAX_REMOTE_CLUSTERS + 1
    );
    // A cluster not named yet is refused; once a signed revision names it, it is read and held.
    publish(
        &mut c,
        "zz-west",
        vec![workload("zz-west", "api", "api", "10.101.0.5")],
    )
    .await;
    wait_health("zz-west refused", &m, |h| {
        h.ignored_keys
            .iter()
            .any(|k| k.starts_with("identities of zz-west: ") && k.contains("already publish"))
    })
    .await;
    push_signed(
        &opts,
        &layout,
        vec![policy("p")],
        Some(nets(&["zz-east", "zz-west"])),
        10,
        Some(&key),
    )
    .await
    .unwrap();
    let v = wait_for("zz-west held", &mut view, |v| {
        v.revision == 2 && !holders(v, "10.101.0.5").is_empty()
    })
    .await;
    assert_eq!(holders(&v, "10.101.0.5"), ["zz-west/ml/api"]);
    // Undeclared names are still bounded.
    publish(
        &mut c,
        "zz-late",
        vec![workload("zz-late", "p", "app", "10.9.0.2")],
    )
    .await;
    let h = wait_health("zz-late refused", &m, |h| {
        h.ignored_keys
            .iter()
            .any(|k| k.starts_with("identities of zz-late: ") && k.contains("already publish"))
    })
    .await;
    assert!(!h.remote_clusters.iter().any(|c| c == "zz-late"));
}

/// A writer of the prefix stores a key just below `u64::MAX`. On the old code the hub's next
/// signed push was numbered `u64::MAX`, members applied it, and from then on the hub could
/// push nothing (no larger number) while members refused every lower one: the global policy
/// was frozen for good. Now a signed push refuses to jump more than `MAX_REVISION_JUMP` past
/// the newest revision its key signed, naming the key to delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_does_not_jump_to_the_largest_number() {
    use palisade_federation::push::push_signed;
    use palisade_federation::signing::{self, SigningKey};
    if !Etcd::available() {
        return;
    }
    let etcd = Etcd::start("jump");
    let opts = etcd.options();
    let layout = Layout::new("test");
    let mut c = client(&opts).await;
    let (private, _, _) = signing::keygen(&etcd.dir.join("keys")).unwrap();
    let key = SigningKey::load(&private).unwrap();
    let r1 = push_signed(&opts, &layout, vec![policy("a")], None, 100, Some(&key))
        .await
        .unwrap();
    assert_eq!(r1.revision, 1);
    c.put(layout.revision(u64::MAX - 1), "garbage", None)
        .await
        .unwrap();
    let err = push_signed(&opts, &layout, vec![policy("b")], None, 100, Some(&key))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("newest revision this key signed (1)")
            && err.contains(&layout.revision(u64::MAX - 1)),
        "{err}"
    );
    let cur = c.get(layout.current(), None).await.unwrap();
    assert_eq!(cur.kvs()[0].value(), b"1");
    c.delete(layout.revision(u64::MAX - 1), None).await.unwrap();
    let r2 = push_signed(&opts, &layout, vec![policy("b")], None, 100, Some(&key))
        .await
        .unwrap();
    assert_eq!(r2.revision, 2);
}
