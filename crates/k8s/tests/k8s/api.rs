//! The controller's I/O against the fake API server: paginated lists, watches resumed from
//! the last resourceVersion, relist on 410, status PATCHes and Events for an invalid
//! object, the Lease taken and renewed, and the last good snapshot kept in force (and
//! leadership given up) while the API is down.

use super::fake_api::{ApiState, FakeApi, Recorded, WatchScript};
use palisade_k8s::controller::{start, LeaderSettings, Settings};
use palisade_k8s::resources::{by_kind, RESOURCES};
use palisade_k8s::watch::WatchSettings;
use palisade_policy::{Endpoint, Engine, Flow, Protocol};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(p).expect("fixture")
}

fn list(plural: &str) -> Value {
    serde_json::from_str(&fixture(&format!("lists/{plural}.json"))).unwrap()
}

fn path(kind: &str) -> String {
    by_kind(kind).unwrap().collection_path()
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn allowed(e: &Engine, from: (&str, &str), to: (&str, &str), port: u16) -> bool {
    let src = Endpoint::Pod(e.pod_id(from.0, from.1).expect("src pod"));
    let dst = Endpoint::Pod(e.pod_id(to.0, to.1).expect("dst pod"));
    e.verdict(&Flow {
        src,
        dst,
        port,
        protocol: Protocol::TCP,
        http: None,
    })
    .allowed()
}

fn find<'a>(reqs: &'a [Recorded], method: &str, path: &str) -> Vec<&'a Recorded> {
    reqs.iter()
        .filter(|r| r.method == method && r.path == path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_against_the_api_wire_protocol() {
    let mut st = ApiState::default();
    for res in RESOURCES {
        st.lists
            .insert(res.collection_path(), VecDeque::from([list(res.plural)]));
    }
    // No AdminNetworkPolicy CRDs in this cluster.
    for kind in ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"] {
        st.absent.insert(path(kind));
    }
    // NetworkPolicies: the first watch expires at once (410); the relist has none left.
    let mut emptied = list("networkpolicies");
    emptied["items"] = json!([]);
    emptied["metadata"]["resourceVersion"] = json!("1300");
    st.lists.insert(
        path("NetworkPolicy"),
        VecDeque::from([list("networkpolicies"), emptied]),
    );
    let gone = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1200 (1290)","reason":"Expired","code":410}}"#;
    st.watches.insert(
        path("NetworkPolicy"),
        VecDeque::from([WatchScript {
            lines: vec![gone.into()],
            hold: false,
        }]),
    );
    // SecurityPolicies: an invalid one arrives.
    let sp_lines: Vec<String> = fixture("watch/securitypolicies.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    st.watches.insert(
        path("SecurityPolicy"),
        VecDeque::from([WatchScript {
            lines: vec![sp_lines[0].clone()],
            hold: true,
        }]),
    );
    // Pods: nothing, then (after the outage) a new pod.
    let pod_lines: Vec<String> = fixture("watch/pods.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    st.watches.insert(
        path("Pod"),
        VecDeque::from([
            WatchScript {
                lines: vec![],
                hold: true,
            },
            WatchScript {
                lines: vec![pod_lines[2].clone()],
                hold: true,
            },
        ]),
    );
    let api = FakeApi::start(st).await;

    let config = kube::Config::new(api.url.parse().unwrap());
    let client = palisade_k8s::cluster::client_from(config).expect("client");
    let settings = Settings {
        watch: WatchSettings {
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(300),
            ..WatchSettings::default()
        },
        leader: Some(LeaderSettings {
            namespace: "palisade-system".into(),
            name: "palisade-controller".into(),
            identity: "controller-0".into(),
            duration_secs: 3,
            renew_every: Duration::from_millis(200),
        }),
        debounce: Duration::from_millis(10),
        ..Settings::default()
    };
    let running = start(client, settings);
    let published = running.state.published.clone();

    // The 410 relist has dropped the NetworkPolicy: coredns may reach db again.
    let engine: Arc<Engine> = wait_for("a snapshot without the NetworkPolicy", 15, || {
        let p = published.borrow().clone()?;
        allowed(
            &p.engine,
            ("kube-system", "coredns-5d78c9869d-abcde"),
            ("shop", "db-0"),
            5432,
        )
        .then(|| p.engine.clone())
    })
    .await;
    assert_eq!(
        engine.policies().len(),
        1,
        "web-egress only; db-egress is invalid"
    );

    // Status and Event for the invalid object, status for the valid one.
    let sp_base = "/apis/palisade.dev/v1alpha1/namespaces/shop/securitypolicies";
    let patch = wait_for("status of db-egress", 15, || {
        find(
            &api.requests(),
            "PATCH",
            &format!("{sp_base}/db-egress/status"),
        )
        .first()
        .map(|r| r.body.clone())
    })
    .await;
    let cond = &patch["status"]["conditions"][0];
    assert_eq!(cond["type"], "Accepted");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "Invalid");
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("spec.egress[0].to[0].fqdn"),
        "{cond}"
    );
    let ok_patch = wait_for("status of web-egress", 15, || {
        find(
            &api.requests(),
            "PATCH",
            &format!("{sp_base}/web-egress/status"),
        )
        .first()
        .map(|r| r.body.clone())
    })
    .await;
    assert_eq!(ok_patch["status"]["conditions"][0]["status"], "True");
    let reqs = api.requests();
    let events = find(&reqs, "POST", "/api/v1/namespaces/shop/events");
    assert_eq!(events.len(), 1, "one Event, for the invalid object only");
    assert_eq!(events[0].body["involvedObject"]["name"], "db-egress");
    assert_eq!(events[0].body["type"], "Warning");
    assert_eq!(events[0].body["reason"], "Invalid");

    // The Lease.
    assert!(*running.leading.borrow());
    let lease = api
        .state
        .lock()
        .unwrap()
        .leases
        .get("/apis/coordination.k8s.io/v1/namespaces/palisade-system/leases/palisade-controller")
        .cloned()
        .expect("lease created");
    assert_eq!(lease["spec"]["holderIdentity"], "controller-0");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 3);

    // Wire details: paginated lists, watches from the list's version with bookmarks,
    // and the relist after 410 followed by a watch from the new version.
    let pod_lists = find(&reqs, "GET", &path("Pod"));
    assert!(
        pod_lists
            .iter()
            .any(|r| r.query.split('&').any(|kv| kv == "limit=500")),
        "{pod_lists:?}"
    );
    let sp_watch = find(&reqs, "GET", &path("SecurityPolicy"))
        .into_iter()
        .find(|r| r.query.contains("watch=true"))
        .expect("securitypolicies watched");
    assert!(
        sp_watch.query.contains("resourceVersion=1200"),
        "{}",
        sp_watch.query
    );
    assert!(sp_watch.query.contains("allowWatchBookmarks=true"));
    let np_lists = find(&reqs, "GET", &path("NetworkPolicy"));
    assert_eq!(
        np_lists
            .iter()
            .filter(|r| !r.query.contains("watch=true"))
            .count(),
        2,
        "listed again after 410"
    );
    assert!(np_lists
        .iter()
        .any(|r| r.query.contains("watch=true") && r.query.contains("resourceVersion=1300")));

    // The API goes down: the snapshot stays, leadership is given up.
    let generation = published.borrow().as_ref().unwrap().generation;
    api.go_down();
    wait_for("stepping down", 10, || {
        (!*running.leading.borrow()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let p = published
            .borrow()
            .clone()
            .expect("the last good snapshot stays published");
        assert_eq!(p.generation, generation);
        assert_eq!(p.engine.policies().len(), 1);
    }

    // It comes back: the pod watch resumes from its resourceVersion (no relist) and the
    // new pod is enforced; the Lease is taken again.
    api.come_back();
    wait_for("the new pod", 15, || {
        let p = published.borrow().clone()?;
        p.engine.pod_id("shop", "web-7d9c8b6f5-q9z8w").map(|_| ())
    })
    .await;
    let reqs = api.requests();
    let pod_reqs = find(&reqs, "GET", &path("Pod"));
    assert_eq!(
        pod_reqs
            .iter()
            .filter(|r| !r.query.contains("watch=true"))
            .count(),
        1,
        "pods were not listed again"
    );
    assert!(pod_reqs
        .iter()
        .filter(|r| r.query.contains("watch=true"))
        .all(|r| r.query.contains("resourceVersion=1200")));
    wait_for("leading again", 10, || {
        running.leading.borrow().then_some(())
    })
    .await;
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_follow_continue_tokens_and_unserved_resources_are_empty() {
    use palisade_k8s::reconcile::Change;
    let mut st = ApiState::default();
    st.lists.insert(path("Pod"), VecDeque::from([list("pods")]));
    st.absent.insert(path("AdminNetworkPolicy"));
    let api = FakeApi::start(st).await;
    let client = palisade_k8s::cluster::client_from(kube::Config::new(api.url.parse().unwrap()))
        .expect("client");
    let settings = WatchSettings {
        page_size: 2,
        ..WatchSettings::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let pods = tokio::spawn(palisade_k8s::watch::follow(
        client.clone(),
        by_kind("Pod").unwrap(),
        settings.clone(),
        tx.clone(),
    ));
    let (res, change) = rx.recv().await.expect("a list");
    assert_eq!(res.kind, "Pod");
    let Change::Listed {
        items,
        resource_version,
        absent,
    } = change
    else {
        panic!("expected a list first")
    };
    assert_eq!(items.len(), 3, "both pages");
    assert_eq!(resource_version, "1200");
    assert!(!absent);
    let reqs = api.requests();
    let lists: Vec<&Recorded> = find(&reqs, "GET", &path("Pod"))
        .into_iter()
        .filter(|r| !r.query.contains("watch=true"))
        .collect();
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert!(lists[1].query.contains("continue=offset-2") && lists[1].query.contains("limit=2"));

    let anp = tokio::spawn(palisade_k8s::watch::follow(
        client,
        by_kind("AdminNetworkPolicy").unwrap(),
        settings,
        tx,
    ));
    let (res, change) = rx.recv().await.expect("an empty list");
    assert_eq!(res.kind, "AdminNetworkPolicy");
    assert!(matches!(change, Change::Listed { ref items, absent: true, .. } if items.is_empty()));
    pods.abort();
    anp.abort();
}
