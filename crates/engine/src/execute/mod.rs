//! Where a command runs. Every backend is an [`Executor`]: this machine ([`local`]), this
//! machine confined by the operating system ([`protected`]) or a sandbox container
//! ([`container`]); remote hosts or pods would be more of them. A run's
//! executor is chosen in one place, [`target`], from the settings and the request; nothing
//! else looks at the mode. Sandbox mode never falls back to the host.

pub mod container;
pub mod held;
pub mod local;
pub mod protected;
pub mod request;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use local::{default_signals_for_commands, detach_from_terminal, run_local, Local};
pub use request::{
    check_cwd, timeout_from_secs, Chunk, CommandSpec, ExecRequest, KILL_GRACE, MAX_TIMEOUT_SECS,
};
pub use stigmer_protocol::run::{ExecOutcome, Stream};

use crate::command_env::CommandEnv;
use crate::error::Result;
use crate::settings::{Mode, Settings};
use container::{Container, Sandbox, SandboxSpec};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The folder a backend admits a run to: `folder` is what gets held open (a sandbox's mount,
/// the local working directory), `cwd` where the command starts, inside it.
#[derive(Debug, Clone)]
pub struct Claim {
    pub folder: PathBuf,
    pub cwd: PathBuf,
}

impl Claim {
    /// Hold the folder open: from here on the run uses this handle, not the path.
    pub fn hold(self) -> Result<Place> {
        Ok(Place {
            held: Arc::new(held::hold(&self.folder)?),
            cwd: self.cwd,
        })
    }
}

/// What admission checked, carried to the run: the folder held open (which the backend
/// mounts or enters) and where in it the command starts.
#[derive(Debug, Clone)]
pub struct Place {
    pub held: Arc<held::Held>,
    pub cwd: PathBuf,
}

/// What a backend answers: whether it can take a run, the run itself (output streamed as it
/// comes, cancel, outcome), where runs go that name no folder, how the base environment
/// applies, and what a command there can see.
pub trait Executor: Send + Sync {
    /// The mode a run here is labelled with.
    fn mode(&self) -> Mode;

    /// The image a run here uses, if any.
    fn image(&self) -> Option<&str> {
        None
    }

    /// Refuse, before anything is registered or started, what cannot run here (a folder a
    /// sandbox may not use, no engine), telling whoever watches; or say which folder the run
    /// is admitted to.
    fn admit<'a>(
        &'a self,
        req: &'a ExecRequest,
        client: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Claim>>;

    /// Run `req` in `place` (what admission held): output goes to `out` as it comes (a full
    /// channel slows the command down rather than dropping bytes); `cancel` kills the whole
    /// tree.
    fn run(
        &self,
        req: ExecRequest,
        place: Place,
        out: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ExecOutcome>>;

    /// Where a run that names no folder runs.
    fn default_cwd(&self) -> PathBuf;

    /// Put `base` under the run's own variables (which win); what `base` removes is removed
    /// (locally from the server's environment, in a container by its helper from the image's).
    fn apply_base_env(&self, base: &CommandEnv, req: &mut ExecRequest) {
        let mut env = base.set.clone();
        let removed = base.unset.iter().filter(|k| !req.env.contains_key(*k));
        req.unset_env.extend(removed.cloned());
        env.append(&mut req.env);
        req.env = env;
    }

    /// What a command here can see and change, in words for a person or a model.
    fn confinement(&self) -> String;

    /// The folders a run here may be in; empty when any folder may be used.
    fn allowed_folders(&self) -> Vec<PathBuf>;
}

/// Where one run goes: its executor, and the environment every command starts from.
#[derive(Clone)]
pub struct Target {
    executor: Arc<dyn Executor>,
    env: CommandEnv,
}

/// The one place where a run's backend is chosen: the settings (mode, image, limits, the
/// user's workspaces), the folder the client's session was started in, the engine connection.
pub fn target(
    settings: &Settings,
    session: Option<PathBuf>,
    client: Option<&str>,
    sandbox: &Arc<Sandbox>,
) -> Target {
    let executor: Arc<dyn Executor> = match settings.mode {
        Mode::Local => Arc::new(Local),
        Mode::Protected => Arc::new(protected::Protected::new(
            sandbox.clone(),
            SandboxSpec::from_settings(settings)
                .with_session(session.clone())
                .with_client(client),
            settings.protected_hide.clone(),
            settings.protected_pass_env.clone(),
        )),
        Mode::Sandbox => Arc::new(Container::new(
            sandbox.clone(),
            SandboxSpec::from_settings(settings)
                .with_session(session)
                .with_client(client),
        )),
    };
    Target {
        executor,
        env: settings.command_env(),
    }
}

impl Target {
    pub fn mode(&self) -> Mode {
        self.executor.mode()
    }

    pub fn image(&self) -> Option<&str> {
        self.executor.image()
    }

    pub async fn admit(&self, req: &ExecRequest, client: Option<&str>) -> Result<Claim> {
        self.executor.admit(req, client).await
    }

    pub fn default_cwd(&self) -> PathBuf {
        self.executor.default_cwd()
    }

    pub fn confinement(&self) -> String {
        self.executor.confinement()
    }

    pub fn allowed_folders(&self) -> Vec<PathBuf> {
        self.executor.allowed_folders()
    }

    /// Run `req` on a task of its own, with the base environment under its variables. Only
    /// an admitted run gets here ([`crate::admission::Approved::spawn`]).
    pub(crate) fn spawn(
        &self,
        mut req: ExecRequest,
        place: Place,
        out: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
    ) -> JoinHandle<Result<ExecOutcome>> {
        self.executor.apply_base_env(&self.env, &mut req);
        let executor = self.executor.clone();
        tokio::spawn(async move { executor.run(req, place, out, cancel).await })
    }
}
