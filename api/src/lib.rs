//! llorch-api: the llama-orch worker HTTP API's request rules and wire format (SSE events, error
//! bodies, outcome codes), one copy shared by the host's server and the component's own
//! `wasi:http` handler so both answer alike.

pub mod error;
pub mod events;
pub mod outcome;
pub mod request;
