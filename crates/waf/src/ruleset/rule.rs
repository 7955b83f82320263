//! One compiled rule (a chain is a rule with `chain` set to the next link).

use crate::actions::{Actions, Disruptive};
use crate::operators::Operator;
use crate::parser::Directive;
use crate::variables::{parse_targets, Target};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Rule {
    /// The rule id (chain links carry their chain starter's id).
    pub(crate) id: u32,
    pub(crate) file: Arc<Path>,
    pub(crate) line: usize,
    /// Empty for `SecAction`.
    pub(crate) targets: Vec<Target>,
    pub(crate) op: Operator,
    pub(crate) actions: Actions,
    pub(crate) phase: u8,
    /// What `block` means for this rule (the phase's default disruptive action).
    pub(crate) block_as: Disruptive,
    pub(crate) chain: Option<Box<Rule>>,
    /// Interned id of `actions.transforms` for the per-transaction cache.
    pub(crate) transform_key: u32,
    pub(crate) is_action: bool,
    /// This link's group in the literal prefilter of node `transform_key` (its `@rx`
    /// can only match values where one of the group's literals occurs); `None`: no
    /// prefilter.
    pub(crate) prefilter: Option<u32>,
    /// Prefiltered, not negated, and every target is among the request's arguments,
    /// cookies and XML: when none of those values has a literal of the group, the link
    /// cannot match, without collecting its targets.
    pub(crate) universe: bool,
}

impl Rule {
    /// Parses `SecRule VARS OP [ACTIONS]` or `SecAction ACTIONS`.
    pub(crate) fn parse(d: &Directive, warnings: &mut Vec<String>) -> Result<Rule, String> {
        let is_action = d.name.eq_ignore_ascii_case("SecAction");
        let (targets, op_text, actions_text) = if is_action {
            match d.args.as_slice() {
                [a] => (Vec::new(), "@unconditionalMatch", a.as_str()),
                [] => return Err("expects an action list".into()),
                _ => return Err("expects one argument (the action list); check quoting".into()),
            }
        } else {
            match d.args.as_slice() {
                [v, o] => (parse_targets(v)?, o.as_str(), ""),
                [v, o, a] => (parse_targets(v)?, o.as_str(), a.as_str()),
                _ => {
                    return Err(format!(
                        "expects VARIABLES OPERATOR [ACTIONS], got {} arguments; check quoting",
                        d.args.len()
                    ))
                }
            }
        };
        let dir = d.file.parent().unwrap_or(Path::new("."));
        let (op, w) = Operator::compile(op_text, dir)?;
        warnings.extend(w);
        let actions = Actions::parse(actions_text)?;
        Ok(Rule {
            id: actions.id.unwrap_or(0),
            file: d.file.clone(),
            line: d.line,
            targets,
            op,
            phase: actions.phase.unwrap_or(2),
            actions,
            block_as: Disruptive::Pass,
            chain: None,
            transform_key: 0,
            is_action,
            prefilter: None,
            universe: false,
        })
    }

    /// The last link of the chain.
    pub(crate) fn last_link_mut(&mut self) -> &mut Rule {
        match self.chain {
            Some(ref mut c) => c.last_link_mut(),
            None => self,
        }
    }

    pub(crate) fn links(&self) -> impl Iterator<Item = &Rule> {
        std::iter::successors(Some(self), |r| r.chain.as_deref())
    }

    pub(crate) fn links_mut(&mut self, f: &mut impl FnMut(&mut Rule)) {
        f(self);
        if let Some(c) = self.chain.as_deref_mut() {
            c.links_mut(f);
        }
    }

    pub(crate) fn has_tag(&self, pat: &str) -> bool {
        self.actions.tags.iter().any(|t| tag_matches(pat, t))
    }

    pub(crate) fn has_tag_pattern(&self, pat: &TagPattern) -> bool {
        self.actions.tags.iter().any(|t| pat.matches(t))
    }

    pub(crate) fn msg_text(&self) -> String {
        self.actions
            .msg
            .as_ref()
            .and_then(|m| m.literal())
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default()
    }
}

/// `SecRuleRemoveByTag` and friends: exact match, or a regex match when the pattern is a
/// valid regex (ModSecurity v2 semantics).
pub(crate) fn tag_matches(pat: &str, tag: &str) -> bool {
    if pat == tag {
        return true;
    }
    regex::Regex::new(pat)
        .map(|r| r.is_match(tag))
        .unwrap_or(false)
}

/// A tag or message selector of `ctl:`, compiled once.
#[derive(Debug, Clone)]
pub(crate) struct TagPattern {
    text: String,
    re: Option<regex::Regex>,
    /// The rules (indices) it selects, resolved on first use against the ruleset that
    /// holds it (rules never change after build).
    resolved: std::sync::OnceLock<Box<[u32]>>,
}

impl TagPattern {
    pub(crate) fn new(text: &str) -> TagPattern {
        // Plain names (the usual case) compare exactly; anything with regex syntax is
        // also tried as a regex, as ModSecurity v2 did.
        let plain = !text.contains(['^', '$', '*', '+', '?', '(', '[', '|', '\\', '.', '{']);
        TagPattern {
            text: text.to_string(),
            re: if plain {
                None
            } else {
                regex::Regex::new(text).ok()
            },
            resolved: std::sync::OnceLock::new(),
        }
    }

    /// Indices of the rules whose tags (`by_msg`: message) match, computed once.
    pub(crate) fn rules(&self, rules: &[Rule], by_msg: bool) -> &[u32] {
        self.resolved.get_or_init(|| {
            (0..rules.len() as u32)
                .filter(|&i| {
                    let r = &rules[i as usize];
                    if by_msg {
                        self.matches(&r.msg_text())
                    } else {
                        r.has_tag_pattern(self)
                    }
                })
                .collect()
        })
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        self.text == s || self.re.as_ref().is_some_and(|r| r.is_match(s))
    }
}
