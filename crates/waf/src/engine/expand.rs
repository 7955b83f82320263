//! `%{...}` expansion against the transaction.

use super::collect::collect;
use super::data::Data;
use super::State;
use crate::macros::{Macro, Part, RuleField};
use crate::ruleset::rule::Rule;
use crate::variables::{Selector, Target};
use std::borrow::Cow;

/// Expands `m`; references to missing variables expand to nothing.
pub(crate) fn expand<'m>(data: &Data, st: &State, rule: &Rule, m: &'m Macro) -> Cow<'m, [u8]> {
    if let Some(l) = m.literal() {
        return Cow::Borrowed(l);
    }
    let mut out = Vec::new();
    for p in &m.parts {
        match p {
            Part::Lit(l) => out.extend_from_slice(l),
            Part::Var(crate::variables::Var::Tx, Some(key)) => {
                if let Some(v) = st.tx.get(key.as_str()) {
                    out.extend_from_slice(v);
                }
            }
            Part::Var(var, key) => {
                let t = Target {
                    var: *var,
                    selector: match key {
                        Some(k) => Selector::Key(k.clone()),
                        None => Selector::All,
                    },
                    count: false,
                    exclude: false,
                };
                let mut c = Vec::new();
                collect(data, st, std::slice::from_ref(&t), None, &mut c);
                if let Some(first) = c.first() {
                    out.extend_from_slice(&first.value);
                }
            }
            Part::Rule(f) => match f {
                RuleField::Id => out.extend_from_slice(rule.id.to_string().as_bytes()),
                RuleField::Phase => out.extend_from_slice(rule.phase.to_string().as_bytes()),
                RuleField::Severity => {
                    if let Some(s) = rule.actions.severity {
                        out.extend_from_slice(s.to_string().as_bytes());
                    }
                }
                RuleField::Msg => {
                    if let Some(msg) = &rule.actions.msg {
                        out.extend_from_slice(&expand_plain(data, st, rule, msg));
                    }
                }
                RuleField::Logdata => {
                    if let Some(ld) = &rule.actions.logdata {
                        out.extend_from_slice(&expand_plain(data, st, rule, ld));
                    }
                }
            },
        }
    }
    Cow::Owned(out)
}

/// Expansion without `%{rule.msg}`/`%{rule.logdata}` recursion.
fn expand_plain(data: &Data, st: &State, rule: &Rule, m: &Macro) -> Vec<u8> {
    let filtered = Macro {
        parts: m
            .parts
            .iter()
            .filter(|p| !matches!(p, Part::Rule(RuleField::Msg | RuleField::Logdata)))
            .cloned()
            .collect(),
    };
    expand(data, st, rule, &filtered).into_owned()
}
