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
    for seed in [1, 7, 9] {
        let t = trace(seed, false);
        assert!(t.events.len() > 30_000, "{}", t.events.len());
        let alerts = run(DetectConfig::default(), &t.events);
        assert!(alerts.is_empty(), "seed {seed}:\n{}", describe(&alerts));
    }
}

#[test]
fn every_planted_anomaly_raises_exactly_its_alert_with_its_evidence() {
    for seed in [1, 7, 9] {
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
    // Limits of 0 would make the detectors remember nothing: refused, all at once.
    let err = DetectConfig::from_json(
        r#"{"newDestination": {"maxDestinationsPerWorkload": 0}, "egressVolume": {"maxPairs": 0},
            "dnsTunnel": {"maxQueriesPerWindow": 0, "maxWindows": 0},
            "lateralMovement": {"maxDeniedPerWindow": 0}}"#,
    )
    .unwrap_err()
    .to_string();
    for field in [
        "newDestination.maxDestinationsPerWorkload",
        "egressVolume.maxPairs",
        "dnsTunnel.maxQueriesPerWindow",
        "dnsTunnel.maxWindows",
        "lateralMovement.maxDeniedPerWindow",
    ] {
        assert!(err.contains(field), "{field}: {err}");
    }
    let text = serde_json::to_string(&DetectConfig::default()).unwrap();
    assert_eq!(
        DetectConfig::from_json(&text).unwrap(),
        DetectConfig::default()
    );
}

// Hand-made events for single behaviours.

use palisade_events::{
    DnsFeatures, DnsInfo, Endpoint, EndpointKind, FlowInfo, FlowState, HttpInfo, Timestamp, Verdict,
};
use std::net::IpAddr;

const T0: i64 = palisade_detect::tracegen::START_US;
const S: i64 = 1_000_000;

fn pod(workload: &str, name: &str) -> Endpoint {
    let (ns, _) = workload.split_once('/').unwrap();
    let mut p = Endpoint::pod(ns, name);
    p.workload = Some(workload.to_string());
    p
}

fn ev(id: usize, secs: i64, src: Endpoint, dst: Option<Endpoint>, body: EventBody) -> Event {
    let mut e = Event::new(format!("e{id:08}"), Timestamp(T0 + secs * S), body);
    e.source = Some(src);
    e.destination = dst;
    e
}

fn flow(state: FlowState, sent: Option<u64>) -> EventBody {
    EventBody::Flow(FlowInfo {
        state,
        bytes_sent: sent,
        bytes_received: None,
        packets: None,
        duration_ms: None,
    })
}

fn ip_dst(ip: &str, port: u16) -> Endpoint {
    let mut d = Endpoint::external(ip.parse::<IpAddr>().unwrap());
    d.port = Some(port);
    d
}

fn kinds(alerts: &[Event]) -> Vec<(AlertKind, String)> {
    alerts
        .iter()
        .map(|e| (alert(e).kind, alert(e).subject.clone()))
        .collect()
}

#[test]
fn address_rotation_within_a_network_is_not_a_new_destination() {
    let w = "ml/fetcher";
    let mut events = Vec::new();
    // 25 h of flows to five addresses of one /24, without names, from churning pods.
    for i in 0..300 {
        let d = ip_dst(&format!("203.0.113.{}", i % 5 + 1), 443);
        let p = pod(w, &format!("fetcher-{}", i / 40));
        events.push(ev(
            i,
            i as i64 * 300,
            p,
            Some(d),
            flow(FlowState::End, Some(1_000)),
        ));
    }
    let after = 26 * 3600;
    events.push(ev(
        1000,
        after,
        pod(w, "fetcher-x"),
        Some(ip_dst("203.0.113.99", 443)),
        flow(FlowState::End, Some(1_000)),
    ));
    assert!(run(DetectConfig::default(), &events).is_empty());
    events.push(ev(
        1001,
        after + 60,
        pod(w, "fetcher-x"),
        Some(ip_dst("198.51.100.3", 443)),
        flow(FlowState::New, None),
    ));
    events.push(ev(
        1002,
        after + 70,
        pod(w, "fetcher-x"),
        Some(ip_dst("198.51.100.3", 443)),
        flow(FlowState::End, Some(500)),
    ));
    let alerts = run(DetectConfig::default(), &events);
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::NewDestination, w.to_string())]
    );
    assert_eq!(alert(&alerts[0]).evidence, vec!["e00001001", "e00001002"]);
}

#[test]
fn dns_features_written_by_the_proxy_are_used() {
    // Short names, but the producer's features say long high-entropy labels.
    let w = "app/api";
    let events: Vec<Event> = (0..30)
        .map(|i| {
            let body = EventBody::Dns(DnsInfo {
                query: format!("q{i}.x.tunnel.example"),
                qtype: Some("A".into()),
                rcode: Some("NXDOMAIN".into()),
                features: Some(DnsFeatures {
                    labels: 4,
                    longest_label: 48,
                    length: 70,
                    entropy: palisade_events::Centi(450),
                }),
                ..DnsInfo::default()
            });
            ev(i, i as i64 * 10, pod(w, "api-0"), None, body)
        })
        .collect();
    let alerts = run(DetectConfig::default(), &events);
    assert_eq!(kinds(&alerts), vec![(AlertKind::DnsTunnel, w.to_string())]);
    // Without features the same names are plain.
    let plain: Vec<Event> = events
        .into_iter()
        .map(|mut e| {
            if let EventBody::Dns(d) = &mut e.body {
                d.features = None;
            }
            e
        })
        .collect();
    assert!(run(DetectConfig::default(), &plain).is_empty());
}

#[test]
fn a_brand_new_scanning_pod_is_caught_while_its_workload_is_learning() {
    let w = "default/attacker";
    let events: Vec<Event> = (0..15)
        .map(|i| {
            let mut d = Endpoint::new(EndpointKind::Pod);
            d.ip = Some(format!("10.0.3.{}", i + 1).parse().unwrap());
            d.port = Some(22);
            let mut e = ev(
                i,
                i as i64,
                pod(w, "attacker"),
                Some(d),
                flow(FlowState::Denied, None),
            );
            e.verdict = Some(Verdict::Deny);
            e
        })
        .collect();
    let alerts = run(DetectConfig::default(), &events);
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::LateralMovement, w.to_string())]
    );
    // Nine destinations are not a fan-out.
    assert!(run(DetectConfig::default(), &events[..9]).is_empty());
    // Denied egress towards rotating public addresses is not lateral movement.
    let public: Vec<Event> = (0..30)
        .map(|i| {
            let d = ip_dst(&format!("151.101.{}.10", i + 1), 443);
            let mut e = ev(
                i,
                i as i64,
                pod("web/app", "app-0"),
                Some(d),
                flow(FlowState::Denied, None),
            );
            e.verdict = Some(Verdict::Deny);
            e
        })
        .collect();
    assert!(run(DetectConfig::default(), &public).is_empty());
}

#[test]
fn a_brand_new_consumer_hammering_the_api_is_caught() {
    let mut client = Endpoint::new(EndpointKind::External);
    client.ip = Some("192.0.2.1".parse().unwrap());
    let req = |i: usize, ms: i64, consumer: &str| {
        let body = EventBody::Http(HttpInfo {
            path: Some(format!("/v1/chat/completions/{i}")),
            consumer: Some(consumer.into()),
            ..HttpInfo::default()
        });
        let mut e = ev(i, 0, client.clone(), None, body);
        e.time = Timestamp(T0 + ms * 1000);
        e
    };
    // A steady consumer for two hours, then a newcomer at 1,000 requests a minute.
    let mut events: Vec<Event> = (0..1200)
        .map(|i| req(i, i as i64 * 6_000, "steady"))
        .collect();
    events.extend((0..2000).map(|i| req(10_000 + i, 7_200_000 + i as i64 * 60, "newcomer")));
    events.sort_by_key(|e| e.time);
    let alerts = run(DetectConfig::default(), &events);
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::InferenceAbuse, "consumer:newcomer".to_string())]
    );
}

#[test]
fn a_sustained_exfiltration_is_one_alert() {
    let w = "data/exporter";
    let d = || {
        let mut d = ip_dst("192.0.2.50", 443);
        d.fqdn = Some("backup.example.net".into());
        d
    };
    let mut events = Vec::new();
    // 25 h of small uploads once a minute, then 30 minutes of 1 GB a minute.
    for i in 0..(25 * 60) {
        events.push(ev(
            i,
            i as i64 * 60,
            pod(w, "exporter-0"),
            Some(d()),
            flow(FlowState::End, Some(200_000 + (i as u64 % 7) * 10_000)),
        ));
    }
    for i in 0..30 {
        events.push(ev(
            5000 + i,
            26 * 3600 + i as i64 * 60,
            pod(w, "exporter-0"),
            Some(d()),
            flow(FlowState::End, Some(1_000_000_000)),
        ));
    }
    let alerts = run(DetectConfig::default(), &events);
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::EgressVolume, w.to_string())]
    );
    assert!(alert(&alerts[0])
        .evidence
        .iter()
        .all(|id| id.as_str() >= "e00005000"));
}

/// Event `i` of a flood: `w` sends 1,000 bytes to a public address of its own.
fn to_address_of_its_own(w: &str, i: usize, secs: i64) -> Event {
    let ip = format!("{}.{}.{}.7", 11 + i / 65_536 % 80, i / 256 % 256, i % 256);
    ev(
        i,
        secs,
        pod(w, "scanner-0"),
        Some(ip_dst(&ip, 443)),
        flow(FlowState::End, Some(1_000)),
    )
}

/// Pods choose where they connect. On the old code every destination a workload reached was
/// remembered forever, twice (the new-destination detector's list, and an egress-volume
/// pair with up to a day of history), and every transfer of a minute was kept until the
/// minute closed: 150,000 addresses made the saved baselines (written every minute by
/// `palisade up`) about 30 MB, and they kept growing. Now each workload remembers at most
/// `newDestination.maxDestinationsPerWorkload` destinations, at most `egressVolume.maxPairs`
/// pairs have baselines of their own (the rest share one per workload), and a bucket keeps
/// only the transfers that can be evidence.
#[test]
fn a_flood_of_destinations_keeps_the_baselines_bounded() {
    let mut d = Detector::new(DetectConfig::default());
    let w = "ml/scanner";
    let mut flood = |from: usize, to: usize| {
        for i in from..to {
            // Ten minutes, in the learning window: nothing alerts, everything is learnt.
            let e = to_address_of_its_own(w, i, i as i64 / 250);
            assert!(d.observe(&e).is_empty());
        }
        d.save().len()
    };
    let half = flood(0, 75_000);
    let saved = flood(75_000, 150_000);
    assert!(
        saved < 6_000_000 && saved < half + half / 10,
        "saved baselines are {half} bytes after 75,000 destinations, {saved} after 150,000"
    );
}

/// Past `maxPairs`, bytes to destinations without a baseline of their own still count, for
/// their workload's `(other destinations)` pair: 2 GB spread over 2,000 new addresses in
/// one minute (1 MB each, far below a new pair's threshold) is one volume alert.
#[test]
fn a_transfer_spread_over_destinations_beyond_the_limit_is_still_one_volume() {
    let mut cfg = DetectConfig::default();
    cfg.egress_volume.max_pairs = 100;
    cfg.new_destination.enabled = false;
    let w = "data/exporter";
    let mut events: Vec<Event> = (0..100)
        .map(|i| to_address_of_its_own(w, i, i as i64))
        .collect();
    let after = 26 * 3600;
    for i in 0..2_000 {
        let mut e = to_address_of_its_own(w, 10_000 + i, after + i as i64 / 40);
        if let EventBody::Flow(f) = &mut e.body {
            f.bytes_sent = Some(1_000_000);
        }
        events.push(e);
    }
    let alerts = run(cfg, &events);
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::EgressVolume, w.to_string())],
        "{}",
        describe(&alerts)
    );
    let a = alert(&alerts[0]);
    assert!(a.summary.contains("(other destinations)"), "{}", a.summary);
    assert_eq!(a.evidence.len(), 100, "at most maxEvidence ids");
}

/// Past `maxDestinationsPerWorkload`, a destination the workload could not remember still
/// alerts as new after the learning window.
#[test]
fn destinations_beyond_the_limit_still_alert_as_new() {
    let mut cfg = DetectConfig::default();
    cfg.new_destination.max_destinations_per_workload = 50;
    cfg.egress_volume.enabled = false;
    let w = "ml/fetcher";
    let mut events: Vec<Event> = (0..200)
        .map(|i| to_address_of_its_own(w, i, i as i64))
        .collect();
    // Address 150 was seen while learning, but past the limit: not remembered.
    events.push(to_address_of_its_own(w, 150, 26 * 3600));
    let alerts = run(cfg.clone(), &events);
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::NewDestination, w.to_string())]
    );
    // Address 10 was remembered: not new.
    events.pop();
    events.push(to_address_of_its_own(w, 10, 26 * 3600));
    assert!(run(cfg, &events).is_empty());
}

/// A pod decides how fast it asks. On the old code a DNS-tunnel window kept every query of
/// its 30 minutes: 200,000 queries under one domain in ten minutes were 200,000 names and
/// ids held (and saved every minute). Now a window holds at most
/// `dnsTunnel.maxQueriesPerWindow` (the newest), and a tunnel in the flood still alerts.
#[test]
fn a_flood_of_dns_queries_keeps_the_tunnel_window_bounded() {
    let mut d = Detector::new(DetectConfig::default());
    let w = "ml/chatty";
    let query = |i: usize, name: String| {
        ev(
            i,
            i as i64 / 400,
            pod(w, "chatty-0"),
            None,
            EventBody::Dns(DnsInfo {
                query: name,
                qtype: Some("A".into()),
                rcode: Some("NXDOMAIN".into()),
                ..DnsInfo::default()
            }),
        )
    };
    let mut flood = |from: usize, to: usize| {
        for i in from..to {
            assert!(d
                .observe(&query(i, format!("h{}.example.com", i % 50)))
                .is_empty());
        }
        d.save().len()
    };
    let half = flood(0, 100_000);
    let saved = flood(100_000, 200_000);
    assert!(
        saved < half + half / 10 && saved < 3_000_000,
        "saved baselines are {half} bytes after 100,000 queries, {saved} after 200,000"
    );
    // A tunnel under the same domain, amid the flood.
    let mut alerts = Vec::new();
    for i in 0..40 {
        let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let label: String = (0..40)
            .map(|_| {
                x ^= x >> 13;
                x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
                b"abcdefghijklmnopqrstuvwxyz234567"[(x >> 59) as usize] as char
            })
            .collect();
        let name = format!("{label}.example.com");
        alerts.extend(d.observe(&query(200_000 + i, name)));
    }
    alerts.extend(d.finish());
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::DnsTunnel, w.to_string())],
        "{}",
        describe(&alerts)
    );
}

/// A pod decides how fast it is denied. On the old code a workload's lateral-movement window
/// kept every denied connection of its 5 minutes (and their hosts and ports): 200,000 in
/// 100 seconds were all held, and saved every minute. Now a window holds at most
/// `lateralMovement.maxDeniedPerWindow` (the newest), and the scan still alerts once.
#[test]
fn a_flood_of_denied_connections_keeps_the_lateral_window_bounded() {
    let mut d = Detector::new(DetectConfig::default());
    let w = "dev/shell";
    let mut alerts = Vec::new();
    let mut flood = |from: usize, to: usize, alerts: &mut Vec<Event>| {
        for i in from..to {
            let ip = format!("10.{}.{}.{}", i / 65_536 % 256, i / 256 % 256, i % 256);
            let e = ev(
                i,
                i as i64 / 2_000,
                pod(w, "shell-0"),
                Some(ip_dst(&ip, 22)),
                flow(FlowState::Denied, None),
            );
            alerts.extend(d.observe(&e));
        }
        d.save().len()
    };
    let half = flood(0, 100_000, &mut alerts);
    let saved = flood(100_000, 200_000, &mut alerts);
    assert!(
        saved < half + half / 10 && saved < 4_000_000,
        "saved baselines are {half} bytes after 100,000 denied connections, {saved} after 200,000"
    );
    alerts.extend(d.finish());
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::LateralMovement, w.to_string())],
        "{}",
        describe(&alerts)
    );
}

/// Each new destination is a topic of the workload's pending alert. On the old code the
/// alert's summary named every one of them, and each signal searched the list: 20,000 new
/// destinations within the hold time made one alert with a summary of 1.7 MB (stored,
/// shown in the UI) after 200 million comparisons. Now a summary names at most 10 and counts
/// the rest.
#[test]
fn an_alert_about_many_destinations_has_a_bounded_summary() {
    let w = "ml/fetcher";
    let mut events: Vec<Event> = (0..10)
        .map(|i| to_address_of_its_own(w, i, i as i64))
        .collect();
    for i in 0..20_000 {
        events.push(to_address_of_its_own(
            w,
            100_000 + i,
            26 * 3600 + i as i64 / 100,
        ));
    }
    let alerts = run(DetectConfig::default(), &events);
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::NewDestination, w.to_string())]
    );
    let a = alert(&alerts[0]);
    assert!(
        a.summary.len() < 4_000,
        "summary is {} bytes: {}…",
        a.summary.len(),
        a.summary.chars().take(200).collect::<String>()
    );
    assert!(
        a.summary.ends_with("; and 19990 more signals like these."),
        "{}",
        a.summary
    );
    assert_eq!(a.evidence.len(), 100);
}

/// A pod decides how many domains it asks for. On the old code every (workload, registered
/// domain) had a window of its own for 30 minutes: 200,000 queries under as many domains were
/// 200,000 windows. Now at most `dnsTunnel.maxWindows` exist; queries under further domains
/// count in their workload's `(other domains)` window, so a tunnel through a new domain
/// after the flood still alerts.
#[test]
fn a_flood_of_domains_keeps_the_tunnel_windows_bounded() {
    let mut d = Detector::new(DetectConfig::default());
    let w = "ml/chatty";
    let query = |i: usize, name: String| {
        ev(
            i,
            i as i64 / 400,
            pod(w, "chatty-0"),
            None,
            EventBody::Dns(DnsInfo {
                query: name,
                qtype: Some("A".into()),
                rcode: Some("NXDOMAIN".into()),
                ..DnsInfo::default()
            }),
        )
    };
    let mut flood = |from: usize, to: usize| {
        for i in from..to {
            assert!(d.observe(&query(i, format!("www.d{i}.com"))).is_empty());
        }
        d.save().len()
    };
    let half = flood(0, 100_000);
    let saved = flood(100_000, 200_000);
    assert!(
        saved < half + half / 10,
        "saved baselines are {half} bytes after 100,000 domains, {saved} after 200,000"
    );
    let mut alerts = Vec::new();
    for i in 0..40u64 {
        let mut x = (i + 7).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let label: String = (0..40)
            .map(|_| {
                x ^= x >> 13;
                x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
                b"abcdefghijklmnopqrstuvwxyz234567"[(x >> 59) as usize] as char
            })
            .collect();
        alerts.extend(d.observe(&query(
            300_000 + i as usize,
            format!("{label}.tunnel-c2.io"),
        )));
    }
    alerts.extend(d.finish());
    assert_eq!(
        kinds(&alerts),
        vec![(AlertKind::DnsTunnel, w.to_string())],
        "{}",
        describe(&alerts)
    );
}

/// Clients and pods decide how many consumers and workloads there are (every subject a
/// JWT issuer signs is a consumer, every bare pod name a workload). On the old code each
/// one got baselines for ever: 5,000 consumers of one request each left 5,000 of them in the
/// saved state. Now at most `maxSubjects` are kept, the quietest are evicted (and counted),
/// and a busy one keeps its baselines.
#[test]
fn a_flood_of_consumers_evicts_the_quietest_and_counts_them() {
    let cfg: DetectConfig = serde_json::from_str(r#"{"maxSubjects": 100}"#).unwrap();
    let mut d = Detector::new(cfg);
    let mut client = Endpoint::new(EndpointKind::External);
    client.ip = Some("192.0.2.1".parse().unwrap());
    let req = |i: usize, secs: i64, consumer: &str| {
        let body = EventBody::Http(HttpInfo {
            path: Some("/v1/chat/completions".into()),
            consumer: Some(consumer.into()),
            bytes_in: Some(100),
            ..HttpInfo::default()
        });
        ev(i, secs, client.clone(), None, body)
    };
    for i in 0..5_000 {
        d.observe(&req(i, i as i64, &format!("made-up-{i}")));
        // A consumer that keeps calling, and a workload that keeps resolving names.
        d.observe(&req(100_000 + i, i as i64, "steady"));
        let q = EventBody::Dns(DnsInfo {
            query: "huggingface.co".into(),
            rcode: Some("NOERROR".into()),
            ..DnsInfo::default()
        });
        d.observe(&ev(
            200_000 + i,
            i as i64,
            pod("ml/train", "train-0"),
            None,
            q,
        ));
    }
    let saved: serde_json::Value = serde_json::from_str(&d.save()).unwrap();
    let kept = saved["first_seen"].as_object().unwrap();
    assert!(kept.len() <= 100, "{} subjects kept", kept.len());
    let consumers = saved["inference"]["consumers"].as_object().unwrap();
    assert!(consumers.len() <= 100, "{} consumers kept", consumers.len());
    // The busy ones kept their first event time (their learning window did not restart).
    assert_eq!(kept["consumer:steady"].as_i64(), Some(T0));
    assert_eq!(kept["ml/train"].as_i64(), Some(T0));
    assert!(d.evicted() >= 4_900, "{} evicted", d.evicted());
    // Saved state with the count loads back.
    let again = Detector::load(DetectConfig::default(), &d.save()).unwrap();
    assert_eq!(again.evicted(), d.evicted());
}
