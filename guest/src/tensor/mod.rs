//! Weight storage and the numeric kernels of the forward pass.
//!
//! The kernels exist twice: `simd128` (WebAssembly SIMD, used in the component) and `scalar`
//! (everywhere else, and the reference the SIMD twin is tested against). `kernels` names the
//! one this build uses.

pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub use scalar as kernels;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub use simd128 as kernels;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorType};
use std::ops::Range;
use std::sync::Arc;

/// A model file in memory, 4-byte aligned so F32 tensors can be used where they lie.
pub struct FileBuffer {
    words: Vec<u32>,
    len: usize,
}

impl FileBuffer {
    /// A zeroed buffer of `len` bytes to read a file into, or an error when memory runs out.
    pub fn try_zeroed(len: usize) -> Result<Self> {
        let mut words = Vec::new();
        words
            .try_reserve_exact(len.div_ceil(4))
            .map_err(|_| Error::Io(format!("no memory for a {len}-byte model file")))?;
        words.resize(len.div_ceil(4), 0);
        Ok(FileBuffer { words, len })
    }

    /// Copies `bytes` into an aligned buffer.
    pub fn try_from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut buffer = Self::try_zeroed(bytes.len())?;
        buffer.bytes_mut().copy_from_slice(bytes);
        Ok(buffer)
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` owns at least `len` initialised bytes and u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The file's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }

    /// The f32 values at a 4-aligned byte range.
    fn f32s(&self, bytes: Range<usize>) -> &[f32] {
        debug_assert!(bytes.start.is_multiple_of(4) && bytes.end.is_multiple_of(4) && bytes.end <= self.len);
        let words = &self.words[bytes.start / 4..bytes.end / 4];
        // SAFETY: u32 and f32 have the same size and alignment, and every bit pattern is an f32.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<f32>(), words.len()) }
    }
}

/// Where a weight tensor's f32 values live.
enum Storage {
    /// F32 data used in place inside the model file.
    InFile(Arc<FileBuffer>, Range<usize>),
    /// Values decoded from F16 or Q8_0 at load time.
    Owned(Vec<f32>),
}

/// A weight tensor as f32 values, row-major, with its shape slowest first.
pub struct Weights {
    storage: Storage,
    shape: Vec<usize>,
}

impl Weights {
    /// Loads tensor `name`, checking that its shape (slowest first) is `shape`, that its type is
    /// supported and that every value is finite.
    pub fn load(gguf: &Gguf, file: &Arc<FileBuffer>, name: &str, shape: &[usize]) -> Result<Self> {
        let (info, bytes) = gguf.tensor(name).ok_or_else(|| Error::model(format!("tensor {name} is missing")))?;
        let expected: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        if info.dims != expected {
            return Err(Error::model(format!(
                "tensor {name} has dims {:?} (fastest first), expected {expected:?}",
                info.dims
            )));
        }
        let start = gguf.data_start() as usize + info.offset as usize;
        let storage = match info.kind {
            TensorType::F32 if start.is_multiple_of(4) => Storage::InFile(file.clone(), start..start + bytes.len()),
            TensorType::F32 => {
                Storage::Owned(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
            TensorType::F16 => {
                Storage::Owned(bytes.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect())
            }
            TensorType::Q8_0 => Storage::Owned(dequantize_q8_0(bytes)),
        };
        let weights = Weights { storage, shape: shape.to_vec() };
        if let Some(i) = weights.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::model(format!(
                "tensor {name} holds a non-finite value ({}) at element {i}",
                weights.data()[i]
            )));
        }
        Ok(weights)
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::InFile(file, range) => file.f32s(range.clone()),
            Storage::Owned(values) => values,
        }
    }

    /// The shape, slowest first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Bytes of guest memory this tensor adds beyond the model file.
    pub fn owned_bytes(&self) -> usize {
        match &self.storage {
            Storage::InFile(..) => 0,
            Storage::Owned(values) => values.len() * 4,
        }
    }

    /// Row `i` of a 2-D tensor.
    pub fn row(&self, i: usize) -> &[f32] {
        let width = self.shape[1];
        &self.data()[i * width..(i + 1) * width]
    }
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

/// Decodes Q8_0 blocks (an f16 scale then 32 int8 values) to f32.
fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 34 * 32);
    for block in bytes.chunks_exact(34) {
        let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        out.extend(block[2..].iter().map(|&q| scale * (q as i8) as f32));
    }
    out
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
    fn q8_0_block_scales_each_value() {
        let mut block = vec![0x00, 0x38]; // 0.5
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let values = dequantize_q8_0(&block);
        assert_eq!(values.len(), 32);
        assert_eq!(values[0], -8.0);
        assert_eq!(values[31], 7.5);
    }
}
