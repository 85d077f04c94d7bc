//! Plain-Rust kernels: the portable build's kernels and the reference for the SIMD twin.

use super::{Q8Rows, QuantizedRows, f16_to_f32, largest};

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

/// x in blocks of 32 as Q8_0, the way llama.cpp quantizes: per block the scale
/// `d = max|x| / 127` into `scales` and `round(x / d)` (halves away from zero) into `values`.
pub fn quantize_q8_0(values: &mut [i8], scales: &mut [f32], x: &[f32]) {
    assert!(x.len().is_multiple_of(32) && values.len() >= x.len() && scales.len() >= x.len() / 32);
    for ((block, q), scale) in x.chunks_exact(32).zip(values.chunks_exact_mut(32)).zip(scales) {
        let d = largest(block.iter().map(|v| v.abs()), 0.0) / 127.0;
        let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
        for (q, &v) in q.iter_mut().zip(block) {
            *q = round_half_away(v * inverse) as i8;
        }
        *scale = d;
    }
}

/// `v.round()` (halves away from zero), from `trunc`, which WebAssembly has as an instruction
/// where `round` is a library call. `v - trunc(v)` is exact, so the result is too.
pub fn round_half_away(v: f32) -> f32 {
    let whole = v.trunc();
    if (v - whole).abs() >= 0.5 { whole + v.signum() } else { whole }
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

/// `out[t·stride + j] = Σ_blocks dw·dx · (q_w[j, block] · q_x[t, block]) + bias[j]`: the
/// matrix product of Q8_0 weight rows `[n, k]`, read in place, with input rows quantized the
/// same way (`x`, see `QuantizedRows`), as llama.cpp computes it. Each block's dot product is
/// exact in integers; the arithmetic follows the SIMD twin's four lanes (lane `l` sums the pairs
/// `8c + 2l`, `8c + 2l + 1`), so both give the same bits.
#[allow(clippy::too_many_arguments)]
pub fn matmul_q8_0(
    out: &mut [f32],
    stride: usize,
    x: &QuantizedRows,
    w: Q8Rows,
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    n: usize,
) {
    let (row_bytes, blocks) = super::check_q8_0_shapes(out, stride, x, w, bias, rows, k, n);
    for t in 0..rows {
        for j in 0..n {
            let mut acc = [0.0f32; 4];
            for b in 0..blocks {
                let block = &w.blocks[j * row_bytes + 34 * b..][..34];
                let scale = w.scales[j * blocks + b] * x.scales[t * blocks + b];
                let xq = &x.values[t * k + 32 * b..][..32];
                for (lane, acc) in acc.iter_mut().enumerate() {
                    let mut sum = 0i32;
                    for c in 0..4 {
                        for e in 0..2 {
                            let i = 8 * c + 2 * lane + e;
                            sum += (block[2 + i] as i8) as i32 * xq[i] as i32;
                        }
                    }
                    *acc += sum as f32 * scale;
                }
            }
            out[t * stride + j] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + bias.map_or(0.0, |b| b[j]);
        }
    }
}
