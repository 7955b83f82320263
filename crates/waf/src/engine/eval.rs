//! Evaluating one rule (chain) and running its actions.

use super::collect::{collect, Cand};
use super::data::Data;
use super::expand::expand;
use super::tcache::apply_one;
use super::{MatchedRule, State, Transaction};
use crate::actions::{Ctl, Effect, IdRanges, SetOp};
use crate::operators::{parse_int, Captures};
use crate::ruleset::rule::{Rule, TagPattern};
use crate::ruleset::Ruleset;
use crate::transforms::Transform;
use crate::variables::{Selector, Target, Var};
use std::borrow::Cow;

/// The chain applied to a value that has no cache slot; `None` when unchanged.
fn apply_chain(chain: &[Transform], v: &[u8]) -> Option<Vec<u8>> {
    let mut cur: Option<Vec<u8>> = None;
    for &t in chain {
        if let Some(n) = apply_one(t, cur.as_deref().unwrap_or(v)) {
            cur = Some(n);
        }
    }
    cur
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
        if rule.universe {
            let node = rule.transform_key;
            if let (Some(g), Some(Some(pf))) = (rule.prefilter, rs.prefilters.get(node as usize)) {
                let values = super::collect::universe(&self.data);
                if !self.st.cache.any_may_match(&rs.tnodes, pf, node, g, values) {
                    return false;
                }
            }
        }
        if let Some(key) = single_tx_key(rule) {
            if !self.st.removed_targets.contains_key(&idx) {
                return self.eval_tx_link(rule, key);
            }
        }
        let detector = &*rs.detector;
        let param: Cow<'_, [u8]> = match rule.op.param_macro() {
            Some(m) => expand(&self.data, &self.st, rule, m),
            None => Cow::Borrowed(b""),
        };
        let data = &self.data;
        let mut cands = recycle(std::mem::take(&mut self.cand_buf));
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
                let mut found = None;
                let mut cur: Cow<'_, [u8]> = Cow::Borrowed(&c.value);
                if rule
                    .op
                    .eval(&cur, &param, detector, want_caps.then_some(&mut caps))
                    != negated
                {
                    found = Some(cur.to_vec());
                } else {
                    for &t in &rule.actions.transforms {
                        let Some(n) = apply_one(t, &cur).filter(|n| n[..] != cur[..]) else {
                            continue;
                        };
                        cur = Cow::Owned(n);
                        let r =
                            rule.op
                                .eval(&cur, &param, detector, want_caps.then_some(&mut caps));
                        if r != negated {
                            found = Some(cur.to_vec());
                            break;
                        }
                    }
                }
                found
            } else if let Some(slot) = c.slot {
                let node = rule.transform_key;
                let e = st.cache.entry(&rs.tnodes, slot, &c.value, node);
                let possible = match (&rule.prefilter, rs.prefilters.get(node as usize)) {
                    (Some(g), Some(Some(pf))) => st.cache.may_match(pf, e, &c.value, *g),
                    _ => true,
                };
                let v = st.cache.value(e, &c.value);
                let r = possible
                    && rule
                        .op
                        .eval(v, &param, detector, want_caps.then_some(&mut caps));
                (r != negated).then(|| v.to_vec())
            } else {
                let t = apply_chain(&rule.actions.transforms, &c.value);
                let v = t.as_deref().unwrap_or(&c.value);
                let r = rule
                    .op
                    .eval(v, &param, detector, want_caps.then_some(&mut caps));
                (r != negated).then(|| v.to_vec())
            };
            let Some(v) = hit else { continue };
            any = true;
            let caps = want_caps.then_some(&caps[..]);
            record_match(rs, data, st, rule, c.name(), v, caps);
        }
        self.cand_buf = recycle(cands);
        any
    }

    /// [`Transaction::eval_link`] for a rule whose one target is `TX:key` (CRS's many
    /// paranoia-level and score checks): the value is read in place, with no candidate
    /// list and no copies unless it matches.
    fn eval_tx_link(&mut self, rule: &Rule, key: &str) -> bool {
        let st = &self.st;
        let Some(raw) = st.tx.get(key) else {
            return false;
        };
        let param: Cow<'_, [u8]> = match rule.op.param_macro() {
            Some(m) => expand(&self.data, st, rule, m),
            None => Cow::Borrowed(b""),
        };
        let t = apply_chain(&rule.actions.transforms, raw);
        let v = t.as_deref().unwrap_or(raw);
        let want_caps = rule.actions.capture && !rule.op.negated;
        let mut caps: Captures = Vec::new();
        let hit = rule.op.eval(
            v,
            &param,
            &*self.rs.detector,
            want_caps.then_some(&mut caps),
        ) != rule.op.negated;
        if !hit {
            return false;
        }
        let v = v.to_vec();
        drop(param);
        let mut name = Var::Tx.name().as_bytes().to_vec();
        name.push(b':');
        name.extend_from_slice(key.as_bytes());
        let caps = want_caps.then_some(&caps[..]);
        record_match(self.rs, &self.data, &mut self.st, rule, name, v, caps);
        true
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

/// A value `name` = `v` matched `rule`'s link: its captures become `TX:0`…, it becomes
/// `MATCHED_VAR(_NAME)` and joins `MATCHED_VARS`, and the link's non-disruptive actions run.
fn record_match(
    rs: &Ruleset,
    data: &Data,
    st: &mut State,
    rule: &Rule,
    name: Vec<u8>,
    v: Vec<u8>,
    caps: Option<&[Vec<u8>]>,
) {
    for (i, g) in caps.unwrap_or(&[]).iter().enumerate() {
        st.tx.insert(i.to_string(), g.clone());
    }
    st.matched_var.clone_from(&v);
    st.matched_var_name.clone_from(&name);
    st.matched_vars.push((name, v));
    run_effects(rs, data, st, rule);
}

/// The key when `rule` looks at exactly one `TX:key` (not counted, not multiMatch).
fn single_tx_key(rule: &Rule) -> Option<&str> {
    match &rule.targets[..] {
        [Target {
            var: Var::Tx,
            selector: Selector::Key(k),
            count: false,
            exclude: false,
        }] if !rule.actions.multi_match => Some(k),
        _ => None,
    }
}

/// An emptied candidate list with its allocation, for another borrow of the data (the
/// in-place `collect` keeps the buffer: same element layout, no element to map).
fn recycle<'b>(mut v: Vec<Cand<'_>>) -> Vec<Cand<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!()).collect()
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

/// The rules a `ctl:` selector names: by id ranges, or resolved once by tag or message.
fn selected(rs: &Ruleset, by: Sel<'_>, f: &mut impl FnMut(usize)) {
    match by {
        Sel::Ids(r) => {
            for (i, x) in rs.rules.iter().enumerate() {
                if r.iter().any(|&(a, b)| (a..=b).contains(&x.id)) {
                    f(i);
                }
            }
        }
        Sel::Tag(t) => t
            .rules(&rs.rules, false)
            .iter()
            .for_each(|&i| f(i as usize)),
        Sel::Msg(m) => m.rules(&rs.rules, true).iter().for_each(|&i| f(i as usize)),
    }
}

#[derive(Clone, Copy)]
enum Sel<'a> {
    Ids(&'a IdRanges),
    Tag(&'a TagPattern),
    Msg(&'a TagPattern),
}

fn mark_removed(rs: &Ruleset, st: &mut State, by: Sel<'_>) {
    if st.removed.len() < rs.rules.len() {
        st.removed.resize(rs.rules.len(), false);
    }
    selected(rs, by, &mut |i| st.removed[i] = true);
}

fn remove_targets(rs: &Ruleset, st: &mut State, by: Sel<'_>, t: &[crate::variables::Target]) {
    selected(rs, by, &mut |i| {
        let e = st.removed_targets.entry(i).or_default();
        e.extend(t.iter().cloned().map(|mut x| {
            x.exclude = true;
            x
        }));
    });
}

fn ctl(rs: &Ruleset, st: &mut State, c: &Ctl) {
    match c {
        Ctl::RuleEngine(m) => st.engine = Some(*m),
        Ctl::RuleRemoveById(r) => mark_removed(rs, st, Sel::Ids(r)),
        Ctl::RuleRemoveByTag(t) => mark_removed(rs, st, Sel::Tag(t)),
        Ctl::RuleRemoveByMsg(m) => mark_removed(rs, st, Sel::Msg(m)),
        Ctl::RuleRemoveTargetById(r, t) => remove_targets(rs, st, Sel::Ids(r), t),
        Ctl::RuleRemoveTargetByTag(tag, t) => remove_targets(rs, st, Sel::Tag(tag), t),
        Ctl::RuleRemoveTargetByMsg(m, t) => remove_targets(rs, st, Sel::Msg(m), t),
        Ctl::RequestBodyProcessor(p) => st.body_processor = Some(*p),
        Ctl::RequestBodyAccess(b) => st.body_access = Some(*b),
        Ctl::ForceRequestBodyVariable(b) => st.force_body_variable = *b,
        Ctl::Ignored => {}
    }
}
