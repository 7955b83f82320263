//! The Kubernetes source under federation: the overlay (one revision of global policies)
//! is merged into every snapshot, a new revision rebuilds without any change in the
//! cluster, the snapshot is stamped with the revision it contains, and the last overlay
//! stays in force when the federation side stops.

use super::fake_api::{ApiState, FakeApi};
use palisade_k8s::controller::{start, Settings};
use palisade_k8s::resources::{by_kind, RESOURCES};
use palisade_policy::model::{ClusterIdentity, Object};
use palisade_policy::{Endpoint, Engine, Flow, Manifests, Protocol};
use palisade_standalone::supervisor::{Overlay, Published};
use serde_json::Value;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Revision 3's global policy: nothing may connect to a database.
const DENY_DB: &str = "apiVersion: palisade.dev/v1alpha1\nkind: ClusterSecurityPolicy\nmetadata:\n  name: no-db\nspec:\n  tier: security\n  subject:\n    podSelector:\n      matchLabels: {app: db}\n  ingress:\n  - action: Deny\n    from:\n    - namespaceSelector: {}\n";

fn list(plural: &str) -> Value {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/lists/{plural}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn overlay(revision: u64, yaml: &str) -> Arc<Overlay> {
    let mut m = Manifests::new();
    m.add_file(&format!("federation/r{revision}/global.yaml"), yaml);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    let policies = m
        .objects
        .into_iter()
        .filter_map(|o| match o.object {
            Object::ClusterSecurityPolicy(c) => Some((c, o.origin)),
            _ => None,
        })
        .collect();
    Arc::new(Overlay {
        revision,
        policies,
        remote_workloads: Vec::new(),
        cluster: ClusterIdentity {
            name: "east".into(),
            labels: Default::default(),
        },
    })
}

fn web_reaches_db(e: &Engine) -> bool {
    let src = Endpoint::Pod(e.pod_id("shop", "web-7d9c8b6f5-x2k4p").expect("web pod"));
    let dst = Endpoint::Pod(e.pod_id("shop", "db-0").expect("db pod"));
    e.verdict(&Flow {
        src,
        dst,
        port: 5432,
        protocol: Protocol::TCP,
        http: None,
    })
    .allowed()
}

async fn wait_for(
    what: &str,
    published: &watch::Receiver<Option<Arc<Published>>>,
    f: impl Fn(&Published) -> bool,
) -> Arc<Published> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(p) = published.borrow().clone().filter(|p| f(p)) {
            return p;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federation_overlay_is_merged_into_every_snapshot() {
    let mut st = ApiState::default();
    for res in RESOURCES {
        st.lists
            .insert(res.collection_path(), VecDeque::from([list(res.plural)]));
    }
    for kind in ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"] {
        st.absent
            .insert(by_kind(kind).expect("kind").collection_path());
    }
    let api = FakeApi::start(st).await;
    let client = palisade_k8s::cluster::client_from(kube::Config::new(api.url.parse().unwrap()))
        .expect("client");
    // As a member starts: this cluster's identity, no revision yet.
    let (tx, rx) = watch::channel(Some(overlay(0, "")));
    let running = start(
        client,
        Settings {
            debounce: Duration::from_millis(10),
            overlay: Some(rx),
            ..Settings::default()
        },
    );
    let published = running.state.published.clone();

    // Before any revision: the cluster's own NetworkPolicy lets web reach db; no stamp.
    let p = wait_for("the first snapshot", &published, |_| true).await;
    assert!(web_reaches_db(&p.engine), "db-from-web allows it");
    assert_eq!(p.federation_revision, None);

    // Revision 3 arrives: the global security tier denies it, with no change in the cluster.
    tx.send_replace(Some(overlay(3, DENY_DB)));
    let p = wait_for("revision 3", &published, |p| {
        p.federation_revision == Some(3)
    })
    .await;
    assert!(
        !web_reaches_db(&p.engine),
        "revision 3 denies every connection to db"
    );
    let generation = p.generation;
    assert!(
        p.engine.policies().iter().any(|x| x.name == "no-db"),
        "the global policy is compiled in"
    );

    // Revision 4 (a rollback to no global policy): allowed again, stamped 4.
    tx.send_replace(Some(overlay(4, "")));
    let p = wait_for("revision 4", &published, |p| {
        p.federation_revision == Some(4)
    })
    .await;
    assert!(web_reaches_db(&p.engine));
    assert!(p.generation > generation);

    // Revision 5, then the federation side stops: its last revision stays in force.
    tx.send_replace(Some(overlay(5, DENY_DB)));
    let p = wait_for("revision 5", &published, |p| {
        p.federation_revision == Some(5)
    })
    .await;
    drop(tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = published.borrow().clone().expect("snapshot");
    assert_eq!(
        now.generation, p.generation,
        "nothing rebuilt without a change"
    );
    assert_eq!(now.federation_revision, Some(5));
    assert!(!web_reaches_db(&now.engine));
}
