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

/// Entries a folder may hold and be recorded (more: not recorded, said). Each run walks its
/// folder twice (about 3 ms per 1,000 entries on the 2-core test machine, `find` itself
/// included), so the limit is low until the folder is watched instead of walked.
pub const MOST_ENTRIES: usize = 2_000;
/// Contents read anew in one walk, at most (the first record of a folder included).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const KEEP_PER_WALK: u64 = 512 << 20;
/// How long a folder found too large is not walked again.
const TOO_LARGE_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// Files larger than this are listed, their content not kept.
pub const LARGEST_KEPT: u64 = 16 << 20;
/// Folders whose last manifest is kept between runs.
const KEPT_FOLDERS: usize = 32;

/// A folder as last recorded: its manifest, each file's kept content in its entry.
type Baseline = Manifest;

#[derive(Default)]
struct State {
    baselines: Vec<(PathBuf, Baseline)>,
    /// Runs at work per folder, and whether a folder had two at once.
    busy: HashMap<PathBuf, (u32, bool)>,
    /// Folders found too large, and when: not walked again for a while.
    too_large: HashMap<PathBuf, std::time::Instant>,
    /// Folders an undo works in (one at a time, and none while a run works there).
    held: Vec<PathBuf>,
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
}

/// A run being recorded.
pub struct Session {
    root: PathBuf,
    handle: File,
    before: Baseline,
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
        Recorder {
            store: Store::new(dir.join("objects")),
            state: Mutex::default(),
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
                 cheaply"
            )
        };
        if self
            .state
            .lock()
            .too_large
            .get(root)
            .is_some_and(|at| at.elapsed() < TOO_LARGE_FOR)
        {
            return not(too_large(MOST_ENTRIES));
        }
        // At work from now: a run that ends while this one looks is an overlap too.
        self.enter(root, undo);
        let not = |reason: String| {
            self.leave(root);
            not(reason)
        };
        let t = std::time::Instant::now();
        let mut manifest = match scan::scan(&handle, root, MOST_ENTRIES) {
            Ok(m) => m,
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
        let last = self.take_baseline(root);
        self.keep_contents(&handle, &mut manifest, last.as_ref());
        tracing::debug!(
            folder = %root.display(),
            entries = manifest.len(),
            first = last.is_none(),
            scan_ms = scanned.as_secs_f64() * 1000.0,
            keep_ms = (t.elapsed() - scanned).as_secs_f64() * 1000.0,
            "recording begins"
        );
        Begun::Recording(Box::new(Session {
            root: root.to_path_buf(),
            handle,
            before: manifest,
        }))
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
        let after = scan::scan(&s.handle, &s.root, MOST_ENTRIES);
        let overlapped = self.leave(&s.root);
        let folder = s.root.display().to_string();
        let mut after = match after {
            Ok(m) => m,
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
                }
            }
        };
        self.keep_contents(&s.handle, &mut after, Some(&s.before));
        let mut files: Vec<FileChange> = scan::diff(&s.before, &after)
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
        }
    }

    /// Every file's content kept: those unchanged since `last` by its digest there, the
    /// others read (through the folder's handle) and kept.
    fn keep_contents(&self, handle: &File, manifest: &mut Manifest, last: Option<&Manifest>) {
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
                if let Ok(Some((digest, n))) = self.store.keep(handle, path, LARGEST_KEPT) {
                    e.content = Some(digest);
                    budget = budget.saturating_sub(n);
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = handle;
        }
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
        if st.baselines.len() > KEPT_FOLDERS {
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

/// The folder a run's changes are recorded in: the workspace admitted (`workspace`), or for a
/// local run its project: the git repository above `cwd`, else `cwd`. Never the home folder, a
/// folder above it, or a system folder as a whole (None).
pub fn folder_for(cwd: &Path, workspace: Option<&Path>, home: &Path) -> Option<PathBuf> {
    // The home folder as the kernel names it (`/home` may be a link, as on Fedora Silverblue).
    let real_home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let home = real_home.as_path();
    let project = cwd
        .ancestors()
        .take_while(|a| *a != home && !home.starts_with(a))
        .find(|a| a.join(".git").exists())
        .filter(|r| !too_wide(r, home))
        .unwrap_or(cwd);
    let root = workspace.unwrap_or(project).to_path_buf();
    (!too_wide(&root, home)).then_some(root)
}

/// The home folder or above, a system folder as a whole, or a folder of secrets.
fn too_wide(root: &Path, home: &Path) -> bool {
    let system = [
        "/",
        "/tmp",
        "/var",
        "/usr",
        "/etc",
        "/opt",
        "/srv",
        "/private/tmp",
        "/Users",
        "/home",
        "/mnt",
        "/media",
        "/Volumes",
        "/run",
        "/proc",
        "/sys",
        "/nix",
        "/var/tmp",
    ];
    let secret = crate::execute::protected::plan::SECRET_DIRS
        .iter()
        .any(|d| root.starts_with(home.join(d)));
    home.starts_with(root)
        || system.iter().any(|s| root == Path::new(s))
        || root.components().count() < 2
        || secret
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn changes(r: &RunChanges) -> Vec<(String, ChangeKind)> {
        r.files.iter().map(|f| (f.path.clone(), f.change)).collect()
    }

    #[test]
    fn a_run_s_changes_and_what_each_file_was() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("proj");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/a.rs"), "fn a() {}\n").unwrap();
        std::fs::write(root.join("old.txt"), "old\n").unwrap();
        let rec = Recorder::new(d.path().join("store"));
        let Begun::Recording(s) = rec.begin(&root) else {
            panic!("not recorded")
        };
        std::fs::write(root.join("src/a.rs"), "fn b() {}\n").unwrap();
        std::fs::remove_file(root.join("old.txt")).unwrap();
        std::fs::write(root.join("new.txt"), "new\n").unwrap();
        let r = rec.end("run_1", *s);
        assert!(r.recorded && !r.overlapped);
        assert_eq!(
            changes(&r),
            [
                ("new.txt".into(), ChangeKind::Added),
                ("old.txt".into(), ChangeKind::Removed),
                ("src/a.rs".into(), ChangeKind::Modified),
            ]
        );
        let a = &r.files[2];
        let was = rec
            .store()
            .get(a.before.as_ref().unwrap().content.as_ref().unwrap())
            .unwrap();
        let is = rec
            .store()
            .get(a.after.as_ref().unwrap().content.as_ref().unwrap())
            .unwrap();
        assert_eq!(
            (was.as_slice(), is.as_slice()),
            (&b"fn a() {}\n"[..], &b"fn b() {}\n"[..])
        );
        let removed = rec.store().get(
            r.files[1]
                .before
                .as_ref()
                .unwrap()
                .content
                .as_ref()
                .unwrap(),
        );
        assert_eq!(removed.unwrap(), b"old\n");

        // The next run: the user's edit in between is not the run's; touching a file without
        // changing it is nothing.
        std::fs::write(root.join("new.txt"), "the user's\n").unwrap();
        let Begun::Recording(s) = rec.begin(&root) else {
            panic!()
        };
        let f = std::fs::File::options()
            .write(true)
            .open(root.join("src/a.rs"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let r = rec.end("run_2", *s);
        assert_eq!(changes(&r), [], "{r:?}");
    }

    #[test]
    fn two_runs_at_once_are_both_told_so() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("proj");
        std::fs::create_dir_all(&root).unwrap();
        let rec = Recorder::new(d.path().join("store"));
        let (Begun::Recording(a), Begun::Recording(b)) = (rec.begin(&root), rec.begin(&root))
        else {
            panic!()
        };
        std::fs::write(root.join("x"), "x").unwrap();
        let (ra, rb) = (rec.end("a", *a), rec.end("b", *b));
        assert!(ra.overlapped && rb.overlapped);
        assert_eq!(changes(&ra), changes(&rb));
    }

    #[test]
    fn a_folder_too_large_is_not_recorded_and_says_why() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("big");
        std::fs::create_dir_all(&root).unwrap();
        for i in 0..=MOST_ENTRIES {
            std::fs::write(root.join(format!("f{i}")), "x").unwrap();
        }
        let rec = Recorder::new(d.path().join("store"));
        for _ in 0..2 {
            let Begun::Not { reason, .. } = rec.begin(&root) else {
                panic!("recorded")
            };
            assert!(reason.contains("more than 2000"), "{reason}");
        }
        assert!(!d.path().join("store").exists(), "nothing kept");
    }

    #[test]
    fn only_a_project_is_recorded_never_the_home_folder_or_the_system() {
        let home = Path::new("/home/u");
        let none = |cwd: &str| folder_for(Path::new(cwd), None, home);
        assert_eq!(none("/home/u"), None);
        assert_eq!(none("/home"), None);
        assert_eq!(none("/"), None);
        assert_eq!(none("/tmp"), None);
        assert_eq!(none("/etc"), None);
        assert_eq!(none("/home/u/notes"), Some("/home/u/notes".into()));
        assert_eq!(none("/home/u/.ssh"), None, "a folder of secrets");
        assert_eq!(none("/mnt"), None);
        let w = folder_for(Path::new("/x/y"), Some(Path::new("/srv/work")), home);
        assert_eq!(w, Some("/srv/work".into()));
    }
}
