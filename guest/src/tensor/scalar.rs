//! Plain-Rust kernels: the portable build's kernels and the reference for the SIMD twin.

/// `out[rows, n] = x[rows, k] · w[n, k]ᵀ + bias[n]`: every output is the dot product of one
/// input row with one weight row (weights are stored `[out, in]`).
pub fn matmul(out: &mut [f32], x: &[f32], w: &[f32], bias: Option<&[f32]>, rows: usize, k: usize, n: usize) {
    assert!(x.len() >= rows * k && w.len() >= n * k && out.len() >= rows * n);
    for t in 0..rows {
        let x_row = &x[t * k..(t + 1) * k];
        for j in 0..n {
            let b = bias.map_or(0.0, |b| b[j]);
            out[t * n + j] = dot(x_row, &w[j * k..(j + 1) * k]) + b;
        }
    }
}

/// `Σ a[i]·b[i]` over the shorter of the two.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y[i] += alpha·x[i]`.
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}
