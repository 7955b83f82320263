//! The background writer: drains an [`EventReceiver`] in batches into a [`Store`] and,
//! optionally, a JSON Lines file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use palisade_events::{Event, EventReceiver};

use crate::{Store, StoreError};

/// Appends events to a file, one JSON object per line.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlSink {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<JsonlSink, StoreError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(JsonlSink {
            path,
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    /// Appends one event.
    pub fn write_event(&mut self, event: &Event) -> Result<(), StoreError> {
        let mut line = Vec::with_capacity(512);
        event.write_json_line(&mut line);
        self.write_line(&line)
    }

    /// Appends bytes that already hold one JSON line ending in `\n`.
    fn write_line(&mut self, line: &[u8]) -> Result<(), StoreError> {
        self.out.write_all(line).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes buffered lines to the file.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.out.flush().map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// What a writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Events committed to the store.
    pub written: u64,
    /// Events lost because their batch failed to commit.
    pub failed: u64,
    /// Events that could not be appended to the JSON Lines file.
    pub jsonl_failed: u64,
    /// The most recent error, if any.
    pub last_error: Option<String>,
}

/// Batching settings of the background writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer {
    /// Most events per transaction.
    pub batch_max: usize,
    /// Longest wait for a batch to fill before writing what is there.
    pub batch_wait: Duration,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            batch_max: 5_000,
            batch_wait: Duration::from_millis(50),
        }
    }
}

impl Writer {
    /// Opens the store at `store_path` (and the JSON Lines file, if given) and starts a
    /// writer thread with the default batching.
    pub fn spawn(
        store_path: impl AsRef<Path>,
        receiver: EventReceiver,
        jsonl: Option<PathBuf>,
    ) -> Result<WriterHandle, StoreError> {
        let store = Store::open(store_path)?;
        let sink = jsonl.map(JsonlSink::open).transpose()?;
        Writer::default().start(store, receiver, sink)
    }

    /// Starts a writer thread that owns `store` and `sink`.
    pub fn start(
        self,
        store: Store,
        receiver: EventReceiver,
        sink: Option<JsonlSink>,
    ) -> Result<WriterHandle, StoreError> {
        let shared = Arc::new(Counters::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("palisade-store-writer".into())
            .spawn(move || self.run(store, receiver, sink, &thread_shared))
            .map_err(|source| StoreError::Io {
                path: PathBuf::from("<writer thread>"),
                source,
            })?;
        Ok(WriterHandle {
            shared,
            thread: Some(thread),
        })
    }

    fn run(
        self,
        mut store: Store,
        receiver: EventReceiver,
        mut sink: Option<JsonlSink>,
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
            let mut sink_error = None;
            let result = store.insert_with(&batch, |line| {
                if let Some(s) = sink.as_mut() {
                    if let Err(e) = s.write_line(line) {
                        stats.jsonl_failed += 1;
                        sink_error = Some(e.to_string());
                    }
                }
            });
            if let Some(s) = sink.as_mut() {
                if let Err(e) = s.flush() {
                    sink_error = Some(e.to_string());
                }
            }
            match result {
                Ok(n) => {
                    stats.written += n as u64;
                    shared.written.store(stats.written, Ordering::Release);
                }
                Err(e) => {
                    stats.failed += batch.len() as u64;
                    shared.failed.store(stats.failed, Ordering::Release);
                    stats.last_error = Some(e.to_string());
                }
            }
            if sink_error.is_some() {
                stats.last_error = sink_error;
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
    thread: Option<JoinHandle<WriterStats>>,
}

impl WriterHandle {
    /// Events committed so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Events lost to failed commits so far.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Writes every event already queued, stops the thread and returns its totals.
    /// Events sent after this call starts may or may not be written.
    pub fn flush_and_stop(mut self) -> Result<WriterStats, StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<WriterStats, StoreError> {
        self.shared.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| StoreError::WriterPanicked),
            None => Err(StoreError::WriterPanicked),
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}
