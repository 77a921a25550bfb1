//! The files on this machine through which clients find the server: where stigmer keeps its
//! files (config, data, logs, cache), the discovery file a running server writes, the lock
//! that says one runs, and the token its API wants. Servers write them, clients read them.
//!
//! By default the directories are the platform's (XDG on Linux, Application Support on macOS,
//! AppData on Windows). `STIGMER_HOME=DIR` puts all of them under DIR, which tests use to stay
//! apart from the user's real files.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::mode::Mode;

/// Environment variable that relocates every stigmer directory.
pub const HOME_ENV: &str = "STIGMER_HOME";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl Paths {
    /// Resolve from `STIGMER_HOME` or, without it, the platform's directories.
    pub fn resolve() -> Result<Paths> {
        match std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            Some(home) => {
                let home = PathBuf::from(home);
                let home = if home.is_absolute() {
                    home
                } else {
                    std::env::current_dir()
                        .map_err(|e| {
                            Error::internal(format!("cannot read current directory: {e}"))
                        })?
                        .join(home)
                };
                Ok(Paths::under(&home))
            }
            None => {
                let dirs = directories::ProjectDirs::from("dev", "stigmer", "stigmer").ok_or_else(|| {
                    Error::new(
                        ErrorCode::ConfigError,
                        format!("cannot find your home directory; set {HOME_ENV}=DIR to choose where stigmer keeps its files"),
                    )
                })?;
                let data_dir = dirs.data_local_dir().to_path_buf();
                Ok(Paths {
                    config_dir: dirs.config_dir().to_path_buf(),
                    log_dir: data_dir.join("logs"),
                    data_dir,
                    cache_dir: dirs.cache_dir().to_path_buf(),
                })
            }
        }
    }

    /// All directories under one root (what `STIGMER_HOME` does).
    pub fn under(home: &Path) -> Paths {
        Paths {
            config_dir: home.join("config"),
            data_dir: home.join("data"),
            log_dir: home.join("logs"),
            cache_dir: home.join("cache"),
        }
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// Written by a running server: how clients find it.
    pub fn discovery_file(&self) -> PathBuf {
        self.data_dir.join("server.json")
    }

    /// Held locked by the running server, so two servers never share one data dir.
    pub fn lock_file(&self) -> PathBuf {
        self.data_dir.join("server.lock")
    }

    /// The bearer token every API request must carry (readable by the user only).
    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("token")
    }

    /// Where a server started in the background writes its stdout and stderr.
    pub fn server_output_file(&self) -> PathBuf {
        self.log_dir.join("server.out")
    }

    pub fn tools_cache_file(&self) -> PathBuf {
        self.cache_dir.join("tools.json")
    }

    /// Where the server keeps runs' whole output, as long as their history does.
    pub fn run_output_dir(&self) -> PathBuf {
        self.data_dir.join("output")
    }

    /// The run history (SQLite).
    pub fn history_file(&self) -> PathBuf {
        self.data_dir.join("history.sqlite3")
    }

    /// The sandbox's scratch folder: where sandboxed runs that name no folder run.
    pub fn scratch_dir(&self) -> PathBuf {
        self.cache_dir.join("sandbox-workspace")
    }

    /// The allowlist proxy's doors: a private folder per sandbox container, holding the
    /// socket that is its only way out.
    pub fn proxy_dir(&self) -> PathBuf {
        self.data_dir.join("proxy")
    }

    /// Create a directory (and parents) that only the user can read on Unix.
    pub fn ensure_private_dir(dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorCode::ConfigError,
                format!("cannot create directory {}: {e}", dir.display()),
            )
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }
}

/// The user's home folder (the temp folder when there is none).
pub fn user_home() -> PathBuf {
    directories::BaseDirs::new()
        .map(|b| b.home_dir().to_path_buf())
        .unwrap_or_else(std::env::temp_dir)
}

/// Write a file atomically: a temporary file in the same directory, then a rename. A crash
/// midway leaves the old file intact, never a half-written one.
pub fn write_atomic(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Unique per call: two writers in one process never share a temporary file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

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
    /// The process whose end stops this server at once (the app that supervises it). Once it
    /// is gone the server is on its way out: clients do not attach to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifeline: Option<u32>,
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
            // None while a starting server has not written its file yet, and once a stopping
            // one has removed it or lost its lifeline.
            Discovery::read(paths).filter(|d| d.lifeline.is_none_or(process_alive))
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

/// Whether a process runs (a zombie, dead but not yet reaped, does not).
pub fn process_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // The state follows the command name's closing parenthesis.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().chars().next()),
                Some(Some('Z' | 'X'))
            ),
            Err(_) => false,
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let sent = unsafe { libc::kill(pid, 0) } == 0;
        sent || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
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
pub fn try_lock(file: &File) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::new(
            ErrorCode::ConfigError,
            format!("cannot lock {}: {e}", "the server lock file"),
        )),
    }
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

/// The server's log files are `stigmer.DATE.log` in the log dir (one a day).
pub const LOG_PREFIX: &str = "stigmer";
pub const LOG_SUFFIX: &str = "log";

/// The newest log file in `log_dir`, if any.
pub fn current_log_file(log_dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{LOG_PREFIX}.")) && n.ends_with(&format!(".{LOG_SUFFIX}"))
            })
        })
        .collect();
    // Dates in the names sort in time order.
    files.sort();
    files.pop()
}
