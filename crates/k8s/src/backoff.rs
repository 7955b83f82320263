//! Exponential backoff with jitter for API errors: 0.5 s doubling to 30 s, each wait
//! between half and all of the current step, so that 5,000 agents that lost the API at
//! the same moment do not come back at the same moment.

use std::time::Duration;

/// Backoff state.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    seed: u64,
}

impl Backoff {
    /// From `min` doubling to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64 | 1)
            .unwrap_or(0x9E37_79B9);
        Backoff {
            min,
            max,
            step: min,
            seed,
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift: enough to spread retries, no crate needed.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let jitter = (self.seed % (half.as_millis() as u64 + 1)) as u32;
        half + Duration::from_millis(jitter.into())
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let waits: Vec<Duration> = (0..10).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(250) && waits[0] <= Duration::from_millis(500));
        assert!(waits[9] >= Duration::from_secs(15) && waits[9] <= Duration::from_secs(30));
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(500));
    }
}
