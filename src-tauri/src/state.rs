//! The app's state, at ground level: what every other module reads and changes (the model the
//! window and the tray show, the preferences, the server process, the log), and the one way a
//! change reaches the tray and the window ([`update`]). It uses only the model, the
//! preferences and the tray, never the modules that act.

use parking_lot::Mutex;
use std::sync::atomic::AtomicBool;

use stigmer_client::Client;
use stigmer_protocol::local::Paths;
use stigmer_protocol::{Error, ErrorCode, Result};
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_shell::process::CommandChild;

use crate::model::AppModel;
use crate::prefs::{self, Prefs};
use crate::tray;

/// How many server log lines the window can show.
const LOG_LINES: usize = 500;

pub struct Shared {
    pub paths: Paths,
    pub model: Mutex<AppModel>,
    pub prefs: Mutex<Prefs>,
    pub(crate) child: Mutex<Option<CommandChild>>,
    pub(crate) stopping: AtomicBool,
    logs: Mutex<std::collections::VecDeque<String>>,
    /// Bumped at each start: watchers of an older server stop.
    pub(crate) generation: std::sync::atomic::AtomicU64,
    /// The window was closed to the tray (destroyed): the app goes on without one.
    pub(crate) in_tray: AtomicBool,
    /// What a window opened from the tray shows first (`settings`, `custom-image`).
    pub(crate) pending_view: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(paths: Paths) -> Shared {
        Shared {
            prefs: Mutex::new(prefs::load(&paths)),
            paths,
            model: Mutex::default(),
            child: Mutex::new(None),
            stopping: AtomicBool::new(false),
            logs: Mutex::default(),
            generation: Default::default(),
            in_tray: AtomicBool::new(false),
            pending_view: Mutex::default(),
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

pub(crate) fn shared(app: &AppHandle) -> tauri::State<'_, Shared> {
    app.state::<Shared>()
}

/// Change the model, then refresh the tray and tell the window.
pub fn update(app: &AppHandle, f: impl FnOnce(&mut AppModel)) {
    let m = {
        let s = shared(app);
        let mut m = s.model.lock();
        f(&mut m);
        m.clone()
    };
    tray::update(app, &m);
    let _ = app.emit("stigmer://model", &m);
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
    let _ = app.emit("stigmer://log", line);
}

pub fn paths(app: &AppHandle) -> Paths {
    shared(app).paths.clone()
}
