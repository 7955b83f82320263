//! `palisade guard eval` end to end: JSON output on the guard's hand-made fixture, and
//! clear errors with line numbers for malformed input.

use std::path::PathBuf;
use std::process::Command;

fn palisade() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

#[test]
fn eval_prints_one_json_object_with_the_metrics() {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guard/tests/fixtures/handmade.jsonl");
    let out = palisade()
        .args(["guard", "eval", "--output", "json"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "precision",
        "recall",
        "f1",
        "false_positive_rate",
        "p50_us",
        "p99_us",
    ] {
        assert!(v[key].is_number(), "missing {key}: {stdout}");
    }
    assert_eq!(v["prompts"], 80);
    assert!(v["f1"].as_f64().unwrap() >= 0.9, "{stdout}");
    assert!(
        v["false_positive_rate"].as_f64().unwrap() <= 0.1,
        "{stdout}"
    );
}

#[test]
fn eval_reports_bad_lines_with_their_number() {
    let dir = std::env::temp_dir().join(format!("palisade-guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.jsonl");
    std::fs::write(
        &f,
        "{\"text\":\"hello\",\"label\":\"benign\"}\n{\"text\":\"x\",\"label\":\"spam\"}\n",
    )
    .unwrap();
    let out = palisade().args(["guard", "eval"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:2: label is \"spam\""), "{err}");
    std::fs::write(&f, "{\"text\": 1}\n").unwrap();
    let out = palisade().args(["guard", "eval"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.jsonl:1: invalid JSON"));
    std::fs::remove_dir_all(dir).unwrap();
}
