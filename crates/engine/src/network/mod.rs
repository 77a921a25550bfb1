//! The sandbox's allowlist network policy: its decisions ([`policy`]), its proxy ([`proxy`],
//! a process of its own), the supervisor that keeps the proxy running ([`supervisor`]), and
//! [`NetWatch`], which tells who a refusal came from.

pub mod policy;
pub mod proxy;
pub mod supervisor;

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
pub use stigmer_protocol::network::{BlockedConnection, NetworkPolicy, NetworkView};

use crate::events::{Event, EventBus};
use supervisor::Blocked;

/// How many refused connections are remembered for the window.
const BLOCKED_KEPT: usize = 30;
/// How many refused hosts one run's reply names.
const BLOCKED_PER_RUN: usize = 20;

/// A run in a container on the allowlist network, while it runs.
pub struct RunNet {
    /// The proxy door of its container.
    pub door: String,
    pub command: String,
    pub workspace: String,
    /// Hosts refused while it ran, in order, once each.
    pub blocked: Mutex<Vec<String>>,
}

/// The runs on the allowlist network and the refusals of late.
pub struct NetWatch {
    bus: EventBus,
    runs: Mutex<Vec<Arc<RunNet>>>,
    recent: Mutex<VecDeque<BlockedConnection>>,
}

impl NetWatch {
    pub fn new(bus: EventBus) -> Arc<NetWatch> {
        Arc::new(NetWatch {
            bus,
            runs: Mutex::default(),
            recent: Mutex::default(),
        })
    }

    pub fn begin(&self, door: String, command: String, workspace: String) -> Arc<RunNet> {
        let run = Arc::new(RunNet {
            door,
            command,
            workspace,
            blocked: Mutex::default(),
        });
        self.runs.lock().push(run.clone());
        run
    }

    pub fn end(&self, run: &Arc<RunNet>) {
        self.runs.lock().retain(|r| !Arc::ptr_eq(r, run));
    }

    /// A refusal from the proxy: told to the runs of that container (the newest names the
    /// command), remembered, announced.
    pub fn on_blocked(&self, b: Blocked) {
        let runs: Vec<Arc<RunNet>> = self
            .runs
            .lock()
            .iter()
            .filter(|r| r.door == b.door)
            .cloned()
            .collect();
        for r in &runs {
            let mut hosts = r.blocked.lock();
            if !hosts.contains(&b.host) && hosts.len() < BLOCKED_PER_RUN {
                hosts.push(b.host.clone());
            }
        }
        let newest = runs.last();
        let record = BlockedConnection {
            host: b.host,
            port: b.port,
            reason: b.reason,
            can_allow: b.can_allow,
            command: newest.map(|r| r.command.clone()),
            workspace: newest.map(|r| r.workspace.clone()),
            time_ms: crate::util::now_ms(),
        };
        {
            let mut recent = self.recent.lock();
            // The same refusal again (a loop): its time is updated, not logged or announced
            // again, so a command cannot flood the log or the window.
            let again = recent.iter().any(|r| {
                (&r.host, r.port, &r.command, &r.reason)
                    == (&record.host, record.port, &record.command, &record.reason)
            });
            recent.retain(|r| {
                (&r.host, r.port, &r.command) != (&record.host, record.port, &record.command)
            });
            recent.push_back(record.clone());
            while recent.len() > BLOCKED_KEPT {
                recent.pop_front();
            }
            if again {
                return;
            }
        }
        tracing::warn!(host = %record.host, port = record.port, command = record.command.as_deref().unwrap_or("-"), "sandbox connection blocked: {}", record.reason);
        self.bus.publish(Event::NetworkBlocked { blocked: record });
    }

    /// The refusals of late, newest first.
    pub fn recent(&self) -> Vec<BlockedConnection> {
        self.recent.lock().iter().rev().cloned().collect()
    }

    /// Forget the refusals the allowlist now lets through (the window's Allow).
    pub fn forget(&self, allow: &[String]) {
        self.recent
            .lock()
            .retain(|r| !(r.can_allow && policy::decide(&r.host, r.port, allow).is_ok()));
    }
}
