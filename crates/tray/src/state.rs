//! The tray process's state, at ground level: what every other module reads and changes (the
//! model the window and the tray show, the preferences, the server process, the log, the
//! windows connected), the handle every module gets ([`AppHandle`]), and the one way a change
//! reaches the tray and the windows ([`update`], [`emit`]). It uses only the model, the tray's
//! events and the wire, never the modules that act.

use parking_lot::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use stigmer_client::Client;
use stigmer_protocol::desktop::{self as wire, load_prefs, Prefs, ToWindow};
use stigmer_protocol::local::Paths;
use stigmer_protocol::{Error, ErrorCode, Result};
use tao::event_loop::EventLoopProxy;
use tokio::sync::mpsc::UnboundedSender;

use crate::model::AppModel;
use crate::tray::{self, UiEvent};

/// The tray process: its state, and the way to its event loop (the tray lives there).
#[derive(Clone)]
pub struct AppHandle(Arc<Inner>);

struct Inner {
    shared: Shared,
    ui: Mutex<EventLoopProxy<UiEvent>>,
}

impl AppHandle {
    pub fn new(shared: Shared, ui: EventLoopProxy<UiEvent>) -> AppHandle {
        AppHandle(Arc::new(Inner {
            shared,
            ui: Mutex::new(ui),
        }))
    }

    /// Tell the event loop (the tray's thread).
    pub fn ui(&self, event: UiEvent) {
        let _ = self.0.ui.lock().send_event(event);
    }

    /// End the process with `code` (the event loop ends it).
    pub fn exit(&self, code: i32) {
        self.ui(UiEvent::Exit(code));
    }

    /// This app's version.
    pub fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}

/// The server process this app started: the way to end it.
pub struct ServerChild {
    pub kill: tokio::sync::oneshot::Sender<()>,
}

/// How many server log lines the window can show.
const LOG_LINES: usize = 500;

pub struct Shared {
    pub paths: Paths,
    pub model: Mutex<AppModel>,
    pub prefs: Mutex<Prefs>,
    pub(crate) child: Mutex<Option<ServerChild>>,
    pub(crate) stopping: AtomicBool,
    logs: Mutex<std::collections::VecDeque<String>>,
    /// Bumped at each start: watchers of an older server stop.
    pub(crate) generation: std::sync::atomic::AtomicU64,
    /// The windows connected (each a process of its own): where their messages go.
    pub(crate) windows: Mutex<Vec<UnboundedSender<Vec<u8>>>>,
    /// A window process started and not connected yet, and the view it should show.
    pub(crate) starting_window: Mutex<Option<(std::time::Instant, Option<String>)>>,
}

impl Shared {
    pub fn new(paths: Paths) -> Shared {
        Shared {
            prefs: Mutex::new(load_prefs(&paths)),
            paths,
            model: Mutex::default(),
            child: Mutex::new(None),
            stopping: AtomicBool::new(false),
            logs: Mutex::default(),
            generation: Default::default(),
            windows: Mutex::default(),
            starting_window: Mutex::default(),
        }
    }

    pub fn model(&self) -> AppModel {
        self.model.lock().clone()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().iter().cloned().collect()
    }

    pub fn api(&self) -> Result<Client> {
        Client::find(&self.paths)?.ok_or_else(|| {
            Error::new(
                ErrorCode::ServerUnavailable,
                "the server is not running: start it first",
            )
        })
    }
}

pub(crate) fn shared(app: &AppHandle) -> &Shared {
    &app.0.shared
}

/// Change the model, then refresh the tray and tell the window.
pub fn update(app: &AppHandle, f: impl FnOnce(&mut AppModel)) {
    let m = {
        let s = shared(app);
        let mut m = s.model.lock();
        f(&mut m);
        m.clone()
    };
    tray::update(&app.0.ui, &m);
    emit(app, "stigmer://model", &m);
}

/// Send `message` to every window connected; how many took it.
pub fn send_windows(app: &AppHandle, message: &ToWindow) -> usize {
    let bytes = wire::line(message);
    let s = shared(app);
    let mut windows = s.windows.lock();
    windows.retain(|w| w.send(bytes.clone()).is_ok());
    windows.len()
}

/// An event for the page of every window connected (none: nobody to tell).
pub fn emit(app: &AppHandle, event: &str, payload: &impl serde::Serialize) {
    if shared(app).windows.lock().is_empty() {
        return;
    }
    let payload = serde_json::to_value(payload).unwrap_or_default();
    send_windows(
        app,
        &ToWindow::Emit {
            event: event.to_string(),
            payload,
        },
    );
}

pub(crate) fn log_line(app: &AppHandle, line: String) {
    {
        let s = shared(app);
        let mut logs = s.logs.lock();
        logs.push_back(line.clone());
        while logs.len() > LOG_LINES {
            logs.pop_front();
        }
    }
    emit(app, "stigmer://log", &line);
}
