//! The fused query/key/value projection.

use crate::error::Result;
use crate::layers::linear::Linear;
use crate::tensor::{QuantizedRows, WeightFile};

/// `qkv = x · W_qkvᵀ + b`; each output row is `q | k | v`, each C wide with head h at
/// columns `h·D..(h+1)·D`.
pub struct Qkv {
    /// `[3C, C]`
    linear: Linear,
}

impl Qkv {
    /// Loads `blk.{block}.attn_qkv`.
    pub fn load(weights: &WeightFile, block: usize, c: usize) -> Result<Self> {
        Ok(Qkv { linear: Linear::load(weights, &format!("blk.{block}.attn_qkv"), 3 * c, c)? })
    }

    /// x: `[T, C]` → qkv `[T, 3C]`.
    pub fn forward(&self, x: &[f32], t: usize, qkv: &mut [f32], quantized: &mut QuantizedRows) {
        self.linear.forward(x, t, qkv, quantized);
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.linear.owned_bytes()
    }
}
