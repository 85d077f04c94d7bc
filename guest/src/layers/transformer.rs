//! One pre-norm transformer block: attention and MLP, each added to the residual stream.

use crate::error::Result;
use crate::layers::attention::Attention;
use crate::layers::ffn::Ffn;
use crate::layers::layer_norm::LayerNorm;
use crate::layers::{SequenceRows, Trace, record};
use crate::model::config::Config;
use crate::tensor::WeightFile;

/// `x += attn(ln_1(x)); x += ffn(ln_2(x))`.
pub struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    ffn: Ffn,
}

impl Block {
    /// Loads the tensors of `blk.{index}`.
    pub fn load(weights: &WeightFile, config: &Config, index: usize) -> Result<Self> {
        let (c, eps) = (config.n_embd, config.eps);
        Ok(Block {
            ln_1: LayerNorm::load(weights, &format!("blk.{index}.attn_norm"), c, eps)?,
            attn: Attention::load(weights, index, c, config.n_head)?,
            ln_2: LayerNorm::load(weights, &format!("blk.{index}.ffn_norm"), c, eps)?,
            ffn: Ffn::load(weights, index, c, config.n_ff)?,
        })
    }

    /// x: `[T, C]` residual stream of the sequences in `rows`, one after another, updated in
    /// place; each sequence's cache receives its keys and values.
    pub fn forward(&self, x: &mut [f32], rows: &mut [SequenceRows<'_>], mut trace: Option<&mut Trace>) {
        let t: usize = rows.iter().map(|r| r.t).sum();
        let c = x.len() / t;
        let h = self.ln_1.forward(x); // [T, C]
        record(&mut trace, "ln_1", &[t, c], &h);
        let a = self.attn.forward(&h, rows, trace.as_deref_mut()); // [T, C]
        record(&mut trace, "attn_out", &[t, c], &a);
        add_in_place(x, &a);
        let h = self.ln_2.forward(x); // [T, C]
        record(&mut trace, "ln_2", &[t, c], &h);
        let m = self.ffn.forward(&h, t); // [T, C]
        record(&mut trace, "mlp_out", &[t, c], &m);
        add_in_place(x, &m);
        record(&mut trace, "out", &[t, c], x);
    }

    /// Bytes of guest memory the block adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.ln_1.owned_bytes() + self.attn.owned_bytes() + self.ln_2.owned_bytes() + self.ffn.owned_bytes()
    }
}

/// `x[i] += y[i]`.
fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}
