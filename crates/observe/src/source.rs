//! Where recorded events come from: the SQLite event store or a JSON-lines file.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use palisade_events::{Event, EventType};
use palisade_store::{Query, Store};

use crate::ObserveError;

/// A place recorded events are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSource {
    /// An `events.db` file (or a data folder holding one).
    Store(PathBuf),
    /// A JSON-lines file in the EVENTS.md schema.
    Jsonl(PathBuf),
}

impl EventSource {
    /// Picks the source for a path: a `.jsonl`/`.json` file is read as JSON lines, a folder
    /// as the data folder holding `events.db`, anything else as the database file.
    pub fn from_path(path: &Path) -> EventSource {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_dir() {
            EventSource::Store(path.join("events.db"))
        } else if matches!(ext, "jsonl" | "json" | "ndjson") {
            EventSource::Jsonl(path.to_path_buf())
        } else {
            EventSource::Store(path.to_path_buf())
        }
    }

    /// Reads the events of `types` (all when empty) at or after `since_us`, oldest first.
    pub fn read(
        &self,
        types: &[EventType],
        since_us: Option<i64>,
    ) -> Result<Vec<Event>, ObserveError> {
        match self {
            EventSource::Store(path) => {
                if !path.exists() {
                    return Err(ObserveError::Io {
                        path: path.display().to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no event store here",
                        ),
                    });
                }
                let store = Store::open(path)?;
                let q = Query {
                    types: types.to_vec(),
                    since_us,
                    ..Query::default()
                };
                Ok(store.query(&q)?.into_iter().map(|(_, e)| e).collect())
            }
            EventSource::Jsonl(path) => {
                let name = path.display().to_string();
                let io = |source| ObserveError::Io {
                    path: name.clone(),
                    source,
                };
                let file = std::fs::File::open(path).map_err(io)?;
                let mut out = Vec::new();
                for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(io)?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let e =
                        Event::from_json_line(&line).map_err(|source| ObserveError::BadEvent {
                            path: name.clone(),
                            line: i + 1,
                            source,
                        })?;
                    let wanted = types.is_empty() || types.contains(&e.event_type());
                    if wanted && since_us.is_none_or(|s| e.time.as_micros() >= s) {
                        out.push(e);
                    }
                }
                out.sort_by_key(|e| e.time.as_micros());
                Ok(out)
            }
        }
    }
}
