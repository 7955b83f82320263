//! `palisade recommend [--since DUR] [--namespace NS] [--config FILE | --store PATH]`:
//! least-privilege policy from observed traffic, as YAML for `palisade check` and `apply`.

use palisade_events::EventType;
use palisade_observe::recommend::{recommend, Options};
use palisade_observe::source::EventSource;
use palisade_observe::traffic::Traffic;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the recorded events are: `--config`'s data folder, or `--store`.
#[derive(clap::Args)]
pub(crate) struct SourceArgs {
    /// Only events newer than this (e.g. 15m, 1h, 2d).
    #[arg(long)]
    since: Option<String>,
    /// The PalisadeConfig whose data folder holds the event store.
    #[arg(long, short = 'c', conflicts_with = "store")]
    pub(crate) config: Option<PathBuf>,
    /// The event store: a data folder, an `events.db`, or a JSON-lines file of events.
    #[arg(long, alias = "data-dir")]
    store: Option<PathBuf>,
}

impl SourceArgs {
    /// The source and the `--since` bound, or a message for the user.
    pub(crate) fn resolve(
        &self,
    ) -> Result<
        (
            EventSource,
            Option<i64>,
            Option<palisade_standalone::config::Runtime>,
        ),
        String,
    > {
        let since = match self.since.as_deref() {
            None => None,
            Some(s) => Some(
                palisade_standalone::duration::parse_since(s)
                    .ok_or_else(|| format!("--since {s:?} is not a duration like 15m, 1h, 2d"))?,
            ),
        };
        let (source, rt) = match (&self.config, &self.store) {
            (Some(c), _) => {
                let rt = palisade_standalone::config::load_runtime(c).map_err(|e| e.to_string())?;
                (
                    EventSource::Store(palisade_standalone::events::store_path(&rt.data_dir)),
                    Some(rt),
                )
            }
            (None, Some(p)) => (EventSource::from_path(p), None),
            (None, None) => (
                EventSource::from_path(&PathBuf::from(".palisade-data")),
                None,
            ),
        };
        Ok((source, since, rt))
    }
}

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// Only recommend policies for workloads of this namespace.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Path segments kept in HTTP path prefixes (0: methods only).
    #[arg(long, default_value_t = 1)]
    path_depth: usize,
    /// Prefix of the policy names.
    #[arg(long, default_value = "recommended")]
    name_prefix: String,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (source, since, _) = match a.source.resolve() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let events = match source.read(&[EventType::Flow, EventType::Dns, EventType::Http], since) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let traffic = Traffic::from_events(&events);
    let rec = recommend(
        &traffic,
        &Options {
            namespace: a.namespace.clone(),
            path_depth: a.path_depth,
            name_prefix: a.name_prefix.clone(),
        },
    );
    let span = traffic
        .span_us
        .map(|(from, to)| {
            format!(
                " between {} and {}",
                palisade_events::format_rfc3339_micros(from),
                palisade_events::format_rfc3339_micros(to)
            )
        })
        .unwrap_or_default();
    let header = vec![
        format!(
            "Recommended by `palisade recommend` from {} events{span}: {} workloads, {} edges.",
            traffic.events,
            traffic.workloads.len(),
            traffic.edges.len()
        ),
        "Each workload is isolated both ways and allowed exactly the peers, ports and names seen."
            .into(),
        "Review, then check with `palisade replay --policies FILE` before enforcing.".into(),
    ];
    print!("{}", rec.render(&header));
    if rec.documents.is_empty() {
        eprintln!("note: no traffic to recommend from in {source:?}");
    }
    Ok(ExitCode::SUCCESS)
}
