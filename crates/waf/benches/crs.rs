//! Per-request cost of the WAF engine at paranoia level 1, for the three request kinds of
//! `shared/bench/waf-anchor.sh`: a benign GET with a query string, a benign 2 KiB JSON
//! POST, and a SQL injection GET (blocked). Group `crs_pl1`: OWASP CRS v4.25.0 from
//! `../shared/data`; group `crs334_pl1`: Debian's `modsecurity-crs` 3.3.4 (the rules the
//! nginx + ModSecurity anchor runs). Each group is skipped, with a printed reason, when its
//! rules are absent.

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_waf::{Request, Ruleset, RulesetBuilder, Transaction};
use std::hint::black_box;
use std::path::PathBuf;

/// The engine settings of the anchor's `modsecurity-bench.conf` that affect detection.
const ENGINE: &str = r#"
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyJsonDepthLimit 512
SecArgumentsLimit 1000
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
"#;

/// Debian's `modsecurity-crs` 3.3.4 with its `crs-setup.conf` (paranoia level 1,
/// anomaly scoring).
fn ruleset_334() -> Option<Ruleset> {
    let rules = std::path::Path::new("/usr/share/modsecurity-crs/rules");
    let setup = std::path::Path::new("/etc/modsecurity/crs/crs-setup.conf");
    if !rules.is_dir() || !setup.is_file() {
        eprintln!(
            "skipped: {} or {} not found (apt-get install modsecurity-crs)",
            rules.display(),
            setup.display()
        );
        return None;
    }
    let mut b = RulesetBuilder::new();
    b.load_str("engine.conf", ENGINE).ok()?;
    b.load_file(setup).ok()?;
    b.load_dir(rules).ok()?;
    b.build().ok()
}

fn ruleset() -> Option<Ruleset> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/crs-v4.25.0");
    if !d.join("rules").is_dir() {
        eprintln!("skipped: {} not found", d.display());
        return None;
    }
    let mut b = RulesetBuilder::new();
    b.load_str("engine.conf", ENGINE).ok()?;
    b.load_file(&d.join("crs-setup.conf.example")).ok()?;
    b.load_dir(&d.join("rules")).ok()?;
    b.build().ok()
}

/// The anchor's 2048-byte order document.
fn json_body() -> Vec<u8> {
    let items: Vec<String> = (1..=12)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{:05}","name":"Blue widget number {i}","qty":{},"price":{}}}"#,
                i * 7,
                i % 5 + 1,
                f64::from(i) + 10.99
            )
        })
        .collect();
    let head = format!(
        r#"{{"customer":{{"id":48213,"name":"Alice Example","email":"alice@example.test","tier":"gold"}},"currency":"EUR","items":[{}],"note":""#,
        items.join(",")
    );
    let pad = 2048usize.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "a".repeat(pad)).into_bytes()
}

fn run(rs: &Ruleset, method: &str, uri: &[u8], headers: &[(&[u8], &[u8])], body: &[u8]) -> bool {
    let mut tx = Transaction::new(rs);
    let blocked = tx
        .process_request(&Request {
            method,
            uri,
            protocol: "HTTP/1.1",
            headers,
            body,
            remote_addr: "127.0.0.1",
        })
        .is_some();
    tx.process_logging();
    blocked
}

fn bench(c: &mut Criterion) {
    if let Some(rs) = ruleset() {
        group(c, "crs_pl1", &rs);
    }
    if let Some(rs) = ruleset_334() {
        group(c, "crs334_pl1", &rs);
    }
}

fn group(c: &mut Criterion, name: &str, rs: &Ruleset) {
    let base: [(&[u8], &[u8]); 3] = [
        (b"Host", b"app.bench.test"),
        (b"User-Agent", b"palisade-bench/1.0"),
        (b"Accept", b"*/*"),
    ];
    let body = json_body();
    let len = body.len().to_string();
    let json_headers: Vec<(&[u8], &[u8])> = base
        .iter()
        .copied()
        .chain([
            (b"Content-Type".as_slice(), b"application/json".as_slice()),
            (b"Content-Length".as_slice(), len.as_bytes()),
        ])
        .collect();
    let get = b"/search?q=blue+widget&page=2&lang=en&sort=price";
    let sqli = b"/search?q=blue+widget&id=1%27%20OR%20%271%27%3D%271";
    assert!(!run(rs, "GET", get, &base, b""), "benign GET blocked");
    assert!(
        !run(rs, "POST", b"/api/orders", &json_headers, &body),
        "benign JSON blocked"
    );
    assert!(run(rs, "GET", sqli, &base, b""), "SQLi not blocked");

    let mut g = c.benchmark_group(name);
    g.bench_function("get_qs", |b| {
        b.iter(|| run(rs, "GET", black_box(get), &base, b""))
    });
    g.bench_function("post_json_2k", |b| {
        b.iter(|| run(rs, "POST", b"/api/orders", &json_headers, black_box(&body)))
    });
    g.bench_function("sqli_get", |b| {
        b.iter(|| run(rs, "GET", black_box(sqli), &base, b""))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
