//! `recommend`: the recommended policy, compiled with pods rebuilt from the same events,
//! allows every observed connection and request and denies what was not observed.

use std::collections::BTreeSet;

use palisade_observe::evaluate::{evaluate, NameBook};
use palisade_observe::pods::pods_from_events;
use palisade_observe::recommend::{recommend, Options};
use palisade_observe::traffic::Traffic;
use palisade_policy::{Action, Posture};

use super::support::*;

fn recommended(opts: &Options) -> String {
    let events = recorded();
    let traffic = Traffic::from_events(&events);
    recommend(&traffic, opts).render(&["test".into()])
}

#[test]
fn recommended_policy_allows_what_was_seen_and_nothing_else() {
    let events = recorded();
    let yaml = recommended(&Options::default());
    let pods = pods_from_events(&events, &BTreeSet::new());
    let names = NameBook::from_events(&events);
    for posture in [Posture::Allow, Posture::Deny] {
        let engine = engine(
            &[("recommended.yaml", &yaml), ("pods.yaml", &pods)],
            posture,
        );
        for e in &events {
            let Ok(v) = evaluate(&engine, e, &names) else {
                continue;
            };
            let want = e.verdict.unwrap() != palisade_events::Verdict::Deny;
            assert_eq!(
                v.allowed(),
                want,
                "{posture:?}: event {} got {v:?}\n{yaml}",
                e.id
            );
        }
        // Connections and requests that were never observed.
        let ta = || trainer("trainer-a", "10.0.1.5");
        let unobserved = [
            flow(100, ta(), store(), "TCP", 9090, "deny"),
            flow(101, ta(), store(), "UDP", 8080, "deny"),
            flow(102, store(), ta(), "TCP", 8080, "deny"),
            flow(
                103,
                ta(),
                ext("203.0.113.66", Some("evil.example.com")),
                "TCP",
                443,
                "deny",
            ),
            http(
                104,
                ta(),
                "huggingface.co",
                "POST",
                "/api/models/bert",
                "deny",
            ),
            http(105, ta(), "huggingface.co", "GET", "/spaces/x", "deny"),
            flow(106, vllm(), ext("203.0.113.51", None), "TCP", 9000, "deny"),
            flow(107, ext("192.0.2.11", None), gateway(), "TCP", 8443, "deny"),
            flow(108, ta(), vllm(), "TCP", 8000, "deny"),
            flow(109, coredns(), ta(), "UDP", 53, "deny"),
        ];
        for e in &unobserved {
            let v = evaluate(&engine, e, &names).unwrap();
            assert_eq!(
                v.action,
                Action::Deny,
                "{posture:?}: unobserved {} allowed\n{yaml}",
                e.id
            );
        }
        // Pod churn: a new replica of an observed workload (new pod name, new hash label)
        // is covered by the workload's selector; the hub download keeps working.
        let churned = pods_from_events(
            &[flow(
                200,
                trainer("trainer-c", "10.0.1.7"),
                store(),
                "TCP",
                8080,
                "allow",
            )],
            &BTreeSet::from(["ml/feature-store-0".to_string()]),
        );
        let engine = engine_with(&yaml, &pods, &churned, posture);
        let tc = || trainer("trainer-c", "10.0.1.7");
        for e in [
            flow(201, tc(), store(), "TCP", 8080, "allow"),
            http(
                202,
                tc(),
                "huggingface.co",
                "GET",
                "/api/models/llama",
                "allow",
            ),
            flow(
                203,
                tc(),
                ext("198.51.100.9", Some("cdn-lfs.hf.co")),
                "TCP",
                443,
                "allow",
            ),
        ] {
            assert!(
                evaluate(&engine, &e, &names).unwrap().allowed(),
                "new replica: {} denied",
                e.id
            );
        }
    }
}

fn engine_with(yaml: &str, pods: &str, more: &str, posture: Posture) -> palisade_policy::Engine {
    engine(
        &[
            ("recommended.yaml", yaml),
            ("pods.yaml", pods),
            ("more.yaml", more),
        ],
        posture,
    )
}

#[test]
fn recommended_yaml_has_the_expected_shape() {
    let yaml = recommended(&Options::default());
    // Selected by workload labels, never by pod name or per-pod labels.
    assert!(
        yaml.contains("podSelector:\n    matchLabels: {app: trainer}"),
        "{yaml}"
    );
    assert!(!yaml.contains("pod-template-hash"), "{yaml}");
    assert!(!yaml.contains("trainer-a\n"), "{yaml}");
    // Cross-namespace peers name their namespace.
    assert!(
        yaml.contains("kubernetes.io/metadata.name: palisade-system"),
        "{yaml}"
    );
    // Names, including one learnt from a DNS answer, with L7 methods and path prefixes.
    assert!(yaml.contains("fqdn: huggingface.co"), "{yaml}");
    assert!(yaml.contains("fqdn: cdn-lfs.hf.co"), "{yaml}");
    assert!(
        yaml.contains("methods: [GET, HEAD]\n      path: {prefix: /api}"),
        "{yaml}"
    );
    assert!(
        yaml.contains("methods: [GET]\n      path: {prefix: /datasets}"),
        "{yaml}"
    );
    // Addresses without a name, and the audited flow, as /32 blocks.
    assert!(yaml.contains("cidr: 203.0.113.50/32"), "{yaml}");
    assert!(yaml.contains("cidr: 192.0.2.10/32"), "{yaml}");
    // Protocols as observed.
    assert!(yaml.contains("protocol: UDP\n      port: 53"), "{yaml}");
    let docs = yaml.matches("\n---\n").count() + usize::from(yaml.starts_with("---"));
    // 5 workloads with labels → 5 NetworkPolicies + 1 SecurityPolicy (trainer).
    assert_eq!(yaml.matches("kind: NetworkPolicy").count(), 5, "{yaml}");
    assert_eq!(yaml.matches("kind: SecurityPolicy").count(), 1, "{yaml}");
    assert!(docs >= 5);
}

#[test]
fn namespace_filter_and_path_depth() {
    let yaml = recommended(&Options {
        namespace: Some("ml".into()),
        path_depth: 0,
        ..Options::default()
    });
    assert_eq!(yaml.matches("kind: NetworkPolicy").count(), 2, "{yaml}");
    assert!(yaml.contains("namespace: ml"));
    assert!(!yaml.contains("namespace: serve"));
    assert!(yaml.contains("methods: [GET, HEAD]\n"), "{yaml}");
    assert!(!yaml.contains("prefix"), "{yaml}");
}
