//! Checkpoint 2: both LayerNorms of block 0 (eps from the file) match transformers.

use crate::support::component::compare_hello_checkpoint;

#[test]
fn attention_layer_norm_matches_the_reference() {
    compare_hello_checkpoint("b0.ln_1", 1e-5);
}

#[test]
fn mlp_layer_norm_matches_the_reference() {
    compare_hello_checkpoint("b0.ln_2", 1e-5);
}
