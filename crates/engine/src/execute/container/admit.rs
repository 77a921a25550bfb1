//! Which folder a sandboxed run may use (the workspace rules of [`super::workspace`] with
//! this installation's own folders and engine sockets), and the refusals the window shows.

use std::path::{Path, PathBuf};

use super::connect::{self};
use super::workspace::{self, Admitted, NeverMounted, Refusal};
use super::{RefusedRun, Sandbox, SandboxSpec};
use crate::error::Result;
use crate::events::Event;
use crate::execute::ExecRequest;

/// How many refused requests the server remembers for the window.
const REFUSALS_KEPT: usize = 20;

impl Sandbox {
    /// The folders sandbox mode never mounts, as of now: the engine sockets include the one
    /// in use, PATH is the user's.
    pub async fn never_mounted(&self) -> NeverMounted {
        let mut sockets = connect::known_sockets();
        if let Some((_, info)) = self.conn.lock().await.as_ref() {
            sockets.extend(connect::unix_socket_of(&info.endpoint));
        }
        // The first lookup may ask the login shell: off the async threads.
        let path = tokio::task::spawn_blocking(|| crate::tools::user_path().0.clone())
            .await
            .unwrap_or_default();
        NeverMounted::gather(&self.protected, &sockets, &path)
    }

    /// Where sandboxed runs that name no folder run.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// The scratch folder, made if missing: where a confined run that names no folder goes
    /// (a sandbox's, a protected one's).
    pub fn default_cwd(&self) -> PathBuf {
        if let Err(e) = std::fs::create_dir_all(&self.scratch) {
            tracing::warn!("cannot create {}: {e}", self.scratch.display());
        }
        self.scratch.clone()
    }

    /// The folders a confined run may be in: the spec's workspaces and the scratch folder.
    pub fn allowed_folders(&self, spec: &SandboxSpec) -> Vec<PathBuf> {
        let mut all = spec.workspaces.clone();
        all.push(self.scratch.clone());
        all.dedup();
        all
    }

    /// Where a run in `cwd` goes, or why it may not run there. Checked when a request comes
    /// in and again right before its container is chosen.
    pub async fn admit(
        &self,
        spec: &SandboxSpec,
        cwd: &Path,
    ) -> std::result::Result<Admitted, Refusal> {
        self.never_mounted()
            .await
            .admit(cwd, &spec.workspaces, &self.scratch)
    }

    /// [`Sandbox::admit`] for a request from `client`: a refusal is remembered and announced
    /// (the window offers to allow the folder) and becomes the client's error.
    pub async fn admit_request(
        &self,
        spec: &SandboxSpec,
        req: &ExecRequest,
        client: Option<&str>,
    ) -> Result<Admitted> {
        self.admit(spec, &req.cwd).await.map_err(|refusal| {
            tracing::warn!(folder = %refusal.folder.display(), client = client.unwrap_or("-"), "sandbox run refused: {}", refusal.reason);
            let error = workspace::refusal_error(&refusal);
            let record = RefusedRun {
                client: client.map(str::to_string),
                command: req.command.display(),
                refusal,
                time_ms: crate::util::now_ms(),
            };
            {
                let mut list = self.refusals.lock();
                list.retain(|r| r.refusal.folder != record.refusal.folder || r.client != record.client);
                list.push_back(record.clone());
                while list.len() > REFUSALS_KEPT {
                    list.pop_front();
                }
            }
            self.bus.publish(Event::WorkspaceRefused { refused: record });
            error
        })
    }

    /// The requests refused lately, newest first.
    pub fn refusals(&self) -> Vec<RefusedRun> {
        let list = self.refusals.lock();
        list.iter().rev().cloned().collect()
    }

    /// Forget the refusals of folders now allowed (the window's "Allow this folder").
    pub fn forget_refusals_in(&self, allowed: &Path) {
        let mut list = self.refusals.lock();
        list.retain(|r| !r.refusal.folder.starts_with(allowed));
    }
}
