//! "What if": recorded flows and requests evaluated against a proposed policy set, listing
//! every one whose verdict would change, with the rule that would decide it.

use std::collections::BTreeMap;

use palisade_events::{Event, EventBody, Verdict};
use palisade_policy::Engine;
use serde::Serialize;

use crate::evaluate::{evaluate, event_verdict, NameBook};

/// Flows (or requests) with the same endpoints, port and verdicts, grouped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Source (`namespace/pod`, or an address).
    pub source: String,
    /// Source workload, when a pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_workload: Option<String>,
    /// Destination (`namespace/pod`, a name, or an address).
    pub destination: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: String,
    /// HTTP method, for requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP path, for requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Recorded events in the group.
    pub count: u64,
    /// The recorded verdict.
    pub old: Verdict,
    /// The verdict under the proposed policies.
    pub new: Verdict,
    /// The policy that decided when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_policy: Option<palisade_events::PolicyRef>,
    /// The policy that would decide (none: the default posture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_policy: Option<palisade_policy::PolicyRef>,
    /// The first event of the group.
    pub first_event: String,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Events evaluated.
    pub evaluated: u64,
    /// Of those, events whose verdict stays.
    pub unchanged: u64,
    /// Events that are not connections or requests (DNS, alerts, flow ends) or lack what
    /// evaluation needs.
    pub skipped: u64,
    /// Groups whose verdict would change.
    pub changes: Vec<Change>,
}

type GroupKey = (
    String,
    String,
    u16,
    String,
    Option<String>,
    Option<String>,
    u8,
    u8,
);

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => 0,
        Verdict::Audit => 1,
        Verdict::Deny => 2,
    }
}

/// Evaluates every flow and HTTP event of `events` with `proposed`.
pub fn replay<'a>(proposed: &Engine, events: impl IntoIterator<Item = &'a Event>) -> ReplayReport {
    let mut report = ReplayReport::default();
    let mut groups: BTreeMap<GroupKey, Change> = BTreeMap::new();
    let events: Vec<&Event> = events.into_iter().collect();
    let names = NameBook::from_events(events.iter().copied());
    for e in events {
        let v = match evaluate(proposed, e, &names) {
            Ok(v) => v,
            Err(_) => {
                report.skipped += 1;
                continue;
            }
        };
        report.evaluated += 1;
        // An event without a verdict was not stopped.
        let old = e.verdict.unwrap_or(Verdict::Allow);
        let new = event_verdict(v.action);
        if old == new {
            report.unchanged += 1;
            continue;
        }
        let (src, dst) = match (&e.source, &e.destination) {
            (Some(s), Some(d)) => (s, d),
            _ => continue,
        };
        let (method, path) = match &e.body {
            EventBody::Http(h) => (h.method.clone(), h.path.clone()),
            _ => (None, None),
        };
        let destination = match (&e.body, dst.kind) {
            (EventBody::Http(h), k)
                if k != palisade_events::EndpointKind::Pod && dst.fqdn.is_none() =>
            {
                h.host.clone().unwrap_or_else(|| dst.display_name())
            }
            _ => dst.display_name(),
        };
        let protocol = crate::evaluate::protocol_name(e.protocol);
        let port = dst.port.unwrap_or(0);
        let key: GroupKey = (
            src.display_name(),
            destination.clone(),
            port,
            protocol.to_string(),
            method.clone(),
            path.clone(),
            rank(old),
            rank(new),
        );
        let decided = v.decisive().and_then(|d| proposed.policy_ref(d));
        groups
            .entry(key)
            .and_modify(|c| c.count += 1)
            .or_insert_with(|| Change {
                source: src.display_name(),
                source_workload: src.workload.clone(),
                destination,
                port,
                protocol: protocol.to_string(),
                method,
                path,
                count: 1,
                old,
                new,
                old_policy: e.policy.clone(),
                new_policy: decided,
                first_event: e.id.clone(),
            });
    }
    report.changes = groups.into_values().collect();
    report
}

/// Methods, paths and names in events are what a pod sent (or what an imported file says):
/// printed escaped.
use palisade_policy::diag::printable;

/// One line per change: `allow → deny  src → dst:port/PROTO [METHOD path] (×N)  by RULE`.
pub fn format_change(c: &Change) -> String {
    let req = match (&c.method, &c.path) {
        (Some(m), Some(p)) => format!(" {} {}", printable(m), printable(p)),
        (Some(m), None) => format!(" {}", printable(m)),
        _ => String::new(),
    };
    let by = match &c.new_policy {
        Some(p) => format!(
            "{} {}{} {} ({} stage)",
            p.kind,
            p.namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            p.name,
            p.rule,
            stage_name(p.stage)
        ),
        None => "default posture".into(),
    };
    format!(
        "{} -> {}  {} -> {}:{}/{}{}  (x{})  by {}",
        c.old,
        c.new,
        printable(&c.source),
        printable(&c.destination),
        c.port,
        c.protocol,
        req,
        c.count,
        by
    )
}

/// The events-schema name of a stage.
pub fn stage_name(s: palisade_policy::Stage) -> &'static str {
    match s {
        palisade_policy::Stage::Admin => "admin",
        palisade_policy::Stage::Namespace => "namespace",
        palisade_policy::Stage::Baseline => "baseline",
        palisade_policy::Stage::Default => "default",
    }
}

/// The engine a proposed policy set gives: every object of `proposed` (its policies, and
/// any workloads it declares), the namespaces, pods and services of `current` that
/// `proposed` does not declare (its policies are left out: the proposal replaces them),
/// and pods rebuilt from `events` for those neither declares (pods that are gone).
pub fn proposed_engine<'a>(
    current: Option<&palisade_policy::Manifests>,
    proposed: &palisade_policy::Manifests,
    events: impl IntoIterator<Item = &'a Event>,
    posture: palisade_policy::Posture,
) -> Engine {
    use palisade_policy::model::Object;
    use std::collections::BTreeSet;
    let key = |o: &Object| -> Option<String> {
        match o {
            Object::Namespace(n) => Some(format!("Namespace {}", n.metadata.name)),
            Object::Node(n) => Some(format!("Node {}", n.metadata.name)),
            Object::Pod(p) => Some(format!(
                "Pod {}/{}",
                p.metadata.namespace.as_deref().unwrap_or("default"),
                p.metadata.name
            )),
            Object::Service(s) => Some(format!(
                "Service {}/{}",
                s.metadata.namespace.as_deref().unwrap_or("default"),
                s.metadata.name
            )),
            _ => None,
        }
    };
    let mut merged = palisade_policy::Manifests::new();
    merged.objects.clone_from(&proposed.objects);
    let declared: BTreeSet<String> = merged
        .objects
        .iter()
        .filter_map(|o| key(&o.object))
        .collect();
    if let Some(cur) = current {
        merged.objects.extend(
            cur.objects
                .iter()
                .filter(|o| key(&o.object).is_some_and(|k| !declared.contains(&k)))
                .cloned(),
        );
    }
    let pods: BTreeSet<String> = merged
        .objects
        .iter()
        .filter_map(|o| key(&o.object))
        .filter_map(|k| k.strip_prefix("Pod ").map(str::to_string))
        .collect();
    let rebuilt = crate::pods::pods_from_events(events, &pods);
    let mut extra = palisade_policy::Manifests::new();
    extra.add_file("<pods from recorded events>", &rebuilt);
    merged.objects.extend(extra.objects);
    Engine::compile_with(&palisade_policy::Snapshot::from_manifests(&merged), posture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_line_escapes_what_a_pod_sent() {
        let c = Change {
            source: "ml/trainer-0".into(),
            source_workload: None,
            destination: "hub.test".into(),
            port: 443,
            protocol: "TCP".into(),
            method: Some("GET".into()),
            path: Some("/x\u{1b}]2;owned\u{7}\nallow -> allow  fake line".into()),
            count: 1,
            old: Verdict::Allow,
            new: Verdict::Deny,
            old_policy: None,
            new_policy: None,
            first_event: "e1".into(),
        };
        let line = format_change(&c);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains(" GET /x\\u{1b}]2;owned\\u{7}\\nallow -> allow  fake line  (x1)"),
            "{line}"
        );
    }
}
