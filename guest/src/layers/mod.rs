//! GPT-2's building blocks, each with `load` (from GGUF) and `forward`.
//!
//! Shapes in comments: T = tokens in this call, S = positions in the KV cache after it,
//! C = embedding width, H = heads, D = C / H, F = MLP width, V = vocabulary.

pub mod activations;
pub mod attention;
pub mod embedding;
pub mod ffn;
pub mod layer_norm;
pub mod linear;
pub mod transformer;

use crate::cache::LayerCache;

/// One sequence's rows in a forward pass through a block: T rows of the activations at
/// positions `start..start+T`, and that sequence's cache of the block.
pub struct SequenceRows<'a> {
    pub t: usize,
    pub start: usize,
    pub cache: &'a mut LayerCache,
}

/// One recorded activation: name, shape (slowest first) and values.
pub type Checkpoint = (String, Vec<usize>, Vec<f32>);

/// Collects activations by name while a forward pass runs, for checking against a reference.
#[derive(Default)]
pub struct Trace {
    pub checkpoints: Vec<Checkpoint>,
    prefix: String,
}

impl Trace {
    /// Records `data` of `shape` under the current prefix.
    pub fn record(&mut self, name: &str, shape: &[usize], data: &[f32]) {
        self.checkpoints.push((format!("{}{name}", self.prefix), shape.to_vec(), data.to_vec()));
    }

    /// Sets the prefix of later names, e.g. `b0.`.
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }
}

/// Records into `trace` when there is one.
pub(crate) fn record(trace: &mut Option<&mut Trace>, name: &str, shape: &[usize], data: &[f32]) {
    if let Some(trace) = trace {
        trace.record(name, shape, data);
    }
}
