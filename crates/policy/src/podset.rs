//! A fixed-size bit set over pod ids.

/// Set of pod ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodSet {
    words: Vec<u64>,
}

impl PodSet {
    /// An empty set for `n` pods.
    pub fn new(n: usize) -> Self {
        PodSet {
            words: vec![0; n.div_ceil(64)],
        }
    }
    /// Adds a pod.
    #[inline]
    pub fn insert(&mut self, i: u32) {
        self.words[(i >> 6) as usize] |= 1 << (i & 63);
    }
    /// Membership.
    #[inline]
    pub fn contains(&self, i: u32) -> bool {
        self.words
            .get((i >> 6) as usize)
            .is_some_and(|w| w & (1 << (i & 63)) != 0)
    }
    /// Whether every member of `other` is a member of `self`.
    pub fn is_superset(&self, other: &PodSet) -> bool {
        self.words
            .iter()
            .zip(&other.words)
            .all(|(a, b)| b & !a == 0)
    }
    /// Number of members.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }
    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some((wi as u32) * 64 + b)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn basics() {
        let mut s = PodSet::new(130);
        s.insert(0);
        s.insert(64);
        s.insert(129);
        assert!(s.contains(64) && !s.contains(65) && !s.contains(1000));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
        let mut t = PodSet::new(130);
        t.insert(64);
        assert!(s.is_superset(&t) && !t.is_superset(&s));
        assert_eq!(s.len(), 3);
    }
}
