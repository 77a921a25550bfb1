//! Containers kept, reused and removed: the key's container made or reused for a run, idle
//! ones removed after their TTL, those of a crashed server or CLI run, and all on prune.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

use super::containers::{self};
use super::netplan;
use super::pool::{ContainerKey, Warm};
use super::{Sandbox, SandboxSpec};
use crate::error::Result;
use crate::execute::held::Held;

impl Sandbox {
    /// The container of `key`, whose mount is the `held` folder, made if needed; counts the
    /// run in until [`Pool::leave`].
    pub(super) async fn acquire(
        &self,
        docker: &Docker,
        spec: &SandboxSpec,
        key: &ContainerKey,
        held: &Arc<Held>,
    ) -> Result<Warm> {
        let ttl = Duration::from_secs(spec.ttl_secs);
        let creating = self.pool.lock().enter(key, ttl, spec.cleanup);
        let _one_at_a_time = creating.lock().await;
        let warm = self.pool.lock().warm(key);
        if let Some(warm) = warm {
            // Its helper gone (killed, the engine restarted), made for a folder the path no
            // longer names, or a run created a host-run file it does not guard: start over.
            if warm.conn.alive() && warm.mounted == held.identity && !warm.is_stale() {
                warm.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Ok(warm);
            }
            self.pool.lock().forget(key, &warm.id);
            // A run of the same agent still going in it keeps it until that run ends.
            if !warm.conn.alive() || warm.retire() {
                let _ = containers::remove(docker, &warm.id).await;
            }
        }
        match self.create(docker, spec, key, held).await {
            Ok(warm) => {
                warm.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.pool.lock().set(key, Some(warm.clone()));
                Ok(warm)
            }
            Err(e) => {
                self.pool.lock().leave(key);
                Err(e)
            }
        }
    }

    /// Remove containers idle for longer than their TTL (all idle ones with `all`, when
    /// cleanup is on for them). Returns how many were removed.
    pub async fn reap(&self, all: bool) -> usize {
        let expired = self.pool.lock().expired(all);
        if expired.is_empty() {
            return 0;
        }
        let Ok(docker) = self.docker().await else {
            return 0;
        };
        for id in &expired {
            containers::remove(&docker, id).await;
        }
        expired.len()
    }

    /// Remove this installation's containers left by a server or CLI run that is gone (a
    /// crash), and their doors to the proxy. Containers of other installations, and of live
    /// CLI runs, are never touched.
    pub async fn remove_orphans(&self) -> Result<usize> {
        let doors = self.proxy.remove_orphan_doors();
        if doors > 0 {
            tracing::info!(doors, "removed doors to the proxy left by an earlier run");
        }
        let docker = self.docker().await?;
        let mut removed = 0;
        for c in containers::list_own(&docker, &self.owner.home).await? {
            let dead_cli = c
                .owner
                .strip_prefix("cli-")
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| !process_alive(pid));
            // This installation's lock is ours: any other server of it is gone.
            let dead_server = c.owner.starts_with("server-") && c.owner != self.owner.owner;
            if dead_server || dead_cli {
                containers::remove(&docker, &c.id).await;
                removed += 1;
            }
        }
        netplan::remove_old_network(&docker, &self.owner.home).await;
        Ok(removed)
    }

    /// Remove every container of this installation (`stigmer sandbox prune`).
    pub async fn prune(&self) -> Result<usize> {
        let docker = self.docker().await?;
        let list = containers::list_own(&docker, &self.owner.home).await?;
        for c in &list {
            containers::remove(&docker, &c.id).await;
        }
        self.pool.lock().clear();
        Ok(list.len())
    }
}

fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}
