//! `palisade waf test` end to end on a small, self-made rule set and test suite.

use std::path::PathBuf;
use std::process::Command;

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-waf-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::create_dir_all(d.join("tests/REQUEST-100")).unwrap();
    d
}

#[test]
fn waf_test_runs_yaml_tests_and_reports_counts() {
    let d = tmpdir();
    std::fs::write(
        d.join("setup.conf"),
        "SecDefaultAction \"phase:2,log,pass\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("rules/REQUEST-100.conf"),
        "SecRule ARGS \"@rx (?i)union\\s+select\" \"id:100100,phase:2,block,msg:'sqli'\"\n",
    )
    .unwrap();
    let tests = r#"---
rule_id: 100100
tests:
  - test_id: 1
    stages:
      - input:
          method: GET
          uri: "/?q=1%20UNION%20SELECT%202"
          headers:
            Host: localhost
        output:
          log:
            expect_ids: [100100]
  - test_id: 2
    stages:
      - input:
          uri: "/?q=hello"
        output:
          log:
            no_expect_ids: [100100]
  - test_id: 3
    stages:
      - input:
          uri: "/?q=hello"
        output:
          log:
            expect_ids: [100100]
"#;
    std::fs::write(d.join("tests/REQUEST-100/100100.yaml"), tests).unwrap();
    std::fs::write(
        d.join("overrides.yaml"),
        "tests:\n  - test: 100100-3\n    reason: deliberately wrong expectation\n",
    )
    .unwrap();
    let run = |overrides: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_palisade"));
        c.args(["waf", "test", "--setup"])
            .arg(d.join("setup.conf"))
            .arg("--rules")
            .arg(d.join("rules"))
            .arg("--tests")
            .arg(d.join("tests"))
            .args(["--paranoia", "1"]);
        if overrides {
            c.arg("--overrides").arg(d.join("overrides.yaml"));
        }
        c.output().unwrap()
    };
    let out = run(false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL 100100-3: expected [100100] to fire"),
        "{text}"
    );
    assert!(text.contains("2 passed, 1 failed"), "{text}");
    let out = run(true);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("2 passed, 0 failed (1 skipped by overrides)"),
        "{text}"
    );
    std::fs::write(
        d.join("rules/REQUEST-100.conf"),
        "SecRule ARGS \"@rx (\" \"id:1\"\n",
    )
    .unwrap();
    let out = run(false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("REQUEST-100.conf:1: SecRule: invalid regex"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
