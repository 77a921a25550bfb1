//! A run: what a client asks for, the stream it gets back, and how the run ended.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::mode::Mode;

/// The body of `POST /v1/runs`: a run, as every client asks for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Program and arguments, run without a shell. Exactly one of `argv` and `shell`.
    pub argv: Option<Vec<String>>,
    /// How `argv`'s elements are written: text (the default), or `base64` of their bytes for
    /// arguments that are not UTF-8 (file names on Linux can be any bytes but NUL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv_encoding: Option<ArgvEncoding>,
    /// A command line for `/bin/sh -c`.
    pub shell: Option<String>,
    /// Absolute working directory; the user's home directory when absent.
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout_secs: Option<f64>,
    /// Overrides the server's mode for this run.
    pub mode: Option<String>,
    /// Overrides the sandbox image for this run.
    pub image: Option<String>,
    /// Who is asking, shown in the app's activity (for example `stigmer-cli`).
    pub client: Option<String>,
    /// The folder the client's session was started in, by the user (what `stigmer mcp` and
    /// `stigmer run` send): sandboxed runs may work in it too, besides the user's workspaces.
    /// Never an agent's choice: no MCP tool takes it.
    pub workspace: Option<PathBuf>,
}

/// How the elements of a run request's `argv` are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgvEncoding {
    Utf8,
    Base64,
}

/// One item of a run's stream (an NDJSON line, an SSE `data:` payload, or a JSON frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunStreamLine {
    Started {
        run: Box<RunSummary>,
    },
    /// Output bytes, base64 (standard alphabet, padded), in NDJSON and SSE only: binary frames
    /// carry them raw.
    Output {
        stream: Stream,
        data: String,
    },
    Finished {
        run: Box<RunSummary>,
    },
    /// Sent when nothing else was for a while: proves the stream alive and lets the server
    /// notice a client that hung up (which cancels the run).
    Heartbeat,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecOutcome {
    /// The exit code, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when a signal did.
    pub signal: Option<i32>,
    /// The timeout expired and the command was killed.
    pub timed_out: bool,
    /// The run was cancelled and the command was killed.
    pub cancelled: bool,
    /// From start to exit, in milliseconds.
    pub duration_ms: f64,
    /// Hosts the sandbox's network policy refused while it ran (so the agent stops retrying).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_blocked: Vec<String>,
    /// The sandbox's network proxy stopped while it ran (it was restarted): network calls
    /// made meanwhile failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_interrupted: bool,
    /// Files that programs on the host run or obey (`.vscode`, `.envrc`, a new `.git`...)
    /// that this sandboxed command created where they could not be kept read-only: the user
    /// should look at them before opening the folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_files: Vec<String>,
    /// What the command changed in its folder, in one line (`changed 2 files: a.rs
    /// (modified), b.txt (added)`); the whole list at `GET /v1/runs/{id}/changes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<String>,
    /// Why what the command changed in its folder was not recorded (a folder too large, one
    /// that cannot be read): said once in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrecorded: Option<String>,
}

impl ExecOutcome {
    /// The exit code a shell would give: 124 on timeout, 128+N on signal N.
    pub fn shell_exit_code(&self) -> i32 {
        if self.timed_out {
            124
        } else if let Some(sig) = self.signal {
            128 + sig
        } else if self.cancelled {
            130
        } else {
            self.exit_code.unwrap_or(125)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Finished,
    Failed,
    /// The server stopped (a crash, a kill) before the run ended: how it ended is unknown.
    Interrupted,
}

impl RunState {
    pub const ALL: [RunState; 4] = [
        RunState::Running,
        RunState::Finished,
        RunState::Failed,
        RunState::Interrupted,
    ];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn parse(word: &str) -> Option<RunState> {
        RunState::ALL
            .into_iter()
            .find(|s| s.as_str() == word.trim())
    }
}

/// The start and the end of one output stream, and exactly what lies between.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSummary {
    pub total_bytes: u64,
    pub total_lines: u64,
    /// The first bytes (lossy UTF-8).
    pub head: String,
    /// The last bytes (lossy UTF-8); empty when everything fits in `head`.
    pub tail: String,
    pub omitted_bytes: u64,
    pub omitted_lines: u64,
    /// Bytes kept on disk and readable by page (`GET /v1/runs/{id}/output`): all of them
    /// unless the stream passed the spool's limit or older runs' output made room for newer.
    #[serde(default)]
    pub stored_bytes: u64,
}

/// One run as listed by the API and shown in the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    /// The command as one line (argv shell-quoted).
    pub command: String,
    pub mode: Mode,
    /// The sandbox image, in sandbox mode.
    pub image: Option<String>,
    pub cwd: PathBuf,
    /// Who asked for the run (for example `stigmer-cli`), when the client said.
    pub client: Option<String>,
    pub state: RunState,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub outcome: Option<ExecOutcome>,
    pub error: Option<Error>,
    pub stdout: OutputSummary,
    pub stderr: OutputSummary,
}

/// The query of `GET /v1/runs`: which runs, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// Runs per page (1 to 200; 50 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The last id of the previous page: only older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Only this client's runs (`other`: runs whose client gave no name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
    /// Only runs whose command or folder contains this text (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

/// `GET /v1/runs`: the most recent runs first; `next_before` (when more are older) gives the
/// next page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// One page of a run's output, as the API and the MCP tool return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputPage {
    pub run_id: String,
    pub stream: Stream,
    /// Where this page starts, in bytes from the start of the stream.
    pub offset: u64,
    /// Where the next page starts; equal to `offset` when there is nothing more (yet).
    pub next_offset: u64,
    /// Bytes the stream has so far.
    pub total_bytes: u64,
    /// Bytes of the stream that are kept and can be read.
    pub stored_bytes: u64,
    /// True when the run has ended and this page reaches the end of what is kept.
    pub eof: bool,
    /// The page (UTF-8; invalid bytes are shown as U+FFFD).
    pub text: String,
}

/// Variables set for, or removed from, every command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEnv {
    pub set: BTreeMap<String, String>,
    /// Removed from the command's environment (an empty value in `[env]`).
    pub unset: BTreeSet<String>,
}
