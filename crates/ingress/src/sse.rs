//! An incremental Server-Sent-Events splitter (the `text/event-stream` framing of the
//! WHATWG HTML standard): bytes in, complete events out, with a bound on event size so a
//! backend that never ends an event cannot grow memory without limit.

/// Largest event accepted.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `event:` field, if any.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// Other lines (`id:`, `retry:`, comments), kept verbatim.
    pub other: Vec<String>,
}

impl SseEvent {
    /// The event in wire form, ending with the blank line.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.data.len() + 16);
        for l in &self.other {
            out.push_str(l);
            out.push('\n');
        }
        if let Some(e) = &self.event {
            out.push_str("event: ");
            out.push_str(e);
            out.push('\n');
        }
        for l in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(l);
            out.push('\n');
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// Why the stream cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past [`MAX_EVENT_BYTES`].
    #[error("event larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    /// An event is not UTF-8.
    #[error("event is not UTF-8")]
    NotUtf8,
}

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    scanned: usize,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the events they complete. An event that cannot be parsed is
    /// reported once the events before it have been returned (by this call when there are
    /// none, else by the next one — `push(&[])` asks), so the split of a stream into chunks
    /// never changes which events come out before the error.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(data);
        let mut events = Vec::new();
        loop {
            let Some((end, next)) = blank_line(&self.buf, self.scanned) else {
                self.scanned = self.buf.len().saturating_sub(3);
                if self.buf.len() > MAX_EVENT_BYTES {
                    return Err(SseError::TooLarge);
                }
                return Ok(events);
            };
            self.scanned = 0;
            match parse_event(&self.buf[..end]) {
                Ok(e) => {
                    self.buf.drain(..next);
                    events.extend(e);
                }
                Err(e) if events.is_empty() => return Err(e),
                // The events before a bad one come out first; the bad one stays at the
                // front, so the next call reports it.
                Err(_) => return Ok(events),
            }
        }
    }

    /// Bytes of an unfinished event left at the end of the stream.
    pub fn remainder(&self) -> &[u8] {
        &self.buf
    }
}

/// Finds the end of the first event: (end of its text, start of what follows).
fn blank_line(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < b.len() {
        let (a, la) = match b[i] {
            b'\n' => (i, 1),
            b'\r' if b.get(i + 1) == Some(&b'\n') => (i, 2),
            b'\r' if i + 1 < b.len() => (i, 1),
            _ => {
                i += 1;
                continue;
            }
        };
        let j = a + la;
        match (b.get(j), b.get(j + 1)) {
            (Some(b'\n'), _) => return Some((a, j + 1)),
            (Some(b'\r'), Some(b'\n')) => return Some((a, j + 2)),
            (Some(b'\r'), Some(_)) => return Some((a, j + 1)),
            (None, _) | (Some(b'\r'), None) => return None,
            _ => i = j,
        }
    }
    None
}

fn parse_event(raw: &[u8]) -> Result<Option<SseEvent>, SseError> {
    let text = std::str::from_utf8(raw).map_err(|_| SseError::NotUtf8)?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut e = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => data.push(value),
            "event" => e.event = Some(value.to_string()),
            _ => e.other.push(line.to_string()),
        }
    }
    if data.is_empty() && e.event.is_none() && e.other.is_empty() {
        return Ok(None);
    }
    e.data = data.join("\n");
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_openai_chunks() {
        let mut p = SseParser::new();
        let a = p.push(b"data: {\"a\":1}\n\nda").unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].data, "{\"a\":1}");
        let b = p.push(b"ta: [DONE]\r\n\r\n").unwrap();
        assert_eq!(b[0].data, "[DONE]");
        assert!(p.remainder().is_empty());
    }

    #[test]
    fn multi_line_data_and_fields() {
        let mut p = SseParser::new();
        let e = p
            .push(b": ping\nevent: x\ndata: one\ndata:two\n\n")
            .unwrap();
        assert_eq!(e[0].data, "one\ntwo");
        assert_eq!(e[0].event.as_deref(), Some("x"));
        assert_eq!(e[0].other, vec![": ping".to_string()]);
        let again = SseParser::new().push(&e[0].to_wire()).unwrap();
        assert_eq!(again[0].data, "one\ntwo");
    }

    /// Events up to the first error, and the error (`push(&[])` at the end asks for one
    /// still pending).
    fn collect(pieces: &[&[u8]]) -> (Vec<SseEvent>, Option<SseError>) {
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for piece in pieces.iter().copied().chain([&[][..]]) {
            match p.push(piece) {
                Ok(e) => got.extend(e),
                Err(e) => return (got, Some(e)),
            }
        }
        (got, None)
    }

    #[test]
    fn events_before_a_bad_one_come_out_first() {
        let (events, err) = collect(&[b"data: a\n\ndata: \xff\n\ndata: b\n\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a");
        assert_eq!(err, Some(SseError::NotUtf8));
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 10];
        assert_eq!(p.push(&big), Err(SseError::TooLarge));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(datas in proptest::collection::vec("[a-z{}\":, ]{0,40}", 1..6), cut in 0usize..400) {
            let wire: Vec<u8> = datas.iter().flat_map(|d| SseEvent { data: d.clone(), ..Default::default() }.to_wire()).collect();
            let cut = cut.min(wire.len());
            let mut p = SseParser::new();
            let mut got = p.push(&wire[..cut]).unwrap();
            got.extend(p.push(&wire[cut..]).unwrap());
            let got: Vec<String> = got.into_iter().map(|e| e.data).collect();
            prop_assert_eq!(got, datas);
        }

        #[test]
        fn arbitrary_bytes_split_anywhere_give_the_same_events(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let whole = collect(&[&data]);
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts { pieces.push(&data[at..c]); at = c; }
            pieces.push(&data[at..]);
            prop_assert_eq!(whole, collect(&pieces));
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..8)) {
            let mut p = SseParser::new();
            for c in chunks {
                let _ = p.push(&c);
            }
        }
    }
}
