//! Replacing another app's file safely: a backup beside it first, then a temporary file in the
//! same folder renamed over it (a crash leaves the old file or the new one, never half of one),
//! with the old file's permissions, and through a symbolic link to the file it points at (a
//! dotfiles manager's link stays a link).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Backups kept per file; older ones made by stigmer are removed.
const BACKUPS_KEPT: usize = 3;

/// Write `text` to `path`; returns the backup of the previous contents, if there were any.
pub fn replace(path: &Path, text: &str) -> std::io::Result<Option<PathBuf>> {
    let target = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    let dir = target.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let old = std::fs::metadata(&target).ok();
    let backup = match &old {
        Some(_) => Some(backup(&target, &dir, &name)?),
        None => None,
    };
    let tmp = dir.join(format!(".{name}.stigmer-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        // Same permissions as before; a new file may hold other servers' secrets: user only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = old
                .as_ref()
                .map(|m| m.permissions().mode())
                .unwrap_or(0o600);
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
        }
        #[cfg(not(unix))]
        if let Some(m) = &old {
            f.set_permissions(m.permissions())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| backup)
}

/// Copy the file to `NAME.stigmer-backup-SECONDS` beside it, keeping the newest few.
fn backup(target: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prefix = format!("{name}.stigmer-backup-");
    let mut path = dir.join(format!("{prefix}{secs}"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{prefix}{secs}-{n}"));
        n += 1;
    }
    std::fs::copy(target, &path)?;
    let mut ours: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    ours.sort();
    let extra = ours.len().saturating_sub(BACKUPS_KEPT);
    for (_, old) in ours.into_iter().take(extra) {
        if old != path {
            let _ = std::fs::remove_file(old);
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn keeps_mode_and_links_and_backs_up() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/claude.json");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "{}").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join(".claude.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let b = replace(&link, "{\"a\": 1}\n").unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "{}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "{\"a\": 1}\n");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for i in 0..5 {
            replace(&link, &format!("{i}\n")).unwrap();
        }
        let backups = std::fs::read_dir(real.parent().unwrap())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("stigmer-backup")
            })
            .count();
        assert_eq!(backups, BACKUPS_KEPT);
    }
}
