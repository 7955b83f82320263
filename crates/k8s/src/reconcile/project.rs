//! The part of an API object that matters to policy. Pods change often in ways policy does
//! not see (readiness, conditions, container statuses); keeping only what the model reads
//! makes those updates free, and makes the object smaller to parse and hold.

use crate::resources::Resource;
use serde_json::{Map, Value};
use std::hash::{Hash, Hasher};

/// `object` reduced to what the policy model reads.
pub fn project(res: &Resource, object: &Value) -> Value {
    let mut out = object.clone();
    let Some(m) = out.as_object_mut() else {
        return out;
    };
    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    if res.palisade_owned {
        m.remove("status");
    }
    match res.kind {
        "Pod" => pod(m),
        "Node" => node(m),
        _ => out,
    }
}

/// A node's status changes every few seconds (heartbeats, conditions, images); policy reads
/// its name, labels and addresses only.
fn node(m: &Map<String, Value>) -> Value {
    let null = Value::Null;
    let meta = m.get("metadata").unwrap_or(&null);
    let status = m.get("status").unwrap_or(&null);
    let mut out = Map::new();
    out.insert(
        "metadata".into(),
        pick(meta, &["name", "uid", "labels", "deletionTimestamp"]),
    );
    out.insert("status".into(), pick(status, &["addresses"]));
    Value::Object(out)
}

fn pick(from: &Value, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for k in keys {
        if let Some(v) = from.get(*k) {
            if !v.is_null() {
                out.insert((*k).to_string(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn containers(spec: &Value, key: &str) -> Option<Value> {
    let list = spec.get(key)?.as_array()?;
    Some(Value::Array(
        list.iter().map(|c| pick(c, &["name", "ports"])).collect(),
    ))
}

fn pod(m: &Map<String, Value>) -> Value {
    let null = Value::Null;
    let meta = m.get("metadata").unwrap_or(&null);
    let spec = m.get("spec").unwrap_or(&null);
    let status = m.get("status").unwrap_or(&null);
    let mut s = pick(spec, &["nodeName", "hostNetwork", "serviceAccountName"]);
    for key in ["containers", "initContainers"] {
        if let (Some(c), Some(o)) = (containers(spec, key), s.as_object_mut()) {
            o.insert(key.to_string(), c);
        }
    }
    let mut out = Map::new();
    out.insert(
        "metadata".into(),
        pick(
            meta,
            &[
                "name",
                "namespace",
                "uid",
                "generation",
                "labels",
                "annotations",
                "ownerReferences",
                "deletionTimestamp",
            ],
        ),
    );
    out.insert("spec".into(), s);
    let mut st = pick(status, &["podIP", "podIPs", "hostIP"]);
    // The phase matters only once the pod has finished (its address is released); a pod
    // going from Pending to Running does not need a new snapshot.
    if let (Some(phase @ ("Succeeded" | "Failed")), Some(o)) = (
        status.get("phase").and_then(Value::as_str),
        st.as_object_mut(),
    ) {
        o.insert("phase".into(), phase.into());
    }
    out.insert("status".into(), st);
    Value::Object(out)
}

/// A fingerprint of a projected object (keys are sorted, so equal values hash equal).
pub fn fingerprint(projected: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(projected)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind;
    use serde_json::json;

    #[test]
    fn pod_readiness_does_not_change_the_fingerprint() {
        let pod = |ready: &str, ip: &str| {
            json!({
                "metadata": {"name": "a", "namespace": "x", "resourceVersion": ready,
                    "labels": {"app": "a"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                    "ports": [{"containerPort": 80, "name": "http"}]}]},
                "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": ready}]}
            })
        };
        let res = by_kind("Pod").unwrap();
        let a = project(res, &pod("True", "10.0.0.1"));
        let b = project(res, &pod("False", "10.0.0.1"));
        let c = project(res, &pod("False", "10.0.0.2"));
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&b), fingerprint(&c));
        assert_eq!(
            a["spec"]["containers"][0],
            json!({"name": "c", "ports": [{"containerPort": 80, "name": "http"}]})
        );
        assert!(a["status"].get("phase").is_none());
    }

    #[test]
    fn node_heartbeats_do_not_change_the_fingerprint() {
        let node = |beat: &str, ip: &str| {
            json!({
                "metadata": {"name": "n1", "resourceVersion": beat,
                    "labels": {"pool": "gpu"},
                    "annotations": {"node.alpha.kubernetes.io/ttl": beat}},
                "spec": {"podCIDR": "10.244.1.0/24"},
                "status": {"addresses": [{"type": "InternalIP", "address": ip},
                        {"type": "Hostname", "address": "n1"}],
                    "conditions": [{"type": "Ready", "lastHeartbeatTime": beat}],
                    "images": [{"names": ["x"], "sizeBytes": 1}]}
            })
        };
        let res = by_kind("Node").unwrap();
        let a = project(res, &node("1", "192.168.0.1"));
        let b = project(res, &node("2", "192.168.0.1"));
        let c = project(res, &node("2", "192.168.0.2"));
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&b), fingerprint(&c));
        assert_eq!(
            a,
            json!({"metadata": {"name": "n1", "labels": {"pool": "gpu"}},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"},
                    {"type": "Hostname", "address": "n1"}]}})
        );
    }

    #[test]
    fn a_finished_pod_keeps_its_phase() {
        let pod = |phase: &str| {
            json!({
                "metadata": {"name": "a", "namespace": "x"},
                "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": phase, "podIP": "10.0.0.1"}
            })
        };
        let res = by_kind("Pod").unwrap();
        for phase in ["Succeeded", "Failed"] {
            assert_eq!(project(res, &pod(phase))["status"]["phase"], phase);
        }
        for phase in ["Pending", "Running", "Unknown"] {
            assert!(project(res, &pod(phase))["status"].get("phase").is_none());
        }
    }
}
