//! Stigmer's own files are the user's alone: its logs name every command, its kept output and
//! history hold what commands printed, its scratch folder holds what they wrote. Its folders
//! are made 0700 (so whatever a library writes in them, a log file or the history's WAL, is
//! out of other users' reach), and folders or files an earlier version or another way of
//! starting left readable by others are made private when the server starts. The process's
//! umask is left alone: commands started locally inherit it, as from a shell.

use crate::paths::Paths;

/// Make stigmer's folders (0700, created so when missing) and the files directly in them
/// (0600) private.
pub fn make_private(paths: &Paths) {
    #[cfg(unix)]
    for dir in [
        &paths.config_dir,
        &paths.data_dir,
        &paths.log_dir,
        &paths.run_output_dir(),
        &paths.scratch_dir(),
    ] {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            tracing::warn!("cannot create {}: {e}", dir.display());
        }
        tighten(dir);
    }
    #[cfg(not(unix))]
    let _ = paths;
}

/// `dir` made (with its parents) when missing, and 0700.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// `dir` 0700 and its files (not its sub-folders' contents) 0600, when they are ours.
#[cfg(unix)]
fn tighten(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &std::path::Path, mode: u32| {
        // Never through a link: only our own folders' own entries.
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return;
        };
        if meta.file_type().is_symlink() || meta.permissions().mode() & 0o077 == 0 {
            return;
        }
        if let Err(e) = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!("cannot make {} private: {e}", p.display());
        }
    };
    if !dir.is_dir() {
        return;
    }
    set(dir, 0o700);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            set(&e.path(), 0o700);
        } else if kind.is_file() {
            set(&e.path(), 0o600);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    #[test]
    fn folders_and_their_files_become_private() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(logs.join("sub")).unwrap();
        std::fs::write(logs.join("stigmer.log"), "x").unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            logs.join("stigmer.log"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        tighten(&logs);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&logs), 0o700);
        assert_eq!(mode(&logs.join("sub")), 0o700);
        assert_eq!(mode(&logs.join("stigmer.log")), 0o600);
    }
}
