//! Feature extraction: hashed word 1–2-grams and byte 3–5-grams of the words of folded
//! text (punctuation and whitespace runs become one space).
//!
//! Every n-gram is hashed (FNV-1a, then a murmur3 finaliser) into one table of
//! `2^bits` weights; words and byte n-grams use different seeds. Each family is scaled by
//! `1/sqrt(count)` up to a knee and by the mean beyond it (an L2-style normalisation
//! without sorting for short prompts, length-neutral for long texts). Byte n-grams of UTF-8 stand in for character n-grams:
//! the same for ASCII text, and cheaper. The words are the runs of alphanumeric characters.

/// Sparse features of one text: indices with duplicates, and a scale per family.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Features {
    /// Word 1–2-gram indices, then byte n-gram indices.
    pub(crate) idx: Vec<u32>,
    /// How many of `idx` are word n-grams.
    pub(crate) n_words: usize,
    /// Value of each word n-gram occurrence.
    pub(crate) word_value: f32,
    /// Value of each byte n-gram occurrence.
    pub(crate) char_value: f32,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const SEED_UNIGRAM: u64 = 0x9e37_79b9_7f4a_7c15;
const SEED_BIGRAM: u64 = 0xc2b2_ae3d_27d4_eb4f;
const SEED_BYTES: u64 = 0x1656_67b1_9e37_79f9;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET ^ seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// Extracts features of `text` for a table of `2^bits` weights.
pub(crate) fn extract(text: &str, bits: u32) -> Features {
    let shift = 64 - bits;
    let bytes = text.as_bytes();
    let mut idx = Vec::with_capacity(bytes.len() * 4);

    let mut prev: Option<u64> = None;
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = fnv(SEED_UNIGRAM, w.as_bytes());
        idx.push((fmix(h) >> shift) as u32);
        if let Some(p) = prev {
            idx.push((fmix(p.rotate_left(17) ^ h ^ SEED_BIGRAM) >> shift) as u32);
        }
        prev = Some(h);
    }
    let n_words = idx.len();

    // Byte n-grams see letters, digits and non-ASCII bytes; every run of punctuation or
    // whitespace is one space (so quoting, code and markup style, which says more about
    // where a data set came from than about intent, does not become a feature), and the
    // text is padded with spaces so the first and last words get their boundary n-grams.
    let mut letters = Vec::with_capacity(bytes.len() + 2);
    letters.push(b' ');
    for &b in bytes {
        if b.is_ascii_alphanumeric() || !b.is_ascii() {
            letters.push(b);
        } else if letters.last() != Some(&b' ') {
            letters.push(b' ');
        }
    }
    if letters.last() != Some(&b' ') {
        letters.push(b' ');
    }
    let padded_len = letters.len();
    let at = |i: usize| -> u8 { letters[i] };
    for start in 0..padded_len.saturating_sub(2) {
        let mut h = FNV_OFFSET ^ SEED_BYTES;
        for n in 1..=5 {
            let i = start + n - 1;
            if i >= padded_len {
                break;
            }
            h = (h ^ u64::from(at(i))).wrapping_mul(FNV_PRIME);
            if n >= 3 {
                idx.push(((h ^ n as u64).wrapping_mul(GOLDEN) >> shift) as u32);
            }
        }
    }
    let n_chars = idx.len() - n_words;
    Features {
        idx,
        n_words,
        word_value: norm(n_words, WORD_KNEE),
        char_value: norm(n_chars, CHAR_KNEE),
    }
}

/// Up to this many n-grams a family is scaled by `1/sqrt(count)`; beyond it by
/// `sqrt(knee)/count`, the mean. Short prompts keep the discriminative `1/sqrt` scaling;
/// for long texts the score is an average, so it does not drift with length (in the public
/// data nearly every long text is a jailbreak, and a `1/sqrt` sum over a long benign
/// document adds up many small positive weights).
const WORD_KNEE: usize = 50;
const CHAR_KNEE: usize = 300;

/// The value of each n-gram occurrence in a family of `n` of them.
fn norm(n: usize, knee: usize) -> f32 {
    if n == 0 {
        0.0
    } else if n <= knee {
        1.0 / (n as f32).sqrt()
    } else {
        (knee as f32).sqrt() / n as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_word_and_byte_ngrams() {
        let f = extract("ab cd", 18);
        // 2 unigrams + 1 bigram; " ab cd " has 7 bytes: 5 trigrams, 4 4-grams, 3 5-grams.
        assert_eq!(f.n_words, 3);
        assert_eq!(f.idx.len(), 3 + 5 + 4 + 3);
        assert!(f.idx.iter().all(|&i| i < 1 << 18));
        assert!((f.word_value - 1.0 / 3f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn deterministic_and_order_sensitive_bigrams() {
        assert_eq!(extract("ignore rules", 20), extract("ignore rules", 20));
        let a = extract("ignore rules", 20);
        let b = extract("rules ignore", 20);
        assert_ne!(a.idx[..a.n_words], b.idx[..b.n_words]);
    }

    #[test]
    fn empty_text_has_no_word_features() {
        let f = extract("", 16);
        assert_eq!(f.n_words, 0);
        assert_eq!(f.word_value, 0.0);
    }
}
