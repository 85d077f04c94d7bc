//! A fully connected layer with bias, weights stored `[out, in]` as llama.cpp writes them.

use crate::error::Result;
use crate::tensor::{Matrix, Vector, WeightFile};

/// `y = x · Wᵀ + b`.
pub struct Linear {
    /// `[out, in]`
    weight: Matrix,
    /// `[out]`
    bias: Vector,
}

impl Linear {
    /// Loads `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`.
    pub fn load(weights: &WeightFile, prefix: &str, out: usize, inp: usize) -> Result<Self> {
        Ok(Linear {
            weight: Matrix::load(weights, &format!("{prefix}.weight"), out, inp)?,
            bias: Vector::load(weights, &format!("{prefix}.bias"), out)?,
        })
    }

    /// x: `[T, in]` → `[T, out]`.
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let mut y = vec![0.0; t * self.weight.rows()];
        self.weight.matmul(&mut y, x, Some(self.bias.values()), t);
        y
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.weight.owned_bytes() + self.bias.owned_bytes()
    }
}
