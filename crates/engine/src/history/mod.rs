//! The history of runs: every run's record (command, client, where it ran, exit, timestamps,
//! head and tail of its output, how much output is kept) in SQLite in the data dir, so that
//! it outlasts the server, a crash included.
//!
//! A run is written when it starts and again when it ends, before anyone is told that it
//! ended: a run that finished is never lost, and one still marked running at the next start
//! was interrupted. WAL with `synchronous = NORMAL` survives a killed process (not a power
//! cut, which may lose the last commits, never the file). A file that is not a sound database
//! is kept aside, renamed, and a fresh one made. Retention drops the oldest finished runs
//! first, never a running one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod file;
mod retention;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use file::{init, open_file, set_aside, Unusable};

use stigmer_protocol::run::{RunState, RunSummary};

use crate::error::{Error, ErrorCode, Result};

/// The schema this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// The largest page of runs one query returns.
pub const MAX_PAGE: usize = 200;
/// Retention is applied after at most this many runs end (an eighth of `max_runs` when that is
/// fewer, and whenever the kept output is over its budget): checking after each run would cost
/// more than the run's own record.
const PRUNE_EVERY: u64 = 32;

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_runs: u64,
    pub max_age: Duration,
    /// Bytes of whole output kept for all runs together; the oldest runs' output goes first.
    pub max_output_bytes: u64,
}

/// Which runs a listing wants, newest first.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub limit: usize,
    /// Only runs older than this one (the last id of the previous page).
    pub before: Option<String>,
    /// Only this client's runs (`other` for runs whose client gave no name).
    pub client: Option<String>,
    pub state: Option<RunState>,
    /// Only runs whose command or folder contains this text (any case).
    pub text: Option<String>,
}

struct Db {
    conn: Connection,
    /// Bytes of whole output the kept runs hold.
    kept_total: u64,
    /// Runs stored that are not running (retention's count), kept as runs are written.
    ended: u64,
    ended_since_prune: u32,
}

pub struct History {
    db: Mutex<Db>,
    retention: Retention,
    /// The database file; none when the history lives in memory only.
    path: Option<PathBuf>,
    /// In memory because the user keeps no history on disk (not because the file failed).
    memory_by_choice: bool,
}

/// What opening the history found, for the server's log.
#[derive(Debug, Default)]
pub struct Opened {
    pub warnings: Vec<String>,
}

impl History {
    /// Open the history at `path` (`None`: in memory, for a user who keeps no history on
    /// disk). A file that cannot be used is set aside and replaced; if even that fails the
    /// history lives in memory and a warning says so.
    pub fn open(path: Option<&Path>, retention: Retention) -> (History, Opened) {
        let mut opened = Opened::default();
        let conn = match path {
            None => None,
            Some(p) => match open_file(p) {
                Ok(c) => Some(c),
                Err(Unusable::Unavailable(why)) => {
                    opened.warnings.push(format!(
                        "the run history {} cannot be used now ({why}); it is left as it is, and runs are remembered until the server stops only",
                        p.display()
                    ));
                    None
                }
                Err(Unusable::Damaged(why)) => match set_aside(p) {
                    Ok(aside) => {
                        opened.warnings.push(format!(
                            "the run history {} could not be used ({why}); it was kept as {} and a new history was started",
                            p.display(),
                            aside.display()
                        ));
                        open_file(p)
                            .map_err(|e| {
                                let (Unusable::Damaged(e) | Unusable::Unavailable(e)) = e;
                                opened.warnings.push(format!("the new run history {} cannot be used either ({e}); runs are remembered until the server stops only", p.display()))
                            })
                            .ok()
                    }
                    Err(e) => {
                        opened.warnings.push(format!(
                            "the run history {} could not be used ({why}) nor set aside ({e}); runs are remembered until the server stops only",
                            p.display()
                        ));
                        None
                    }
                },
            },
        };
        let on_disk = conn.is_some();
        let conn = conn.unwrap_or_else(|| {
            let c = Connection::open_in_memory().expect("an in-memory SQLite database opens");
            init(&c).expect("an in-memory SQLite database takes the schema");
            c
        });
        // Counted once here, then kept as runs are written and trimmed.
        let kept_total = conn
            .query_row("SELECT total(kept) FROM runs", [], |r| r.get::<_, f64>(0))
            .unwrap_or(0.0) as u64;
        let ended = conn
            .query_row(
                "SELECT count(*) FROM runs WHERE state != 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0) as u64;
        let history = History {
            db: Mutex::new(Db {
                conn,
                kept_total,
                ended,
                ended_since_prune: 0,
            }),
            retention,
            path: path.filter(|_| on_disk).map(Path::to_path_buf),
            memory_by_choice: path.is_none(),
        };
        (history, opened)
    }

    /// How much history is kept.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The database file, when the history is on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// In memory because the user keeps no history on disk (`history.keep = false`).
    pub fn memory_by_choice(&self) -> bool {
        self.memory_by_choice
    }

    /// Write a run's record (new or updated). Failing to write never fails the run: the
    /// server's log says so.
    pub fn record(&self, run: &RunSummary) {
        if let Err(e) = self.try_record(run) {
            tracing::warn!(run = %run.id, "the run history could not be written: {e}");
        }
    }

    fn try_record(&self, run: &RunSummary) -> rusqlite::Result<()> {
        let summary = serde_json::to_string(run).expect("a run summary serializes");
        let kept = (run.stdout.stored_bytes + run.stderr.stored_bytes) as i64;
        let mut db = self.db.lock();
        let (before, was_running): (i64, bool) = db
            .conn
            .prepare_cached("SELECT kept, state = 'running' FROM runs WHERE id = ?1")?
            .query_row([&run.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, true));
        db.conn
            .prepare_cached(
                "INSERT INTO runs (id, started_at_ms, finished_at_ms, state, client, command, cwd, kept, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(id) DO UPDATE SET finished_at_ms = ?3, state = ?4, kept = ?8, summary = ?9",
            )?
            .execute(params![
                run.id,
                run.started_at_ms as i64,
                run.finished_at_ms.map(|t| t as i64),
                state_name(run.state),
                run.client,
                run.command,
                run.cwd.to_string_lossy(),
                kept,
                summary,
            ])?;
        db.kept_total = (db.kept_total as i64 + kept - before).max(0) as u64;
        if run.state != RunState::Running {
            db.ended_since_prune += 1;
            if was_running {
                db.ended += 1;
            }
        } else if !was_running {
            db.ended = db.ended.saturating_sub(1);
        }
        Ok(())
    }

    /// Keep what a run changed (failing never fails the run: the log says so).
    pub fn put_changes(&self, changes: &stigmer_protocol::changes::RunChanges) {
        let body = serde_json::to_string(changes).expect("changes serialize");
        let r = self.db.lock().conn.execute(
            "INSERT OR REPLACE INTO changes (run_id, body) VALUES (?1, ?2)",
            params![changes.run_id, body],
        );
        if let Err(e) = r {
            tracing::warn!(run = %changes.run_id, "what the run changed could not be kept: {e}");
        }
    }

    /// A run's whole output is not kept any more (its record says so).
    pub fn drop_output(&self, id: &str) {
        let mut db = self.db.lock();
        let kept: i64 = db
            .conn
            .query_row("SELECT kept FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .unwrap_or(0);
        let r = db
            .conn
            .transaction()
            .and_then(|tx| retention::drop_output(&tx, id).and_then(|_| tx.commit()));
        match r {
            Ok(()) => db.kept_total = db.kept_total.saturating_sub(kept.max(0) as u64),
            Err(e) => tracing::warn!(run = %id, "its output could not be let go: {e}"),
        }
    }

    /// What a run changed, when it was recorded.
    pub fn changes(&self, id: &str) -> Result<Option<stigmer_protocol::changes::RunChanges>> {
        let db = self.db.lock();
        let body: Option<String> = db
            .conn
            .prepare_cached("SELECT body FROM changes WHERE run_id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(unreadable)?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// The names of every content the recorded changes refer to (before and after).
    pub fn referenced_contents(&self) -> Result<std::collections::HashSet<String>> {
        let db = self.db.lock();
        let mut stmt = db
            .conn
            .prepare_cached("SELECT body FROM changes")
            .map_err(unreadable)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(unreadable)?;
        let mut names = std::collections::HashSet::new();
        for body in rows {
            let body = body.map_err(unreadable)?;
            let Ok(c) = serde_json::from_str::<stigmer_protocol::changes::RunChanges>(&body) else {
                continue;
            };
            for f in c.files {
                for s in [f.before, f.after].into_iter().flatten() {
                    names.extend(s.content);
                }
            }
        }
        Ok(names)
    }

    /// What the runs after `id` changed, newest first (at most `limit`).
    pub fn later_changes(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<stigmer_protocol::changes::RunChanges>> {
        let db = self.db.lock();
        let mut stmt = db
            .conn
            .prepare_cached(
                "SELECT c.body FROM changes c JOIN runs r ON r.id = c.run_id
                 WHERE r.seq > (SELECT seq FROM runs WHERE id = ?1)
                 ORDER BY r.seq DESC LIMIT ?2",
            )
            .map_err(unreadable)?;
        let rows = stmt
            .query_map(params![id, limit as i64], |r| r.get::<_, String>(0))
            .map_err(unreadable)?;
        Ok(rows
            .filter_map(|b| serde_json::from_str(&b.ok()?).ok())
            .collect())
    }

    /// One run's record.
    pub fn get(&self, id: &str) -> Result<Option<RunSummary>> {
        let db = self.db.lock();
        let summary: Option<String> = db
            .conn
            .prepare_cached("SELECT summary FROM runs WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(unreadable)?;
        Ok(summary.and_then(|s| parse(&s)))
    }

    /// Runs, newest first, as `q` asks.
    pub fn query(&self, q: &Query) -> Result<Vec<RunSummary>> {
        let db = self.db.lock();
        let before: Option<i64> = match &q.before {
            None => None,
            Some(id) => Some(
                db.conn
                    .query_row("SELECT seq FROM runs WHERE id = ?1", [id], |r| r.get(0))
                    .optional()
                    .map_err(unreadable)?
                    .ok_or_else(|| {
                        Error::new(
                            ErrorCode::RunNotFound,
                            format!(
                                "no run `{id}` in the history (`before` takes the last id of the previous page)"
                            ),
                        )
                    })?,
            ),
        };
        let mut stmt = db
            .conn
            .prepare_cached(
                "SELECT summary FROM runs
                 WHERE (?1 IS NULL OR seq < ?1)
                   AND (?2 IS NULL OR coalesce(client, 'other') = ?2)
                   AND (?3 IS NULL OR state = ?3)
                   AND (?4 IS NULL OR instr(lower(command), lower(?4)) > 0 OR instr(lower(cwd), lower(?4)) > 0)
                 ORDER BY seq DESC LIMIT ?5",
            )
            .map_err(unreadable)?;
        let rows = stmt
            .query_map(
                params![
                    before,
                    q.client,
                    q.state.map(state_name),
                    q.text.as_deref().filter(|t| !t.is_empty()),
                    q.limit.min(MAX_PAGE) as i64,
                ],
                |r| r.get::<_, String>(0),
            )
            .map_err(unreadable)?;
        let mut runs = Vec::new();
        for row in rows {
            runs.extend(parse(&row.map_err(unreadable)?));
        }
        Ok(runs)
    }

    /// The names of the clients that ran something (`other` for those that gave none).
    pub fn clients(&self) -> Result<Vec<String>> {
        let db = self.db.lock();
        let mut stmt = db
            .conn
            .prepare_cached("SELECT DISTINCT coalesce(client, 'other') FROM runs ORDER BY 1")
            .map_err(unreadable)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(unreadable)?;
        rows.collect::<rusqlite::Result<_>>().map_err(unreadable)
    }

    /// When a command last started in `image`.
    pub fn last_used(&self, image: &str) -> Option<u64> {
        let db = self.db.lock();
        db.conn
            .query_row(
                "SELECT max(started_at_ms) FROM runs WHERE json_extract(summary, '$.image') = ?1",
                [image],
                |r| r.get::<_, Option<i64>>(0),
            )
            .ok()
            .flatten()
            .map(|t| t as u64)
    }

    /// The runs whose whole output is kept.
    pub fn with_output(&self) -> Result<HashSet<String>> {
        let db = self.db.lock();
        let mut stmt = db
            .conn
            .prepare("SELECT id FROM runs WHERE kept > 0 OR state = 'running'")
            .map_err(unreadable)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(unreadable)?;
        rows.collect::<rusqlite::Result<_>>().map_err(unreadable)
    }

    /// How many runs are stored.
    pub fn len(&self) -> u64 {
        self.db
            .lock()
            .conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .unwrap_or(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs recorded as running. Asked before this server starts any, they are the ones
    /// an earlier server did not see end.
    pub fn interrupted_runs(&self) -> Vec<RunSummary> {
        self.running()
            .map_err(|e| tracing::warn!("{}", e.message))
            .unwrap_or_default()
    }

    fn running(&self) -> Result<Vec<RunSummary>> {
        let db = self.db.lock();
        let mut stmt = db
            .conn
            .prepare("SELECT summary FROM runs WHERE state = 'running' ORDER BY seq")
            .map_err(unreadable)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(unreadable)?;
        let mut runs = Vec::new();
        for row in rows {
            runs.extend(parse(&row.map_err(unreadable)?));
        }
        Ok(runs)
    }
}

fn state_name(s: RunState) -> &'static str {
    match s {
        RunState::Running => "running",
        RunState::Finished => "finished",
        RunState::Failed => "failed",
        RunState::Interrupted => "interrupted",
    }
}

fn parse(summary: &str) -> Option<RunSummary> {
    serde_json::from_str(summary)
        .map_err(|e| tracing::warn!("a run in the history could not be read: {e}"))
        .ok()
}

fn unreadable(e: rusqlite::Error) -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("the run history could not be read: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention() -> Retention {
        Retention {
            max_runs: 10,
            max_age: Duration::from_secs(3600),
            max_output_bytes: 1 << 20,
        }
    }

    #[test]
    fn a_newer_history_is_left_as_it_is_and_a_broken_one_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("history.sqlite3");
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch("PRAGMA user_version = 99; CREATE TABLE t (x);")
                .unwrap();
        }
        let (h, opened) = History::open(Some(&db), retention());
        assert!(h.path().is_none() && !h.memory_by_choice());
        assert!(
            opened.warnings[0].contains("newer Stigmer"),
            "{:?}",
            opened.warnings
        );
        assert!(db.exists(), "left in place");
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("unusable"))
                .collect()
        };
        assert!(names(dir.path()).is_empty());

        std::fs::remove_file(&db).unwrap();
        std::fs::write(&db, b"garbage, twice").unwrap();
        let (h, _) = History::open(Some(&db), retention());
        assert!(h.path().is_some(), "a fresh one on disk");
        drop(h);
        for side in ["history.sqlite3-wal", "history.sqlite3-shm"] {
            let _ = std::fs::remove_file(dir.path().join(side));
        }
        std::fs::write(&db, b"garbage, twice").unwrap();
        let (h, _) = History::open(Some(&db), retention());
        assert!(h.path().is_some());
        let aside: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        assert_eq!(
            aside.len(),
            2,
            "two set aside, neither overwritten: {aside:?}"
        );
    }
}
