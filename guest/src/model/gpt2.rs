//! The GPT-2 network: embeddings, blocks, final LayerNorm and the (tied or separate) LM head.

use crate::cache::KvCache;
use crate::error::Result;
use crate::layers::embedding::Embedding;
use crate::layers::layer_norm::LayerNorm;
use crate::layers::transformer::Block;
use crate::layers::{SequenceRows, Trace, record};
use crate::model::config::Config;
use crate::tensor::{Matrix, WeightFile};

/// One sequence's part of a forward pass: its next tokens and its KV cache.
pub struct Segment<'a> {
    /// `[T]`
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
}

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
    pub fn load(weights: &WeightFile, config: Config) -> Result<Self> {
        let (v, c) = (config.n_vocab, config.n_embd);
        let embedding = Embedding::load(weights, v, config.n_ctx, c)?;
        let blocks = (0..config.n_layer).map(|i| Block::load(weights, &config, i)).collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::load(weights, "output_norm", c, config.eps)?;
        let lm_head = match weights.gguf.tensor("output.weight") {
            Some(_) => Some(Matrix::load(weights, "output.weight", v, c)?),
            None => None,
        };
        Ok(Gpt2 { config, embedding, blocks, ln_f, lm_head })
    }

    /// One forward pass over the next tokens of several sequences at once: each segment's
    /// tokens `[T_i]` (ids below V) sit at the positions after its own cache, and their rows go
    /// through every weight matrix together (`[ΣT_i, C]`), so each weight is read once for the
    /// whole batch. Returns logits `[B, V]`, the last position of each segment, or with
    /// `all_positions` `[ΣT_i, V]`. Fills each cache with T_i more positions; the caller keeps
    /// every cache within the context length.
    pub fn forward(
        &self,
        segments: &mut [Segment<'_>],
        all_positions: bool,
        mut trace: Option<&mut Trace>,
    ) -> Vec<f32> {
        let (c, v) = (self.config.n_embd, self.config.n_vocab);
        let t: usize = segments.iter().map(|s| s.tokens.len()).sum();
        let mut x = Vec::with_capacity(t * c); // [T, C]
        for segment in segments.iter() {
            x.extend(self.embedding.forward(segment.tokens, segment.cache.len()));
        }
        record(&mut trace, "embeddings", &[t, c], &x);
        if let Some(tr) = trace.as_deref_mut() {
            tr.set_prefix("b0.");
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let mut rows: Vec<SequenceRows<'_>> = segments
                .iter_mut()
                .map(|s| SequenceRows { t: s.tokens.len(), start: s.cache.len(), cache: &mut s.cache.layers[i] })
                .collect();
            // Only block 0 is traced: its activations are the reference checkpoints.
            let block_trace = if i == 0 { trace.as_deref_mut() } else { None };
            block.forward(&mut x, &mut rows, block_trace);
        }
        if let Some(tr) = trace.as_deref_mut() {
            tr.set_prefix("");
        }
        let mut last = Vec::with_capacity(segments.len() * c); // [B, C]
        let mut end = 0;
        for segment in segments.iter_mut() {
            end += segment.tokens.len();
            segment.cache.advance(segment.tokens.len());
            last.extend_from_slice(&x[(end - 1) * c..end * c]);
        }
        let (rows, selected) = if all_positions { (t, &x) } else { (segments.len(), &last) };
        let normed = self.ln_f.forward(selected); // [rows, C]
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
    use super::Segment;
    use crate::cache::KvCache;
    use crate::model::{LoadOptions, Model};

    fn forward_one(model: &Model, tokens: &[u32], cache: &mut KvCache, all_positions: bool) -> Vec<f32> {
        model.gpt2.forward(&mut [Segment { tokens, cache }], all_positions, None)
    }

    fn tiny() -> Model {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny-synthetic/model-f32.gguf");
        Model::open(path, LoadOptions::default()).expect("the tiny model loads")
    }

    #[test]
    fn prefill_then_one_step_equals_prefill_of_the_whole() {
        let model = tiny();
        let tokens = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13];
        let (n, v) = (tokens.len() - 1, model.gpt2.config.n_vocab);
        let whole = forward_one(&model, &tokens, &mut model.new_cache(tokens.len()).unwrap(), true);
        assert_eq!(whole.len(), tokens.len() * v);
        // Prefill in uneven chunks, then decode the last token alone.
        let mut cache = model.new_cache(tokens.len()).unwrap();
        let mut last = Vec::new();
        for chunk in [&tokens[..3], &tokens[3..n]] {
            last = forward_one(&model, chunk, &mut cache, false);
        }
        let step = forward_one(&model, &tokens[n..], &mut cache, false);
        assert_eq!(cache.len(), tokens.len());
        for (name, got, row) in [("prefill", &last, n - 1), ("step", &step, n)] {
            let want = &whole[row * v..(row + 1) * v];
            let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{name}: logits differ by {worst}");
        }
    }

    #[test]
    fn a_batch_gives_each_sequence_its_own_logits() {
        batch_against_alone(&tiny(), 1e-5);
    }

    #[test]
    fn a_q8_0_batch_gives_each_sequence_the_bits_it_gets_alone() {
        // The Q8_0 product takes each output through the same integer and float steps however
        // many rows it has.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/kjv-fortunes-18m/model-q8_0.gguf");
        batch_against_alone(&Model::open(path, LoadOptions::default()).expect("the bundled Q8_0 model loads"), 0.0);
    }

    /// Runs three prompts alone and as one batch; every logit within `tolerance`.
    fn batch_against_alone(model: &Model, tolerance: f32) {
        let v = model.gpt2.config.n_vocab;
        let prompts: [&[u32]; 3] = [&[464, 2068, 7586], &[13, 198, 464, 318, 257, 1332, 13], &[50256]];
        let alone: Vec<Vec<f32>> =
            prompts.iter().map(|p| forward_one(model, p, &mut model.new_cache(p.len() + 1).unwrap(), false)).collect();
        let mut caches: Vec<KvCache> = prompts.iter().map(|p| model.new_cache(p.len() + 1).unwrap()).collect();
        let mut segments: Vec<Segment<'_>> =
            prompts.iter().zip(caches.iter_mut()).map(|(tokens, cache)| Segment { tokens, cache }).collect();
        let together = model.gpt2.forward(&mut segments, false, None);
        assert_eq!(together.len(), prompts.len() * v);
        for (i, want) in alone.iter().enumerate() {
            let got = &together[i * v..(i + 1) * v];
            let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= tolerance, "sequence {i}: logits differ by {worst}");
        }
        for (cache, prompt) in caches.iter().zip(prompts) {
            assert_eq!(cache.len(), prompt.len());
        }
    }
}
