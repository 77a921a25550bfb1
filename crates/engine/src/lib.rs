//! The Stigmer engine: settings and mode, tool detection, command execution and the local API
//! server. No GUI dependency: the `stigmer` CLI and the desktop app both build on it.

pub mod admission;
pub mod approvals;
pub mod changes;
pub mod command_env;
pub mod discovery;
pub mod error;
pub mod events;
pub mod execute;
pub mod history;
mod intake;
pub mod logging;
pub mod mcp;
pub mod network;
pub mod paths;
pub mod private;
pub mod runs;
pub mod server;
pub mod settings;
pub mod spool;
pub mod tools;
pub mod util;

pub use error::{Error, ErrorCode, Result};

pub use stigmer_protocol::VERSION;
