//! The KV cache: keys and values of every position seen so far, one pair of buffers per block.

use crate::error::{Error, Result};

/// Keys and values of one block, `[S, C]` each, heads side by side.
pub struct LayerCache {
    keys: Vec<f32>,
    values: Vec<f32>,
    width: usize,
}

impl LayerCache {
    /// Appends the keys and values of qkv `[T, 3C]` (columns C..2C and 2C..3C).
    pub fn append(&mut self, qkv: &[f32], t: usize) {
        let c = self.width;
        for row in qkv.chunks_exact(3 * c).take(t) {
            self.keys.extend_from_slice(&row[c..2 * c]);
            self.values.extend_from_slice(&row[2 * c..]);
        }
    }

    /// `[S, C]`
    pub fn keys(&self) -> &[f32] {
        &self.keys
    }

    /// `[S, C]`
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

/// The cache of a whole model for one sequence.
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `n_layer` blocks of width `c`, with room reserved for `capacity`
    /// positions so decoding never reallocates; an error when memory runs out.
    pub fn try_new(n_layer: usize, c: usize, capacity: usize) -> Result<Self> {
        let buffer = || -> Result<Vec<f32>> {
            let mut v = Vec::new();
            v.try_reserve_exact(capacity * c).map_err(|_| {
                Error::request(format!(
                    "not enough memory for a KV cache of {capacity} positions ({} bytes)",
                    Self::bytes_for(n_layer, c, capacity)
                ))
            })?;
            Ok(v)
        };
        let layers = (0..n_layer)
            .map(|_| Ok(LayerCache { keys: buffer()?, values: buffer()?, width: c }))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers, len: 0 })
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Counts `t` more positions as filled (after every block appended them).
    pub fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Bytes a cache for `capacity` positions takes.
    pub fn bytes_for(n_layer: usize, c: usize, capacity: usize) -> u64 {
        2 * 4 * n_layer as u64 * c as u64 * capacity as u64
    }
}
