//! Rule actions: parsing the action list and the typed result.

use crate::macros::Macro;
use crate::ruleset::rule::TagPattern;
use crate::ruleset::EngineMode;
use crate::transforms::{Parsed, Transform};
use crate::variables::{parse_targets, Target};

/// What a rule does to the transaction when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disruptive {
    Pass,
    Deny,
    Drop,
    Redirect,
    /// Whatever `SecDefaultAction` of the rule's phase says.
    Block,
    Allow(AllowScope),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowScope {
    All,
    Phase,
    Request,
}

/// A request body parser selected by `ctl:requestBodyProcessor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyProcessor {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
}

impl BodyProcessor {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BodyProcessor::UrlEncoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }
}

/// `setvar:` operation.
#[derive(Debug, Clone)]
pub(crate) enum SetOp {
    Set(Macro),
    Add(Macro),
    Sub(Macro),
    Delete,
}

#[derive(Debug, Clone)]
pub(crate) struct SetVar {
    /// Only `tx` is kept; other collections are accepted and ignored.
    pub(crate) tx: bool,
    pub(crate) name: Macro,
    pub(crate) op: SetOp,
}

/// Inclusive id ranges.
pub(crate) type IdRanges = Vec<(u32, u32)>;

/// `ctl:` — changes for the rest of this transaction.
#[derive(Debug, Clone)]
pub(crate) enum Ctl {
    RuleEngine(EngineMode),
    RuleRemoveById(IdRanges),
    RuleRemoveByTag(TagPattern),
    RuleRemoveByMsg(TagPattern),
    RuleRemoveTargetById(IdRanges, Vec<Target>),
    RuleRemoveTargetByTag(TagPattern, Vec<Target>),
    RuleRemoveTargetByMsg(TagPattern, Vec<Target>),
    RequestBodyProcessor(BodyProcessor),
    RequestBodyAccess(bool),
    ForceRequestBodyVariable(bool),
    /// Audit log, debug log and other settings that do not change detection.
    Ignored,
}

/// Actions executed in order when a rule (chain) matches.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    SetVar(SetVar),
    Ctl(Ctl),
}

/// The typed action list of a rule.
#[derive(Debug, Clone, Default)]
pub(crate) struct Actions {
    pub(crate) id: Option<u32>,
    pub(crate) phase: Option<u8>,
    pub(crate) chain: bool,
    pub(crate) disruptive: Option<Disruptive>,
    pub(crate) status: Option<u16>,
    pub(crate) capture: bool,
    pub(crate) multi_match: bool,
    pub(crate) transforms: Vec<Transform>,
    pub(crate) reset_transforms: bool,
    pub(crate) log: Option<bool>,
    pub(crate) effects: Vec<Effect>,
    pub(crate) skip_after: Option<String>,
    pub(crate) skip: u32,
    pub(crate) msg: Option<Macro>,
    pub(crate) logdata: Option<Macro>,
    pub(crate) tags: Vec<String>,
    pub(crate) severity: Option<u8>,
    pub(crate) ver: Option<String>,
}

/// One `name:value` item as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAction {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
}

/// Splits `id:1,phase:2,msg:'a, b',t:none` into items.
pub(crate) fn split_actions(s: &str) -> Result<Vec<RawAction>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let st = i;
        while i < b.len() && b[i] != b':' && b[i] != b',' {
            i += 1;
        }
        let name = s[st..i].trim().to_ascii_lowercase();
        let mut value = None;
        if i < b.len() && b[i] == b':' {
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && b[i] == b'\'' {
                i += 1;
                let mut v = Vec::new();
                let mut closed = false;
                while i < b.len() {
                    if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == b'\'' {
                        v.push(b'\'');
                        i += 2;
                    } else if b[i] == b'\'' {
                        closed = true;
                        i += 1;
                        break;
                    } else {
                        v.push(b[i]);
                        i += 1;
                    }
                }
                if !closed {
                    return Err(format!("unterminated quote in action {name}"));
                }
                value = Some(String::from_utf8_lossy(&v).into_owned());
            } else {
                let st = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                value = Some(s[st..i].trim_end().to_string());
            }
        }
        if name.is_empty() {
            return Err("empty action".into());
        }
        out.push(RawAction { name, value });
    }
    Ok(out)
}

fn need(a: &RawAction) -> Result<&str, String> {
    a.value
        .as_deref()
        .ok_or_else(|| format!("action {} needs a value", a.name))
}

pub(crate) fn parse_phase(v: &str) -> Result<u8, String> {
    match v.to_ascii_lowercase().as_str() {
        "request" => Ok(2),
        "response" => Ok(4),
        "logging" => Ok(5),
        n => match n.parse::<u8>() {
            Ok(p @ 1..=5) => Ok(p),
            _ => Err(format!("invalid phase {v:?}")),
        },
    }
}

fn parse_severity(v: &str) -> Result<u8, String> {
    Ok(match v.to_ascii_uppercase().as_str() {
        "EMERGENCY" => 0,
        "ALERT" => 1,
        "CRITICAL" => 2,
        "ERROR" => 3,
        "WARNING" => 4,
        "NOTICE" => 5,
        "INFO" => 6,
        "DEBUG" => 7,
        n => n
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= 7)
            .ok_or_else(|| format!("invalid severity {v:?}"))?,
    })
}

/// Parses `1`, `1-5`, `1 2 9-10`, `1,2`.
pub(crate) fn parse_id_ranges(v: &str) -> Result<IdRanges, String> {
    let mut out = Vec::new();
    for part in v.split([' ', ',', '\t']).filter(|s| !s.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid rule id {part:?}"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("invalid rule id {part:?}"))?;
        out.push((a.min(b), a.max(b)));
    }
    if out.is_empty() {
        return Err("expects rule ids".into());
    }
    Ok(out)
}

fn parse_setvar(v: &str) -> Result<SetVar, String> {
    let v = v.trim();
    let (delete, v) = match v.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, v),
    };
    let (lhs, rhs) = match v.split_once('=') {
        Some((l, r)) => (l.trim(), Some(r)),
        None => (v, None),
    };
    let Some((coll, name)) = lhs.split_once('.') else {
        return Err(format!("setvar {v:?}: expects collection.name"));
    };
    let tx = coll.eq_ignore_ascii_case("tx");
    let op = if delete {
        SetOp::Delete
    } else {
        match rhs {
            None => SetOp::Set(Macro::parse("1")),
            Some(r) => {
                if let Some(n) = r.strip_prefix('+') {
                    SetOp::Add(Macro::parse(n))
                } else if let Some(n) = r.strip_prefix('-') {
                    SetOp::Sub(Macro::parse(n))
                } else {
                    SetOp::Set(Macro::parse(r))
                }
            }
        }
    };
    Ok(SetVar {
        tx,
        name: Macro::parse(&name.to_ascii_lowercase()),
        op,
    })
}

fn parse_ctl(v: &str) -> Result<Ctl, String> {
    let (k, val) = v
        .split_once('=')
        .ok_or_else(|| format!("ctl {v:?}: expects name=value"))?;
    let val = val.trim();
    let on = |s: &str| s.eq_ignore_ascii_case("on");
    let target_pair = |s: &str| -> Result<(String, Vec<Target>), String> {
        let (a, b) = s
            .split_once(';')
            .ok_or_else(|| format!("ctl {v:?}: expects ID;TARGET"))?;
        Ok((a.trim().to_string(), parse_targets(b.trim())?))
    };
    Ok(match k.trim().to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(EngineMode::parse(val)?),
        "ruleremovebyid" => Ctl::RuleRemoveById(parse_id_ranges(val)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(TagPattern::new(val)),
        "ruleremovebymsg" => Ctl::RuleRemoveByMsg(TagPattern::new(val)),
        "ruleremovetargetbyid" => {
            let (ids, t) = target_pair(val)?;
            Ctl::RuleRemoveTargetById(parse_id_ranges(&ids)?, t)
        }
        "ruleremovetargetbytag" => {
            let (tag, t) = target_pair(val)?;
            Ctl::RuleRemoveTargetByTag(TagPattern::new(&tag), t)
        }
        "ruleremovetargetbymsg" => {
            let (m, t) = target_pair(val)?;
            Ctl::RuleRemoveTargetByMsg(TagPattern::new(&m), t)
        }
        "requestbodyprocessor" => {
            Ctl::RequestBodyProcessor(match val.to_ascii_uppercase().as_str() {
                "URLENCODED" => BodyProcessor::UrlEncoded,
                "MULTIPART" => BodyProcessor::Multipart,
                "JSON" => BodyProcessor::Json,
                "XML" => BodyProcessor::Xml,
                other => return Err(format!("unknown request body processor {other:?}")),
            })
        }
        "requestbodyaccess" => Ctl::RequestBodyAccess(on(val)),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on(val)),
        "auditengine" | "auditlogparts" | "debugloglevel" | "hashengine" | "hashenforcement"
        | "requestbodylimit" | "responsebodyaccess" | "responsebodylimit" | "parsexmlintoargs" => {
            Ctl::Ignored
        }
        other => return Err(format!("unknown ctl {other:?}")),
    })
}

impl Actions {
    /// Applies one action in order (later actions override earlier ones).
    pub(crate) fn apply(&mut self, a: &RawAction) -> Result<(), String> {
        match a.name.as_str() {
            "id" => {
                let v = need(a)?;
                let id: u32 = v.trim().parse().map_err(|_| format!("invalid id {v:?}"))?;
                if id == 0 {
                    return Err("id 0 is not allowed".into());
                }
                self.id = Some(id);
            }
            "phase" => self.phase = Some(parse_phase(need(a)?)?),
            "chain" => self.chain = true,
            "pass" => self.disruptive = Some(Disruptive::Pass),
            "deny" => self.disruptive = Some(Disruptive::Deny),
            "drop" => self.disruptive = Some(Disruptive::Drop),
            "block" => self.disruptive = Some(Disruptive::Block),
            "redirect" | "proxy" => self.disruptive = Some(Disruptive::Redirect),
            "allow" => {
                let scope = match a.value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("") => AllowScope::All,
                    Some("phase") => AllowScope::Phase,
                    Some("request") => AllowScope::Request,
                    Some(o) => return Err(format!("invalid allow scope {o:?}")),
                };
                self.disruptive = Some(Disruptive::Allow(scope));
            }
            "status" => {
                let v = need(a)?;
                self.status = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| format!("invalid status {v:?}"))?,
                );
            }
            "capture" => self.capture = true,
            "multimatch" => self.multi_match = true,
            "t" => match Transform::parse(need(a)?.trim()) {
                Some(Parsed::None) => {
                    self.transforms.clear();
                    self.reset_transforms = true;
                }
                Some(Parsed::Transform(t)) => self.transforms.push(t),
                None => return Err(format!("unknown transformation {:?}", need(a)?)),
            },
            "log" => self.log = Some(true),
            "nolog" => self.log = Some(false),
            "setvar" => self.effects.push(Effect::SetVar(parse_setvar(need(a)?)?)),
            "ctl" => self.effects.push(Effect::Ctl(parse_ctl(need(a)?)?)),
            "skipafter" => self.skip_after = Some(need(a)?.trim().to_string()),
            "skip" => {
                let v = need(a)?;
                self.skip = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("invalid skip {v:?}"))?;
            }
            "msg" => self.msg = Some(Macro::parse(need(a)?)),
            "logdata" => self.logdata = Some(Macro::parse(need(a)?)),
            "tag" => self.tags.push(need(a)?.to_string()),
            "severity" => self.severity = Some(parse_severity(need(a)?)?),
            "ver" => self.ver = Some(need(a)?.to_string()),
            "rev"
            | "maturity"
            | "accuracy"
            | "auditlog"
            | "noauditlog"
            | "expirevar"
            | "initcol"
            | "setenv"
            | "setuid"
            | "setsid"
            | "setrsc"
            | "sanitisearg"
            | "sanitisematched"
            | "sanitisematchedbytes"
            | "sanitiserequestheader"
            | "sanitiseresponseheader"
            | "exec"
            | "append"
            | "prepend"
            | "xmlns"
            | "deprecatevar"
            | "pause"
            | "sanitizearg"
            | "sanitizematched" => {}
            other => return Err(format!("unknown action {other:?}")),
        }
        Ok(())
    }

    pub(crate) fn parse(s: &str) -> Result<Actions, String> {
        let mut a = Actions::default();
        for raw in split_actions(s)? {
            a.apply(&raw)?;
        }
        Ok(a)
    }

    /// Rule actions on top of `SecDefaultAction`'s.
    pub(crate) fn merge_defaults(&mut self, d: &Actions) {
        if !self.reset_transforms {
            let mut t = d.transforms.clone();
            t.append(&mut self.transforms);
            self.transforms = t;
        }
        if self.log.is_none() {
            self.log = d.log;
        }
        if self.disruptive.is_none() {
            self.disruptive = d.disruptive;
        }
        if self.status.is_none() {
            self.status = d.status;
        }
        if self.severity.is_none() {
            self.severity = d.severity;
        }
        let mut tags = d.tags.clone();
        tags.append(&mut self.tags);
        self.tags = tags;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        let a =
            split_actions("id:1, phase:2,msg:'a, b',t:none,setvar:'tx.x=+%{tx.y}',nolog").unwrap();
        assert_eq!(a.len(), 6);
        assert_eq!(a[2].value.as_deref(), Some("a, b"));
        assert_eq!(a[4].value.as_deref(), Some("tx.x=+%{tx.y}"));
        assert_eq!(a[5].value, None);
        assert!(split_actions("msg:'open").is_err());
    }

    #[test]
    fn typed() {
        let a = Actions::parse(
            "id:5,phase:request,block,t:none,t:lowercase,ctl:ruleRemoveTargetById=942100;ARGS:x,severity:'CRITICAL'",
        )
        .unwrap();
        assert_eq!(a.id, Some(5));
        assert_eq!(a.phase, Some(2));
        assert_eq!(a.transforms, vec![Transform::Lowercase]);
        assert_eq!(a.severity, Some(2));
        assert!(
            matches!(&a.effects[0], Effect::Ctl(Ctl::RuleRemoveTargetById(r, t)) if r == &vec![(942100, 942100)] && t.len() == 1)
        );
        assert!(Actions::parse("id:x").is_err());
        assert!(Actions::parse("bogus").is_err());
        assert_eq!(parse_id_ranges("1-3 7").unwrap(), vec![(1, 3), (7, 7)]);
    }
}
