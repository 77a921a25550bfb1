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

    /// The running server, if any. A file left by a dead process is removed.
    pub fn find_running(paths: &Paths) -> Option<Discovery> {
        let file = paths.discovery_file();
        match Discovery::read(paths) {
            Some(d) if pid_alive(d.pid) => Some(d),
            Some(_) => {
                let _ = std::fs::remove_file(&file);
                None
            }
            None => {
                // Unreadable: either being written right now, or garbage. Only garbage goes.
                if file.exists() && !server_lock_held(paths) {
                    let _ = std::fs::remove_file(&file);
                }
                None
            }
        }
    }

    /// Remove the file if it is this process's.
    pub fn remove_own(paths: &Paths) {
        if Discovery::read(paths).is_some_and(|d| d.pid == std::process::id()) {
            let _ = std::fs::remove_file(paths.discovery_file());
        }
    }
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        if pid == 0 || pid > i32::MAX as u32 {
            return false;
        }
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        // A zombie has exited; it only waits for its parent to notice.
        exists && !crate::exec::is_zombie(pid)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
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
        if !try_lock(&file) {
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

fn server_lock_held(paths: &Paths) -> bool {
    match File::open(paths.lock_file()) {
        Ok(f) => !try_lock(&f),
        Err(_) => false,
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> bool {
    true
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
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
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
            Error::new(
                ErrorCode::ServerUnavailable,
                format!(
                    "cannot read the server token {}: {e}",
                    paths.token_file().display()
                ),
            )
        })
}
