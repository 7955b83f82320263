//! Pods as recorded events describe them, written as `v1 Pod` manifests, so the engine can
//! evaluate recorded flows even for pods that are gone or that no manifest folder lists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use palisade_events::{Endpoint, EndpointKind, Event};

use crate::yaml::Yaml;

/// A pod seen in events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct SeenPod {
    labels: BTreeMap<String, String>,
    service_account: Option<String>,
    ip: Option<IpAddr>,
    last_seen: i64,
}

/// `v1 Pod` manifests (multi-document YAML) for the pods of `events`, except those in
/// `known` (`namespace/name`). When several pods had the same address over time, the one
/// seen last keeps it.
pub fn pods_from_events<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    known: &BTreeSet<String>,
) -> String {
    let mut pods: BTreeMap<(String, String), SeenPod> = BTreeMap::new();
    let mut note = |ep: &Endpoint, t: i64| {
        let (EndpointKind::Pod, Some(ns), Some(name)) = (ep.kind, &ep.namespace, &ep.name) else {
            return;
        };
        // A pod of another member cluster (the engine names its workload
        // `cluster/namespace/name`) is not one of this cluster's: rebuilt, it would take the
        // place of a local pod of the same namespace and name.
        if ep
            .workload
            .as_deref()
            .is_some_and(|w| w.matches('/').count() >= 2)
        {
            return;
        }
        let p = pods.entry((ns.clone(), name.clone())).or_default();
        if t >= p.last_seen || p.labels.is_empty() {
            if !ep.labels.is_empty() {
                p.labels.clone_from(&ep.labels);
            }
            if ep.service_account.is_some() {
                p.service_account.clone_from(&ep.service_account);
            }
            if ep.ip.is_some() {
                p.ip = ep.ip;
            }
            p.last_seen = p.last_seen.max(t);
        }
    };
    for e in events {
        let t = e.time.as_micros();
        for ep in [&e.source, &e.destination].into_iter().flatten() {
            note(ep, t);
        }
    }
    // One owner per address: the pod seen last.
    let mut owner: HashMap<IpAddr, ((String, String), i64)> = HashMap::new();
    for (k, p) in &pods {
        if let Some(ip) = p.ip {
            let e = owner.entry(ip).or_insert((k.clone(), p.last_seen));
            if p.last_seen > e.1 {
                *e = (k.clone(), p.last_seen);
            }
        }
    }
    let mut out = String::new();
    for ((ns, name), p) in &pods {
        if known.contains(&format!("{ns}/{name}")) {
            continue;
        }
        let mut meta = vec![
            ("name".to_string(), Yaml::str(name)),
            ("namespace".to_string(), Yaml::str(ns)),
        ];
        if !p.labels.is_empty() {
            meta.push((
                "labels".into(),
                Yaml::map(p.labels.iter().map(|(k, v)| (k.clone(), Yaml::str(v)))),
            ));
        }
        let mut spec = vec![(
            "containers".to_string(),
            Yaml::Seq(vec![Yaml::map([("name", Yaml::str("main"))])]),
        )];
        if let Some(sa) = &p.service_account {
            spec.push(("serviceAccountName".into(), Yaml::str(sa)));
        }
        let mut doc = vec![
            ("apiVersion".to_string(), Yaml::str("v1")),
            ("kind".to_string(), Yaml::str("Pod")),
            ("metadata".to_string(), Yaml::Map(meta)),
            ("spec".to_string(), Yaml::Map(spec)),
        ];
        let key = (ns.clone(), name.clone());
        if let Some(ip) =
            p.ip.filter(|ip| owner.get(ip).is_some_and(|(k, _)| *k == key))
        {
            doc.push((
                "status".into(),
                Yaml::map([("podIP", Yaml::str(ip.to_string()))]),
            ));
        }
        out.push_str("---\n");
        out.push_str(&Yaml::Map(doc).render());
    }
    out
}
