//! The recorder's tests.
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
    let (Begun::Recording(a), Begun::Recording(b)) = (rec.begin(&root), rec.begin(&root)) else {
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
    for i in 0..=100 {
        std::fs::write(root.join(format!("f{i}")), "x").unwrap();
    }
    let rec = Recorder::with_limit(d.path().join("store"), 100);
    for _ in 0..2 {
        let Begun::Not { reason, .. } = rec.begin(&root) else {
            panic!("recorded")
        };
        assert!(reason.contains("more than 100 "), "{reason}");
    }
    assert!(!d.path().join("store").exists(), "nothing kept");
}

/// One run, its changes (the recorder as the server uses it: watched after the first look).
fn one_run(rec: &Recorder, root: &Path, id: &str, act: impl FnOnce()) -> RunChanges {
    let Begun::Recording(s) = rec.begin(root) else {
        panic!("not recorded")
    };
    act();
    let r = rec.end(id, *s);
    rec.written();
    r
}

/// A write through a hard link made and removed in another folder raises no event in the
/// file's own folder: the end's look at every entry finds it by its change time and size.
#[test]
fn a_write_through_a_hard_link_elsewhere_is_not_hidden() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("proj");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    let rec = Recorder::new(d.path().join("store"));
    one_run(&rec, &root, "first", || {});
    let r = one_run(&rec, &root, "hidden", || {
        std::fs::hard_link(root.join("src/main.rs"), root.join("docs/.x")).unwrap();
        std::fs::write(root.join("docs/.x"), "evil\n").unwrap();
        std::fs::remove_file(root.join("docs/.x")).unwrap();
    });
    assert_eq!(
        changes(&r),
        [("src/main.rs".into(), ChangeKind::Modified)],
        "{r:?}"
    );
}

/// A folder removed and made again with the same inode number (ext4 gives the lowest free
/// one) is a new folder: watched, and what goes in it is seen.
#[test]
fn a_folder_made_again_with_a_reused_inode_number_is_watched() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("proj");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    let rec = Recorder::new(d.path().join("store"));
    one_run(&rec, &root, "first", || {});
    let old = std::fs::metadata(root.join("a/b")).unwrap().ino();
    let mut reused = false;
    let swap = one_run(&rec, &root, "swap", || {
        std::fs::remove_dir(root.join("a/b")).unwrap();
        for i in 0..200 {
            let p = root.join(format!("a/t{i}"));
            std::fs::create_dir(&p).unwrap();
            if std::fs::metadata(&p).unwrap().ino() == old {
                std::fs::rename(&p, root.join("a/b")).unwrap();
                reused = true;
                break;
            }
        }
        if !reused {
            std::fs::create_dir(root.join("a/b")).unwrap();
        }
        // Made in it before the end, before any watch on it could tell.
        std::fs::write(root.join("a/b/early"), "x").unwrap();
    });
    if !reused {
        eprintln!("!!!!! SKIPPED: this file system did not give the inode number again !!!!!");
        return;
    }
    assert!(
        changes(&swap).contains(&("a/b/early".into(), ChangeKind::Added)),
        "{swap:?}"
    );
    let r = one_run(&rec, &root, "inside", || {
        std::fs::write(root.join("a/b/planted"), "x").unwrap();
    });
    assert_eq!(
        changes(&r),
        [("a/b/planted".into(), ChangeKind::Added)],
        "{r:?}"
    );
}

/// The folder moved away and another put at its path: the next run is recorded against the
/// new folder, never against the old one's record (which would claim changes it never made).
#[test]
fn another_folder_at_the_same_path_is_not_the_recorded_one() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("code/proj");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/f.txt"), "old\n").unwrap();
    let rec = Recorder::new(d.path().join("store"));
    one_run(&rec, &root, "first", || {});
    // The folder above moved away (the folder itself is told nothing), and a copy with other
    // contents put in its place.
    std::fs::rename(d.path().join("code"), d.path().join("code.old")).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/f.txt"), "new\n").unwrap();
    let r = one_run(&rec, &root, "next", || {
        std::fs::write(root.join("made.txt"), "made\n").unwrap();
    });
    assert_eq!(
        changes(&r),
        [("made.txt".into(), ChangeKind::Added)],
        "{r:?}"
    );
}
