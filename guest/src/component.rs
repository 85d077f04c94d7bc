//! The component's exports: the `llorch:gpt2/inference` and `llorch:gpt2/checking` interfaces
//! and `wasi:cli/run`.

use crate::batch::Batch;
use crate::error::Error;
use crate::generation::{Finish, GenerateOptions, Generation, Step, StopReason};
use crate::model::{LoadOptions, Model};
use crate::sampler::SamplingParams;
use crate::tensor::FileBuffer;
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

wit_bindgen::generate!({ path: "../wit", world: "worker" });

use exports::llorch::gpt2::checking;
use exports::llorch::gpt2::inference as wit;

struct Component;

/// The model `preload` keeps; a snapshot of the instance keeps it in its memory image.
static PRELOADED: OnceLock<Arc<Model>> = OnceLock::new();

/// The model `preload` kept, if any.
pub(crate) fn preloaded_model() -> Option<Arc<Model>> {
    PRELOADED.get().cloned()
}

/// A loaded model, shared with the generations started from it.
struct ModelResource(Arc<Model>);

/// A model file being handed over; taken by `from-file`.
struct ModelFileResource(RefCell<FileBuffer>);

/// A generation; `next` takes `&self`, hence the cell.
struct GenerationResource(RefCell<Generation>);

/// A batch of generations; its methods take `&self`, hence the cell.
struct BatchResource(RefCell<Batch>);

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidModel(m) => wit::Error::InvalidModel(m),
            Error::InvalidRequest(m) => wit::Error::InvalidRequest(m),
            Error::ContextOverflow(m) => wit::Error::ContextOverflow(m),
            Error::Io(m) => wit::Error::Io(m),
        }
    }
}

impl From<wit::LoadOptions> for LoadOptions {
    fn from(o: wit::LoadOptions) -> Self {
        LoadOptions { quantize_q8_0: o.quantize_q8_0 }
    }
}

impl From<wit::GenerateOptions> for GenerateOptions {
    fn from(o: wit::GenerateOptions) -> Self {
        let s = o.sampling;
        GenerateOptions {
            max_tokens: o.max_tokens,
            sampling: SamplingParams {
                temperature: s.temperature,
                top_k: s.top_k,
                top_p: s.top_p,
                min_p: s.min_p,
                repetition_penalty: s.repetition_penalty,
                seed: s.seed,
            },
            stop: o.stop,
        }
    }
}

impl From<Step> for wit::Step {
    fn from(step: Step) -> Self {
        match step {
            Step::Prefill(done) => wit::Step::Prefill(done),
            Step::Token { id, text } => wit::Step::Token(wit::Token { id, text }),
            Step::Finished(finish) => wit::Step::Finished(finish.into()),
        }
    }
}

impl From<Finish> for wit::Finish {
    fn from(f: Finish) -> Self {
        wit::Finish {
            reason: match f.reason {
                StopReason::MaxTokens => wit::StopReason::MaxTokens,
                StopReason::Eos => wit::StopReason::Eos,
                StopReason::StopSequence => wit::StopReason::StopSequence,
            },
            stop_sequence: f.stop_sequence,
            tokens_out: f.tokens_out,
            text: f.text,
        }
    }
}

impl wit::Guest for Component {
    type ModelFile = ModelFileResource;
    type Model = ModelResource;
    type Generation = GenerationResource;
    type Batch = BatchResource;

    fn generate_text(model_path: String, prompt: String, options: wit::GenerateOptions) -> Result<String, wit::Error> {
        let model = Arc::new(Model::open(&model_path, LoadOptions::default())?);
        let tokens = model.tokenizer.encode(&prompt);
        let mut generation = Generation::new(model, &tokens, &options.into())?;
        let mut text = String::new();
        generation.run_to_end(|piece| text.push_str(piece));
        Ok(text)
    }

    fn preload(model: wit::Model) {
        // A second preload keeps the first model: an instance has one.
        let _ = PRELOADED.set(model.into_inner::<ModelResource>().0);
    }

    fn preloaded() -> Option<wit::Model> {
        PRELOADED.get().map(|model| wit::Model::new(ModelResource(model.clone())))
    }
}

impl wit::GuestModelFile for ModelFileResource {
    fn create(len: u64) -> Result<wit::ModelFile, wit::Error> {
        let len = usize::try_from(len).map_err(|_| Error::Io(format!("no memory for a {len}-byte model file")))?;
        Ok(wit::ModelFile::new(ModelFileResource(RefCell::new(FileBuffer::try_zeroed(len)?))))
    }

    fn write(&self, offset: u64, bytes: Vec<u8>) -> Result<(), wit::Error> {
        let mut file = self.0.borrow_mut();
        let file = file.bytes_mut();
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(bytes.len())?))
            .filter(|range| range.end <= file.len())
            .ok_or_else(|| {
                Error::request(format!("{} bytes at {offset} do not fit a {}-byte file", bytes.len(), file.len()))
            })?;
        file[range].copy_from_slice(&bytes);
        Ok(())
    }
}

impl wit::GuestModel for ModelResource {
    fn from_file(name: String, file: wit::ModelFile, options: wit::LoadOptions) -> Result<wit::Model, wit::Error> {
        let file = file.into_inner::<ModelFileResource>().0.into_inner();
        Ok(wit::Model::new(ModelResource(Arc::new(Model::load(file, &name, options.into())?))))
    }

    fn from_bytes(name: String, bytes: Vec<u8>) -> Result<wit::Model, wit::Error> {
        let model = Model::from_vec(&name, bytes)?;
        Ok(wit::Model::new(ModelResource(Arc::new(model))))
    }

    fn open(path: String, options: wit::LoadOptions) -> Result<wit::Model, wit::Error> {
        Ok(wit::Model::new(ModelResource(Arc::new(Model::open(&path, options.into())?))))
    }

    fn info(&self) -> wit::ModelInfo {
        let i = self.0.info().clone();
        wit::ModelInfo {
            name: i.name,
            context_length: i.context_length,
            vocab_size: i.vocab_size,
            embedding_length: i.embedding_length,
            block_count: i.block_count,
            head_count: i.head_count,
            feed_forward_length: i.feed_forward_length,
            eos_token: i.eos_token,
            parameter_count: i.parameter_count,
            weight_type: i.weight_type,
            weight_bytes: i.weight_bytes,
            kv_cache_bytes: i.kv_cache_bytes,
        }
    }

    fn tokenize(&self, text: String) -> Vec<u32> {
        self.0.tokenizer.encode(&text)
    }

    fn detokenize(&self, tokens: Vec<u32>) -> Result<String, wit::Error> {
        Ok(self.0.tokenizer.decode(&tokens)?)
    }

    fn generate(&self, prompt: Vec<u32>, options: wit::GenerateOptions) -> Result<wit::Generation, wit::Error> {
        let generation = Generation::new(self.0.clone(), &prompt, &options.into())?;
        Ok(wit::Generation::new(GenerationResource(RefCell::new(generation))))
    }

    fn batch(&self, prompt_budget: u32) -> wit::Batch {
        wit::Batch::new(BatchResource(RefCell::new(Batch::new(self.0.clone(), prompt_budget as usize))))
    }
}

impl wit::GuestGeneration for GenerationResource {
    fn next(&self) -> wit::Step {
        self.0.borrow_mut().next_step().into()
    }
}

impl wit::GuestBatch for BatchResource {
    fn add(&self, prompt: Vec<u32>, options: wit::GenerateOptions) -> Result<u32, wit::Error> {
        Ok(self.0.borrow_mut().add(&prompt, &options.into())?)
    }

    fn remove(&self, id: u32) -> bool {
        self.0.borrow_mut().remove(id)
    }

    fn len(&self) -> u32 {
        self.0.borrow().len() as u32
    }

    fn step(&self) -> Vec<wit::SequenceStep> {
        let steps = self.0.borrow_mut().step();
        steps.into_iter().map(|(id, step)| wit::SequenceStep { id, step: step.into() }).collect()
    }
}

impl checking::Guest for Component {
    fn logits(model: wit::ModelBorrow<'_>, tokens: Vec<u32>) -> Result<Vec<f32>, wit::Error> {
        Ok(model.get::<ModelResource>().0.logits(&tokens)?)
    }

    fn checkpoints(model: wit::ModelBorrow<'_>, tokens: Vec<u32>) -> Result<Vec<checking::Tensor>, wit::Error> {
        Ok(model
            .get::<ModelResource>()
            .0
            .checkpoints(&tokens)?
            .into_iter()
            .map(|(name, shape, data)| checking::Tensor {
                name,
                shape: shape.into_iter().map(|d| d as u32).collect(),
                data,
            })
            .collect())
    }
}

export!(Component);

/// `wasi:cli/run`: the command-line front end in `crate::cli`.
struct Command;

impl wasip2::exports::cli::run::Guest for Command {
    fn run() -> Result<(), ()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let packed = preloaded_model();
        if crate::cli::main(&args, packed, &mut std::io::stdout(), &mut std::io::stderr()) { Ok(()) } else { Err(()) }
    }
}

wasip2::cli::command::export!(Command);
