//! Per-transaction cache of transformed values and their prefilter hits.
//!
//! Keyed by (value slot, transformation trie node): each prefix of each chain is computed
//! once per value and shared by every rule whose chain starts with it. An entry also
//! holds, once some rule asks, the bit set of prefilter literals found in the value.

use super::BuildFx;
use crate::ruleset::prefilter::{NodePrefilter, TNode};
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, Default)]
struct Entry {
    /// Index into `arena`; `None`: the value is unchanged by the chain.
    val: Option<u32>,
    /// Literal hits (bit per literal of the node's automaton), once computed.
    hits: Option<Box<[u64]>>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct TCache {
    map: HashMap<u64, u32, BuildFx>,
    entries: Vec<Entry>,
    arena: Vec<Vec<u8>>,
}

/// Applies one transformation; `None` when the value is unchanged.
pub(crate) fn apply_one(t: crate::transforms::Transform, v: &[u8]) -> Option<Vec<u8>> {
    match t.apply(v) {
        Cow::Owned(o) => Some(o),
        // Borrowed is unchanged, or a sub-slice (`trim`).
        Cow::Borrowed(b) if b.len() == v.len() => None,
        Cow::Borrowed(b) => Some(b.to_vec()),
    }
}

impl TCache {
    /// The entry of `slot`'s value (`orig`) after the chain of trie node `node`.
    pub(crate) fn entry(&mut self, nodes: &[TNode], slot: u32, orig: &[u8], node: u32) -> u32 {
        let key = u64::from(slot) << 32 | u64::from(node);
        if let Some(&e) = self.map.get(&key) {
            return e;
        }
        if self.map.capacity() == 0 {
            self.map.reserve(128);
            self.entries.reserve(128);
            self.arena.reserve(32);
        }
        let val = if node == 0 {
            None
        } else {
            let n = nodes[node as usize];
            let parent = if n.parent == 0 {
                None
            } else {
                let pe = self.entry(nodes, slot, orig, n.parent);
                self.entries[pe as usize].val
            };
            let input: &[u8] = match parent {
                Some(i) => &self.arena[i as usize],
                None => orig,
            };
            match n.t.and_then(|t| apply_one(t, input)) {
                Some(o) => {
                    self.arena.push(o);
                    Some((self.arena.len() - 1) as u32)
                }
                None => parent,
            }
        };
        self.entries.push(Entry { val, hits: None });
        let e = (self.entries.len() - 1) as u32;
        self.map.insert(key, e);
        e
    }

    /// The transformed value of entry `e` (`orig` when unchanged).
    pub(crate) fn value<'a>(&'a self, e: u32, orig: &'a [u8]) -> &'a [u8] {
        match self.entries[e as usize].val {
            Some(i) => &self.arena[i as usize],
            None => orig,
        }
    }

    /// Whether the value of entry `e` contains a literal of prefilter group `group`
    /// (one automaton pass per value and node, shared by all the node's groups).
    pub(crate) fn may_match(
        &mut self,
        pf: &NodePrefilter,
        e: u32,
        orig: &[u8],
        group: u32,
    ) -> bool {
        let entry = &mut self.entries[e as usize];
        let hits = entry.hits.get_or_insert_with(|| {
            let v: &[u8] = match entry.val {
                Some(i) => &self.arena[i as usize],
                None => orig,
            };
            let mut bits = vec![0u64; pf.groups.div_ceil(64)].into_boxed_slice();
            for m in pf.ac.find_overlapping_iter(v) {
                for &g in &pf.groups_of[m.pattern().as_usize()] {
                    bits[g as usize / 64] |= 1 << (g % 64);
                }
            }
            bits
        });
        hits[group as usize / 64] & (1 << (group % 64)) != 0
    }
}
