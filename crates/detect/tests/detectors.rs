//! Detector tests on generated traces: plenty of normal traffic (training downloads,
//! diurnal inference load with a daily batch, pod churn, routine denials) with and without
//! planted anomalies.

use palisade_detect::tracegen::{generate, Trace, TraceConfig};
use palisade_detect::{AlertKind, DetectConfig, Detector};
use palisade_events::{AlertInfo, Event, EventBody};

fn run(cfg: DetectConfig, events: &[Event]) -> Vec<Event> {
    let mut d = Detector::new(cfg);
    let mut out = Vec::new();
    for e in events {
        out.extend(d.observe(e));
    }
    out.extend(d.finish());
    out
}

fn alert(e: &Event) -> &AlertInfo {
    match &e.body {
        EventBody::Alert(a) => a,
        other => panic!("not an alert: {other:?}"),
    }
}

fn trace(seed: u64, anomalies: bool) -> Trace {
    generate(TraceConfig {
        seed,
        hours: 30,
        anomalies,
    })
}

fn describe(alerts: &[Event]) -> String {
    alerts
        .iter()
        .map(|e| {
            let a = alert(e);
            format!("{:?} {} {}: {}", a.kind, a.subject, e.time, a.summary)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn normal_traffic_raises_no_alert() {
    for seed in [1, 7] {
        let t = trace(seed, false);
        assert!(t.events.len() > 30_000, "{}", t.events.len());
        let alerts = run(DetectConfig::default(), &t.events);
        assert!(alerts.is_empty(), "seed {seed}:\n{}", describe(&alerts));
    }
}

#[test]
fn every_planted_anomaly_raises_exactly_its_alert_with_its_evidence() {
    for seed in [1, 7] {
        let t = trace(seed, true);
        assert_eq!(t.planted.len(), 5);
        let alerts = run(DetectConfig::default(), &t.events);
        assert_eq!(
            alerts.len(),
            t.planted.len(),
            "seed {seed}: one alert per anomaly, none for normal traffic:\n{}",
            describe(&alerts)
        );
        for p in &t.planted {
            let matching: Vec<&AlertInfo> = alerts
                .iter()
                .map(alert)
                .filter(|a| a.evidence.iter().any(|id| p.ids.contains(id)))
                .collect();
            assert_eq!(
                matching.len(),
                1,
                "seed {seed}: {} should raise one alert:\n{}",
                p.name,
                describe(&alerts)
            );
            let a = matching[0];
            assert_eq!(a.kind, p.kind, "seed {seed}: {}", p.name);
            assert_eq!(a.subject, p.subject, "seed {seed}: {}", p.name);
            assert!(!a.summary.is_empty() && a.summary.ends_with('.'));
            for id in &a.evidence {
                assert!(
                    p.ids.contains(id),
                    "seed {seed}: {} evidence {id} is not part of the anomaly",
                    p.name
                );
            }
        }
    }
}

#[test]
fn alerts_carry_kind_specific_evidence_and_severity() {
    let t = trace(3, true);
    let alerts = run(DetectConfig::default(), &t.events);
    let by_kind = |k: AlertKind| {
        alerts
            .iter()
            .map(alert)
            .find(|a| a.kind == k)
            .unwrap_or_else(|| panic!("no {k:?} alert:\n{}", describe(&alerts)))
    };
    // The scan: every denied connection of the burst is evidence (72 of them).
    assert_eq!(by_kind(AlertKind::LateralMovement).evidence.len(), 72);
    // The tunnel: at least the queries that crossed the thresholds.
    assert!(by_kind(AlertKind::DnsTunnel).evidence.len() >= 15);
    // The upload: the five big transfers, not the routine log shipping of that minute.
    let up = by_kind(AlertKind::EgressVolume);
    assert!(!up.evidence.is_empty() && up.evidence.len() <= 5, "{up:?}");
    let abuse = by_kind(AlertKind::InferenceAbuse);
    assert_eq!(
        abuse.severity,
        palisade_events::Severity::High,
        "{}",
        abuse.summary
    );
    assert!(
        abuse.summary.contains("prompt-injection"),
        "{}",
        abuse.summary
    );
    assert!(
        abuse.summary.contains("requests in 60s"),
        "{}",
        abuse.summary
    );
}

#[test]
fn replay_is_deterministic() {
    let t = trace(11, true);
    let a: Vec<String> = run(DetectConfig::default(), &t.events)
        .iter()
        .map(Event::to_json)
        .collect();
    let b: Vec<String> = run(DetectConfig::default(), &t.events)
        .iter()
        .map(Event::to_json)
        .collect();
    assert_eq!(a, b);
    assert_eq!(a.len(), 5);
}

#[test]
fn saved_baselines_continue_where_they_left_off() {
    let t = trace(5, true);
    let whole: Vec<String> = run(DetectConfig::default(), &t.events)
        .iter()
        .map(Event::to_json)
        .collect();
    // Stop after 25 h of event time, save, load, go on.
    let cut = t
        .events
        .iter()
        .position(|e| {
            e.time.as_micros() >= palisade_detect::tracegen::START_US + 25 * 3_600_000_000
        })
        .unwrap();
    let mut d = Detector::new(DetectConfig::default());
    let mut out = Vec::new();
    for e in &t.events[..cut] {
        out.extend(d.observe(e));
    }
    let saved = d.save();
    let mut d = Detector::load(DetectConfig::default(), &saved).unwrap();
    for e in &t.events[cut..] {
        out.extend(d.observe(e));
    }
    out.extend(d.finish());
    let resumed: Vec<String> = out.iter().map(Event::to_json).collect();
    assert_eq!(whole, resumed);
    assert!(Detector::load(DetectConfig::default(), "{").is_err());
}

#[test]
fn learning_window_is_configurable_and_on_event_time() {
    // With a 48 h learning window nothing in a 30 h trace is past learning, so only the
    // detectors that need no baseline (tunnel, scan, injections) fire.
    let t = trace(1, true);
    let cfg = DetectConfig {
        learning_window_secs: 48 * 3600,
        ..DetectConfig::default()
    };
    let kinds: Vec<AlertKind> = run(cfg, &t.events).iter().map(|e| alert(e).kind).collect();
    assert!(!kinds.contains(&AlertKind::NewDestination), "{kinds:?}");
    assert!(!kinds.contains(&AlertKind::EgressVolume), "{kinds:?}");
    assert!(kinds.contains(&AlertKind::DnsTunnel), "{kinds:?}");
    assert!(kinds.contains(&AlertKind::LateralMovement), "{kinds:?}");
    assert!(kinds.contains(&AlertKind::InferenceAbuse), "{kinds:?}");
}

#[test]
fn config_has_defaults_and_refuses_unknown_fields() {
    let cfg = DetectConfig::from_json("{}").unwrap();
    assert_eq!(cfg, DetectConfig::default());
    assert_eq!(cfg.learning_window_secs, 24 * 3600);
    let cfg = DetectConfig::from_json(r#"{"dnsTunnel": {"minUniqueNames": 5}}"#).unwrap();
    assert_eq!(cfg.dns_tunnel.min_unique_names, 5);
    assert_eq!(cfg.dns_tunnel.window_secs, 1800);
    assert!(DetectConfig::from_json(r#"{"learningWindow": 5}"#).is_err());
    let err = DetectConfig::from_json(r#"{"alertHoldSecs": -1, "dnsTunnel": {"windowSecs": 0}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("alertHoldSecs") && err.contains("dnsTunnel.windowSecs"),
        "{err}"
    );
    let text = serde_json::to_string(&DetectConfig::default()).unwrap();
    assert_eq!(
        DetectConfig::from_json(&text).unwrap(),
        DetectConfig::default()
    );
}
