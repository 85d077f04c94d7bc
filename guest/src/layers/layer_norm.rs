//! Layer normalisation over the embedding dimension, with the epsilon from the model file.

use crate::error::Result;
use crate::tensor::{Vector, WeightFile};

/// `y = (x − mean) / sqrt(var + eps) · weight + bias`, per row.
pub struct LayerNorm {
    /// `[C]`
    weight: Vector,
    /// `[C]`
    bias: Vector,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias`, both `[C]`.
    pub fn load(weights: &WeightFile, prefix: &str, c: usize, eps: f32) -> Result<Self> {
        Ok(LayerNorm {
            weight: Vector::load(weights, &format!("{prefix}.weight"), c)?,
            bias: Vector::load(weights, &format!("{prefix}.bias"), c)?,
            eps,
        })
    }

    /// x: `[T, C]` → y `[T, C]`. Mean and variance are summed in f64.
    pub fn forward(&self, x: &[f32], y: &mut [f32]) {
        let (weight, bias) = (self.weight.values(), self.bias.values());
        let c = weight.len();
        for (row, out) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
            let inv_std = (1.0 / (var + self.eps as f64).sqrt()) as f32;
            let mean = mean as f32;
            for i in 0..c {
                out[i] = (row[i] - mean) * inv_std * weight[i] + bias[i];
            }
        }
    }

    /// C, the width of a row.
    pub fn width(&self) -> usize {
        self.weight.values().len()
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.weight.owned_bytes() + self.bias.owned_bytes()
    }
}
