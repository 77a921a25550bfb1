//! Stigmer's tray process (`stigmer-tray`): what stays while the desktop app runs. The tray and
//! its menu, notifications and approvals, update checks, and the server it starts and watches.
//! It has no web view and links no web engine: the window (`stigmer-desktop`) is a process of
//! its own that connects to this one (see `stigmer_protocol::desktop`), started on Open and
//! ended on close.

mod actions;
mod approvals;
mod menu;
mod model;
mod notify;
mod serve;
mod server;
mod signals;
mod state;
mod tray;
mod updates;
mod watch;
mod windows;

use std::time::{Duration, Instant};

use stigmer_protocol::desktop::{lock_file, OPEN_ARG};
use stigmer_protocol::local::{try_lock, Paths};
use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder};
use tray_icon::menu::MenuEvent;

use crate::state::AppHandle;
use crate::tray::{Tray, UiEvent};

/// How long a new tray process waits for an old one to let go of the lock (an update's
/// restart); a second tray process started beside a running one ends after this.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Hold the tray's lock for the life of the process; false if another tray process has it.
fn hold_lock(paths: &Paths) -> bool {
    if Paths::ensure_private_dir(&paths.data_dir).is_err() {
        return false;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_file(paths))
    else {
        return false;
    };
    let started = Instant::now();
    loop {
        if try_lock(&file).unwrap_or(false) {
            // Its pid, for whoever needs to find the tray process (the tests).
            let _ = file.set_len(0);
            let _ =
                std::io::Write::write_all(&mut &file, std::process::id().to_string().as_bytes());
            // Kept open (and so locked) until the process ends.
            std::mem::forget(file);
            return true;
        }
        if started.elapsed() > LOCK_WAIT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("stigmer-tray {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STIGMER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Without a desktop session there is no tray to show: say so, change nothing.
    #[cfg(all(unix, not(target_os = "macos")))]
    if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty())
        && std::env::var_os("WAYLAND_DISPLAY").is_none_or(|d| d.is_empty())
    {
        eprintln!(
            "stigmer: the tray app needs a desktop session (no DISPLAY or WAYLAND_DISPLAY); \
             in a terminal, use `stigmer server start` instead"
        );
        std::process::exit(1);
    }
    let paths = match Paths::resolve() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stigmer: {}", e.message);
            std::process::exit(1);
        }
    };
    if !hold_lock(&paths) {
        tracing::info!("Stigmer's tray app already runs");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    // Menu clicks and the event loop's callbacks spawn onto it from this thread.
    let _entered = runtime.enter();
    let event_loop = EventLoopBuilder::<UiEvent>::with_user_event().build();
    let app = AppHandle::new(state::Shared::new(paths), event_loop.create_proxy());
    state::shared(&app).model.lock().update.current = app.version().to_string();
    {
        let app = app.clone();
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
            actions::tray_clicked(&app, e.id().as_ref())
        }));
    }
    if let Err(e) = serve::listen(&app) {
        eprintln!("stigmer: the tray app cannot listen for its window: {e}");
        std::process::exit(1);
    }
    // Logout or `kill`: quit like the tray's Quit, stopping a server we started.
    #[cfg(unix)]
    {
        let app = app.clone();
        tokio::spawn(async move {
            signals::ended().await;
            actions::quit(&app).await;
        });
    }
    updates::watch(app.clone());
    if args.iter().any(|a| a == OPEN_ARG) {
        windows::open(&app, None);
    }
    if state::shared(&app).prefs.lock().start_server_on_launch {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = actions::start(&app).await {
                tracing::warn!("server not started: {}", e.message);
            }
        });
    }
    let mut tray: Option<Tray> = None;
    event_loop.run(move |event, _, control_flow| {
        *control_flow = ControlFlow::Wait;
        match event {
            // The tray is made once the loop runs (GTK wants it made on this thread).
            Event::NewEvents(StartCause::Init) => match Tray::new(&state::shared(&app).model()) {
                Ok(t) => tray = Some(t),
                Err(e) => tracing::error!("no tray icon: {e}"),
            },
            Event::UserEvent(UiEvent::Show { model, force }) => {
                if let Some(t) = tray.as_mut() {
                    t.show(&model, force);
                }
            }
            Event::UserEvent(UiEvent::Exit(code)) => {
                tray = None;
                *control_flow = ControlFlow::ExitWithCode(code);
            }
            _ => {}
        }
    });
}
