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

/// Runs the anomaly detectors (`crates/detect`) on the live event stream of `palisade up`:
/// follows the event store from now on, feeds every stored event to the detectors on event
/// time (as `palisade detect replay` does with a file), and stores the `alert` events they
/// raise, so the UI's alert list, `/metrics` and `palisade events --type alert` show them.
/// Baselines are saved to `<dataDir>/detect-baselines.json` every minute and restored at
/// start, so a restart does not begin a new learning window.
pub(crate) fn start_detectors(rt: &Runtime) {
    let store = palisade_standalone::events::store_path(&rt.data_dir);
    let saved = rt.data_dir.join("detect-baselines.json");
    let (tx, rx) = palisade_events::channel(4096);
    let writer = match palisade_standalone::events::EventWriter::spawn(rt, rx) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "anomaly detectors not started");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("palisade-detect".into())
        .spawn(move || {
            let _writer = writer;
            let cfg = palisade_detect::DetectConfig::default();
            let mut detector = std::fs::read_to_string(&saved)
                .ok()
                .and_then(|s| palisade_detect::Detector::load(cfg.clone(), &s).ok())
                .unwrap_or_else(|| palisade_detect::Detector::new(cfg));
            let mut opened = None;
            let mut after: Option<i64> = None;
            let mut last_save = std::time::Instant::now();
            let mut evicted = detector.evicted();
            loop {
                if opened.is_none() && store.exists() {
                    opened = palisade_store::Store::open(&store).ok();
                }
                // A backlog (a burst, a slow disk) is read in steps, as the metrics follower
                // reads it, never in one query of unbounded size.
                let mut more = false;
                if let Some(latest) = opened
                    .as_ref()
                    .and_then(|s| s.latest_seq().ok())
                    .map(|l| l.unwrap_or(0))
                {
                    let from = *after.get_or_insert(latest);
                    let through = from
                        .saturating_add(palisade_observe::metrics::TAIL_CHUNK)
                        .min(latest);
                    let q = palisade_store::Query {
                        after_seq: Some(from),
                        through_seq: Some(through),
                        ..palisade_store::Query::default()
                    };
                    if let (true, Some(Ok(rows))) =
                        (latest > from, opened.as_ref().map(|s| s.query(&q)))
                    {
                        for (_, e) in &rows {
                            for alert in detector.observe(e) {
                                tx.try_send(alert);
                            }
                        }
                        after = Some(through);
                        more = through < latest;
                        if detector.evicted() > evicted {
                            tracing::warn!(
                                evicted = detector.evicted() - evicted,
                                total = detector.evicted(),
                                "anomaly detectors: more workloads and consumers than maxSubjects; the quietest were evicted (their baselines restart)"
                            );
                            evicted = detector.evicted();
                        }
                    }
                }
                if last_save.elapsed() >= std::time::Duration::from_secs(60) {
                    last_save = std::time::Instant::now();
                    let tmp = saved.with_extension("json.tmp");
                    if std::fs::write(&tmp, detector.save()).is_ok() {
                        let _ = std::fs::rename(&tmp, &saved);
                    }
                }
                if !more {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "anomaly detectors not started");
    }
}
