//! Evaluating one rule (chain) and running its actions.

use super::collect::{collect, Cand};
use super::data::Data;
use super::expand::expand;
use super::{MatchedRule, State, Transaction};
use crate::actions::{Ctl, Effect, IdRanges, SetOp};
use crate::operators::{parse_int, Captures};
use crate::ruleset::rule::Rule;
use crate::ruleset::Ruleset;
use crate::transforms::Transform;
use std::borrow::Cow;
use std::sync::Arc;

/// A value after transformations: borrowed, cached, or fresh.
enum Val<'a> {
    B(&'a [u8]),
    A(Arc<Vec<u8>>),
    O(Vec<u8>),
}

impl std::ops::Deref for Val<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Val::B(b) => b,
            Val::A(a) => a,
            Val::O(o) => o,
        }
    }
}

/// `None` when no transformation changed the value.
fn apply_chain(chain: &[Transform], v: &[u8]) -> Option<Vec<u8>> {
    let mut cur: Cow<'_, [u8]> = Cow::Borrowed(v);
    for t in chain {
        let next = t.apply(&cur);
        if let Cow::Owned(o) = next {
            cur = Cow::Owned(o);
        }
    }
    match cur {
        Cow::Borrowed(_) => None,
        Cow::Owned(o) => Some(o),
    }
}

fn transformed<'a>(cache: &mut super::TransformCache, c: &'a Cand<'a>, rule: &Rule) -> Val<'a> {
    let chain = &rule.actions.transforms;
    if chain.is_empty() {
        return Val::B(&c.value);
    }
    match c.slot {
        Some(slot) => {
            let key = (slot, rule.transform_key);
            if let Some(v) = cache.get(&key) {
                return match v {
                    Some(a) => Val::A(a.clone()),
                    None => Val::B(&c.value),
                };
            }
            match apply_chain(chain, &c.value) {
                Some(v) => {
                    let a = Arc::new(v);
                    cache.insert(key, Some(a.clone()));
                    Val::A(a)
                }
                None => {
                    cache.insert(key, None);
                    Val::B(&c.value)
                }
            }
        }
        None => match apply_chain(chain, &c.value) {
            Some(v) => Val::O(v),
            None => Val::B(&c.value),
        },
    }
}

fn in_ranges(r: &IdRanges, id: u32) -> bool {
    r.iter().any(|(a, b)| (*a..=*b).contains(&id))
}

impl Transaction<'_> {
    /// Whether the whole chain starting at rule `idx` matches. Non-disruptive actions
    /// (setvar, ctl) of a link run for every value that matches it, as ModSecurity does.
    pub(crate) fn eval_chain(&mut self, idx: usize) -> bool {
        let rs = self.rs;
        let mut link = &rs.rules[idx];
        self.st.matched_vars.clear();
        loop {
            if !self.eval_link(idx, link) {
                return false;
            }
            match link.chain.as_deref() {
                Some(n) => link = n,
                None => return true,
            }
        }
    }

    fn eval_link(&mut self, idx: usize, rule: &Rule) -> bool {
        let rs = self.rs;
        if rule.is_action {
            run_effects(rs, &self.data, &mut self.st, rule);
            return true;
        }
        let detector = &*rs.detector;
        let param: Cow<'_, [u8]> = match rule.op.param_macro() {
            Some(m) => expand(&self.data, &self.st, rule, m),
            None => Cow::Borrowed(b""),
        };
        let data = &self.data;
        // Room for the usual targets (ARGS|ARGS_NAMES|cookies|headers) without regrowing.
        let p = &data.parsed;
        let mut cands = Vec::with_capacity(
            8 + 2 * (data.args_get.len() + p.args_post.len() + data.cookies.len())
                + data.headers.len(),
        );
        collect(
            data,
            &self.st,
            &rule.targets,
            self.st.removed_targets.get(&idx),
            &mut cands,
        );
        let st = &mut self.st;
        let negated = rule.op.negated;
        let want_caps = rule.actions.capture && !negated;
        let mut caps: Captures = Vec::new();
        let mut any = false;
        for c in &cands {
            let hit: Option<Vec<u8>> = if rule.actions.multi_match {
                let mut cur: Vec<u8> = c.value.to_vec();
                let mut found = None;
                let mut steps = vec![cur.clone()];
                for t in &rule.actions.transforms {
                    let n = t.apply(&cur).into_owned();
                    if n != cur {
                        steps.push(n.clone());
                    }
                    cur = n;
                }
                for v in steps {
                    let r = rule
                        .op
                        .eval(&v, &param, detector, want_caps.then_some(&mut caps));
                    if r != negated {
                        found = Some(v);
                        break;
                    }
                }
                found
            } else {
                let v = transformed(&mut st.cache, c, rule);
                let r = rule
                    .op
                    .eval(&v, &param, detector, want_caps.then_some(&mut caps));
                (r != negated).then(|| v.to_vec())
            };
            let Some(v) = hit else { continue };
            any = true;
            if want_caps && !caps.is_empty() {
                for (i, g) in caps.iter().enumerate() {
                    st.tx.insert(i.to_string(), g.clone());
                }
            }
            let name = c.name();
            st.matched_var.clone_from(&v);
            st.matched_var_name.clone_from(&name);
            st.matched_vars.push((name, v));
            run_effects(rs, data, st, rule);
        }
        any
    }

    /// Records a matched rule (severity, log entry).
    pub(crate) fn run_actions(&mut self, idx: usize, disruptive: bool) {
        let rs = self.rs;
        let rule = &rs.rules[idx];
        if let Some(s) = rule.actions.severity {
            if self.st.highest_severity.is_none_or(|h| s < h) {
                self.st.highest_severity = Some(s);
            }
        }
        if rule.actions.log == Some(true) {
            let text = |m: &Option<crate::macros::Macro>| {
                m.as_ref()
                    .map(|m| {
                        String::from_utf8_lossy(&expand(&self.data, &self.st, rule, m)).into_owned()
                    })
                    .unwrap_or_default()
            };
            let msg = text(&rule.actions.msg);
            let data = text(&rule.actions.logdata);
            self.st.log.push(MatchedRule {
                id: rule.id,
                phase: rule.phase,
                msg,
                data,
                severity: rule.actions.severity,
                operator: rule.op.name,
                tags: rule.actions.tags.clone(),
                matched_var_name: String::from_utf8_lossy(&self.st.matched_var_name).into_owned(),
                disruptive,
            });
        }
    }
}

fn run_effects(rs: &Ruleset, data: &Data, st: &mut State, rule: &Rule) {
    for e in &rule.actions.effects {
        match e {
            Effect::SetVar(sv) => setvar(data, st, rule, sv),
            Effect::Ctl(c) => ctl(rs, st, c),
        }
    }
}

fn setvar(data: &Data, st: &mut State, rule: &Rule, sv: &crate::actions::SetVar) {
    if !sv.tx {
        return;
    }
    let name = String::from_utf8_lossy(&expand(data, st, rule, &sv.name)).to_ascii_lowercase();
    match &sv.op {
        SetOp::Delete => {
            st.tx.remove(&name);
        }
        SetOp::Set(v) => {
            let v = expand(data, st, rule, v).into_owned();
            st.tx.insert(name, v);
        }
        SetOp::Add(v) | SetOp::Sub(v) => {
            let n = parse_int(&expand(data, st, rule, v));
            let cur = st.tx.get(&name).map(|c| parse_int(c)).unwrap_or(0);
            let r = if matches!(sv.op, SetOp::Add(_)) {
                cur.saturating_add(n)
            } else {
                cur.saturating_sub(n)
            };
            st.tx.insert(name, r.to_string().into_bytes());
        }
    }
}

fn mark_removed(rs: &Ruleset, st: &mut State, pred: impl Fn(&Rule) -> bool) {
    if st.removed.len() < rs.rules.len() {
        st.removed.resize(rs.rules.len(), false);
    }
    for (i, r) in rs.rules.iter().enumerate() {
        if pred(r) {
            st.removed[i] = true;
        }
    }
}

fn remove_targets(
    rs: &Ruleset,
    st: &mut State,
    pred: impl Fn(&Rule) -> bool,
    t: &[crate::variables::Target],
) {
    for (i, r) in rs.rules.iter().enumerate() {
        if pred(r) {
            let e = st.removed_targets.entry(i).or_default();
            e.extend(t.iter().cloned().map(|mut x| {
                x.exclude = true;
                x
            }));
        }
    }
}

fn ctl(rs: &Ruleset, st: &mut State, c: &Ctl) {
    match c {
        Ctl::RuleEngine(m) => st.engine = Some(*m),
        Ctl::RuleRemoveById(r) => mark_removed(rs, st, |x| in_ranges(r, x.id)),
        Ctl::RuleRemoveByTag(t) => mark_removed(rs, st, |x| x.has_tag_pattern(t)),
        Ctl::RuleRemoveByMsg(m) => mark_removed(rs, st, |x| m.matches(&x.msg_text())),
        Ctl::RuleRemoveTargetById(r, t) => remove_targets(rs, st, |x| in_ranges(r, x.id), t),
        Ctl::RuleRemoveTargetByTag(tag, t) => remove_targets(rs, st, |x| x.has_tag_pattern(tag), t),
        Ctl::RuleRemoveTargetByMsg(m, t) => remove_targets(rs, st, |x| m.matches(&x.msg_text()), t),
        Ctl::RequestBodyProcessor(p) => st.body_processor = Some(*p),
        Ctl::RequestBodyAccess(b) => st.body_access = Some(*b),
        Ctl::ForceRequestBodyVariable(b) => st.force_body_variable = *b,
        Ctl::Ignored => {}
    }
}
