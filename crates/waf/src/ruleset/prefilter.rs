//! Transformation chains as a trie, and the literal prefilter of each chain.
//!
//! Chains that share a prefix (`t:utf8toUnicode,t:urlDecodeUni` then `…,t:removeNulls` or
//! `…,t:htmlEntityDecode`) share trie nodes, so a transaction computes each prefix of each
//! value once. Every node that ends the chain of an `@rx` rule with required literals
//! (see [`super::literals`]) gets one Aho-Corasick automaton over all those rules'
//! literals: one pass over the transformed value tells every such rule whether its regex
//! can match at all.

use super::literals::required_literals;
use super::rule::Rule;
use crate::operators::OpKind;
use crate::transforms::Transform;
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use std::collections::HashMap;

/// Fewest prefiltered rules on a node for its automaton to pay off (measured with CRS
/// v4.25.0: from one to four makes no difference, twenty is slower).
const MIN_GROUPS: u32 = 2;

/// A trie node: the chain of its parent followed by `t` (node 0: no transformation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TNode {
    pub(crate) parent: u32,
    pub(crate) t: Option<Transform>,
}

/// The literals of the `@rx` rules ending at one trie node.
#[derive(Debug)]
pub(crate) struct NodePrefilter {
    pub(crate) ac: AhoCorasick,
    /// Per literal (automaton pattern id): the groups (rules) that require it.
    pub(crate) groups_of: Vec<Box<[u32]>>,
    /// Number of groups (bits per value).
    pub(crate) groups: usize,
}

/// Literals collected for one node while building.
#[derive(Default)]
struct NodeLits {
    list: Vec<Vec<u8>>,
    ids: HashMap<Vec<u8>, usize>,
    groups_of: Vec<Vec<u32>>,
    groups: u32,
}

/// Builds the trie from every rule link's chain, setting each link's `transform_key` to
/// its node.
pub(crate) fn build_trie(rules: &mut [Rule]) -> Vec<TNode> {
    let mut nodes = vec![TNode { parent: 0, t: None }];
    let mut index: HashMap<(u32, Transform), u32> = HashMap::new();
    for r in rules.iter_mut() {
        r.links_mut(&mut |l| {
            let mut n = 0u32;
            for &t in &l.actions.transforms {
                n = *index.entry((n, t)).or_insert_with(|| {
                    nodes.push(TNode {
                        parent: n,
                        t: Some(t),
                    });
                    (nodes.len() - 1) as u32
                });
            }
            l.transform_key = n;
        });
    }
    nodes
}

/// Extracts each `@rx` link's required literals and builds one automaton per node; each
/// prefiltered link gets a group number (its bit in the node's per-value hit set).
pub(crate) fn build_prefilters(rules: &mut [Rule], nodes: usize) -> Vec<Option<NodePrefilter>> {
    let mut lits: Vec<NodeLits> = (0..nodes).map(|_| NodeLits::default()).collect();
    for r in rules.iter_mut() {
        r.links_mut(&mut |l| {
            l.prefilter = None;
            if l.actions.multi_match {
                return;
            }
            let OpKind::Rx(rx) = &l.op.kind else { return };
            let Some(set) = rx.pattern().and_then(|p| required_literals(&p)) else {
                return;
            };
            let n = &mut lits[l.transform_key as usize];
            let group = n.groups;
            n.groups += 1;
            for s in set {
                let id = *n.ids.entry(s.clone()).or_insert_with(|| {
                    n.list.push(s);
                    n.groups_of.push(Vec::new());
                    n.list.len() - 1
                });
                n.groups_of[id].push(group);
            }
            l.prefilter = Some(group);
        });
    }
    let built: Vec<Option<NodePrefilter>> = lits
        .into_iter()
        .map(|n| {
            // With few rules on a node, a pass over the value costs about what their
            // regexes (which have their own literal prefilters) cost.
            if n.groups < MIN_GROUPS {
                return None;
            }
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&n.list)
                .ok()?;
            Some(NodePrefilter {
                ac,
                groups_of: n.groups_of.into_iter().map(Vec::into_boxed_slice).collect(),
                groups: n.groups as usize,
            })
        })
        .collect();
    // A node without automaton: its rules run without prefilter.
    for r in rules.iter_mut() {
        r.links_mut(&mut |l| {
            if built[l.transform_key as usize].is_none() {
                l.prefilter = None;
            }
            l.universe = l.prefilter.is_some()
                && !l.op.negated
                && l.targets.iter().any(|t| !t.exclude)
                && l.targets
                    .iter()
                    .all(|t| t.exclude || !t.count && t.var.in_universe());
        });
    }
    built
}
