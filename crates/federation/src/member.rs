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
use palisade_policy::model::{ClusterIdentity, ClusterSecurityPolicy, RemoteWorkload};
use palisade_policy::snapshot::Sourced;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
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
}

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
        current: None,
        remotes: BTreeMap::new(),
        view_tx: watch::channel(None).0,
        health_tx: watch::channel(Health::default()).0,
    };
    w.health_tx
        .send_modify(|h| h.cluster = settings.cluster.name.clone());
    if let Some(saved) = w.load_saved() {
        tracing::info!(
            revision = saved.revision,
            "federation: enforcing the saved revision until etcd answers"
        );
        w.current = Some(saved);
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
    current: Option<ParsedRevision>,
    remotes: BTreeMap<String, Vec<RemoteWorkload>>,
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
            if let Some(h) = resp.header() {
                self.etcd_revision = self.etcd_revision.max(h.revision());
            }
            if let Err(e) = self.on_events(&mut client, resp.events()).await {
                return e;
            }
            let r = self.etcd_revision;
            self.health_tx.send_modify(|h| h.etcd_revision = r);
        }
    }

    /// Reads the pointer and the identities at one etcd revision and applies them.
    async fn full_read(&mut self, client: &mut Client) -> Result<()> {
        let t = self.settings.etcd.timeout;
        let layout = self.settings.layout.clone();
        let cur = within(t, client.get(layout.current(), None)).await?;
        let at = cur.header().map(|h| h.revision()).unwrap_or(0);
        let ids = within(
            t,
            client.get(
                layout.identities(),
                Some(GetOptions::new().with_prefix().with_revision(at)),
            ),
        )
        .await?;
        self.remotes.clear();
        for kv in ids.kvs() {
            if let KeyKind::Identities(c) = layout.classify(kv.key()) {
                self.on_identity(&c, Some(kv.value()));
            }
        }
        match cur.kvs().first() {
            Some(kv) => self.on_pointer(client, kv.value(), &HashMap::new()).await?,
            None => self.publish_view(),
        }
        self.etcd_revision = at;
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
                KeyKind::Current => self.report_refused(format!(
                    "the current pointer was deleted; keeping revision {}",
                    self.applied()
                )),
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
        match pointer {
            Some(p) => self.on_pointer(client, &p, &docs).await?,
            None => {
                // A revision written without moving the pointer is not applied; garbage is
                // still worth reporting now rather than at rollback time.
                for (n, d) in &docs {
                    if let Err(e) = parse_revision(*n, d) {
                        self.report_ignored(format!("revision {n}: {}", e.join("; ")));
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
    ) -> Result<()> {
        let n = match parse_pointer(value) {
            Ok(n) => n,
            Err(e) => {
                self.report_refused(format!("{e}; keeping revision {}", self.applied()));
                self.publish_view();
                return Ok(());
            }
        };
        self.health_tx.send_modify(|h| h.seen_revision = Some(n));
        if n == self.applied() {
            self.health_tx.send_modify(|h| h.refused = None);
            self.publish_view();
            return Ok(());
        }
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
        match parse_revision(n, &bytes) {
            Ok(parsed) => {
                tracing::info!(
                    revision = n,
                    policies = parsed.policies.len(),
                    "federation: applying revision"
                );
                self.save(&bytes);
                self.current = Some(parsed);
                self.health_tx.send_modify(|h| h.refused = None);
            }
            Err(e) => self.report_refused(format!(
                "revision {n} refused, keeping revision {}: {}",
                self.applied(),
                e.join("; ")
            )),
        }
        self.publish_view();
        Ok(())
    }

    fn on_identity(&mut self, cluster: &str, value: Option<&[u8]>) {
        if cluster == self.settings.cluster.name {
            return;
        }
        match value.map(|v| identities::parse(cluster, v)) {
            None => {
                self.remotes.remove(cluster);
            }
            Some(Ok(IdentityDoc { workloads, .. })) => {
                self.remotes.insert(cluster.to_string(), workloads);
            }
            Some(Err(e)) => {
                self.report_ignored(format!("identities of {cluster}: {e}"));
                self.remotes.remove(cluster);
            }
        }
    }

    fn report_refused(&self, msg: String) {
        tracing::warn!(%msg, "federation: not applied");
        self.health_tx.send_modify(|h| h.refused = Some(msg));
    }

    fn report_ignored(&self, msg: String) {
        tracing::warn!(%msg, "federation: ignored");
        self.health_tx.send_modify(|h| {
            if h.ignored_keys.len() >= 100 {
                h.ignored_keys.remove(0);
            }
            h.ignored_keys.push(msg);
        });
    }

    fn publish_view(&self) {
        let view = FederationView {
            revision: self.applied(),
            policies: self
                .current
                .as_ref()
                .map(|c| c.policies.clone())
                .unwrap_or_default(),
            remote_workloads: self.remotes.values().flatten().cloned().collect(),
        };
        let applied = view.revision;
        let clusters: Vec<String> = self.remotes.keys().cloned().collect();
        self.health_tx.send_modify(|h| {
            h.applied_revision = applied;
            h.remote_clusters = clusters;
        });
        self.view_tx.send_replace(Some(Arc::new(view)));
        self.save_identities();
    }

    fn identities_file(&self) -> Option<PathBuf> {
        self.settings
            .state_file
            .as_ref()
            .map(|p| p.with_extension("identities.json"))
    }

    /// Other clusters' workloads as last seen, so a restart during an outage knows them.
    fn save_identities(&self) {
        let Some(p) = self.identities_file() else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(&self.remotes) else {
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

    fn load_saved(&self) -> Option<ParsedRevision> {
        let p = self.settings.state_file.as_ref()?;
        let bytes = std::fs::read(p).ok()?;
        let doc: crate::revision::RevisionDoc = serde_json::from_slice(&bytes).ok()?;
        match parse_revision(doc.revision, &bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e.join("; "), "federation: saved revision unusable");
                None
            }
        }
    }
}
