//! The MLP of a block: expand, tanh-approximated GELU, project back.

use crate::error::Result;
use crate::layers::activations::{Scratch, sized};
use crate::layers::linear::Linear;
use crate::tensor::{WeightFile, kernels};

/// `y = down(gelu(up(x)))`.
pub struct Ffn {
    /// `[F, C]`
    up: Linear,
    /// `[C, F]`
    down: Linear,
}

impl Ffn {
    /// Loads `blk.{i}.ffn_up` and `blk.{i}.ffn_down`.
    pub fn load(weights: &WeightFile, block: usize, c: usize, f: usize) -> Result<Self> {
        Ok(Ffn {
            up: Linear::load(weights, &format!("blk.{block}.ffn_up"), f, c)?,
            down: Linear::load(weights, &format!("blk.{block}.ffn_down"), c, f)?,
        })
    }

    /// x: `[T, C]` → y `[T, C]`.
    pub fn forward(&self, x: &[f32], t: usize, y: &mut [f32], scratch: &mut Scratch) {
        let hidden = sized(&mut scratch.hidden, t * self.up.out_features()); // [T, F]
        self.up.forward(x, t, hidden, &mut scratch.quantized);
        kernels::gelu_tanh(hidden);
        self.down.forward(hidden, t, y, &mut scratch.quantized);
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.up.owned_bytes() + self.down.owned_bytes()
    }
}
