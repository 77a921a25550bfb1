//! What the app does: start, stop, watch the server; switch modes; quit. The window's commands
//! and the tray's items both call these, so they always agree.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use stigmer_protocol::routes;

use stigmer_client::Client;
use stigmer_protocol::local::{server_lock_held, Discovery};
use stigmer_protocol::mode::{validate_image_ref, Mode, Tier, BASIC_IMAGE};
use stigmer_protocol::network::{NetworkChange, NetworkPolicy, NetworkView};
use stigmer_protocol::status::{ModeChange, Status};
use stigmer_protocol::{Error, ErrorCode, Result};
use tauri::{AppHandle, Emitter};
use tauri_plugin_shell::process::CommandEvent;
use tauri_plugin_shell::ShellExt;

use crate::menu::ids;
use crate::model::{AppModel, ServerState};
use crate::notify;
use crate::prefs;
use crate::state::{log_line, shared, update};
use crate::tray;

/// How long a started server has to become ready.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// Start the server (or attach to the one already running) and watch it.
pub async fn start(app: &AppHandle) -> Result<AppModel> {
    let s = shared(app);
    if s.model().running() {
        return Ok(s.model());
    }
    let generation = s.generation.fetch_add(1, Ordering::SeqCst) + 1;
    s.stopping.store(false, Ordering::SeqCst);
    update(app, |m| m.server = ServerState::Starting);
    let (api, owned) = match Client::find(&s.paths).ok().flatten() {
        Some(api) => {
            log_line(
                app,
                format!("attached to the server already running at {}", api.url()),
            );
            (api, false)
        }
        None => match spawn_server(app, generation).await {
            Ok(api) => (api, true),
            Err(e) => {
                update(app, |m| {
                    m.server = ServerState::Crashed {
                        reason: e.message.clone(),
                    }
                });
                return Err(e);
            }
        },
    };
    notify::notifier(app).server_running();
    refresh_from_server(app, &api, owned).await;
    tauri::async_runtime::spawn(crate::watch::events(app.clone(), api.clone(), generation));
    tauri::async_runtime::spawn(crate::watch::health(app.clone(), api, generation, owned));
    Ok(shared(app).model())
}

/// Spawn `stigmer server start --foreground` (the sidecar next to the app) and wait until it
/// is ready.
async fn spawn_server(app: &AppHandle, generation: u64) -> Result<Client> {
    let s = shared(app);
    let spawn_error = |e: String| {
        Error::new(
            ErrorCode::ServerUnavailable,
            format!("cannot start the server: {e}"),
        )
    };
    let command = app
        .shell()
        .sidecar("stigmer")
        .map_err(|e| spawn_error(e.to_string()))?;
    let own = crate::OWN_ENV_VARS.get().cloned().unwrap_or_default();
    let (mut events, child) = command
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| !own.contains(&k.as_str())))
        .args([
            "server",
            "start",
            "--foreground",
            "--exit-with-parent",
            "--port",
            "0",
        ])
        .spawn()
        .map_err(|e| spawn_error(e.to_string()))?;
    let pid = child.pid();
    *s.child.lock() = Some(child);
    // The server's output is its log: show it; its end is the server's end.
    let watcher = app.clone();
    tauri::async_runtime::spawn(async move {
        let mut pending = String::new();
        while let Some(event) = events.recv().await {
            match event {
                CommandEvent::Stdout(bytes) | CommandEvent::Stderr(bytes) => {
                    pending.push_str(&String::from_utf8_lossy(&bytes));
                    while let Some(nl) = pending.find('\n') {
                        let line: String = pending.drain(..=nl).collect();
                        log_line(&watcher, strip_ansi(line.trim_end()));
                    }
                }
                CommandEvent::Terminated(t) => {
                    let how = match (t.code, t.signal) {
                        (Some(c), _) => format!("exit code {c}"),
                        (_, Some(sig)) => format!("signal {sig}"),
                        _ => "unknown reason".into(),
                    };
                    crate::watch::server_ended(
                        &watcher,
                        generation,
                        format!("the server process ended ({how})"),
                    );
                    return;
                }
                CommandEvent::Error(e) => log_line(&watcher, format!("server output error: {e}")),
                _ => {}
            }
        }
    });
    let started = Instant::now();
    loop {
        if let (Some(d), Some(api)) = (
            Discovery::read(&s.paths),
            Client::find(&s.paths).ok().flatten(),
        ) {
            if d.pid == pid {
                return Ok(api);
            }
        }
        if started.elapsed() > READY_LIMIT || s.model.lock().server != ServerState::Starting {
            return Err(spawn_error(format!(
                "it was not ready after {} s; see its log",
                READY_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server went away: stopped on request, or crashed (told once).
pub(crate) async fn refresh_from_server(app: &AppHandle, api: &Client, owned: bool) {
    let status = api.status().await.ok();
    update(app, |m| {
        m.server = ServerState::Running {
            url: api.url().to_string(),
            pid: api.pid(),
            owned,
        };
        if let Some(status) = status {
            apply_status(m, &status);
        }
    });
}

/// What the server's status says of the mode, the image and the engine.
pub(crate) fn apply_status(m: &mut AppModel, status: &Status) {
    m.mode = status.mode;
    m.image = status.image.clone();
    m.engine = Some(status.engine.state);
    m.engine_message = status.engine.message.clone();
    m.active_runs = status.active_runs;
    m.network = status.network;
}

/// Choose what sandboxes may reach (the window's and the tray's network choice).
pub async fn set_network(app: &AppHandle, policy: NetworkPolicy) -> Result<NetworkView> {
    let body = NetworkChange { policy };
    let view: NetworkView = shared(app).api()?.post(routes::NETWORK, &body).await?;
    update(app, |m| m.network = view.policy);
    Ok(view)
}

/// Stop every running command for the user (the tray's item; agents are told the user did).
pub async fn stop_all_runs(app: &AppHandle) -> Result<usize> {
    Ok(shared(app).api()?.stop_all_runs().await? as usize)
}

/// Stop the server: through its API (runs are cancelled), then make sure the process is gone.
pub async fn stop(app: &AppHandle) -> Result<AppModel> {
    let s = shared(app);
    s.stopping.store(true, Ordering::SeqCst);
    if let Ok(api) = s.api() {
        let _ = api.post_empty(routes::SHUTDOWN).await;
    }
    let started = Instant::now();
    while server_lock_held(&s.paths) && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(child) = s.child.lock().take() {
        let _ = child.kill();
    }
    update(app, |m| {
        m.server = ServerState::Stopped;
        m.download = None;
    });
    Ok(s.model())
}

/// Switch where commands run. The tray and the window both come here.
pub async fn set_mode(app: &AppHandle, tier: Tier, image: Option<String>) -> Result<AppModel> {
    let s = shared(app);
    let body = match tier {
        Tier::Local => ModeChange {
            mode: Some(Mode::Local),
            ..ModeChange::default()
        },
        Tier::Basic => ModeChange {
            mode: Some(Mode::Sandbox),
            image: Some(BASIC_IMAGE.into()),
        },
        Tier::Custom => {
            let image = image
                .or_else(|| s.prefs.lock().last_custom_image.clone())
                .unwrap_or_default();
            validate_image_ref(&image).map_err(|why| {
                Error::new(
                    ErrorCode::InvalidSetting,
                    format!("`{image}` is not a valid image reference: {why}"),
                )
            })?;
            if image == BASIC_IMAGE {
                return Err(Error::new(
                    ErrorCode::InvalidSetting,
                    "that is the basic image: choose Basic sandbox",
                ));
            }
            let saved = {
                let mut p = s.prefs.lock();
                p.last_custom_image = Some(image.clone());
                p.clone()
            };
            let _ = prefs::save(&s.paths, &saved);
            ModeChange {
                mode: Some(Mode::Sandbox),
                image: Some(image),
            }
        }
    };
    let api = s.api()?;
    api.set_mode(&body).await?;
    if let Ok(status) = api.status().await {
        update(app, |m| apply_status(m, &status));
    }
    Ok(s.model())
}

/// Stop the server if this app started it (before an update restarts the app).
pub async fn stop_owned(app: &AppHandle) {
    if matches!(
        shared(app).model().server,
        ServerState::Running { owned: true, .. } | ServerState::Starting
    ) {
        let _ = stop(app).await;
    }
}

/// Ask the server how things are now (the window's "Try again").
pub async fn refresh(app: &AppHandle) -> Result<AppModel> {
    let s = shared(app);
    let api = s.api()?;
    let owned = matches!(s.model().server, ServerState::Running { owned: true, .. });
    refresh_from_server(app, &api, owned).await;
    update(app, |m| m.image_problem = None);
    Ok(shared(app).model())
}

/// Quit: stop the server only if this app started it.
pub async fn quit(app: &AppHandle) {
    stop_owned(app).await;
    app.exit(0);
}

pub fn tray_clicked(app: &AppHandle, id: &str) {
    let app = app.clone();
    let id = id.to_string();
    tauri::async_runtime::spawn(async move {
        let result = match id.as_str() {
            ids::START => start(&app).await.map(|_| ()),
            ids::STOP => stop(&app).await.map(|_| ()),
            ids::STOP_RUNS => stop_all_runs(&app).await.map(|_| ()),
            ids::MODE_LOCAL => set_mode(&app, Tier::Local, None).await.map(|_| ()),
            ids::MODE_BASIC => set_mode(&app, Tier::Basic, None).await.map(|_| ()),
            ids::NET_OPEN => set_network(&app, NetworkPolicy::Open).await.map(|_| ()),
            ids::NET_NONE => set_network(&app, NetworkPolicy::None).await.map(|_| ()),
            ids::NET_ALLOWLIST => set_network(&app, NetworkPolicy::Allowlist)
                .await
                .map(|_| ()),
            ids::MODE_CUSTOM => {
                let known = shared(&app).prefs.lock().last_custom_image.is_some();
                if known {
                    set_mode(&app, Tier::Custom, None).await.map(|_| ())
                } else {
                    // A tray cannot ask for text: the window can.
                    crate::window::show_window_at(&app, "custom-image");
                    Ok(())
                }
            }
            ids::OPEN | ids::APPROVALS => {
                crate::window::show_window(&app);
                Ok(())
            }
            // The window shows the notes and asks before installing.
            ids::UPDATE => {
                crate::window::show_window_at(&app, "settings");
                Ok(())
            }
            ids::QUIT => {
                quit(&app).await;
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            log_line(&app, format!("{}: {}", e.code, e.message));
            let _ = app.emit("stigmer://error", &e);
        }
        // Check items toggle themselves when clicked: put the menu back to the state.
        if tray::is_mode_item(&id) {
            let m = shared(&app).model();
            tray::refresh(&app, &m);
        }
    });
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
