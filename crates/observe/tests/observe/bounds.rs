//! Bounds on what events someone else wrote can make the observe crate keep: events
//! imported from a file or another cluster name any policy they like.

use palisade_events::{DnsInfo, Event, EventBody, PolicyRef, Timestamp, Verdict};
use palisade_observe::metrics::Metrics;

fn decided_by(i: usize, name: &str) -> Event {
    let mut e = Event::new(
        format!("e{i}"),
        Timestamp(1_000_000 + i as i64),
        EventBody::Dns(DnsInfo {
            query: "x.example".into(),
            ..DnsInfo::default()
        }),
    );
    e.verdict = Some(Verdict::Deny);
    e.policy = Some(PolicyRef {
        kind: "SecurityPolicy".into(),
        namespace: Some("ml".into()),
        name: name.into(),
        rule: None,
        stage: None,
        mode: None,
        federation_revision: None,
    });
    e
}

/// The `palisade_verdicts_total` lines of an exposition.
fn verdict_series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("palisade_verdicts_total{"))
        .collect()
}

#[test]
fn a_flood_of_policy_names_keeps_the_verdict_series_bounded() {
    // 20,000 imported events, each naming a policy of its own (and one 100 KB long): the
    // registry keeps series for the first 1,000 policies and counts the rest under
    // "(other)", instead of 20,000 series (each name kept forever, scraped every time).
    let m = Metrics::new();
    let long = "p".repeat(100_000);
    let mut events: Vec<Event> = (0..20_000)
        .map(|i| decided_by(i, &format!("imported-{i}")))
        .collect();
    events.push(decided_by(20_000, &long));
    // A policy that already has its series keeps counting there.
    events.push(decided_by(20_001, "imported-0"));
    m.record(&events);
    let text = m.render("");
    let series = verdict_series(&text);
    assert_eq!(series.len(), 1_001, "1,000 policies and (other)");
    assert!(
        series.contains(&"palisade_verdicts_total{type=\"dns\",verdict=\"deny\",policy_kind=\"(other)\",policy_namespace=\"(other)\",policy=\"(other)\"} 19001"),
        "{:?}",
        &series[..3]
    );
    assert!(series.contains(&"palisade_verdicts_total{type=\"dns\",verdict=\"deny\",policy_kind=\"SecurityPolicy\",policy_namespace=\"ml\",policy=\"imported-0\"} 2"));
    assert!(text.contains(
        "palisade_metrics_label_overflow_total{metric=\"palisade_verdicts_total\"} 19001\n"
    ));
    assert!(text.len() < 400_000, "exposition is {} bytes", text.len());
    let total: u64 = series
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 20_002, "every verdict is still counted");
}

#[test]
fn a_long_policy_name_is_cut_in_its_label() {
    let m = Metrics::new();
    m.record([&decided_by(0, &"é".repeat(1_000))]);
    let text = m.render("");
    let series = verdict_series(&text);
    assert_eq!(series.len(), 1);
    let name = series[0]
        .split("policy=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    assert!(
        name == "é".repeat(126),
        "cut at 253 bytes, on a character boundary: {} bytes",
        name.len()
    );
}

#[test]
fn the_metrics_follower_reads_a_backlog_in_bounded_steps() {
    use palisade_observe::metrics::{StoreTail, TAIL_CHUNK};
    let dir = std::env::temp_dir().join(format!("palisade-obs-tail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut store = palisade_store::Store::open(dir.join("events.db")).unwrap();
    let m = Metrics::new();
    let mut tail = StoreTail::new();
    assert_eq!(tail.step(&store, &m).unwrap(), (0, false));
    // A backlog of 50,000 events (a burst while the follower was busy).
    let events: Vec<Event> = (0..50_000)
        .map(|i| decided_by(i, &format!("p{}", i % 7)))
        .collect();
    store.insert_batch(&events).unwrap();
    let mut steps = Vec::new();
    loop {
        let (n, more) = tail.step(&store, &m).unwrap();
        steps.push(n);
        if !more {
            break;
        }
    }
    assert!(steps.iter().all(|n| *n as i64 <= TAIL_CHUNK), "{steps:?}");
    assert_eq!(steps.iter().sum::<usize>(), 50_000, "{steps:?}");
    assert!(m
        .render("")
        .contains("palisade_events_total{type=\"dns\"} 50000\n"));
    // Caught up: nothing more, nothing counted twice.
    assert_eq!(tail.step(&store, &m).unwrap(), (0, false));
    store.insert_batch(&events[..3]).unwrap();
    assert_eq!(tail.step(&store, &m).unwrap(), (3, false));
    let _ = std::fs::remove_dir_all(&dir);
}
