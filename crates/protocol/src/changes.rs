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

impl ChangeKind {
    /// The word for it, as on the wire.
    pub fn word(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Modified => "modified",
            ChangeKind::Mode => "mode",
            ChangeKind::Renamed => "renamed",
            ChangeKind::Replaced => "replaced",
        }
    }
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
    /// The target's bytes, base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_bytes: Option<String>,
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
    /// That name's bytes, base64, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_bytes: Option<String>,
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
    /// Contents could not be kept (a full disk): why. The files are listed; those whose
    /// earlier content is missing cannot be put back by an undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unkept: Option<String>,
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
        push_escaped(&mut out, c);
    }
    out
}

/// A text as it may go in a line (a reason, a folder): control characters escaped, whole.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    text.chars().for_each(|c| push_escaped(&mut out, c));
    out
}

fn push_escaped(out: &mut String, c: char) {
    if c.is_control() {
        out.extend(c.escape_default());
    } else {
        out.push(c);
    }
}

impl RunChanges {
    /// One line for an agent: `changed 216 files: src/a.rs (modified), removed build/ (214
    /// files), ...`; a folder added or removed whole is one item.
    pub fn summary_line(&self) -> Option<String> {
        if !self.recorded || self.files.is_empty() {
            return None;
        }
        let is_dir = |f: &FileChange| {
            let s = if f.change == ChangeKind::Removed {
                &f.before
            } else {
                &f.after
            };
            s.as_ref().is_some_and(|s| s.kind == EntryKind::Dir)
        };
        // Folders added or removed whole, outermost only.
        let whole: Vec<&FileChange> = self
            .files
            .iter()
            .filter(|f| matches!(f.change, ChangeKind::Added | ChangeKind::Removed) && is_dir(f))
            .collect();
        let under = |f: &FileChange, d: &FileChange| {
            f.change == d.change && f.path.starts_with(&format!("{}/", d.path))
        };
        let mut items = Vec::new();
        for f in &self.files {
            if whole.iter().any(|d| under(f, d)) {
                continue;
            }
            if whole.iter().any(|d| std::ptr::eq(*d, f)) {
                let n = self
                    .files
                    .iter()
                    .filter(|g| under(g, f) && !is_dir(g))
                    .count();
                items.push(format!(
                    "{} {}/ ({n} file{})",
                    f.change.word(),
                    printable(&f.path),
                    if n == 1 { "" } else { "s" }
                ));
            } else {
                items.push(format!("{} ({})", printable(&f.path), f.change.word()));
            }
        }
        let files = self.files.iter().filter(|f| !is_dir(f)).count();
        let (n, what) = if files > 0 {
            (files, if files == 1 { "file" } else { "files" })
        } else {
            let n = self.files.len();
            (n, if n == 1 { "folder" } else { "folders" })
        };
        let more = items.len().saturating_sub(8);
        items.truncate(8);
        Some(format!(
            "changed {n} {what}: {}{}",
            items.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            }
        ))
    }
}

/// What an undo does with a file changed again since the run (by the user or a later
/// command).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Later {
    /// Nothing is undone; the report names those files (and the later runs that changed them).
    #[default]
    Refuse,
    /// They are put back as they were before the run too: the later changes are lost.
    Overwrite,
    /// They are left as they are now; the rest is undone.
    Keep,
}

/// `POST /v1/runs/{id}/undo`: a JSON object (`{}` for the defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UndoRequest {
    pub later: Later,
}

impl<'de> Deserialize<'de> for UndoRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            later: Later,
        }
        // Only an object: serde alone would read `[]` as the defaults too.
        let v = serde_json::Value::deserialize(d)?;
        if !v.is_object() {
            return Err(D::Error::custom(
                "the body must be a JSON object, such as {\"later\": \"refuse\"}",
            ));
        }
        let f = Fields::deserialize(v).map_err(D::Error::custom)?;
        Ok(UndoRequest { later: f.later })
    }
}

/// Why a file is not (or was not) put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoProblem {
    /// It changed again after the run (or whether it did cannot be told: its content now is
    /// not kept).
    ChangedSince,
    /// What it was before the run is not kept (over the size limit, a socket or a pipe): it
    /// cannot be put back.
    NotKept,
    /// A generated folder or `.git`, whose content is never recorded: left as it is.
    Generated,
    /// Another run, or the user, worked in the folder while the run went: whose change this
    /// was cannot be told.
    Overlapped,
    /// Putting it back failed (the detail says why).
    Failed,
}

/// A file an undo did not put back, or would not without being told to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoFile {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<String>,
    pub problem: UndoProblem,
    /// Runs after this one that changed it, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later_runs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What an undo did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoReport {
    /// The run undone.
    pub run_id: String,
    /// False: nothing was changed, `conflicts` says why.
    pub undone: bool,
    /// The undo's own run (it is recorded like a command: undoing it redoes the command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_run: Option<String>,
    /// Files put back as they were.
    pub restored: u64,
    /// Files that stopped the undo (with `later: refuse`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<UndoFile>,
    /// Files left as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<UndoFile>,
    /// Later runs that changed the conflicting files, newest first (undo them first to undo
    /// this one cleanly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later_runs: Vec<String>,
    /// Anything else the user should know (the undo itself could not be recorded, so it
    /// cannot be undone in turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl FileChange {
    /// The name's bytes (`path_bytes` when it is not UTF-8).
    pub fn name_bytes(&self) -> Option<Vec<u8>> {
        raw(&self.path, self.path_bytes.as_deref())
    }

    /// Where a renamed file was, as bytes.
    pub fn from_name_bytes(&self) -> Option<Vec<u8>> {
        raw(self.from.as_deref()?, self.from_bytes.as_deref())
    }
}

impl FileState {
    /// A link's target, as bytes.
    pub fn target_name_bytes(&self) -> Option<Vec<u8>> {
        raw(self.target.as_deref()?, self.target_bytes.as_deref())
    }
}

/// A name's bytes: its base64 bytes when given (none when they do not decode), else its UTF-8.
fn raw(text: &str, bytes: Option<&str>) -> Option<Vec<u8>> {
    use base64::Engine as _;
    match bytes {
        Some(b) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
        None => Some(text.as_bytes().to_vec()),
    }
}

/// One file of a run's diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    pub path: String,
    pub change: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Its size before and after the run (none: it was not, or is not, a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_size: Option<u64>,
    /// A unified diff of a text file; none when `note` says why there is none (binary, too
    /// large, its content not kept, a folder or a link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub added_lines: u64,
    pub removed_lines: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /v1/runs/{id}/diff`: what a run changed, as diffs of its text files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDiff {
    pub run_id: String,
    pub folder: String,
    pub recorded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub files: Vec<FileDiff>,
    /// As in [`RunChanges`].
    #[serde(default)]
    pub overlapped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unkept: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, change: ChangeKind, kind: EntryKind) -> FileChange {
        let state = Some(FileState {
            kind,
            size: 1,
            mode: 0o644,
            content: None,
            target: None,
            target_bytes: None,
        });
        FileChange {
            path: path.into(),
            path_bytes: None,
            change,
            before: (change != ChangeKind::Added)
                .then(|| state.clone())
                .flatten(),
            after: (change != ChangeKind::Removed).then_some(state).flatten(),
            from: None,
            from_bytes: None,
        }
    }

    #[test]
    fn a_folder_removed_whole_is_one_item_of_the_line() {
        use ChangeKind::*;
        use EntryKind::*;
        let mut files = vec![
            change("build", Removed, Dir),
            change("build/deep", Removed, Dir),
            change("src/a.rs", Modified, File),
        ];
        files.extend((0..214).map(|i| change(&format!("build/deep/f{i}.o"), Removed, File)));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let c = RunChanges {
            run_id: "run_1".into(),
            folder: "/p".into(),
            recorded: true,
            reason: None,
            files,
            overlapped: false,
            unkept: None,
        };
        assert_eq!(
            c.summary_line().unwrap(),
            "changed 215 files: removed build/ (214 files), src/a.rs (modified)"
        );
    }
}
