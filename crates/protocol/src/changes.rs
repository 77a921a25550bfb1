//! What a run changed in its folder (`GET /v1/runs/{id}/changes`): each file added, removed,
//! modified, renamed, its mode changed or replaced (a link pointing elsewhere, a file made a
//! folder), with what it was and is: kind, size, mode, and the name of its kept content.

use serde::{Deserialize, Serialize};

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Modified,
    /// Only its permissions.
    Mode,
    /// Moved from `from` (the same file), maybe changed too.
    Renamed,
    /// A link pointing elsewhere, or a file that became a folder (or the other way).
    Replaced,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Link,
    Other,
    /// A generated folder (`node_modules`, `target`...) or `.git`: its content is not
    /// recorded.
    Unrecorded,
}

/// A file as it was or is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    /// The kept content's name (SHA-256); none when it is not kept (over the size limit, not
    /// a file, or unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A link's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// One file's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Relative to the folder (lossy UTF-8; `path_bytes` has the name when it is not UTF-8).
    pub path: String,
    /// The name's bytes, base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<String>,
    pub change: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<FileState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<FileState>,
    /// Where a renamed file was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// A run's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunChanges {
    pub run_id: String,
    /// The folder recorded: the run's workspace (sandbox and protected tiers) or project (the
    /// git repository above its folder, else the folder).
    pub folder: String,
    /// False when the folder was not recorded; `reason` says why.
    pub recorded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub files: Vec<FileChange>,
    /// Another run worked in the folder at the same time: its changes are here too (and the
    /// user's own edits while the run went).
    #[serde(default)]
    pub overlapped: bool,
}

/// A name as it may go in a line for an agent or a terminal: control characters (a newline
/// that would start a line of its own, an escape sequence) shown escaped, and at most 200
/// characters.
pub fn printable(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == 200 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl RunChanges {
    /// One line for an agent: `changed 3 files: src/a.rs (modified), b.txt (added), ...`.
    pub fn summary_line(&self) -> Option<String> {
        if !self.recorded || self.files.is_empty() {
            return None;
        }
        let shown: Vec<String> = self
            .files
            .iter()
            .take(8)
            .map(|f| {
                let how = match f.change {
                    ChangeKind::Added => "added",
                    ChangeKind::Removed => "removed",
                    ChangeKind::Modified => "modified",
                    ChangeKind::Mode => "mode",
                    ChangeKind::Renamed => "renamed",
                    ChangeKind::Replaced => "replaced",
                };
                format!("{} ({how})", printable(&f.path))
            })
            .collect();
        let more = self.files.len().saturating_sub(shown.len());
        let n = self.files.len();
        Some(format!(
            "changed {n} file{}: {}{}",
            if n == 1 { "" } else { "s" },
            shown.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            }
        ))
    }
}
