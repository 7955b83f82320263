//! A member cluster's view of the federation: it watches the set's prefix, takes every move
//! of the `current` pointer to a revision that parses and validates whole, and hands the
//! result (plus other clusters' workloads) to the supervisor as one value to merge and swap.
//!
//! Fail static: while etcd is unreachable or without quorum the last applied revision stays
//! in force; the watch resumes from the last etcd revision seen, and only a compacted history
//! forces a full re-read. A revision or pointer that does not parse is reported (health and
//! member status) and ignored. The last applied revision and the other clusters' workloads
//! are also kept on disk, so a restart during an etcd outage enforces them too.

use crate::connect::{within, EtcdOptions};
use crate::error::{FederationError, Result};
use crate::identities::{self, IdentityDoc};
use crate::layout::{KeyKind, Layout};
use crate::revision::{parse_pointer, parse_revision, ParsedRevision};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use palisade_policy::cidr::{is_node_internal, reached_address};
use palisade_policy::model::{ClusterIdentity, ClusterSecurityPolicy, RemoteWorkload};
use palisade_policy::snapshot::Sourced;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a member joins.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// etcd endpoints and TLS.
    pub etcd: EtcdOptions,
    /// The federation set.
    pub layout: Layout,
    /// This cluster's name and labels.
    pub cluster: ClusterIdentity,
    /// Lease TTL of the published identities, in seconds.
    pub identity_ttl_secs: i64,
    /// Where the last applied revision document is kept (fail static across restarts).
    pub state_file: Option<PathBuf>,
    /// The address ranges each named member may claim for its pods (its pod CIDRs): an
    /// address outside them is dropped from its identities and reported. A member not
    /// named here may claim any address a pod can hold.
    pub member_networks: std::collections::BTreeMap<String, Vec<palisade_policy::cidr::Cidr>>,
    /// The keys revisions must be signed with (`--trust-key`): a revision unsigned, signed
    /// by another key or altered after signing is refused and the last good one stays.
    /// Empty: revisions are applied unsigned (anyone who can write the prefix sets policy).
    pub trusted_keys: crate::signing::TrustedKeys,
}

/// What the member contributes to the snapshot.
#[derive(Debug, Clone, Default)]
pub struct FederationView {
    /// The revision applied (0: none yet).
    pub revision: u64,
    /// Its global policies.
    pub policies: Sourced<ClusterSecurityPolicy>,
    /// Workloads other clusters publish.
    pub remote_workloads: Vec<RemoteWorkload>,
}

/// The member's own account of its federation link (served on the admin API).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Cluster name.
    pub cluster: String,
    /// Watching etcd right now.
    pub connected: bool,
    /// The revision merged into the snapshot (0: none).
    pub applied_revision: u64,
    /// The newest revision the pointer was seen at.
    pub seen_revision: Option<u64>,
    /// The last etcd revision processed (the watch resumes after it).
    pub etcd_revision: i64,
    /// Full re-reads (startup, compaction).
    pub full_reloads: u64,
    /// Why the seen revision is not applied, if it is not.
    pub refused: Option<String>,
    /// The last connection error.
    pub last_error: Option<String>,
    /// Keys under the prefix that were reported and ignored.
    pub ignored_keys: Vec<String>,
    /// Clusters whose workloads are known.
    pub remote_clusters: Vec<String>,
    /// Address claims refused right now (claimed by several clusters, outside a member's
    /// networks, no pod can hold them): the first [`SHOWN_CLAIMS`], then how many more.
    /// Also written to this member's status, so `federation status` shows them.
    pub refused_claims: Vec<String>,
}

/// Refused claims listed in the health and status (the rest are counted).
pub const SHOWN_CLAIMS: usize = 20;

/// Most other clusters whose workloads a member holds. Identity keys are not rate-limited:
/// a writer under `identities/` could create keys for new cluster names without end, each
/// merged (and re-resolved on every change) by every member. Past this many, a cluster not
/// yet known is reported and ignored; known ones keep updating. Clusters the operator names
/// (`--member-network`, or `memberNetworks` of a signed revision) are always held and not
/// counted, so names created first cannot lock them out.
pub const MAX_REMOTE_CLUSTERS: usize = 256;

/// Handles to a running member.
pub struct Member {
    /// The latest view; `None` until a revision (or the saved one) is known.
    pub view: watch::Receiver<Option<Arc<FederationView>>>,
    /// Health.
    pub health: watch::Receiver<Health>,
}

/// Starts watching; also starts publishing `local` workloads and the revision `enforced`
/// reports as applied (revision, µs since the epoch).
pub fn start(
    settings: MemberSettings,
    local: watch::Receiver<Vec<RemoteWorkload>>,
    enforced: watch::Receiver<Option<(u64, i64)>>,
) -> Member {
    start_publishing_while(settings, local, enforced, watch::channel(true).1)
}

/// [`start`], publishing only while `leading` is true: several replicas of a controller
/// all follow the federation, and the one holding the Lease publishes for the cluster.
pub fn start_publishing_while(
    settings: MemberSettings,
    local: watch::Receiver<Vec<RemoteWorkload>>,
    enforced: watch::Receiver<Option<(u64, i64)>>,
    leading: watch::Receiver<bool>,
) -> Member {
    let (member, health_tx) = start_watching(&settings);
    let health = health_tx.subscribe();
    tokio::spawn(identities::publish_loop(
        settings, local, enforced, health, health_tx, leading,
    ));
    member
}

/// Starts watching only: the view follows the federation as in [`start`], but nothing is
/// written to etcd. For the components of a cluster (node agents, DNS proxies, gateways)
/// that enforce the global policy while one publisher per cluster (`palisade controller`
/// or `palisade up`) publishes its workloads and status.
pub fn start_watch_only(settings: MemberSettings) -> Member {
    start_watching(&settings).0
}

fn start_watching(settings: &MemberSettings) -> (Member, watch::Sender<Health>) {
    let mut w = Watcher {
        settings: settings.clone(),
        etcd_revision: 0,
        cluster_id: 0,
        pointer: None,
        current: None,
        current_bytes: None,
        remotes: BTreeMap::new(),
        conflicts: Vec::new(),
        view_tx: watch::channel(None).0,
        health_tx: watch::channel(Health::default()).0,
    };
    w.health_tx
        .send_modify(|h| h.cluster = settings.cluster.name.clone());
    if settings.trusted_keys.is_empty() {
        tracing::warn!(
            set = settings.layout.set(),
            "federation: no trusted signing key (--trust-key): revisions are applied unsigned, so anyone who can write the etcd prefix sets this cluster's global policy"
        );
    } else {
        let keys: Vec<&str> = settings.trusted_keys.0.iter().map(|k| k.key_id()).collect();
        tracing::info!(keys = %keys.join(","), "federation: applying only revisions signed by these keys");
    }
    if let Some((saved, bytes)) = w.load_saved() {
        tracing::info!(
            revision = saved.revision,
            "federation: enforcing the saved revision until etcd answers"
        );
        w.current = Some(saved);
        w.current_bytes = Some(bytes);
        w.remotes = w.load_saved_identities();
        w.publish_view();
    }
    let member = Member {
        view: w.view_tx.subscribe(),
        health: w.health_tx.subscribe(),
    };
    let health_tx = w.health_tx.clone();
    tokio::spawn(w.run());
    (member, health_tx)
}

struct Watcher {
    settings: MemberSettings,
    etcd_revision: i64,
    /// The etcd cluster the history above belongs to (0: not known yet).
    cluster_id: u64,
    /// The revision the `current` pointer was last seen at (`None`: absent or unreadable).
    pointer: Option<u64>,
    current: Option<ParsedRevision>,
    /// The stored document `current` was parsed from, exactly as read.
    current_bytes: Option<Vec<u8>>,
    /// Each cluster's last good identity document, as published.
    remotes: BTreeMap<String, Vec<RemoteWorkload>>,
    /// Addresses refused to clusters (claimed by several, outside their networks…), as
    /// reported.
    conflicts: Vec<String>,
    view_tx: watch::Sender<Option<Arc<FederationView>>>,
    health_tx: watch::Sender<Health>,
}

impl Watcher {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let err = self.session().await;
            let msg = err.to_string();
            tracing::warn!(error = %msg, revision = self.applied(), "federation: etcd link lost; keeping the applied revision");
            self.health_tx.send_modify(|h| {
                h.connected = false;
                h.last_error = Some(msg);
            });
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn applied(&self) -> u64 {
        self.current.as_ref().map(|c| c.revision).unwrap_or(0)
    }

    /// One connection: catch up, then follow the watch until it fails.
    async fn session(&mut self) -> FederationError {
        let t = self.settings.etcd.timeout;
        let mut client = match self.settings.etcd.connect().await {
            Ok(c) => c,
            Err(e) => return e,
        };
        if self.etcd_revision != 0 {
            match self.history_went_back(&mut client).await {
                Ok(true) => self.etcd_revision = 0,
                Ok(false) => {}
                Err(e) => return e,
            }
        }
        if self.etcd_revision == 0 {
            if let Err(e) = self.full_read(&mut client).await {
                return e;
            }
        }
        let opts = WatchOptions::new()
            .with_range(self.settings.layout.watch_end())
            .with_start_revision(self.etcd_revision + 1)
            .with_progress_notify();
        let prefix = self.settings.layout.prefix().to_string();
        let mut stream = match within(t, client.watch(prefix, Some(opts))).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return FederationError::Config("etcd closed the watch".into()),
                Err(e) => return e.into(),
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    tracing::warn!(
                        compacted = resp.compact_revision(),
                        "federation: history compacted past our revision; re-reading"
                    );
                    self.etcd_revision = 0;
                }
                return FederationError::Config(format!(
                    "watch canceled: {}",
                    if resp.cancel_reason().is_empty() {
                        "no reason given"
                    } else {
                        resp.cancel_reason()
                    }
                ));
            }
            if resp.created() {
                self.health_tx.send_modify(|h| {
                    h.connected = true;
                    h.last_error = None;
                });
            }
            let at = resp.header().map(|h| h.revision()).unwrap_or(0);
            if let Err(e) = self.on_events(&mut client, resp.events(), at).await {
                // Not past these events: the watch resumes at them after reconnecting, so
                // a pointer move whose revision could not be fetched is not lost.
                return e;
            }
            if let Some(h) = resp.header() {
                self.etcd_revision = self.etcd_revision.max(h.revision());
            }
            let r = self.etcd_revision;
            self.health_tx.send_modify(|h| h.etcd_revision = r);
        }
    }

    /// Whether the etcd this connection reached has a history that does not continue the one
    /// the watch would resume: a lower revision than the last one processed (the store was
    /// rebuilt, or restored from an older backup) or another cluster. Resuming the watch
    /// there would wait for the new history to pass the old number and miss every change
    /// meanwhile; the caller re-reads instead.
    async fn history_went_back(&mut self, client: &mut Client) -> Result<bool> {
        let t = self.settings.etcd.timeout;
        let cur = within(
            t,
            client.get(
                self.settings.layout.current(),
                Some(GetOptions::new().with_keys_only()),
            ),
        )
        .await?;
        let Some(h) = cur.header() else {
            return Ok(false);
        };
        let other_cluster = self.cluster_id != 0 && h.cluster_id() != self.cluster_id;
        if h.revision() < self.etcd_revision || other_cluster {
            tracing::warn!(
                etcd_revision = h.revision(),
                seen = self.etcd_revision,
                other_cluster,
                "federation: etcd's history went back (rebuilt or restored); re-reading"
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads the pointer and the identities at one etcd revision and applies them.
    async fn full_read(&mut self, client: &mut Client) -> Result<()> {
        let t = self.settings.etcd.timeout;
        let layout = self.settings.layout.clone();
        let cur = within(t, client.get(layout.current(), None)).await?;
        let at = cur.header().map(|h| h.revision()).unwrap_or(0);
        let cluster_id = cur.header().map(|h| h.cluster_id()).unwrap_or(0);
        let ids = within(
            t,
            client.get(
                layout.identities(),
                Some(GetOptions::new().with_prefix().with_revision(at)),
            ),
        )
        .await?;
        // Clusters without a key now are gone; a document that does not parse keeps that
        // cluster's last good one (as in the watch).
        let mut present = std::collections::BTreeSet::new();
        for kv in ids.kvs() {
            if let KeyKind::Identities(c) = layout.classify(kv.key()) {
                self.on_identity(&c, Some(kv.value()));
                present.insert(c);
            }
        }
        self.remotes.retain(|c, _| present.contains(c));
        match cur.kvs().first() {
            Some(kv) => {
                self.on_pointer(client, kv.value(), &HashMap::new(), at)
                    .await?
            }
            None => {
                self.pointer = None;
                self.publish_view()
            }
        }
        self.etcd_revision = at;
        self.cluster_id = cluster_id;
        self.health_tx.send_modify(|h| {
            h.full_reloads += 1;
            h.etcd_revision = at;
        });
        Ok(())
    }

    async fn on_events(
        &mut self,
        client: &mut Client,
        events: &[etcd_client::Event],
        at: i64,
    ) -> Result<()> {
        let layout = self.settings.layout.clone();
        let mut docs: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut pointer: Option<Vec<u8>> = None;
        let mut identities_changed = false;
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            let put = ev.event_type() == EventType::Put;
            let key = String::from_utf8_lossy(kv.key()).to_string();
            match layout.classify(kv.key()) {
                KeyKind::Current if put => pointer = Some(kv.value().to_vec()),
                KeyKind::Current => {
                    self.pointer = None;
                    self.report_refused(format!(
                        "the current pointer was deleted; keeping revision {}",
                        self.applied()
                    ))
                }
                KeyKind::Revision(n) if put => {
                    docs.insert(n, kv.value().to_vec());
                }
                KeyKind::Revision(_) => {}
                KeyKind::Identities(c) => {
                    self.on_identity(&c, put.then(|| kv.value()));
                    identities_changed = true;
                }
                KeyKind::Member(_) => {}
                KeyKind::Unknown => self.report_ignored(format!("{key}: unexpected key")),
            }
        }
        // The revision the pointer already names, written after it (keys written one by
        // one, pointer first): applied now, as if the pointer had just moved there.
        let late = self
            .pointer
            .filter(|p| pointer.is_none() && docs.contains_key(p))
            .map(|p| p.to_string().into_bytes());
        match pointer.or(late) {
            Some(p) => self.on_pointer(client, &p, &docs, at).await?,
            None => {
                // A revision written without moving the pointer is not applied; garbage is
                // still worth reporting now rather than at rollback time.
                for (n, d) in &docs {
                    if let Err(e) = parse_revision(*n, d) {
                        self.report_ignored(format!("revision {n}: {}", summary(&e)));
                    }
                }
                if identities_changed {
                    self.publish_view();
                }
            }
        }
        Ok(())
    }

    async fn on_pointer(
        &mut self,
        client: &mut Client,
        value: &[u8],
        docs: &HashMap<u64, Vec<u8>>,
        at: i64,
    ) -> Result<()> {
        let n = match parse_pointer(value) {
            Ok(n) => n,
            Err(e) => {
                self.pointer = None;
                self.report_refused(format!("{e}; keeping revision {}", self.applied()));
                self.publish_view();
                return Ok(());
            }
        };
        self.pointer = Some(n);
        self.health_tx.send_modify(|h| h.seen_revision = Some(n));
        // Push and rollback always move the pointer to a new, highest revision. A pointer
        // naming an older one while a newer is stored was written by hand (or by someone
        // holding only the pointer): a replay of old policies, refused by every member
        // alike, since it depends only on what is stored (read as of `at`, the state this
        // pointer is part of), not on what a member applied before.
        let t = self.settings.etcd.timeout;
        let keys = within(
            t,
            client.get(
                self.settings.layout.revisions(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_keys_only()
                        .with_revision(at.max(0)),
                ),
            ),
        )
        .await?;
        let newest = keys
            .kvs()
            .iter()
            .filter_map(|kv| match self.settings.layout.classify(kv.key()) {
                KeyKind::Revision(r) => Some(r),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        if newest > n {
            self.report_refused(format!(
                "current points at revision {n}, but revision {newest} is stored: the pointer went back (a rollback writes a new revision); keeping revision {}",
                self.applied()
            ));
            self.publish_view();
            return Ok(());
        }
        // The document is compared, not only its number: after etcd was rebuilt or restored,
        // numbers start again and revision n there need not be the n applied here.
        let bytes = match docs.get(&n) {
            Some(b) => b.clone(),
            None => {
                let t = self.settings.etcd.timeout;
                let resp = within(t, client.get(self.settings.layout.revision(n), None)).await?;
                match resp.kvs().first() {
                    Some(kv) => kv.value().to_vec(),
                    None => {
                        self.report_refused(format!(
                            "current points at revision {n}, which is not stored; keeping revision {}",
                            self.applied()
                        ));
                        self.publish_view();
                        return Ok(());
                    }
                }
            }
        };
        if n == self.applied() && self.current_bytes.as_deref() == Some(bytes.as_slice()) {
            self.health_tx.send_modify(|h| h.refused = None);
            self.read_declared_identities(client).await?;
            self.publish_view();
            return Ok(());
        }
        if n <= self.applied() {
            tracing::warn!(
                revision = n,
                applied = self.applied(),
                "federation: the current pointer went back or its revision was rewritten"
            );
        }
        // Signed by a trusted key, as revision n of this set (when keys are configured).
        // Checked before anything else of the document is believed, including its number.
        if let Err(why) = self
            .settings
            .trusted_keys
            .verify(self.settings.layout.set(), n, &bytes)
        {
            self.report_refused(format!(
                "revision {n} refused, keeping revision {}: {why}",
                self.applied()
            ));
            self.publish_view();
            return Ok(());
        }
        // A signed revision older than the one applied is a replay (its newer ones deleted
        // from the store): the hub's numbers only grow.
        if !self.settings.trusted_keys.is_empty() && n < self.applied() {
            self.report_refused(format!(
                "revision {n} refused, keeping revision {}: it is older than the applied revision (a replay of an old signed revision)",
                self.applied()
            ));
            self.publish_view();
            return Ok(());
        }
        match parse_revision(n, &bytes) {
            Ok(parsed) => {
                tracing::info!(
                    revision = n,
                    policies = parsed.policies.len(),
                    "federation: applying revision"
                );
                self.save(&bytes);
                self.current = Some(parsed);
                self.current_bytes = Some(bytes);
                self.health_tx.send_modify(|h| h.refused = None);
                self.read_declared_identities(client).await?;
            }
            Err(e) => self.report_refused(format!(
                "revision {n} refused, keeping revision {}: {}",
                self.applied(),
                summary(&e)
            )),
        }
        self.publish_view();
        Ok(())
    }

    /// A cluster's identity key was put (`value`) or deleted (`None`). A document that does not parse is reported and the
    /// cluster's last good one stays: one bad write must not make its pods unknown.
    fn on_identity(&mut self, cluster: &str, value: Option<&[u8]>) {
        if cluster == self.settings.cluster.name {
            return;
        }
        match value.map(|v| identities::parse(cluster, v)) {
            None => {
                self.remotes.remove(cluster);
            }
            Some(Ok(_))
                if !self.remotes.contains_key(cluster)
                    && !self.is_declared(cluster)
                    && self.undeclared_remotes() >= MAX_REMOTE_CLUSTERS =>
            {
                self.report_ignored(format!(
                    "identities of {cluster}: {MAX_REMOTE_CLUSTERS} other clusters already publish, the most a member holds; ignored (declare its networks to have it held)"
                ));
            }
            Some(Ok(IdentityDoc { workloads, .. })) => {
                self.remotes.insert(cluster.to_string(), workloads);
            }
            Some(Err(e)) => {
                let kept = if self.remotes.contains_key(cluster) {
                    "keeping its last good document"
                } else {
                    "none known"
                };
                self.report_ignored(format!("identities of {cluster}: {e}; {kept}"));
            }
        }
    }

    /// Whether the operator named `cluster` as a member: `--member-network`, or the
    /// `memberNetworks` of the applied revision when revisions are signed (unsigned, anyone
    /// who writes the prefix could name clusters without end). A named cluster is always
    /// held: it does not count against [`MAX_REMOTE_CLUSTERS`], so names created first
    /// cannot lock it out.
    fn is_declared(&self, cluster: &str) -> bool {
        self.settings.member_networks.contains_key(cluster)
            || (!self.settings.trusted_keys.is_empty()
                && self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.member_networks.contains_key(cluster)))
    }

    /// Clusters held that the operator did not name (those [`MAX_REMOTE_CLUSTERS`] bounds).
    fn undeclared_remotes(&self) -> usize {
        self.remotes.keys().filter(|c| !self.is_declared(c)).count()
    }

    /// Reads the identities of the clusters the applied revision names that are not held
    /// (refused while the bound was reached, before the revision named them).
    async fn read_declared_identities(&mut self, client: &mut Client) -> Result<()> {
        let missing: Vec<String> = self
            .current
            .as_ref()
            .map(|c| c.member_networks.keys().cloned().collect::<Vec<String>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                *c != self.settings.cluster.name
                    && !self.remotes.contains_key(c)
                    && self.is_declared(c)
            })
            .collect();
        let t = self.settings.etcd.timeout;
        for c in missing {
            let resp = within(t, client.get(self.settings.layout.identity(&c), None)).await?;
            if let Some(kv) = resp.kvs().first() {
                self.on_identity(&c, Some(kv.value()));
            }
        }
        Ok(())
    }

    /// The other clusters' workloads as the view holds them. An address no pod can hold, or
    /// outside the networks given for its cluster, is dropped. An address claimed by more
    /// than one cluster is dropped from all of them and reported: no order of claims (which
    /// key is older, which name sorts first) decides who an address is, since a member can
    /// choose both (claim in advance, let its key expire and create it again). A member
    /// that claims another's pod address thus makes it an unknown address (only `ipBlock`
    /// rules apply to it), never its own workload.
    fn resolved_remotes(&self) -> (Vec<RemoteWorkload>, Vec<String>) {
        let mut conflicts = Vec::new();
        // First pass: what each cluster may claim at all.
        let mut candidates: Vec<(RemoteWorkload, Vec<(String, IpAddr)>)> = Vec::new();
        let mut claimants: HashMap<IpAddr, std::collections::BTreeSet<&str>> = HashMap::new();
        for (cluster, workloads) in &self.remotes {
            for w in workloads {
                let mut kept = Vec::new();
                for s in &w.ips {
                    let Ok(ip) = s.parse::<IpAddr>() else {
                        continue;
                    };
                    if is_node_internal(ip) {
                        conflicts.push(format!(
                            "identities of {cluster}: {}/{} claims {ip}, which no pod can hold (loopback, link-local, metadata, multicast…); ignored",
                            w.namespace, w.name
                        ));
                        continue;
                    }
                    let ip = reached_address(ip);
                    if let Err(why) = self.may_claim(cluster, ip) {
                        conflicts.push(format!(
                            "identities of {cluster}: {}/{} claims {ip}, {why}; ignored",
                            w.namespace, w.name
                        ));
                        continue;
                    }
                    claimants.entry(ip).or_default().insert(cluster.as_str());
                    kept.push((s.clone(), ip));
                }
                candidates.push((w.clone(), kept));
            }
        }
        // Second pass: an address with more than one claimant is nobody's.
        let mut out = Vec::with_capacity(candidates.len());
        for (mut w, kept) in candidates {
            w.ips = kept
                .into_iter()
                .filter(|(_, ip)| {
                    let holders = &claimants[ip];
                    if holders.len() == 1 {
                        return true;
                    }
                    let others: Vec<&str> = holders
                        .iter()
                        .copied()
                        .filter(|c| *c != w.cluster)
                        .collect();
                    conflicts.push(format!(
                        "identities of {}: {}/{} claims {ip}, which {} also claim{}; refused to all of them",
                        w.cluster,
                        w.namespace,
                        w.name,
                        others.join(", "),
                        if others.len() == 1 { "s" } else { "" }
                    ));
                    false
                })
                .map(|(s, _)| s)
                .collect();
            out.push(w);
        }
        (out, conflicts)
    }

    /// Whether `cluster` may claim `ip` for its pods. The networks the operator declared in
    /// the applied revision (`memberNetworks`) and those given to this process
    /// (`--member-network`) both apply. Once any networks are declared, a member named in
    /// neither claims nothing: it cannot publish another member's (or any routable)
    /// address as its own. With none declared anywhere, any pod-holdable address is taken.
    fn may_claim(&self, cluster: &str, ip: IpAddr) -> std::result::Result<(), String> {
        let declared = self.current.as_ref().map(|c| &c.member_networks);
        let sources = [
            (
                declared.and_then(|d| d.get(cluster)),
                "the networks declared for it (memberNetworks)",
            ),
            (
                self.settings.member_networks.get(cluster),
                "the networks given for it (--member-network)",
            ),
        ];
        let mut named = false;
        for (nets, what) in sources {
            if let Some(nets) = nets {
                named = true;
                if !nets.iter().any(|n| n.contains(ip)) {
                    return Err(format!("outside {what}"));
                }
            }
        }
        let any_declared =
            declared.is_some_and(|d| !d.is_empty()) || !self.settings.member_networks.is_empty();
        if any_declared && !named {
            return Err(format!(
                "but no networks are declared for {cluster} (memberNetworks, --member-network)"
            ));
        }
        Ok(())
    }

    fn report_refused(&self, msg: String) {
        let msg = bounded(msg);
        tracing::warn!(%msg, "federation: not applied");
        self.health_tx.send_modify(|h| h.refused = Some(msg));
    }

    fn report_ignored(&self, msg: String) {
        let msg = bounded(msg);
        tracing::warn!(%msg, "federation: ignored");
        self.health_tx.send_modify(|h| {
            if h.ignored_keys.len() >= 100 {
                h.ignored_keys.remove(0);
            }
            h.ignored_keys.push(msg);
        });
    }

    fn publish_view(&mut self) {
        let (remote_workloads, conflicts) = self.resolved_remotes();
        if conflicts != self.conflicts {
            for c in conflicts.iter().filter(|c| !self.conflicts.contains(c)) {
                self.report_ignored(c.clone());
            }
            self.conflicts = conflicts;
        }
        let view = FederationView {
            revision: self.applied(),
            policies: self
                .current
                .as_ref()
                .map(|c| c.policies.clone())
                .unwrap_or_default(),
            remote_workloads,
        };
        let applied = view.revision;
        let clusters: Vec<String> = self.remotes.keys().cloned().collect();
        let mut claims: Vec<String> = self
            .conflicts
            .iter()
            .take(SHOWN_CLAIMS)
            .map(|c| bounded(c.clone()))
            .collect();
        if self.conflicts.len() > SHOWN_CLAIMS {
            claims.push(format!(
                "and {} more refused claims",
                self.conflicts.len() - SHOWN_CLAIMS
            ));
        }
        self.health_tx.send_modify(|h| {
            h.applied_revision = applied;
            h.remote_clusters = clusters;
            h.refused_claims = claims;
        });
        self.save_identities(&view.remote_workloads);
        self.view_tx.send_replace(Some(Arc::new(view)));
    }

    fn identities_file(&self) -> Option<PathBuf> {
        self.settings
            .state_file
            .as_ref()
            .map(|p| p.with_extension("identities.json"))
    }

    /// Other clusters' workloads as last seen (address conflicts resolved), so a restart
    /// during an outage knows them.
    fn save_identities(&self, resolved: &[RemoteWorkload]) {
        let Some(p) = self.identities_file() else {
            return;
        };
        let mut by_cluster: BTreeMap<&str, Vec<&RemoteWorkload>> = BTreeMap::new();
        for w in resolved {
            by_cluster.entry(w.cluster.as_str()).or_default().push(w);
        }
        let Ok(bytes) = serde_json::to_vec(&by_cluster) else {
            return;
        };
        let tmp = p.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, &p)) {
            tracing::warn!(error = %e, file = %p.display(), "federation: cannot save remote identities");
        }
    }

    fn load_saved_identities(&self) -> BTreeMap<String, Vec<RemoteWorkload>> {
        let Some(bytes) = self.identities_file().and_then(|p| std::fs::read(p).ok()) else {
            return BTreeMap::new();
        };
        let saved: BTreeMap<String, Vec<RemoteWorkload>> =
            serde_json::from_slice(&bytes).unwrap_or_default();
        saved
            .into_iter()
            .filter(|(c, ws)| {
                *c != self.settings.cluster.name && ws.iter().all(|w| w.cluster == *c)
            })
            .collect()
    }

    fn save(&self, bytes: &[u8]) {
        if let Some(p) = &self.settings.state_file {
            let tmp = p.with_extension("tmp");
            let r = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, p));
            if let Err(e) = r {
                tracing::warn!(error = %e, file = %p.display(), "federation: cannot save the applied revision");
            }
        }
    }

    fn load_saved(&self) -> Option<(ParsedRevision, Vec<u8>)> {
        let p = self.settings.state_file.as_ref()?;
        let bytes = std::fs::read(p).ok()?;
        let doc: crate::revision::RevisionDoc =
            serde_json::from_slice(&crate::signing::document(&bytes)).ok()?;
        if let Err(why) =
            self.settings
                .trusted_keys
                .verify(self.settings.layout.set(), doc.revision, &bytes)
        {
            tracing::warn!(file = %p.display(), %why, "federation: saved revision not applied");
            return None;
        }
        match parse_revision(doc.revision, &bytes) {
            Ok(r) => Some((r, bytes)),
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e.join("; "), "federation: saved revision unusable");
                None
            }
        }
    }
}

/// Longest message kept in the member's health (and its status in etcd): what is reported
/// comes from keys and documents anyone with write access to the prefix chose.
const MAX_MESSAGE: usize = 2000;

/// `msg` cut to [`MAX_MESSAGE`] bytes (on a character boundary), saying how much was cut.
fn bounded(mut msg: String) -> String {
    if msg.len() <= MAX_MESSAGE {
        return msg;
    }
    let total = msg.len();
    let mut end = MAX_MESSAGE;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    msg.truncate(end);
    msg.push_str(&format!("… ({} more bytes)", total - end));
    msg
}

/// The first errors of a refused document, and how many more there are.
fn summary(errors: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = errors
        .iter()
        .take(SHOWN)
        .map(|e| bounded(e.clone()))
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > SHOWN {
        s.push_str(&format!("; and {} more errors", errors.len() - SHOWN));
    }
    s
}
