//! The app's state, and what the tray shows for it. The tray menu is a pure function of the
//! state, so it is unit-tested without a desktop.

use serde::Serialize;
use stigmer_engine::settings::{Mode, Tier, BASIC_IMAGE};

/// The server as the app sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServerState {
    Stopped,
    Starting,
    Running {
        url: String,
        pid: u32,
        /// Started by this app (and so stopped when it quits), or attached to.
        owned: bool,
    },
    /// Stopped without being asked to.
    Crashed {
        reason: String,
    },
}

/// A sandbox image download or build in progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Download {
    pub image: String,
    pub action: String,
    pub phase: String,
    pub percent: Option<f64>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub rate_bytes_per_sec: u64,
}

/// Everything the window and the tray show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppModel {
    pub server: ServerState,
    pub mode: Mode,
    pub image: String,
    /// `connected`, `not_installed`, `not_running`, `permission_denied` or `unknown`.
    pub engine: String,
    pub engine_message: String,
    pub download: Option<Download>,
}

impl Default for AppModel {
    fn default() -> Self {
        AppModel {
            server: ServerState::Stopped,
            mode: Mode::Local,
            image: BASIC_IMAGE.to_string(),
            engine: "unknown".into(),
            engine_message: String::new(),
            download: None,
        }
    }
}

impl AppModel {
    pub fn tier(&self) -> Tier {
        Tier::of(self.mode, &self.image)
    }

    pub fn running(&self) -> bool {
        matches!(self.server, ServerState::Running { .. })
    }
}

/// Which tray icon to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayIcon {
    Stopped,
    Running,
    Downloading,
    Error,
}

pub fn tray_icon(m: &AppModel) -> TrayIcon {
    match (&m.server, &m.download) {
        (ServerState::Crashed { .. }, _) => TrayIcon::Error,
        (_, Some(_)) => TrayIcon::Downloading,
        (ServerState::Running { .. }, _) => TrayIcon::Running,
        _ => TrayIcon::Stopped,
    }
}

/// One item of the tray menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Text only, not clickable.
    Label {
        id: &'static str,
        text: String,
    },
    Action {
        id: &'static str,
        text: String,
        enabled: bool,
    },
    Check {
        id: &'static str,
        text: String,
        checked: bool,
        enabled: bool,
    },
    Separator,
}

/// Menu item ids, shared by the tray's event handler.
pub mod ids {
    pub const STATUS: &str = "status";
    pub const START: &str = "start";
    pub const STOP: &str = "stop";
    pub const MODE_LOCAL: &str = "mode-local";
    pub const MODE_BASIC: &str = "mode-basic";
    pub const MODE_CUSTOM: &str = "mode-custom";
    pub const OPEN: &str = "open";
    pub const QUIT: &str = "quit";
}

/// The tray menu for a state. Linux trays deliver no clicks on the icon, so every action is
/// an item here. The three modes are check items kept mutually exclusive (no radio items).
pub fn tray_menu(m: &AppModel) -> Vec<Item> {
    let status = match &m.server {
        ServerState::Stopped => "Server stopped".to_string(),
        ServerState::Starting => "Server starting…".to_string(),
        ServerState::Running { .. } => match &m.download {
            Some(d) => format!(
                "Downloading sandbox image{}",
                d.percent.map(|p| format!(" ({p:.0}%)")).unwrap_or_default()
            ),
            None => format!("Running · {}", mode_label(m.tier())),
        },
        ServerState::Crashed { .. } => "Server stopped unexpectedly".to_string(),
    };
    let running = m.running();
    let tier = m.tier();
    vec![
        Item::Label {
            id: ids::STATUS,
            text: status,
        },
        Item::Separator,
        Item::Action {
            id: ids::START,
            text: if matches!(m.server, ServerState::Crashed { .. }) {
                "Restart server"
            } else {
                "Start server"
            }
            .into(),
            enabled: !running && m.server != ServerState::Starting,
        },
        Item::Action {
            id: ids::STOP,
            text: "Stop server".into(),
            enabled: running,
        },
        Item::Separator,
        Item::Check {
            id: ids::MODE_LOCAL,
            text: mode_label(Tier::Local).into(),
            checked: tier == Tier::Local,
            enabled: running,
        },
        Item::Check {
            id: ids::MODE_BASIC,
            text: mode_label(Tier::Basic).into(),
            checked: tier == Tier::Basic,
            enabled: running,
        },
        Item::Check {
            id: ids::MODE_CUSTOM,
            text: if tier == Tier::Custom {
                format!("Custom image ({})", m.image)
            } else {
                "Custom image…".into()
            },
            checked: tier == Tier::Custom,
            enabled: running,
        },
        Item::Separator,
        Item::Action {
            id: ids::OPEN,
            text: "Open Stigmer".into(),
            enabled: true,
        },
        Item::Action {
            id: ids::QUIT,
            text: "Quit".into(),
            enabled: true,
        },
    ]
}

pub fn mode_label(t: Tier) -> &'static str {
    match t {
        Tier::Local => "Local",
        Tier::Basic => "Basic sandbox",
        Tier::Custom => "Custom image",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(mode: Mode, image: &str) -> AppModel {
        AppModel {
            server: ServerState::Running {
                url: "http://127.0.0.1:1".into(),
                pid: 1,
                owned: true,
            },
            mode,
            image: image.into(),
            ..AppModel::default()
        }
    }

    fn checked(menu: &[Item]) -> Vec<&'static str> {
        menu.iter()
            .filter_map(|i| match i {
                Item::Check {
                    id, checked: true, ..
                } => Some(*id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn exactly_one_mode_is_checked() {
        assert_eq!(
            checked(&tray_menu(&running(Mode::Local, BASIC_IMAGE))),
            [ids::MODE_LOCAL]
        );
        assert_eq!(
            checked(&tray_menu(&running(Mode::Sandbox, BASIC_IMAGE))),
            [ids::MODE_BASIC]
        );
        let custom = tray_menu(&running(Mode::Sandbox, "my/img:1"));
        assert_eq!(checked(&custom), [ids::MODE_CUSTOM]);
        assert!(custom
            .iter()
            .any(|i| matches!(i, Item::Check { text, .. } if text.contains("my/img:1"))));
    }

    #[test]
    fn start_and_stop_follow_the_server() {
        let enabled = |m: &AppModel, want: &str| {
            tray_menu(m)
                .into_iter()
                .any(|i| matches!(i, Item::Action { id, enabled: true, .. } if id == want))
        };
        let stopped = AppModel::default();
        assert!(enabled(&stopped, ids::START) && !enabled(&stopped, ids::STOP));
        let run = running(Mode::Local, BASIC_IMAGE);
        assert!(!enabled(&run, ids::START) && enabled(&run, ids::STOP));
        // Modes need a server to apply to.
        assert!(tray_menu(&stopped)
            .iter()
            .all(|i| !matches!(i, Item::Check { enabled: true, .. })));
        let crashed = AppModel {
            server: ServerState::Crashed { reason: "x".into() },
            ..AppModel::default()
        };
        assert!(tray_menu(&crashed).iter().any(
            |i| matches!(i, Item::Action { text, enabled: true, .. } if text == "Restart server")
        ));
        assert_eq!(tray_icon(&crashed), TrayIcon::Error);
        // Every action is a menu item: Linux trays give no icon clicks.
        let all: Vec<_> = tray_menu(&run)
            .into_iter()
            .filter_map(|i| match i {
                Item::Action { id, .. } | Item::Check { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(
            all,
            [
                ids::START,
                ids::STOP,
                ids::MODE_LOCAL,
                ids::MODE_BASIC,
                ids::MODE_CUSTOM,
                ids::OPEN,
                ids::QUIT
            ]
        );
    }

    #[test]
    fn the_status_line_and_icon_say_what_happens() {
        let mut m = running(Mode::Sandbox, BASIC_IMAGE);
        assert!(
            matches!(&tray_menu(&m)[0], Item::Label { text, .. } if text == "Running · Basic sandbox")
        );
        assert_eq!(tray_icon(&m), TrayIcon::Running);
        m.download = Some(Download {
            image: BASIC_IMAGE.into(),
            action: "pull".into(),
            phase: "downloading".into(),
            percent: Some(41.6),
            bytes_done: 1,
            bytes_total: 2,
            rate_bytes_per_sec: 0,
        });
        assert!(
            matches!(&tray_menu(&m)[0], Item::Label { text, .. } if text == "Downloading sandbox image (42%)")
        );
        assert_eq!(tray_icon(&m), TrayIcon::Downloading);
        assert_eq!(tray_icon(&AppModel::default()), TrayIcon::Stopped);
    }
}
