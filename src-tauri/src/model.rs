//! The app's state, and what the tray shows for it. The tray menu is a pure function of the
//! state, so it is unit-tested without a desktop.

use serde::Serialize;
use stigmer_protocol::events::{ImageAction, Phase, Progress};
use stigmer_protocol::mode::{Mode, Tier, BASIC_IMAGE};

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
    pub action: ImageAction,
    pub phase: Phase,
    pub percent: Option<f64>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub rate_bytes_per_sec: u64,
}

impl Download {
    pub fn started(image: &str, action: ImageAction) -> Download {
        Download {
            image: image.to_string(),
            action,
            phase: Phase::Resolving,
            percent: None,
            bytes_done: 0,
            bytes_total: 0,
            rate_bytes_per_sec: 0,
        }
    }

    pub fn of(image: &str, action: ImageAction, p: &Progress) -> Download {
        Download {
            image: image.to_string(),
            action,
            phase: p.phase,
            percent: p.percent,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            rate_bytes_per_sec: p.rate_bytes_per_sec,
        }
    }
}

/// Everything the window and the tray show. The window also gets what is derived from it (the
/// tier, the problem to show), decided here rather than in the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(into = "ModelView")]
pub struct AppModel {
    pub server: ServerState,
    pub mode: Mode,
    pub image: String,
    /// `connected`, `not_installed`, `not_running`, `permission_denied` or `unknown`.
    pub engine: String,
    pub engine_message: String,
    pub download: Option<Download>,
    /// The sandbox image could not be had (downloaded or built): what went wrong.
    pub image_problem: Option<String>,
    pub update: crate::updates::UpdateState,
    /// Commands running now, from every client (the tray offers to stop them).
    pub active_runs: usize,
}

/// The model as the window receives it.
#[derive(Serialize)]
struct ModelView {
    server: ServerState,
    mode: Mode,
    image: String,
    engine: String,
    engine_message: String,
    download: Option<Download>,
    image_problem: Option<String>,
    update: crate::updates::UpdateState,
    tier: Tier,
    problem: Option<Problem>,
    /// The tray's status line, for the window's too.
    status: String,
}

impl From<AppModel> for ModelView {
    fn from(m: AppModel) -> ModelView {
        ModelView {
            tier: m.tier(),
            problem: problem(&m),
            status: status_line(&m),
            server: m.server,
            mode: m.mode,
            image: m.image,
            engine: m.engine,
            engine_message: m.engine_message,
            download: m.download,
            image_problem: m.image_problem,
            update: m.update,
        }
    }
}

/// Something that keeps commands from running, in words a person acts on: the buttons' ids
/// are the window's actions (`start`, `retry`, `use_local`, `use_basic`, `help:TOPIC`), the
/// technical text goes under Details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub text: String,
    pub detail: Option<String>,
    pub actions: Vec<(&'static str, &'static str)>,
}

pub fn problem(m: &AppModel) -> Option<Problem> {
    let p = |text: &str, detail: Option<&str>, actions: Vec<(&'static str, &'static str)>| {
        Some(Problem {
            text: text.to_string(),
            detail: detail.filter(|d| !d.is_empty()).map(str::to_string),
            actions,
        })
    };
    const LOCAL: (&str, &str) = ("use_local", "Use Local instead");
    const RETRY: (&str, &str) = ("retry", "Try again");
    match &m.server {
        ServerState::Crashed { reason } => {
            return p(
                "The Stigmer server stopped unexpectedly. Agents cannot run commands until it runs again.",
                Some(reason),
                vec![("start", "Restart")],
            )
        }
        ServerState::Stopped => {
            return p(
                "The Stigmer server is not running: agents cannot run commands.",
                None,
                vec![("start", "Start")],
            )
        }
        ServerState::Starting => return None,
        ServerState::Running { .. } if m.tier() == Tier::Local => return None,
        ServerState::Running { .. } => {}
    }
    let detail = Some(m.engine_message.as_str());
    match m.engine.as_str() {
        "not_installed" => p(
            "The sandbox needs Docker or Podman, and neither is installed on this computer. Commands will not run until one is; they never run on this computer instead.",
            detail,
            vec![LOCAL, ("help:install-engine", "Get Docker"), RETRY],
        ),
        "not_running" => p(
            "The sandbox needs Docker or Podman, and it is not running. Start Docker Desktop (or the Docker or Podman service), then try again. Commands never run on this computer instead.",
            detail,
            vec![RETRY, LOCAL],
        ),
        "permission_denied" => p(
            "Stigmer is not allowed to use Docker on this computer. Whoever manages it can give you access, or you can use Podman. Commands never run on this computer instead.",
            detail,
            vec![RETRY, ("help:engine-permission", "How to fix"), LOCAL],
        ),
        _ => match (&m.image_problem, m.tier()) {
            (Some(why), Tier::Basic) => p(
                "The sandbox image could not be downloaded or built. Commands will not run in the sandbox until it is there.",
                Some(why),
                vec![RETRY, LOCAL],
            ),
            (Some(why), _) => p(
                &format!("The image {} is not on this computer and could not be downloaded. Choose another image, or build it first.", m.image),
                Some(why),
                vec![("use_basic", "Use Basic sandbox"), LOCAL],
            ),
            (None, _) => None,
        },
    }
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
            image_problem: None,
            update: Default::default(),
            active_runs: 0,
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

    /// Why commands cannot run in the chosen sandbox tier right now, in a few words.
    pub fn sandbox_problem(&self) -> Option<&'static str> {
        if !self.running() || self.tier() == Tier::Local {
            return None;
        }
        match self.engine.as_str() {
            "connected" | "unknown" => self
                .image_problem
                .as_ref()
                .map(|_| "sandbox image not available"),
            "not_installed" => Some("no container engine installed"),
            "permission_denied" => Some("no access to the container engine"),
            _ => Some("container engine not running"),
        }
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
    pub const MODE_LOCAL: &str = "mode-local";
    pub const MODE_BASIC: &str = "mode-basic";
    pub const MODE_CUSTOM: &str = "mode-custom";
    pub const OPEN: &str = "open";
    pub const UPDATE: &str = "update";
    pub const QUIT: &str = "quit";
}

/// One line saying how things are: the tray's first item and the window's corner.
pub fn status_line(m: &AppModel) -> String {
    match &m.server {
        ServerState::Stopped => "Server stopped".to_string(),
        ServerState::Starting => "Server starting…".to_string(),
        ServerState::Running { .. } => match &m.download {
            Some(d) => format!(
                "Downloading sandbox image{}",
                d.percent.map(|p| format!(" ({p:.0}%)")).unwrap_or_default()
            ),
            None => match m.sandbox_problem() {
                Some(problem) => format!("{}: {problem}", mode_label(m.tier())),
                None => format!("Running · {}", mode_label(m.tier())),
            },
        },
        ServerState::Crashed { .. } => "Server stopped unexpectedly".to_string(),
    }
}

/// The tray menu for a state. Linux trays deliver no clicks on the icon, so every action is
/// an item here. The three modes are check items kept mutually exclusive (no radio items).
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
    ];
    if let (crate::updates::Phase::Available, Some(v)) = (m.update.state, &m.update.version) {
        items.push(Item::Action {
            id: ids::UPDATE,
            text: format!("Version {v} is available…"),
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
        m.engine = "not_running".into();
        assert_eq!(tray_icon(&m), TrayIcon::Error);
        assert!(
            matches!(&tray_menu(&m)[0], Item::Label { text, .. } if text == "Basic sandbox: container engine not running")
        );
        m.engine = "connected".into();
        m.image_problem = Some("manifest unknown".into());
        assert_eq!(tray_icon(&m), TrayIcon::Error);
        // Local mode needs neither.
        m.mode = Mode::Local;
        assert_eq!(tray_icon(&m), TrayIcon::Running);
    }

    #[test]
    fn problems_are_plain_words_with_buttons_never_commands() {
        let mut m = running(Mode::Sandbox, BASIC_IMAGE);
        for engine in ["not_installed", "not_running", "permission_denied"] {
            m.engine = engine.into();
            m.engine_message = "the container engine is not running (nothing answers at /var/run/docker.sock). Start it (`sudo systemctl start docker`...)".into();
            let p = problem(&m).unwrap();
            assert!(
                !p.text.contains('`') && !p.text.contains("sudo"),
                "{engine}: {}",
                p.text
            );
            assert!(
                p.actions.contains(&("use_local", "Use Local instead")),
                "{engine}"
            );
            assert!(
                p.detail.unwrap().contains("systemctl"),
                "the technical text is kept, folded"
            );
        }
        m.engine = "connected".into();
        assert_eq!(problem(&m), None);
        m.image = "my/img:1".into();
        m.image_problem = Some("pull access denied".into());
        let p = problem(&m).unwrap();
        assert!(p.text.contains("my/img:1") && p.actions[0].0 == "use_basic");
        m.mode = Mode::Local;
        assert_eq!(problem(&m), None, "local mode needs no engine and no image");
        m.server = ServerState::Crashed {
            reason: "exit code 1".into(),
        };
        assert_eq!(problem(&m).unwrap().actions, [("start", "Restart")]);
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
        m.update.state = crate::updates::Phase::Available;
        m.update.version = Some("0.2.0".into());
        assert!(tray_menu(&m).iter().any(
            |i| matches!(i, Item::Action { text, .. } if text == "Version 0.2.0 is available…")
        ));
    }
}
