//! What the app does: start, stop, watch the server; switch modes; quit. The window's commands
//! and the tray's items both call these, so they always agree.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use stigmer_protocol::routes;

use stigmer_client::Client;
use stigmer_protocol::desktop::{save_prefs, ToWindow};
use stigmer_protocol::local::server_lock_held;
use stigmer_protocol::mode::{validate_image_ref, Mode, Tier, BASIC_IMAGE};
use stigmer_protocol::network::{NetworkChange, NetworkPolicy, NetworkView};
use stigmer_protocol::status::{ModeChange, Status};
use stigmer_protocol::{Error, ErrorCode, Result};

use crate::menu::ids;
use crate::model::{AppModel, ServerState};
use crate::notify;
use crate::state::{emit, log_line, send_windows, shared, update, AppHandle};
use crate::tray::{self, UiEvent};

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
        None => match crate::server::spawn(app, generation).await {
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
    tokio::spawn(crate::watch::events(app.clone(), api.clone(), generation));
    tokio::spawn(crate::watch::health(app.clone(), api, generation, owned));
    Ok(shared(app).model())
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
    m.protection_missing = status.protection.missing.clone();
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
        let _ = child.kill.send(());
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
        Tier::Protected => ModeChange {
            mode: Some(Mode::Protected),
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
            let _ = save_prefs(&s.paths, &saved);
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

/// Quit: stop the server only if this app started it; windows end with the app.
pub async fn quit(app: &AppHandle) {
    stop_owned(app).await;
    send_windows(app, &ToWindow::Exit);
    app.exit(0);
}

pub fn tray_clicked(app: &AppHandle, id: &str) {
    let app = app.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let result = match id.as_str() {
            ids::START => start(&app).await.map(|_| ()),
            ids::STOP => stop(&app).await.map(|_| ()),
            ids::STOP_RUNS => stop_all_runs(&app).await.map(|_| ()),
            ids::MODE_LOCAL => set_mode(&app, Tier::Local, None).await.map(|_| ()),
            ids::MODE_PROTECTED => set_mode(&app, Tier::Protected, None).await.map(|_| ()),
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
                    crate::windows::open(&app, Some("custom-image"));
                    Ok(())
                }
            }
            ids::OPEN | ids::APPROVALS => {
                crate::windows::open(&app, None);
                Ok(())
            }
            // The window shows the notes and asks before installing.
            ids::UPDATE => {
                crate::windows::open(&app, Some("settings"));
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
            emit(&app, "stigmer://error", &e);
        }
        // Check items toggle themselves when clicked: put the menu back to the state.
        if tray::is_mode_item(&id) {
            let model = Box::new(shared(&app).model());
            app.ui(UiEvent::Show { model, force: true });
        }
    });
}
