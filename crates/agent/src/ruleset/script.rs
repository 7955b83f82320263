//! The ruleset as `nft` scripts and netlink batches: the whole table in one transaction, or
//! the difference against what is in force (elements only: one netlink batch).

use super::{Ruleset, SetDef, TABLE};
use crate::nfnetlink::{Element, ElementBatch, ElementOp};
use std::fmt::Write as _;

/// Base chains and their hook lines.
const BASE_CHAINS: [(&str, &str); 3] = [
    (
        "forward",
        "type filter hook forward priority filter; policy accept;",
    ),
    (
        "input",
        "type filter hook input priority filter; policy accept;",
    ),
    (
        "output",
        "type filter hook output priority filter; policy accept;",
    ),
];

fn base_header(chain: &str) -> Option<&'static str> {
    BASE_CHAINS
        .iter()
        .find(|(n, _)| *n == chain)
        .map(|(_, h)| *h)
}

impl Ruleset {
    /// Number of chains.
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }

    fn set_block(name: &str, d: &SetDef) -> String {
        if d.elements.is_empty() {
            format!("  {} {name} {{ {} }}\n", d.keyword, d.spec)
        } else {
            let e: Vec<&str> = d.elements.iter().map(String::as_str).collect();
            format!(
                "  {} {name} {{ {} elements = {{ {} }} }}\n",
                d.keyword,
                d.spec,
                e.join(", ")
            )
        }
    }

    /// The script that replaces the whole table in one transaction.
    pub fn full_script(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "table inet {TABLE} {{}}");
        let _ = writeln!(out, "delete table inet {TABLE}");
        let _ = writeln!(out, "table inet {TABLE} {{");
        for (name, d) in &self.sets {
            out.push_str(&Self::set_block(name, d));
        }
        // Declare every chain first so that jumps and gotos resolve in any order.
        for name in self.chains.keys() {
            let _ = writeln!(out, "  chain {name} {{");
            if let Some(header) = base_header(name) {
                let _ = writeln!(out, "    {header}");
            }
            let _ = writeln!(out, "  }}");
        }
        let _ = writeln!(out, "}}");
        for (name, rules) in &self.chains {
            for r in rules {
                let _ = writeln!(out, "add rule inet {TABLE} {name} {r}");
            }
        }
        out
    }

    /// When `self` differs from `old` only in set and map elements (the common case of pods
    /// coming and going), those changes as one netlink batch: removed keys first (a map
    /// element whose verdict changed is removed and re-added), then new elements. `None` when
    /// chains or set definitions differ too, or an element cannot be encoded.
    pub fn element_batch(&self, old: &Ruleset) -> Option<ElementBatch> {
        if self.chains != old.chains
            || self.sets.len() != old.sets.len()
            || self
                .sets
                .iter()
                .zip(&old.sets)
                .any(|((n, d), (on, o))| n != on || d.spec != o.spec || d.keyword != o.keyword)
        {
            return None;
        }
        let mut batch = ElementBatch::new();
        let mut adds = Vec::new();
        for (name, d) in &self.sets {
            let o = &old.sets[name];
            if o.elements == d.elements {
                continue;
            }
            let mut gone = Vec::new();
            for e in o.elements.difference(&d.elements) {
                gone.push(Element::parse(e).ok()?.key_only());
            }
            let mut new = Vec::new();
            for e in d.elements.difference(&o.elements) {
                new.push(Element::parse(e).ok()?);
            }
            batch.push(ElementOp::Delete, name, gone);
            adds.push((name, new));
        }
        for (name, new) in adds {
            batch.push(ElementOp::Add, name, new);
        }
        Some(batch)
    }

    /// The script that turns `old` (in the kernel) into `self`, in one transaction; `None`
    /// when nothing differs.
    pub fn diff_script(&self, old: &Ruleset) -> Option<String> {
        let mut out = String::new();
        // New sets and maps (before rules use them); changed types are replaced.
        for (name, d) in &self.sets {
            match old.sets.get(name) {
                Some(o) if o.spec == d.spec && o.keyword == d.keyword => {}
                Some(_) => return None,
                None => {
                    let _ = writeln!(
                        out,
                        "add {} inet {TABLE} {name} {{ {} }}",
                        d.keyword, d.spec
                    );
                }
            }
        }
        // A base chain needs its hook: only a full rebuild declares one.
        if self
            .chains
            .keys()
            .any(|n| base_header(n).is_some() && !old.chains.contains_key(n))
        {
            return None;
        }
        // New chains, declared empty first.
        for name in self.chains.keys() {
            if !old.chains.contains_key(name) {
                let _ = writeln!(out, "add chain inet {TABLE} {name}");
            }
        }
        // Chains whose rules changed: flush and refill (new chains: fill).
        for (name, rules) in &self.chains {
            if old.chains.get(name) == Some(rules) {
                continue;
            }
            if base_header(name).is_some() && old.chains.contains_key(name) {
                // Base chains are rewritten whole only on a full rebuild.
                return None;
            }
            if old.chains.contains_key(name) {
                let _ = writeln!(out, "flush chain inet {TABLE} {name}");
            }
            for r in rules {
                let _ = writeln!(out, "add rule inet {TABLE} {name} {r}");
            }
        }
        // Elements: removed (and, for maps, re-pointed) keys first, then the new ones.
        let key_of = |e: &str| e.split(" : ").next().unwrap_or(e).to_string();
        for (name, d) in &self.sets {
            let Some(o) = old.sets.get(name) else {
                if !d.elements.is_empty() {
                    let all: Vec<&str> = d.elements.iter().map(String::as_str).collect();
                    let _ = writeln!(
                        out,
                        "add element inet {TABLE} {name} {{ {} }}",
                        all.join(", ")
                    );
                }
                continue;
            };
            let gone: Vec<String> = o
                .elements
                .iter()
                .filter(|e| !d.elements.contains(*e))
                .map(|e| key_of(e))
                .collect();
            if !gone.is_empty() {
                let _ = writeln!(
                    out,
                    "delete element inet {TABLE} {name} {{ {} }}",
                    gone.join(", ")
                );
            }
            let added: Vec<&str> = d
                .elements
                .iter()
                .filter(|e| !o.elements.contains(*e))
                .map(String::as_str)
                .collect();
            if !added.is_empty() {
                let _ = writeln!(
                    out,
                    "add element inet {TABLE} {name} {{ {} }}",
                    added.join(", ")
                );
            }
        }
        // Chains that disappear: flush all first (they may jump to each other), then delete.
        let gone: Vec<&String> = old
            .chains
            .keys()
            .filter(|n| !self.chains.contains_key(*n))
            .collect();
        for name in &gone {
            let _ = writeln!(out, "flush chain inet {TABLE} {name}");
        }
        for name in &gone {
            let _ = writeln!(out, "delete chain inet {TABLE} {name}");
        }
        for (name, o) in &old.sets {
            if !self.sets.contains_key(name) {
                let _ = writeln!(out, "delete {} inet {TABLE} {name}", o.keyword);
            }
        }
        if out.is_empty() {
            Some(String::new())
        } else {
            Some(out)
        }
    }
}
