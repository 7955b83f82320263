//! The controller's reconcile logic, pure: watch events in, a snapshot and status reports
//! out. No I/O and no clock, so it is tested on recorded API objects and event sequences
//! without a cluster.
//!
//! Every object is parsed and validated on its own (with the standalone mode's parser), so
//! an invalid object is reported and left out while every valid one stays enforced. A
//! snapshot exists only once every resource has been listed: enforcing pods before the
//! policies that isolate them would open what should be closed.

mod change;
mod project;
mod report;

pub use change::{Change, ChangeError};
pub use project::{fingerprint, project};
pub use report::{
    rfc3339, Condition, Report, ACCEPTED_MESSAGE, CONDITION_MESSAGE_MAX, EVENT_MESSAGE_MAX,
};

use crate::convert::{parse_object, Parsed};
use crate::resources::{Resource, RESOURCES};
use palisade_policy::load::LoadedObject;
use palisade_policy::{Diagnostic, Manifests, Severity, Snapshot};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// An object's identity: kind, namespace (empty when cluster scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Kind.
    pub kind: &'static str,
    /// Namespace, `""` for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    uid: String,
    generation: i64,
    fingerprint: u64,
    parsed: Parsed,
    /// What the API already shows (the status we wrote, or the last report sent).
    reported: Option<(i64, bool, String)>,
}

/// Per-resource watch state.
#[derive(Debug, Clone, Default)]
pub struct ResourceState {
    /// Listed at least once since the last expiry.
    pub synced: bool,
    /// The resourceVersion to resume watching from.
    pub resource_version: Option<String>,
    /// The API does not serve this resource (its CRD is not installed).
    pub absent: bool,
}

/// What applying one change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The set of enforced objects (or the problems) changed.
    pub changed: bool,
    /// The watch must start over with a list (410 Gone).
    pub relist: bool,
}

/// The reconciler: every watched object, parsed, by key.
#[derive(Debug, Default)]
pub struct Reconciler {
    resources: BTreeMap<&'static str, ResourceState>,
    objects: BTreeMap<Key, Entry>,
    dirty: BTreeSet<Key>,
    revision: u64,
}

impl Reconciler {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change of resource `res`.
    pub fn apply(&mut self, res: &'static Resource, change: Change) -> Outcome {
        match change {
            Change::Listed {
                items,
                resource_version,
                absent,
            } => {
                let mut changed = false;
                let mut seen = BTreeSet::new();
                for item in &items {
                    if let Some(key) = self.upsert(res, item, &mut changed) {
                        seen.insert(key);
                    }
                }
                let gone: Vec<Key> = self
                    .objects
                    .keys()
                    .filter(|k| k.kind == res.kind && !seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.objects.remove(&k);
                    self.dirty.remove(&k);
                    changed = true;
                }
                let st = self.resources.entry(res.kind).or_default();
                let first = !st.synced;
                st.synced = true;
                st.absent = absent;
                st.resource_version = Some(resource_version).filter(|v| !v.is_empty());
                self.bump(changed || first)
            }
            Change::Applied(obj) => {
                let mut changed = false;
                self.upsert(res, &obj, &mut changed);
                self.note_version(res, &obj);
                self.bump(changed)
            }
            Change::Deleted(obj) => {
                self.note_version(res, &obj);
                let key = key_of(res, &obj);
                let changed = key.is_some_and(|k| {
                    self.dirty.remove(&k);
                    self.objects.remove(&k).is_some()
                });
                self.bump(changed)
            }
            Change::Bookmark { resource_version } => {
                self.resources.entry(res.kind).or_default().resource_version =
                    Some(resource_version);
                Outcome::default()
            }
            Change::Expired => {
                // Keep the objects (the last good snapshot stays enforced); list again.
                let st = self.resources.entry(res.kind).or_default();
                st.resource_version = None;
                Outcome {
                    changed: false,
                    relist: true,
                }
            }
        }
    }

    fn bump(&mut self, changed: bool) -> Outcome {
        if changed {
            self.revision += 1;
        }
        Outcome {
            changed,
            relist: false,
        }
    }

    fn note_version(&mut self, res: &Resource, obj: &Value) {
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
            self.resources.entry(res.kind).or_default().resource_version = Some(rv.to_string());
        }
    }

    fn upsert(&mut self, res: &'static Resource, obj: &Value, changed: &mut bool) -> Option<Key> {
        let key = key_of(res, obj)?;
        let projected = project(res, obj);
        let fp = fingerprint(&projected);
        let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
        if let Some(e) = self.objects.get(&key) {
            if e.fingerprint == fp && e.generation == generation {
                return Some(key);
            }
        }
        let parsed = parse_object(res, &projected);
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let shown = if res.palisade_owned {
            report::shown_status(obj)
        } else {
            None
        };
        let reported = match self.objects.get(&key) {
            Some(e) if e.uid == uid => e.reported.clone().or(shown),
            _ => shown,
        };
        let mut entry = Entry {
            uid,
            generation,
            fingerprint: fp,
            parsed,
            reported,
        };
        let wanted = report::wanted(&entry.parsed, generation);
        // Kinds without a Palisade status only get news of trouble: a valid object that
        // was not refused before needs no report (150,000 pods must not make 150,000).
        let quiet = !res.palisade_owned
            && entry.parsed.is_valid()
            && entry.reported.as_ref().is_none_or(|r| r.1);
        if quiet {
            entry.reported = Some(wanted.clone());
        }
        if entry.reported.as_ref() != Some(&wanted) {
            self.dirty.insert(key.clone());
        }
        self.objects.insert(key.clone(), entry);
        *changed = true;
        Some(key)
    }

    /// Whether every resource has been listed (a snapshot can be built).
    pub fn synced(&self) -> bool {
        RESOURCES
            .iter()
            .all(|r| self.resources.get(r.kind).is_some_and(|s| s.synced))
    }

    /// The watch state of one resource.
    pub fn resource(&self, kind: &str) -> Option<&ResourceState> {
        self.resources.get(kind)
    }

    /// Increments whenever the enforced set or its problems change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The snapshot of every valid object, in key order; `None` until [`Self::synced`].
    pub fn snapshot(&self) -> Option<Snapshot> {
        if !self.synced() {
            return None;
        }
        let mut m = Manifests::new();
        m.objects = self
            .objects
            .values()
            .filter_map(|e| match &e.parsed {
                Parsed::Valid(lo, _) => Some(LoadedObject::clone(lo)),
                Parsed::Invalid(_) => None,
            })
            .collect();
        Some(Snapshot::from_manifests(&m))
    }

    /// Number of valid and invalid objects.
    pub fn counts(&self) -> (usize, usize) {
        let valid = self
            .objects
            .values()
            .filter(|e| e.parsed.is_valid())
            .count();
        (valid, self.objects.len() - valid)
    }

    /// Every problem of every object: errors of the invalid ones, warnings of the valid.
    pub fn diagnostics(&self) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for e in self.objects.values() {
            let diags = match &e.parsed {
                Parsed::Valid(_, d) | Parsed::Invalid(d) => d,
            };
            for d in diags {
                if d.severity == Severity::Error {
                    errors.push(d.clone());
                } else {
                    warnings.push(d.clone());
                }
            }
        }
        (errors, warnings)
    }

    /// The status updates and Events owed since the last call. The caller marks each as
    /// delivered with [`Self::delivered`]; an undelivered one is offered again next time.
    pub fn pending_reports(&self) -> Vec<Report> {
        self.dirty
            .iter()
            .filter_map(|k| {
                let e = self.objects.get(k)?;
                let res = crate::resources::by_kind(k.kind)?;
                Some(report::build(
                    res,
                    k,
                    &e.uid,
                    e.generation,
                    &e.parsed,
                    e.reported.as_ref(),
                ))
            })
            .collect()
    }

    /// Records that `report` reached the API.
    pub fn delivered(&mut self, report: &Report) {
        if let Some(e) = self.objects.get_mut(&report.key) {
            if e.uid == report.uid && e.generation == report.generation {
                e.reported = Some((report.generation, report.accepted, report.message.clone()));
                self.dirty.remove(&report.key);
            }
        }
    }
}

fn key_of(res: &'static Resource, obj: &Value) -> Option<Key> {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str()?.to_string();
    let namespace = if res.namespaced {
        meta["namespace"].as_str().unwrap_or("default").to_string()
    } else {
        String::new()
    };
    Some(Key {
        kind: res.kind,
        namespace,
        name,
    })
}
