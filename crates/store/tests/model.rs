//! The store against a model: random events (out of time order, every type and verdict,
//! shared and unique workloads) inserted in batches of very different sizes, then random
//! queries and counts compared with a plain filter-and-sort over the same events, before
//! and after deleting old rows.

use std::net::{IpAddr, Ipv4Addr};

use palisade_events::*;
use palisade_store::{Query, Store};

/// A directory under the system temp dir, removed on drop (also when a check fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "palisade-store-model-{}-{}",
            std::process::id(),
            now_micros()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORKLOADS: [&str; 6] = ["a/web", "a/api", "b/db", "b/job", "c/x", "ns/rare"];

fn event(rng: &mut Rng, i: u64) -> Event {
    // Mostly increasing time with jitter, and now and then a late event.
    let mut time = 1_000_000 + i as i64 * 10 + rng.below(50) as i64;
    if rng.below(100) == 0 {
        time -= rng.below(200_000) as i64;
    }
    let body = match rng.below(4) {
        0 => EventBody::Flow(FlowInfo {
            state: FlowState::End,
            bytes_sent: Some(i),
            bytes_received: None,
            packets: None,
            duration_ms: None,
        }),
        1 => EventBody::Dns(DnsInfo {
            query: format!("h{}.example.com", rng.below(30)),
            ..DnsInfo::default()
        }),
        2 => EventBody::Http(HttpInfo {
            path: Some("/v1".into()),
            ..HttpInfo::default()
        }),
        _ => EventBody::Alert(AlertInfo {
            kind: AlertKind::DnsTunnel,
            severity: Severity::Low,
            subject: "a/web".into(),
            summary: "s".into(),
            evidence: Vec::new(),
        }),
    };
    let mut e = Event::new(format!("e{i}"), Timestamp(time), body);
    // "ns/rare" is a source only once in a while.
    let n = if rng.below(50) == 0 { 6 } else { 5 };
    let w = WORKLOADS[rng.below(n) as usize];
    if rng.below(10) != 0 {
        let (ns, name) = w.split_once('/').unwrap();
        let mut src = Endpoint::pod(ns, format!("{name}-0"));
        src.workload = Some(w.into());
        e.source = Some(src);
    }
    e.destination = match rng.below(5) {
        0 => None,
        1 => Some(Endpoint::pod("b", "db")), // displayed "b/db", also a workload name
        2 => Some(Endpoint::pod("a", "web")), // sometimes equal to the source workload
        _ => Some(Endpoint::external(IpAddr::V4(Ipv4Addr::new(
            203,
            0,
            113,
            rng.below(40) as u8,
        )))),
    };
    e.verdict = match rng.below(5) {
        0 => None,
        1 => Some(Verdict::Deny),
        2 => Some(Verdict::Audit),
        _ => Some(Verdict::Allow),
    };
    e
}

fn matches(q: &Query, seq: i64, e: &Event) -> bool {
    let t = e.time.as_micros();
    let src = e.source.as_ref().and_then(|s| s.workload.as_deref());
    let dst = e.destination.as_ref().map(|d| d.display_name());
    (q.types.is_empty() || q.types.contains(&e.event_type()))
        && q.since_us.is_none_or(|s| t >= s)
        && q.until_us.is_none_or(|u| t < u)
        && q.workload
            .as_deref()
            .is_none_or(|w| src == Some(w) || dst.as_deref() == Some(w))
        && q.verdict
            .as_deref()
            .is_none_or(|v| e.verdict.map(|x| x.as_str()) == Some(v))
        && q.after_seq.is_none_or(|a| seq > a)
        && q.through_seq.is_none_or(|t| seq <= t)
}

fn random_query(rng: &mut Rng, max_seq: i64, max_time: i64) -> Query {
    let mut q = Query::default();
    if rng.below(2) == 0 {
        q.types = EventType::ALL
            .into_iter()
            .filter(|_| rng.below(2) == 0)
            .collect();
    }
    let time = |rng: &mut Rng| 900_000 + rng.below((max_time - 900_000) as u64 + 100) as i64;
    if rng.below(2) == 0 {
        q.since_us = Some(time(rng));
    }
    if rng.below(3) == 0 {
        q.until_us = Some(time(rng));
    }
    if rng.below(2) == 0 {
        q.workload = Some(match rng.below(8) {
            6 => "203.0.113.7".into(),
            7 => "nobody/here".into(),
            w => WORKLOADS[w as usize].into(),
        });
    }
    if rng.below(3) == 0 {
        q.verdict = Some(["allow", "deny", "audit", "bogus"][rng.below(4) as usize].into());
    }
    if rng.below(4) == 0 {
        q.after_seq = Some(rng.below(max_seq as u64 + 2) as i64 - 1);
    }
    if rng.below(4) == 0 {
        q.through_seq = Some(rng.below(max_seq as u64 + 2) as i64 - 1);
    }
    if rng.below(2) == 0 {
        q.limit = [1, 5, 100, 5_000][rng.below(4) as usize];
        q.newest = rng.below(2) == 0;
    }
    q
}

fn check(store: &Store, model: &[(i64, Event)], rng: &mut Rng, queries: usize) {
    let max_seq = model.iter().map(|(s, _)| *s).max().unwrap_or(0);
    let max_time = model
        .iter()
        .map(|(_, e)| e.time.as_micros())
        .max()
        .unwrap_or(0);
    for _ in 0..queries {
        let q = random_query(rng, max_seq, max_time);
        let mut want: Vec<(i64, Event)> = model
            .iter()
            .filter(|(s, e)| matches(&q, *s, e))
            .cloned()
            .collect();
        want.sort_by_key(|(s, e)| (e.time, *s));
        assert_eq!(store.count(&q).unwrap(), want.len() as u64, "count {q:?}");
        if q.limit > 0 && q.newest {
            want.drain(..want.len().saturating_sub(q.limit));
        } else if q.limit > 0 {
            want.truncate(q.limit);
        }
        let got = store.query(&q).unwrap();
        assert_eq!(got.len(), want.len(), "{q:?}");
        assert!(got == want, "rows differ for {q:?}");
    }
}

fn insert(store: &mut Store, model: &mut Vec<(i64, Event)>, events: Vec<Event>) {
    let before = store.latest_seq().unwrap().unwrap_or(0);
    assert_eq!(store.insert_batch(&events).unwrap(), events.len());
    let last = store.latest_seq().unwrap().unwrap();
    assert!(
        last - events.len() as i64 >= before,
        "sequence numbers reused"
    );
    let first = last - events.len() as i64 + 1;
    model.extend((first..).zip(events));
}

#[test]
fn queries_and_counts_match_a_model() {
    let dir = TempDir::new();
    let db = dir.0.join("events.db");
    let mut store = Store::open(&db).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut model = Vec::new();
    let mut i = 0;
    // Tiny inserts (batches are resumed), then inserts larger than one batch.
    for size in [1, 1, 3, 40, 7, 1, 300, 17_000, 2, 16_500, 1, 900] {
        let events: Vec<Event> = (i..i + size).map(|j| event(&mut rng, j)).collect();
        i += size;
        insert(&mut store, &mut model, events);
        check(&store, &model, &mut rng, 8);
    }
    check(&store, &model, &mut rng, 100);

    // Reopened, by another handle.
    let reader = Store::open(&db).unwrap();
    check(&reader, &model, &mut rng, 20);

    // Retention: whole batches, parts of batches, and late events in newer batches.
    for cut in [1_050_000, 1_300_000, 1_300_000, 1_310_000] {
        let expect = model
            .iter()
            .filter(|(_, e)| e.time.as_micros() < cut)
            .count();
        assert_eq!(store.delete_before(cut).unwrap(), expect);
        model.retain(|(_, e)| e.time.as_micros() >= cut);
        check(&store, &model, &mut rng, 30);
    }
    for size in [3, 10_000] {
        let events: Vec<Event> = (i..i + size).map(|j| event(&mut rng, j)).collect();
        i += size;
        insert(&mut store, &mut model, events);
    }
    check(&reader, &model, &mut rng, 60);

    // Everything gone: sequence numbers still only grow.
    let last = store.latest_seq().unwrap().unwrap();
    store.delete_before(i64::MAX).unwrap();
    model.clear();
    assert_eq!(store.count(&Query::default()).unwrap(), 0);
    insert(&mut store, &mut model, vec![event(&mut rng, i)]);
    assert!(model[0].0 > last);
    check(&store, &model, &mut rng, 20);
}

/// The row cap of the retention: the oldest rows by insertion go (whole batches, part of
/// one, rows already deleted by age in between), and every query still matches the model.
#[test]
fn keeping_the_newest_rows_matches_a_model() {
    let dir = TempDir::new();
    let db = dir.0.join("events.db");
    let mut store = Store::open(&db).unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut model = Vec::new();
    let mut i = 0;
    for size in [5, 17_000, 300, 16_500, 40] {
        let events: Vec<Event> = (i..i + size).map(|j| event(&mut rng, j)).collect();
        i += size;
        insert(&mut store, &mut model, events);
    }
    // Some rows in the middle go by age first (late events sit in newer batches).
    let cut = 1_200_000;
    let expect = model
        .iter()
        .filter(|(_, e)| e.time.as_micros() < cut)
        .count();
    assert_eq!(store.delete_before(cut).unwrap(), expect);
    model.retain(|(_, e)| e.time.as_micros() >= cut);
    for keep in [40_000, 30_000, 20_000, 16_384, 5_000, 5_000, 1] {
        let latest = store.latest_seq().unwrap().unwrap();
        let before = model.len();
        model.retain(|(s, _)| *s > latest - keep as i64);
        assert_eq!(
            store.keep_newest(keep).unwrap(),
            before - model.len(),
            "keep {keep}"
        );
        assert!(store.count(&Query::default()).unwrap() <= keep);
        check(&store, &model, &mut rng, 20);
    }
    // New rows after the cap: sequence numbers still only grow.
    let last = store.latest_seq().unwrap().unwrap();
    insert(&mut store, &mut model, vec![event(&mut rng, i)]);
    assert!(model.last().unwrap().0 > last);
    check(&store, &model, &mut rng, 20);
}
