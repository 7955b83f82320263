//! Loads the OWASP CRS from `../shared/data` and runs its regression suite (skipped, with
//! a printed reason, when the data is not there).

use palisade_waf::RulesetBuilder;
use std::path::PathBuf;

pub(crate) fn crs_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/crs-v4.25.0");
    if d.join("rules").is_dir() {
        Some(d)
    } else {
        eprintln!("skipped: {} not found", d.display());
        None
    }
}

#[test]
fn loads_full_crs() {
    let Some(d) = crs_dir() else { return };
    let mut b = RulesetBuilder::new();
    b.load_file(&d.join("crs-setup.conf.example")).unwrap();
    b.load_dir(&d.join("rules")).unwrap();
    for w in b.warnings() {
        eprintln!("warning: {w}");
    }
    let rs = b.build().unwrap();
    eprintln!(
        "{} rules, {} fallback regexes",
        rs.len(),
        rs.fallback_regex_count()
    );
    assert!(rs.len() > 500, "only {} rules", rs.len());
}

#[test]
fn regression_suite_at_paranoia_4() {
    let Some(d) = crs_dir() else { return };
    let cfg = palisade_waf::runner::RunnerConfig {
        setup: d.join("crs-setup.conf.example"),
        rules: d.join("rules"),
        tests: d.join("tests/regression/tests"),
        paranoia: Some(4),
        overrides: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("overrides.yaml")),
        filter: std::env::var("WAF_TEST_FILTER").ok(),
    };
    let out = palisade_waf::runner::run(&cfg).unwrap();
    eprintln!("{out}");
    assert!(
        out.passed.len() > 4000,
        "only {} tests ran",
        out.passed.len()
    );
    let total = out.passed.len() + out.failed.len();
    let ratio = out.passed.len() as f64 / total.max(1) as f64;
    assert!(ratio >= 0.99, "pass ratio {ratio:.4} below 0.99");
}

#[test]
fn blocks_sqli_at_paranoia_1() {
    let Some(d) = crs_dir() else { return };
    let mut b = RulesetBuilder::new();
    b.load_str("engine.conf", "SecRuleEngine On\nSecRequestBodyAccess On")
        .unwrap();
    b.load_file(&d.join("crs-setup.conf.example")).unwrap();
    b.load_dir(&d.join("rules")).unwrap();
    let rs = b.build().unwrap();
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
        "benign blocked: {:?}",
        crate::fired(&ok)
    );
    let bad = crate::check(
        &rs,
        "GET",
        "/search?q=blue+widget&id=1%27%20OR%20%271%27%3D%271",
        &h,
        b"",
    );
    let i = bad.interruption().expect("SQLi not blocked");
    assert_eq!((i.rule_id, i.status), (949110, 403));
    let ids = crate::fired(&bad);
    assert!(
        ids.contains(&942100),
        "libinjection rule did not fire: {ids:?}"
    );
    let audit = bad.audit_record();
    assert!(audit.blocked && audit.inbound_score >= 5);
}

/// The anchor benchmark's 2048-byte order document (a benign JSON POST body).
pub(crate) fn order_json() -> Vec<u8> {
    let items: Vec<String> = (1..=12)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{:05}","name":"Blue widget number {i}","qty":{},"price":{}}}"#,
                i * 7,
                i % 5 + 1,
                f64::from(i) + 10.99
            )
        })
        .collect();
    let head = format!(
        r#"{{"customer":{{"id":48213,"name":"Alice Example","email":"alice@example.test","tier":"gold"}},"currency":"EUR","items":[{}],"note":""#,
        items.join(",")
    );
    let pad = 2048usize.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "a".repeat(pad)).into_bytes()
}
