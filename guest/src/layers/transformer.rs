//! One pre-norm transformer block: attention and MLP, each added to the residual stream.

use crate::error::Result;
use crate::layers::activations::{Activations, sized};
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

    /// `activations.x`: `[T, C]` residual stream of the sequences in `rows` (T in all), one after
    /// another, updated in place; each sequence's cache receives its keys and values.
    pub fn forward<'a>(
        &self,
        activations: &mut Activations,
        t: usize,
        rows: impl Iterator<Item = SequenceRows<'a>>,
        mut trace: Option<&mut Trace>,
    ) {
        let c = self.ln_1.width();
        let Activations { x, normed, out, scratch, .. } = activations;
        let (x, h, a) = (&mut x[..t * c], sized(normed, t * c), sized(out, t * c)); // [T, C] each
        self.ln_1.forward(x, h);
        record(&mut trace, "ln_1", &[t, c], h);
        self.attn.forward(h, t, rows, a, scratch, trace.as_deref_mut());
        record(&mut trace, "attn_out", &[t, c], a);
        add_in_place(x, a);
        self.ln_2.forward(x, h);
        record(&mut trace, "ln_2", &[t, c], h);
        self.ffn.forward(h, t, a, scratch);
        record(&mut trace, "mlp_out", &[t, c], a);
        add_in_place(x, a);
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
