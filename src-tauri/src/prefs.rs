//! The app's own preferences, saved as JSON next to stigmer's config file.

use serde::{Deserialize, Serialize};
use stigmer_protocol::local::{write_atomic, Paths};

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

fn file(paths: &Paths) -> std::path::PathBuf {
    paths.config_dir.join("desktop.json")
}

pub fn load(paths: &Paths) -> Prefs {
    std::fs::read(file(paths))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save(paths: &Paths, prefs: &Prefs) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(prefs).unwrap_or_default();
    write_atomic(&file(paths), &json, false)
}
