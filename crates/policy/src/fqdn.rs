//! FQDN patterns.
//!
//! Palisade patterns: `example.com` exact; `*.example.com` exactly one more label (not the
//! apex); `**.example.com` one or more labels (not the apex); `*` inside a label matches
//! characters of that label only (`api-*.example.com`). AdminNetworkPolicy `domainNames`
//! keep their upstream meaning: `*.example.com` matches one or more labels. Matching is
//! case-insensitive and ignores a trailing dot. Names are ASCII: internationalised names
//! are written in their punycode (`xn--`) form.

use std::fmt;

/// A compiled FQDN pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FqdnPattern {
    text: String,
    lead: Lead,
    labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lead {
    Exact,
    OneLabel,
    OneOrMore,
}

impl FqdnPattern {
    /// Parses a Palisade pattern.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        Self::parse_inner(pattern, false)
    }

    /// Parses an AdminNetworkPolicy `domainNames` entry (`*.` = one or more labels).
    pub fn parse_anp(pattern: &str) -> Result<Self, String> {
        Self::parse_inner(pattern, true)
    }

    fn parse_inner(pattern: &str, anp: bool) -> Result<Self, String> {
        if !pattern.is_ascii() {
            return Err(format!(
                "{pattern:?} has non-ASCII characters: write internationalised names in punycode (xn--)"
            ));
        }
        let lower = pattern.to_ascii_lowercase();
        let trimmed = lower.strip_suffix('.').unwrap_or(&lower);
        if trimmed.is_empty() {
            return Err("empty FQDN pattern".into());
        }
        if trimmed.len() > 253 {
            return Err(format!("{pattern:?} is longer than 253 characters"));
        }
        let mut parts: Vec<&str> = trimmed.split('.').collect();
        let lead = match parts[0] {
            "**" if !anp => Lead::OneOrMore,
            "*" if anp => Lead::OneOrMore,
            "*" => Lead::OneLabel,
            _ => Lead::Exact,
        };
        if lead != Lead::Exact {
            parts.remove(0);
            if parts.is_empty() {
                return Err(format!(
                    "{pattern:?} matches every name: list the domains, or allow by ipBlock instead"
                ));
            }
        }
        for (i, label) in parts.iter().enumerate() {
            if label.is_empty() {
                return Err(format!("{pattern:?} has an empty label"));
            }
            if label.len() > 63 {
                return Err(format!("{pattern:?} has a label longer than 63 characters"));
            }
            if label.contains("**") {
                return Err(format!(
                    "{pattern:?}: `**` is only allowed as the whole first label"
                ));
            }
            if anp && label.contains('*') {
                return Err(format!(
                    "{pattern:?}: domainNames allow `*` only as the first label"
                ));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '*'))
            {
                return Err(format!("{pattern:?} has an invalid character {c:?}"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!(
                    "{pattern:?}: a label may not start or end with '-'"
                ));
            }
            let _ = i;
        }
        Ok(FqdnPattern {
            text: pattern.to_string(),
            lead,
            labels: parts.into_iter().map(String::from).collect(),
        })
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return false;
        }
        let n = self.labels.len();
        let mut name_labels = name.rsplit('.');
        // Compare from the right: the fixed labels first.
        for pat in self.labels.iter().rev() {
            match name_labels.next() {
                Some(l) if glob_label(pat, l) => {}
                _ => return false,
            }
        }
        let extra = name_labels.count();
        let _ = n;
        match self.lead {
            Lead::Exact => extra == 0,
            Lead::OneLabel => extra == 1 && !name.split('.').next().unwrap_or("").is_empty(),
            Lead::OneOrMore => extra >= 1 && !name.split('.').any(|l| l.is_empty()),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern contains wildcards.
    pub fn is_wildcard(&self) -> bool {
        self.lead != Lead::Exact || self.labels.iter().any(|l| l.contains('*'))
    }
}

impl fmt::Display for FqdnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Case-insensitive glob of one label where `*` matches any characters of that label.
fn glob_label(pat: &str, text: &str) -> bool {
    if !pat.contains('*') {
        return pat.eq_ignore_ascii_case(text);
    }
    let p = pat.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (usize::MAX, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = pi;
            mark = ti;
            pi += 1;
        } else if star != usize::MAX {
            pi = star + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        FqdnPattern::parse(p).unwrap().matches(n)
    }

    #[test]
    fn exact() {
        assert!(m("example.com", "example.com"));
        assert!(m("example.com", "EXAMPLE.com."));
        assert!(m("example.com.", "example.com"));
        assert!(!m("example.com", "www.example.com"));
        assert!(!m("example.com", "example.co"));
        assert!(!m("example.com", "badexample.com"));
    }

    #[test]
    fn one_label() {
        assert!(m("*.example.com", "www.example.com"));
        assert!(!m("*.example.com", "example.com"));
        assert!(!m("*.example.com", "a.b.example.com"));
        assert!(!m("*.example.com", "wwwexample.com"));
    }

    #[test]
    fn one_or_more() {
        assert!(m("**.example.com", "a.example.com"));
        assert!(m("**.example.com", "a.b.c.example.com"));
        assert!(!m("**.example.com", "example.com"));
        assert!(!m("**.models.test", "evil.test"));
        assert!(m("**.models.test", "cdn.models.test"));
    }

    #[test]
    fn inner_wildcard_stays_in_label() {
        assert!(m("api-*.example.com", "api-eu.example.com"));
        assert!(m("api-*.example.com", "api-.example.com"));
        assert!(!m("api-*.example.com", "api-eu.x.example.com"));
        assert!(m("*cdn*.example.com", "mycdn1.example.com"));
        assert!(!m("api-*.example.com", "web-eu.example.com"));
    }

    #[test]
    fn anp_star_is_any_depth() {
        let p = FqdnPattern::parse_anp("*.kubernetes.io").unwrap();
        assert!(p.matches("docs.kubernetes.io"));
        assert!(p.matches("a.b.kubernetes.io"));
        assert!(!p.matches("kubernetes.io"));
        assert!(FqdnPattern::parse_anp("**.kubernetes.io").is_err());
    }

    #[test]
    fn punycode_and_errors() {
        assert!(m("xn--bcher-kva.example", "XN--BCHER-KVA.example"));
        assert!(FqdnPattern::parse("bücher.example").is_err());
        assert!(FqdnPattern::parse("*").is_err());
        assert!(FqdnPattern::parse("**").is_err());
        assert!(FqdnPattern::parse("a..b").is_err());
        assert!(FqdnPattern::parse("a.**.b").is_err());
        assert!(FqdnPattern::parse("-a.b").is_err());
        assert!(FqdnPattern::parse("a b.c").is_err());
        assert!(FqdnPattern::parse("").is_err());
    }

    #[test]
    fn empty_labels_in_names_do_not_match() {
        assert!(!m("**.example.com", ".example.com"));
        assert!(!m("*.example.com", ".example.com"));
        assert!(!m("example.com", ""));
    }
}
