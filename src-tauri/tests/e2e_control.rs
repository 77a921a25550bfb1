//! The user in control, in the real app under Xvfb with the real server and a real
//! notification daemon: a command that waits is shown in the window, the tray and a
//! notification with buttons, and Allow in the window or Deny in the notification decide it;
//! each agent's rule is set in the Agents section; the activity is the history, paged,
//! filtered, with a run's whole output a click away, after a server restart too.

mod desktop;

use std::time::Duration;

use desktop::page::*;
use desktop::*;
use fantoccini::Locator;
use serde_json::{json, Value};

/// Start a run as `client` in the background: (HTTP status, body).
fn start_run(
    api: &std::sync::Arc<ServerApi>,
    shell: &str,
    client: &str,
) -> tokio::task::JoinHandle<(u16, String)> {
    let (api, body) = (api.clone(), json!({ "shell": shell, "client": client }));
    tokio::spawn(async move { api.post("/v1/runs", &body).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_command_is_allowed_in_the_window_and_denied_in_its_notification() {
    let Some(d) = Desktop::start("a_waiting_command_is_allowed_in_the_window") else {
        return;
    };
    d.skip_welcome();
    let w = d.open(&[]).await;
    let c = w.c.clone();
    let api = std::sync::Arc::new(d.api());
    let (s, body) = api
        .post(
            "/v1/clients",
            &json!({ "name": "e2e-agent", "rule": "ask" }),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let mark = d.home.path().join("allowed");
    let run = start_run(
        &api,
        &format!("touch {}; echo allowed", mark.display()),
        "e2e-agent",
    );

    // The window (in whatever view), the tray and a notification with buttons say it waits.
    c.wait()
        .for_element(Locator::Css("#waiting:not([hidden]) #waiting-list li"))
        .await
        .unwrap();
    let card = text(&c, "waiting").await;
    assert!(
        card.contains("e2e-agent wants to run") && card.contains("echo allowed"),
        "{card}"
    );
    assert!(card.contains("means Deny"), "{card}");
    let addr = tray_menu_address(&d);
    let item = "1 command waits for your approval: answer…";
    assert!(
        wait_for(Duration::from_secs(10), || tray_layout(&d, &addr)
            .iter()
            .any(|i| i.label == item)),
        "{:?}",
        tray_layout(&d, &addr)
            .iter()
            .map(|i| i.label.clone())
            .collect::<Vec<_>>()
    );
    assert!(wait_for(Duration::from_secs(10), || d
        .notifications()
        .contains(&"e2e-agent wants to run a command".to_string())));
    let calls = d.notify_calls();
    for action in ["allow_once", "Always allow e2e-agent", "deny"] {
        assert!(
            calls.contains(action),
            "the notification has its buttons: {calls}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&c, "window-waiting.png").await;
    assert!(!mark.exists(), "nothing runs before the answer");
    c.find(Locator::XPath(
        "//div[@id='waiting']//button[text()='Allow once']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(mark.exists(), "allowed, it ran");
    assert!(
        wait_for(Duration::from_secs(10), || !tray_layout(&d, &addr)
            .iter()
            .any(|i| i.label == item)),
        "the tray item goes once answered"
    );
    c.wait()
        .for_element(Locator::Css("#waiting[hidden]"))
        .await
        .unwrap();

    // Deny, from the notification's own button.
    let denied = d.home.path().join("denied");
    let run = start_run(&api, &format!("touch {}", denied.display()), "e2e-agent");
    assert!(wait_for(Duration::from_secs(10), || d
        .notifications()
        .iter()
        .filter(|n| n.as_str() == "e2e-agent wants to run a command")
        .count()
        == 2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.notification_action("Deny");
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("DENIED_BY_USER"), "{body}");
    assert!(!denied.exists(), "denied, it did not run");
    c.wait()
        .for_element(Locator::Css("#waiting[hidden]"))
        .await
        .unwrap();

    // A command that hides what it does: a right-to-left override, and its real tail 40 lines
    // down. The window shows the override and the whole command, nothing below a fold; the
    // notification cannot show it all, so it offers no Allow.
    let calls_before = d.notify_calls().len();
    let hidden = format!(
        "echo harmless {}txt.exe{}echo hidden-tail-marker",
        '\u{202E}',
        "\n".repeat(40)
    );
    let run = start_run(&api, &hidden, "e2e-agent");
    c.wait()
        .for_element(Locator::Css("#waiting:not([hidden]) #waiting-list li"))
        .await
        .unwrap();
    let card = text(&c, "waiting").await;
    assert!(card.contains("⟨U+202E⟩txt.exe"), "{card}");
    assert!(
        card.contains("hidden-tail-marker") && card.contains("41 lines"),
        "{card}"
    );
    assert!(
        card.contains("⟨39 blank lines⟩\necho hidden-tail-marker"),
        "{card}"
    );
    let cut = js(
        &c,
        "const p = document.querySelector('#waiting-list pre'); return p.scrollHeight > p.clientHeight + 1",
    )
    .await;
    assert_eq!(
        cut,
        Value::Bool(false),
        "part of the command is below a fold"
    );
    assert!(wait_for(Duration::from_secs(10), || d.notify_calls().len()
        > calls_before));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = d.notify_calls()[calls_before..].to_string();
    assert!(
        !calls.contains("allow_once") && calls.contains("Open Stigmer to review"),
        "{calls}"
    );
    shot(&c, "window-waiting-hidden.png").await;
    c.find(Locator::XPath(
        "//div[@id='waiting']//button[text()='Deny']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 403);
    w.close(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_s_rule_is_set_in_the_agents_section() {
    let Some(d) = Desktop::start("each_agent_s_rule_is_set_in_the_agents_section") else {
        return;
    };
    d.skip_welcome();
    let w = d.open(&[]).await;
    let c = w.c.clone();
    let api = std::sync::Arc::new(d.api());
    let (s, _) = start_run(&api, "echo first", "script-a").await.unwrap();
    assert_eq!(s, 200);
    view(&c, "agents").await;
    let rule = c
        .wait()
        .for_element(Locator::Css(
            "#client-list li[data-client='script-a'] select[aria-label=\"script-a's rule\"]",
        ))
        .await
        .unwrap();
    rule.select_by_value("refuse").await.unwrap();
    let mut refused = false;
    for _ in 0..50 {
        let v: Value = api.get("/v1/clients").await;
        if v["clients"][0]["policy"]["rule"] == "refuse" {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "{}", api.get("/v1/clients").await);
    shot(&c, "window-agents-rules.png").await;
    let config = std::fs::read_to_string(d.home.path().join("stigmer/config/config.toml")).unwrap();
    assert!(
        config.contains("[clients.script-a]") && config.contains("rule = \"refuse\""),
        "{config}"
    );
    let (s, body) = start_run(&api, "echo second", "script-a").await.unwrap();
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("DENIED_BY_USER"), "{body}");
    w.close(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_is_the_history_paged_filtered_and_whole() {
    let Some(d) = Desktop::start("the_activity_is_the_history_paged_filtered_and_whole") else {
        return;
    };
    d.skip_welcome();
    let w = d.open(&[]).await;
    let c = w.c.clone();
    let api = std::sync::Arc::new(d.api());
    let (s, _) = start_run(&api, "seq 1 50000", "agent-long").await.unwrap();
    assert_eq!(s, 200);
    for i in 0..34 {
        let (s, _) = start_run(&api, &format!("echo run-{i}"), "agent-many")
            .await
            .unwrap();
        assert_eq!(s, 200);
    }
    // The server restarts (Stop, Start in the window): the history is still there.
    c.find(Locator::Id("server-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "server-state", "Server stopped").await;
    c.find(Locator::Id("server-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "server-state", "Running").await;
    view(&c, "activity").await;
    const COUNT: &str = "return document.querySelectorAll('#runs li').length";
    let count = |n: usize| {
        let c = &c;
        async move { wait_js(c, COUNT, &json!(n)).await }
    };
    assert_eq!(count(30).await, json!(30), "one page");
    c.find(Locator::Id("runs-more"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(count(35).await, json!(35), "and the older ones");
    assert_eq!(
        js(
            &c,
            "return getComputedStyle(document.getElementById('runs-more')).display"
        )
        .await,
        json!("none")
    );

    // Filters: by agent, then by text.
    let agent = c.find(Locator::Id("f-client")).await.unwrap();
    agent.select_by_value("agent-long").await.unwrap();
    assert_eq!(count(1).await, json!(1));
    agent.select_by_value("").await.unwrap();
    c.find(Locator::Id("f-text"))
        .await
        .unwrap()
        .send_keys("run-3")
        .await
        .unwrap();
    let newest_with_run_3 = json!([
        "echo run-33",
        "echo run-32",
        "echo run-31",
        "echo run-30",
        "echo run-3"
    ]);
    let shown = wait_js(
        &c,
        "return [...document.querySelectorAll('#runs li code')].map(e => e.textContent)",
        &newest_with_run_3,
    )
    .await;
    assert_eq!(shown, newest_with_run_3);

    // The whole output of the long run, one click away.
    c.find(Locator::Id("f-text"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    agent.select_by_value("agent-long").await.unwrap();
    let toggle = c
        .wait()
        .for_element(Locator::Css("#runs li .full-toggle"))
        .await
        .unwrap();
    count(1).await;
    let toggle = c
        .find(Locator::Css("#runs li .full-toggle"))
        .await
        .unwrap_or(toggle);
    toggle.click().await.unwrap();
    let whole: String = (1..=50_000).map(|i| format!("{i}\n")).collect();
    let got = wait_js(
        &c,
        "const p = document.querySelector('#runs li .full pre'); return p ? p.textContent.length : 0",
        &json!(whole.len()),
    )
    .await;
    assert_eq!(got, json!(whole.len()), "every byte of it");
    let text = js(
        &c,
        "return document.querySelector('#runs li .full pre').textContent",
    )
    .await;
    assert!(text.as_str() == Some(whole.as_str()));
    shot(&c, "window-activity-history.png").await;
    w.close(&d).await;
}
