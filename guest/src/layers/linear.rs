//! A fully connected layer with bias, weights stored `[out, in]` as llama.cpp writes them.

use crate::error::Result;
use crate::gguf::Gguf;
use crate::tensor::{FileBuffer, Weights, kernels};
use std::sync::Arc;

/// `y = x · Wᵀ + b`.
pub struct Linear {
    /// `[out, in]`
    weight: Weights,
    /// `[out]`
    bias: Weights,
}

impl Linear {
    /// Loads `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`.
    pub fn load(gguf: &Gguf, file: &Arc<FileBuffer>, prefix: &str, out: usize, inp: usize) -> Result<Self> {
        Ok(Linear {
            weight: Weights::load(gguf, file, &format!("{prefix}.weight"), &[out, inp])?,
            bias: Weights::load(gguf, file, &format!("{prefix}.bias"), &[out])?,
        })
    }

    /// x: `[T, in]` → `[T, out]`.
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let (out, inp) = (self.weight.shape()[0], self.weight.shape()[1]);
        let mut y = vec![0.0; t * out];
        kernels::matmul(&mut y, x, self.weight.data(), Some(self.bias.data()), t, inp, out);
        y
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.weight.owned_bytes() + self.bias.owned_bytes()
    }
}
