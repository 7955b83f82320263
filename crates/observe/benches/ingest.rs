//! Ingest benchmark (`cargo bench -p palisade-observe --bench ingest`; not run in CI):
//! events through the data path's bounded channel and the store's background writer into
//! SQLite, as `palisade up`'s components do, then the common queries over the result.
//!
//! 1. throughput: 1,000,000 events as fast as the writer takes them (the producer waits
//!    instead of dropping), events/s into the store;
//! 2. paced at 50,000 events/s for 10 s with the data path's non-blocking send: drops must
//!    be zero, and `/metrics` shows the drop counter;
//! 3. overload, paced at 1,000,000 events/s for 2 s: drops are counted and shown;
//! 4. the store filled to `PALISADE_BENCH_ROWS` events (default 10,000,000), then the
//!    queries `palisade events` runs: by type, since, workload, and combinations.
//!
//! The database goes to `PALISADE_BENCH_DIR` (default `target/bench-ingest`) and is removed
//! afterwards unless `PALISADE_BENCH_KEEP=1`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use palisade_events::{
    AlertInfo, AlertKind, DnsInfo, Endpoint, Event, EventBody, EventSender, EventType, FlowInfo,
    FlowState, HttpInfo, PolicyRef, Protocol, Severity, Timestamp, TlsMode, Verdict,
};
use palisade_observe::metrics::{watch_channel, Metrics};
use palisade_store::{Query, Store, Writer};

const BASE_US: i64 = 1_795_000_000_000_000;
const STEP_US: i64 = 100;
const WORKLOADS: u64 = 200;

fn workload(w: u64) -> String {
    format!("ns{}/app{w}", w % 10)
}

/// Event number `i`: flows (60 %), DNS (25 %), HTTP (14 %), alerts (1 %) over 200
/// workloads, one in eight denied.
fn generate(i: u64) -> Event {
    let w = (i.wrapping_mul(2_654_435_761) >> 16) % WORKLOADS;
    let denied = i.is_multiple_of(8);
    let body = match i % 100 {
        0..=59 => EventBody::Flow(FlowInfo {
            state: if denied {
                FlowState::Denied
            } else {
                FlowState::End
            },
            bytes_sent: Some(i * 13 % 100_000),
            bytes_received: Some(i * 31 % 1_000_000),
            packets: Some(i % 200),
            duration_ms: Some(i % 5_000),
        }),
        60..=84 => EventBody::Dns(DnsInfo {
            query: format!("host{}.example.com", i % 1_000),
            qtype: Some("A".into()),
            rcode: Some("NOERROR".into()),
            answers: Some(vec![format!("203.0.113.{}", i % 250)]),
            ttl: Some(60),
            latency_us: Some(i % 3_000),
            features: None,
        }),
        85..=98 => EventBody::Http(HttpInfo {
            method: Some("GET".into()),
            host: Some("huggingface.co".into()),
            path: Some(format!("/api/models/m{}", i % 50)),
            status: Some(if denied { 403 } else { 200 }),
            bytes_in: Some(0),
            bytes_out: Some(i % 65_536),
            duration_ms: Some(i % 900),
            tls: Some(TlsMode::Intercepted),
            ..HttpInfo::default()
        }),
        _ => EventBody::Alert(AlertInfo {
            kind: AlertKind::NewDestination,
            severity: Severity::Medium,
            subject: workload(w),
            summary: format!("{} contacted a new destination.", workload(w)),
            evidence: vec![format!("{:020}", i.saturating_sub(9))],
        }),
    };
    let mut e = Event::new(
        format!("{i:020}"),
        Timestamp(BASE_US + i as i64 * STEP_US),
        body,
    );
    e.cluster = Some("default".into());
    e.node = Some(format!("node-{}", i % 4));
    if e.event_type() == EventType::Alert {
        return e;
    }
    let (ns, app) = (format!("ns{}", w % 10), format!("app{w}"));
    let mut src = Endpoint::pod(ns.clone(), format!("{app}-{}", i % 3));
    src.workload = Some(workload(w));
    src.ip = Some(IpAddr::V4(Ipv4Addr::new(
        10,
        0,
        (w % 250) as u8,
        (i % 250) as u8,
    )));
    src.labels.insert("app".into(), app);
    e.source = Some(src);
    let mut dst = Endpoint::external(IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 250) as u8)));
    dst.port = Some(443);
    dst.fqdn = Some("huggingface.co".into());
    e.destination = Some(dst);
    e.protocol = Some(Protocol::Tcp);
    e.verdict = Some(if denied {
        Verdict::Deny
    } else {
        Verdict::Allow
    });
    e.policy = Some(PolicyRef {
        kind: "SecurityPolicy".into(),
        namespace: Some(ns),
        name: "egress".into(),
        rule: Some("egress[0]".into()),
        stage: Some("namespace".into()),
        mode: Some("Enforce".into()),
        federation_revision: None,
    });
    e
}

/// Distinct events made once; sending clones one and gives it its own id and time, so the
/// producer costs what a component's event construction costs, not string formatting.
static POOL: std::sync::OnceLock<Vec<Event>> = std::sync::OnceLock::new();

fn event(i: u64) -> Event {
    let pool = POOL.get_or_init(|| (0..65_536).map(generate).collect());
    let mut e = pool[(i % pool.len() as u64) as usize].clone();
    e.id = format!("{i:020}");
    e.time = Timestamp(BASE_US + i as i64 * STEP_US);
    e
}

/// Sends events `from..to`, waiting (not dropping) when the queue is full.
fn send_all(tx: &EventSender, from: u64, to: u64) {
    for i in from..to {
        let mut e = event(i);
        loop {
            match tx.try_send_or_return(e) {
                Ok(()) => break,
                Err(back) => {
                    e = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }
}

/// Sends events `from..` at `rate` per second for `secs`, with the data path's
/// non-blocking send (full queue: dropped and counted). Returns the next index.
fn send_paced(tx: &EventSender, from: u64, rate: u64, secs: u64) -> u64 {
    let tick = Duration::from_millis(10);
    let per_tick = rate / 100;
    let start = Instant::now();
    let mut i = from;
    let mut batch = Vec::with_capacity(per_tick as usize);
    for t in 0..secs * 100 {
        batch.extend((i..i + per_tick).map(event));
        i += per_tick;
        tx.try_send_many(&mut batch);
        let next = start + tick * (t as u32 + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    i
}

/// (on-CPU, waiting-for-a-CPU) seconds of this process's live threads, from
/// `/proc/self/task/*/schedstat`: on a shared machine the second shows how much of the
/// wall time the pipeline was runnable but not running.
fn cpu_seconds() -> (f64, f64) {
    let mut on = 0u64;
    let mut wait = 0u64;
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let mut f = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
        on += f.next().unwrap_or(0);
        wait += f.next().unwrap_or(0);
    }
    (on as f64 / 1e9, wait as f64 / 1e9)
}

fn wait_written(h: &palisade_store::WriterHandle, n: u64) {
    while h.written() < n {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn timed<T>(f: impl Fn() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..3 {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.unwrap())
}

fn main() {
    let rows: u64 = std::env::var("PALISADE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::var("PALISADE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-ingest")
        });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.db");
    let metrics = Metrics::new();
    let t = Instant::now();
    let _ = event(0);
    let t = t.elapsed();
    let t2 = Instant::now();
    let n = 200_000;
    for i in 0..n {
        std::hint::black_box(event(i));
    }
    println!(
        "0. producer alone: pool of 65,536 events built in {:.2} s; {:.0} events/s made on one thread",
        t.as_secs_f64(),
        n as f64 / t2.elapsed().as_secs_f64()
    );

    // 1. Throughput.
    let n1 = 1_000_000u64.min(rows);
    let (tx, rx) = palisade_events::channel(65_536);
    let writer = Writer::default()
        .start(Store::open(&path).unwrap(), rx, None)
        .unwrap();
    let t = Instant::now();
    let cpu = cpu_seconds();
    send_all(&tx, 0, n1);
    wait_written(&writer, n1);
    let secs = t.elapsed().as_secs_f64();
    let (on, wait) = cpu_seconds();
    let (on, wait) = (on - cpu.0, wait - cpu.1);
    println!(
        "1. throughput: {n1} events in {secs:.2} s = {:.0} events/s into the store (dropped {}); threads on a CPU {on:.1} s, runnable but waiting for one {wait:.1} s; {:.1} µs CPU per event (producer + encode + SQLite)",
        n1 as f64 / secs,
        tx.stats().dropped,
        on * 1e6 / n1 as f64,
    );

    // 2. Paced at 50k/s.
    watch_channel("bench-50k", tx.watch());
    let before = writer.written();
    let next = send_paced(&tx, n1, 50_000, 10);
    wait_written(&writer, before + (next - n1) - tx.stats().dropped);
    let dropped = tx.stats().dropped;
    let line = metrics
        .render("")
        .lines()
        .find(|l| l.starts_with("palisade_events_dropped_total{component=\"bench-50k\"}"))
        .unwrap_or("")
        .to_string();
    println!("2. paced 50,000 events/s for 10 s: {} sent, {} stored, {dropped} dropped; /metrics: {line}", next - n1, writer.written() - before);
    drop(tx);
    writer.flush_and_stop().unwrap();

    // 3. Overload.
    let (tx, rx) = palisade_events::channel(65_536);
    watch_channel("bench-overload", tx.watch());
    let writer = Writer::default()
        .start(Store::open(&path).unwrap(), rx, None)
        .unwrap();
    let before = writer.written();
    let t = Instant::now();
    let next2 = send_paced(&tx, next, 1_000_000, 2);
    let offered = next2 - next;
    let took = t.elapsed().as_secs_f64();
    let stats = tx.stats();
    drop(tx);
    let done = writer.flush_and_stop().unwrap();
    let line = metrics
        .render("")
        .lines()
        .find(|l| l.starts_with("palisade_events_dropped_total{component=\"bench-overload\"}"))
        .unwrap_or("")
        .to_string();
    println!(
        "3. overload, offered {offered} events in {took:.2} s ({:.0}/s): {} stored, {} dropped, counted; /metrics: {line}",
        offered as f64 / took,
        done.written - before,
        stats.dropped
    );

    // 4. Fill to `rows`, then query.
    let mut store = Store::open(&path).unwrap();
    let have = store.count(&Query::default()).unwrap();
    if have < rows {
        let (tx, rx) = palisade_events::channel(65_536);
        let writer = Writer::default()
            .start(Store::open(&path).unwrap(), rx, None)
            .unwrap();
        let t = Instant::now();
        let cpu = cpu_seconds();
        let producer = std::thread::spawn(move || send_all(&tx, next2, next2 + rows - have));
        producer.join().unwrap();
        let done = writer.flush_and_stop().unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "4. filled to {rows} rows: {} more events in {secs:.1} s = {:.0} events/s",
            done.written,
            done.written as f64 / secs,
        );
        let _ = cpu;
        store = Store::open(&path).unwrap();
    }
    let total = store.count(&Query::default()).unwrap();
    let max_time = BASE_US + (next2 + rows.saturating_sub(have)) as i64 * STEP_US;
    println!(
        "   store: {total} events, {:.2} GB on disk",
        std::fs::metadata(&path)
            .map(|m| m.len() as f64 / 1e9)
            .unwrap_or(0.0)
    );
    let q =
        |types: Vec<EventType>, since: Option<i64>, workload: Option<&str>, limit: usize| Query {
            types,
            since_us: since,
            workload: workload.map(str::to_string),
            limit,
            ..Query::default()
        };
    let cases: Vec<(&str, Query)> = vec![
        (
            "--type alert --limit 100",
            q(vec![EventType::Alert], None, None, 100),
        ),
        (
            "--type flow --limit 1000",
            q(vec![EventType::Flow], None, None, 1000),
        ),
        (
            "--since 5s (of event time), all rows",
            q(vec![], Some(max_time - 5_000_000), None, 0),
        ),
        (
            "--since 10m --limit 1000",
            q(vec![], Some(max_time - 600_000_000), None, 1000),
        ),
        (
            "--workload ns3/app13 --limit 1000",
            q(vec![], None, Some("ns3/app13"), 1000),
        ),
        (
            "--workload ns3/app13 --type http --since 10m, all rows",
            q(
                vec![EventType::Http],
                Some(max_time - 600_000_000),
                Some("ns3/app13"),
                0,
            ),
        ),
        (
            "--type dns --verdict deny --limit 100",
            Query {
                verdict: Some("deny".into()),
                ..q(vec![EventType::Dns], None, None, 100)
            },
        ),
    ];
    for (name, query) in &cases {
        let (d, n) = timed(|| store.query(query).unwrap().len());
        println!(
            "   query {name:<55} {n:>7} rows in {:>8.1} ms",
            d.as_secs_f64() * 1e3
        );
    }
    let counts: Vec<(&str, Query)> = vec![
        ("count --type flow", q(vec![EventType::Flow], None, None, 0)),
        (
            "count --workload ns3/app13",
            q(vec![], None, Some("ns3/app13"), 0),
        ),
        (
            "count --since 10m",
            q(vec![], Some(max_time - 600_000_000), None, 0),
        ),
    ];
    for (name, query) in &counts {
        let (d, n) = timed(|| store.count(query).unwrap());
        println!("   {name:<61} {n:>7} in {:>8.1} ms", d.as_secs_f64() * 1e3);
    }
    if std::env::var("PALISADE_BENCH_KEEP").as_deref() != Ok("1") {
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
