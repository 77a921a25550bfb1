//! The server's settings and views over HTTP against a real server on 127.0.0.1: live mode
//! changes (persisted, validated), the event stream, status, tools and the OpenAPI document.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn mode_changes_live_are_persisted_and_validated() {
    let env = TestEnv::new();
    let server = env.start_server_env(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let client = server.client();
    let mut events = server.get(&client, "/v1/events").send().await.unwrap();
    let put = |body: Value| server.post(&client, "/v1/mode").json(&body);
    // PUT, not POST.
    assert_eq!(
        put(json!({"mode": "sandbox"}))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    let r = client
        .put(format!("{}/v1/mode", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"mode": "sandbox", "image": "my-custom-sandbox:latest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["mode"].as_str(), v["tier"].as_str()),
        (Some("sandbox"), Some("custom"))
    );
    let file = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        file.contains("mode = \"sandbox\"") && file.contains("my-custom-sandbox:latest"),
        "{file}"
    );
    let status: Value = server
        .get(&client, "/v1/status")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["mode"], "sandbox");
    assert_eq!(status["image"], "my-custom-sandbox:latest");

    // Invalid changes change nothing, each refused with its own code (a mode's, as from the
    // config file and `POST /v1/runs`).
    for (bad, want) in [
        (json!({"mode": "bogus"}), "INVALID_MODE"),
        (json!({"mode": "auto"}), "INVALID_MODE"),
        (
            json!({"mode": "sandbox", "image": "Not Valid"}),
            "INVALID_SETTING",
        ),
        (json!({"mode": "local", "extra": 1}), "INVALID_REQUEST"),
    ] {
        let r = client
            .put(format!("{}/v1/mode", server.url))
            .bearer_auth(&server.token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        let code = r.json::<Value>().await.unwrap()["error"]["code"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(code, want, "{bad}");
    }
    assert_eq!(std::fs::read_to_string(env.config_file()).unwrap(), file);
    let mode: Value = server
        .get(&client, "/v1/mode")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mode["mode"], "sandbox");

    // A run now refuses, and does not run on the host.
    let r = server
        .post(&client, "/v1/runs")
        .json(&json!({"argv": ["true"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    // The CLI changes it back through the same path.
    let o = env.stigmer(&["config", "set", "mode", "local"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mode: Value = server
        .get(&client, "/v1/mode")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mode["mode"], "local");

    // The event stream saw both changes.
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    while seen.len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let v: Value = serde_json::from_slice(&line).unwrap();
            if v["type"] == "mode_changed" {
                seen.push(v["mode"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(seen, ["sandbox", "local"]);
}

#[tokio::test]
async fn the_event_stream_shows_runs_from_any_client() {
    let env = TestEnv::new();
    let server = env.start_server();
    let client = server.client();
    let mut events = server
        .get(&client, "/v1/events")
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let o = env.stigmer(&["run", "--", "echo", "hello events"]);
    assert!(o.status.success());
    let mut text = String::new();
    while !text.contains("\"run_finished\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let types: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] != "log" && v["type"] != "heartbeat")
        .map(|v| v["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        ["run_started", "run_output", "run_finished"],
        "{text}"
    );
    assert!(text.contains("\"client\":\"stigmer-cli\""));
    // "hello events\n" in base64
    assert!(text.contains("aGVsbG8gZXZlbnRzCg=="), "{text}");
}

#[tokio::test]
async fn status_tools_and_openapi() {
    let env = TestEnv::new();
    let server = env.start_server();
    let client = server.client();
    let s: Value = server
        .get(&client, "/v1/status")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["mode"], "local");
    assert_eq!(s["tier"], "local");
    assert_eq!(s["pid"], server.pid());
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["engine"]["state"].is_string());
    let tools: Value = server
        .get(&client, "/v1/tools")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bash = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "bash")
        .unwrap();
    assert_eq!(bash["found"], true);
    assert!(bash["version"].is_string());
    let doc: Value = server
        .get(&client, "/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/status",
        "/v1/mode",
        "/v1/tools",
        "/v1/runs",
        "/v1/runs/{id}",
        "/v1/runs/{id}/cancel",
        "/v1/events",
        "/v1/shutdown",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn changing_only_the_image_keeps_the_saved_mode() {
    let env = TestEnv::new();
    let server = env.start_server();
    let client = server.client();
    let r = client
        .put(format!("{}/v1/mode", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"image": "my-sandbox:v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let file = std::fs::read_to_string(env.config_file()).unwrap();
    assert!(
        file.contains("my-sandbox:v2") && !file.contains("mode"),
        "{file}"
    );
    let r = client
        .put(format!("{}/v1/mode", server.url))
        .bearer_auth(&server.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}
