//! The classifier's weights and their file format.
//!
//! A linear model: `logit = bias + sum(weight[i] * value) + sum(dense[j] * input[j])`,
//! where the hashed n-gram weights are quantised to `i8` with one scale, and the few dense
//! weights (one per signature family, one for obfuscation) stay `f32`. `threshold` is the
//! logit at which a prompt counts as an injection, chosen on a validation split.
//!
//! File layout (little-endian): magic `PGUARD01`, `u32 bits`, `u32 n_dense`, `f32 scale`,
//! `f32 bias`, `f32 threshold`, `n_dense × f32`, then `2^bits × i8`.

use crate::features::Features;
use crate::GuardError;

const MAGIC: &[u8; 8] = b"PGUARD01";

/// Number of dense inputs: the signature families and the obfuscation indicator.
pub(crate) const N_DENSE: usize = crate::signatures::Family::ALL.len() + 1;

/// A trained linear model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Model {
    pub(crate) bits: u32,
    pub(crate) scale: f32,
    pub(crate) bias: f32,
    pub(crate) threshold: f32,
    pub(crate) dense: Vec<f32>,
    pub(crate) weights: Vec<i8>,
}

impl Model {
    /// Quantises float weights into a model.
    pub(crate) fn quantise(
        bits: u32,
        w: &[f32],
        dense: &[f32],
        bias: f32,
        threshold: f32,
    ) -> Model {
        let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let weights = w
            .iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        Model {
            bits,
            scale,
            bias,
            threshold,
            dense: dense.to_vec(),
            weights,
        }
    }

    /// The raw logit of one text's features and dense inputs.
    pub(crate) fn logit(&self, f: &Features, dense: &[f32; N_DENSE]) -> f32 {
        let sum = |ids: &[u32]| -> i32 {
            ids.iter()
                .map(|&i| i32::from(self.weights[i as usize]))
                .sum()
        };
        let words = sum(&f.idx[..f.n_words]) as f32 * f.word_value;
        let chars = sum(&f.idx[f.n_words..]) as f32 * f.char_value;
        let d: f32 = self.dense.iter().zip(dense).map(|(w, x)| w * x).sum();
        self.bias + self.scale * (words + chars) + d
    }

    /// Serialises the model.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.weights.len() + 4 * self.dense.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.bits.to_le_bytes());
        out.extend_from_slice(&(self.dense.len() as u32).to_le_bytes());
        for x in [self.scale, self.bias, self.threshold] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        for x in &self.dense {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend(self.weights.iter().map(|&w| w as u8));
        out
    }

    /// Parses a model file, checking its header and size.
    pub(crate) fn from_bytes(b: &[u8]) -> Result<Model, GuardError> {
        let bad = |why: &str| GuardError::Model(why.to_owned());
        if b.len() < 28 || &b[..8] != MAGIC {
            return Err(bad("not a palisade guard model (bad magic)"));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let f32_at = |o: usize| f32::from_bits(u32_at(o));
        let bits = u32_at(8);
        let n_dense = u32_at(12) as usize;
        if !(8..=24).contains(&bits) {
            return Err(bad(&format!("hash table bits {bits} out of range 8..=24")));
        }
        if n_dense != N_DENSE {
            return Err(bad(&format!(
                "model has {n_dense} dense inputs, this build expects {N_DENSE}"
            )));
        }
        let head = 28 + 4 * n_dense;
        let expected = head + (1usize << bits);
        if b.len() != expected {
            return Err(bad(&format!(
                "model is {} bytes, expected {expected}",
                b.len()
            )));
        }
        let (scale, bias, threshold) = (f32_at(16), f32_at(20), f32_at(24));
        let dense: Vec<f32> = (0..n_dense).map(|j| f32_at(28 + 4 * j)).collect();
        if ![scale, bias, threshold]
            .iter()
            .chain(&dense)
            .all(|x| x.is_finite())
        {
            return Err(bad("non-finite parameter"));
        }
        Ok(Model {
            bits,
            scale,
            bias,
            threshold,
            dense,
            weights: b[head..].iter().map(|&x| x as i8).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Model {
        let w: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 64.0).collect();
        Model::quantise(8, &w, &[0.5; N_DENSE], -0.25, 1.5)
    }

    #[test]
    fn round_trips_through_bytes() {
        let m = tiny();
        let b = m.to_bytes();
        assert_eq!(b.len(), 28 + 4 * N_DENSE + 256);
        assert_eq!(Model::from_bytes(&b).unwrap(), m);
    }

    #[test]
    fn rejects_truncated_or_foreign_files() {
        let b = tiny().to_bytes();
        assert!(Model::from_bytes(&b[..b.len() - 1])
            .unwrap_err()
            .to_string()
            .contains("expected"));
        assert!(Model::from_bytes(b"hello world, this is not a model").is_err());
        assert!(Model::from_bytes(&[]).is_err());
    }

    #[test]
    fn quantisation_keeps_weights_close() {
        let m = tiny();
        let back = m.weights[0] as f32 * m.scale;
        assert!((back - (-2.0)).abs() < m.scale);
    }
}
