//! The sandbox's network policy in the real app under Xvfb, with the real server, the real
//! basic image, stigmer's proxy and a web server of the test's own in a container: a blocked
//! host shows live as "blocked: HOST (by COMMAND)" with an Allow button that lets it through;
//! the tray chooses the policy and the window follows.

mod desktop;

use std::time::Duration;

use desktop::page::*;
use desktop::*;
use fantoccini::Locator;
use serde_json::{json, Value};

#[path = "../../crates/cli/tests/common/engine.rs"]
mod engine;

const HOST: &str = "web.stigmer.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_host_is_allowed_in_the_window_and_the_tray_picks_the_policy() {
    let Some(d) = Desktop::start("a_blocked_host_is_allowed_in_the_window") else {
        return;
    };
    d.skip_welcome();
    if !engine::engine_or_skip("a_blocked_host_is_allowed_in_the_window") {
        return;
    }
    let image = engine::basic_image();
    let site = d.home.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    let web = engine::WebServer::start(&image, "web", &site);
    let hosts = format!("{HOST}={}", web.ip);
    let w = d
        .open(&[
            ("STIGMER_EXECUTION_MODE", "sandbox"),
            ("STIGMER_SANDBOX_IMAGE", &image),
            ("STIGMER_PROXY_TEST_HOSTS", &hosts),
        ])
        .await;
    let c = w.c.clone();
    let api = d.api();

    // The tray offers the three policies in a sandbox tier; choosing one applies it and the
    // window follows.
    let addr = tray_menu_address(&d);
    assert!(
        checked(&tray_layout(&d, &addr)).contains(&"Network: Open (any host)".to_string()),
        "{:?}",
        tray_layout(&d, &addr)
    );
    view(&c, "sandbox").await;
    tray_click(&d, &addr, "Network: Only allowed hosts");
    let mut policy = Value::Null;
    for _ in 0..100 {
        policy = api.get("/v1/sandbox/network").await["policy"].clone();
        if policy == "allowlist" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(policy, "allowlist");
    wait_js(
        &c,
        "return document.querySelector('input[name=net]:checked')?.value",
        &json!("allowlist"),
    )
    .await;
    wait_text(&c, "allow-empty", "No host allowed yet").await;

    // An agent's command reaches for a host not in the list: refused, said to the agent...
    let run = json!({"shell": format!("curl -s http://{HOST}/hello"), "client": "e2e-agent"});
    let (status, body) = api.post("/v1/runs", &run).await;
    assert_eq!(status, 200, "{body}");
    // The run's stream ends with its summary, whose outcome names the host.
    assert!(
        body.contains(&format!(r#""network_blocked":["{HOST}"]"#)),
        "{body}"
    );
    // ...and shown live in the window, with who asked and an Allow button.
    wait_text(&c, "blocked-list", &format!("blocked: {HOST}")).await;
    wait_text(&c, "blocked-list", "(by curl -s").await;
    wait_text(&c, "nav-blocked", "1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&c, "window-network-blocked.png").await;
    c.find(Locator::Css("#blocked-list button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "allow-list", HOST).await;
    let config = std::fs::read_to_string(d.home.path().join("stigmer/config/config.toml")).unwrap();
    assert!(config.contains(HOST), "{config}");
    let (status, body) = api.post("/v1/runs", &run).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from web"), "{body}");

    // A bad entry typed in the window: a clear error naming it, nothing added.
    c.find(Locator::Id("allow-input"))
        .await
        .unwrap()
        .send_keys("https://example.com/path")
        .await
        .unwrap();
    c.find(Locator::Css("#allow-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "network-error", "looks like a URL").await;
    assert_eq!(api.get("/v1/sandbox/network").await["allow"], json!([HOST]));
    shot(&c, "window-network-allowed.png").await;
    w.close(&d).await;
}
