//! Watching a folder instead of walking it (Linux: inotify): every folder under the root has a
//! watch, set on its handle before it is read, so that anything changed after the read is
//! told. Before and after a run only the folders told about are read again, so a run's cost
//! follows what changed, not the folder's size. The kernel queues the events as the changes
//! happen, and they are read without waiting: what a command did before it ended is all there
//! when its run ends. A lost event (the queue overflowed) makes the next look a whole walk.
//!
//! What a watch does not see: writes through a shared memory mapping (`mmap`) raise no event.
//! Such a change is found at the next whole walk, not at the run's end (README, Known limits).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::scan::{self, Entry, Kind, Manifest, NotRecorded};

/// The folders told about since the last look, or all of them.
#[derive(Debug, PartialEq, Eq)]
pub enum Dirty {
    All,
    Dirs(BTreeSet<PathBuf>),
}

/// A folder's watches.
pub struct Watch {
    inotify: Inotify,
    /// Each watch's folder, and whether its content is recorded (a generated folder's own
    /// entries are watched only to look at it again in its parent).
    dirs: HashMap<WatchDescriptor, (PathBuf, bool)>,
    /// Each watched folder's watch, by path.
    paths: HashMap<PathBuf, WatchDescriptor>,
    /// A watch could not be set (the user's limit reached): the next look is a whole walk.
    lost: bool,
}

/// Events read in one look, at most: past it the look is a whole walk.
const MOST_EVENTS: usize = 1_000_000;

impl Watch {
    pub fn new() -> std::io::Result<Watch> {
        Ok(Watch {
            inotify: Inotify::init()?,
            dirs: HashMap::new(),
            paths: HashMap::new(),
            lost: false,
        })
    }

    /// Every watch asked for was set (none refused since the last look).
    pub fn complete(&self) -> bool {
        !self.lost
    }

    /// Watch the folder `dir` (at `rel`); `walked`: its content is recorded. True when the
    /// folder was not watched yet (a new folder, even with an old one's inode number).
    pub fn add(&mut self, dir: &File, rel: &Path, walked: bool) -> std::io::Result<bool> {
        let mut mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::EXCL_UNLINK;
        if walked {
            mask |= WatchMask::MODIFY | WatchMask::CLOSE_WRITE;
        }
        // The handle's own entry in /proc names exactly that folder (no path looked up).
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        match self.inotify.watches().add(path, mask) {
            Ok(wd) => {
                let new = self
                    .dirs
                    .insert(wd.clone(), (rel.to_path_buf(), walked))
                    .is_none();
                self.paths.insert(rel.to_path_buf(), wd);
                Ok(new)
            }
            Err(e) => {
                self.lost = true;
                Err(e)
            }
        }
    }

    /// Stop watching the folder that was at `rel` (gone from the tree), unless its watch now
    /// belongs to another path (the folder was moved within the tree and watched there).
    fn forget(&mut self, rel: &Path) {
        let Some(wd) = self.paths.remove(rel) else {
            return;
        };
        if self.dirs.get(&wd).is_some_and(|(p, _)| p == rel) {
            self.dirs.remove(&wd);
            let _ = self.inotify.watches().remove(wd);
        }
    }

    /// The folders told about since the last call (the events queued so far, read without
    /// waiting).
    pub fn drain(&mut self) -> Dirty {
        let mut dirty = BTreeSet::new();
        let mut all = std::mem::take(&mut self.lost);
        let mut buffer = vec![0u8; 64 * 1024];
        let mut seen = 0usize;
        loop {
            if seen > MOST_EVENTS {
                // Drained later (by the walk's new watch's owner dropping this one).
                return Dirty::All;
            }
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return Dirty::All,
            };
            let mut any = false;
            for ev in events {
                any = true;
                seen += 1;
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    all = true;
                    continue;
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    if let Some((p, _)) = self.dirs.remove(&ev.wd) {
                        if self.paths.get(&p) == Some(&ev.wd) {
                            self.paths.remove(&p);
                        }
                    }
                    continue;
                }
                let Some((rel, walked)) = self.dirs.get(&ev.wd) else {
                    continue;
                };
                let own = ev.name.is_none()
                    || ev
                        .mask
                        .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF);
                if *walked && !own {
                    dirty.insert(rel.clone());
                } else {
                    // The folder itself changed (or a generated one's entries): its parent
                    // lists it again.
                    match rel.parent() {
                        Some(p) => {
                            dirty.insert(p.to_path_buf());
                        }
                        // The root itself: moved or removed, everything is looked at again;
                        // its own permissions or times are not an entry.
                        None => {
                            if ev
                                .mask
                                .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                            {
                                all = true;
                            }
                        }
                    }
                }
            }
            if !any {
                break;
            }
        }
        if all {
            Dirty::All
        } else {
            Dirty::Dirs(dirty)
        }
    }
}

/// Each path whose entry changed, with its entry before the look and after it (either may be
/// none).
pub type Touched = std::collections::BTreeMap<PathBuf, (Option<Entry>, Option<Entry>)>;

fn touch(t: &mut Touched, p: &Path, old: Option<Entry>, new: Option<Entry>) {
    t.entry(p.to_path_buf())
        .and_modify(|(_, n)| *n = new.clone())
        .or_insert((old, new));
}

/// Read the folders in `dirty` again into `m` (watching what is new), shallowest first, adding
/// what changed to `touched`. A folder gone or replaced while it is read is skipped (its
/// parent, told too, lists it); one still there is read once more, and one that cannot be read
/// then makes the look fail (never a change missed).
pub fn relist(
    handle: &File,
    root: &Path,
    m: &mut Manifest,
    dirty: &BTreeSet<PathBuf>,
    watch: &mut Watch,
    limit: usize,
    touched: &mut Touched,
) -> Result<(), NotRecorded> {
    let mut skipped = Vec::new();
    let mut dirs: Vec<&PathBuf> = dirty.iter().collect();
    dirs.sort_by_key(|p| p.components().count());
    for rel in dirs {
        if !relist_one(handle, root, m, rel, watch, limit, touched)? {
            skipped.push(rel.clone());
        }
    }
    for rel in skipped {
        let still = m.get(&rel).is_some_and(|e| e.kind == Kind::Dir);
        if still && !relist_one(handle, root, m, &rel, watch, limit, touched)? {
            return Err(NotRecorded::Unreadable(format!(
                "{}: the folder changed while it was read",
                stigmer_protocol::changes::printable(&rel.to_string_lossy())
            )));
        }
    }
    // Told about but the same in the end (made and removed, or touched alone): no change.
    touched.retain(|_, (o, n)| match (o, n) {
        (Some(o), Some(n)) => !o.same(n),
        (None, None) => false,
        _ => true,
    });
    Ok(())
}

/// Read one folder again; false when it could not be listed (gone or replaced meanwhile).
fn relist_one(
    handle: &File,
    root: &Path,
    m: &mut Manifest,
    rel: &Path,
    watch: &mut Watch,
    limit: usize,
    touched: &mut Touched,
) -> Result<bool, NotRecorded> {
    // Only folders the manifest holds as walked (or the root) are listed.
    let known = rel.as_os_str().is_empty() || m.get(rel).is_some_and(|e| e.kind == Kind::Dir);
    if !known {
        return Ok(true);
    }
    let mut on_dir = |d: &File, rel: &Path, walked: bool| {
        // A watch that cannot be set: the next look walks everything (`lost`).
        let _ = watch.add(d, rel, walked);
        Ok(())
    };
    let now = match scan::list_dir(handle, root, rel, &mut on_dir) {
        Ok(now) => now,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV)
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(scan::unreadable(rel, e)),
    };
    let was = children(m, rel);
    let now_names: BTreeSet<&PathBuf> = now.iter().map(|(p, _)| p).collect();
    for p in was.iter().filter(|p| !now_names.contains(p)) {
        remove_tree(m, p, touched, watch);
    }
    for (p, e) in now {
        let old = m.get(&p).cloned();
        if old.as_ref().is_some_and(|o| o.same(&e)) {
            continue;
        }
        // A folder that is another one now (or no folder): its old tree goes. Another one is
        // told by its watch too: a folder made with a removed one's inode number gets a watch
        // of its own.
        let was_dir = old.as_ref().is_some_and(|o| o.kind == Kind::Dir);
        let mut still = old
            .as_ref()
            .is_some_and(|o| o.kind == e.kind && o.ino == e.ino && o.dev == e.dev);
        if was_dir && still {
            let d = super::beneath::open_beneath(handle, &p, true);
            still = d.is_ok_and(|d| watch.add(&d, &p, true).is_ok_and(|new| !new));
        }
        if was_dir && !still {
            remove_tree(m, &p, touched, watch);
        }
        let old = if was_dir && !still { None } else { old };
        m.insert(p.clone(), e.clone());
        touch(touched, &p, old, Some(e.clone()));
        if e.kind == Kind::Dir && !(was_dir && still) {
            let mut sub = Manifest::new();
            let mut on_dir = |d: &File, rel: &Path, walked: bool| {
                let _ = watch.add(d, rel, walked);
                Ok(())
            };
            scan::walk_into(handle, root, p.clone(), &mut sub, limit, &mut on_dir)?;
            for (q, f) in sub {
                touch(touched, &q, None, Some(f.clone()));
                m.insert(q, f);
            }
        }
        if m.len() > limit {
            return Err(NotRecorded::TooLarge { limit });
        }
    }
    Ok(true)
}

/// Entries whose state now differs from the manifest, told by a look at each (no read of any
/// folder): the folders holding them. What a watch cannot tell (a write through a hard link
/// made and removed in another folder, or through a shared memory mapping) changes a file's
/// size or change time, which a command cannot forge.
pub fn sweep(handle: &File, m: &Manifest) -> BTreeSet<PathBuf> {
    // Two halves at once (the looks are system calls, each waiting on the file system).
    let entries: Vec<(&PathBuf, &Entry)> = m.iter().collect();
    let (first, second) = entries.split_at(entries.len() / 2);
    let (mut a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| sweep_part(handle, second));
        (sweep_part(handle, first), other.join().unwrap_or_default())
    });
    a.extend(b);
    a
}

fn sweep_part(handle: &File, entries: &[(&PathBuf, &Entry)]) -> BTreeSet<PathBuf> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let mut dirty = BTreeSet::new();
    let mut dirs: HashMap<&Path, Option<File>> = HashMap::new();
    let mut name_buf: Vec<u8> = Vec::with_capacity(256);
    for (p, e) in entries {
        let (parent, name) = match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => continue,
        };
        if !dirs.contains_key(parent) {
            dirs.insert(parent, super::beneath::dir(handle, parent).ok());
        }
        let Some(Some(dir)) = dirs.get(parent) else {
            dirty.insert(parent.to_path_buf());
            continue;
        };
        name_buf.clear();
        name_buf.extend_from_slice(name.as_bytes());
        name_buf.push(0);
        // SAFETY: stat is plain data, filled by the call.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid directory fd, a NUL-terminated name (names hold no NUL), a stat to
        // fill; a link is looked at itself.
        let r = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                name_buf.as_ptr().cast(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        let same = r == 0 && {
            let kind_bits = st.st_mode & libc::S_IFMT;
            let ctime = (st.st_ctime, st.st_ctime_nsec);
            match e.kind {
                Kind::Dir => kind_bits == libc::S_IFDIR && st.st_ino == e.ino,
                Kind::Unrecorded => st.st_ino == e.ino && ctime == e.ctime,
                _ => {
                    st.st_ino == e.ino
                        && st.st_dev == e.dev
                        && ctime == e.ctime
                        && (e.kind != Kind::File || st.st_size as u64 == e.size)
                }
            }
        };
        if !same {
            dirty.insert(parent.to_path_buf());
        }
    }
    dirty
}

/// The entries directly in the folder `rel`: each found by a seek past the one before and
/// everything under it, so the cost is the folder's own entries, not the tree under them.
fn children(m: &Manifest, rel: &Path) -> Vec<PathBuf> {
    use std::ops::Bound::{Excluded, Unbounded};
    use std::os::unix::ffi::OsStrExt;
    // A name longer than any a file system allows, of the greatest bytes: after every path
    // under a folder, before its next sibling.
    let past = std::ffi::OsStr::from_bytes(&[0xff; 256]);
    let mut out = Vec::new();
    let mut from = rel.to_path_buf();
    while let Some((p, _)) = m
        .range::<Path, _>((Excluded(from.as_path()), Unbounded))
        .next()
    {
        if !p.starts_with(rel) || p == rel {
            break;
        }
        out.push(p.clone());
        from = p.join(past);
    }
    out
}

/// Remove `p` and everything under it, each told as gone.
fn remove_tree(m: &mut Manifest, p: &Path, touched: &mut Touched, watch: &mut Watch) {
    let under: Vec<PathBuf> = m
        .range::<Path, _>((std::ops::Bound::Included(p), std::ops::Bound::Unbounded))
        .map(|(q, _)| q)
        .take_while(|q| q.starts_with(p))
        .cloned()
        .collect();
    for q in under {
        if let Some(e) = m.remove(&q) {
            if matches!(e.kind, Kind::Dir | Kind::Unrecorded) {
                watch.forget(&q);
            }
            touch(touched, &q, Some(e), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Looked at again from the watch's events, a folder is what a whole walk finds, and what
    /// changed is what a walk before and after tells, after each of many kinds of change.
    #[test]
    fn a_watched_folder_looked_at_again_is_what_a_walk_finds() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("w");
        let p = |r: &str| root.join(r);
        std::fs::create_dir_all(p("a/b/c")).unwrap();
        std::fs::create_dir_all(p("node_modules/x")).unwrap();
        std::fs::create_dir_all(p("keep")).unwrap();
        for f in [
            "a/1",
            "a/b/2",
            "a/b/c/3",
            "top",
            "keep/k",
            "node_modules/x/i.js",
        ] {
            std::fs::write(p(f), f).unwrap();
        }
        let handle = scan::open_root(&root).unwrap();
        let mut w = Watch::new().unwrap();
        let mut m = scan::scan_with(&handle, &root, 1000, &mut |d, rel, walked| {
            w.add(d, rel, walked).map(|_| ())
        })
        .unwrap();
        type Step = Box<dyn Fn()>;
        let steps: Vec<(&str, Step)> = vec![
            ("nothing", Box::new(|| {})),
            (
                "edit",
                Box::new({
                    let f = p("a/b/2");
                    move || std::fs::write(&f, "22").unwrap()
                }),
            ),
            (
                "new file deep",
                Box::new({
                    let f = p("a/b/c/new");
                    move || std::fs::write(&f, "n").unwrap()
                }),
            ),
            (
                "new folder tree",
                Box::new({
                    let r = root.clone();
                    move || {
                        std::fs::create_dir_all(r.join("n/m/o")).unwrap();
                        std::fs::write(r.join("n/m/o/f"), "f").unwrap();
                    }
                }),
            ),
            (
                "rename a folder",
                Box::new({
                    let r = root.clone();
                    move || std::fs::rename(r.join("a/b"), r.join("keep/b2")).unwrap()
                }),
            ),
            (
                "edit in the moved folder",
                Box::new({
                    let f = p("keep/b2/c/3");
                    move || std::fs::write(&f, "333").unwrap()
                }),
            ),
            (
                "remove a tree",
                Box::new({
                    let r = root.clone();
                    move || std::fs::remove_dir_all(r.join("n")).unwrap()
                }),
            ),
            (
                "chmod",
                Box::new({
                    let f = p("top");
                    move || {
                        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755))
                            .unwrap()
                    }
                }),
            ),
            (
                "folder made a file",
                Box::new({
                    let r = root.clone();
                    move || {
                        std::fs::remove_dir_all(r.join("keep/b2")).unwrap();
                        std::fs::write(r.join("keep/b2"), "file").unwrap();
                    }
                }),
            ),
            (
                "a link",
                Box::new({
                    let r = root.clone();
                    move || std::os::unix::fs::symlink("/etc", r.join("a/link")).unwrap()
                }),
            ),
            (
                "inside a generated folder",
                Box::new({
                    let f = p("node_modules/new.js");
                    move || std::fs::write(&f, "1").unwrap()
                }),
            ),
            (
                "file moved across folders",
                Box::new({
                    let r = root.clone();
                    move || std::fs::rename(r.join("a/1"), r.join("keep/1")).unwrap()
                }),
            ),
            (
                "root folder made read-only and back",
                Box::new({
                    let f = p("keep");
                    move || {
                        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o555))
                            .unwrap();
                        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755))
                            .unwrap();
                    }
                }),
            ),
        ];
        let strip = |m: &Manifest| -> Vec<(PathBuf, Kind, u64, u32, u64)> {
            m.iter()
                .map(|(p, e)| (p.clone(), e.kind, e.size, e.mode, e.ino))
                .collect()
        };
        for (name, step) in steps {
            let walked_before = scan::scan(&handle, &root, 1000).unwrap();
            step();
            let Dirty::Dirs(dirty) = w.drain() else {
                panic!("{name}: nothing was lost")
            };
            let mut touched = Touched::new();
            relist(&handle, &root, &mut m, &dirty, &mut w, 1000, &mut touched).unwrap();
            let walked = scan::scan(&handle, &root, 1000).unwrap();
            assert_eq!(strip(&m), strip(&walked), "{name}");
            let told = scan::changes_of(
                touched
                    .iter()
                    .map(|(p, (o, n))| (p.as_path(), o.as_ref(), n.as_ref())),
            );
            let by_walk = scan::diff(&walked_before, &walked);
            let paths = |c: &[scan::Change]| -> Vec<(PathBuf, scan::How)> {
                c.iter().map(|c| (c.path.clone(), c.how)).collect()
            };
            assert_eq!(paths(&told), paths(&by_walk), "{name}");
        }
    }

    /// The kernel's queue overflowing (events lost) makes the next look a whole walk.
    #[test]
    fn lost_events_mean_a_whole_walk() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        let handle = scan::open_root(&root).unwrap();
        let mut w = Watch::new().unwrap();
        scan::scan_with(&handle, &root, 10, &mut |d, rel, walked| {
            w.add(d, rel, walked).map(|_| ())
        })
        .unwrap();
        let max: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        for i in 0..max + 10 {
            std::fs::write(root.join("f"), i.to_string()).unwrap();
        }
        assert_eq!(w.drain(), Dirty::All);
    }
}
