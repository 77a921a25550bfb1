//! Updates, the tray's part: looked for when the app starts and then daily (a setting, on by
//! default), shown in the window and the tray. Installing is the window's (its updater checks
//! the download against the key built into the app, and nothing is installed without the
//! person asking); the tray shows how it goes and starts the new version after.

use std::time::Duration;

use serde::Deserialize;
use stigmer_protocol::desktop::{beside, ToWindow, UpdatePhase, UpdateState, OPEN_ARG, TRAY_BIN};
use stigmer_protocol::Result;

use crate::actions;
use crate::state::{self, AppHandle};

/// Another endpoint than the one built in (a company mirror; the tests' server on 127.0.0.1).
pub const ENDPOINT_ENV: &str = "STIGMER_UPDATE_ENDPOINT";
/// How often the app looks again while it runs.
const EVERY: Duration = Duration::from_secs(24 * 3600);
/// The endpoint built in: the window's updater reads the same file.
const CONFIG: &str = include_str!("../../../src-tauri/tauri.conf.json");

const UNREACHABLE: &str =
    "Stigmer could not reach its update server; it will look again later. Nothing changed.";

fn set(app: &AppHandle, f: impl FnOnce(&mut UpdateState)) {
    state::update(app, |m| f(&mut m.update));
}

fn endpoint() -> std::result::Result<String, String> {
    if let Some(url) = std::env::var(ENDPOINT_ENV).ok().filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    let config: serde_json::Value = serde_json::from_str(CONFIG).map_err(|e| e.to_string())?;
    config["plugins"]["updater"]["endpoints"][0]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "no update endpoint is built in".into())
}

/// What the endpoint says of the newest release (the rest is the window's updater's).
#[derive(Deserialize)]
struct Release {
    version: String,
    #[serde(default)]
    notes: Option<String>,
}

/// A newer version than `current`, with its notes; None when this one is the newest.
async fn newest(current: &str) -> std::result::Result<Option<(String, Option<String>)>, String> {
    let url = endpoint().map_err(|e| format!("updates are not set up: {e}"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("updates are not set up: {e}"))?;
    let response = client.get(&url).send().await.map_err(|e| {
        tracing::warn!("update check failed: {e}");
        UNREACHABLE.to_string()
    })?;
    // The updater protocol's "nothing newer".
    if response.status() == reqwest::StatusCode::NO_CONTENT {
        return Ok(None);
    }
    if !response.status().is_success() {
        tracing::warn!("update check failed: {}", response.status());
        return Err(UNREACHABLE.into());
    }
    let release: Release = response.json().await.map_err(|e| {
        tracing::warn!("update check failed: {e}");
        "The update server's answer could not be read; Stigmer will look again later. Nothing changed.".to_string()
    })?;
    let parse = |v: &str| semver::Version::parse(v.trim_start_matches('v'));
    match (parse(&release.version), parse(current)) {
        (Ok(new), Ok(cur)) if new > cur => Ok(Some((release.version, release.notes))),
        (Ok(_), Ok(_)) => Ok(None),
        _ => Err(format!(
            "The update server names a version Stigmer cannot read ({}); nothing changed.",
            release.version
        )),
    }
}

/// Look for a newer version; the window and the tray show what was found.
pub async fn check(app: &AppHandle) -> Result<()> {
    set(app, |u| {
        u.state = UpdatePhase::Checking;
        u.message = None;
    });
    match newest(app.version()).await {
        Ok(Some((version, notes))) => {
            tracing::info!(version = %version, "an update is available");
            set(app, |u| {
                u.state = UpdatePhase::Available;
                u.version = Some(version);
                u.notes = notes.filter(|n| !n.trim().is_empty());
            });
        }
        Ok(None) => set(app, |u| u.state = UpdatePhase::UpToDate),
        Err(message) => set(app, |u| {
            u.state = UpdatePhase::Failed;
            u.message = Some(message);
        }),
    }
    Ok(())
}

/// How the window's install goes (this app's version stays this app's).
pub fn progress(app: &AppHandle, update: UpdateState) {
    set(app, |u| {
        let current = std::mem::take(&mut u.current);
        *u = UpdateState { current, ..update };
    });
}

/// The update is installed: stop a server we started, end the windows, and start the new
/// version's tray process, which opens the window once this one has gone (it waits for the
/// lock this one holds).
pub async fn relaunch(app: &AppHandle) {
    tracing::info!("update installed; restarting");
    actions::stop_owned(app).await;
    state::send_windows(app, &ToWindow::Exit);
    let started = std::env::current_exe().and_then(|exe| {
        let mut command = std::process::Command::new(beside(&exe, TRAY_BIN));
        command.arg(OPEN_ARG).stdin(std::process::Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.spawn().map(|_| ())
    });
    if let Err(e) = started {
        tracing::error!("the new version did not start: {e}; start Stigmer again");
    }
    app.exit(0);
}

/// At start and then daily, while the setting is on.
pub fn watch(app: AppHandle) {
    tokio::spawn(async move {
        loop {
            let on = state::shared(&app).prefs.lock().check_updates;
            let idle = !matches!(
                state::shared(&app).model().update.state,
                UpdatePhase::Downloading | UpdatePhase::Installing
            );
            if on && idle {
                let _ = check(&app).await;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
