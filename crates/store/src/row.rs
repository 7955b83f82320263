//! Events encoded for storage: the JSON text plus the few values the store indexes.
//!
//! A [`Chunk`] holds many encoded events in two arenas (one for the JSON lines, one for the
//! lookup keys), so encoding a batch allocates a handful of buffers instead of several
//! strings per event, and the JSON Lines copy is written with a single call.

use std::ops::Range;

use palisade_events::{Event, EventType, Verdict};

/// Number of distinct [`kind`] codes.
pub(crate) const KINDS: usize = 16;

/// Every kind code allowed.
pub(crate) const ALL_KINDS: u16 = u16::MAX;

/// The code of an event type (0..4).
fn type_code(t: EventType) -> u8 {
    match t {
        EventType::Flow => 0,
        EventType::Dns => 1,
        EventType::Http => 2,
        EventType::Alert => 3,
    }
}

/// The code of a verdict (0 when absent, 1..4 otherwise).
fn verdict_code(v: Option<Verdict>) -> u8 {
    match v {
        None => 0,
        Some(Verdict::Allow) => 1,
        Some(Verdict::Deny) => 2,
        Some(Verdict::Audit) => 3,
    }
}

/// The kind code stored per event: `type * 4 + verdict`, in `0..16`.
pub(crate) fn kind(t: EventType, v: Option<Verdict>) -> u8 {
    type_code(t) * 4 + verdict_code(v)
}

/// The kind code of the legacy text columns `type` and `verdict`, if they are valid.
pub(crate) fn kind_from_text(t: &str, v: Option<&str>) -> Option<u8> {
    let t: EventType = t.parse().ok()?;
    let v = match v {
        None => None,
        Some(v) => Some(v.parse::<Verdict>().ok()?),
    };
    Some(kind(t, v))
}

/// The set of kind codes (bit `k` for kind `k`) matching a type list (empty: all) and a
/// verdict name (`None`: any). An unknown verdict name matches nothing.
pub(crate) fn kind_mask(types: &[EventType], verdict: Option<&str>) -> u16 {
    let type_bits: u16 = if types.is_empty() {
        0xF
    } else {
        types.iter().fold(0, |m, t| m | 1 << type_code(*t))
    };
    let verdict_bits: u16 = match verdict {
        None => 0xF,
        Some(v) => match v.parse::<Verdict>() {
            Ok(v) => 1 << verdict_code(Some(v)),
            Err(_) => 0,
        },
    };
    let mut mask = 0;
    for t in 0..4 {
        for v in 0..4 {
            if type_bits & 1 << t != 0 && verdict_bits & 1 << v != 0 {
                mask |= 1 << (t * 4 + v);
            }
        }
    }
    mask
}

/// One encoded event inside a [`Chunk`].
#[derive(Debug, Clone)]
pub(crate) struct RowMeta {
    /// Event time, microseconds since the epoch.
    pub(crate) time_us: i64,
    /// The [`kind`] code.
    pub(crate) kind: u8,
    /// The JSON text in [`Chunk::json`] (without the newline).
    json: Range<usize>,
    /// Up to two lookup keys in [`Chunk::keys`]: the source workload and the destination
    /// name; a key equal to the first is not repeated.
    keys: [Option<Range<usize>>; 2],
}

/// Encoded events: what the store inserts, in order.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Every event's JSON followed by `\n`, back to back.
    json: Vec<u8>,
    /// The lookup keys, back to back.
    keys: String,
    rows: Vec<RowMeta>,
}

impl Chunk {
    /// Encodes `events`.
    pub(crate) fn encode(events: &[Event]) -> Chunk {
        let mut chunk = Chunk {
            json: Vec::with_capacity(events.len() * 640),
            keys: String::with_capacity(events.len() * 48),
            rows: Vec::with_capacity(events.len()),
        };
        for e in events {
            chunk.push(e);
        }
        chunk
    }

    /// Appends one event.
    pub(crate) fn push(&mut self, e: &Event) {
        let start = self.json.len();
        e.write_json_line(&mut self.json);
        // Serializing events cannot fail; should it ever, store `{}` (reported as corrupt
        // when read) rather than a partial line.
        if self.json.len() == start || self.json.last() != Some(&b'\n') {
            self.json.truncate(start);
            self.json.extend_from_slice(b"{}\n");
        }
        let end = self.json.len() - 1;
        let src = e.source.as_ref().and_then(|s| s.workload.as_deref());
        let dst = e.destination.as_ref().map(|d| d.display_name());
        self.push_meta(
            e.time.as_micros(),
            kind(e.event_type(), e.verdict),
            start..end,
            src,
            dst.as_deref(),
        );
    }

    /// Appends an already-serialized event (`json` without newline) with its columns.
    pub(crate) fn push_raw(
        &mut self,
        time_us: i64,
        kind: u8,
        json: &[u8],
        src_workload: Option<&str>,
        dst: Option<&str>,
    ) {
        let start = self.json.len();
        self.json.extend_from_slice(json);
        let end = self.json.len();
        self.json.push(b'\n');
        self.push_meta(time_us, kind, start..end, src_workload, dst);
    }

    fn push_meta(
        &mut self,
        time_us: i64,
        kind: u8,
        json: Range<usize>,
        src: Option<&str>,
        dst: Option<&str>,
    ) {
        let mut keys = [None, None];
        let mut add = |slot: usize, key: &str| {
            let start = self.keys.len();
            self.keys.push_str(key);
            keys[slot] = Some(start..self.keys.len());
        };
        if let Some(s) = src {
            add(0, s);
        }
        if let Some(d) = dst.filter(|d| Some(*d) != src) {
            add(1, d);
        }
        self.rows.push(RowMeta {
            time_us,
            kind,
            json,
            keys,
        });
    }

    /// The encoded events, in order.
    pub(crate) fn rows(&self) -> &[RowMeta] {
        &self.rows
    }

    /// Number of events.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The JSON text of `row` (one line, no newline).
    pub(crate) fn json(&self, row: &RowMeta) -> &[u8] {
        &self.json[row.json.clone()]
    }

    /// The lookup keys of `row`: its source workload and destination name, each at most
    /// once.
    pub(crate) fn keys<'a>(&'a self, row: &RowMeta) -> impl Iterator<Item = &'a str> + 'a {
        let keys = row.keys.clone();
        keys.into_iter().flatten().map(move |r| &self.keys[r])
    }

    /// Every event as a JSON line (each ending with `\n`), ready for a JSON Lines file.
    pub(crate) fn json_lines(&self) -> &[u8] {
        &self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_events::{DnsInfo, Endpoint, EventBody, Timestamp};

    #[test]
    fn kind_masks_cover_types_and_verdicts() {
        assert_eq!(kind_mask(&[], None), ALL_KINDS);
        assert_eq!(kind_mask(&[], Some("bogus")), 0);
        let dns_deny = kind_mask(&[EventType::Dns], Some("deny"));
        assert_eq!(dns_deny, 1 << kind(EventType::Dns, Some(Verdict::Deny)));
        let flows = kind_mask(&[EventType::Flow], None);
        assert_eq!(flows.count_ones(), 4);
        assert_eq!(
            kind_from_text("http", Some("audit")),
            Some(kind(EventType::Http, Some(Verdict::Audit)))
        );
        assert_eq!(kind_from_text("http", Some("nope")), None);
    }

    #[test]
    fn chunk_keeps_json_lines_and_distinct_keys() {
        let mut e = Event::new("a", Timestamp(5), EventBody::Dns(DnsInfo::default()));
        let mut src = Endpoint::pod("ns", "app-0");
        src.workload = Some("ns/app".into());
        e.source = Some(src);
        e.destination = Some(Endpoint::pod("ns", "app"));
        let chunk = Chunk::encode(&[e.clone(), Event::new("b", Timestamp(6), e.body.clone())]);
        assert_eq!(chunk.len(), 2);
        let text = std::str::from_utf8(chunk.json_lines()).unwrap();
        assert_eq!(
            text,
            format!("{}\n{}\n", e.to_json(), chunk_json(&chunk, 1))
        );
        assert_eq!(chunk.keys(&chunk.rows()[0]).collect::<Vec<_>>(), ["ns/app"]);
        assert_eq!(chunk.keys(&chunk.rows()[1]).count(), 0);
    }

    fn chunk_json(chunk: &Chunk, i: usize) -> String {
        String::from_utf8(chunk.json(&chunk.rows()[i]).to_vec()).unwrap()
    }
}
