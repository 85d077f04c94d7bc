//! The GPT-2 network: embeddings, blocks, final LayerNorm and the (tied or separate) LM head.

use crate::cache::KvCache;
use crate::error::Result;
use crate::gguf::Gguf;
use crate::layers::embedding::Embedding;
use crate::layers::layer_norm::LayerNorm;
use crate::layers::transformer::Block;
use crate::layers::{Trace, record};
use crate::model::config::Config;
use crate::tensor::{FileBuffer, Matrix};
use std::sync::Arc;

/// GPT-2 with its weights.
pub struct Gpt2 {
    pub config: Config,
    embedding: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    /// `[V, C]`; None when the head is tied to the token embedding.
    lm_head: Option<Matrix>,
}

impl Gpt2 {
    /// Loads every tensor, checking each shape against `config`.
    pub fn load(gguf: &Gguf, file: &Arc<FileBuffer>, config: Config) -> Result<Self> {
        let (v, c) = (config.n_vocab, config.n_embd);
        let embedding = Embedding::load(gguf, file, v, config.n_ctx, c)?;
        let blocks = (0..config.n_layer).map(|i| Block::load(gguf, file, &config, i)).collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::load(gguf, file, "output_norm", c, config.eps)?;
        let lm_head = match gguf.tensor("output.weight") {
            Some(_) => Some(Matrix::load(gguf, file, "output.weight", v, c)?),
            None => None,
        };
        Ok(Gpt2 { config, embedding, blocks, ln_f, lm_head })
    }

    /// tokens: `[T]` (ids below V) at the positions after `cache` → logits `[T, V]` when
    /// `all_positions`, else `[1, V]` for the last token. Fills `cache` with T more positions;
    /// the caller keeps `cache.len() + T` within the context length.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_positions: bool,
        mut trace: Option<&mut Trace>,
    ) -> Vec<f32> {
        let (t, c, v) = (tokens.len(), self.config.n_embd, self.config.n_vocab);
        let start = cache.len();
        let mut x = self.embedding.forward(tokens, start); // [T, C]
        record(&mut trace, "embeddings", &[t, c], &x);
        if let Some(tr) = trace.as_deref_mut() {
            tr.set_prefix("b0.");
        }
        for (i, (block, layer_cache)) in self.blocks.iter().zip(cache.layers.iter_mut()).enumerate() {
            // Only block 0 is traced: its activations are the reference checkpoints.
            let block_trace = if i == 0 { trace.as_deref_mut() } else { None };
            block.forward(&mut x, t, layer_cache, start, block_trace);
        }
        if let Some(tr) = trace.as_deref_mut() {
            tr.set_prefix("");
        }
        cache.advance(t);
        let rows = if all_positions { t } else { 1 };
        let last = &x[(t - rows) * c..];
        let normed = self.ln_f.forward(last); // [rows, C]
        let head = self.lm_head.as_ref().unwrap_or(&self.embedding.token);
        let mut logits = vec![0.0; rows * v];
        head.matmul(&mut logits, &normed, None, rows);
        record(&mut trace, "logits", &[rows, v], &logits);
        logits
    }

    /// Number of weights.
    pub fn parameter_count(&self) -> u64 {
        let c = self.config.n_embd as u64;
        let f = self.config.n_ff as u64;
        let per_block = 4 * c + (3 * c * c + 3 * c) + (c * c + c) + (f * c + f) + (c * f + c);
        let head = if self.lm_head.is_some() { self.config.n_vocab as u64 * c } else { 0 };
        (self.config.n_vocab as u64 + self.config.n_ctx as u64) * c
            + self.config.n_layer as u64 * per_block
            + 2 * c
            + head
    }

    /// Bytes of guest memory the weights add beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.embedding.owned_bytes()
            + self.blocks.iter().map(Block::owned_bytes).sum::<usize>()
            + self.ln_f.owned_bytes()
            + self.lm_head.as_ref().map_or(0, Matrix::owned_bytes)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Model;

    fn tiny() -> Model {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny-synthetic/model-f32.gguf");
        Model::open(path).expect("the tiny model loads")
    }

    #[test]
    fn prefill_then_one_step_equals_prefill_of_the_whole() {
        let model = tiny();
        let tokens = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13];
        let (n, v) = (tokens.len() - 1, model.gpt2.config.n_vocab);
        let whole = model.gpt2.forward(&tokens, &mut model.new_cache(tokens.len()).unwrap(), true, None);
        assert_eq!(whole.len(), tokens.len() * v);
        // Prefill in uneven chunks, then decode the last token alone.
        let mut cache = model.new_cache(tokens.len()).unwrap();
        let mut last = Vec::new();
        for chunk in [&tokens[..3], &tokens[3..n]] {
            last = model.gpt2.forward(chunk, &mut cache, false, None);
        }
        let step = model.gpt2.forward(&tokens[n..], &mut cache, false, None);
        assert_eq!(cache.len(), tokens.len());
        for (name, got, row) in [("prefill", &last, n - 1), ("step", &step, n)] {
            let want = &whole[row * v..(row + 1) * v];
            let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{name}: logits differ by {worst}");
        }
    }
}
