//! `palisade lab verify PATH...`: the kernel-enforced matrix, on this machine.

use super::analyze::parse_protocol;
use super::{load_engine, Output, PostureArg};
use palisade_agent::lab::{self, pod::Target, VerifyOptions};
use palisade_policy::Protocol;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(clap::Subcommand)]
enum LabCommand {
    /// Build the pods as network namespaces, enforce with the agent's nftables ruleset,
    /// probe every pair, and compare with the engine.
    Verify(VerifyArgs),
    /// (internal) Serve ports inside a pod namespace.
    #[command(hide = true)]
    Serve(ServeArgs),
    /// (internal) Probe targets from inside a pod namespace.
    #[command(hide = true)]
    Probe(ProbeArgs),
    /// (internal) Measure new TCP connections per second from inside a pod namespace.
    #[command(hide = true)]
    Cps(CpsArgs),
    /// (internal) Hold a TCP connection open from inside a pod namespace.
    #[command(hide = true)]
    Hold(HoldArgs),
    /// (internal) Flow events from NFLOG inside the lab's node namespace.
    #[command(hide = true)]
    Flowlog(FlowlogArgs),
}

#[derive(clap::Args)]
struct CpsArgs {
    #[arg(long)]
    target: std::net::SocketAddr,
    #[arg(long, default_value_t = 4)]
    threads: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

#[derive(clap::Args)]
struct HoldArgs {
    #[arg(long)]
    target: std::net::SocketAddr,
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
}

#[derive(clap::Args)]
struct FlowlogArgs {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, value_enum)]
    default_posture: Option<PostureArg>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Files or folders of manifests.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Ports to probe (repeatable); default: every port any pod declares.
    #[arg(long)]
    port: Vec<u16>,
    /// Protocol of the probed ports.
    #[arg(long, value_parser = parse_protocol)]
    protocol: Option<Protocol>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
    /// Keep the namespaces afterwards (for inspection with `ip netns`, `nft list ruleset`).
    #[arg(long)]
    keep: bool,
    /// Probe timeout in milliseconds.
    #[arg(long, default_value_t = 400)]
    timeout_ms: u64,
    /// Default posture, overriding the PalisadeConfig's.
    #[arg(long, value_enum)]
    default_posture: Option<PostureArg>,
    /// Record flow events from the kernel into the event store of this folder.
    #[arg(long)]
    events: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, value_delimiter = ',')]
    tcp: Vec<u16>,
    #[arg(long, value_delimiter = ',')]
    udp: Vec<u16>,
    #[arg(long, value_delimiter = ',')]
    sctp: Vec<u16>,
}

#[derive(clap::Args)]
struct ProbeArgs {
    /// JSON list of targets.
    #[arg(long)]
    targets: String,
    #[arg(long, default_value_t = 400)]
    timeout_ms: u64,
    #[arg(long, default_value_t = 1)]
    tag: u32,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        LabCommand::Verify(v) => verify(v),
        LabCommand::Serve(s) => {
            lab::pod::serve(&s.tcp, &s.udp, &s.sctp)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Flowlog(f) => flowlog(f),
        LabCommand::Cps(c) => {
            let rate =
                lab::pod::connection_rate(c.target, c.threads, Duration::from_secs(c.seconds));
            println!("{rate:.0}");
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Hold(h) => Ok(
            if lab::pod::hold(h.target, Duration::from_millis(h.interval_ms))? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            },
        ),
        LabCommand::Probe(p) => {
            let targets: Vec<Target> = serde_json::from_str(&p.targets)?;
            for (t, ok) in lab::pod::probe(&targets, Duration::from_millis(p.timeout_ms), p.tag) {
                println!(
                    "{}",
                    serde_json::json!({"ip": t.ip, "port": t.port, "protocol": t.protocol, "ok": ok})
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Err(why) = lab::available() {
        eprintln!("error: palisade lab needs root, iproute2 and nftables: {why}");
        return Ok(ExitCode::from(2));
    }
    let Some((_, engine)) = load_engine(&a.paths, a.default_posture) else {
        return Ok(ExitCode::from(1));
    };
    let probes: Vec<(u16, Protocol)> = if a.port.is_empty() {
        engine
            .declared_ports()
            .into_iter()
            .filter(|(_, p)| a.protocol.is_none_or(|want| want == *p))
            .collect()
    } else {
        a.port
            .iter()
            .map(|p| (*p, a.protocol.unwrap_or(Protocol::TCP)))
            .collect()
    };
    let opts = VerifyOptions {
        exe: std::env::current_exe()?,
        probes,
        keep: a.keep,
        timeout: Duration::from_millis(a.timeout_ms),
        prefix: format!("pl{}", std::process::id() % 100_000),
        events: match &a.events {
            None => None,
            Some(dir) => {
                let dir = std::path::absolute(dir)?;
                let mut args = vec![
                    "lab".to_string(),
                    "flowlog".into(),
                    "--data-dir".into(),
                    dir.display().to_string(),
                ];
                if let Some(p) = a.default_posture {
                    args.push("--default-posture".into());
                    args.push(if p == PostureArg::Deny {
                        "deny".into()
                    } else {
                        "allow".into()
                    });
                }
                for p in &a.paths {
                    args.push(std::path::absolute(p)?.display().to_string());
                }
                Some((dir, args))
            }
        },
    };
    let report = lab::verify(&engine, &opts)?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Table => {
            for p in &report.probes {
                let names: Vec<&String> = p.matrix.keys().collect();
                println!(
                    "{}/{} observed in the kernel (. reachable, X dropped):",
                    p.port, p.protocol
                );
                let w = names.iter().map(|n| n.len()).max().unwrap_or(0);
                for (i, from) in names.iter().enumerate() {
                    let row: String = p.matrix[*from]
                        .values()
                        .map(|b| if *b { " ." } else { " X" })
                        .collect();
                    println!("  {from:w$} {row}   {i}");
                }
            }
            println!(
                "ruleset: {} rules applied in {} ms",
                report.rules, report.apply_ms
            );
            if !report.skipped_pods.is_empty() {
                println!(
                    "skipped (no IPv4 address or host network): {}",
                    report.skipped_pods.join(", ")
                );
            }
            if report.disagreements.is_empty() {
                println!("kernel and engine agree on every pair");
            } else {
                for d in &report.disagreements {
                    println!(
                        "DISAGREE {}/{} {} -> {}: kernel {}, engine {}",
                        d.port, d.protocol, d.from, d.to, d.observed, d.expected
                    );
                }
            }
        }
    }
    Ok(if report.disagreements.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn flowlog(f: FlowlogArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let Some((_, engine)) = load_engine(&f.paths, f.default_posture) else {
        return Ok(ExitCode::from(1));
    };
    let engine = std::sync::Arc::new(engine);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = super::agent::start_flow_log(
        &f.data_dir,
        None,
        None,
        "lab".into(),
        "lab-node".into(),
        move || Some(engine.clone()),
        stop.clone(),
    )?;
    println!("ready");
    let mut sink = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut sink);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = handle.join();
    Ok(ExitCode::SUCCESS)
}
