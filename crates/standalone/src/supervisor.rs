//! The standalone supervisor: loads the manifests folder, compiles it, publishes the result
//! as one immutable snapshot, and reloads when the folder changes. A change that does not
//! validate keeps the last good snapshot in force and is reported; nothing is half-applied.
//! Under federation, an [`Overlay`] (global policies of one revision and other clusters'
//! workloads) is merged into every build, and a new overlay triggers a rebuild like a file
//! change does.

use crate::config::Runtime;
use crate::source;
use palisade_policy::model::{AIGateway, ClusterIdentity, ClusterSecurityPolicy, RemoteWorkload};
use palisade_policy::snapshot::Sourced;
use palisade_policy::{Diagnostic, Engine, Severity, Snapshot};
use std::sync::Arc;
use tokio::sync::watch;

/// What is enforced now.
#[derive(Debug)]
pub struct Published {
    /// The compiled policy.
    pub engine: Arc<Engine>,
    /// Increments with every successful apply.
    pub generation: u64,
    /// When it was applied (µs since the epoch).
    pub applied_at_us: i64,
    /// Objects in the snapshot.
    pub objects: usize,
    /// Federation: the global policy revision merged in (`None`: not federated, or no
    /// revision received yet).
    pub federation_revision: Option<u64>,
    /// The snapshot's AIGateways, for the ingress gateway (they are routes, not policy, so
    /// the engine does not hold them).
    pub gateways: Arc<Sourced<AIGateway>>,
}

/// One build of the manifests folder.
#[derive(Debug)]
pub struct Built {
    /// The compiled policy.
    pub engine: Engine,
    /// Objects in the snapshot (the overlay's included).
    pub objects: usize,
    /// The snapshot's AIGateways.
    pub gateways: Sourced<AIGateway>,
    /// Warnings from loading the folder.
    pub warnings: Vec<Diagnostic>,
}

/// What federation adds to the local manifests: one revision of global policies and the
/// workloads other member clusters publish.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// The global policy revision (0: none yet).
    pub revision: u64,
    /// Its ClusterSecurityPolicies.
    pub policies: Sourced<ClusterSecurityPolicy>,
    /// Workloads of other member clusters.
    pub remote_workloads: Vec<RemoteWorkload>,
    /// This cluster's name and labels.
    pub cluster: ClusterIdentity,
}

impl Overlay {
    /// Puts the global policies, the other clusters' workloads and this cluster's identity
    /// into `snap`; returns the number of objects added.
    pub fn merge_into(&self, snap: &mut Snapshot) -> usize {
        snap.global_policies = self.policies.clone();
        snap.remote_workloads = self.remote_workloads.clone();
        snap.cluster = Some(self.cluster.clone());
        snap.federation_revision = self.stamp();
        self.policies.len()
    }

    /// The revision to stamp on snapshots built with it (`None` before the first one).
    pub fn stamp(&self) -> Option<u64> {
        Some(self.revision).filter(|r| *r > 0)
    }
}

/// The outcome of the last reload attempt.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// Last attempt (µs since the epoch).
    pub attempted_at_us: i64,
    /// Whether it was applied.
    pub applied: bool,
    /// Errors that kept it from being applied.
    pub errors: Vec<Diagnostic>,
    /// Warnings and notes.
    pub warnings: Vec<Diagnostic>,
}

/// Handle to the published state.
#[derive(Clone)]
pub struct State {
    /// The enforced snapshot; `None` until a first good one.
    pub published: watch::Receiver<Option<Arc<Published>>>,
    /// The last reload's outcome.
    pub status: watch::Receiver<ReloadStatus>,
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Loads and compiles the manifests folder once.
pub fn build(rt: &Runtime) -> Result<Built, Vec<Diagnostic>> {
    build_with(rt, None)
}

/// Loads the manifests folder, merges the federation overlay, and compiles.
pub fn build_with(rt: &Runtime, overlay: Option<&Overlay>) -> Result<Built, Vec<Diagnostic>> {
    let m = source::load_paths(std::slice::from_ref(&rt.manifests));
    if m.has_errors() {
        return Err(m.diagnostics);
    }
    let mut snap = Snapshot::from_manifests(&m);
    let mut objects = m.objects.len();
    if let Some(o) = overlay {
        objects += o.merge_into(&mut snap);
    }
    let engine = Engine::compile_with(&snap, rt.posture);
    Ok(Built {
        engine,
        objects,
        gateways: snap.gateways,
        warnings: m.diagnostics,
    })
}

/// Starts the reload loop; returns the state handle. The first load happens before this
/// returns.
pub fn start(rt: Runtime) -> State {
    start_with_overlay(rt, None)
}

/// [`start`], merging the latest federation overlay into every build and rebuilding when it
/// changes. Until the first overlay arrives only the local manifests are enforced.
pub fn start_with_overlay(
    rt: Runtime,
    mut overlay: Option<watch::Receiver<Option<Arc<Overlay>>>>,
) -> State {
    let (pub_tx, pub_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(ReloadStatus::default());
    let mut generation = 0u64;
    let mut apply = move |rt: &Runtime,
                          overlay: Option<Arc<Overlay>>,
                          pub_tx: &watch::Sender<Option<Arc<Published>>>,
                          status_tx: &watch::Sender<ReloadStatus>| {
        let attempted_at_us = now_us();
        let federation_revision = overlay.as_ref().and_then(|o| o.stamp());
        match build_with(rt, overlay.as_deref()) {
            Ok(Built {
                engine,
                objects,
                gateways,
                warnings: diags,
            }) => {
                generation += 1;
                tracing::info!(
                    generation,
                    objects,
                    pods = engine.pods().len(),
                    policies = engine.policies().len(),
                    "applied policy snapshot"
                );
                pub_tx.send_replace(Some(Arc::new(Published {
                    engine: Arc::new(engine),
                    generation,
                    applied_at_us: attempted_at_us,
                    objects,
                    federation_revision,
                    gateways: Arc::new(gateways),
                })));
                status_tx.send_replace(ReloadStatus {
                    attempted_at_us,
                    applied: true,
                    errors: Vec::new(),
                    warnings: diags,
                });
            }
            Err(diags) => {
                let (errors, warnings): (Vec<_>, Vec<_>) = diags
                    .into_iter()
                    .partition(|d| d.severity == Severity::Error);
                for e in &errors {
                    tracing::warn!(%e, "manifest change rejected; the last good snapshot stays in force");
                }
                status_tx.send_replace(ReloadStatus {
                    attempted_at_us,
                    applied: false,
                    errors,
                    warnings,
                });
            }
        }
    };
    let mut last_overlay = overlay.as_ref().and_then(|r| r.borrow().clone());
    apply(&rt, last_overlay.clone(), &pub_tx, &status_tx);
    let state = State {
        published: pub_rx,
        status: status_rx,
    };
    tokio::spawn(async move {
        let paths = vec![rt.manifests.clone()];
        let mut last = source::fingerprint(&paths);
        loop {
            let overlay_changed = async {
                match overlay.as_mut() {
                    Some(r) => r.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let changed = tokio::select! {
                _ = tokio::time::sleep(rt.reload_interval) => {
                    let now = source::fingerprint(&paths);
                    let changed = now != last;
                    last = now;
                    changed
                }
                alive = overlay_changed => {
                    match overlay.as_ref().filter(|_| alive) {
                        Some(r) => {
                            last_overlay = r.borrow().clone();
                            true
                        }
                        None => {
                            // The federation side stopped: keep merging its last overlay.
                            tracing::warn!("federation overlay source stopped; keeping its last revision");
                            overlay = None;
                            false
                        }
                    }
                }
            };
            if changed {
                let o = last_overlay.clone();
                // Loading and compiling is CPU work: keep it off the async workers.
                tokio::task::block_in_place(|| apply(&rt, o, &pub_tx, &status_tx));
            }
        }
    });
    state
}
