//! Reading events: [`Query`] filters, planned against the batch summaries so that only
//! batches (or, for a workload, only rows) that can match are read.

use std::collections::BinaryHeap;

use palisade_events::{Event, EventType};
use rusqlite::{params, Connection};

use crate::batch::{hits, BatchInfo, BATCH_COLUMNS};
use crate::row::kind_mask;
use crate::StoreError;

/// A filter over stored events. The default matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Event types to include; empty means all.
    pub types: Vec<EventType>,
    /// Only events at or after this time (microseconds since the epoch).
    pub since_us: Option<i64>,
    /// Only events strictly before this time (microseconds since the epoch).
    pub until_us: Option<i64>,
    /// Only events whose source workload or destination (`namespace/name`, fqdn or ip)
    /// equals this.
    pub workload: Option<String>,
    /// Only events with this verdict (`allow`, `deny`, `audit`).
    pub verdict: Option<String>,
    /// Only rows stored after this sequence number (for following new events).
    pub after_seq: Option<i64>,
    /// Only rows stored up to this sequence number: with `after_seq`, a window of at most
    /// `through_seq - after_seq` rows, so a follower that fell behind reads its backlog in
    /// bounded steps (a `limit` orders by time, not by sequence).
    pub through_seq: Option<i64>,
    /// Maximum number of rows returned; 0 means no limit.
    pub limit: usize,
    /// With a `limit`, keep the newest matching rows instead of the oldest (they are still
    /// returned oldest first).
    pub newest: bool,
}

/// A query in the store's terms: inclusive bounds and a set of kind codes.
struct Plan<'q> {
    min_time: i64,
    max_time: i64,
    min_seq: i64,
    max_seq: i64,
    mask: u16,
    key: Option<&'q str>,
}

impl Query {
    /// The plan, or `None` when nothing can match.
    fn plan(&self) -> Option<Plan<'_>> {
        let max_time = match self.until_us {
            None => i64::MAX,
            Some(u) => u.checked_sub(1)?,
        };
        let plan = Plan {
            min_time: self.since_us.unwrap_or(i64::MIN),
            max_time,
            min_seq: self.after_seq.map_or(i64::MIN, |s| s.saturating_add(1)),
            max_seq: self.through_seq.unwrap_or(i64::MAX),
            mask: kind_mask(&self.types, self.verdict.as_deref()),
            key: self.workload.as_deref(),
        };
        (plan.mask != 0 && plan.min_time <= plan.max_time && plan.min_seq <= plan.max_seq)
            .then_some(plan)
    }
}

/// A batch that may hold matches; for a workload query, with the sequence numbers of the
/// batch's rows that carry the workload and have a matching kind.
struct Candidate {
    batch: BatchInfo,
    seqs: Option<Vec<i64>>,
}

impl Plan<'_> {
    /// True when every row of `b` is inside the time bounds.
    fn covers_time(&self, b: &BatchInfo) -> bool {
        b.min_time >= self.min_time && b.max_time <= self.max_time
    }

    /// The batches that may hold matches, oldest first (by their earliest row).
    fn candidates(&self, conn: &Connection) -> rusqlite::Result<Vec<Candidate>> {
        let mut out = Vec::new();
        match self.key {
            None => {
                let sql = format!(
                    "SELECT {BATCH_COLUMNS} FROM event_batches
                     WHERE last_seq >= ?1 AND max_time >= ?2 AND min_time <= ?3
                         AND first_seq <= ?4"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let mut rows = stmt.query(params![
                    self.min_seq,
                    self.min_time,
                    self.max_time,
                    self.max_seq
                ])?;
                while let Some(r) = rows.next()? {
                    let batch = BatchInfo::from_row(r)?;
                    if batch.count(self.mask) > 0 {
                        out.push(Candidate { batch, seqs: None });
                    }
                }
            }
            Some(key) => {
                let mut stmt = conn.prepare_cached(
                    // One primary-key lookup in `event_keys` per candidate batch.
                    "SELECT b.first_seq, b.last_seq, b.min_time, b.max_time, b.kinds, k.hits
                     FROM event_batches b CROSS JOIN event_keys k
                         ON k.first_seq = b.first_seq AND k.key = ?4
                     WHERE b.last_seq >= ?1 AND b.max_time >= ?2 AND b.min_time <= ?3
                         AND b.first_seq <= ?5",
                )?;
                let mut rows = stmt.query(params![
                    self.min_seq,
                    self.min_time,
                    self.max_time,
                    key,
                    self.max_seq
                ])?;
                while let Some(r) = rows.next()? {
                    let batch = BatchInfo::from_row(r)?;
                    let seqs: Vec<i64> = hits(r.get_ref(5)?.as_blob()?)
                        .filter(|(_, kind)| self.mask & 1 << (kind % 16) != 0)
                        .map(|(offset, _)| batch.first_seq + offset)
                        .filter(|seq| (self.min_seq..=self.max_seq).contains(seq))
                        .collect();
                    if !seqs.is_empty() {
                        out.push(Candidate {
                            batch,
                            seqs: Some(seqs),
                        });
                    }
                }
            }
        }
        out.sort_unstable_by_key(|c| (c.batch.min_time, c.batch.first_seq));
        Ok(out)
    }
}

/// Rows of a range of `seq` that pass the time bounds and kind mask.
const SCAN: &str = "SELECT seq, time_us, json FROM events
     WHERE seq BETWEEN ?1 AND ?2 AND time_us BETWEEN ?3 AND ?4 AND (?5 >> kind) & 1";
const SCAN_COUNT: &str = "SELECT count(*) FROM events
     WHERE seq BETWEEN ?1 AND ?2 AND time_us BETWEEN ?3 AND ?4 AND (?5 >> kind) & 1";
const LOOKUP: &str = "SELECT time_us, json FROM events WHERE seq = ?1";
const LOOKUP_TIME: &str = "SELECT time_us FROM events WHERE seq = ?1";

/// Column `i` of `r` as text.
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    Ok(r.get_ref(i)?.as_str()?)
}

/// How many events match `q`.
pub(crate) fn count(conn: &Connection, q: &Query) -> Result<u64, StoreError> {
    let Some(plan) = q.plan() else {
        return Ok(0);
    };
    let mut total = 0;
    for c in plan.candidates(conn)? {
        let b = &c.batch;
        let covered = plan.covers_time(b);
        total += match &c.seqs {
            None if covered && b.first_seq >= plan.min_seq && b.last_seq <= plan.max_seq => {
                b.count(plan.mask)
            }
            None => {
                let args = params![
                    b.first_seq.max(plan.min_seq),
                    b.last_seq.min(plan.max_seq),
                    plan.min_time,
                    plan.max_time,
                    plan.mask
                ];
                let n: i64 = conn
                    .prepare_cached(SCAN_COUNT)?
                    .query_row(args, |r| r.get(0))?;
                u64::try_from(n).unwrap_or(0)
            }
            Some(seqs) if covered => seqs.len() as u64,
            Some(seqs) => {
                let mut stmt = conn.prepare_cached(LOOKUP_TIME)?;
                let mut n = 0;
                for seq in seqs {
                    let time: Option<i64> =
                        stmt.query([seq])?.next()?.map(|r| r.get(0)).transpose()?;
                    n += u64::from(
                        time.is_some_and(|t| (plan.min_time..=plan.max_time).contains(&t)),
                    );
                }
                n
            }
        };
    }
    Ok(total)
}

/// A matching row, ordered by its rank: (time, seq), or the reverse when keeping the newest.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    rank: (i64, i64),
    time_us: i64,
    seq: i64,
    json: String,
}

/// The first `limit` rows by rank, or all rows when `limit` is 0.
struct Collector {
    limit: usize,
    newest: bool,
    heap: BinaryHeap<Hit>,
}

impl Collector {
    /// The rank of a row: lower is kept first. `!x` reverses the order without overflow.
    fn rank(&self, time_us: i64, seq: i64) -> (i64, i64) {
        if self.newest {
            (!time_us, !seq)
        } else {
            (time_us, seq)
        }
    }

    /// The time after which no row can be kept any more, once `limit` rows are held
    /// (oldest-first only: candidates come in order of their earliest row).
    fn cutoff(&self) -> Option<i64> {
        (!self.newest && self.limit > 0 && self.heap.len() >= self.limit)
            .then(|| self.heap.peek().map_or(i64::MIN, |h| h.time_us))
    }

    /// Whether a row at (`time_us`, `seq`) would be kept.
    fn wants(&self, time_us: i64, seq: i64) -> bool {
        match self.heap.peek() {
            Some(worst) if self.limit > 0 && self.heap.len() >= self.limit => {
                self.rank(time_us, seq) < worst.rank
            }
            _ => true,
        }
    }

    fn offer(&mut self, time_us: i64, seq: i64, json: &str) {
        if !self.wants(time_us, seq) {
            return;
        }
        if self.limit > 0 && self.heap.len() >= self.limit {
            self.heap.pop();
        }
        self.heap.push(Hit {
            rank: self.rank(time_us, seq),
            time_us,
            seq,
            json: json.to_owned(),
        });
    }
}

/// Events matching `q`, ordered by time then sequence number, with their sequence numbers.
pub(crate) fn query(conn: &Connection, q: &Query) -> Result<Vec<(i64, Event)>, StoreError> {
    let Some(plan) = q.plan() else {
        return Ok(Vec::new());
    };
    let mut found = Collector {
        limit: q.limit,
        newest: q.newest,
        heap: BinaryHeap::new(),
    };
    for c in plan.candidates(conn)? {
        if found.cutoff().is_some_and(|t| c.batch.min_time > t) {
            break; // candidates are ordered by their earliest row
        }
        match &c.seqs {
            None => {
                let mut stmt = conn.prepare_cached(SCAN)?;
                let args = params![
                    c.batch.first_seq.max(plan.min_seq),
                    c.batch.last_seq.min(plan.max_seq),
                    plan.min_time,
                    plan.max_time,
                    plan.mask
                ];
                let mut rows = stmt.query(args)?;
                while let Some(r) = rows.next()? {
                    let (seq, time_us): (i64, i64) = (r.get(0)?, r.get(1)?);
                    if found.wants(time_us, seq) {
                        found.offer(time_us, seq, text(r, 2)?);
                    }
                }
            }
            Some(seqs) => {
                let mut stmt = conn.prepare_cached(LOOKUP)?;
                for &seq in seqs {
                    let mut rows = stmt.query([seq])?;
                    let Some(r) = rows.next()? else { continue };
                    let time_us: i64 = r.get(0)?;
                    if (plan.min_time..=plan.max_time).contains(&time_us)
                        && found.wants(time_us, seq)
                    {
                        found.offer(time_us, seq, text(r, 1)?);
                    }
                }
            }
        }
    }
    let mut hits = found.heap.into_sorted_vec();
    if found.newest {
        hits.reverse();
    }
    hits.into_iter()
        .map(|h| {
            Event::from_json_line(&h.json)
                .map(|e| (h.seq, e))
                .map_err(|source| StoreError::Corrupt { seq: h.seq, source })
        })
        .collect()
}
