//! Commands that wait for the user: under a client's rule `ask`, a command is held here until
//! the user allows or denies it (the window, a notification's buttons), or the time runs out,
//! which is a denial. Nothing runs before the answer. Only an open Stigmer app can ask the
//! user: without one ("approvers", the app's event subscription), the request is answered at
//! once, saying so, rather than left waiting for nobody.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use stigmer_protocol::clients::{Approval, ApprovalEnd, Decision};

use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};

struct Pending {
    approval: Approval,
    answer: oneshot::Sender<Decision>,
}

pub struct Approvals {
    pending: Mutex<BTreeMap<String, Pending>>,
    bus: EventBus,
    approvers: AtomicUsize,
}

/// Held by an app that can answer (its event stream); dropping it says the app is gone.
pub struct Approver(Arc<Approvals>);

impl Drop for Approver {
    fn drop(&mut self) {
        self.0.approvers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Ends a wait however it ends: the entry goes, and the window hears how.
struct Waiting<'a> {
    approvals: &'a Approvals,
    id: String,
    end: ApprovalEnd,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.approvals.pending.lock().remove(&self.id);
        self.approvals.bus.publish(Event::ApprovalEnded {
            id: self.id.clone(),
            end: self.end,
        });
    }
}

impl Approvals {
    pub fn new(bus: EventBus) -> Arc<Approvals> {
        Arc::new(Approvals {
            pending: Mutex::default(),
            bus,
            approvers: AtomicUsize::new(0),
        })
    }

    /// Count an app that can ask the user, until the returned guard drops.
    pub fn approver(self: &Arc<Self>) -> Approver {
        self.approvers.fetch_add(1, Ordering::SeqCst);
        Approver(self.clone())
    }

    pub fn has_approver(&self) -> bool {
        self.approvers.load(Ordering::SeqCst) > 0
    }

    /// Hold `approval` until the user answers or `timeout` passes. Allowed: the decision
    /// (once, or always for this client). Denied, timed out or nobody to ask: the error the
    /// client gets. A caller that goes away (its client hung up) withdraws the question.
    pub async fn ask(&self, approval: Approval, timeout: Duration) -> Result<Decision> {
        if !self.has_approver() {
            return Err(unavailable(&approval.client));
        }
        let (tx, rx) = oneshot::channel();
        let id = approval.id.clone();
        let client = approval.client.clone();
        self.pending.lock().insert(
            id.clone(),
            Pending {
                approval: approval.clone(),
                answer: tx,
            },
        );
        let mut waiting = Waiting {
            approvals: self,
            id,
            end: ApprovalEnd::Abandoned,
        };
        tracing::info!(approval = %approval.id, client = %client, command = %approval.command, "waiting for the user's approval");
        self.bus.publish(Event::ApprovalRequested { approval });
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Decision::Deny)) => {
                waiting.end = ApprovalEnd::Denied;
                Err(Error::new(
                    ErrorCode::DeniedByUser,
                    "the user denied this command in Stigmer; nothing ran. Do not run it again \
                     unless the user asks you to",
                ))
            }
            Ok(Ok(allowed)) => {
                waiting.end = ApprovalEnd::Allowed;
                Ok(allowed)
            }
            // The server is stopping (the sender went with the list).
            Ok(Err(_)) => Err(Error::new(
                ErrorCode::ServerUnavailable,
                "the server stopped before the user answered; nothing ran",
            )),
            Err(_) => {
                waiting.end = ApprovalEnd::TimedOut;
                Err(Error::new(
                    ErrorCode::DeniedByUser,
                    format!(
                        "the user did not approve this command within {} s, which counts as a denial; nothing ran. \
                         Ask the user before trying again",
                        timeout.as_secs()
                    ),
                ))
            }
        }
    }

    /// The user's answer to one waiting command.
    pub fn answer(&self, id: &str, decision: Decision) -> Result<Approval> {
        let pending = self.pending.lock().remove(id).ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                format!("no command waits for approval with id `{id}` (it was answered, timed out or withdrawn)"),
            )
        })?;
        // The asker may have just timed out; its answer is then moot.
        let _ = pending.answer.send(decision);
        Ok(pending.approval)
    }

    /// The commands waiting, oldest first.
    pub fn pending(&self) -> Vec<Approval> {
        let mut list: Vec<Approval> = self
            .pending
            .lock()
            .values()
            .map(|p| p.approval.clone())
            .collect();
        list.sort_by_key(|a| a.requested_at_ms);
        list
    }

    /// Deny everything waiting (server stop).
    pub fn close(&self) {
        self.pending.lock().clear();
    }
}

/// The reply when nobody can be asked.
pub fn unavailable(client: &str) -> Error {
    Error::new(
        ErrorCode::ApprovalUnavailable,
        format!(
            "the user wants to approve `{client}`'s commands first, and no Stigmer app is open to ask them; nothing ran. \
             Tell the user to open Stigmer (or to change the rule for `{client}` in its Agents section), then try again"
        ),
    )
}
