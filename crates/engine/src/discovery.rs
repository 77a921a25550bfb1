//! How clients find the running server: the discovery file, the lock that keeps one server per
//! data dir, and the bearer token.

use std::fs::File;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::paths::{write_atomic, Paths};
use crate::settings::Mode;

/// What a running server writes to `server.json` in the data dir once it is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    pub pid: u32,
    pub url: String,
    pub port: u16,
    pub version: String,
    pub mode: Mode,
    pub image: String,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub log_dir: PathBuf,
}

impl Discovery {
    pub fn write(&self, paths: &Paths) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::internal(e.to_string()))?;
        write_atomic(&paths.discovery_file(), &json, true).map_err(|e| {
            Error::new(
                ErrorCode::ConfigError,
                format!("cannot write {}: {e}", paths.discovery_file().display()),
            )
        })
    }

    pub fn read(paths: &Paths) -> Option<Discovery> {
        let text = std::fs::read(paths.discovery_file()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The running server, if any. A server is running exactly when someone holds the server
    /// lock (the OS releases it when the process dies, however it dies), so a discovery file
    /// without a lock holder is stale and is removed.
    pub fn find_running(paths: &Paths) -> Option<Discovery> {
        if server_lock_held(paths) {
            // None while a starting server has not written its file yet.
            Discovery::read(paths)
        } else {
            let _ = std::fs::remove_file(paths.discovery_file());
            None
        }
    }

    /// Remove the file if it is this process's.
    pub fn remove_own(paths: &Paths) {
        if Discovery::read(paths).is_some_and(|d| d.pid == std::process::id()) {
            let _ = std::fs::remove_file(paths.discovery_file());
        }
    }
}

/// An exclusive lock on `server.lock`, held for the server's lifetime. The OS releases it when
/// the process dies, however it dies.
#[derive(Debug)]
pub struct ServerLock {
    _file: File,
}

impl ServerLock {
    pub fn acquire(paths: &Paths) -> Result<ServerLock> {
        Paths::ensure_private_dir(&paths.data_dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(paths.lock_file())
            .map_err(|e| {
                Error::new(
                    ErrorCode::ConfigError,
                    format!("cannot open {}: {e}", paths.lock_file().display()),
                )
            })?;
        if !try_lock(&file)? {
            let hint = Discovery::read(paths)
                .map(|d| format!(" at {} (pid {})", d.url, d.pid))
                .unwrap_or_default();
            return Err(Error::new(
                ErrorCode::ServerAlreadyRunning,
                format!("a stigmer server is already running{hint}; use `stigmer server stop` to stop it"),
            ));
        }
        Ok(ServerLock { _file: file })
    }
}

/// Whether a server holds the lock of this data dir right now.
pub fn server_lock_held(paths: &Paths) -> bool {
    match File::open(paths.lock_file()) {
        // Our probe lock, if we got it, is released when `f` is dropped.
        Ok(f) => matches!(try_lock(&f), Ok(false)),
        Err(_) => false,
    }
}

/// Take the exclusive lock without waiting: Ok(false) when someone else holds it.
fn try_lock(file: &File) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::new(
            ErrorCode::ConfigError,
            format!("cannot lock {}: {e}", "the server lock file"),
        )),
    }
}

/// The API token: read it, or create a random one readable by the user only.
pub fn load_or_create_token(paths: &Paths) -> Result<String> {
    let file = paths.token_file();
    if let Ok(t) = std::fs::read_to_string(&file) {
        let t = t.trim();
        if t.len() >= 32 {
            return Ok(t.to_string());
        }
    }
    let token = crate::util::random_hex(32)?;
    Paths::ensure_private_dir(&paths.data_dir)?;
    write_atomic(&file, token.as_bytes(), true).map_err(|e| {
        Error::new(
            ErrorCode::ConfigError,
            format!("cannot write the API token to {}: {e}", file.display()),
        )
    })?;
    Ok(token)
}

/// Read the token of a running server (clients).
pub fn read_token(paths: &Paths) -> Result<String> {
    std::fs::read_to_string(paths.token_file())
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "; the first `stigmer server start` creates it"
            } else {
                ""
            };
            Error::new(
                ErrorCode::ServerUnavailable,
                format!(
                    "cannot read the server token {}: {e}{hint}",
                    paths.token_file().display()
                ),
            )
        })
}
