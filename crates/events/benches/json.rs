//! Serializing one realistic HTTP event (the line the egress gateway writes) with
//! `serde_json::to_writer` and with the crate's own writer behind `Event::write_json_line`
//! and `Event::to_json`.
//!
//! `cargo bench -p palisade-events --bench json`

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_events::Event;
use std::hint::black_box;

const EGRESS_HTTP_LINE: &str = r#"{"id":"01M8DQ6Z9FWJ9N90WHPCD9K8JK","time":"2026-11-27T05:21:23.247493Z","type":"http","cluster":"default","node":"node-1","source":{"kind":"pod","namespace":"bench","name":"loadgen","workload":"bench/loadgen","ip":"127.0.0.1","labels":{"app":"loadgen"}},"destination":{"kind":"external","ip":"127.0.0.1","port":18999,"fqdn":"allowed.test"},"protocol":"TCP","verdict":"allow","policy":{"kind":"SecurityPolicy","namespace":"bench","name":"allow-list","rule":"egress[0]","stage":"namespace","mode":"Enforce"},"http":{"method":"GET","host":"allowed.test","path":"/","status":200,"bytesIn":0,"bytesOut":100,"durationMs":7,"tls":"none","version":"HTTP/1.1"}}"#;

fn bench_http_event(c: &mut Criterion) {
    let event = Event::from_json_line(EGRESS_HTTP_LINE).expect("the example line parses");
    let mut check = Vec::new();
    event.write_json_line(&mut check);
    assert_eq!(check, format!("{EGRESS_HTTP_LINE}\n").as_bytes());

    let mut g = c.benchmark_group("event_json");
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("serde_json_to_writer", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&event)).expect("serializes");
            black_box(buf.len())
        })
    });
    g.bench_function("write_json_line", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&event).write_json_line(&mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("serde_json_to_string", |b| {
        b.iter(|| serde_json::to_string(black_box(&event)).expect("serializes"))
    });
    g.bench_function("to_json", |b| b.iter(|| black_box(&event).to_json()));
    g.finish();
}

criterion_group!(benches, bench_http_event);
criterion_main!(benches);
