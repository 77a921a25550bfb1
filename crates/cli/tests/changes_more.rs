//! Change records when things go wrong, through a real server: a run killed with the server
//! is said to be unrecorded at the next start; a full disk fails the recording, not the
//! command, and says so (and an undo then names what it cannot put back); kept contents no
//! run refers to any more go with the runs the history drops.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::changes::{changes, run_in, undo};
use common::*;
use serde_json::json;

fn objects(env: &TestEnv) -> usize {
    let dir = env.home().join("data/changes/objects");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_with_the_server_is_said_to_be_unrecorded() {
    let env = TestEnv::new();
    let proj = env.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    let mut server = env.start_server();
    let c = server.client();
    let mark = marker();
    let started = server
        .post(&c, "/v1/runs")
        .json(
            &json!({ "shell": format!("echo half > half.txt; sleep 60; : {mark}"),
                       "cwd": proj, "client": "agent" }),
        )
        .send()
        .await
        .unwrap();
    let id = started.headers()["x-run-id"].to_str().unwrap().to_string();
    assert!(wait_for_processes(&mark, 1, Duration::from_secs(10)));
    // SAFETY: killing the test's own server.
    unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
    server.stop();
    drop(started);
    for pid in processes_with(&mark) {
        // SAFETY: the test's own leftover command.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let server = env.start_server();
    let c = server.client();
    let v = changes(&server, &c, &id).await;
    assert_eq!(v["recorded"], false, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("server stopped"),
        "{v}"
    );
    let o = env.stigmer(&["runs", "changes", &id]);
    assert!(stdout(&o).contains("server stopped"), "{}", stdout(&o));
    // The folder's next run is recorded as usual.
    let (next, _) = run_in(&server, &c, &proj, "echo more >> half.txt").await;
    let v = changes(&server, &c, &next).await;
    assert_eq!(v["recorded"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_recording_not_the_command_and_says_so() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("\n!!!!! SKIPPED a_full_disk: needs root to mount a small disk !!!!!\n");
        return;
    }
    let env = TestEnv::new();
    let proj = env.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    // Content that does not compress, larger than the disk the store gets.
    let mut noise = vec![0u8; 300_000];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    std::fs::write(proj.join("big.bin"), &noise).unwrap();
    std::fs::write(proj.join("small.txt"), "small\n").unwrap();
    let objects_dir = env.home().join("data/changes/objects");
    std::fs::create_dir_all(&objects_dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&objects_dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "a small disk for the store");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(objects_dir.clone());
    let server = env.start_server();
    let c = server.client();
    let (id, finished) = run_in(
        &server,
        &c,
        &proj,
        "printf x >> big.bin && echo edit >> small.txt",
    )
    .await;
    assert_eq!(
        finished["run"]["outcome"]["exit_code"], 0,
        "the command is not failed: {finished}"
    );
    let v = changes(&server, &c, &id).await;
    assert_eq!(v["recorded"], true, "{v}");
    assert!(
        v["unkept"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .contains("No space left"),
        "said: {v}"
    );
    let files: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["big.bin", "small.txt"], "{v}");
    let o = env.stigmer(&["runs", "changes", &id]);
    assert!(stdout(&o).contains("could not be kept"), "{}", stdout(&o));
    // An undo names what it cannot put back, and changes nothing unless told.
    let (_, r) = undo(&server, &c, &id, "refuse").await;
    assert_eq!(r["undone"], false, "{r}");
    assert_eq!(r["conflicts"][0]["path"], "big.bin", "{r}");
    assert_eq!(r["conflicts"][0]["problem"], "not_kept", "{r}");
    assert_eq!(
        std::fs::read_to_string(proj.join("small.txt")).unwrap(),
        "small\nedit\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_contents_go_with_the_runs_the_history_drops() {
    let env = TestEnv::new();
    let proj = env.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("f.txt"), "0\n").unwrap();
    let server = env.start_server_env(&[("STIGMER_HISTORY_MAX_RUNS", "2")]);
    let c = server.client();
    let mut ids = Vec::new();
    for i in 1..=12 {
        let (id, _) = run_in(&server, &c, &proj, &format!("echo {i} > f.txt")).await;
        ids.push(id);
    }
    // Retention runs off the runs' path: give it a moment.
    let mut n = objects(&env);
    for _ in 0..50 {
        if n <= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        n = objects(&env);
    }
    // The two runs kept refer to three contents (10, 11, 12); the folder's last record to
    // the newest. Nothing else stays.
    assert!(n <= 4, "{n} contents kept");
    // What the kept runs need is there: the newest run is undone.
    let (_, r) = undo(&server, &c, &ids[11], "refuse").await;
    assert_eq!(r["undone"], true, "{r}");
    assert_eq!(std::fs::read_to_string(proj.join("f.txt")).unwrap(), "11\n");
}

/// The limits are settings: a folder over `history.changes_max_files` is not recorded and the
/// run says why; a file over `history.changes_max_file_size` is listed, its content not kept,
/// and an undo names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_are_settings_and_say_themselves() {
    let env = TestEnv::new();
    let (big, small) = (env.path().join("big"), env.path().join("small"));
    std::fs::create_dir_all(&big).unwrap();
    std::fs::create_dir_all(&small).unwrap();
    for i in 0..20 {
        std::fs::write(big.join(format!("f{i}")), "x").unwrap();
    }
    std::fs::write(small.join("large.txt"), "l".repeat(2048)).unwrap();
    std::fs::write(small.join("a.txt"), "a\n").unwrap();
    let server = env.start_server_env(&[
        ("STIGMER_HISTORY_CHANGES_MAX_FILES", "10"),
        ("STIGMER_HISTORY_CHANGES_MAX_FILE_SIZE", "1k"),
    ]);
    let c = server.client();
    let (id, finished) = run_in(&server, &c, &big, "echo y > f0").await;
    let why = finished["run"]["outcome"]["unrecorded"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("more than 10") && why.contains("changes_max_files"),
        "{finished}"
    );
    let v = changes(&server, &c, &id).await;
    assert_eq!(v["recorded"], false, "{v}");

    let (id, _) = run_in(
        &server,
        &c,
        &small,
        "echo more >> large.txt && echo b > a.txt",
    )
    .await;
    let v = changes(&server, &c, &id).await;
    let large = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "large.txt")
        .unwrap()
        .clone();
    assert!(large["before"].get("content").is_none(), "not kept: {v}");
    let (_, r) = undo(&server, &c, &id, "refuse").await;
    assert_eq!(
        (r["undone"].clone(), r["conflicts"][0]["problem"].clone()),
        (json!(false), json!("not_kept")),
        "{r}"
    );
    // Keeping it as it is, the rest is undone.
    let (_, r) = undo(&server, &c, &id, "keep").await;
    assert_eq!(r["undone"], true, "{r}");
    assert_eq!(std::fs::read_to_string(small.join("a.txt")).unwrap(), "a\n");
    assert!(std::fs::read_to_string(small.join("large.txt"))
        .unwrap()
        .ends_with("more\n"));
    // A bad value is refused, naming the setting.
    let o = env.stigmer(&["config", "set", "history.changes_max_files", "5"]);
    assert!(
        !o.status.success() && stderr(&o).contains("history.changes_max_files"),
        "{}",
        stderr(&o)
    );
}
