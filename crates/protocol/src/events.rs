//! What happens in the server, as `GET /v1/events` streams it: runs, mode changes, sandbox
//! image downloads and builds, refused folders, log lines.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::clients::{Approval, ApprovalEnd};
use crate::error::Error;
use crate::mode::{Mode, Tier};
use crate::run::{RunSummary, Stream};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A command waits for the user's Allow or Deny (its client's rule is `ask`).
    ApprovalRequested {
        approval: Approval,
    },
    /// A wait ended: answered, timed out, or its client hung up.
    ApprovalEnded {
        id: String,
        end: ApprovalEnd,
    },
    /// The user changed a client's tier or rule.
    ClientsChanged,
    /// The allowlist network policy refused a sandbox's connection (the window offers to
    /// allow its host).
    NetworkBlocked {
        blocked: crate::network::BlockedConnection,
    },
    /// The network policy or the allowlist changed (window, tray, `stigmer config`, API).
    NetworkChanged {
        policy: crate::network::NetworkPolicy,
        allow: Vec<String>,
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

/// What is being done to an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageAction {
    Pull,
    Build,
}

/// What a download or build is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Asking the registry what to download.
    Resolving,
    Downloading,
    Extracting,
    Building,
}

/// One progress report, as published on the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: Phase,
    /// 0 to 100, when the total is known.
    pub percent: Option<f64>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub rate_bytes_per_sec: u64,
    pub elapsed_ms: u64,
    /// For builds: the current step, e.g. `Step 3/9 : RUN apt-get ...`.
    pub detail: Option<String>,
}

/// Why a folder cannot be a sandbox's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The folder asked for (links resolved).
    pub folder: PathBuf,
    pub reason: String,
    /// Whether the user can allow it (a folder outside the workspaces), or never (a folder
    /// that is never mounted).
    pub can_allow: bool,
}

/// A request refused because of its folder: who asked, for what, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRun {
    pub client: Option<String>,
    pub command: String,
    #[serde(flatten)]
    pub refusal: Refusal,
    pub time_ms: u64,
}
