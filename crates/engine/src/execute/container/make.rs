//! Making a sandbox container for one key: the workspace and its guarded host-run files
//! ([`super::hostrun`]) mounted, the helper attached, and every mount proved to be what was
//! checked before any command runs.

use std::path::Path;

use bollard::Docker;

use super::attach::HelperConn;
use super::containers::{self, ContainerSpec};
use super::pool::{ContainerKey, Warm};
use super::{hostrun, Sandbox, SandboxSpec};
use crate::error::{Error, ErrorCode, Result};
use crate::execute::held::{self, Held};

impl Sandbox {
    /// Make and start a container for `key`, and prove its mounts are the `held` folder and
    /// the host-run files found in it.
    pub(super) async fn create(
        &self,
        docker: &Docker,
        spec: &SandboxSpec,
        key: &ContainerKey,
        held: &std::sync::Arc<Held>,
    ) -> Result<Warm> {
        // Found once per container, never on a warm run; a walk of the workspace, so off the
        // async threads.
        let (root, h, writable) = (key.workspace.clone(), held.clone(), spec.writable.clone());
        let guards = tokio::task::spawn_blocking(move || hostrun::plan(&root, &h, &writable))
            .await
            .map_err(|e| Error::internal(format!("the workspace's search failed: {e}")))?;
        for link in &guards.unguarded {
            tracing::warn!(path = %link.display(), "a host-run file is a link: not guarded");
        }
        let cspec = ContainerSpec {
            image: spec.image.clone(),
            workspace: key.workspace.clone(),
            client: key.client.clone(),
            memory: spec.memory.clone(),
            cpus: spec.cpus.clone(),
            plan: self.plan(spec).await?,
            guards: guards.mounts.clone(),
            env: git_identity(),
        };
        let arch = self.engine_arch().await;
        test_pause_before_mount().await;
        let id = containers::create(docker, &cspec, &self.owner, &arch)
            .await
            .map_err(|e| {
                // A mount's folder or file gone since it was checked: the engine says so.
                let gone = e.message.contains("does not exist")
                    || e.message.contains("no such file or directory");
                let ours = std::iter::once(&key.workspace)
                    .chain(guards.mounts.iter().map(|g| &g.path))
                    .any(|p| e.message.contains(&*p.to_string_lossy()));
                if gone && ours {
                    changed(&key.workspace)
                } else {
                    e
                }
            })?;
        let paths: Vec<&Path> = std::iter::once(key.workspace.as_path())
            .chain(guards.mounts.iter().map(|g| g.path.as_path()))
            .collect();
        let conn = match HelperConn::attach(docker, &id, &paths).await {
            Ok(conn) => conn,
            Err(e) => {
                containers::remove(docker, &id).await;
                return Err(e);
            }
        };
        let mounted = conn.mounted();
        let expected: Vec<Option<held::Identity>> = std::iter::once(held.identity)
            .chain(guards.mounts.iter().map(|g| g.identity))
            .collect();
        if self.shares_kernel(docker).await && mounted != expected {
            containers::remove(docker, &id).await;
            tracing::warn!(workspace = %key.workspace.display(), ?mounted, ?expected, "the container's mounts are not what was checked; removed");
            return Err(changed(&key.workspace));
        }
        Ok(Warm::new(
            id,
            conn,
            cspec.plan.door(),
            mounted.first().copied().flatten(),
            guards,
        ))
    }

    /// Whether the engine shares this kernel, asked once per connection.
    async fn shares_kernel(&self, docker: &Docker) -> bool {
        let mut known = self.same_kernel.lock().await;
        if known.is_none() {
            *known = Some(engine_shares_kernel(docker).await);
        }
        known.unwrap_or(false)
    }
}

/// The error of a run whose workspace, or a read-only file in it, changed under it.
fn changed(workspace: &Path) -> Error {
    Error::new(
        ErrorCode::WorkspaceChanged,
        format!(
            "{} (or a file in it that stays read-only) was renamed or replaced by a link while \
             the sandbox container was being made, so the container would have seen something \
             else; nothing ran. If you did not move it, a program is tampering with it",
            workspace.display()
        ),
    )
}

/// Who commits in the sandbox: `.git/config` is read-only there and the container's home is
/// not the user's, so git gets the user's name and address from the environment (their own
/// `git config`, when git is installed here), else a name that says where the commit came from.
fn git_identity() -> Vec<String> {
    // Asked once: it would otherwise cost two processes per new container.
    static KNOWN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KNOWN.get_or_init(ask_git_identity).clone()
}

fn ask_git_identity() -> Vec<String> {
    let ask = |key: &str| {
        std::process::Command::new("git")
            .args(["config", "--global", key])
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|v| !v.is_empty() && !v.contains(['\n', '\0']))
    };
    let name = ask("user.name").unwrap_or_else(|| "Stigmer sandbox".into());
    let email = ask("user.email").unwrap_or_else(|| "sandbox@stigmer.invalid".into());
    vec![
        format!("GIT_AUTHOR_NAME={name}"),
        format!("GIT_AUTHOR_EMAIL={email}"),
        format!("GIT_COMMITTER_NAME={name}"),
        format!("GIT_COMMITTER_EMAIL={email}"),
    ]
}

/// Tests only (debug builds): wait `STIGMER_TEST_MOUNT_PAUSE_MS` between the folder's check and
/// the container's creation, so a test can swap the folder there every time.
async fn test_pause_before_mount() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("STIGMER_TEST_MOUNT_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tracing::info!("test pause before the mount: {ms} ms");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// Whether the engine runs its containers on this computer's kernel, where a mount's device and
/// inode are the host's and can be compared. Not so for an engine in a VM (Docker Desktop,
/// Colima, Podman machine) or on another computer: there the folder is checked by path and
/// held open, and the engine's own VM boundary is what confines a swap.
pub async fn engine_shares_kernel(docker: &bollard::Docker) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Ok(info) = docker.info().await else {
            return false;
        };
        let ours = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let desktop = info
            .operating_system
            .as_deref()
            .is_some_and(|os| os.contains("Desktop"));
        !desktop && info.kernel_version.as_deref() == Some(ours.trim())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = docker;
        false
    }
}
