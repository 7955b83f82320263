//! One module per subcommand.

pub(crate) mod agent;
pub(crate) mod analyze;
pub(crate) mod ca;
pub(crate) mod check;
pub(crate) mod detect;
pub(crate) mod dns;
pub(crate) mod egress;
pub(crate) mod events;
pub(crate) mod explain;
pub(crate) mod guard;
pub(crate) mod lab;
pub(crate) mod up;
pub(crate) mod waf;

use palisade_policy::{Diagnostic, Engine, Manifests, Posture, Severity, Snapshot};
use std::path::PathBuf;

/// Output format flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Human-readable.
    Table,
    /// JSON.
    Json,
}

/// Posture override flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PostureArg {
    /// Kubernetes default.
    Allow,
    /// Zero trust.
    Deny,
}

/// Prints diagnostics at or above `min` to stderr.
pub(crate) fn print_diags(diags: &[Diagnostic], min: Severity) {
    for d in diags.iter().filter(|d| d.severity <= min) {
        eprintln!("{d}");
    }
}

/// Loads manifests and compiles them, or prints the errors and returns `None`.
pub(crate) fn load_engine(
    paths: &[PathBuf],
    posture: Option<PostureArg>,
) -> Option<(Manifests, Engine)> {
    let m = palisade_standalone::source::load_paths(paths);
    if m.has_errors() {
        print_diags(&m.diagnostics, Severity::Error);
        let n = m
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        eprintln!("{n} error(s); nothing analysed (run `palisade check` for warnings too)");
        return None;
    }
    let snap = Snapshot::from_manifests(&m);
    let posture = match posture {
        Some(PostureArg::Allow) => Posture::Allow,
        Some(PostureArg::Deny) => Posture::Deny,
        None => snap.posture(),
    };
    let engine = Engine::compile_with(&snap, posture);
    Some((m, engine))
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub(crate) fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
