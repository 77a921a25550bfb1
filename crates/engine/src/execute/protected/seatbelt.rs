//! The protected tier on macOS: a Seatbelt profile (`sandbox-exec -p`) made from the same
//! [`Plan`] as bubblewrap's arguments on Linux. Pure: unit-tested on every system.
//!
//! The rules come in the order bubblewrap mounts, each more specific than the one before, so
//! the profile means the same whether Seatbelt lets the later or the more specific rule win:
//! read everything; hide (no read, no write) the secrets outside the workspace; write in the
//! workspace and the run's private temporary folder; keep the host-run files read-only; hide
//! what lies inside the workspace. Host-run files are guarded by path (Seatbelt checks the
//! path at each access, so there is no mount to move): at the workspace and at each
//! repository found, and the repositories themselves, their `.git` and the folders between
//! them and the workspace cannot be moved or removed (moved away, a copy could take their
//! place). The user's other terminals cannot be read or written. Everything else is denied by default: other processes
//! (signals, inspection), the keychain and other system services, the session's and engines'
//! Unix sockets, and the network unless it is open.

use std::path::{Path, PathBuf};

use super::plan::Plan;
use crate::execute::container::hostrun::{GIT_NAMES, NAMES};

/// Always there: processes of the run itself, and what a shell, git, Python, Node and
/// compilers need from the system.
const BASE: &str = r#"(version 1)
(deny default)
(allow process-exec process-fork)
(allow signal (target same-sandbox))
(allow process-info* (target same-sandbox))
(allow user-preference-read)
(allow mach-host*)
(allow ipc-posix-sem)
(allow ipc-posix-shm-read* ipc-posix-shm-write-data ipc-posix-shm-write-create)
(allow mach-lookup
  (global-name "com.apple.system.opendirectoryd.libinfo")
  (global-name "com.apple.system.logger")
  (global-name "com.apple.logd"))
(allow sysctl-read
  (sysctl-name-prefix "hw.")
  (sysctl-name "kern.argmax")
  (sysctl-name "kern.hostname")
  (sysctl-name "kern.maxfilesperproc")
  (sysctl-name "kern.maxproc")
  (sysctl-name "kern.osproductversion")
  (sysctl-name "kern.osrelease")
  (sysctl-name "kern.ostype")
  (sysctl-name "kern.osvariant_status")
  (sysctl-name "kern.osversion")
  (sysctl-name "kern.secure_kernel")
  (sysctl-name "kern.usrstack64")
  (sysctl-name "kern.version")
  (sysctl-name "machdep.cpu.brand_string")
  (sysctl-name "sysctl.proc_cputype")
  (sysctl-name "vm.loadavg"))
(allow pseudo-tty)
(allow file-read* file-write* file-ioctl
  (literal "/dev/ptmx")
  (literal "/dev/tty"))
(allow file-write-data
  (literal "/dev/null")
  (literal "/dev/zero"))
(allow file-read*)
(deny file-read* file-write* (regex #"^/dev/ttys[0-9]+$"))
"#;

/// With the network open: IP only (never a Unix socket by path: the engines', the agent's),
/// names resolved and certificates checked by the system's services.
const NETWORK_OPEN: &str = r#"(allow network-outbound (remote ip))
(allow network-inbound (local ip))
(allow network-bind (local ip))
(allow system-socket)
(allow mach-lookup
  (global-name "com.apple.dnssd.service")
  (global-name "com.apple.mDNSResponder")
  (global-name "com.apple.trustd.agent")
  (global-name "com.apple.SystemConfiguration.configd"))
"#;

/// The profile for a run of `plan`, its private temporary folder `tmp`. `real` gives a path as
/// the kernel sees it (links followed: /tmp is /private/tmp); a path that does not exist
/// stands as given. None when a path cannot be written into a profile (not UTF-8).
pub fn profile(plan: &Plan, tmp: &Path, real: impl Fn(&Path) -> Option<PathBuf>) -> Option<String> {
    let real = |p: &Path| real(p).unwrap_or_else(|| p.to_path_buf());
    let workspace = real(&plan.workspace);
    let (inside, outside): (Vec<PathBuf>, Vec<PathBuf>) = plan
        .hidden_paths()
        .iter()
        .map(|p| real(p))
        .partition(|p| p.starts_with(&workspace));
    let mut out = String::from(BASE);
    rule(&mut out, "(deny file-read* file-write*", &outside)?;
    // Read back too: the scratch workspace lies inside Stigmer's hidden folders.
    rule(
        &mut out,
        "(allow file-read* file-write*",
        &[workspace.clone(), real(tmp)],
    )?;
    let mut read_only: Vec<PathBuf> = plan
        .guards
        .iter()
        .filter(|g| g.read_only)
        .map(|g| real(&g.path))
        .collect();
    let mut roots: Vec<PathBuf> = vec![workspace.clone()];
    roots.extend(plan.repos.iter().map(|r| real(r)));
    roots.sort();
    roots.dedup();
    let mut unmovable: Vec<PathBuf> = Vec::new();
    for r in &roots {
        read_only.extend(NAMES.iter().map(|n| r.join(n)));
        read_only.extend(GIT_NAMES.iter().map(|n| r.join(".git").join(n)));
        // The repository, its `.git`, and every folder from the workspace down to it.
        unmovable.push(r.join(".git"));
        let mut dir = r.clone();
        while dir.starts_with(&workspace) && dir != workspace {
            unmovable.push(dir.clone());
            if !dir.pop() {
                break;
            }
        }
    }
    rule(&mut out, "(deny file-write*", &read_only)?;
    literal_rule(&mut out, "(deny file-write-unlink", &unmovable)?;
    rule(&mut out, "(deny file-read* file-write*", &inside)?;
    if plan.network_open {
        out.push_str(NETWORK_OPEN);
    }
    Some(out)
}

/// `(head (subpath "...") ...)`: the paths and what lies under them; nothing when there are no
/// paths; None when one is not UTF-8.
fn rule(out: &mut String, head: &str, paths: &[PathBuf]) -> Option<()> {
    filter_rule(out, head, "subpath", paths)
}

/// `(head (literal "...") ...)`: the paths themselves, not what lies under them.
fn literal_rule(out: &mut String, head: &str, paths: &[PathBuf]) -> Option<()> {
    filter_rule(out, head, "literal", paths)
}

fn filter_rule(out: &mut String, head: &str, filter: &str, paths: &[PathBuf]) -> Option<()> {
    if paths.is_empty() {
        return Some(());
    }
    out.push_str(head);
    for p in paths {
        out.push_str(&format!("\n  ({filter} {})", quoted(p.to_str()?)));
    }
    out.push_str(")\n");
    Some(())
}

/// A string literal of the profile language: a path holding `"` or `\` stays one path.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            '\n' => q.push_str("\\n"),
            _ => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::super::plan::Guard;
    use super::*;

    fn plan() -> Plan {
        Plan {
            home: "/Users/u".into(),
            runtime_dir: None,
            own: vec!["/Users/u/Library/Application Support/stigmer".into()],
            hidden: vec!["/Users/u/proj/.env".into()],
            sockets: vec![],
            workspace: "/Users/u/proj".into(),
            guards: vec![
                Guard {
                    path: "/Users/u/proj/.git/hooks".into(),
                    read_only: true,
                },
                Guard {
                    path: "/Users/u/proj/.git".into(),
                    read_only: false,
                },
            ],
            cwd: "/Users/u/proj".into(),
            network_open: false,
            proxy_door: None,
            repos: vec!["/Users/u/proj/lib/sub".into()],
        }
    }

    fn at(p: &str, what: &str) -> usize {
        p.find(what)
            .unwrap_or_else(|| panic!("{what} missing from\n{p}"))
    }

    #[test]
    fn reads_everything_but_secrets_and_writes_only_the_workspace_and_its_tmp() {
        let p = profile(&plan(), Path::new("/tmp/run-1"), |p| {
            // macOS's /tmp is a link.
            p.strip_prefix("/tmp")
                .ok()
                .map(|rest| Path::new("/private/tmp").join(rest))
        })
        .unwrap();
        assert!(p.starts_with("(version 1)\n(deny default)\n"), "{p}");
        let read_all = at(&p, "(allow file-read*)\n");
        let secrets = at(&p, "(deny file-read* file-write*\n");
        assert!(secrets < at(&p, "(subpath \"/Users/u/.ssh\")"));
        for s in [
            ".aws",
            ".gnupg",
            ".netrc",
            "Library/Application Support/stigmer",
        ] {
            at(&p, &format!("(subpath \"/Users/u/{s}\")"));
        }
        let write = at(
            &p,
            "(allow file-read* file-write*\n  (subpath \"/Users/u/proj\")\n  (subpath \"/private/tmp/run-1\"))",
        );
        let guard = at(
            &p,
            "(deny file-write*\n  (subpath \"/Users/u/proj/.git/hooks\")",
        );
        // Host-run files at the workspace and at each repository, whatever the scan found.
        for path in [
            "/Users/u/proj/.envrc",
            "/Users/u/proj/.git/config",
            "/Users/u/proj/lib/sub/.git/hooks",
            "/Users/u/proj/lib/sub/.vscode",
        ] {
            assert!(
                at(&p, &format!("(subpath \"{path}\")")) > guard - 1,
                "{path}"
            );
        }
        // Repositories and the folders down to them cannot be moved away.
        let unmovable = at(&p, "(deny file-write-unlink\n");
        for path in [
            "/Users/u/proj/lib/sub",
            "/Users/u/proj/lib",
            "/Users/u/proj/.git",
        ] {
            assert!(
                at(&p, &format!("(literal \"{path}\")")) > unmovable,
                "{path}"
            );
        }
        assert!(
            !p.contains("(literal \"/Users/u/proj\")"),
            "the workspace itself: {p}"
        );
        let inside = at(
            &p,
            "(deny file-read* file-write*\n  (subpath \"/Users/u/proj/.env\"))",
        );
        // Each rule more specific than, and after, the one it narrows.
        assert!(read_all < secrets && secrets < write && write < guard && unmovable < inside);
        // Other terminals: not even readable.
        at(
            &p,
            "(deny file-read* file-write* (regex #\"^/dev/ttys[0-9]+$\"))",
        );
        // A guard that keeps a folder in place is not made read-only.
        assert!(!p.contains("(subpath \"/Users/u/proj/.git\"))"), "{p}");
        // No network, no Unix sockets, no other process, no keychain.
        for absent in ["network", "(target others)", "securityd", "(allow default)"] {
            assert!(!p.contains(absent), "{absent} in\n{p}");
        }
    }

    #[test]
    fn an_open_network_is_ip_only() {
        let p = profile(
            &Plan {
                network_open: true,
                ..plan()
            },
            Path::new("/tmp/r"),
            |_| None,
        )
        .unwrap();
        at(&p, "(allow network-outbound (remote ip))");
        assert!(
            !p.contains("unix-socket") && !p.contains("(allow network*)"),
            "{p}"
        );
    }

    #[test]
    fn a_path_cannot_add_rules_of_its_own() {
        let evil = "/Users/u/proj\")) (allow default) (x \"";
        let p = profile(
            &Plan {
                workspace: evil.into(),
                ..plan()
            },
            Path::new("/tmp/r"),
            |_| None,
        )
        .unwrap();
        at(
            &p,
            "(subpath \"/Users/u/proj\\\")) (allow default) (x \\\"\")",
        );
        // Balanced: every parenthesis outside string literals closes.
        let (mut depth, mut in_str, mut escaped) = (0i32, false, false);
        for c in p.chars() {
            match (in_str, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_str = false,
                (false, _, '"') => in_str = true,
                (false, _, '(') => depth += 1,
                (false, _, ')') => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{p}");
        }
        assert_eq!(depth, 0, "{p}");
    }

    #[cfg(unix)]
    #[test]
    fn a_path_that_is_not_utf8_makes_no_profile() {
        use std::os::unix::ffi::OsStrExt;
        let odd = std::ffi::OsStr::from_bytes(b"/Users/u/caf\xe9");
        let p = Plan {
            workspace: odd.into(),
            ..plan()
        };
        assert_eq!(profile(&p, Path::new("/tmp/r"), |_| None), None);
    }
}
