//! Measures what scoring the boundary between two messages would add to the ingress
//! gateway's prompt guard, which scores each message (and the parts of one message joined)
//! but not text split over *different* messages (`docs/guard.md`, "Limits").
//!
//! ```sh
//! cargo run --release -p palisade-guard --example split_messages -- FILE.jsonl [CHARS]
//! ```
//!
//! `FILE.jsonl` holds `{"text":…,"label":"injection"|"benign"}` lines. Each injection of two
//! or more words is split at its middle word into two messages; each benign prompt is paired
//! with the next benign one. For both, the boundary window is the last `CHARS` (default 200)
//! characters of the first message, a line break and the first `CHARS` of the second.
//! Prints how many split injections are flagged per message and with the window, and how
//! many benign pairs the window alone would flag.

use palisade_guard::Guard;

fn tail(s: &str, n: usize) -> &str {
    let count = s.chars().count();
    match s.char_indices().nth(count.saturating_sub(n)) {
        Some((i, _)) if count > n => &s[i..],
        _ => s,
    }
}

fn head(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: split_messages FILE.jsonl [CHARS]");
        std::process::exit(2);
    };
    let chars: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2);
    });
    let rows: Vec<(String, bool)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["text"].as_str()?.to_string(), v["label"] == "injection")))
        .collect();
    let guard = Guard::builtin();
    let flag = |t: &str| guard.assess(t).injection;
    let window = |a: &str, b: &str| format!("{}\n{}", tail(a, chars), head(b, chars));

    let (mut split, mut whole, mut per_message, mut with_window) = (0, 0, 0, 0);
    for (t, _) in rows.iter().filter(|r| r.1) {
        let words: Vec<&str> = t.split(' ').collect();
        if words.len() < 2 {
            continue;
        }
        let (a, b) = words.split_at(words.len() / 2);
        let (a, b) = (a.join(" "), b.join(" "));
        split += 1;
        whole += usize::from(flag(t));
        let each = flag(&a) || flag(&b);
        per_message += usize::from(each);
        with_window += usize::from(each || flag(&window(&a, &b)));
    }
    println!(
        "injections split in two: {split}; flagged whole {whole}, per message {per_message}, \
         per message or boundary window {with_window}"
    );

    let benign: Vec<&str> = rows.iter().filter(|r| !r.1).map(|r| r.0.as_str()).collect();
    let (mut pairs, mut window_only) = (0, 0);
    for p in benign.windows(2) {
        pairs += 1;
        window_only += usize::from(!flag(p[0]) && !flag(p[1]) && flag(&window(p[0], p[1])));
    }
    println!(
        "benign prompts: {}, flagged {}; consecutive pairs {pairs}, flagged by the window alone {window_only}",
        benign.len(),
        benign.iter().filter(|t| flag(t)).count()
    );
}
