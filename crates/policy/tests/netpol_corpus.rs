//! Upstream NetworkPolicy / AdminNetworkPolicy cases (`../shared/data/netpol-dev`): every
//! expected reachability must equal the engine's. Skips, saying so, when the corpus is absent.

use palisade_policy::{Engine, Manifests, Protocol, Snapshot};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/netpol-dev");
    p.join("cases").is_dir().then_some(p)
}

fn load(files: &[PathBuf]) -> Engine {
    let mut m = Manifests::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        m.add_file(&f.display().to_string(), &text);
    }
    assert!(!m.has_errors(), "{:#?}", m.diagnostics);
    Engine::compile(&Snapshot::from_manifests(&m))
}

#[test]
fn every_upstream_case_matches() {
    let Some(root) = corpus() else {
        eprintln!("skipping: ../shared/data/netpol-dev is not present");
        return;
    };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut checked = 0usize;
    for case in &cases {
        let exp: Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap())
                .unwrap();
        let model = if case.join("model.yaml").exists() {
            case.join("model.yaml")
        } else {
            case.join(exp["model"].as_str().unwrap())
        };
        let engine = load(&[model, case.join("policies.yaml")]);
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let ignore_loopback = exp["ignoreLoopback"].as_bool().unwrap_or(false);
        for probe in exp["probes"].as_array().unwrap() {
            let port = probe["port"].as_u64().unwrap() as u16;
            let proto = Protocol::parse(probe["protocol"].as_str().unwrap()).unwrap();
            let mut check = |from: &str, to: &str, want: bool| {
                let (Some(f), Some(t)) = (engine.pod_by_key(from), engine.pod_by_key(to)) else {
                    failures.push(format!("{name}: unknown pod {from} or {to}"));
                    return;
                };
                let got = engine
                    .verdict(&palisade_policy::Flow {
                        src: palisade_policy::Endpoint::Pod(f),
                        dst: palisade_policy::Endpoint::Pod(t),
                        port,
                        protocol: proto,
                        http: None,
                    })
                    .allowed();
                checked += 1;
                if got != want {
                    failures.push(format!(
                        "{name} {port}/{proto:?} {from} -> {to}: want {want}, got {got}"
                    ));
                }
            };
            if exp["format"] == "matrix" {
                for (from, row) in probe["matrix"].as_object().unwrap() {
                    for (to, want) in row.as_object().unwrap() {
                        if ignore_loopback && from == to {
                            continue;
                        }
                        check(from, to, want.as_bool().unwrap());
                    }
                }
            } else {
                check(
                    probe["from"].as_str().unwrap(),
                    probe["to"].as_str().unwrap(),
                    probe["allowed"].as_bool().unwrap(),
                );
            }
        }
    }
    assert!(checked > 1000, "only {checked} probes checked");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{} cases, {checked} probes: all match", cases.len());
}
