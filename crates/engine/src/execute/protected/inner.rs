//! The last step inside a protected run's namespaces, before the command: `stigmer
//! protected-exec [--check PATH DEV:INO]... [--scope] [--proxy ADDR SOCKET] [--status-fd N] --
//! PROGRAM ARGS...`.
//!
//! - Every descriptor this process inherited (beyond stdin, stdout, stderr and the status
//!   descriptor) is closed: one the server was started with must not become a way out, not
//!   even through `/proc/PID/fd` of this process, which is also made non-dumpable (its
//!   `/proc` entries out of the command's reach).
//! - The folder mounted must be the one admission held (a check on a path is no check:
//!   bubblewrap mounts by path).
//! - Landlock's scopes go on when asked (abstract sockets and signals stay inside the run).
//! - With the allowlist, the proxy's door (a Unix socket bound in) is offered at ADDR on the
//!   run's own loopback, as the sandbox's helper does in a container.
//! - The command runs as this process's child; this process reports how it ended (its exit
//!   code, or the signal that ended it: bubblewrap can only say 128+N) on the status
//!   descriptor, then ends the same way.
//!
//! Any failure before the command runs nothing.

use std::ffi::OsString;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The subcommand's name.
pub const SUBCOMMAND: &str = "protected-exec";

/// What ends the run when a check fails (nothing ran).
const REFUSED: i32 = 125;

/// How the command ended, as written on the status descriptor: `exit N` or `signal N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exit(i32),
    Signal(i32),
}

impl Ended {
    /// The line written on the status descriptor.
    pub fn line(self) -> String {
        match self {
            Ended::Exit(n) => format!("exit {n}\n"),
            Ended::Signal(n) => format!("signal {n}\n"),
        }
    }

    /// Read back (anything else: `None`, and bubblewrap's own exit status stands).
    pub fn parse(text: &str) -> Option<Ended> {
        let (kind, n) = text.trim_end_matches('\n').split_once(' ')?;
        let n: i32 = n.parse().ok()?;
        match kind {
            "exit" if (0..=255).contains(&n) => Some(Ended::Exit(n)),
            "signal" if (1..=64).contains(&n) => Some(Ended::Signal(n)),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Args {
    scope: bool,
    proxy: Option<(String, PathBuf)>,
    status_fd: Option<RawFd>,
    argv: Vec<OsString>,
}

/// Run as `stigmer protected-exec ...` (the arguments after the subcommand); returns the exit
/// code: the command's, or 125 when a check refused it.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(why) => {
            close_inherited(None);
            return refuse(&why);
        }
    };
    // Nothing inherited beyond the three streams and the status descriptor stays open, and
    // what stays is not the command's (close-on-exec, and this process not dumpable).
    close_inherited(args.status_fd);
    if let Some(fd) = args.status_fd {
        // SAFETY: sets a flag on a descriptor of this process.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    #[cfg(target_os = "linux")]
    // SAFETY: changes this process's own dumpable flag (the command's exec resets its own).
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let Some(program) = args.argv.first() else {
        return refuse("no program to run");
    };
    // Before the command exists, so no command can take the address.
    let listener = match &args.proxy {
        Some((addr, _)) => match TcpListener::bind(addr) {
            Ok(l) => Some(l),
            Err(e) => return refuse(&format!("the network proxy cannot be offered: {e}")),
        },
        None => None,
    };
    if args.scope {
        if let Err(e) = restrict_scopes() {
            return refuse(&format!("Landlock's scopes could not be applied: {e}"));
        }
    }

    // SAFETY: this process has one thread (nothing has started another), so the child may run
    // any code before it execs.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return refuse(&format!(
            "cannot start the command: {}",
            std::io::Error::last_os_error()
        ));
    }
    if pid == 0 {
        let e = std::process::Command::new(program)
            .args(&args.argv[1..])
            .exec();
        // Like a shell: 127 when the program does not exist, 126 when it cannot be run.
        let name = program.to_string_lossy();
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            eprintln!("stigmer: {name}: command not found");
            127
        } else {
            eprintln!("stigmer: {name}: {e}");
            126
        };
        // SAFETY: ends the child at once (no destructors of the parent's state run twice).
        unsafe { libc::_exit(code) };
    }
    // A client going away must not end the run (Rust left SIGPIPE's default for commands).
    // SAFETY: changes this process's own disposition only; the child has its own.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if let (Some(listener), Some((_, door))) = (listener, args.proxy) {
        stigmer_sandbox_helper::proxy::carry_all(listener, door);
    }
    let ended = wait(pid);
    if let Some(fd) = args.status_fd {
        // SAFETY: the descriptor was given to this process for this line; it is closed after.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let _ = f.write_all(ended.line().as_bytes());
    }
    match ended {
        Ended::Exit(n) => n,
        Ended::Signal(n) => 128 + n,
    }
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    const USAGE: &str = "usage: stigmer protected-exec [--check PATH DEV:INO]... [--scope] \
                         [--proxy ADDR SOCKET] [--status-fd N] -- PROGRAM [ARGS]...";
    let mut out = Args::default();
    let mut args = args.into_iter();
    loop {
        match args.next().as_ref().and_then(|a| a.to_str()) {
            Some("--check") => {
                let (Some(path), Some(id)) = (args.next(), args.next()) else {
                    return Err("--check needs a path and DEV:INO".into());
                };
                let now = std::fs::symlink_metadata(&path)
                    .map(|m| format!("{}:{}", m.dev(), m.ino()))
                    .unwrap_or_default();
                if now != id.to_string_lossy() {
                    return Err(format!(
                        "{} changed before the command started (moved, or replaced by a link)",
                        path.to_string_lossy()
                    ));
                }
            }
            Some("--scope") => out.scope = true,
            Some("--proxy") => {
                let (Some(addr), Some(door)) = (args.next(), args.next()) else {
                    return Err("--proxy needs an address and a socket".into());
                };
                out.proxy = Some((addr.to_string_lossy().into_owned(), door.into()));
            }
            Some("--status-fd") => {
                let fd = args.next().and_then(|a| a.to_str()?.parse::<RawFd>().ok());
                match fd {
                    Some(fd) if fd > 2 => out.status_fd = Some(fd),
                    _ => return Err("--status-fd needs a descriptor above 2".into()),
                }
            }
            Some("--") => break,
            _ => return Err(USAGE.into()),
        }
    }
    out.argv = args.collect();
    Ok(out)
}

/// Wait for the command (interrupted waits are retried).
fn wait(pid: libc::pid_t) -> Ended {
    let mut status = 0;
    loop {
        // SAFETY: waits for this process's own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Ended::Exit(REFUSED);
        }
    }
    if libc::WIFSIGNALED(status) {
        Ended::Signal(libc::WTERMSIG(status))
    } else {
        Ended::Exit(libc::WEXITSTATUS(status))
    }
}

/// Close every descriptor above 2 but `keep`.
fn close_inherited(keep: Option<RawFd>) {
    let ranges: Vec<(u32, u32)> = match keep {
        Some(k) if k > 3 => vec![(3, k as u32 - 1), (k as u32 + 1, u32::MAX)],
        Some(k) => vec![(k as u32 + 1, u32::MAX)],
        None => vec![(3, u32::MAX)],
    };
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range closes descriptors of this process only.
        let all_closed = ranges
            .iter()
            .all(|(a, b)| unsafe { libc::syscall(libc::SYS_close_range, *a, *b, 0u32) } == 0);
        if all_closed {
            return;
        }
    }
    // Kernels before 5.11, and macOS: one by one.
    let list = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    let fds: Vec<RawFd> = std::fs::read_dir(list)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if ranges.iter().any(|(a, b)| (*a..=*b).contains(&(fd as u32))) {
            // SAFETY: closes a descriptor of this process (the listing's own fails harmlessly).
            unsafe { libc::close(fd) };
        }
    }
}

fn refuse(why: &str) -> i32 {
    eprintln!("stigmer: protected run refused, nothing ran: {why}");
    REFUSED
}

/// Abstract Unix sockets (the display's, a session's) and signals outside this run's Landlock
/// domain are refused, whatever the network: all or nothing (never partly).
#[cfg(not(target_os = "linux"))]
fn restrict_scopes() -> Result<(), String> {
    Err("Landlock is Linux's".into())
}

#[cfg(target_os = "linux")]
fn restrict_scopes() -> Result<(), String> {
    use landlock::{CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetStatus, Scope};
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("only {:?}", status.ruleset));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Ended;

    #[test]
    fn the_status_line_reads_back_and_nothing_else_does() {
        for e in [Ended::Exit(0), Ended::Exit(255), Ended::Signal(9)] {
            assert_eq!(Ended::parse(&e.line()), Some(e));
        }
        for bad in [
            "",
            "exit",
            "exit 256",
            "signal 0",
            "signal 65",
            "quit 1",
            "exit -1",
        ] {
            assert_eq!(Ended::parse(bad), None, "{bad}");
        }
    }
}
