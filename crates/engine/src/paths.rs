//! Where stigmer keeps its files: config, data (discovery file, token), logs and cache.
//!
//! By default these are the platform's directories (XDG on Linux, Application Support on macOS,
//! AppData on Windows). `STIGMER_HOME=DIR` puts all of them under DIR, which tests use to stay
//! apart from the user's real files.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};
use crate::settings::Mode;

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

    /// The working directory of a run that names none: the home folder in local mode, like a
    /// new terminal; in sandbox mode a scratch folder of stigmer's (the home folder holds
    /// stigmer's own settings and token, so it is never mounted into a container).
    pub fn default_cwd(&self, mode: Mode) -> PathBuf {
        match mode {
            Mode::Local => user_home(),
            Mode::Sandbox => {
                let dir = self.scratch_dir();
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    tracing::warn!("cannot create {}: {e}", dir.display());
                }
                dir
            }
        }
    }

    /// The sandbox's scratch folder: where sandboxed runs that name no folder run.
    pub fn scratch_dir(&self) -> PathBuf {
        self.cache_dir.join("sandbox-workspace")
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
