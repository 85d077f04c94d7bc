//! Causal multi-head self-attention with a KV cache.

pub mod output;
pub mod qkv;
pub mod scores;

use crate::cache::LayerCache;
use crate::error::Result;
use crate::gguf::Gguf;
use crate::layers::{Trace, record};
use crate::tensor::FileBuffer;
use output::Output;
use qkv::Qkv;
use std::sync::Arc;

/// `proj(softmax(q·kᵀ/√D + mask)·v)` over H heads.
pub struct Attention {
    qkv: Qkv,
    output: Output,
    n_head: usize,
}

impl Attention {
    /// Loads `blk.{block}.attn_qkv` and `blk.{block}.attn_output`.
    pub fn load(gguf: &Gguf, file: &Arc<FileBuffer>, block: usize, c: usize, n_head: usize) -> Result<Self> {
        Ok(Attention { qkv: Qkv::load(gguf, file, block, c)?, output: Output::load(gguf, file, block, c)?, n_head })
    }

    /// x: `[T, C]` (normalised) at positions `start..start+T` → `[T, C]`. Appends this call's
    /// keys and values to `cache`, which then holds S = start + T positions.
    pub fn forward(
        &self,
        x: &[f32],
        t: usize,
        cache: &mut LayerCache,
        start: usize,
        mut trace: Option<&mut Trace>,
    ) -> Vec<f32> {
        let c = x.len() / t;
        let qkv = self.qkv.forward(x, t); // [T, 3C]
        record(&mut trace, "qkv", &[t, 3 * c], &qkv);
        cache.append(&qkv, t);
        let s = start + t;
        let probs = scores::causal_softmax(&qkv, cache.keys(), t, start, c, self.n_head, &mut trace); // [H, T, S]
        let context = output::weighted_values(&probs, cache.values(), t, s, c, self.n_head); // [T, C]
        self.output.forward(&context, t)
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.qkv.owned_bytes() + self.output.owned_bytes()
    }
}
