//! Installing an update, the window's part: the tray process looks for updates and shows
//! them; when the person says Install, this window downloads it with progress, checks its
//! signature against the key built into the app, installs it, and asks the tray process to
//! start the new version. A bad signature, a download cut short or an unreachable endpoint
//! says so in plain words and leaves the installed version as it is.

use std::time::Duration;

use stigmer_protocol::desktop::{Call, UpdatePhase, UpdateState};
use stigmer_protocol::{Error, ErrorCode, Result};
use tauri::{AppHandle, Manager};
use tauri_plugin_updater::UpdaterExt;

use crate::link::Link;

/// Another endpoint than the one built in (a company mirror; the tests' server on 127.0.0.1).
pub const ENDPOINT_ENV: &str = "STIGMER_UPDATE_ENDPOINT";

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

/// Tell the tray process (and so every window and the tray) how the install goes.
async fn report(app: &AppHandle, update: UpdateState) {
    let link = app.state::<Link>();
    let _ = link
        .call::<serde_json::Value>(Call::UpdateProgress { update })
        .await;
}

fn phase(state: UpdatePhase) -> UpdateState {
    UpdateState {
        state,
        ..UpdateState::default()
    }
}

/// Download, verify and install the newest version, then have the tray process restart as
/// it. Nothing changes when any step fails.
pub async fn install(app: &AppHandle) -> Result<()> {
    let result = download_and_install(app).await;
    if let Err(message) = &result {
        report(
            app,
            UpdateState {
                message: Some(message.clone()),
                ..phase(UpdatePhase::Failed)
            },
        )
        .await;
    }
    let version = result.map_err(|m| Error::new(ErrorCode::Internal, m))?;
    tracing::info!(version = %version, "update installed; restarting");
    app.state::<Link>()
        .call::<serde_json::Value>(Call::Relaunch)
        .await
        .map(|_| ())
}

async fn download_and_install(app: &AppHandle) -> std::result::Result<String, String> {
    report(app, phase(UpdatePhase::Downloading)).await;
    let update = updater(app)
        .map_err(|e| format!("updates are not set up: {e}"))?
        .check()
        .await
        .map_err(|e| {
            tracing::warn!("update check failed: {e}");
            plain(&e)
        })?
        .ok_or("There is no newer version to install.")?;
    let (version, notes) = (update.version.clone(), update.body.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    let reporter = {
        let (app, version, notes) = (app.clone(), version.clone(), notes.clone());
        tauri::async_runtime::spawn(async move {
            while let Some((done, total)) = rx.recv().await {
                let state = UpdateState {
                    version: Some(version.clone()),
                    notes: notes.clone(),
                    done,
                    total,
                    ..phase(UpdatePhase::Downloading)
                };
                report(&app, state).await;
            }
        })
    };
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
                    let _ = tx.send((done, total));
                }
            },
            || {},
        )
        .await;
    let _ = reporter.await;
    let bytes = bytes.map_err(|e| {
        tracing::warn!("update download failed: {e}");
        plain(&e)
    })?;
    report(
        app,
        UpdateState {
            version: Some(version.clone()),
            notes,
            ..phase(UpdatePhase::Installing)
        },
    )
    .await;
    update.install(bytes).map_err(|e| {
        tracing::warn!("update not installed: {e}");
        plain(&e)
    })?;
    Ok(version)
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
