//! The pure reconcile logic on fixtures of real API objects (list responses and watch
//! streams as the API server sends them): the snapshot equals the standalone mode's for the
//! same objects, invalid objects are reported and left out without touching the valid
//! ones, and bookmarks, deletes, expiry (410) and relists do what they must.

use kube::core::WatchEvent;
use palisade_k8s::reconcile::{Change, Reconciler, Report};
use palisade_k8s::resources::{by_kind, RESOURCES};
use palisade_policy::{Endpoint, Engine, Flow, Manifests, Posture, Protocol, Snapshot};
use serde_json::{json, Value};
use std::path::Path;

fn fixture(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn list(plural: &str) -> Value {
    serde_json::from_str(&fixture(&format!("lists/{plural}.json"))).expect("list JSON")
}

fn watch_events(name: &str) -> Vec<WatchEvent<Value>> {
    fixture(&format!("watch/{name}.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("watch event JSON"))
        .collect()
}

/// Lists every resource from the fixtures, `skip` excepted.
fn list_everything(r: &mut Reconciler, skip: &[&str]) {
    for res in RESOURCES.iter().filter(|res| !skip.contains(&res.kind)) {
        r.apply(res, Change::from_list(&list(res.plural)));
    }
}

fn apply_event(
    r: &mut Reconciler,
    kind: &str,
    ev: WatchEvent<Value>,
) -> palisade_k8s::reconcile::Outcome {
    let change = Change::from_watch_event(ev).expect("no error event");
    r.apply(by_kind(kind).unwrap(), change)
}

fn engine_of(snap: &Snapshot) -> Engine {
    Engine::compile_with(snap, Posture::Allow)
}

fn engine(r: &Reconciler) -> Engine {
    engine_of(&r.snapshot().expect("synced"))
}

fn pod<'a>(e: &Engine, key: &str) -> Endpoint<'a> {
    let (ns, name) = key.split_once('/').unwrap();
    Endpoint::Pod(e.pod_id(ns, name).unwrap_or_else(|| panic!("no pod {key}")))
}

fn allowed(e: &Engine, from: &str, to: Endpoint<'_>, port: u16) -> bool {
    e.verdict(&Flow {
        src: pod(e, from),
        dst: to,
        port,
        protocol: Protocol::TCP,
        http: None,
    })
    .allowed()
}

fn fqdn(name: &str) -> Endpoint<'_> {
    Endpoint::Fqdn { name, ip: None }
}

const WEB: &str = "shop/web-7d9c8b6f5-x2k4p";
const DB: &str = "shop/db-0";
const DNS: &str = "kube-system/coredns-5d78c9869d-abcde";

#[test]
fn no_snapshot_until_every_resource_is_listed() {
    let mut r = Reconciler::new();
    list_everything(&mut r, &["NetworkPolicy"]);
    assert!(!r.synced());
    assert!(
        r.snapshot().is_none(),
        "pods without their policies must not be enforced"
    );
    r.apply(
        by_kind("NetworkPolicy").unwrap(),
        Change::from_list(&list("networkpolicies")),
    );
    assert!(r.synced());
    assert!(r.snapshot().is_some());
}

#[test]
fn snapshot_equals_the_standalone_one_for_the_same_objects() {
    let mut r = Reconciler::new();
    list_everything(&mut r, &[]);
    let from_api = engine(&r);

    // The same objects as one `kind: List` file, read the standalone way.
    let mut items = Vec::new();
    for res in RESOURCES {
        for mut item in list(res.plural)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            item["apiVersion"] = json!(res.api_version());
            item["kind"] = json!(res.kind);
            items.push(item);
        }
    }
    let text =
        serde_json::to_string_pretty(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
            .unwrap();
    let mut m = Manifests::new();
    m.add_file("cluster-dump.json", &text);
    assert!(!m.has_errors(), "{:#?}", m.diagnostics);
    let from_files = engine_of(&Snapshot::from_manifests(&m));

    assert_eq!(from_api.pods().len(), 3);
    assert_eq!(from_api.pods().len(), from_files.pods().len());
    assert_eq!(from_api.policies().len(), 2);
    for a in [WEB, DB, DNS] {
        for b in [WEB, DB, DNS] {
            for port in [53, 5432, 8080] {
                assert_eq!(
                    allowed(&from_api, a, pod(&from_api, b), port),
                    allowed(&from_files, a, pod(&from_files, b), port),
                    "{a} -> {b}:{port}"
                );
            }
        }
    }
    // And what the policies say.
    assert!(allowed(&from_api, WEB, pod(&from_api, DB), 5432));
    assert!(
        !allowed(&from_api, DNS, pod(&from_api, DB), 5432),
        "db ingress is isolated"
    );
    assert!(allowed(&from_api, WEB, fqdn("api.openai.com"), 443));
    assert!(
        !allowed(&from_api, WEB, fqdn("evil.example.net"), 443),
        "web egress is isolated"
    );
}

fn report_for<'a>(reports: &'a [Report], name: &str) -> &'a Report {
    reports
        .iter()
        .find(|r| r.key.name == name)
        .unwrap_or_else(|| panic!("no report for {name} in {reports:#?}"))
}

#[test]
fn security_policy_watch_sequence() {
    let mut r = Reconciler::new();
    list_everything(&mut r, &[]);
    // web-egress had no status yet: it is owed an Accepted condition, and no Event.
    let first = r.pending_reports();
    assert_eq!(first.len(), 1);
    assert!(first[0].accepted && first[0].write_status && first[0].event.is_none());
    r.delivered(&first[0]);
    assert!(r.pending_reports().is_empty());

    let mut events = watch_events("securitypolicies").into_iter();
    let sp = "SecurityPolicy";

    // ADDED, invalid (`*` matches every name): reported, left out, nothing else disturbed.
    let out = apply_event(&mut r, sp, events.next().unwrap());
    assert!(out.changed && !out.relist);
    let reports = r.pending_reports();
    let bad = report_for(&reports, "db-egress");
    assert!(!bad.accepted);
    assert_eq!(bad.event, Some(("Warning", "Invalid")));
    assert!(
        bad.message.starts_with("spec.egress[0].to[0].fqdn: "),
        "{}",
        bad.message
    );
    let patch = bad.status_patch("2025-03-02T10:00:01Z");
    assert_eq!(patch["status"]["conditions"][0]["status"], "False");
    assert_eq!(patch["status"]["conditions"][0]["reason"], "Invalid");
    assert_eq!(patch["status"]["observedGeneration"], 1);
    let ev = bad
        .event_object("2025-03-02T10:00:01Z", 0xabc, "controller-0")
        .unwrap();
    assert_eq!(ev["metadata"]["namespace"], "shop");
    assert_eq!(ev["metadata"]["name"], "db-egress.abc");
    assert_eq!(ev["involvedObject"]["kind"], "SecurityPolicy");
    assert_eq!(
        ev["involvedObject"]["uid"],
        "6f708192-a3b4-4c56-9d7e-8f9012345678"
    );
    assert_eq!(ev["type"], "Warning");
    r.delivered(bad);
    let e = engine(&r);
    assert_eq!(e.policies().len(), 2, "the invalid policy is not enforced");
    assert!(
        allowed(&e, WEB, fqdn("api.openai.com"), 443),
        "valid ones still are"
    );
    assert!(
        allowed(&e, DB, fqdn("anything.example.com"), 443),
        "db egress not isolated"
    );
    assert_eq!(r.counts(), (r.counts().0, 1));

    // BOOKMARK: the resume point moves, nothing else.
    let out = apply_event(&mut r, sp, events.next().unwrap());
    assert!(!out.changed);
    assert_eq!(
        r.resource(sp).unwrap().resource_version.as_deref(),
        Some("1250")
    );

    // MODIFIED, fixed: accepted (with a Normal Event since it was refused before), enforced.
    let out = apply_event(&mut r, sp, events.next().unwrap());
    assert!(out.changed);
    let reports = r.pending_reports();
    let fixed = report_for(&reports, "db-egress");
    assert!(fixed.accepted);
    assert_eq!(fixed.generation, 2);
    assert_eq!(fixed.event, Some(("Normal", "Accepted")));
    r.delivered(fixed);
    let e = engine(&r);
    assert!(allowed(&e, DB, fqdn("backup.example.com"), 443));
    assert!(!allowed(&e, DB, fqdn("anything.example.com"), 443));
    assert_eq!(r.counts().1, 0);

    // MODIFIED by our own status write: no change, no report (no write loop).
    let rev = r.revision();
    let out = apply_event(&mut r, sp, events.next().unwrap());
    assert!(!out.changed);
    assert_eq!(r.revision(), rev);
    assert!(r.pending_reports().is_empty());
    assert_eq!(
        r.resource(sp).unwrap().resource_version.as_deref(),
        Some("1261")
    );

    // DELETED: web's egress is no longer isolated.
    let out = apply_event(&mut r, sp, events.next().unwrap());
    assert!(out.changed);
    let e = engine(&r);
    assert!(allowed(&e, WEB, fqdn("evil.example.net"), 443));

    // ERROR 410: relist; the last snapshot stays until the list arrives.
    let out = apply_event(&mut r, sp, events.next().unwrap());
    assert!(out.relist && !out.changed);
    assert_eq!(r.resource(sp).unwrap().resource_version, None);
    assert!(r.snapshot().is_some());
    // The relist shows web-egress (deleted-and-recreated while we were away) and no
    // db-egress (deleted while we were away): both are reconciled.
    let out = r.apply(
        by_kind(sp).unwrap(),
        Change::from_list(&list("securitypolicies")),
    );
    assert!(out.changed);
    let e = engine(&r);
    assert!(!allowed(&e, WEB, fqdn("evil.example.net"), 443));
    assert!(allowed(&e, DB, fqdn("anything.example.com"), 443));
    assert_eq!(
        r.resource(sp).unwrap().resource_version.as_deref(),
        Some("1200")
    );
}

#[test]
fn pod_updates_that_policy_does_not_see_cost_nothing() {
    let mut r = Reconciler::new();
    list_everything(&mut r, &[]);
    let mut events = watch_events("pods").into_iter();
    let rev = r.revision();
    // Readiness flips: same labels, same IP.
    let out = apply_event(&mut r, "Pod", events.next().unwrap());
    assert!(!out.changed);
    assert_eq!(r.revision(), rev);
    // A new pod, pending without an IP, then running with one.
    assert!(apply_event(&mut r, "Pod", events.next().unwrap()).changed);
    assert!(apply_event(&mut r, "Pod", events.next().unwrap()).changed);
    let e = engine(&r);
    let ip: std::net::IpAddr = "10.244.2.9".parse().unwrap();
    assert_eq!(e.pod_by_ip(ip), e.pod_id("shop", "web-7d9c8b6f5-q9z8w"));
    assert!(allowed(&e, "shop/web-7d9c8b6f5-q9z8w", pod(&e, DB), 5432));
    // Deleted.
    assert!(apply_event(&mut r, "Pod", events.next().unwrap()).changed);
    let e = engine(&r);
    assert!(e.pod_id("shop", "db-0").is_none());
    assert_eq!(
        r.resource("Pod").unwrap().resource_version.as_deref(),
        Some("1303")
    );
}

/// Nodes are watched for AdminNetworkPolicy `nodes` peers: their labels and addresses reach
/// the snapshot, and a heartbeat (a status update every few seconds on every node) does not
/// make a new one.
#[test]
fn nodes_reach_the_snapshot_and_heartbeats_cost_nothing() {
    let mut r = Reconciler::new();
    list_everything(&mut r, &[]);
    let snap = r.snapshot().expect("synced");
    let gpu: Vec<_> = snap
        .nodes
        .iter()
        .filter(|(n, _)| n.metadata.labels.get("pool").map(String::as_str) == Some("gpu"))
        .collect();
    assert_eq!(gpu.len(), 1);
    let ips: Vec<String> = gpu[0].0.ips().map(|ip| ip.to_string()).collect();
    assert_eq!(ips, ["172.18.0.4", "203.0.113.4"]);

    let rev = r.revision();
    let mut node = list("nodes")["items"][1].clone();
    node["metadata"]["resourceVersion"] = json!("1301");
    node["status"]["conditions"][0]["lastHeartbeatTime"] = json!("2025-03-03T08:00:43Z");
    let beat = WatchEvent::Modified(node.clone());
    assert!(!apply_event(&mut r, "Node", beat).changed);
    assert_eq!(r.revision(), rev);
    node["metadata"]["labels"]["pool"] = json!("cpu");
    assert!(apply_event(&mut r, "Node", WatchEvent::Modified(node)).changed);
}

#[test]
fn status_already_shown_is_not_written_again() {
    let mut r = Reconciler::new();
    let mut sp = list("securitypolicies");
    sp["items"][0]["status"] = json!({"observedGeneration": 1, "conditions": [{
        "type": "Accepted", "status": "True", "reason": "Accepted",
        "message": "valid; enforced", "lastTransitionTime": "2025-03-02T09:34:01Z",
        "observedGeneration": 1}]});
    list_everything(&mut r, &["SecurityPolicy"]);
    r.apply(by_kind("SecurityPolicy").unwrap(), Change::from_list(&sp));
    assert!(r.pending_reports().is_empty(), "{:#?}", r.pending_reports());
}

#[test]
fn missing_crds_count_as_empty_and_invalid_upstream_objects_get_events_only() {
    let mut r = Reconciler::new();
    list_everything(
        &mut r,
        &["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"],
    );
    r.apply(
        by_kind("AdminNetworkPolicy").unwrap(),
        Change::Listed {
            items: vec![],
            resource_version: String::new(),
            absent: true,
        },
    );
    assert!(!r.synced());
    // An older BANP CRD without the name rule let this one through; Palisade refuses it.
    let banp = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": "strict", "uid": "u-1", "generation": 1},
            "spec": {"subject": {"namespaces": {}}, "ingress": [{"action": "Deny",
                "from": [{"namespaces": {}}]}]}}]});
    r.apply(
        by_kind("BaselineAdminNetworkPolicy").unwrap(),
        Change::from_list(&banp),
    );
    assert!(r.synced());
    assert!(r.resource("AdminNetworkPolicy").unwrap().absent);
    let reports = r.pending_reports();
    let rep = report_for(&reports, "strict");
    assert!(!rep.accepted && !rep.write_status);
    assert!(rep.message.contains("default"), "{}", rep.message);
    let ev = rep.event_object("2025-03-02T10:00:01Z", 1, "c").unwrap();
    assert_eq!(
        ev["metadata"]["namespace"], "default",
        "cluster-scoped: Event in default"
    );
    assert!(ev["involvedObject"].get("namespace").is_none());
    // Everything else is enforced.
    assert!(allowed(&engine(&r), WEB, pod(&engine(&r), DB), 5432));
}

#[test]
fn watch_error_events_other_than_expiry_are_errors() {
    let ev: WatchEvent<Value> = serde_json::from_str(
        r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"etcd is down","reason":"InternalError","code":500}}"#,
    )
    .unwrap();
    let err = Change::from_watch_event(ev).unwrap_err();
    assert_eq!(err.code, 500);
    assert_eq!(err.reason, "InternalError");
}
