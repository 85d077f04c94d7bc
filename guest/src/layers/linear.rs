//! A fully connected layer with bias, weights stored `[out, in]` as llama.cpp writes them.

use crate::error::Result;
use crate::tensor::{Matrix, QuantizedRows, Vector, WeightFile};

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

    /// x: `[T, in]` → y `[T, out]`; a Q8_0 weight's inputs are quantized into `quantized`.
    pub fn forward(&self, x: &[f32], t: usize, y: &mut [f32], quantized: &mut QuantizedRows) {
        self.weight.matmul(y, x, Some(self.bias.values()), t, quantized);
    }

    /// Width of an output row.
    pub fn out_features(&self) -> usize {
        self.weight.rows()
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.weight.owned_bytes() + self.bias.owned_bytes()
    }
}
