//! Errors with stable codes: the protocol's, re-exported for the engine's modules.

pub use stigmer_protocol::error::*;
