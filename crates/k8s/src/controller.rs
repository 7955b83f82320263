//! Wiring: one watch task per resource feeding the [`Reconciler`], which publishes compiled
//! snapshots in the standalone supervisor's shape (so the agent, DNS proxy, gateways and
//! admin API take a Kubernetes source exactly as they take a folder), and, on the replica
//! holding the Lease, writes status conditions and Events.

use crate::lease::LeaseLock;
use crate::reconcile::{rfc3339, Reconciler};
use crate::resources::RESOURCES;
use crate::watch::{follow, Update, WatchSettings};
use kube::Client;
use palisade_policy::{Engine, Posture};
use palisade_standalone::supervisor::{Overlay, Published, ReloadStatus, State};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Leader election settings (only the leader writes to the API).
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// `leaseDurationSeconds`.
    pub duration_secs: i64,
    /// How often the holder renews (and others retry).
    pub renew_every: Duration,
}

/// How the Kubernetes source runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch timing.
    pub watch: WatchSettings,
    /// `Some`: a controller that writes status and Events while it holds the Lease.
    /// `None`: a read-only source (the agent).
    pub leader: Option<LeaderSettings>,
    /// Changes arriving within this window are applied as one snapshot.
    pub debounce: Duration,
    /// Default posture override (else the PalisadeConfig's, else allow).
    pub posture: Option<Posture>,
    /// Reports delivered per round at most (the rest wait for the next round).
    pub reports_per_round: usize,
    /// Federation: the latest overlay (global policies of one revision, other clusters'
    /// workloads), merged into every snapshot; a new one triggers a rebuild. Until the
    /// first arrives, only the cluster's own objects are enforced.
    pub overlay: Option<watch::Receiver<Option<Arc<Overlay>>>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            watch: WatchSettings::default(),
            leader: None,
            debounce: Duration::from_millis(100),
            posture: None,
            reports_per_round: 100,
            overlay: None,
        }
    }
}

/// Running source: the published state, whether this replica leads, and the tasks.
pub struct Running {
    /// Published snapshot and status, as the standalone supervisor publishes them.
    pub state: State,
    /// Whether this replica holds the Lease (always `false` without leader election).
    pub leading: watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Starts watching every resource; returns at once. Must run inside a tokio runtime.
pub fn start(client: Client, settings: Settings) -> Running {
    let (tx, rx) = mpsc::channel::<Update>(4096);
    let (pub_tx, pub_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(ReloadStatus::default());
    let (lead_tx, lead_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for res in RESOURCES {
        tasks.push(tokio::spawn(follow(
            client.clone(),
            res,
            settings.watch.clone(),
            tx.clone(),
        )));
    }
    drop(tx);
    let instance = settings
        .leader
        .as_ref()
        .map(|l| l.identity.clone())
        .unwrap_or_default();
    if let Some(l) = settings.leader.clone() {
        let lock = LeaseLock {
            client: client.clone(),
            namespace: l.namespace,
            name: l.name,
            identity: l.identity,
            duration_secs: l.duration_secs,
        };
        tasks.push(tokio::spawn(lead(lock, l.renew_every, lead_tx)));
    }
    let writer = settings.leader.is_some().then_some(client);
    tasks.push(tokio::spawn(reconcile_loop(
        rx,
        pub_tx,
        status_tx,
        lead_rx.clone(),
        writer,
        instance,
        settings,
    )));
    Running {
        state: State {
            published: pub_rx,
            status: status_rx,
        },
        leading: lead_rx,
        tasks,
    }
}

/// Holds the Lease: renews while leading, retries while following. A leader that cannot
/// renew (no answer within one renew period counts as failure) steps down 2 s before the
/// Lease expires, so two replicas never write at once.
async fn lead(lock: LeaseLock, every: Duration, tx: watch::Sender<bool>) {
    let mut last_ok: Option<i64> = None;
    loop {
        let now = now_secs();
        // kube's client retries 503s for a long time; a leader must know sooner.
        let attempt = every.max(Duration::from_millis(500));
        let result = match tokio::time::timeout(attempt, lock.try_acquire_or_renew(now)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {attempt:?}")),
        };
        match result {
            Ok(leading) => {
                if leading != *tx.borrow() {
                    tracing::info!(identity = %lock.identity, leading, "leadership changed");
                }
                last_ok = leading.then_some(now);
                tx.send_replace(leading);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                let stale = last_ok.is_none_or(|t| now - t >= lock.duration_secs - 2);
                if stale && *tx.borrow() {
                    tracing::warn!("stepping down: the lease could not be renewed in time");
                    tx.send_replace(false);
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Resolves when the overlay changes (`true`) or its sender is gone (`false`); never
/// without an overlay.
async fn overlay_changed(rx: &mut Option<watch::Receiver<Option<Arc<Overlay>>>>) -> bool {
    match rx.as_mut() {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_loop(
    mut rx: mpsc::Receiver<Update>,
    pub_tx: watch::Sender<Option<Arc<Published>>>,
    status_tx: watch::Sender<ReloadStatus>,
    leading: watch::Receiver<bool>,
    writer: Option<Client>,
    instance: String,
    settings: Settings,
) {
    let mut r = Reconciler::new();
    let mut overlay_rx = settings.overlay.clone();
    let mut overlay = overlay_rx.as_ref().and_then(|o| o.borrow().clone());
    // A new overlay since the last build.
    let mut rebuild_for_overlay = false;
    let mut published: Option<u64> = None;
    let mut generation = 0u64;
    let mut unique = now_us() as u64;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some((res, change)) = msg else { return };
                r.apply(res, change);
                tokio::time::sleep(settings.debounce).await;
                while let Ok((res, change)) = rx.try_recv() {
                    r.apply(res, change);
                }
            }
            _ = tick.tick() => {}
            alive = overlay_changed(&mut overlay_rx) => {
                match overlay_rx.as_ref().filter(|_| alive) {
                    Some(rx) => {
                        overlay = rx.borrow().clone();
                        rebuild_for_overlay = true;
                    }
                    None => {
                        // The federation side stopped: keep merging its last overlay.
                        tracing::warn!("federation overlay source stopped; keeping its last revision");
                        overlay_rx = None;
                    }
                }
            }
        }
        if r.synced() && (published != Some(r.revision()) || rebuild_for_overlay) {
            published = Some(r.revision());
            rebuild_for_overlay = false;
            let Some(mut snap) = r.snapshot() else {
                continue;
            };
            let mut objects = r.counts().0;
            if let Some(o) = &overlay {
                objects += o.merge_into(&mut snap);
            }
            let federation_revision = overlay.as_ref().and_then(|o| o.stamp());
            let (errors, warnings) = r.diagnostics();
            let posture = settings.posture.unwrap_or_else(|| snap.posture());
            let gateways = Arc::new(std::mem::take(&mut snap.gateways));
            let started = now_us();
            let engine =
                tokio::task::spawn_blocking(move || Engine::compile_with(&snap, posture)).await;
            let Ok(engine) = engine else {
                tracing::error!("compiling the snapshot panicked; the last one stays in force");
                continue;
            };
            generation += 1;
            tracing::info!(
                generation,
                objects,
                invalid = r.counts().1,
                pods = engine.pods().len(),
                policies = engine.policies().len(),
                compile_ms = (now_us() - started) / 1000,
                federation_revision = ?federation_revision,
                "applied policy snapshot from the Kubernetes API"
            );
            pub_tx.send_replace(Some(Arc::new(Published {
                engine: Arc::new(engine),
                generation,
                applied_at_us: now_us(),
                objects,
                federation_revision,
                gateways,
            })));
            status_tx.send_replace(ReloadStatus {
                attempted_at_us: started,
                applied: true,
                errors,
                warnings,
            });
        }
        let is_leader = *leading.borrow();
        if let (Some(client), true) = (&writer, is_leader) {
            let now = rfc3339(now_secs());
            for report in r
                .pending_reports()
                .into_iter()
                .take(settings.reports_per_round)
            {
                unique += 1;
                match crate::status::deliver(client, &report, &now, unique, &instance).await {
                    Ok(()) => r.delivered(&report),
                    Err(e) => {
                        tracing::warn!(object = %report.key, error = %e, "status/event not written; retried");
                        break;
                    }
                }
            }
        }
    }
}
