//! Running a command on this machine (local mode).
//!
//! The contract, shared with sandbox mode: a command is an argv or a shell string; it gets a
//! working directory, extra environment and an optional timeout; stdin is empty; stdout and
//! stderr are streamed apart, byte for byte, as they come. The command runs in its own process
//! group so a timeout or a cancel kills the whole tree, and background children it leaves
//! behind are terminated when it exits instead of keeping the run open.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorCode, Result};

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_millis(1000);
/// How long output is still read after the command and its group are gone. Only a process
/// that escaped the group (setsid) and still holds the pipe can make reading take this long.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 256 * 1024;
const SMALL_READ: usize = 16 * 1024;
/// Output pipes are enlarged to this (Linux), so a fast writer wakes us less often.
#[cfg(target_os = "linux")]
const PIPE_SIZE: libc::c_int = 1024 * 1024;

/// What to run: a program with its arguments, or a line for the shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandSpec {
    /// Run the program directly, no shell involved: no quoting to get wrong.
    Argv(Vec<String>),
    /// Run with `/bin/sh -c` (`cmd /C` on Windows).
    Shell(String),
}

impl CommandSpec {
    /// A one-line rendering for logs and run lists.
    pub fn display(&self) -> String {
        match self {
            CommandSpec::Shell(s) => s.clone(),
            CommandSpec::Argv(argv) => argv
                .iter()
                .map(|a| {
                    if !a.is_empty()
                        && a.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
                    {
                        a.clone()
                    } else {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The program and arguments for a POSIX system (a sandbox container), whatever the host.
    pub fn to_argv_posix(&self) -> Vec<String> {
        match self {
            CommandSpec::Argv(argv) => argv.clone(),
            CommandSpec::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }

    /// The program and arguments actually executed.
    pub fn to_argv(&self) -> Vec<String> {
        match self {
            CommandSpec::Argv(argv) => argv.clone(),
            #[cfg(not(windows))]
            CommandSpec::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            #[cfg(windows)]
            CommandSpec::Shell(s) => vec!["cmd".into(), "/C".into(), s.clone()],
        }
    }
}

/// One run's parameters, validated by [`ExecRequest::validate`].
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub command: CommandSpec,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Variables removed from the command's environment (local mode; a container starts from
    /// its image's environment, where they are set empty instead).
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
            CommandSpec::Argv(argv) if argv.iter().any(|a| a.contains('\0')) => {
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

/// Give up this process's controlling terminal, so the commands it starts have none: ssh,
/// sudo and friends then fail at once instead of prompting on the terminal the server was
/// started from (and hanging the run until its timeout). Ctrl-C still reaches the server: it
/// stays in the terminal's foreground process group. Called once, when the server starts.
#[cfg(unix)]
pub fn detach_from_terminal() {
    // SAFETY: plain system calls on a descriptor opened and closed here, and a signal
    // disposition saved and restored whole. A session leader that gives up its terminal makes
    // the kernel send SIGHUP to the foreground group (ours): it is ignored for that moment.
    unsafe {
        let fd = libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return; // no controlling terminal
        }
        let leader = libc::getsid(0) == libc::getpid();
        let mut previous: libc::sigaction = std::mem::zeroed();
        if leader {
            let mut ignore: libc::sigaction = std::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(libc::SIGHUP, &ignore, &mut previous);
        }
        libc::ioctl(fd, libc::TIOCNOTTY);
        if leader {
            libc::sigaction(libc::SIGHUP, &previous, std::ptr::null_mut());
        }
        libc::close(fd);
    }
}

#[cfg(not(unix))]
pub fn detach_from_terminal() {}

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

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A piece of output, exactly as the command wrote it.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Bytes,
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecOutcome {
    /// The exit code, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when a signal did.
    pub signal: Option<i32>,
    /// The timeout expired and the command was killed.
    pub timed_out: bool,
    /// The run was cancelled and the command was killed.
    pub cancelled: bool,
    /// From start to exit, in milliseconds.
    pub duration_ms: f64,
}

impl ExecOutcome {
    /// The exit code a shell would give: 124 on timeout, 128+N on signal N.
    pub fn shell_exit_code(&self) -> i32 {
        if self.timed_out {
            124
        } else if let Some(sig) = self.signal {
            128 + sig
        } else if self.cancelled {
            130
        } else {
            self.exit_code.unwrap_or(125)
        }
    }
}

/// Run `req` on this machine. Output goes to `out` as it comes (a full channel slows the
/// command down rather than dropping bytes). `path` replaces PATH when given (the user's login
/// shell PATH for apps started from a desktop launcher).
pub async fn run_local(
    req: &ExecRequest,
    path: Option<&OsStr>,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
) -> Result<ExecOutcome> {
    req.validate()?;
    let argv = req.command.to_argv();
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&req.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // stigmer's own variables (home, token locations) are not the command's business.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STIGMER_") {
            cmd.env_remove(&k);
        }
    }
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    for k in &req.unset_env {
        cmd.env_remove(k);
    }
    cmd.envs(&req.env);
    #[cfg(unix)]
    cmd.process_group(0);

    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return spawn_failure(&argv[0], e, &out, started).await,
    };
    let pgid = child.id();
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        for fd in [
            child.stdout.as_ref().map(|p| p.as_raw_fd()),
            child.stderr.as_ref().map(|p| p.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            // SAFETY: F_SETPIPE_SZ on a pipe we own; failure (over the limit) keeps the default.
            unsafe {
                libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE);
            }
        }
    }
    let abandon = CancellationToken::new();
    let pumps = [
        tokio::spawn(pump(
            child.stdout.take(),
            Stream::Stdout,
            out.clone(),
            abandon.clone(),
        )),
        tokio::spawn(pump(
            child.stderr.take(),
            Stream::Stderr,
            out.clone(),
            abandon.clone(),
        )),
    ];

    let mut outcome = ExecOutcome::default();
    let deadline = async {
        match req.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let status = tokio::select! {
        status = child.wait() => Some(status),
        _ = deadline => { outcome.timed_out = true; None }
        _ = cancel.cancelled() => { outcome.cancelled = true; None }
    };
    let status = match status {
        Some(status) => status,
        None => {
            terminate_tree(&mut child, pgid).await;
            child.wait().await
        }
    }
    .map_err(|e| Error::internal(format!("waiting for the command failed: {e}")))?;
    outcome.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Whatever the command left running in its group goes too.
    if let Some(pgid) = pgid {
        reap_group(pgid).await;
    }

    let abandon_later = {
        let abandon = abandon.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DRAIN_LIMIT).await;
            abandon.cancel();
        })
    };
    for p in pumps {
        let _ = p.await;
    }
    abandon_later.abort();

    outcome.exit_code = status.code();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        outcome.signal = status.signal();
    }
    Ok(outcome)
}

/// A program that cannot be started ends like it would in a shell: 127 when it does not exist,
/// 126 when it cannot be executed, with a one-line reason on stderr.
async fn spawn_failure(
    program: &str,
    e: std::io::Error,
    out: &mpsc::Sender<Chunk>,
    started: Instant,
) -> Result<ExecOutcome> {
    #[cfg(unix)]
    let not_executable_format = e.raw_os_error() == Some(libc::ENOEXEC);
    #[cfg(not(unix))]
    let not_executable_format = false;
    let (code, why) = match e.kind() {
        std::io::ErrorKind::NotFound => (127, "command not found"),
        std::io::ErrorKind::PermissionDenied => (126, "permission denied (not executable)"),
        _ if not_executable_format => (126, "cannot execute (not a program or script)"),
        _ => {
            return Err(Error::new(
                ErrorCode::SpawnFailed,
                format!("cannot start `{program}`: {e}"),
            ))
        }
    };
    let message = format!("stigmer: {program}: {why}\n");
    let _ = out
        .send(Chunk {
            stream: Stream::Stderr,
            data: Bytes::from(message),
        })
        .await;
    Ok(ExecOutcome {
        exit_code: Some(code),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        ..ExecOutcome::default()
    })
}

/// Copy one pipe to the channel until EOF. Stops early only when told to abandon a pipe that
/// a runaway process keeps open.
async fn pump(
    reader: Option<impl AsyncRead + Unpin>,
    stream: Stream,
    out: mpsc::Sender<Chunk>,
    abandon: CancellationToken,
) {
    let Some(mut reader) = reader else { return };
    let mut receiver_gone = false;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() < READ_CHUNK / 4 {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        let n = tokio::select! {
            biased;
            r = reader.read_buf(&mut buf) => r,
            _ = abandon.cancelled() => return,
        };
        match n {
            Ok(0) | Err(_) => return,
            // Keep draining when nobody listens, so the command never blocks on a full pipe.
            Ok(_) if receiver_gone => buf.clear(),
            Ok(n) => {
                // A small read is copied out, so it does not pin a whole read buffer.
                let data = if n <= SMALL_READ {
                    let d = Bytes::copy_from_slice(&buf);
                    buf.clear();
                    d
                } else {
                    buf.split().freeze()
                };
                receiver_gone = out.send(Chunk { stream, data }).await.is_err();
            }
        }
    }
}

/// Timeout or cancel: SIGTERM to the whole group, a short grace, then SIGKILL.
async fn terminate_tree(child: &mut tokio::process::Child, pgid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pgid) = pgid {
        signal_group(pgid, libc::SIGTERM);
        let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
        signal_group(pgid, libc::SIGKILL);
        return;
    }
    let _ = pgid;
    let _ = child.start_kill();
}

/// After the main process exited: terminate what is left of its process group.
async fn reap_group(pgid: u32) {
    #[cfg(unix)]
    {
        if !group_alive(pgid) {
            return;
        }
        signal_group(pgid, libc::SIGTERM);
        let until = Instant::now() + KILL_GRACE;
        while group_alive(pgid) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if group_alive(pgid) {
            signal_group(pgid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pgid;
}

#[cfg(unix)]
fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: killpg only sends a signal; a group that no longer exists gives ESRCH.
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}

/// Whether any process of the group still runs. Zombies do not count: they are dead and
/// only wait for their (new) parent to reap them.
#[cfg(unix)]
fn group_alive(pgid: u32) -> bool {
    // SAFETY: signal 0 checks for existence without sending anything.
    if unsafe { libc::killpg(pgid as libc::pid_t, 0) } != 0 {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        // Only reached when the group still has members: scan them.
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return true;
        };
        dir.flatten().any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            stat_fields(&stat).is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z')
        })
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// State and process group from a `/proc/PID/stat` line. The command name may contain spaces
/// and parentheses, so fields are counted from the last `)`.
#[cfg(target_os = "linux")]
fn stat_fields(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        command: CommandSpec,
        timeout: Option<Duration>,
    ) -> (ExecOutcome, Vec<u8>, Vec<u8>) {
        let (tx, mut rx) = mpsc::channel::<Chunk>(16);
        let req = ExecRequest {
            command,
            cwd: std::env::temp_dir(),
            env: BTreeMap::new(),
            unset_env: Vec::new(),
            timeout,
        };
        let collect = tokio::spawn(async move {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            while let Some(c) = rx.recv().await {
                match c.stream {
                    Stream::Stdout => o.extend_from_slice(&c.data),
                    Stream::Stderr => e.extend_from_slice(&c.data),
                }
            }
            (o, e)
        });
        let outcome = run_local(&req, None, tx, CancellationToken::new())
            .await
            .unwrap();
        let (o, e) = collect.await.unwrap();
        (outcome, o, e)
    }

    #[tokio::test]
    async fn streams_are_kept_apart() {
        let (r, o, e) = run(
            CommandSpec::Shell("echo out; echo err >&2; exit 3".into()),
            None,
        )
        .await;
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(o, b"out\n");
        assert_eq!(e, b"err\n");
    }

    #[tokio::test]
    async fn argv_is_not_split_or_quoted() {
        let arg = "it's a \"quoted\" $HOME `x` arg";
        let (r, o, _) = run(
            CommandSpec::Argv(vec!["printf".into(), "%s".into(), arg.into()]),
            None,
        )
        .await;
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(o, arg.as_bytes());
    }

    #[tokio::test]
    async fn missing_program_is_127() {
        let (r, _, e) = run(CommandSpec::Argv(vec!["no-such-program-xyz".into()]), None).await;
        assert_eq!(r.shell_exit_code(), 127);
        assert!(String::from_utf8_lossy(&e).contains("command not found"));
    }

    #[tokio::test]
    async fn timeout_is_124() {
        let (r, _, _) = run(
            CommandSpec::Shell("sleep 30".into()),
            Some(Duration::from_millis(200)),
        )
        .await;
        assert!(r.timed_out);
        assert_eq!(r.shell_exit_code(), 124);
    }

    #[test]
    fn timeouts_in_seconds() {
        assert_eq!(
            timeout_from_secs(1.5, "t").unwrap(),
            Duration::from_millis(1500)
        );
        // Found by the fuzzer: positive but under a nanosecond used to round to 0 and be refused.
        assert!(!timeout_from_secs(2.4e-49, "t").unwrap().is_zero());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_TIMEOUT_SECS + 1.0] {
            assert!(timeout_from_secs(bad, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut req = ExecRequest {
            command: CommandSpec::Argv(vec![]),
            cwd: std::env::temp_dir(),
            env: BTreeMap::new(),
            unset_env: Vec::new(),
            timeout: None,
        };
        assert_eq!(req.validate().unwrap_err().code, ErrorCode::InvalidRequest);
        req.command = CommandSpec::Shell("true".into());
        req.cwd = PathBuf::from("/no/such/dir");
        assert_eq!(req.validate().unwrap_err().code, ErrorCode::CwdNotFound);
        req.cwd = PathBuf::from("relative");
        assert_eq!(req.validate().unwrap_err().code, ErrorCode::InvalidRequest);
    }
}
