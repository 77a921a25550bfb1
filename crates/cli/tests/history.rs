//! The run history lasts: a real server's runs, their records and their whole output, read
//! back after `server stop`/`start` and after a SIGKILL in the middle of 32 runs; a corrupt
//! database is set aside; retention drops the oldest finished runs, never a running one.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Run `shell` through the API as `client` and read its stream to the end: the run's id.
async fn run(server: &Server, c: &reqwest::Client, shell: &str, client: &str) -> String {
    let resp = server
        .post(c, "/v1/runs")
        .json(&json!({ "shell": shell, "client": client }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-run-id"].to_str().unwrap().to_string();
    resp.bytes().await.unwrap();
    id
}

async fn get(server: &Server, c: &reqwest::Client, path: &str) -> (u16, Value) {
    let resp = server.get(c, path).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_their_output_outlast_a_server_stop() {
    let env = TestEnv::new();
    let mut server = env.start_server();
    let c = server.client();
    // 100 000 lines: far more than the record's head and tail.
    let long = run(&server, &c, "seq 1 100000", "agent-a").await;
    let failing = run(&server, &c, "echo oops >&2; exit 3", "agent-b").await;
    let other = run(&server, &c, "echo hi", "agent-a").await;
    server.stop();

    let server = env.start_server();
    let c = server.client();
    let (status, list) = get(&server, &c, "/v1/runs").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&other, &failing, &long], "newest first");
    let (_, failed) = get(&server, &c, &format!("/v1/runs/{failing}")).await;
    assert_eq!(failed["outcome"]["exit_code"], 3, "{failed}");
    assert_eq!(failed["stderr"]["head"], "oops\n");
    assert_eq!(failed["client"], "agent-b");

    // The whole output of a run of the previous server, by id, from the CLI.
    let o = env.stigmer(&["runs", "output", &long]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert!(stdout(&o) == expected, "{} bytes", o.stdout.len());

    // Filters and pages.
    let (_, mine) = get(&server, &c, "/v1/runs?client=agent-a").await;
    assert_eq!(mine["runs"].as_array().unwrap().len(), 2, "{mine}");
    let (_, by_text) = get(&server, &c, "/v1/runs?q=OOPS").await;
    assert_eq!(by_text["runs"][0]["id"], failing.as_str(), "{by_text}");
    assert_eq!(by_text["runs"].as_array().unwrap().len(), 1);
    let (_, page) = get(&server, &c, "/v1/runs?limit=2").await;
    assert_eq!(page["next_before"], failing.as_str(), "{page}");
    let next = format!("/v1/runs?limit=2&before={failing}");
    let (_, page2) = get(&server, &c, &next).await;
    assert_eq!(page2["runs"][0]["id"], long.as_str(), "{page2}");
    assert!(page2.get("next_before").is_none(), "{page2}");
    let (status, e) = get(&server, &c, "/v1/runs?before=run_0000000000000000").await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("RUN_NOT_FOUND"))
    );
    let listed = stdout(&env.stigmer(&["runs", "list", "--state", "finished", "--grep", "seq"]));
    assert!(
        listed.contains(&long) && !listed.contains(&failing),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_finished_run_and_marks_the_interrupted_ones() {
    let env = TestEnv::new();
    let mut server = env.start_server();
    let c = server.client();
    let mut finished = Vec::new();
    for i in 0..10 {
        finished.push(run(&server, &c, &format!("echo done-{i}"), "agent").await);
    }
    let mark = marker();
    let mut going = Vec::new();
    for i in 0..32 {
        let rb = server.post(&c, "/v1/runs").json(&json!({
            "shell": format!("echo started-{i}; sleep 300; : {mark}"), "client": "agent",
        }));
        going.push(tokio::spawn(async move {
            let resp = rb.send().await.unwrap();
            let id = resp.headers()["x-run-id"].to_str().unwrap().to_string();
            let _ = resp.bytes().await;
            id
        }));
    }
    assert!(wait_for_processes(&mark, 32, Duration::from_secs(30)));
    // Runs finishing right up to the kill are kept too.
    finished.push(run(&server, &c, "echo last", "agent").await);
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGKILL);
    }
    let _ = server.child.wait();
    let mut interrupted = Vec::new();
    for g in going {
        interrupted.push(g.await.unwrap());
    }
    // A killed server cannot end its commands: the test does.
    for pid in processes_with(&mark) {
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }

    let server = env.start_server();
    let c = server.client();
    let (_, list) = get(&server, &c, "/v1/runs?limit=200").await;
    let runs = list["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 43, "{list}");
    for id in &finished {
        let (status, r) = get(&server, &c, &format!("/v1/runs/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(r["state"], "finished", "{r}");
        assert_eq!(r["outcome"]["exit_code"], 0);
    }
    for id in &interrupted {
        let (_, r) = get(&server, &c, &format!("/v1/runs/{id}")).await;
        assert_eq!(r["state"], "interrupted", "{r}");
        assert_eq!(r["error"]["code"], "INTERRUPTED");
        // What it printed before the kill is still readable.
        let (_, page) = get(&server, &c, &format!("/v1/runs/{id}/output")).await;
        assert!(
            page["text"].as_str().unwrap().starts_with("started-"),
            "{page}"
        );
        assert_eq!(page["eof"], true);
    }
    let shown = stdout(&env.stigmer(&["runs", "list", "--state", "interrupted", "--limit", "200"]));
    assert_eq!(shown.lines().count(), 32, "{shown}");
}

#[test]
fn a_corrupt_history_is_set_aside_and_a_fresh_one_started() {
    let env = TestEnv::new();
    let data = env.home().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("history.sqlite3");
    std::fs::write(&db, b"this is not a database, just what a broken disk left").unwrap();
    let o = env.stigmer(&["run", "-c", "echo fine"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let server = env.start_server();
    let list = env.stigmer(&["runs", "list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 0, "{list}");
    let aside: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("history.sqlite3.unusable-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(data.join(&aside[0])).unwrap(),
        b"this is not a database, just what a broken disk left",
        "the old file is kept as it was"
    );
    let log = server_log(&env);
    assert!(
        log.contains("could not be used"),
        "a warning says so: {log}"
    );
    let o = env.stigmer(&["run", "-c", "echo recorded"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let listed = stdout(&env.stigmer(&["runs", "list"]));
    assert!(listed.contains("echo recorded"), "{listed}");
    drop(server);
}

/// Everything in the server's log folder.
fn server_log(env: &TestEnv) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(env.home().join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    all
}

/// The history's listing once it holds `n` runs (retention is applied in the background),
/// or as it is after 10 s.
async fn settled(server: &Server, c: &reqwest::Client, n: usize) -> serde_json::Value {
    let mut list = serde_json::Value::Null;
    for _ in 0..200 {
        list = get(server, c, "/v1/runs?limit=200").await.1;
        if list["runs"].as_array().map(Vec::len) == Some(n) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_the_oldest_finished_runs_never_a_running_one() {
    let env = TestEnv::new();
    let server = env.start_server_env(&[
        ("STIGMER_HISTORY_MAX_RUNS", "5"),
        ("STIGMER_HISTORY_MAX_OUTPUT", "0"),
    ]);
    let c = server.client();
    let mark = marker();
    let rb = server.post(&c, "/v1/runs").json(&json!({
        "shell": format!("echo oldest; sleep 300; : {mark}"), "client": "agent",
    }));
    let oldest = tokio::spawn(async move {
        let resp = rb.send().await.unwrap();
        let id = resp.headers()["x-run-id"].to_str().unwrap().to_string();
        let _ = resp.bytes().await;
        id
    });
    assert!(wait_for_processes(&mark, 1, Duration::from_secs(10)));
    let mut quick = Vec::new();
    for i in 0..40 {
        quick.push(run(&server, &c, &format!("echo quick-{i}"), "agent").await);
    }
    // Retention runs after the runs, off their path: soon, not necessarily at once.
    let list = settled(&server, &c, 1 + 5).await;
    let runs = list["runs"].as_array().unwrap();
    let running: Vec<_> = runs.iter().filter(|r| r["state"] == "running").collect();
    assert_eq!(running.len(), 1, "the running one stays: {list}");
    assert_eq!(runs.len(), 1 + 5, "{list}");
    let (status, _) = get(&server, &c, &format!("/v1/runs/{}", quick[0])).await;
    assert_eq!(status, 404, "the oldest finished run went first");
    let newest = quick.last().unwrap();
    let (status, r) = get(&server, &c, &format!("/v1/runs/{newest}")).await;
    assert_eq!(status, 200);
    // No output is kept (`history.max_output = 0`): the record says so, the head stays.
    assert_eq!(r["stdout"]["stored_bytes"], 0, "{r}");
    assert_eq!(r["stdout"]["head"], format!("quick-39\n"));
    let o = env.stigmer(&["runs", "stop", "--all"]);
    assert!(o.status.success());
    let oldest = oldest.await.unwrap();
    // Ended, it is the run that ended last: it stays, and the one that ended first goes.
    let list = settled(&server, &c, 5).await;
    let ids: Vec<_> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids.len(), 5, "{list}");
    assert!(ids.contains(&json!(oldest)), "{list}");
    assert!(!ids.contains(&json!(quick[35])), "{list}");
    // Its output was not kept (max_output = 0), and reading it says so.
    let (status, e) = get(&server, &c, &format!("/v1/runs/{oldest}/output")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("RUN_NOT_FOUND")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer kept"),
        "{e}"
    );
}
