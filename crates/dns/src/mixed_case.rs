//! 0x20 mixing of forwarded questions (draft-vixie-dnsext-dns0x20): the UDP path sends each
//! question with the case of its letters chosen at random and takes an answer only when it
//! echoes that case exactly. An off-path sender who forges an upstream answer must then
//! guess one bit per letter on top of the 16-bit id (and hit the proxy's upstream port
//! from the upstream's address); without it, with many queries of its own in flight, a pod
//! able to spoof addresses needs only a few dozen forged datagrams to have an address of
//! its choice recorded for an allowed name.
//!
//! Every upstream that matters here echoes the question as sent (dnsmasq, CoreDNS, BIND,
//! Unbound, public resolvers). One that does not would leave every answer unmatched: a
//! worker that sees [`GIVE_UP_AFTER`] answers echoing its question in another case, and not
//! one echoing the case it chose, stops mixing (and says so). Once an exact echo has been
//! seen it never stops, so forged answers cannot switch the check off.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// Answers in another case (with no exact echo ever seen) after which a worker stops mixing.
pub const GIVE_UP_AFTER: u32 = 32;

const UNKNOWN: u8 = 0;
const ECHOES: u8 = 1;
const OFF: u8 = 2;

/// Whether a worker's upstream is known to echo the case it is sent.
#[derive(Debug, Default)]
pub struct CaseCheck {
    state: AtomicU8,
    other_case: AtomicU32,
}

impl CaseCheck {
    /// A check that starts mixing (`true`) or never mixes.
    pub fn new(mix: bool) -> Self {
        CaseCheck {
            state: AtomicU8::new(if mix { UNKNOWN } else { OFF }),
            other_case: AtomicU32::new(0),
        }
    }

    /// Whether questions are mixed (and answers must echo them exactly).
    pub fn mixing(&self) -> bool {
        self.state.load(Ordering::Relaxed) != OFF
    }

    /// An answer echoed the mixed question exactly: the upstream keeps case.
    pub fn saw_exact_echo(&self) {
        if self.state.load(Ordering::Relaxed) == UNKNOWN {
            self.state.store(ECHOES, Ordering::Relaxed);
        }
    }

    /// An answer echoed a mixed question in another case (a forgery, or an upstream that
    /// does not keep case). Returns true when this makes the worker stop mixing.
    pub fn saw_other_case(&self) -> bool {
        if self.state.load(Ordering::Relaxed) != UNKNOWN {
            return false;
        }
        let n = self.other_case.fetch_add(1, Ordering::Relaxed) + 1;
        n >= GIVE_UP_AFTER
            && self
                .state
                .compare_exchange(UNKNOWN, OFF, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Flips the case of the letters of the question name in `question` (a question section:
/// the name written out label by label, then type and class) by the bits `random` gives,
/// 64 letters per call. Length bytes (at most 63) are never letters, and the type and
/// class are left alone.
pub fn mix_case(question: &mut [u8], mut random: impl FnMut() -> u64) {
    let name_len = question.len().saturating_sub(4);
    let mut bits = 0u64;
    let mut left = 0;
    for b in &mut question[..name_len] {
        if b.is_ascii_alphabetic() {
            if left == 0 {
                bits = random();
                left = 64;
            }
            if bits & 1 == 1 {
                *b ^= 0x20;
            }
            bits >>= 1;
            left -= 1;
        }
    }
}

/// Whether `resp` is a response (QR set) with one question that is `sent` byte for byte.
pub fn echoes_exactly(resp: &[u8], sent: &[u8]) -> bool {
    resp.len() >= crate::wire::HEADER_LEN
        && resp[2] & 0x80 != 0
        && resp[4..6] == [0, 1]
        && resp.get(crate::wire::HEADER_LEN..crate::wire::HEADER_LEN + sent.len()) == Some(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(name: &[&[u8]], qtype: u16) -> Vec<u8> {
        let mut q = Vec::new();
        for l in name {
            q.push(l.len() as u8);
            q.extend_from_slice(l);
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn only_letters_of_the_name_change() {
        // Type 0x4141 would be "AA": it must stay.
        let q = question(&[b"cdn-7", b"models", b"test"], 0x4141);
        let mut m = q.clone();
        mix_case(&mut m, || u64::MAX);
        assert_eq!(
            &m[..],
            &question(&[b"CDN-7", b"MODELS", b"TEST"], 0x4141)[..]
        );
        assert!(m.eq_ignore_ascii_case(&q));
        let mut n = q.clone();
        mix_case(&mut n, || 0);
        assert_eq!(n, q);
        let mut alt = q.clone();
        mix_case(&mut alt, || 0x5555_5555_5555_5555);
        assert_eq!(&alt[1..4], b"CdN");
    }

    #[test]
    fn the_check_gives_up_only_without_an_exact_echo() {
        let c = CaseCheck::default();
        for _ in 1..GIVE_UP_AFTER {
            assert!(!c.saw_other_case());
        }
        assert!(c.saw_other_case(), "gives up");
        assert!(!c.mixing());
        let c = CaseCheck::default();
        c.saw_exact_echo();
        for _ in 0..10 * GIVE_UP_AFTER {
            assert!(!c.saw_other_case());
        }
        assert!(c.mixing(), "forgeries cannot switch it off");
        assert!(!CaseCheck::new(false).mixing());
        assert!(CaseCheck::new(true).mixing());
    }

    #[test]
    fn exact_echo() {
        let q = question(&[b"a", b"test"], 1);
        let mut resp = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        resp.extend_from_slice(&q);
        assert!(echoes_exactly(&resp, &q));
        let mut upper = q.clone();
        upper[1] = b'A';
        assert!(!echoes_exactly(&resp, &upper));
        resp[2] = 0x01;
        assert!(!echoes_exactly(&resp, &q), "a query is no answer");
        assert!(!echoes_exactly(&[0u8; 5], &q));
    }
}
