//! A workspace's folders as last seen, to find its repositories: walked once when a container
//! is made, then after each run only the folders whose entries changed are read again, so a
//! repository a run created anywhere (`git init a/b/c`, a `git clone`) is found at the run's
//! end at the cost of one `stat` per folder. A folder's change time is what tells: a command
//! can set a modification time back, never a change time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Folders never searched for repositories: generated, and large (the change records do not
/// walk them either).
pub const SKIPPED: &[&str] = &[
    "node_modules",
    "target",
    ".venv",
    "venv",
    "__pycache__",
    "dist",
    ".cache",
    ".tox",
    ".gradle",
];
/// How many folders are looked at for repositories, and how deep.
const SEARCH_LIMIT: usize = 20_000;
const SEARCH_DEPTH: usize = 8;

#[derive(Debug, Clone)]
struct Seen {
    changed: (i64, i64),
    depth: usize,
    subs: Vec<PathBuf>,
}

/// How many workspaces' folders are kept between protected runs.
#[cfg_attr(windows, allow(dead_code))]
const KEPT: usize = 64;

/// Workspaces' folders as the last protected run left them, by the folder's identity: the
/// next run there looks again only where entries changed, instead of walking it all.
#[derive(Debug, Default)]
#[cfg_attr(windows, allow(dead_code))]
pub struct FolderCache(parking_lot::Mutex<Vec<(Key, Folders)>>);

/// A folder's path and identity (device, inode): moved or replaced, it is another.
type Key = (PathBuf, u64, u64);

#[cfg_attr(windows, allow(dead_code))]
impl FolderCache {
    /// The folders last seen in the folder `id`, taken (a run at the same time walks anew).
    pub fn take(&self, id: &Key) -> Option<Folders> {
        let mut kept = self.0.lock();
        let i = kept.iter().position(|(k, _)| k == id)?;
        Some(kept.remove(i).1)
    }

    /// Keep `folders` for the folder `id`, the oldest dropped beyond [`KEPT`]; a search that
    /// stopped at its limit is not kept (the next run walks anew).
    pub fn put(&self, id: Key, folders: Folders) {
        let mut kept = self.0.lock();
        kept.retain(|(k, _)| *k != id);
        if folders.truncated {
            return;
        }
        kept.push((id, folders));
        if kept.len() > KEPT {
            kept.remove(0);
        }
    }
}

/// The folders of one workspace and the repositories among them.
#[derive(Debug, Default)]
pub struct Folders {
    root: PathBuf,
    seen: HashMap<PathBuf, Seen>,
    repos: HashSet<PathBuf>,
    /// The search stopped at its limit: what was not looked at then may never be looked at
    /// by a look again, so these folders are not kept for the next run.
    truncated: bool,
}

impl Folders {
    /// Walk `root` (itself included) without following links, past generated folders, within
    /// [`SEARCH_LIMIT`] folders and [`SEARCH_DEPTH`] levels.
    pub fn scan(root: &Path) -> Folders {
        let mut f = Folders {
            root: root.to_path_buf(),
            ..Default::default()
        };
        f.walk(root.to_path_buf(), 0);
        f
    }

    /// The folders holding a `.git`, sorted.
    pub fn repos(&self) -> Vec<PathBuf> {
        let mut r: Vec<PathBuf> = self.repos.iter().cloned().collect();
        r.sort();
        r
    }

    /// Look again where entries changed: the repositories that appeared since, sorted.
    pub fn rescan(&mut self) -> Vec<PathBuf> {
        let before = self.repos.clone();
        let dirs: Vec<(PathBuf, Seen)> = self
            .seen
            .iter()
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        for (dir, seen) in dirs {
            match folder_changed(&dir) {
                None => {
                    self.seen.remove(&dir);
                    self.repos.remove(&dir);
                }
                Some(changed) if changed != seen.changed => {
                    self.seen.remove(&dir);
                    self.walk_new(dir, seen.depth, &seen.subs);
                }
                Some(_) => {}
            }
        }
        let mut new: Vec<PathBuf> = self.repos.difference(&before).cloned().collect();
        new.sort();
        new
    }

    fn walk(&mut self, dir: PathBuf, depth: usize) {
        self.walk_new(dir, depth, &[]);
    }

    /// Read `dir` again (its sub-folders in `known` were seen already) and walk what is new.
    fn walk_new(&mut self, dir: PathBuf, depth: usize, known: &[PathBuf]) {
        // A set: a folder with many sub-folders must not make each look quadratic.
        let known: HashSet<&PathBuf> = known.iter().collect();
        let mut todo = vec![(dir, depth)];
        while let Some((dir, depth)) = todo.pop() {
            if self.seen.len() >= SEARCH_LIMIT {
                self.truncated = true;
                tracing::warn!(workspace = %self.root.display(), "the search for repositories stopped at {SEARCH_LIMIT} folders");
                return;
            }
            let Some(changed) = folder_changed(&dir) else {
                continue;
            };
            if std::fs::symlink_metadata(dir.join(".git")).is_ok() || is_bare(&dir) {
                self.repos.insert(dir.clone());
            } else {
                self.repos.remove(&dir);
            }
            let mut subs = Vec::new();
            if depth < SEARCH_DEPTH {
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if name == ".git" || !e.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    let sub = e.path();
                    if !known.contains(&sub) || !self.seen.contains_key(&sub) {
                        // A generated folder is not searched, but is itself looked at (a
                        // repository there, `dist/.git`, is found): a leaf, at the last depth.
                        let at = if SKIPPED.contains(&name.as_ref()) {
                            SEARCH_DEPTH
                        } else {
                            depth + 1
                        };
                        todo.push((sub.clone(), at));
                    }
                    subs.push(sub);
                }
            }
            self.seen.insert(
                dir,
                Seen {
                    changed,
                    depth,
                    subs,
                },
            );
        }
    }
}

/// A bare repository's layout (`HEAD`, `objects/`, `refs/` in the folder itself): git takes
/// such a folder for a repository and obeys its `config`.
pub fn is_bare(dir: &Path) -> bool {
    let is = |name: &str, dir_wanted: bool| {
        std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_dir() == dir_wanted)
    };
    is("HEAD", false) && is("objects", true) && is("refs", true)
}

/// A folder's change time (None when it is not a folder any more, or a link).
fn folder_changed(dir: &Path) -> Option<(i64, i64)> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.ctime(), meta.ctime_nsec()))
    }
    #[cfg(not(unix))]
    {
        let t = meta.modified().ok()?;
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some((d.as_secs() as i64, d.subsec_nanos() as i64))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_repository_made_deep_down_is_found_after_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for d in [".git", "src/a", "node_modules/x/.git", "old/b"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut f = Folders::scan(&root);
        assert_eq!(f.repos(), vec![root.clone()]);
        assert_eq!(f.rescan(), Vec::<PathBuf>::new());
        // Deep in a new folder, in an existing one, past the skipped ones: found; a
        // modification time set back changes nothing.
        std::fs::create_dir_all(root.join("x/y/z/.git")).unwrap();
        std::fs::create_dir_all(root.join("src/a/.git")).unwrap();
        std::fs::create_dir_all(root.join("node_modules/y/.git")).unwrap();
        let old = std::fs::File::open(root.join("src/a")).unwrap();
        old.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(f.rescan(), [root.join("src/a"), root.join("x/y/z")]);
        assert_eq!(f.rescan(), Vec::<PathBuf>::new());
        // A folder removed is forgotten; one made again is new again.
        std::fs::remove_dir_all(root.join("x")).unwrap();
        assert_eq!(f.rescan(), Vec::<PathBuf>::new());
        std::fs::create_dir_all(root.join("x/y/z/.git")).unwrap();
        assert_eq!(f.rescan(), [root.join("x/y/z")]);
        // A repository in an existing, unchanged-looking folder: its `.git` changes the
        // folder's entries, so its change time.
        std::fs::create_dir_all(root.join("old/b/.git")).unwrap();
        assert_eq!(f.rescan(), [root.join("old/b")]);
        // In a generated folder (looked at, not searched), and a bare layout.
        std::fs::create_dir_all(root.join("node_modules/.git")).unwrap();
        for d in ["bare/objects", "bare/refs"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("bare/HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(f.rescan(), [root.join("bare"), root.join("node_modules")]);
    }
}
