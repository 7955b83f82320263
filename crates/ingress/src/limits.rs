//! Limits per consumer: a token bucket of requests per second and one of tokens per
//! minute. Prompt tokens are charged before the request goes out; when the response
//! reports its `usage`, the difference (and the completion tokens) is charged after, so
//! a consumer that overdraws waits until the bucket refills.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits that apply to one consumer on one route.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Requests per second.
    pub requests_per_second: Option<f64>,
    /// Bucket size for requests (default: one second's worth, at least 1).
    pub burst: Option<u32>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Bucket {
            level: capacity,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, capacity: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * rate).min(capacity);
        self.at = now;
    }

    /// Takes `n` if there is that much (a declared charge stops at `-capacity`: what is
    /// used is reconciled after, without a floor); else the wait until there is. Returns
    /// what was taken.
    fn take(&mut self, n: f64, rate: f64, capacity: f64, now: Instant) -> Result<f64, Duration> {
        self.refill(rate, capacity, now);
        let need = n.min(capacity);
        if self.level >= need {
            let before = self.level;
            self.level = (self.level - n).max(-capacity);
            Ok(before - self.level)
        } else {
            // A deep debt (usage is charged in full) may be a long wait, never a panic.
            Err(Duration::try_from_secs_f64((need - self.level) / rate).unwrap_or(Duration::MAX))
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct ConsumerState {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// The limits of the last charge (to tell whether the buckets are full again).
    limits: Limits,
}

impl ConsumerState {
    /// Whether forgetting this key loses nothing: every bucket it has is full by `now`.
    fn full_at(&self, now: Instant) -> bool {
        let full = |b: Option<Bucket>, rate: Option<f64>, cap: f64| {
            b.is_none_or(|mut b| match rate {
                Some(r) if r > 0.0 => {
                    b.refill(r, cap, now);
                    b.level >= cap
                }
                _ => true,
            })
        };
        let l = &self.limits;
        full(self.requests, l.requests_per_second, request_capacity(l))
            && full(
                self.tokens,
                l.tokens_per_minute.map(|t| t as f64 / 60.0),
                l.tokens_per_minute.unwrap_or(0) as f64,
            )
    }

    /// A state at least as strict as both: for each bucket the lower level and the later
    /// time (from which it refills).
    fn stricter(self, other: ConsumerState) -> ConsumerState {
        let pick = |a: Option<Bucket>, b: Option<Bucket>| match (a, b) {
            (Some(a), Some(b)) => Some(Bucket {
                level: a.level.min(b.level),
                at: a.at.max(b.at),
            }),
            (a, b) => a.or(b),
        };
        ConsumerState {
            requests: pick(self.requests, other.requests),
            tokens: pick(self.tokens, other.tokens),
            limits: self.limits,
        }
    }

    /// When a bucket of this key last took a charge (an hour ago when none ever did).
    fn last_used(&self, now: Instant) -> Instant {
        [self.requests, self.tokens]
            .iter()
            .flatten()
            .map(|b| b.at)
            .max()
            .unwrap_or_else(|| now.checked_sub(Duration::from_secs(3600)).unwrap_or(now))
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// Requests per second.
    Requests(Duration),
    /// Tokens per minute.
    Tokens(Duration),
}

impl Exceeded {
    /// Whole seconds to wait (at least 1), for `Retry-After`.
    pub fn retry_after(self) -> u64 {
        let (Exceeded::Requests(d) | Exceeded::Tokens(d)) = self;
        d.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// The buckets of every (route, consumer).
#[derive(Debug, Default)]
pub struct Limiter {
    state: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<(String, String), ConsumerState>,
    /// When the map was last swept (at most once a second).
    swept: Option<Instant>,
    /// What keys evicted before their buckets were full still owed, by a keyed hash into
    /// [`EVICTED_SLOTS`] slots.
    evicted: Vec<Option<Owed>>,
    hasher: std::collections::hash_map::RandomState,
}

/// What evicted keys still owed, in one slot.
#[derive(Debug, Clone, Copy)]
struct Owed {
    /// The hash of the one key it is for; `None`: keys that collided, merged.
    key: Option<u64>,
    state: ConsumerState,
}

/// Keys kept before a sweep (anonymous clients are keyed by IPv4 address or IPv6 /64). At
/// the limit (at most once a second, or at twice the limit) keys whose buckets are full
/// again are dropped (forgetting them loses nothing), then the least recently used ones
/// down to 90 % of the limit: memory stays bounded and requests do not each scan the whole
/// map, however many clients a flood brings. A key dropped before its buckets were full
/// leaves its state in a fixed table of [`EVICTED_SLOTS`] slots, chosen by a keyed hash;
/// a key that comes back starts from that state, refilled since, instead of a full bucket.
/// Two keys evicted into one slot while owing are merged into a state stricter than both
/// (the lower level, the later time) that any key of that slot starts from. So flooding the
/// limiter with keys cannot reset a limited key (before, an evicted key started full, and a
/// client in token debt got a whole new budget); the price is that under such a flood a new
/// key of a shared slot may start below full, for at most the time the merged state needs
/// to refill.
const MAX_KEYS: usize = 100_000;

/// Slots of the table of evicted keys' state (about 3 MiB when all are used).
const EVICTED_SLOTS: usize = 1 << 16;

/// The request bucket's size for `l`.
fn request_capacity(l: &Limits) -> f64 {
    let rps = l.requests_per_second.unwrap_or(1.0);
    f64::from(l.burst.unwrap_or(rps.ceil().max(1.0) as u32).max(1))
}

/// The state a key not in the map starts from: what it owed when evicted (or what the keys
/// of its slot owed, merged), else full buckets.
fn returning(
    evicted: &[Option<Owed>],
    hasher: &std::collections::hash_map::RandomState,
    key: &(String, String),
) -> ConsumerState {
    if evicted.is_empty() {
        return ConsumerState::default();
    }
    let h = hasher.hash_one(key);
    match evicted[(h % EVICTED_SLOTS as u64) as usize] {
        Some(o) if o.key.is_none_or(|k| k == h) => o.state,
        _ => ConsumerState::default(),
    }
}

impl Buckets {
    /// Remembers what an evicted key still owed.
    fn fold_evicted(&mut self, key: &(String, String), st: ConsumerState, now: Instant) {
        if self.evicted.is_empty() {
            self.evicted = vec![None; EVICTED_SLOTS];
        }
        let h = self.hasher.hash_one(key);
        let i = (h % EVICTED_SLOTS as u64) as usize;
        self.evicted[i] = Some(match self.evicted[i] {
            // Empty, or what it held is paid off: the slot is this key's.
            None => Owed {
                key: Some(h),
                state: st,
            },
            Some(o) if o.state.full_at(now) => Owed {
                key: Some(h),
                state: st,
            },
            Some(o) => Owed {
                key: o.key.filter(|k| *k == h),
                state: o.state.stricter(st),
            },
        });
    }

    fn sweep(&mut self, now: Instant) {
        // Within a second of the last sweep only a map twice the limit is swept again: the
        // sweep leaves 90 % of the limit, so that costs O(1) per key added, amortised.
        let recent = self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
        if self.map.len() < MAX_KEYS || (recent && self.map.len() < 2 * MAX_KEYS) {
            return;
        }
        self.swept = Some(now);
        self.map.retain(|_, s| !s.full_at(now));
        if self.map.len() >= MAX_KEYS * 9 / 10 {
            let mut ages: Vec<Instant> = self.map.values().map(|s| s.last_used(now)).collect();
            let cut = self.map.len() - MAX_KEYS * 9 / 10;
            ages.select_nth_unstable(cut);
            let before = ages[cut];
            let old: Vec<(String, String)> = self
                .map
                .iter()
                .filter(|(_, s)| s.last_used(now) < before)
                .map(|(k, _)| k.clone())
                .collect();
            for k in old {
                if let Some(st) = self.map.remove(&k) {
                    self.fold_evicted(&k, st, now);
                }
            }
        }
    }
}

impl Limiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the request bucket, then that `tokens` fit the token bucket; charges both
    /// when the request may go. Returns the tokens actually taken (less than `tokens` when
    /// the debt limit cut the charge; 0 without a token limit): reconcile against that.
    pub fn admit(
        &self,
        route: &str,
        consumer: &str,
        l: &Limits,
        tokens: u64,
        now: Instant,
    ) -> Result<u64, Exceeded> {
        if l.requests_per_second.is_none() && l.tokens_per_minute.is_none() {
            return Ok(0);
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.sweep(now);
        let Buckets {
            map,
            evicted,
            hasher,
            ..
        } = &mut *state;
        let st = match map.entry((route.to_string(), consumer.to_string())) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            // A key evicted before its buckets were full starts from what it owed.
            std::collections::hash_map::Entry::Vacant(v) => {
                let back = returning(evicted, hasher, v.key());
                v.insert(back)
            }
        };
        st.limits = *l;
        let mut req_bucket = None;
        if let Some(rps) = l.requests_per_second {
            let cap = request_capacity(l);
            let mut b = st.requests.unwrap_or(Bucket::full(cap, now));
            b.take(1.0, rps, cap, now).map_err(Exceeded::Requests)?;
            req_bucket = Some(b);
        }
        let mut taken = 0.0;
        if let Some(tpm) = l.tokens_per_minute {
            let cap = tpm as f64;
            let mut b = st.tokens.unwrap_or(Bucket::full(cap, now));
            taken = b
                .take(tokens as f64, cap / 60.0, cap, now)
                .map_err(Exceeded::Tokens)?;
            st.tokens = Some(b);
        }
        if req_bucket.is_some() {
            st.requests = req_bucket;
        }
        Ok(taken.round() as u64)
    }

    /// Charges (or refunds, when negative) tokens after the response reported its usage.
    pub fn reconcile(&self, route: &str, consumer: &str, l: &Limits, delta: i64, now: Instant) {
        let Some(tpm) = l.tokens_per_minute else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = state
            .map
            .get_mut(&(route.to_string(), consumer.to_string()))
            .and_then(|s| s.tokens.as_mut())
        {
            let cap = tpm as f64;
            b.refill(cap / 60.0, cap, now);
            // What was used is owed in full: debt has no floor (a floor forgave every
            // token past it, so one request a minute or two could use any number), refunds
            // stop at full.
            b.level = (b.level - delta as f64).min(cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood of distinct clients, all active within the minute, used to grow the map
    /// past its limit and made every request scan all of it (idle keys only were dropped).
    #[test]
    fn a_flood_of_clients_keeps_the_map_bounded() {
        let l = Limits {
            requests_per_second: Some(1.0),
            ..Limits::default()
        };
        let lim = Limiter::new();
        let t0 = Instant::now();
        let mut admitted = 0;
        for i in 0..2 * MAX_KEYS + 5_000 {
            let at = t0 + Duration::from_micros(i as u64);
            admitted += usize::from(lim.admit("r", &format!("ip:{i}"), &l, 0, at).is_ok());
        }
        // New keys of a slot shared by evicted keys that still owe start from their
        // merged state (see `MAX_KEYS`); most are not.
        assert!(admitted > MAX_KEYS, "{admitted}");
        let len = |lim: &Limiter| lim.state.lock().unwrap().map.len();
        assert!(len(&lim) < 2 * MAX_KEYS, "{}", len(&lim));
        // The most recent clients kept their buckets: the last one is still limited.
        let last = format!("ip:{}", 2 * MAX_KEYS + 4_999);
        let now = t0 + Duration::from_micros((2 * MAX_KEYS + 5_000) as u64);
        assert!(lim.admit("r", &last, &l, 0, now).is_err());
    }

    /// A limited key pushed out of the map by a flood of other keys comes back limited:
    /// before, it was recreated with full buckets (a fresh burst, its token debt gone).
    #[test]
    fn a_flood_of_keys_does_not_reset_a_limited_key() {
        let l = Limits {
            requests_per_second: Some(1.0),
            burst: Some(1),
            tokens_per_minute: Some(600),
        };
        let lim = Limiter::new();
        let t0 = Instant::now();
        // The victim key: its one request taken, and 100 000 tokens charged (600 → -600).
        assert_eq!(lim.admit("r", "victim", &l, 100_000, t0), Ok(1200));
        assert!(lim.admit("r", "victim", &l, 1, t0).is_err());
        let flood = Limits {
            tokens_per_minute: None,
            ..l
        };
        for i in 0..2 * MAX_KEYS + 5_000 {
            let at = t0 + Duration::from_micros(1 + i as u64);
            let _ = lim.admit("r", &format!("ip:{i}"), &flood, 0, at);
        }
        let key = ("r".to_string(), "victim".to_string());
        assert!(
            !lim.state.lock().unwrap().map.contains_key(&key),
            "the victim was evicted (least recently used)"
        );
        // 2 s later: the request bucket has refilled, the token debt has not (10/s).
        let later = t0 + Duration::from_secs(2);
        assert!(matches!(
            lim.admit("r", "victim", &l, 1, later),
            Err(Exceeded::Tokens(d)) if d > Duration::from_secs(50)
        ));
        // Without the debt, within the same second, the request bucket still counts.
        let r = Limits {
            tokens_per_minute: None,
            ..l
        };
        let lim = Limiter::new();
        lim.admit("r", "victim", &r, 0, t0).unwrap();
        for i in 0..2 * MAX_KEYS + 5_000 {
            let at = t0 + Duration::from_micros(1 + i as u64);
            let _ = lim.admit("r", &format!("ip:{i}"), &r, 0, at);
        }
        let soon = t0 + Duration::from_millis(300);
        assert!(lim.admit("r", "victim", &r, 0, soon).is_err());
    }

    /// Keys whose buckets are full again are what a sweep drops first, and they come back
    /// with full buckets.
    #[test]
    fn full_keys_are_dropped_first_and_lose_nothing() {
        let l = Limits {
            requests_per_second: Some(1.0),
            burst: Some(1),
            tokens_per_minute: None,
        };
        let lim = Limiter::new();
        let t0 = Instant::now();
        lim.admit("r", "idle", &l, 0, t0).unwrap();
        // Long refilled by the time the flood (all of it active) forces a sweep.
        let t1 = t0 + Duration::from_secs(5);
        for i in 0..MAX_KEYS + 10 {
            let at = t1 + Duration::from_micros(i as u64);
            let _ = lim.admit("r", &format!("ip:{i}"), &l, 0, at);
        }
        let map_len = lim.state.lock().unwrap().map.len();
        assert!(map_len <= MAX_KEYS, "{map_len}");
        let key = ("r".to_string(), "idle".to_string());
        assert!(!lim.state.lock().unwrap().map.contains_key(&key));
        assert!(lim
            .admit("r", "idle", &l, 0, t1 + Duration::from_secs(2))
            .is_ok());
    }

    #[test]
    fn requests_per_second_with_burst() {
        let l = Limits {
            requests_per_second: Some(2.0),
            burst: Some(2),
            tokens_per_minute: None,
        };
        let lim = Limiter::new();
        let t = Instant::now();
        assert!(lim.admit("r", "alice", &l, 0, t).is_ok());
        assert!(lim.admit("r", "alice", &l, 0, t).is_ok());
        let e = lim.admit("r", "alice", &l, 0, t).unwrap_err();
        assert!(matches!(e, Exceeded::Requests(d) if d > Duration::from_millis(400)));
        assert_eq!(e.retry_after(), 1);
        // Another consumer has its own bucket; time refills.
        assert!(lim.admit("r", "bob", &l, 0, t).is_ok());
        assert!(lim
            .admit("r", "alice", &l, 0, t + Duration::from_millis(600))
            .is_ok());
    }

    #[test]
    fn tokens_per_minute_and_reconciliation() {
        let l = Limits {
            tokens_per_minute: Some(600),
            ..Limits::default()
        };
        let lim = Limiter::new();
        let t = Instant::now();
        assert!(lim.admit("r", "a", &l, 500, t).is_ok());
        // The response used 300 more tokens than charged: the bucket is in debt.
        lim.reconcile("r", "a", &l, 300, t);
        let e = lim.admit("r", "a", &l, 10, t).unwrap_err();
        // 200 tokens of debt + 10 at 10 tokens/s.
        assert_eq!(e, Exceeded::Tokens(Duration::from_secs(21)));
        assert_eq!(e.retry_after(), 21);
        // A prompt larger than the whole minute still gets in once the bucket is full.
        assert_eq!(lim.admit("r", "b", &l, 5000, t), Ok(1200));
    }

    /// A charge cut by the debt limit is reconciled against what was taken: a request
    /// declaring 100 000 tokens (its `max_tokens`) on a 600-per-minute limit takes 1 200
    /// (600 → -600); reconciled against the 100 000 declared instead, using 5 000 would
    /// refill the bucket completely.
    #[test]
    fn reconciling_a_cut_charge_keeps_the_debt() {
        let l = Limits {
            tokens_per_minute: Some(600),
            ..Limits::default()
        };
        let lim = Limiter::new();
        let t = Instant::now();
        let taken = lim.admit("r", "a", &l, 100_000, t).unwrap();
        assert_eq!(taken, 1200);
        lim.reconcile("r", "a", &l, 5000 - taken as i64, t);
        // -600 after the charge, 3 800 more used: 4 400 owed + 10 at 10 tokens/s.
        assert_eq!(
            lim.admit("r", "a", &l, 10, t),
            Err(Exceeded::Tokens(Duration::from_secs(441)))
        );
    }

    /// Usage past the declared charge is owed in full. Before, reconciling stopped the debt
    /// at one minute's worth: a consumer of 600 tokens a minute that used 100 000 in one
    /// answer (no `max_tokens` declared, or usage over it) waited 61 s and could do it again,
    /// drawing any number of tokens a minute.
    #[test]
    fn usage_past_the_charge_is_owed_in_full() {
        let l = Limits {
            tokens_per_minute: Some(600),
            ..Limits::default()
        };
        let lim = Limiter::new();
        let t = Instant::now();
        let taken = lim.admit("r", "a", &l, 10, t).unwrap();
        assert_eq!(taken, 10);
        lim.reconcile("r", "a", &l, 100_000, t);
        // 590 left - 100 000 = 99 410 owed, + 10, at 10 tokens/s.
        assert_eq!(
            lim.admit("r", "a", &l, 10, t),
            Err(Exceeded::Tokens(Duration::from_secs(9942)))
        );
        // Paid off in time, not forgiven.
        let later = t + Duration::from_secs(9942);
        assert!(lim.admit("r", "a", &l, 10, later).is_ok());
        // A debt beyond any wait a `Duration` holds is a long wait, not a panic.
        lim.admit("r", "b", &l, 10, t).unwrap();
        for _ in 0..30 {
            lim.reconcile("r", "b", &l, i64::MAX, t);
        }
        assert!(lim.admit("r", "b", &l, 10, t).unwrap_err().retry_after() > 1 << 40);
    }
}
