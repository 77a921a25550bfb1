//! The window's life: made hidden and shown once its page has drawn (never blank), destroyed
//! when closed to the tray (no web view is kept alive there), made again when opened.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tauri::{AppHandle, Emitter, Manager};

use crate::state::shared;

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
    *shared(app).pending_view.lock() = Some(view.to_string());
    let existed = app.get_webview_window(MAIN_WINDOW).is_some();
    show_window(app);
    if existed {
        let _ = app.emit("stigmer://show-view", view);
    }
}

pub fn take_pending_view(app: &AppHandle) -> Option<String> {
    shared(app).pending_view.lock().take()
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
