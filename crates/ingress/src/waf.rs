//! The WAF on the request path: the OWASP CRS through `palisade-waf`, AI-aware. The
//! natural-language prompt fields of an OpenAI-style body are blanked in the copy the
//! rules see (prose full of quotes, SQL words and code is what users send to a model; the
//! prompt guard looks at it instead), while the path, query, headers and every other JSON
//! field are checked as usual. A route can turn this off (`waf.inspectPrompts: true`).

use palisade_waf::{Request, Ruleset, RulesetBuilder, Transaction};
use std::path::{Path, PathBuf};

/// Where Debian's `modsecurity-crs` package puts the rules and the setup file.
pub const DEBIAN_RULES: &str = "/usr/share/modsecurity-crs/rules";
/// Debian's CRS setup file.
pub const DEBIAN_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

/// What loads a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WafSettings {
    /// `crs-setup.conf`.
    pub setup: Option<PathBuf>,
    /// Folder of `*.conf` rules.
    pub rules: PathBuf,
    /// Paranoia level 1..=4.
    pub paranoia_level: u8,
    /// Inbound anomaly score that blocks.
    pub anomaly_threshold: u32,
}

/// The engine settings every ruleset starts with: blocking mode, request bodies on, and
/// the JSON / XML body processors of ModSecurity's recommended configuration.
const PREAMBLE: &str = r#"
SecRuleEngine On
SecRequestBodyAccess On
SecResponseBodyAccess Off
SecRule REQUEST_HEADERS:Content-Type "@rx ^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{reqbody_error_msg}',severity:2"
"#;

/// A loaded ruleset.
#[derive(Debug)]
pub struct Waf {
    rules: Ruleset,
}

/// What the WAF found in one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WafOutcome {
    /// The status the rules answer with, when they interrupt.
    pub blocked: Option<u16>,
    /// Ids of the rules that matched.
    pub rule_ids: Vec<u32>,
    /// Inbound anomaly score.
    pub score: i64,
}

/// The parts of a request the WAF looks at.
#[derive(Debug, Clone, Copy)]
pub struct WafInput<'a> {
    /// Method.
    pub method: &'a str,
    /// Path and query as sent.
    pub uri: &'a [u8],
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'a str,
    /// Headers (with `Host`).
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// Body as the rules should see it.
    pub body: &'a [u8],
    /// Client address.
    pub remote_addr: &'a str,
}

impl Waf {
    /// Loads the rules; errors are `file:line: message` from the rule parser.
    pub fn load(s: &WafSettings) -> Result<Self, String> {
        let mut b = RulesetBuilder::new();
        b.load_str("palisade-ingress-preamble", PREAMBLE)
            .map_err(|e| e.to_string())?;
        if let Some(setup) = &s.setup {
            b.load_file(setup).map_err(|e| e.to_string())?;
        }
        let pl = s.paranoia_level;
        let settings = format!(
            "SecAction \"id:8800001,phase:1,pass,nolog,t:none,setvar:tx.paranoia_level={pl},setvar:tx.executing_paranoia_level={pl},setvar:tx.blocking_paranoia_level={pl},setvar:tx.detection_paranoia_level={pl},setvar:tx.inbound_anomaly_score_threshold={}\"\n",
            s.anomaly_threshold
        );
        b.load_str("palisade-ingress-settings", &settings)
            .map_err(|e| e.to_string())?;
        b.load_dir(&s.rules).map_err(|e| e.to_string())?;
        for w in b.warnings() {
            tracing::debug!(warning = %w, "WAF rules");
        }
        let rules = b.build().map_err(|e| e.to_string())?;
        Ok(Waf { rules })
    }

    /// A ruleset from SecLang text (tests, small custom rule sets).
    pub fn from_text(text: &str) -> Result<Self, String> {
        let mut b = RulesetBuilder::new();
        b.load_str("preamble", PREAMBLE)
            .map_err(|e| e.to_string())?;
        b.load_str("rules", text).map_err(|e| e.to_string())?;
        Ok(Waf {
            rules: b.build().map_err(|e| e.to_string())?,
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs phases 1 and 2 over a request.
    pub fn check(&self, r: &WafInput<'_>) -> WafOutcome {
        let mut tx = Transaction::new(&self.rules);
        let blocked = tx
            .process_request(&Request {
                method: r.method,
                uri: r.uri,
                protocol: r.protocol,
                headers: r.headers,
                body: r.body,
                remote_addr: r.remote_addr,
            })
            .map(|i| i.status);
        let rec = tx.audit_record();
        let num = |n: &str| {
            tx.tx_var(n)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(0)
        };
        let score = rec
            .inbound_score
            .max(num("anomaly_score"))
            .max(num("inbound_anomaly_score"));
        let mut rule_ids: Vec<u32> = rec.rules.iter().map(|m| m.id).collect();
        rule_ids.dedup();
        WafOutcome {
            blocked,
            rule_ids,
            score,
        }
    }
}

/// The settings for a route: its own files, else Debian's CRS package.
pub fn settings(
    base: &Path,
    rules: Option<&str>,
    setup: Option<&str>,
    paranoia_level: Option<u8>,
    anomaly_threshold: Option<u32>,
) -> Result<WafSettings, String> {
    let rules = match rules {
        Some(r) => base.join(r),
        None if Path::new(DEBIAN_RULES).is_dir() => PathBuf::from(DEBIAN_RULES),
        None => {
            return Err(format!(
                "no rules folder: set waf.rules (or install Debian's modsecurity-crs for {DEBIAN_RULES})"
            ))
        }
    };
    let setup = match setup {
        Some(s) => Some(base.join(s)),
        None => [
            rules.join("../crs-setup.conf.example"),
            PathBuf::from(DEBIAN_SETUP),
        ]
        .into_iter()
        .find(|p| p.is_file()),
    };
    Ok(WafSettings {
        setup,
        rules,
        paranoia_level: paranoia_level.unwrap_or(1),
        anomaly_threshold: anomaly_threshold.unwrap_or(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_rule_blocks_and_reports() {
        let w = Waf::from_text(
            r#"SecRule ARGS "@rx (?i)union\s+select" "id:1001,phase:2,deny,status:403,log,msg:'sqli'""#,
        )
        .unwrap();
        let input = |uri: &'static [u8]| WafInput {
            method: "GET",
            uri,
            protocol: "HTTP/1.1",
            headers: &[(b"Host", b"x")],
            body: b"",
            remote_addr: "127.0.0.1",
        };
        let o = w.check(&input(b"/v1/models?q=1%20UNION%20SELECT%20pw"));
        assert_eq!(o.blocked, Some(403));
        assert_eq!(o.rule_ids, vec![1001]);
        assert_eq!(w.check(&input(b"/v1/models?q=union")).blocked, None);
    }

    #[test]
    fn json_fields_are_arguments() {
        let w = Waf::from_text(
            r#"SecRule ARGS:json.user "@contains evil" "id:1002,phase:2,deny,status:403,log""#,
        )
        .unwrap();
        let o = w.check(&WafInput {
            method: "POST",
            uri: b"/v1/chat/completions",
            protocol: "HTTP/1.1",
            headers: &[(b"Host", b"x"), (b"Content-Type", b"application/json")],
            body: br#"{"user":"evil"}"#,
            remote_addr: "127.0.0.1",
        });
        assert_eq!(o.blocked, Some(403), "{o:?}");
    }

    /// A multipart body that backends read differently (two boundary parameters: werkzeug
    /// and Django read the last, the old WAF the first and saw an upload) is refused by the
    /// preamble's body-error rule; the same field in a plain body is refused by the rule.
    #[test]
    fn ambiguous_multipart_bodies_are_refused() {
        let w = Waf::from_text(
            r#"SecRule ARGS "@rx (?i)union\s+select" "id:1003,phase:2,deny,status:403,log""#,
        )
        .unwrap();
        let check = |ct: &'static [u8], body: &'static [u8]| {
            w.check(&WafInput {
                method: "POST",
                uri: b"/upload",
                protocol: "HTTP/1.1",
                headers: &[(b"Host", b"x"), (b"Content-Type", ct)],
                body,
                remote_addr: "127.0.0.1",
            })
        };
        let o = check(
            b"multipart/form-data; boundary=aaa; boundary=bbb",
            b"--aaa\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\n--bbb\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n1 UNION SELECT pw\r\n--bbb--\r\n\r\n--aaa--\r\n",
        );
        assert!(o.blocked.is_some(), "{o:?}");
        let o = check(
            b"multipart/form-data; boundary=bbb",
            b"--bbb\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n1 UNION SELECT pw\r\n--bbb--\r\n",
        );
        assert_eq!((o.blocked, o.rule_ids), (Some(403), vec![1003]));
        let o = check(
            b"multipart/form-data; boundary=bbb",
            b"--bbb\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nblue widget\r\n--bbb--\r\n",
        );
        assert_eq!(o.blocked, None, "{o:?}");
    }
}
