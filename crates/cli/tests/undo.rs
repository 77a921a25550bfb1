//! Undo, through a real server and the CLI: a run's edits, removed folders, renames, mode
//! changes, links, a non-UTF-8 name and a binary file are put back byte for byte, and the
//! undo of the undo brings the run's work back; a file changed again since stops the undo
//! (refused, then kept or forced), the later runs are named and undoing them first works; a
//! link swapped in after the run is never written through; a folder at work refuses; a run
//! that timed out half-way is undone; diffs of text files.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::changes::{run_in, run_json, undo};
use common::*;
use serde_json::{json, Value};

/// Everything in a folder (but `.git`), links not followed: name bytes -> what it is.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_name() == ".git" {
                continue;
            }
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            let what = if m.file_type().is_symlink() {
                format!("link -> {:?}", std::fs::read_link(&p).unwrap())
            } else if m.is_dir() {
                todo.push(p);
                format!("dir {mode:o}")
            } else {
                format!("file {mode:o} {:?}", std::fs::read(&p).unwrap())
            };
            out.insert(rel, what);
        }
    }
    out
}

fn project(env: &TestEnv) -> std::path::PathBuf {
    let proj = env.path().join("proj");
    std::fs::create_dir_all(proj.join("build/deep")).unwrap();
    std::fs::create_dir_all(proj.join("src")).unwrap();
    for (p, text) in [
        ("a.txt", &b"one\ntwo\nthree\n"[..]),
        ("old-name.txt", b"moving\n"),
        ("run.sh", b"echo\n"),
        ("build/out.o", b"object"),
        ("build/deep/more.o", b"more"),
        ("image.bin", &[0u8, 159, 146, 150, 255][..]),
        ("src/lib.rs", b"fn a() {}\n"),
    ] {
        std::fs::write(proj.join(p), text).unwrap();
    }
    std::os::unix::fs::symlink("a.txt", proj.join("link")).unwrap();
    std::fs::write(
        proj.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
        "odd",
    )
    .unwrap();
    let ok = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&proj)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    proj
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_undone_byte_for_byte_and_the_undo_undone_again() {
    let env = TestEnv::new();
    let proj = project(&env);
    let before = snapshot(&proj);
    let server = env.start_server();
    let c = server.client();
    let id = run_in(
        &server,
        &c,
        &proj,
        "sed -i s/two/2/ a.txt && rm -r build && mv old-name.txt new-name.txt && chmod +x run.sh \
         && printf '\\001\\002' > image.bin && rm link && ln -s /etc/hostname link && \
         rm \"$(printf 'caf\\351.txt')\" && mkdir -p gen/x && echo made > gen/x/f && \
         rm src/lib.rs && rmdir src && echo src > src",
    )
    .await
    .0;
    let after = snapshot(&proj);
    assert_ne!(before, after);

    // The diff of the text file, line by line; the binary named with its size.
    let d: Value = server
        .get(&c, &format!("/v1/runs/{id}/diff"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file = |p: &str| {
        d["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == p)
            .unwrap_or_else(|| panic!("{p} in {d}"))
            .clone()
    };
    let a = file("a.txt");
    assert_eq!(
        (a["added_lines"].as_u64(), a["removed_lines"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(a["diff"].as_str().unwrap().contains("-two\n+2\n"), "{a}");
    assert!(
        file("image.bin")["note"]
            .as_str()
            .unwrap()
            .contains("binary"),
        "{d}"
    );
    let o = env.stigmer(&["runs", "changes", &id, "--diff"]);
    assert!(
        o.status.success() && stdout(&o).contains("+2\n"),
        "{}",
        stdout(&o)
    );

    let o = env.stigmer(&["runs", "undo", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("put back"), "{}", stdout(&o));
    assert_eq!(
        snapshot(&proj),
        before,
        "the folder is as it was before the run"
    );
    let undo_run = stdout(&o)
        .split("the undo is ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .unwrap()
        .to_string();
    // The undo is a run of its own, with its changes: undoing it redoes the command.
    let rec: Value = server
        .get(&c, &format!("/v1/runs/{undo_run}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        rec["command"]
            .as_str()
            .unwrap()
            .starts_with(&format!("undo {id}")),
        "{rec}"
    );
    let (status, r) = undo(&server, &c, &undo_run, "refuse").await;
    assert_eq!((status, &r["undone"]), (200, &json!(true)), "{r}");
    assert_eq!(snapshot(&proj), after, "the command's work is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_since_stops_the_undo_until_the_user_says_what_to_do() {
    let env = TestEnv::new();
    let proj = project(&env);
    let server = env.start_server();
    let c = server.client();
    let first = run_in(
        &server,
        &c,
        &proj,
        "echo first >> a.txt && echo x > other.txt",
    )
    .await
    .0;
    let second = run_in(&server, &c, &proj, "echo second >> a.txt").await.0;
    let now = snapshot(&proj);

    // Refused: nothing changes; the file and the later run are named.
    let (status, r) = undo(&server, &c, &first, "refuse").await;
    assert_eq!(status, 200);
    assert_eq!(r["undone"], false, "{r}");
    assert_eq!(r["conflicts"][0]["path"], "a.txt", "{r}");
    assert_eq!(r["conflicts"][0]["problem"], "changed_since", "{r}");
    assert_eq!(r["later_runs"], json!([second]), "{r}");
    assert_eq!(snapshot(&proj), now, "nothing changed");
    let o = env.stigmer(&["runs", "undo", &first]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("a.txt") && stderr(&o).contains(&second),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&proj), now, "nothing changed");

    // Keep the later changes: the rest is undone, a.txt left as it is.
    let o = env.stigmer(&["runs", "undo", &first, "--keep-later"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!proj.join("other.txt").exists());
    assert_eq!(
        std::fs::read_to_string(proj.join("a.txt")).unwrap(),
        "one\ntwo\nthree\nfirst\nsecond\n"
    );

    // Forced: the later change goes too.
    let third = run_in(&server, &c, &proj, "echo third > a.txt").await.0;
    std::fs::write(proj.join("a.txt"), "the user's\n").unwrap();
    let o = env.stigmer(&["runs", "undo", &third]);
    assert_eq!(o.status.code(), Some(1), "the user's edit stops it");
    let o = env.stigmer(&["runs", "undo", &third, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(proj.join("a.txt")).unwrap(),
        "one\ntwo\nthree\nfirst\nsecond\n"
    );

    // Newest first, each undo is clean.
    let env2 = TestEnv::new();
    let proj2 = project(&env2);
    let before = snapshot(&proj2);
    let server2 = env2.start_server();
    let c2 = server2.client();
    let a = run_in(&server2, &c2, &proj2, "echo a >> a.txt").await.0;
    let b = run_in(&server2, &c2, &proj2, "echo b >> a.txt && rm run.sh")
        .await
        .0;
    for id in [&b, &a] {
        let (_, r) = undo(&server2, &c2, id, "refuse").await;
        assert_eq!(r["undone"], true, "{r}");
    }
    assert_eq!(snapshot(&proj2), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_never_writes_through_a_link_swapped_in_after_the_run() {
    let env = TestEnv::new();
    let proj = project(&env);
    let outside = env.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("a.txt"), "outside\n").unwrap();
    let server = env.start_server();
    let c = server.client();
    let id = run_in(&server, &c, &proj, "echo changed > a.txt && rm -r build")
        .await
        .0;
    // Then (a daemon the command left, say) the folder the undo writes in becomes a link out,
    // and the file a link to a file outside.
    std::fs::create_dir_all(proj.join("build")).unwrap();
    std::fs::remove_dir(proj.join("build")).unwrap();
    std::os::unix::fs::symlink(&outside, proj.join("build")).unwrap();
    std::fs::remove_file(proj.join("a.txt")).unwrap();
    std::os::unix::fs::symlink(outside.join("a.txt"), proj.join("a.txt")).unwrap();
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let outside_before = listing(&outside);

    let (_, r) = undo(&server, &c, &id, "refuse").await;
    assert_eq!(r["undone"], false, "both changed since: {r}");
    let (_, r) = undo(&server, &c, &id, "overwrite").await;
    assert_eq!(r["undone"], true, "{r}");
    assert_eq!(
        std::fs::read_to_string(outside.join("a.txt")).unwrap(),
        "outside\n"
    );
    assert_eq!(
        listing(&outside),
        outside_before,
        "nothing written outside: {r}"
    );
    // The link at a.txt was replaced by the file, never written through.
    let m = std::fs::symlink_metadata(proj.join("a.txt")).unwrap();
    assert!(m.is_file(), "a.txt is a file again");
    assert_eq!(
        std::fs::read_to_string(proj.join("a.txt")).unwrap(),
        "one\ntwo\nthree\n"
    );
    // What was to go in the linked folder was not put back, and says so.
    let failed: Vec<&str> = r["left"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["problem"] == "failed")
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    assert!(failed.iter().any(|p| p.starts_with("build")), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_waits_for_a_run_at_work_and_refuses_what_was_not_recorded() {
    let env = TestEnv::new();
    let proj = project(&env);
    let server = env.start_server();
    let c = server.client();
    let id = run_in(&server, &c, &proj, "echo x > new.txt").await.0;
    let long = server
        .post(&c, "/v1/runs")
        .json(&json!({ "shell": "sleep 3", "cwd": proj, "client": "agent" }))
        .send();
    let waiter = tokio::spawn(long);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (status, r) = undo(&server, &c, &id, "refuse").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (409, Some("FOLDER_BUSY")),
        "{r}"
    );
    assert!(proj.join("new.txt").exists());
    let _ = waiter.await.unwrap().unwrap().text().await;
    let (_, r) = undo(&server, &c, &id, "refuse").await;
    assert_eq!(r["undone"], true, "{r}");
    assert!(!proj.join("new.txt").exists());

    // The home folder is never recorded: nothing to undo, said.
    let home = std::env::var("HOME").unwrap();
    let home_run = run_in(&server, &c, Path::new(&home), "true").await.0;
    let (status, r) = undo(&server, &c, &home_run, "refuse").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (422, Some("NOTHING_TO_UNDO")),
        "{r}"
    );
    let (status, r) = undo(&server, &c, "run_0000000000000000", "refuse").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (404, Some("RUN_NOT_FOUND")),
        "{r}"
    );
    let resp = server
        .post(&c, &format!("/v1/runs/{id}/undo"))
        .json(&json!({ "later": "sometimes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422, "bad input is refused");
    let resp = server
        .post(&c, &format!("/v1/runs/{id}/undo"))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        422,
        "a body that is not an object is refused"
    );

    // A run that timed out half-way: what it did until then is undone.
    let before = snapshot(&proj);
    let id = run_json(
        &server,
        &c,
        json!({ "shell": "echo half > half.txt && rm run.sh && sleep 30", "cwd": proj,
                "client": "agent", "timeout_secs": 1 }),
    )
    .await
    .0;
    assert!(proj.join("half.txt").exists());
    let (_, r) = undo(&server, &c, &id, "refuse").await;
    assert_eq!(r["undone"], true, "{r}");
    assert_eq!(snapshot(&proj), before);
}
