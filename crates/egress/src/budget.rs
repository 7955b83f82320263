//! Upload byte budgets: how many bytes one pod may send under one allowing rule (to every
//! name the rule allows, together) in a time window (`uploadBudget` on a SecurityPolicy
//! egress rule). Request bodies and the client → server bytes of tunnels both count.
//!
//! Windows are fixed: the first byte opens a window of the rule's length, and the count
//! starts again from zero when it has passed. A request that would go over is refused
//! whole when its length is known up front (`429` with `Retry-After`); a body of unknown
//! length or a tunnel is cut when it goes over. Memory is bounded: at most [`MAX_ENTRIES`]
//! (pod, rule) pairs are tracked; when full, pairs whose window has ended are forgotten,
//! then the oldest windows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_policy::UploadBudget;

/// Most (pod, rule) pairs tracked at once.
pub const MAX_ENTRIES: usize = 100_000;

/// One pod's budget under one rule.
#[derive(Debug)]
pub struct BudgetCell {
    limit: UploadBudget,
    window: Mutex<Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    used: u64,
}

impl BudgetCell {
    fn new(limit: UploadBudget, now: Instant) -> Self {
        BudgetCell {
            limit,
            window: Mutex::new(Window {
                start: now,
                used: 0,
            }),
        }
    }

    /// The budget this cell enforces.
    pub fn limit(&self) -> UploadBudget {
        self.limit
    }

    fn current(&self, now: Instant) -> std::sync::MutexGuard<'_, Window> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(w.start) >= self.limit.window {
            *w = Window {
                start: now,
                used: 0,
            };
        }
        w
    }

    /// Counts `n` bytes. When they do not fit in what is left of the window, nothing is
    /// counted and the error says when the window ends (the `Retry-After`).
    pub fn take(&self, n: u64) -> Result<(), Duration> {
        self.take_at(n, Instant::now())
    }

    fn take_at(&self, n: u64, now: Instant) -> Result<(), Duration> {
        let mut w = self.current(now);
        match w.used.checked_add(n) {
            Some(total) if total <= self.limit.bytes => {
                w.used = total;
                Ok(())
            }
            _ => Err(self
                .limit
                .window
                .saturating_sub(now.duration_since(w.start))),
        }
    }

    /// Bytes left in the current window.
    pub fn remaining(&self) -> u64 {
        let w = self.current(Instant::now());
        self.limit.bytes.saturating_sub(w.used)
    }

    /// Time until the current window ends.
    pub fn retry_after(&self) -> Duration {
        let now = Instant::now();
        let w = self.current(now);
        self.limit
            .window
            .saturating_sub(now.duration_since(w.start))
    }

    fn expired(&self, now: Instant) -> bool {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        now.duration_since(w.start) >= self.limit.window
    }

    fn started(&self) -> Instant {
        self.window.lock().unwrap_or_else(|p| p.into_inner()).start
    }
}

/// Every (pod, rule) budget of a gateway.
#[derive(Debug, Default)]
pub struct UploadBudgets {
    cells: Mutex<HashMap<(String, String), Arc<BudgetCell>>>,
}

impl UploadBudgets {
    /// The budget of `who` (a pod `namespace/name`, or a client IP) in `scope` (the
    /// allowing rule), under `limit`. A changed limit (the policy was edited) starts a
    /// fresh window.
    pub fn cell(&self, who: &str, scope: &str, limit: UploadBudget) -> Arc<BudgetCell> {
        let now = Instant::now();
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let key = (who.to_string(), scope.to_string());
        if let Some(c) = cells.get(&key) {
            if c.limit == limit {
                return Arc::clone(c);
            }
        }
        if cells.len() >= MAX_ENTRIES && !cells.contains_key(&key) {
            cells.retain(|_, c| !c.expired(now));
            if cells.len() >= MAX_ENTRIES {
                // Forget the oldest tenth (a forgotten pair starts again from zero).
                let mut starts: Vec<Instant> = cells.values().map(|c| c.started()).collect();
                starts.sort_unstable();
                let cut = starts[starts.len() / 10];
                cells.retain(|_, c| c.started() > cut);
            }
        }
        let c = Arc::new(BudgetCell::new(limit, now));
        cells.insert(key, Arc::clone(&c));
        c
    }

    /// Pairs tracked.
    pub fn len(&self) -> usize {
        self.cells.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether no pair is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(bytes: u64, secs: u64) -> UploadBudget {
        UploadBudget {
            bytes,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn bytes_are_counted_until_the_window_ends() {
        let t0 = Instant::now();
        let c = BudgetCell::new(limit(100, 60), t0);
        assert!(c.take_at(60, t0).is_ok());
        assert!(c.take_at(40, t0 + Duration::from_secs(1)).is_ok());
        let wait = c.take_at(1, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        // A refused take counts nothing; a new window starts from zero.
        assert!(c.take_at(100, t0 + Duration::from_secs(60)).is_ok());
        assert!(c.take_at(1, t0 + Duration::from_secs(61)).is_err());
        assert!(c.take_at(u64::MAX, t0 + Duration::from_secs(200)).is_err());
    }

    #[test]
    fn pairs_are_separate_and_bounded() {
        let b = UploadBudgets::default();
        let a = b.cell("ml/trainer", "hub.test", limit(10, 60));
        assert!(a.take(10).is_ok());
        assert!(b
            .cell("ml/trainer", "hub.test", limit(10, 60))
            .take(1)
            .is_err());
        assert!(b
            .cell("ml/trainer", "other.test", limit(10, 60))
            .take(10)
            .is_ok());
        assert!(b
            .cell("ml/other", "hub.test", limit(10, 60))
            .take(10)
            .is_ok());
        // An edited limit starts afresh.
        assert!(b
            .cell("ml/trainer", "hub.test", limit(20, 60))
            .take(20)
            .is_ok());
        for i in 0..MAX_ENTRIES + 10 {
            b.cell(&format!("p{i}"), "h", limit(1, 60));
        }
        assert!(b.len() <= MAX_ENTRIES);
    }
}
