//! The KV cache: keys and values of every position seen so far, one pair of buffers per block.

use crate::error::{Error, Result};

/// Keys and values of one block, one `[S, D]` buffer of each per head, so attending over one
/// head's positions streams through contiguous memory.
pub struct LayerCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    width: usize,
}

impl LayerCache {
    /// Appends the keys and values of qkv `[T, 3C]` (columns C..2C and 2C..3C, heads side by
    /// side).
    pub fn append(&mut self, qkv: &[f32], t: usize) {
        let c = self.width;
        let d = c / self.keys.len();
        for row in qkv.chunks_exact(3 * c).take(t) {
            let (keys, values) = row[c..].split_at(c);
            for (h, (key, value)) in keys.chunks_exact(d).zip(values.chunks_exact(d)).enumerate() {
                self.keys[h].extend_from_slice(key);
                self.values[h].extend_from_slice(value);
            }
        }
    }

    /// Keys of head `h`: `[S, D]`
    pub fn keys(&self, h: usize) -> &[f32] {
        &self.keys[h]
    }

    /// Values of head `h`: `[S, D]`
    pub fn values(&self, h: usize) -> &[f32] {
        &self.values[h]
    }
}

/// The cache of a whole model for one sequence.
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `n_layer` blocks of `n_head` heads, width `c`, with room reserved for
    /// `capacity` positions so decoding never reallocates; an error when memory runs out.
    pub fn try_new(n_layer: usize, n_head: usize, c: usize, capacity: usize) -> Result<Self> {
        let buffer = || -> Result<Vec<f32>> {
            let mut v = Vec::new();
            v.try_reserve_exact(capacity * (c / n_head)).map_err(|_| {
                Error::request(format!(
                    "not enough memory for a KV cache of {capacity} positions ({} bytes)",
                    Self::bytes_for(n_layer, c, capacity)
                ))
            })?;
            Ok(v)
        };
        let heads = || (0..n_head).map(|_| buffer()).collect::<Result<Vec<_>>>();
        let layers = (0..n_layer)
            .map(|_| Ok(LayerCache { keys: heads()?, values: heads()?, width: c }))
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
