//! What to run and how, as every backend receives it: the command (argv or a shell line), its
//! folder, environment and timeout, checked before anything starts; and the pieces of output
//! a backend streams back.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, ErrorCode, Result};
use stigmer_protocol::run::Stream;

/// How long a command's process tree gets between SIGTERM and SIGKILL (timeout, cancel).
pub const KILL_GRACE: Duration = Duration::from_millis(1000);

/// What to run: a program with its arguments, or a line for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    /// Run the program directly, no shell involved: no quoting to get wrong. Arguments are
    /// bytes, as the OS has them (file names on Linux can be any bytes but NUL).
    Argv(Vec<OsString>),
    /// Run with `/bin/sh -c` (`cmd /C` on Windows).
    Shell(String),
}

impl CommandSpec {
    /// A one-line rendering for logs and run lists (bytes that are not UTF-8 shown as U+FFFD).
    pub fn display(&self) -> String {
        match self {
            CommandSpec::Shell(s) => s.clone(),
            CommandSpec::Argv(argv) => argv
                .iter()
                .map(|a| {
                    let a = a.to_string_lossy();
                    if !a.is_empty()
                        && a.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
                    {
                        a.into_owned()
                    } else {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The program and arguments for a POSIX system (a sandbox container), whatever the host.
    pub fn to_argv_posix(&self) -> Vec<OsString> {
        match self {
            CommandSpec::Argv(argv) => argv.clone(),
            CommandSpec::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.into()],
        }
    }

    /// The program and arguments actually executed.
    pub fn to_argv(&self) -> Vec<OsString> {
        match self {
            CommandSpec::Argv(argv) => argv.clone(),
            #[cfg(not(windows))]
            CommandSpec::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.into()],
            #[cfg(windows)]
            CommandSpec::Shell(s) => vec!["cmd".into(), "/C".into(), s.into()],
        }
    }
}

/// Whether an argument holds a NUL byte (which no OS passes to a program).
fn has_nul(a: &OsStr) -> bool {
    a.as_encoded_bytes().contains(&0)
}

/// One run's parameters, validated by [`ExecRequest::validate`].
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub command: CommandSpec,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Variables removed from the command's environment (the server's locally, the image's in
    /// a container).
    pub unset_env: Vec<String>,
    pub timeout: Option<Duration>,
}

impl ExecRequest {
    /// Check everything that can be checked before starting: a bad request runs nothing.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::new(ErrorCode::InvalidRequest, m));
        match &self.command {
            CommandSpec::Argv(argv) if argv.is_empty() => {
                return invalid("the command is empty: give a program to run".into())
            }
            CommandSpec::Argv(argv) if argv[0].is_empty() => {
                return invalid("the program name is empty".into())
            }
            CommandSpec::Argv(argv) if argv.iter().any(|a| has_nul(a)) => {
                return invalid("arguments cannot contain NUL bytes".into())
            }
            CommandSpec::Shell(s) if s.trim().is_empty() => {
                return invalid("the shell command is empty".into())
            }
            CommandSpec::Shell(s) if s.contains('\0') => {
                return invalid("the shell command cannot contain NUL bytes".into())
            }
            _ => {}
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return invalid(format!(
                    "`{k}` is not a valid environment variable name (non-empty, no `=` or NUL)"
                ));
            }
        }
        if let Some(t) = self.timeout {
            if t.is_zero() {
                return invalid("the timeout must be more than 0 seconds".into());
            }
        }
        check_cwd(&self.cwd)
    }
}

/// The longest timeout a run may ask for: a week.
pub const MAX_TIMEOUT_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// A timeout given in seconds, validated. `what` names it in the error (a flag or a field).
pub fn timeout_from_secs(secs: f64, what: &str) -> Result<Duration> {
    if secs.is_finite() && secs > 0.0 && secs <= MAX_TIMEOUT_SECS {
        // A positive timeout too small for a Duration (under 1 ns) is still a timeout.
        Ok(Duration::from_secs_f64(secs).max(Duration::from_nanos(1)))
    } else {
        Err(Error::new(
            ErrorCode::InvalidRequest,
            format!("{what} {secs} is not valid: give seconds above 0, at most {MAX_TIMEOUT_SECS}"),
        ))
    }
}

/// The working directory must be an absolute path to an existing directory.
pub fn check_cwd(cwd: &Path) -> Result<()> {
    if !cwd.is_absolute() {
        return Err(Error::new(
            ErrorCode::InvalidRequest,
            format!(
                "the working directory `{}` must be an absolute path",
                cwd.display()
            ),
        ));
    }
    match std::fs::metadata(cwd) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorCode::CwdNotFound,
            format!("the working directory {} is not a directory", cwd.display()),
        )),
        Err(e) => Err(Error::new(
            ErrorCode::CwdNotFound,
            format!(
                "the working directory {} does not exist ({e})",
                cwd.display()
            ),
        )),
    }
}

/// A piece of output, exactly as the command wrote it.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Bytes,
}
