//! Who an endpoint is, in terms that survive pod churn: the workload key
//! (`namespace/<owner>`, as EVENTS.md defines it) and the labels that select the workload's
//! pods (pod labels minus those that differ from one pod of a workload to the next).

use std::collections::BTreeMap;

use palisade_events::{Endpoint, EndpointKind};

/// Labels that Kubernetes controllers set per pod or per revision; a selector built from
/// them would select one pod (or one rollout) instead of the workload.
pub const PER_POD_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-completion-index",
];

/// The workload key of a pod endpoint: its `workload` field, else `namespace/name`.
/// `None` for endpoints that are not pods (or pods without a namespace).
pub fn workload_key(ep: &Endpoint) -> Option<String> {
    if ep.kind != EndpointKind::Pod {
        return None;
    }
    if let Some(w) = ep.workload.as_deref().filter(|w| w.contains('/')) {
        return Some(w.to_string());
    }
    let ns = ep.namespace.as_deref()?;
    Some(format!("{ns}/{}", ep.name.as_deref().unwrap_or("unknown")))
}

/// The labels of `ep` that identify its workload (per-pod labels removed).
pub fn stable_labels(ep: &Endpoint) -> BTreeMap<String, String> {
    ep.labels
        .iter()
        .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A workload seen in events: its namespace, the labels every one of its pods carried, and
/// the pods seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `namespace/<owner>`.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Labels common to every pod of the workload seen (the selector).
    pub labels: BTreeMap<String, String>,
    /// Pod names seen.
    pub pods: std::collections::BTreeSet<String>,
}

impl Workload {
    /// A workload from its first pod endpoint.
    pub fn from_endpoint(key: String, ep: &Endpoint) -> Workload {
        let namespace = ep
            .namespace
            .clone()
            .or_else(|| key.split_once('/').map(|(ns, _)| ns.to_string()))
            .unwrap_or_default();
        Workload {
            key,
            namespace,
            labels: stable_labels(ep),
            pods: ep.name.iter().cloned().collect(),
        }
    }

    /// Narrows the selector to the labels `ep` shares, and records its pod.
    pub fn merge(&mut self, ep: &Endpoint) {
        let labels = stable_labels(ep);
        self.labels
            .retain(|k, v| labels.get(k).is_some_and(|x| x == v));
        if let Some(n) = &ep.name {
            self.pods.insert(n.clone());
        }
    }

    /// The short name: the part of the key after the namespace.
    pub fn short_name(&self) -> &str {
        self.key.split_once('/').map_or(&self.key, |(_, n)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, labels: &[(&str, &str)]) -> Endpoint {
        let mut ep = Endpoint::pod("ml", name);
        ep.workload = Some("ml/trainer".into());
        ep.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ep
    }

    #[test]
    fn selector_keeps_only_labels_every_pod_shares() {
        let a = pod(
            "trainer-abc",
            &[("app", "trainer"), ("pod-template-hash", "abc"), ("v", "1")],
        );
        let b = pod(
            "trainer-def",
            &[("app", "trainer"), ("pod-template-hash", "def"), ("v", "2")],
        );
        let key = workload_key(&a).unwrap();
        assert_eq!(key, "ml/trainer");
        let mut w = Workload::from_endpoint(key, &a);
        assert!(!w.labels.contains_key("pod-template-hash"));
        w.merge(&b);
        assert_eq!(
            w.labels.into_iter().collect::<Vec<_>>(),
            [("app".to_string(), "trainer".to_string())]
        );
        assert_eq!(w.pods.len(), 2);
    }

    #[test]
    fn non_pods_have_no_workload() {
        let ep = Endpoint::external("203.0.113.7".parse().unwrap());
        assert_eq!(workload_key(&ep), None);
        let mut bare = Endpoint::pod("ns", "p");
        bare.workload = None;
        assert_eq!(workload_key(&bare).as_deref(), Some("ns/p"));
    }
}
