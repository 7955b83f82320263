//! Limits per consumer: a token bucket of requests per second and one of tokens per
//! minute. Prompt tokens are charged before the request goes out; when the response
//! reports its `usage`, the difference (and the completion tokens) is charged after, so
//! a consumer that overdraws waits until the bucket refills.

use std::collections::HashMap;
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

    /// Takes `n` if there is that much (debt stops at `-capacity`); else the wait until
    /// there is. Returns what was taken.
    fn take(&mut self, n: f64, rate: f64, capacity: f64, now: Instant) -> Result<f64, Duration> {
        self.refill(rate, capacity, now);
        let need = n.min(capacity);
        if self.level >= need {
            let before = self.level;
            self.level = (self.level - n).max(-capacity);
            Ok(before - self.level)
        } else {
            Err(Duration::from_secs_f64((need - self.level) / rate))
        }
    }
}

#[derive(Debug, Default)]
struct ConsumerState {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
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
    state: Mutex<HashMap<(String, String), ConsumerState>>,
}

/// Most keys kept; beyond it idle ones are dropped (anonymous clients are keyed by address).
const MAX_KEYS: usize = 100_000;

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
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, s| {
                [s.requests, s.tokens]
                    .iter()
                    .flatten()
                    .any(|b| now.saturating_duration_since(b.at) < Duration::from_secs(60))
            });
        }
        let st = map
            .entry((route.to_string(), consumer.to_string()))
            .or_default();
        let mut req_bucket = None;
        if let Some(rps) = l.requests_per_second {
            let cap = f64::from(l.burst.unwrap_or(rps.ceil().max(1.0) as u32).max(1));
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
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map
            .get_mut(&(route.to_string(), consumer.to_string()))
            .and_then(|s| s.tokens.as_mut())
        {
            let cap = tpm as f64;
            b.refill(cap / 60.0, cap, now);
            // Debt is allowed (down to one minute's worth), refunds stop at full.
            b.level = (b.level - delta as f64).clamp(-cap, cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            lim.admit("r", "a", &l, 10, t),
            Err(Exceeded::Tokens(Duration::from_secs(61)))
        );
    }
}
