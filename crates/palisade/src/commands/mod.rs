//! One module per subcommand.

pub(crate) mod admin_client;
pub(crate) mod agent;
pub(crate) mod analyze;
pub(crate) mod ca;
pub(crate) mod check;
pub(crate) mod controller;
pub(crate) mod crdgen;
pub(crate) mod detect;
pub(crate) mod dns;
pub(crate) mod egress;
pub(crate) mod events;
pub(crate) mod explain;
pub(crate) mod federation;
pub(crate) mod guard;
pub(crate) mod ingress;
pub(crate) mod lab;
pub(crate) mod recommend;
pub(crate) mod replay;
pub(crate) mod up;
pub(crate) mod waf;
pub(crate) mod web;

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

/// Where a component takes its policy from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SourceArg {
    /// The config's manifests folder, reloaded when it changes.
    #[default]
    Files,
    /// The Kubernetes API (in-cluster service account or KUBECONFIG), read only.
    Kubernetes,
}

/// Starts the policy source. For Kubernetes the returned guard keeps the watches running;
/// keep it for as long as the state is used. With `--federation`, a watch-only member
/// follows the global policy and its overlay is merged into every snapshot.
pub(crate) async fn start_source(
    source: SourceArg,
    rt: &palisade_standalone::config::Runtime,
    join: &federation::JoinArgs,
) -> anyhow::Result<(
    palisade_standalone::supervisor::State,
    Option<palisade_k8s::controller::Running>,
)> {
    let overlay = match join.enabled() {
        true => {
            let settings = join
                .settings(&rt.cluster, &rt.data_dir)
                .map_err(|e| anyhow::anyhow!(e))?;
            let (tx, rx) = federation::overlay_channel(&settings);
            federation::follow(settings, tx);
            Some(rx)
        }
        false => None,
    };
    Ok(match source {
        SourceArg::Files => (
            palisade_standalone::supervisor::start_with_overlay(rt.clone(), overlay),
            None,
        ),
        SourceArg::Kubernetes => {
            let client = palisade_k8s::cluster::default_client().await?;
            let running = palisade_k8s::controller::start(
                client,
                palisade_k8s::controller::Settings {
                    overlay,
                    ..Default::default()
                },
            );
            (running.state.clone(), Some(running))
        }
    })
}

/// Names in events are what a pod chose (a `Host` header, a DNS query), what an imported
/// file says, or what another cluster's admin API answered: printed escaped.
pub(crate) use palisade_policy::diag::printable;
