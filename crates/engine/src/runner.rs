//! Dispatch a run to where the mode says it runs. Sandbox mode never falls back to the host.

use std::ffi::OsStr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::exec::{run_local, Chunk, ExecOutcome, ExecRequest};
use crate::sandbox::{Sandbox, SandboxSpec};
use crate::settings::{Mode, Settings};
use crate::tools::user_path;

/// Where one run goes: the mode and, for sandbox mode, the image and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mode: Mode,
    pub sandbox: SandboxSpec,
}

impl Target {
    pub fn from_settings(s: &Settings) -> Target {
        Target {
            mode: s.mode,
            sandbox: SandboxSpec::from_settings(s),
        }
    }

    /// The image, in sandbox mode.
    pub fn image(&self) -> Option<&str> {
        (self.mode == Mode::Sandbox).then_some(self.sandbox.image.as_str())
    }

    /// Fail early, before anything is registered or started, when the target cannot run
    /// commands (sandbox mode without a reachable engine).
    pub async fn check_available(&self, sandbox: &Sandbox) -> Result<()> {
        match self.mode {
            Mode::Local => Ok(()),
            Mode::Sandbox => sandbox.docker().await.map(|_| ()),
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

/// Run `req` on this machine (local mode).
pub async fn execute_local(
    req: &ExecRequest,
    path: Option<&OsStr>,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
) -> Result<ExecOutcome> {
    run_local(req, path, out, cancel).await
}
