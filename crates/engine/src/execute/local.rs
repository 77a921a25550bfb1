//! Running a command on this machine (local mode): its own process group, streamed output,
//! timeout and cancel of the whole tree.
//!
//! The contract, shared with sandbox mode: a command is an argv or a shell string; it gets a
//! working directory, extra environment and an optional timeout; stdin is empty; stdout and
//! stderr are streamed apart, byte for byte, as they come. The command runs in its own process
//! group so a timeout or a cancel kills the whole tree, and background children it leaves
//! behind are terminated when it exits instead of keeping the run open.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
#[cfg(windows)]
use process_wrap::tokio::JobObject;
#[cfg(unix)]
use process_wrap::tokio::ProcessGroup;
use process_wrap::tokio::{ChildWrapper, CommandWrap};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[cfg(unix)]
use super::request::KILL_GRACE;
use super::request::{Chunk, ExecRequest};
use super::{held, BoxFuture, Claim, Executor, Place};
use crate::error::{Error, ErrorCode, Result};
use crate::settings::Mode;
use crate::tools::user_path;
use stigmer_protocol::run::{ExecOutcome, Stream};

/// How long output is still read after the command and its group are gone. Only a process
/// that escaped the group (setsid) and still holds the pipe can make reading take this long.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 256 * 1024;
const SMALL_READ: usize = 16 * 1024;
/// Output pipes are enlarged to this (Linux), so a fast writer wakes us less often.
#[cfg(target_os = "linux")]
const PIPE_SIZE: libc::c_int = 1024 * 1024;

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

/// Let the commands this process starts begin as from a shell, whatever it was started under
/// (`nohup` ignores SIGHUP, a service manager may block signals): each signal it inherited as
/// ignored gets a handler that does nothing instead (this process still ignores it; a handler,
/// unlike "ignore", is reset to the default when a command starts), and none stays blocked.
/// Done once at start, so that commands are spawned the fast way, with no code between fork
/// and exec. SIGPIPE is left to the standard library, which resets it for children itself.
#[cfg(unix)]
pub fn default_signals_for_commands() {
    extern "C" fn nothing(_: libc::c_int) {}
    #[cfg(target_os = "linux")]
    let last = libc::SIGRTMIN();
    #[cfg(not(target_os = "linux"))]
    let last = 32;
    // SAFETY: reading and setting this process's own dispositions and mask at start.
    unsafe {
        for sig in 1..last {
            if matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE) {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction == libc::SIG_IGN {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
                act.sa_flags = libc::SA_RESTART;
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

#[cfg(not(unix))]
pub fn default_signals_for_commands() {}

/// This machine: commands run directly, with the user's tools and rights.
pub struct Local;

impl Executor for Local {
    fn mode(&self) -> Mode {
        Mode::Local
    }

    /// Any folder: the working directory itself, links resolved on Linux, where it is held
    /// open (a missing one is the request's validation's to report).
    fn admit<'a>(
        &'a self,
        req: &'a ExecRequest,
        _client: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Claim>> {
        Box::pin(async move {
            // Elsewhere the path as given: Windows' canonical form (`\\?\UNC\...`) is not a
            // folder every shell can start in.
            #[cfg(target_os = "linux")]
            let folder = std::fs::canonicalize(&req.cwd).unwrap_or_else(|_| req.cwd.clone());
            #[cfg(not(target_os = "linux"))]
            let folder = req.cwd.clone();
            Ok(Claim {
                cwd: folder.clone(),
                folder,
            })
        })
    }

    fn run(
        &self,
        req: ExecRequest,
        place: Place,
        out: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ExecOutcome>> {
        Box::pin(async move {
            let path = user_path_off_thread().await;
            // The folder admitted, where it was: a path that names another folder now (moved
            // elsewhere, removed, swapped for a link) runs nothing, as in a sandbox. Started
            // through the handle, so a swap after this check changes nothing either.
            if !place.held.is_at(&place.cwd) {
                return Err(held::changed(&place.cwd));
            }
            run_local(&req, &place.held.entry(), path, out, cancel).await
        })
    }

    /// The home folder, like a new terminal.
    fn default_cwd(&self) -> PathBuf {
        crate::paths::user_home()
    }

    fn confinement(&self) -> String {
        "local mode: commands run directly on the user's computer, with no confinement: they \
         can read and change whatever the user can"
            .into()
    }

    fn allowed_folders(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// The user's PATH for commands; the first lookup may ask the login shell, so it is made off
/// the async threads.
pub async fn user_path_off_thread() -> Option<&'static OsStr> {
    tokio::task::spawn_blocking(user_path)
        .await
        .ok()
        .map(|(p, _)| p.as_os_str())
}

/// Run `req` on this machine, starting in `dir`. Output goes to `out` as it comes (a full
/// channel slows the command down rather than dropping bytes). `path` replaces PATH when given
/// (the user's login shell PATH for apps started from a desktop launcher).
pub async fn run_local(
    req: &ExecRequest,
    dir: &std::path::Path,
    path: Option<&OsStr>,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
) -> Result<ExecOutcome> {
    run_local_prepared(req, dir, path, out, cancel, |_| ()).await
}

/// [`run_local`], with `prepare` given the command before it starts (the protected tier hands
/// its launcher a status descriptor).
pub async fn run_local_prepared(
    req: &ExecRequest,
    dir: &std::path::Path,
    path: Option<&OsStr>,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
    prepare: impl FnOnce(&mut tokio::process::Command),
) -> Result<ExecOutcome> {
    // Validated once, by the admission pipeline.
    let argv = req.command.to_argv();
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(dir)
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
    prepare(&mut cmd);
    // The whole tree in one group (Unix) or job object (Windows), so it ends as one.
    let mut wrap = CommandWrap::from(cmd);
    #[cfg(unix)]
    wrap.wrap(ProcessGroup::leader());
    #[cfg(windows)]
    wrap.wrap(JobObject);

    let started = Instant::now();
    let mut child = match wrap.spawn() {
        Ok(child) => child,
        Err(e) => return spawn_failure(&argv[0].to_string_lossy(), e, &out, started).await,
    };
    let pgid = child.id();
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        for fd in [
            child.stdout().as_ref().map(|p| p.as_raw_fd()),
            child.stderr().as_ref().map(|p| p.as_raw_fd()),
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
            child.stdout().take(),
            Stream::Stdout,
            out.clone(),
            abandon.clone(),
        )),
        tokio::spawn(pump(
            child.stderr().take(),
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
    // The main process only: what it leaves behind is dealt with below.
    let status = tokio::select! {
        status = child.inner_mut().wait() => Some(status),
        _ = deadline => { outcome.timed_out = true; None }
        _ = cancel.cancelled() => { outcome.cancelled = true; None }
    };
    let status = match status {
        Some(status) => status,
        None => {
            terminate_tree(child.as_mut()).await;
            child.inner_mut().wait().await
        }
    }
    .map_err(|e| Error::internal(format!("waiting for the command failed: {e}")))?;
    outcome.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Whatever the command left running in its group goes too.
    reap_tree(child.as_mut(), pgid).await;

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

/// Timeout or cancel: SIGTERM to the whole group, a short grace, then SIGKILL (Windows has no
/// polite signal: the job is terminated).
async fn terminate_tree(child: &mut dyn ChildWrapper) {
    #[cfg(unix)]
    if child.signal(libc::SIGTERM).is_ok() {
        let _ = tokio::time::timeout(KILL_GRACE, child.inner_mut().wait()).await;
    }
    let _ = child.start_kill();
}

/// After the main process exited: terminate what is left of its tree.
async fn reap_tree(child: &mut dyn ChildWrapper, pgid: Option<u32>) {
    #[cfg(unix)]
    {
        let Some(pgid) = pgid else { return };
        if !group_alive(pgid) {
            return;
        }
        let _ = child.signal(libc::SIGTERM);
        let until = Instant::now() + KILL_GRACE;
        while group_alive(pgid) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if group_alive(pgid) {
            let _ = child.start_kill();
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pgid;
        let _ = child.start_kill();
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
    use crate::execute::{timeout_from_secs, CommandSpec, MAX_TIMEOUT_SECS};
    use std::collections::BTreeMap;

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
        let outcome = run_local(&req, &req.cwd, None, tx, CancellationToken::new())
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
