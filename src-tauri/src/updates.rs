//! Updates: checked when the app starts and then daily (a setting, on by default), shown in the
//! window and the tray, and installed only when the person says so: downloaded with progress,
//! its signature checked against the key built into the app, installed, and the app restarted.
//! A bad signature, a download cut short or an unreachable endpoint says so in plain words and
//! leaves the installed version as it is.

use parking_lot::Mutex;
use std::time::Duration;

use stigmer_protocol::{Error, ErrorCode, Result};
use tauri::{AppHandle, Manager};
use tauri_plugin_updater::UpdaterExt;

use crate::actions;
use crate::model::{UpdatePhase, UpdateState};
use crate::state;

/// Another endpoint than the one built in (a company mirror; the tests' server on 127.0.0.1).
pub const ENDPOINT_ENV: &str = "STIGMER_UPDATE_ENDPOINT";
/// How often the app looks again while it runs.
const EVERY: Duration = Duration::from_secs(24 * 3600);

/// The update found by the last check, until it is installed.
#[derive(Default)]
pub struct Pending(Mutex<Option<tauri_plugin_updater::Update>>);

fn set(app: &AppHandle, f: impl FnOnce(&mut UpdateState)) {
    state::update(app, |m| f(&mut m.update));
}

fn updater(app: &AppHandle) -> std::result::Result<tauri_plugin_updater::Updater, String> {
    let mut builder = app.updater_builder().timeout(Duration::from_secs(60));
    if let Some(url) = std::env::var(ENDPOINT_ENV).ok().filter(|u| !u.is_empty()) {
        let url = url
            .parse()
            .map_err(|e| format!("{ENDPOINT_ENV}={url} is not a URL ({e})"))?;
        builder = builder.endpoints(vec![url]).map_err(|e| e.to_string())?;
    }
    builder.build().map_err(|e| e.to_string())
}

/// Look for a newer version; the window and the tray show what was found.
pub async fn check(app: &AppHandle) -> Result<()> {
    set(app, |u| {
        u.state = UpdatePhase::Checking;
        u.message = None;
    });
    let found = match updater(app) {
        Ok(up) => up.check().await.map_err(|e| {
            tracing::warn!("update check failed: {e}");
            plain(&e)
        }),
        Err(e) => Err(format!("updates are not set up: {e}")),
    };
    match found {
        Ok(Some(update)) => {
            tracing::info!(version = %update.version, "an update is available");
            let (version, notes) = (update.version.clone(), update.body.clone());
            *app.state::<Pending>().0.lock() = Some(update);
            set(app, |u| {
                u.state = UpdatePhase::Available;
                u.version = Some(version);
                u.notes = notes.filter(|n| !n.trim().is_empty());
            });
        }
        Ok(None) => set(app, |u| u.state = UpdatePhase::UpToDate),
        Err(message) => {
            set(app, |u| {
                u.state = UpdatePhase::Failed;
                u.message = Some(message);
            });
        }
    }
    Ok(())
}

/// Download, verify and install the update found, then restart as the new version. Nothing
/// changes when any step fails.
pub async fn install(app: &AppHandle) -> Result<()> {
    let update = app.state::<Pending>().0.lock().clone().ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidRequest,
            "no update to install: check for updates first",
        )
    })?;
    set(app, |u| {
        u.state = UpdatePhase::Downloading;
        (u.done, u.total) = (0, 0);
    });
    let progress = app.clone();
    let mut done = 0u64;
    let mut last_shown = 0u64;
    let bytes = update
        .download(
            move |chunk, total| {
                done += chunk as u64;
                // At most a hundred steps: the window, not every chunk.
                let total = total.unwrap_or(0);
                if total == 0 || done - last_shown >= total / 100 || done == total {
                    last_shown = done;
                    set(&progress, |u| (u.done, u.total) = (done, total));
                }
            },
            || {},
        )
        .await;
    let result = match bytes {
        Ok(bytes) => {
            set(app, |u| u.state = UpdatePhase::Installing);
            update.install(bytes).map_err(|e| {
                tracing::warn!("update not installed: {e}");
                plain(&e)
            })
        }
        Err(e) => {
            tracing::warn!("update download failed: {e}");
            Err(plain(&e))
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(version = %update.version, "update installed; restarting");
            // Stop a server we started, then come back as the new version.
            actions::stop_owned(app).await;
            app.restart();
        }
        Err(message) => {
            set(app, |u| {
                u.state = UpdatePhase::Failed;
                u.message = Some(message.clone());
            });
            Err(Error::new(ErrorCode::Internal, message))
        }
    }
}

/// An updater error in words a person can act on; the installed version is always untouched.
fn plain(e: &tauri_plugin_updater::Error) -> String {
    use tauri_plugin_updater::Error as E;
    match e {
        E::Minisign(_) | E::SignatureUtf8(_) | E::Base64(_) => {
            "The downloaded update does not match Stigmer's signature (it was changed or cut off on the way), so nothing was installed. Your version keeps working.".into()
        }
        E::Reqwest(r) if r.is_decode() || r.is_body() => {
            "The download of the update was cut off; nothing was installed. Try again later.".into()
        }
        E::Reqwest(_) | E::Network(_) | E::ReleaseNotFound | E::Io(_) => {
            "Stigmer could not reach its update server; it will look again later. Nothing changed.".into()
        }
        E::AuthenticationFailed => {
            "Installing the update needs your password, and it was not given. Nothing changed.".into()
        }
        E::PackageInstallFailed | E::DebInstallFailed | E::InvalidUpdaterFormat => {
            "The update could not be installed; your version keeps working.".into()
        }
        _ => "The update did not work; nothing changed. The server log has the details.".into(),
    }
}

/// At start and then daily, while the setting is on.
pub fn watch(app: AppHandle) {
    tauri::async_runtime::spawn(async move {
        loop {
            let on = app.state::<state::Shared>().prefs.lock().check_updates;
            let idle = !matches!(
                app.state::<state::Shared>().model().update.state,
                UpdatePhase::Downloading | UpdatePhase::Installing
            );
            if on && idle {
                let _ = check(&app).await;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
