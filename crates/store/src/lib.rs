//! Palisade's local event store: a SQLite database (WAL mode) of the events defined in
//! `palisade-events`, plus an optional JSON Lines copy.
//!
//! Rows are appended in insertion order with no per-row secondary index. Instead, every run
//! of up to 16,384 consecutive rows (a *batch*) is summarized once: its sequence and time
//! range and its rows per type and verdict, and, per workload or destination name, which of
//! its rows carry it. Queries by time, type, verdict, workload or destination read only the
//! batches (or rows) that can match, and counts over whole batches come from the summaries.
//!
//! Writes happen on one background thread ([`Writer`]) that drains the data path's
//! [`EventReceiver`](palisade_events::EventReceiver) in large batches, so producers never
//! wait for the disk. Readers open their own [`Store`] on the same file and use [`Query`].

mod batch;
mod query;
mod row;
mod schema;
mod store;
mod writer;

use std::path::PathBuf;

pub use query::Query;
pub use store::Store;
pub use writer::{JsonlSink, Writer, WriterHandle, WriterStats, DEFAULT_JSONL_MAX_BYTES};

/// How much of the event stream the store keeps. Pods decide how many events there are (a
/// flood of connections or DNS queries), so the store keeps at most `max_events` rows by
/// default: the oldest go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this (by event time) are deleted; `None`: kept whatever their age.
    pub max_age: Option<std::time::Duration>,
    /// Most events kept (the newest by insertion); `None`: no limit.
    pub max_events: Option<u64>,
    /// How often the writer applies it; it also does after every `max_events / 10` rows
    /// written, so a burst cannot overshoot the limit by more than a tenth.
    pub every: std::time::Duration,
}

/// The default [`Retention::max_events`]: about 3 GB of database (some 600 bytes an event).
pub const DEFAULT_MAX_EVENTS: u64 = 5_000_000;

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: None,
            max_events: Some(DEFAULT_MAX_EVENTS),
            every: std::time::Duration::from_secs(60),
        }
    }
}

/// Errors of the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (open, schema, insert or query).
    #[error("event database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file could not be opened or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A stored row does not hold a valid event.
    #[error("stored event #{seq} is invalid: {source}")]
    Corrupt {
        /// The row's sequence number.
        seq: i64,
        /// Why it could not be read.
        source: palisade_events::EventError,
    },
    /// An event could not be encoded as JSON.
    #[error("event could not be encoded as JSON")]
    Encode,
    /// The writer thread panicked.
    #[error("event writer thread panicked")]
    WriterPanicked,
}

impl StoreError {
    /// A stable, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Io { .. } => "io",
            Self::Corrupt { .. } => "corrupt",
            Self::Encode => "encode",
            Self::WriterPanicked => "writer_panicked",
        }
    }
}
