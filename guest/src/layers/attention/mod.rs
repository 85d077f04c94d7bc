//! Causal multi-head self-attention with a KV cache.

pub mod output;
pub mod qkv;
pub mod scores;

use crate::error::Result;
use crate::layers::activations::{Scratch, sized};
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

    /// x: `[T, C]` (normalised), the rows of the sequences in `rows` one after another (T_i each,
    /// T in all) → y `[T, C]`. The projections take all rows at once; each sequence attends over
    /// its own cache, which receives its keys and values and then holds S = start + T_i
    /// positions.
    pub fn forward<'a>(
        &self,
        x: &[f32],
        t: usize,
        rows: impl Iterator<Item = SequenceRows<'a>>,
        y: &mut [f32],
        scratch: &mut Scratch,
        mut trace: Option<&mut Trace>,
    ) {
        let c = x.len() / t;
        let qkv = sized(&mut scratch.qkv, t * 3 * c); // [T, 3C]
        self.qkv.forward(x, t, qkv, &mut scratch.quantized);
        record(&mut trace, "qkv", &[t, 3 * c], qkv);
        let context = sized(&mut scratch.context, t * c); // [T, C]
        let mut first = 0;
        for seq in rows {
            let qkv = &qkv[first * 3 * c..(first + seq.t) * 3 * c]; // [T_i, 3C]
            seq.cache.append(qkv, seq.t);
            let s = seq.start + seq.t;
            let probs = sized(&mut scratch.probs, self.n_head * seq.t * s); // [H, T_i, S]
            scores::causal_softmax(qkv, seq.cache, seq.t, seq.start, self.n_head, probs, &mut trace);
            let context = &mut context[first * c..(first + seq.t) * c]; // [T_i, C]
            output::weighted_values(probs, seq.cache, seq.t, s, self.n_head, context);
            first += seq.t;
        }
        self.output.forward(context, t, y, &mut scratch.quantized);
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.qkv.owned_bytes() + self.output.owned_bytes()
    }
}
