//! A folder as it is, for telling what a command changed: every entry's kind, size, mode,
//! identity (device, inode) and change time, walked without following links. A change is told
//! by what a command cannot forge: its size, its inode or its change time (a command can set a
//! modification time back, never a change time). Generated folders (`node_modules`, `target`,
//! `.venv`...) and `.git` are entries of their own, not walked: they are said to have changed,
//! their content is not recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Folders whose content is not recorded: generated (rebuilt, not lost: the folders the
/// repository search skips, and a few more), or git's own (its history is in it; an undo never
/// rewrites it).
#[cfg(unix)]
const ALSO_NOT_RECORDED: &[&str] = &[".git", ".next"];

#[cfg(unix)]
fn not_recorded(name: &std::ffi::OsStr) -> bool {
    crate::execute::container::folders::SKIPPED
        .iter()
        .chain(ALSO_NOT_RECORDED)
        .any(|n| name == *n)
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Link,
    /// A socket, a pipe, a device: listed, never read.
    Other,
    /// A generated folder, `.git`, or a mount: its content is not walked.
    Unrecorded,
}

/// A content's SHA-256.
pub type Digest = [u8; 32];

/// One entry of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
    /// Change time (seconds, nanoseconds): what a command cannot set.
    pub ctime: (i64, i64),
    /// A link's target.
    pub target: Option<PathBuf>,
    /// A file's kept content, once the recorder kept it.
    pub content: Option<Digest>,
}

impl Entry {
    /// The same file, unchanged (its kept content aside).
    pub fn same(&self, o: &Entry) -> bool {
        (
            self.kind, self.size, self.mode, self.dev, self.ino, self.ctime,
        ) == (o.kind, o.size, o.mode, o.dev, o.ino, o.ctime)
            && self.target == o.target
    }
}

/// Every entry under a root, by path relative to it.
pub type Manifest = BTreeMap<PathBuf, Entry>;

/// Why a folder is not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRecorded {
    /// More entries than the limit (a setting): recording would cost too much.
    TooLarge { limit: usize },
    /// The root cannot be read.
    Unreadable(String),
}

/// The folder `root` opened for a walk: a folder (never a link, a fifo or a device).
#[cfg(unix)]
pub fn open_root(root: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(root)
}

/// The entries under the folder `handle` (at `root`; not the folder itself), at most `limit`
/// of them. Each folder is opened beneath the handle with no link followed, so a folder
/// swapped for a link while it is walked never makes the walk list what lies outside; one
/// that cannot be read makes the whole walk fail (never counted as emptied); a mount inside
/// is an entry of its own, not walked.
#[cfg(unix)]
pub fn scan(handle: &std::fs::File, root: &Path, limit: usize) -> Result<Manifest, NotRecorded> {
    scan_with(handle, root, limit, &mut |_, _, _| Ok(()))
}

/// Called with each folder's handle before it is read (`true`), and with each generated
/// folder's (`false`, not read): where a watch is set, so that nothing changed after the
/// read goes unseen.
pub type OnDir<'a> = dyn FnMut(&std::fs::File, &Path, bool) -> std::io::Result<()> + 'a;

/// [`scan`], calling `on_dir` on each folder first.
#[cfg(unix)]
pub fn scan_with(
    handle: &std::fs::File,
    root: &Path,
    limit: usize,
    on_dir: &mut OnDir<'_>,
) -> Result<Manifest, NotRecorded> {
    let mut m = Manifest::new();
    walk_into(handle, root, PathBuf::new(), &mut m, limit, on_dir)?;
    Ok(m)
}

/// Walk the folder `start` (relative to the root) into `m`: every entry under it.
#[cfg(unix)]
pub(super) fn walk_into(
    handle: &std::fs::File,
    root: &Path,
    start: PathBuf,
    m: &mut Manifest,
    limit: usize,
    on_dir: &mut OnDir<'_>,
) -> Result<(), NotRecorded> {
    let mut todo: Vec<PathBuf> = vec![start];
    while let Some(rel) = todo.pop() {
        for (path, entry) in
            list_dir(handle, root, &rel, on_dir).map_err(|e| unreadable(&rel, e))?
        {
            if entry.kind == Kind::Dir {
                todo.push(path.clone());
            }
            m.insert(path, entry);
            if m.len() > limit {
                return Err(NotRecorded::TooLarge { limit });
            }
        }
    }
    Ok(())
}

/// Why a folder cannot be read, its name (a command's choice) escaped.
#[cfg(unix)]
pub(super) fn unreadable(rel: &Path, e: std::io::Error) -> NotRecorded {
    NotRecorded::Unreadable(if rel.as_os_str().is_empty() {
        e.to_string()
    } else {
        format!(
            "{}: {e}",
            stigmer_protocol::changes::printable(&rel.to_string_lossy())
        )
    })
}

/// The entries of one folder (`rel`, relative to the root), each as it is; generated
/// folders and mounts as entries of their own.
#[cfg(unix)]
pub(super) fn list_dir(
    handle: &std::fs::File,
    root: &Path,
    rel: &Path,
    on_dir: &mut OnDir<'_>,
) -> std::io::Result<Vec<(PathBuf, Entry)>> {
    use std::os::unix::fs::MetadataExt;
    let root_dev = handle.metadata()?.dev();
    let (dir, path) = folder_beneath(handle, root, rel)?;
    on_dir(&dir, rel, true)?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(&path)?.flatten() {
        let name = e.file_name();
        let path = rel.join(&name);
        // Relative to the folder's handle (no lookup of the whole path), not followed. Gone
        // since it was listed: not there. Not to be looked at (a folder listable but not
        // searchable): the folder cannot be read, never its entries counted as removed.
        let meta = match e.metadata() {
            Ok(m) => m,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(err) => return Err(err),
        };
        let entry = entry_of(&meta, || std::fs::read_link(e.path()).ok());
        let walk = entry.kind == Kind::Dir;
        let elsewhere = entry.dev != root_dev;
        let entry = if walk && (elsewhere || not_recorded(&name)) {
            // Its own entries (not deeper) are watched, so that its change time is looked at
            // again when they change; a mount is not.
            #[cfg(target_os = "linux")]
            if !elsewhere {
                if let Ok(d) = super::beneath::open_beneath(&dir, Path::new(&name), true) {
                    on_dir(&d, &path, false)?;
                }
            }
            Entry {
                kind: Kind::Unrecorded,
                ..entry
            }
        } else {
            entry
        };
        out.push((path, entry));
    }
    Ok(out)
}

/// Elsewhere (Windows): not recorded, said.
#[cfg(not(unix))]
pub fn open_root(root: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(root)
}

#[cfg(not(unix))]
pub fn scan(_handle: &std::fs::File, _root: &Path, _limit: usize) -> Result<Manifest, NotRecorded> {
    Err(NotRecorded::Unreadable(
        "changes are recorded on Linux and macOS so far".into(),
    ))
}

/// A folder under the root's handle (itself for an empty `rel`), and a path that names that
/// very folder while the returned handle is open (Linux: `/proc/self/fd/N`).
#[cfg(target_os = "linux")]
fn folder_beneath(
    handle: &std::fs::File,
    _root: &Path,
    rel: &Path,
) -> std::io::Result<(std::fs::File, PathBuf)> {
    use std::os::fd::AsRawFd;
    let dir = if rel.as_os_str().is_empty() {
        handle.try_clone()?
    } else {
        super::beneath::open_beneath(handle, rel, true)?
    };
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    Ok((dir, path))
}

/// Elsewhere: by path, a link refused (no `openat2`).
#[cfg(all(unix, not(target_os = "linux")))]
fn folder_beneath(
    handle: &std::fs::File,
    root: &Path,
    rel: &Path,
) -> std::io::Result<(std::fs::File, PathBuf)> {
    let path = root.join(rel);
    if !std::fs::symlink_metadata(&path)?.is_dir() {
        return Err(std::io::Error::other("not a folder any more"));
    }
    Ok((handle.try_clone()?, path))
}

#[cfg(unix)]
fn entry_of(meta: &std::fs::Metadata, target: impl FnOnce() -> Option<PathBuf>) -> Entry {
    use std::os::unix::fs::MetadataExt;
    let t = meta.file_type();
    let kind = if t.is_symlink() {
        Kind::Link
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Entry {
        kind,
        size: if kind == Kind::File { meta.len() } else { 0 },
        mode: meta.mode() & 0o7777,
        dev: meta.dev(),
        ino: meta.ino(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        target: if kind == Kind::Link { target() } else { None },
        content: None,
    }
}

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Added,
    Removed,
    /// Its content (size, inode or change time differ, the kind the same).
    Modified,
    /// Only its permissions.
    Mode,
    /// Moved from another path (same inode, same size; the recorder also checks the content:
    /// an inode a removed file freed can be a new file's).
    Renamed,
    /// A link now points elsewhere, or a file became a folder (or the other way).
    Replaced,
}

/// One change between two manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    pub how: How,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
    /// For [`How::Renamed`]: where it was.
    pub from: Option<PathBuf>,
}

/// What changed from `before` to `after`, by path. A file removed at one path and added at
/// another with the same identity was renamed. Folders are told only when added or removed
/// (their entries tell the rest).
pub fn diff(before: &Manifest, after: &Manifest) -> Vec<Change> {
    let removed = before
        .iter()
        .filter(|(p, _)| !after.contains_key(*p))
        .map(|(p, b)| (p.as_path(), Some(b), None));
    let kept_or_added = after
        .iter()
        .map(|(p, a)| (p.as_path(), before.get(p), Some(a)));
    changes_of(removed.chain(kept_or_added))
}

/// What changed, from each path's entry before and after (either may be none).
pub fn changes_of<'a>(
    pairs: impl Iterator<Item = (&'a Path, Option<&'a Entry>, Option<&'a Entry>)>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for (path, b, a) in pairs {
        match (b, a) {
            (Some(b), None) => changes.push(change(path, How::Removed, Some(b), None)),
            (None, Some(a)) => changes.push(change(path, How::Added, None, Some(a))),
            (Some(b), Some(a)) => {
                if let Some(how) = how_changed(b, a) {
                    changes.push(change(path, how, Some(b), Some(a)));
                }
            }
            (None, None) => {}
        }
    }
    pair_renames(&mut changes);
    changes.sort_by(|x, y| x.path.cmp(&y.path));
    changes
}

fn change(path: &Path, how: How, before: Option<&Entry>, after: Option<&Entry>) -> Change {
    Change {
        path: path.to_path_buf(),
        how,
        before: before.cloned(),
        after: after.cloned(),
        from: None,
    }
}

fn how_changed(b: &Entry, a: &Entry) -> Option<How> {
    if b.kind != a.kind || b.target != a.target {
        return Some(How::Replaced);
    }
    let content = b.size != a.size || b.ino != a.ino || b.dev != a.dev;
    match a.kind {
        // A folder's own change time moves with its entries: those are told instead. Not
        // recorded ones are told by their change time alone.
        Kind::Dir => (b.mode != a.mode).then_some(How::Mode),
        Kind::Unrecorded => (content || b.ctime != a.ctime).then_some(How::Modified),
        _ if content => Some(How::Modified),
        _ if b.ctime != a.ctime && b.mode != a.mode => Some(How::Mode),
        _ if b.ctime != a.ctime => Some(How::Modified),
        _ => None,
    }
}

/// A removed file and an added one with the same identity: one rename.
fn pair_renames(changes: &mut Vec<Change>) {
    let id = |e: &Entry| (e.kind == Kind::File).then_some((e.dev, e.ino, e.size));
    let mut added: std::collections::HashMap<(u64, u64, u64), usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.how == How::Added)
        .filter_map(|(i, c)| Some((id(c.after.as_ref()?)?, i)))
        .collect();
    let mut gone = Vec::new();
    for i in 0..changes.len() {
        if changes[i].how != How::Removed {
            continue;
        }
        let Some(j) = changes[i]
            .before
            .as_ref()
            .and_then(id)
            .and_then(|k| added.remove(&k))
        else {
            continue;
        };
        let (from, before) = (changes[i].path.clone(), changes[i].before.clone());
        let c = &mut changes[j];
        c.how = How::Renamed;
        c.before = before;
        c.from = Some(from);
        gone.push(i);
    }
    gone.sort_unstable_by(|a, b| b.cmp(a));
    for i in gone {
        changes.remove(i);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn hows(c: &[Change]) -> Vec<(String, How)> {
        c.iter()
            .map(|c| (c.path.to_string_lossy().into_owned(), c.how))
            .collect()
    }

    #[test]
    fn edits_removals_renames_modes_and_links_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("src/old")).unwrap();
        std::fs::create_dir_all(r.join("node_modules/pkg")).unwrap();
        for (p, text) in [
            ("src/a.rs", "fn a() {}\n"),
            ("src/same.rs", "same\n"),
            ("src/old/x.rs", "x\n"),
            ("move-me.txt", "moving\n"),
            ("run.sh", "echo\n"),
            ("node_modules/pkg/index.js", "1\n"),
        ] {
            std::fs::write(r.join(p), text).unwrap();
        }
        std::os::unix::fs::symlink("src/a.rs", r.join("link")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::write(r.join(odd), "odd\n").unwrap();
        let before = scan(&open_root(r).unwrap(), r, 1000).unwrap();
        assert_eq!(before[Path::new("node_modules")].kind, Kind::Unrecorded);
        assert!(
            !before.contains_key(Path::new("node_modules/pkg")),
            "not walked"
        );

        std::thread::sleep(std::time::Duration::from_millis(20));
        // Same size, modification time set back: still a change (its change time moved).
        std::fs::write(r.join("src/a.rs"), "fn b() {}\n").unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(r.join("src/a.rs"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        std::fs::remove_dir_all(r.join("src/old")).unwrap();
        std::fs::rename(r.join("move-me.txt"), r.join("moved.txt")).unwrap();
        std::fs::set_permissions(r.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_file(r.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("link")).unwrap();
        std::fs::write(r.join("node_modules/pkg/new.js"), "2\n").unwrap();
        std::fs::write(r.join("new.txt"), "new\n").unwrap();
        std::fs::write(r.join(odd), "odd, changed\n").unwrap();
        let after = scan(&open_root(r).unwrap(), r, 1000).unwrap();
        let c = diff(&before, &after);
        let odd_name = String::from_utf8_lossy(b"caf\xe9.txt").into_owned();
        assert_eq!(
            hows(&c),
            [
                (odd_name, How::Modified),
                ("link".into(), How::Replaced),
                ("moved.txt".into(), How::Renamed),
                ("new.txt".into(), How::Added),
                ("run.sh".into(), How::Mode),
                ("src/a.rs".into(), How::Modified),
                ("src/old".into(), How::Removed),
                ("src/old/x.rs".into(), How::Removed),
            ],
            "{c:#?}"
        );
        let renamed = c.iter().find(|c| c.how == How::Renamed).unwrap();
        assert_eq!(renamed.from.as_deref(), Some(Path::new("move-me.txt")));
        assert_eq!(
            c.iter()
                .find(|c| c.how == How::Replaced)
                .unwrap()
                .after
                .as_ref()
                .unwrap()
                .target,
            Some(PathBuf::from("/etc/passwd"))
        );
        // The generated folder's own entries changed, not its listing here: its content is
        // not recorded, and a change inside it is not told entry by entry.
        assert!(!c.iter().any(|c| c.path.starts_with("node_modules/")));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_folder_swapped_for_a_link_is_never_walked_through_and_one_unreadable_fails_the_walk() {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("w"), d.path().join("secret-folder"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("id_ed25519"), "key").unwrap();
        let handle = open_root(&root).unwrap();
        std::fs::remove_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        // As if `sub` had been listed as a folder, then swapped: opened beneath, refused.
        assert!(folder_beneath(&handle, &root, Path::new("sub")).is_err());
        let m = scan(&handle, &root, 100).unwrap();
        assert_eq!(m[Path::new("sub")].kind, Kind::Link);
        assert!(!m.keys().any(|k| k.to_string_lossy().contains("id_ed25519")));
        assert!(open_root(&root.join("sub")).is_err(), "a link is no root");
    }

    #[test]
    fn a_folder_over_the_limit_is_not_recorded() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(d.path().join(format!("f{i}")), "x").unwrap();
        }
        assert_eq!(
            scan(&open_root(d.path()).unwrap(), d.path(), 10),
            Err(NotRecorded::TooLarge { limit: 10 })
        );
        assert_eq!(
            scan(&open_root(d.path()).unwrap(), d.path(), 20)
                .unwrap()
                .len(),
            20
        );
        assert!(open_root(&d.path().join("missing")).is_err());
    }
}
