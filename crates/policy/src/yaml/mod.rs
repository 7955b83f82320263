//! YAML with positions: a small marked tree built from `saphyr-parser` events, and a
//! serde deserializer over it that knows the field path and line:column of every value.
//!
//! Kubernetes manifests are YAML 1.2 documents (core schema); aliases are expanded with a
//! node budget so that a "billion laughs" file is an error, not an out-of-memory.

mod de;
mod tree;

pub use de::{from_node, DeError};
pub use tree::{parse_documents, Mark, Node, ParseError, Value};

use std::fmt;

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSeg {
    /// `.key`
    Key(String),
    /// `[index]`
    Index(usize),
}

/// A field path like `spec.egress[0].to[1].ipBlock.except[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<PathSeg>);

impl FieldPath {
    /// The empty path (the document itself).
    pub fn root() -> Self {
        Self(Vec::new())
    }
    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(PathSeg::Key(k.to_string()));
        Self(v)
    }
    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(PathSeg::Index(i));
        Self(v)
    }
    /// Parses the display form back (`a.b[2].c`); keys may not contain `.` or `[`.
    pub fn parse(s: &str) -> Self {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let (key, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                segs.push(PathSeg::Key(key.to_string()));
            }
            for idx in rest.split('[').filter(|x| !x.is_empty()) {
                if let Ok(n) = idx.trim_end_matches(']').parse() {
                    segs.push(PathSeg::Index(n));
                }
            }
        }
        Self(segs)
    }
    /// Concatenation.
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut v = self.0.clone();
        v.extend(other.0.iter().cloned());
        Self(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                PathSeg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                PathSeg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}
