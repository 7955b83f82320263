//! `replay`: a stricter policy set lists exactly the recorded flows and requests it would
//! now deny, with the rule that would decide.

use std::collections::BTreeSet;

use palisade_events::{Event, Verdict};
use palisade_observe::evaluate::{evaluate, event_verdict, NameBook};
use palisade_observe::recommend::{recommend, Options};
use palisade_observe::replay::{proposed_engine, replay};
use palisade_observe::traffic::Traffic;
use palisade_policy::{Manifests, Posture};

use super::support::*;

fn manifests(name: &str, text: &str) -> Manifests {
    let mut m = Manifests::new();
    m.add_file(name, text);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    m
}

/// The recorded events with the verdicts the policy in force (`current`) gave them.
fn recorded_under(current: &Manifests) -> Vec<Event> {
    let mut events = recorded();
    let engine = proposed_engine(None, current, &events, Posture::Allow);
    let names = NameBook::from_events(&events);
    for e in &mut events {
        if let Ok(v) = evaluate(&engine, e, &names) {
            e.verdict = Some(event_verdict(v.action));
            e.policy = v
                .decisive()
                .and_then(|d| engine.policy_ref(d))
                .map(Into::into);
        }
    }
    events
}

#[test]
fn stricter_policy_lists_exactly_the_flows_it_now_denies() {
    let traffic = Traffic::from_events(&recorded());
    let current_yaml = recommend(&traffic, &Options::default()).render(&[]);
    let current = manifests("current.yaml", &current_yaml);
    let events = recorded_under(&current);
    // The same policy changes nothing.
    let same = replay(
        &proposed_engine(None, &current, &events, Posture::Allow),
        &events,
    );
    assert!(same.changes.is_empty(), "{:#?}", same.changes);
    assert_eq!(same.evaluated, 13); // 14 recorded minus the DNS query
    assert_eq!(same.skipped, 1);
    // Stricter: no HEAD to the hub, no CDN name.
    let stricter_yaml = current_yaml
        .replace("methods: [GET, HEAD]", "methods: [GET]")
        .replace("  - to:\n    - fqdn: cdn-lfs.hf.co\n    ports:\n    - protocol: TCP\n      port: 443\n", "");
    assert_ne!(stricter_yaml, current_yaml);
    let stricter = manifests("stricter.yaml", &stricter_yaml);
    let report = replay(
        &proposed_engine(None, &stricter, &events, Posture::Allow),
        &events,
    );
    let ids: BTreeSet<&str> = report
        .changes
        .iter()
        .map(|c| c.first_event.as_str())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["e0007", "e0010"]),
        "{:#?}",
        report.changes
    );
    for c in &report.changes {
        assert_eq!((c.old, c.new), (Verdict::Allow, Verdict::Deny));
        assert_eq!(c.count, 1);
        let by = c.new_policy.as_ref().expect("deciding policy");
        assert_eq!(by.namespace.as_deref(), Some("ml"));
        assert!(by.name.starts_with("recommended-trainer"), "{by:?}");
    }
    let head = report
        .changes
        .iter()
        .find(|c| c.first_event == "e0007")
        .unwrap();
    assert_eq!(
        (head.method.as_deref(), head.path.as_deref()),
        (Some("HEAD"), Some("/api/models/gpt2"))
    );
    assert_eq!(head.destination, "huggingface.co");
    let cdn = report
        .changes
        .iter()
        .find(|c| c.first_event == "e0010")
        .unwrap();
    assert_eq!(
        (cdn.source.as_str(), cdn.destination.as_str(), cdn.port),
        ("ml/trainer-b", "198.51.100.9", 443)
    );
    assert_eq!(report.unchanged, 11);
}

#[test]
fn looser_policy_lists_what_it_would_newly_allow() {
    let traffic = Traffic::from_events(&recorded());
    let current_yaml = recommend(&traffic, &Options::default()).render(&[]);
    let events = recorded_under(&manifests("current.yaml", &current_yaml));
    // No policies at all under the Kubernetes default: the one denied flow would pass.
    let report = replay(
        &proposed_engine(None, &Manifests::new(), &events, Posture::Allow),
        &events,
    );
    assert_eq!(report.changes.len(), 1, "{:#?}", report.changes);
    let c = &report.changes[0];
    assert_eq!(
        (c.old, c.new, c.first_event.as_str()),
        (Verdict::Deny, Verdict::Allow, "e0013")
    );
    assert!(c.new_policy.is_none());
    assert_eq!(
        c.old_policy.as_ref().map(|p| p.kind.as_str()),
        Some("NetworkPolicy")
    );
}
