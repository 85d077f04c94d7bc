//! Causal multi-head self-attention with a KV cache.

pub mod output;
pub mod qkv;
pub mod scores;

use crate::error::Result;
use crate::layers::{SequenceRows, Trace, record};
use crate::tensor::WeightFile;
use output::Output;
use qkv::Qkv;

/// `proj(softmax(q·kᵀ/√D + mask)·v)` over H heads.
pub struct Attention {
    qkv: Qkv,
    output: Output,
    n_head: usize,
}

impl Attention {
    /// Loads `blk.{block}.attn_qkv` and `blk.{block}.attn_output`.
    pub fn load(weights: &WeightFile, block: usize, c: usize, n_head: usize) -> Result<Self> {
        Ok(Attention { qkv: Qkv::load(weights, block, c)?, output: Output::load(weights, block, c)?, n_head })
    }

    /// x: `[T, C]` (normalised), the rows of each sequence in `rows` one after another → `[T, C]`.
    /// The projections take all rows at once; each sequence attends over its own cache, which
    /// receives its keys and values and then holds S = start + T_i positions.
    pub fn forward(&self, x: &[f32], rows: &mut [SequenceRows<'_>], mut trace: Option<&mut Trace>) -> Vec<f32> {
        let t: usize = rows.iter().map(|r| r.t).sum();
        let c = x.len() / t;
        let qkv = self.qkv.forward(x, t); // [T, 3C]
        record(&mut trace, "qkv", &[t, 3 * c], &qkv);
        let mut context = Vec::with_capacity(t * c); // [T, C]
        let mut first = 0;
        for seq in rows.iter_mut() {
            let qkv = &qkv[first * 3 * c..(first + seq.t) * 3 * c]; // [T_i, 3C]
            first += seq.t;
            seq.cache.append(qkv, seq.t);
            let s = seq.start + seq.t;
            let probs = scores::causal_softmax(qkv, seq.cache.keys(), seq.t, seq.start, c, self.n_head, &mut trace); // [H, T_i, S]
            context.extend(output::weighted_values(&probs, seq.cache.values(), seq.t, s, c, self.n_head)); // [T_i, C]
        }
        self.output.forward(&context, t)
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.qkv.owned_bytes() + self.output.owned_bytes()
    }
}
