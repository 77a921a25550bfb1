//! Dispatch a run to where the mode says it runs. Sandbox mode never falls back to the host.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::command_env::CommandEnv;
use crate::error::Result;
use crate::exec::{run_local, Chunk, ExecOutcome, ExecRequest};
use crate::sandbox::workspace::session_root;
use crate::sandbox::{Sandbox, SandboxSpec};
use crate::settings::{Mode, Settings};
use crate::tools::user_path;

/// Where one run goes: the mode and, for sandbox mode, the image and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mode: Mode,
    pub sandbox: SandboxSpec,
    /// The environment every command starts from (before the run's own variables).
    pub env: CommandEnv,
}

impl Target {
    pub fn from_settings(s: &Settings) -> Target {
        Target {
            mode: s.mode,
            sandbox: SandboxSpec::from_settings(s),
            env: s.command_env(),
        }
    }

    /// The image, in sandbox mode.
    pub fn image(&self) -> Option<&str> {
        (self.mode == Mode::Sandbox).then_some(self.sandbox.image.as_str())
    }

    /// Allow, for this run, the project the client's session was started in (the user chose
    /// it by starting the agent or `stigmer run` there): its `.git` root, else the folder.
    /// Only sandbox mode looks at it, and a folder that is never mounted (the home folder,
    /// `/`) allows nothing.
    pub fn with_session_workspace(mut self, dir: Option<PathBuf>) -> Target {
        if self.mode == Mode::Sandbox {
            let root = dir.filter(|d| d.is_absolute()).map(|d| session_root(&d));
            self.sandbox.workspaces.extend(root);
        }
        self
    }

    /// Fail early, before anything is registered or started, when the target cannot run this
    /// request: in sandbox mode, a folder outside the allowed workspaces (the refusal is
    /// announced, for the window) or no reachable engine.
    pub async fn admit(
        &self,
        sandbox: &Sandbox,
        req: &ExecRequest,
        client: Option<&str>,
    ) -> Result<()> {
        match self.mode {
            Mode::Local => Ok(()),
            Mode::Sandbox => {
                sandbox.admit_request(&self.sandbox, req, client).await?;
                sandbox.docker().await.map(|_| ())
            }
        }
    }
}

/// [`execute`] on a task of its own, with the user's PATH. The PATH is looked up off the async
/// threads: the first lookup may ask the login shell, which can take a moment.
pub fn spawn_execute(
    target: Target,
    req: ExecRequest,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
    sandbox: Arc<Sandbox>,
) -> JoinHandle<Result<ExecOutcome>> {
    let req = with_base_env(&target.env, target.mode, req);
    tokio::spawn(async move {
        match target.mode {
            Mode::Sandbox => sandbox.run(&target.sandbox, &req, out, cancel).await,
            Mode::Local => {
                let path = tokio::task::spawn_blocking(user_path)
                    .await
                    .ok()
                    .map(|(p, _)| p.as_os_str());
                execute_local(&req, path, out, cancel).await
            }
        }
    })
}

/// The run's variables on top of the base environment (the run's own win).
fn with_base_env(base: &CommandEnv, mode: Mode, mut req: ExecRequest) -> ExecRequest {
    let mut env = base.set.clone();
    let mut unset: Vec<String> = Vec::new();
    for k in &base.unset {
        if !req.env.contains_key(k) {
            match mode {
                Mode::Local => unset.push(k.clone()),
                // An exec cannot remove what the image sets; empty is the closest.
                Mode::Sandbox => {
                    env.insert(k.clone(), String::new());
                }
            }
        }
    }
    env.append(&mut req.env);
    req.env = env;
    req.unset_env.extend(unset);
    req
}

/// Run `req` on this machine (local mode).
pub async fn execute_local(
    req: &ExecRequest,
    path: Option<&OsStr>,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
) -> Result<ExecOutcome> {
    run_local(req, path, out, cancel).await
}
