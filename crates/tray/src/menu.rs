//! What the tray shows for the app's state: the icon, the status line and the menu, pure
//! functions of [`AppModel`], so they are unit-tested without a desktop.

use crate::model::{status_line, waiting_line, AppModel, ServerState};
use stigmer_protocol::mode::Tier;
use stigmer_protocol::network::NetworkPolicy;

/// Which tray icon to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayIcon {
    Stopped,
    Running,
    Downloading,
    /// A command waits for the user's approval.
    Waiting,
    Error,
}

pub fn tray_icon(m: &AppModel) -> TrayIcon {
    match (&m.server, &m.download) {
        (ServerState::Crashed { .. }, _) => TrayIcon::Error,
        (ServerState::Running { .. }, _) if !m.waiting.is_empty() => TrayIcon::Waiting,
        (_, Some(_)) => TrayIcon::Downloading,
        _ if m.sandbox_problem().is_some() => TrayIcon::Error,
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
    pub const STOP_RUNS: &str = "stop-runs";
    pub const APPROVALS: &str = "approvals";
    pub const MODE_LOCAL: &str = "mode-local";
    pub const MODE_PROTECTED: &str = "mode-protected";
    pub const MODE_BASIC: &str = "mode-basic";
    pub const MODE_CUSTOM: &str = "mode-custom";
    pub const NET_OPEN: &str = "net-open";
    pub const NET_NONE: &str = "net-none";
    pub const NET_ALLOWLIST: &str = "net-allowlist";
    pub const OPEN: &str = "open";
    pub const UPDATE: &str = "update";
    pub const QUIT: &str = "quit";
}

/// The tray menu for a state. Linux trays deliver no clicks on the icon, so every action is
/// an item here. The tiers are check items kept mutually exclusive (no radio items).
pub fn tray_menu(m: &AppModel) -> Vec<Item> {
    let status = status_line(m);
    let running = m.running();
    let tier = m.tier();
    let mut items = vec![
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
            text: Tier::Local.label().into(),
            checked: tier == Tier::Local,
            enabled: running,
        },
        Item::Check {
            id: ids::MODE_PROTECTED,
            text: Tier::Protected.label().into(),
            checked: tier == Tier::Protected,
            enabled: running,
        },
        Item::Check {
            id: ids::MODE_BASIC,
            text: Tier::Basic.label().into(),
            checked: tier == Tier::Basic,
            enabled: running,
        },
        Item::Check {
            id: ids::MODE_CUSTOM,
            text: if tier == Tier::Custom {
                format!("{} ({})", Tier::Custom.label(), m.image)
            } else {
                format!("{}…", Tier::Custom.label())
            },
            checked: tier == Tier::Custom,
            enabled: running,
        },
        Item::Separator,
    ];
    // What commands may reach: only shown where it matters, in a confined tier.
    if tier != Tier::Local {
        for (id, policy) in [
            (ids::NET_OPEN, NetworkPolicy::Open),
            (ids::NET_NONE, NetworkPolicy::None),
            (ids::NET_ALLOWLIST, NetworkPolicy::Allowlist),
        ] {
            items.push(Item::Check {
                id,
                text: format!("Network: {}", policy.label()),
                checked: m.network == policy,
                enabled: running,
            });
        }
        items.push(Item::Separator);
    }
    if let (crate::model::UpdatePhase::Available, Some(v)) = (m.update.state, &m.update.version) {
        items.push(Item::Action {
            id: ids::UPDATE,
            text: format!("Version {v} is available…"),
            enabled: true,
        });
    }
    if running && !m.waiting.is_empty() {
        items.push(Item::Action {
            id: ids::APPROVALS,
            text: format!("{}: answer…", waiting_line(m.waiting.len())),
            enabled: true,
        });
    }
    if running && m.active_runs > 0 {
        items.push(Item::Action {
            id: ids::STOP_RUNS,
            text: format!("Stop all running commands ({})", m.active_runs),
            enabled: true,
        });
    }
    items.extend([
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
    ]);
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{running, Download};
    use stigmer_protocol::events::{ImageAction, Phase};
    use stigmer_protocol::mode::{Mode, BASIC_IMAGE};

    fn checked_of(menu: &[Item], prefix: &str) -> Vec<&'static str> {
        menu.iter()
            .filter_map(|i| match i {
                Item::Check {
                    id, checked: true, ..
                } if id.starts_with(prefix) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn checked(menu: &[Item]) -> Vec<&'static str> {
        checked_of(menu, "mode-")
    }

    #[test]
    fn the_network_choice_shows_in_a_sandbox_tier_with_one_checked() {
        let local = tray_menu(&running(Mode::Local, BASIC_IMAGE));
        assert!(checked_of(&local, "net-").is_empty(), "not in local mode");
        let mut m = running(Mode::Sandbox, BASIC_IMAGE);
        assert_eq!(checked_of(&tray_menu(&m), "net-"), [ids::NET_OPEN]);
        m.network = NetworkPolicy::Allowlist;
        let menu = tray_menu(&m);
        assert_eq!(checked_of(&menu, "net-"), [ids::NET_ALLOWLIST]);
        assert!(menu.iter().any(
            |i| matches!(i, Item::Check { text, .. } if text == "Network: Only allowed hosts")
        ));
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
        let protected = tray_menu(&running(Mode::Protected, BASIC_IMAGE));
        assert_eq!(checked(&protected), [ids::MODE_PROTECTED]);
        assert_eq!(
            checked_of(&protected, "net-"),
            [ids::NET_OPEN],
            "its network is chosen too"
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
                ids::MODE_PROTECTED,
                ids::MODE_BASIC,
                ids::MODE_CUSTOM,
                ids::OPEN,
                ids::QUIT
            ]
        );
    }

    #[test]
    fn the_tray_offers_to_stop_what_runs() {
        let mut m = running(Mode::Local, BASIC_IMAGE);
        let stop_runs = |m: &AppModel| {
            tray_menu(m).into_iter().find_map(|i| match i {
                Item::Action {
                    id: ids::STOP_RUNS,
                    text,
                    ..
                } => Some(text),
                _ => None,
            })
        };
        assert_eq!(stop_runs(&m), None);
        m.active_runs = 3;
        assert_eq!(
            stop_runs(&m).as_deref(),
            Some("Stop all running commands (3)")
        );
        m.server = ServerState::Stopped;
        assert_eq!(stop_runs(&m), None, "nothing runs without a server");
    }

    #[test]
    fn the_status_line_and_icon_say_what_happens() {
        let mut m = running(Mode::Sandbox, BASIC_IMAGE);
        assert!(
            matches!(&tray_menu(&m)[0], Item::Label { text, .. } if text == "Running · Basic sandbox")
        );
        assert_eq!(tray_icon(&m), TrayIcon::Running);
        m.download = Some(Download {
            percent: Some(41.6),
            phase: Phase::Downloading,
            ..Download::started(BASIC_IMAGE, ImageAction::Pull)
        });
        assert!(
            matches!(&tray_menu(&m)[0], Item::Label { text, .. } if text == "Downloading sandbox image (42%)")
        );
        assert_eq!(tray_icon(&m), TrayIcon::Downloading);
        assert_eq!(tray_icon(&AppModel::default()), TrayIcon::Stopped);
    }

    #[test]
    fn a_sandbox_that_cannot_run_shows_in_the_tray() {
        let mut m = running(Mode::Sandbox, BASIC_IMAGE);
        m.engine = Some(stigmer_protocol::status::EngineStatus::NotRunning);
        assert_eq!(tray_icon(&m), TrayIcon::Error);
        assert!(
            matches!(&tray_menu(&m)[0], Item::Label { text, .. } if text == "Basic sandbox: container engine not running")
        );
        m.engine = Some(stigmer_protocol::status::EngineStatus::Connected);
        m.image_problem = Some("manifest unknown".into());
        assert_eq!(tray_icon(&m), TrayIcon::Error);
        // Local mode needs neither.
        m.mode = Mode::Local;
        assert_eq!(tray_icon(&m), TrayIcon::Running);
    }

    #[test]
    fn an_available_update_is_in_the_tray() {
        let mut m = running(Mode::Local, BASIC_IMAGE);
        let has = |m: &AppModel| {
            tray_menu(m)
                .iter()
                .any(|i| matches!(i, Item::Action { id, .. } if *id == ids::UPDATE))
        };
        assert!(!has(&m));
        m.update.state = crate::model::UpdatePhase::Available;
        m.update.version = Some("0.2.0".into());
        assert!(tray_menu(&m).iter().any(
            |i| matches!(i, Item::Action { text, .. } if text == "Version 0.2.0 is available…")
        ));
    }

    #[test]
    fn a_command_that_waits_shows_in_the_icon_the_status_and_the_menu() {
        let mut m = running(Mode::Local, BASIC_IMAGE);
        m.waiting = vec![stigmer_protocol::clients::Approval {
            id: "ask_1".into(),
            command: "rm -rf build".into(),
            client: "Cursor (MCP)".into(),
            cwd: "/home/me/p".into(),
            mode: Mode::Local,
            image: None,
            requested_at_ms: 1,
            deadline_ms: 2,
        }];
        assert_eq!(tray_icon(&m), TrayIcon::Waiting);
        let menu = tray_menu(&m);
        assert!(
            matches!(&menu[0], Item::Label { text, .. } if text == "1 command waits for your approval")
        );
        assert!(menu
            .iter()
            .any(|i| matches!(i, Item::Action { id, text, .. }
            if *id == ids::APPROVALS && text == "1 command waits for your approval: answer…")));
        m.waiting.clear();
        assert_eq!(tray_icon(&m), TrayIcon::Running);
    }
}
