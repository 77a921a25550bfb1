//! A tier and a rule per client, set by the user, against a real server (and the real engine
//! for the sandbox): client A's commands go to the sandbox while B's run here in the same
//! minute; a refused client and a denied, timed-out or unanswerable approval run nothing and
//! say why; an allowed one runs; "always allow" sticks. Requests cannot change any of it.

mod common;

use std::time::Duration;

use common::engine::*;
use common::*;
use serde_json::{json, Value};

async fn post(server: &Server, c: &reqwest::Client, path: &str, body: Value) -> (u16, Value) {
    let resp = server.post(c, path).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

async fn get(server: &Server, c: &reqwest::Client, path: &str) -> Value {
    server
        .get(c, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Start a run as `client`; (HTTP status, the finished run or the error).
async fn run_as(server: &Server, c: &reqwest::Client, client: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({ "shell": "echo ran-$((6*7)); test -e /etc/debian_version || echo in-the-sandbox", "client": client });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let resp = server
        .post(c, "/v1/runs")
        .header("accept", "application/x-ndjson")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    if status != 200 {
        return (status, serde_json::from_str(&text).unwrap_or_default());
    }
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    (status, last["run"].clone())
}

async fn run_count(server: &Server, c: &reqwest::Client) -> usize {
    get(server, c, "/v1/runs?limit=200").await["runs"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_runs_where_the_user_chose_and_a_request_cannot_change_it() {
    if !engine_or_skip("each_client_runs_where_the_user_chose") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let server = env.start_server();
    let c = server.client();
    let (s, v) = post(
        &server,
        &c,
        "/v1/clients",
        json!({ "name": "agent-a", "tier": "custom", "image": BUSYBOX }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let o = env.stigmer(&["clients", "set", "agent-b", "--tier", "local"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cwd = json!({ "cwd": env.path() });

    let (s, a) = run_as(&server, &c, "agent-a", cwd.clone()).await;
    assert_eq!(s, 200, "{a}");
    let (s, b) = run_as(&server, &c, "agent-b", cwd.clone()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (a["mode"].as_str(), a["image"].as_str()),
        (Some("sandbox"), Some(BUSYBOX)),
        "{a}"
    );
    assert_eq!(a["stdout"]["head"], "ran-42\nin-the-sandbox\n", "{a}");
    assert_eq!(b["mode"], "local", "{b}");
    assert_eq!(b["stdout"]["head"], "ran-42\n", "{b}");
    // A client the user said nothing about gets the global mode (local here).
    let (_, other) = run_as(&server, &c, "agent-c", cwd.clone()).await;
    assert_eq!(other["mode"], "local", "{other}");

    // The agent cannot move itself elsewhere.
    let before = run_count(&server, &c).await;
    let (s, e) = run_as(&server, &c, "agent-a", json!({ "mode": "local" })).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("INVALID_SETTING")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the user chose"),
        "{e}"
    );
    let (s, e) = run_as(&server, &c, "agent-b", json!({ "image": BUSYBOX })).await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(run_count(&server, &c).await, before, "nothing ran");

    let listed = get(&server, &c, "/v1/clients").await;
    let names: Vec<&str> = listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent-a", "agent-b", "agent-c"], "{listed}");
    assert_eq!(
        listed["clients"][2]["policy"],
        json!({ "tier": "default", "rule": "run" })
    );
    let shown = stdout(&env.stigmer(&["clients", "list"]));
    assert!(
        shown.contains("agent-a") && shown.contains(BUSYBOX),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_denied_timed_out_and_unanswerable_commands_run_nothing() {
    let env = TestEnv::new();
    let server = env.start_server_env(&[("STIGMER_APPROVALS_TIMEOUT", "5")]);
    let c = server.client();
    let mark = env.path().join("ran");
    let touch = json!({ "shell": format!("touch {}", mark.display()) });
    let o = env.stigmer(&["clients", "set", "refused-agent", "--rule", "refuse"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (s, e) = run_as(&server, &c, "refused-agent", touch.clone()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("DENIED_BY_USER")),
        "{e}"
    );

    let (s, _) = post(
        &server,
        &c,
        "/v1/clients",
        json!({ "name": "careful", "tier": "local", "rule": "ask" }),
    )
    .await;
    assert_eq!(s, 200);
    // No app is open to ask: said at once, nothing waits.
    let started = std::time::Instant::now();
    let (s, e) = run_as(&server, &c, "careful", touch.clone()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("APPROVAL_UNAVAILABLE")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // An app is open (it reads the events as an approver).
    let events = server
        .get(&c, "/v1/events?approver=true")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let ask = |answer: Option<&'static str>| {
        let (server, server_url, token, c, touch) = (
            &server,
            server.url.clone(),
            server.token.clone(),
            c.clone(),
            touch.clone(),
        );
        async move {
            let run = {
                let c = c.clone();
                let mut body = touch.clone();
                body["client"] = json!("careful");
                let rb = c
                    .post(format!("{server_url}/v1/runs"))
                    .bearer_auth(&token)
                    .header("accept", "application/x-ndjson")
                    .json(&body);
                tokio::spawn(async move {
                    let resp = rb.send().await.unwrap();
                    (resp.status().as_u16(), resp.text().await.unwrap())
                })
            };
            let pending = server.pending_approval(&c).await;
            assert_eq!(pending["client"], "careful");
            assert!(
                pending["command"].as_str().unwrap().starts_with("touch "),
                "{pending}"
            );
            if let Some(decision) = answer {
                let r = c
                    .post(format!(
                        "{server_url}/v1/approvals/{}",
                        pending["id"].as_str().unwrap()
                    ))
                    .bearer_auth(&token)
                    .json(&json!({ "decision": decision }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
            run.await.unwrap()
        }
    };
    let (s, body) = ask(Some("deny")).await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains("DENIED_BY_USER") && body.contains("denied"),
        "{body}"
    );
    assert!(!mark.exists(), "a denied command did not run");

    let started = std::time::Instant::now();
    let (s, body) = ask(None).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("within 5 s"), "{body}");
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(!mark.exists(), "a command nobody answered did not run");
    assert_eq!(
        run_count(&server, &c).await,
        0,
        "nothing ran: {}",
        get(&server, &c, "/v1/runs").await
    );

    let (s, body) = ask(Some("allow_once")).await;
    assert_eq!(s, 200, "{body}");
    assert!(mark.exists(), "an allowed command ran");
    std::fs::remove_file(&mark).unwrap();

    // "Always allow this agent": saved, and its next command does not ask.
    let (s, _) = ask(Some("always_allow")).await;
    assert_eq!(s, 200);
    let text = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        text.contains("[clients.careful]\ntier = \"local\"\nrule = \"run\""),
        "its tier stays: {text}"
    );
    std::fs::remove_file(&mark).unwrap();
    let (s, _) = run_as(&server, &c, "careful", touch.clone()).await;
    assert_eq!(s, 200);
    assert!(mark.exists());
    assert!(get(&server, &c, "/v1/approvals").await["pending"]
        .as_array()
        .unwrap()
        .is_empty());
    drop(events);

    // Bad input changes nothing.
    let before = std::fs::read_to_string(env.config_file()).unwrap();
    for bad in [
        json!({ "name": "x", "tier": "custom" }),
        json!({ "name": "x", "tier": "local", "image": BUSYBOX }),
        json!({ "name": "", "rule": "ask" }),
        json!({ "name": "x", "rule": "sometimes" }),
        json!({ "name": "x", "rule": "run", "bogus": 1 }),
    ] {
        let (s, e) = post(&server, &c, "/v1/clients", bad.clone()).await;
        assert!(s == 422, "{bad}: {s} {e}");
    }
    let (s, e) = post(
        &server,
        &c,
        "/v1/approvals/ask_0000000000000000",
        json!({ "decision": "deny" }),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(env.config_file()).unwrap(), before);
}
