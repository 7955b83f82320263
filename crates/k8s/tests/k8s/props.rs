//! Whatever the API (or a compromised or buggy one) sends, the reconciler does not panic:
//! arbitrary JSON as objects of every resource, as watch events, and as list responses.

use palisade_k8s::reconcile::{Change, Reconciler};
use palisade_k8s::resources::RESOURCES;
use proptest::prelude::*;
use serde_json::{json, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9*./:_ -]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "In",
            "Exists",
            "TCP",
            "Enforce",
            "10.0.0.0/8",
            "*",
            "default"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "metadata",
                    "spec",
                    "status",
                    "name",
                    "namespace",
                    "labels",
                    "podSelector",
                    "ingress",
                    "egress",
                    "from",
                    "to",
                    "ports",
                    "port",
                    "fqdn",
                    "ipBlock",
                    "cidr",
                    "matchLabels",
                    "priority",
                    "subject",
                    "podIP",
                    "containers",
                    "generation",
                    "uid",
                    "resourceVersion",
                    "conditions",
                    "type",
                    "x",
                ])
                .prop_map(str::to_string),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    (json_value(), json_value(), "[a-z]{1,6}", "[a-z]{0,4}").prop_map(|(spec, status, name, ns)| {
        json!({"metadata": {"name": name, "namespace": ns, "generation": 1, "resourceVersion": "5"},
            "spec": spec, "status": status})
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_objects_never_panic(
        picks in prop::collection::vec((0..RESOURCES.len(), object(), 0..4u8), 1..12),
        raw in json_value(),
    ) {
        let mut r = Reconciler::new();
        for res in RESOURCES {
            r.apply(res, Change::from_list(&json!({"metadata": {"resourceVersion": "1"}, "items": [raw.clone()]})));
        }
        for (i, obj, what) in picks {
            let res = &RESOURCES[i];
            let change = match what {
                0 => Change::Applied(obj),
                1 => Change::Deleted(obj),
                2 => Change::Listed { items: vec![obj, raw.clone()], resource_version: "9".into(), absent: false },
                _ => Change::Expired,
            };
            r.apply(res, change);
        }
        let _ = r.snapshot();
        for rep in r.pending_reports() {
            let _ = rep.status_patch("2025-01-01T00:00:00Z");
            let _ = rep.event_object("2025-01-01T00:00:00Z", 1, "x");
        }
        // Watch events of any shape: decoded or refused, never a panic.
        let _ = serde_json::from_value::<kube::core::WatchEvent<Value>>(raw).map(Change::from_watch_event);
    }
}
