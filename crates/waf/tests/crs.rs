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
