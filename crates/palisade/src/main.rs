//! `palisade`: zero-trust, AI-aware network security for Kubernetes. One binary with a
//! subcommand per component; this file only parses the command line and dispatches.

mod commands;

/// mimalloc: per-thread free lists, far cheaper than glibc malloc for the gateways'
/// many small per-request allocations (measured in docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Zero-trust, AI-aware network security for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and lint manifests; file:line errors; exit 1 on any error.
    Check(commands::check::Args),
    /// Reachability matrix of every pod to every pod, and an exposure summary.
    Analyze(commands::analyze::Args),
    /// Explain the verdict for one connection, stage by stage.
    Explain(commands::explain::Args),
    /// Query the event store.
    Events(commands::events::Args),
    /// Run every component on this machine from a PalisadeConfig.
    Up(commands::up::Args),
    /// Kernel-enforced reachability in network namespaces on this machine.
    Lab(commands::lab::Args),
    /// The node agent: enforce policy for this node's pods with nftables.
    Agent(commands::agent::Args),
    /// The DNS proxy: names allowed per pod, DNS events, answers opened in the kernel.
    Dns(commands::dns::Args),
    /// The WAF engine: run the OWASP CRS regression suite in-process.
    Waf(commands::waf::Args),
    /// The egress gateway: forward proxy deciding by name, port and request.
    Egress(commands::egress::Args),
    /// The ingress AI gateway: auth, limits, WAF, prompt guard and output filters for
    /// inference APIs.
    Ingress(commands::ingress::Args),
    /// The CA for opt-in TLS interception.
    Ca(commands::ca::Args),
    /// Anomaly detectors: replay recorded events and print the alerts.
    Detect(commands::detect::Args),
    /// Least-privilege policy recommended from observed traffic.
    Recommend(commands::recommend::Args),
    /// What if: recorded flows whose verdict a proposed policy set would change.
    Replay(commands::replay::Args),
    /// The Kubernetes controller: watch the API, validate, report status, hold the Lease.
    Controller(commands::controller::Args),
    /// CRDs of Palisade's kinds, generated from the Rust types.
    Crdgen(commands::crdgen::Args),
    /// Global policy over etcd: push, rollback, status.
    Federation(commands::federation::Args),
    /// Prompt-injection guard: train the classifier, evaluate it on labelled prompts.
    Guard(commands::guard::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => commands::check::run(a),
        Command::Analyze(a) => commands::analyze::run(a),
        Command::Explain(a) => commands::explain::run(a),
        Command::Events(a) => commands::events::run(a),
        Command::Up(a) => commands::up::run(a),
        Command::Lab(a) => commands::lab::run(a),
        Command::Agent(a) => commands::agent::run(a),
        Command::Dns(a) => commands::dns::run(a),
        Command::Waf(a) => commands::waf::run(a),
        Command::Egress(a) => commands::egress::run(a),
        Command::Ingress(a) => commands::ingress::run(a),
        Command::Ca(a) => commands::ca::run(a),
        Command::Detect(a) => commands::detect::run(a),
        Command::Recommend(a) => commands::recommend::run(a),
        Command::Replay(a) => commands::replay::run(a),
        Command::Controller(a) => commands::controller::run(a),
        Command::Crdgen(a) => commands::crdgen::run(a),
        Command::Federation(a) => commands::federation::run(a),
        Command::Guard(a) => commands::guard::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
