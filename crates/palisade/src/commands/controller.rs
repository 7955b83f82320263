//! `palisade controller`: watches the Kubernetes API (Namespaces, Pods, Services,
//! NetworkPolicies, AdminNetworkPolicies, Palisade's kinds) into one validated snapshot,
//! writes status conditions and Events for invalid objects while it holds the Lease, and
//! serves the admin API (`/healthz`, `/readyz`, `/api/v1/status`, `/api/v1/explain`).
//! With `--federation` it is the cluster's federation member: it merges the global policy,
//! publishes the cluster's workloads and the revision it enforces.

use super::PostureArg;
use palisade_k8s::controller::{start, LeaderSettings, Settings};
use palisade_policy::Posture;
use palisade_standalone::admin::{router, AdminState};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Admin API address.
    #[arg(long, default_value = "0.0.0.0:9900")]
    admin: std::net::SocketAddr,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name).
    #[arg(long)]
    identity: Option<String>,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the service account's).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "palisade-controller")]
    lease_name: String,
    /// Lease duration in seconds (a new leader takes over after this long).
    #[arg(long, default_value_t = 15)]
    lease_duration: i64,
    /// Override the default posture (else the PalisadeConfig's, else allow).
    #[arg(long, value_enum)]
    posture: Option<PostureArg>,
    /// Federation membership: this cluster's publisher (its workloads and the revision it
    /// enforces go to etcd; the global policy is merged into every snapshot).
    #[command(flatten)]
    join: super::federation::JoinArgs,
    /// Folder for the last applied federation revision (kept across restarts, enforced at
    /// once while etcd is unreachable). Without it nothing is saved.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// A file holding the admin token: the admin API then wants `Authorization: Bearer
    /// <token>` on everything but `/healthz` and `/readyz` (the kubelet's probes). Without
    /// it the API is open to whoever can reach the address (deploy/ limits that with a
    /// NetworkPolicy).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<std::path::PathBuf>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let access = match a
        .admin_token_file
        .as_deref()
        .map(palisade_observe::access::Access::token_file)
        .transpose()
    {
        Ok(acc) => acc,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let federation = match (a.join.enabled(), a.join.cluster_name()) {
        (false, _) => None,
        (true, None) => {
            eprintln!("error: --cluster-name is required with --federation");
            return Ok(ExitCode::from(1));
        }
        (true, Some(name)) => {
            let dir = a.data_dir.clone().unwrap_or_default();
            match a.join.settings(name, &dir) {
                Ok(mut s) => {
                    if a.data_dir.is_none() {
                        s.state_file = None;
                    }
                    Some(s)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if let Some(dir) = &a.data_dir {
            std::fs::create_dir_all(dir)?;
        }
        let client = palisade_k8s::cluster::default_client().await?;
        let overlay = federation.as_ref().map(super::federation::overlay_channel);
        let settings = Settings {
            leader: Some(LeaderSettings {
                namespace: a
                    .lease_namespace
                    .unwrap_or_else(palisade_k8s::cluster::namespace),
                name: a.lease_name,
                identity: a.identity.unwrap_or_else(palisade_k8s::cluster::identity),
                duration_secs: a.lease_duration.max(3),
                renew_every: Duration::from_secs((a.lease_duration.max(3) / 3) as u64),
            }),
            posture: a.posture.map(|p| match p {
                PostureArg::Allow => Posture::Allow,
                PostureArg::Deny => Posture::Deny,
            }),
            overlay: overlay.as_ref().map(|(_, rx)| rx.clone()),
            ..Settings::default()
        };
        let running = start(client, settings);
        let joined = match (federation, overlay) {
            (Some(s), Some((tx, _))) => Some(super::federation::join_publishing_while(
                s,
                tx,
                running.state.clone(),
                running.leading.clone(),
            )),
            _ => None,
        };
        let app = router(AdminState {
            state: running.state.clone(),
            events: None,
            federation: joined.map(|j| j.health),
        });
        let app = match access {
            Some(acc) => acc.protect(app),
            None => app,
        };
        let listener = tokio::net::TcpListener::bind(a.admin).await?;
        tracing::info!(admin = %a.admin, "controller started");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = palisade_observe::serve::serve(listener, app, Default::default(), std::future::pending()) => r?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        drop(running);
        Ok(ExitCode::SUCCESS)
    })
}
