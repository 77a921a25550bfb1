//! A request made into its confined form: the system's launcher (bubblewrap on Linux,
//! `sandbox-exec` on macOS) with the run's [`Plan`], then `stigmer protected-exec` with the
//! checks it makes inside, then the command. Also the status pipe the launcher inside reports
//! the command's end on.

use std::ffi::OsString;
use std::path::PathBuf;

use super::plan::{self, Plan};
use super::{inner, Protected, Ready};
use crate::error::{Error, ErrorCode, Result};
use crate::execute::container::hostrun::Guards;
use crate::execute::{CommandSpec, ExecOutcome, ExecRequest, Place};
use crate::network::NetworkPolicy;

/// The descriptor the launcher inside reports the command's end on.
const STATUS_FD: i32 = 3;

/// A request ready to run confined, and what must outlive its run.
pub(super) struct Confined {
    pub req: ExecRequest,
    pub guards: Guards,
    /// The run's private temporary folder where the system has no private /tmp (macOS);
    /// removed when dropped.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub tmp: Option<RunTmp>,
}

/// A run's private temporary folder, removed with everything in it when dropped.
pub(super) struct RunTmp(PathBuf);

impl Drop for RunTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Protected {
    /// The request as the launcher runs it: the plan, the checks made inside before the
    /// command, the credential variables dropped, caches in the private temporary folder.
    pub(super) async fn confine(
        &self,
        mut req: ExecRequest,
        place: &Place,
        ready: Ready,
        proxy_door: Option<PathBuf>,
    ) -> Result<Confined> {
        let root = place.held.path.clone();
        // The folder admitted must still be where it was (as in a sandbox).
        if !place.held.is_at(&root) {
            return Err(crate::execute::held::changed(&root));
        }
        let (held, writable) = (place.held.clone(), self.spec.writable.clone());
        let scan_root = root.clone();
        // The folders an earlier run here left: looked at again only where they changed.
        let seen = folders_key(place).and_then(|k| self.sandbox.protected_folders.take(&k));
        let guards = tokio::task::spawn_blocking(move || {
            crate::execute::container::hostrun::plan_from(&scan_root, &held, &writable, seen)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
        if let Some(link) = guards.unguarded.first() {
            return Err(Error::new(
                ErrorCode::WorkspaceNotAllowed,
                format!(
                    "{} is a link: a protected run cannot keep it read-only, so nothing ran. \
                     Replace the link with the folder or file itself, or use a sandbox",
                    link.display()
                ),
            ));
        }
        let mut checks: Vec<(PathBuf, crate::execute::held::Identity)> = Vec::new();
        checks.extend(place.held.identity.map(|i| (root.clone(), i)));
        checks.extend(
            guards
                .mounts
                .iter()
                .filter_map(|g| g.identity.map(|i| (g.path.clone(), i))),
        );
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let plan = Plan {
            home: crate::paths::user_home(),
            // The session's bus, keyring, Wayland and Podman sockets (Linux).
            runtime_dir: cfg!(target_os = "linux")
                .then(|| PathBuf::from(format!("/run/user/{uid}"))),
            // Hidden even when the workspace is the scratch folder inside them: it comes after.
            own: self.sandbox.own_folders(),
            hidden: self.hide.clone(),
            sockets: crate::execute::container::connect::known_sockets(),
            workspace: root,
            guards: guards
                .mounts
                .iter()
                .map(|g| plan::Guard {
                    path: g.path.clone(),
                    read_only: g.read_only,
                })
                .collect(),
            cwd: place.cwd.clone(),
            network_open: self.spec.network == NetworkPolicy::Open,
            proxy_door: proxy_door.clone(),
            repos: guards.repos.clone(),
        };
        let stigmer = std::env::current_exe()
            .map_err(|e| Error::internal(format!("cannot find the stigmer program: {e}")))?;

        let mut unset = std::mem::take(&mut req.unset_env);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if plan::is_secret_var(&k) && !req.env.contains_key(&k) && !self.pass_env.contains(&k) {
                unset.push(k);
            }
        }
        let mut set = std::mem::take(&mut req.env);
        if proxy_door.is_some() {
            // As in an allowlist container: the proxy on the run's own loopback.
            let url = format!(
                "http://{}",
                crate::execute::container::netplan::PROXY_IN_CONTAINER
            );
            for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                set.insert(k.into(), url.clone());
            }
            for k in ["NO_PROXY", "no_proxy"] {
                set.insert(k.into(), "localhost,127.0.0.1,::1".into());
            }
        }
        let (mut argv, tmp) = launcher(&plan, ready.launcher, &mut set, &unset)?;
        // Tool caches work, in the run's private temporary folder: nothing planted there
        // outlives the run.
        req.unset_env = unset;
        req.env = set;

        argv.extend(["--".into(), stigmer.into(), inner::SUBCOMMAND.into()]);
        argv.extend(["--status-fd".into(), STATUS_FD.to_string().into()]);
        if proxy_door.is_some() {
            argv.extend([
                "--proxy".into(),
                crate::execute::container::netplan::PROXY_IN_CONTAINER.into(),
                format!(
                    "{}/{}",
                    plan::DOOR_IN_RUN,
                    crate::network::proxy::SOCKET_NAME
                )
                .into(),
            ]);
        }
        for (path, id) in checks {
            argv.extend([
                "--check".into(),
                path.into(),
                format!("{}:{}", id.dev, id.ino).into(),
            ]);
        }
        if ready.scopes {
            argv.push("--scope".into());
        }
        argv.push("--".into());
        argv.extend(req.command.to_argv());
        req.command = CommandSpec::Argv(argv);
        Ok(Confined { req, guards, tmp })
    }
}

/// The key a workspace's folders are kept under between runs: its path and identity.
pub(super) fn folders_key(place: &Place) -> Option<(PathBuf, u64, u64)> {
    let id = place.held.identity?;
    Some((place.held.path.clone(), id.dev, id.ino))
}

/// Linux: bubblewrap and its arguments. The command's variables reach it through bubblewrap's
/// arguments (`set` and `unset` are emptied into them), never bubblewrap's own environment:
/// bubblewrap runs unconfined, and its loader obeys LD_PRELOAD and the like, which a request
/// could point at a library a run wrote in the workspace. The private /tmp is bubblewrap's.
#[cfg(target_os = "linux")]
fn launcher(
    plan: &Plan,
    bwrap: PathBuf,
    set: &mut std::collections::BTreeMap<String, String>,
    unset: &[String],
) -> Result<(Vec<OsString>, Option<RunTmp>)> {
    let mut argv: Vec<OsString> = vec![bwrap.into()];
    argv.extend(plan.bwrap_args(plan::found));
    caches(set, "/tmp");
    for k in unset {
        argv.extend(["--unsetenv".into(), k.into()]);
    }
    for (k, v) in std::mem::take(set) {
        argv.extend(["--setenv".into(), k.into(), v.into()]);
    }
    Ok((argv, None))
}

/// macOS: `sandbox-exec` with the Seatbelt profile made from the plan, and a private temporary
/// folder of the run's own. `sandbox-exec` is the system's (its loader ignores DYLD_*
/// variables), and the profile applies before anything of the request's runs.
#[cfg(target_os = "macos")]
fn launcher(
    plan: &Plan,
    sandbox_exec: PathBuf,
    set: &mut std::collections::BTreeMap<String, String>,
    _unset: &[String],
) -> Result<(Vec<OsString>, Option<RunTmp>)> {
    let dir = std::env::temp_dir().join(format!("stigmer-run-{}", crate::util::random_hex(8)?));
    crate::private::private_dir(&dir)
        .map_err(|e| Error::internal(format!("cannot make the run's temporary folder: {e}")))?;
    let tmp = RunTmp(dir);
    let real = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let profile = super::seatbelt::profile(plan, &tmp.0, real).ok_or_else(|| {
        Error::new(
            ErrorCode::WorkspaceNotAllowed,
            "a folder of this run has a name that is not valid text, which the protected tier \
             cannot confine on macOS, so nothing ran",
        )
    })?;
    let dir = real(&tmp.0).unwrap_or_else(|| tmp.0.clone());
    caches(set, &dir.to_string_lossy());
    let argv = vec![sandbox_exec.into(), "-p".into(), profile.into()];
    Ok((argv, Some(tmp)))
}

/// Tool caches and temporary files in the run's private temporary folder `tmp`, unless the
/// request set them.
fn caches(set: &mut std::collections::BTreeMap<String, String>, tmp: &str) {
    for (k, v) in [
        ("XDG_CACHE_HOME", format!("{tmp}/.cache")),
        ("npm_config_cache", format!("{tmp}/.npm")),
        ("TMPDIR", tmp.to_string()),
    ] {
        set.entry(k.into()).or_insert(v);
    }
}

/// Give the launcher (and so `protected-exec` inside) the status pipe's write end as
/// [`STATUS_FD`], in the child only: the server's other children never see it.
pub(super) fn hand_status_fd(cmd: &mut tokio::process::Command, fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe; they touch only the child's table.
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == STATUS_FD {
                libc::fcntl(raw, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, STATUS_FD)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing else the server holds or inherited reaches the launcher (bubblewrap's
            // processes stay in the run, where /proc would show their descriptors).
            #[cfg(target_os = "linux")]
            libc::syscall(
                libc::SYS_close_range,
                (STATUS_FD + 1) as u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
}

/// The command's own end, as the launcher inside reported it (bubblewrap says a signal as
/// 128+N).
pub(super) fn with_status(mut outcome: ExecOutcome, status: std::io::PipeReader) -> ExecOutcome {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // Everyone who held the write end has exited: what was written is there, or nothing.
    // SAFETY: sets a flag on our own descriptor.
    unsafe { libc::fcntl(status.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = [0u8; 32];
    let n = (&status).read(&mut buf).unwrap_or(0);
    let ended = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(inner::Ended::parse);
    if outcome.timed_out || outcome.cancelled {
        return outcome;
    }
    match ended {
        Some(inner::Ended::Exit(n)) => {
            outcome.exit_code = Some(n);
            outcome.signal = None;
        }
        Some(inner::Ended::Signal(n)) => {
            outcome.exit_code = None;
            outcome.signal = Some(n);
        }
        None => {}
    }
    outcome
}
