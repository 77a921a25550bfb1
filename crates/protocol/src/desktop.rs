//! The desktop app's own contract: what its window process (`stigmer-desktop`, Tauri) and its
//! tray process (`stigmer-tray`, no web view) say to each other, one JSON value per line over
//! a local socket in Stigmer's private data folder, and the preferences they share. The tray
//! process is the app that stays: tray, notifications, approvals, update checks and the server
//! it supervises. The window is a process of its own, started on Open and ended on close, so
//! that no web view (and none of WebKit's memory) stays behind in the tray.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clients::Decision;
use crate::local::{write_atomic, Paths};
use crate::mode::Tier;
use crate::network::NetworkPolicy;
use crate::Error;

/// The tray process's program, next to the window's.
pub const TRAY_BIN: &str = "stigmer-tray";
/// The window's program.
pub const WINDOW_BIN: &str = "stigmer-desktop";
/// What an older version's login entry passes to the window's program: start the tray.
pub const TRAY_ARG: &str = "--tray";
/// The argument that makes a new window open on a view (`settings`, `custom-image`).
pub const VIEW_ARG: &str = "--view";
/// The tray process opens the window when it is ready (the new version after an update).
pub const OPEN_ARG: &str = "--open";

/// A program of the app's next to `exe` (with `.exe` on Windows).
pub fn beside(exe: &std::path::Path, name: &str) -> PathBuf {
    exe.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Where the tray process listens: a Unix socket in the data folder (the user's alone,
/// 0700); on Windows a named pipe of that name.
pub fn socket(paths: &Paths) -> PathBuf {
    paths.data_dir.join("desktop.sock")
}

/// Held by the running tray process: one per user.
pub fn lock_file(paths: &Paths) -> PathBuf {
    paths.data_dir.join("desktop.lock")
}

/// What the window asks the tray process to do: what changes the app's state or needs what
/// only it has (the server it started, its log, the updater). The rest the window asks the
/// server directly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    GetModel,
    StartServer,
    StopServer,
    SetMode {
        tier: Tier,
        image: Option<String>,
    },
    SetNetwork {
        policy: NetworkPolicy,
    },
    AnswerApproval {
        id: String,
        decision: Decision,
    },
    GetLogs,
    GetPrefs,
    SetPrefs {
        prefs: Prefs,
    },
    RefreshStatus,
    CheckUpdate,
    /// How the window's install of an update goes (the tray and every window show it).
    UpdateProgress {
        update: UpdateState,
    },
    /// The update is installed: stop a server the app started, and start the new version
    /// (its window open).
    Relaunch,
    /// Quit the app (the window closed with close-to-tray off, or was told to end).
    Quit,
}

/// A call, numbered so its reply finds it (`seq`: calls have fields named `id`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub seq: u64,
    #[serde(flatten)]
    pub call: Call,
}

/// What the tray process sends a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToWindow {
    Reply {
        seq: u64,
        #[serde(default)]
        ok: Option<Value>,
        #[serde(default)]
        err: Option<Error>,
    },
    /// An event for the page (`stigmer://model`, `stigmer://log`, ...), passed on as it is.
    Emit { event: String, payload: Value },
    /// Come to the front, on `view` if one is named.
    Show { view: Option<String> },
    /// The app quits (or restarts for an update): the window ends too.
    Exit,
}

/// One message as one line.
pub fn line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).expect("wire messages serialize");
    bytes.push(b'\n');
    bytes
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    /// Start the server when the app starts.
    pub start_server_on_launch: bool,
    /// Start the app at login. Off unless the user turns it on.
    pub start_at_login: bool,
    /// Closing the window hides it to the tray; Quit is in the tray menu.
    pub close_to_tray: bool,
    /// The last custom image chosen, offered by the tray's "Custom image" item.
    pub last_custom_image: Option<String>,
    /// Look for updates at start and daily (never installed without asking).
    pub check_updates: bool,
    /// The first-run page was seen.
    pub welcomed: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            start_server_on_launch: true,
            start_at_login: false,
            close_to_tray: true,
            last_custom_image: None,
            check_updates: true,
            welcomed: false,
        }
    }
}

fn prefs_file(paths: &Paths) -> std::path::PathBuf {
    paths.config_dir.join("desktop.json")
}

pub fn load_prefs(paths: &Paths) -> Prefs {
    std::fs::read(prefs_file(paths))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save_prefs(paths: &Paths, prefs: &Prefs) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(prefs).unwrap_or_default();
    write_atomic(&prefs_file(paths), &json, false)
}

/// Where an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpdatePhase {
    #[default]
    Idle,
    Checking,
    UpToDate,
    Available,
    Downloading,
    Installing,
    Failed,
}

/// What the window and the tray show of updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UpdateState {
    pub state: UpdatePhase,
    /// This app's version.
    pub current: String,
    /// The version available, once one is.
    pub version: Option<String>,
    pub notes: Option<String>,
    pub done: u64,
    pub total: u64,
    /// What went wrong, in plain words.
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn back<T: serde::de::DeserializeOwned>(v: &impl Serialize) -> T {
        serde_json::from_slice(&line(v)).unwrap()
    }

    #[test]
    fn every_call_and_a_reply_read_back_as_sent() {
        let calls = [
            Call::SetMode {
                tier: Tier::Custom,
                image: Some("x:1".into()),
            },
            Call::AnswerApproval {
                id: "a1".into(),
                decision: Decision::AllowOnce,
            },
            Call::SetNetwork {
                policy: NetworkPolicy::Allowlist,
            },
            Call::SetPrefs {
                prefs: Prefs::default(),
            },
            Call::UpdateProgress {
                update: UpdateState::default(),
            },
            Call::GetModel,
            Call::Quit,
        ];
        for call in calls {
            let sent = format!("{call:?}");
            let r: Request = back(&Request { seq: 7, call });
            assert_eq!(r.seq, 7);
            assert_eq!(format!("{:?}", r.call), sent);
        }
        let e = ToWindow::Reply {
            seq: 7,
            ok: None,
            err: Some(Error::new(crate::ErrorCode::InvalidSetting, "no")),
        };
        let r: ToWindow = back(&e);
        assert!(matches!(r, ToWindow::Reply { seq: 7, err: Some(ref e), .. } if e.message == "no"));
    }
}
