//! Loads the OWASP CRS from `../shared/data` and runs its regression suite (skipped, with
//! a printed reason, when the data is not there).

use palisade_waf::RulesetBuilder;
use std::path::PathBuf;

fn crs_dir() -> Option<PathBuf> {
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
    let total = out.passed.len() + out.failed.len();
    let ratio = out.passed.len() as f64 / total.max(1) as f64;
    assert!(ratio >= 0.99, "pass ratio {ratio:.4} below 0.99");
}
