//! Stigmer's desktop app, the window: a page around the stigmer server for people who never
//! open a terminal. A thin shell: the engine and the server do the work.
//!
//! The app is two processes. The tray process (`stigmer-tray`, no web view) stays while the app
//! runs: tray, notifications, approvals, update checks, and the server it starts and watches.
//! This program is the window: started on launch or on the tray's Open, it connects to the
//! tray process (starting it when none runs) and ends when the window closes, so that the
//! memory of its web view goes with it. They talk over [`stigmer_protocol::desktop`].

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod cli_install;
mod commands;
mod link;
mod page;
mod updates;
mod window;

use stigmer_protocol::desktop::{TRAY_ARG, VIEW_ARG};
use stigmer_protocol::local::Paths;

/// Variables the window set in its own environment for itself: the tray process it starts
/// (and so the server and the commands) must not inherit them.
pub static OWN_ENV_VARS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut own = Vec::new();
    // A status page needs no GPU compositing; without it WebKitGTK uses ~80 MB less, and avoids
    // blank windows on some drivers. Set WEBKIT_DISABLE_COMPOSITING_MODE=0 to keep it.
    #[cfg(target_os = "linux")]
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none() {
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
        own.push("WEBKIT_DISABLE_COMPOSITING_MODE");
    }
    let _ = OWN_ENV_VARS.set(own);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STIGMER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // The login entry: the tray only, no window.
    if args.iter().any(|a| a == TRAY_ARG) {
        // It goes on alone: this process ends now.
        if let Err(e) = link::start_tray() {
            eprintln!("stigmer: the tray app cannot start: {e}");
            std::process::exit(1);
        }
        return;
    }
    let paths = match Paths::resolve() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stigmer: {}", e.message);
            std::process::exit(1);
        }
    };
    let view = args
        .iter()
        .position(|a| a == VIEW_ARG)
        .and_then(|i| args.get(i + 1).cloned());
    window::run(paths, view);
}
