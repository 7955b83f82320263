//! Events from the engine's types (feature `policy`): the pod endpoint and the deciding
//! rule, written the same way by every component (agent, DNS proxy, egress gateway).

use crate::{Endpoint, EndpointKind, PolicyRef, Verdict};
use palisade_policy::{Engine, PodId};
use std::net::IpAddr;

impl From<palisade_policy::PolicyRef> for PolicyRef {
    fn from(r: palisade_policy::PolicyRef) -> Self {
        PolicyRef {
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
            rule: Some(r.rule),
            stage: Some(
                match r.stage {
                    palisade_policy::Stage::Admin => "admin",
                    palisade_policy::Stage::Namespace => "namespace",
                    palisade_policy::Stage::Baseline => "baseline",
                    palisade_policy::Stage::Default => "default",
                }
                .to_string(),
            ),
            mode: Some(
                match r.mode {
                    palisade_policy::Mode::Enforce => "Enforce",
                    palisade_policy::Mode::Audit => "Audit",
                }
                .to_string(),
            ),
            federation_revision: r.federation_revision,
        }
    }
}

/// The endpoint for `pod` of `engine` (namespace, name, workload, labels, service account),
/// or an external one when the pod is unknown; with `ip`.
pub fn pod_endpoint(engine: Option<&Engine>, pod: Option<PodId>, ip: Option<IpAddr>) -> Endpoint {
    let info = engine.zip(pod).and_then(|(e, p)| e.pods().get(p as usize));
    let mut ep = match info {
        Some(p) => {
            let mut ep = Endpoint::pod(p.namespace.clone(), p.name.clone());
            ep.workload = Some(p.workload.clone());
            ep.labels = p.labels.clone();
            ep.service_account = p.service_account.clone();
            ep
        }
        None => Endpoint::new(EndpointKind::External),
    };
    ep.ip = ip;
    ep
}

/// `deny` when not allowed, `audit` when allowed only because an Audit-mode policy does
/// not enforce, else `allow`.
pub fn verdict(allowed: bool, audit: bool) -> Verdict {
    match (allowed, audit) {
        (false, _) => Verdict::Deny,
        (true, true) => Verdict::Audit,
        (true, false) => Verdict::Allow,
    }
}
