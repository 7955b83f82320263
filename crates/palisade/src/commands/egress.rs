//! `palisade egress --config FILE [--listen ADDR]`: the egress gateway. Explicit forward
//! proxy (and transparent listener when configured), decided per request by the policy
//! engine, every request an `http` event. With `spec.egress.dnsAnswers`, it follows DNS
//! proxies in other processes for SNI / DNS / IP agreement.

use palisade_egress::{EgressGateway, GatewayConfig};
use palisade_standalone::{config, supervisor};
use std::net::SocketAddr;
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
    /// Explicit proxy address, overriding spec.egress.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
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
    let cfg = match gateway_config(&rt, a.listen) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (state, _source) = super::start_source(a.source, &rt, &a.join).await?;
        serve(&rt, state, cfg).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The gateway settings from `spec.egress`, with `--listen` taking precedence.
pub(crate) fn gateway_config(
    rt: &config::Runtime,
    listen: Option<SocketAddr>,
) -> anyhow::Result<GatewayConfig> {
    let base = rt.config_path.parent().unwrap_or(std::path::Path::new("."));
    let mut cfg = match (&rt.config.spec.egress, listen) {
        (Some(spec), _) => GatewayConfig::from_spec(spec, base)?,
        (None, Some(l)) => GatewayConfig::new(l),
        (None, None) => anyhow::bail!("set spec.egress.listen in the config, or --listen"),
    };
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(ca) = &rt.config.spec.ca {
        let read = |f: &str| {
            let p = base.join(f);
            std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        };
        let bundle = rt
            .config
            .spec
            .egress
            .as_ref()
            .and_then(|e| e.upstream_ca_file.as_ref())
            .map(|f| base.join(f))
            .unwrap_or_else(|| palisade_egress::tls::SYSTEM_BUNDLE.into());
        let roots = palisade_egress::tls::load_roots(&bundle)?;
        let i = palisade_egress::tls::Interceptor::new(
            &read(&ca.cert_file)?,
            &read(&ca.key_file)?,
            roots,
        )?;
        cfg.intercept = Some(std::sync::Arc::new(i));
    }
    cfg.cluster = Some(rt.cluster.clone());
    cfg.node = Some(rt.node.clone());
    cfg.cluster_networks = rt.cluster_networks.clone();
    Ok(cfg)
}

/// Runs the gateway until it fails or the process is stopped; shared by `palisade egress`
/// and `palisade up`.
pub(crate) async fn serve(
    rt: &config::Runtime,
    state: supervisor::State,
    mut cfg: GatewayConfig,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&rt.data_dir)?;
    // The DNS proxy in another process (spec.egress.dnsAnswers); under `palisade up` with
    // the DNS proxy in process, its records are already in `cfg.answers`.
    if cfg.answers.is_none() {
        if let Some(book) = follow_dns_answers(rt)? {
            cfg.answers = Some(book);
        }
    }
    let (tx, rx) = palisade_events::channel(65_536);
    palisade_observe::metrics::watch_channel("egress", tx.watch());
    // The store (with its JSON-lines copy), or only the JSON-lines file (spec.events.store: false).
    let writer = palisade_standalone::events::EventWriter::spawn(rt, rx)?;
    // Every published snapshot goes to the gateway's lock-free handle.
    let engine = palisade_egress::engine_handle();
    let (handle, mut published) = (engine.clone(), state.published.clone());
    tokio::spawn(async move {
        loop {
            let cur = published
                .borrow_and_update()
                .as_ref()
                .map(|p| p.engine.clone());
            palisade_egress::publish(&handle, cur);
            if published.changed().await.is_err() {
                break;
            }
        }
    });
    let gw = EgressGateway::bind(cfg, engine, Some(tx)).await?;
    tracing::info!(listen = %gw.local_addr()?, transparent = ?gw.transparent_addr(), "egress gateway serving");
    let result = tokio::select! {
        r = gw.run() => r.map_err(anyhow::Error::from),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut t) => { t.recv().await; }
                Err(_) => std::future::pending::<()>().await,
            }
        } => Ok(()),
    };
    let _ = tokio::task::spawn_blocking(move || writer.flush_and_stop()).await;
    result
}

/// Subscribes to the DNS proxies' answers feeds named in `spec.egress.dnsAnswers`; the
/// returned book fills as they answer. `None` when no feed is named.
fn follow_dns_answers(
    rt: &config::Runtime,
) -> anyhow::Result<Option<std::sync::Arc<dyn palisade_egress::answers::ResolvedNames>>> {
    use palisade_egress::answer_feed::{subscribe, FeedSource};
    let Some(spec) = rt.config.spec.egress.as_ref() else {
        return Ok(None);
    };
    if spec.dns_answers.is_empty() {
        return Ok(None);
    }
    let sources = spec
        .dns_answers
        .iter()
        .map(|u| FeedSource::parse(u).map_err(|e| anyhow::anyhow!("spec.egress.dnsAnswers: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let token = match spec.dns_answers_token_file.as_deref() {
        None => None,
        Some(f) => match super::dns::read_token(rt, f)? {
            Some(t) => Some(t),
            None => {
                tracing::warn!(
                    file = f,
                    "not following DNS answers feeds: the token file does not exist"
                );
                return Ok(None);
            }
        },
    };
    tracing::info!(sources = ?spec.dns_answers, "following DNS answers feeds");
    let book = std::sync::Arc::new(palisade_egress::answers::AnswerBook::new());
    // The tasks live as long as the runtime.
    drop(subscribe(sources, token, book.clone()));
    Ok(Some(book))
}
