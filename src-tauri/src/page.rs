//! The window's page, at ground level: the window is made hidden and shown once its page has
//! drawn (never blank), and it opens on a view when asked (`settings`, `custom-image`).

use parking_lot::Mutex;
use tauri::{AppHandle, Emitter, Manager};

/// The window's label (tauri.conf.json).
pub const MAIN_WINDOW: &str = "main";

/// What the window shows first, if not the usual.
pub struct PendingView(Mutex<Option<String>>);

impl PendingView {
    pub fn new(view: Option<String>) -> PendingView {
        PendingView(Mutex::new(view))
    }
}

/// Bring the window to the front, on `view` if one is named.
pub fn show(app: &AppHandle, view: Option<&str>) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
    if let Some(view) = view {
        *app.state::<PendingView>().0.lock() = Some(view.to_string());
        let _ = app.emit("stigmer://show-view", view);
    }
}

/// The view to open on, once (the page asks when it loads).
pub fn take_pending_view(app: &AppHandle) -> Option<String> {
    app.state::<PendingView>().0.lock().take()
}

/// The page has drawn: show its window (it is made hidden, so nobody sees a blank one).
pub fn page_ready(app: &AppHandle) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        if !w.is_visible().unwrap_or(false) {
            let _ = w.show();
            let _ = w.set_focus();
        }
    }
}
