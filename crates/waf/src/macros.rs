//! Macro expansion in action and operator arguments: `%{tx.score}`, `%{MATCHED_VAR}`,
//! `%{rule.id}`, `%{REQUEST_HEADERS.host}`.

use crate::variables::Var;

/// A string with `%{...}` references, parsed once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Macro {
    pub(crate) parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub(crate) enum Part {
    Lit(Vec<u8>),
    Var(Var, Option<String>),
    Rule(RuleField),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RuleField {
    Id,
    Msg,
    Severity,
    Logdata,
    Phase,
}

impl Macro {
    pub(crate) fn parse(s: &str) -> Macro {
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut rest = s;
        while let Some(pos) = rest.find("%{") {
            let after = &rest[pos + 2..];
            let Some(end) = after.find('}') else {
                break;
            };
            let name = &after[..end];
            let part = parse_ref(name);
            lit.extend_from_slice(&rest.as_bytes()[..pos]);
            match part {
                Some(p) => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(p);
                }
                None => lit.extend_from_slice(&rest.as_bytes()[pos..pos + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        lit.extend_from_slice(rest.as_bytes());
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Macro { parts }
    }

    /// The text if there is no reference in it.
    pub(crate) fn literal(&self) -> Option<&[u8]> {
        match self.parts.as_slice() {
            [] => Some(b""),
            [Part::Lit(l)] => Some(l),
            _ => None,
        }
    }
}

fn parse_ref(name: &str) -> Option<Part> {
    let (coll, key) = match name.find(['.', ':']) {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    if coll.eq_ignore_ascii_case("rule") {
        let f = match key?.to_ascii_lowercase().as_str() {
            "id" => RuleField::Id,
            "msg" => RuleField::Msg,
            "severity" => RuleField::Severity,
            "logdata" => RuleField::Logdata,
            "phase" => RuleField::Phase,
            _ => return None,
        };
        return Some(Part::Rule(f));
    }
    let var = Var::parse(coll)?;
    Some(Part::Var(var, key.map(|k| k.to_ascii_lowercase())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let m = Macro::parse("a %{tx.x} b %{MATCHED_VAR}%{rule.id} %{nope.x} %{open");
        assert_eq!(m.parts.len(), 6);
        assert!(matches!(&m.parts[1], Part::Var(Var::Tx, Some(k)) if k == "x"));
        assert!(matches!(&m.parts[5], Part::Lit(l) if l == b" %{nope.x} %{open"));
        assert_eq!(Macro::parse("plain").literal(), Some(b"plain".as_slice()));
    }
}
