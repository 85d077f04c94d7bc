//! Checkpoint 6: the MLP of block 0 (tanh GELU) matches transformers.

use crate::support::component::compare_hello_checkpoint;

#[test]
fn mlp_output_matches_the_reference() {
    compare_hello_checkpoint("b0.mlp_out", 1e-5);
}
