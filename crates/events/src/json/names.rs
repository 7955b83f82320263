//! Struct field names and enum variant names, rendered once per thread.
//!
//! serde hands these names over as `&'static str`, and a `'static` address always holds
//! the same text (static data is never unloaded: Palisade loads no plugins). So the
//! rendering of a short name that needs no escape (`,"name":` for a field, `"name"` for a
//! unit variant) is computed once, kept in a small per-thread table indexed by the name's
//! address, and from then on written with one 16-byte store and a `truncate`, instead of
//! being loaded, checked and written in pieces for every field of every event. The table
//! is four-way set-associative (a fifth name in one set evicts the oldest), so the ~40
//! names of an event rarely compete, whatever addresses the linker gave them. Names that
//! do not fit (or need escapes) are written by the general code every time.

use std::cell::Cell;

use super::escape::{needs_escape, write_key, write_str};

/// Ways per set.
const WAYS: usize = 4;

/// Table size (a power of two): 128 sets of four ways, 16 KiB per thread.
const SLOTS: usize = 512;

/// What a name is rendered as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `,"name":` (the comma dropped for a first field); names of at most 12 bytes.
    Field = 0,
    /// `"name"`; names of at most 14 bytes.
    Value = 1,
}

/// One remembered name: where it is, its length and role, and its rendering.
#[derive(Clone, Copy)]
struct Slot {
    addr: usize,
    /// `len << 1 | role`: one address may hold a field name and a value (identical
    /// string literals are merged), rendered differently.
    len_role: usize,
    /// The rendering as little-endian bytes, zero-padded.
    text: u128,
}

/// No name lives at address 0.
const EMPTY: Slot = Slot {
    addr: 0,
    len_role: 0,
    text: 0,
};

thread_local! {
    static NAMES: [Cell<Slot>; SLOTS] = const { [const { Cell::new(EMPTY) }; SLOTS] };
}

/// The first slot of the set for a name at `addr` in `role` (Fibonacci hashing).
#[inline(always)]
fn set_of(addr: usize, role: Role) -> usize {
    let key = addr as u64 ^ role as u64;
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 55) as usize & (SLOTS - WAYS)
}

/// The remembered rendering of `name` in `role`, if any.
#[inline(always)]
fn lookup(name: &'static str, role: Role) -> Option<u128> {
    let addr = name.as_ptr() as usize;
    let len_role = name.len() << 1 | role as usize;
    let set = set_of(addr, role);
    NAMES
        .try_with(|names| {
            names[set..set + WAYS].iter().find_map(|slot| {
                let s = slot.get();
                (s.addr == addr && s.len_role == len_role).then_some(s.text)
            })
        })
        .ok()
        .flatten()
}

/// Appends the first `len` bytes of `text`.
#[inline(always)]
fn put(out: &mut Vec<u8>, text: u128, len: usize) {
    let start = out.len();
    out.extend_from_slice(&text.to_le_bytes());
    out.truncate(start + len);
}

/// Appends `,"name":`, or `"name":` when `!comma`.
#[inline]
pub(crate) fn write_field_name(out: &mut Vec<u8>, name: &'static str, comma: bool) {
    match lookup(name, Role::Field) {
        Some(text) if comma => put(out, text, name.len() + 4),
        Some(text) => put(out, text >> 8, name.len() + 3),
        None => {
            write_key(out, name, comma);
            remember(name, Role::Field);
        }
    }
}

/// Appends `"name"`.
#[inline]
pub(crate) fn write_static_str(out: &mut Vec<u8>, name: &'static str) {
    match lookup(name, Role::Value) {
        Some(text) => put(out, text, name.len() + 2),
        None => {
            write_str(out, name);
            remember(name, Role::Value);
        }
    }
}

/// Puts `name` in the table if its rendering fits and needs no escape.
#[cold]
#[inline(never)]
fn remember(name: &'static str, role: Role) {
    let bytes = name.as_bytes();
    let (open, close): (&[u8], &[u8]) = match role {
        Role::Field => (b",\"", b"\":"),
        Role::Value => (b"\"", b"\""),
    };
    if open.len() + bytes.len() + close.len() > 16 || bytes.iter().any(|&b| needs_escape(b)) {
        return;
    }
    let mut text = [0u8; 16];
    let rendering = open.iter().chain(bytes).chain(close);
    text.iter_mut().zip(rendering).for_each(|(t, &b)| *t = b);
    let slot = Slot {
        addr: bytes.as_ptr() as usize,
        len_role: bytes.len() << 1 | role as usize,
        text: u128::from_le_bytes(text),
    };
    let set = set_of(slot.addr, role);
    // The newest name goes first, the others move down one way and the oldest leaves.
    // Only fails while the thread is being torn down; then the name is just not kept.
    let _ = NAMES.try_with(|names| {
        for way in (set + 1..set + WAYS).rev() {
            names[way].set(names[way - 1].get());
        }
        names[set].set(slot);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(name: &'static str, comma: bool) -> String {
        let mut out = b"{".to_vec();
        write_field_name(&mut out, name, comma);
        String::from_utf8(out).unwrap()
    }

    fn is_remembered(name: &'static str) -> bool {
        lookup(name, Role::Field).is_some()
    }

    fn value(name: &'static str) -> String {
        let mut out = b"[".to_vec();
        write_static_str(&mut out, name);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn first_and_later_writes_are_identical() {
        for name in [
            "a",
            "bytesIn",
            "durationMs",
            "twelve_bytes",
            "thirteen_byte",
        ] {
            let expected_first = format!("{{\"{name}\":");
            let expected_rest = format!("{{,\"{name}\":");
            for _ in 0..3 {
                assert_eq!(written(name, false), expected_first);
                assert_eq!(written(name, true), expected_rest);
            }
        }
        assert!(is_remembered("twelve_bytes"));
        assert!(!is_remembered("thirteen_byte"), "longer than 12 bytes");
    }

    #[test]
    fn values_fit_up_to_14_bytes_and_do_not_mix_with_fields() {
        const SAME: &str = "http";
        for _ in 0..3 {
            assert_eq!(value(SAME), "[\"http\"");
            assert_eq!(written(SAME, true), "{,\"http\":");
            assert_eq!(value(SAME), "[\"http\"");
            assert_eq!(value("fourteen_bytes"), "[\"fourteen_bytes\"");
            assert_eq!(value("fifteen__bytes!"), "[\"fifteen__bytes!\"");
            assert_eq!(value("tab\t"), "[\"tab\\t\"");
        }
        assert!(lookup("fourteen_bytes", Role::Value).is_some());
        assert!(lookup("fifteen__bytes!", Role::Value).is_none());
        assert!(lookup("tab\t", Role::Value).is_none());
    }

    #[test]
    fn names_needing_escapes_are_escaped_every_time_and_never_kept() {
        const NAME: &str = "a\"b\n";
        for _ in 0..3 {
            assert_eq!(written(NAME, true), r#"{,"a\"b\n":"#);
        }
        assert!(!is_remembered(NAME));
    }

    #[test]
    fn names_sharing_a_set_are_all_served_correctly() {
        // Five names in one set (more than its four ways): sub-slices of a static string,
        // at addresses that collide.
        let text: &'static str = "abcdefghijklmnopqrstuvwxyz".repeat(40).leak();
        let at = |i: usize| -> &'static str { &text[i..i + 5] };
        let mut by_set: Vec<Vec<&'static str>> = vec![Vec::new(); SLOTS];
        for i in 0..text.len() - 5 {
            by_set[set_of(at(i).as_ptr() as usize, Role::Field)].push(at(i));
        }
        let crowded = by_set
            .iter()
            .find(|names| names.len() >= 5)
            .expect("1,035 addresses in 128 sets of four: some set has five");
        // Same address, other length: a different name too.
        let shorter: &'static str = &crowded[0][..4];
        for _ in 0..3 {
            for &name in crowded.iter().take(5).chain([&shorter]) {
                assert_eq!(written(name, true), format!("{{,\"{name}\":"));
                assert_eq!(written(name, false), format!("{{\"{name}\":"));
                assert_eq!(value(name), format!("[\"{name}\""));
            }
        }
        // Four names of one set are all kept.
        for &name in &crowded[..4] {
            written(name, true);
        }
        assert!(crowded[..4].iter().all(|&name| is_remembered(name)));
    }
}
