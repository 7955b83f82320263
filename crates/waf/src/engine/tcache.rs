//! Per-transaction cache of transformed values and their prefilter hits.
//!
//! Keyed by (value slot, transformation trie node): each prefix of each chain is computed
//! once per value and shared by every rule whose chain starts with it. An entry also
//! holds, once some rule asks, the bit set of prefilter groups whose literals occur in
//! the value. Lookups are two array indexings: a slot (source collection, position) maps
//! to a row of one cell per trie node.

use crate::ruleset::prefilter::{NodePrefilter, TNode};
use std::borrow::Cow;

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Index into `arena`; `NONE`: the value is unchanged by the chain.
    val: u32,
    /// Offset of the hit bits in `bits`; `NONE` until computed.
    hits: u32,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct TCache {
    /// Per source collection (slot >> 24), per position: the value's row, or `NONE`.
    rows: Vec<Vec<u32>>,
    /// Rows of `nodes` cells: entry index or `NONE`.
    cells: Vec<u32>,
    entries: Vec<Entry>,
    arena: Vec<Vec<u8>>,
    bits: Vec<u64>,
    /// Per trie node: offset in `bits` of the union of hits over the request's values.
    union: Vec<u32>,
}

/// Applies one transformation; `None` when the value is unchanged.
pub(crate) fn apply_one(t: crate::transforms::Transform, v: &[u8]) -> Option<Vec<u8>> {
    match t.apply(v) {
        Cow::Owned(o) if o[..] == v[..] => None,
        Cow::Owned(o) => Some(o),
        // Borrowed is unchanged, or a sub-slice (`trim`).
        Cow::Borrowed(b) if b.len() == v.len() => None,
        Cow::Borrowed(b) => Some(b.to_vec()),
    }
}

impl TCache {
    /// The cell index of (`slot`, `node`).
    fn cell(&mut self, nodes: usize, slot: u32, node: u32) -> usize {
        let src = (slot >> 24) as usize;
        let pos = (slot & 0xFF_FFFF) as usize;
        if self.rows.len() <= src {
            self.rows.resize_with(src + 1, Vec::new);
        }
        let r = &mut self.rows[src];
        if r.len() <= pos {
            r.resize(pos + 1, NONE);
        }
        if r[pos] == NONE {
            r[pos] = (self.cells.len() / nodes) as u32;
            self.cells.resize(self.cells.len() + nodes, NONE);
        }
        r[pos] as usize * nodes + node as usize
    }

    /// The entry of `slot`'s value (`orig`) after the chain of trie node `node`.
    pub(crate) fn entry(&mut self, nodes: &[TNode], slot: u32, orig: &[u8], node: u32) -> u32 {
        let cell = self.cell(nodes.len(), slot, node);
        if self.cells[cell] != NONE {
            return self.cells[cell];
        }
        let val = if node == 0 {
            NONE
        } else {
            let n = nodes[node as usize];
            let parent = if n.parent == 0 {
                NONE
            } else {
                let pe = self.entry(nodes, slot, orig, n.parent);
                self.entries[pe as usize].val
            };
            let input: &[u8] = match parent {
                NONE => orig,
                i => &self.arena[i as usize],
            };
            match n.t.and_then(|t| apply_one(t, input)) {
                Some(o) => {
                    self.arena.push(o);
                    (self.arena.len() - 1) as u32
                }
                None => parent,
            }
        };
        self.entries.push(Entry { val, hits: NONE });
        let e = (self.entries.len() - 1) as u32;
        self.cells[cell] = e;
        e
    }

    /// The transformed value of entry `e` (`orig` when unchanged).
    pub(crate) fn value<'a>(&'a self, e: u32, orig: &'a [u8]) -> &'a [u8] {
        match self.entries[e as usize].val {
            NONE => orig,
            i => &self.arena[i as usize],
        }
    }

    /// Offset in `bits` of entry `e`'s prefilter hits, computing them on first use (one
    /// automaton pass per value and node, shared by all the node's groups).
    fn hits(&mut self, pf: &NodePrefilter, e: u32, orig: &[u8]) -> usize {
        let entry = self.entries[e as usize];
        if entry.hits != NONE {
            return entry.hits as usize;
        }
        let off = self.bits.len();
        self.bits.resize(off + pf.groups.div_ceil(64), 0);
        let v: &[u8] = match entry.val {
            NONE => orig,
            i => &self.arena[i as usize],
        };
        for m in pf.ac.find_overlapping_iter(v) {
            for &g in &pf.groups_of[m.pattern().as_usize()] {
                self.bits[off + g as usize / 64] |= 1 << (g % 64);
            }
        }
        self.entries[e as usize].hits = off as u32;
        off
    }

    /// Whether the value of entry `e` contains a literal of prefilter group `group`.
    pub(crate) fn may_match(
        &mut self,
        pf: &NodePrefilter,
        e: u32,
        orig: &[u8],
        group: u32,
    ) -> bool {
        let off = self.hits(pf, e, orig);
        self.bits[off + group as usize / 64] & (1 << (group % 64)) != 0
    }

    /// Whether any of `values` (slot, value), after the chain of `node`, contains a
    /// literal of `group`. The union of the node's hits over the values is computed once
    /// per phase ([`TCache::new_phase`]): the values of the request's arguments, cookies
    /// and XML, which every rule whose targets are among them shares.
    pub(crate) fn any_may_match<'a>(
        &mut self,
        nodes: &[TNode],
        pf: &NodePrefilter,
        node: u32,
        group: u32,
        values: impl Iterator<Item = (u32, &'a [u8])>,
    ) -> bool {
        if self.union.len() < nodes.len() {
            self.union.resize(nodes.len(), NONE);
        }
        let words = pf.groups.div_ceil(64);
        let uoff = match self.union[node as usize] {
            NONE => {
                let uoff = self.bits.len();
                self.bits.resize(uoff + words, 0);
                for (slot, v) in values {
                    let e = self.entry(nodes, slot, v, node);
                    let off = self.hits(pf, e, v);
                    for w in 0..words {
                        self.bits[uoff + w] |= self.bits[off + w];
                    }
                }
                self.union[node as usize] = uoff as u32;
                uoff
            }
            u => u as usize,
        };
        self.bits[uoff + group as usize / 64] & (1 << (group % 64)) != 0
    }

    /// Forgets the unions of [`TCache::any_may_match`] (the request's values change
    /// between phases, e.g. when the body is parsed).
    pub(crate) fn new_phase(&mut self) {
        self.union.fill(NONE);
    }
}
