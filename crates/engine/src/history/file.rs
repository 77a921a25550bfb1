//! The history's database file: opened and checked, made with its schema, or set aside when
//! it is not a sound database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::SCHEMA_VERSION;

/// Why a database file was not used.
pub(super) enum Unusable {
    /// Not a sound database: it is set aside and a fresh one made.
    Damaged(String),
    /// Sound, maybe, but not usable now (busy, no permission, a newer schema): left as it is.
    Unavailable(String),
}

/// Damaged for SQLite's "not a database" and "corrupt"; anything else is not the file's fault.
pub(super) fn classify(e: rusqlite::Error) -> Unusable {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::NotADatabase | C::DatabaseCorrupt) => Unusable::Damaged(e.to_string()),
        _ => Unusable::Unavailable(e.to_string()),
    }
}

/// Open (or make) the database file and check it.
pub(super) fn open_file(path: &Path) -> std::result::Result<Connection, Unusable> {
    if let Some(dir) = path.parent() {
        crate::paths::Paths::ensure_private_dir(dir)
            .map_err(|e| Unusable::Unavailable(e.message))?;
    }
    let conn = Connection::open(path).map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Unusable::Unavailable(format!(
            "journal mode is {mode}, not WAL"
        )));
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(classify)?;
    if check != "ok" {
        return Err(Unusable::Damaged(format!("integrity check: {check}")));
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(classify)?;
    if version > SCHEMA_VERSION {
        return Err(Unusable::Unavailable(format!(
            "it was written by a newer Stigmer (schema {version}, this one knows {SCHEMA_VERSION})"
        )));
    }
    init(&conn).map_err(classify)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(conn)
}

pub(super) fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS runs (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             id TEXT NOT NULL UNIQUE,
             started_at_ms INTEGER NOT NULL,
             finished_at_ms INTEGER,
             state TEXT NOT NULL,
             client TEXT,
             command TEXT NOT NULL,
             cwd TEXT NOT NULL,
             kept INTEGER NOT NULL DEFAULT 0,
             summary TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
         -- Retention walks the ended runs oldest first, and those with output kept: both in
         -- the order of these indexes, so its cost is what it removes, not what is stored.
         CREATE INDEX IF NOT EXISTS runs_ended
             ON runs (coalesce(finished_at_ms, started_at_ms), seq) WHERE state != 'running';
         CREATE INDEX IF NOT EXISTS runs_kept
             ON runs (coalesce(finished_at_ms, started_at_ms), seq)
             WHERE kept > 0 AND state != 'running';
         CREATE INDEX IF NOT EXISTS runs_client ON runs (coalesce(client, 'other'));
         -- What each run changed in its folder (JSON), dropped with the run.
         CREATE TABLE IF NOT EXISTS changes (
             run_id TEXT PRIMARY KEY,
             body TEXT NOT NULL
         );
         PRAGMA user_version = {SCHEMA_VERSION};"
    ))
}

/// Rename the file (and its WAL and shared-memory files) out of the way.
pub(super) fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = crate::util::now_secs();
    let mut aside = PathBuf::from(format!("{}.unusable-{stamp}", path.display()));
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{}.unusable-{stamp}-{n}", path.display()));
        n += 1;
    }
    if path.exists() {
        std::fs::rename(path, &aside)?;
    }
    // The old WAL must not meet the new database.
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", path.display()));
        if side.exists() {
            std::fs::rename(&side, format!("{}{ext}", aside.display()))?;
        }
    }
    Ok(aside)
}
