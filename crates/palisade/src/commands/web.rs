//! The web UI and `/metrics` of `palisade up` (crate `palisade-observe`), wired to the
//! supervisor's published snapshot and the data folder's event store.

use palisade_observe::metrics::{tail_store, Metrics};
use palisade_observe::web::{self, WebState};
use palisade_standalone::{config::Runtime, supervisor};
use std::sync::Arc;

/// The UI and metrics routes (merged into the admin API), and a metrics-only router for a
/// listener of its own. Starts the thread that counts stored events for `/metrics`.
pub(crate) fn routers(rt: &Runtime, state: &supervisor::State) -> (axum::Router, axum::Router) {
    let store = palisade_standalone::events::store_path(&rt.data_dir);
    let metrics = Arc::new(Metrics::new());
    let (m, path) = (metrics.clone(), store.clone());
    let spawned = std::thread::Builder::new()
        .name("palisade-metrics".into())
        .spawn(move || tail_store(&path, &m, std::time::Duration::from_secs(1)));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics will not count events");
    }
    let published = state.published.clone();
    let st = WebState {
        store,
        engine: Arc::new(move || published.borrow().as_ref().map(|p| p.engine.clone())),
        metrics,
    };
    (web::router(st.clone()), web::metrics_router(st))
}
