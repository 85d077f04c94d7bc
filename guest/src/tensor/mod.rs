//! Weight storage and the numeric kernels of the forward pass.
//!
//! The kernels exist twice: `simd128` (WebAssembly SIMD, used in the component) and `scalar`
//! (everywhere else, and the reference the SIMD twin is tested against). `kernels` names the
//! one this build uses.
//!
//! F32 and Q8_0 matrices stay in the model file as they are stored: no second copy. The Q8_0
//! product is llama.cpp's: the input rows are quantized to Q8_0 too, and each block's dot product
//! is taken in integers. F16 matrices are widened to f32 once, at load.

pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub use scalar as kernels;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub use simd128 as kernels;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorInfo, TensorType};
use std::ops::Range;
use std::sync::Arc;

/// A model file in memory, 4-byte aligned so F32 tensors can be used where they lie.
pub struct FileBuffer {
    bytes: Vec<u8>,
    /// Where the file starts in `bytes`: the first 4-aligned address.
    start: usize,
    len: usize,
}

impl FileBuffer {
    /// A zeroed buffer of `len` bytes to read a file into, or an error when memory runs out.
    pub fn try_zeroed(len: usize) -> Result<Self> {
        let no_memory = || Error::Io(format!("no memory for a {len}-byte model file"));
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len.checked_add(3).ok_or_else(no_memory)?).map_err(|_| no_memory())?;
        bytes.resize(len + 3, 0);
        let start = bytes.as_ptr().align_offset(4);
        Ok(FileBuffer { bytes, start, len })
    }

    /// Takes `bytes` as they are when they are 4-aligned (allocators align far more), else
    /// copies them into an aligned buffer.
    pub fn try_from_vec(bytes: Vec<u8>) -> Result<Self> {
        if bytes.as_ptr().align_offset(4) == 0 {
            let len = bytes.len();
            return Ok(FileBuffer { bytes, start: 0, len });
        }
        Self::try_from_bytes(&bytes)
    }

    /// Copies `bytes` into an aligned buffer.
    pub fn try_from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut buffer = Self::try_zeroed(bytes.len())?;
        buffer.bytes_mut().copy_from_slice(bytes);
        Ok(buffer)
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }

    /// The file's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }

    /// The f32 values at a 4-aligned byte range.
    fn f32s(&self, bytes: Range<usize>) -> &[f32] {
        assert!(bytes.start.is_multiple_of(4) && bytes.end.is_multiple_of(4) && bytes.start <= bytes.end);
        let bytes = &self.bytes()[bytes];
        // SAFETY: the file starts 4-aligned and the range starts at a multiple of 4, so the
        // pointer is aligned for f32; the slice covers exactly `len / 4` floats, and every bit
        // pattern is an f32.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
    }
}

impl Drop for FileBuffer {
    /// Zeroes the file's bytes: a model whose weights were all widened or quantized drops its
    /// file after loading, and a snapshot of the instance then need not carry the stale bytes
    /// (zero pages are left out of a memory image).
    fn drop(&mut self) {
        self.bytes.fill(0);
    }
}

/// The shapes every matrix-product kernel requires: x `[rows, k]`, `weight_len` bytes or
/// floats for n rows of `row_len`, bias `[n]`, and output rows `stride` apart. The kernels
/// index without further checks once these hold.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_matmul_shapes(
    out: &[f32],
    stride: usize,
    x: &[f32],
    weight_len: usize,
    row_len: usize,
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    n: usize,
) {
    assert!(x.len() >= rows * k && weight_len >= n * row_len);
    check_output_shapes(out, stride, bias, rows, n);
}

/// Output rows `stride ≥ n` apart for `rows` input rows, and bias `[n]`.
fn check_output_shapes(out: &[f32], stride: usize, bias: Option<&[f32]>, rows: usize, n: usize) {
    assert!(stride >= n && (rows == 0 || out.len() >= (rows - 1) * stride + n));
    assert!(bias.is_none_or(|b| b.len() >= n));
}

/// The GELU's exponent is `y = x·(GELU_A + GELU_B·x²)`: `x / (1 + e^y)` equals
/// `0.5·x·(1 + tanh(u))` with `u = √(2/π)·(x + 0.044715·x³)` and `y = −2u`.
pub const GELU_A: f32 = -2.0 * 0.797_884_6;
/// See `GELU_A`.
pub const GELU_B: f32 = -2.0 * 0.797_884_6 * 0.044_715;

/// ln 2 in two parts for `exp`'s reduction: `LN2_HI` (0.693359375) has few enough bits that
/// `n·LN2_HI` is exact.
pub const LN2_HI: f32 = 355.0 / 512.0;
/// See `LN2_HI`: `ln 2 − LN2_HI`.
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// `q(r)` of `exp`, highest power first, with `e^r ≈ 1 + r + r²·q(r)` on `|r| ≤ ln 2 / 2`
/// (the Cephes `expf` polynomial).
pub const EXP_POLY: [f32; 6] = [1.987_569_2e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
/// `ln` of the smallest normal float: below it `exp` gives 0.
pub const EXP_MIN: f32 = -87.336_55;
/// Where `exp` stops growing, so that `2^n` stays a finite float.
pub const EXP_MAX: f32 = 88.0;

/// Input rows quantized for the Q8_0 product the way llama.cpp quantizes activations: per
/// block of 32 values, the scale `d = max|x| / 127` and the int8 values `round(x / d)`, so each
/// value is off by at most `d / 2`.
#[derive(Default)]
pub struct QuantizedRows {
    /// `[rows, k]`
    pub values: Vec<i8>,
    /// `[rows, k / 32]`
    pub scales: Vec<f32>,
    /// `values` as int16 `[rows, k]`, when there are two or more rows: with `splat_scales`, the
    /// forms in which the SIMD128 product of several input rows multiplies them straight from
    /// memory, without a step to widen the values or to spread a scale over the lanes.
    pub wide_values: Vec<i16>,
    /// `scales`, each four times `[rows, k / 32, 4]` (see `wide_values`).
    pub splat_scales: Vec<f32>,
}

impl QuantizedRows {
    /// Holds x `[rows, k]` quantized, in place of what it held (its buffers only grow); k is a
    /// multiple of 32.
    pub fn quantize(&mut self, x: &[f32], rows: usize, k: usize) {
        assert!(k.is_multiple_of(32) && x.len() >= rows * k, "whole blocks of 32 inputs");
        self.values.resize(rows * k, 0);
        self.scales.resize(rows * k / 32, 0.0);
        kernels::quantize_q8_0(&mut self.values, &mut self.scales, &x[..rows * k]);
        // One row (decode) is multiplied from `values`.
        if rows < 2 {
            return;
        }
        self.wide_values.clear();
        self.wide_values.extend(self.values[..rows * k].iter().map(|&v| i16::from(v)));
        self.splat_scales.clear();
        self.splat_scales.extend(self.scales[..rows * k / 32].iter().flat_map(|&d| [d; 4]));
    }
}

/// Q8_0 weight rows `[n, k]` as the product reads them: the blocks where they lie in the file
/// (an f16 scale, then 32 int8 values) and every block's scale as f32 `[n, k / 32]`.
#[derive(Clone, Copy)]
pub struct Q8Rows<'a> {
    pub blocks: &'a [u8],
    pub scales: &'a [f32],
}

/// The largest of `values` and `start`, NaN aside. A comparison, where `f32::max` is a library
/// call in WebAssembly.
pub fn largest(values: impl IntoIterator<Item = f32>, start: f32) -> f32 {
    values.into_iter().fold(start, |m, v| if v > m { v } else { m })
}

/// The shapes the Q8_0 product requires (see `check_matmul_shapes`), with k in whole blocks;
/// returns the bytes of a weight row and its blocks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_q8_0_shapes(
    out: &[f32],
    stride: usize,
    x: &QuantizedRows,
    w: Q8Rows,
    bias: Option<&[f32]>,
    rows: usize,
    k: usize,
    n: usize,
) -> (usize, usize) {
    assert!(k.is_multiple_of(32), "Q8_0 rows are whole blocks");
    let (blocks, row_bytes) = (k / 32, k / 32 * 34);
    assert!(x.values.len() >= rows * k && x.scales.len() >= rows * blocks);
    assert!(rows < 2 || (x.wide_values.len() >= rows * k && x.splat_scales.len() >= 4 * rows * blocks));
    assert!(w.blocks.len() >= n * row_bytes && w.scales.len() >= n * blocks);
    check_output_shapes(out, stride, bias, rows, n);
    (row_bytes, blocks)
}

/// Finds tensor `name`, checks its shape (slowest first) and returns its description and its
/// byte range in the file.
fn locate<'a>(gguf: &'a Gguf, name: &str, shape: &[usize]) -> Result<(&'a TensorInfo, Range<usize>)> {
    let (info, bytes) = gguf.tensor(name).ok_or_else(|| Error::model(format!("tensor {name} is missing")))?;
    let expected: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
    if info.dims != expected {
        return Err(Error::model(format!(
            "tensor {name} has dims {:?} (fastest first), expected {expected:?}",
            info.dims
        )));
    }
    let start = gguf.data_start() as usize + info.offset as usize;
    Ok((info, start..start + bytes.len()))
}

fn non_finite(name: &str, index: usize, value: f32) -> Error {
    Error::model(format!("tensor {name} holds a non-finite value ({value}) at element {index}"))
}

/// Where the weights come from: the parsed file, its bytes, and whether F32 and F16 matrices
/// are quantized to Q8_0 as they load.
pub struct WeightFile<'a> {
    pub gguf: &'a Gguf<'a>,
    pub file: &'a Arc<FileBuffer>,
    pub quantize_q8_0: bool,
}

/// A weight vector (a bias or a norm), always f32.
pub struct Vector {
    values: Vec<f32>,
}

impl Vector {
    /// Loads the 1-D tensor `name` of `len` values, decoding it when it is not F32.
    pub fn load(weights: &WeightFile, name: &str, len: usize) -> Result<Self> {
        let (info, range) = locate(weights.gguf, name, &[len])?;
        let mut values = vec![0.0; len];
        decode(info.kind, &weights.file.bytes()[range], &mut values);
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(non_finite(name, i, values[i]));
        }
        Ok(Vector { values })
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Bytes of guest memory the vector takes.
    pub fn owned_bytes(&self) -> usize {
        self.values.len() * 4
    }
}

/// Where a matrix's values live.
enum Storage {
    /// In the model file, in its stored type.
    InFile(Arc<FileBuffer>, Range<usize>, TensorType),
    /// Decoded to f32: F16 tensors, and F32 tensors not 4-byte aligned in the file.
    Owned(Vec<f32>),
    /// Quantized to Q8_0 blocks at load (`--quantize q8_0`).
    Quantized(Vec<u8>),
}

/// A weight matrix `[rows, cols]` (`[out, in]` for a linear layer).
pub struct Matrix {
    storage: Storage,
    /// The f32 scale of every Q8_0 block `[rows, cols / 32]` (empty for other types): widened
    /// once here so the product does not decode an f16 per block.
    q8_scales: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Matrix {
    /// Loads the 2-D tensor `name` of shape `[rows, cols]`, checking that every value is finite;
    /// F32 and F16 matrices are quantized to Q8_0 when `weights` asks for it.
    pub fn load(weights: &WeightFile, name: &str, rows: usize, cols: usize) -> Result<Self> {
        let (info, range) = locate(weights.gguf, name, &[rows, cols])?;
        let bytes = &weights.file.bytes()[range.clone()];
        let no_memory = || Error::Io(format!("no memory to load tensor {name}"));
        let storage = if weights.quantize_q8_0 && info.kind != TensorType::Q8_0 && cols.is_multiple_of(32) {
            // A row at a time, so the f32 values never exist all at once.
            let mut blocks = Vec::new();
            blocks.try_reserve_exact(rows * cols / 32 * 34).map_err(|_| no_memory())?;
            let (mut row, row_bytes) = (vec![0.0; cols], bytes.len() / rows);
            let (mut values, mut scales) = (vec![0i8; cols], vec![0.0f32; cols / 32]);
            for (r, stored) in bytes.chunks_exact(row_bytes).enumerate() {
                decode(info.kind, stored, &mut row);
                if let Some(i) = row.iter().position(|v| !v.is_finite()) {
                    return Err(non_finite(name, r * cols + i, row[i]));
                }
                kernels::quantize_q8_0(&mut values, &mut scales, &row);
                for (q, &scale) in values.chunks_exact(32).zip(&scales) {
                    blocks.extend_from_slice(&f32_to_f16(scale).to_le_bytes());
                    blocks.extend(q.iter().map(|&v| v as u8));
                }
            }
            Storage::Quantized(blocks)
        } else if info.kind == TensorType::F16 || (info.kind == TensorType::F32 && !range.start.is_multiple_of(4)) {
            // F16 is widened once here: SIMD128 has no half-precision conversion, and decoding
            // every weight on every token costs more than the memory it saves. A misaligned F32
            // tensor is copied into place.
            let mut values = Vec::new();
            values.try_reserve_exact(rows * cols).map_err(|_| no_memory())?;
            values.resize(rows * cols, 0.0);
            decode(info.kind, bytes, &mut values);
            Storage::Owned(values)
        } else {
            Storage::InFile(weights.file.clone(), range, info.kind)
        };
        let matrix = Matrix { storage, q8_scales: Vec::new(), rows, cols };
        matrix.check_finite(name)?;
        Ok(matrix.with_q8_scales())
    }

    /// Widens the scales of Q8_0 blocks in the file to f32.
    fn with_q8_scales(mut self) -> Self {
        if let Some(blocks) = self.q8_0_blocks() {
            let scales = blocks.chunks_exact(34).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect();
            self.q8_scales = scales;
        }
        self
    }

    /// The stored bytes and their type, in the file or quantized at load (None once widened).
    fn stored(&self) -> Option<(&[u8], TensorType)> {
        match &self.storage {
            Storage::InFile(file, range, kind) => Some((&file.bytes()[range.clone()], *kind)),
            Storage::Quantized(blocks) => Some((blocks, TensorType::Q8_0)),
            Storage::Owned(_) => None,
        }
    }

    /// The Q8_0 blocks, in the file or quantized at load.
    fn q8_0_blocks(&self) -> Option<&[u8]> {
        self.stored().filter(|&(_, kind)| kind == TensorType::Q8_0).map(|(bytes, _)| bytes)
    }

    /// Rejects NaN and infinity anywhere in the matrix (for Q8_0, in the block scales).
    fn check_finite(&self, name: &str) -> Result<()> {
        let found = match &self.storage {
            Storage::Owned(values) => values.iter().position(|v| !v.is_finite()).map(|i| (i, values[i])),
            // Made from values checked as they were quantized.
            Storage::Quantized(_) => None,
            Storage::InFile(file, range, kind) => {
                let bytes = &file.bytes()[range.clone()];
                match kind {
                    TensorType::F32 => {
                        let values = file.f32s(range.clone());
                        values.iter().position(|v| !v.is_finite()).map(|i| (i, values[i]))
                    }
                    TensorType::F16 => bytes
                        .chunks_exact(2)
                        .position(|h| h[1] & 0x7c == 0x7c)
                        .map(|i| (i, f16_to_f32(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])))),
                    TensorType::Q8_0 => bytes
                        .chunks_exact(34)
                        .position(|b| b[1] & 0x7c == 0x7c)
                        .map(|i| (32 * i, f16_to_f32(u16::from_le_bytes([bytes[34 * i], bytes[34 * i + 1]])))),
                }
            }
        };
        match found {
            Some((i, value)) => Err(non_finite(name, i, value)),
            None => Ok(()),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The values as f32 when they are stored as f32.
    fn f32_values(&self) -> Option<&[f32]> {
        match &self.storage {
            Storage::Owned(values) => Some(values),
            Storage::InFile(file, range, TensorType::F32) => Some(file.f32s(range.clone())),
            Storage::InFile(..) | Storage::Quantized(_) => None,
        }
    }

    /// Decodes rows `first..first + dst.len() / cols` into `dst`.
    pub fn decode_rows(&self, first: usize, dst: &mut [f32]) {
        let count = dst.len() / self.cols;
        match self.stored() {
            Some((bytes, kind)) => {
                let row_bytes = bytes.len() / self.rows;
                decode(kind, &bytes[first * row_bytes..(first + count) * row_bytes], dst);
            }
            None => dst.copy_from_slice(
                &self.f32_values().expect("storage without stored bytes holds f32")
                    [first * self.cols..(first + count) * self.cols],
            ),
        }
    }

    /// `out[t, j] = x[t, :] · self[j, :] + bias[j]` for x `[rows_x, cols]` → out `[rows_x, rows]`.
    /// Q8_0 weights are used where they lie, against the input rows quantized to Q8_0 into
    /// `quantized`.
    pub fn matmul(
        &self,
        out: &mut [f32],
        x: &[f32],
        bias: Option<&[f32]>,
        rows_x: usize,
        quantized: &mut QuantizedRows,
    ) {
        let (n, k) = (self.rows, self.cols);
        match self.q8_0_blocks() {
            Some(blocks) => {
                quantized.quantize(x, rows_x, k);
                let w = Q8Rows { blocks, scales: &self.q8_scales };
                kernels::matmul_q8_0(out, n, quantized, w, bias, rows_x, k, n);
            }
            None => {
                let w = self.f32_values().expect("F16 matrices are widened at load");
                kernels::matmul(out, n, x, w, bias, rows_x, k, n);
            }
        }
    }

    /// Bytes of guest memory the matrix adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        self.q8_scales.len() * 4
            + match &self.storage {
                Storage::InFile(..) => 0,
                Storage::Owned(values) => values.len() * 4,
                Storage::Quantized(blocks) => blocks.len(),
            }
    }
}

/// Decodes `bytes` of type `kind` into `dst` (which has room for every value).
fn decode(kind: TensorType, bytes: &[u8], dst: &mut [f32]) {
    match kind {
        TensorType::F32 => {
            for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        TensorType::F16 => kernels::decode_f16(dst, bytes),
        TensorType::Q8_0 => kernels::decode_q8_0(dst, bytes),
    }
}

/// Single precision to IEEE half precision, rounding to nearest even; magnitudes past the
/// largest half become infinity. (Only finite scales are converted.)
pub fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let magnitude = bits & 0x7fff_ffff;
    if magnitude >= 0x4780_0000 {
        // 65536 and up (after rounding, 65520 and up) and the non-finite.
        return sign | if magnitude > 0x7f80_0000 { 0x7e00 } else { 0x7c00 };
    }
    if magnitude < 0x3880_0000 {
        // Below the smallest normal half (2^-14): a subnormal half, m · 2^-24, rounded.
        let m = f32::from_bits(magnitude) * 2f32.powi(24);
        return sign | m.round_ties_even() as u16;
    }
    // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even (a carry
    // into the exponent is still right, up to infinity).
    let rebiased = magnitude - ((127 - 15) << 23);
    let half = rebiased >> 13;
    let rest = rebiased & 0x1fff;
    let round_up = rest > 0x1000 || (rest == 0x1000 && half & 1 == 1);
    sign | (half + round_up as u32) as u16
}

/// IEEE half precision to single precision, exact for every input.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exponent = ((h >> 10) & 0x1f) as u32;
    let mantissa = (h & 0x3ff) as u32;
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m * 2^-24, exact in f32.
            let magnitude = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -magnitude } else { magnitude };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_decodes_normals_subnormals_and_specials() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }

    #[test]
    fn round_half_away_is_round() {
        let mut v = -130.0f32;
        while v <= 130.0 {
            for x in [v, v.next_up(), v.next_down()] {
                assert_eq!(scalar::round_half_away(x).to_bits(), x.round().to_bits(), "{x}");
            }
            v += 0.25;
        }
        for x in [0.49999997f32, -0.49999997, 1e-30, -0.0, 8388607.5, 126.5] {
            assert_eq!(scalar::round_half_away(x).to_bits(), x.round().to_bits(), "{x}");
        }
    }

    #[test]
    fn f32_to_f16_inverts_every_half_and_rounds_ties_to_even() {
        for h in (0..=u16::MAX).filter(|h| h & 0x7c00 != 0x7c00) {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#06x}");
        }
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000);
        assert_eq!(f32_to_f16(3.0 * 2f32.powi(-25)), 0x0002);
        assert_eq!(f32_to_f16(-65519.0), 0xfbff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7c00);
    }

    #[test]
    fn q8_0_block_scales_each_value() {
        let mut block = vec![0x00, 0x38]; // 0.5
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let mut values = [0.0; 32];
        kernels::decode_q8_0(&mut values, &block);
        assert_eq!(values[0], -8.0);
        assert_eq!(values[31], 7.5);
    }

    #[test]
    fn quantized_inputs_are_within_half_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 - 30.0) / 7.0).collect();
        let mut q = QuantizedRows::default();
        q.quantize(&x, 2, 32);
        for (block, (values, &d)) in x.chunks(32).zip(q.values.chunks(32).zip(&q.scales)) {
            assert_eq!(d, block.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0);
            assert!(values.iter().any(|&v| v.abs() == 127));
            for (v, &q) in block.iter().zip(values) {
                assert!((v - d * q as f32).abs() <= d / 2.0 * 1.0001, "{v} as {q} × {d}");
            }
        }
        let mut zeros = QuantizedRows::default();
        zeros.quantize(&[0.0; 32], 1, 32);
        assert_eq!((zeros.scales[0], zeros.values.iter().all(|&v| v == 0)), (0.0, true));
    }

    #[test]
    fn the_q8_0_product_is_the_decoded_product_within_the_input_rounding() {
        let (rows, k, n) = (3, 256, 7);
        let x: Vec<f32> = (0..rows * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0).collect();
        let w: Vec<u8> = (0..n * k / 32)
            .flat_map(|b| [0x00u8, 0x24].into_iter().chain((0..32).map(move |i| ((b * 37 + i * 11) % 255) as u8)))
            .collect();
        let matrix_bytes = w.len();
        let file = Arc::new(FileBuffer::try_from_vec(w).unwrap());
        let storage = Storage::InFile(file, 0..matrix_bytes, TensorType::Q8_0);
        let matrix = Matrix { storage, q8_scales: Vec::new(), rows: n, cols: k }.with_q8_scales();
        let mut decoded = vec![0.0; n * k];
        matrix.decode_rows(0, &mut decoded);
        let (mut quantized, mut exact) = (vec![0.0; rows * n], vec![0.0; rows * n]);
        matrix.matmul(&mut quantized, &x, None, rows, &mut QuantizedRows::default());
        kernels::matmul(&mut exact, n, &x, &decoded, None, rows, k, n);
        // Each input is off by at most half its block's step d, so an output is off by at most
        // Σ_blocks d/2 · Σ|w| over the block, plus float rounding.
        let mut q = QuantizedRows::default();
        q.quantize(&x, rows, k);
        let mut largest = 0.0f32;
        for t in 0..rows {
            for j in 0..n {
                let bound: f32 = (0..k / 32)
                    .map(|b| {
                        q.scales[t * k / 32 + b] / 2.0
                            * decoded[j * k + 32 * b..][..32].iter().map(|w| w.abs()).sum::<f32>()
                    })
                    .sum();
                let error = (quantized[t * n + j] - exact[t * n + j]).abs();
                assert!(error <= bound + 1e-4, "[{t}, {j}]: off by {error}, bound {bound}");
                largest = largest.max(error);
            }
        }
        assert!(largest > 0.0, "the inputs are quantized");
    }
}
