//! `stigmer-sandbox-helper serve`: read frames on stdin, run commands, write their output and
//! ends on stdout. Each command gets a session and process group of its own, default signal
//! dispositions, an empty stdin; its whole group is ended when it exits (leftovers), on
//! timeout and on cancel (TERM, a grace, KILL). As the container's init, once no run is left
//! every other process in the container is ended too: what left its group (`setsid`, a double
//! fork, a daemon) cannot leave the container, which serves the runs of one agent only.
//!
//! The helper is not dumpable: a command, even of the same uid, cannot open `/proc/1/fd/*`
//! (the stream to stigmer), read `/proc/1/environ` or `/proc/1/mem`, or ptrace it (that takes
//! CAP_SYS_PTRACE, which sandbox containers never have); and as PID 1 it only gets the signals
//! it handles.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use stigmer_sandbox_helper as wire;

/// How long a command's leftovers get between TERM and KILL once it has exited.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);
/// How long output is still read after a command's group is gone (an escaped process may hold
/// the pipes open): then the run ends anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Output pipes are enlarged to this, and read this much at once: fewer, larger frames.
const PIPE_SIZE: libc::c_int = 1 << 20;
const READ_SIZE: usize = 256 * 1024;

struct Run {
    pgid: i32,
    /// One message per output pipe at its end; taken by whoever finishes the run.
    pipes_done: Option<Receiver<()>>,
}

#[derive(Default)]
struct State {
    runs: HashMap<u32, Run>,
    by_pid: HashMap<i32, u32>,
}

struct Helper {
    out: Mutex<File>,
    state: Mutex<State>,
    /// Held while a command is spawned, so that the reaper never reaps a child whose exec
    /// failed before the standard library has read why (it waits for that child itself).
    spawning: Mutex<()>,
    /// Wakes the reaper when it has no children left to wait for.
    wake: Mutex<Sender<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Helper {
    fn send(&self, kind: u8, id: u32, payload: &[u8]) {
        let frame = wire::frame(kind, id, payload);
        if lock(&self.out).write_all(&frame).is_err() {
            // Nobody can hear us any more: the container ends with us.
            std::process::exit(0);
        }
    }
}

pub fn serve() {
    // SAFETY: plain syscalls on our own process. Not PID 1 (a test, an exec): orphans of our
    // commands still come to us to be reaped. Not dumpable: our fds and memory stay ours.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let (wake, woken) = channel();
    let helper = Arc::new(Helper {
        // SAFETY: fd 1 is ours for the process's life; nothing else writes to it.
        out: Mutex::new(unsafe { File::from_raw_fd(1) }),
        state: Mutex::default(),
        spawning: Mutex::new(()),
        wake: Mutex::new(wake),
    });
    let reaper = helper.clone();
    thread::spawn(move || reap(&reaper, woken));
    // SAFETY: as above, for fd 0.
    let mut input = unsafe { File::from_raw_fd(0) };
    let mut decoder = wire::Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some(f)) => handle(&helper, f),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("stigmer-sandbox-helper: the engine's stream is corrupt: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    // The engine hung up: end every command, then ourselves (and so the container).
    for run in lock(&helper.state).runs.values() {
        // SAFETY: signalling a process group of ours.
        unsafe { libc::kill(-run.pgid, libc::SIGKILL) };
    }
}

fn handle(helper: &Arc<Helper>, f: wire::Frame) {
    match f.kind {
        wire::START => start(helper, f.id, &f.payload),
        wire::KILL => {
            let grace = f
                .payload
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(1000);
            let pgid = lock(&helper.state).runs.get(&f.id).map(|r| r.pgid);
            if let Some(pgid) = pgid {
                thread::spawn(move || end_group(pgid, Duration::from_millis(grace.into())));
            }
        }
        wire::PING => {
            let mut me = format!("{} {}", wire::VERSION, std::env::consts::ARCH);
            // The folder stigmer mounted, as this container sees it: stigmer proves it is the
            // one it checked. Asked before any command runs, so no command can answer for us.
            // Each path of the payload (NUL-separated): the workspace, then what is mounted
            // read-only inside it.
            for path in f.payload.split(|b| *b == 0).filter(|p| !p.is_empty()) {
                me.push(' ');
                me.push_str(&identity(OsStr::from_bytes(path)));
            }
            helper.send(wire::PONG, f.id, me.as_bytes());
        }
        other => eprintln!("stigmer-sandbox-helper: unknown frame kind {other}"),
    }
}

fn start(helper: &Arc<Helper>, id: u32, payload: &[u8]) {
    let s = match wire::Start::decode(payload) {
        Ok(s) => s,
        Err(e) => return helper.send(wire::FAILED, id, e.as_bytes()),
    };
    let cwd = PathBuf::from(OsString::from_vec(s.cwd.clone()));
    if !cwd.is_dir() {
        let why = format!(
            "the working directory {} does not exist in the container",
            cwd.display()
        );
        return helper.send(wire::FAILED, id, why.as_bytes());
    }
    let program = OsStr::from_bytes(&s.argv[0]);
    let mut cmd = Command::new(program);
    cmd.args(s.argv[1..].iter().map(|a| OsStr::from_bytes(a)));
    for k in &s.unset {
        cmd.env_remove(OsStr::from_bytes(k));
    }
    for (k, v) in &s.env {
        cmd.env(OsStr::from_bytes(k), OsStr::from_bytes(v));
    }
    // The image's home may not exist or belong to another uid: programs that write there
    // (pip, npm, git) get one that works.
    let home = s
        .env
        .iter()
        .find(|(k, _)| k == b"HOME")
        .map(|(_, v)| OsString::from_vec(v.clone()))
        .or_else(|| std::env::var_os("HOME"))
        .unwrap_or_else(|| "/".into());
    if !writable(&home) {
        cmd.env("HOME", "/tmp");
    }
    cmd.current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            default_signals();
            Ok(())
        });
    }
    let spawning = lock(&helper.spawning);
    match cmd.spawn() {
        Ok(mut child) => {
            let pid = child.id() as i32;
            let (done, pipes_done) = channel();
            for fd in [
                child.stdout.as_ref().map(|p| p.as_raw_fd()),
                child.stderr.as_ref().map(|p| p.as_raw_fd()),
            ]
            .into_iter()
            .flatten()
            {
                // SAFETY: F_SETPIPE_SZ on a pipe we own; over the limit keeps the default.
                unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE) };
            }
            if let Some(r) = child.stdout.take() {
                pump(helper.clone(), r, wire::STDOUT, id, done.clone());
            }
            if let Some(r) = child.stderr.take() {
                pump(helper.clone(), r, wire::STDERR, id, done);
            }
            let mut st = lock(&helper.state);
            st.runs.insert(
                id,
                Run {
                    pgid: pid,
                    pipes_done: Some(pipes_done),
                },
            );
            st.by_pid.insert(pid, id);
            drop(st);
            drop(spawning);
            let _ = lock(&helper.wake).send(());
        }
        Err(e) => {
            drop(spawning);
            spawn_failed(helper, id, program, e);
        }
    }
}

/// `DEV INO` of `path` (not following a link), or `- -`.
fn identity(path: &OsStr) -> String {
    let Ok(c) = CString::new(path.as_bytes()) else {
        return "- -".into();
    };
    // SAFETY: a zeroed stat is valid for lstat to fill; a valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } != 0 {
        return "- -".into();
    }
    format!("{} {}", st.st_dev, st.st_ino)
}

/// In a child between fork and exec: every signal at its default, none blocked, as a shell
/// starts a command (whatever its parent ignored or blocked: `nohup`, a service manager).
///
/// # Safety
/// Only async-signal-safe calls: fit for `pre_exec`.
unsafe fn default_signals() {
    for sig in 1..libc::SIGRTMIN() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
}

fn writable(dir: &OsStr) -> bool {
    CString::new(dir.as_bytes())
        // SAFETY: a valid C string.
        .map(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
        .unwrap_or(false)
}

/// As a shell would say it (and as stigmer does locally): 127 when the program does not exist,
/// 126 when it cannot be executed; any other reason is a failure to start.
fn spawn_failed(helper: &Helper, id: u32, program: &OsStr, e: std::io::Error) {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => Some((127, "command not found")),
        std::io::ErrorKind::PermissionDenied => Some((126, "permission denied (not executable)")),
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => {
            Some((126, "cannot execute (not a program or script)"))
        }
        _ => None,
    };
    let program = program.to_string_lossy();
    match why {
        Some((code, why)) => {
            let line = format!("stigmer: {program}: {why}\n");
            helper.send(wire::STDERR, id, line.as_bytes());
            let exit = wire::Exit {
                code: Some(code),
                signal: None,
            };
            helper.send(wire::EXIT, id, &exit.encode());
        }
        None => {
            let why = format!("cannot start `{program}` in the container: {e}");
            helper.send(wire::FAILED, id, why.as_bytes());
        }
    }
}

fn pump(
    helper: Arc<Helper>,
    mut r: impl Read + Send + 'static,
    kind: u8,
    id: u32,
    done: Sender<()>,
) {
    thread::spawn(move || {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => helper.send(kind, id, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
}

/// Wait for every child: ours are reported, orphans that came to us are just reaped.
fn reap(helper: &Arc<Helper>, woken: Receiver<()>) {
    loop {
        // SAFETY: a zeroed siginfo_t is valid for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // Look without reaping, so that a spawn in progress keeps its child.
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                // No children: sleep until a command starts.
                if woken.recv().is_err() {
                    return;
                }
                while woken.try_recv().is_ok() {}
            }
            continue;
        }
        // SAFETY: waitid filled it for an exited child.
        let pid = unsafe { info.si_pid() };
        let spawning = lock(&helper.spawning);
        let mut status = 0;
        // SAFETY: reaping one child of ours.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        drop(spawning);
        if reaped != pid {
            continue;
        }
        let run = {
            let mut st = lock(&helper.state);
            let id = st.by_pid.remove(&pid);
            id.and_then(|id| {
                st.runs
                    .get_mut(&id)
                    .map(|r| (id, r.pgid, r.pipes_done.take()))
            })
        };
        if let Some((id, pgid, pipes_done)) = run {
            let helper = helper.clone();
            thread::spawn(move || finish(&helper, id, pgid, pipes_done, status));
        }
    }
}

fn finish(helper: &Helper, id: u32, pgid: i32, pipes_done: Option<Receiver<()>>, status: i32) {
    let exit = if libc::WIFSIGNALED(status) {
        wire::Exit {
            code: None,
            signal: Some(libc::WTERMSIG(status)),
        }
    } else {
        wire::Exit {
            code: Some(libc::WEXITSTATUS(status)),
            signal: None,
        }
    };
    if group_alive(pgid) {
        end_group(pgid, LEFTOVER_GRACE);
    }
    end_strays(helper, id);
    if let Some(done) = pipes_done {
        let until = Instant::now() + DRAIN_LIMIT;
        for _ in 0..2 {
            let left = until.saturating_duration_since(Instant::now());
            if done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
    lock(&helper.state).runs.remove(&id);
    helper.send(wire::EXIT, id, &exit.encode());
}

/// As the container's init with no other run going: end every other process in the container,
/// whatever group or session it made for itself. Not as PID 1 (a test), `kill(-1)` would reach
/// the user's own processes: nothing is done.
fn end_strays(helper: &Helper, id: u32) {
    // SAFETY: getpid cannot fail.
    if unsafe { libc::getpid() } != 1 {
        return;
    }
    if lock(&helper.state).runs.keys().any(|other| *other != id) {
        return;
    }
    // SAFETY: kill(-1) from PID 1 reaches every process of the container but us.
    let any = || unsafe { libc::kill(-1, 0) == 0 };
    if !any() {
        return;
    }
    unsafe { libc::kill(-1, libc::SIGTERM) };
    let until = Instant::now() + LEFTOVER_GRACE;
    while any() && Instant::now() < until {
        thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: as above. Zombies still count for kill(0) until the reaper takes them.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// TERM the group, give it `grace`, then KILL what is left.
fn end_group(pgid: i32, grace: Duration) {
    // SAFETY: signalling a process group of ours.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let until = Instant::now() + grace;
    while group_alive(pgid) && Instant::now() < until {
        thread::sleep(Duration::from_millis(5));
    }
    if group_alive(pgid) {
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}
