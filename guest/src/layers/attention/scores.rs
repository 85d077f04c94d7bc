//! Scaled, causally masked attention scores and their softmax.

use crate::cache::LayerCache;
use crate::layers::{Trace, record};
use crate::tensor::kernels;

/// qkv: `[T, 3C]` (queries in the first C columns), the cache's keys `[S, D]` per head with
/// S = start + T → probabilities `scores` `[H, T, S]`. Query t sits at position start + t and
/// sees keys 0..=start+t; the rest are masked to −∞ (recorded as `scores_masked`) and get
/// probability 0.
pub fn causal_softmax(
    qkv: &[f32],
    cache: &LayerCache,
    t: usize,
    start: usize,
    n_head: usize,
    scores: &mut [f32],
    trace: &mut Option<&mut Trace>,
) {
    let c = qkv.len() / (3 * t);
    let d = c / n_head;
    let s = start + t;
    let scale = 1.0 / (d as f32).sqrt();
    for h in 0..n_head {
        let keys = cache.keys(h);
        for i in 0..t {
            let q = &qkv[i * 3 * c + h * d..][..d];
            let (seen, masked) = scores[(h * t + i) * s..][..s].split_at_mut(start + i + 1);
            kernels::scaled_dots(seen, q, keys, scale);
            masked.fill(f32::NEG_INFINITY);
        }
    }
    record(trace, "scores_masked", &[n_head, t, s], scores);
    // Only the keys a query sees take part; the masked rest become probability 0.
    for (row, i) in scores.chunks_exact_mut(s).zip((0..t).cycle()) {
        let (seen, masked) = row.split_at_mut(start + i + 1);
        softmax_in_place(seen);
        masked.fill(0.0);
    }
}

/// Softmax of one row; −∞ entries become 0.
pub fn softmax_in_place(row: &mut [f32]) {
    let max = kernels::max(row);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}
