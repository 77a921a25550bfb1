//! Putting back what a run changed: each file as it was before the run, from the kept
//! contents, and nothing else. Every file is first checked to be as the run left it (one
//! changed again since, by the user or a later command, is not overwritten unless asked);
//! then the changes are undone through the folder's handle: each call names one entry in a
//! folder opened beneath the root without following a link, files are written beside their
//! name and moved over it, so a link swapped in is replaced, never written through, and
//! nothing outside the folder is reached.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use stigmer_protocol::changes::{
    ChangeKind, EntryKind, FileChange, FileState, Later, RunChanges, UndoFile, UndoProblem,
};

use super::beneath;
use super::store::Store;

/// A change that can be put back, with its names as bytes.
struct Step<'a> {
    change: &'a FileChange,
    path: PathBuf,
    from: Option<PathBuf>,
}

/// What the check found: the steps to take, the files that stop the undo unless told, and
/// those always left as they are.
pub struct Checked<'a> {
    steps: Vec<Step<'a>>,
    /// Changed since the run, or not restorable.
    pub conflicts: Vec<UndoFile>,
    /// Never put back (generated folders).
    pub left: Vec<UndoFile>,
}

/// Look at each file the run changed as it is now.
pub fn check<'a>(root: &File, changes: &'a RunChanges, store: &Store) -> Checked<'a> {
    let mut checked = Checked {
        steps: Vec::new(),
        conflicts: Vec::new(),
        left: Vec::new(),
    };
    for c in &changes.files {
        let issue = |problem, detail: Option<String>| UndoFile {
            path: c.path.clone(),
            path_bytes: c.path_bytes.clone(),
            problem,
            later_runs: Vec::new(),
            detail,
        };
        let generated =
            |s: &Option<FileState>| s.as_ref().is_some_and(|s| s.kind == EntryKind::Unrecorded);
        if generated(&c.before) || generated(&c.after) {
            checked.left.push(issue(UndoProblem::Generated, None));
            continue;
        }
        let (Some(path), from) = (
            c.name_bytes().map(bytes_path),
            c.from_name_bytes().map(bytes_path),
        ) else {
            checked.left.push(issue(
                UndoProblem::Failed,
                Some("its name in the record is unreadable".into()),
            ));
            continue;
        };
        if let Err(why) = restorable(c, store) {
            checked
                .conflicts
                .push(issue(UndoProblem::NotKept, Some(why)));
            continue;
        }
        let now_ok = matches(root, &path, c.after.as_ref());
        let from_free = match (&from, c.change) {
            (Some(f), ChangeKind::Renamed) => matches(root, f, None),
            _ => Ok(true),
        };
        match (now_ok, from_free) {
            // Another run, or the user, worked in the folder meanwhile: this may be theirs.
            (Ok(true), Ok(true)) if changes.overlapped => checked.conflicts.push(issue(
                UndoProblem::Overlapped,
                Some("another command, or you, changed files in the folder while it ran".into()),
            )),
            (Ok(true), Ok(true)) => checked.steps.push(Step {
                change: c,
                path,
                from: from.filter(|_| c.change == ChangeKind::Renamed),
            }),
            (Err(e), _) | (_, Err(e)) => checked
                .conflicts
                .push(issue(UndoProblem::ChangedSince, Some(e))),
            _ => checked
                .conflicts
                .push(issue(UndoProblem::ChangedSince, None)),
        }
    }
    checked
}

/// Whether what the file was before the run is known well enough to put back.
fn restorable(c: &FileChange, store: &Store) -> Result<(), String> {
    let Some(b) = &c.before else { return Ok(()) };
    match b.kind {
        EntryKind::Dir | EntryKind::Link => Ok(()),
        // A rename moves the very file back.
        EntryKind::File if c.change == ChangeKind::Renamed => Ok(()),
        // Only its permissions changed: its content is the same now.
        EntryKind::File if c.change == ChangeKind::Mode => Ok(()),
        EntryKind::File => match &b.content {
            Some(h) if store.has(h) => Ok(()),
            Some(_) => Err("its earlier content is no longer kept".into()),
            None => Err(format!(
                "its earlier content was not kept ({} bytes: over the size limit, or too much \
                 was read at once)",
                b.size
            )),
        },
        EntryKind::Other => Err("it was a socket, a pipe or a device".into()),
        EntryKind::Unrecorded => Err("its content is not recorded".into()),
    }
}

/// Whether the entry at `rel` is now `want` (none: absent). An error says why it cannot be
/// told.
fn matches(root: &File, rel: &Path, want: Option<&FileState>) -> Result<bool, String> {
    let (parent, name) = beneath::split(rel).map_err(|e| e.to_string())?;
    let st = match beneath::dir(root, parent) {
        Ok(dir) => beneath::stat(&dir, name)
            .map(|st| st.map(|st| (dir, st)))
            .map_err(|e| e.to_string())?,
        // No folder there any more (or a file, or a link, in its place): the entry is absent
        // as far as the folder's handle reaches.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => None,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    let (Some(want), Some((dir, st))) = (want, st.as_ref()) else {
        return Ok(want.is_none() && st.is_none());
    };
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => EntryKind::File,
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFLNK => EntryKind::Link,
        _ => EntryKind::Other,
    };
    if kind != want.kind {
        return Ok(false);
    }
    let mode = st.st_mode & 0o7777;
    Ok(match kind {
        EntryKind::Dir => mode == want.mode,
        EntryKind::Link => {
            let target = beneath::read_link(dir, name).map_err(|e| e.to_string())?;
            Some(target.into_vec()) == want.target_name_bytes()
        }
        EntryKind::File => {
            if st.st_size as u64 != want.size || mode != want.mode {
                return Ok(false);
            }
            let Some(hash) = &want.content else {
                return Err(
                    "its content after the run was not kept, so whether it changed \
                            since cannot be told"
                        .into(),
                );
            };
            hash_of(root, rel).map_err(|e| e.to_string())? == *hash
        }
        _ => true,
    })
}

fn hash_of(root: &File, rel: &Path) -> std::io::Result<String> {
    let mut f = beneath::open_beneath(root, rel, false)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    // Named as the store names contents.
    Ok(super::store::name(&h.finalize().into()))
}

fn bytes_path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(b))
}

/// Put the checked files back; with `later` other than refuse, the conflicting ones too
/// (overwrite) or not (keep). Returns how many were put back and what was left, with why.
pub fn apply(
    root: &File,
    changes: &RunChanges,
    store: &Store,
    later: Later,
    checked: Checked<'_>,
) -> (u64, Vec<UndoFile>) {
    let Checked {
        mut steps,
        conflicts,
        mut left,
    } = checked;
    for c in conflicts {
        let overwrite = later == Later::Overwrite
            && matches!(
                c.problem,
                UndoProblem::ChangedSince | UndoProblem::Overlapped
            );
        let change = overwrite
            .then(|| {
                changes
                    .files
                    .iter()
                    .find(|f| f.path_bytes == c.path_bytes && f.path == c.path)
            })
            .flatten();
        match change {
            Some(change) => steps.push(Step {
                change,
                path: change.name_bytes().map(bytes_path).unwrap_or_default(),
                from: change
                    .from_name_bytes()
                    .map(bytes_path)
                    .filter(|_| change.change == ChangeKind::Renamed),
            }),
            None => left.push(c),
        }
    }
    let mut restored = 0u64;
    let mut failed: HashSet<usize> = HashSet::new();
    let depth = |p: &Path| p.components().count();
    let is = |s: &Option<FileState>, k: EntryKind| s.as_ref().is_some_and(|s| s.kind == k);
    let order: Vec<(Phase, Vec<usize>)> = PHASES
        .iter()
        .map(|&phase| {
            let mut ids: Vec<usize> = (0..steps.len())
                .filter(|&i| phase.takes(&steps[i], is))
                .collect();
            match phase {
                Phase::MakeDirs => ids.sort_by_key(|&i| depth(&steps[i].path)),
                Phase::RemoveDirs | Phase::PutBack => {
                    ids.sort_by_key(|&i| std::cmp::Reverse(depth(&steps[i].path)))
                }
                _ => {}
            }
            (phase, ids)
        })
        .collect();
    let opened = open_folders(root, &steps);
    let mut done_steps: HashSet<usize> = HashSet::new();
    for (phase, ids) in order {
        for i in ids {
            if failed.contains(&i) {
                continue;
            }
            match phase.run(root, &steps[i], store) {
                Ok(()) => {
                    done_steps.insert(i);
                }
                Err(e) => {
                    failed.insert(i);
                    left.push(UndoFile {
                        path: steps[i].change.path.clone(),
                        path_bytes: steps[i].change.path_bytes.clone(),
                        problem: UndoProblem::Failed,
                        later_runs: Vec::new(),
                        detail: Some(e.to_string()),
                    });
                }
            }
        }
    }
    // Folders opened for the undo get their permissions back (those it put back have theirs).
    for (path, mode) in opened {
        let own = steps.iter().any(|s| {
            s.path == path
                && s.change
                    .before
                    .as_ref()
                    .is_some_and(|b| b.kind == EntryKind::Dir)
        });
        if !own {
            let _ = chmod(root, &path, mode);
        }
    }
    for i in done_steps {
        if failed.contains(&i) {
            continue;
        }
        // Looked at once more: something at work in the folder (a process the command left)
        // may have changed it since; said, never counted as put back.
        let s = &steps[i];
        let want = s.change.before.as_ref().map(|b| FileState {
            mode: beneath::safe_mode(b.mode, b.kind == EntryKind::Dir),
            ..b.clone()
        });
        let at = s.from.as_deref().unwrap_or(&s.path);
        if matches(root, at, want.as_ref()) == Ok(false) {
            left.push(UndoFile {
                path: s.change.path.clone(),
                path_bytes: s.change.path_bytes.clone(),
                problem: UndoProblem::Failed,
                later_runs: Vec::new(),
                detail: Some("it changed again while it was being put back".into()),
            });
        } else {
            restored += 1;
        }
    }
    (restored, left)
}

/// Every folder the steps write in, made writable and searchable for the owner where it was
/// not (a command may have made one read-only): each with the permissions it had.
fn open_folders(root: &File, steps: &[Step<'_>]) -> Vec<(PathBuf, u32)> {
    let mut folders: Vec<PathBuf> = steps
        .iter()
        .flat_map(|s| [Some(&s.path), s.from.as_ref()])
        .flatten()
        .flat_map(|p| {
            p.ancestors()
                .skip(1)
                .map(Path::to_path_buf)
                .collect::<Vec<_>>()
        })
        .collect();
    folders.sort_by_key(|p| (p.components().count(), p.clone()));
    folders.dedup();
    let mut opened = Vec::new();
    for f in folders {
        let mode = if f.as_os_str().is_empty() {
            root.metadata()
                .ok()
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        } else {
            beneath::split(&f)
                .ok()
                .and_then(|(parent, name)| {
                    let dir = beneath::dir(root, parent).ok()?;
                    beneath::stat(&dir, name).ok().flatten()
                })
                .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .map(|st| st.st_mode & 0o7777)
        };
        if let Some(mode) = mode.filter(|m| m & 0o700 != 0o700) {
            if chmod(root, &f, mode | 0o700).is_ok() {
                opened.push((f, mode));
            }
        }
    }
    opened
}

/// Set a folder's permissions through the root's handle (the root itself for an empty path).
fn chmod(root: &File, rel: &Path, mode: u32) -> std::io::Result<()> {
    if rel.as_os_str().is_empty() {
        use std::os::unix::fs::PermissionsExt;
        return root.set_permissions(std::fs::Permissions::from_mode(beneath::safe_mode(
            mode, true,
        )));
    }
    let (parent, name) = beneath::split(rel)?;
    beneath::set_mode(&beneath::dir(root, parent)?, name, mode)
}

/// The order the steps are taken in: what is in the way goes first, folders are made before
/// what goes in them and removed after what was in them.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Files and links the run made where there was nothing, or a folder.
    RemoveEntries,
    /// Folders that were there before, shallowest first.
    MakeDirs,
    /// Renamed files back to where they were.
    MoveBack,
    /// Folders the run made, deepest first.
    RemoveDirs,
    /// Files and links as they were (content, target, mode).
    PutBack,
}

const PHASES: [Phase; 5] = [
    Phase::RemoveEntries,
    Phase::MakeDirs,
    Phase::MoveBack,
    Phase::RemoveDirs,
    Phase::PutBack,
];

impl Phase {
    fn takes(self, s: &Step<'_>, is: impl Fn(&Option<FileState>, EntryKind) -> bool) -> bool {
        let c = s.change;
        let renamed = s.from.is_some();
        let after_entry = c.after.is_some() && !is(&c.after, EntryKind::Dir);
        let before_dir = is(&c.before, EntryKind::Dir);
        match self {
            Phase::RemoveEntries => !renamed && after_entry && (c.before.is_none() || before_dir),
            Phase::MakeDirs => !renamed && before_dir && !is(&c.after, EntryKind::Dir),
            Phase::MoveBack => renamed,
            Phase::RemoveDirs => !renamed && is(&c.after, EntryKind::Dir) && !before_dir,
            // Folders too: their permissions last, once what goes in them is back.
            Phase::PutBack => {
                !renamed
                    && (is(&c.before, EntryKind::File)
                        || is(&c.before, EntryKind::Link)
                        || before_dir)
            }
        }
    }

    fn run(self, root: &File, s: &Step<'_>, store: &Store) -> std::io::Result<()> {
        let (parent, name) = beneath::split(&s.path)?;
        let dir = beneath::dir(root, parent)?;
        let c = s.change;
        match self {
            // Already gone (an overwrite of a file the user removed since): nothing to do.
            Phase::RemoveEntries => absent_is_fine(beneath::remove(&dir, name, false)),
            Phase::RemoveDirs => absent_is_fine(beneath::remove(&dir, name, true)),
            // Made private; its own permissions are put back last.
            Phase::MakeDirs => match beneath::make_dir(&dir, name) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    match beneath::stat(&dir, name)? {
                        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Ok(()),
                        _ => Err(e),
                    }
                }
                r => r,
            },
            Phase::MoveBack => {
                let from = s.from.as_deref().unwrap_or(Path::new(""));
                let (from_parent, from_name) = beneath::split(from)?;
                let to_dir = beneath::dir(root, from_parent)?;
                beneath::rename(&dir, name, &to_dir, from_name, false)?;
                match &c.before {
                    Some(b) if c.after.as_ref().is_some_and(|a| a.mode != b.mode) => {
                        beneath::set_mode(&to_dir, from_name, b.mode)
                    }
                    _ => Ok(()),
                }
            }
            Phase::PutBack => put_back(&dir, name, c, store),
        }
    }
}

fn absent_is_fine(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

fn put_back(dir: &File, name: &OsStr, c: &FileChange, store: &Store) -> std::io::Result<()> {
    let Some(b) = &c.before else { return Ok(()) };
    match b.kind {
        EntryKind::Dir => beneath::set_mode(dir, name, b.mode),
        EntryKind::Link => {
            let target = b
                .target_name_bytes()
                .ok_or_else(|| std::io::Error::other("the link's target is unreadable"))?;
            beneath::put_link(dir, name, OsStr::from_bytes(&target))
        }
        EntryKind::File if c.change == ChangeKind::Mode => beneath::set_mode(dir, name, b.mode),
        EntryKind::File => {
            let hash = b
                .content
                .as_deref()
                .ok_or_else(|| std::io::Error::other("its content was not kept"))?;
            let content = store.get(hash)?;
            beneath::put_file(dir, name, &content, b.mode)
        }
        _ => Ok(()),
    }
}
