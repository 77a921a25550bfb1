//! The server's run API against a real server on 127.0.0.1: security, bad input, concurrency,
//! history, cancel and graceful stop (modes, events and status: `server_views.rs`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn run_body(shell: &str) -> String {
    json!({ "shell": shell, "cwd": "/tmp" }).to_string()
}

/// Requests that must be refused with a 4xx and an error code, and must run nothing.
#[test]
fn bad_requests_are_refused_and_run_nothing() {
    let env = TestEnv::new();
    // No engine: a sandbox run is refused before anything is registered.
    let server = env.start_server_env(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let marker = env.path().join("ran");
    let touch = format!("touch '{}'", marker.display());
    let body = run_body(&touch);
    let auth = format!("Authorization: Bearer {}\r\n", server.token);
    let post = |headers: &str, body: &str| -> (u16, String) {
        let req = format!(
            "POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            server.port,
            body.len()
        );
        server.raw(req.as_bytes())
    };
    let json_ct = "Content-Type: application/json\r\n";
    let huge = format!("{{\"shell\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let cases: Vec<(&str, (u16, String), u16, &str)> = vec![
        ("no token", post(json_ct, &body), 401, "UNAUTHORIZED"),
        (
            // HTTP/1.1: more than one Host is a 400, whatever the first one says.
            "two Host headers",
            post(&format!("{json_ct}{auth}Host: evil.example\r\n"), &body),
            400,
            "INVALID_HEADER",
        ),
        (
            "wrong token",
            post(&format!("{json_ct}Authorization: Bearer nope\r\n"), &body),
            401,
            "UNAUTHORIZED",
        ),
        (
            "not bearer",
            post(
                &format!("{json_ct}Authorization: Basic {}\r\n", server.token),
                &body,
            ),
            401,
            "UNAUTHORIZED",
        ),
        (
            "browser origin",
            post(
                &format!("{json_ct}{auth}Origin: http://evil.example\r\n"),
                &body,
            ),
            403,
            "FORBIDDEN_ORIGIN",
        ),
        (
            "cross-site fetch",
            post(
                &format!("{json_ct}{auth}Sec-Fetch-Site: cross-site\r\n"),
                &body,
            ),
            403,
            "FORBIDDEN_ORIGIN",
        ),
        (
            "malformed json",
            post(&format!("{json_ct}{auth}"), "{\"shell\": "),
            400,
            "INVALID_JSON",
        ),
        (
            "unknown field",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"shell": touch, "rm_rf": true}).to_string(),
            ),
            422,
            "INVALID_REQUEST",
        ),
        (
            "wrong type",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"argv": touch}).to_string(),
            ),
            422,
            "INVALID_REQUEST",
        ),
        (
            "both argv and shell",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"argv": ["touch", marker], "shell": touch}).to_string(),
            ),
            422,
            "INVALID_REQUEST",
        ),
        (
            "no command",
            post(&format!("{json_ct}{auth}"), "{}"),
            422,
            "INVALID_REQUEST",
        ),
        (
            "empty argv",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"argv": []}).to_string(),
            ),
            422,
            "INVALID_REQUEST",
        ),
        (
            "huge body",
            post(&format!("{json_ct}{auth}"), &huge),
            413,
            "BODY_TOO_LARGE",
        ),
        (
            "missing cwd",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"shell": touch, "cwd": "/no/such/dir"}).to_string(),
            ),
            422,
            "CWD_NOT_FOUND",
        ),
        (
            "relative cwd",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"shell": touch, "cwd": "tmp"}).to_string(),
            ),
            422,
            "INVALID_REQUEST",
        ),
        (
            "bad timeout",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"shell": touch, "timeout_secs": -1}).to_string(),
            ),
            422,
            "INVALID_REQUEST",
        ),
        (
            "bad env name",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"shell": touch, "env": {"A=B": "c"}}).to_string(),
            ),
            422,
            "INVALID_REQUEST",
        ),
        (
            "bad mode",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"shell": touch, "mode": "auto"}).to_string(),
            ),
            422,
            "INVALID_MODE",
        ),
        (
            "sandbox mode",
            post(
                &format!("{json_ct}{auth}"),
                &json!({"shell": touch, "mode": "sandbox"}).to_string(),
            ),
            503,
            "ENGINE_UNAVAILABLE",
        ),
        (
            "not json",
            post(&format!("Content-Type: text/plain\r\n{auth}"), &body),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ];
    for (name, (status, body), want_status, want_code) in cases {
        assert_eq!(status, want_status, "{name}: {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: not JSON: {body}"));
        assert_eq!(v["error"]["code"], want_code, "{name}: {body}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }
    // Bad Host: DNS rebinding.
    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1.nip.io",
        "10.0.0.1",
    ] {
        let req =
            format!("GET /v1/status HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
        let (status, body) = server.raw(req.as_bytes());
        assert_eq!(status, 403, "{host}: {body}");
        assert!(body.contains("FORBIDDEN_HOST"), "{host}: {body}");
    }
    for host in ["localhost", "[::1]"] {
        let req = format!(
            "GET /v1/status HTTP/1.1\r\nHost: {host}:{}\r\n{auth}Connection: close\r\n\r\n",
            server.port
        );
        assert_eq!(server.raw(req.as_bytes()).0, 200, "{host}");
    }
    // Unknown routes and methods answer with codes too.
    let (status, body) = server.raw(
        format!("GET /v1/nope HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!((status, body.contains("NOT_FOUND")), (404, true), "{body}");
    let (status, body) = server.raw(
        format!("DELETE /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(
        (status, body.contains("METHOD_NOT_ALLOWED")),
        (405, true),
        "{body}"
    );

    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "a refused request ran its command");
    let (status, body) = server.raw(
        format!("GET /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        0,
        "refused requests show up as runs: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_runs_are_all_correct() {
    let env = TestEnv::new();
    let server = env.start_server();
    let client = server.client();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let rb = server.post(&client, "/v1/runs").json(&json!({
            "argv": ["sh", "-c", "i=$1; sleep 0.2; printf 'out-%s' \"$i\"; printf 'err-%s' \"$i\" >&2; exit $((i % 7))", "sh", i.to_string()],
            "cwd": "/tmp",
        }));
        tasks.push(tokio::spawn(async move {
            let resp = rb.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let body = t.await.unwrap();
        let (out, err, finished) = decode_stream(&body);
        assert_eq!(String::from_utf8(out).unwrap(), format!("out-{i}"));
        assert_eq!(String::from_utf8(err).unwrap(), format!("err-{i}"));
        assert_eq!(finished["run"]["outcome"]["exit_code"], (i % 7) as u64);
    }
    let runs: Value = server
        .get(&client, "/v1/runs?limit=200")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 64);
}

#[tokio::test]
async fn history_keeps_head_and_tail_with_exact_counts() {
    let env = TestEnv::new();
    let server = env.start_server();
    let client = server.client();
    // 100000 numbered lines: 588895 bytes.
    let resp = server
        .post(&client, "/v1/runs")
        .json(&json!({"shell": "seq 1 100000; echo fail >&2; exit 2", "cwd": "/tmp"}))
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-run-id"].to_str().unwrap().to_string();
    let (out, _, finished) = decode_stream(&resp.bytes().await.unwrap());
    assert_eq!(out.len(), 588_895);
    assert_eq!(finished["run"]["id"], id.as_str());
    let run: Value = server
        .get(&client, &format!("/v1/runs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["state"], "finished");
    assert_eq!(run["outcome"]["exit_code"], 2);
    assert_eq!(run["client"], Value::Null);
    let so = &run["stdout"];
    assert_eq!(so["total_bytes"], 588_895);
    assert_eq!(so["total_lines"], 100_000);
    let head = so["head"].as_str().unwrap();
    let tail = so["tail"].as_str().unwrap();
    assert!(head.starts_with("1\n2\n3\n"));
    assert!(tail.ends_with("99999\n100000\n"));
    assert_eq!(
        so["omitted_bytes"].as_u64().unwrap(),
        588_895 - head.len() as u64 - tail.len() as u64
    );
    let lines = |s: &str| s.matches('\n').count() as u64;
    assert_eq!(
        so["omitted_lines"].as_u64().unwrap(),
        100_000 - lines(head) - lines(tail)
    );
    assert_eq!(run["stderr"]["head"], "fail\n");
    assert_eq!(run["stderr"]["omitted_bytes"], 0);
    let r = server
        .get(&client, "/v1/runs/run_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "RUN_NOT_FOUND"
    );
}

#[tokio::test]
async fn cancel_stops_the_tree_and_is_reported() {
    let env = TestEnv::new();
    let server = env.start_server();
    let client = server.client();
    let m = marker();
    let resp = server
        .post(&client, "/v1/runs")
        .json(&json!({"shell": format!("sleep {m} & sleep {m}"), "cwd": "/tmp", "client": "test-agent"}))
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-run-id"].to_str().unwrap().to_string();
    assert!(
        wait_for_processes(&m, 2, Duration::from_secs(10)),
        "the command did not start"
    );
    let c = server
        .post(&client, &format!("/v1/runs/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(c.status(), 202);
    let (_, _, finished) = decode_stream(&resp.bytes().await.unwrap());
    assert_eq!(finished["run"]["outcome"]["cancelled"], true);
    assert_eq!(finished["run"]["client"], "test-agent");
    assert!(wait_no_process(&m, Duration::from_secs(3)).is_empty());
    let again = server
        .post(&client, &format!("/v1/runs/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}

// Multi-threaded: the client's connection task must run (and close the socket) while this
// test blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_cancels_its_run() {
    let env = TestEnv::new();
    let server = env.start_server();
    let client = server.client();
    let m = marker();
    let resp = server
        .post(&client, "/v1/runs")
        .json(&json!({"shell": format!("sleep {m}"), "cwd": "/tmp"}))
        .send()
        .await
        .unwrap();
    assert!(
        wait_for_processes(&m, 1, Duration::from_secs(10)),
        "the command did not start"
    );
    drop(resp);
    drop(client);
    assert!(
        wait_no_process(&m, Duration::from_secs(10)).is_empty(),
        "run outlived its client"
    );
}

#[tokio::test]
async fn stopping_the_server_cancels_runs_and_leaves_nothing() {
    let env = TestEnv::new();
    let mut server = env.start_server();
    let client = server.client();
    let m = marker();
    let resp = server
        .post(&client, "/v1/runs")
        .json(&json!({"shell": format!("trap '' TERM; sleep {m} & sleep {m}"), "cwd": "/tmp"}))
        .send()
        .await
        .unwrap();
    assert!(
        wait_for_processes(&m, 2, Duration::from_secs(10)),
        "the command did not start"
    );
    let o = env.stigmer(&["server", "stop"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let status = server.child.wait().unwrap();
    assert!(status.success(), "server exited with {status}");
    let (_, _, finished) = decode_stream(&resp.bytes().await.unwrap());
    assert_eq!(finished["run"]["outcome"]["cancelled"], true);
    assert!(wait_no_process(&m, Duration::from_secs(3)).is_empty());
    assert!(!env.discovery_file().exists(), "discovery file left behind");
}

/// A client that stays connected but stops reading must not wedge cancel or stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_wedge_cancel_or_stop() {
    let env = TestEnv::new();
    let mut server = env.start_server();
    let client = server.client();
    let m = marker();
    // Endless output nobody reads.
    let resp = server
        .post(&client, "/v1/runs")
        .json(&json!({"shell": format!("yes {m}"), "cwd": "/tmp"}))
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-run-id"].to_str().unwrap().to_string();
    assert!(wait_for_processes(&m, 1, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(500)).await; // let every buffer fill up
    let c = server
        .post(&client, &format!("/v1/runs/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(c.status(), 202);
    assert!(
        wait_no_process(&m, Duration::from_secs(10)).is_empty(),
        "cancel did not stop the command"
    );
    let mut state = Value::Null;
    for _ in 0..200 {
        let run: Value = server
            .get(&client, &format!("/v1/runs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state = run["state"].clone();
        if state == "finished" {
            assert_eq!(run["outcome"]["cancelled"], true);
            assert!(run["stdout"]["total_bytes"].as_u64().unwrap() > 0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "finished", "the run never ended");
    // A second stalled run, then stop the server: it must exit on its own.
    let _stalled = server
        .post(&client, "/v1/runs")
        .json(&json!({"shell": format!("yes {m}"), "cwd": "/tmp"}))
        .send()
        .await
        .unwrap();
    assert!(wait_for_processes(&m, 1, Duration::from_secs(10)));
    let o = tokio::task::spawn_blocking({
        let mut cmd = env.cmd();
        move || cmd.args(["server", "stop"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_no_process(&m, Duration::from_secs(10)).is_empty());
    server.stop();
}
