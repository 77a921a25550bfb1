//! How clients find the running server: the discovery file, the lock that keeps one server per
//! data dir, and the bearer token.

use std::fs::File;
use std::time::{Duration, Instant};

use stigmer_protocol::local::try_lock;
pub use stigmer_protocol::local::{read_token, server_lock_held, Discovery};

use crate::error::{Error, ErrorCode, Result};
use crate::paths::{write_atomic, Paths};

/// How long a starting server waits for one that is stopping (runs end within 5 s, clients get
/// 2 s more, then its containers are removed).
const LOCK_WAIT: Duration = Duration::from_secs(15);

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
        // A server that is stopping (or starting) holds the lock without a discovery file for
        // a few seconds: wait for it rather than fail the start.
        let started = Instant::now();
        while !try_lock(&file)? {
            if let Some(d) = Discovery::find_running(paths) {
                return Err(Error::new(
                    ErrorCode::ServerAlreadyRunning,
                    format!(
                        "a stigmer server is already running at {} (pid {}); use `stigmer server stop` to stop it",
                        d.url, d.pid
                    ),
                ));
            }
            if started.elapsed() > LOCK_WAIT {
                return Err(Error::new(
                    ErrorCode::ServerAlreadyRunning,
                    format!(
                        "another stigmer server holds {} and has not finished starting or stopping after {} s; try again, or stop it with `stigmer server stop`",
                        paths.lock_file().display(),
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(ServerLock { _file: file })
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
