//! Evaluation of one flow. Generic over a tracer so `verdict` pays nothing for the
//! explanation that `explain` records.

use super::explain::Step;
use super::*;

/// Receives evaluation steps; the closure runs only when tracing.
pub(crate) trait Tracer {
    fn step(&mut self, f: impl FnOnce() -> Step);
    fn set_audit_pass(&mut self, _on: bool) {}
}

/// The tracer that records nothing.
pub(crate) struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn step(&mut self, _f: impl FnOnce() -> Step) {}
}

impl Engine {
    /// The verdict for a flow.
    pub fn verdict(&self, flow: &Flow<'_>) -> Verdict {
        self.evaluate(flow, &mut NoTrace)
    }

    pub(crate) fn evaluate<T: Tracer>(&self, flow: &Flow<'_>, t: &mut T) -> Verdict {
        let (egress, ingress) = self.eval_flow(flow, false, t);
        let ok = |d: &Option<DirVerdict>| d.is_none_or(|d| d.allowed);
        if !(ok(&egress) && ok(&ingress)) {
            return Verdict {
                action: Action::Deny,
                egress,
                ingress,
                audit: None,
            };
        }
        if self.flow_has_audit(flow) {
            t.set_audit_pass(true);
            let (ae, ai) = self.eval_flow(flow, true, t);
            t.set_audit_pass(false);
            let denied = [ae, ai].into_iter().flatten().find(|d| !d.allowed);
            if let Some(d) = denied {
                return Verdict {
                    action: Action::Audit,
                    egress,
                    ingress,
                    audit: Some(d),
                };
            }
        }
        Verdict {
            action: Action::Allow,
            egress,
            ingress,
            audit: None,
        }
    }

    fn flow_has_audit(&self, flow: &Flow<'_>) -> bool {
        let e = matches!(flow.src, Endpoint::Pod(p) if self.fast.audit(p, Direction::Egress));
        let i = matches!(flow.dst, Endpoint::Pod(p) if self.fast.audit(p, Direction::Ingress));
        e || i
    }

    fn eval_flow<T: Tracer>(
        &self,
        flow: &Flow<'_>,
        with_audit: bool,
        t: &mut T,
    ) -> (Option<DirVerdict>, Option<DirVerdict>) {
        // A pod of another member cluster is a peer only: its own cluster enforces its side.
        let egress = match flow.src {
            Endpoint::Pod(p) if self.pods[p as usize].cluster.is_none() => {
                Some(self.eval_dir(p, Direction::Egress, &flow.dst, flow, with_audit, t))
            }
            _ => None,
        };
        let ingress = match flow.dst {
            Endpoint::Pod(p) if self.pods[p as usize].cluster.is_none() => {
                Some(self.eval_dir(p, Direction::Ingress, &flow.src, flow, with_audit, t))
            }
            _ => None,
        };
        (egress, ingress)
    }

    pub(crate) fn eval_dir<T: Tracer>(
        &self,
        me: PodId,
        dir: Direction,
        other: &Endpoint<'_>,
        flow: &Flow<'_>,
        with_audit: bool,
        t: &mut T,
    ) -> DirVerdict {
        let (fd, rules) = self.fast.dir(me, dir);
        let pod = &self.pods[me as usize];
        if fd.host_network {
            t.step(|| Step::host_network(dir, pod));
            return DirVerdict {
                direction: dir,
                allowed: true,
                stage: Stage::Default,
                reason: Reason::HostNetwork,
                rule: None,
                policy: None,
                l7: false,
            };
        }
        let dst_pod = match (dir, other) {
            (Direction::Ingress, _) => Some(me),
            (Direction::Egress, Endpoint::Pod(p)) => Some(*p),
            _ => None,
        };
        // 1. Tiered cluster rules.
        if let Some(v) = self.walk_tiered(
            rules.tiered,
            dir,
            other,
            flow,
            dst_pod,
            with_audit,
            Stage::Admin,
            t,
        ) {
            return v;
        }
        // 2. Namespaced policy.
        let mut isolating = rules
            .ns_policies
            .iter()
            .copied()
            .filter(|&p| with_audit || self.fast.enforced[p as usize]);
        if let Some(first) = isolating.next() {
            if dir == Direction::Ingress && self.is_from_local_node(me, other) {
                t.step(|| Step::local_node(pod));
                return DirVerdict {
                    direction: dir,
                    allowed: true,
                    stage: Stage::Namespace,
                    reason: Reason::LocalNode,
                    rule: None,
                    policy: None,
                    l7: false,
                };
            }
            for &rid in rules.ns_rules {
                let r = &self.fast.rules[rid as usize];
                if r.audit && !with_audit {
                    continue;
                }
                if let Some(l7) = self.rule_matches(rid, other, flow, dst_pod) {
                    t.step(|| Step::rule(self, rid, "allow", l7));
                    return DirVerdict {
                        direction: dir,
                        allowed: true,
                        stage: Stage::Namespace,
                        reason: Reason::RuleAllowed,
                        rule: Some(rid),
                        policy: Some(r.policy),
                        l7,
                    };
                }
            }
            t.step(|| Step::no_rule_allows(self, dir, pod, rules.ns_policies, with_audit));
            return DirVerdict {
                direction: dir,
                allowed: false,
                stage: Stage::Namespace,
                reason: Reason::NoRuleAllows,
                rule: None,
                policy: Some(first),
                l7: false,
            };
        }
        t.step(|| Step::not_isolated(dir, pod));
        // 3. Baseline.
        if let Some(v) = self.walk_tiered(
            rules.baseline,
            dir,
            other,
            flow,
            dst_pod,
            with_audit,
            Stage::Baseline,
            t,
        ) {
            return v;
        }
        // 4. Default posture.
        let allowed = self.posture == Posture::Allow;
        t.step(|| Step::default_posture(dir, self.posture));
        DirVerdict {
            direction: dir,
            allowed,
            stage: Stage::Default,
            reason: Reason::Posture,
            rule: None,
            policy: None,
            l7: false,
        }
    }

    /// NetworkPolicy ingress: "Traffic is allowed to a pod if there are no NetworkPolicies
    /// selecting the pod [...], OR if the traffic source is the pod's local node" (types.go).
    /// The node is its `spec.nodeName`: a host-network pod there, or one of the node's
    /// addresses (pods' `status.hostIP`, host-network pods' IPs). Without a node name
    /// nothing is local.
    fn is_from_local_node(&self, me: PodId, other: &Endpoint<'_>) -> bool {
        let Some(node) = self.pods[me as usize].node.as_deref() else {
            return false;
        };
        match other {
            Endpoint::Pod(p) => {
                let p = &self.pods[*p as usize];
                p.host_network && p.cluster.is_none() && p.node.as_deref() == Some(node)
            }
            Endpoint::Ip(ip) => self
                .node_addrs
                .get(node)
                .is_some_and(|addrs| addrs.contains(ip)),
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_tiered<T: Tracer>(
        &self,
        list: &[u32],
        dir: Direction,
        other: &Endpoint<'_>,
        flow: &Flow<'_>,
        dst_pod: Option<PodId>,
        with_audit: bool,
        stage: Stage,
        t: &mut T,
    ) -> Option<DirVerdict> {
        let mut skip_tier = u8::MAX;
        for &rid in list {
            let r = &self.fast.rules[rid as usize];
            if r.tier_rank == skip_tier || (r.audit && !with_audit) {
                continue;
            }
            let Some(l7) = self.rule_matches(rid, other, flow, dst_pod) else {
                continue;
            };
            match r.action {
                AdminAction::Pass => {
                    t.step(|| Step::rule(self, rid, "pass", false));
                    skip_tier = r.tier_rank;
                }
                action => {
                    let allowed = action == AdminAction::Allow;
                    t.step(|| Step::rule(self, rid, if allowed { "allow" } else { "deny" }, l7));
                    return Some(DirVerdict {
                        direction: dir,
                        allowed,
                        stage,
                        reason: if allowed {
                            Reason::RuleAllowed
                        } else {
                            Reason::RuleDenied
                        },
                        rule: Some(rid),
                        policy: Some(r.policy),
                        l7: allowed && l7,
                    });
                }
            }
        }
        None
    }

    /// `None`: the rule does not match. `Some(l7)`: it matches; `l7` when it matched at the
    /// connection level and its HTTP conditions are left to the gateway.
    #[inline]
    pub(crate) fn rule_matches(
        &self,
        rid: u32,
        other: &Endpoint<'_>,
        flow: &Flow<'_>,
        dst_pod: Option<PodId>,
    ) -> Option<bool> {
        let f = &self.fast.rules[rid as usize];
        if let Some(peers) = self.fast.peers(f) {
            let matched = peers.iter().any(|&p| {
                self.fast.peer_matches(p, other, |i| {
                    let r = &self.rules[rid as usize];
                    r.peers
                        .as_deref()
                        .and_then(|ps| ps.get(i as usize))
                        .is_some_and(|pm| self.peer_matches(pm, other))
                })
            });
            if !matched {
                return None;
            }
        }
        if !self.fast.ports_match(f, flow.port, flow.protocol, dst_pod) {
            return None;
        }
        if !f.http {
            return Some(false);
        }
        match &flow.http {
            Some(req) => {
                // An allowing condition must hold for every reading of the path; a denying
                // (or passing) one for any (`http_path`).
                let allow = f.action == AdminAction::Allow;
                self.rules[rid as usize]
                    .http
                    .iter()
                    .any(|h| http_matches(h, req, allow))
                    .then_some(false)
            }
            // A connection can be allowed pending per-request checks; it cannot be denied
            // (or passed) on requests it may never carry.
            None => (f.action == AdminAction::Allow).then_some(true),
        }
    }

    /// One peer that is not a pod set (the compact index answers those).
    fn peer_matches(&self, p: &PeerMatch, other: &Endpoint<'_>) -> bool {
        match (p, other) {
            (PeerMatch::Pods(s), Endpoint::Pod(id)) => self.sets[*s as usize].contains(*id),
            (PeerMatch::Block(b), Endpoint::Pod(id)) => {
                self.pods[*id as usize].ips.iter().any(|ip| b.matches(*ip))
            }
            (PeerMatch::Block(b), Endpoint::Ip(ip)) => b.matches(*ip),
            (PeerMatch::Block(b), Endpoint::Fqdn { ip: Some(ip), .. }) => b.matches(*ip),
            (PeerMatch::Fqdn(f), Endpoint::Fqdn { name, .. }) => f.matches(name),
            _ => false,
        }
    }
}

/// Whether `req` meets `h`; `allow`: for an allowing rule (see [`path_meets`]).
fn http_matches(h: &HttpMatch, req: &HttpRequest<'_>, allow: bool) -> bool {
    if !h.methods.is_empty() && !methods_meet(&h.methods, req, allow) {
        return false;
    }
    if let Some(p) = &h.path {
        if !path_meets(p, req.path, allow) {
            return false;
        }
    }
    h.headers
        .iter()
        .all(|hc| header_meets(hc, req.headers, allow))
}

/// Fields by which clients ask frameworks (Rails, Express's method-override, Google APIs)
/// to take the request as another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// A method condition against the request's method and any method it asks to be taken
/// as ([`METHOD_OVERRIDES`]): for an allowing rule all of them must be listed, for a
/// denying or passing one any.
fn methods_meet(methods: &[String], req: &HttpRequest<'_>, allow: bool) -> bool {
    let listed = |m: &str| methods.iter().any(|x| x.eq_ignore_ascii_case(m.trim()));
    let mut asked = std::iter::once(req.method).chain(
        req.headers
            .iter()
            .filter(|(n, _)| METHOD_OVERRIDES.iter().any(|o| n.eq_ignore_ascii_case(o)))
            .flat_map(|(_, v)| v.split(',')),
    );
    if allow {
        asked.all(listed)
    } else {
        asked.any(listed)
    }
}

/// A header condition against every field of that name (a request may repeat a field, and
/// servers differ on which one they read): for an allowing rule every field must meet it,
/// for a denying or passing one any field, or any element of a comma-separated list, does.
fn header_meets(hc: &HeaderCond, headers: &[(&str, &str)], allow: bool) -> bool {
    if hc.unusable {
        return !allow;
    }
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(&hc.name))
        .map(|(_, v)| *v)
        .peekable();
    if values.peek().is_none() {
        return !hc.present;
    }
    if !hc.present {
        return false;
    }
    let one = |v: &str| {
        hc.value.as_deref().is_none_or(|want| want == v)
            && hc.regex.as_ref().is_none_or(|re| re.is_match(v))
    };
    if allow {
        values.into_iter().all(one)
    } else {
        values
            .into_iter()
            .any(|v| one(v) || v.split(',').any(|e| one(e.trim())))
    }
}

/// A path condition against every reading of `path` (`crate::http_path::views`): for an
/// allowing rule all readings must meet it, for a denying or passing one any reading does.
/// A path with a malformed escape meets no allowing condition and every denying one.
fn path_meets(cond: &PathCond, path: &str, allow: bool) -> bool {
    let one = |path: &str| match cond {
        PathCond::Exact(e) => path == e,
        PathCond::Prefix(pre) => {
            path.starts_with(pre.as_str())
                && (pre.ends_with('/')
                    || path.len() == pre.len()
                    || path.as_bytes()[pre.len()] == b'/')
        }
        PathCond::Regex(re) => re.is_match(path),
        PathCond::Unusable => !allow,
    };
    if crate::http_path::is_plain(path) {
        return one(path);
    }
    match crate::http_path::views(path) {
        Ok(views) if allow => views.iter().all(|v| one(v)),
        Ok(views) => views.iter().any(|v| one(v)),
        Err(_) => !allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::palisade::{HeaderMatch, HttpRule, PathMatch};

    /// Validation refuses a regex that does not compile; one that reaches the compiler
    /// anyway fails closed: it meets no allowing rule and every denying one. (A pattern the
    /// compiler dropped used to leave the rule with no path condition: every path allowed.)
    #[test]
    fn a_regex_that_does_not_compile_fails_closed() {
        let rule = HttpRule {
            methods: vec![],
            path: Some(PathMatch {
                regex: Some("(unclosed".into()),
                ..Default::default()
            }),
            headers: vec![HeaderMatch {
                name: "X-Env".into(),
                regex: Some("[z-a]".into()),
                ..Default::default()
            }],
        };
        let m = &crate::engine::compile::kinds::compile_http(&[rule])[0];
        let path = m.path.as_ref().expect("the condition is kept");
        for p in ["/", "/models", "/a/../b"] {
            assert!(!path_meets(path, p, true), "{p} must not be allowed");
            assert!(path_meets(path, p, false), "{p} must be denied");
        }
        let h = &m.headers[0];
        assert!(!header_meets(h, &[("x-env", "prod")], true));
        assert!(header_meets(h, &[("x-env", "prod")], false));
    }
}
