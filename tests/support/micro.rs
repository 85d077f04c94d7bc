//! The smallest valid GPT-2 GGUF: the seed of the hostile-file and fuzz tests.

use llorch_testkit::gguf_writer::GgufBuilder;

/// A complete, valid GPT-2 of a few kilobytes: 258 tokens (the 256 bytes, "he",
/// `<|endoftext|>`), 1 block, 8 wide, 2 heads, 16 positions.
pub fn micro_gpt2() -> GgufBuilder {
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
