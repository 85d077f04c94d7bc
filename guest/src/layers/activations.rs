//! The buffers a forward pass writes its activations into, kept from one pass to the next so that
//! a pass allocates nothing once they have grown to its size (as llm.c keeps its activations).

use crate::tensor::QuantizedRows;

/// Activations of a forward pass over T rows; each buffer grows to the largest pass it has
/// served and is then reused.
#[derive(Default)]
pub struct Activations {
    /// `[T, C]` the residual stream.
    pub x: Vec<f32>,
    /// `[T, C]` rows after a layer norm.
    pub normed: Vec<f32>,
    /// `[T, C]` a block's attention or MLP output.
    pub out: Vec<f32>,
    /// `[B, V]`, or `[T, V]` at every position.
    pub logits: Vec<f32>,
    /// What the layers use inside.
    pub scratch: Scratch,
}

/// The layers' inner buffers.
#[derive(Default)]
pub struct Scratch {
    /// `[T, 3C]`
    pub qkv: Vec<f32>,
    /// `[H, T_i, S]`, one sequence's attention probabilities at a time.
    pub probs: Vec<f32>,
    /// `[T, C]` attention context, heads side by side.
    pub context: Vec<f32>,
    /// `[T, F]` the MLP's hidden rows.
    pub hidden: Vec<f32>,
    /// `[C]` one position embedding.
    pub position: Vec<f32>,
    /// The inputs of a Q8_0 matrix product, quantized.
    pub quantized: QuantizedRows,
}

/// The first `len` values of `buffer`, which grows to hold them (what it held stays: every user
/// writes all of its values).
pub fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}
