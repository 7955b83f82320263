//! `palisade agent --config FILE --node NAME`: enforce the manifests' policy for this node's
//! pods with nftables, following every change.

use palisade_agent::runtime::{Agent, AgentSettings};
use palisade_standalone::{config, supervisor};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The PalisadeConfig file.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// This node's name (default: the config's spec.node).
    #[arg(long)]
    node: Option<String>,
    /// Enforce for every pod, whatever its node.
    #[arg(long)]
    all_nodes: bool,
    /// Apply inside this network namespace.
    #[arg(long)]
    netns: Option<String>,
    /// Apply once and exit (the ruleset stays in the kernel).
    #[arg(long)]
    once: bool,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let rt = match config::load_runtime(&a.config) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let agent_spec = rt.config.spec.agent.clone();
    let settings = AgentSettings {
        node: a.node.clone().unwrap_or_else(|| rt.node.clone()),
        all_nodes: a.all_nodes || agent_spec.as_ref().is_some_and(|s| s.all_nodes),
        netns: a.netns.clone(),
        log_flows: true,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let state = supervisor::start(rt);
        run_agent(state, settings, a.once).await
    })
}

/// Follows the published snapshot and reconciles the kernel on every change. A rejected
/// transaction is reported; the previous ruleset stays in force.
pub(crate) async fn run_agent(state: supervisor::State, settings: AgentSettings, once: bool) -> anyhow::Result<ExitCode> {
    let mut agent = Agent::new(settings);
    let mut rx = state.published.clone();
    loop {
        let current = rx.borrow_and_update().clone();
        match current {
            None => tracing::warn!("no valid policy snapshot: nothing applied (an existing table stays in force)"),
            Some(p) => {
                let engine = p.engine.clone();
                let generation = p.generation;
                let (a2, result) = tokio::task::spawn_blocking(move || {
                    let r = agent.reconcile(&engine);
                    (agent, r)
                })
                .await?;
                agent = a2;
                match result {
                    Ok(s) => tracing::info!(generation, pods = s.pods, rules = s.rules, render_us = s.render_us as u64, apply_us = s.apply_us as u64, unchanged = s.unchanged, "ruleset in force"),
                    Err(e) => {
                        tracing::error!(generation, error = %e, "ruleset rejected; the previous one stays in force");
                        if once {
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
            }
        }
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return Ok(ExitCode::SUCCESS) },
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}
