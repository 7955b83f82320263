//! `palisade detect replay` on generated traces: alerts as JSON lines, bad lines skipped
//! with a warning, configuration from a file.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

use palisade_detect::tracegen::{generate, to_jsonl, Trace, TraceConfig};
use palisade_events::{AlertKind, Event, EventBody};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-detect-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("detect")
        .arg("replay")
        .args(args)
        .output()
        .expect("run palisade")
}

/// Writes the trace slightly out of time order (every four lines reversed) with two broken
/// lines (lines 3 and 10) and returns its path.
fn write_trace(dir: &std::path::Path, t: &Trace) -> PathBuf {
    let text = to_jsonl(&t.events);
    let mut lines: Vec<&str> = text.lines().collect();
    for chunk in lines.chunks_mut(4) {
        chunk.reverse();
    }
    lines.insert(2, "{not json");
    lines.insert(
        9,
        r#"{"id":"x","time":"2026-11-20T06:00:00Z","type":"flow"}"#,
    );
    let path = dir.join("events.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn alerts(out: &Output) -> Vec<Event> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| Event::from_json_line(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn replay_prints_one_alert_per_planted_anomaly_as_json_lines() {
    let t = generate(TraceConfig {
        seed: 2,
        hours: 30,
        anomalies: true,
    });
    let d = tmpdir("replay");
    let path = write_trace(&d, &t);
    let out = replay(&[path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("events.jsonl:3: skipped"), "{stderr}");
    assert!(stderr.contains("events.jsonl:10: skipped"), "{stderr}");
    assert!(stderr.contains("skipped 2 unparseable line(s)"), "{stderr}");
    let alerts = alerts(&out);
    assert_eq!(alerts.len(), 5, "{}", String::from_utf8_lossy(&out.stdout));
    let mut kinds = BTreeSet::new();
    for e in &alerts {
        let EventBody::Alert(a) = &e.body else {
            panic!("not an alert: {e:?}");
        };
        let p = t
            .planted
            .iter()
            .find(|p| p.kind == a.kind)
            .unwrap_or_else(|| panic!("unexpected alert {a:?}"));
        assert_eq!(a.subject, p.subject);
        assert!(!a.evidence.is_empty());
        assert!(a.evidence.iter().all(|id| p.ids.contains(id)), "{a:?}");
        kinds.insert(format!("{:?}", a.kind));
    }
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    // Alerts are in time order and the raw JSON has the EVENTS.md shape.
    assert!(alerts.windows(2).all(|w| w[0].time <= w[1].time));
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "alert");
    assert!(first["alert"]["kind"].is_string() && first["alert"]["evidence"].is_array());
}

#[test]
fn replay_reads_thresholds_from_a_config_file() {
    let t = generate(TraceConfig {
        seed: 4,
        hours: 30,
        anomalies: true,
    });
    let d = tmpdir("config");
    let path = write_trace(&d, &t);
    let cfg = d.join("detect.json");
    std::fs::write(&cfg, r#"{"dnsTunnel": {"enabled": false}}"#).unwrap();
    let out = replay(&[path.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds: Vec<AlertKind> = alerts(&out)
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Alert(a) => Some(a.kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(!kinds.contains(&AlertKind::DnsTunnel));

    std::fs::write(&cfg, r#"{"dnsTunel": {}}"#).unwrap();
    let out = replay(&[path.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dnsTunel"));
}
