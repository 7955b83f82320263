//! `palisade events [--type T] [--since DUR] [--follow] [--output json]`

use super::Output;
use palisade_events::{Event, EventBody};
use palisade_standalone::events::{parse_type, store_path, StoreQuery};
use palisade_store::{Query, Store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Event types (flow, dns, http, alert); repeatable or comma-separated.
    #[arg(long = "type", value_delimiter = ',')]
    types: Vec<String>,
    /// Only events newer than this (e.g. 15m, 1h, 2d).
    #[arg(long)]
    since: Option<String>,
    /// Only events of this workload or destination (`namespace/name`, FQDN or IP).
    #[arg(long)]
    workload: Option<String>,
    /// Only events with this verdict (allow, deny, audit).
    #[arg(long)]
    verdict: Option<String>,
    /// Keep printing new events as they arrive.
    #[arg(long, short = 'f')]
    follow: bool,
    /// At most this many events (0: no limit).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Output format (`json`: one event per line, in the EVENTS.md schema).
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
    /// The PalisadeConfig whose data folder holds the store.
    #[arg(long, short = 'c', conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// The data folder holding `events.db` (default `.palisade-data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Store the events of this JSON-lines file (EVENTS.md schema) instead of querying,
    /// e.g. events recorded elsewhere, for `recommend`, `replay` and the UI.
    #[arg(long, conflicts_with = "follow")]
    import: Option<PathBuf>,
}

/// Opens the query backend `palisade up` serves.
pub(crate) fn open_backend(
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn palisade_standalone::admin::EventQuery>> {
    Ok(Arc::new(StoreQuery::open(data_dir)?))
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let data_dir = match (&a.config, &a.data_dir) {
        (Some(c), _) => match palisade_standalone::config::load_runtime(c) {
            Ok(rt) => rt.data_dir,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        },
        (None, Some(d)) => d.clone(),
        (None, None) => PathBuf::from(".palisade-data"),
    };
    let path = store_path(&data_dir);
    if let Some(file) = &a.import {
        let events =
            match palisade_observe::source::EventSource::Jsonl(file.clone()).read(&[], None) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
        std::fs::create_dir_all(&data_dir)?;
        let n = Store::open(&path)?.insert_batch(&events)?;
        eprintln!("stored {n} events in {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !path.exists() {
        eprintln!(
            "error: no event store at {} (start `palisade up`, or pass --data-dir)",
            path.display()
        );
        return Ok(ExitCode::from(1));
    }
    let mut types = Vec::new();
    for t in &a.types {
        match parse_type(t) {
            Some(x) => types.push(x),
            None => {
                eprintln!("error: --type {t:?} is not flow, dns, http or alert");
                return Ok(ExitCode::from(1));
            }
        }
    }
    let since_us = match a.since.as_deref() {
        None => None,
        Some(s) => match palisade_standalone::duration::parse_since(s) {
            Some(x) => Some(x),
            None => {
                eprintln!("error: --since {s:?} is not a duration like 15m, 1h, 2d");
                return Ok(ExitCode::from(1));
            }
        },
    };
    if let Some(v) = &a.verdict {
        if !["allow", "deny", "audit"].contains(&v.as_str()) {
            eprintln!("error: --verdict {v:?} is not allow, deny or audit");
            return Ok(ExitCode::from(1));
        }
    }
    let store = Store::open(&path)?;
    let mut q = Query {
        types,
        since_us,
        workload: a.workload.clone(),
        verdict: a.verdict.clone(),
        limit: a.limit,
        ..Query::default()
    };
    loop {
        let rows = store.query(&q)?;
        for (seq, e) in &rows {
            print_event(e, a.output);
            q.after_seq = Some(q.after_seq.map_or(*seq, |s| s.max(*seq)));
        }
        if !a.follow {
            break;
        }
        if q.after_seq.is_none() {
            q.after_seq = store.latest_seq()?.or(Some(0));
        }
        q.since_us = None;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(e: &Event, output: Output) {
    if output == Output::Json {
        println!("{}", e.to_json());
        return;
    }
    let src = e
        .source
        .as_ref()
        .map(|s| s.display_name())
        .unwrap_or_else(|| "-".into());
    let dst = e
        .destination
        .as_ref()
        .map(|s| s.display_name())
        .unwrap_or_else(|| "-".into());
    let port = e
        .destination
        .as_ref()
        .and_then(|d| d.port)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let verdict = e.verdict.map(|v| v.as_str()).unwrap_or("-");
    let policy = e
        .policy
        .as_ref()
        .map(|p| match &p.namespace {
            Some(ns) => format!("{} {ns}/{}", p.kind, p.name),
            None => format!("{} {}", p.kind, p.name),
        })
        .unwrap_or_default();
    let detail = match &e.body {
        EventBody::Flow(_) => String::new(),
        EventBody::Dns(d) => format!("{:?}", d.query),
        EventBody::Http(h) => format!("{:?} {:?} {:?}", h.method, h.path, h.status),
        EventBody::Alert(a) => format!("{:?}", a.summary),
    };
    let (src, dst, policy) = (
        super::printable(&src),
        super::printable(&dst),
        super::printable(&policy),
    );
    println!(
        "{} {:5} {src} -> {dst}{port} {verdict} {policy} {detail}",
        palisade_events::format_rfc3339_micros(e.time.as_micros()),
        e.event_type().as_str(),
    );
}
