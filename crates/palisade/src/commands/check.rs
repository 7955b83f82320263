//! `palisade check PATH...`

use super::{print_diags, Output};
use palisade_policy::{lint, Severity, Snapshot};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Files or folders of manifests.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
    /// Also print notes (skipped kinds).
    #[arg(long)]
    verbose: bool,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let m = palisade_standalone::source::load_paths(&a.paths);
    let mut diags = m.diagnostics.clone();
    if !m.has_errors() {
        let snap = Snapshot::from_manifests(&m);
        diags.extend(lint::lint(&snap));
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    match a.output {
        Output::Json => {
            let v = serde_json::json!({
                "objects": m.objects.len(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diags,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => {
            let min = if a.verbose {
                Severity::Note
            } else {
                Severity::Warning
            };
            print_diags(&diags, min);
            println!(
                "{} object(s), {errors} error(s), {warnings} warning(s)",
                m.objects.len()
            );
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
