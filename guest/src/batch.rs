//! Several generations advanced together: one forward pass per step over the next token of every
//! decoding sequence and a budgeted chunk of each admitted prompt (continuous batching).

use crate::error::{Error, Result};
use crate::generation::{GenerateOptions, Generation, Step};
use crate::layers::activations::Activations;
use crate::model::Model;
use crate::model::gpt2::Segment;
use std::sync::Arc;

/// Sequences sharing forward passes; each keeps its own cache, sampler and text stream.
pub struct Batch {
    model: Arc<Model>,
    /// In order of admission.
    sequences: Vec<(u32, Generation)>,
    next_id: u32,
    /// Prompt tokens one step may take, beside one token of every decoding sequence.
    prompt_budget: usize,
    /// The forward pass's buffers, kept from step to step.
    activations: Activations,
}

impl Batch {
    /// An empty batch; `prompt_budget` is raised to 1 when 0.
    pub fn new(model: Arc<Model>, prompt_budget: usize) -> Self {
        Batch {
            model,
            sequences: Vec::new(),
            next_id: 0,
            prompt_budget: prompt_budget.max(1),
            activations: Activations::default(),
        }
    }

    /// Admits a generation; it moves from the next step on. Returns its id.
    pub fn add(&mut self, prompt: &[u32], options: &GenerateOptions) -> Result<u32> {
        let generation = Generation::new(self.model.clone(), prompt, options)?;
        let id = self.next_id;
        self.next_id = id.checked_add(1).ok_or_else(|| Error::request("this batch has admitted 2^32 sequences"))?;
        self.sequences.push((id, generation));
        Ok(id)
    }

    /// Removes sequence `id`; false when there is none.
    pub fn remove(&mut self, id: u32) -> bool {
        let before = self.sequences.len();
        self.sequences.retain(|(i, _)| *i != id);
        self.sequences.len() < before
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.sequences.len()
    }

    /// True when no sequence is in the batch.
    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// One forward pass over every sequence with work; returns each moved sequence's step.
    /// Sequences that finished are reported once and leave.
    pub fn step(&mut self) -> Vec<(u32, Step)> {
        let mut report = Vec::with_capacity(self.sequences.len());
        // Those that ended with their last token (max-tokens, a stop string) report it now.
        self.sequences.retain(|(id, generation)| match generation.finished() {
            Some(finish) => {
                report.push((*id, Step::Finished(finish.clone())));
                false
            }
            None => true,
        });
        let mut budget = self.prompt_budget;
        let take: Vec<usize> = self
            .sequences
            .iter()
            .map(|(_, generation)| match generation.pending() {
                // The last generated token, or the last prompt token: always one.
                1 => 1,
                pending => {
                    let n = pending.min(budget);
                    budget -= n;
                    n
                }
            })
            .collect();
        let mut segments: Vec<Segment<'_>> = self
            .sequences
            .iter_mut()
            .zip(&take)
            .filter(|(_, n)| **n > 0)
            .map(|((_, generation), n)| generation.segment(*n))
            .collect();
        if segments.is_empty() {
            return report;
        }
        let logits = self.model.gpt2.forward(&mut segments, false, &mut self.activations, None); // [B, V]
        drop(segments);
        let moved = self.sequences.iter_mut().zip(&take).filter(|(_, n)| **n > 0).map(|(sequence, _)| sequence);
        for ((id, generation), logits) in moved.zip(logits.chunks_exact_mut(self.model.gpt2.config.n_vocab)) {
            report.push((*id, generation.advance(logits)));
        }
        // A sequence that drew the end-of-text token has just reported its finish.
        let ended: Vec<u32> =
            report.iter().filter(|(_, step)| matches!(step, Step::Finished(_))).map(|(id, _)| *id).collect();
        self.sequences.retain(|(id, _)| !ended.contains(id));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LoadOptions;
    use crate::sampler::SamplingParams;

    fn tiny() -> Arc<Model> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny-synthetic/model-f32.gguf");
        Arc::new(Model::open(path, LoadOptions::default()).expect("the tiny model loads"))
    }

    fn options(max_tokens: u32, temperature: f32, seed: u64) -> GenerateOptions {
        GenerateOptions {
            max_tokens,
            sampling: SamplingParams { temperature, top_k: 0, top_p: 0.9, min_p: 0.0, repetition_penalty: 1.1, seed },
            stop: Vec::new(),
        }
    }

    /// Token ids of one generation run alone, step by step.
    fn alone(model: &Arc<Model>, prompt: &[u32], options: &GenerateOptions) -> Vec<u32> {
        let mut generation = Generation::new(model.clone(), prompt, options).unwrap();
        let mut ids = Vec::new();
        loop {
            match generation.next_step() {
                Step::Prefill(_) => {}
                Step::Token { id, .. } => ids.push(id),
                Step::Finished(_) => return ids,
            }
        }
    }

    #[test]
    fn sequences_that_join_and_leave_draw_the_tokens_they_draw_alone() {
        let model = tiny();
        let long: Vec<u32> = (0..150).map(|i| (i * 37 + 11) % 1000).collect();
        let requests: Vec<(Vec<u32>, GenerateOptions)> = vec![
            (vec![464, 2068, 7586], options(12, 0.0, 0)),
            (long, options(5, 0.8, 7)),
            (vec![13, 198, 464, 318], options(20, 1.0, 42)),
            (vec![50256], options(3, 0.7, 3)),
        ];
        let want: Vec<Vec<u32>> = requests.iter().map(|(p, o)| alone(&model, p, o)).collect();
        assert_eq!(want.iter().map(Vec::len).collect::<Vec<_>>(), [12, 5, 20, 3], "every request runs to max-tokens");
        // A prompt budget smaller than the long prompt, so it takes several steps beside the
        // decoding sequences; the others join one step apart.
        let mut batch = Batch::new(model, 40);
        let mut got: Vec<Vec<u32>> = vec![Vec::new(); requests.len()];
        let mut ids = Vec::new();
        let mut finished = 0;
        for round in 0.. {
            if let Some((prompt, options)) = requests.get(round) {
                ids.push(batch.add(prompt, options).unwrap());
            }
            for (id, step) in batch.step() {
                let k = ids.iter().position(|i| *i == id).unwrap();
                match step {
                    Step::Prefill(_) => {}
                    Step::Token { id, .. } => got[k].push(id),
                    Step::Finished(_) => finished += 1,
                }
            }
            if finished == requests.len() {
                break;
            }
            assert!(round < 200, "the batch never finished");
        }
        assert!(batch.is_empty());
        assert_eq!(got, want);
    }

    #[test]
    fn a_removed_sequence_stops_and_the_others_go_on() {
        let model = tiny();
        let mut batch = Batch::new(model.clone(), 64);
        let a = batch.add(&[464, 2068], &options(8, 0.0, 0)).unwrap();
        let b = batch.add(&[13, 198], &options(8, 0.0, 0)).unwrap();
        batch.step();
        assert!(batch.remove(a));
        assert!(!batch.remove(a));
        let moved: Vec<u32> = batch.step().into_iter().map(|(id, _)| id).collect();
        assert_eq!(moved, vec![b]);
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn a_bad_request_is_refused_and_the_batch_stays_usable() {
        let model = tiny();
        let mut batch = Batch::new(model.clone(), 64);
        assert!(batch.add(&[], &options(4, 0.0, 0)).is_err());
        assert!(batch.add(&[464], &options(0, 0.0, 0)).is_err());
        assert!(batch.add(&[u32::MAX], &options(4, 0.0, 0)).is_err());
        assert!(batch.is_empty());
        let id = batch.add(&[464], &options(2, 0.0, 0)).unwrap();
        assert!(batch.step().iter().all(|(i, _)| *i == id));
    }
}
