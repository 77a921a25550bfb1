//! The recorder: before a run, its folder's manifest, with the content of every file kept
//! (each content once: after the first run in a folder, only what changed since is read);
//! after it, the manifest again, told apart, and the new contents kept. What a run changed is
//! then known, and what each file was before it is kept, so that it can be undone.
//!
//! Two runs at once in one folder are both told the changes, said as such; so are the user's
//! own edits while a run goes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use stigmer_protocol::changes::{ChangeKind, EntryKind, FileChange, FileState, RunChanges};

use super::scan::{self, Entry, How, Kind, Manifest, NotRecorded};
use super::store::{self, Store};

/// Entries a watched folder may hold and be recorded (more: not recorded, said). A watched
/// folder is read again only where it changed; its first record reads it all.
pub const MOST_ENTRIES: usize = 200_000;
/// Contents read anew in one walk, at most (the first record of a folder included).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const KEEP_PER_WALK: u64 = 512 << 20;
/// How long a folder found too large is not walked again.
const TOO_LARGE_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// Files larger than this are listed, their content not kept (by default: a setting).
pub const LARGEST_KEPT: u64 = 16 << 20;
/// Folders whose last manifest is kept between runs (each with its watch), and their entries
/// in all (about 200 bytes each).
const KEPT_FOLDERS: usize = 32;
const KEPT_ENTRIES: usize = 1_000_000;

pub use super::look::MOST_WALKED;
use super::look::{look, Baseline, Seen};

#[derive(Default)]
struct State {
    /// Each folder's last record (the newest last).
    baselines: Vec<(PathBuf, Baseline)>,
    /// Runs at work per folder, and whether a folder had two at once.
    busy: HashMap<PathBuf, (u32, bool)>,
    /// Folders found too large, and when: not walked again for a while.
    too_large: HashMap<PathBuf, std::time::Instant>,
    /// Folders an undo works in (one at a time, and none while a run works there).
    held: Vec<PathBuf>,
    /// Records ended and not yet written to the history ([`Recorder::written`]): their
    /// contents are referred to by nothing the collection can see yet.
    unwritten: usize,
}

/// A folder held for an undo until dropped.
pub struct Hold<'a> {
    recorder: &'a Recorder,
    root: PathBuf,
}

impl Hold<'_> {
    /// Record the undo as a run: before it, the folder's manifest.
    pub fn begin(&self) -> Begun {
        self.recorder.begin_as(&self.root, true)
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.recorder.state.lock().held.retain(|r| *r != self.root);
    }
}

/// One folder is the other or inside it.
fn nested(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Records what runs change.
pub struct Recorder {
    store: Store,
    state: Mutex<State>,
    /// Entries a folder may hold and be recorded.
    most: usize,
    /// Files larger than this are listed, their content not kept.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    largest: u64,
}

/// A run being recorded.
pub struct Session {
    root: PathBuf,
    handle: File,
    before: Baseline,
    /// Why contents before the run could not be kept (a full disk), if so.
    unstored: Option<String>,
}

impl Session {
    /// The folder's handle, opened when the session began.
    pub fn handle(&self) -> &File {
        &self.handle
    }
}

/// Why a run's folder is not recorded, or the session.
pub enum Begun {
    Recording(Box<Session>),
    Not { folder: PathBuf, reason: String },
}

impl Recorder {
    pub fn new(dir: PathBuf) -> Recorder {
        Recorder::with_limit(dir, MOST_ENTRIES)
    }

    /// A recorder of folders of at most `most` entries.
    pub fn with_limit(dir: PathBuf, most: usize) -> Recorder {
        Recorder::with_limits(dir, most, LARGEST_KEPT)
    }

    /// A recorder of folders of at most `most` entries, keeping files of at most `largest`
    /// bytes (the settings `history.changes_max_files` and `history.changes_max_file_size`).
    pub fn with_limits(dir: PathBuf, most: usize, largest: u64) -> Recorder {
        Recorder {
            store: Store::new(dir.join("objects")),
            state: Mutex::default(),
            most,
            largest,
        }
    }

    /// The content store (for reading what a run's files were and are).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Before a run in `root`: its manifest, every file's content kept. Blocking.
    pub fn begin(&self, root: &Path) -> Begun {
        self.begin_as(root, false)
    }

    fn begin_as(&self, root: &Path, undo: bool) -> Begun {
        let not = |reason: String| Begun::Not {
            folder: root.to_path_buf(),
            reason,
        };
        let handle = match scan::open_root(root) {
            Ok(h) => h,
            Err(e) => return not(format!("the folder cannot be read: {e}")),
        };
        let too_large = |limit: usize| {
            format!(
                "the folder holds more than {limit} files and folders, too many to record \
                 cheaply (the setting history.changes_max_files)"
            )
        };
        if self
            .state
            .lock()
            .too_large
            .get(root)
            .is_some_and(|at| at.elapsed() < TOO_LARGE_FOR)
        {
            return not(too_large(self.most));
        }
        // At work from now: a run that ends while this one looks is an overlap too.
        self.enter(root, undo);
        let not = |reason: String| {
            self.leave(root);
            not(reason)
        };
        let t = std::time::Instant::now();
        let last = self.take_baseline(root);
        let first = last.is_none();
        let (mut before, seen) = match look(&handle, root, last, self.most, false) {
            Ok(x) => x,
            Err(NotRecorded::TooLarge { limit }) => {
                {
                    let mut st = self.state.lock();
                    st.too_large.retain(|_, at| at.elapsed() < TOO_LARGE_FOR);
                    st.too_large
                        .insert(root.to_path_buf(), std::time::Instant::now());
                }
                return not(too_large(limit));
            }
            Err(NotRecorded::Unreadable(e)) => {
                return not(format!("the folder cannot be read: {e}"))
            }
        };
        let scanned = t.elapsed();
        let unstored = self.keep_seen(&handle, &mut before.manifest, &seen);
        tracing::debug!(
            folder = %root.display(),
            entries = before.manifest.len(),
            first,
            watched = before.watch.is_some(),
            scan_ms = scanned.as_secs_f64() * 1000.0,
            keep_ms = (t.elapsed() - scanned).as_secs_f64() * 1000.0,
            "recording begins"
        );
        Begun::Recording(Box::new(Session {
            root: root.to_path_buf(),
            handle,
            before,
            unstored,
        }))
    }

    /// Remove the kept contents nobody refers to: not `referenced` (the history's runs, read
    /// under the recorder's lock), not the folders' last records. Not while a run or an undo
    /// is at work or a record is not yet written; runs that begin meanwhile wait. Returns
    /// what went, if it ran.
    pub fn collect(
        &self,
        referenced: impl FnOnce() -> Option<std::collections::HashSet<String>>,
    ) -> Option<(u64, u64)> {
        // Under the lock: no run can begin, and none has a record not yet in the history.
        let st = self.state.lock();
        if !st.busy.is_empty() || !st.held.is_empty() || st.unwritten > 0 {
            return None;
        }
        let mut referenced = referenced()?;
        for (_, b) in &st.baselines {
            referenced.extend(
                b.manifest
                    .values()
                    .filter_map(|e| e.content.as_ref().map(store::name)),
            );
        }
        let gone = self.store.collect(&referenced);
        drop(st);
        Some(gone)
    }

    /// A record [`Recorder::end`] gave is in the history now.
    pub fn written(&self) {
        let mut st = self.state.lock();
        st.unwritten = st.unwritten.saturating_sub(1);
    }

    /// Hold `root` for an undo: none when a run or another undo works in it, in a folder
    /// inside it or in one around it. Checked and taken at once.
    pub fn hold(&self, root: &Path) -> Option<Hold<'_>> {
        let mut st = self.state.lock();
        let taken = st
            .busy
            .keys()
            .chain(st.held.iter())
            .any(|r| nested(r, root));
        if taken {
            return None;
        }
        st.held.push(root.to_path_buf());
        Some(Hold {
            recorder: self,
            root: root.to_path_buf(),
        })
    }

    /// A session given up without recording (nothing was done): the folder as it was
    /// walked stays the baseline.
    pub fn abandon(&self, s: Session) {
        self.leave(&s.root);
        self.put_baseline(s.root, s.before);
    }

    /// After the run: what it changed. Blocking.
    pub fn end(&self, run_id: &str, s: Session) -> RunChanges {
        // Through the handle it began with: the folder the run worked in, whatever its path
        // names now.
        let looked = look(&s.handle, &s.root, Some(s.before), self.most, true);
        let overlapped = self.leave(&s.root);
        self.state.lock().unwritten += 1;
        let folder = s.root.display().to_string();
        let (mut after, seen) = match looked {
            Ok(x) => x,
            Err(e) => {
                return RunChanges {
                    run_id: run_id.into(),
                    folder,
                    recorded: false,
                    reason: Some(match e {
                        NotRecorded::TooLarge { limit } => {
                            format!("after the run the folder held more than {limit} entries")
                        }
                        NotRecorded::Unreadable(e) => format!("the folder cannot be read: {e}"),
                    }),
                    files: Vec::new(),
                    overlapped,
                    unkept: None,
                }
            }
        };
        let unstored = self.keep_seen(&s.handle, &mut after.manifest, &seen);
        let unstored = s.unstored.or(unstored);
        let changes = match &seen {
            // Each entry told about: as it was (with its kept content), as it is now.
            #[cfg(target_os = "linux")]
            Seen::Relisted(t) => scan::changes_of(t.iter().map(|(p, (old, new))| {
                (
                    p.as_path(),
                    old.as_ref(),
                    new.as_ref().and(after.manifest.get(p)),
                )
            })),
            Seen::Walked(Some(before)) => scan::diff(before, &after.manifest),
            Seen::Walked(None) => scan::diff(&Manifest::new(), &after.manifest),
        };
        let mut files: Vec<FileChange> = changes
            .into_iter()
            .flat_map(split_false_rename)
            .filter_map(|c| {
                let before = c.before.as_ref().map(state);
                let after_state = c.after.as_ref().map(state);
                // A mode change whose content differs too is a modification (an undo restores
                // both).
                let c = match c.how {
                    How::Mode
                        if before.as_ref().map(|b| &b.content)
                            != after_state.as_ref().map(|a| &a.content) =>
                    {
                        scan::Change {
                            how: How::Modified,
                            ..c
                        }
                    }
                    _ => c,
                };
                // Told by change time, the same content: only its metadata was touched.
                if c.how == How::Modified
                    && before.as_ref().and_then(|b| b.content.as_ref()).is_some()
                    && before.as_ref().map(|b| (&b.content, b.mode))
                        == after_state.as_ref().map(|a| (&a.content, a.mode))
                {
                    return None;
                }
                Some(FileChange {
                    path: c.path.to_string_lossy().into_owned(),
                    path_bytes: raw_name(&c.path),
                    change: kind(c.how),
                    before,
                    after: after_state,
                    from_bytes: c.from.as_deref().and_then(raw_name),
                    from: c.from.map(|f| f.to_string_lossy().into_owned()),
                })
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        self.put_baseline(s.root.clone(), after);
        RunChanges {
            run_id: run_id.into(),
            folder,
            recorded: true,
            reason: None,
            files,
            overlapped,
            unkept: unstored.map(|e| {
                format!(
                    "some contents could not be kept ({e}): the files are listed, and those \
                     whose earlier content is missing cannot be put back by an undo"
                )
            }),
        }
    }

    /// The contents of what a look found new: the entries told about, or after a walk every
    /// file (those unchanged since the manifest before by their digest there).
    fn keep_seen(&self, handle: &File, manifest: &mut Manifest, seen: &Seen) -> Option<String> {
        match seen {
            #[cfg(target_os = "linux")]
            Seen::Relisted(t) => {
                let mut told = Manifest::new();
                for p in t.keys() {
                    if let Some(e) = manifest.remove(p) {
                        told.insert(p.clone(), e);
                    }
                }
                let unstored = self.keep_contents(handle, &mut told, None);
                // One by one: `append` rebuilds the whole tree.
                for (p, e) in told {
                    manifest.insert(p, e);
                }
                unstored
            }
            Seen::Walked(last) => self.keep_contents(handle, manifest, last.as_ref()),
        }
    }

    /// Every file's content kept: those unchanged since `last` by its digest there, the
    /// others read (through the folder's handle) and kept.
    fn keep_contents(
        &self,
        handle: &File,
        manifest: &mut Manifest,
        last: Option<&Manifest>,
    ) -> Option<String> {
        #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
        let mut unstored = None;
        // Bytes read anew per walk: beyond, contents are listed, not kept.
        #[cfg(target_os = "linux")]
        let mut budget = KEEP_PER_WALK;
        for (path, e) in manifest.iter_mut() {
            if e.kind != Kind::File {
                continue;
            }
            if let Some(l) = last.and_then(|l| l.get(path)).filter(|l| l.same(e)) {
                e.content = l.content;
                if e.content.is_some() {
                    continue;
                }
            }
            #[cfg(target_os = "linux")]
            if e.size <= budget {
                match self.store.keep(handle, path, self.largest) {
                    Ok(Some((digest, n))) => {
                        e.content = Some(digest);
                        budget = budget.saturating_sub(n);
                    }
                    Err(err) if super::store::is_unstored(&err) => {
                        unstored.get_or_insert(err.to_string());
                    }
                    _ => {}
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = handle;
        }
        unstored
    }

    /// A run starts working in `root`.
    fn enter(&self, root: &Path, undo: bool) {
        let mut st = self.state.lock();
        // An undo at work there (recorded or not): what it puts back shows in this run too.
        let undoing = !undo && st.held.iter().any(|r| nested(r, root));
        let busy = st.busy.entry(root.to_path_buf()).or_default();
        busy.0 += 1;
        if busy.0 > 1 || undoing {
            busy.1 = true;
        }
    }

    /// A run stops working in `root`: whether another worked there at the same time.
    fn leave(&self, root: &Path) -> bool {
        let mut st = self.state.lock();
        let busy = st.busy.entry(root.to_path_buf()).or_default();
        let overlapped = busy.1;
        busy.0 = busy.0.saturating_sub(1);
        if busy.0 == 0 {
            st.busy.remove(root);
        }
        overlapped
    }

    fn take_baseline(&self, root: &Path) -> Option<Baseline> {
        let mut st = self.state.lock();
        let i = st.baselines.iter().position(|(r, _)| r == root)?;
        Some(st.baselines.remove(i).1)
    }

    fn put_baseline(&self, root: PathBuf, b: Baseline) {
        let mut st = self.state.lock();
        st.baselines.retain(|(r, _)| *r != root);
        st.baselines.push((root, b));
        // The oldest go first: at most so many folders, and so many entries in all (memory).
        let total = |st: &State| {
            st.baselines
                .iter()
                .map(|(_, b)| b.manifest.len())
                .sum::<usize>()
        };
        while st.baselines.len() > KEPT_FOLDERS
            || (st.baselines.len() > 1 && total(&st) > KEPT_ENTRIES)
        {
            st.baselines.remove(0);
        }
    }
}

/// A "rename" whose content differs is a removed file and a new one that got its inode.
fn split_false_rename(c: scan::Change) -> Vec<scan::Change> {
    let (b, a) = (
        c.before.as_ref().and_then(|b| b.content),
        c.after.as_ref().and_then(|a| a.content),
    );
    // Unknown content on either side: not proof enough of a rename.
    let same = b.is_some() && b == a;
    let Some(from) = c.from.clone().filter(|_| c.how == How::Renamed && !same) else {
        return vec![c];
    };
    vec![
        scan::Change {
            path: from,
            how: How::Removed,
            before: c.before.clone(),
            after: None,
            from: None,
        },
        scan::Change {
            path: c.path,
            how: How::Added,
            before: None,
            after: c.after,
            from: None,
        },
    ]
}

fn state(e: &Entry) -> FileState {
    FileState {
        kind: match e.kind {
            Kind::File => EntryKind::File,
            Kind::Dir => EntryKind::Dir,
            Kind::Link => EntryKind::Link,
            Kind::Other => EntryKind::Other,
            Kind::Unrecorded => EntryKind::Unrecorded,
        },
        size: e.size,
        mode: e.mode,
        content: e.content.as_ref().map(store::name),
        target: e.target.as_ref().map(|t| t.to_string_lossy().into_owned()),
        target_bytes: e.target.as_deref().and_then(raw_name),
    }
}

fn kind(h: How) -> ChangeKind {
    match h {
        How::Added => ChangeKind::Added,
        How::Removed => ChangeKind::Removed,
        How::Modified => ChangeKind::Modified,
        How::Mode => ChangeKind::Mode,
        How::Renamed => ChangeKind::Renamed,
        How::Replaced => ChangeKind::Replaced,
    }
}

/// A name's bytes in base64 when they are not UTF-8.
fn raw_name(p: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use base64::Engine as _;
        use std::os::unix::ffi::OsStrExt;
        p.to_str()
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(p.as_os_str().as_bytes()))
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
#[path = "record_tests.rs"]
mod tests;
