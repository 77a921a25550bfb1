//! Undo: a run's files put back, recorded as a run of its own (Linux).

use std::path::PathBuf;
use std::sync::Arc;

use stigmer_protocol::changes::{escaped, Later, RunChanges, UndoProblem, UndoReport};
use stigmer_protocol::run::{ExecOutcome, OutputSummary, RunState, RunSummary};

use super::{new_run_id, RunRegistry};
use crate::changes::record::Begun;
use crate::error::{Error, ErrorCode, Result};
use crate::events::Event;
use crate::util::now_ms;

/// Later runs looked at for files an undo finds changed since.
const LATER_RUNS_LOOKED_AT: usize = 1_000;

impl RunRegistry {
    /// Put back what run `id` changed in its folder. Files changed again since stop it
    /// (`later: refuse`, the report names them and the later runs that changed them), are
    /// put back too (`overwrite`) or left (`keep`). The undo is recorded as a run of its own,
    /// so it can be undone in turn.
    pub async fn undo(self: &Arc<Self>, id: &str, later: Later) -> Result<UndoReport> {
        let Some(recorder) = self.recorder.clone() else {
            return Err(Error::new(
                ErrorCode::NothingToUndo,
                "nothing is recorded: the history is not kept on disk, so what commands change \
                 is not kept either",
            ));
        };
        let changes = self.changes(id)?;
        if !changes.recorded {
            return Err(Error::new(
                ErrorCode::NothingToUndo,
                format!(
                    "what this run changed was not recorded, so it cannot be undone: {}",
                    escaped(changes.reason.as_deref().unwrap_or("no reason kept"))
                ),
            ));
        }
        let original = self.get(id)?.ok_or_else(|| Error::run_not_found(id))?;
        let folder = PathBuf::from(&changes.folder);
        let later_changes = if changes.files.is_empty() {
            Vec::new()
        } else {
            self.history.later_changes(id, LATER_RUNS_LOOKED_AT)?
        };
        let undo_id = new_run_id()?;
        let started_at_ms = now_ms();
        let (rid, uid) = (id.to_string(), undo_id.clone());
        let this = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            // Checked and taken at once: no run, and no other undo, in the folder meanwhile.
            let Some(hold) = recorder.hold(&folder) else {
                return Err(Error::new(
                    ErrorCode::FolderBusy,
                    format!(
                        "a command is running in {} (or another undo): undo this one once it \
                         has ended",
                        escaped(&folder.display().to_string())
                    ),
                ));
            };
            // Recorded like a run, so that it can be undone in turn; a folder that cannot be
            // recorded now (grown too large since) is still undone, and that is said.
            let (session, handle, note) = match hold.begin() {
                Begun::Recording(s) => (Some(s), None, None),
                Begun::Not { reason, .. } => {
                    let handle = crate::changes::scan::open_root(&folder).map_err(|e| {
                        Error::new(
                            ErrorCode::NothingToUndo,
                            format!("the folder cannot be opened: {}", escaped(&e.to_string())),
                        )
                    })?;
                    let note = format!(
                        "the undo itself was not recorded ({reason}), so it cannot be undone in \
                         turn"
                    );
                    (None, Some(handle), Some(note))
                }
            };
            let root = match (&session, &handle) {
                (Some(s), _) => s.handle(),
                (None, Some(h)) => h,
                (None, None) => unreachable!("a session or a handle"),
            };
            let mut checked = crate::changes::undo::check(root, &changes, recorder.store());
            let mut report = UndoReport {
                run_id: rid,
                undone: false,
                undo_run: None,
                restored: 0,
                conflicts: Vec::new(),
                left: Vec::new(),
                later_runs: Vec::new(),
                note: None,
            };
            for c in &mut checked.conflicts {
                c.later_runs = later_changes
                    .iter()
                    .filter(|l| l.folder == changes.folder && l.recorded)
                    .filter(|l| {
                        l.files
                            .iter()
                            .any(|f| f.path == c.path || f.from.as_deref() == Some(&c.path))
                    })
                    .map(|l| l.run_id.clone())
                    .collect();
                for r in &c.later_runs {
                    if !report.later_runs.contains(r) {
                        report.later_runs.push(r.clone());
                    }
                }
            }
            if !checked.conflicts.is_empty() && later == Later::Refuse {
                if let Some(s) = session {
                    recorder.abandon(*s);
                }
                report.conflicts = checked.conflicts;
                report.left = checked.left;
                return Ok(report);
            }
            let (restored, left) =
                crate::changes::undo::apply(root, &changes, recorder.store(), later, checked);
            report.undone = true;
            report.restored = restored;
            report.left = left;
            report.note = note;
            if let Some(s) = session {
                let recorded = recorder.end(&uid, *s);
                report.undo_run = Some(uid.clone());
                // Written while the folder is still held: its contents are referred to before
                // anything can collect them.
                this.record_undo(&original, &uid, started_at_ms, &report, recorded);
                recorder.written();
            }
            drop(hold);
            Ok(report)
        })
        .await
        .map_err(|e| Error::internal(format!("the undo failed: {e}")))??;
        let report = done;
        Ok(report)
    }

    /// The undo's own run in the history and the window, with what it changed.
    fn record_undo(
        &self,
        original: &RunSummary,
        undo_id: &str,
        started_at_ms: u64,
        report: &UndoReport,
        recorded: RunChanges,
    ) {
        let failed = report.left.iter().any(|f| f.problem == UndoProblem::Failed);
        let summary = RunSummary {
            id: undo_id.to_string(),
            command: format!("undo {}: {}", original.id, original.command),
            mode: stigmer_protocol::mode::Mode::Local,
            image: None,
            cwd: PathBuf::from(&recorded.folder),
            client: Some("stigmer".into()),
            state: RunState::Finished,
            started_at_ms,
            finished_at_ms: Some(now_ms()),
            outcome: Some(ExecOutcome {
                exit_code: Some(i32::from(failed)),
                duration_ms: (now_ms() - started_at_ms) as f64,
                changed: recorded.summary_line(),
                ..ExecOutcome::default()
            }),
            error: None,
            stdout: OutputSummary::default(),
            stderr: OutputSummary::default(),
        };
        self.history.record(&summary);
        self.history.put_changes(&recorded);
        tracing::info!(run = %original.id, undo = %undo_id, restored = report.restored, "a run was undone");
        self.bus.publish(Event::RunStarted {
            run: RunSummary {
                state: RunState::Running,
                finished_at_ms: None,
                outcome: None,
                ..summary.clone()
            },
        });
        self.bus.publish(Event::RunFinished { run: summary });
    }
}
