//! GGUF reader: parses a GGUF v2/v3 file held in memory and checks every count, length, offset
//! and shape against the file's size before it allocates anything.

use crate::error::{Error, Result};
use std::collections::HashMap;

const MAGIC: &[u8; 4] = b"GGUF";
/// Default alignment of the tensor data section when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest `general.alignment` accepted; real files use 32.
const MAX_ALIGNMENT: u64 = 65536;
/// Longest tensor name accepted (llama.cpp's GGML_MAX_NAME).
const MAX_TENSOR_NAME: usize = 64;
/// Most dimensions a tensor may have.
const MAX_DIMS: u32 = 4;

/// The tensor element types this reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    /// Blocks of 32 int8 values with one f16 scale (34 bytes a block).
    Q8_0,
}

impl TensorType {
    fn from_id(id: u32) -> Option<Self> {
        match id {
            0 => Some(TensorType::F32),
            1 => Some(TensorType::F16),
            8 => Some(TensorType::Q8_0),
            _ => None,
        }
    }

    /// Values per block and bytes per block.
    pub fn block(self) -> (u64, u64) {
        match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 => (1, 2),
            TensorType::Q8_0 => (32, 34),
        }
    }

    /// The name GGUF tools use for this type.
    pub fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "F32",
            TensorType::F16 => "F16",
            TensorType::Q8_0 => "Q8_0",
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Uint(_) => "unsigned integer",
            Value::Int(_) => "signed integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// Where one tensor's data lies and what shape it has.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as GGUF lists them: fastest-varying first.
    pub dims: Vec<u64>,
    pub kind: TensorType,
    /// Byte offset inside the data section.
    pub offset: u64,
    /// Byte length of the data.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file borrowing its bytes.
pub struct Gguf<'a> {
    pub version: u32,
    metadata: HashMap<String, Value>,
    tensors: Vec<TensorInfo>,
    data: &'a [u8],
    data_start: u64,
}

/// A cursor over the file that refuses to read past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::model(format!(
                "file truncated: {what} needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let slice = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::model(format!("{what} is not valid UTF-8")))
    }

    /// Reads a count of items that each take at least `min_item_bytes`, refusing counts the
    /// rest of the file cannot hold.
    fn count(&mut self, what: &str, min_item_bytes: u64) -> Result<u64> {
        let n = self.u64(what)?;
        let room = self.remaining() / min_item_bytes.max(1);
        if n > room {
            return Err(Error::model(format!(
                "file truncated or corrupt: {what} is {n}, but the {} bytes left in the file hold at most {room}",
                self.remaining()
            )));
        }
        Ok(n)
    }

    fn value(&mut self, type_id: u32, key: &str, in_array: bool) -> Result<Value> {
        let le = |b: &[u8]| {
            let mut v = [0u8; 8];
            v[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(v)
        };
        let sign_extend = |raw: u64, bits: u32| ((raw << (64 - bits)) as i64) >> (64 - bits);
        Ok(match type_id {
            0 => Value::Uint(le(self.take(1, key)?)),
            1 => Value::Int(sign_extend(le(self.take(1, key)?), 8)),
            2 => Value::Uint(le(self.take(2, key)?)),
            3 => Value::Int(sign_extend(le(self.take(2, key)?), 16)),
            4 => Value::Uint(le(self.take(4, key)?)),
            5 => Value::Int(sign_extend(le(self.take(4, key)?), 32)),
            6 => Value::Float(f32::from_le_bytes(self.array(key)?) as f64),
            7 => match self.take(1, key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Error::model(format!("metadata {key}: bool byte is {b}"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if in_array {
                    return Err(Error::model(format!("metadata {key}: nested arrays are not supported")));
                }
                let item_type = self.u32(key)?;
                let min = min_value_bytes(item_type).ok_or_else(|| {
                    Error::model(format!("metadata {key}: array element type {item_type} is unknown"))
                })?;
                let n = self.count(&format!("metadata {key}: array length"), min)?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(item_type, key, true)?);
                }
                Value::Array(items)
            }
            10 => Value::Uint(self.u64(key)?),
            11 => Value::Int(self.u64(key)? as i64),
            12 => Value::Float(f64::from_le_bytes(self.array(key)?)),
            other => return Err(Error::model(format!("metadata {key}: value type {other} is unknown"))),
        })
    }
}

/// Fewest bytes a value of GGUF type `type_id` takes, or None for an unknown type.
fn min_value_bytes(type_id: u32) -> Option<u64> {
    match type_id {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        8 | 10..=12 => Some(8),
        9 => Some(12),
        _ => None,
    }
}

impl<'a> Gguf<'a> {
    /// Parses the header, metadata and tensor table of `bytes`, checking that every tensor lies
    /// inside the data section.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.array::<4>("magic")?;
        if &magic != MAGIC {
            return Err(Error::model(format!("not a GGUF file: magic is {magic:02x?}, expected \"GGUF\"")));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::model(format!("GGUF version {version} is not supported (2 or 3)")));
        }
        // A tensor entry takes at least 8 (name length) + 4 (dims) + 8 (one dim) + 4 + 8 bytes;
        // a metadata entry at least 8 (key length) + 4 (type) + 1.
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.count("metadata count", 13)?;

        let mut metadata = HashMap::new();
        for i in 0..kv_count {
            let key = r.string(&format!("metadata key #{i}"))?;
            if key.is_empty() {
                return Err(Error::model(format!("metadata key #{i} is empty")));
            }
            let type_id = r.u32(&key)?;
            let value = r.value(type_id, &key, false)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(Error::model(format!("metadata key {key} appears twice")));
            }
        }

        if tensor_count > r.remaining() / 32 {
            return Err(Error::model(format!(
                "file truncated or corrupt: tensor count is {tensor_count}, but the {} bytes left in the file hold at most {}",
                r.remaining(),
                r.remaining() / 32
            )));
        }
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count as usize);
        let mut names = HashMap::new();
        for i in 0..tensor_count {
            let name = r.string(&format!("tensor #{i} name"))?;
            if name.is_empty() || name.len() > MAX_TENSOR_NAME {
                return Err(Error::model(format!(
                    "tensor #{i} name has {} bytes (1..={MAX_TENSOR_NAME} allowed)",
                    name.len()
                )));
            }
            if names.insert(name.clone(), i).is_some() {
                return Err(Error::model(format!("tensor {name} appears twice")));
            }
            let n_dims = r.u32(&name)?;
            if !(1..=MAX_DIMS).contains(&n_dims) {
                return Err(Error::model(format!("tensor {name} has {n_dims} dimensions (1..={MAX_DIMS} allowed)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut elements: u64 = 1;
            for _ in 0..n_dims {
                let d = r.u64(&name)?;
                if d == 0 {
                    return Err(Error::model(format!("tensor {name} has a zero dimension")));
                }
                elements = elements
                    .checked_mul(d)
                    .filter(|&e| e <= i64::MAX as u64)
                    .ok_or_else(|| Error::model(format!("tensor {name}: element count overflows")))?;
                dims.push(d);
            }
            let type_id = r.u32(&name)?;
            let kind = TensorType::from_id(type_id).ok_or_else(|| {
                Error::model(format!(
                    "tensor {name} has GGML type {type_id}, which is not supported (F32, F16, Q8_0 are)"
                ))
            })?;
            let (block_values, block_bytes) = kind.block();
            if dims[0] % block_values != 0 {
                return Err(Error::model(format!(
                    "tensor {name}: row length {} is not a multiple of the {} block size {block_values}",
                    dims[0],
                    kind.name()
                )));
            }
            let size = (elements / block_values)
                .checked_mul(block_bytes)
                .ok_or_else(|| Error::model(format!("tensor {name}: byte size overflows")))?;
            let offset = r.u64(&name)?;
            tensors.push(TensorInfo { name, dims, kind, offset, size });
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::Uint(a)) if a.is_power_of_two() && *a <= MAX_ALIGNMENT => *a,
            Some(v) => {
                return Err(Error::model(format!(
                    "general.alignment must be a power of two up to {MAX_ALIGNMENT}, got {v:?}"
                )));
            }
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        if data_start > bytes.len() as u64 {
            return Err(Error::model(format!(
                "file truncated: tensor data should start at offset {data_start} but the file has {} bytes",
                bytes.len()
            )));
        }
        let data = &bytes[data_start as usize..];

        let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
        for t in &tensors {
            if t.offset % alignment != 0 {
                return Err(Error::model(format!(
                    "tensor {}: offset {} is not a multiple of the alignment {alignment}",
                    t.name, t.offset
                )));
            }
            let end = t.offset.checked_add(t.size).filter(|&e| e <= data.len() as u64);
            let Some(end) = end else {
                return Err(Error::model(format!(
                    "file truncated or corrupt: tensor {}: {} bytes at offset {} run past the end of the data section ({} bytes)",
                    t.name,
                    t.size,
                    t.offset,
                    data.len()
                )));
            };
            spans.push((t.offset, end, &t.name));
        }
        spans.sort_unstable();
        for pair in spans.windows(2) {
            if pair[1].0 < pair[0].1 {
                return Err(Error::model(format!(
                    "tensors {} and {} overlap in the data section",
                    pair[0].2, pair[1].2
                )));
            }
        }
        Ok(Gguf { version, metadata, tensors, data, data_start })
    }

    /// A metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required unsigned integer that fits in u32 (any GGUF integer type is accepted).
    pub fn u32(&self, key: &str) -> Result<u32> {
        match self.require(key)? {
            Value::Uint(v) if *v <= u32::MAX as u64 => Ok(*v as u32),
            Value::Int(v) if *v >= 0 && *v <= u32::MAX as i64 => Ok(*v as u32),
            v => Err(Error::model(format!(
                "metadata {key} must be an integer in 0..=4294967295, got {} {v:?}",
                v.type_name()
            ))),
        }
    }

    /// A required float (any GGUF float type).
    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.require(key)? {
            Value::Float(v) => Ok(*v as f32),
            v => Err(Error::model(format!("metadata {key} must be a float, got {}", v.type_name()))),
        }
    }

    /// An optional string.
    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Error::model(format!("metadata {key} must be a string, got {}", v.type_name()))),
        }
    }

    /// A required array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        let Value::Array(items) = self.require(key)? else {
            return Err(Error::model(format!("metadata {key} must be an array of strings")));
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                v => {
                    Err(Error::model(format!("metadata {key} must be an array of strings, found a {}", v.type_name())))
                }
            })
            .collect()
    }

    /// An optional array of integers.
    pub fn integers(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(value) = self.metadata.get(key) else { return Ok(None) };
        let Value::Array(items) = value else {
            return Err(Error::model(format!("metadata {key} must be an array of integers")));
        };
        items
            .iter()
            .map(|v| match v {
                Value::Int(i) => Ok(*i),
                Value::Uint(u) => {
                    i64::try_from(*u).map_err(|_| Error::model(format!("metadata {key}: {u} is out of range")))
                }
                v => {
                    Err(Error::model(format!("metadata {key} must be an array of integers, found a {}", v.type_name())))
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).ok_or_else(|| Error::model(format!("metadata {key} is missing")))
    }

    /// Byte offset of the tensor data section in the file.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// The table of tensors, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A tensor's description and its bytes.
    pub fn tensor(&self, name: &str) -> Option<(&TensorInfo, &'a [u8])> {
        let info = self.tensors.iter().find(|t| t.name == name)?;
        let start = info.offset as usize;
        Some((info, &self.data[start..start + info.size as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal valid GGUF with one F32 tensor of `dims`.
    fn file(version: u32, dims: &[u64]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        let key = b"general.name";
        b.extend_from_slice(&(key.len() as u64).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(b"test");
        let name = b"w";
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        // Data for shapes small enough to write; huge shapes get none.
        let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).filter(|&n| n < 1 << 20).unwrap_or(0);
        for i in 0..n {
            b.extend_from_slice(&(i as f32).to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_a_well_formed_file() {
        let bytes = file(3, &[3, 2]);
        let g = Gguf::parse(&bytes).unwrap();
        assert_eq!(g.str("general.name").unwrap(), Some("test"));
        let (info, data) = g.tensor("w").unwrap();
        assert_eq!(info.dims, vec![3, 2]);
        assert_eq!(data.len(), 24);
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), 5.0);
    }

    #[test]
    fn rejects_every_truncation() {
        let bytes = file(2, &[4, 4]);
        for len in 0..bytes.len() {
            assert!(Gguf::parse(&bytes[..len]).is_err(), "accepted a file cut at {len}");
        }
    }

    #[test]
    fn rejects_an_overflowing_shape() {
        let bytes = file(3, &[u64::MAX / 2, 4]);
        let err = Gguf::parse(&bytes).err().unwrap();
        assert!(err.to_string().contains("overflows"), "{err}");
    }

    #[test]
    fn rejects_unknown_versions() {
        for v in [0, 1, 4, u32::MAX] {
            let err = Gguf::parse(&file(v, &[1])).err().unwrap();
            assert!(err.to_string().contains("version"), "{err}");
        }
    }
}
