//! `palisade replay --policies PATH [--since DUR]`: recorded flows and requests evaluated
//! with a proposed policy set; every one whose verdict would change is listed.

use super::recommend::SourceArgs;
use super::{print_diags, Output, PostureArg};
use palisade_events::EventType;
use palisade_observe::replay::{format_change, proposed_engine, replay};
use palisade_policy::{Posture, Severity, Snapshot};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The proposed policy set: files or folders (repeatable). It replaces the policies in
    /// force; workloads come from it, from `--config`'s manifests, and from the events.
    #[arg(long, required = true)]
    policies: Vec<PathBuf>,
    #[command(flatten)]
    source: SourceArgs,
    /// Default posture, overriding the PalisadeConfig's.
    #[arg(long, value_enum)]
    default_posture: Option<PostureArg>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (source, since, rt) = match a.source.resolve() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let proposed = palisade_standalone::source::load_paths(&a.policies);
    if proposed.has_errors() {
        print_diags(&proposed.diagnostics, Severity::Error);
        eprintln!("the proposed policies have errors; nothing replayed");
        return Ok(ExitCode::from(1));
    }
    let current = match &rt {
        Some(rt) => {
            let m = palisade_standalone::source::load_paths(std::slice::from_ref(&rt.manifests));
            if m.has_errors() {
                print_diags(&m.diagnostics, Severity::Error);
                eprintln!("the manifests of {} have errors", rt.manifests.display());
                return Ok(ExitCode::from(1));
            }
            Some(m)
        }
        None => None,
    };
    let posture = match a.default_posture {
        Some(PostureArg::Allow) => Posture::Allow,
        Some(PostureArg::Deny) => Posture::Deny,
        None => match &rt {
            Some(rt) => rt.posture,
            None => Snapshot::from_manifests(&proposed).posture(),
        },
    };
    let events = match source.read(&[EventType::Flow, EventType::Dns, EventType::Http], since) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let engine = proposed_engine(current.as_ref(), &proposed, &events, posture);
    let report = replay(&engine, &events);
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => {
            for c in &report.changes {
                println!("{}", format_change(c));
            }
            let changed: u64 = report.changes.iter().map(|c| c.count).sum();
            println!(
                "{} events evaluated: {} would change ({} groups), {} unchanged; {} not flows or requests",
                report.evaluated,
                changed,
                report.changes.len(),
                report.unchanged,
                report.skipped
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
