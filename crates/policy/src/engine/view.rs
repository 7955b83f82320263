//! A read-only view of the compiled rules, for dataplanes that turn them into something
//! else (the node agent's nftables ruleset). Semantics stay in the engine: the view only
//! exposes what was compiled, in evaluation order.

use super::*;

/// One compiled rule.
#[derive(Debug, Clone, Copy)]
pub struct RuleView<'a> {
    /// Rule id (stable within one engine).
    pub id: u32,
    /// Policy id.
    pub policy: u32,
    /// Direction.
    pub direction: Direction,
    /// Index within the policy's rules of that direction.
    pub index: u32,
    /// Rule name.
    pub name: Option<&'a str>,
    /// Allow, Deny or Pass.
    pub action: AdminAction,
    /// Stage.
    pub stage: Stage,
    /// Tier rank: 0 security, 1 admin, 2 ClusterSecurityPolicy baseline, 3 BANP, 9 namespace.
    /// `Pass` skips the rest of its rank.
    pub tier_rank: u8,
    /// Peers (`None`: any).
    pub peers: Option<&'a [PeerMatch]>,
    /// Ports (`None`: any).
    pub ports: Option<&'a [PortMatch]>,
    /// Whether the rule has HTTP conditions (enforced per request by a gateway).
    pub has_http: bool,
    /// Whether the rule's policy is in Audit mode.
    pub audit: bool,
}

/// The rules for one pod and direction, in evaluation order.
#[derive(Debug, Clone, Copy)]
pub struct DirRulesView<'a> {
    /// Tiered cluster rules (security, admin).
    pub tiered: &'a [u32],
    /// Namespaced policies isolating the pod (Audit-mode ones included: check their mode).
    pub ns_policies: &'a [u32],
    /// Allow rules of those policies.
    pub ns_rules: &'a [u32],
    /// Baseline rules.
    pub baseline: &'a [u32],
}

impl Engine {
    /// A rule by id.
    pub fn rule(&self, id: u32) -> RuleView<'_> {
        let r = &self.rules[id as usize];
        RuleView {
            id,
            policy: r.policy,
            direction: r.direction,
            index: r.index,
            name: r.name.as_deref(),
            action: r.action,
            stage: r.stage,
            tier_rank: r.tier_rank,
            peers: r.peers.as_deref(),
            ports: r.ports.as_deref(),
            has_http: !r.http.is_empty(),
            audit: r.audit,
        }
    }

    /// Number of compiled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The rules of one pod in one direction.
    pub fn pod_rules(&self, pod: PodId, dir: Direction) -> DirRulesView<'_> {
        let d = self.per_pod[pod as usize].dir(dir);
        DirRulesView {
            tiered: &d.tiered,
            ns_policies: &d.ns_policies,
            ns_rules: &d.ns_rules,
            baseline: &d.baseline,
        }
    }

    /// A pod set referenced by [`PeerMatch::Pods`].
    pub fn pod_set(&self, id: u32) -> &PodSet {
        &self.sets[id as usize]
    }

    /// Whether a policy denies nothing (Audit mode).
    pub fn policy_is_audit(&self, id: u32) -> bool {
        self.policies[id as usize].mode == Mode::Audit
    }
}
