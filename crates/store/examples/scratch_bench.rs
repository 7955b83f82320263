//! scratch (to be deleted)
use palisade_events::*;
use rusqlite::{params, Connection};
use std::time::Instant;
#[path = "gen_scratch.rs"]
#[allow(dead_code)]
mod gen;

fn main() {
    let n = 200_000u64;
    let mut ids = UlidGenerator::new();
    let t = Instant::now();
    let events: Vec<Event> = (0..n).map(|i| gen::generate(&mut ids, i)).collect();
    eprintln!("generate: {:.2} us/ev", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    let mut total = 0usize;
    let mut buf = Vec::new();
    for e in &events { buf.clear(); e.write_json_line(&mut buf); total += buf.len(); }
    eprintln!("json: {:.2} us/ev, avg {} bytes", t.elapsed().as_secs_f64() * 1e6 / n as f64, total / n as usize);
    let jsons: Vec<String> = events.iter().map(|e| e.to_json()).collect();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let batch: usize = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    for (name, idx) in [("all5", "CREATE INDEX a ON events(time_us); CREATE INDEX b ON events(type,time_us); CREATE INDEX c ON events(src_workload,time_us); CREATE INDEX d ON events(dst,time_us); CREATE INDEX e ON events(verdict,time_us);")] {
        let path = format!("/tmp/scratch-{name}.db");
        let _ = std::fs::remove_file(&path); let _ = std::fs::remove_file(format!("{path}-wal"));
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
        conn.execute_batch(&format!("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536; {mode}
          CREATE TABLE events(seq INTEGER PRIMARY KEY, id TEXT, time_us INTEGER, type TEXT, src TEXT, src_workload TEXT, dst TEXT, verdict TEXT, json TEXT); {idx}")).unwrap();
        let t = Instant::now();
        let mut conn = conn;
        for chunk in events.chunks(batch).zip(jsons.chunks(batch)) {
            let tx = conn.transaction().unwrap();
            {
                let mut st = tx.prepare_cached("INSERT INTO events(id,time_us,type,src,src_workload,dst,verdict,json) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)").unwrap();
                for (e, j) in chunk.0.iter().zip(chunk.1) {
                    st.execute(params![e.id, e.time.as_micros(), e.event_type().as_str(),
                        e.source.as_ref().map(|s| s.display_name()), e.source.as_ref().and_then(|s| s.workload.clone()),
                        e.destination.as_ref().map(|s| s.display_name()), e.verdict.map(|v| v.as_str()), j]).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        eprintln!("{name}: {:.2} us/row", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
}
