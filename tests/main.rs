//! Black-box tests of llorch-cpud: each module checks one stage against a reference, through
//! the real component under wasmtime or the real binary over HTTP.

mod support;

mod checkpoint_01_embeddings;
mod checkpoint_02_layer_norm;
mod checkpoint_03_qkv;
mod checkpoint_04_attention_scores;
mod checkpoint_05_attention_output;
mod checkpoint_06_ffn;
mod checkpoint_07_first_block;
mod checkpoint_08_full_logits;
mod checkpoint_09_greedy_tokens;
mod checkpoint_10_startup_and_callback;
mod checkpoint_11_request_errors;
mod checkpoint_12_streaming;
mod checkpoint_13_shutdown;
mod checkpoint_14_tokenizer;
mod checkpoint_15_sampling;
mod checkpoint_16_stop_eos_utf8;
mod checkpoint_17_wasmtime_cli;
mod checkpoint_18_hostile_models;
mod checkpoint_19_gguf_fuzz;
mod checkpoint_20_guest_failures;
mod checkpoint_21_hostile_requests;
mod checkpoint_22_quantized_weights;
mod checkpoint_24_readme_command;
mod checkpoint_25_component_cache;
mod checkpoint_26_flags;
mod checkpoint_27_operations;
mod checkpoint_28_slots_and_batching;
mod checkpoint_29_pack;
mod checkpoint_30_wasmtime_serve;
