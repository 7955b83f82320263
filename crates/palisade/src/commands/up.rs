//! `palisade up --config FILE`: every component on this machine.

use palisade_standalone::{admin, config, supervisor};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The PalisadeConfig file.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Admin API address, overriding spec.admin.listen.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Also serve Prometheus `/metrics` on this address (it is always on the admin address).
    /// It wants the admin token (or `--metrics-token-file`'s); without any token it answers
    /// only on loopback, unless `--metrics-unauthenticated`.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// A file holding the token `--metrics-listen` wants instead of the admin token
    /// (`Authorization: Bearer <token>`; Prometheus: `authorization.credentials_file`).
    #[arg(long, value_name = "FILE", requires = "metrics_listen")]
    metrics_token_file: Option<PathBuf>,
    /// Serve `--metrics-listen` to anyone who can connect, with no token and on any address
    /// (classic Prometheus scraping; the metrics name policies, namespaces and alert kinds).
    #[arg(
        long,
        requires = "metrics_listen",
        conflicts_with = "metrics_token_file"
    )]
    metrics_unauthenticated: bool,
    /// A file holding the admin token: the admin API and UI then want
    /// `Authorization: Bearer <token>` (the UI: open `/ui/#token=<token>`). Needed to listen on
    /// an address that is not loopback.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Federation membership (global policy and shared identities over etcd).
    #[command(flatten)]
    join: super::federation::JoinArgs,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let mut rt = match config::load_runtime(&a.config) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(l) = a.listen {
        rt.admin_listen = l;
    }
    // The UI and API show the cluster's traffic: off loopback only with a token.
    let access = match &a.admin_token_file {
        Some(f) => palisade_observe::access::Access::token_file(f),
        None => Ok(palisade_observe::access::Access::local()),
    }
    .and_then(|acc| acc.check_listen(rt.admin_listen).map(|()| acc));
    let access = match access {
        Ok(acc) => acc,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let metrics_access = match a.metrics_listen {
        Some(addr) => match metrics_access(&a, &access, addr) {
            Ok(acc) => Some(acc),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        },
        None => None,
    };
    let federation = match a.join.enabled() {
        true => match a.join.settings(&rt.cluster, &rt.data_dir) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        },
        false => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&rt.data_dir)?;
        let events = super::events::open_backend(&rt.data_dir)?;
        let listen = rt.admin_listen;
        let (state, joined) = match federation {
            Some(settings) => {
                let (overlay_tx, overlay_rx) = super::federation::overlay_channel(&settings);
                let state = supervisor::start_with_overlay(rt.clone(), Some(overlay_rx));
                let joined = super::federation::join(settings, overlay_tx, state.clone());
                (state, Some(joined))
            }
            None => (supervisor::start(rt.clone()), None),
        };
        if state.published.borrow().is_none() {
            let status = state.status.borrow().clone();
            for d in &status.errors {
                eprintln!("{d}");
            }
            tracing::warn!("no valid policy snapshot yet: serving not-ready until the manifests are fixed");
        }
        if let Some(spec) = rt.config.spec.agent.clone().filter(|s| s.enabled) {
            let settings = palisade_agent::runtime::AgentSettings {
                node: rt.node.clone(),
                all_nodes: spec.all_nodes,
                netns: None,
                log_flows: true,
                node_services: palisade_agent::hostfw::from_config(&rt.config),
            };
            let st = state.clone();
            tokio::spawn(async move {
                let agent = palisade_agent::runtime::Agent::new(settings)
                    .with_pod_interface_prefixes(spec.pod_interface_prefixes.clone());
                if let Err(e) = super::agent::run_agent(st, agent, false).await {
                    tracing::error!(error = %e, "agent stopped");
                }
            });
        }
        // With the DNS proxy and the egress gateway both here, redirected connections must
        // go where this pod's DNS answers said (SNI / DNS / IP agreement).
        let resolutions = super::dns::resolutions(&rt);
        let answers = (rt.config.spec.dns.as_ref().is_some_and(|d| d.enabled)
            && rt.config.spec.egress.as_ref().is_some_and(|e| e.enabled))
        .then(|| std::sync::Arc::new(super::dns::DnsAnswers(resolutions.clone())));
        if let Some(d) = rt.config.spec.dns.clone().filter(|d| d.enabled) {
            match (d.listen.parse(), d.upstream.parse()) {
                (Ok(listen), Ok(upstream)) => {
                    // With the agent in this process, answers open its FQDN sets.
                    let opener = rt.config.spec.agent.as_ref().filter(|a| a.enabled).map(|_| {
                        let min = d.min_ttl_seconds.unwrap_or(5) as u64;
                        std::sync::Arc::new(palisade_agent::fqdn::FqdnOpener::new(
                            None,
                            palisade_agent::fqdn::FqdnTiming { min_ttl: std::time::Duration::from_secs(min), ..Default::default() },
                        ))
                    });
                    let (rt2, st, book) = (rt.clone(), state.clone(), resolutions.clone());
                    tokio::spawn(async move {
                        if let Err(e) = super::dns::serve(&rt2, st, listen, upstream, opener, book).await {
                            tracing::error!(error = %e, "DNS proxy stopped");
                        }
                    });
                }
                _ => tracing::error!("spec.dns.listen and spec.dns.upstream must be host:port"),
            }
        }
        if rt.config.spec.egress.as_ref().is_some_and(|e| e.enabled) {
            match super::egress::gateway_config(&rt, None) {
                Ok(mut cfg) => {
                    if let Some(book) = answers.clone() {
                        cfg.answers = Some(book);
                    }
                    let (rt2, st) = (rt.clone(), state.clone());
                    tokio::spawn(async move {
                        if let Err(e) = super::egress::serve(&rt2, st, cfg).await {
                            tracing::error!(error = %e, "egress gateway stopped");
                        }
                    });
                }
                Err(e) => tracing::error!(error = %e, "egress gateway not started"),
            }
        }
        let ingress_listen = rt.config.spec.ingress.as_ref().filter(|l| l.enabled).and_then(|l| l.listen.parse().ok());
        let has_gateways = super::ingress::published_gateways(&state).is_some_and(|g| !g.is_empty());
        if let Some(listen) = ingress_listen.filter(|_| has_gateways) {
            let (rt2, st) = (rt.clone(), state.clone());
            tokio::spawn(async move {
                if let Err(e) = super::ingress::serve(&rt2, st, listen).await {
                    tracing::error!(error = %e, "ingress gateway stopped");
                }
            });
        }
        // The web UI (`/ui/`) and `/metrics` beside the admin API.
        let (web, metrics_only) = super::web::routers(&rt, &state);
        // The anomaly detectors on the live event stream (alerts into the store).
        super::web::start_detectors(&rt);
        if let (Some(addr), Some(acc)) = (a.metrics_listen, metrics_access) {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "metrics listening");
            let metrics_only = acc.protect(metrics_only);
            tokio::spawn(palisade_observe::serve::serve(listener, metrics_only, Default::default(), std::future::pending()));
        }
        let app = access.protect(
            admin::router(admin::AdminState {
                state,
                events: Some(events),
                federation: joined.map(|j| j.health),
            })
            .merge(web),
        );
        let listener = tokio::net::TcpListener::bind(listen).await?;
        tracing::info!(%listen, manifests = %rt.manifests.display(), "palisade up: admin API listening");
        palisade_observe::serve::serve(listener, app, Default::default(), async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
                }
                tracing::info!("shutting down");
            })
            .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Who may read `--metrics-listen`: `--metrics-token-file`'s token, else the admin token,
/// else (no token at all) loopback clients only; anyone only with `--metrics-unauthenticated`.
fn metrics_access(
    a: &Args,
    admin: &palisade_observe::access::Access,
    addr: std::net::SocketAddr,
) -> Result<palisade_observe::access::Access, String> {
    use palisade_observe::access::Access;
    let acc = if a.metrics_unauthenticated {
        Access::unauthenticated()
    } else if let Some(f) = &a.metrics_token_file {
        Access::token_file(f)?
    } else {
        admin.clone()
    };
    acc.check_listen(addr).map_err(|_| {
        format!(
            "--metrics-listen {addr} is not a loopback address and there is no token: give \
             --admin-token-file or --metrics-token-file FILE (scrapers send Authorization: \
             Bearer <token>), or --metrics-unauthenticated to let anyone who can connect read \
             the metrics"
        )
    })?;
    Ok(acc)
}
