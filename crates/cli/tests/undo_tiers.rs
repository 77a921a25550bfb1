//! Undo in every tier, as a normal user where the tier needs one: a protected run and a local
//! run (a folder the command made read-only is still put back, with its permissions), and a
//! sandboxed run (files the container wrote). Also: a run that overlapped another is not
//! undone until the user says so, and names a command chose reach the terminal escaped.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::changes::{run_json, undo};
use common::engine;
use common::protected::*;
use common::*;
use serde_json::{json, Value};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Edits, a removed folder, and a folder left read-only (as a normal user, whom permissions
/// bind): put back in the protected and the local tier.
#[test]
fn protected_and_local_runs_are_undone_as_a_normal_user() {
    let Some(h) = Home::new("undo") else {
        return;
    };
    let server = UserServer::start(&h);
    let proj = h.proj();
    for mode_ in ["protected", "local"] {
        h.user_cmd("sh")
            .args([
                "-c",
                "mkdir -p sub old && echo one > sub/f && echo keep > old/k && echo a > a.txt",
            ])
            .current_dir(&proj)
            .status()
            .unwrap();
        let before: Vec<(String, u32)> = ["sub", "sub/f", "old/k", "a.txt"]
            .iter()
            .map(|p| {
                (
                    std::fs::read_to_string(proj.join(p)).unwrap_or_default(),
                    mode(&proj.join(p)),
                )
            })
            .collect();
        let o = h.run(
            mode_,
            "echo two > sub/f && echo b >> a.txt && rm -r old && chmod 555 sub && echo new > n.txt",
        );
        assert!(o.status.success(), "{mode_}: {}", stderr(&o));
        let id = server.last_run()["id"].as_str().unwrap().to_string();
        assert_eq!(mode(&proj.join("sub")), 0o555);
        let o = h.stigmer(&["runs", "undo", &id]);
        assert!(o.status.success(), "{mode_}: {}{}", stdout(&o), stderr(&o));
        let after: Vec<(String, u32)> = ["sub", "sub/f", "old/k", "a.txt"]
            .iter()
            .map(|p| {
                (
                    std::fs::read_to_string(proj.join(p)).unwrap_or_default(),
                    mode(&proj.join(p)),
                )
            })
            .collect();
        assert_eq!(after, before, "{mode_}: {}", stdout(&o));
        assert!(!proj.join("n.txt").exists(), "{mode_}");
        // Mine, as before: the user's files stay the user's.
        let meta = std::fs::metadata(proj.join("sub/f")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), h.uid, "{mode_}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_run_is_undone() {
    if !engine::engine_or_skip("a_sandboxed_run_is_undone") {
        return;
    }
    let image = engine::basic_image();
    let env = TestEnv::new();
    env.allow_work();
    let proj = env.path().to_path_buf();
    std::fs::write(proj.join("a.txt"), "host\n").unwrap();
    std::fs::create_dir_all(proj.join("docs")).unwrap();
    std::fs::write(proj.join("docs/readme"), "read me\n").unwrap();
    let server = env.start_server();
    let c = server.client();
    let id = run_json(
        &server,
        &c,
        json!({ "shell": "echo container >> a.txt && rm -r docs && echo made > made.txt",
                "cwd": proj, "mode": "sandbox", "image": image, "client": "agent" }),
    )
    .await
    .0;
    assert_eq!(
        std::fs::read_to_string(proj.join("a.txt")).unwrap(),
        "host\ncontainer\n"
    );
    let (_, r) = undo(&server, &c, &id, "refuse").await;
    assert_eq!(r["undone"], true, "{r}");
    assert_eq!(
        std::fs::read_to_string(proj.join("a.txt")).unwrap(),
        "host\n"
    );
    assert_eq!(
        std::fs::read_to_string(proj.join("docs/readme")).unwrap(),
        "read me\n"
    );
    assert!(!proj.join("made.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapped_run_waits_for_the_user_and_names_are_escaped() {
    let env = TestEnv::new();
    let proj = env.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("mine.txt"), "the user's\n").unwrap();
    let server = env.start_server();
    let c = server.client();
    // A long run; meanwhile the user edits a file: it is in the long run's record too.
    let long = tokio::spawn(
        server
            .post(&c, "/v1/runs")
            .json(
                &json!({ "shell": "sleep 2; echo agent > agent.txt", "cwd": proj,
                           "client": "agent" }),
            )
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let short = run_json(
        &server,
        &c,
        json!({ "shell": "true", "cwd": proj, "client": "agent" }),
    )
    .await
    .0;
    std::fs::write(proj.join("mine.txt"), "the user's, edited\n").unwrap();
    let resp = long.await.unwrap().unwrap();
    let id = resp.headers()["x-run-id"].to_str().unwrap().to_string();
    let _ = resp.text().await;
    let ch: Value = server
        .get(&c, &format!("/v1/runs/{id}/changes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ch["overlapped"], true, "{ch} (short run {short})");
    // Not undone on its own: whose change each was cannot be told.
    let (_, r) = undo(&server, &c, &id, "refuse").await;
    assert_eq!(r["undone"], false, "{r}");
    assert!(
        r["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["problem"] == "overlapped"),
        "{r}"
    );
    assert_eq!(
        std::fs::read_to_string(proj.join("mine.txt")).unwrap(),
        "the user's, edited\n"
    );
    // Keeping them leaves every file; the user's choice to put them back does it.
    let (_, r) = undo(&server, &c, &id, "overwrite").await;
    assert_eq!(r["undone"], true, "{r}");
    assert!(!proj.join("agent.txt").exists());

    // A name with an escape sequence and a newline, and a link to one: never raw on the
    // terminal.
    let id = run_json(
        &server,
        &c,
        json!({ "shell": "printf x > \"$(printf 'a\\033]52;c;SGVsbG8=\\007\\nb')\" && ln -s \"$(printf '\\033[2J')\" l",
                "cwd": proj, "client": "agent" }),
    )
    .await.0;
    for args in [
        vec!["runs", "changes", &id],
        vec!["runs", "changes", &id, "--diff"],
    ] {
        let o = env.stigmer(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!o.stdout.contains(&0x1b), "{:?}", stdout(&o));
        assert!(stdout(&o).contains("\\u{1b}"), "{:?}", stdout(&o));
    }
}
