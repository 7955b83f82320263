//! Federation inputs that are not manifests: which cluster this engine enforces for (its
//! name and labels, which `ClusterSecurityPolicy.spec.clusters` selects on), and the
//! workloads other member clusters publish, which peers with `cluster:` select.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The label every cluster carries with its own name, so `clusters:` can select by name.
pub const CLUSTER_NAME_LABEL: &str = "palisade.dev/cluster";

/// The member cluster an engine is compiled for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// Cluster name.
    pub name: String,
    /// Cluster labels (the name label is added implicitly).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl ClusterIdentity {
    /// The labels `clusters:` selectors match: the given ones plus the name label.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(CLUSTER_NAME_LABEL.to_string(), self.name.clone());
        l
    }
}

/// A workload another member cluster runs, as it publishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemoteWorkload {
    /// The cluster it runs in.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Labels of its namespace (`kubernetes.io/metadata.name` is added implicitly).
    #[serde(default)]
    pub namespace_labels: BTreeMap<String, String>,
    /// Pod IPs.
    #[serde(default)]
    pub ips: Vec<String>,
}
