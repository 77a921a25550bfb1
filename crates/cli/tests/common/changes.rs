//! What the change-record and undo tests ask a server: a run (its id and finished line), a
//! run's changes, an undo.

use std::path::Path;

use serde_json::{json, Value};

use super::Server;

/// Run `shell` in `cwd` as the client `agent`: its id and its finished line.
pub async fn run_in(
    server: &Server,
    c: &reqwest::Client,
    cwd: &Path,
    shell: &str,
) -> (String, Value) {
    run_json(
        server,
        c,
        json!({ "shell": shell, "cwd": cwd, "client": "agent" }),
    )
    .await
}

/// Run the request `body`: its id and its finished line.
pub async fn run_json(server: &Server, c: &reqwest::Client, body: Value) -> (String, Value) {
    let resp = server.post(c, "/v1/runs").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-run-id"].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    let finished = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "finished")
        .unwrap_or_else(|| panic!("a finished line: {text}"));
    (id, finished)
}

/// `GET /v1/runs/{id}/changes`.
pub async fn changes(server: &Server, c: &reqwest::Client, id: &str) -> Value {
    let resp = server
        .get(c, &format!("/v1/runs/{id}/changes"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// `POST /v1/runs/{id}/undo` with `later`: the status and the report (or error).
pub async fn undo(server: &Server, c: &reqwest::Client, id: &str, later: &str) -> (u16, Value) {
    let resp = server
        .post(c, &format!("/v1/runs/{id}/undo"))
        .json(&json!({ "later": later }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}
