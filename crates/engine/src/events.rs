//! The event stream the desktop app subscribes to: runs started, their output, runs finished,
//! mode changes and log lines. Slow subscribers miss events (they are told how many) rather
//! than slowing down runs.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::error::Error;
use crate::exec::Stream;
use crate::runs::RunSummary;
use crate::sandbox::images::ImageAction;
use crate::sandbox::progress::Progress;
use crate::sandbox::RefusedRun;
use crate::settings::{Mode, Tier};

/// How many events a subscriber may fall behind before it starts missing some.
pub const CAPACITY: usize = 1024;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run: RunSummary,
    },
    RunOutput {
        run_id: String,
        stream: Stream,
        /// The bytes, base64 (standard alphabet, padded).
        data: String,
    },
    RunFinished {
        run: RunSummary,
    },
    ModeChanged {
        mode: Mode,
        image: String,
        tier: Tier,
    },
    /// A sandbox image starts downloading or building (happens once per image).
    ImageStarted {
        image: String,
        action: ImageAction,
    },
    /// How a download or build goes, at most a few times a second.
    ImageProgress {
        image: String,
        action: ImageAction,
        progress: Progress,
    },
    /// A download or build ended: ready, or failed and why.
    ImageFinished {
        image: String,
        action: ImageAction,
        ok: bool,
        error: Option<Error>,
        duration_ms: u64,
    },
    /// A sandbox run was refused because of its folder (the window offers to allow it).
    WorkspaceRefused {
        refused: RefusedRun,
    },
    /// The user's sandbox workspaces changed (window, `stigmer workspaces`, API).
    WorkspacesChanged {
        workspaces: Vec<std::path::PathBuf>,
    },
    Log {
        level: String,
        target: String,
        message: String,
        /// Milliseconds since the Unix epoch.
        time_ms: u64,
    },
    /// Sent when nothing happened for a while (keeps idle connections alive).
    Heartbeat,
    /// Sent to a subscriber that fell behind: this many events were skipped.
    Lagged {
        missed: u64,
    },
}

#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// Whether anyone listens (so output need not be encoded for nobody).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
