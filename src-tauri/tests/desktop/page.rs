//! What the e2e tests do with the window and the app's server: screenshots, reading and waiting
//! for text, sections, the server's own API, an agent over stdio.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use super::{Desktop, MenuItem};

pub fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

/// The page as WebKit renders it. WebKit takes the snapshot at its next paint, and a page that
/// does not change never paints again: keep it painting (an invisible change) meanwhile.
pub async fn shot(c: &Client, name: &str) {
    js(c, "window.__paint = setInterval(() => { const s = document.body.style; s.opacity = s.opacity ? '' : '0.9999'; }, 50); return true").await;
    let png = c.screenshot().await.expect("a screenshot");
    js(
        c,
        "clearInterval(window.__paint); document.body.style.opacity = ''; return true",
    )
    .await;
    std::fs::create_dir_all(screenshots()).unwrap();
    std::fs::write(screenshots().join(name), png).unwrap();
}

pub async fn text(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

pub async fn wait_text(c: &Client, id: &str, want: &str) {
    for _ in 0..200 {
        if text(c, id).await.contains(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "#{id} never showed {want:?}; it shows {:?}",
        text(c, id).await
    );
}

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// `script`'s value once it is `want` (polled for up to 10 s), or the last one seen.
pub async fn wait_js(c: &Client, script: &str, want: &Value) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = js(c, script).await;
        if last == *want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Open one of the window's sections (Home, Activity, Agents, Sandbox, Settings).
pub async fn view(c: &Client, name: &str) {
    c.find(Locator::Css(&format!(".tab[data-view={name}]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The server the app runs, through its own API.
pub struct ServerApi {
    pub url: String,
    pub token: String,
}

impl ServerApi {
    pub fn of(d: &Desktop) -> Option<ServerApi> {
        let home = d.home.path().join("stigmer/data");
        let disc: Value =
            serde_json::from_slice(&std::fs::read(home.join("server.json")).ok()?).ok()?;
        Some(ServerApi {
            url: disc["url"].as_str()?.to_string(),
            token: std::fs::read_to_string(home.join("token"))
                .ok()?
                .trim()
                .to_string(),
        })
    }

    /// POST a JSON body: (status, body; a run's NDJSON stream is read to its end).
    pub async fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn checked(items: &[MenuItem]) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.checked == Some(true))
        .map(|i| i.label.clone())
        .collect()
}

/// Talk MCP over stdio the way an agent does (initialize, initialized, one `run_command`) and
/// return the raw reply to the call.
pub fn mcp_over_stdio(cmd: &mut std::process::Command, command: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the configured command starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "e2e-agent", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "run_command", "arguments": {"command": command}}}),
    ];
    let mut reply = String::new();
    for m in messages {
        writeln!(stdin, "{m}").unwrap();
        if m.get("id").is_some() {
            reply = lines.next().expect("a reply").unwrap();
        }
    }
    drop(stdin);
    let _ = child.wait();
    reply
}
