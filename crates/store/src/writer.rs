//! The background writer: drains an [`EventReceiver`] in batches into a [`Store`] and,
//! optionally, a JSON Lines file.
//!
//! Two threads form a pipeline so that SQLite does as little else as possible: the
//! *encode* thread takes events off the channel, serializes them (once, for both sinks,
//! into one buffer per batch), extracts the indexed values and appends to the JSON Lines
//! file; the *sqlite* thread inserts what it is handed and summarizes it per batch, merging
//! whatever batches are waiting into one transaction, so transactions grow with load. The
//! hand-off between the threads is bounded: when the disk falls behind, the event channel
//! fills and the data path drops (and counts) events instead of waiting.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use palisade_events::{Event, EventReceiver};

use crate::row::Chunk;
use crate::{Store, StoreError};

/// The default size at which a JSON Lines file is rotated (1 GiB): the file becomes
/// `<name>.1` (replacing an older one) and a new file is started, so the two hold at most
/// about twice this.
pub const DEFAULT_JSONL_MAX_BYTES: u64 = 1 << 30;

/// Appends events to a file, one JSON object per line. Pods decide how many events there
/// are, so the file is rotated when it reaches its size limit (see [`JsonlSink::open`]).
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
    /// One event's line, reused so that writing an event allocates nothing.
    line: Vec<u8>,
    /// Size at which the file is rotated; `None`: never.
    max_bytes: Option<u64>,
}

fn open_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
}

impl JsonlSink {
    /// Opens `path` for appending, creating it if needed, rotated at
    /// [`DEFAULT_JSONL_MAX_BYTES`].
    pub fn open(path: impl AsRef<Path>) -> Result<JsonlSink, StoreError> {
        JsonlSink::open_with_limit(path, Some(DEFAULT_JSONL_MAX_BYTES))
    }

    /// Opens `path` for appending, rotated when it reaches `max_bytes` (checked as buffered
    /// lines are flushed; `None`: never rotated). Several processes may append to the same
    /// file: one that finds the file renamed under it by another opens the new one.
    pub fn open_with_limit(
        path: impl AsRef<Path>,
        max_bytes: Option<u64>,
    ) -> Result<JsonlSink, StoreError> {
        let path = path.as_ref().to_path_buf();
        let file = open_append(&path)?;
        Ok(JsonlSink {
            path,
            out: BufWriter::with_capacity(1 << 16, file),
            line: Vec::with_capacity(1024),
            max_bytes,
        })
    }

    /// The rotated file of `path`: `<path>.1`.
    pub fn rotated_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// After a flush: rotates the file if it reached its limit, or follows a rotation done
    /// by another process.
    fn rotate_if_due(&mut self) -> Result<(), StoreError> {
        let Some(max) = self.max_bytes else {
            return Ok(());
        };
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let ours = self.out.get_ref().metadata().map_err(io)?;
        let renamed = match std::fs::metadata(&self.path) {
            Ok(now) => !same_file(&ours, &now),
            Err(_) => true,
        };
        if !renamed && ours.len() < max {
            return Ok(());
        }
        if !renamed {
            std::fs::rename(&self.path, JsonlSink::rotated_path(&self.path)).map_err(io)?;
        }
        self.out = BufWriter::with_capacity(1 << 16, open_append(&self.path)?);
        Ok(())
    }

    /// Appends one event.
    pub fn write_event(&mut self, event: &Event) -> Result<(), StoreError> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        event.write_json_line(&mut line);
        let written = self.write_lines(&line);
        self.line = line;
        written
    }

    /// Appends complete JSON lines (each ending with a newline).
    fn write_lines(&mut self, lines: &[u8]) -> Result<(), StoreError> {
        self.out.write_all(lines).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes buffered lines to the file (and rotates it when it reached its limit).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.out.flush().map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.rotate_if_due()
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len()
}

/// What a writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Events committed to the store.
    pub written: u64,
    /// Events lost because their transaction failed.
    pub failed: u64,
    /// Events that could not be appended to the JSON Lines file.
    pub jsonl_failed: u64,
    /// Events deleted by the retention ([`Writer::retention`]).
    pub deleted: u64,
    /// The most recent error, if any.
    pub last_error: Option<String>,
}

/// Batching settings of the background writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer {
    /// Most events taken off the channel at once.
    pub batch_max: usize,
    /// Longest wait for a batch to fill before taking what is there.
    pub batch_wait: Duration,
    /// Most events per SQLite transaction when batches queue up behind a slow disk.
    pub transaction_max: usize,
    /// What the store keeps (applied by the writer as it writes).
    pub retention: crate::Retention,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            batch_max: 5_000,
            batch_wait: Duration::from_millis(50),
            transaction_max: 50_000,
            retention: crate::Retention::default(),
        }
    }
}

/// Encoded batches in flight between the two threads.
const PIPELINE_DEPTH: usize = 8;

impl Writer {
    /// Opens the store at `store_path` (and the JSON Lines file, if given) and starts the
    /// writer threads with the default batching.
    pub fn spawn(
        store_path: impl AsRef<Path>,
        receiver: EventReceiver,
        jsonl: Option<PathBuf>,
    ) -> Result<WriterHandle, StoreError> {
        let store = Store::open(store_path)?;
        let sink = jsonl.map(JsonlSink::open).transpose()?;
        Writer::default().start(store, receiver, sink)
    }

    /// Starts the writer threads; they own `store`, `receiver` and `sink`.
    pub fn start(
        self,
        store: Store,
        receiver: EventReceiver,
        sink: Option<JsonlSink>,
    ) -> Result<WriterHandle, StoreError> {
        let shared = Arc::new(Counters::default());
        let (rows_tx, rows_rx) = sync_channel::<Chunk>(PIPELINE_DEPTH);
        let spawn_err = |source| StoreError::Io {
            path: PathBuf::from("<writer thread>"),
            source,
        };
        let sqlite_shared = Arc::clone(&shared);
        let sqlite = std::thread::Builder::new()
            .name("palisade-store-sqlite".into())
            .spawn(move || self.insert_loop(store, &rows_rx, &sqlite_shared))
            .map_err(spawn_err)?;
        let encode_shared = Arc::clone(&shared);
        let encode = std::thread::Builder::new()
            .name("palisade-store-encode".into())
            .spawn(move || self.encode_loop(&receiver, sink, &rows_tx, &encode_shared))
            .map_err(spawn_err)?;
        Ok(WriterHandle {
            shared,
            threads: Some((encode, sqlite)),
        })
    }

    /// Takes events off the channel, encodes them, appends them to the JSON Lines file
    /// and passes them on. Ends when stopped (after draining) or when every sender is gone.
    fn encode_loop(
        self,
        receiver: &EventReceiver,
        mut sink: Option<JsonlSink>,
        rows_tx: &SyncSender<Chunk>,
        shared: &Counters,
    ) -> WriterStats {
        let mut stats = WriterStats::default();
        let mut batch = Vec::with_capacity(self.batch_max);
        loop {
            let stopping = shared.stop.load(Ordering::Acquire);
            let wait = if stopping {
                Duration::ZERO
            } else {
                self.batch_wait
            };
            batch.clear();
            receiver.recv_batch_into(&mut batch, self.batch_max, wait);
            if batch.is_empty() {
                if stopping || receiver.is_closed() {
                    break;
                }
                continue;
            }
            let chunk = Chunk::encode(&batch);
            if let Some(s) = sink.as_mut() {
                let written = s.write_lines(chunk.json_lines());
                if written.is_err() {
                    stats.jsonl_failed += chunk.len() as u64;
                }
                if let Err(e) = written.and_then(|()| s.flush()) {
                    stats.last_error = Some(e.to_string());
                }
            }
            if rows_tx.send(chunk).is_err() {
                // The sqlite thread is gone (it panicked); nothing more can be stored.
                break;
            }
        }
        stats
    }

    /// Inserts encoded batches, merging those already waiting into one transaction.
    fn insert_loop(
        self,
        mut store: Store,
        rows_rx: &Receiver<Chunk>,
        shared: &Counters,
    ) -> WriterStats {
        let mut stats = WriterStats::default();
        let mut pending: Vec<Chunk> = Vec::with_capacity(PIPELINE_DEPTH + 1);
        let r = self.retention;
        let rows_between = r.max_events.map(|m| (m / 10).max(1));
        let mut last_check: Option<std::time::Instant> = None;
        let mut written_since = 0u64;
        while let Ok(first) = rows_rx.recv() {
            let mut total = first.len();
            pending.push(first);
            while total < self.transaction_max {
                match rows_rx.try_recv() {
                    Ok(more) => {
                        total += more.len();
                        pending.push(more);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            match store.insert_chunks(pending.iter()) {
                Ok(n) => {
                    stats.written += n as u64;
                    shared.written.store(stats.written, Ordering::Release);
                    written_since += n as u64;
                }
                Err(e) => {
                    stats.failed += total as u64;
                    shared.failed.store(stats.failed, Ordering::Release);
                    stats.last_error = Some(e.to_string());
                }
            }
            pending.clear();
            let due = last_check.is_none_or(|t| t.elapsed() >= r.every)
                || rows_between.is_some_and(|b| written_since >= b);
            if due && (r.max_age.is_some() || r.max_events.is_some()) {
                last_check = Some(std::time::Instant::now());
                written_since = 0;
                match store.apply_retention(&r, palisade_events::now_micros()) {
                    Ok(n) => stats.deleted += n as u64,
                    Err(e) => stats.last_error = Some(format!("retention: {e}")),
                }
            }
        }
        stats
    }
}

#[derive(Debug, Default)]
struct Counters {
    stop: AtomicBool,
    written: AtomicU64,
    failed: AtomicU64,
}

/// Controls a running writer. Dropping it stops the writer the same way as
/// [`flush_and_stop`](Self::flush_and_stop).
#[derive(Debug)]
pub struct WriterHandle {
    shared: Arc<Counters>,
    threads: Option<(JoinHandle<WriterStats>, JoinHandle<WriterStats>)>,
}

impl WriterHandle {
    /// Events committed so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Events lost to failed transactions so far.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Writes every event already queued, stops the threads and returns their totals.
    /// Events sent after this call starts may or may not be written.
    pub fn flush_and_stop(mut self) -> Result<WriterStats, StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<WriterStats, StoreError> {
        self.shared.stop.store(true, Ordering::Release);
        let (encode, sqlite) = self.threads.take().ok_or(StoreError::WriterPanicked)?;
        // Join both before reporting, so neither thread outlives the handle.
        let encoded = encode.join();
        let inserted = sqlite.join();
        let (encoded, inserted) = match (encoded, inserted) {
            (Ok(e), Ok(i)) => (e, i),
            _ => return Err(StoreError::WriterPanicked),
        };
        Ok(WriterStats {
            written: inserted.written,
            failed: inserted.failed,
            deleted: inserted.deleted,
            jsonl_failed: encoded.jsonl_failed,
            last_error: inserted.last_error.or(encoded.last_error),
        })
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        if self.threads.is_some() {
            let _ = self.stop();
        }
    }
}
