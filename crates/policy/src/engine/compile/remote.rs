//! Workloads of other member clusters: added as peer-only pods in per-cluster namespaces, so
//! peers with `cluster:` can select them and their IPs identify them in flows. They are never
//! subjects of this cluster's policies, and selectors without `cluster:` never see them.

use super::Builder;
use crate::engine::{NsInfo, PodId, PodInfo};
use crate::model::RemoteWorkload;
use std::collections::HashMap;
use std::net::IpAddr;

impl Builder {
    pub(super) fn add_remote_workloads(
        &mut self,
        workloads: &[RemoteWorkload],
        ip_index: &mut HashMap<IpAddr, PodId>,
    ) {
        let mut ns_ids: HashMap<(String, String), u32> = HashMap::new();
        for w in workloads {
            if w.cluster == self.cluster {
                // Our own workloads come from our own manifests.
                continue;
            }
            let key = (w.cluster.clone(), w.namespace.clone());
            let nid = *ns_ids.entry(key).or_insert_with(|| {
                let mut labels = w.namespace_labels.clone();
                labels.insert("kubernetes.io/metadata.name".into(), w.namespace.clone());
                self.namespaces.push(NsInfo {
                    name: w.namespace.clone(),
                    labels,
                    pods: Vec::new(),
                    declared: true,
                    cluster: Some(w.cluster.clone()),
                });
                self.namespaces.len() as u32 - 1
            });
            let id = self.pods.len() as PodId;
            let ips: Vec<IpAddr> = w.ips.iter().filter_map(|s| s.parse().ok()).collect();
            for ip in &ips {
                // A local pod keeps its IP: overlapping pod CIDRs resolve to this cluster.
                ip_index.entry(*ip).or_insert(id);
            }
            self.namespaces[nid as usize].pods.push(id);
            self.pods.push(PodInfo {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                labels: w.labels.clone(),
                ips,
                host_network: false,
                node: None,
                service_account: None,
                ports: Vec::new(),
                workload: format!("{}/{}/{}", w.cluster, w.namespace, w.name),
                cluster: Some(w.cluster.clone()),
                ns_id: nid,
            });
        }
    }

    /// The namespace `name` of member cluster `cluster`, if it has workloads.
    pub(super) fn remote_namespace(&self, cluster: &str, name: &str) -> Option<u32> {
        self.namespaces
            .iter()
            .position(|n| n.cluster.as_deref() == Some(cluster) && n.name == name)
            .map(|i| i as u32)
    }
}
