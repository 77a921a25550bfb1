//! The real app under Xvfb: its window driven through WebDriver, its tray menu over D-Bus
//! (dbusmenu, as a desktop panel uses it), with the real server behind both.

mod desktop;

use std::time::Duration;

use desktop::page::*;
use desktop::*;
use fantoccini::Locator;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_tray_and_server_work_together() {
    let Some(d) = Desktop::start("window_tray_and_server_work_together") else {
        return;
    };
    d.skip_welcome();
    let w = d.open(&[]).await;
    let c = w.c.clone();
    let api = d.api();
    view(&c, "sandbox").await;
    wait_text(&c, "tools-advice", "Local").await;
    view(&c, "home").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    shot(&c, "window-light.png").await;
    d.screenshot(&screenshots().join("desktop-light.png"));

    // The tray shows the state and the three modes, Local checked.
    let addr = tray_menu_address(&d);
    let menu = tray_layout(&d, &addr);
    let labels: Vec<&str> = menu.iter().map(|i| i.label.as_str()).collect();
    for want in [
        "Running · Local",
        "Stop server",
        "Local",
        "Local, protected",
        "Basic sandbox",
        "Custom image…",
        "Open Stigmer",
        "Quit",
    ] {
        assert!(labels.contains(&want), "tray menu lacks {want}: {labels:?}");
    }
    assert_eq!(checked(&menu), ["Local"]);
    // And as a person sees it: the tray host's menu, opened with a right click on the icon.
    let opened = d
        .command("xdotool")
        .args(["mousemove", "16", "884", "click", "3"])
        .status();
    if opened.is_ok_and(|s| s.success()) {
        tokio::time::sleep(Duration::from_millis(800)).await;
        d.screenshot(&screenshots().join("desktop-tray-menu.png"));
        let _ = d.command("xdotool").args(["key", "Escape"]).status();
    }

    // The window switches the mode: the server and the tray follow (a sandbox tier also shows
    // its network policy, one of three, checked).
    c.find(Locator::Css("input[name=tier][value=basic]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || checked(&tray_layout(&d, &addr))
            == ["Basic sandbox", "Network: Open (any host)"]),
        "tray did not follow: {:?}",
        checked(&tray_layout(&d, &addr))
    );
    let mode = api.get("/v1/mode").await;
    assert_eq!(
        (mode["mode"].as_str(), mode["tier"].as_str()),
        (Some("sandbox"), Some("basic"))
    );

    // The tray picks the protected tier: the server and the window follow.
    tray_click(&d, &addr, "Local, protected");
    for _ in 0..100 {
        if api.get("/v1/mode").await["mode"] == "protected" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.get("/v1/mode").await["tier"], "protected");
    wait_js(
        &c,
        "return document.querySelector('input[name=tier][value=protected]').checked",
        &json!(true),
    )
    .await;

    // The tray switches it back: the server and the window follow.
    tray_click(&d, &addr, "Local");
    for _ in 0..100 {
        if js(
            &c,
            "return document.querySelector('input[name=tier][value=local]').checked",
        )
        .await
            == json!(true)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        js(
            &c,
            "return document.querySelector('input[name=tier][value=local]').checked"
        )
        .await,
        json!(true)
    );
    assert_eq!(api.get("/v1/mode").await["mode"], "local");
    assert_eq!(checked(&tray_layout(&d, &addr)), ["Local"]);

    // An invalid image reference is refused with a message, and nothing changes.
    c.find(Locator::Css("input[name=tier][value=custom]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let input = c.find(Locator::Id("custom-image")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys("Not An Image!").await.unwrap();
    c.find(Locator::Id("custom-apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "mode-error", "is not an image name").await;
    assert_eq!(api.get("/v1/mode").await["mode"], "local");

    // A command runs through the server, its streams told apart, and shows in the activity.
    let input = c.find(Locator::Id("try-input")).await.unwrap();
    input
        .send_keys("echo hello-e2e; echo oops >&2")
        .await
        .unwrap();
    c.find(Locator::Id("try-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "try-result", "exit code 0").await;
    assert!(text(&c, "try-output").await.contains("hello-e2e"));
    assert_eq!(
        js(
            &c,
            "return document.querySelector('#try-output .err').textContent"
        )
        .await,
        json!("oops\n")
    );
    view(&c, "activity").await;
    wait_text(&c, "runs", "echo hello-e2e").await;

    // The window's "Connect an agent" configuration works as written: an agent launching it
    // over stdio runs a command through this server, and the run shows labelled with its name.
    view(&c, "agents").await;
    js(
        &c,
        "document.getElementById('agents-manual').open = true; return true",
    )
    .await;
    let config: Value = serde_json::from_str(&text(&c, "agent-config").await).unwrap();
    let server = &config["mcpServers"]["stigmer"];
    assert_eq!(server["args"], json!(["mcp"]));
    // Exactly as configured: the app runs with its own STIGMER_HOME, which the config carries.
    let mut agent = d.command(server["command"].as_str().unwrap());
    agent.arg("mcp").env_remove("STIGMER_HOME");
    for (k, v) in server["env"].as_object().expect("env with STIGMER_HOME") {
        agent.env(k, v.as_str().unwrap());
    }
    let reply = mcp_over_stdio(&mut agent, "echo from-an-agent");
    assert!(reply.contains("from-an-agent"), "{reply}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&c, "window-agents.png").await;
    view(&c, "activity").await;
    wait_text(&c, "runs", "e2e-agent (MCP)").await;
    // Let the page paint the change before the picture (a shot can show the previous frame).
    tokio::time::sleep(Duration::from_millis(500)).await;
    shot(&c, "window-after-run.png").await;
    view(&c, "home").await;

    // Readable at 200% zoom: one column, nothing cut off sideways.
    js(&c, "document.documentElement.style.zoom = '2'; return true").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overflow = js(
        &c,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(
        overflow.as_f64().unwrap_or(0.0) <= 1.0,
        "horizontal overflow at 200%: {overflow}"
    );
    shot(&c, "window-zoom-200.png").await;
    js(&c, "document.documentElement.style.zoom = '1'; return true").await;

    // A second launch does not start a second app: it hands over to this one and exits.
    let mut second = d.command(APP).spawn().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || second
            .try_wait()
            .unwrap()
            .is_some()),
        "a second instance kept running"
    );
    assert_eq!(
        text(&c, "server-state").await,
        "Running",
        "the first instance is gone"
    );

    // Stop and start from the window.
    c.find(Locator::Id("server-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "server-state", "stopped").await;
    assert!(
        ServerApi::of(&d).is_none()
            || !std::path::Path::new(&d.home.path().join("stigmer/data/server.json")).exists()
    );
    c.find(Locator::Id("server-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "server-state", "Running").await;
    let api = ServerApi::of(&d).expect("a new server");
    let pid = api.get("/v1/status").await["pid"].as_u64().unwrap() as i32;

    // Quit from the tray: the app exits and takes the server it started with it. (Closing the
    // WebDriver session would end the app itself: it comes after.)
    // The menu object is re-made with the menu: look it up again.
    let addr = tray_menu_address(&d);
    tray_click(&d, &addr, "Quit");
    assert!(
        wait_for(Duration::from_secs(15), || unsafe { libc::kill(pid, 0) }
            != 0),
        "the server outlived the app"
    );
    w.close(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_engine_is_shown_and_dark_mode_is_readable() {
    let Some(d) = Desktop::start("a_missing_engine_is_shown_and_dark_mode_is_readable") else {
        return;
    };
    d.skip_welcome();
    let w = d
        .open(&[
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
            ("GTK_THEME", "Adwaita:dark"),
        ])
        .await;
    let c = w.c.clone();
    c.find(Locator::Css("input[name=tier][value=basic]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Plain words and buttons; the engine's own message (with its commands) under Details.
    wait_text(&c, "problem-text", "needs Docker or Podman").await;
    assert!(text(&c, "problem-text")
        .await
        .contains("never run on this computer instead"));
    let buttons = text(&c, "problem-actions").await;
    assert!(
        buttons.contains("Use Local instead") && buttons.contains("Try again"),
        "{buttons}"
    );
    assert!(!text(&c, "problem-text").await.contains("systemctl"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    shot(&c, "window-dark-no-engine.png").await;
    w.close(&d).await;
}

#[path = "../../crates/cli/tests/common/engine.rs"]
mod engine;

/// An update server on 127.0.0.1 announcing `version` (the app in a debug build accepts plain
/// HTTP there); its package is not signed by the app's key. Returns its URL.
fn update_server(version: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let manifest = json!({
        "version": version,
        "notes": "Faster sandbox runs.\nA Stop button for every command.",
        "pub_date": "2026-12-01T00:00:00Z",
        "platforms": { "linux-x86_64": { "url": format!("{url}/stigmer.AppImage"), "signature": "dW50cnVzdGVkIGNvbW1lbnQ6IG5vdCBhIHNpZ25hdHVyZQo=" } },
    })
    .to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let body = if request.starts_with("GET /latest.json") {
                manifest.clone().into_bytes()
            } else {
                vec![7u8; 4096]
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    url
}

/// An update shows in the window with its notes and waits for the person; a package that does
/// not match the app's key is refused in plain words and nothing changes. Light and dark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_offered_never_installed_silently_and_a_bad_one_is_refused() {
    let Some(d) = Desktop::start("an_update_is_offered") else {
        return;
    };
    d.skip_welcome();
    let url = update_server("9.9.9");
    for (theme, suffix) in [("Adwaita", "light"), ("Adwaita:dark", "dark")] {
        let endpoint = format!("{url}/latest.json");
        let w = d
            .open(&[
                ("GTK_THEME", theme),
                ("STIGMER_UPDATE_ENDPOINT", endpoint.as_str()),
            ])
            .await;
        let c = w.c.clone();
        // Found at start: the Settings tab says so, and nothing is installed yet.
        wait_text(&c, "nav-update", "1").await;
        view(&c, "settings").await;
        wait_text(&c, "update-text", "Version 9.9.9 is available").await;
        js(
            &c,
            "document.getElementById('update-notes').open = true; return true",
        )
        .await;
        wait_text(&c, "update-notes-text", "A Stop button").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        shot(&c, &format!("update-{suffix}.png")).await;
        if suffix == "light" {
            let addr = tray_menu_address(&d);
            assert!(
                tray_layout(&d, &addr)
                    .iter()
                    .any(|i| i.label == "Version 9.9.9 is available…"),
                "the tray does not offer the update"
            );
            c.find(Locator::Id("update-install"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            wait_text(&c, "update-text", "nothing was installed").await;
            assert!(!text(&c, "update-text").await.contains("minisign"));
            assert!(
                text(&c, "nav-state").await.contains("Running"),
                "the app stopped"
            );
        }
        w.close(&d).await;
        // The next launch starts its own server once this one's is gone.
        let discovery = d.home.path().join("stigmer/data/server.json");
        assert!(wait_for(Duration::from_secs(15), || !discovery.exists()));
    }
}

/// `pid`'s child processes: (pid, name).
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
            let name = head.split_once('(').map(|(_, n)| n.to_string());
            found.push((child, name.unwrap_or_default()));
        }
    }
    found
}

/// The names of `pid`'s child processes.
fn children_of(pid: u32) -> Vec<String> {
    children(pid).into_iter().map(|(_, n)| n).collect()
}

/// Closed to the tray, the window's process ends and every WebKit process with it; the tray
/// process (which never had a web view) and the server go on; the tray's Open starts a window
/// again, and Quit ends them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_to_the_tray_frees_the_web_view_and_open_brings_it_back() {
    let Some(d) = Desktop::start("closing_to_the_tray_frees_the_web_view") else {
        return;
    };
    d.skip_welcome();
    let mut window = d.command(APP).spawn().unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || window_shown(&d, "Stigmer")),
        "the window never showed"
    );
    let web = |pid| {
        children_of(pid)
            .iter()
            .any(|n| n.starts_with("WebKitWebProces"))
    };
    assert!(wait_for(Duration::from_secs(10), || ServerApi::of(&d).is_some()));
    assert!(web(window.id()), "{:?}", children_of(window.id()));
    let tray = d.tray_pid().expect("the window started the tray process");
    assert_ne!(tray, window.id());
    assert!(!web(tray), "the tray process has a web view");
    let api = d.api();
    let server_pid = api.get("/v1/status").await["pid"].as_u64().unwrap() as i32;

    close_window(&d, "Stigmer");
    assert!(
        wait_for(Duration::from_secs(10), || !window_shown(&d, "Stigmer")
            && window.try_wait().unwrap().is_some()),
        "the window's process outlived its window"
    );
    assert!(!web(window.id()));
    assert!(running(tray), "the tray process quit with the window");
    assert_eq!(
        unsafe { libc::kill(server_pid, 0) },
        0,
        "the server stopped"
    );

    let addr = tray_menu_address(&d);
    tray_click(&d, &addr, "Open Stigmer");
    assert!(
        wait_for(Duration::from_secs(10), || window_shown(&d, "Stigmer")),
        "Open Stigmer did not bring the window back"
    );
    let reopened = children_of_pids(tray);
    assert_eq!(reopened.len(), 1, "one window process: {reopened:?}");
    assert!(web(reopened[0]));
    assert!(!web(tray));
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.screenshot(&screenshots().join("desktop-reopened.png"));
    let addr = tray_menu_address(&d);
    tray_click(&d, &addr, "Quit");
    assert!(
        wait_for(Duration::from_secs(15), || !running(tray)
            && !running(reopened[0])
            && unsafe { libc::kill(server_pid, 0) } != 0),
        "Quit did not end the tray, the window and the server"
    );
}

/// The pids of `pid`'s running children that are the window (not the server, not WebKit's).
fn children_of_pids(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|(p, n)| n == "stigmer-desktop" && running(*p))
        .map(|(p, _)| p)
        .collect()
}
