//! The window process: the window and nothing else. It
//! connects to the tray process (starting it when none runs), shows the page made hidden once
//! the page has drawn (never blank), and ends when the window closes, so no web view stays in
//! the tray. Closed with close-to-tray off, it quits the whole app.

use stigmer_protocol::desktop::{load_prefs, Call, ToWindow, TRAY_ARG};
use stigmer_protocol::local::Paths;
use tauri::{AppHandle, Emitter, Manager, WindowEvent};

use crate::commands;
use crate::link::{self, Link};
use crate::page::{show, PendingView, MAIN_WINDOW};

pub fn run(paths: Paths, view: Option<String>) {
    let app = tauri::Builder::default()
        // A second launch focuses this window instead of opening another.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            show(app, None)
        }))
        .plugin(tauri_plugin_shell::init())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_updater::Builder::new().build())
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            // At login: the tray only.
            Some(vec![TRAY_ARG]),
        ))
        .manage(Link::new(paths))
        .manage(PendingView::new(view))
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
            commands::get_run_diff,
            commands::undo_run,
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
            build(&handle)?;
            tauri::async_runtime::spawn(follow_tray(handle.clone()));
            // `kill` or Ctrl-C: the app quits, as it did when it was one process.
            #[cfg(unix)]
            tauri::async_runtime::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                quit(&handle).await;
            });
            Ok(())
        })
        .on_window_event(|window, event| {
            if let WindowEvent::CloseRequested { api, .. } = event {
                let paths = window.state::<Link>().paths.clone();
                if !load_prefs(&paths).close_to_tray {
                    // Closing is quitting: the tray process stops a server it started.
                    api.prevent_close();
                    let app = window.app_handle().clone();
                    tauri::async_runtime::spawn(async move { quit(&app).await });
                }
            }
        })
        .build(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("stigmer: the window cannot open: {e}");
            std::process::exit(1);
        });
    // The window closed: this process ends; the tray process goes on.
    app.run(|_, _| {});
}

/// The window, made hidden: [`page_ready`] shows it once the page has drawn.
fn build(app: &AppHandle) -> tauri::Result<()> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN_WINDOW)
        .cloned()
        .expect("tauri.conf.json has the main window");
    tauri::WebviewWindowBuilder::from_config(app, &config)?.build()?;
    Ok(())
}

/// Quit the whole app, then end.
async fn quit(app: &AppHandle) {
    let link = app.state::<Link>();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        link.call::<serde_json::Value>(Call::Quit),
    )
    .await;
    app.exit(0);
}

/// Follow the tray process until it goes (Quit, an update's restart), then end with it.
async fn follow_tray(app: AppHandle) {
    let link = app.state::<Link>();
    let stream = match link::connect(&link.paths).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("Stigmer's tray app did not start: {e}");
            let _ = app.emit(
                "stigmer://error",
                stigmer_protocol::Error::new(
                    stigmer_protocol::ErrorCode::ServerUnavailable,
                    format!("Stigmer's tray app did not start ({e}): start Stigmer again"),
                ),
            );
            return;
        }
    };
    let on = |message: ToWindow| match message {
        ToWindow::Emit { event, payload } => {
            let _ = app.emit(&event, payload);
        }
        ToWindow::Show { view } => show(&app, view.as_deref()),
        ToWindow::Exit => app.exit(0),
        ToWindow::Reply { .. } => {}
    };
    link::follow(&link, stream, on).await;
    app.exit(0);
}
