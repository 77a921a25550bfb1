//! A sandbox container as a run's [`Executor`]: the workspace rule first, then the engine; the
//! run itself is [`Sandbox::run`].

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Sandbox, SandboxSpec};
use crate::error::Result;
use crate::execute::{BoxFuture, Chunk, Claim, ExecOutcome, ExecRequest, Executor, Place};
use crate::network::NetworkPolicy;
use crate::settings::Mode;

pub struct Container {
    sandbox: Arc<Sandbox>,
    spec: SandboxSpec,
}

impl Container {
    pub fn new(sandbox: Arc<Sandbox>, spec: SandboxSpec) -> Container {
        Container { sandbox, spec }
    }
}

impl Executor for Container {
    fn mode(&self) -> Mode {
        Mode::Sandbox
    }

    fn image(&self) -> Option<&str> {
        Some(&self.spec.image)
    }

    fn admit<'a>(
        &'a self,
        req: &'a ExecRequest,
        client: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Claim>> {
        Box::pin(async move {
            // A folder the sandbox may not use is refused without asking the engine anything.
            let admitted = self.sandbox.admit_request(&self.spec, req, client).await?;
            self.sandbox.docker().await?;
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
        Box::pin(async move { self.sandbox.run(&self.spec, &req, place, out, cancel).await })
    }

    /// The scratch folder: the home folder is never mounted.
    fn default_cwd(&self) -> PathBuf {
        self.sandbox.default_cwd()
    }

    fn confinement(&self) -> String {
        let folders: Vec<String> = self
            .allowed_folders()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "sandbox mode: commands run in a container of image {}. The container sees only the \
             allowed folder that holds the working directory, read-write, at the same path; \
             nothing else of the user's computer. It serves this agent's commands only, and \
             processes a command leaves behind are ended when no command of it is running. \
             Files that programs on the host run or obey stay read-only there, at the \
             workspace root and in every repository in it: {}, and .git/config, .git/hooks, \
             .git/info (git add, commit, branch and stash work; git config does not). Do not \
             create such files: the user is told. The working \
             directory must lie in a folder the user allowed: {}. Any other folder is refused \
             with WORKSPACE_NOT_ALLOWED: do not retry elsewhere, ask the user. {}",
            self.spec.image,
            super::hostrun::NAMES
                .iter()
                .filter(|n| !self.spec.writable.iter().any(|w| w == *n))
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            folders.join(", "),
            network_words(self.spec.network, &self.spec.allow)
        )
    }

    fn allowed_folders(&self) -> Vec<PathBuf> {
        self.sandbox.allowed_folders(&self.spec)
    }
}

/// What the network policy lets a command reach, for the model.
fn network_words(policy: NetworkPolicy, allow: &[String]) -> String {
    match policy {
        NetworkPolicy::Open => "Network: open.".into(),
        NetworkPolicy::None => {
            "Network: none (the user turned it off); downloads and git clone fail.".into()
        }
        NetworkPolicy::Allowlist => {
            format!(
            "Network: only these hosts, over HTTP(S) through a proxy set in the environment: {}. \
             Others are blocked by the user's policy: do not retry them, ask the user.",
            if allow.is_empty() { "none yet".to_string() } else { allow.join(", ") }
        )
        }
    }
}
