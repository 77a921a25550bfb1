//! The protected local tier: commands run on this computer with the user's own tools, confined
//! by the operating system, for people with no container engine. On Linux through bubblewrap
//! ([`plan`]): the system read-only; writes only in the workspace the sandbox's rules admit
//! (its host-run files read-only) and a private /tmp; secrets, the session's sockets and
//! Stigmer's folders hidden; credential variables dropped; a PID namespace (the whole tree
//! ends with the run, nothing outside can be signalled or traced); no network unless it is
//! open, and then Landlock keeps abstract sockets and signals inside. Where the system cannot
//! do all of it ([`probe`]), a run is refused with PROTECTION_UNAVAILABLE: never run bare.

#[cfg(target_os = "linux")]
pub mod inner;
pub mod plan;
#[cfg(target_os = "linux")]
pub mod probe;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::container::{Sandbox, SandboxSpec};
use super::{BoxFuture, Chunk, Claim, ExecOutcome, ExecRequest, Executor, Place};
use crate::error::{Error, ErrorCode, Result};
use crate::network::NetworkPolicy;
use crate::settings::Mode;

pub struct Protected {
    sandbox: Arc<Sandbox>,
    spec: SandboxSpec,
    /// More paths to hide (`protected.hide`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    hide: Vec<PathBuf>,
    /// Credential variables passed after all (`protected.pass_env`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pass_env: Vec<String>,
}

impl Protected {
    pub fn new(
        sandbox: Arc<Sandbox>,
        spec: SandboxSpec,
        hide: Vec<PathBuf>,
        pass_env: Vec<String>,
    ) -> Protected {
        Protected {
            sandbox,
            spec,
            hide,
            pass_env,
        }
    }
}

fn unavailable(why: &str) -> Error {
    Error::new(
        ErrorCode::ProtectionUnavailable,
        format!(
            "the protected tier cannot confine commands on this computer, so nothing ran: \
             {why}. Choose another tier (Local runs with no confinement)"
        ),
    )
}

/// bubblewrap, and whether Landlock's scopes go on; or why this run cannot be confined.
#[cfg(target_os = "linux")]
fn ready(network: NetworkPolicy) -> Result<(PathBuf, bool)> {
    match probe::support() {
        probe::Support::Missing(why) => Err(unavailable(&why)),
        probe::Support::Ready { scopes: false, .. } if network == NetworkPolicy::Open => {
            Err(unavailable(
                "with the network open, this kernel cannot keep the display's and the \
                 session's sockets out of reach (Landlock ABI 6, Linux 6.12, is needed); \
                 choose network none for this tier",
            ))
        }
        probe::Support::Ready { bwrap, scopes } => Ok((bwrap, scopes)),
    }
}

#[cfg(not(target_os = "linux"))]
fn ready(_network: NetworkPolicy) -> Result<(PathBuf, bool)> {
    Err(unavailable(
        "it is made for Linux so far (macOS: not yet; Windows: not available)",
    ))
}

/// Whether protected runs can be confined here (the window and the agent are told).
pub async fn protection() -> stigmer_protocol::status::Protection {
    let missing = tokio::task::spawn_blocking(|| ready(NetworkPolicy::None).err())
        .await
        .unwrap_or_else(|e| Some(Error::internal(e.to_string())));
    stigmer_protocol::status::Protection {
        available: missing.is_none(),
        missing: missing.map(|e| e.message),
    }
}

impl Executor for Protected {
    fn mode(&self) -> Mode {
        Mode::Protected
    }

    fn admit<'a>(
        &'a self,
        req: &'a ExecRequest,
        client: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Claim>> {
        Box::pin(async move {
            ready(self.spec.network)?;
            let admitted = self.sandbox.admit_request(&self.spec, req, client).await?;
            Ok(Claim {
                folder: admitted.mount,
                cwd: admitted.cwd,
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
            #[cfg(target_os = "linux")]
            {
                let (bwrap, scopes) = ready(self.spec.network)?;
                // The allowlist: a door to the proxy of this run's own, watched for refusals.
                let door = match self.spec.network {
                    NetworkPolicy::Allowlist => Some(self.sandbox.open_run_door(&self.spec).await?),
                    _ => None,
                };
                let watched = self.sandbox.watch_run(
                    door.as_ref().map(|d| d.name.as_str()),
                    &place.held.path,
                    &req,
                );
                let door_folder = door.as_ref().map(|d| d.folder().to_path_buf());
                let (req, guards) = self
                    .confine(req, &place, bwrap, scopes, door_folder)
                    .await?;
                let path = super::local::user_path_off_thread().await;
                let (status, status_w) = std::io::pipe()
                    .map_err(|e| Error::internal(format!("cannot make a pipe: {e}")))?;
                let status_fd = std::os::fd::OwnedFd::from(status_w);
                let outcome = super::local::run_local_prepared(
                    &req,
                    &place.held.entry(),
                    path,
                    out,
                    cancel,
                    |cmd| hand_status_fd(cmd, &status_fd),
                )
                .await;
                drop(status_fd);
                let outcome = outcome.map(|o| with_status(o, status));
                let mut outcome = self.sandbox.end_run_watch(watched, outcome).await?;
                drop(door);
                // Files programs on the host run that the command created: said to the
                // agent and the user (the next run has them read-only).
                let root = place.held.path.clone();
                let made = tokio::task::spawn_blocking(move || {
                    super::container::hostrun::made_by_run(&root, &guards)
                })
                .await
                .unwrap_or_default();
                if !made.is_empty() {
                    tracing::warn!(
                        ?made,
                        "a protected command created files that programs on the host run"
                    );
                    outcome.host_files = made.iter().map(|p| p.display().to_string()).collect();
                }
                Ok(outcome)
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = (req, place, out, cancel);
                Err(ready(self.spec.network).unwrap_err())
            }
        })
    }

    /// The scratch folder, as in a sandbox.
    fn default_cwd(&self) -> PathBuf {
        self.sandbox.default_cwd()
    }

    fn confinement(&self) -> String {
        let folders: Vec<String> = self
            .allowed_folders()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if let Err(e) = ready(self.spec.network) {
            return format!(
                "protected mode, which cannot run commands here: {} Every command is refused \
                 with PROTECTION_UNAVAILABLE and nothing runs unconfined: ask the user to choose \
                 another tier.",
                e.message
            );
        }
        format!(
            "protected mode: commands run on the user's computer with the user's own tools, \
             confined by the operating system. They can read the system and the home folder \
             but not its secrets (SSH and cloud keys, password stores, browser profiles, shell \
             histories: hidden, empty), and write only in the allowed folder that holds the \
             working directory and in a private /tmp (emptied after each command); files that \
             programs on the host run or obey stay read-only there ({}, .git/config, \
             .git/hooks). No container engine, session bus, ssh-agent or display can be \
             reached, and credential variables are not passed. The working directory must lie \
             in a folder the user allowed: {}. Any other folder is refused with \
             WORKSPACE_NOT_ALLOWED: do not retry elsewhere, ask the user. A command refused \
             by the confinement ends with its own error (EACCES, EROFS): that is the user's \
             protection, not a bug to work around. Network: {}.",
            super::container::hostrun::NAMES.join(", "),
            folders.join(", "),
            match self.spec.network {
                NetworkPolicy::Open => "open",
                NetworkPolicy::None => "none (the user turned it off); downloads fail",
                NetworkPolicy::Allowlist =>
                    "allowlist: only the hosts the user listed, over HTTP(S) through Stigmer's \
                     proxy (HTTP_PROXY is set; tools that ignore it get no network); a refused \
                     host is named in the reply and the user can allow it",
            }
        )
    }

    fn allowed_folders(&self) -> Vec<PathBuf> {
        self.sandbox.allowed_folders(&self.spec)
    }
}

#[cfg(target_os = "linux")]
impl Protected {
    /// The request as bubblewrap runs it: the plan, the checks made inside before the command,
    /// the credential variables dropped, caches in the private /tmp.
    async fn confine(
        &self,
        mut req: ExecRequest,
        place: &Place,
        bwrap: PathBuf,
        scopes: bool,
        proxy_door: Option<PathBuf>,
    ) -> Result<(ExecRequest, super::container::hostrun::Guards)> {
        use std::ffi::OsString;

        let root = place.held.path.clone();
        // The folder admitted must still be where it was (as in a sandbox).
        if !place.held.is_at(&root) {
            return Err(super::held::changed(&root));
        }
        let (held, writable) = (place.held.clone(), self.spec.writable.clone());
        let scan_root = root.clone();
        let guards = tokio::task::spawn_blocking(move || {
            super::container::hostrun::plan(&scan_root, &held, &writable)
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
        let mut checks: Vec<(PathBuf, super::held::Identity)> = Vec::new();
        checks.extend(place.held.identity.map(|i| (root.clone(), i)));
        checks.extend(
            guards
                .mounts
                .iter()
                .filter_map(|g| g.identity.map(|i| (g.path.clone(), i))),
        );
        let home = crate::paths::user_home();
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        // Hidden even when the workspace is the scratch folder inside them: it is bound after.
        let own = self.sandbox.own_folders();
        let plan = plan::Plan {
            home,
            runtime_dir: Some(PathBuf::from(format!("/run/user/{uid}"))),
            own,
            hidden: self.hide.clone(),
            sockets: super::container::connect::known_sockets(),
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
        };
        let stigmer = std::env::current_exe()
            .map_err(|e| Error::internal(format!("cannot find the stigmer program: {e}")))?;
        let mut argv: Vec<OsString> = vec![bwrap.into()];
        argv.extend(plan.bwrap_args(plan::found));
        // The command's variables reach it through bubblewrap's arguments, never bubblewrap's
        // own environment: bubblewrap runs unconfined, and its loader obeys LD_PRELOAD and the
        // like, which a request could point at a library a run wrote in the workspace.
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
            let url = format!("http://{}", super::container::netplan::PROXY_IN_CONTAINER);
            for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                set.insert(k.into(), url.clone());
            }
            for k in ["NO_PROXY", "no_proxy"] {
                set.insert(k.into(), "localhost,127.0.0.1,::1".into());
            }
        }
        // Tool caches work, in the run's private /tmp: nothing planted there outlives the run.
        for (k, v) in [
            ("XDG_CACHE_HOME", "/tmp/.cache"),
            ("npm_config_cache", "/tmp/.npm"),
            ("TMPDIR", "/tmp"),
        ] {
            set.entry(k.into()).or_insert_with(|| v.into());
        }
        for k in &unset {
            argv.extend(["--unsetenv".into(), k.into()]);
        }
        for (k, v) in &set {
            argv.extend(["--setenv".into(), k.into(), v.into()]);
        }
        // Removed from bubblewrap's environment too (so from the command's).
        req.unset_env = unset;
        argv.extend(["--".into(), stigmer.into(), inner::SUBCOMMAND.into()]);
        argv.extend(["--status-fd".into(), STATUS_FD.to_string().into()]);
        if proxy_door.is_some() {
            argv.extend([
                "--proxy".into(),
                super::container::netplan::PROXY_IN_CONTAINER.into(),
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
        if scopes {
            argv.push("--scope".into());
        }
        argv.push("--".into());
        argv.extend(req.command.to_argv());
        req.command = super::CommandSpec::Argv(argv);
        Ok((req, guards))
    }
}

/// The descriptor the launcher inside reports the command's end on.
#[cfg(target_os = "linux")]
const STATUS_FD: i32 = 3;

/// Give bubblewrap (and so the launcher inside) the status pipe's write end as [`STATUS_FD`],
/// in the child only: the server's other children never see it.
#[cfg(target_os = "linux")]
fn hand_status_fd(cmd: &mut tokio::process::Command, fd: &std::os::fd::OwnedFd) {
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
            Ok(())
        });
    }
}

/// The command's own end, as the launcher reported it (bubblewrap says a signal as 128+N).
#[cfg(target_os = "linux")]
fn with_status(mut outcome: ExecOutcome, status: std::io::PipeReader) -> ExecOutcome {
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
