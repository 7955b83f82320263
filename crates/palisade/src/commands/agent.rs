//! `palisade agent --config FILE --node NAME`: enforce the manifests' policy for this node's
//! pods with nftables, following every change.

use palisade_agent::revoke::CloseSchedule;
use palisade_agent::runtime::{Agent, AgentSettings};
use palisade_standalone::{config, supervisor};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The PalisadeConfig file.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Where policy comes from: the config's manifests folder, or the Kubernetes API.
    #[arg(long, value_enum, default_value = "files")]
    source: super::SourceArg,
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
    /// Enforce the federation's global policy too (a watch-only member: nothing written
    /// to etcd; the cluster's controller or `up` publishes its workloads and status).
    #[command(flatten)]
    join: super::federation::JoinArgs,
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
        node_services: palisade_agent::hostfw::from_config(&rt.config),
    };
    let prefixes = agent_spec
        .as_ref()
        .map(|s| s.pod_interface_prefixes.clone())
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let data_dir = rt.data_dir.clone();
    let jsonl = rt.events_jsonl.clone();
    let retention = rt.events_retention;
    let (cluster, node) = (rt.cluster.clone(), settings.node.clone());
    let code = runtime.block_on(async {
        let (state, _source) = super::start_source(a.source, &rt, &a.join).await?;
        let flows = if a.once {
            None
        } else {
            let published = state.published.clone();
            match start_flow_log(
                &data_dir,
                jsonl,
                retention,
                cluster,
                node,
                move || published.borrow().as_ref().map(|p| p.engine.clone()),
                stop.clone(),
            ) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "no flow events");
                    None
                }
            }
        };
        let agent = Agent::new(settings).with_pod_interface_prefixes(prefixes);
        let code = run_agent(state, agent, a.once).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = flows {
            let _ = h.join();
        }
        code
    });
    code
}

/// How often the agent checks that its table is still in the kernel.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// Follows the published snapshot and reconciles the kernel on every change. A rejected
/// transaction is reported; the previous ruleset stays in force.
pub(crate) async fn run_agent(
    state: supervisor::State,
    mut agent: Agent,
    once: bool,
) -> anyhow::Result<ExitCode> {
    let mut closes = CloseSchedule::new(CLOSE_GAP);
    let mut rx = state.published.clone();
    loop {
        let current = rx.borrow_and_update().clone();
        match current {
            None => tracing::warn!(
                "no valid policy snapshot: nothing applied (an existing table stays in force)"
            ),
            Some(p) => {
                let engine = p.engine.clone();
                let generation = p.generation;
                let mut sched = closes;
                let (a2, sched2, result, closed) = tokio::task::spawn_blocking(move || {
                    let r = agent.reconcile(&engine);
                    // Connections opened under the old policy that the new one denies are
                    // closed once the new ruleset is in force: at once, or, in a burst of
                    // changes, once the gap has passed (the wait below).
                    let now = std::time::Instant::now();
                    let closed = match &r {
                        Ok(s) if !s.unchanged && sched.changed(now) => {
                            let c = agent.close_denied(&engine);
                            sched.ran(now);
                            Some(c)
                        }
                        _ => None,
                    };
                    (agent, sched, r, closed)
                })
                .await?;
                agent = a2;
                closes = sched2;
                if let Some(c) = closed {
                    log_closed(generation, c);
                }
                match result {
                    Ok(s) => tracing::info!(
                        generation,
                        pods = s.pods,
                        rules = s.rules,
                        render_us = s.render_us as u64,
                        apply_us = s.apply_us as u64,
                        unchanged = s.unchanged,
                        "ruleset in force"
                    ),
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
        // Between changes, check every 30 s that the table is still there (a host firewall
        // reload flushes every table) and rebuild it if not; pod routes that appeared late
        // are picked up on the way.
        loop {
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Ok(ExitCode::SUCCESS) } else { break },
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                _ = sleep_until_due(closes.next_due()) => {
                    let Some((engine, generation)) =
                        rx.borrow().as_ref().map(|p| (p.engine.clone(), p.generation))
                    else {
                        continue;
                    };
                    let now = std::time::Instant::now();
                    let (a2, c) = tokio::task::spawn_blocking(move || {
                        let c = agent.close_denied(&engine);
                        (agent, c)
                    })
                    .await?;
                    agent = a2;
                    closes.ran(now);
                    log_closed(generation, c);
                }
                _ = tokio::time::sleep(RESYNC) => {
                    let Some(engine) = rx.borrow().as_ref().map(|p| p.engine.clone()) else {
                        continue;
                    };
                    let (a2, r) = tokio::task::spawn_blocking(move || {
                        let r = agent.resync(&engine);
                        (agent, r)
                    })
                    .await?;
                    agent = a2;
                    match r {
                        Ok(Some(s)) => tracing::info!(
                            rules = s.rules,
                            incremental = s.incremental,
                            "ruleset resynced"
                        ),
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, "ruleset could not be rebuilt"),
                    }
                }
            }
        }
    }
}

/// At most one pass over the conntrack table per this gap (always one after the last
/// change): a burst of policy changes lists the node's connections twice, not once each.
const CLOSE_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits until `at`; forever when `None` (nothing pending).
async fn sleep_until_due(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn log_closed(generation: u64, closed: std::io::Result<usize>) {
    match closed {
        Ok(n) if n > 0 => {
            tracing::info!(
                generation,
                closed = n,
                "closed connections the new policy denies"
            )
        }
        Err(e) => tracing::warn!(
            generation,
            error = %e,
            "open connections not checked against the new policy (conntrack)"
        ),
        _ => {}
    }
}

/// Runs the kernel flow logger (NFLOG group of the agent's rules) on a thread, writing flow
/// events into the event store of `data_dir`, keeping them for `retention` when given.
/// Stops when `stop` is set; the returned handle joins after the store has flushed.
pub(crate) fn start_flow_log(
    data_dir: &std::path::Path,
    jsonl: Option<std::path::PathBuf>,
    retention: Option<std::time::Duration>,
    cluster: String,
    node: String,
    engine: impl Fn() -> Option<std::sync::Arc<palisade_policy::Engine>> + Send + Sync + 'static,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    std::fs::create_dir_all(data_dir)?;
    let (tx, rx) = palisade_events::channel(65_536);
    palisade_observe::metrics::watch_channel("agent", tx.watch());
    let writer = palisade_standalone::events::spawn_store_writer(data_dir, rx, jsonl, retention)?;
    // Return only once the kernel's logs are being read, so that no flow is missed.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let s = stop.clone();
        let ready = move || {
            let _ = ready_tx.send(());
        };
        if let Err(e) = palisade_agent::flowlog::run(
            ready,
            palisade_agent::ruleset::LOG_GROUP,
            engine,
            tx,
            cluster,
            node,
            move || s.load(std::sync::atomic::Ordering::Relaxed),
        ) {
            tracing::error!(error = %e, "flow logger stopped");
        }
        match writer.flush_and_stop() {
            Ok(st) => tracing::info!(written = st.written, "flow events flushed"),
            Err(e) => tracing::error!(error = %e, "event store"),
        }
    });
    if ready_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .is_err()
    {
        anyhow::bail!("cannot read NFLOG (needs root and nfnetlink_log)");
    }
    Ok(handle)
}
