//! ULIDs: 128-bit identifiers that sort by creation time.
//!
//! Layout: 48-bit Unix time in milliseconds, then 80 random bits; text is 26 characters of
//! Crockford base32. A [`UlidGenerator`] is monotonic: within one millisecond (or if the
//! clock steps back) it increments the previous value instead of drawing new randomness.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1 << RANDOM_BITS) - 1;
const MAX_MS: u64 = (1 << 48) - 1;

/// A ULID as a 128-bit number; `Display` gives the 26-character Crockford base32 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ulid(pub u128);

impl Ulid {
    /// Builds a ULID from a millisecond timestamp (truncated to 48 bits) and 80 random bits.
    pub fn from_parts(ms: u64, random: u128) -> Self {
        Ulid((u128::from(ms & MAX_MS) << RANDOM_BITS) | (random & RANDOM_MASK))
    }

    /// The millisecond Unix timestamp part.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> RANDOM_BITS) as u64
    }

    /// Parses 26 characters of Crockford base32 (case-insensitive; `I`/`L` read as 1, `O`
    /// as 0). Returns `None` if malformed or if the value exceeds 128 bits.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 26 || b[0] > b'7' {
            return None;
        }
        let mut v: u128 = 0;
        for &c in b {
            let digit = match c.to_ascii_uppercase() {
                c @ b'0'..=b'9' => c - b'0',
                b'O' => 0,
                b'I' | b'L' => 1,
                c => ALPHABET.iter().position(|&a| a == c)? as u8,
            };
            v = (v << 5) | u128::from(digit);
        }
        Some(Ulid(v))
    }
}

impl fmt::Display for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 26];
        for (i, slot) in buf.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *slot = ALPHABET[((self.0 >> shift) & 0x1f) as usize];
        }
        // The buffer holds only ASCII from ALPHABET.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// Counter mixed into every generator's seed so two generators never share a stream.
static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Produces monotonically increasing ULIDs. Not shared between threads: give each thread
/// (or each producer) its own, or use [`new_id`].
#[derive(Debug)]
pub struct UlidGenerator {
    state: u64,
    last: Ulid,
}

impl Default for UlidGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl UlidGenerator {
    /// A generator seeded from the time, the process id, a process-wide counter and std's
    /// per-process random hasher keys.
    pub fn new() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(crate::time::now_micros() as u64);
        h.write_u32(std::process::id());
        h.write_u64(SEED_COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_usize(&h as *const _ as usize);
        UlidGenerator {
            state: h.finish(),
            last: Ulid(0),
        }
    }

    /// SplitMix64: a fast, well-distributed 64-bit sequence.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next ULID for the current wall-clock millisecond.
    pub fn generate(&mut self) -> Ulid {
        let ms = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
        )
        .unwrap_or(MAX_MS);
        self.generate_at(ms)
    }

    /// The next ULID for millisecond `ms` (e.g. an event's own time). If `ms` is not after
    /// the previous ULID's time, the previous value plus one is returned, so the output is
    /// strictly increasing.
    pub fn generate_at(&mut self, ms: u64) -> Ulid {
        let ms = ms.min(MAX_MS);
        let next = if ms > self.last.timestamp_ms() {
            let random = (u128::from(self.next_u64()) << 16) ^ u128::from(self.next_u64());
            Ulid::from_parts(ms, random)
        } else {
            // Same (or earlier) millisecond: increment; a carry out of the random part
            // moves into the timestamp, which keeps the order.
            Ulid(self.last.0.wrapping_add(1).max(self.last.0))
        };
        self.last = next;
        next
    }
}

thread_local! {
    static THREAD_GENERATOR: std::cell::RefCell<UlidGenerator> =
        std::cell::RefCell::new(UlidGenerator::new());
}

/// A new ULID as text, from a per-thread generator (monotonic within the thread).
pub fn new_id() -> String {
    THREAD_GENERATOR.with(|g| g.borrow_mut().generate().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn text_form() {
        let u = Ulid::from_parts(1_469_922_850_259, 0);
        assert_eq!(u.to_string(), "01ARZ3NDEK0000000000000000");
        assert_eq!(Ulid(u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert_eq!(Ulid(0).to_string(), "00000000000000000000000000");
        assert_eq!(u.timestamp_ms(), 1_469_922_850_259);
    }

    #[test]
    fn parse_round_trip() {
        let mut g = UlidGenerator::new();
        for _ in 0..1000 {
            let u = g.generate();
            let s = u.to_string();
            assert_eq!(s.len(), 26);
            assert_eq!(Ulid::parse(&s), Some(u));
            assert_eq!(Ulid::parse(&s.to_lowercase()), Some(u));
        }
        assert_eq!(Ulid::parse("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
        assert_eq!(Ulid::parse("01ARYZ6S43000000000000000U"), None);
        assert_eq!(Ulid::parse("01ARYZ6S43"), None);
    }

    #[test]
    fn monotonic_and_unique_over_100k() {
        let mut g = UlidGenerator::new();
        let ids: Vec<String> = (0..100_000).map(|_| g.generate().to_string()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        let set: HashSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), 100_000);
    }

    #[test]
    fn same_millisecond_and_clock_step_back_stay_ordered() {
        let mut g = UlidGenerator::new();
        let a = g.generate_at(1_000);
        let b = g.generate_at(1_000);
        let c = g.generate_at(999);
        assert_eq!(b.0, a.0 + 1);
        assert_eq!(c.0, b.0 + 1);
        assert_eq!(c.timestamp_ms(), 1_000);
        let d = g.generate_at(1_001);
        assert!(d > c);
        assert_eq!(d.timestamp_ms(), 1_001);
    }

    #[test]
    fn generators_differ() {
        let a = UlidGenerator::new().generate_at(5);
        let b = UlidGenerator::new().generate_at(5);
        assert_ne!(a, b);
        let ids: HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
