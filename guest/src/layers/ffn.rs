//! The MLP of a block: expand, tanh-approximated GELU, project back.

use crate::error::Result;
use crate::layers::linear::Linear;
use crate::tensor::WeightFile;

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

    /// x: `[T, C]` → `[T, C]`.
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let mut hidden = self.up.forward(x, t); // [T, F]
        hidden.iter_mut().for_each(|v| *v = gelu_tanh(*v));
        self.down.forward(&hidden, t)
    }

    /// Bytes of guest memory the layer adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.up.owned_bytes() + self.down.owned_bytes()
    }
}

/// GPT-2's GELU: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

#[cfg(test)]
mod tests {
    #[test]
    fn gelu_is_the_tanh_form() {
        // Values of 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) computed in f64.
        for (x, expected) in
            [(-3.0, -0.003_637_392), (-1.0, -0.158_808_01), (0.0, 0.0), (0.5, 0.345_714), (2.0, 1.954_597_7)]
        {
            let got = super::gelu_tanh(x);
            assert!((got - expected).abs() < 1e-6, "gelu({x}) = {got}, expected {expected}");
        }
    }
}
