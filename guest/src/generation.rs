//! One generation: prefill the prompt in chunks, then one token per step, with its own KV cache,
//! sampler and text stream.

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::layers::activations::Activations;
use crate::model::Model;
use crate::model::gpt2::Segment;
use crate::sampler::{Sampler, SamplingParams};
use crate::stream::{Released, TextStream};
use std::sync::Arc;

/// Prompt tokens processed per step. Each step streams every weight once, so larger chunks
/// prefill faster (64 instead of 16 is a fifth faster on GPT-2 124M); each step is also where a
/// job can be stopped, and 64 tokens take about 0.7 s on GPT-2 124M in wasm (a decode step, one
/// token, stays under 100 ms).
pub const PREFILL_CHUNK: usize = 64;

/// What a generation request asks for (mirrors the WIT `generate-options`).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    Eos,
    StopSequence,
}

/// The end of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub reason: StopReason,
    pub stop_sequence: Option<String>,
    pub tokens_out: u32,
    /// Held-back text released at the end.
    pub text: String,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Prompt tokens processed so far.
    Prefill(u32),
    /// A generated token and the text it releases.
    Token { id: u32, text: String },
    /// The generation is over.
    Finished(Finish),
}

/// A generation in progress.
pub struct Generation {
    model: Arc<Model>,
    cache: KvCache,
    /// The forward pass's buffers when this generation steps alone (a batch has its own).
    activations: Activations,
    sampler: Sampler,
    stream: TextStream,
    /// Prompt followed by every generated token.
    history: Vec<u32>,
    max_tokens: u32,
    generated: u32,
    /// Set once the generation has ended; returned by every later step.
    finish: Option<Finish>,
}

impl Generation {
    /// Checks the request and prepares a cache sized for prompt plus output.
    pub fn new(model: Arc<Model>, prompt: &[u32], options: &GenerateOptions) -> Result<Self> {
        if options.max_tokens == 0 {
            return Err(Error::request("max_tokens must be at least 1"));
        }
        model.check_tokens(prompt, options.max_tokens as usize)?;
        let sampler = Sampler::new(options.sampling)?;
        let capacity = prompt.len() + options.max_tokens as usize;
        Ok(Generation {
            cache: model.new_cache(capacity)?,
            activations: Activations::default(),
            model,
            sampler,
            stream: TextStream::new(&options.stop),
            history: prompt.to_vec(),
            max_tokens: options.max_tokens,
            generated: 0,
            finish: None,
        })
    }

    /// Does one bounded piece of work: a chunk of the prompt, or one token (the last chunk of
    /// the prompt also draws the first token).
    pub fn next_step(&mut self) -> Step {
        if let Some(finish) = &self.finish {
            return Step::Finished(finish.clone());
        }
        let done = self.cache.len();
        let tokens = &self.history[done..self.history.len().min(done + PREFILL_CHUNK)];
        // Out of self while the logits in them go to `advance`.
        let mut activations = std::mem::take(&mut self.activations);
        let segment = Segment { tokens, cache: &mut self.cache };
        let logits = self.model.gpt2.forward(&mut [segment], false, &mut activations, None);
        let step = self.advance(logits);
        self.activations = activations;
        step
    }

    /// The generation's finish once it has ended.
    pub fn finished(&self) -> Option<&Finish> {
        self.finish.as_ref()
    }

    /// Tokens not yet through the model: the rest of the prompt, or the last generated token.
    pub fn pending(&self) -> usize {
        self.history.len() - self.cache.len()
    }

    /// The next `n` pending tokens with the cache they extend, for a forward pass.
    pub fn segment(&mut self, n: usize) -> Segment<'_> {
        let done = self.cache.len();
        Segment { tokens: &self.history[done..done + n], cache: &mut self.cache }
    }

    /// Takes the logits `[V]` of the forward pass that went through this generation's segment:
    /// reports prompt progress, or draws the next token once every pending token is through.
    pub fn advance(&mut self, logits: &mut [f32]) -> Step {
        if self.cache.len() < self.history.len() {
            return Step::Prefill(self.cache.len() as u32);
        }
        let id = self.sampler.sample(logits, &self.history);
        if id == self.model.tokenizer.eos() {
            let finish = self.finish_record(StopReason::Eos, None);
            self.finish = Some(finish.clone());
            return Step::Finished(finish);
        }
        self.history.push(id);
        self.generated += 1;
        let bytes = self.model.tokenizer.token_bytes(id).unwrap_or_default();
        let text = match self.stream.push(bytes) {
            Released::Text(text) => {
                if self.generated == self.max_tokens {
                    self.finish = Some(self.finish_record(StopReason::MaxTokens, None));
                }
                text
            }
            Released::Stop { text, stop } => {
                // The stream dropped everything from the stop string on, so nothing is left to release.
                self.finish = Some(self.finish_record(StopReason::StopSequence, Some(stop)));
                text
            }
        };
        Step::Token { id, text }
    }

    fn finish_record(&mut self, reason: StopReason, stop_sequence: Option<String>) -> Finish {
        Finish { reason, stop_sequence, tokens_out: self.generated, text: self.stream.finish() }
    }

    /// Runs to the end and returns the whole text.
    pub fn run_to_end(&mut self, mut on_text: impl FnMut(&str)) -> Finish {
        loop {
            match self.next_step() {
                Step::Prefill(_) => {}
                Step::Token { text, .. } => on_text(&text),
                Step::Finished(finish) => {
                    on_text(&finish.text);
                    return finish;
                }
            }
        }
    }
}
