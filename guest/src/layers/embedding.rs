//! Token and position embeddings, summed.

use crate::error::Result;
use crate::gguf::Gguf;
use crate::tensor::{FileBuffer, Weights};
use std::sync::Arc;

/// `x[t] = wte[token[t]] + wpe[start + t]`.
pub struct Embedding {
    /// `[V, C]`, also the LM head when the model ties them.
    pub token: Weights,
    /// `[n_ctx, C]`
    position: Weights,
}

impl Embedding {
    /// Loads `token_embd.weight` `[V, C]` and `position_embd.weight` `[n_ctx, C]`.
    pub fn load(gguf: &Gguf, file: &Arc<FileBuffer>, vocab: usize, n_ctx: usize, c: usize) -> Result<Self> {
        Ok(Embedding {
            token: Weights::load(gguf, file, "token_embd.weight", &[vocab, c])?,
            position: Weights::load(gguf, file, "position_embd.weight", &[n_ctx, c])?,
        })
    }

    /// tokens: `[T]` (ids already checked against V) at positions `start..start+T` → `[T, C]`.
    pub fn forward(&self, tokens: &[u32], start: usize) -> Vec<f32> {
        let c = self.token.shape()[1];
        let mut x = Vec::with_capacity(tokens.len() * c);
        for (t, &id) in tokens.iter().enumerate() {
            let position = self.position.row(start + t);
            x.extend(self.token.row(id as usize).iter().zip(position).map(|(a, b)| a + b));
        }
        x
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.token.owned_bytes() + self.position.owned_bytes()
    }
}
