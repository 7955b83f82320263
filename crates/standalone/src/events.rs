//! The event store as seen by `palisade up` and `palisade events`.

use crate::admin::EventQuery;
use palisade_events::EventType;
use palisade_store::{Query, Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The store file inside a data folder.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("events.db")
}

/// Parses `flow`, `dns`, `http`, `alert`.
pub fn parse_type(s: &str) -> Option<EventType> {
    match s {
        "flow" => Some(EventType::Flow),
        "dns" => Some(EventType::Dns),
        "http" => Some(EventType::Http),
        "alert" => Some(EventType::Alert),
        _ => None,
    }
}

/// A store opened for queries by the admin API.
pub struct StoreQuery {
    store: Mutex<Store>,
}

impl StoreQuery {
    /// Opens (and creates, if needed) the store of a data folder.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(StoreQuery {
            store: Mutex::new(Store::open(store_path(data_dir))?),
        })
    }
}

impl EventQuery for StoreQuery {
    fn query(
        &self,
        types: &[String],
        since_us: Option<i64>,
        limit: usize,
    ) -> Result<Vec<String>, String> {
        let q = Query {
            types: types.iter().filter_map(|t| parse_type(t)).collect(),
            since_us,
            limit,
            ..Query::default()
        };
        let store = self
            .store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        let rows = store.query(&q).map_err(|e| e.to_string())?;
        Ok(rows.into_iter().map(|(_, e)| e.to_json()).collect())
    }
}

/// Starts the store writer of `data_dir` (and its JSON-lines copy `jsonl`), keeping events
/// for at most `max_age` when given (`spec.events.retentionDays`) besides the store's row cap.
pub fn spawn_store_writer(
    data_dir: &std::path::Path,
    rx: palisade_events::EventReceiver,
    jsonl: Option<std::path::PathBuf>,
    max_age: Option<std::time::Duration>,
) -> Result<palisade_store::WriterHandle, StoreError> {
    let store = palisade_store::Store::open(store_path(data_dir))?;
    let sink = jsonl.map(palisade_store::JsonlSink::open).transpose()?;
    let mut writer = palisade_store::Writer::default();
    writer.retention.max_age = max_age;
    writer.start(store, rx, sink)
}

/// Where a component's events go: the store (and the JSON-lines copy when configured), or
/// only the JSON-lines file when the store is turned off.
pub enum EventWriter {
    /// The SQLite store writer (with its optional JSON-lines sink).
    Store(palisade_store::WriterHandle),
    /// A thread appending to the JSON-lines file only.
    Jsonl {
        /// Set to stop once the queue is drained.
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        /// The thread.
        thread: std::thread::JoinHandle<()>,
    },
    /// Nowhere (no store, no file): events are received and discarded.
    Discard(std::thread::JoinHandle<()>),
}

impl EventWriter {
    /// Starts the writer the runtime config asks for, consuming `rx`.
    pub fn spawn(
        rt: &crate::config::Runtime,
        rx: palisade_events::EventReceiver,
    ) -> Result<EventWriter, StoreError> {
        if rt.events_store {
            return Ok(EventWriter::Store(spawn_store_writer(
                &rt.data_dir,
                rx,
                rt.events_jsonl.clone(),
                rt.events_retention,
            )?));
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let Some(path) = rt.events_jsonl.clone() else {
            let s = stop.clone();
            return Ok(EventWriter::Discard(std::thread::spawn(move || {
                while !(s.load(std::sync::atomic::Ordering::Acquire) && rx.is_closed()) {
                    let b = rx.recv_batch(4096, std::time::Duration::from_millis(100));
                    if b.is_empty() && rx.is_closed() {
                        break;
                    }
                }
            })));
        };
        let mut sink = palisade_store::JsonlSink::open(&path)?;
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("palisade-jsonl".into())
            .spawn(move || loop {
                let stopping = s.load(std::sync::atomic::Ordering::Acquire);
                let wait = if stopping {
                    std::time::Duration::ZERO
                } else {
                    std::time::Duration::from_millis(50)
                };
                let batch = rx.recv_batch(4096, wait);
                for e in &batch {
                    if let Err(err) = sink.write_event(e) {
                        tracing::warn!(error = %err, "event not written");
                        break;
                    }
                }
                let _ = sink.flush();
                if batch.is_empty() && (stopping || rx.is_closed()) {
                    break;
                }
            })
            .map_err(|e| StoreError::Io {
                path: path.clone(),
                source: e,
            })?;
        Ok(EventWriter::Jsonl { stop, thread })
    }

    /// Writes what is queued and stops.
    pub fn flush_and_stop(self) {
        match self {
            EventWriter::Store(w) => {
                if let Err(e) = w.flush_and_stop() {
                    tracing::warn!(error = %e, "event store did not stop cleanly");
                }
            }
            EventWriter::Jsonl { stop, thread } => {
                stop.store(true, std::sync::atomic::Ordering::Release);
                let _ = thread.join();
            }
            EventWriter::Discard(t) => {
                drop(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spec.events.retentionDays` reaches the writer: an event older than the age is
    /// deleted as the writer writes, a recent one stays (before, the field was read and
    /// never applied, and both stayed).
    #[test]
    fn the_configured_retention_reaches_the_store_writer() {
        let dir = std::env::temp_dir().join(format!("palisade-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("palisade.yaml"),
            "apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {name: t}\nspec:\n  events: {retentionDays: 1}\n",
        )
        .unwrap();
        let rt = crate::config::load_runtime(&dir.join("palisade.yaml")).unwrap();
        assert_eq!(
            rt.events_retention,
            Some(std::time::Duration::from_secs(86_400))
        );
        std::fs::create_dir_all(&rt.data_dir).unwrap();
        let (tx, rx) = palisade_events::channel(16);
        let writer = EventWriter::spawn(&rt, rx).unwrap();
        let day_us = 86_400 * 1_000_000;
        for (i, (name, age_us)) in [("old.test", 2 * day_us), ("new.test", 0)]
            .into_iter()
            .enumerate()
        {
            let body = palisade_events::EventBody::Dns(palisade_events::DnsInfo {
                query: name.into(),
                qtype: None,
                rcode: None,
                answers: None,
                ttl: None,
                latency_us: None,
                features: None,
            });
            let time = palisade_events::Timestamp(palisade_events::now_micros() - age_us);
            let id = format!("01JQ0000000000000000000{i:03}");
            assert!(tx.try_send(palisade_events::Event::new(id, time, body)));
        }
        drop(tx);
        writer.flush_and_stop();
        let store = palisade_store::Store::open(store_path(&rt.data_dir)).unwrap();
        let names: Vec<String> = store
            .query(&palisade_store::Query::default())
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.to_json())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].contains("new.test"), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
