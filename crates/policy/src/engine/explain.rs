//! Explanations: every stage considered for a flow, in words and as data.

use super::eval::Tracer;
use super::*;

/// One step of an evaluation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Direction.
    pub direction: Direction,
    /// Stage.
    pub stage: Stage,
    /// `allow`, `deny`, `pass`, `isolated`, `not-selected`, `default-allow`, `default-deny`,
    /// `host-network`, `local-node`.
    pub outcome: String,
    /// The rule, when a rule acted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// Whether this step belongs to the audit pass (Audit-mode policies included).
    pub audit_pass: bool,
    /// In words.
    pub text: String,
}

impl Step {
    fn new(
        direction: Direction,
        stage: Stage,
        outcome: &str,
        policy: Option<PolicyRef>,
        text: String,
    ) -> Self {
        Step {
            direction,
            stage,
            outcome: outcome.to_string(),
            policy,
            audit_pass: false,
            text,
        }
    }

    pub(crate) fn host_network(dir: Direction, pod: &PodInfo) -> Self {
        Step::new(
            dir,
            Stage::Default,
            "host-network",
            None,
            format!(
                "{} uses the host network: node traffic, not subject to pod policy",
                pod.key()
            ),
        )
    }

    pub(crate) fn local_node(pod: &PodInfo) -> Self {
        Step::new(
            Direction::Ingress,
            Stage::Namespace,
            "local-node",
            None,
            format!(
                "from {}'s own node: NetworkPolicy always allows it",
                pod.key()
            ),
        )
    }

    pub(crate) fn rule(e: &Engine, rid: u32, outcome: &str, l7: bool) -> Self {
        let r = &e.rules[rid as usize];
        let p = &e.policies[r.policy as usize];
        let dirname = match r.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };
        let mut text = match r.stage {
            Stage::Namespace => format!(
                "{}{} rule {}[{}] allows",
                p.display(),
                mode_note(p),
                dirname,
                r.index
            ),
            _ => {
                let name = r
                    .name
                    .as_ref()
                    .map(|n| format!(" '{n}'"))
                    .unwrap_or_default();
                let prio = p
                    .priority
                    .map(|x| format!(" (priority {x})"))
                    .unwrap_or_default();
                let verb = match outcome {
                    "allow" => "Allow",
                    "deny" => "Deny",
                    _ => "Pass",
                };
                format!(
                    "{}{} rule {}[{}]{name} {verb}{prio}",
                    p.display(),
                    mode_note(p),
                    dirname,
                    r.index
                )
            }
        };
        if l7 {
            text.push_str(" (HTTP rules apply per request)");
        }
        let dv = DirVerdict {
            direction: r.direction,
            allowed: outcome == "allow",
            stage: r.stage,
            reason: Reason::RuleAllowed,
            rule: Some(rid),
            policy: Some(r.policy),
            l7,
        };
        Step::new(r.direction, r.stage, outcome, e.policy_ref(&dv), text)
    }

    pub(crate) fn no_rule_allows(
        e: &Engine,
        dir: Direction,
        pod: &PodInfo,
        policies: &[u32],
        with_audit: bool,
    ) -> Self {
        let isolating: Vec<u32> = policies
            .iter()
            .copied()
            .filter(|&p| with_audit || e.policies[p as usize].mode == crate::model::Mode::Enforce)
            .collect();
        let names: Vec<String> = isolating
            .iter()
            .map(|&p| e.policies[p as usize].display())
            .collect();
        // The same policy `eval_dir` reports: the first one that isolates in this pass.
        let first = isolating.first().map(|&p| DirVerdict {
            direction: dir,
            allowed: false,
            stage: Stage::Namespace,
            reason: Reason::NoRuleAllows,
            rule: None,
            policy: Some(p),
            l7: false,
        });
        Step::new(
            dir,
            Stage::Namespace,
            "isolated",
            first.and_then(|d| e.policy_ref(&d)),
            format!(
                "{} is selected by {} and no rule allows",
                pod.key(),
                names.join(", ")
            ),
        )
    }

    pub(crate) fn not_isolated(dir: Direction, pod: &PodInfo) -> Self {
        let d = match dir {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };
        Step::new(
            dir,
            Stage::Namespace,
            "not-selected",
            None,
            format!(
                "no NetworkPolicy or SecurityPolicy selects {} for {d}",
                pod.key()
            ),
        )
    }

    pub(crate) fn default_posture(dir: Direction, posture: Posture) -> Self {
        let (o, t) = match posture {
            Posture::Allow => (
                "default-allow",
                "default posture allows (Kubernetes default)",
            ),
            Posture::Deny => ("default-deny", "default posture denies (zero trust)"),
        };
        Step::new(dir, Stage::Default, o, None, t.to_string())
    }
}

fn mode_note(p: &PolicyInfo) -> &'static str {
    match p.mode {
        crate::model::Mode::Audit => " [Audit]",
        crate::model::Mode::Enforce => "",
    }
}

struct Recorder {
    steps: Vec<Step>,
    audit: bool,
}

impl Tracer for Recorder {
    fn step(&mut self, f: impl FnOnce() -> Step) {
        let mut s = f();
        s.audit_pass = self.audit;
        self.steps.push(s);
    }
    fn set_audit_pass(&mut self, on: bool) {
        self.audit = on;
    }
}

/// A verdict with every step that led to it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// `allow`, `deny` or `audit`.
    pub verdict: Action,
    /// The deciding rule in the events schema's shape (`null` for default allow).
    pub policy: Option<PolicyRef>,
    /// The steps, egress first.
    pub steps: Vec<Step>,
    /// One line: `egress: … → ingress: … → allowed`.
    pub summary: String,
    /// Per direction.
    pub egress: Option<DirVerdict>,
    /// Per direction.
    pub ingress: Option<DirVerdict>,
}

impl Engine {
    /// The verdict for a flow with every stage considered.
    pub fn explain(&self, flow: &Flow<'_>) -> Explanation {
        let mut rec = Recorder {
            steps: Vec::new(),
            audit: false,
        };
        let v = self.evaluate(flow, &mut rec);
        let policy = v.decisive().and_then(|d| self.policy_ref(d));
        let mut parts: Vec<String> = Vec::new();
        let mut last_dir: Option<(Direction, bool)> = None;
        for s in &rec.steps {
            let d = match s.direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            };
            let key = (s.direction, s.audit_pass);
            if last_dir != Some(key) {
                let prefix = if s.audit_pass { "audit pass, " } else { "" };
                parts.push(format!("{prefix}{d}: {}", s.text));
                last_dir = Some(key);
            } else {
                parts.push(s.text.clone());
            }
        }
        let end = match v.action {
            Action::Allow => "allowed",
            Action::Deny => "denied",
            Action::Audit => "allowed (audit: would be denied)",
        };
        parts.push(end.to_string());
        Explanation {
            verdict: v.action,
            policy,
            summary: parts.join(" → "),
            steps: rec.steps,
            egress: v.egress,
            ingress: v.ingress,
        }
    }
}
