//! The GPT-2 network: embeddings, blocks, final LayerNorm and the (tied or separate) LM head.

use crate::cache::KvCache;
use crate::error::Result;
use crate::layers::activations::{Activations, sized};
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
    /// `all_positions` `[ΣT_i, V]`, held in `activations`, whose buffers the pass uses and
    /// keeps. Fills each cache with T_i more positions; the caller keeps every cache within the
    /// context length.
    pub fn forward<'a>(
        &self,
        segments: &mut [Segment<'_>],
        all_positions: bool,
        activations: &'a mut Activations,
        mut trace: Option<&mut Trace>,
    ) -> &'a mut [f32] {
        let (c, v) = (self.config.n_embd, self.config.n_vocab);
        let t: usize = segments.iter().map(|s| s.tokens.len()).sum();
        let x = sized(&mut activations.x, t * c); // [T, C]
        let position = sized(&mut activations.scratch.position, c);
        let mut first = 0;
        for segment in segments.iter() {
            let rows = &mut x[first * c..(first + segment.tokens.len()) * c];
            self.embedding.forward(segment.tokens, segment.cache.len(), rows, position);
            first += segment.tokens.len();
        }
        record(&mut trace, "embeddings", &[t, c], x);
        if let Some(tr) = trace.as_deref_mut() {
            tr.set_prefix("b0.");
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let rows = segments.iter_mut().map(|s| SequenceRows {
                t: s.tokens.len(),
                start: s.cache.len(),
                cache: &mut s.cache.layers[i],
            });
            // Only block 0 is traced: its activations are the reference checkpoints.
            let block_trace = if i == 0 { trace.as_deref_mut() } else { None };
            block.forward(activations, t, rows, block_trace);
        }
        if let Some(tr) = trace.as_deref_mut() {
            tr.set_prefix("");
        }
        // The final norm of every position, or of each segment's last one.
        let rows = if all_positions { t } else { segments.len() };
        let (x, normed) = (&activations.x[..t * c], sized(&mut activations.normed, rows * c)); // [rows, C]
        if all_positions {
            self.ln_f.forward(x, normed);
        } else {
            let mut end = 0;
            for (segment, normed) in segments.iter().zip(normed.chunks_exact_mut(c)) {
                end += segment.tokens.len();
                self.ln_f.forward(&x[(end - 1) * c..end * c], normed);
            }
        }
        for segment in segments.iter_mut() {
            segment.cache.advance(segment.tokens.len());
        }
        let head = self.lm_head.as_ref().unwrap_or(&self.embedding.token);
        let logits = sized(&mut activations.logits, rows * v);
        head.matmul(logits, normed, None, rows, &mut activations.scratch.quantized);
        record(&mut trace, "logits", &[rows, v], logits);
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
    use crate::layers::activations::Activations;
    use crate::model::{LoadOptions, Model};

    fn forward_one(model: &Model, tokens: &[u32], cache: &mut KvCache, all_positions: bool) -> Vec<f32> {
        model.gpt2.forward(&mut [Segment { tokens, cache }], all_positions, &mut Activations::default(), None).to_vec()
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

    /// Counts the allocations of the thread that runs a test (tests run on threads of their own).
    struct CountingAllocator;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call goes to the system allocator unchanged; counting touches a const
    // thread-local that neither allocates nor has a destructor.
    unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: CountingAllocator = CountingAllocator;

    #[test]
    fn decode_steps_allocate_nothing_once_the_buffers_have_grown() {
        let bundled = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/kjv-fortunes-18m/model-q8_0.gguf");
        let models = [tiny(), Model::open(bundled, LoadOptions::default()).expect("the bundled Q8_0 model loads")];
        let (prompt, next) = ([464, 2068, 7586, 21831, 18045, 625], [262, 16931, 3290]);
        for model in &models {
            let mut cache = model.new_cache(prompt.len() + next.len()).unwrap();
            let mut activations = Activations::default();
            model.gpt2.forward(&mut [Segment { tokens: &prompt, cache: &mut cache }], false, &mut activations, None);
            let mut fresh_cache = model.new_cache(prompt.len() + next.len()).unwrap();
            forward_one(model, &prompt, &mut fresh_cache, false);
            for token in next {
                let before = ALLOCATIONS.with(|n| n.get());
                let step = model.gpt2.forward(
                    &mut [Segment { tokens: &[token], cache: &mut cache }],
                    false,
                    &mut activations,
                    None,
                );
                assert_eq!(ALLOCATIONS.with(|n| n.get()), before, "a decode step allocated");
                // Buffers that held an earlier pass give the bits of fresh ones.
                let want = forward_one(model, &[token], &mut fresh_cache, false);
                assert!(step.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
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
        let mut activations = Activations::default();
        let together = model.gpt2.forward(&mut segments, false, &mut activations, None);
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
