//! `palisade ingress --config FILE [--source files|kubernetes] [--listen ADDR]`: the
//! ingress AI gateway. FILE is a PalisadeConfig (the AIGateways come from its manifests
//! folder, or from the Kubernetes API with `--source kubernetes`; the address from
//! `spec.ingress.listen`; events go to its store) or a file of AIGateway resources (then
//! `--listen` is required and events are not stored).

use palisade_ingress::{
    events::EventOrigin, GatewayOptions, IngressGateway, PromptScore, PromptScorer,
};
use palisade_policy::model::{AIGateway, Object};
use palisade_policy::snapshot::Sourced;
use palisade_policy::{Manifests, Severity, Snapshot};
use palisade_standalone::{config, supervisor};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// A PalisadeConfig, or a file of AIGateway resources.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Where AIGateways come from (with a PalisadeConfig): the config's manifests folder,
    /// or the Kubernetes API.
    #[arg(long, value_enum, default_value = "files")]
    source: super::SourceArg,
    /// Listen address, overriding spec.ingress.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let name = a.config.display().to_string();
    let text = match std::fs::read_to_string(&a.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut m = Manifests::new();
    m.add_file(&name, &text);
    if m.has_errors() {
        super::print_diags(&m.diagnostics, Severity::Error);
        return Ok(ExitCode::from(1));
    }
    let has_config = m
        .objects
        .iter()
        .any(|o| matches!(o.object, Object::PalisadeConfig(_)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if has_config {
        let rt = match config::load_runtime(&a.config) {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        };
        let Some(listen) = a.listen.or_else(|| listen_of(&rt)) else {
            eprintln!("error: set spec.ingress.listen in the config, or --listen");
            return Ok(ExitCode::from(1));
        };
        runtime.block_on(async move {
            let no_federation = super::federation::JoinArgs::default();
            let (state, _source) = super::start_source(a.source, &rt, &no_federation).await?;
            serve(&rt, state, listen).await
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(a.source, super::SourceArg::Kubernetes) {
        eprintln!(
            "error: --source kubernetes needs a PalisadeConfig (for the event store and settings)"
        );
        return Ok(ExitCode::from(1));
    }
    let gateways = Snapshot::from_manifests(&m).gateways;
    if gateways.is_empty() {
        eprintln!("{name}: no AIGateway or PalisadeConfig in this file");
        return Ok(ExitCode::from(1));
    }
    let Some(listen) = a.listen else {
        eprintln!("error: --listen is required with a file of AIGateways");
        return Ok(ExitCode::from(1));
    };
    let compiled = match palisade_ingress::compile(&gateways) {
        Ok(c) => c,
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    runtime.block_on(async move {
        let gw = IngressGateway::bind(
            compiled,
            options(listen, None, EventOrigin::default(), None),
        )
        .await?;
        tracing::info!(listen = %gw.local_addr()?, "ingress gateway serving");
        until_stopped(gw.run()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn listen_of(rt: &config::Runtime) -> Option<SocketAddr> {
    rt.config
        .spec
        .ingress
        .as_ref()
        .filter(|l| l.enabled)
        .and_then(|l| l.listen.parse().ok())
}

fn options(
    listen: SocketAddr,
    events: Option<palisade_events::EventSender>,
    origin: EventOrigin,
    spec: Option<&palisade_policy::model::gateway::IngressSpec>,
) -> GatewayOptions {
    let secs = |s: u64| std::time::Duration::from_secs(s.clamp(1, 86_400));
    GatewayOptions {
        listen,
        scorer: Arc::new(GuardScorer(palisade_guard::Guard::builtin())),
        events,
        origin,
        idle_timeout: spec
            .and_then(|i| i.idle_timeout_seconds)
            .map_or(palisade_ingress::IDLE_TIMEOUT, secs),
        send_timeout: spec
            .and_then(|i| i.send_timeout_seconds)
            .map_or(palisade_ingress::SEND_TIMEOUT, secs),
    }
}

/// The AIGateways of the snapshot in force (`None` before the first good one).
pub(crate) fn published_gateways(state: &supervisor::State) -> Option<Arc<Sourced<AIGateway>>> {
    state
        .published
        .borrow()
        .as_ref()
        .map(|p| Arc::clone(&p.gateways))
}

/// The first good snapshot's AIGateways (a Kubernetes source publishes once its watches
/// have listed everything).
async fn first_gateways(state: &supervisor::State) -> anyhow::Result<Arc<Sourced<AIGateway>>> {
    let mut published = state.published.clone();
    loop {
        if let Some(g) = published_gateways(state) {
            return Ok(g);
        }
        published
            .changed()
            .await
            .map_err(|_| anyhow::anyhow!("the policy source stopped before a first snapshot"))?;
    }
}

async fn until_stopped(
    run: impl std::future::Future<Output = Result<(), palisade_ingress::IngressError>>,
) -> anyhow::Result<()> {
    tokio::select! {
        r = run => r.map_err(anyhow::Error::from),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut t) => { t.recv().await; }
                Err(_) => std::future::pending::<()>().await,
            }
        } => Ok(()),
    }
}

/// Runs the gateway from a PalisadeConfig until stopped, with the AIGateways of the
/// published snapshot (from files or the Kubernetes API); they are compiled again whenever
/// a new snapshot is published (a change that does not compile keeps the last good one).
/// Shared by `palisade ingress` and `palisade up`.
pub(crate) async fn serve(
    rt: &config::Runtime,
    state: supervisor::State,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    let first = first_gateways(&state).await?;
    let compiled =
        palisade_ingress::compile(&first).map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    std::fs::create_dir_all(&rt.data_dir)?;
    let (tx, rx) = palisade_events::channel(65_536);
    // The store (with its JSON-lines copy), or only the JSON-lines file (spec.events.store: false).
    let writer = palisade_standalone::events::EventWriter::spawn(rt, rx)?;
    let origin = EventOrigin {
        cluster: Some(rt.cluster.clone()),
        node: Some(rt.node.clone()),
    };
    let spec = rt.config.spec.ingress.as_ref();
    let gw = IngressGateway::bind(compiled, options(listen, Some(tx), origin, spec)).await?;
    tracing::info!(listen = %gw.local_addr()?, "ingress gateway serving");
    let shared = gw.shared();
    let mut published = state.published.clone();
    tokio::spawn(async move {
        let mut last = first;
        published.borrow_and_update();
        while published.changed().await.is_ok() {
            let Some(now) = published
                .borrow_and_update()
                .as_ref()
                .map(|p| Arc::clone(&p.gateways))
            else {
                continue;
            };
            // Pods and policies change far more often than routes.
            if now == last {
                continue;
            }
            last = Arc::clone(&now);
            match palisade_ingress::compile(&now) {
                Ok(c) => {
                    palisade_ingress::jwks::refresh_all(&c).await;
                    shared.config.store(Arc::new(c));
                    tracing::info!("ingress gateway: AIGateways reloaded");
                }
                Err(e) => {
                    tracing::error!(errors = %e.join("; "), "AIGateways not reloaded; keeping the last good ones")
                }
            }
        }
    });
    let result = until_stopped(gw.run()).await;
    let _ = tokio::task::spawn_blocking(move || writer.flush_and_stop()).await;
    result
}

/// The gateway's prompt scorer: Palisade's prompt-injection guard (normalisation, decoders,
/// signatures and the committed classifier, `crates/guard`).
struct GuardScorer(palisade_guard::Guard);

impl PromptScorer for GuardScorer {
    fn score(&self, text: &str) -> PromptScore {
        let a = self.0.assess(text);
        PromptScore {
            score: a.score,
            injection: a.injection,
            signals: a.signals,
        }
    }
}
