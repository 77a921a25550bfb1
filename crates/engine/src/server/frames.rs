//! The binary framing of a run's stream: the protocol's, re-exported for the server.

pub use stigmer_protocol::frames::*;
