//! The one way a run request becomes a run, for every entry point (the HTTP API, MCP, the CLI
//! in its own process), in one order, each step a type of its own so that a step cannot be
//! skipped or done twice:
//!
//! 1. [`check`] → [`Checked`]: the client's rule and tier, the command, its mode and image, its
//!    folder and limits ([`crate::intake`]).
//! 2. [`Checked::admit`] → [`Admitted`]: the backend takes it (a sandbox's folder allowed, an
//!    engine there), telling the window when it does not; then the request is validated, once
//!    (its folder exists...). In that order: a folder a sandbox never mounts is refused as
//!    such whether it exists or not, so an agent learns nothing of folders outside its reach.
//!    Then the folder admitted is held open ([`Place`]): the backend mounts or enters that
//!    handle, so a folder renamed or swapped for a link while the user is asked is never what
//!    runs. Nothing is registered before.
//! 3. [`Admitted::approve`] → [`Approved`]: the user said yes, when the client's rule is
//!    `ask` (the user is asked only about a command that can run).
//! 4. [`Approved::spawn`]: the run, on a task of its own.
//!
//! The one difference by nature: in the CLI's own process there is nobody to ask
//! ([`Nobody`]), so a client whose rule is `ask` is refused there, after the same checks.

use std::sync::Arc;
use std::time::Duration;

use stigmer_protocol::clients::{Approval, Decision, OTHER_CLIENT};
use stigmer_protocol::run::RunRequest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::execute::container::Sandbox;
use crate::execute::{BoxFuture, Chunk, ExecOutcome, ExecRequest, Place, Target};
use crate::intake::Intake;
use crate::settings::Settings;
use crate::util::{now_ms, random_hex};

/// Who is asked when a client's rule is `ask`.
pub trait Approver: Send + Sync {
    /// Ask about `approval`, waiting at most `timeout`.
    fn ask(&self, approval: Approval, timeout: Duration) -> BoxFuture<'_, Result<Decision>>;
}

/// In a process of its own the CLI has no window to ask: a run that needs the user's yes is
/// refused, saying how to get one.
pub struct Nobody;

impl Approver for Nobody {
    fn ask(&self, approval: Approval, _: Duration) -> BoxFuture<'_, Result<Decision>> {
        Box::pin(async move { Err(crate::approvals::unavailable(&approval.client)) })
    }
}

/// A request made into a run by the rules; not admitted by a backend yet.
pub struct Checked(Intake);

/// Taken by its backend and validated, its folder held open; not approved yet.
pub struct Admitted(Intake, Place);

/// Ready to run: every check passed, the user's approval included.
pub struct Approved {
    target: Target,
    req: ExecRequest,
    place: Place,
    client: Option<String>,
}

/// Step 1: the run `request` asks for, with `settings` for what it does not say.
pub fn check(request: RunRequest, settings: &Settings, sandbox: &Arc<Sandbox>) -> Result<Checked> {
    Ok(Checked(crate::intake::intake(request, settings, sandbox)?))
}

impl Checked {
    /// Step 2: refused by the backend, or admitted and validated; then the folder it was
    /// admitted to is held open, and that handle (not the path) is what the run uses.
    pub async fn admit(self) -> Result<Admitted> {
        let i = &self.0;
        let claim = i.target.admit(&i.req, i.client.as_deref()).await?;
        i.req.validate()?;
        let place = claim.hold()?;
        Ok(Admitted(self.0, place))
    }
}

impl Admitted {
    /// Step 3: the user's yes, when the client's rule asks for it (waiting at most `timeout`).
    /// Returns the decision too: "always allow" is the caller's to remember.
    pub async fn approve(
        self,
        approver: &dyn Approver,
        timeout: Duration,
    ) -> Result<(Approved, Option<Decision>)> {
        let Admitted(
            Intake {
                target,
                req,
                client,
                ask,
            },
            place,
        ) = self;
        let mut decision = None;
        if ask {
            let requested_at_ms = now_ms();
            let approval = Approval {
                id: format!("ask_{}", random_hex(8)?),
                command: req.command.display(),
                client: client.clone().unwrap_or(OTHER_CLIENT.into()),
                // The folder admitted, links resolved: what the user approves is where it runs.
                cwd: place.cwd.clone(),
                mode: target.mode(),
                image: target.image().map(str::to_string),
                requested_at_ms,
                deadline_ms: requested_at_ms + timeout.as_millis() as u64,
            };
            decision = Some(approver.ask(approval, timeout).await?);
        }
        Ok((
            Approved {
                target,
                req,
                place,
                client,
            },
            decision,
        ))
    }
}

impl Approved {
    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn req(&self) -> &ExecRequest {
        &self.req
    }

    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// The folder the run was admitted to, held open.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// Step 4: run it on a task of its own; output goes to `out` as it comes.
    pub fn spawn(
        self,
        out: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
    ) -> JoinHandle<Result<ExecOutcome>> {
        self.target.spawn(self.req, self.place, out, cancel)
    }
}
