//! The write side of the store: rows are appended to `events` in sequence order, and
//! instead of per-row secondary indexes each run of up to [`BATCH_ROWS`] consecutive rows
//! gets one summary row in `event_batches` (sequence range, time range, rows per kind) and
//! one row per distinct lookup key in `event_keys` (which rows of the batch carry it).
//! Queries prune by these and read only the batches, or rows, that can match.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::row::{Chunk, RowMeta, ALL_KINDS, KINDS};

/// Most sequence numbers one batch spans; offsets inside a batch fit in a `u16`.
pub(crate) const BATCH_ROWS: i64 = 16_384;

/// Bytes per entry of an `event_keys.hits` blob: the row's offset from the batch's first
/// sequence number (`u16`, little endian), then its kind code. Entries are appended to a
/// stored blob through `hex`/`unhex`, as `||` alone would turn the blob into text.
pub(crate) const HIT_BYTES: usize = 3;

/// The columns of `event_batches` that [`BatchInfo::from_row`] reads, in order.
pub(crate) const BATCH_COLUMNS: &str = "first_seq, last_seq, min_time, max_time, kinds";

const INSERT_EVENT: &str = "INSERT INTO events (seq, time_us, kind, json) VALUES (?1, ?2, ?3, ?4)";
const UPSERT_BATCH: &str =
    "INSERT INTO event_batches (first_seq, last_seq, min_time, max_time, kinds)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (first_seq) DO UPDATE SET last_seq = excluded.last_seq,
         min_time = excluded.min_time, max_time = excluded.max_time, kinds = excluded.kinds";
const UPSERT_KEY: &str = "INSERT INTO event_keys (first_seq, key, hits) VALUES (?1, ?2, ?3)
     ON CONFLICT (first_seq, key) DO UPDATE SET hits = unhex(hex(hits) || hex(excluded.hits))";

/// The summary of one batch (one `event_batches` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchInfo {
    /// First sequence number of the batch.
    pub(crate) first_seq: i64,
    /// Last sequence number of the batch (rows in between may have been deleted).
    pub(crate) last_seq: i64,
    /// No row of the batch is older than this.
    pub(crate) min_time: i64,
    /// No row of the batch is newer than this.
    pub(crate) max_time: i64,
    /// Rows per kind code.
    pub(crate) kinds: [u32; KINDS],
}

impl BatchInfo {
    fn empty(first_seq: i64) -> BatchInfo {
        BatchInfo {
            first_seq,
            last_seq: first_seq - 1,
            min_time: i64::MAX,
            max_time: i64::MIN,
            kinds: [0; KINDS],
        }
    }

    /// Reads the [`BATCH_COLUMNS`] starting at column 0.
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<BatchInfo> {
        let blob = row.get_ref(4)?.as_blob()?;
        let mut kinds = [0; KINDS];
        for (k, b) in kinds.iter_mut().zip(blob.chunks_exact(4)) {
            *k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(BatchInfo {
            first_seq: row.get(0)?,
            last_seq: row.get(1)?,
            min_time: row.get(2)?,
            max_time: row.get(3)?,
            kinds,
        })
    }

    /// Rows of the batch whose kind is in `mask`.
    pub(crate) fn count(&self, mask: u16) -> u64 {
        (0..KINDS)
            .filter(|k| mask & 1 << k != 0)
            .map(|k| u64::from(self.kinds[k]))
            .sum()
    }

    fn add(&mut self, seq: i64, time_us: i64, kind: u8) {
        self.last_seq = self.last_seq.max(seq);
        self.min_time = self.min_time.min(time_us);
        self.max_time = self.max_time.max(time_us);
        self.kinds[usize::from(kind) % KINDS] += 1;
    }

    fn store(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let kinds: Vec<u8> = self.kinds.iter().flat_map(|k| k.to_le_bytes()).collect();
        tx.prepare_cached(UPSERT_BATCH)?.execute(params![
            self.first_seq,
            self.last_seq,
            self.min_time,
            self.max_time,
            kinds
        ])?;
        Ok(())
    }
}

/// The entries of an `event_keys.hits` blob: `(offset, kind)` pairs.
pub(crate) fn hits(blob: &[u8]) -> impl Iterator<Item = (i64, u8)> + '_ {
    blob.chunks_exact(HIT_BYTES)
        .map(|h| (i64::from(u16::from_le_bytes([h[0], h[1]])), h[2]))
}

/// FNV-1a: a fast hash for the short key strings of one batch (not exposed to input
/// that could be chosen to collide, beyond making one insert slower).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The batch an insert is filling: its summary and, per key, its hits blob.
struct Open<'a> {
    info: BatchInfo,
    hits: HashMap<&'a str, Vec<u8>, BuildHasherDefault<Fnv>>,
}

impl<'a> Open<'a> {
    fn new(info: BatchInfo) -> Self {
        Open {
            info,
            hits: HashMap::default(),
        }
    }

    fn is_full(&self, next_seq: i64) -> bool {
        next_seq - self.info.first_seq >= BATCH_ROWS
    }

    fn add(&mut self, seq: i64, row: &RowMeta, chunk: &'a Chunk) {
        self.info.add(seq, row.time_us, row.kind);
        // In range: `is_full` keeps every offset below BATCH_ROWS.
        let offset = u16::try_from(seq - self.info.first_seq).unwrap_or(u16::MAX);
        let [lo, hi] = offset.to_le_bytes();
        for key in chunk.keys(row) {
            self.hits
                .entry(key)
                .or_insert_with(|| Vec::with_capacity(4 * HIT_BYTES))
                .extend_from_slice(&[lo, hi, row.kind]);
        }
    }

    /// Writes the summary and appends the hits (to those already stored, when the batch
    /// was resumed). The rows go to the end of `event_keys` (keyed by batch, then key),
    /// in order, so they are appended rather than spread over the table.
    fn flush(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.info.last_seq < self.info.first_seq {
            return Ok(());
        }
        self.info.store(tx)?;
        let mut keys: Vec<(&str, Vec<u8>)> = self.hits.into_iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut stmt = tx.prepare_cached(UPSERT_KEY)?;
        for (key, hits) in keys {
            stmt.execute(params![self.info.first_seq, key, hits])?;
        }
        Ok(())
    }
}

/// The newest batch, if any.
fn newest_batch(tx: &Transaction<'_>) -> rusqlite::Result<Option<BatchInfo>> {
    let sql = format!("SELECT {BATCH_COLUMNS} FROM event_batches ORDER BY first_seq DESC LIMIT 1");
    tx.prepare_cached(&sql)?
        .query_row([], BatchInfo::from_row)
        .optional()
}

/// Appends the rows of `chunks` to `events` with consecutive sequence numbers after every
/// number ever used, and records their batches. Returns how many rows were written.
pub(crate) fn insert_chunks<'a>(
    tx: &Transaction<'_>,
    chunks: impl IntoIterator<Item = &'a Chunk>,
) -> rusqlite::Result<usize> {
    let max_seq: Option<i64> = tx
        .prepare_cached("SELECT max(seq) FROM events")?
        .query_row([], |r| r.get(0))?;
    let newest = newest_batch(tx)?;
    let top = max_seq.max(newest.as_ref().map(|b| b.last_seq));
    let mut next_seq = top.map_or(1, |t| t + 1);
    // Keep filling the newest batch while it has room, so small inserts (a quiet data
    // path, or callers inserting a few events at a time) do not make tiny batches.
    let mut open = newest
        .filter(|b| b.last_seq + 1 == next_seq && b.last_seq - b.first_seq + 1 < BATCH_ROWS)
        .map(Open::new);
    let mut insert = tx.prepare_cached(INSERT_EVENT)?;
    let mut n = 0;
    for chunk in chunks {
        for row in chunk.rows() {
            let batch = match open.take() {
                Some(o) if !o.is_full(next_seq) => o,
                full => {
                    if let Some(o) = full {
                        o.flush(tx)?;
                    }
                    Open::new(BatchInfo::empty(next_seq))
                }
            };
            let batch = open.insert(batch);
            let json = ToSqlOutput::Borrowed(ValueRef::Text(chunk.json(row)));
            insert.execute(params![next_seq, row.time_us, row.kind, json])?;
            batch.add(next_seq, row, chunk);
            next_seq += 1;
            n += 1;
        }
    }
    // A resumed batch that got no rows needs no write.
    if let Some(o) = open.filter(|_| n > 0) {
        o.flush(tx)?;
    }
    Ok(n)
}

/// Re-reads the rows of batch `b` after some were deleted: the new summary (the time
/// bounds are kept when no row is left) and which offsets still hold a row.
fn resummarize(tx: &Transaction<'_>, b: &BatchInfo) -> rusqlite::Result<(BatchInfo, Vec<bool>)> {
    let mut info = BatchInfo::empty(b.first_seq);
    let mut alive = vec![false; usize::try_from(b.last_seq - b.first_seq + 1).unwrap_or(0)];
    let mut stmt =
        tx.prepare_cached("SELECT seq, time_us, kind FROM events WHERE seq BETWEEN ?1 AND ?2")?;
    let mut rows = stmt.query([b.first_seq, b.last_seq])?;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        info.add(seq, r.get(1)?, r.get(2)?);
        if let Some(a) = usize::try_from(seq - b.first_seq)
            .ok()
            .and_then(|i| alive.get_mut(i))
        {
            *a = true;
        }
    }
    info.last_seq = b.last_seq;
    if info.min_time > info.max_time {
        (info.min_time, info.max_time) = (b.min_time, b.max_time);
    }
    Ok((info, alive))
}

/// Deletes the rows older than `before_us` and brings the batch tables up to date.
/// The newest batch row is always kept (possibly with no rows), so sequence numbers are
/// never reused.
pub(crate) fn delete_before(tx: &Transaction<'_>, before_us: i64) -> rusqlite::Result<usize> {
    let newest = newest_batch(tx)?.map(|b| b.first_seq);
    let sql = format!("SELECT {BATCH_COLUMNS} FROM event_batches WHERE min_time < ?1");
    let affected = tx
        .prepare(&sql)?
        .query_map([before_us], BatchInfo::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut deleted = 0;
    for b in affected {
        let whole = b.max_time < before_us && Some(b.first_seq) != newest;
        let n = if whole {
            tx.execute(
                "DELETE FROM events WHERE seq BETWEEN ?1 AND ?2",
                [b.first_seq, b.last_seq],
            )?
        } else {
            tx.execute(
                "DELETE FROM events WHERE seq BETWEEN ?1 AND ?2 AND time_us < ?3",
                [b.first_seq, b.last_seq, before_us],
            )?
        };
        deleted += n;
        if n == 0 && !whole {
            continue;
        }
        after_delete(tx, &b, newest)?;
    }
    Ok(deleted)
}

/// Deletes the rows with a sequence number up to `last` (the oldest stored), and brings the
/// batch tables up to date, as [`delete_before`] does.
pub(crate) fn delete_through_seq(tx: &Transaction<'_>, last: i64) -> rusqlite::Result<usize> {
    let newest = newest_batch(tx)?.map(|b| b.first_seq);
    let sql = format!("SELECT {BATCH_COLUMNS} FROM event_batches WHERE first_seq <= ?1");
    let affected = tx
        .prepare(&sql)?
        .query_map([last], BatchInfo::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut deleted = 0;
    for b in affected {
        let whole = b.last_seq <= last && Some(b.first_seq) != newest;
        let n = tx.execute(
            "DELETE FROM events WHERE seq BETWEEN ?1 AND ?2",
            [b.first_seq, b.last_seq.min(last)],
        )?;
        deleted += n;
        if n == 0 && !whole {
            continue;
        }
        after_delete(tx, &b, newest)?;
    }
    Ok(deleted)
}

/// Brings the summary and keys of batch `b` up to date after rows of it were deleted; an
/// emptied batch goes, unless it is the `newest` (so sequence numbers are never reused).
fn after_delete(tx: &Transaction<'_>, b: &BatchInfo, newest: Option<i64>) -> rusqlite::Result<()> {
    let (info, alive) = resummarize(tx, b)?;
    if info.count(ALL_KINDS) == 0 && Some(b.first_seq) != newest {
        tx.execute(
            "DELETE FROM event_batches WHERE first_seq = ?1",
            [b.first_seq],
        )?;
        tx.execute("DELETE FROM event_keys WHERE first_seq = ?1", [b.first_seq])?;
    } else {
        info.store(tx)?;
        trim_keys(tx, b.first_seq, &alive)?;
    }
    Ok(())
}

/// Drops from the `event_keys` rows of batch `first_seq` the hits of rows no longer
/// `alive` (indexed by offset), and rows left without hits.
fn trim_keys(tx: &Transaction<'_>, first_seq: i64, alive: &[bool]) -> rusqlite::Result<()> {
    let mut changes: Vec<(String, Vec<u8>)> = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT key, hits FROM event_keys WHERE first_seq = ?1")?;
        let mut rows = stmt.query([first_seq])?;
        while let Some(r) = rows.next()? {
            let blob = r.get_ref(1)?.as_blob()?;
            let is_alive = |h: &&[u8]| {
                let offset = usize::from(u16::from_le_bytes([h[0], h[1]]));
                alive.get(offset).copied().unwrap_or(false)
            };
            let kept: Vec<u8> = blob
                .chunks_exact(HIT_BYTES)
                .filter(is_alive)
                .flatten()
                .copied()
                .collect();
            if kept.len() != blob.len() {
                changes.push((r.get(0)?, kept));
            }
        }
    }
    for (key, hits) in changes {
        if hits.is_empty() {
            tx.prepare_cached("DELETE FROM event_keys WHERE first_seq = ?1 AND key = ?2")?
                .execute(params![first_seq, key])?;
        } else {
            tx.prepare_cached("UPDATE event_keys SET hits = ?3 WHERE first_seq = ?1 AND key = ?2")?
                .execute(params![first_seq, key, hits])?;
        }
    }
    Ok(())
}
