//! Where a chunked body ends (RFC 9112 §7.1), followed as its bytes pass so the lane can
//! relay them unchanged and know when the answer is over. Strict: sizes are hex digits
//! (at most 15), lines end in CRLF, and anything else is an error.

/// A chunked body that breaks the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedChunk;

impl std::fmt::Display for MalformedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed chunked body")
    }
}

impl std::error::Error for MalformedChunk {}

/// The end of a chunked body, found byte by byte.
#[derive(Debug, Default)]
pub struct ChunkedEnd {
    state: State,
    payload: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line's digits.
    #[default]
    Start,
    Size {
        value: u64,
        digits: u8,
    },
    /// In a chunk extension, up to the CR.
    Ext {
        value: u64,
    },
    /// After the size line's CR.
    SizeLf {
        value: u64,
    },
    Data(u64),
    /// After a chunk's data: CR, then LF.
    DataCr,
    DataLf,
    /// In the trailer section; `empty` while the line has no bytes yet.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

impl ChunkedEnd {
    /// Follows `data`: how many of its bytes belong to the body (all of them unless the
    /// body ends inside `data`); `Err` on a malformed body.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, MalformedChunk> {
        let mut i = 0;
        while i < data.len() {
            if let State::Data(rem) = self.state {
                let take = rem.min((data.len() - i) as u64);
                self.payload += take;
                i += take as usize;
                self.state = if rem == take {
                    State::DataCr
                } else {
                    State::Data(rem - take)
                };
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Done, _) => {
                    i -= 1;
                    break;
                }
                (State::Start, _) => match hex(b) {
                    Some(d) => State::Size {
                        value: u64::from(d),
                        digits: 1,
                    },
                    None => return Err(MalformedChunk),
                },
                (State::Size { value, digits }, _) => match hex(b) {
                    Some(d) if digits < 15 => State::Size {
                        value: value * 16 + u64::from(d),
                        digits: digits + 1,
                    },
                    Some(_) => return Err(MalformedChunk),
                    None => match b {
                        b'\r' => State::SizeLf { value },
                        b';' | b' ' | b'\t' => State::Ext { value },
                        _ => return Err(MalformedChunk),
                    },
                },
                (State::Ext { value }, b'\r') => State::SizeLf { value },
                (State::Ext { .. }, b'\n') => return Err(MalformedChunk),
                (State::Ext { value }, _) => State::Ext { value },
                (State::SizeLf { value: 0 }, b'\n') => State::Trailer { empty: true },
                (State::SizeLf { value }, b'\n') => State::Data(value),
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Start,
                (State::Trailer { empty }, b'\r') => State::TrailerLf { empty },
                (State::Trailer { .. }, b'\n') => return Err(MalformedChunk),
                (State::Trailer { .. }, _) => State::Trailer { empty: false },
                (State::TrailerLf { empty: true }, b'\n') => State::Done,
                (State::TrailerLf { empty: false }, b'\n') => State::Trailer { empty: true },
                _ => return Err(MalformedChunk),
            };
        }
        Ok(i)
    }

    /// The body has ended.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes seen (chunk data, without the framing).
    pub fn payload(&self) -> u64 {
        self.payload
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
