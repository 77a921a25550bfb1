//! Whether this system can confine a protected run, and if not, which feature is missing (said
//! to the window and the agent; a run is then refused, never run bare). Checked by doing it:
//! bubblewrap must start a command with every namespace a run uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What the system offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// bubblewrap works here; `scopes`: Landlock can keep abstract sockets and signals inside a
    /// run (ABI 6, Linux 6.12), which an open network needs.
    Ready { bwrap: PathBuf, scopes: bool },
    /// Why not, in words a person can act on.
    Missing(String),
}

/// A missing feature is looked for again after this long (the user may install it).
const RECHECK: Duration = Duration::from_secs(30);

static LAST: Mutex<Option<(Instant, Support)>> = Mutex::new(None);

/// This system's support, checked once (and again after [`RECHECK`] while missing).
pub fn support() -> Support {
    let mut last = LAST.lock();
    if let Some((at, s)) = last.as_ref() {
        if matches!(s, Support::Ready { .. }) || at.elapsed() < RECHECK {
            return s.clone();
        }
    }
    let s = check();
    *last = Some((Instant::now(), s.clone()));
    s
}

fn check() -> Support {
    let Ok(bwrap) = which::which("bwrap") else {
        return Support::Missing(
            "bubblewrap is not installed: install the `bubblewrap` package (apt install \
             bubblewrap), then choose this tier again"
                .into(),
        );
    };
    let out = std::process::Command::new(&bwrap)
        .args([
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-user",
            "--disable-userns",
            "--cap-drop",
            "ALL",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--",
            "true",
        ])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Support::Ready {
            bwrap,
            scopes: landlock_abi() >= 6,
        },
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            let why = if err.contains("disable-userns") {
                "this bubblewrap is too old (0.8 or later is needed, to keep commands from \
                 making namespaces of their own): update the `bubblewrap` package"
            } else if err.contains("uid map") || err.contains("Operation not permitted") {
                "this system does not let programs make user namespaces (on Ubuntu 24.04 \
                 AppArmor refuses them unless bubblewrap has a profile)"
            } else {
                "bubblewrap cannot make the namespaces a protected run needs"
            };
            Support::Missing(format!("{why}: {err}"))
        }
        Err(e) => Support::Missing(format!("bubblewrap cannot start: {e}")),
    }
}

/// The kernel's Landlock ABI (0: none).
pub fn landlock_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only returns
    // the ABI version (or -1); it creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    v.max(0)
}
