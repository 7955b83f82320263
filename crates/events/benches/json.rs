//! Serializing one realistic HTTP event (the line the egress gateway writes) with
//! `serde_json::to_writer` and with the crate's own writer behind `Event::write_json_line`
//! and `Event::to_json`.
//!
//! `cargo bench -p palisade-events --bench json`

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_events::Event;
use std::hint::black_box;

/// The line the egress gateway writes for one proxied request.
const EGRESS_HTTP_LINE: &str = include_str!("egress_http_event.json");

fn bench_http_event(c: &mut Criterion) {
    let event = Event::from_json_line(EGRESS_HTTP_LINE).expect("the example line parses");
    let line = EGRESS_HTTP_LINE.trim_end();
    let mut check = Vec::new();
    event.write_json_line(&mut check);
    assert_eq!(check, format!("{line}\n").as_bytes());

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
