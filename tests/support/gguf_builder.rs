//! A GGUF writer whose every field can be set to a wrong value: builds the synthetic models and
//! the hostile files of the sandbox tests.

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

/// Little-endian bytes of f32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
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
        assert_eq!(shape.iter().product::<u64>() as usize, values.len(), "{name}");
        self.tensors.push(Tensor {
            name: name.to_string(),
            dims: shape.iter().rev().copied().collect(),
            type_id: 0,
            data: f32_bytes(values),
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
    pub fn write(&self, path: &std::path::Path) {
        let partial = path.with_extension("partial");
        let mut file = std::fs::File::create(&partial).unwrap();
        file.write_all(&self.bytes()).unwrap();
        file.sync_all().unwrap();
        std::fs::rename(&partial, path).unwrap();
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

    /// A complete, valid GPT-2 of a few kilobytes: 258 tokens (the 256 bytes, "he",
    /// `<|endoftext|>`), 1 block, 8 wide, 2 heads, 16 positions.
    pub fn micro_gpt2() -> Self {
        let mut tokens: Vec<String> = llorch_guest::tokenizer::byte_alphabet().iter().map(|c| c.to_string()).collect();
        tokens.push("he".into());
        tokens.push("<|endoftext|>".into());
        let mut types = vec![1; tokens.len()];
        types[257] = 3;
        let (v, c, f, p) = (258u64, 8u64, 32u64, 16u64);
        let values = |n: u64, scale: f32| (0..n).map(|i| (i as f32 * 0.37).sin() * scale).collect::<Vec<_>>();
        let ones = |n: u64| vec![1.0f32; n as usize];
        let mut b = GgufBuilder::new();
        b.gpt2_metadata("micro-gpt2", [p as u32, c as u32, f as u32, 1, 2], &tokens, &["h e".into()], &types, 257);
        b.f32_tensor("token_embd.weight", &[v, c], &values(v * c, 0.1))
            .f32_tensor("position_embd.weight", &[p, c], &values(p * c, 0.05))
            .f32_tensor("blk.0.attn_norm.weight", &[c], &ones(c))
            .f32_tensor("blk.0.attn_norm.bias", &[c], &values(c, 0.01))
            .f32_tensor("blk.0.attn_qkv.weight", &[3 * c, c], &values(3 * c * c, 0.2))
            .f32_tensor("blk.0.attn_qkv.bias", &[3 * c], &values(3 * c, 0.01))
            .f32_tensor("blk.0.attn_output.weight", &[c, c], &values(c * c, 0.2))
            .f32_tensor("blk.0.attn_output.bias", &[c], &values(c, 0.01))
            .f32_tensor("blk.0.ffn_norm.weight", &[c], &ones(c))
            .f32_tensor("blk.0.ffn_norm.bias", &[c], &values(c, 0.01))
            .f32_tensor("blk.0.ffn_up.weight", &[f, c], &values(f * c, 0.2))
            .f32_tensor("blk.0.ffn_up.bias", &[f], &values(f, 0.01))
            .f32_tensor("blk.0.ffn_down.weight", &[c, f], &values(c * f, 0.2))
            .f32_tensor("blk.0.ffn_down.bias", &[c], &values(c, 0.01))
            .f32_tensor("output_norm.weight", &[c], &ones(c))
            .f32_tensor("output_norm.bias", &[c], &values(c, 0.01));
        b
    }
}
