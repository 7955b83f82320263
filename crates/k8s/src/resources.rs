//! The API resources Palisade watches: the kinds of `palisade_policy::model::KINDS`, with
//! the group, version and plural the API server serves them under.

/// One watched resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// `Pod`.
    pub kind: &'static str,
    /// `""` for the core group.
    pub group: &'static str,
    /// `v1`.
    pub version: &'static str,
    /// `pods`.
    pub plural: &'static str,
    /// Namespaced or cluster scoped.
    pub namespaced: bool,
    /// Whether Palisade owns the kind and writes its `status` (its CRDs).
    pub palisade_owned: bool,
}

impl Resource {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// The collection path across namespaces: `/api/v1/pods`, `/apis/g/v/plural`.
    pub fn collection_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}/{}", self.version, self.plural)
        } else {
            format!("/apis/{}/{}/{}", self.group, self.version, self.plural)
        }
    }
}

const fn r(
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    namespaced: bool,
    palisade_owned: bool,
) -> Resource {
    Resource {
        kind,
        group,
        version,
        plural,
        namespaced,
        palisade_owned,
    }
}

/// Every resource the controller watches, workloads first.
pub const RESOURCES: &[Resource] = &[
    r("Namespace", "", "v1", "namespaces", false, false),
    r("Node", "", "v1", "nodes", false, false),
    r("Pod", "", "v1", "pods", true, false),
    r("Service", "", "v1", "services", true, false),
    r(
        "NetworkPolicy",
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        true,
        false,
    ),
    r(
        "AdminNetworkPolicy",
        "policy.networking.k8s.io",
        "v1alpha1",
        "adminnetworkpolicies",
        false,
        false,
    ),
    r(
        "BaselineAdminNetworkPolicy",
        "policy.networking.k8s.io",
        "v1alpha1",
        "baselineadminnetworkpolicies",
        false,
        false,
    ),
    r(
        "SecurityPolicy",
        "palisade.dev",
        "v1alpha1",
        "securitypolicies",
        true,
        true,
    ),
    r(
        "ClusterSecurityPolicy",
        "palisade.dev",
        "v1alpha1",
        "clustersecuritypolicies",
        false,
        true,
    ),
    r(
        "AIGateway",
        "palisade.dev",
        "v1alpha1",
        "aigateways",
        true,
        true,
    ),
    r(
        "PalisadeConfig",
        "palisade.dev",
        "v1alpha1",
        "palisadeconfigs",
        false,
        true,
    ),
];

/// The resource of a kind.
pub fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_policy_model_kinds() {
        assert_eq!(RESOURCES.len(), palisade_policy::model::KINDS.len());
        for (api_version, kind, namespaced) in palisade_policy::model::KINDS {
            let r = by_kind(kind).unwrap_or_else(|| panic!("{kind} not watched"));
            assert_eq!(r.api_version(), *api_version, "{kind}");
            assert_eq!(r.namespaced, *namespaced, "{kind}");
        }
        for c in crate::crd::KINDS {
            let r = by_kind(c.kind).unwrap();
            assert!(r.palisade_owned);
            assert_eq!(r.plural, c.plural);
        }
        assert_eq!(by_kind("Pod").unwrap().collection_path(), "/api/v1/pods");
        assert_eq!(
            by_kind("AdminNetworkPolicy").unwrap().collection_path(),
            "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies"
        );
    }
}
