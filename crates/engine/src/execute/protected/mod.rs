//! The protected local tier: commands run on this computer with the user's own tools, confined
//! by the operating system, for people with no container engine. On Linux through bubblewrap
//! ([`plan`]): the system read-only; writes only in the workspace the sandbox's rules admit
//! (its host-run files read-only) and a private /tmp; secrets, the session's sockets and
//! Stigmer's folders hidden; credential variables dropped; a PID namespace (the whole tree
//! ends with the run, nothing outside can be signalled or traced); no network unless it is
//! open, and then Landlock keeps abstract sockets and signals inside. On macOS through a
//! Seatbelt profile made from the same plan ([`seatbelt`]). Where the system cannot do all of
//! it ([`probe`]), a run is refused with PROTECTION_UNAVAILABLE: never run bare.

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod confine;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub mod inner;
pub mod plan;
#[cfg(target_os = "linux")]
pub mod probe;
pub mod seatbelt;

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
    #[cfg_attr(windows, allow(dead_code))]
    hide: Vec<PathBuf>,
    /// Credential variables passed after all (`protected.pass_env`).
    #[cfg_attr(windows, allow(dead_code))]
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

/// How this system confines a run: its launcher, and whether Landlock's scopes go on inside.
#[cfg_attr(windows, allow(dead_code))]
struct Ready {
    launcher: PathBuf,
    scopes: bool,
}

/// Linux: bubblewrap; or why this run cannot be confined.
#[cfg(target_os = "linux")]
fn ready(network: NetworkPolicy) -> Result<Ready> {
    match probe::support() {
        probe::Support::Missing(why) => Err(unavailable(&why)),
        probe::Support::Ready { scopes: false, .. } if network == NetworkPolicy::Open => {
            Err(unavailable(
                "with the network open, this kernel cannot keep the display's and the \
                 session's sockets out of reach (Landlock ABI 6, Linux 6.12, is needed); \
                 choose network none for this tier",
            ))
        }
        probe::Support::Ready { bwrap, scopes } => Ok(Ready {
            launcher: bwrap,
            scopes,
        }),
    }
}

/// macOS: the system's `sandbox-exec` (Seatbelt); or why this run cannot be confined.
#[cfg(target_os = "macos")]
fn ready(network: NetworkPolicy) -> Result<Ready> {
    const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";
    if network == NetworkPolicy::Allowlist {
        return Err(unavailable(
            "on macOS the network allowlist is not available in this tier yet; choose network \
             none or open for it",
        ));
    }
    if !std::path::Path::new(SANDBOX_EXEC).exists() {
        return Err(unavailable("this Mac has no sandbox-exec (Seatbelt)"));
    }
    Ok(Ready {
        launcher: SANDBOX_EXEC.into(),
        scopes: false,
    })
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn ready(_network: NetworkPolicy) -> Result<Ready> {
    Err(unavailable(
        "Windows has no confinement Stigmer can use for commands on this computer; a \
         sandbox (a container) is the protected choice there",
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
            #[cfg(any(target_os = "linux", target_os = "macos"))]
            {
                let started = std::time::Instant::now();
                let ready = ready(self.spec.network)?;
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
                let confined = self.confine(req, &place, ready, door_folder).await?;
                let path = super::local::user_path_off_thread().await;
                let prepared = started.elapsed();
                let (status, status_w) = std::io::pipe()
                    .map_err(|e| Error::internal(format!("cannot make a pipe: {e}")))?;
                let status_fd = std::os::fd::OwnedFd::from(status_w);
                let outcome = super::local::run_local_prepared(
                    &confined.req,
                    &place.held.entry(),
                    path,
                    out,
                    cancel,
                    |cmd| confine::hand_status_fd(cmd, &status_fd),
                )
                .await;
                drop(status_fd);
                let outcome = outcome.map(|o| confine::with_status(o, status));
                let mut outcome = self.sandbox.end_run_watch(watched, outcome).await?;
                let ran = started.elapsed();
                drop((door, confined.tmp));
                // Files programs on the host run that the command created: said to the
                // agent and the user (the next run has them read-only).
                let (root, guards) = (place.held.path.clone(), confined.guards);
                let (made, folders) = tokio::task::spawn_blocking(move || {
                    let made = super::container::hostrun::made_by_run(&root, &guards);
                    (made, guards.folders.into_inner())
                })
                .await
                .map_err(|e| Error::internal(e.to_string()))?;
                if let Some(key) = confine::folders_key(&place) {
                    self.sandbox.protected_folders.put(key, folders);
                }
                // Where a protected run's time goes, beside the command's own.
                tracing::debug!(
                    prepare_ms = prepared.as_secs_f64() * 1000.0,
                    run_ms = (ran - prepared).as_secs_f64() * 1000.0,
                    after_ms = (started.elapsed() - ran).as_secs_f64() * 1000.0,
                    "protected run"
                );
                if !made.is_empty() {
                    tracing::warn!(
                        ?made,
                        "a protected command created files that programs on the host run"
                    );
                    outcome.host_files = made.iter().map(|p| p.display().to_string()).collect();
                }
                Ok(outcome)
            }
            #[cfg(not(any(target_os = "linux", target_os = "macos")))]
            {
                let _ = (req, place, out, cancel);
                Err(ready(self.spec.network)
                    .err()
                    .unwrap_or_else(|| unavailable("")))
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
