//! Attention-weighted values and the output projection.

use crate::cache::LayerCache;
use crate::error::Result;
use crate::layers::linear::Linear;
use crate::tensor::{QuantizedRows, WeightFile, kernels};

/// probs: `[H, T, S]`, the cache's values `[S, D]` per head → context `[T, C]`, heads side by
/// side: `context[t, h·D + e] = Σ_j probs[h, t, j] · values_h[j, e]`, where query t (at position
/// S − T + t) sums over the keys it sees, j ≤ S − T + t.
pub fn weighted_values(probs: &[f32], cache: &LayerCache, t: usize, s: usize, n_head: usize, context: &mut [f32]) {
    let c = context.len() / t;
    let d = c / n_head;
    for h in 0..n_head {
        let values = cache.values(h);
        for i in 0..t {
            let seen = s - t + i + 1;
            let out = &mut context[i * c + h * d..][..d];
            kernels::weighted_sum(out, &probs[(h * t + i) * s..][..seen], values, d);
        }
    }
}

/// `y = context · W_oᵀ + b`.
pub struct Output {
    /// `[C, C]`
    linear: Linear,
}

impl Output {
    /// Loads `blk.{block}.attn_output`.
    pub fn load(weights: &WeightFile, block: usize, c: usize) -> Result<Self> {
        Ok(Output { linear: Linear::load(weights, &format!("blk.{block}.attn_output"), c, c)? })
    }

    /// context: `[T, C]` → y `[T, C]`.
    pub fn forward(&self, context: &[f32], t: usize, y: &mut [f32], quantized: &mut QuantizedRows) {
        self.linear.forward(context, t, y, quantized);
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.linear.owned_bytes()
    }
}
