//! What runs change in their folders: recorded around each run, read back, and undone.

#[cfg(not(target_os = "linux"))]
use std::sync::Arc;

use stigmer_protocol::changes::RunChanges;
#[cfg(not(target_os = "linux"))]
use stigmer_protocol::changes::{Later, UndoReport};
use stigmer_protocol::run::RunState;

use super::RunRegistry;
use crate::admission::Approved;
use crate::changes::folder::folder_for;
use crate::changes::record::Begun;
#[cfg(not(target_os = "linux"))]
use crate::error::ErrorCode;
use crate::error::{Error, Result};

impl RunRegistry {
    /// Before a run: its folder's manifest (blocking work, off the async threads).
    pub(super) async fn begin_recording(&self, run: &Approved) -> Option<Begun> {
        let recorder = self.recorder.clone()?;
        let place = run.place();
        let workspace =
            (run.target().mode() != crate::settings::Mode::Local).then(|| place.held.path.clone());
        let folder = folder_for(&place.cwd, workspace.as_deref(), &crate::paths::user_home())?;
        tokio::task::spawn_blocking(move || recorder.begin(&folder))
            .await
            .ok()
    }

    /// After it: what it changed (or why its folder was not recorded), written to the
    /// history. `ran`: the command ran (one that did not is credited with nothing).
    pub(super) async fn end_recording(
        &self,
        id: &str,
        begun: Option<Begun>,
        ran: bool,
    ) -> Option<RunChanges> {
        let recorder = self.recorder.clone()?;
        let id = id.to_string();
        let changes = match begun? {
            Begun::Recording(session) => {
                let (history, recorder) = (self.history.clone(), recorder.clone());
                return tokio::task::spawn_blocking(move || {
                    let mut changes = recorder.end(&id, *session);
                    if !ran {
                        // It did not run: what changed meanwhile is not its doing.
                        changes.recorded = false;
                        changes.files.clear();
                        changes.reason = Some("the command did not run".into());
                    }
                    history.put_changes(&changes);
                    // In the history now: its contents are referred to.
                    recorder.written();
                    changes
                })
                .await
                .ok();
            }
            Begun::Not { folder, reason } => RunChanges {
                run_id: id,
                folder: folder.display().to_string(),
                recorded: false,
                reason: Some(reason),
                files: Vec::new(),
                overlapped: false,
                unkept: None,
            },
        };
        self.history.put_changes(&changes);
        Some(changes)
    }

    /// What a run changed: its record, or why there is none.
    pub fn changes(&self, id: &str) -> Result<RunChanges> {
        if let Some(c) = self.history.changes(id)? {
            return Ok(c);
        }
        match self.history.get(id)? {
            Some(run) => Ok(RunChanges {
                run_id: id.to_string(),
                folder: run.cwd.display().to_string(),
                recorded: false,
                reason: Some(if run.state == RunState::Running {
                    "the run is still going: its changes are known when it ends".into()
                } else {
                    "nothing was recorded for this run (its folder was the home folder or a \
                     system folder, or it ran before recording began)"
                        .into()
                }),
                files: Vec::new(),
                overlapped: false,
                unkept: None,
            }),
            None => Err(Error::run_not_found(id)),
        }
    }

    /// Disk space the kept contents take (none: changes are not recorded).
    pub fn kept_contents_bytes(&self) -> Option<u64> {
        self.recorder.as_ref().map(|r| r.store().kept_bytes())
    }

    /// What a run changed, as diffs of its text files. Blocking.
    pub fn diff(&self, id: &str) -> Result<stigmer_protocol::changes::RunDiff> {
        let changes = self.changes(id)?;
        match &self.recorder {
            Some(r) => {
                let _one = self.diffing.lock();
                Ok(crate::changes::diff::run_diff(&changes, r.store()))
            }
            None => Ok(stigmer_protocol::changes::RunDiff {
                run_id: changes.run_id,
                folder: changes.folder,
                recorded: false,
                reason: changes.reason,
                files: Vec::new(),
                overlapped: changes.overlapped,
                unkept: changes.unkept,
            }),
        }
    }

    /// Undo is not there yet on this system.
    #[cfg(not(target_os = "linux"))]
    pub async fn undo(self: &Arc<Self>, id: &str, _later: Later) -> Result<UndoReport> {
        let _ = self.changes(id)?;
        Err(Error::new(
            ErrorCode::NothingToUndo,
            "undo is not available on this system yet; what the run changed is listed, and \
             each file's earlier content is kept",
        ))
    }
}
