//! Debian's `modsecurity-crs` 3.3.4 (the rules nginx + ModSecurity run in the WAF anchor
//! benchmark): loads at paranoia level 1 in blocking anomaly-scoring mode, blocks a SQL
//! injection with 403 and passes a benign GET and a benign JSON POST. Skipped, with a
//! printed reason, when the package's files are not installed.

use palisade_waf::{Ruleset, RulesetBuilder};
use std::path::Path;

/// The package's rules and its setup file.
const RULES: &str = "/usr/share/modsecurity-crs/rules";
const SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

/// The detection-relevant engine settings of the anchor's `modsecurity-bench.conf`
/// (Debian's recommended `modsecurity.conf` with the engine On).
pub(crate) const ENGINE: &str = r#"
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyJsonDepthLimit 512
SecArgumentsLimit 1000
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
"#;

/// CRS 3.3.4 as the package installs it, or `None` (with the reason printed).
fn crs334() -> Option<Ruleset> {
    if !Path::new(RULES)
        .join("REQUEST-942-APPLICATION-ATTACK-SQLI.conf")
        .is_file()
        || !Path::new(SETUP).is_file()
    {
        eprintln!("skipped: {RULES} or {SETUP} not found (apt-get install modsecurity-crs)");
        return None;
    }
    let mut b = RulesetBuilder::new();
    b.load_str("engine.conf", ENGINE).unwrap();
    b.load_file(Path::new(SETUP)).unwrap();
    b.load_dir(Path::new(RULES)).unwrap();
    for w in b.warnings() {
        eprintln!("warning: {w}");
    }
    Some(b.build().unwrap())
}

#[test]
fn crs_3_3_4_at_paranoia_1() {
    let Some(rs) = crs334() else { return };
    assert!(rs.len() > 400, "only {} rules", rs.len());
    assert!(rs.has_rule(942100) && rs.has_rule(949110));
    eprintln!(
        "{} rules, {} fallback regexes, {} prefiltered regexes",
        rs.len(),
        rs.fallback_regex_count(),
        rs.prefiltered_regex_count()
    );
    let h = [
        ("Host", "app.bench.test"),
        ("User-Agent", "palisade-bench/1.0"),
        ("Accept", "*/*"),
    ];
    let ok = crate::check(
        &rs,
        "GET",
        "/search?q=blue+widget&page=2&lang=en&sort=price",
        &h,
        b"",
    );
    assert!(
        ok.interruption().is_none(),
        "benign GET blocked: {:?}",
        crate::fired(&ok)
    );
    assert_eq!(ok.tx_var("paranoia_level"), Some(&b"1"[..]));

    let body = crate::crs::order_json();
    let len = body.len().to_string();
    let jh = [
        h[0],
        h[1],
        h[2],
        ("Content-Type", "application/json"),
        ("Content-Length", len.as_str()),
    ];
    let post = crate::check(&rs, "POST", "/api/orders", &jh, &body);
    assert!(
        post.interruption().is_none(),
        "benign JSON blocked: {:?}",
        crate::fired(&post)
    );
    assert_eq!(post.tx_var("anomaly_score"), Some(&b"0"[..]));

    let bad = crate::check(
        &rs,
        "GET",
        "/search?q=blue+widget&id=1%27%20OR%20%271%27%3D%271",
        &h,
        b"",
    );
    let i = bad.interruption().expect("SQLi not blocked");
    assert_eq!((i.rule_id, i.status, i.action), (949110, 403, "deny"));
    let ids = crate::fired(&bad);
    assert!(
        ids.contains(&942100),
        "libinjection rule did not fire: {ids:?}"
    );
    let audit = bad.audit_record();
    assert!(audit.blocked);
}
