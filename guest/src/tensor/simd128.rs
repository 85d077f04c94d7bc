//! WebAssembly SIMD128 kernels, the twins of `scalar` with the same signatures.
//!
//! The matrix product works on register tiles: each step loads four floats of a few input rows
//! and a few weight rows and updates one accumulator per (row, weight) pair. Eight accumulators
//! (2 rows × 4 weights) is what cranelift keeps in registers without spilling; an odd input row
//! (and decode's one) uses 1 × 4; weight rows left over go one at a time.

use super::{Q8Rows, QuantizedRows};
use core::arch::wasm32::*;

/// `out[t·stride + j] = x[t, :] · w[j, :] + bias[j]` for x `[rows, k]` and w `[n, k]`.
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
    let mut store = |tile: &[f32], t_len: usize, n_len: usize, t0: usize, j0: usize, j_step: usize| {
        for a in 0..t_len {
            for b in 0..n_len {
                let j = j0 + b * j_step;
                out[(t0 + a) * stride + j] = tile[a * n_len + b] + bias.map_or(0.0, |bias| bias[j]);
            }
        }
    };
    // Each tile takes one weight row from each quarter of the matrix, so that the quarters are
    // read front to back as four long streams that the memory prefetchers keep up with, rather
    // than short ones that start anew with every tile. (For one input row, eight rows from the
    // eighths streamed about a quarter slower; eight or four neighbouring rows, slower still.)
    let quarter = n / 4;
    for j in 0..quarter {
        let mut t = 0;
        while t + 2 <= rows {
            store(&tile::<2, 4, 8>(x, w, k, t, j, quarter), 2, 4, t, j, quarter);
            t += 2;
        }
        if t < rows {
            store(&tile::<1, 4, 4>(x, w, k, t, j, quarter), 1, 4, t, j, quarter);
        }
    }
    for j in 4 * quarter..n {
        for t in 0..rows {
            store(&tile::<1, 1, 1>(x, w, k, t, j, 1), 1, 1, t, j, 1);
        }
    }
}

/// Dot products of input rows `t0..t0+T` with weight rows `j0 + b·j_step` for b in 0..N, as a
/// `T × N` row-major array of `TN = T·N` values. The caller has checked that those rows exist.
#[inline(always)]
fn tile<const T: usize, const N: usize, const TN: usize>(
    x: &[f32],
    w: &[f32],
    k: usize,
    t0: usize,
    j0: usize,
    j_step: usize,
) -> [f32; TN] {
    let mut acc = [f32x4_splat(0.0); TN];
    let k4 = k - k % 4;
    // Where float p starts in each input row and each weight row, and the steps after which the
    // loop turn from p ends early (none; see `steps`), as values LLVM cannot see through:
    // the steps of a turn are then constant offsets from the starts, which become the offsets of
    // the wasm loads, and steps that differ only in their offsets are not merged back into one
    // copy with jumps between them.
    let starts = |p: usize| {
        // SAFETY: p < k, and the tile's input and weight rows exist, so each start lies inside
        // its row.
        core::hint::black_box(unsafe {
            (
                (
                    core::array::from_fn::<_, T, _>(|a| x.as_ptr().add((t0 + a) * k + p)),
                    core::array::from_fn::<_, N, _>(|b| w.as_ptr().add((j0 + b * j_step) * k + p)),
                ),
                0u32,
            )
        })
    };
    // Floats u..u + 4 after the starts into the accumulators; the caller keeps them inside k4.
    let step = |acc: &mut [v128; TN], (x_rows, w_rows): ([*const f32; T], [*const f32; N]), u: usize| {
        // SAFETY: the four floats lie inside each row (the caller's bound).
        let xv = x_rows.map(|x_row| unsafe { v128_load(x_row.add(u).cast()) });
        for (b, w_row) in w_rows.into_iter().enumerate() {
            // SAFETY: as above.
            let wv = unsafe { v128_load(w_row.add(u).cast()) };
            for a in 0..T {
                acc[a * N + b] = f32x4_add(acc[a * N + b], f32x4_mul(xv[a], wv));
            }
        }
    };
    // 128 floats per loop turn, then 64: the engine's epoch check on each loop back-edge makes
    // cranelift store and reload the accumulators there, so fewer turns spill less. (256 floats
    // per turn ran at half the speed.)
    let mut p = 0;
    while p + 128 <= k4 {
        let (at, ends) = starts(p);
        p += 4 * steps::<32, _>(&mut acc, ends, |acc, i| step(acc, at, 4 * i));
    }
    while p + 64 <= k4 {
        let (at, ends) = starts(p);
        p += 4 * steps::<16, _>(&mut acc, ends, |acc, i| step(acc, at, 4 * i));
    }
    while p < k4 {
        step(&mut acc, starts(p).0, 0);
        p += 4;
    }
    let mut result = acc.map(horizontal_sum);
    if k4 < k {
        add_tails::<T, N, TN>(&mut result, x, w, k, t0, j0, j_step);
    }
    result
}

/// Adds the products past the last whole four floats (k not a multiple of 4) to a tile's sums.
/// Kept out of `tile`: with this loop in it, LLVM kept the tile's accumulators in memory, a load
/// and a store around every add.
#[inline(never)]
fn add_tails<const T: usize, const N: usize, const TN: usize>(
    result: &mut [f32; TN],
    x: &[f32],
    w: &[f32],
    k: usize,
    t0: usize,
    j0: usize,
    j_step: usize,
) {
    let k4 = k - k % 4;
    for a in 0..T {
        for b in 0..N {
            let x_row = &x[(t0 + a) * k..(t0 + a + 1) * k];
            let w_row = &w[(j0 + b * j_step) * k..(j0 + b * j_step + 1) * k];
            result[a * N + b] += x_row[k4..].iter().zip(&w_row[k4..]).map(|(x, w)| x * w).sum::<f32>();
        }
    }
}

/// Little-endian F16 values to f32, eight at a time, exactly. Normal values move their
/// exponent and mantissa into f32 position with integer arithmetic; subnormals (exponent 0) are
/// `mantissa · 2^-24`, computed from the mantissa as an integer so no subnormal float ever
/// enters the arithmetic (x86 would slow down a hundredfold on those). The model loader has
/// already refused infinities and NaNs.
pub fn decode_f16(dst: &mut [f32], src: &[u8]) {
    let len = dst.len().min(src.len() / 2);
    let len8 = len - len % 8;
    let mut i = 0;
    while i < len8 {
        // SAFETY: i + 8 <= len: 16 bytes of src and 8 floats of dst.
        let halves = unsafe { v128_load(src.as_ptr().add(2 * i).cast()) };
        for (part, words) in [u32x4_extend_low_u16x8(halves), u32x4_extend_high_u16x8(halves)].into_iter().enumerate() {
            // SAFETY: as above.
            unsafe { v128_store(dst.as_mut_ptr().add(i + 4 * part).cast(), f16x4_to_f32x4(words)) };
        }
        i += 8;
    }
    super::scalar::decode_f16(&mut dst[len8..len], &src[2 * len8..2 * len]);
}

/// Four F16 values (the low halves of `words`' u32 lanes) to f32, exactly, without branches.
#[inline(always)]
fn f16x4_to_f32x4(words: v128) -> v128 {
    let sign = i32x4_shl(v128_and(words, u32x4_splat(0x8000)), 16);
    let magnitude = v128_and(words, u32x4_splat(0x7fff));
    let normal = i32x4_add(i32x4_shl(magnitude, 13), u32x4_splat((127 - 15) << 23));
    let subnormal = f32x4_mul(f32x4_convert_i32x4(magnitude), f32x4_splat(2f32.powi(-24)));
    let is_subnormal = i32x4_lt(magnitude, u32x4_splat(0x400));
    v128_or(v128_bitselect(subnormal, normal, is_subnormal), sign)
}

/// Q8_0 blocks (an f16 scale, then 32 int8 values) to f32: `scale · q`, 32 at a time.
pub fn decode_q8_0(dst: &mut [f32], src: &[u8]) {
    for (d, block) in dst.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
        let scale = f32x4_splat(super::f16_to_f32(u16::from_le_bytes([block[0], block[1]])));
        for half in 0..2 {
            // SAFETY: a block has 34 bytes; 2 + 16 * half + 16 <= 34.
            let q = unsafe { v128_load(block.as_ptr().add(2 + 16 * half).cast()) };
            for (j, shorts) in [i16x8_extend_low_i8x16(q), i16x8_extend_high_i8x16(q)].into_iter().enumerate() {
                for (m, ints) in
                    [i32x4_extend_low_i16x8(shorts), i32x4_extend_high_i16x8(shorts)].into_iter().enumerate()
                {
                    let at = 16 * half + 8 * j + 4 * m;
                    // SAFETY: at + 4 <= 32, the length of this chunk of dst.
                    unsafe { v128_store(d.as_mut_ptr().add(at).cast(), f32x4_mul(f32x4_convert_i32x4(ints), scale)) };
                }
            }
        }
    }
}

/// The matrix product of Q8_0 weight rows `[n, k]`, read in place, with input rows quantized
/// the same way (the twin of `scalar::matmul_q8_0`, with the same bits): per block, eight int8
/// values of each side are taken as int16 and multiplied in pairs into int32 lanes
/// (`i32x4.dot_i16x8_s`), and the block's four lanes are scaled (weight scale × input scale)
/// into float accumulators. One input row (decode) goes against two weight rows at a time
/// (`row_dots`); two or more go up to four at a time against one weight row, read in their wide
/// forms (`batch_dots`).
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
    super::check_q8_0_shapes(out, stride, x, w, bias, rows, k, n);
    // The widths of GPT-2 124M and of the bundled model, and 355M's, get copies of their own in
    // which the width is a constant: a row's block loop is then straight-line code.
    match k {
        256 => product_q8_0::<256>(out, stride, x, w, bias, rows, k, n),
        768 => product_q8_0::<768>(out, stride, x, w, bias, rows, k, n),
        1024 => product_q8_0::<1024>(out, stride, x, w, bias, rows, k, n),
        _ => product_q8_0::<0>(out, stride, x, w, bias, rows, k, n),
    }
}

/// `matmul_q8_0` once its shapes are checked; `K` is the row width when it is a constant, 0 when
/// it is `k`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn product_q8_0<const K: usize>(
    out: &mut [f32],
    stride: usize,
    x: &QuantizedRows,
    w: Q8Rows,
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    n: usize,
) {
    let k = if K == 0 { k } else { K };
    let (blocks, row_bytes) = (k / 32, k / 32 * 34);
    // Where rows start, for `row_dots` and `batch_dots`: `check_q8_0_shapes` has checked that w
    // holds n rows of `row_bytes` bytes and `blocks` scales, and x `rows` rows of k values and
    // `blocks` scales in each of its forms.
    let weight_row =
        |j: usize| (w.blocks.as_ptr().wrapping_add(j * row_bytes), w.scales.as_ptr().wrapping_add(j * blocks));
    if rows == 1 {
        let input = (x.values.as_ptr(), x.scales.as_ptr());
        // SAFETY: as above, for input row 0 and weight rows 0..n.
        unsafe { matvec_q8_0::<K>(&mut out[..n], input, weight_row(0), bias.map(|b| &b[..n]), k) };
        return;
    }
    let wide_rows =
        |t: usize| (x.wide_values.as_ptr().wrapping_add(t * k), x.splat_scales.as_ptr().wrapping_add(4 * t * blocks));
    // The input rows in chunks of `CHUNK_BYTES` (a multiple of four rows, at least four): every
    // weight row goes through a chunk while it stays in the L1 cache.
    let chunk = (CHUNK_BYTES / 2 / k / 4).max(1) * 4;
    for first in (0..rows).step_by(chunk) {
        let end = rows.min(first + chunk);
        for j in 0..n {
            let mut put = |t: usize, acc: &[v128]| {
                for (a, &acc) in acc.iter().enumerate() {
                    out[(t + a) * stride + j] = horizontal_sum(acc) + bias.map_or(0.0, |b| b[j]);
                }
            };
            // Four input rows at a time share the weight row's loads, then two, then one.
            let mut t = first;
            while t + 4 <= end {
                // SAFETY: weight row j < n, input rows t..t + 4 <= rows.
                put(t, &unsafe { batch_dots::<4>(weight_row(j), wide_rows(t), k, blocks) });
                t += 4;
            }
            if t + 2 <= end {
                // SAFETY: weight row j < n, input rows t..t + 2 <= rows.
                put(t, &unsafe { batch_dots::<2>(weight_row(j), wide_rows(t), k, blocks) });
                t += 2;
            }
            if t < end {
                // SAFETY: weight row j < n, input row t < rows.
                put(t, &unsafe { batch_dots::<1>(weight_row(j), wide_rows(t), k, blocks) });
            }
        }
    }
}

/// How many bytes of int16 input values the product of several input rows takes per pass over
/// the weights. Unchunked, 1024 input rows of 1024 values (2 MiB) took 1.2–1.25× the time of
/// the product from int8 values before it; in chunks of 8, 16 and 32 KiB, six shapes of 64 and
/// 1024 rows took 0.86–0.95×, 0.85–0.90× and 0.87–0.94× its time.
const CHUNK_BYTES: usize = 16384;

/// `matmul_q8_0` for the one input row `x` (decode) against the `n = out.len()` weight rows from
/// `w`, in a function of its own: the loop over the rows then keeps its few values in registers.
/// Rows `j` and `j + n/2` go together, so the two halves of the matrix stream side by side and
/// share the input's loads. `K` is the row width when it is a constant, 0 when it is `k`.
///
/// # Safety
///
/// `x` holds k values and k / 32 scales, and `w` n rows of k / 32 blocks and as many scales.
#[inline(never)]
unsafe fn matvec_q8_0<const K: usize>(out: &mut [f32], x: InputRow, w: WeightRow, bias: Option<&[f32]>, k: usize) {
    let k = if K == 0 { k } else { K };
    let (blocks, row_bytes) = (k / 32, k / 32 * 34);
    let weight_row = |j: usize| (w.0.wrapping_add(j * row_bytes), w.1.wrapping_add(j * blocks));
    let output = |acc: v128, j: usize| horizontal_sum(acc) + bias.map_or(0.0, |b| b[j]);
    let half = out.len() / 2;
    let (first, second) = out.split_at_mut(half);
    for (j, (first, second)) in first.iter_mut().zip(second.iter_mut()).enumerate() {
        // SAFETY: weight rows j and j + half < n.
        let [a, b] = unsafe { row_dots::<2>([weight_row(j), weight_row(j + half)], x, blocks) };
        *first = output(a, j);
        *second = output(b, j + half);
    }
    if out.len() % 2 == 1 {
        let j = out.len() - 1;
        // SAFETY: weight row j < n.
        let [acc] = unsafe { row_dots::<1>([weight_row(j)], x, blocks) };
        out[j] = output(acc, j);
    }
}

/// Where a Q8_0 weight row's blocks and its f32 scales start.
type WeightRow = (*const u8, *const f32);

/// Where a quantized input row's values and its scales start.
type InputRow = (*const i8, *const f32);

/// Where quantized input rows start in their wide forms (`QuantizedRows::wide_values` and
/// `splat_scales`; the next row's are k values and 4·k / 32 scales on).
type WideRows = (*const i16, *const f32);

/// The float accumulators of the input row `x` against `W` Q8_0 weight rows. In each block,
/// int32 lane `l` sums the products of values `8c + 2l` and `8c + 2l + 1` for c in 0..4.
///
/// # Safety
///
/// Each weight row holds `blocks` blocks (34 bytes each) and `blocks` scales from its starts,
/// and the input row 32·`blocks` values and `blocks` scales.
#[inline(always)]
unsafe fn row_dots<const W: usize>(w_rows: [WeightRow; W], (x_values, x_scales): InputRow, blocks: usize) -> [v128; W] {
    // Where block b starts in each weight row and its scales, and in the input row and its
    // scales, as pointers LLVM cannot see through: the blocks of a loop turn are then constant
    // offsets from them, which become the offsets of the wasm loads instead of an address
    // addition per load.
    let starts = |b: usize| {
        // SAFETY: b < blocks, so each start lies inside its row.
        core::hint::black_box(unsafe {
            (
                w_rows.map(|(w_row, _)| w_row.add(34 * b)),
                w_rows.map(|(_, w_scales)| w_scales.add(b)),
                x_values.add(32 * b),
                x_scales.add(b),
            )
        })
    };
    // Block u from `starts`; lane u % 4 of `scales` holds its weight scale × input scale for each
    // weight row.
    // SAFETY (for the loads): the caller keeps b + u < blocks, so the block lies inside the
    // weight rows and inside the input row, and its scales inside the scale rows (this
    // function's contract).
    let block = |acc: &mut [v128; W], (w_blocks, _, x_block, _): RowStarts<W>, u: usize, scales: [v128; W]| unsafe {
        let mut sums = [i32x4_splat(0); W];
        for c in 0..4 {
            // Filled in a loop: through `map`, the loads lost their constant offsets (an address
            // addition each).
            let mut wv = [i16x8_splat(0); W];
            for (wv, w_block) in wv.iter_mut().zip(w_blocks) {
                *wv = i16x8_load_extend_i8x8(w_block.add(34 * u + 2 + 8 * c).cast());
            }
            let xv = i16x8_load_extend_i8x8(x_block.add(32 * u + 8 * c).cast());
            for (sum, wv) in sums.iter_mut().zip(wv) {
                *sum = i32x4_add(*sum, i32x4_dot_i16x8(wv, xv));
            }
        }
        for ((acc, sum), scales) in acc.iter_mut().zip(sums).zip(scales) {
            *acc = f32x4_add(*acc, f32x4_mul(f32x4_convert_i32x4(sum), broadcast(scales, u % 4)));
        }
    };
    let four = |acc: &mut [v128; W], at: RowStarts<W>, u: usize| {
        let (_, w_scale, _, x_scale) = at;
        // SAFETY: blocks b + u..b + u + 4 exist, and so do their scales.
        let (w_scales, x_scales) =
            unsafe { (w_scale.map(|w_scale| v128_load(w_scale.add(u).cast())), v128_load(x_scale.add(u).cast())) };
        let scales = w_scales.map(|w_scales| f32x4_mul(w_scales, x_scales));
        // Written out rather than through `in_four`: with the block as its closure, LLVM laid
        // out the whole product differently (a seventh more machine code).
        block(acc, at, u, scales);
        settle(acc);
        block(acc, at, u + 1, scales);
        settle(acc);
        block(acc, at, u + 2, scales);
        settle(acc);
        block(acc, at, u + 3, scales);
    };
    let mut acc = [f32x4_splat(0.0); W];
    by_turns(
        &mut acc,
        blocks,
        starts,
        |acc, at, u| {
            four(acc, at, u);
            settle(acc);
            four(acc, at, u + 4);
            settle(acc);
        },
        |acc, at @ (_, w_scale, _, x_scale)| {
            // SAFETY: block b exists, and so do its scales.
            let scales = w_scale.map(|w_scale| unsafe { f32x4_splat(*w_scale * *x_scale) });
            block(acc, at, 0, scales);
        },
    );
    acc
}

/// Pointers to one block of `W` Q8_0 weight rows and their scales, and of an input row and its
/// scales.
type RowStarts<const W: usize> = ([*const u8; W], [*const f32; W], *const i8, *const f32);

/// The float accumulators of `T` input rows, in their wide forms from `x_values` and
/// `x_scales`, against one Q8_0 weight row: per block, the weight row's 32 values are widened to int16 once, and each input
/// row's values are multiplied with them in pairs into int32 lanes straight from memory (lane `l`
/// sums the products of values `8c + 2l` and `8c + 2l + 1` for c in 0..4, as in `row_dots`),
/// then scaled by the weight scale × its spread scale. Each input row's sum is settled before
/// the next one's loads: left to itself, LLVM put all of a block's loads first, more values
/// than there are registers.
///
/// # Safety
///
/// The weight row holds `blocks` blocks (34 bytes each) and `blocks` scales from its starts, and
/// each of the T input rows k = 32·`blocks` values and 4·`blocks` scales.
#[inline(always)]
unsafe fn batch_dots<const T: usize>(
    (w_row, w_scales): WeightRow,
    (x_values, x_scales): WideRows,
    k: usize,
    blocks: usize,
) -> [v128; T] {
    // Where block b starts, as in `row_dots`.
    let starts = |b: usize| {
        // SAFETY: b < blocks, so each start lies inside its row.
        core::hint::black_box(unsafe {
            (
                w_row.add(34 * b),
                w_scales.add(b),
                core::array::from_fn::<_, T, _>(|a| x_values.add(a * k + 32 * b)),
                core::array::from_fn::<_, T, _>(|a| x_scales.add(4 * (a * blocks + b))),
            )
        })
    };
    // Block u from `starts`.
    // SAFETY (for the loads): the caller keeps b + u < blocks, so the block and its scales lie
    // inside the weight row and the T input rows (this function's contract).
    let block = |acc: &mut [v128; T], (w_block, w_scale, x_blocks, x_scales): BatchStarts<T>, u: usize| unsafe {
        let mut wv = [i16x8_splat(0); 4];
        for (c, wv) in wv.iter_mut().enumerate() {
            *wv = i16x8_load_extend_i8x8(w_block.add(34 * u + 2 + 8 * c).cast());
        }
        let w_scale = v128_load32_splat(w_scale.add(u).cast());
        for ((acc, x_block), x_scale) in acc.iter_mut().zip(x_blocks).zip(x_scales) {
            let dot = |c: usize| i32x4_dot_i16x8(wv[c], v128_load(x_block.add(32 * u + 8 * c).cast()));
            let sum = i32x4_add(i32x4_add(dot(0), dot(1)), i32x4_add(dot(2), dot(3)));
            let scale = f32x4_mul(w_scale, v128_load(x_scale.add(4 * u).cast()));
            *acc = f32x4_add(*acc, f32x4_mul(f32x4_convert_i32x4(sum), scale));
            settle(&[*acc]);
        }
    };
    let four = |acc: &mut [v128; T], at: BatchStarts<T>, u: usize| {
        block(acc, at, u);
        block(acc, at, u + 1);
        block(acc, at, u + 2);
        block(acc, at, u + 3);
    };
    let mut acc = [f32x4_splat(0.0); T];
    by_turns(
        &mut acc,
        blocks,
        starts,
        |acc, at, u| {
            four(acc, at, u);
            four(acc, at, u + 4);
        },
        |acc, at| block(acc, at, 0),
    );
    acc
}

/// Pointers to one block of a Q8_0 weight row and its scale, and of `T` input rows and their
/// spread scales.
type BatchStarts<const T: usize> = (*const u8, *const f32, [*const i16; T], [*const f32; T]);

/// A row's `blocks` in loop turns: `turn(acc, starts(b), u)` takes blocks b + u to b + u + 7, and
/// `single(acc, starts(b))` block b alone, for the blocks past the last whole turn. Eight blocks
/// per turn: the engine's epoch check on each loop back-edge has a call on its slow path that may
/// clobber every vector register, so cranelift stores and reloads the accumulators around it,
/// and that store-to-load latency sits on their dependency chain.
///
/// The first four turns (rows up to 1024 wide: GPT-2 124M's and the bundled model's, their LM
/// heads included) are straight-line code, without a loop back-edge and its spills; where the
/// width is a constant (`matmul_q8_0`'s copies), so are the branches. They share one start, so
/// each turn's loads have offsets of their own: turns that differed only in their starts would
/// be merged back into one copy with jumps between them. The callers write their turns out (two
/// groups of four blocks): handed one group for `by_turns` to take twice, LLVM stopped inlining
/// decode's groups into their turns.
#[inline(always)]
fn by_turns<A, S: Copy>(
    acc: &mut A,
    blocks: usize,
    starts: impl Fn(usize) -> S,
    turn: impl Fn(&mut A, S, usize),
    single: impl Fn(&mut A, S),
) {
    let mut b = 0;
    if blocks >= 8 {
        let at = starts(0);
        turn(acc, at, 0);
        b = 8;
        if blocks >= 16 {
            turn(acc, at, 8);
            b = 16;
            if blocks >= 24 {
                turn(acc, at, 16);
                b = 24;
                if blocks >= 32 {
                    turn(acc, at, 24);
                    b = 32;
                }
            }
        }
    }
    while b + 8 <= blocks {
        turn(acc, starts(b), 0);
        b += 8;
    }
    while b < blocks {
        single(acc, starts(b));
        b += 1;
    }
}

/// x in blocks of 32 as Q8_0 (the twin of `scalar::quantize_q8_0`, with the same bits): the
/// largest magnitude by lane-wise `pmax`, then `round(x / d)` from `f32x4.trunc` and a
/// comparison of what it dropped with one half, exactly as the scalar `round_half_away`.
pub fn quantize_q8_0(values: &mut [i8], scales: &mut [f32], x: &[f32]) {
    assert!(x.len().is_multiple_of(32) && values.len() >= x.len() && scales.len() >= x.len() / 32);
    for ((block, q), scale) in x.chunks_exact(32).zip(values.chunks_exact_mut(32)).zip(scales) {
        // SAFETY: a block has 32 floats.
        let v: [v128; 8] = core::array::from_fn(|i| unsafe { v128_load(block.as_ptr().add(4 * i).cast()) });
        // `pmax(m, a)` keeps m when a is NaN, as the scalar comparison does.
        let max = v.iter().fold(f32x4_splat(0.0), |m, &a| f32x4_pmax(m, f32x4_abs(a)));
        let d = super::largest(lanes(max), 0.0) / 127.0;
        let inverse = f32x4_splat(if d == 0.0 { 0.0 } else { 1.0 / d });
        let ints: [v128; 8] = v.map(|v| {
            let p = f32x4_mul(v, inverse);
            let whole = f32x4_trunc(p);
            let away = f32x4_ge(f32x4_abs(f32x4_sub(p, whole)), f32x4_splat(0.5));
            let one = v128_or(f32x4_splat(1.0), v128_and(p, f32x4_splat(-0.0)));
            i32x4_trunc_sat_f32x4(f32x4_add(whole, v128_and(away, one)))
        });
        for half in 0..2 {
            let shorts = [0, 1].map(|i| i16x8_narrow_i32x4(ints[4 * half + 2 * i], ints[4 * half + 2 * i + 1]));
            // SAFETY: q has 32 values; 16 · half + 16 <= 32.
            unsafe { v128_store(q.as_mut_ptr().add(16 * half).cast(), i8x16_narrow_i16x8(shorts[0], shorts[1])) };
        }
        *scale = d;
    }
}

/// GPT-2's GELU in place (the twin of `scalar::gelu_tanh`, with the same bits): `x / (1 + e^y)`.
pub fn gelu_tanh(values: &mut [f32]) {
    let (a, b, one) = (f32x4_splat(super::GELU_A), f32x4_splat(super::GELU_B), f32x4_splat(1.0));
    map_in_place(values, |x| {
        f32x4_div(x, f32x4_add(one, exp(f32x4_mul(x, f32x4_add(a, f32x4_mul(b, f32x4_mul(x, x)))))))
    });
}

/// `v ← e^((v − shift)·scale)` in place (the twin of `scalar::exp_shifted`, with the same bits).
pub fn exp_shifted(values: &mut [f32], shift: f32, scale: f32) {
    let (shift, scale) = (f32x4_splat(shift), f32x4_splat(scale));
    map_in_place(values, |v| exp(f32x4_mul(f32x4_sub(v, shift), scale)));
}

/// `f` over `values` in place, 32 at a time, then four at a time; a last partial group goes
/// through a padded copy.
#[inline(always)]
fn map_in_place<F: Fn(v128) -> v128>(values: &mut [f32], f: F) {
    let mut chunks = values.chunks_exact_mut(32);
    for chunk in &mut chunks {
        map_32(chunk.try_into().expect("32 values"), &f);
    }
    let mut groups = chunks.into_remainder().chunks_exact_mut(4);
    for group in &mut groups {
        // SAFETY: a group has four floats.
        unsafe { v128_store(group.as_mut_ptr().cast(), f(v128_load(group.as_ptr().cast()))) };
    }
    let rest = groups.into_remainder();
    if !rest.is_empty() {
        let mut padded = [0.0f32; 4];
        padded[..rest.len()].copy_from_slice(rest);
        // SAFETY: `padded` has four floats.
        unsafe { v128_store(padded.as_mut_ptr().cast(), f(v128_load(padded.as_ptr().cast()))) };
        rest.copy_from_slice(&padded[..rest.len()]);
    }
}

/// `f` over 32 values, in a call of its own without a loop: in a loop, the engine's epoch check
/// on the back-edge (its slow path a call that may clobber every vector register) makes
/// cranelift store every constant of `f` to the stack and reload it on every turn.
#[inline(never)]
fn map_32<F: Fn(v128) -> v128>(values: &mut [f32; 32], f: &F) {
    let mut group = |at: usize| {
        // SAFETY: at + 4 <= 32.
        unsafe { v128_store(values.as_mut_ptr().add(at).cast(), f(v128_load(values.as_ptr().add(at).cast()))) };
    };
    // Written out: LLVM would keep a loop of eight turns.
    group(0);
    group(4);
    group(8);
    group(12);
    group(16);
    group(20);
    group(24);
    group(28);
}

/// `e^y` in each lane, the twin of `scalar::exp` step for step.
#[inline(always)]
fn exp(y: v128) -> v128 {
    use super::{EXP_MAX, EXP_MIN, EXP_POLY, LN2_HI, LN2_LO};
    // `pmin(y, max)` is `max < y ? max : y`, the scalar comparison.
    let y = f32x4_pmin(y, f32x4_splat(EXP_MAX));
    let n = f32x4_nearest(f32x4_mul(y, f32x4_splat(core::f32::consts::LOG2_E)));
    let r = f32x4_sub(f32x4_sub(y, f32x4_mul(n, f32x4_splat(LN2_HI))), f32x4_mul(n, f32x4_splat(LN2_LO)));
    let p = EXP_POLY[1..].iter().fold(f32x4_splat(EXP_POLY[0]), |p, &c| f32x4_add(f32x4_mul(p, r), f32x4_splat(c)));
    let e = f32x4_add(f32x4_add(f32x4_mul(p, f32x4_mul(r, r)), r), f32x4_splat(1.0));
    let two_n = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127)), 23);
    v128_andnot(f32x4_mul(e, two_n), f32x4_lt(y, f32x4_splat(EXP_MIN)))
}

/// Makes `values` be computed where this stands. Cranelift keeps loads in program order but
/// computes pure values where they are first needed, so a loop turn over several blocks or rows
/// would load everything ahead of the arithmetic, more values than there are registers, and
/// spill them; a volatile copy of the results of one block or row needs them computed before the
/// next one's loads.
#[inline(always)]
fn settle<const N: usize>(values: &[v128; N]) {
    let mut copy = [f32x4_splat(0.0); N];
    for (copy, value) in copy.iter_mut().zip(values) {
        // SAFETY: a store to a local.
        unsafe { core::ptr::write_volatile(copy, *value) };
    }
}

/// `part(acc, 0)` to `part(acc, 3)` in order, each one's sums settled before the next one's loads
/// (see `settle`): the four parts of a loop turn.
#[inline(always)]
fn in_four<const N: usize>(acc: &mut [v128; N], mut part: impl FnMut(&mut [v128; N], usize)) {
    part(acc, 0);
    settle(acc);
    part(acc, 1);
    settle(acc);
    part(acc, 2);
    settle(acc);
    part(acc, 3);
}

/// Steps 0 to S − 1 of a loop turn (S is 16 or 32), `step(acc, i)` in order, where the turn
/// ends after step i if bit i of `ends` is set; returns how many steps ran. Callers pass an
/// `ends` of 0 through `black_box`, so every turn runs all its steps, but neither compiler knows
/// that: both keep a branch after every step that carries the accumulators out of the turn, and
/// cranelift, which computes a pure value where it is first needed, computes each step's sums
/// before that branch, so before the next step's loads. (`settle` gets that order with a store
/// of every sum, and vector stores, one a cycle on this machine's x86 cores, cost more than the
/// adds they order.)
#[inline(always)]
fn steps<const S: usize, A>(acc: &mut A, ends: u32, mut step: impl FnMut(&mut A, usize)) -> usize {
    const { assert!(S == 16 || S == 32) };
    // Written out: as a loop over the groups of four, LLVM kept the loop, and the product ran at
    // three quarters of the speed.
    'turn: {
        if four_steps(acc, ends, 0, &mut step) {
            break 'turn;
        }
        if four_steps(acc, ends, 4, &mut step) {
            break 'turn;
        }
        if four_steps(acc, ends, 8, &mut step) {
            break 'turn;
        }
        if four_steps(acc, ends, 12, &mut step) || S == 16 {
            break 'turn;
        }
        if four_steps(acc, ends, 16, &mut step) {
            break 'turn;
        }
        if four_steps(acc, ends, 20, &mut step) {
            break 'turn;
        }
        if four_steps(acc, ends, 24, &mut step) {
            break 'turn;
        }
        four_steps(acc, ends, 28, &mut step);
    }
    // Counted from `ends` after the exits meet, so that they carry the sums and nothing else: a
    // count of its own on each exit gets the exit a block of its own, and cranelift then
    // computes the sums there, after the branch.
    (ends.trailing_zeros() as usize + 1).min(S)
}

/// Steps `first` to `first + 3` of a loop turn (see `steps`), written out as `steps` is: true if
/// the turn ends after one of them.
#[inline(always)]
fn four_steps<A>(acc: &mut A, ends: u32, first: usize, step: &mut impl FnMut(&mut A, usize)) -> bool {
    let ends_after = |i: usize| ends >> i & 1 != 0;
    step(acc, first);
    if ends_after(first) {
        return true;
    }
    step(acc, first + 1);
    if ends_after(first + 1) {
        return true;
    }
    step(acc, first + 2);
    if ends_after(first + 2) {
        return true;
    }
    step(acc, first + 3);
    ends_after(first + 3)
}

/// Lane `lane` of `v` in all four lanes.
#[inline(always)]
fn broadcast(v: v128, lane: usize) -> v128 {
    match lane {
        0 => i32x4_shuffle::<0, 0, 0, 0>(v, v),
        1 => i32x4_shuffle::<1, 1, 1, 1>(v, v),
        2 => i32x4_shuffle::<2, 2, 2, 2>(v, v),
        _ => i32x4_shuffle::<3, 3, 3, 3>(v, v),
    }
}

/// The four floats of `v`.
#[inline(always)]
fn lanes(v: v128) -> [f32; 4] {
    [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
}

/// `(v0 + v1) + (v2 + v3)`.
#[inline(always)]
fn horizontal_sum(v: v128) -> f32 {
    let [v0, v1, v2, v3] = lanes(v);
    (v0 + v1) + (v2 + v3)
}

/// The largest of `values`, −∞ when there are none; NaNs are passed over (the twin of
/// `scalar::max`: the same value, of either sign when it is zero).
pub fn max(values: &[f32]) -> f32 {
    let mut groups = values.chunks_exact(4);
    // `pmax(m, v)` is `m < v ? v : m`: it keeps m when v is NaN, as the scalar comparison does.
    let max = (&mut groups).fold(f32x4_splat(f32::NEG_INFINITY), |m, group| {
        // SAFETY: a group has four floats.
        f32x4_pmax(m, unsafe { v128_load(group.as_ptr().cast()) })
    });
    super::largest(lanes(max).into_iter().chain(groups.remainder().iter().copied()), f32::NEG_INFINITY)
}

/// The index of the first value equal to `target` (the twin of `scalar::position`): sixteen
/// values at a time are compared, and the first group holding a match is searched.
pub fn position(values: &[f32], target: f32) -> Option<usize> {
    let target_v = f32x4_splat(target);
    let mut groups = values.chunks_exact(16);
    let found = groups.position(|group| {
        // SAFETY: a group has sixteen floats.
        let equal = |i: usize| f32x4_eq(unsafe { v128_load(group.as_ptr().add(4 * i).cast()) }, target_v);
        v128_any_true(v128_or(v128_or(equal(0), equal(1)), v128_or(equal(2), equal(3))))
    });
    // The group holding the first match, else the last few values, through the twin.
    let start = found.map_or(values.len() - groups.remainder().len(), |g| 16 * g);
    let end = values.len().min(start + 16);
    super::scalar::position(&values[start..end], target).map(|i| start + i)
}

/// `Σ values` in f64, four lanes in two `f64x2` (the twin of `scalar::sum`, with the same bits).
pub fn sum(values: &[f32]) -> f64 {
    let mut groups = values.chunks_exact(4);
    let (low, high) = (&mut groups).fold((f64x2_splat(0.0), f64x2_splat(0.0)), |(low, high), group| {
        // SAFETY: a group has four floats.
        let v = unsafe { v128_load(group.as_ptr().cast()) };
        (
            f64x2_add(low, f64x2_promote_low_f32x4(v)),
            f64x2_add(high, f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(v, v))),
        )
    });
    let lanes = (f64x2_extract_lane::<0>(low) + f64x2_extract_lane::<1>(low))
        + (f64x2_extract_lane::<0>(high) + f64x2_extract_lane::<1>(high));
    groups.remainder().iter().fold(lanes, |s, &v| s + v as f64)
}

/// `out[j] = (q · rows[j·D..(j+1)·D]) · scale` for D = q.len() > 0: one query's attention scores
/// against a head's keys (the twin of `scalar::scaled_dots`, within rounding).
pub fn scaled_dots(out: &mut [f32], q: &[f32], rows: &[f32], scale: f32) {
    let d = q.len();
    assert!(d > 0 && rows.len() >= out.len() * d);
    // GPT-2's head width at every size. A width known here unrolls `dot`'s loop, so no loop
    // back-edge, where the engine's epoch check makes cranelift store and reload the sums, sits
    // inside a key. The query goes through `black_box` for each key: hoisted out of the loop,
    // its sixteen vectors would not fit in registers and would be stored back to the stack at
    // every key's back-edge.
    if d == 64 {
        scaled_dots_of_width(out, q, rows, 64, scale);
    } else {
        scaled_dots_of_width(out, q, rows, d, scale);
    }
}

/// `scaled_dots` with the width `d` passed on, so a constant one reaches `dot`.
#[inline(always)]
fn scaled_dots_of_width(out: &mut [f32], q: &[f32], rows: &[f32], d: usize, scale: f32) {
    for (out, row) in out.iter_mut().zip(rows.chunks_exact(d)) {
        *out = dot(&core::hint::black_box(q)[..d], row) * scale;
    }
}

/// `Σ a[i]·b[i]` over the shorter of the two.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let len16 = len - len % 16;
    let mut acc = [f32x4_splat(0.0); 4];
    let mut p = 0;
    while p < len16 {
        for (i, lane) in acc.iter_mut().enumerate() {
            // SAFETY: p + 16 <= len, which both slices hold.
            let (va, vb) =
                unsafe { (v128_load(a.as_ptr().add(p + 4 * i).cast()), v128_load(b.as_ptr().add(p + 4 * i).cast())) };
            *lane = f32x4_add(*lane, f32x4_mul(va, vb));
        }
        // Or every load of an unrolled loop would come first and wait for the arithmetic.
        settle(&acc);
        p += 16;
    }
    let sum = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
    horizontal_sum(sum) + a[len16..len].iter().zip(&b[len16..len]).map(|(x, y)| x * y).sum::<f32>()
}

/// `out[e] = Σ_j weights[j]·rows[j·stride + e]` (the twin of `scalar::weighted_sum`, with the
/// same bits): 32 outputs at a time stay in registers while the rows stream past, then 4, then
/// the rest through the twin.
pub fn weighted_sum(out: &mut [f32], weights: &[f32], rows: &[f32], stride: usize) {
    // GPT-2's head width at every size, the stride of a head's values: known here, the rows of a
    // loop turn lie at constant offsets from one another.
    if stride == 64 {
        weighted_sum_of_stride(out, weights, rows, 64);
    } else {
        weighted_sum_of_stride(out, weights, rows, stride);
    }
}

/// `weighted_sum` with the stride passed on, so a constant one reaches `store_sums`.
#[inline(always)]
fn weighted_sum_of_stride(out: &mut [f32], weights: &[f32], rows: &[f32], stride: usize) {
    let len = out.len();
    let mut e = 0;
    while e + 32 <= len {
        store_sums::<8>(&mut out[e..e + 32], weights, &rows[e..], stride);
        e += 32;
    }
    while e + 4 <= len {
        store_sums::<1>(&mut out[e..e + 4], weights, &rows[e..], stride);
        e += 4;
    }
    // The last one to three outputs, as the twin sums them.
    super::scalar::weighted_sum(&mut out[e..], weights, &rows[e..], stride);
}

/// `weighted_sum` for the first `4·V` outputs.
#[inline(always)]
fn store_sums<const V: usize>(out: &mut [f32], weights: &[f32], rows: &[f32], stride: usize) {
    assert!(out.len() >= 4 * V && (weights.is_empty() || rows.len() >= (weights.len() - 1) * stride + 4 * V));
    let mut acc = [f32x4_splat(0.0); V];
    // Row i after the row and weight that `at` points to, into the sums.
    // SAFETY (for the loads): the caller keeps the row inside `weights` (and so, asserted above,
    // its 4·V values inside `rows`).
    let add = |acc: &mut [v128; V], (weight, row): (*const f32, *const f32), i: usize| unsafe {
        let weight = f32x4_splat(*weight.add(i));
        for (v, acc) in acc.iter_mut().enumerate() {
            let value = v128_load(row.add(i * stride + 4 * v).cast());
            *acc = f32x4_add(*acc, f32x4_mul(weight, value));
        }
    };
    // Row j and its weight, as pointers LLVM cannot see through: the rows of a loop turn are
    // then constant offsets from them.
    // SAFETY: j < weights.len(), so both lie inside their slices (asserted above).
    let at = |j: usize| core::hint::black_box(unsafe { (weights.as_ptr().add(j), rows.as_ptr().add(j * stride)) });
    // Four rows per loop turn, each one's sums settled before the next one's loads, so the epoch
    // check's store and reload of the sums comes once per four rows.
    let mut j = 0;
    while j + 4 <= weights.len() {
        let at = at(j);
        in_four(&mut acc, |acc, i| add(acc, at, i));
        j += 4;
    }
    while j < weights.len() {
        add(&mut acc, at(j), 0);
        j += 1;
    }
    for (v, acc) in acc.into_iter().enumerate() {
        // SAFETY: out has 4·V values (asserted above).
        unsafe { v128_store(out.as_mut_ptr().add(4 * v).cast(), acc) };
    }
}

#[cfg(test)]
mod tests {
    use super::super::scalar;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32) / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The SIMD kernel's floats are the scalar twin's, bit for bit.
    fn assert_same_bits(simd: &[f32], reference: &[f32], what: &str) {
        assert_eq!(simd.len(), reference.len(), "{what}");
        assert!(
            simd.iter().zip(reference).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: {simd:?} vs {reference:?}"
        );
    }

    fn assert_close(simd: &[f32], reference: &[f32], k: usize) {
        assert_eq!(simd.len(), reference.len());
        let tolerance = 1e-6 * k as f32;
        for (i, (s, r)) in simd.iter().zip(reference).enumerate() {
            assert!((s - r).abs() <= tolerance, "element {i}: simd {s} vs scalar {r}");
        }
    }

    #[test]
    fn matmul_matches_scalar_on_many_shapes() {
        for (case, &(rows, k, n)) in [
            (1, 1, 1),
            (1, 7, 5),
            (1, 64, 9),
            (2, 33, 3),
            (3, 16, 4),
            (4, 8, 2),
            (5, 17, 7),
            (9, 64, 11),
            (16, 255, 13),
            // 128-float turns, 64-float ones and four-float steps, in both tile shapes.
            (1, 100, 8),
            (6, 52, 6),
            (1, 148, 9),
            (5, 212, 6),
            // Tiles of rows a quarter of the matrix apart, and the rows left over.
            (1, 68, 35),
            (3, 20, 10),
        ]
        .iter()
        .enumerate()
        {
            let x = values(rows * k, case as u64);
            let w = values(n * k, 100 + case as u64);
            let bias = values(n, 200 + case as u64);
            for b in [None, Some(bias.as_slice())] {
                let mut simd = vec![0.0; rows * n];
                let mut reference = vec![0.0; rows * n];
                super::matmul(&mut simd, n, &x, &w, b, rows, k, n);
                scalar::matmul(&mut reference, n, &x, &w, b, rows, k, n);
                assert_close(&simd, &reference, k);
            }
        }
    }

    #[test]
    fn matmul_into_a_column_panel_leaves_the_rest_alone() {
        let (rows, k, n, stride) = (5, 12, 3, 7);
        let (x, w) = (values(rows * k, 1), values(n * k, 2));
        let mut simd = vec![9.0; rows * stride];
        let mut reference = vec![9.0; rows * stride];
        super::matmul(&mut simd[2..], stride, &x, &w, None, rows, k, n);
        scalar::matmul(&mut reference[2..], stride, &x, &w, None, rows, k, n);
        assert_close(&simd, &reference, k);
        assert_eq!(simd[0], 9.0);
    }

    #[test]
    fn decoders_match_scalar_exactly() {
        // Every f16 bit pattern but infinities and NaNs, which the loader refuses.
        let halves: Vec<u16> = (0..=u16::MAX).filter(|h| h & 0x7c00 != 0x7c00).collect();
        let bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let (mut simd, mut reference) = (vec![0.0; halves.len()], vec![0.0; halves.len()]);
        super::decode_f16(&mut simd, &bytes);
        scalar::decode_f16(&mut reference, &bytes);
        assert_same_bits(&simd, &reference, "f16");
        let blocks: Vec<u8> = (0..64u32 * 34)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 & if i % 34 == 1 { 0x3b } else { 0xff })
            .collect();
        let (mut simd, mut reference) = (vec![0.0; 64 * 32], vec![0.0; 64 * 32]);
        super::decode_q8_0(&mut simd, &blocks);
        scalar::decode_q8_0(&mut reference, &blocks);
        assert_same_bits(&simd, &reference, "Q8_0");
    }

    /// Q8_0 blocks with f16 scales of varied size (2^-5 to 2^2) and sign, and every int8 value.
    fn q8_0_rows(n: usize, k: usize, seed: usize) -> Vec<u8> {
        (0..n * k / 32)
            .flat_map(|b| {
                let bits = ((b + seed).wrapping_mul(2654435761) >> 7) as u16;
                let scale = (bits & 0x83ff) | ((10 + (b % 8) as u16) << 10);
                scale.to_le_bytes().into_iter().chain((0..32).map(move |i| ((b * 37 + i * 11 + seed) % 256) as u8))
            })
            .collect()
    }

    #[test]
    fn q8_0_matmul_gives_the_scalar_twins_bits_in_every_tile_shape() {
        // Block counts below, at and past the eight-block loop turn, with and without a rest; for
        // one input row, weight rows paired across the halves of the matrix, with and without
        // one left over.
        for (case, &(rows, k, n)) in [
            (1, 32, 1),
            (1, 64, 4),
            (1, 96, 7),
            (2, 32, 2),
            (3, 64, 5),
            (4, 128, 9),
            (5, 32, 3),
            (8, 768, 6),
            (1, 256, 3),
            (3, 416, 5),
            // The widths with copies of their own (256, 768, 1024: one, three and four
            // straight-line turns), for one input row and for pairs and a single one after them,
            // and past four turns with a rest.
            (3, 256, 4),
            (1, 768, 5),
            (1, 1024, 3),
            (3, 1024, 4),
            (1, 1312, 3),
            (2, 1312, 2),
            // Input rows in fours, then a pair and a single one after them.
            (6, 256, 2),
            (7, 1024, 3),
            (7, 96, 2),
        ]
        .iter()
        .enumerate()
        {
            let mut x = super::super::QuantizedRows::default();
            x.quantize(&values(rows * k, case as u64), rows, k);
            let blocks = q8_0_rows(n, k, 50 + case);
            let scales: Vec<f32> =
                blocks.chunks(34).map(|b| super::super::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect();
            let w = super::super::Q8Rows { blocks: &blocks, scales: &scales };
            let bias = values(n, 200 + case as u64);
            for b in [None, Some(bias.as_slice())] {
                let (mut simd, mut reference) = (vec![0.0; rows * n], vec![0.0; rows * n]);
                super::matmul_q8_0(&mut simd, n, &x, w, b, rows, k, n);
                scalar::matmul_q8_0(&mut reference, n, &x, w, b, rows, k, n);
                assert_same_bits(&simd, &reference, &format!("{rows}×{k}×{n}"));
            }
        }
    }

    #[test]
    fn q8_0_quantizer_gives_the_scalar_twins_bits() {
        // Varied magnitudes, values that land on halves after scaling, zeros, a zero block,
        // negative zeros and a NaN.
        let mut x = values(32 * 40, 9);
        for (i, v) in x.iter_mut().enumerate() {
            *v *= [1e-3, 1.0, 30.0, 1e4][i / 32 % 4];
        }
        // A scale of exactly 1, so the rest fall on halves.
        for (i, v) in x[32 * 4..32 * 5].iter_mut().enumerate() {
            *v = if i == 0 { 127.0 } else { i as f32 - 15.5 };
        }
        x[32 * 5..32 * 6].fill(0.0);
        x[32 * 6..32 * 7].fill(-0.0);
        x[32 * 7 + 3] = f32::NAN;
        let (mut simd, mut reference) = ((vec![0i8; x.len()], vec![0.0; 40]), (vec![0i8; x.len()], vec![0.0; 40]));
        super::quantize_q8_0(&mut simd.0, &mut simd.1, &x);
        scalar::quantize_q8_0(&mut reference.0, &mut reference.1, &x);
        assert_eq!(simd.0, reference.0);
        assert_same_bits(&simd.1, &reference.1, "scales");
    }

    #[test]
    fn gelu_gives_the_scalar_twins_bits() {
        // Magnitudes from the flat tails to the curve's middle, exact zeros, values whose
        // exponent leaves exp's range on either side, and lengths with a partial last group.
        let mut x: Vec<f32> =
            values(203, 4).iter().enumerate().map(|(i, v)| v * [0.1, 1.0, 4.0, 12.0][i % 4]).collect();
        x.extend([0.0, -0.0, 40.0, -40.0, 1e6, -1e6, 3.0e12, -3.0e12]);
        for len in [x.len(), x.len() - 1, x.len() - 3, 2] {
            let (mut simd, mut reference) = (x[..len].to_vec(), x[..len].to_vec());
            super::gelu_tanh(&mut simd);
            scalar::gelu_tanh(&mut reference);
            assert_same_bits(&simd, &reference, &format!("{len} values"));
        }
    }

    #[test]
    fn shifted_exp_gives_the_scalar_twins_bits() {
        // Logits around a maximum, exponents past both ends of exp's range, and lengths with a
        // partial last group.
        let mut x: Vec<f32> = values(203, 5).iter().map(|v| 30.0 * v).collect();
        x.extend([0.0, -0.0, 12.5, -200.0, 1e6, -1e6]);
        for (shift, scale) in [(12.5, 1.0), (12.5, 1.0 / 0.7), (-3.0, 50.0)] {
            for len in [x.len(), x.len() - 1, x.len() - 2, 3] {
                let (mut simd, mut reference) = (x[..len].to_vec(), x[..len].to_vec());
                super::exp_shifted(&mut simd, shift, scale);
                scalar::exp_shifted(&mut reference, shift, scale);
                assert_same_bits(&simd, &reference, &format!("{len} values, shift {shift}, scale {scale}"));
            }
        }
    }

    #[test]
    fn weighted_sum_gives_the_scalar_twins_bits() {
        // Output lengths with 32-wide, 4-wide and single parts; row counts with and without
        // whole four-row turns; strides of 64 (a constant in the kernel) and others.
        for (len, count, stride) in [
            (64, 7, 69),
            (64, 1, 69),
            (64, 0, 69),
            (100, 6, 105),
            (3, 5, 8),
            (36, 2, 41),
            (64, 9, 64),
            (64, 4, 64),
            (36, 3, 64),
        ] {
            let rows = values(count.max(1) * stride, len as u64);
            let weights = values(count, 77 + count as u64);
            let (mut simd, mut reference) = (vec![1.0; len], vec![2.0; len]);
            super::weighted_sum(&mut simd, &weights, &rows, stride);
            scalar::weighted_sum(&mut reference, &weights, &rows, stride);
            assert_same_bits(&simd, &reference, &format!("{len} outputs of {count} rows"));
        }
    }

    #[test]
    fn max_and_sum_match_the_scalar_twins() {
        // Lengths with and without a partial last group; a NaN, infinities, and the largest
        // value in the tail.
        let finite = values(1003, 6);
        let mut x = finite.clone();
        x[17] = f32::NAN;
        x[500] = f32::NEG_INFINITY;
        for len in [0, 1, 3, 4, 5, 64, 1001, 1003] {
            assert_eq!(super::max(&x[..len]), scalar::max(&x[..len]), "max of {len}");
            let v = &finite[..len];
            assert_eq!(super::sum(v).to_bits(), scalar::sum(v).to_bits(), "sum of {len}");
        }
        x[1002] = 7.5;
        assert_eq!(super::max(&x), 7.5);
        assert_eq!(scalar::max(&x), 7.5);
        assert_eq!(super::max(&[f32::NAN, -3.0]), -3.0);
        assert_eq!(super::max(&[1.0, f32::INFINITY, 2.0, 0.0, 5.0]), f32::INFINITY);
    }

    #[test]
    fn a_turn_of_steps_ends_after_the_first_step_whose_bit_is_set() {
        for (ends, taken) in [(0, 16), (1, 1), (1 << 5, 6), (0b1010_0000, 6), (1 << 15, 16), (1 << 16, 16), (!0, 1)] {
            let mut ran = Vec::new();
            assert_eq!(super::steps::<16, _>(&mut ran, ends, |ran, i| ran.push(i)), taken, "ends {ends:#b}");
            assert_eq!(ran, (0..taken).collect::<Vec<_>>(), "ends {ends:#b}");
        }
        for (ends, taken) in [(0, 32), (1 << 15, 16), (1 << 16, 17), (1 << 31, 32), (0b1100 << 20, 23)] {
            let mut ran = Vec::new();
            assert_eq!(super::steps::<32, _>(&mut ran, ends, |ran, i| ran.push(i)), taken, "ends {ends:#b}");
            assert_eq!(ran, (0..taken).collect::<Vec<_>>(), "ends {ends:#b}");
        }
    }

    #[test]
    fn position_matches_the_scalar_twin() {
        let mut x = values(1003, 9);
        x[40] = f32::NAN;
        x[700] = -0.0;
        x[1001] = 5.0;
        // In the first, a middle and the last group of sixteen, in the tail, twice, as the other
        // zero, as NaN (never equal) and absent.
        for (target, expected) in [
            (x[0], Some(0)),
            (x[37], Some(37)),
            (x[991], Some(991)),
            (5.0, Some(1001)),
            (0.0, Some(700)),
            (f32::NAN, None),
            (2.0, None),
        ] {
            for len in [0, 15, 16, 17, 1003] {
                let v = &x[..len];
                let want = expected.filter(|&i| i < len);
                assert_eq!(scalar::position(v, target), want, "{target} in {len}");
                assert_eq!(super::position(v, target), want, "{target} in {len}");
            }
        }
        x[300] = 5.0;
        assert_eq!(super::position(&x, 5.0), Some(300));
    }

    #[test]
    fn scaled_dots_match_the_scalar_twin() {
        for d in [1, 3, 4, 15, 16, 17, 64, 100] {
            let q = values(d, d as u64);
            let rows = values(5 * d, 1000 + d as u64);
            let (mut simd, mut reference) = (vec![0.0; 5], vec![0.0; 5]);
            super::scaled_dots(&mut simd, &q, &rows, 0.125);
            scalar::scaled_dots(&mut reference, &q, &rows, 0.125);
            assert_close(&simd, &reference, d);
        }
    }
}
