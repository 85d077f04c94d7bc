//! A loaded model: the GPT-2 network, its tokenizer, and what a host asks about it.

pub mod config;
pub mod gpt2;

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::layers::activations::Activations;
use crate::layers::{Checkpoint, Trace};
use crate::tensor::{FileBuffer, WeightFile};
use crate::tokenizer::Tokenizer;
use config::Config;
use gpt2::{Gpt2, Segment};
use std::io::Read;
use std::sync::Arc;

/// What a loaded model is (mirrors the WIT `model-info`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub context_length: u32,
    pub vocab_size: u32,
    pub embedding_length: u32,
    pub block_count: u32,
    pub head_count: u32,
    pub feed_forward_length: u32,
    pub eos_token: u32,
    pub parameter_count: u64,
    pub weight_type: String,
    pub weight_bytes: u64,
    pub kv_cache_bytes: u64,
}

/// GPT-2 with its tokenizer.
pub struct Model {
    pub gpt2: Gpt2,
    pub tokenizer: Tokenizer,
    info: ModelInfo,
}

/// How a model's weights are loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Quantize F32 and F16 matrices to Q8_0 as they load, as llama.cpp's converter does with
    /// `--outtype q8_0`, so they take the integer product.
    pub quantize_q8_0: bool,
}

impl Model {
    /// Loads a GGUF file from memory as stored; `fallback_name` names it when the file does not.
    pub fn from_bytes(fallback_name: &str, bytes: &[u8]) -> Result<Self> {
        Self::load(FileBuffer::try_from_bytes(bytes)?, fallback_name, LoadOptions::default())
    }

    /// Loads a GGUF file from `bytes` as stored, keeping them as the model's storage (no copy).
    pub fn from_vec(fallback_name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::load(FileBuffer::try_from_vec(bytes)?, fallback_name, LoadOptions::default())
    }

    /// Reads and loads the GGUF file at `path`.
    pub fn open(path: &str, options: LoadOptions) -> Result<Self> {
        let io = |e: std::io::Error| Error::Io(format!("{path}: {e}"));
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let len = usize::try_from(len)
            .map_err(|_| Error::Io(format!("{path}: {len} bytes do not fit in this address space")))?;
        let mut buffer = FileBuffer::try_zeroed(len)?;
        file.read_exact(buffer.bytes_mut()).map_err(io)?;
        let stem = std::path::Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or(path);
        Self::load(buffer, stem, options)
    }

    /// Parses `file`, builds the tokenizer and loads every weight.
    pub fn load(file: FileBuffer, fallback_name: &str, options: LoadOptions) -> Result<Self> {
        let file = Arc::new(file);
        let gguf = Gguf::parse(file.bytes())?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let config = Config::from_gguf(&gguf, tokenizer.vocab_size())?;
        let gpt2 = Gpt2::load(&WeightFile { gguf: &gguf, file: &file, quantize_q8_0: options.quantize_q8_0 }, config)?;
        let name = gguf.str("general.name")?.unwrap_or(fallback_name).to_string();
        let stored = gguf.tensor("blk.0.attn_qkv.weight").map_or("F32", |(info, _)| info.kind.name());
        let weight_type = if options.quantize_q8_0 { "Q8_0" } else { stored }.to_string();
        drop(gguf);
        // The file stays in memory only when F32 weights are used where they lie.
        let file_bytes = if Arc::strong_count(&file) > 1 { file.bytes().len() as u64 } else { 0 };
        let c = &gpt2.config;
        let info = ModelInfo {
            name,
            context_length: c.n_ctx as u32,
            vocab_size: c.n_vocab as u32,
            embedding_length: c.n_embd as u32,
            block_count: c.n_layer as u32,
            head_count: c.n_head as u32,
            feed_forward_length: c.n_ff as u32,
            eos_token: tokenizer.eos(),
            parameter_count: gpt2.parameter_count(),
            weight_type,
            weight_bytes: file_bytes + gpt2.owned_bytes() as u64,
            kv_cache_bytes: KvCache::bytes_for(c.n_layer, c.n_embd, c.n_ctx),
        };
        Ok(Model { gpt2, tokenizer, info })
    }

    /// What the model is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Checks that `tokens` is non-empty, within the vocabulary and, with `extra` positions
    /// after it, within the context length.
    pub fn check_tokens(&self, tokens: &[u32], extra: usize) -> Result<()> {
        let config = &self.gpt2.config;
        if tokens.is_empty() {
            return Err(Error::request("the prompt has no tokens"));
        }
        if let Some(bad) = tokens.iter().find(|&&id| id as usize >= config.n_vocab) {
            return Err(Error::request(format!("token id {bad} is outside the vocabulary of {}", config.n_vocab)));
        }
        let needed = tokens.len().saturating_add(extra);
        if needed > config.n_ctx {
            return Err(Error::ContextOverflow(format!(
                "{} prompt tokens + {extra} to generate = {needed} exceed the context length {}",
                tokens.len(),
                config.n_ctx
            )));
        }
        Ok(())
    }

    /// Logits `[T, V]` at every position of `tokens`.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.check_tokens(tokens, 0)?;
        let cache = &mut self.new_cache(tokens.len())?;
        Ok(self.gpt2.forward(&mut [Segment { tokens, cache }], true, &mut Activations::default(), None).to_vec())
    }

    /// Activations of block 0 and the logits at every position of `tokens`.
    pub fn checkpoints(&self, tokens: &[u32]) -> Result<Vec<Checkpoint>> {
        self.check_tokens(tokens, 0)?;
        let mut trace = Trace::default();
        let cache = &mut self.new_cache(tokens.len())?;
        self.gpt2.forward(&mut [Segment { tokens, cache }], true, &mut Activations::default(), Some(&mut trace));
        Ok(trace.checkpoints)
    }

    /// An empty KV cache with room for `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let c = &self.gpt2.config;
        KvCache::try_new(c.n_layer, c.n_head, c.n_embd, capacity)
    }
}
