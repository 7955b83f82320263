//! The source ports of forwarded UDP queries (RFC 5452 §9.2 and §10): each worker sends
//! its queries from a small pool of [`POOL`] sockets, each bound by the kernel to a random
//! ephemeral port and connected to the upstream, picks the socket of each query at random
//! (never the one of the query before), and replaces one socket of the pool with a freshly
//! bound one every [`ROTATE`], so a port lives about `POOL × ROTATE`. A forged answer must
//! then guess the port as well as the 16-bit id (and the 0x20 case), and a port learnt once
//! is soon gone.
//!
//! A socket per query would cost a `socket`, `bind`, `connect` and `close` per query on the
//! hot path; the pool costs one `bind` a second and keeps `sendmmsg`/`recvmmsg` batching.
//!
//! Being connected, a socket only receives datagrams from the upstream's address and port
//! (the kernel drops the others); the worker also takes an answer only on the socket its
//! query left from. A replaced socket is still read for the upstream timeout, so answers to
//! the queries sent from it are not lost.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Upstream sockets per worker.
pub(crate) const POOL: usize = 4;
/// How often one of a worker's upstream sockets is replaced by a freshly bound one.
pub(crate) const ROTATE: Duration = Duration::from_secs(1);

/// One upstream socket and its local port.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) sock: UdpSocket,
    pub(crate) port: u16,
}

/// A socket bound to a port of the kernel's choice (random in the ephemeral range) and
/// connected to `upstream`.
fn open(upstream: SocketAddr) -> std::io::Result<Source> {
    let local: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((local, 0))?;
    sock.connect(upstream)?;
    let port = sock.local_addr()?.port();
    Ok(Source { sock, port })
}

/// A worker's upstream sockets: the current pool (the client side sends from it) and the
/// sockets replaced less than the upstream timeout ago (still read).
#[derive(Debug)]
pub(crate) struct Sources {
    upstream: SocketAddr,
    current: RwLock<Arc<[Arc<Source>]>>,
}

impl Sources {
    pub(crate) fn new(upstream: SocketAddr) -> std::io::Result<Self> {
        let pool: Vec<Arc<Source>> = (0..POOL)
            .map(|_| open(upstream).map(Arc::new))
            .collect::<std::io::Result<_>>()?;
        Ok(Sources {
            upstream,
            current: RwLock::new(pool.into()),
        })
    }

    /// The current pool (taken once per batch of queries).
    pub(crate) fn current(&self) -> Arc<[Arc<Source>]> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the socket at `slot` with a freshly bound one; returns the replaced one
    /// (`None` when no new socket could be opened: the old one stays).
    fn replace(&self, slot: usize) -> Option<Arc<Source>> {
        let fresh = match open(self.upstream) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::debug!(error = %e, "no new DNS upstream socket; the old one stays");
                return None;
            }
        };
        let mut g = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let mut pool: Vec<Arc<Source>> = g.iter().cloned().collect();
        let old = std::mem::replace(pool.get_mut(slot)?, fresh);
        *g = pool.into();
        Some(old)
    }
}

/// The upstream side's view of the sockets: every one to read, and when to rotate.
pub(crate) struct Reader {
    /// Replaced sockets and when they stop being read.
    retired: Vec<(Arc<Source>, Instant)>,
    next_rotation: Instant,
    slot: usize,
}

impl Reader {
    pub(crate) fn new() -> Self {
        Reader {
            retired: Vec::new(),
            next_rotation: Instant::now() + ROTATE,
            slot: 0,
        }
    }

    /// Replaces one socket of the pool when it is time; a replaced socket is read for
    /// `keep` more (the upstream timeout), then closed.
    pub(crate) fn rotate_if_due(&mut self, sources: &Sources, keep: Duration) {
        let now = Instant::now();
        self.retired.retain(|(_, until)| *until > now);
        if now < self.next_rotation {
            return;
        }
        self.next_rotation = now + ROTATE;
        if let Some(old) = sources.replace(self.slot) {
            self.retired.push((old, now + keep + ROTATE));
        }
        self.slot = (self.slot + 1) % POOL;
    }

    /// Waits up to `wait` for answers; returns the sockets that have some.
    pub(crate) fn ready(
        &self,
        sources: &Sources,
        wait: Duration,
    ) -> std::io::Result<Vec<Arc<Source>>> {
        let all: Vec<Arc<Source>> = sources
            .current()
            .iter()
            .cloned()
            .chain(self.retired.iter().map(|(s, _)| Arc::clone(s)))
            .collect();
        let mut fds: Vec<PollFd<'_>> = all
            .iter()
            .map(|s| PollFd::new(s.sock.as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        Ok(all
            .into_iter()
            .zip(ready)
            .filter_map(|(s, r)| r.then_some(s))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_replaces_one_port_and_keeps_reading_the_old_one() {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sources = Sources::new(upstream.local_addr().unwrap()).unwrap();
        let before: Vec<u16> = sources.current().iter().map(|s| s.port).collect();
        assert_eq!(before.len(), POOL);
        let mut reader = Reader::new();
        reader.next_rotation = Instant::now();
        reader.rotate_if_due(&sources, Duration::from_secs(2));
        let after: Vec<u16> = sources.current().iter().map(|s| s.port).collect();
        assert_ne!(before[0], after[0]);
        assert_eq!(before[1..], after[1..]);
        // An answer to a query sent from the replaced socket is still read.
        assert_eq!(reader.retired.len(), 1);
        upstream
            .send_to(b"late answer", ("127.0.0.1", before[0]))
            .unwrap();
        let ready = reader.ready(&sources, Duration::from_secs(1)).unwrap();
        assert_eq!(
            ready.iter().map(|s| s.port).collect::<Vec<_>>(),
            [before[0]]
        );
    }

    /// Over many rotations, every replaced socket is closed once it is no longer read: no
    /// descriptor outlives its keep time, and the retired list does not grow.
    #[test]
    fn replaced_sockets_are_closed_after_their_keep_time() {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sources = Sources::new(upstream.local_addr().unwrap()).unwrap();
        let mut reader = Reader::new();
        let mut seen: Vec<std::sync::Weak<Source>> = Vec::new();
        let note = |seen: &mut Vec<std::sync::Weak<Source>>| {
            for s in sources.current().iter() {
                let w = Arc::downgrade(s);
                if !seen.iter().any(|o| o.ptr_eq(&w)) {
                    seen.push(w);
                }
            }
        };
        for _ in 0..100 {
            note(&mut seen);
            reader.next_rotation = Instant::now();
            reader.rotate_if_due(&sources, Duration::from_secs(60));
            assert!(reader.retired.len() <= 1, "{}", reader.retired.len());
            // As if the keep time had passed: the next call closes it.
            for r in &mut reader.retired {
                r.1 = Instant::now();
            }
        }
        reader.rotate_if_due(&sources, Duration::ZERO);
        assert!(reader.retired.is_empty());
        note(&mut seen);
        assert_eq!(seen.len(), 100 + POOL, "one new socket per rotation");
        let open = seen.iter().filter(|w| w.upgrade().is_some()).count();
        assert_eq!(open, POOL, "only the current pool is open");
    }
}
