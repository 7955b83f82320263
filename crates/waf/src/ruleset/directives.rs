//! What each SecLang directive does to the builder.

use super::rule::{tag_matches, Rule};
use super::{EngineMode, Item, ItemBox, RulesetBuilder};
use crate::actions::{parse_id_ranges, split_actions, Actions, IdRanges};
use crate::error::LoadError;
use crate::parser::Directive;
use crate::variables::parse_targets;
use std::sync::Arc;

/// Directives that configure things this engine does not have (logs, temp dirs, …).
const IGNORED: &[&str] = &[
    "secauditengine",
    "secauditlog",
    "secauditlog2",
    "secauditlogparts",
    "secauditlogrelevantstatus",
    "secauditlogtype",
    "secauditlogformat",
    "secauditlogstoragedir",
    "secauditlogdirmode",
    "secauditlogfilemode",
    "secdebuglog",
    "secdebugloglevel",
    "sectmpdir",
    "secdatadir",
    "secuploaddir",
    "secuploadkeepfiles",
    "secuploadfilemode",
    "secuploadfilelimit",
    "seccookieformat",
    "secunicodemapfile",
    "secunicodecodepage",
    "secpcrematchlimit",
    "secpcrematchlimitrecursion",
    "secstatusengine",
    "seccollectiontimeout",
    "secserversignature",
    "secwebappid",
    "secrequestbodyinmemorylimit",
    "sectmpsaveuploadedfiles",
    "secxmlexternalentity",
    "secruleinheritance",
    "secgeolookupdb",
    "sechttpblkey",
    "secsensorid",
    "secconnengine",
    "sechashengine",
    "sechashkey",
    "sechashparam",
    "sechashmethodrx",
    "sechashmethodpm",
    "secremoterules",
    "secremoterulesfailaction",
    "secinterceptonerror",
    "secresponsebodymimetypesclear",
    "secstreaminbodyinspection",
    "secstreamoutbodyinspection",
    "secgsblookupdb",
    "secchrootdir",
    "secruleperftime",
    "secdisablebackendcompression",
    "secconnreadstatelimit",
    "secconnwritestatelimit",
];

fn on_off(d: &Directive) -> Result<bool, LoadError> {
    match d.args.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        _ => Err(d.error("expects On or Off")),
    }
}

fn one_arg(d: &Directive) -> Result<&str, LoadError> {
    match d.args.as_slice() {
        [a] => Ok(a),
        _ => Err(d.error(&format!("expects one argument, got {}", d.args.len()))),
    }
}

fn number(d: &Directive) -> Result<usize, LoadError> {
    one_arg(d)?
        .trim()
        .parse()
        .map_err(|_| d.error("expects a number"))
}

fn in_ranges(ranges: &IdRanges, id: u32) -> bool {
    ranges.iter().any(|(a, b)| (*a..=*b).contains(&id))
}

impl RulesetBuilder {
    pub(crate) fn directive(&mut self, d: &Directive) -> Result<(), LoadError> {
        let name = d.name.to_ascii_lowercase();
        if let Some((_, start)) = &self.open_chain {
            if name != "secrule" {
                return Err(start.error(&format!(
                    "chain is not followed by a SecRule (next is {} at line {})",
                    d.name, d.line
                )));
            }
        }
        match name.as_str() {
            "secrule" | "secaction" => self.rule(d)?,
            "secmarker" => {
                let m = one_arg(d)?;
                self.items.push(ItemBox(Item::Marker(Arc::from(m))));
            }
            "secdefaultaction" => {
                let a = Actions::parse(one_arg(d)?).map_err(|m| d.error(&m))?;
                let Some(phase) = a.phase else {
                    return Err(d.error("needs a phase"));
                };
                if a.disruptive.is_none() {
                    return Err(d.error("needs a disruptive action (e.g. pass)"));
                }
                if a.id.is_some() || a.chain || !a.effects.is_empty() || a.skip_after.is_some() {
                    return Err(d.error("may not contain id, chain, setvar, ctl or skipAfter"));
                }
                self.defaults[usize::from(phase - 1)] = Some(a);
            }
            "secruleengine" => {
                self.config.engine = EngineMode::parse(one_arg(d)?).map_err(|m| d.error(&m))?
            }
            "secrequestbodyaccess" => self.config.request_body_access = on_off(d)?,
            "secresponsebodyaccess" => self.config.response_body_access = on_off(d)?,
            "secrequestbodylimit" => self.config.request_body_limit = number(d)?,
            "secrequestbodynofileslimit" => self.config.request_body_no_files_limit = number(d)?,
            "secresponsebodylimit" => self.config.response_body_limit = number(d)?,
            "secargumentslimit" => self.config.arguments_limit = number(d)?,
            "secrequestbodyjsondepthlimit" => self.config.json_depth_limit = number(d)?,
            "secrequestbodylimitaction" | "secresponsebodylimitaction" => {
                let reject = match one_arg(d)?.to_ascii_lowercase().as_str() {
                    "reject" => true,
                    "processpartial" => false,
                    _ => return Err(d.error("expects Reject or ProcessPartial")),
                };
                if name == "secrequestbodylimitaction" {
                    self.config.request_body_limit_reject = reject;
                }
            }
            "secresponsebodymimetype" => {
                self.config.response_mime_types =
                    d.args.iter().map(|s| s.to_ascii_lowercase()).collect();
            }
            "secargumentseparator" => {
                let s = one_arg(d)?;
                if s.len() != 1 {
                    return Err(d.error("expects one character"));
                }
                self.config.argument_separator = s.as_bytes()[0];
            }
            "seccomponentsignature" => self.component_signatures.push(one_arg(d)?.to_string()),
            "secruleremovebyid" => {
                let ranges = parse_id_ranges(&d.args.join(" ")).map_err(|m| d.error(&m))?;
                self.items.retain(|ItemBox(i)| match i {
                    Item::Rule(r) => !in_ranges(&ranges, r.id),
                    Item::Marker(_) => true,
                });
            }
            "secruleremovebytag" => {
                let tag = one_arg(d)?.to_string();
                self.items.retain(|ItemBox(i)| match i {
                    Item::Rule(r) => !r.has_tag(&tag),
                    Item::Marker(_) => true,
                });
            }
            "secruleremovebymsg" => {
                let msg = one_arg(d)?.to_string();
                self.items.retain(|ItemBox(i)| match i {
                    Item::Rule(r) => !tag_matches(&msg, &r.msg_text()),
                    Item::Marker(_) => true,
                });
            }
            "secruleupdatetargetbyid" | "secruleupdatetargetbytag" | "secruleupdatetargetbymsg" => {
                self.update_targets(d, &name)?
            }
            "secruleupdateactionbyid" => {
                let [id, actions] = d.args.as_slice() else {
                    return Err(d.error("expects ID ACTIONS"));
                };
                let id_part = id.split(':').next().unwrap_or("");
                let ranges = parse_id_ranges(id_part).map_err(|m| d.error(&m))?;
                let raw = split_actions(actions).map_err(|m| d.error(&m))?;
                if raw
                    .iter()
                    .any(|a| a.name == "id" || a.name == "phase" || a.name == "chain")
                {
                    return Err(d.error("may not change id, phase or chain"));
                }
                let mut found = false;
                for ItemBox(i) in &mut self.items {
                    if let Item::Rule(r) = i {
                        if in_ranges(&ranges, r.id) {
                            found = true;
                            for a in &raw {
                                r.actions.apply(a).map_err(|m| d.error(&m))?;
                            }
                        }
                    }
                }
                if !found {
                    self.warn(d, format!("no rule with id {id}"));
                }
            }
            n if IGNORED.contains(&n) => {}
            n if n.starts_with("sec") => {
                self.warn(d, "unknown directive, ignored".into());
            }
            _ => return Err(d.error("unknown directive")),
        }
        Ok(())
    }

    fn update_targets(&mut self, d: &Directive, name: &str) -> Result<(), LoadError> {
        let (sel, vars) = match d.args.as_slice() {
            [s, v] => (s.as_str(), v.as_str()),
            [_, _, _] => {
                return Err(d.error("replacing targets is not supported; use !VAR to exclude"))
            }
            _ => return Err(d.error("expects SELECTOR VARIABLES")),
        };
        let targets = parse_targets(vars).map_err(|m| d.error(&m))?;
        let ranges = if name.ends_with("byid") {
            Some(parse_id_ranges(sel).map_err(|m| d.error(&m))?)
        } else {
            None
        };
        let mut found = false;
        for ItemBox(i) in &mut self.items {
            let Item::Rule(r) = i else { continue };
            let hit = match (&ranges, name) {
                (Some(rg), _) => in_ranges(rg, r.id),
                (None, "secruleupdatetargetbytag") => r.has_tag(sel),
                (None, _) => tag_matches(sel, &r.msg_text()),
            };
            if !hit {
                continue;
            }
            found = true;
            for t in &targets {
                if !r.targets.iter().any(|x| x.same(t)) {
                    r.targets.push(t.clone());
                }
            }
        }
        if !found && ranges.is_some() {
            self.warn(d, format!("no rule matches {sel}"));
        }
        Ok(())
    }

    fn rule(&mut self, d: &Directive) -> Result<(), LoadError> {
        let mut warnings = Vec::new();
        let mut r = Rule::parse(d, &mut warnings).map_err(|m| d.error(&m))?;
        for w in warnings {
            self.warn(d, w);
        }
        let chained = r.actions.chain;
        if let Some((mut root, start)) = self.open_chain.take() {
            if r.actions.id.is_some() && r.actions.id != Some(root.id) {
                return Err(d.error("a chained rule may not have an id"));
            }
            if r.actions.phase.is_some() && r.actions.phase != Some(root.phase) {
                return Err(d.error("a chained rule may not change the phase"));
            }
            if r.is_action {
                return Err(d.error("SecAction cannot be chained"));
            }
            r.id = root.id;
            r.phase = root.phase;
            r.block_as = root.block_as;
            root.last_link_mut().chain = Some(Box::new(r));
            if chained {
                self.open_chain = Some((root, start));
            } else {
                self.items.push(ItemBox(Item::Rule(Box::new(root))));
            }
            return Ok(());
        }
        if r.actions.id.is_none() {
            return Err(d.error("rule has no id"));
        }
        if let Some(def) = self.default_for(r.phase).cloned() {
            r.actions.merge_defaults(&def);
        }
        if r.actions.log.is_none() {
            r.actions.log = Some(true);
        }
        r.block_as = self.block_as(r.phase);
        if chained {
            self.open_chain = Some((r, d.clone()));
        } else {
            self.items.push(ItemBox(Item::Rule(Box::new(r))));
        }
        Ok(())
    }
}
