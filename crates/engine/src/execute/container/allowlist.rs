//! The sandbox's side of the network policy: the plan a new container is made with, the runs
//! watched for refused connections, and the policy's view and changes.

use std::path::Path;
use std::sync::Arc;

use super::netplan::Plan;
use super::run::ContainerGone;
use super::{Sandbox, SandboxSpec};
use crate::error::Result;
use crate::execute::{ExecOutcome, ExecRequest};
use crate::network::supervisor::Door;
use crate::network::NetworkPolicy;
use crate::network::{NetworkView, RunNet};

/// A run being watched, and the proxy's generation when it started.
pub(crate) struct Watched(Option<(Arc<RunNet>, u64)>);

impl Sandbox {
    /// The network a new container gets; for the allowlist, a door of its own to the proxy,
    /// started if needed.
    pub(super) async fn plan(&self, spec: &SandboxSpec) -> Result<Plan> {
        Ok(match spec.network {
            NetworkPolicy::Open => Plan::Open,
            NetworkPolicy::None => Plan::None,
            NetworkPolicy::Allowlist => {
                self.proxy.ensure(&spec.allow).await?;
                Plan::Allowlist(Arc::new(self.proxy.open_door().await?))
            }
        })
    }

    /// A door to the proxy for one protected run (the allowlist), the proxy started if needed.
    #[cfg_attr(windows, allow(dead_code))]
    pub(crate) async fn open_run_door(&self, spec: &SandboxSpec) -> Result<Arc<Door>> {
        self.proxy.ensure(&spec.allow).await?;
        Ok(Arc::new(self.proxy.open_door().await?))
    }

    /// A protected run's end: what the policy refused, as for a container's run.
    #[cfg_attr(windows, allow(dead_code))]
    pub(crate) async fn end_run_watch(
        &self,
        watched: Watched,
        outcome: Result<ExecOutcome>,
    ) -> Result<ExecOutcome> {
        self.end_watch(watched, Ok(outcome))
            .await
            .unwrap_or_else(|_| Err(crate::error::Error::internal("no container here")))
    }

    /// Start watching a run in an allowlist container or protected run, by its door (no-op
    /// for others).
    pub(crate) fn watch_run(
        &self,
        door: Option<&str>,
        workspace: &Path,
        req: &ExecRequest,
    ) -> Watched {
        let Some(door) = door else {
            return Watched(None);
        };
        let run = self.net.begin(
            door.to_string(),
            req.command.display(),
            workspace.display().to_string(),
        );
        Watched(Some((run, self.proxy.generation())))
    }

    /// Stop watching: what the policy refused, and whether the proxy restarted meanwhile,
    /// go into the outcome (so the agent's reply says it).
    pub(super) async fn end_watch(
        &self,
        watched: Watched,
        result: std::result::Result<Result<ExecOutcome>, ContainerGone>,
    ) -> std::result::Result<Result<ExecOutcome>, ContainerGone> {
        let Watched(Some((run, generation))) = watched else {
            return result;
        };
        self.proxy.sync().await;
        self.net.end(&run);
        result.map(|r| {
            r.map(|mut o| {
                o.network_blocked = run.blocked.lock().clone();
                o.network_interrupted = self.proxy.generation() != generation;
                o
            })
        })
    }

    /// The policy, the list and the refusals of late.
    pub fn network_view(&self, policy: NetworkPolicy, allow: &[String]) -> NetworkView {
        NetworkView {
            policy,
            allow: allow.to_vec(),
            blocked: self.net.recent(),
            proxy_pid: None,
        }
    }

    /// A new allowlist: the proxy judges connections by it from now on.
    pub async fn set_allowlist(&self, allow: &[String]) {
        self.proxy.set_allow(allow).await;
        self.net.forget(allow);
    }

    /// The proxy's process id, while it runs.
    pub async fn proxy_pid(&self) -> Option<u32> {
        self.proxy.pid().await
    }

    /// A new policy applies to the next command: containers made under another one are
    /// removed once idle (at once when idle now).
    pub async fn retire_other_networks(&self, policy: NetworkPolicy) -> usize {
        self.pool.lock().retire_other_networks(policy);
        self.reap(false).await
    }
}
