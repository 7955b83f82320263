//! The standalone supervisor: loads the manifests folder, compiles it, publishes the result
//! as one immutable snapshot, and reloads when the folder changes. A change that does not
//! validate keeps the last good snapshot in force and is reported; nothing is half-applied.

use crate::config::Runtime;
use crate::source;
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
pub fn build(rt: &Runtime) -> Result<(Engine, usize, Vec<Diagnostic>), Vec<Diagnostic>> {
    let m = source::load_paths(std::slice::from_ref(&rt.manifests));
    if m.has_errors() {
        return Err(m.diagnostics);
    }
    let snap = Snapshot::from_manifests(&m);
    let engine = Engine::compile_with(&snap, rt.posture);
    Ok((engine, m.objects.len(), m.diagnostics))
}

/// Starts the reload loop; returns the state handle. The first load happens before this
/// returns.
pub fn start(rt: Runtime) -> State {
    let (pub_tx, pub_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(ReloadStatus::default());
    let mut generation = 0u64;
    let mut apply = move |rt: &Runtime,
                          pub_tx: &watch::Sender<Option<Arc<Published>>>,
                          status_tx: &watch::Sender<ReloadStatus>| {
        let attempted_at_us = now_us();
        match build(rt) {
            Ok((engine, objects, diags)) => {
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
    apply(&rt, &pub_tx, &status_tx);
    let state = State {
        published: pub_rx,
        status: status_rx,
    };
    tokio::spawn(async move {
        let paths = vec![rt.manifests.clone()];
        let mut last = source::fingerprint(&paths);
        loop {
            tokio::time::sleep(rt.reload_interval).await;
            let now = source::fingerprint(&paths);
            if now != last {
                last = now;
                // Loading and compiling is CPU work: keep it off the async workers.
                tokio::task::block_in_place(|| apply(&rt, &pub_tx, &status_tx));
            }
        }
    });
    state
}
