//! `palisade federation push | rollback | status | keygen`, and the join flags (`--federation`,
//! `--cluster-name`, `--cluster-label`, `--trust-key`, TLS) that `palisade up` takes, with the glue between
//! a federation member and the standalone supervisor.

use super::Output;
use palisade_federation::layout::{check_name, DEFAULT_SET};
use palisade_federation::member::{self, MemberSettings};
use palisade_federation::revision::RevisionFile;
use palisade_federation::signing::{self, SigningKey, TrustedKeys};
use palisade_federation::{status, EtcdOptions, FederationError, Layout};
use palisade_policy::model::{ClusterIdentity, RemoteWorkload};
use palisade_standalone::supervisor::{Overlay, State};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Validate global policies and write them to etcd as one new revision.
    Push(PushArgs),
    /// Write a new revision with the policies of an older one.
    Rollback(RollbackArgs),
    /// Show the current revision and what every member enforces (lag, drift).
    Status(StatusArgs),
    /// Write a new Ed25519 key pair for signing revisions (`push --signing-key`; members
    /// take the public key with `--trust-key`).
    Keygen(KeygenArgs),
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// Folder to write `federation-signing.key` (PKCS#8, mode 0600) and
    /// `federation-signing.pub` into (created if missing; existing files are not replaced).
    #[arg(long)]
    out: PathBuf,
}

/// How to reach the federation store (shared by every federation command).
#[derive(clap::Args, Clone)]
pub(crate) struct StoreArgs {
    /// etcd endpoints: `etcd://host:port,host:port` (or http://, https://).
    #[arg(long)]
    etcd: String,
    /// Federation set name.
    #[arg(long, default_value = DEFAULT_SET)]
    name: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// Request timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

/// TLS client settings for etcd.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct TlsArgs {
    /// CA bundle (PEM) that signed etcd's certificates; turns TLS on.
    #[arg(long)]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PushArgs {
    /// Files or folders of ClusterSecurityPolicy manifests.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    /// Revisions to keep in etcd (the newest ones; older ones are deleted by this write).
    #[arg(long, default_value_t = palisade_federation::push::DEFAULT_KEEP_REVISIONS,
          value_parser = clap::value_parser!(u64).range(1..))]
    keep_revisions: u64,
    /// The networks a member may claim its pods' addresses in, `CLUSTER=CIDR` (repeatable;
    /// its pod CIDRs), declared for every member in this revision: replaces those of the
    /// current revision (kept when not given). Once any are declared, members not named
    /// claim no address.
    #[arg(long = "member-network", value_parser = parse_member_network)]
    member_networks: Vec<(String, palisade_policy::cidr::Cidr)>,
    /// Remove the member networks the current revision declares.
    #[arg(long, conflicts_with = "member_networks")]
    clear_member_networks: bool,
    /// Sign the revision with this Ed25519 private key (PKCS#8, from `federation keygen`);
    /// members given its public key (`--trust-key`) refuse unsigned revisions.
    #[arg(long)]
    signing_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RollbackArgs {
    /// The revision whose policies to restore.
    revision: u64,
    #[command(flatten)]
    store: StoreArgs,
    /// Revisions to keep in etcd (the newest ones; older ones are deleted by this write).
    #[arg(long, default_value_t = palisade_federation::push::DEFAULT_KEEP_REVISIONS,
          value_parser = clap::value_parser!(u64).range(1..))]
    keep_revisions: u64,
    /// Sign the new revision with this Ed25519 private key (as `push --signing-key`).
    #[arg(long)]
    signing_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
}

/// Joining a federation (`palisade up` and `palisade controller` publish; the agent, DNS
/// proxy and egress gateway follow).
#[derive(clap::Args, Clone, Default)]
pub(crate) struct JoinArgs {
    /// Join the federation at these etcd endpoints (`etcd://host:port,…`).
    #[arg(long)]
    federation: Option<String>,
    /// Federation set name.
    #[arg(long, default_value = DEFAULT_SET)]
    federation_set: String,
    /// This cluster's name (default: the PalisadeConfig's spec.cluster; required by the
    /// controller).
    #[arg(long)]
    cluster_name: Option<String>,
    /// A label of this cluster, `key=value` (repeatable); `clusters:` selectors match them.
    #[arg(long = "cluster-label", value_parser = parse_label)]
    cluster_labels: Vec<(String, String)>,
    /// Seconds before this cluster's published workloads expire if it stops renewing.
    #[arg(long, default_value_t = 10)]
    identity_ttl: i64,
    /// The addresses another member may claim for its pods, `CLUSTER=CIDR` (repeatable; its
    /// pod CIDRs), on top of those the revision declares (`federation push
    /// --member-network`): addresses it publishes outside them are ignored and reported.
    /// Once any networks are given or declared, members named nowhere claim no address.
    #[arg(long = "member-network", value_parser = parse_member_network)]
    member_networks: Vec<(String, palisade_policy::cidr::Cidr)>,
    /// Apply only revisions signed by this public key (`federation keygen`'s `.pub` file;
    /// repeatable: any of them). Unsigned, altered or otherwise signed revisions are refused
    /// and the last good one stays. Without it, revisions are applied unsigned.
    #[arg(long = "trust-key")]
    trust_keys: Vec<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

fn parse_member_network(s: &str) -> Result<(String, palisade_policy::cidr::Cidr), String> {
    let (cluster, cidr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not CLUSTER=CIDR"))?;
    check_name("cluster name", cluster)?;
    let cidr = cidr.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Ok((cluster.to_string(), cidr))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not key=value"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn etcd_options(urls: &str, tls: &TlsArgs, timeout_ms: u64) -> Result<EtcdOptions, String> {
    let mut o = EtcdOptions::parse(urls)?;
    o.ca_file = tls.etcd_cacert.clone();
    o.cert_file = tls.etcd_cert.clone();
    o.key_file = tls.etcd_key.clone();
    o.timeout = std::time::Duration::from_millis(timeout_ms.max(100));
    Ok(o)
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let store = match &a.command {
        Command::Push(p) => &p.store,
        Command::Rollback(r) => &r.store,
        Command::Status(s) => &s.store,
        Command::Keygen(k) => {
            return match signing::keygen(&k.out) {
                Ok((private, public, id)) => {
                    println!(
                        "key {id}: private key {} (keep it secret; `push --signing-key`), public key {} (give it to members: `--trust-key`)",
                        private.display(),
                        public.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            };
        }
    };
    let signing_key_file = match &a.command {
        Command::Push(p) => p.signing_key.as_deref(),
        Command::Rollback(r) => r.signing_key.as_deref(),
        _ => None,
    };
    let signer = match signing_key_file.map(SigningKey::load).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: --signing-key {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Err(e) = check_name("federation set", &store.name) {
        eprintln!("error: --name: {e}");
        return Ok(ExitCode::from(1));
    }
    let opts = match etcd_options(&store.etcd, &store.tls, store.timeout_ms) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: --etcd: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let layout = Layout::new(&store.name);
    let set = store.name.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match a.command {
            Command::Push(p) => {
                let files = match read_files(&p.paths) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("{e}");
                        return Ok(ExitCode::from(1));
                    }
                };
                let networks = if p.clear_member_networks {
                    Some(BTreeMap::new())
                } else if p.member_networks.is_empty() {
                    None
                } else {
                    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for (c, n) in &p.member_networks {
                        m.entry(c.clone()).or_default().push(n.to_string());
                    }
                    Some(m)
                };
                report(
                    palisade_federation::push::push_signed(
                        &opts,
                        &layout,
                        files,
                        networks,
                        p.keep_revisions,
                        signer.as_ref(),
                    )
                    .await,
                    &set,
                )
            }
            Command::Rollback(r) => report(
                palisade_federation::push::rollback_signed(
                    &opts,
                    &layout,
                    r.revision,
                    r.keep_revisions,
                    signer.as_ref(),
                )
                .await
                .inspect(|_| {
                    eprintln!("restoring the policies of revision {}", r.revision);
                }),
                &set,
            ),
            Command::Keygen(_) => Ok(ExitCode::SUCCESS),
            Command::Status(s) => match status::read(&opts, &layout, &set).await {
                Ok(st) => {
                    match s.output {
                        Output::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                        Output::Table => print!("{}", status::render_table(&st)),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            },
        }
    })
}

fn report(
    r: Result<palisade_federation::push::Pushed, FederationError>,
    set: &str,
) -> anyhow::Result<ExitCode> {
    match r {
        Ok(p) => {
            println!(
                "federation set {set}: revision {} written ({} global policies)",
                p.revision, p.policies
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The manifest files under `paths`, read as text (errors say which file).
fn read_files(paths: &[PathBuf]) -> Result<Vec<RevisionFile>, String> {
    let (files, diags) = palisade_standalone::source::manifest_files(paths);
    if let Some(d) = diags.first() {
        return Err(d.to_string());
    }
    let mut out = Vec::new();
    for f in files {
        let yaml = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        out.push(RevisionFile {
            name: f.display().to_string(),
            yaml,
        });
    }
    if out.is_empty() {
        return Err("error: no .yaml/.yml files to push".into());
    }
    Ok(out)
}

/// A joined member's handles for the admin API.
pub(crate) struct Joined {
    /// Health as JSON, for `/api/v1/status`.
    pub(crate) health: watch::Receiver<serde_json::Value>,
}

impl JoinArgs {
    /// Whether `--federation` was given.
    pub(crate) fn enabled(&self) -> bool {
        self.federation.is_some()
    }

    /// `--cluster-name`, when given.
    pub(crate) fn cluster_name(&self) -> Option<&str> {
        self.cluster_name.as_deref()
    }

    /// Validates the flags into member settings.
    pub(crate) fn settings(
        &self,
        default_cluster: &str,
        data_dir: &std::path::Path,
    ) -> Result<MemberSettings, String> {
        let urls = self.federation.as_deref().unwrap_or_default();
        let etcd = etcd_options(urls, &self.tls, 3000).map_err(|e| format!("--federation: {e}"))?;
        check_name("federation set", &self.federation_set)?;
        let name = self
            .cluster_name
            .clone()
            .unwrap_or_else(|| default_cluster.to_string());
        check_name("cluster name", &name)?;
        let labels: BTreeMap<String, String> = self.cluster_labels.iter().cloned().collect();
        let trusted_keys = TrustedKeys::load(&self.trust_keys).map_err(|errs| {
            errs.iter()
                .map(|e| format!("--trust-key {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        Ok(MemberSettings {
            etcd,
            layout: Layout::new(&self.federation_set),
            cluster: ClusterIdentity { name, labels },
            identity_ttl_secs: self.identity_ttl,
            state_file: Some(data_dir.join(format!("federation-{}.json", self.federation_set))),
            member_networks: self.member_networks.iter().fold(
                BTreeMap::new(),
                |mut m: BTreeMap<String, Vec<_>>, (c, n)| {
                    m.entry(c.clone()).or_default().push(*n);
                    m
                },
            ),
            trusted_keys,
        })
    }
}

/// The latest federation overlay, as the supervisor reads it.
pub(crate) type OverlayTx = watch::Sender<Option<Arc<Overlay>>>;

/// The overlay channel the supervisor merges, before the supervisor starts.
pub(crate) fn overlay_channel(
    settings: &MemberSettings,
) -> (OverlayTx, watch::Receiver<Option<Arc<Overlay>>>) {
    watch::channel(Some(Arc::new(Overlay {
        cluster: settings.cluster.clone(),
        ..Default::default()
    })))
}

/// Starts the member and connects it to the supervisor: its views become overlays; the
/// supervisor's snapshots give the workloads to publish and the revision enforced.
pub(crate) fn join(settings: MemberSettings, overlay_tx: OverlayTx, state: State) -> Joined {
    join_publishing_while(settings, overlay_tx, state, watch::channel(true).1)
}

/// [`join`], publishing only while `leading` (the controller's Lease) is true.
pub(crate) fn join_publishing_while(
    settings: MemberSettings,
    overlay_tx: OverlayTx,
    state: State,
    leading: watch::Receiver<bool>,
) -> Joined {
    let cluster = settings.cluster.clone();
    let (local_tx, local_rx) = watch::channel(Vec::new());
    let (enforced_tx, enforced_rx) = watch::channel(None);
    let m = member::start_publishing_while(settings, local_rx, enforced_rx, leading);
    forward_views(&m, overlay_tx, cluster);
    // Snapshots → local workloads and the enforced revision.
    let mut published = state.published.clone();
    let own = m.health.borrow().cluster.clone();
    tokio::spawn(async move {
        let mut last_rev = None;
        loop {
            let p = published.borrow_and_update().clone();
            if let Some(p) = p {
                let e = &p.engine;
                let workloads: Vec<RemoteWorkload> = e
                    .pods()
                    .iter()
                    .enumerate()
                    .filter(|(_, pod)| {
                        pod.cluster.is_none() && !pod.host_network && !pod.ips.is_empty()
                    })
                    .map(|(i, pod)| RemoteWorkload {
                        cluster: own.clone(),
                        namespace: pod.namespace.clone(),
                        name: pod.name.clone(),
                        labels: pod.labels.clone(),
                        namespace_labels: e.namespace_labels(i as u32).clone(),
                        ips: pod.ips.iter().map(|i| i.to_string()).collect(),
                    })
                    .collect();
                local_tx.send_if_modified(|cur| {
                    let changed = *cur != workloads;
                    if changed {
                        *cur = workloads;
                    }
                    changed
                });
                if p.federation_revision != last_rev {
                    last_rev = p.federation_revision;
                    enforced_tx.send_replace(p.federation_revision.map(|r| (r, p.applied_at_us)));
                }
            }
            if published.changed().await.is_err() {
                return;
            }
        }
    });
    health_json(&m)
}

/// Starts a watch-only member (nothing written to etcd) whose views become overlays: for a
/// component (agent, DNS proxy, gateway) of a cluster whose controller or `up` publishes.
pub(crate) fn follow(settings: MemberSettings, overlay_tx: OverlayTx) -> Joined {
    let cluster = settings.cluster.clone();
    let m = member::start_watch_only(settings);
    forward_views(&m, overlay_tx, cluster);
    health_json(&m)
}

/// Each view of the member becomes the overlay the policy source merges.
fn forward_views(m: &member::Member, overlay_tx: OverlayTx, cluster: ClusterIdentity) {
    let mut view = m.view.clone();
    tokio::spawn(async move {
        loop {
            let v = view.borrow_and_update().clone();
            if let Some(v) = v {
                overlay_tx.send_replace(Some(Arc::new(Overlay {
                    revision: v.revision,
                    policies: v.policies.clone(),
                    remote_workloads: v.remote_workloads.clone(),
                    cluster: cluster.clone(),
                })));
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    });
}

/// The member's health as JSON, kept up to date.
fn health_json(m: &member::Member) -> Joined {
    let (health_tx, health_rx) = watch::channel(serde_json::Value::Null);
    let mut h = m.health.clone();
    tokio::spawn(async move {
        loop {
            let v = serde_json::to_value(&*h.borrow_and_update()).unwrap_or_default();
            health_tx.send_replace(v);
            if h.changed().await.is_err() {
                return;
            }
        }
    });
    Joined { health: health_rx }
}
