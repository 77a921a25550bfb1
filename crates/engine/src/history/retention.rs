//! Retention: the oldest finished runs beyond the count or the age go, then the oldest runs'
//! kept output until the budget is met with room to spare. Its cost is what it removes, not
//! what is stored: it walks indexes oldest first (`runs_ended`, `runs_kept`), keeps its
//! totals as it goes (runs ended, output kept), and frees a tenth of the output budget at a
//! time, so that a history at its budget is trimmed once every few runs, not after each.
//! The server runs it off the run's path ([`crate::runs`]).

use rusqlite::{params, OptionalExtension, Transaction};

use stigmer_protocol::run::RunSummary;

use super::{History, PRUNE_EVERY};
use crate::util::now_ms;

/// Rows looked at per query: a long overdue trim goes in steps, each a short query.
const BATCH: i64 = 512;

impl History {
    /// Whether retention should run now: enough runs ended, more are stored than kept, or
    /// the kept output is over its budget.
    pub fn due(&self) -> bool {
        let db = self.db.lock();
        let every = (self.retention.max_runs / 8).clamp(1, PRUNE_EVERY) as u32;
        db.ended_since_prune >= every
            || db.ended > self.retention.max_runs
            || db.kept_total > self.retention.max_output_bytes
    }

    /// Apply retention. Returns the ids whose output files go.
    pub fn prune(&self) -> Vec<String> {
        match self.try_prune() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("the run history could not be trimmed: {e}");
                Vec::new()
            }
        }
    }

    fn try_prune(&self) -> rusqlite::Result<Vec<String>> {
        let r = self.retention;
        let oldest_kept = now_ms().saturating_sub(r.max_age.as_millis() as u64) as i64;
        let mut db = self.db.lock();
        db.ended_since_prune = 0;
        let (mut ended, mut kept_total) = (db.ended, db.kept_total);
        let tx = db.conn.transaction()?;
        let mut gone: Vec<String> = Vec::new();
        // Beyond the count, then beyond the age: oldest first (running ones always stay).
        loop {
            let over = ended.saturating_sub(r.max_runs) as i64;
            let batch = oldest_ended(&tx, over, oldest_kept)?;
            if batch.is_empty() {
                break;
            }
            for (id, kept, _) in batch {
                tx.execute("DELETE FROM runs WHERE id = ?1", [&id])?;
                tx.execute("DELETE FROM changes WHERE run_id = ?1", [&id])?;
                ended = ended.saturating_sub(1);
                kept_total = kept_total.saturating_sub(kept);
                gone.push(id);
            }
        }
        // Then the oldest runs' output, down to nine tenths of the budget.
        if kept_total > r.max_output_bytes {
            let target = r.max_output_bytes - r.max_output_bytes / 10;
            while kept_total > target {
                let batch = oldest_with_output(&tx)?;
                if batch.is_empty() {
                    break;
                }
                for (id, kept) in batch {
                    if kept_total <= target {
                        break;
                    }
                    drop_output(&tx, &id)?;
                    kept_total = kept_total.saturating_sub(kept);
                    gone.push(id);
                }
            }
        }
        tx.commit()?;
        db.ended = ended;
        db.kept_total = kept_total;
        Ok(gone)
    }
}

/// The oldest ended runs that go: the first `over` (beyond the count), and any past the age
/// (`oldest_kept`); at most [`BATCH`]. `(id, kept, ended at)`, by the `runs_ended` index.
fn oldest_ended(
    tx: &Transaction,
    over: i64,
    oldest_kept: i64,
) -> rusqlite::Result<Vec<(String, u64, i64)>> {
    let mut q = tx.prepare_cached(
        "SELECT id, kept, coalesce(finished_at_ms, started_at_ms) FROM runs
         WHERE state != 'running'
         ORDER BY coalesce(finished_at_ms, started_at_ms), seq LIMIT ?1",
    )?;
    let rows = q.query_map([BATCH], |row| {
        Ok((row.get(0)?, row.get::<_, i64>(1)? as u64, row.get(2)?))
    })?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let row: (String, u64, i64) = row?;
        // Oldest first: once one stays (within the count, not too old), all newer ones do.
        if (i as i64) < over || row.2 < oldest_kept {
            out.push(row);
        } else {
            break;
        }
    }
    Ok(out)
}

/// The oldest ended runs whose output is kept, by the `runs_kept` index: `(id, kept)`.
fn oldest_with_output(tx: &Transaction) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut q = tx.prepare_cached(
        "SELECT id, kept FROM runs WHERE kept > 0 AND state != 'running'
         ORDER BY coalesce(finished_at_ms, started_at_ms), seq LIMIT ?1",
    )?;
    let rows = q.query_map([BATCH], |row| {
        Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}

/// A run's output is no longer kept: its record says so (its head and tail stay).
pub(super) fn drop_output(tx: &Transaction, id: &str) -> rusqlite::Result<()> {
    let summary: Option<String> = tx
        .prepare_cached("SELECT summary FROM runs WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let summary = summary
        .and_then(|s| serde_json::from_str::<RunSummary>(&s).ok())
        .map(|mut run| {
            run.stdout.stored_bytes = 0;
            run.stderr.stored_bytes = 0;
            serde_json::to_string(&run).expect("a run summary serializes")
        });
    match summary {
        Some(s) => tx.execute(
            "UPDATE runs SET kept = 0, summary = ?2 WHERE id = ?1",
            params![id, s],
        )?,
        // Unreadable: its output goes all the same, as the total counted.
        None => tx.execute("UPDATE runs SET kept = 0 WHERE id = ?1", [id])?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stigmer_protocol::run::{RunState, RunSummary};

    use super::super::{History, Query, Retention};

    fn run(i: usize, state: RunState, kept: u64) -> RunSummary {
        let mut r: RunSummary = serde_json::from_value(serde_json::json!({
            "id": format!("run_{i:05}"), "command": "true", "mode": "local", "cwd": "/tmp",
            "state": "running", "started_at_ms": 1_000 + i as u64,
            "stdout": {"total_bytes": 0, "total_lines": 0, "head": "", "tail": "", "omitted_bytes": 0, "omitted_lines": 0},
            "stderr": {"total_bytes": 0, "total_lines": 0, "head": "", "tail": "", "omitted_bytes": 0, "omitted_lines": 0},
        }))
        .expect("a summary");
        r.state = state;
        if state != RunState::Running {
            r.finished_at_ms = Some(now(i));
        }
        r.stdout.stored_bytes = kept;
        r
    }

    fn now(i: usize) -> u64 {
        crate::util::now_ms() - 100_000 + i as u64
    }

    fn ids(h: &History) -> Vec<String> {
        let q = Query {
            limit: 200,
            ..Default::default()
        };
        h.query(&q).unwrap().into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn the_oldest_ended_runs_go_then_the_oldest_output_with_room_to_spare() {
        let (h, _) = History::open(
            None,
            Retention {
                max_runs: 5,
                max_age: Duration::from_secs(3600),
                max_output_bytes: 1000,
            },
        );
        h.record(&run(0, RunState::Running, 0));
        for i in 1..=8 {
            h.record(&run(i, RunState::Finished, 100));
        }
        assert!(h.due());
        let gone = h.prune();
        assert_eq!(gone, ["run_00001", "run_00002", "run_00003"]);
        let left = ids(&h);
        assert_eq!(left.len(), 6, "five ended and the running one: {left:?}");
        assert!(left.contains(&"run_00000".to_string()));
        // 500 bytes kept; 700 more makes 1200: trimmed to 900 or less, oldest first.
        for i in 9..=15 {
            h.record(&run(i, RunState::Finished, 100));
        }
        let gone = h.prune();
        assert_eq!(ids(&h).len(), 6);
        assert!(!h.due(), "within every bound after a trim");
        let kept: Vec<u64> = h
            .query(&Query {
                limit: 200,
                ..Default::default()
            })
            .unwrap()
            .iter()
            .map(|r| r.stdout.stored_bytes)
            .collect();
        assert_eq!(kept.iter().sum::<u64>(), 500, "{kept:?} (gone: {gone:?})");
        // The running one never goes, and its record is intact.
        assert_eq!(
            h.get("run_00000").unwrap().unwrap().state,
            RunState::Running
        );

        // Over the output budget alone: the oldest runs' output goes, down to nine tenths.
        let (h, _) = History::open(
            None,
            Retention {
                max_runs: 100,
                max_age: Duration::from_secs(3600),
                max_output_bytes: 1000,
            },
        );
        for i in 1..=12 {
            h.record(&run(i, RunState::Finished, 100));
        }
        assert!(h.due());
        assert_eq!(h.prune(), ["run_00001", "run_00002", "run_00003"]);
        assert_eq!(ids(&h).len(), 12, "the runs stay, their output goes");
        assert_eq!(h.get("run_00003").unwrap().unwrap().stdout.stored_bytes, 0);
        assert_eq!(
            h.get("run_00004").unwrap().unwrap().stdout.stored_bytes,
            100
        );
        assert!(!h.due());
        // Two more runs (1100 bytes): one trim of two, not one after each run.
        h.record(&run(13, RunState::Finished, 100));
        h.record(&run(14, RunState::Finished, 100));
        assert_eq!(h.prune(), ["run_00004", "run_00005"]);
    }

    #[test]
    fn retention_reads_what_it_removes_through_its_indexes() {
        let (h, _) = History::open(
            None,
            Retention {
                max_runs: 1,
                max_age: Duration::from_secs(1),
                max_output_bytes: 1,
            },
        );
        let db = h.db.lock();
        for (sql, index) in [
            (
                "SELECT id, kept, coalesce(finished_at_ms, started_at_ms) FROM runs
                 WHERE state != 'running'
                 ORDER BY coalesce(finished_at_ms, started_at_ms), seq LIMIT 9",
                "runs_ended",
            ),
            (
                "SELECT id, kept FROM runs WHERE kept > 0 AND state != 'running'
                 ORDER BY coalesce(finished_at_ms, started_at_ms), seq LIMIT 9",
                "runs_kept",
            ),
        ] {
            let plan: Vec<String> = db
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            let plan = plan.join(" / ");
            assert!(plan.contains(index), "{index}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "sorts everything: {plan}");
        }
    }
}
