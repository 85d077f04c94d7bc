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

/// GPT-2's GELU in place, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, as the equal
/// `x / (1 + e^y)` with `y = x·(A + B·x²)` (see `GELU_A`, `GELU_B`), so the only function
/// evaluated is `exp`.
pub fn gelu_tanh(values: &mut [f32]) {
    for v in values {
        let x = *v;
        *v = x / (1.0 + exp(x * (super::GELU_A + super::GELU_B * (x * x))));
    }
}

/// `v ← e^((v − shift)·scale)` in place: a softmax's weights, up to their sum.
pub fn exp_shifted(values: &mut [f32], shift: f32, scale: f32) {
    for v in values {
        *v = exp((*v - shift) * scale);
    }
}

/// `e^y` within two ulps: `2^n · p(r)` with `n = round(y / ln 2)`, `r = y − n·ln 2` (ln 2 in two
/// parts, so `r` is exact) and `p(r) = 1 + r + r²·q(r)`, `q` from `super::EXP_POLY`. Below
/// `super::EXP_MIN` (where `e^y` is no longer a normal float) the result is 0; above
/// `super::EXP_MAX` it is `e^EXP_MAX`.
pub fn exp(y: f32) -> f32 {
    use super::{EXP_MAX, EXP_MIN, EXP_POLY, LN2_HI, LN2_LO};
    let y = if EXP_MAX < y { EXP_MAX } else { y };
    let n = (y * core::f32::consts::LOG2_E).round_ties_even();
    let r = (y - n * LN2_HI) - n * LN2_LO;
    let p = EXP_POLY[1..].iter().fold(EXP_POLY[0], |p, &c| p * r + c);
    let e = ((p * (r * r)) + r) + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if y < EXP_MIN { 0.0 } else { e * two_n }
}

/// The largest of `values`, −∞ when there are none; NaNs are passed over.
pub fn max(values: &[f32]) -> f32 {
    largest(values.iter().copied(), f32::NEG_INFINITY)
}

/// The index of the first value equal to `target` (either zero matches the other).
pub fn position(values: &[f32], target: f32) -> Option<usize> {
    values.iter().position(|&v| v == target)
}

/// `Σ values` in f64, the way the SIMD twin adds: value i of the first `len − len % 4` into lane
/// `i % 4`, the lanes as `(l0 + l1) + (l2 + l3)`, then the rest in order.
pub fn sum(values: &[f32]) -> f64 {
    let mut groups = values.chunks_exact(4);
    let mut lanes = [0.0f64; 4];
    for group in &mut groups {
        for (lane, &v) in lanes.iter_mut().zip(group) {
            *lane += v as f64;
        }
    }
    groups.remainder().iter().fold((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]), |s, &v| s + v as f64)
}

/// `out[j] = (q · rows[j·D..(j+1)·D]) · scale` for D = q.len() > 0.
pub fn scaled_dots(out: &mut [f32], q: &[f32], rows: &[f32], scale: f32) {
    let d = q.len();
    assert!(d > 0 && rows.len() >= out.len() * d);
    for (out, row) in out.iter_mut().zip(rows.chunks_exact(d)) {
        *out = dot(q, row) * scale;
    }
}

/// `Σ a[i]·b[i]` over the shorter of the two.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `out[e] = Σ_j weights[j]·rows[j·stride + e]` for e < out.len(), each sum taken in the order of
/// j from zero.
pub fn weighted_sum(out: &mut [f32], weights: &[f32], rows: &[f32], stride: usize) {
    let len = out.len();
    out.fill(0.0);
    for (j, &weight) in weights.iter().enumerate() {
        for (out, &value) in out.iter_mut().zip(&rows[j * stride..][..len]) {
            *out += weight * value;
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_within_two_ulps_and_flushes_below_the_normals() {
        let mut y = -87.3f32;
        while y < 88.0 {
            let (got, want) = (super::exp(y) as f64, (y as f64).exp());
            assert!(((got - want) / want).abs() < 2.0 * f32::EPSILON as f64, "exp({y}) = {got}, expected {want}");
            y += 0.0137;
        }
        assert_eq!(super::exp(-87.4), 0.0);
        assert_eq!(super::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::exp(0.0), 1.0);
    }

    #[test]
    fn gelu_is_the_tanh_form() {
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) in f64.
        let reference =
            |x: f64| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
        let xs: Vec<f32> = (-1200..=1200).map(|i| i as f32 / 100.0).chain([-1e6, 1e6]).collect();
        let mut got = xs.clone();
        super::gelu_tanh(&mut got);
        for (&x, &got) in xs.iter().zip(&got) {
            let want = reference(x as f64);
            assert!((got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0), "gelu({x}) = {got}, expected {want}");
        }
    }
}
