//! GPT-2 hyper-parameters, read from `gpt2.*` metadata and checked for consistency.

use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// The shape of a GPT-2 model.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub n_vocab: usize,
    pub n_ctx: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_ff: usize,
    pub eps: f32,
}

/// Largest value accepted for any single dimension; guards the products below.
const MAX_DIM: u32 = 1 << 20;

impl Config {
    /// Reads the hyper-parameters; `n_vocab` comes from the tokenizer.
    pub fn from_gguf(gguf: &Gguf, n_vocab: usize) -> Result<Self> {
        match gguf.str("general.architecture")? {
            Some("gpt2") => {}
            other => {
                let got = other.map_or("nothing".to_string(), |s| format!("{s:?}"));
                return Err(Error::model(format!("general.architecture must be \"gpt2\", got {got}")));
            }
        }
        let dim = |key: &str| -> Result<usize> {
            let v = gguf.u32(key)?;
            if v == 0 || v > MAX_DIM {
                return Err(Error::model(format!("metadata {key} is {v}, expected 1..={MAX_DIM}")));
            }
            Ok(v as usize)
        };
        let config = Config {
            n_vocab,
            n_ctx: dim("gpt2.context_length")?,
            n_embd: dim("gpt2.embedding_length")?,
            n_layer: dim("gpt2.block_count")?,
            n_head: dim("gpt2.attention.head_count")?,
            n_ff: dim("gpt2.feed_forward_length")?,
            eps: gguf.f32("gpt2.attention.layer_norm_epsilon")?,
        };
        if !config.n_embd.is_multiple_of(config.n_head) {
            return Err(Error::model(format!(
                "embedding length {} is not a multiple of the head count {}",
                config.n_embd, config.n_head
            )));
        }
        if !(config.eps > 0.0 && config.eps < 1.0) {
            return Err(Error::model(format!("layer_norm_epsilon {} is outside (0, 1)", config.eps)));
        }
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}
