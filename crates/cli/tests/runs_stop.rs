//! `stigmer runs list|show|stop`: the user's Stop against a real server, from the CLI (what the
//! window's Stop and the tray's "Stop all" call too): the whole tree ends, and the run's own
//! client (here `stigmer run`) is told the user stopped it.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[test]
fn a_run_is_listed_stopped_with_its_tree_and_its_client_is_told() {
    let env = TestEnv::new();
    let _server = env.start_server();
    let mark = marker();
    // Two processes carry the mark: the command's shell and a child shell it started.
    let line = format!("sh -c 'sleep 300; : {mark}' & sleep 300; : {mark}");
    let running = env
        .cmd()
        .args(["run", "-c", &line])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_processes(&mark, 2, Duration::from_secs(10)));
    let list = env.stigmer(&["runs", "list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let run = &list["runs"][0];
    assert_eq!(run["state"], "running", "{list}");
    assert_eq!(run["client"], "stigmer-cli");
    let id = run["id"].as_str().unwrap().to_string();
    let shown = stdout(&env.stigmer(&["runs", "list"]));
    assert!(shown.contains(&id) && shown.contains("running"), "{shown}");

    let o = env.stigmer(&["runs", "stop", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!("stopped {id}")),
        "{}",
        stdout(&o)
    );
    let o = running.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(128 + 15), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("stopped by the user [CANCELLED_BY_USER]"),
        "{}",
        stderr(&o)
    );
    let left = wait_no_process(&mark, Duration::from_secs(5));
    assert!(left.is_empty(), "the whole tree ends: {left:?}");

    let shown = stdout(&env.stigmer(&["runs", "show", &id]));
    assert!(shown.contains("state    stopped by you"), "{shown}");
    assert!(shown.contains("CANCELLED_BY_USER"), "{shown}");
    let again = env.stigmer(&["runs", "stop", &id]);
    assert_eq!(
        stdout(&again),
        format!("{id} had already ended: nothing to stop\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_all_stops_every_client_s_runs_and_each_is_told() {
    let env = TestEnv::new();
    let server = env.start_server();
    let client = server.client();
    let mark = marker();
    let runs: Vec<_> = (0..3)
        .map(|i| {
            let rb = server.post(&client, "/v1/runs").json(&json!({
                "shell": format!("echo {i}; sleep 300; : {mark}"), "cwd": env.path(), "client": format!("agent-{i}"),
            }));
            tokio::spawn(async move { rb.send().await.unwrap().bytes().await.unwrap() })
        })
        .collect();
    assert!(wait_for_processes(&mark, 3, Duration::from_secs(10)));
    let o = env.stigmer(&["runs", "stop", "--all"]);
    assert_eq!(stdout(&o), "stopped 3 running commands\n", "{}", stderr(&o));
    for r in runs {
        let (out, _, finished) = decode_stream(&r.await.unwrap());
        assert!(!out.is_empty());
        assert_eq!(
            finished["run"]["error"]["code"], "CANCELLED_BY_USER",
            "{finished}"
        );
        assert_eq!(finished["run"]["outcome"]["cancelled"], true, "{finished}");
    }
    assert!(wait_no_process(&mark, Duration::from_secs(5)).is_empty());
    assert_eq!(
        stdout(&env.stigmer(&["runs", "stop", "--all"])),
        "stopped 0 running commands\n"
    );
}

#[test]
fn bad_input_is_refused_and_stops_nothing() {
    let env = TestEnv::new();
    let o = env.stigmer(&["runs", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("[SERVER_UNAVAILABLE]"),
        "{}",
        stderr(&o)
    );
    let _server = env.start_server();
    for id in ["../x", "run_0000000000000000", ""] {
        let o = env.stigmer(&["runs", "stop", id]);
        assert_ne!(o.status.code(), Some(0), "{id}");
        assert!(
            stderr(&o).contains("RUN_NOT_FOUND") || id.is_empty(),
            "{id}: {}",
            stderr(&o)
        );
    }
    let o = env.stigmer(&["runs", "stop"]);
    assert_eq!(o.status.code(), Some(2), "an id or --all");
    let o = env.stigmer(&["runs", "stop", "run_0000000000000000", "--all"]);
    assert_eq!(o.status.code(), Some(2), "not both");
}

/// A command that only prints ends quietly when its reader goes (`stigmer runs list | head`),
/// instead of panicking on the broken pipe.
#[test]
fn printing_commands_end_quietly_when_their_reader_goes() {
    let env = TestEnv::new();
    let _server = env.start_server();
    for args in [
        &["config", "list"][..],
        &["runs", "list"],
        &["server", "status"],
    ] {
        let mut child = env
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let o = child.wait_with_output().unwrap();
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
        assert!(
            o.status.success()
                || std::os::unix::process::ExitStatusExt::signal(&o.status) == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            o.status
        );
    }
}
