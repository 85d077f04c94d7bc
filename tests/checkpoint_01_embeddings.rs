//! Checkpoint 1: token + position embeddings of "Hello." match transformers.

use crate::support::component::compare_hello_checkpoint;

#[test]
fn embeddings_match_the_reference() {
    compare_hello_checkpoint("embeddings", 1e-6);
}
