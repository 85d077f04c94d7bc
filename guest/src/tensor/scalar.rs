//! Plain-Rust kernels: the portable build's kernels and the reference for the SIMD twin.

use super::f16_to_f32;

/// `out[t·stride + j] = x[t, :] · w[j, :] + bias[j]` for x `[rows, k]` and w `[n, k]`: every
/// output is the dot product of one input row with one weight row (weights are stored
/// `[out, in]`); `stride` ≥ n lets a caller fill a column panel of a wider output.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    out: &mut [f32],
    stride: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    n: usize,
) {
    super::check_matmul_shapes(out, stride, x, w.len(), k, bias, rows, k, n);
    for t in 0..rows {
        let x_row = &x[t * k..(t + 1) * k];
        for j in 0..n {
            let b = bias.map_or(0.0, |b| b[j]);
            out[t * stride + j] = dot(x_row, &w[j * k..(j + 1) * k]) + b;
        }
    }
}

/// Little-endian F16 values to f32.
pub fn decode_f16(dst: &mut [f32], src: &[u8]) {
    for (d, h) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16_to_f32(u16::from_le_bytes([h[0], h[1]]));
    }
}

/// Q8_0 blocks (an f16 scale, then 32 int8 values) to f32: `scale · q`.
pub fn decode_q8_0(dst: &mut [f32], src: &[u8]) {
    for (d, block) in dst.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
        let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        for (v, &q) in d.iter_mut().zip(&block[2..]) {
            *v = scale * (q as i8) as f32;
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

/// `out[t·stride + j] = Σ_blocks scale · (x[t, block] · q[j, block]) + bias[j]`: the matrix
/// product with Q8_0 weight rows `[n, k]` read in place, each block's int8 dot product scaled
/// once.
#[allow(clippy::too_many_arguments)]
pub fn matmul_q8_0(
    out: &mut [f32],
    stride: usize,
    x: &[f32],
    w: &[u8],
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    n: usize,
) {
    let row_bytes = k / 32 * 34;
    assert!(k.is_multiple_of(32), "Q8_0 rows are whole blocks");
    super::check_matmul_shapes(out, stride, x, w.len(), row_bytes, bias, rows, k, n);
    for t in 0..rows {
        let x_row = &x[t * k..(t + 1) * k];
        for j in 0..n {
            let blocks = w[j * row_bytes..(j + 1) * row_bytes].chunks_exact(34);
            let sum: f32 = blocks
                .zip(x_row.chunks_exact(32))
                .map(|(block, xs)| {
                    let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
                    scale * xs.iter().zip(&block[2..]).map(|(x, &q)| x * (q as i8) as f32).sum::<f32>()
                })
                .sum();
            out[t * stride + j] = sum + bias.map_or(0.0, |b| b[j]);
        }
    }
}
