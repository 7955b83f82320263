//! A watch on the client's byte stream, in front of hyper: it follows message boundaries
//! (heads, `Content-Length` and chunked bodies) and refuses a request whose framing is
//! ambiguous — both `Content-Length` and `Transfer-Encoding`, conflicting lengths — with a
//! `400` and a closed connection, where hyper alone would pick one and carry on. After a
//! `CONNECT` or an `Upgrade` it steps aside.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

use super::GatewayStats;
use crate::head::{framing, parse_head, Framing, HeadError};
use crate::prefixed::Prefixed;

const REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 44\r\nConnection: close\r\n\r\npalisade: bad request (conflicting-framing)\n";

enum State {
    Head,
    Body(u64),
    ChunkSize { value: u64, digits: u32, ext: bool },
    ChunkData(u64),
    ChunkEnd,
    Trailer { line: usize },
    Passthrough,
}

/// The client socket, watched.
pub(crate) struct Guarded {
    /// The socket, after the bytes the lean lane had already read from it.
    inner: Prefixed,
    framer: Framer,
    stats: Arc<GatewayStats>,
}

impl Guarded {
    pub(crate) fn new(inner: TcpStream, max_head: usize, stats: Arc<GatewayStats>) -> Self {
        Self::with_prefix(inner, max_head, stats, Vec::new())
    }

    /// The socket, and the bytes of the prefix not yet read (after a CONNECT they belong
    /// to the tunnel).
    pub(crate) fn into_parts(self) -> (TcpStream, Vec<u8>) {
        self.inner.into_parts()
    }

    /// Watches `inner`, whose first bytes `prefix` were already read from it.
    pub(crate) fn with_prefix(
        inner: TcpStream,
        max_head: usize,
        stats: Arc<GatewayStats>,
        prefix: Vec<u8>,
    ) -> Self {
        Guarded {
            inner: Prefixed::new(inner, prefix),
            framer: Framer::new(max_head),
            stats,
        }
    }
}

/// Message boundaries of a request stream (pure).
pub(crate) struct Framer {
    state: State,
    head: Vec<u8>,
    max_head: usize,
}

impl Framer {
    pub(crate) fn new(max_head: usize) -> Self {
        Framer {
            state: State::Head,
            head: Vec::new(),
            max_head,
        }
    }

    /// Follows `data`; `Err` when a request must be refused.
    pub(crate) fn observe(&mut self, data: &[u8]) -> Result<(), &'static str> {
        let mut i = 0;
        while i < data.len() {
            match &mut self.state {
                State::Passthrough => return Ok(()),
                State::Head => {
                    let before = self.head.len();
                    self.head.extend_from_slice(&data[i..]);
                    let next = match parse_head(&self.head, self.max_head) {
                        Err(HeadError::Incomplete) => return Ok(()),
                        // hyper answers these itself (431, 400); nothing to follow after.
                        Err(HeadError::TooLarge | HeadError::Malformed(_)) => {
                            self.head = Vec::new();
                            self.state = State::Passthrough;
                            return Ok(());
                        }
                        Ok((h, n)) => {
                            let f = framing(&h).map_err(|e| match e {
                                HeadError::Malformed(why) => why,
                                _ => "bad framing",
                            })?;
                            let tunnel = h.method.eq_ignore_ascii_case("CONNECT")
                                || h.header("upgrade").is_some();
                            i += n - before;
                            match (tunnel, f) {
                                (true, _) => State::Passthrough,
                                (false, Framing::None) => State::Head,
                                (false, Framing::Length(n)) => State::Body(n),
                                (false, Framing::Chunked) => State::ChunkSize {
                                    value: 0,
                                    digits: 0,
                                    ext: false,
                                },
                            }
                        }
                    };
                    self.head.clear();
                    self.state = next;
                }
                State::Body(rem) => {
                    let take = (*rem).min((data.len() - i) as u64);
                    *rem -= take;
                    i += take as usize;
                    if *rem == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkData(rem) => {
                    let take = (*rem).min((data.len() - i) as u64);
                    *rem -= take;
                    i += take as usize;
                    if *rem == 0 {
                        self.state = State::ChunkEnd;
                    }
                }
                State::ChunkSize { value, digits, ext } => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'\n' if *digits == 0 => self.state = State::Passthrough,
                        b'\n' if *value == 0 => self.state = State::Trailer { line: 0 },
                        b'\n' => self.state = State::ChunkData(*value),
                        _ if *ext => {}
                        b'\r' => {}
                        b';' | b' ' | b'\t' => *ext = true,
                        _ => match (b as char).to_digit(16) {
                            Some(d) if *digits < 15 => {
                                *value = *value * 16 + u64::from(d);
                                *digits += 1;
                            }
                            // Not a size hyper will accept either: stop following.
                            _ => self.state = State::Passthrough,
                        },
                    }
                }
                State::ChunkEnd => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'\r' => {}
                        b'\n' => {
                            self.state = State::ChunkSize {
                                value: 0,
                                digits: 0,
                                ext: false,
                            }
                        }
                        _ => self.state = State::Passthrough,
                    }
                }
                State::Trailer { line } => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'\n' if *line == 0 => self.state = State::Head,
                        b'\n' => *line = 0,
                        b'\r' => {}
                        _ => *line += 1,
                    }
                }
            }
        }
        Ok(())
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if let Err(why) = this.framer.observe(&buf.filled()[before..]) {
            this.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(why, "refused a request with ambiguous framing");
            // Best effort: the connection is closed either way.
            let _ = this.inner.get_ref().try_write(REFUSAL);
            this.framer.state = State::Passthrough;
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
        }
        Poll::Ready(Ok(()))
    }
}

crate::prefixed::write_through_inner!(Guarded);

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(chunks: &[&[u8]]) -> Result<(), &'static str> {
        let mut f = Framer::new(65536);
        for c in chunks {
            f.observe(c)?;
        }
        Ok(())
    }

    #[test]
    fn follows_pipelined_bodies_and_finds_the_smuggled_request() {
        let ok = b"POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET http://a/ HTTP/1.1\r\n\r\n";
        assert_eq!(follow(&[ok]), Ok(()));
        let chunked = b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        let smuggled = b"POST http://a/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(
            follow(&[chunked, b"GET http://a/ HTTP/1.1\r\n\r\n"]),
            Ok(())
        );
        assert!(follow(&[chunked, smuggled]).is_err());
        // Split at every byte: the same answer.
        let mut all = chunked.to_vec();
        all.extend_from_slice(smuggled);
        for cut in 0..all.len() {
            assert!(follow(&[&all[..cut], &all[cut..]]).is_err(), "{cut}");
        }
    }
}
