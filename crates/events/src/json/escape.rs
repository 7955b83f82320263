//! JSON string escaping, eight bytes at a time.
//!
//! A string is read as little-endian `u64` words; one SWAR expression marks every byte
//! that JSON requires escaping (control bytes below 0x20, `"` and `\`). A string of at
//! most 16 bytes that needs no escape (most field values) is written with fixed-size
//! stores; a longer one is scanned word by word, and its clean runs are copied with one
//! `extend_from_slice` each, without looking at each byte. Escapes are
//! written exactly as `serde_json` writes them: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
//! and `\u00xx` (lowercase hex) for the other control bytes. `/`, DEL and non-ASCII text
//! are copied unchanged.

/// Every byte of a word set to `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

const HIGH_BITS: u64 = splat(0x80);
const LOW_SEVEN: u64 = splat(0x7f);

/// Bit 7 of each byte of the result is set exactly when that byte of `word` is zero.
///
/// Exact (no false positives): the per-byte sum `(b & 0x7f) + 0x7f` never carries into the
/// next byte.
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    !(((word & LOW_SEVEN) + LOW_SEVEN) | word) & HIGH_BITS
}

/// Bit 7 of each byte of the result is set exactly when that byte of `word` needs escaping
/// in a JSON string: below 0x20, `"` or `\`.
#[inline(always)]
fn escape_mask(word: u64) -> u64 {
    // (b & 0x7f) + 0x60 reaches 0x80 exactly when b & 0x7f >= 0x20; never carries.
    let control = !(((word & LOW_SEVEN) + splat(0x60)) | word) & HIGH_BITS;
    control | zero_bytes(word ^ splat(b'"')) | zero_bytes(word ^ splat(b'\\'))
}

/// Whether one byte needs escaping.
#[inline(always)]
pub(crate) fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `s` as a JSON string, quotes included.
#[inline(never)]
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if !write_short_clean(out, s, false, false) {
        write_quoted(out, s, false, false);
    }
}

/// Appends an object key: `"key":`, preceded by `,` when `comma`.
#[inline(never)]
pub(crate) fn write_key(out: &mut Vec<u8>, key: &str, comma: bool) {
    if !write_short_clean(out, key, comma, true) {
        write_quoted(out, key, comma, true);
    }
}

/// Appends `[,]"s"[:]` when `s` is short and needs no escape; returns `false`, having
/// written nothing, otherwise.
///
/// A string of at most 16 bytes is loaded into one or two words (zero-padded, or
/// overlapping) and checked with one mask each; when it needs no escape it is written with
/// fixed-size stores and a `truncate`: no byte loop, no `memcpy` call. The escaping path
/// is kept out of line ([`write_quoted`]) so this one stays small.
#[inline(always)]
fn write_short_clean(out: &mut Vec<u8>, s: &str, comma: bool, colon: bool) -> bool {
    let b = s.as_bytes();
    let len = b.len();
    if len <= 8 {
        let w = word_upto_8(b);
        if escape_mask(w) & low_bytes(len) == 0 {
            let start = write_lead(out, comma);
            out.extend_from_slice(&w.to_le_bytes());
            write_trail(out, start + len, colon);
            return true;
        }
    } else if let (true, Some(first), Some(last)) =
        (len <= 16, b.first_chunk::<8>(), b.last_chunk::<8>())
    {
        let (w0, w1) = (u64::from_le_bytes(*first), u64::from_le_bytes(*last));
        // `w1` holds the last eight bytes; those before byte 8 were checked in `w0`.
        if (escape_mask(w0) | escape_mask(w1)) == 0 {
            let start = write_lead(out, comma);
            out.extend_from_slice(&w0.to_le_bytes());
            out.truncate(start + len - 8);
            out.extend_from_slice(&w1.to_le_bytes());
            write_trail(out, start + len, colon);
            return true;
        }
    }
    false
}

/// Appends `[,]"s"[:]`, escaping: the general case.
#[cold]
#[inline(never)]
fn write_quoted(out: &mut Vec<u8>, s: &str, comma: bool, colon: bool) {
    out.reserve(s.len() + 4);
    if comma {
        out.push(b',');
    }
    out.push(b'"');
    write_str_contents(out, s);
    out.push(b'"');
    if colon {
        out.push(b':');
    }
}

/// Writes `,"` or `"`; returns where the string's bytes start.
#[inline(always)]
fn write_lead(out: &mut Vec<u8>, comma: bool) -> usize {
    if comma {
        out.extend_from_slice(b",\"");
    } else {
        out.push(b'"');
    }
    out.len()
}

/// Cuts the buffer to `end` (dropping padding) and writes `"` or `":`.
#[inline(always)]
fn write_trail(out: &mut Vec<u8>, end: usize, colon: bool) {
    out.truncate(end);
    if colon {
        out.extend_from_slice(b"\":");
    } else {
        out.push(b'"');
    }
}

/// The bytes of `b` (at most 8) as a little-endian word, zero-padded. Overlapping loads
/// hold the same bytes at the same places, so OR-ing them is exact.
#[inline(always)]
fn word_upto_8(b: &[u8]) -> u64 {
    let len = b.len();
    if let Some(all) = b.first_chunk::<8>() {
        u64::from_le_bytes(*all)
    } else if let (Some(first), Some(last)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        let lo = u64::from(u32::from_le_bytes(*first));
        let hi = u64::from(u32::from_le_bytes(*last));
        lo | hi << (8 * (len - 4))
    } else if let (Some(&a), Some(&z)) = (b.first(), b.last()) {
        let mid = u64::from(b[len / 2]);
        u64::from(a) | mid << (8 * (len / 2)) | u64::from(z) << (8 * (len - 1))
    } else {
        0
    }
}

/// A word with the low `n` bytes set (all for `n >= 8`).
#[inline(always)]
fn low_bytes(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// Writes the bytes of the word at `base` that `mask` marks (one high bit per byte), each
/// escaped and preceded by the clean run since `clean`, which then moves past it.
#[inline(always)]
fn escape_marked(out: &mut Vec<u8>, bytes: &[u8], base: usize, mut mask: u64, clean: &mut usize) {
    while mask != 0 {
        let at = base + (mask.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[*clean..at]);
        write_escape(out, bytes[at]);
        *clean = at + 1;
        mask &= mask - 1;
    }
}

/// Appends `s` escaped for the inside of a JSON string, without quotes.
pub(crate) fn write_str_contents(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // `clean` is where the run of bytes not yet copied starts.
    let mut clean = 0;
    let mut i = 0;
    while let Some(chunk) = bytes[i..].first_chunk::<8>() {
        escape_marked(
            out,
            bytes,
            i,
            escape_mask(u64::from_le_bytes(*chunk)),
            &mut clean,
        );
        i += 8;
    }
    let rest = bytes.len() - i;
    if rest > 0 && bytes.len() >= 8 {
        // The last, partial word: load the final eight bytes (overlapping bytes already
        // scanned) and drop the marks of the overlap.
        if let Some(chunk) = bytes.last_chunk::<8>() {
            let mask = escape_mask(u64::from_le_bytes(*chunk)) >> ((8 - rest) * 8);
            escape_marked(out, bytes, i, mask, &mut clean);
        }
    } else {
        // Shorter than one word.
        for (at, &b) in bytes.iter().enumerate().skip(i) {
            if needs_escape(b) {
                out.extend_from_slice(&bytes[clean..at]);
                write_escape(out, b);
                clean = at + 1;
            }
        }
    }
    out.extend_from_slice(&bytes[clean..]);
}

/// Appends the escape sequence of one byte that [`needs_escape`].
#[cold]
fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x0c => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        _ => {
            let hex = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            out.extend_from_slice(&hex);
            return;
        }
    };
    out.extend_from_slice(short);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn mask_marks_exactly_the_bytes_to_escape() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut word = [b'a'; 8];
                word[pos] = b;
                let mask = escape_mask(u64::from_le_bytes(word));
                let expected = if needs_escape(b) {
                    0x80u64 << (8 * pos)
                } else {
                    0
                };
                assert_eq!(mask, expected, "byte {b:#04x} at {pos}");
            }
        }
        // Neighbouring marks do not disturb each other (no borrow between bytes).
        let word = u64::from_le_bytes([0, b'"', 0x1f, b'\\', 0x20, 0x80, 0xff, 0]);
        assert_eq!(escape_mask(word), 0x8000_0000_8080_8080);
    }

    #[test]
    fn every_ascii_byte_alone_matches_serde_json() {
        for b in 0..=0x7fu8 {
            let s = char::from(b).to_string();
            assert_eq!(
                escaped(&s),
                serde_json::to_string(&s).unwrap(),
                "byte {b:#04x}"
            );
        }
        assert_eq!(escaped("\u{1}"), r#""\u0001""#);
        assert_eq!(escaped("\u{1f}"), r#""\u001f""#);
        assert_eq!(escaped("\u{7f}"), "\"\u{7f}\"");
        assert_eq!(escaped("\u{8}\u{c}\n\r\t\"\\/"), r#""\b\f\n\r\t\"\\/""#);
    }

    #[test]
    fn all_ascii_bytes_in_one_string_match_serde_json() {
        let s: String = (0..=0x7fu8).map(char::from).collect();
        assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap());
        let rev: String = s.chars().rev().collect();
        assert_eq!(escaped(&rev), serde_json::to_string(&rev).unwrap());
    }

    #[test]
    fn empty_and_multibyte_utf8_match_serde_json() {
        for s in [
            "",
            "é",
            "日本語のテキスト",
            "emoji 😀 and \"quotes\"\n",
            "\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
            "ab\u{2028}\u{2029}cd",
            "0123456789abcdef\u{0}",
        ] {
            assert_eq!(escaped(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn special_byte_at_every_position_of_every_length_matches_serde_json() {
        for special in [
            '"', '\\', '\n', '\u{0}', '\u{1f}', '\t', 'é', '😀', '\u{7f}',
        ] {
            for len in 1..=20 {
                for pos in 0..len {
                    let s: String = (0..len)
                        .map(|i| if i == pos { special } else { 'x' })
                        .collect();
                    assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn two_specials_at_every_pair_of_positions_match_serde_json() {
        for len in 2..=20 {
            for a in 0..len {
                for b in a + 1..len {
                    let s: String = (0..len)
                        .map(|i| match i {
                            _ if i == a => '"',
                            _ if i == b => '\u{1}',
                            _ => 'y',
                        })
                        .collect();
                    assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn short_strings_load_exactly_their_bytes() {
        for len in 0..=16usize {
            let b: Vec<u8> = (1..=len as u8).collect();
            let mut padded = [0u8; 8];
            padded[..len.min(8)].copy_from_slice(&b[..len.min(8)]);
            if len <= 8 {
                assert_eq!(word_upto_8(&b).to_le_bytes(), padded, "len {len}");
            }
            assert_eq!(low_bytes(len).count_ones() as usize, 8 * len.min(8));
        }
    }

    #[test]
    fn keys_get_their_punctuation() {
        for key in [
            "",
            "k",
            "bytesIn",
            "exactly16bytes!!",
            "seventeen bytes!!",
            "a\"b",
        ] {
            for comma in [false, true] {
                let mut out = b"{1".to_vec();
                write_key(&mut out, key, comma);
                let sep = if comma { "," } else { "" };
                let quoted = serde_json::to_string(key).unwrap();
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format!("{{1{sep}{quoted}:")
                );
            }
        }
    }

    #[test]
    fn contents_are_appended_after_existing_bytes() {
        let mut out = b"prefix:".to_vec();
        write_str_contents(&mut out, "a\"b");
        assert_eq!(out, b"prefix:a\\\"b");
    }
}
