//! The CRDs under `deploy/crds/` are exactly what `palisade crdgen` generates, and every
//! Palisade object in `examples/` validates against them (with the API server's strict
//! field validation: an unknown field is an error), while typical mistakes do not.

use palisade_k8s::crd::{self, GeneratedCrd};
use palisade_policy::yaml::{from_node, parse_documents, FieldPath};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generated() -> Vec<GeneratedCrd> {
    crd::generate().expect("CRDs generate")
}

#[test]
fn committed_crds_match_generated() {
    let dir = repo_root().join("deploy/crds");
    for g in generated() {
        let path = dir.join(&g.file_name);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `palisade crdgen --output-dir deploy/crds`",
                path.display()
            )
        });
        assert!(
            committed == g.yaml,
            "{} differs from the generated CRD; run `palisade crdgen --output-dir deploy/crds`",
            path.display()
        );
    }
}

#[test]
fn every_kind_has_a_structural_schema() {
    let crds = generated();
    assert_eq!(crds.len(), 4);
    for g in &crds {
        let schema = &g.crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_structural(schema, &g.file_name);
        // The generated YAML reads back as the same value.
        let docs = parse_documents(&g.yaml).expect("generated YAML parses");
        let back: Value = from_node(&docs[0], &FieldPath::root()).expect("as JSON");
        assert_eq!(back, g.crd, "{} does not round-trip", g.file_name);
    }
    let csp = &crds[1].crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(
        csp["properties"]["spec"]["properties"]["priority"]["maximum"],
        json!(1000)
    );
    assert_eq!(
        csp["properties"]["spec"]["properties"]["tier"]["enum"],
        json!(["security", "admin", "baseline"])
    );
}

/// Kubernetes' structural-schema rules that matter here: a type on every node (except
/// int-or-string), no `$ref`, no `additionalProperties` beside `properties`, no
/// `anyOf`/`oneOf` other than int-or-string.
fn assert_structural(v: &Value, at: &str) {
    let m = v
        .as_object()
        .unwrap_or_else(|| panic!("{at}: not an object"));
    assert!(!m.contains_key("$ref"), "{at}: $ref");
    assert!(!m.contains_key("oneOf"), "{at}: oneOf");
    let int_or_string = m.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if !int_or_string {
        assert!(
            m.get("type").and_then(Value::as_str).is_some(),
            "{at}: no single type: {v}"
        );
        assert!(!m.contains_key("anyOf"), "{at}: anyOf");
    }
    if m.contains_key("properties") {
        assert!(
            !m.contains_key("additionalProperties"),
            "{at}: both properties and additionalProperties"
        );
    }
    if let Some(p) = m.get("properties").and_then(Value::as_object) {
        for (k, s) in p {
            assert_structural(s, &format!("{at}.{k}"));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s @ Value::Object(_)) = m.get(key) {
            assert_structural(s, &format!("{at}[{key}]"));
        }
    }
}

/// Validates an object against its CRD: JSON Schema keywords with `jsonschema` (draft 4,
/// the dialect OpenAPI v3 schemas use), plus unknown fields, as the API server's strict
/// field validation reports them.
fn validate(crds: &[GeneratedCrd], obj: &Value) -> Result<(), Vec<String>> {
    let kind = obj["kind"].as_str().unwrap_or("");
    let g = crds
        .iter()
        .find(|g| g.crd["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = &g.crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let validator = jsonschema::draft4::new(schema).expect("schema compiles");
    let mut errors: Vec<String> = validator
        .iter_errors(obj)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect();
    unknown_fields(schema, obj, "", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn unknown_fields(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, val) in m {
                    match props.get(k) {
                        Some(s) => unknown_fields(s, val, &format!("{at}.{k}"), errors),
                        None if at == ".metadata" || at.is_empty() && k == "metadata" => {}
                        None => errors.push(format!("{at}.{k}: unknown field")),
                    }
                }
            } else if let Some(s) = schema.get("additionalProperties") {
                for (k, val) in m {
                    unknown_fields(s, val, &format!("{at}.{k}"), errors);
                }
            }
        }
        Value::Array(a) => {
            if let Some(s) = schema.get("items") {
                for (i, val) in a.iter().enumerate() {
                    unknown_fields(s, val, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// Every document of every YAML file under `dir` (items of `kind: List` included).
fn documents(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read examples").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        for doc in parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e:?}", f.display())) {
            let v: Value = from_node(&doc, &FieldPath::root()).expect("YAML as JSON");
            let items = match v.get("items").and_then(Value::as_array) {
                Some(items) if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
                    items.clone()
                }
                _ => vec![v],
            };
            for item in items {
                out.push((f.display().to_string(), item));
            }
        }
    }
    out
}

#[test]
fn every_palisade_object_in_examples_validates() {
    let crds = generated();
    let mut kinds = std::collections::BTreeSet::new();
    let mut n = 0;
    for (file, obj) in documents(&repo_root().join("examples")) {
        if obj["apiVersion"] != "palisade.dev/v1alpha1" {
            continue;
        }
        if let Err(errs) = validate(&crds, &obj) {
            panic!(
                "{file}: {} {}: {errs:#?}",
                obj["kind"], obj["metadata"]["name"]
            );
        }
        kinds.insert(obj["kind"].as_str().unwrap_or("").to_string());
        n += 1;
    }
    assert!(n >= 4, "only {n} Palisade objects found in examples/");
    for kind in ["ClusterSecurityPolicy", "PalisadeConfig", "SecurityPolicy"] {
        assert!(kinds.contains(kind), "examples/ has no {kind}: {kinds:?}");
    }
    // examples/ has no AIGateway yet; one in the shape the ingress docs use.
    let gw = json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AIGateway",
        "metadata": {"name": "inference", "namespace": "inference"},
        "spec": {"mode": "Enforce", "hosts": ["llm.example.com"],
            "routes": [{"name": "chat", "pathPrefix": "/v1", "backend": "http://vllm:8000",
                "models": ["llama-3-8b"], "auth": {"apiKeysFile": "keys.yaml"},
                "limits": {"requestsPerSecond": 5.5, "burst": 10, "tokensPerMinute": 20000},
                "waf": {"paranoiaLevel": 2}, "promptGuard": {"action": "block", "threshold": 0.8},
                "outputFilters": [{"kind": "secrets", "action": "redact"}]}],
            "consumers": [{"name": "team-a", "models": ["llama-3-8b"], "routes": ["chat"]}]}});
    if let Err(errs) = validate(&crds, &gw) {
        panic!("AIGateway sample: {errs:#?}");
    }
}

#[test]
fn typical_mistakes_are_refused_by_the_schema() {
    let crds = generated();
    let bad = [
        (
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ClusterSecurityPolicy",
                "metadata": {"name": "x"}, "spec": {"priority": 5000}}),
            "5000",
        ),
        (
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ClusterSecurityPolicy",
                "metadata": {"name": "x"}, "spec": {"tier": "platinum"}}),
            "platinum",
        ),
        (
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityPolicy",
                "metadata": {"name": "x", "namespace": "a"},
                "spec": {"podSelector": {}, "egres": []}}),
            ".spec.egres: unknown field",
        ),
        (
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityPolicy",
                "metadata": {"name": "x", "namespace": "a"},
                "spec": {"podSelector": {}, "egress": [{"to": [{"fqdn": "a.com"}],
                    "ports": [{"protocol": "ICMP", "port": 443}]}]}}),
            "ICMP",
        ),
        (
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityPolicy",
                "metadata": {"name": "x", "namespace": "a"},
                "spec": {"podSelector": {}, "egress": [{"to": [{"fqdn": "a.com"}],
                    "http": [{"methods": ["get"]}]}]}}),
            "\"get\"",
        ),
        (
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "SecurityPolicy",
                "metadata": {"name": "x", "namespace": "a"},
                "spec": {"egress": []}}),
            "podSelector",
        ),
        (
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AIGateway",
                "metadata": {"name": "x", "namespace": "a"},
                "spec": {"routes": [{"name": "r", "backend": "ftp://x",
                    "waf": {"paranoiaLevel": 7}}]}}),
            "ftp://x",
        ),
        (
            json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "PalisadeConfig",
                "metadata": {"name": "x"}, "spec": {"defaultPosture": "maybe"}}),
            "maybe",
        ),
    ];
    for (obj, needle) in bad {
        let errs = validate(&crds, &obj).expect_err(&format!("accepted: {obj}"));
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "{obj}: errors {errs:?} do not mention {needle}"
        );
    }
}
