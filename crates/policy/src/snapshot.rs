//! A snapshot: every valid object of one consistent input, grouped by kind.

use crate::diag::Origin;
use crate::load::Manifests;
use crate::model::*;

/// Objects of one kind with where each was read.
pub type Sourced<T> = Vec<(T, Origin)>;

/// The workloads and policies Palisade enforces, as read.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Namespaces.
    pub namespaces: Sourced<Namespace>,
    /// Pods.
    pub pods: Sourced<Pod>,
    /// Services.
    pub services: Sourced<Service>,
    /// NetworkPolicies.
    pub network_policies: Sourced<NetworkPolicy>,
    /// AdminNetworkPolicies.
    pub admin_network_policies: Sourced<AdminNetworkPolicy>,
    /// BaselineAdminNetworkPolicies (at most one, named `default`).
    pub baseline_admin_network_policies: Sourced<BaselineAdminNetworkPolicy>,
    /// SecurityPolicies.
    pub security_policies: Sourced<SecurityPolicy>,
    /// ClusterSecurityPolicies.
    pub cluster_security_policies: Sourced<ClusterSecurityPolicy>,
    /// AIGateways.
    pub gateways: Sourced<AIGateway>,
    /// The runtime configuration, if one was among the manifests.
    pub config: Option<(PalisadeConfig, Origin)>,
}

impl Snapshot {
    /// Groups the valid objects of a manifest set.
    pub fn from_manifests(m: &Manifests) -> Self {
        let mut s = Snapshot::default();
        for lo in &m.objects {
            let o = lo.origin.clone();
            match &lo.object {
                Object::Namespace(x) => s.namespaces.push((x.clone(), o)),
                Object::Pod(x) => s.pods.push(((**x).clone(), o)),
                Object::Service(x) => s.services.push((x.clone(), o)),
                Object::NetworkPolicy(x) => s.network_policies.push((x.clone(), o)),
                Object::AdminNetworkPolicy(x) => s.admin_network_policies.push((x.clone(), o)),
                Object::BaselineAdminNetworkPolicy(x) => {
                    s.baseline_admin_network_policies.push((x.clone(), o))
                }
                Object::SecurityPolicy(x) => s.security_policies.push((x.clone(), o)),
                Object::ClusterSecurityPolicy(x) => {
                    s.cluster_security_policies.push((x.clone(), o))
                }
                Object::AIGateway(x) => s.gateways.push((x.clone(), o)),
                Object::PalisadeConfig(x) => s.config = Some((x.clone(), o)),
            }
        }
        s
    }

    /// The default posture the config sets (allow when there is no config).
    pub fn posture(&self) -> Posture {
        self.config
            .as_ref()
            .map(|(c, _)| c.spec.default_posture)
            .unwrap_or_default()
    }

    /// Number of policy objects of every kind.
    pub fn policy_count(&self) -> usize {
        self.network_policies.len()
            + self.admin_network_policies.len()
            + self.baseline_admin_network_policies.len()
            + self.security_policies.len()
            + self.cluster_security_policies.len()
    }
}
