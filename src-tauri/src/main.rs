//! Stigmer's desktop app: a window and a tray around the stigmer server, for people who never
//! open a terminal. A thin shell: the engine and the server do the work; this starts and
//! watches the server, shows its state, and lets the user choose where commands run.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod actions;
mod approvals;
mod cli_install;
mod commands;
mod menu;
mod model;
mod notify;
mod prefs;
mod state;
mod tray;
mod updates;
mod watch;
mod window;

use stigmer_protocol::local::Paths;
use tauri::{Manager, RunEvent, WindowEvent};

/// Variables the app set in its own environment for itself: the server it starts (and so the
/// commands it runs) must not inherit them.
pub static OWN_ENV_VARS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();

fn main() {
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
    let paths = match Paths::resolve() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stigmer: {}", e.message);
            std::process::exit(1);
        }
    };
    let app = tauri::Builder::default()
        // A second launch focuses the first window instead of starting another app.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            window::show_window(app)
        }))
        .plugin(tauri_plugin_shell::init())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_updater::Builder::new().build())
        .manage(updates::Pending::default())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .manage(state::Shared::new(paths))
        .manage(notify::Notifications::default())
        .invoke_handler(tauri::generate_handler![
            commands::get_model,
            commands::agent_config,
            commands::list_agents,
            commands::connect_agent,
            commands::start_server,
            commands::stop_server,
            commands::set_mode,
            commands::get_status,
            commands::get_sandbox,
            commands::get_tools,
            commands::cancel_download,
            commands::get_runs,
            commands::get_run_output,
            commands::get_clients,
            commands::get_images,
            commands::remove_image,
            commands::remake_image,
            commands::get_local_images,
            commands::build_image,
            commands::pick_dockerfile,
            commands::set_client,
            commands::answer_approval,
            commands::cancel_run,
            commands::get_workspaces,
            commands::add_workspace,
            commands::remove_workspace,
            commands::get_network,
            commands::set_network,
            commands::allow_host,
            commands::disallow_host,
            commands::pick_folder,
            commands::run_command,
            commands::get_logs,
            commands::get_prefs,
            commands::set_prefs,
            commands::refresh_status,
            commands::check_image,
            commands::open_help,
            commands::page_ready,
            commands::check_update,
            commands::install_update,
            commands::take_pending_view,
            commands::cli_status,
            commands::install_cli,
        ])
        .setup(|app| {
            let handle = app.handle().clone();
            // Logout or `kill`: quit like the tray's Quit, stopping a server we started.
            #[cfg(unix)]
            {
                let handle = handle.clone();
                tauri::async_runtime::spawn(async move {
                    use tokio::signal::unix::{signal, SignalKind};
                    let (Ok(mut term), Ok(mut int)) = (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::interrupt()),
                    ) else {
                        return;
                    };
                    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                    actions::quit(&handle).await;
                });
            }
            let shared = app.state::<state::Shared>();
            let version = handle.package_info().version.to_string();
            shared.model.lock().update.current = version;
            tray::install(&handle, &shared.model(), actions::tray_clicked)?;
            updates::watch(handle.clone());
            if shared.prefs.lock().start_server_on_launch {
                tauri::async_runtime::spawn(async move {
                    if let Err(e) = actions::start(&handle).await {
                        tracing::warn!("server not started: {}", e.message);
                    }
                });
            }
            Ok(())
        })
        .on_window_event(|window, event| {
            if let WindowEvent::CloseRequested { api, .. } = event {
                let close_to_tray = window.state::<state::Shared>().prefs.lock().close_to_tray;
                if close_to_tray {
                    api.prevent_close();
                    window::close_to_tray(window);
                }
            }
        })
        .build(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("stigmer: the desktop app cannot start: {e}");
            std::process::exit(1);
        });
    app.run(|handle, event| {
        if let RunEvent::ExitRequested { api, code, .. } = event {
            // The last window went: to the tray (the app goes on), or closed with close-to-tray
            // off, which quits (stopping a server we started).
            if code.is_none() {
                api.prevent_exit();
                if !window::in_tray(handle) {
                    let handle = handle.clone();
                    tauri::async_runtime::spawn(async move { actions::quit(&handle).await });
                }
            }
        }
    });
}
