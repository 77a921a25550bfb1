//! Dispatch a run to where the mode says it runs. Sandbox mode never falls back to the host.

use std::ffi::OsStr;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::exec::{run_local, Chunk, ExecOutcome, ExecRequest};
use crate::settings::Mode;
use crate::tools::user_path;

/// Where one run goes: the mode and, for sandbox mode, the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mode: Mode,
    pub image: String,
}

impl Target {
    /// Fail early, before anything is started, when the target cannot run commands.
    pub fn check_available(&self) -> Result<()> {
        match self.mode {
            Mode::Local => Ok(()),
            Mode::Sandbox => Err(Error::sandbox_unavailable()),
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
) -> JoinHandle<Result<ExecOutcome>> {
    tokio::spawn(async move {
        let path = tokio::task::spawn_blocking(user_path)
            .await
            .ok()
            .map(|(p, _)| p.as_os_str());
        execute(&target, &req, path, out, cancel).await
    })
}

/// Run `req` in `target`, streaming output to `out`.
pub async fn execute(
    target: &Target,
    req: &ExecRequest,
    path: Option<&OsStr>,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
) -> Result<ExecOutcome> {
    target.check_available()?;
    match target.mode {
        Mode::Local => run_local(req, path, out, cancel).await,
        Mode::Sandbox => Err(Error::sandbox_unavailable()),
    }
}
