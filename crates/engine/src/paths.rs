//! Where stigmer keeps its files: the protocol's [`Paths`], re-exported for the engine.

pub use stigmer_protocol::local::{user_home, write_atomic, Paths, HOME_ENV};
