//! Stigmer's wire contract, in plain serde types: what a client sends (a run request, a mode
//! change), what it gets back (the run's stream, summaries, pages of output, status, events),
//! the errors with their stable codes, and the files on this machine through which it finds
//! the server. The server writes these; every client (the CLI, `stigmer mcp`, the desktop
//! app) reads them. No async runtime, no HTTP, no container engine in here.

pub mod changes;
pub mod clients;
pub mod desktop;
pub mod error;
pub mod events;
pub mod frames;
pub mod local;
pub mod mode;
pub mod network;
pub mod replies;
pub mod routes;
pub mod run;
pub mod status;

pub use error::{Error, ErrorCode, Result};

/// The version of stigmer, shared by the CLI, the server, the API and the app.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
