//! Checkpoint 3: the fused QKV projection of block 0 (`[out, in]` weights plus bias) matches
//! transformers.

use crate::support::component::compare_hello_checkpoint;

#[test]
fn qkv_matches_the_reference() {
    compare_hello_checkpoint("b0.qkv", 1e-5);
}
