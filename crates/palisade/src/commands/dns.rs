//! `palisade dns --config FILE`: the DNS proxy. Answers only names the asking pod's policy
//! allows, logs every query as a `dns` event, and opens each answer's IPs for that pod in
//! the agent's FQDN sets for the answer's TTL. With `spec.dns.answersListen`, it also
//! serves those answers to egress gateways in other processes (`GET /v1/answers`).

use palisade_agent::fqdn::{FqdnOpener, FqdnTiming};
use palisade_dns::feed::AnswerFeed;
use palisade_dns::resolutions::now_ms;
use palisade_dns::{DenyRcode, DnsProxy, ProxyConfig, Resolutions};
use palisade_standalone::{config, supervisor};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Where the (pod, name, IP, expiry) records are saved, under the data directory.
const STATE_FILE: &str = "dns-resolutions.jsonl";
/// Records held at most (about 100 bytes each).
const MAX_RECORDS: usize = 200_000;
/// How often the kernel's sets are checked for lost elements.
const RESYNC: Duration = Duration::from_secs(2);
/// How often changed state is saved (what a crash can lose).
const SAVE: Duration = Duration::from_millis(250);

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The PalisadeConfig file.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Where policy comes from: the config's manifests folder, or the Kubernetes API.
    #[arg(long, value_enum, default_value = "files")]
    source: super::SourceArg,
    /// Address to serve on, overriding spec.dns.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Upstream resolver, overriding spec.dns.upstream.
    #[arg(long)]
    upstream: Option<SocketAddr>,
    /// The network namespace of the agent's table (for the FQDN sets).
    #[arg(long)]
    netns: Option<String>,
    /// Do not touch the kernel's FQDN sets (resolve and log only).
    #[arg(long)]
    no_sets: bool,
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
    let spec = rt.config.spec.dns.clone();
    let listen = a
        .listen
        .or_else(|| spec.as_ref().and_then(|d| d.listen.parse().ok()));
    let upstream = a
        .upstream
        .or_else(|| spec.as_ref().and_then(|d| d.upstream.parse().ok()));
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        eprintln!("error: set spec.dns.listen and spec.dns.upstream in the config, or --listen and --upstream");
        return Ok(ExitCode::from(1));
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (state, _source) = super::start_source(a.source, &rt, &a.join).await?;
        let opener = (!a.no_sets).then(|| Arc::new(FqdnOpener::new(a.netns.clone(), timing(&rt))));
        serve(&rt, state, listen, upstream, opener, resolutions(&rt)).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn timing(rt: &config::Runtime) -> FqdnTiming {
    let min = rt
        .config
        .spec
        .dns
        .as_ref()
        .and_then(|d| d.min_ttl_seconds)
        .unwrap_or(5);
    FqdnTiming {
        min_ttl: Duration::from_secs(min as u64),
        ..FqdnTiming::default()
    }
}

/// An empty record of what pods resolved, bounded as the config says; the proxy fills it
/// (and restores it from the data folder) and the egress gateway may read it.
pub(crate) fn resolutions(rt: &config::Runtime) -> Arc<Resolutions> {
    let per_name = rt
        .config
        .spec
        .dns
        .as_ref()
        .and_then(|d| d.max_ips_per_name)
        .unwrap_or(50) as usize;
    let mut res = Resolutions::new(per_name, MAX_RECORDS);
    if let Some(n) = rt
        .config
        .spec
        .dns
        .as_ref()
        .and_then(|d| d.max_records_per_pod)
    {
        res = res.with_max_per_pod(n as usize);
    }
    Arc::new(res)
}

/// The DNS proxy's records as the egress gateway asks them (SNI / DNS / IP agreement).
#[derive(Debug)]
pub(crate) struct DnsAnswers(pub(crate) Arc<Resolutions>);

impl palisade_egress::answers::ResolvedNames for DnsAnswers {
    fn agrees(&self, client: std::net::IpAddr, name: &str, ip: std::net::IpAddr) -> Option<bool> {
        let now = now_ms();
        if !self.0.knows(client, now) {
            return None;
        }
        let name = palisade_egress::config::normalize_host(name);
        Some(self.0.allows(client, &name, ip, now))
    }
}

/// Runs the proxy until it fails or the process is stopped; shared by `palisade dns` and
/// `palisade up`.
pub(crate) async fn serve(
    rt: &config::Runtime,
    state: supervisor::State,
    listen: SocketAddr,
    upstream: SocketAddr,
    opener: Option<Arc<FqdnOpener>>,
    resolutions: Arc<Resolutions>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&rt.data_dir)?;
    let (tx, rx) = palisade_events::channel(65_536);
    palisade_observe::metrics::watch_channel("dns", tx.watch());
    let writer = palisade_standalone::events::EventWriter::spawn(rt, rx)?;
    let mut cfg = ProxyConfig::new(listen, upstream);
    if rt
        .config
        .spec
        .dns
        .as_ref()
        .and_then(|d| d.refuse_with.as_deref())
        == Some("NXDOMAIN")
    {
        cfg.deny = DenyRcode::NxDomain;
    }
    if let Some(d) = rt.config.spec.dns.as_deref() {
        if let Some(mix) = d.mix_case {
            cfg.mix_case = mix;
        }
        if let Some(n) = d.queries_per_second_per_client {
            cfg.query_rate = n;
        }
        if let Some(n) = d.query_burst_per_client {
            cfg.query_burst = n;
        }
        if let Some(n) = d.max_in_flight_per_client {
            cfg.max_in_flight_per_client = n as usize;
        }
        if let Some(n) = d.max_tcp_per_client {
            cfg.max_tcp_per_client = n as usize;
        }
    }
    cfg.origin.cluster = Some(rt.cluster.clone());
    cfg.origin.node = Some(rt.node.clone());
    cfg.cluster_networks = rt.cluster_networks.clone();
    // What pods resolved: bounded, saved across restarts, and put back into the kernel's
    // FQDN sets whenever they may have lost it (new sets, a rebuilt table, a restart).
    let state_file = rt.data_dir.join(STATE_FILE);
    match resolutions.load(&state_file, now_ms()) {
        Ok((n, bad)) => tracing::info!(records = n, unreadable = bad, "DNS state restored"),
        Err(e) => {
            tracing::warn!(error = %e, file = %state_file.display(), "DNS state not restored")
        }
    }
    {
        let (res, op, file) = (resolutions.clone(), opener.clone(), state_file.clone());
        let mut policy = state.published.clone();
        let networks = Arc::new(rt.cluster_networks.clone());
        tokio::spawn(async move {
            let mut save = tokio::time::interval(SAVE);
            let mut kernel = tokio::time::interval(RESYNC);
            // Each new policy (the first one included, with the restored state): the
            // opener learns its sets, and records now inside are closed.
            let mut checked: Option<Arc<palisade_policy::Engine>> = None;
            loop {
                let restore = tokio::select! {
                    _ = save.tick() => false,
                    _ = kernel.tick() => true,
                    changed = policy.changed() => if changed.is_err() { break } else { true },
                };
                let engine = policy.borrow().as_ref().map(|p| p.engine.clone());
                let check = engine.filter(|e| !checked.as_ref().is_some_and(|c| Arc::ptr_eq(c, e)));
                if let Some(e) = &check {
                    checked = Some(e.clone());
                }
                let (res, op, file, networks) =
                    (res.clone(), op.clone(), file.clone(), networks.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(e) = check {
                        // The opener's set names follow the policy first: the elements
                        // closed below are looked up in the sets it knows.
                        if let Some(op) = &op {
                            op.refresh(&e);
                        }
                        close_inside(&res, op.as_deref(), &e, &networks);
                    }
                    resync(&res, op.as_deref().filter(|_| restore), &file)
                })
                .await;
            }
        });
    }
    // Other processes' egress gateways follow what pods resolve (spec.dns.answersListen).
    let feed = answers_feed(rt, &resolutions).await?;
    let timing = timing(rt);
    let published = state.published.clone();
    let engine = move || published.borrow().as_ref().map(|p| p.engine.clone());
    let res = resolutions.clone();
    let on_answer = move |client: std::net::IpAddr, answer: &[palisade_dns::Resolved]| {
        let now = now_ms();
        // One answer's addresses are recorded together: none of them gives way to another
        // at maxIpsPerName (the client connects to the first ones).
        let ips: Vec<std::net::IpAddr> = answer.iter().map(|r| r.ip).collect();
        for r in answer {
            let valid = Duration::from_secs(r.ttl as u64).max(timing.min_ttl) + timing.grace;
            let (recorded, gave_way) =
                res.record_in_answer(client, &r.name, r.ip, valid, now, &ips);
            // Records that gave way to a bound (maxIpsPerName, the overall one) are closed
            // in the kernel too: else the bounds would hold for this table only, and a pod
            // whose answers rotate through fresh addresses would keep each open for its TTL.
            if let (Some(op), false) = (&opener, gave_way.is_empty()) {
                let closing: Vec<_> = gave_way
                    .iter()
                    .map(|g| (g.pod, g.name.as_str(), g.ip))
                    .collect();
                if let Err(e) = tokio::task::block_in_place(|| op.close(&closing)) {
                    tracing::warn!(error = %e, "could not close FQDN set elements that gave way");
                }
            }
            if !recorded {
                // A flood must not flood the log too: the 1st, 2nd, 4th, 8th… refusal.
                let refused = res.refused();
                if refused.is_power_of_two() {
                    tracing::warn!(pod = %client, name = %r.name, ip = %r.ip, refused,
                        "DNS state full for this name (spec.dns.maxIpsPerName, within one answer), this pod (spec.dns.maxRecordsPerPod) or overall: address not opened");
                }
                continue;
            }
            if let Some(f) = &feed {
                f.publish(palisade_dns::Record {
                    pod: client,
                    name: r.name.clone(),
                    ip: r.ip,
                    expires_ms: now.saturating_add(valid.as_millis() as u64),
                });
            }
            if let Some(op) = &opener {
                // Runs before the reply leaves: the client cannot connect before the kernel
                // lets it.
                if let Err(e) =
                    tokio::task::block_in_place(|| op.open_for(client, &r.name, r.ip, valid))
                {
                    tracing::warn!(error = %e, name = %r.name, ip = %r.ip, "could not open FQDN set");
                }
            }
        }
    };
    let proxy = DnsProxy::bind(cfg, engine, tx, on_answer).await?;
    export_stats(proxy.stats());
    tracing::info!(listen = %proxy.local_addr()?, %upstream, "DNS proxy serving");
    let result = tokio::select! {
        r = proxy.run() => r.map_err(anyhow::Error::from),
        _ = shutdown() => Ok(()),
    };
    if let Err(e) = resolutions.save(&state_file, now_ms()) {
        tracing::warn!(error = %e, "DNS state not saved");
    }
    let _ = tokio::task::spawn_blocking(move || writer.flush_and_stop()).await;
    result
}

/// The proxy's own counters in `/metrics` (next to those built from its events).
fn export_stats(stats: Arc<palisade_dns::ProxyStats>) {
    use std::sync::atomic::Ordering;
    palisade_observe::metrics::watch_counter(
        "palisade_dns_queries_rate_limited_total",
        "DNS queries over their client's rate limit (spec.dns.queriesPerSecondPerClient), answered REFUSED without being decided or forwarded.",
        move || stats.rate_limited.load(Ordering::Relaxed),
    );
}

/// Serves the answers feed when `spec.dns.answersListen` is set (egress gateways in other
/// processes subscribe to it); `None` when it is not.
async fn answers_feed(
    rt: &config::Runtime,
    resolutions: &Arc<Resolutions>,
) -> anyhow::Result<Option<Arc<AnswerFeed>>> {
    let Some(spec) = rt.config.spec.dns.as_ref() else {
        return Ok(None);
    };
    let Some(listen) = spec.answers_listen.as_deref() else {
        return Ok(None);
    };
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("spec.dns.answersListen: {listen:?} is not host:port"))?;
    let token = match spec.answers_token_file.as_deref() {
        None => None,
        // Asked for a token that is not there (the Secret not created yet): no feed rather
        // than an open one; the gateways then skip the check for these pods.
        Some(f) => match read_token(rt, f)? {
            Some(t) => Some(t),
            None => {
                tracing::warn!(
                    file = f,
                    "DNS answers feed off: its token file does not exist"
                );
                return Ok(None);
            }
        },
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("spec.dns.answersListen {listen}: {e}"))?;
    let feed = Arc::new(AnswerFeed::new(resolutions.clone(), token.clone()));
    tracing::info!(listen = %listener.local_addr()?, token = token.is_some(), "DNS answers feed serving");
    let f = feed.clone();
    tokio::spawn(async move {
        if let Err(e) = f.serve(listener).await {
            tracing::error!(error = %e, "DNS answers feed stopped");
        }
    });
    Ok(Some(feed))
}

/// A bearer token from a file named in the config (relative to the config's folder),
/// without surrounding whitespace; `None` when the file does not exist (in Kubernetes: the
/// optional Secret was not created), an error when it is empty or unreadable.
pub(crate) fn read_token(rt: &config::Runtime, file: &str) -> anyhow::Result<Option<String>> {
    let base = rt.config_path.parent().unwrap_or(std::path::Path::new("."));
    let path = base.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "{}: the token file is empty",
        path.display()
    );
    Ok(Some(token.to_string()))
}

/// Forgets (and closes in the kernel) the records whose address is now inside the node or
/// the cluster under `engine`: a pod that took an address after an allowed name resolved to
/// it, a new `spec.clusterNetworks` range, a state file saved before the rule. Kept, they
/// stayed open to the pod for up to a day (the longest TTL) and each resync put them back.
/// Returns how many were forgotten.
pub(crate) fn close_inside(
    res: &Resolutions,
    opener: Option<&FqdnOpener>,
    engine: &palisade_policy::Engine,
    networks: &[palisade_policy::cidr::Cidr],
) -> usize {
    let gone = res.forget(|ip| {
        !palisade_dns::answers::may_open(ip, |ip| {
            palisade_policy::Engine::inside_cluster(Some(engine), networks, ip)
        })
    });
    if gone.is_empty() {
        return 0;
    }
    tracing::info!(
        records = gone.len(),
        "DNS answers now inside the cluster (a new pod, clusterNetworks) closed"
    );
    if let Some(op) = opener {
        let records: Vec<_> = gone
            .iter()
            .map(|r| (r.pod, r.name.as_str(), r.ip))
            .collect();
        if let Err(e) = op.close(&records) {
            tracing::warn!(error = %e, "FQDN elements not closed");
        }
    }
    gone.len()
}

/// Saves the state and puts live records back into the kernel's sets.
fn resync(res: &Resolutions, opener: Option<&FqdnOpener>, file: &std::path::Path) {
    let now = now_ms();
    if res.take_dirty() {
        if let Err(e) = res.save(file, now) {
            tracing::warn!(error = %e, file = %file.display(), "DNS state not saved");
        }
    }
    if let Some(op) = opener {
        let live = res.live(now);
        let records: Vec<_> = live
            .iter()
            .map(|r| (r.pod, r.name.as_str(), r.ip, r.remaining(now)))
            .collect();
        if let Err(e) = op.restore(&records) {
            // The table may be being rebuilt; the next tick tries again.
            tracing::debug!(error = %e, "FQDN sets not restored yet");
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    /// An allowed name resolved to an address no pod had; a pod then took it. On the old
    /// code the record stayed (the egress gateway still allowed it, each resync put the
    /// kernel element `(client . address)` back) for up to its TTL, a day: the client
    /// reached the new pod through its FQDN rule, which must never open a pod. Records
    /// restored from a state file saved before the rule (the metadata service) or pointing
    /// into a newly listed `spec.clusterNetworks` range are closed the same way.
    #[test]
    fn answers_a_pod_took_later_are_closed() {
        use palisade_dns::Resolutions;
        use palisade_policy::{Engine, Manifests, Posture, Snapshot};
        use std::net::IpAddr;
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let res = Resolutions::new(50, 1000).with_max_per_pod(4);
        let client = ip("10.0.0.5");
        let now = palisade_dns::resolutions::now_ms();
        let day = std::time::Duration::from_secs(86_400);
        for addr in ["10.244.1.9", "192.0.2.1", "169.254.169.254", "10.96.0.1"] {
            assert!(res.record(client, "hub.models.test", ip(addr), day, now));
        }
        let mut m = Manifests::new();
        m.add_file(
            "pods.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: late, namespace: ml}\nspec: {containers: [{name: main}]}\nstatus: {podIP: 10.244.1.9}\n",
        );
        let engine = Engine::compile_with(&Snapshot::from_manifests(&m), Posture::Allow);
        let networks = vec!["10.96.0.0/12".parse().unwrap()];
        assert_eq!(super::close_inside(&res, None, &engine, &networks), 3);
        let left: Vec<IpAddr> = res.live(now).iter().map(|r| r.ip).collect();
        assert_eq!(left, vec![ip("192.0.2.1")]);
        assert!(!res.allows(client, "hub.models.test", ip("10.244.1.9"), now));
        assert!(res.take_dirty(), "the state file is written again");
        // Their room is free again.
        assert!(res.record(client, "b.models.test", ip("192.0.2.2"), day, now));
        assert_eq!(super::close_inside(&res, None, &engine, &networks), 0);
    }

    /// Queries refused for their client's rate were counted (`ProxyStats::rate_limited`)
    /// and logged once a second, but `/metrics` had no series for them: now
    /// `palisade_dns_queries_rate_limited_total` shows the proxy's count.
    #[test]
    fn rate_limited_queries_are_exported() {
        let stats = std::sync::Arc::new(palisade_dns::ProxyStats::default());
        stats
            .rate_limited
            .store(41, std::sync::atomic::Ordering::Relaxed);
        super::export_stats(stats.clone());
        stats
            .rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let text = palisade_observe::metrics::Metrics::new().render("");
        assert!(
            text.contains("# TYPE palisade_dns_queries_rate_limited_total counter\npalisade_dns_queries_rate_limited_total 42\n"),
            "{text}"
        );
    }

    /// The DNS proxy writes the answers feed and the egress gateway reads it: the two sides
    /// of the wire format must agree.
    #[test]
    fn the_gateway_reads_what_the_feed_writes() {
        let r = palisade_dns::Record {
            pod: "10.0.0.5".parse().unwrap(),
            name: "hub.models.test".into(),
            ip: "2001:db8::7".parse().unwrap(),
            expires_ms: 90_000,
        };
        let line = palisade_dns::feed::encode(&r, 60_000);
        assert_eq!(line.last(), Some(&b'\n'));
        let got = palisade_egress::answer_feed::decode_line(&line[..line.len() - 1])
            .unwrap()
            .unwrap();
        assert_eq!(got.client, r.pod);
        assert_eq!(got.name, r.name);
        assert_eq!(got.ip, r.ip);
        assert_eq!(got.ttl_ms, 30_000);
    }
}
