//! What the app does: start, stop, watch the server; switch modes; quit. The window's commands
//! and the tray's items both call these, so they always agree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use stigmer_engine::discovery::Discovery;
use stigmer_engine::paths::Paths;
use stigmer_engine::settings::{validate_image_ref, Mode, BASIC_IMAGE};
use stigmer_engine::{Error, ErrorCode, Result};
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_shell::process::{CommandChild, CommandEvent};
use tauri_plugin_shell::ShellExt;

use crate::api::Api;
use crate::model::{ids, AppModel, Download, ServerState};
use crate::notify::{self, Notifier};
use crate::prefs::{self, Prefs};
use crate::tray;

/// How many server log lines the window can show.
const LOG_LINES: usize = 500;
/// How long a started server has to become ready.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// Events reach the window at most this often, in batches (never one event per byte).
const BATCH_EVERY: Duration = Duration::from_millis(100);
/// Output bytes forwarded to the window per batch; the rest is counted, not sent.
const BATCH_OUTPUT_BYTES: usize = 32 * 1024;

pub struct Shared {
    pub paths: Paths,
    pub model: Mutex<AppModel>,
    pub prefs: Mutex<Prefs>,
    child: Mutex<Option<CommandChild>>,
    stopping: AtomicBool,
    notifier: Mutex<Notifier>,
    logs: Mutex<std::collections::VecDeque<String>>,
    /// Bumped at each start: watchers of an older server stop.
    generation: std::sync::atomic::AtomicU64,
    /// The window was closed to the tray (destroyed): the app goes on without one.
    in_tray: AtomicBool,
    /// What a window opened from the tray shows first (`settings`, `custom-image`).
    pending_view: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(paths: Paths) -> Shared {
        Shared {
            prefs: Mutex::new(prefs::load(&paths)),
            paths,
            model: Mutex::default(),
            child: Mutex::new(None),
            stopping: AtomicBool::new(false),
            notifier: Mutex::default(),
            logs: Mutex::default(),
            generation: Default::default(),
            in_tray: AtomicBool::new(false),
            pending_view: Mutex::default(),
        }
    }

    pub fn model(&self) -> AppModel {
        self.model.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn api(&self) -> Result<Api> {
        Api::find(&self.paths).ok_or_else(|| {
            Error::new(
                ErrorCode::ServerUnavailable,
                "the server is not running: start it first",
            )
        })
    }
}

fn shared(app: &AppHandle) -> tauri::State<'_, Shared> {
    app.state::<Shared>()
}

/// Change the model, then refresh the tray and tell the window.
pub fn update(app: &AppHandle, f: impl FnOnce(&mut AppModel)) {
    let m = {
        let s = shared(app);
        let mut m = s.model.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m);
        m.clone()
    };
    tray::update(app, &m);
    let _ = app.emit("stigmer://model", &m);
}

fn log_line(app: &AppHandle, line: String) {
    {
        let s = shared(app);
        let mut logs = s.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.push_back(line.clone());
        while logs.len() > LOG_LINES {
            logs.pop_front();
        }
    }
    let _ = app.emit("stigmer://log", line);
}

/// Start the server (or attach to the one already running) and watch it.
pub async fn start(app: &AppHandle) -> Result<AppModel> {
    let s = shared(app);
    if s.model().running() {
        return Ok(s.model());
    }
    let generation = s.generation.fetch_add(1, Ordering::SeqCst) + 1;
    s.stopping.store(false, Ordering::SeqCst);
    update(app, |m| m.server = ServerState::Starting);
    let (api, owned) = match Api::find(&s.paths) {
        Some(api) => {
            log_line(
                app,
                format!("attached to the server already running at {}", api.url),
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
    s.notifier
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .server_running();
    refresh_from_server(app, &api, owned).await;
    tauri::async_runtime::spawn(watch_events(app.clone(), api.clone(), generation));
    tauri::async_runtime::spawn(watch_health(app.clone(), api, generation, owned));
    Ok(shared(app).model())
}

/// Spawn `stigmer server start --foreground` (the sidecar next to the app) and wait until it
/// is ready.
async fn spawn_server(app: &AppHandle, generation: u64) -> Result<Api> {
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
    *s.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
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
                    server_ended(
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
        if let (Some(d), Some(api)) = (Discovery::read(&s.paths), Api::find(&s.paths)) {
            if d.pid == pid {
                return Ok(api);
            }
        }
        if started.elapsed() > READY_LIMIT
            || s.model.lock().unwrap_or_else(|p| p.into_inner()).server != ServerState::Starting
        {
            return Err(spawn_error(format!(
                "it was not ready after {} s; see its log",
                READY_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server went away: stopped on request, or crashed (told once).
fn server_ended(app: &AppHandle, generation: u64, reason: String) {
    let s = shared(app);
    if s.generation.load(Ordering::SeqCst) != generation {
        return;
    }
    *s.child.lock().unwrap_or_else(|p| p.into_inner()) = None;
    if s.stopping.load(Ordering::SeqCst) {
        log_line(app, "server stopped".into());
        update(app, |m| {
            m.server = ServerState::Stopped;
            m.download = None;
        });
        return;
    }
    log_line(app, format!("server stopped unexpectedly: {reason}"));
    if let Some(note) = s
        .notifier
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .server_crashed(&reason)
    {
        notify::show(note);
    }
    update(app, |m| {
        m.server = ServerState::Crashed { reason };
        m.download = None;
    });
}

async fn refresh_from_server(app: &AppHandle, api: &Api, owned: bool) {
    let status: Value = api.get("/v1/status").await.unwrap_or_default();
    update(app, |m| {
        m.server = ServerState::Running {
            url: api.url.clone(),
            pid: api.pid,
            owned,
        };
        if let Ok(mode) = serde_json::from_value::<Mode>(status["mode"].clone()) {
            m.mode = mode;
        }
        if let Some(image) = status["image"].as_str() {
            m.image = image.to_string();
        }
        m.engine = status["engine"]["state"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        m.engine_message = status["engine"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    });
}

/// Follow the server's health: the container engine's state (the tray says when a sandbox tier
/// cannot run), and for a server the app attached to, notice when it goes away (an owned one
/// is watched through its process).
async fn watch_health(app: AppHandle, api: Api, generation: u64, owned: bool) {
    let mut failures = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if shared(&app).generation.load(Ordering::SeqCst) != generation
            || !shared(&app).model().running()
        {
            return;
        }
        match api.get::<Value>("/v1/status").await {
            Ok(status) => {
                failures = 0;
                let engine = status["engine"]["state"].as_str().unwrap_or("unknown");
                let message = status["engine"]["message"].as_str().unwrap_or_default();
                let m = shared(&app).model();
                if m.engine != engine || m.engine_message != message {
                    update(&app, |m| {
                        m.engine = engine.to_string();
                        m.engine_message = message.to_string();
                    });
                }
            }
            Err(_) => failures += 1,
        }
        if failures >= 2 && !owned {
            server_ended(&app, generation, "the server no longer answers".into());
            return;
        }
    }
}

/// Follow the server's event stream: mode changes, downloads (tray, notifications), runs and
/// logs for the window, sent in bounded batches.
async fn watch_events(app: AppHandle, api: Api, generation: u64) {
    let resp = match api
        .send(api.request(reqwest::Method::GET, "/v1/events"))
        .await
    {
        Ok(r) => r,
        Err(e) => return log_line(&app, format!("no event stream: {}", e.message)),
    };
    let mut stream = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut batch: Vec<Value> = Vec::new();
    let (mut batch_bytes, mut dropped) = (0usize, 0u64);
    let mut last_flush = Instant::now();
    loop {
        let next = tokio::time::timeout(BATCH_EVERY, stream.next()).await;
        match next {
            Ok(Some(Ok(bytes))) => pending.extend_from_slice(&bytes),
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => {}
        }
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            match event["type"].as_str().unwrap_or_default() {
                "heartbeat" => {}
                "run_output" => {
                    let size = event["data"].as_str().map_or(0, str::len);
                    if batch_bytes + size > BATCH_OUTPUT_BYTES {
                        dropped += size as u64;
                    } else {
                        batch_bytes += size;
                        batch.push(event);
                    }
                }
                _ => {
                    on_event(&app, &event);
                    batch.push(event);
                }
            }
        }
        if last_flush.elapsed() >= BATCH_EVERY && (!batch.is_empty() || dropped > 0) {
            let _ = app.emit(
                "stigmer://events",
                json!({ "events": batch, "dropped_output_bytes": dropped }),
            );
            (batch, batch_bytes, dropped, last_flush) = (Vec::new(), 0, 0, Instant::now());
        }
    }
    if shared(&app).generation.load(Ordering::SeqCst) == generation
        && !shared(&app).stopping.load(Ordering::SeqCst)
    {
        // The stream ended without a stop: for an owned server the process watcher reports it.
        let owned = matches!(
            shared(&app).model().server,
            ServerState::Running { owned: true, .. }
        );
        if !owned {
            server_ended(
                &app,
                generation,
                "the server closed its event stream".into(),
            );
        }
    }
}

fn on_event(app: &AppHandle, event: &Value) {
    let s = shared(app);
    let str_of = |k: &str| event[k].as_str().unwrap_or_default().to_string();
    let tier = s.model().tier();
    match event["type"].as_str().unwrap_or_default() {
        "mode_changed" => update(app, |m| {
            if let Ok(mode) = serde_json::from_value::<Mode>(event["mode"].clone()) {
                m.mode = mode;
            }
            m.image = str_of("image");
            m.image_problem = None;
        }),
        "image_started" => {
            let note = s
                .notifier
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .image_started(&str_of("image"), &str_of("action"), tier);
            notify::show(note);
            update(app, |m| {
                m.image_problem = None;
                m.download = Some(Download {
                    image: str_of("image"),
                    action: str_of("action"),
                    phase: "resolving".into(),
                    percent: None,
                    bytes_done: 0,
                    bytes_total: 0,
                    rate_bytes_per_sec: 0,
                })
            });
        }
        "image_progress" => update(app, |m| {
            let p = &event["progress"];
            m.download = Some(Download {
                image: str_of("image"),
                action: str_of("action"),
                phase: p["phase"].as_str().unwrap_or_default().to_string(),
                percent: p["percent"].as_f64(),
                bytes_done: p["bytes_done"].as_u64().unwrap_or(0),
                bytes_total: p["bytes_total"].as_u64().unwrap_or(0),
                rate_bytes_per_sec: p["rate_bytes_per_sec"].as_u64().unwrap_or(0),
            })
        }),
        "image_finished" => {
            let ok = event["ok"].as_bool().unwrap_or(false);
            let error = event["error"]["message"].as_str().unwrap_or_default();
            let note = s
                .notifier
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .image_finished(&str_of("image"), &str_of("action"), ok, error, tier);
            notify::show(note);
            // A failed download of the basic image is followed by a build: not a failure yet.
            let fallback =
                !ok && str_of("action") == "pull" && tier == stigmer_engine::settings::Tier::Basic;
            update(app, |m| {
                m.download = None;
                if !ok && !fallback {
                    m.image_problem = Some(error.to_string());
                }
            });
        }
        // A server the app started writes its log to the app directly (its output): only an
        // attached server's lines come from here, so each line shows once.
        "log" if !matches!(s.model().server, ServerState::Running { owned: true, .. }) => {
            log_line(app, format!("{} {}", str_of("level"), str_of("message")))
        }
        _ => {}
    }
}

/// Stop the server: through its API (runs are cancelled), then make sure the process is gone.
pub async fn stop(app: &AppHandle) -> Result<AppModel> {
    let s = shared(app);
    s.stopping.store(true, Ordering::SeqCst);
    if let Ok(api) = s.api() {
        let _ = api.post("/v1/shutdown").await;
    }
    let started = Instant::now();
    while stigmer_engine::discovery::server_lock_held(&s.paths)
        && started.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(child) = s.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = child.kill();
    }
    update(app, |m| {
        m.server = ServerState::Stopped;
        m.download = None;
    });
    Ok(s.model())
}

/// Switch where commands run. The tray and the window both come here.
pub async fn set_mode(app: &AppHandle, tier: &str, image: Option<String>) -> Result<AppModel> {
    let s = shared(app);
    let body = match tier {
        "local" => json!({ "mode": "local" }),
        "basic" => json!({ "mode": "sandbox", "image": BASIC_IMAGE }),
        "custom" => {
            let image = image
                .or_else(|| {
                    s.prefs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .last_custom_image
                        .clone()
                })
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
                let mut p = s.prefs.lock().unwrap_or_else(|p| p.into_inner());
                p.last_custom_image = Some(image.clone());
                p.clone()
            };
            let _ = prefs::save(&s.paths, &saved);
            json!({ "mode": "sandbox", "image": image })
        }
        other => {
            return Err(Error::new(
                ErrorCode::InvalidMode,
                format!("`{other}` is not a mode; choose local, basic or custom"),
            ))
        }
    };
    let api = s.api()?;
    let view = api.put_mode(&body).await?;
    let status: Value = api.get("/v1/status").await.unwrap_or_default();
    update(app, |m| {
        if let Ok(mode) = serde_json::from_value::<Mode>(view["mode"].clone()) {
            m.mode = mode;
        }
        m.image = view["image"].as_str().unwrap_or(&m.image).to_string();
        m.engine = status["engine"]["state"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        m.engine_message = status["engine"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    });
    Ok(s.model())
}

/// Open the window: the one there, or a new one (closing to the tray destroys it, so that no
/// web view is kept alive there). A new window shows once its page has drawn itself.
pub fn show_window(app: &AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
        return;
    }
    shared(app).in_tray.store(false, Ordering::SeqCst);
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN_WINDOW)
        .cloned();
    let built = config
        .ok_or_else(|| "no main window in the configuration".to_string())
        .and_then(|c| {
            tauri::WebviewWindowBuilder::from_config(app, &c)
                .and_then(|b| b.build())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = built {
        tracing::error!("cannot open the window: {e}");
    }
}

/// Open the window on `view`: a window already there switches to it; a new one asks for it
/// ([`take_pending_view`]) once its page is ready to listen.
pub fn show_window_at(app: &AppHandle, view: &str) {
    *shared(app)
        .pending_view
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(view.to_string());
    let existed = app.get_webview_window(MAIN_WINDOW).is_some();
    show_window(app);
    if existed {
        let _ = app.emit("stigmer://show-view", view);
    }
}

pub fn take_pending_view(app: &AppHandle) -> Option<String> {
    shared(app)
        .pending_view
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}

/// The window's label (tauri.conf.json).
pub const MAIN_WINDOW: &str = "main";

/// The page has drawn: show its window (it is made hidden, so nobody sees a blank one).
pub fn page_ready(app: &AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        if !w.is_visible().unwrap_or(false) {
            let _ = w.show();
            let _ = w.set_focus();
        }
    }
}

/// Close the window to the tray: the window and its web view go (their memory with them); the
/// app, its tray and the server stay.
pub fn close_to_tray(window: &tauri::Window) {
    shared(window.app_handle())
        .in_tray
        .store(true, Ordering::SeqCst);
    let _ = window.destroy();
    // What WebKit freed goes back to the system, not only to the allocator.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tauri::async_runtime::spawn(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // SAFETY: malloc_trim only releases free heap pages.
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

/// Whether the window was closed to the tray (so the app keeps running without one).
pub fn in_tray(app: &AppHandle) -> bool {
    shared(app).in_tray.load(Ordering::SeqCst)
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
            ids::MODE_LOCAL => set_mode(&app, "local", None).await.map(|_| ()),
            ids::MODE_BASIC => set_mode(&app, "basic", None).await.map(|_| ()),
            ids::MODE_CUSTOM => {
                let known = shared(&app)
                    .prefs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .last_custom_image
                    .is_some();
                if known {
                    set_mode(&app, "custom", None).await.map(|_| ())
                } else {
                    // A tray cannot ask for text: the window can.
                    show_window_at(&app, "custom-image");
                    Ok(())
                }
            }
            ids::OPEN => {
                show_window(&app);
                Ok(())
            }
            // The window shows the notes and asks before installing.
            ids::UPDATE => {
                show_window_at(&app, "settings");
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
            tray::update(&app, &m);
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

pub fn paths(app: &AppHandle) -> Paths {
    shared(app).paths.clone()
}
