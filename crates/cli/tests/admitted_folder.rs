//! What admission checked is what runs: the folder a run is admitted to is held open, and the
//! run uses that handle. The attack uses the widest gap there is, the user's approval (an
//! agent whose rule is "ask" may wait minutes): while the user is asked, the folder is moved
//! elsewhere and another put at its path, or it is swapped for a link to a folder of secrets.
//! Nothing runs then, locally or in a sandbox (`WORKSPACE_CHANGED`); the folder left alone
//! runs, in the folder that was checked. Against a real server (and the real engine for the
//! sandbox). Linux: elsewhere folders are checked by path.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;

use common::engine::*;
use common::*;
use serde_json::{json, Value};

/// Ask for `body` as the agent `careful` (rule `ask`), wait until the user is asked, call
/// `meanwhile`, then allow once: (HTTP status, the last line of the run's stream).
async fn run_approved_after(
    server: &Server,
    body: Value,
    meanwhile: impl FnOnce(),
) -> (u16, Value) {
    let c = server.client();
    // An app is open: it reads the events as an approver.
    let events = server
        .get(&c, "/v1/events?approver=true")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut body = body;
    body["client"] = json!("careful");
    let request = server
        .post(&c, "/v1/runs")
        .header("accept", "application/x-ndjson")
        .json(&body);
    let run = tokio::spawn(async move {
        let resp = request.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    let pending = server.pending_approval(&c).await;
    assert!(!run.is_finished(), "the user was asked while the run waits");
    meanwhile();
    let answer = server
        .post(
            &c,
            &format!("/v1/approvals/{}", pending["id"].as_str().unwrap()),
        )
        .json(&json!({ "decision": "allow_once" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let (status, text) = run.await.unwrap();
    drop(events);
    let last = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| json!({ "body": text }));
    (status, last)
}

fn set_careful(env: &TestEnv, tier: &str) {
    let o = env.stigmer(&["clients", "set", "careful", "--tier", tier, "--rule", "ask"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn mark(dir: &Path) -> bool {
    dir.join("ran-here").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_starts_in_the_folder_checked_whatever_its_path_names_later() {
    let env = TestEnv::new();
    set_careful(&env, "local");
    let server = env.start_server();
    let project = env.path().join("project");
    let secrets = env.beside("secrets");
    let touch = json!({ "shell": "touch ran-here", "cwd": project });

    // Moved into another folder (where `rm -rf ../build` would hit that folder's files), and
    // a new folder made at its path.
    std::fs::create_dir(&project).unwrap();
    let other = env.beside("important");
    let moved = other.join("project");
    let (_, fin) = run_approved_after(&server, touch.clone(), || {
        std::fs::rename(&project, &moved).unwrap();
        std::fs::create_dir(&project).unwrap();
    })
    .await;
    assert_eq!(fin["run"]["error"]["code"], "WORKSPACE_CHANGED", "{fin}");
    assert!(!mark(&moved) && !mark(&project), "nothing ran: {fin}");

    // Swapped for a link to a folder of secrets.
    std::fs::remove_dir(&project).unwrap();
    std::fs::create_dir(&project).unwrap();
    let real = env.path().join("project-real");
    let (_, fin) = run_approved_after(&server, touch.clone(), || {
        std::fs::rename(&project, &real).unwrap();
        std::os::unix::fs::symlink(&secrets, &project).unwrap();
    })
    .await;
    assert_eq!(fin["run"]["error"]["code"], "WORKSPACE_CHANGED", "{fin}");
    assert!(!mark(&real) && !mark(&secrets), "nothing ran: {fin}");

    // Left alone, it runs there.
    std::fs::remove_file(&project).unwrap();
    std::fs::rename(&real, &project).unwrap();
    let (status, fin) = run_approved_after(&server, touch, || {}).await;
    assert_eq!(status, 200, "{fin}");
    assert_eq!(fin["run"]["outcome"]["exit_code"], 0, "{fin}");
    assert!(mark(&project), "{fin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_workspace_replaced_while_the_user_is_asked_is_never_mounted() {
    if !engine_or_skip("a_sandbox_workspace_replaced_while_the_user_is_asked_is_never_mounted") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    let ws = env.beside("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let o = env
        .cmd()
        .args(["workspaces", "add"])
        .arg(&ws)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.stigmer(&[
        "clients", "set", "careful", "--tier", "custom", "--image", BUSYBOX, "--rule", "ask",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let server = env.start_server();
    let touch = json!({ "shell": "touch ran-here", "cwd": ws });

    // The allowed path now names another folder: allowed by path, but not what was checked.
    let old = env.beside("ws-old");
    std::fs::remove_dir(&old).unwrap();
    let (_, fin) = run_approved_after(&server, touch.clone(), || {
        std::fs::rename(&ws, &old).unwrap();
        std::fs::create_dir(&ws).unwrap();
    })
    .await;
    assert_eq!(
        fin["run"]["error"]["code"], "WORKSPACE_CHANGED",
        "refused as such: {fin}"
    );
    assert!(!mark(&ws) && !mark(&old), "nothing ran: {fin}");

    // Unchanged, it runs.
    let (status, fin) = run_approved_after(&server, touch, || {}).await;
    assert_eq!(status, 200, "{fin}");
    assert!(mark(&ws), "{fin}");
}
