//! scratch (to be deleted)
use palisade_events::*;
use rusqlite::{params, Connection};
use std::time::Instant;
#[path = "gen_scratch.rs"]
#[allow(dead_code)]
mod gen;

fn main() {
    let n: u64 = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
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
    for (name, idx) in [("skip","")][..0].iter().cloned().chain([("all5", "CREATE INDEX a ON events(time_us); CREATE INDEX b ON events(type,time_us); CREATE INDEX c ON events(src_workload,time_us); CREATE INDEX d ON events(dst,time_us); CREATE INDEX e ON events(verdict,time_us);"), ("noidx", ""), ("time", "CREATE INDEX a ON events(time_us);"), ("lowcard", "CREATE INDEX a ON events(time_us); CREATE INDEX b ON events(type,time_us); CREATE INDEX e ON events(verdict,time_us);"), ("nodst", "CREATE INDEX a ON events(time_us); CREATE INDEX b ON events(type,time_us); CREATE INDEX c ON events(src_workload,time_us); CREATE INDEX e ON events(verdict,time_us);"), ("partial", "CREATE INDEX a ON events(time_us); CREATE INDEX b ON events(type,time_us); CREATE INDEX c ON events(src_workload,time_us) WHERE src_workload IS NOT NULL; CREATE INDEX d ON events(dst,time_us); CREATE INDEX e ON events(verdict,time_us) WHERE verdict != 'allow';")].into_iter().filter(|(n,_)| std::env::var("ONLY").map_or(true, |o| o == *n))) {
        let path = format!("/tmp/scratch-{name}.db");
        let _ = std::fs::remove_file(&path); let _ = std::fs::remove_file(format!("{path}-wal"));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&mode).unwrap();
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
        conn.execute_batch(&format!("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536; {mode}
          CREATE TABLE events(seq INTEGER PRIMARY KEY, id TEXT, time_us INTEGER, type TEXT, src TEXT, src_workload TEXT, dst TEXT, verdict TEXT, json TEXT); {idx}")).unwrap();
        let t = Instant::now();
        let mut conn = conn;
        let multi: usize = std::env::var("MULTI").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        let one = "(?,?,?,?,?,?,?,?)";
        let sql_n = format!("INSERT INTO events(id,time_us,type,src,src_workload,dst,verdict,json) VALUES {}", vec![one; multi].join(","));
        let sql_1 = format!("INSERT INTO events(id,time_us,type,src,src_workload,dst,verdict,json) VALUES {one}");
        for chunk in events.chunks(batch).zip(jsons.chunks(batch)) {
            let tx = conn.transaction().unwrap();
            {
                let mut stn = tx.prepare_cached(&sql_n).unwrap();
                let mut st1 = tx.prepare_cached(&sql_1).unwrap();
                let rows: Vec<_> = chunk.0.iter().zip(chunk.1).collect();
                for group in rows.chunks(multi) {
                    let st = if group.len() == multi { &mut stn } else { &mut st1 };
                    let mut vals: Vec<rusqlite::types::Value> = Vec::new();
                    let mut flush = |st: &mut rusqlite::CachedStatement, vals: &mut Vec<rusqlite::types::Value>| { st.execute(rusqlite::params_from_iter(vals.drain(..))).unwrap(); };
                    for (e, j) in group {
                        use rusqlite::types::Value as V;
                        let o = |x: Option<String>| x.map_or(V::Null, V::Text);
                        vals.extend([V::Text(e.id.clone()), V::Integer(e.time.as_micros()), V::Text(e.event_type().as_str().into()),
                          o(e.source.as_ref().map(|s| s.display_name())), o(e.source.as_ref().and_then(|s| s.workload.clone())),
                          o(e.destination.as_ref().map(|s| s.display_name())), o(e.verdict.map(|v| v.as_str().to_string())), V::Text((*j).clone())]);
                        if group.len() != multi { flush(st, &mut vals); }
                    }
                    if group.len() == multi { flush(st, &mut vals); }
                }
            }
            tx.commit().unwrap();
        }
        eprintln!("{name}: {:.2} us/row", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
}
