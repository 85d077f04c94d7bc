//! Token and position embeddings, summed.

use crate::error::Result;
use crate::tensor::{Matrix, WeightFile};

/// `x[t] = wte[token[t]] + wpe[start + t]`.
pub struct Embedding {
    /// `[V, C]`, also the LM head when the model ties them.
    pub token: Matrix,
    /// `[n_ctx, C]`
    position: Matrix,
}

impl Embedding {
    /// Loads `token_embd.weight` `[V, C]` and `position_embd.weight` `[n_ctx, C]`.
    pub fn load(weights: &WeightFile, vocab: usize, n_ctx: usize, c: usize) -> Result<Self> {
        Ok(Embedding {
            token: Matrix::load(weights, "token_embd.weight", vocab, c)?,
            position: Matrix::load(weights, "position_embd.weight", n_ctx, c)?,
        })
    }

    /// tokens: `[T]` (ids already checked against V) at positions `start..start+T` → x `[T, C]`;
    /// `position` `[C]` holds one position's embedding at a time.
    pub fn forward(&self, tokens: &[u32], start: usize, x: &mut [f32], position: &mut [f32]) {
        let c = self.token.cols();
        for (t, (&id, row)) in tokens.iter().zip(x.chunks_exact_mut(c)).enumerate() {
            self.token.decode_rows(id as usize, row);
            self.position.decode_rows(start + t, position);
            row.iter_mut().zip(&*position).for_each(|(a, b)| *a += b);
        }
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.token.owned_bytes() + self.position.owned_bytes()
    }
}
