//! `recommend` on events a hostile pod chose: the names, paths and methods in events are
//! whatever a pod sent (DNS queries, `Host` headers, request lines), so the recommended YAML
//! must load back as exactly the policy meant, never widen to a wildcard, and never let a
//! string out of its quotes or comment.

use std::collections::BTreeSet;

use palisade_observe::recommend::{recommend, Options};
use palisade_observe::traffic::Traffic;
use palisade_policy::model::Object;
use palisade_policy::{Manifests, Severity};
use proptest::prelude::*;

use super::support::*;

/// Loads `yaml` with the project's loader; panics with every error.
fn load(yaml: &str) -> Manifests {
    let mut m = Manifests::new();
    m.add_file("recommended.yaml", yaml);
    let errors: Vec<String> = m
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{}\n{yaml}", errors.join("\n"));
    m
}

/// An `http` rule: its methods and its path (`=/x` exact, `/x` prefix).
type HttpRule = (Vec<String>, Option<String>);

/// Every (fqdn, http rules) of the SecurityPolicies in `m`.
fn fqdn_rules(m: &Manifests) -> Vec<(String, Vec<HttpRule>)> {
    let mut out = Vec::new();
    for o in &m.objects {
        let Object::SecurityPolicy(sp) = &o.object else {
            continue;
        };
        for r in sp.spec.egress.iter().flatten() {
            for p in r.to.iter().flatten() {
                let http = r
                    .http
                    .iter()
                    .map(|h| {
                        let path = h.path.as_ref().map(|p| {
                            format!(
                                "{}{}",
                                p.exact.as_deref().map_or("", |_| "="),
                                p.exact.clone().or(p.prefix.clone()).unwrap_or_default()
                            )
                        });
                        (h.methods.clone(), path)
                    })
                    .collect();
                out.push((p.fqdn.clone().unwrap_or_default(), http));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn names_a_pod_chose_never_become_wildcards() {
    // Allowed (not yet isolated) traffic: a pod sent these Host headers through the egress
    // gateway. `*.com` written as a pattern would allow every name under .com.
    let ta = || trainer("trainer-a", "10.0.1.5");
    let events = vec![
        http(1, ta(), "evil.com", "GET", "/x", "allow"),
        http(2, ta(), "a.evil.com", "GET", "/x", "allow"),
        http(3, ta(), "*.com", "GET", "/x", "allow"),
        http(4, ta(), "**.evil.com", "GET", "/x", "allow"),
        http(5, ta(), "a*.evil.com", "GET", "/x", "allow"),
        http(6, ta(), "\\*.evil.com", "GET", "/x", "allow"),
    ];
    let yaml =
        recommend(&Traffic::from_events(&events), &Options::default()).render(&["test".into()]);
    let m = load(&yaml);
    let names: Vec<String> = fqdn_rules(&m).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a.evil.com", "evil.com"], "{yaml}");
    assert!(
        yaml.contains("egress to \"*.com\" not recommended"),
        "{yaml}"
    );
}

#[test]
fn a_line_break_in_a_name_stays_in_its_comment() {
    // A name with a line break (an event imported from a file, or any component that does
    // not check names) would end the comment line that lists the names and add YAML.
    let ta = || trainer("trainer-a", "10.0.1.5");
    let evil = "evil.com\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: injected, namespace: ml}\nspec: {podSelector: {}, ingress: [{}]}";
    let events = vec![
        http(1, ta(), "ok.example.com", "GET", "/x", "allow"),
        http(2, ta(), evil, "GET", "/x", "allow"),
        http(
            3,
            ta(),
            "ok.example.com",
            "GET\n- to: [{fqdn: '*.com'}]",
            "/y",
            "allow",
        ),
    ];
    let yaml =
        recommend(&Traffic::from_events(&events), &Options::default()).render(&["test".into()]);
    let m = load(&yaml);
    assert!(
        !yaml
            .lines()
            .any(|l| l.contains("injected") && !l.starts_with('#')),
        "{yaml}"
    );
    let kinds: Vec<String> = m
        .objects
        .iter()
        .map(|o| match &o.object {
            Object::NetworkPolicy(p) => format!("NetworkPolicy {}", p.metadata.name),
            Object::SecurityPolicy(p) => format!("SecurityPolicy {}", p.metadata.name),
            _ => "other".into(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "NetworkPolicy recommended-trainer",
            "SecurityPolicy recommended-trainer-egress"
        ],
        "{yaml}"
    );
    assert_eq!(
        fqdn_rules(&m),
        [(
            "ok.example.com".to_string(),
            vec![(vec!["GET".to_string()], Some("/x".to_string()))]
        )],
        "{yaml}"
    );
}

/// Host names: plain ones, and ones with the characters that matter to YAML and to FQDN
/// patterns.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9]{1,8}(\\.[a-z0-9_-]{0,6}[a-z0-9]){0,3}",
        2 => prop::collection::vec(
            prop_oneof![
                Just("a".to_string()),
                Just(".".to_string()),
                Just("*".to_string()),
                Just("**".to_string()),
                Just(": ".to_string()),
                Just("\n".to_string()),
                Just("\r".to_string()),
                Just("#".to_string()),
                Just("\"".to_string()),
                Just("'".to_string()),
                Just("- ".to_string()),
                Just("{".to_string()),
                Just("[".to_string()),
                Just("\\".to_string()),
                Just("\u{2028}".to_string()),
                Just("\u{85}".to_string()),
                Just("é".to_string()),
                Just("&x ".to_string()),
                Just("!!str ".to_string()),
                Just("yes".to_string()),
                Just("0".to_string()),
            ],
            1..8
        )
        .prop_map(|v| v.concat()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof!["(/[a-z0-9._-]{0,6}){0,4}", "/[ -~\n\u{2028}é]{0,12}",]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["GET", "HEAD", "POST", "PUT"]).prop_map(String::from),
        1 => "[A-Za-z:\n #-]{1,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever names, methods and paths a pod used, the recommended YAML loads without an
    /// error and allows exactly the plain names seen, each with exactly the methods and path
    /// conditions seen (methods the policy language cannot name left out).
    #[test]
    fn recommended_yaml_loads_back_as_exactly_the_observed_names(
        reqs in prop::collection::vec((host(), method(), path()), 1..8)
    ) {
        let ta = || trainer("trainer-a", "10.0.1.5");
        let events: Vec<_> = reqs
            .iter()
            .enumerate()
            .map(|(i, (h, m, p))| http(i as u32 + 1, ta(), h, m, p, "allow"))
            .collect();
        let yaml = recommend(&Traffic::from_events(&events), &Options::default())
            .render(&["test".into()]);
        let m = load(&yaml);
        let plain = |n: &str| {
            !n.is_empty() && n.len() <= 253 && n.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            })
        };
        let mut want: std::collections::BTreeMap<String, std::collections::BTreeMap<Option<String>, BTreeSet<String>>> =
            Default::default();
        for (h, m, p) in &reqs {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            if !plain(&h) {
                continue;
            }
            let m = m.to_ascii_uppercase();
            let entry = want.entry(h).or_default();
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                continue;
            }
            let p = p.split(['?', '#']).next().unwrap_or("/");
            let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            let cond = if segs.is_empty() { "=/".to_string() } else { format!("/{}", segs[0]) };
            entry.entry(Some(cond)).or_default().insert(m);
        }
        // A name whose requests all had unnameable methods is left out.
        want.retain(|_, paths| !paths.is_empty());
        let want: Vec<(String, Vec<HttpRule>)> = want
            .into_iter()
            .map(|(n, paths)| {
                (n, paths.into_iter().map(|(c, ms)| (ms.into_iter().collect(), c)).collect())
            })
            .collect();
        let mut got = fqdn_rules(&m);
        for (_, http) in &mut got {
            http.sort_by(|a, b| a.1.cmp(&b.1));
        }
        prop_assert_eq!(got, want, "{}", yaml);
        for line in yaml.lines() {
            prop_assert!(!line.contains('\u{2028}') && !line.contains('\u{85}'), "raw line separator: {line:?}");
        }
    }
}

/// A peer whose pods carry no labels cannot be selected by labels. On the old code it was
/// written as `podSelector: {}` (with a note), which selects every pod of the namespace: any
/// pod of `ml` could then reach the trainer on 8080 and 9090, though only `ml/bare-0` was
/// seen doing it. Now such a peer is left out (and noted), and a rule left without peers is
/// left out too (a rule with `from: []` would allow every source).
#[test]
fn a_peer_without_labels_never_becomes_a_selector_for_the_whole_namespace() {
    use palisade_observe::evaluate::{evaluate, NameBook};
    use palisade_observe::pods::pods_from_events;
    use palisade_policy::{Action, Posture};
    let bare = || {
        serde_json::json!({"kind": "pod", "namespace": "ml", "name": "bare-0",
            "workload": "ml/bare", "ip": "10.0.1.30", "labels": {}})
    };
    let api = || pod("ml", "api-0", "api", "10.0.1.31");
    let other = || pod("ml", "other-0", "other", "10.0.1.32");
    let ta = || trainer("trainer-a", "10.0.1.5");
    let events = vec![
        flow(1, api(), ta(), "TCP", 8080, "allow"),
        flow(2, bare(), ta(), "TCP", 8080, "allow"),
        flow(3, bare(), ta(), "TCP", 9090, "allow"),
    ];
    let yaml =
        recommend(&Traffic::from_events(&events), &Options::default()).render(&["test".into()]);
    load(&yaml);
    let mut all = events.clone();
    all.push(flow(4, other(), ta(), "TCP", 8080, "deny"));
    all.push(flow(5, other(), ta(), "TCP", 9090, "deny"));
    let pods = pods_from_events(&all, &BTreeSet::new());
    let names = NameBook::from_events(&all);
    for posture in [Posture::Allow, Posture::Deny] {
        let engine = engine(
            &[("recommended.yaml", &yaml), ("pods.yaml", &pods)],
            posture,
        );
        assert!(
            evaluate(&engine, &all[0], &names).unwrap().allowed(),
            "{posture:?}: api -> trainer denied\n{yaml}"
        );
        for e in &all[3..] {
            assert_eq!(
                evaluate(&engine, e, &names).unwrap().action,
                Action::Deny,
                "{posture:?}: unobserved {} allowed\n{yaml}",
                e.id
            );
        }
    }
    assert!(yaml.contains("ml/bare not recommended as a peer"), "{yaml}");
}

/// Labels and namespaces in events are copied into selectors and `metadata.namespace`. On
/// the old code a label value or namespace the policy language rejects (an imported event,
/// or any component that does not check them) made the whole recommended file fail to
/// load, so nothing could be applied. Now such a workload gets no policy and is not written
/// as a peer (both noted); everything else is recommended as before.
#[test]
fn labels_and_namespaces_the_loader_rejects_never_break_the_file() {
    use palisade_observe::evaluate::{evaluate, NameBook};
    use palisade_observe::pods::pods_from_events;
    use palisade_policy::{Action, Posture};
    let weird = || {
        serde_json::json!({"kind": "pod", "namespace": "ml", "name": "weird-0",
            "workload": "ml/weird", "ip": "10.0.1.40",
            "labels": {"app": "weird", "team": "ml ops\n- {}"}})
    };
    let bad_ns = || {
        serde_json::json!({"kind": "pod", "namespace": "Bad NS", "name": "x-0",
            "workload": "Bad NS/x", "ip": "10.0.1.41", "labels": {"app": "x"}})
    };
    let api = || pod("ml", "api-0", "api", "10.0.1.31");
    let other = || pod("ml", "other-0", "other", "10.0.1.32");
    let events = vec![
        flow(1, api(), store(), "TCP", 8080, "allow"),
        flow(2, weird(), store(), "TCP", 8080, "allow"),
        flow(3, bad_ns(), store(), "TCP", 8080, "allow"),
        flow(4, store(), weird(), "TCP", 9000, "allow"),
    ];
    let yaml =
        recommend(&Traffic::from_events(&events), &Options::default()).render(&["test".into()]);
    let m = load(&yaml);
    let names: Vec<String> = m
        .objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::NetworkPolicy(p) => Some(p.metadata.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        ["recommended-api", "recommended-feature-store"],
        "{yaml}"
    );
    let mut all = events.clone();
    all.push(flow(5, other(), store(), "TCP", 8080, "deny"));
    let pods = pods_from_events(
        &[
            flow(6, api(), store(), "TCP", 8080, "allow"),
            all[4].clone(),
        ],
        &BTreeSet::new(),
    );
    let names = NameBook::from_events(&all);
    let engine = engine(
        &[("recommended.yaml", &yaml), ("pods.yaml", &pods)],
        Posture::Allow,
    );
    assert!(
        evaluate(&engine, &all[0], &names).unwrap().allowed(),
        "{yaml}"
    );
    assert_eq!(
        evaluate(&engine, &all[4], &names).unwrap().action,
        Action::Deny,
        "{yaml}"
    );
    assert!(yaml.contains("ml/weird"), "{yaml}");
}

/// Policy names are made from workload names (lower case, `[a-z0-9-]`, 63 characters), so
/// two workloads can map to one name: `ml/a.b` and `ml/a-b`, or two long names that differ
/// after the 63rd character. On the old code both got the same name and the file failed to
/// load (duplicate object). Now a name already taken in the namespace gets a suffix from the
/// workload key.
#[test]
fn workloads_whose_names_collide_get_distinct_policy_names() {
    let long = "a".repeat(70);
    let w = |name: &str, ip: &str| {
        serde_json::json!({"kind": "pod", "namespace": "ml", "name": format!("{name}-0"),
            "workload": format!("ml/{name}"), "ip": ip, "labels": {"app": name.replace('.', "-").chars().take(63).collect::<String>(), "v": ip.replace('.', "-")}})
    };
    let events = vec![
        flow(1, w("a.b", "10.0.1.50"), store(), "TCP", 8080, "allow"),
        flow(2, w("a-b", "10.0.1.51"), store(), "TCP", 8080, "allow"),
        flow(
            3,
            w(&format!("{long}1"), "10.0.1.52"),
            store(),
            "TCP",
            8080,
            "allow",
        ),
        flow(
            4,
            w(&format!("{long}2"), "10.0.1.53"),
            store(),
            "TCP",
            8080,
            "allow",
        ),
        http(
            5,
            w("a.b", "10.0.1.50"),
            "hub.example.com",
            "GET",
            "/x",
            "allow",
        ),
        http(
            6,
            w("a-b", "10.0.1.51"),
            "hub.example.com",
            "GET",
            "/y",
            "allow",
        ),
    ];
    let yaml =
        recommend(&Traffic::from_events(&events), &Options::default()).render(&["test".into()]);
    let m = load(&yaml);
    let mut names = BTreeSet::new();
    for o in &m.objects {
        let name = match &o.object {
            Object::NetworkPolicy(p) => format!("NetworkPolicy {}", p.metadata.name),
            Object::SecurityPolicy(p) => format!("SecurityPolicy {}", p.metadata.name),
            _ => continue,
        };
        assert!(names.insert(name.clone()), "{name} twice\n{yaml}");
    }
    // Four workloads and the store, two of them with egress by name.
    assert_eq!(names.len(), 7, "{names:?}");
}

/// Under federation a flow can come from a pod of another member cluster: its endpoint is a
/// pod whose workload is `cluster/namespace/name`. On the old code it was recommended like a
/// local workload: as a peer, a `podSelector` on its labels in the local namespace of the
/// same name, which selects this cluster's pods (never the remote one: selectors without
/// `cluster:` do not see remote workloads), so the local trainer, never seen, was allowed;
/// and it got a NetworkPolicy of its own applied to local pods. Now a workload of another
/// cluster is neither a subject nor a peer of a recommended NetworkPolicy (noted).
#[test]
fn a_workload_of_another_cluster_is_not_recommended_as_a_local_one() {
    use palisade_observe::evaluate::{evaluate, NameBook};
    use palisade_observe::pods::pods_from_events;
    use palisade_policy::{Action, Posture};
    let remote = || {
        serde_json::json!({"kind": "pod", "namespace": "ml", "name": "trainer-0",
            "workload": "east/ml/trainer-0", "ip": "10.9.0.5", "labels": {"app": "trainer"}})
    };
    let api = || pod("ml", "api-0", "api", "10.0.1.31");
    let local_trainer = || trainer("trainer-a", "10.0.1.5");
    let events = vec![
        flow(1, api(), store(), "TCP", 8080, "allow"),
        flow(2, remote(), store(), "TCP", 8080, "allow"),
        flow(3, store(), remote(), "TCP", 9000, "allow"),
    ];
    let yaml =
        recommend(&Traffic::from_events(&events), &Options::default()).render(&["test".into()]);
    let m = load(&yaml);
    let unobserved = flow(4, local_trainer(), store(), "TCP", 8080, "deny");
    let pods = pods_from_events(&[events[0].clone(), unobserved.clone()], &BTreeSet::new());
    let names = NameBook::from_events(&events);
    let engine = engine(
        &[("recommended.yaml", &yaml), ("pods.yaml", &pods)],
        Posture::Allow,
    );
    assert!(
        evaluate(&engine, &events[0], &names).unwrap().allowed(),
        "{yaml}"
    );
    assert_eq!(
        evaluate(&engine, &unobserved, &names).unwrap().action,
        Action::Deny,
        "the local trainer was allowed\n{yaml}"
    );
    let names: Vec<String> = m
        .objects
        .iter()
        .filter_map(|o| match &o.object {
            Object::NetworkPolicy(p) => Some(p.metadata.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        ["recommended-api", "recommended-feature-store"],
        "{yaml}"
    );
    assert!(yaml.contains("east/ml/trainer-0"), "{yaml}");
}

/// `replay` and the recommend tests rebuild pods from events. On the old code a pod of
/// another member cluster (workload `east/ml/trainer-0`) was rebuilt as a local pod, and
/// merged with this cluster's pod of the same namespace and name: the one seen last gave
/// both its address and labels, so the local `ml/trainer-0` became `app: evil` at
/// 10.9.0.5 in the what-if engine. Now pods of other clusters are not rebuilt.
#[test]
fn pods_of_another_cluster_are_not_rebuilt_as_local_ones() {
    use palisade_observe::pods::pods_from_events;
    let local = || trainer("trainer-0", "10.0.1.5");
    let remote = || {
        serde_json::json!({"kind": "pod", "namespace": "ml", "name": "trainer-0",
            "workload": "east/ml/trainer-0", "ip": "10.9.0.5", "labels": {"app": "evil"}})
    };
    let events = vec![
        flow(1, local(), store(), "TCP", 8080, "allow"),
        flow(2, remote(), store(), "TCP", 8080, "allow"),
    ];
    let pods = pods_from_events(&events, &BTreeSet::new());
    assert!(
        pods.contains("10.0.1.5") && pods.contains("app: trainer"),
        "{pods}"
    );
    assert!(
        !pods.contains("10.9.0.5") && !pods.contains("evil"),
        "{pods}"
    );
}
