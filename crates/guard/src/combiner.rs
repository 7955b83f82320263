//! The second training stage: a logistic regression over the n-gram model's out-of-sample
//! logit and the dense inputs (signature families, obfuscation), fitted by Newton's method
//! on the validation split, with a Gaussian prior on the dense weights.

use crate::model::N_DENSE;

/// The second stage: `logit = a * ngram_logit + dense · inputs + c`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Combiner {
    pub(crate) a: f32,
    pub(crate) dense: [f32; N_DENSE],
    pub(crate) c: f32,
}

/// Prior mean of each signature family's weight, and how strongly it is held there: a
/// family seldom seen in the validation data keeps about this weight, a frequent one gets
/// what the data says.
const SIGNATURE_PRIOR: f64 = 2.0;
const OBFUSCATION_PRIOR: f64 = 0.5;
const PRIOR_STRENGTH: f64 = 2.0;

/// Fits the combiner by Newton's method (logistic regression on 1 + N_DENSE + 1 inputs)
/// with a Gaussian prior on the dense weights.
#[allow(clippy::needless_range_loop)] // matrix code reads best with indices
pub(crate) fn fit_combiner(rows: &[(f32, [f32; N_DENSE], bool)]) -> Combiner {
    const K: usize = N_DENSE + 2;
    let mut mean = [0f64; K];
    let mut strength = [1e-4f64; K];
    mean[0] = 1.0;
    for j in 0..N_DENSE {
        mean[1 + j] = if j + 1 == N_DENSE {
            OBFUSCATION_PRIOR
        } else {
            SIGNATURE_PRIOR
        };
        strength[1 + j] = PRIOR_STRENGTH;
    }
    let mut theta = mean;
    let input = |r: &(f32, [f32; N_DENSE], bool)| -> [f64; K] {
        let mut x = [0f64; K];
        x[0] = f64::from(r.0);
        for j in 0..N_DENSE {
            x[1 + j] = f64::from(r.1[j]);
        }
        x[K - 1] = 1.0;
        x
    };
    for _ in 0..25 {
        let mut grad = [0f64; K];
        let mut hess = [[0f64; K]; K];
        for r in rows {
            let x = input(r);
            let z: f64 = x.iter().zip(&theta).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let g = p - f64::from(u8::from(r.2));
            let w = (p * (1.0 - p)).max(1e-9);
            for i in 0..K {
                grad[i] += g * x[i];
                for j in 0..K {
                    hess[i][j] += w * x[i] * x[j];
                }
            }
        }
        for i in 0..K {
            grad[i] += strength[i] * (theta[i] - mean[i]);
            hess[i][i] += strength[i];
        }
        let Some(step) = solve(hess, grad) else { break };
        for i in 0..K {
            theta[i] -= step[i];
        }
        if step.iter().all(|s| s.abs() < 1e-6) {
            break;
        }
    }
    let mut dense = [0f32; N_DENSE];
    for j in 0..N_DENSE {
        dense[j] = theta[1 + j] as f32;
    }
    Combiner {
        a: theta[0] as f32,
        dense,
        c: theta[K - 1] as f32,
    }
}

/// Solves `m x = b` by Gaussian elimination with partial pivoting.
#[allow(clippy::needless_range_loop)] // matrix code reads best with indices
fn solve<const K: usize>(mut m: [[f64; K]; K], mut b: [f64; K]) -> Option<[f64; K]> {
    for col in 0..K {
        let piv = (col..K).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[piv][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..K {
            let f = m[row][col] / m[col][col];
            for k in col..K {
                m[row][k] -= f * m[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0f64; K];
    for i in (0..K).rev() {
        let s: f64 = (i + 1..K).map(|k| m[i][k] * x[k]).sum();
        x[i] = (b[i] - s) / m[i][i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_small_system() {
        let x = solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-9 && (x[1] - 1.4).abs() < 1e-9);
        assert!(solve([[0.0, 0.0], [0.0, 0.0]], [1.0, 1.0]).is_none());
    }

    #[test]
    fn learns_a_useful_signature_and_keeps_rare_ones_near_the_prior() {
        let mut rows = Vec::new();
        for i in 0..400 {
            let mut d = [0f32; N_DENSE];
            let y = i % 2 == 0;
            // Family 0 fires on most injections and on no benign text; the others never fire.
            d[0] = f32::from(u8::from(y && i % 10 != 0));
            rows.push((if y { 0.5 } else { -0.5 }, d, y));
        }
        let c = fit_combiner(&rows);
        assert!(c.dense[0] > SIGNATURE_PRIOR as f32, "{c:?}");
        assert!((c.dense[1] - SIGNATURE_PRIOR as f32).abs() < 1e-3, "{c:?}");
        assert!(c.a > 0.0);
    }
}
