//! The event database handle: opening, batch inserts and filtered reads.

use std::path::Path;

use palisade_events::Event;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::query::{self, Query};
use crate::row::Chunk;
use crate::{batch, schema, StoreError};

/// An event database: one SQLite file in WAL mode. Several `Store`s (in one or more
/// processes) may open the same file; one writes while the others read.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and its schema. A database
    /// written by an earlier version is converted in place, in one transaction.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let mut conn = Connection::open_with_flags(path.as_ref(), flags)?;
        schema::prepare(&mut conn)?;
        Ok(Store { conn })
    }

    /// Inserts `events` in one transaction. Returns how many rows were written.
    pub fn insert_batch(&mut self, events: &[Event]) -> Result<usize, StoreError> {
        let chunk = Chunk::encode(events);
        self.insert_chunks([&chunk])
    }

    /// Inserts encoded events in one transaction; sequence numbers follow their order.
    pub(crate) fn insert_chunks<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = &'a Chunk>,
    ) -> Result<usize, StoreError> {
        // IMMEDIATE: take the write lock first, so the sequence numbers read at the start
        // stay valid even with another writer on the same file.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = batch::insert_chunks(&tx, chunks)?;
        tx.commit()?;
        Ok(n)
    }

    /// Events matching `q`, ordered by time then sequence number, with their sequence
    /// numbers.
    pub fn query(&self, q: &Query) -> Result<Vec<(i64, Event)>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let rows = query::query(&tx, q)?;
        tx.finish()?;
        Ok(rows)
    }

    /// How many events match `q` (ignoring its `limit`).
    pub fn count(&self, q: &Query) -> Result<u64, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let n = query::count(&tx, q)?;
        tx.finish()?;
        Ok(n)
    }

    /// The highest sequence number stored, if any; a follower starts after it.
    pub fn latest_seq(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))?)
    }

    /// Deletes the oldest events (by insertion) so that at most `keep` remain; returns how
    /// many were removed.
    pub fn keep_newest(&mut self, keep: u64) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let latest: Option<i64> = tx.query_row("SELECT max(seq) FROM events", [], |r| r.get(0))?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let n = match latest {
            // Sequence numbers grow by one per row, so the newest `keep` rows are those
            // after `latest - keep` (fewer, where rows were deleted by age).
            Some(latest) if latest.saturating_sub(keep) > 0 => {
                batch::delete_through_seq(&tx, latest.saturating_sub(keep))?
            }
            _ => 0,
        };
        tx.commit()?;
        Ok(n)
    }

    /// Applies `retention` at `now_us` (µs since the epoch): deletes events older than its
    /// `max_age` and the oldest beyond its `max_events`. Returns how many were removed.
    pub fn apply_retention(
        &mut self,
        retention: &crate::Retention,
        now_us: i64,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        if let Some(age) = retention.max_age {
            let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
            n += self.delete_before(now_us.saturating_sub(age))?;
        }
        if let Some(max) = retention.max_events {
            n += self.keep_newest(max)?;
        }
        Ok(n)
    }

    /// Deletes events older than `before_us`; returns how many were removed.
    pub fn delete_before(&mut self, before_us: i64) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = batch::delete_before(&tx, before_us)?;
        tx.commit()?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_events::{DnsInfo, Endpoint, EventBody, EventType, Timestamp, Verdict};

    fn ev(i: i64, verdict: Verdict) -> Event {
        let body = EventBody::Dns(DnsInfo {
            query: format!("q{i}.example.com"),
            ..DnsInfo::default()
        });
        let mut e = Event::new(format!("e{i}"), Timestamp(1_000 + i), body);
        let mut src = Endpoint::pod("ns", format!("pod-{i}"));
        src.workload = Some("ns/app".into());
        e.source = Some(src);
        e.verdict = Some(verdict);
        e
    }

    #[test]
    fn after_seq_returns_only_newer_rows() {
        let mut store = Store::open(":memory:").unwrap();
        assert_eq!(store.latest_seq().unwrap(), None);
        store
            .insert_batch(&[ev(1, Verdict::Allow), ev(2, Verdict::Deny)])
            .unwrap();
        let first = store.query(&Query::default()).unwrap();
        assert_eq!(first.len(), 2);
        let last = store.latest_seq().unwrap().unwrap();
        assert_eq!(last, first[1].0);
        store
            .insert_batch(&[ev(3, Verdict::Allow), ev(0, Verdict::Audit)])
            .unwrap();
        let q = Query {
            after_seq: Some(last),
            ..Query::default()
        };
        let newer = store.query(&q).unwrap();
        let ids: Vec<&str> = newer.iter().map(|(_, e)| e.id.as_str()).collect();
        assert_eq!(ids, ["e0", "e3"]); // ordered by time
        assert!(newer.iter().all(|(seq, _)| *seq > last));
        let none = Query {
            after_seq: Some(store.latest_seq().unwrap().unwrap()),
            ..Query::default()
        };
        assert!(store.query(&none).unwrap().is_empty());
    }

    #[test]
    fn filters_limit_and_round_trip() {
        let mut store = Store::open(":memory:").unwrap();
        let events: Vec<Event> = (0..10)
            .map(|i| {
                ev(
                    i,
                    if i % 3 == 0 {
                        Verdict::Deny
                    } else {
                        Verdict::Allow
                    },
                )
            })
            .collect();
        store.insert_batch(&events).unwrap();
        let all = store.query(&Query::default()).unwrap();
        assert_eq!(
            all.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            events
        );
        let deny = Query {
            verdict: Some("deny".into()),
            ..Query::default()
        };
        assert_eq!(store.count(&deny).unwrap(), 4);
        let window = Query {
            since_us: Some(1_002),
            until_us: Some(1_005),
            limit: 2,
            ..Query::default()
        };
        let got: Vec<String> = store
            .query(&window)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.id)
            .collect();
        assert_eq!(got, ["e2", "e3"]);
        assert_eq!(store.count(&window).unwrap(), 3);
        let by_dst = Query {
            workload: Some("ns/pod-4".into()),
            ..Query::default()
        };
        assert_eq!(store.count(&by_dst).unwrap(), 0); // pod-4 is a source, not a workload
        let by_workload = Query {
            workload: Some("ns/app".into()),
            types: vec![EventType::Dns, EventType::Alert],
            ..Query::default()
        };
        assert_eq!(store.count(&by_workload).unwrap(), 10);
        let flows = Query {
            types: vec![EventType::Flow],
            ..Query::default()
        };
        assert_eq!(store.count(&flows).unwrap(), 0);
        assert_eq!(store.delete_before(1_005).unwrap(), 5);
        assert_eq!(store.count(&Query::default()).unwrap(), 5);
    }

    #[test]
    fn limit_keeps_earlier_rows_of_older_batches_on_equal_times() {
        // Batch 1 (seqs 1..=16384) is all at time 1_010. Batch 2 holds a late row at
        // 1_005 and more rows at 1_010, so it is read first; the rows of batch 1 at
        // 1_010 still come before batch 2's, by sequence number.
        let mut store = Store::open(":memory:").unwrap();
        let at = |id: usize, t: i64| {
            let mut e = ev(0, Verdict::Allow);
            e.id = format!("e{id}");
            e.time = Timestamp(t);
            e
        };
        let first: Vec<Event> = (0..batch::BATCH_ROWS as usize)
            .map(|i| at(i, 1_010))
            .collect();
        store.insert_batch(&first).unwrap();
        store
            .insert_batch(&[at(100_000, 1_005), at(100_001, 1_010), at(100_002, 1_010)])
            .unwrap();
        let q = Query {
            limit: 3,
            ..Query::default()
        };
        let ids: Vec<String> = store
            .query(&q)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.id)
            .collect();
        assert_eq!(ids, ["e100000", "e0", "e1"]);
        let by_workload = Query {
            workload: Some("ns/app".into()),
            ..q
        };
        assert_eq!(store.query(&by_workload).unwrap().len(), 3);
        assert_eq!(store.query(&by_workload).unwrap()[1].1.id, "e0");
    }
}
