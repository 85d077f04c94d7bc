//! Checkpoint 5: the attention output of block 0 (weighted values through the output
//! projection) matches transformers.

use crate::support::component::compare_hello_checkpoint;

#[test]
fn attention_output_matches_the_reference() {
    compare_hello_checkpoint("b0.attn_out", 1e-5);
}
