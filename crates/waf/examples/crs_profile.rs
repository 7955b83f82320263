//! Runs one of the anchor's three requests through Debian's CRS 3.3.4 (paranoia level 1)
//! N times and prints the time per request: a small driver for profilers, e.g.
//!
//! ```sh
//! cargo build --release -p palisade-waf --example crs_profile
//! valgrind --tool=callgrind target/release/examples/crs_profile get 200
//! ```
//!
//! Kinds: `get` (benign GET with a query string), `json` (benign 2 KiB JSON POST), `sqli`
//! (blocked GET). Instructions per request: run with N and 2N and divide the difference.

use palisade_waf::{Request, RulesetBuilder, Transaction};
use std::time::Instant;

/// The allocator the `palisade` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "get".into());
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rules = std::path::Path::new("/usr/share/modsecurity-crs/rules");
    let setup = std::path::Path::new("/etc/modsecurity/crs/crs-setup.conf");
    if !rules.is_dir() || !setup.is_file() {
        eprintln!("skipped: Debian's modsecurity-crs is not installed");
        return;
    }
    let mut b = RulesetBuilder::new();
    let loaded = b
        .load_str(
            "engine.conf",
            "SecRuleEngine On\nSecRequestBodyAccess On\n\
             SecRule REQUEST_HEADERS:Content-Type \"^application/json\" \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n",
        )
        .and_then(|()| b.load_file(setup))
        .and_then(|()| b.load_dir(rules));
    let rs = match loaded.and_then(|()| b.build()) {
        Ok(rs) => rs,
        Err(e) => {
            eprintln!("rules: {e}");
            std::process::exit(1);
        }
    };
    let body = format!(
        r#"{{"customer":{{"id":48213,"name":"Alice Example","email":"alice@example.test"}},"currency":"EUR","note":"{}"}}"#,
        "a".repeat(1900)
    );
    let len = body.len().to_string();
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b"Host", b"app.bench.test"),
        (b"User-Agent", b"palisade-bench/1.0"),
        (b"Accept", b"*/*"),
    ];
    let (method, uri, body): (&str, &[u8], &[u8]) = match kind.as_str() {
        "json" => {
            headers.push((b"Content-Type", b"application/json"));
            headers.push((b"Content-Length", len.as_bytes()));
            ("POST", b"/api/orders", body.as_bytes())
        }
        "sqli" => (
            "GET",
            b"/search?q=blue+widget&id=1%27%20OR%20%271%27%3D%271",
            b"",
        ),
        _ => (
            "GET",
            b"/search?q=blue+widget&page=2&lang=en&sort=price",
            b"",
        ),
    };
    let started = Instant::now();
    let mut blocked = 0;
    for _ in 0..n {
        let mut tx = Transaction::new(&rs);
        let req = Request {
            method,
            uri,
            protocol: "HTTP/1.1",
            headers: &headers,
            body,
            remote_addr: "127.0.0.1",
        };
        if tx.process_request(&req).is_some() {
            blocked += 1;
        }
        tx.process_logging();
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / f64::from(n.max(1));
    println!("{kind}: {n} requests, {blocked} blocked, {per:.1} µs per request");
}
