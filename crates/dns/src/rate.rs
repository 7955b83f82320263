//! Per-client query rate limits: a token bucket per client address (`rate` queries a second,
//! up to `burst` at once), checked before a query is decided or forwarded, so one pod cannot
//! make the proxy send an unbounded stream of queries upstream, nor flood the event store
//! with refusals.
//!
//! One [`SharedRates`] serves every UDP worker and the TCP path: a client's bucket is the
//! same whichever worker its source port lands on (the kernel spreads a client's ports over
//! the `SO_REUSEPORT` sockets) and whether it asks over UDP or TCP. It is split into
//! [`SHARDS`] shards by a keyed hash of the client address, each a [`ClientRates`] behind
//! its own mutex: no lock is shared by all queries, and a worker holds one only for one
//! bucket update. Memory is bounded: at most [`MAX_CLIENTS`] buckets in all; a bucket that
//! has filled up again is the same as none and is dropped by the periodic sweep. When a
//! shard is full of clients that are all still limited, the clients it cannot track share
//! one more bucket, the shard's overflow, with one client's rate and burst: refusing them
//! all would let whoever keeps a shard full (thousands of forged source addresses, each
//! sending at its rate) shut out every pod whose bucket had been forgotten, that is every
//! pod idle for a moment. The upstream still sees at most one client's rate more per shard.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Buckets a [`SharedRates`] (or one [`ClientRates`]) holds at most (a few dozen bytes
/// each).
pub const MAX_CLIENTS: usize = 16_384;
/// Shards of a [`SharedRates`].
pub const SHARDS: usize = 64;
/// How often idle (full again) buckets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// A limited client is noted (logged, one event) at most this often.
const NOTE_EVERY: Duration = Duration::from_secs(1);

/// The default sustained rate, queries per second per client.
pub const DEFAULT_QPS: u32 = 500;
/// The default burst per client.
pub const DEFAULT_BURST: u32 = 1000;

/// Whether a query may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Within the client's rate.
    Yes,
    /// Over it; `note` is true at most once per second per client (log it, emit an event).
    Limited {
        /// Whether this one should be logged and turned into an event.
        note: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    noted: Option<Instant>,
}

impl Bucket {
    /// Refills at `rate` up to `burst` until `now`, then takes one token.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Admit {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        // Threads read the clock before taking the shard's lock: a slightly older `now`
        // must not move the bucket's clock back (the time would be counted twice).
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admit::Yes;
        }
        let note = self
            .noted
            .is_none_or(|t| now.saturating_duration_since(t) >= NOTE_EVERY);
        if note {
            self.noted = Some(now);
        }
        Admit::Limited { note }
    }
}

/// Token buckets by client address.
#[derive(Debug)]
pub struct ClientRates {
    /// Tokens added per second; 0 means no limit.
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Instant,
    /// Shared by the clients that find the table full of clients still limited.
    overflow: Bucket,
}

impl ClientRates {
    /// `per_second` queries a second per client (0: no limit), at most `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_capacity(per_second, burst, MAX_CLIENTS)
    }

    /// As [`ClientRates::new`], holding at most `capacity` clients.
    pub fn with_capacity(per_second: u32, burst: u32, capacity: usize) -> Self {
        let burst = f64::from(burst.max(1));
        let now = Instant::now();
        ClientRates {
            rate: f64::from(per_second),
            burst,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
            last_sweep: now,
            overflow: Bucket {
                tokens: burst,
                at: now,
                noted: None,
            },
        }
    }

    /// Clients tracked now.
    pub fn clients(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one token from `client`'s bucket at `now`.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> Admit {
        if self.rate <= 0.0 {
            return Admit::Yes;
        }
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.sweep(now);
        }
        if let Some(b) = self.buckets.get_mut(&client) {
            return b.take(now, self.rate, self.burst);
        }
        if self.buckets.len() >= self.capacity {
            self.sweep(now);
            if self.buckets.len() >= self.capacity {
                // Every tracked client is still limited: this one shares the overflow
                // bucket with the others the table has no room for.
                return self.overflow.take(now, self.rate, self.burst);
            }
        }
        self.buckets.insert(
            client,
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
                noted: None,
            },
        );
        Admit::Yes
    }

    /// Drops the buckets that have filled up again (a full bucket is the same as none).
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }
}

/// The token buckets of every UDP worker and the TCP path, by client address: sharded,
/// bounded, one short lock per query (see the module's documentation).
#[derive(Debug)]
pub struct SharedRates {
    shards: Box<[Mutex<ClientRates>]>,
    /// Keyed per process: a client cannot choose addresses that all land in one shard.
    hasher: std::collections::hash_map::RandomState,
    limited: bool,
}

impl SharedRates {
    /// `per_second` queries a second per client (0: no limit), at most `burst` at once,
    /// for at most [`MAX_CLIENTS`] clients.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_capacity(per_second, burst, MAX_CLIENTS)
    }

    /// As [`SharedRates::new`], holding at most `capacity` clients (rounded up to a
    /// multiple of [`SHARDS`]).
    pub fn with_capacity(per_second: u32, burst: u32, capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        SharedRates {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(ClientRates::with_capacity(per_second, burst, per_shard)))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            limited: per_second > 0,
        }
    }

    /// Takes one token from `client`'s bucket at `now`.
    pub fn check(&self, client: IpAddr, now: Instant) -> Admit {
        if !self.limited {
            return Admit::Yes;
        }
        let shard = (self.hasher.hash_one(client) as usize) % self.shards.len();
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(client, now)
    }

    /// Clients tracked now, in all shards.
    pub fn clients(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clients())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let mut r = ClientRates::new(10, 5);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..5 {
            assert_eq!(r.check(a, t0), Admit::Yes);
        }
        assert_eq!(r.check(a, t0), Admit::Limited { note: true });
        assert_eq!(r.check(a, t0), Admit::Limited { note: false });
        // Another client has its own bucket.
        assert_eq!(r.check(ip("10.0.0.2"), t0), Admit::Yes);
        // 10 a second: one more token after 100 ms, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.check(a, t1), Admit::Yes);
        assert_eq!(r.check(a, t1), Admit::Limited { note: false });
        // Noted again a second later.
        let t2 = t0 + Duration::from_millis(1050);
        for _ in 0..5 {
            assert_eq!(r.check(a, t2), Admit::Yes, "refilled up to the burst");
        }
        assert_eq!(r.check(a, t2), Admit::Limited { note: true });
    }

    #[test]
    fn zero_means_no_limit() {
        let mut r = ClientRates::new(0, 1);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(r.check(ip("10.0.0.1"), t0), Admit::Yes);
        }
        assert_eq!(r.clients(), 0);
    }

    #[test]
    fn memory_is_bounded_and_idle_clients_are_forgotten() {
        let mut r = ClientRates::with_capacity(10, 5, 100);
        let t0 = Instant::now();
        for i in 0..100u32 {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            assert_eq!(r.check(a, t0), Admit::Yes);
        }
        assert_eq!(r.clients(), 100);
        // Full of clients that are all still limited: newcomers share the overflow bucket
        // (one client's burst between them) and are not tracked.
        for _ in 0..5 {
            assert_eq!(r.check(ip("192.0.2.1"), t0), Admit::Yes);
        }
        assert_eq!(r.check(ip("192.0.2.2"), t0), Admit::Limited { note: true });
        assert_eq!(r.clients(), 100);
        // Half a second later every bucket is full again: they are dropped, the new client
        // gets in.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(r.check(ip("192.0.2.1"), t1), Admit::Yes);
        assert_eq!(r.clients(), 1);
        // The periodic sweep forgets idle clients without a full table.
        let t2 = t1 + SWEEP_EVERY;
        assert_eq!(r.check(ip("192.0.2.2"), t2), Admit::Yes);
        assert_eq!(r.clients(), 1);
    }

    /// The old code kept one table per UDP worker: a client whose source ports landed on
    /// four workers had four buckets. Now every thread checks the same bucket: eight
    /// threads taking tokens for one client at once get exactly the burst between them.
    #[test]
    fn threads_share_one_bucket_per_client() {
        let r = std::sync::Arc::new(SharedRates::new(1, 100));
        let t0 = Instant::now();
        let admitted: usize = (0..8)
            .map(|_| {
                let r = std::sync::Arc::clone(&r);
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| r.check(ip("10.0.0.1"), t0) == Admit::Yes)
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(admitted, 100);
        assert_eq!(r.check(ip("10.0.0.2"), t0), Admit::Yes, "its own bucket");
        assert_eq!(r.clients(), 2);
    }

    #[test]
    fn the_shared_table_is_bounded() {
        let r = SharedRates::with_capacity(10, 5, SHARDS * 2);
        let t0 = Instant::now();
        let admitted = (0..10_000u32)
            .map(|i| IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()))
            .filter(|a| r.check(*a, t0) == Admit::Yes)
            .count();
        assert_eq!(r.clients(), SHARDS * 2);
        assert_eq!(
            admitted,
            SHARDS * (2 + 5),
            "beyond its two clients, a full shard lets one more burst through, no more"
        );
        // Idle clients are forgotten: once their buckets are full, new ones get in.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(r.check(ip("192.0.2.1"), t1), Admit::Yes);
        assert!(r.clients() <= SHARDS * 2);
    }

    /// A table full of clients that each keep to their rate (forged source addresses can
    /// do that) refused every client it did not track: a pod whose bucket had been
    /// forgotten (any pod idle for a moment) got REFUSED for as long as the flood went on
    /// (on the old code the newcomer below was limited). Now the newcomers share an
    /// overflow bucket: one client's burst and rate between them, so the upstream still
    /// sees a bounded rate.
    #[test]
    fn a_full_table_does_not_shut_out_newcomers() {
        let mut r = ClientRates::with_capacity(10, 5, 100);
        let t0 = Instant::now();
        let flood = |i: u32| IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
        for i in 0..100 {
            for _ in 0..5 {
                assert_eq!(r.check(flood(i), t0), Admit::Yes);
            }
        }
        // 50 ms on, every flooding client is still limited.
        let t1 = t0 + Duration::from_millis(50);
        assert!(matches!(r.check(flood(7), t1), Admit::Limited { .. }));
        let pod = ip("192.0.2.1");
        assert_eq!(r.check(pod, t1), Admit::Yes, "a newcomer is served");
        assert_eq!(r.clients(), 100, "and not tracked");
        for _ in 1..5 {
            assert_eq!(r.check(ip("192.0.2.2"), t1), Admit::Yes);
        }
        assert_eq!(r.check(pod, t1), Admit::Limited { note: true }, "one burst");
        // Then one client's rate, for all the newcomers together.
        let t2 = t1 + Duration::from_millis(150);
        assert_eq!(r.check(ip("192.0.2.3"), t2), Admit::Yes);
        assert_eq!(r.check(pod, t2), Admit::Limited { note: false });
        assert_eq!(r.clients(), 100);
    }

    #[test]
    fn an_older_clock_reading_does_not_refill_twice() {
        let mut r = ClientRates::new(10, 2);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(100);
        let a = ip("10.0.0.1");
        assert_eq!(r.check(a, t0), Admit::Yes);
        assert_eq!(r.check(a, t1), Admit::Yes);
        assert_eq!(r.check(a, t1), Admit::Yes);
        // A thread that read the clock at t0 but took the lock later: no token, and the
        // bucket's clock stays at t1 (else the 100 ms would be counted again).
        assert!(matches!(r.check(a, t0), Admit::Limited { .. }));
        assert!(matches!(r.check(a, t1), Admit::Limited { .. }));
    }
}
