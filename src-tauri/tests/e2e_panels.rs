//! The real app's panels under Xvfb, through WebDriver with the real server behind them: the
//! first window and agent connections, refused folders allowed in one click, notifications.

mod desktop;

use std::time::Duration;

use desktop::page::*;
use desktop::*;
use fantoccini::Locator;
use serde_json::{json, Value};

#[path = "../../crates/cli/tests/common/engine.rs"]
mod engine;

/// A new user's first window: what Stigmer does in two sentences and the agents found here,
/// each connected with one click (its file keeps everything else); a broken file is left alone
/// with the snippet to paste. Light and dark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_window_says_what_stigmer_does_and_connects_agents() {
    let Some(d) = Desktop::start("the_first_window_says_what_stigmer_does_and_connects_agents")
    else {
        return;
    };
    let home = d.home.path();
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::write(home.join(".claude.json"), "{\n  \"numStartups\": 3\n}\n").unwrap();
    std::fs::create_dir_all(home.join(".cursor")).unwrap();
    let broken = "{ \"mcpServers\": { \"x\": 1 ";
    std::fs::write(home.join(".cursor/mcp.json"), broken).unwrap();
    let prefs = home.join("stigmer/config/desktop.json");
    for (theme, suffix) in [("Adwaita:dark", "dark"), ("Adwaita", "light")] {
        let _ = std::fs::remove_file(&prefs);
        let w = d
            .open_at(
                &[("GTK_THEME", theme)],
                "welcome-title",
                "Welcome to Stigmer",
            )
            .await;
        let c = w.c.clone();
        assert!(text(&c, "view-welcome")
            .await
            .contains("on this computer or in an isolated sandbox"));
        wait_text(&c, "welcome-agents", "Claude Code").await;
        let agents = text(&c, "welcome-agents").await;
        assert!(
            agents.contains("Cursor") && agents.contains("could not be read"),
            "{agents}"
        );
        assert!(
            !agents.contains("Windsurf"),
            "agents not installed are not offered: {agents}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        shot(&c, &format!("first-run-{suffix}.png")).await;
        if suffix == "light" {
            c.find(Locator::Css("li[data-agent=claude-code] button"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            wait_text(&c, "welcome-agents", "Connected").await;
            let claude: Value =
                serde_json::from_str(&std::fs::read_to_string(home.join(".claude.json")).unwrap())
                    .unwrap();
            assert_eq!(claude["numStartups"], 3);
            let entry = &claude["mcpServers"]["stigmer"];
            assert_eq!(entry["args"], json!(["mcp"]));
            assert!(
                std::path::Path::new(entry["command"].as_str().unwrap()).exists(),
                "{entry}"
            );
            assert_eq!(
                std::fs::read_to_string(home.join(".cursor/mcp.json")).unwrap(),
                broken,
                "a broken file is never rewritten"
            );
            // The Agents section says the same.
            c.find(Locator::Id("welcome-done"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            view(&c, "agents").await;
            wait_text(&c, "agent-list", "Connected").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            shot(&c, "agents-light.png").await;
        }
        w.close(&d).await;
    }
    // Seen once: the next launch opens on Home.
    let w = d.open(&[]).await;
    let c = w.c.clone();
    assert_eq!(
        js(&c, "return document.getElementById('view-welcome').hidden").await,
        json!(true)
    );
    w.close(&d).await;
}

/// With no container engine, the first-run page offers the protected tier (with an engine it
/// does not): one click, and the server runs commands protected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_engine_the_first_run_offers_the_protected_tier() {
    let Some(d) = Desktop::start("without_an_engine_the_first_run_offers_the_protected_tier")
    else {
        return;
    };
    let w = d.open_at(&[], "welcome-title", "Welcome to Stigmer").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        js(
            &w.c,
            "return document.getElementById('welcome-protect').hidden"
        )
        .await,
        json!(true),
        "with an engine there is nothing to offer"
    );
    w.close(&d).await;
    let w = d
        .open_at(
            &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
            "welcome-title",
            "Welcome to Stigmer",
        )
        .await;
    let c = w.c.clone();
    wait_js(
        &c,
        "return document.getElementById('welcome-protect').hidden",
        &json!(false),
    )
    .await;
    shot(&c, "first-run-protect.png").await;
    c.find(Locator::Id("welcome-protect-on"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "welcome-protect-done", "now run protected").await;
    assert_eq!(d.api().get("/v1/mode").await["tier"], "protected");
    w.close(&d).await;
}

/// A sandboxed request in a folder the user has not allowed shows in the window, which
/// allows it with one click; the next run there works, and Remove refuses it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_folder_is_allowed_and_removed_in_the_window() {
    let Some(d) = Desktop::start("a_refused_folder_is_allowed_and_removed_in_the_window") else {
        return;
    };
    d.skip_welcome();
    if !engine::engine_or_skip("a_refused_folder_is_allowed_and_removed_in_the_window") {
        return;
    }
    engine::ensure_busybox();
    let project = d.home.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let w = d
        .open(&[
            ("STIGMER_EXECUTION_MODE", "sandbox"),
            ("STIGMER_SANDBOX_IMAGE", engine::BUSYBOX),
        ])
        .await;
    let c = w.c.clone();
    let api = d.api();
    let run = json!({"shell": "echo inside; pwd", "cwd": project, "client": "e2e-agent"});
    let (status, body) = api.post("/v1/runs", &run).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("WORKSPACE_NOT_ALLOWED"), "{body}");

    // The window lists the refusal: who, which folder, and a button to allow it.
    view(&c, "sandbox").await;
    wait_text(&c, "refused-list", &project.display().to_string()).await;
    wait_text(&c, "refused-list", "e2e-agent").await;
    // The images Stigmer uses: the custom one here, its size, with Remove and Download again.
    wait_text(&c, "images-body", engine::BUSYBOX).await;
    let row = text(&c, "images-body").await;
    assert!(
        row.contains("Custom image") && row.contains("Basic sandbox"),
        "{row}"
    );
    assert!(
        row.contains("Remove") && row.contains("Download again"),
        "{row}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&c, "window-workspace-refused.png").await;
    c.find(Locator::Css("#refused-list button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "workspace-list", &project.display().to_string()).await;
    let (status, body) = api.post("/v1/runs", &run).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""exit_code":0"#), "{body}");
    assert!(
        js(&c, "return document.getElementById('refused-box').hidden").await == json!(true),
        "the refusal is gone once the folder is allowed"
    );

    // Remove: the next run there is refused again.
    c.find(Locator::Css("#workspace-list button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..100 {
        if api.get("/v1/workspaces").await["workspaces"] == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = api.post("/v1/runs", &run).await;
    assert_eq!(status, 403);
    wait_text(&c, "workspace-empty", "No folder added yet").await;

    // "Add a folder…" opens the system's folder picker; the folder chosen there is added.
    c.find(Locator::Id("workspace-add"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let typed = project.display().to_string();
    choose_in_picker(
        &d,
        &c,
        "Allow sandboxed commands in a folder",
        &typed,
        "workspace-list",
    )
    .await;
    wait_text(&c, "workspace-list", &typed).await;
    let (status, body) = api.post("/v1/runs", &run).await;
    assert_eq!(status, 200, "{body}");
    w.close(&d).await;
}

/// Notifications, observed on the session bus with a real daemon: the one-time download
/// announced at its start and its end (a real pull from a registry on 127.0.0.1), nothing when
/// the image is already there; a crashed server announced once, and restartable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_for_the_download_and_a_crash() {
    let Some(d) = Desktop::start("notifications_for_the_download_and_a_crash") else {
        return;
    };
    d.skip_welcome();
    if !engine::engine_or_skip("notifications_for_the_download_and_a_crash") {
        return;
    }
    // 12 MB through a proxy at 3 MB/s: a download that lasts, so it is told (a quick one is not).
    // Its layers must not be here already, or the pull has nothing to download.
    let big = format!("stigmer-test/big-notify:{}", std::process::id());
    engine::ensure_big_image(&big, 12);
    let registry = engine::Registry::start();
    let pushed = registry.push(
        &big,
        &format!("stigmer/desktop-{}:test", std::process::id()),
    );
    engine::remove_image(&pushed);
    engine::remove_image(&big);
    let slow = engine::SlowProxy::start(registry.port, 3_000_000);
    let image = pushed.replacen(
        &format!(":{}/", registry.port),
        &format!(":{}/", slow.port),
        1,
    );
    let w = d.open(&[("STIGMER_SANDBOX_AUTO_PULL", "true")]).await;
    let c = w.c.clone();
    assert!(d.notifications().is_empty(), "{:?}", d.notifications());

    // Choose the custom image in the window, then run a command: the image downloads once.
    c.find(Locator::Css("input[name=tier][value=custom]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let input = c.find(Locator::Id("custom-image")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(&image).await.unwrap();
    c.find(Locator::Id("custom-apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let api = d.api();
    for _ in 0..50 {
        if api.get("/v1/mode").await["image"] == json!(image) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = c.find(Locator::Id("try-input")).await.unwrap();
    run.send_keys("echo in-the-sandbox").await.unwrap();
    c.find(Locator::Id("try-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "try-result", "exit code 0").await;
    assert!(text(&c, "try-result").await.contains(&image));
    assert!(
        wait_for(Duration::from_secs(10), || d.notifications().len() >= 2),
        "{:?}",
        d.notifications()
    );
    assert_eq!(
        d.notifications(),
        ["Preparing the sandbox", "Sandbox ready"]
    );
    // Its real size, from the registry: 12 MiB of data in the image's layers.
    let calls = d.notify_calls();
    assert!(calls.contains(" MB), once."), "{calls}");

    // Cached now: another command, no notification.
    c.find(Locator::Id("try-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_text(&c, "try-result", "exit code 0").await;
    assert_eq!(d.notifications().len(), 2, "{:?}", d.notifications());

    // The server dies: the window says so, one notification, and Restart brings it back.
    let pid = api.get("/v1/status").await["pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_text(&c, "server-state", "stopped unexpectedly").await;
    assert!(wait_for(Duration::from_secs(5), || d.notifications().len() == 3));
    assert_eq!(d.notifications()[2], "Stigmer server stopped");
    assert_eq!(text(&c, "server-toggle").await, "Restart");
    c.find(Locator::Id("server-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "server-state", "Running").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.notifications().len(), 3, "{:?}", d.notifications());
    w.close(&d).await;
    engine::remove_image(&image);
}

/// Whether a process with `mark` on its command line is left.
fn any_process_with(mark: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", mark])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Stop in the window ends a command's whole tree and its client reads that the user stopped
/// it; the tray's "Stop all running commands (N)" does the same for every running command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_in_the_window_and_the_tray_ends_commands_and_says_who() {
    let Some(d) = Desktop::start("stop_in_the_window_and_the_tray_ends_commands_and_says_who")
    else {
        return;
    };
    d.skip_welcome();
    let w = d.open(&[]).await;
    let c = w.c.clone();
    let api = std::sync::Arc::new(d.api());
    let start = |mark: String| {
        let api = api.clone();
        let cwd = d.home.path().to_path_buf();
        tokio::spawn(async move {
            let body = json!({"shell": format!("sh -c 'sleep 300; : {mark}' & sleep 300; : {mark}"), "cwd": cwd, "client": "e2e-agent"});
            api.post("/v1/runs", &body).await
        })
    };
    let mark = format!("stigmer-e2e-stop-{}", std::process::id());
    let run = start(mark.clone());
    assert!(wait_for(Duration::from_secs(10), || any_process_with(
        &mark
    )));
    view(&c, "activity").await;
    let stop = c
        .wait()
        .for_element(Locator::Css("#runs li .stop:not([hidden])"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&c, "window-activity-stop.png").await;
    stop.click().await.unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"code\":\"CANCELLED_BY_USER\""), "{body}");
    assert!(
        wait_for(Duration::from_secs(5), || !any_process_with(&mark)),
        "the whole tree ends"
    );
    wait_text(&c, "runs", "stopped by you").await;

    // The tray: "Stop all running commands (2)" while two run, then gone.
    let addr = tray_menu_address(&d);
    let marks = [format!("{mark}-a"), format!("{mark}-b")];
    let runs: Vec<_> = marks.iter().map(|m| start(m.clone())).collect();
    assert!(wait_for(Duration::from_secs(10), || marks
        .iter()
        .all(|m| any_process_with(m))));
    let label = "Stop all running commands (2)";
    assert!(
        wait_for(Duration::from_secs(10), || tray_layout(&d, &addr)
            .iter()
            .any(|i| i.label == label)),
        "the tray offers to stop them: {:?}",
        tray_layout(&d, &addr)
            .iter()
            .map(|i| i.label.clone())
            .collect::<Vec<_>>()
    );
    tray_click(&d, &addr, label);
    for r in runs {
        let (_, body) = tokio::time::timeout(Duration::from_secs(10), r)
            .await
            .unwrap()
            .unwrap();
        assert!(body.contains("\"code\":\"CANCELLED_BY_USER\""), "{body}");
    }
    assert!(wait_for(Duration::from_secs(5), || marks
        .iter()
        .all(|m| !any_process_with(m))));
    assert!(
        wait_for(Duration::from_secs(10), || !tray_layout(&d, &addr)
            .iter()
            .any(|i| i.label.starts_with("Stop all running"))),
        "the item goes once nothing runs"
    );
    w.close(&d).await;
}

/// The custom tier without a terminal: an image the engine has is picked from a list, and one
/// is built from a Dockerfile chosen in the system's file picker; once built, commands run in
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_image_is_picked_or_built_from_a_dockerfile_in_the_window() {
    let test = "a_custom_image_is_picked_or_built_from_a_dockerfile_in_the_window";
    let Some(d) = Desktop::start(test) else {
        return;
    };
    d.skip_welcome();
    if !engine::engine_or_skip(test) {
        return;
    }
    engine::ensure_busybox();
    let tools = d.home.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let dockerfile = tools.join("Dockerfile");
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {}\nCOPY greeting.txt /greeting.txt\n",
            engine::BUSYBOX
        ),
    )
    .unwrap();
    std::fs::write(tools.join("greeting.txt"), "built in the window\n").unwrap();
    let image = format!("stigmer-test/e2e-built-{}:1", std::process::id());
    engine::remove_image(&image);
    let w = d.open(&[]).await;
    let c = w.c.clone();
    let api = d.api();
    let mode_is = |want: &'static str, image: String| {
        let api = &api;
        async move {
            for _ in 0..1200 {
                let m = api.get("/v1/mode").await;
                if m["mode"] == want && m["image"] == json!(image) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };

    // Pick one the engine has: the list shows it with its size.
    c.find(Locator::Css("input[name=tier][value=custom]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "custom-have", engine::BUSYBOX).await;
    c.find(Locator::Css(&format!(
        "#custom-have option[value='{}']",
        engine::BUSYBOX
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    assert!(mode_is("sandbox", engine::BUSYBOX.to_string()).await);

    // Build one from a Dockerfile chosen in the file picker, as a person does.
    c.find(Locator::Id("custom-pick"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let typed = dockerfile.display().to_string();
    choose_in_picker(&d, &c, "Choose the Dockerfile", &typed, "custom-file").await;
    wait_text(&c, "custom-file", &typed).await;
    assert_eq!(
        js(
            &c,
            "return document.getElementById('custom-build-name').value"
        )
        .await,
        json!("tools-sandbox:latest"),
        "a name is suggested from the folder"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&c, "window-custom-build.png").await;
    let name = c.find(Locator::Id("custom-build-name")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys(&image).await.unwrap();
    c.find(Locator::Id("custom-build"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(mode_is("sandbox", image.clone()).await, "built and used");
    wait_text(&c, "custom-file", &format!("Built {image}")).await;
    wait_text(&c, "custom-have", &image).await;
    let run = c.find(Locator::Id("try-input")).await.unwrap();
    run.send_keys("cat /greeting.txt").await.unwrap();
    c.find(Locator::Id("try-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "try-result", "exit code 0").await;
    wait_text(&c, "try-output", "built in the window").await;
    shot(&c, "window-custom-built.png").await;
    w.close(&d).await;
    engine::remove_image(&image);
}

/// Choose `path` in the system's picker titled `title`, as a person does: type it (Ctrl+L),
/// Enter (to open a folder, then to choose it) until the window's `shows` element shows it.
async fn choose_in_picker(
    d: &Desktop,
    c: &fantoccini::Client,
    title: &str,
    path: &str,
    shows: &str,
) {
    let mut picker = String::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let o = d
                .command("xdotool")
                .stdout(std::process::Stdio::piped())
                .args(["search", "--name", title])
                .output()
                .unwrap();
            picker = String::from_utf8_lossy(&o.stdout).trim().to_string();
            o.status.success() && !picker.is_empty()
        }),
        "no picker '{title}' opened"
    );
    let picker = picker.lines().last().unwrap_or_default().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.screenshot(&screenshots().join(format!("desktop-picker-{shows}.png")));
    for keys in [
        &["windowfocus", "--sync", &picker][..],
        &["key", "ctrl+l"],
        &["type", "--delay", "5", path],
    ] {
        let _ = d.command("xdotool").args(keys).status();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for _ in 0..3 {
        if text(c, shows).await.contains(path) {
            break;
        }
        let _ = d.command("xdotool").args(["key", "Return"]).status();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}
