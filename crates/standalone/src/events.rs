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
    ) -> Result<Vec<serde_json::Value>, String> {
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
        rows.into_iter()
            .map(|(_, e)| serde_json::from_str(&e.to_json()).map_err(|e| e.to_string()))
            .collect()
    }
}
