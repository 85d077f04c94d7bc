//! A GGUF writer laid out like llama.cpp's converter, whose every field can also be set to a
//! wrong value: it writes the synthetic benchmark models and the hostile files of the tests.

use std::io::Write;

/// GGUF value type ids.
pub const U32: u32 = 4;
pub const I32: u32 = 5;
pub const F32: u32 = 6;
pub const STRING: u32 = 8;
pub const ARRAY: u32 = 9;

/// One metadata entry as it will be written: key, value type and the encoded value.
#[derive(Clone, Debug)]
pub struct Kv {
    pub key: String,
    pub type_id: u32,
    pub payload: Vec<u8>,
}

/// One tensor: its table entry and its data.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    /// Fastest-varying first, as GGUF lists them.
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
    /// Written instead of the computed offset when set.
    pub offset: Option<u64>,
}

/// A GGUF file under construction.
#[derive(Clone, Debug)]
pub struct GgufBuilder {
    pub magic: [u8; 4],
    pub version: u32,
    /// Written instead of the real counts when set.
    pub tensor_count: Option<u64>,
    pub kv_count: Option<u64>,
    pub kvs: Vec<Kv>,
    pub tensors: Vec<Tensor>,
    /// Alignment used to lay out the data section.
    pub alignment: u64,
}

pub fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

pub fn u32_value(v: u32) -> (u32, Vec<u8>) {
    (U32, v.to_le_bytes().to_vec())
}

pub fn f32_value(v: f32) -> (u32, Vec<u8>) {
    (F32, v.to_le_bytes().to_vec())
}

pub fn string_value(s: &str) -> (u32, Vec<u8>) {
    (STRING, string(s))
}

/// An array of `items` already encoded as values of `item_type`.
pub fn array_value(item_type: u32, count: u64, items: &[u8]) -> (u32, Vec<u8>) {
    let mut out = item_type.to_le_bytes().to_vec();
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(items);
    (ARRAY, out)
}

pub fn strings_value(items: &[String]) -> (u32, Vec<u8>) {
    let encoded: Vec<u8> = items.iter().flat_map(|s| string(s)).collect();
    array_value(STRING, items.len() as u64, &encoded)
}

pub fn i32s_value(items: &[i32]) -> (u32, Vec<u8>) {
    let encoded: Vec<u8> = items.iter().flat_map(|v| v.to_le_bytes()).collect();
    array_value(I32, items.len() as u64, &encoded)
}

/// How a model's matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    F32,
    F16,
    Q8_0,
}

/// f32 to IEEE half precision, rounding to nearest even.
pub fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        return sign | 0x7c00 | if mantissa != 0 { 0x200 } else { 0 };
    }
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exponent <= 0 {
        if half_exponent < -10 {
            return sign;
        }
        // Subnormal: shift the mantissa (with its implicit 1) into place, rounding to even.
        let full = mantissa | 0x80_0000;
        let shift = (14 - half_exponent) as u32;
        let mut half = full >> shift;
        let rest = full & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        if rest > halfway || (rest == halfway && half & 1 == 1) {
            half += 1;
        }
        return sign | half as u16;
    }
    let mut half = ((half_exponent as u32) << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) {
        // May carry into the exponent, which is the correct rounding (up to infinity).
        half += 1;
    }
    sign | half as u16
}

/// llama.cpp's Q8_0: per block of 32, scale d = max|x| / 127 stored as f16, values round(x / d).
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    assert!(values.len().is_multiple_of(32), "Q8_0 rows are whole blocks");
    let mut out = Vec::with_capacity(values.len() / 32 * 34);
    for block in values.chunks_exact(32) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend(block.iter().map(|v| (v * inverse).round() as i8 as u8));
    }
    out
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufBuilder {
    /// An empty version-3 file.
    pub fn new() -> Self {
        GgufBuilder {
            magic: *b"GGUF",
            version: 3,
            tensor_count: None,
            kv_count: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
        }
    }

    /// Sets (replacing) or adds a metadata entry.
    pub fn set(&mut self, key: &str, (type_id, payload): (u32, Vec<u8>)) -> &mut Self {
        let kv = Kv { key: key.to_string(), type_id, payload };
        match self.kvs.iter_mut().find(|k| k.key == key) {
            Some(existing) => *existing = kv,
            None => self.kvs.push(kv),
        }
        self
    }

    /// Adds an F32 tensor whose shape is given slowest first, as in `[out, in]`.
    pub fn f32_tensor(&mut self, name: &str, shape: &[u64], values: &[f32]) -> &mut Self {
        self.typed_tensor(name, shape, values, WeightType::F32)
    }

    /// Adds a tensor stored as `kind`, shape slowest first. As llama.cpp's converter does, only
    /// matrices take F16 or Q8_0; vectors stay F32.
    pub fn typed_tensor(&mut self, name: &str, shape: &[u64], values: &[f32], kind: WeightType) -> &mut Self {
        assert_eq!(shape.iter().product::<u64>() as usize, values.len(), "{name}");
        let kind = if shape.len() < 2 { WeightType::F32 } else { kind };
        let (type_id, data) = match kind {
            WeightType::F32 => (0, f32_bytes(values)),
            WeightType::F16 => (1, values.iter().flat_map(|&v| f32_to_f16(v).to_le_bytes()).collect()),
            WeightType::Q8_0 => (8, quantize_q8_0(values)),
        };
        self.tensors.push(Tensor {
            name: name.to_string(),
            dims: shape.iter().rev().copied().collect(),
            type_id,
            data,
            offset: None,
        });
        self
    }

    /// The tensor called `name`.
    pub fn tensor(&mut self, name: &str) -> &mut Tensor {
        self.tensors.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
    }

    /// The file, and the offsets where its sections begin: counts, each metadata entry, each
    /// tensor entry, the data section and each tensor's data.
    pub fn bytes_with_sections(&self) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut sections = Vec::new();
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version.to_le_bytes());
        sections.push(out.len());
        out.extend_from_slice(&self.tensor_count.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.kv_count.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for kv in &self.kvs {
            sections.push(out.len());
            out.extend_from_slice(&string(&kv.key));
            out.extend_from_slice(&kv.type_id.to_le_bytes());
            out.extend_from_slice(&kv.payload);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            sections.push(out.len());
            out.extend_from_slice(&string(&t.name));
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.extend_from_slice(&t.type_id.to_le_bytes());
            out.extend_from_slice(&t.offset.unwrap_or(offset).to_le_bytes());
            offsets.push(offset);
            offset += (t.data.len() as u64).div_ceil(self.alignment) * self.alignment;
        }
        out.resize((out.len() as u64).div_ceil(self.alignment) as usize * self.alignment as usize, 0);
        let data_start = out.len();
        sections.push(data_start);
        for (t, offset) in self.tensors.iter().zip(offsets) {
            sections.push(data_start + offset as usize);
            out.resize(data_start + offset as usize, 0);
            out.extend_from_slice(&t.data);
        }
        out.resize((out.len() as u64).div_ceil(self.alignment) as usize * self.alignment as usize, 0);
        (out, sections)
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_with_sections().0
    }

    /// Writes the file to `path` (through a temporary name, so readers never see half of it).
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        let partial = path.with_extension("partial");
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&self.bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    }

    /// GPT-2 metadata for the given shape, with `tokens`, `merges` and `token_types`.
    pub fn gpt2_metadata(
        &mut self,
        name: &str,
        [n_ctx, n_embd, n_ff, n_layer, n_head]: [u32; 5],
        tokens: &[String],
        merges: &[String],
        token_types: &[i32],
        eos: u32,
    ) -> &mut Self {
        self.set("general.architecture", string_value("gpt2"))
            .set("general.name", string_value(name))
            .set("gpt2.context_length", u32_value(n_ctx))
            .set("gpt2.embedding_length", u32_value(n_embd))
            .set("gpt2.feed_forward_length", u32_value(n_ff))
            .set("gpt2.block_count", u32_value(n_layer))
            .set("gpt2.attention.head_count", u32_value(n_head))
            .set("gpt2.attention.layer_norm_epsilon", f32_value(1e-5))
            .set("tokenizer.ggml.model", string_value("gpt2"))
            .set("tokenizer.ggml.tokens", strings_value(tokens))
            .set("tokenizer.ggml.token_type", i32s_value(token_types))
            .set("tokenizer.ggml.merges", strings_value(merges))
            .set("tokenizer.ggml.bos_token_id", u32_value(eos))
            .set("tokenizer.ggml.eos_token_id", u32_value(eos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llorch_guest::tensor::f16_to_f32;

    #[test]
    fn f16_encoding_round_trips_through_the_guest_decoder() {
        for bits in 0..=0xffffu16 {
            let value = f16_to_f32(bits);
            if value.is_nan() {
                continue;
            }
            assert_eq!(f32_to_f16(value), bits, "{bits:#06x} = {value}");
        }
        assert_eq!(f32_to_f16(1.0 + f32::EPSILON), 0x3c00, "rounds to nearest");
        assert_eq!(f32_to_f16(1e6), 0x7c00, "overflows to infinity");
    }

    #[test]
    fn q8_0_blocks_hold_a_scale_and_rounded_values() {
        let values: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let block = quantize_q8_0(&values);
        assert_eq!(block.len(), 34);
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        assert!((d - 16.0 / 127.0).abs() < 1e-4);
        assert_eq!(block[2] as i8, -127);
        assert_eq!(block[2 + 16] as i8, 0);
    }
}
