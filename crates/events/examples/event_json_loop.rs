//! Serializes the egress gateway's HTTP event N times, with `serde_json::to_writer`
//! (`old`) or `Event::write_json_line` (`new`): a fixed amount of work to count
//! instructions with valgrind, which criterion's timing loop does not allow.
//!
//! ```text
//! cargo build --release -p palisade-events --example event_json_loop
//! valgrind --tool=callgrind target/release/examples/event_json_loop new 1000
//! valgrind --tool=callgrind target/release/examples/event_json_loop new 0
//! ```
//! The difference of the two totals, divided by 1,000, is the cost of one event.

use palisade_events::Event;
use std::hint::black_box;

const EGRESS_HTTP_LINE: &str = include_str!("../benches/egress_http_event.json");

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: event_json_loop old|new N");
        std::process::exit(2);
    };
    let event = match Event::from_json_line(EGRESS_HTTP_LINE) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("the example event does not parse: {e}");
            std::process::exit(1);
        }
    };
    let mut buf = Vec::with_capacity(1024);
    for _ in 0..n {
        buf.clear();
        if mode == "old" {
            if let Err(e) = serde_json::to_writer(&mut buf, black_box(&event)) {
                eprintln!("serde_json failed: {e}");
                std::process::exit(1);
            }
        } else {
            black_box(&event).write_json_line(&mut buf);
        }
        black_box(buf.len());
    }
    println!("{mode}: {n} events, last line {} bytes", buf.len());
}
