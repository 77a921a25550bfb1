//! Opening the window from the tray process: a window already connected comes to the front;
//! otherwise a window process is started (`stigmer-desktop`, next to this program), and it
//! ends when the window closes, taking WebKit's memory with it.

use std::time::{Duration, Instant};

use stigmer_protocol::desktop::{beside, ToWindow, VIEW_ARG, WINDOW_BIN};

use crate::state::{send_windows, shared, AppHandle};

/// A window process that has not connected within this long is taken for gone.
const START_LIMIT: Duration = Duration::from_secs(15);

/// Show the window, on `view` if one is named.
pub fn open(app: &AppHandle, view: Option<&str>) {
    let view = view.map(str::to_string);
    if send_windows(app, &ToWindow::Show { view: view.clone() }) > 0 {
        return;
    }
    let s = shared(app);
    let mut starting = s.starting_window.lock();
    if let Some((since, wanted)) = starting.as_mut() {
        if since.elapsed() < START_LIMIT {
            // Starting: it is told the view when it connects.
            if view.is_some() {
                *wanted = view;
            }
            return;
        }
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => beside(&exe, WINDOW_BIN),
        Err(e) => return tracing::error!("cannot open the window: {e}"),
    };
    let mut command = std::process::Command::new(exe);
    if let Some(v) = &view {
        command.args([VIEW_ARG, v]);
    }
    command.stdin(std::process::Stdio::null());
    match command.spawn() {
        Ok(mut child) => {
            *starting = Some((Instant::now(), None));
            // Reaped when it ends (closed, or quit with the app).
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::error!("cannot open the window: {e}"),
    }
}

/// A window connected: the view asked for while it started, if any.
pub fn connected(app: &AppHandle) -> Option<String> {
    shared(app)
        .starting_window
        .lock()
        .take()
        .and_then(|(_, v)| v)
}
