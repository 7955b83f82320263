//! Opening the database: connection settings, the schema, and the upgrade of databases
//! written by earlier versions (one `events` table with five secondary indexes).

use rusqlite::{Connection, TransactionBehavior};

use crate::batch;
use crate::row::{kind_from_text, Chunk};

/// `PRAGMA user_version` of the current schema.
const VERSION: i64 = 2;

/// `events` holds the rows in sequence (= insertion) order and has no secondary index;
/// `event_batches` and `event_keys` summarize runs of rows (see `batch.rs`).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    kind    INTEGER NOT NULL,
    json    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_batches (
    first_seq INTEGER PRIMARY KEY,
    last_seq  INTEGER NOT NULL,
    min_time  INTEGER NOT NULL,
    max_time  INTEGER NOT NULL,
    kinds     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS event_keys (
    first_seq INTEGER NOT NULL,
    key       TEXT NOT NULL,
    hits      BLOB NOT NULL,
    PRIMARY KEY (first_seq, key)
) WITHOUT ROWID;
";

/// Page size of new databases.
const PAGE_SIZE: i64 = 8_192;

/// WAL size at which the writer checkpoints, and to which the WAL file is truncated.
const WAL_BYTES: i64 = 64 << 20;

/// Rows of a legacy table converted per chunk during an upgrade.
const UPGRADE_CHUNK: usize = 8_192;

/// Applies the connection settings and creates (or upgrades) the schema.
pub(crate) fn prepare(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Page size only takes effect on a new database, before WAL is switched on; an
    // existing database keeps its own. Larger pages measured a few percent faster for
    // appends but about a third slower for reading scattered rows (a workload's events).
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    // NORMAL: a commit is durable once the WAL is synced at checkpoint; a power cut may
    // lose the last transactions but never corrupts the file. 64 MiB of page cache;
    // checkpoint (and cap the WAL) every 64 MiB rather than every 1,000 pages.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -65536;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = {WAL_BYTES};"
    ))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint = {}",
        WAL_BYTES / page_size.max(512)
    ))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have upgraded while this one waited for the lock.
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < VERSION {
        let legacy: bool = tx.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('events') WHERE name = 'src_workload'",
            [],
            |r| r.get(0),
        )?;
        if legacy {
            tx.execute_batch("ALTER TABLE events RENAME TO events_v1")?;
        }
        tx.execute_batch(SCHEMA)?;
        if legacy {
            upgrade(&tx)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {VERSION}"))?;
    }
    tx.commit()
}

/// Moves the rows of the legacy table `events_v1` into the new tables, in sequence order
/// (they get new, still increasing, sequence numbers), then drops it with its indexes.
fn upgrade(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare(
        "SELECT time_us, type, verdict, src_workload, dst, json FROM events_v1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut chunk = Chunk::default();
    while let Some(r) = rows.next()? {
        let t: String = r.get(1)?;
        let v: Option<String> = r.get(2)?;
        // A row with an unknown type or verdict could not be read back anyway; keep it
        // under the flow type, where a reader reports it as corrupt instead of losing it.
        let kind = kind_from_text(&t, v.as_deref()).unwrap_or(0);
        let src: Option<String> = r.get(3)?;
        let dst: Option<String> = r.get(4)?;
        let json = r.get_ref(5)?.as_bytes()?;
        chunk.push_raw(r.get(0)?, kind, json, src.as_deref(), dst.as_deref());
        if chunk.len() >= UPGRADE_CHUNK {
            batch::insert_chunks(tx, [&chunk])?;
            chunk = Chunk::default();
        }
    }
    batch::insert_chunks(tx, [&chunk])?;
    drop(rows);
    drop(stmt);
    tx.execute_batch("DROP TABLE events_v1")
}

#[cfg(test)]
mod tests {
    use crate::{Query, Store};
    use palisade_events::{DnsInfo, Endpoint, Event, EventBody, EventType, Timestamp, Verdict};

    /// The schema and insert of the previous version, as a database on disk has it.
    const LEGACY: &str = "
        CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL,
            time_us INTEGER NOT NULL, type TEXT NOT NULL, src TEXT, src_workload TEXT,
            dst TEXT, verdict TEXT, json TEXT NOT NULL);
        CREATE INDEX events_time ON events(time_us);
        CREATE INDEX events_src_workload_time ON events(src_workload, time_us);";

    #[test]
    fn legacy_database_is_converted_on_open() {
        let dir =
            std::env::temp_dir().join(format!("palisade-store-legacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        let _ = std::fs::remove_file(&path);
        let events: Vec<Event> = (0..20)
            .map(|i| {
                let body = EventBody::Dns(DnsInfo {
                    query: format!("q{i}"),
                    ..DnsInfo::default()
                });
                let mut e = Event::new(format!("e{i}"), Timestamp(100 - i), body);
                let mut src = Endpoint::pod("ns", "p");
                src.workload = Some(format!("ns/w{}", i % 2));
                e.source = Some(src);
                e.verdict = (i % 4 != 0).then_some(Verdict::Deny);
                e
            })
            .collect();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(LEGACY).unwrap();
            for e in &events {
                conn.execute(
                    "INSERT INTO events (id, time_us, type, src, src_workload, dst, verdict, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7)",
                    rusqlite::params![
                        e.id,
                        e.time.as_micros(),
                        e.event_type().as_str(),
                        "ns/p",
                        e.source.as_ref().unwrap().workload,
                        e.verdict.map(|v| v.as_str()),
                        e.to_json()
                    ],
                )
                .unwrap();
            }
        }
        let mut store = Store::open(&path).unwrap();
        let all: Vec<Event> = store
            .query(&Query::default())
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let mut by_time = events.clone();
        by_time.reverse();
        assert_eq!(all, by_time);
        let q = Query {
            workload: Some("ns/w1".into()),
            verdict: Some("deny".into()),
            types: vec![EventType::Dns],
            ..Query::default()
        };
        assert_eq!(store.count(&q).unwrap(), 10);
        store.insert_batch(&events[..1]).unwrap();
        assert_eq!(store.latest_seq().unwrap(), Some(21));
        drop(store);
        // Opening again finds the current schema and leaves it alone.
        assert_eq!(
            Store::open(&path)
                .unwrap()
                .count(&Query::default())
                .unwrap(),
            21
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
