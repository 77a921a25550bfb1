//! The app's state, and the problem the window shows for it; what the tray shows for it is
//! in [`crate::menu`].

use serde::Serialize;
use stigmer_protocol::clients::{ClientTier, Rule};
pub use stigmer_protocol::desktop::{UpdatePhase, UpdateState};
use stigmer_protocol::events::{ImageAction, Phase, Progress};
use stigmer_protocol::mode::{Mode, Tier, BASIC_IMAGE};
use stigmer_protocol::network::NetworkPolicy;
use stigmer_protocol::status::EngineStatus;

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
    pub elapsed_ms: u64,
    /// For builds: the step, e.g. `Step 3/9 : RUN apt-get ...`.
    pub detail: Option<String>,
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
            elapsed_ms: 0,
            detail: None,
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
            elapsed_ms: p.elapsed_ms,
            detail: p.detail.clone(),
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
    /// None until the server said.
    pub engine: Option<EngineStatus>,
    pub engine_message: String,
    pub download: Option<Download>,
    /// The sandbox image could not be had (downloaded or built): what went wrong.
    pub image_problem: Option<String>,
    pub update: UpdateState,
    /// Commands running now, from every client (the tray offers to stop them).
    pub active_runs: usize,
    /// Commands waiting for the user's Allow or Deny, oldest first.
    pub waiting: Vec<stigmer_protocol::clients::Approval>,
    /// What sandboxes may reach.
    pub network: NetworkPolicy,
    /// Why the protected tier cannot confine commands here, if it cannot.
    pub protection_missing: Option<String>,
}

/// The model as the window receives it.
#[derive(Serialize)]
struct ModelView {
    server: ServerState,
    mode: Mode,
    image: String,
    engine: Option<EngineStatus>,
    engine_message: String,
    /// The engine in a few words, for the window's Sandbox section.
    engine_label: String,
    download: Option<Download>,
    image_problem: Option<String>,
    update: UpdateState,
    waiting: Vec<stigmer_protocol::clients::Approval>,
    active_runs: usize,
    network: NetworkPolicy,
    tier: Tier,
    problem: Option<Problem>,
    /// The tray's status line, for the window's too.
    status: String,
    /// What the window calls each choice, from the protocol (the tray uses the same).
    labels: Labels,
    /// Whether the protected tier can confine commands here (the first-run page offers it).
    protection_available: bool,
}

/// `[value, label]` pairs for the window's choices.
#[derive(Serialize)]
struct Labels {
    tiers: Vec<(Tier, &'static str)>,
    client_tiers: Vec<(ClientTier, &'static str)>,
    rules: Vec<(Rule, &'static str)>,
    networks: Vec<(NetworkPolicy, &'static str)>,
}

impl Labels {
    fn new() -> Labels {
        Labels {
            tiers: Tier::ALL.iter().map(|t| (*t, t.label())).collect(),
            client_tiers: ClientTier::ALL.iter().map(|t| (*t, t.label())).collect(),
            rules: Rule::ALL.iter().map(|r| (*r, r.label())).collect(),
            networks: NetworkPolicy::ALL.iter().map(|p| (*p, p.label())).collect(),
        }
    }
}

impl From<AppModel> for ModelView {
    fn from(m: AppModel) -> ModelView {
        ModelView {
            tier: m.tier(),
            problem: problem(&m),
            status: status_line(&m),
            engine_label: engine_label(&m),
            labels: Labels::new(),
            protection_available: m.server_says_protection_works(),
            server: m.server,
            mode: m.mode,
            image: m.image,
            engine: m.engine,
            engine_message: m.engine_message,
            download: m.download,
            image_problem: m.image_problem,
            update: m.update,
            waiting: m.waiting,
            active_runs: m.active_runs,
            network: m.network,
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
        ServerState::Running { .. } if m.tier() == Tier::Protected => {
            // The container engine is no concern here; the system's confinement is.
            return m.protection_missing.as_ref().and_then(|why| {
                p(
                    "Local, protected cannot run commands on this computer, so they are refused (never run unconfined).",
                    Some(why.as_str()),
                    vec![LOCAL, RETRY],
                )
            });
        }
        ServerState::Running { .. } if m.tier() == Tier::Local => return None,
        ServerState::Running { .. } => {}
    }
    let detail = Some(m.engine_message.as_str());
    let engine_problem = m.engine.and_then(|e| Some((e, e.problem()?)));
    match engine_problem {
        Some((EngineStatus::NotInstalled, text)) => p(
            text,
            detail,
            vec![LOCAL, ("help:install-engine", "Get Docker"), RETRY],
        ),
        Some((EngineStatus::PermissionDenied, text)) => p(
            text,
            detail,
            vec![RETRY, ("help:engine-permission", "How to fix"), LOCAL],
        ),
        Some((_, text)) => p(text, detail, vec![RETRY, LOCAL]),
        None => match (&m.image_problem, m.tier()) {
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

/// The engine as the window's Sandbox section says it.
fn engine_label(m: &AppModel) -> String {
    match m.engine {
        None => "not checked yet".into(),
        Some(EngineStatus::Connected) => m.engine_message.clone(),
        Some(e) => format!("{} (needed for the sandbox only)", e.label()),
    }
}

impl Default for AppModel {
    fn default() -> Self {
        AppModel {
            server: ServerState::Stopped,
            mode: Mode::Local,
            image: BASIC_IMAGE.to_string(),
            engine: None,
            engine_message: String::new(),
            download: None,
            image_problem: None,
            update: Default::default(),
            active_runs: 0,
            waiting: Vec::new(),
            network: Default::default(),
            protection_missing: None,
        }
    }
}

impl AppModel {
    pub fn tier(&self) -> Tier {
        Tier::of(self.mode, &self.image)
    }

    /// The server runs and said the protected tier can confine here.
    pub fn server_says_protection_works(&self) -> bool {
        self.running() && self.engine.is_some() && self.protection_missing.is_none()
    }

    pub fn running(&self) -> bool {
        matches!(self.server, ServerState::Running { .. })
    }

    /// Why commands cannot run in the chosen sandbox tier right now, in a few words.
    pub fn sandbox_problem(&self) -> Option<&'static str> {
        if !self.running() || matches!(self.tier(), Tier::Local | Tier::Protected) {
            return None;
        }
        match self.engine.and_then(EngineStatus::short_problem) {
            Some(short) => Some(short),
            None => self
                .image_problem
                .as_ref()
                .map(|_| "sandbox image not available"),
        }
    }
}

/// One line saying how things are: the tray's first item and the window's corner.
pub fn status_line(m: &AppModel) -> String {
    match &m.server {
        ServerState::Stopped => "Server stopped".to_string(),
        ServerState::Starting => "Server starting…".to_string(),
        ServerState::Running { .. } if !m.waiting.is_empty() => waiting_line(m.waiting.len()),
        ServerState::Running { .. } => match &m.download {
            Some(d) => format!(
                "Downloading sandbox image{}",
                d.percent.map(|p| format!(" ({p:.0}%)")).unwrap_or_default()
            ),
            None => match m.sandbox_problem() {
                Some(problem) => format!("{}: {problem}", m.tier().label()),
                None => format!("Running · {}", m.tier().label()),
            },
        },
        ServerState::Crashed { .. } => "Server stopped unexpectedly".to_string(),
    }
}

/// "N commands wait for your approval".
pub fn waiting_line(n: usize) -> String {
    if n == 1 {
        "1 command waits for your approval".into()
    } else {
        format!("{n} commands wait for your approval")
    }
}

/// A model with a running server, for the tests of the window's and the tray's views.
#[cfg(test)]
pub fn running(mode: Mode, image: &str) -> AppModel {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protected_tier_that_cannot_confine_says_so_with_a_way_out() {
        let mut m = running(Mode::Protected, BASIC_IMAGE);
        m.engine = Some(EngineStatus::NotInstalled);
        assert_eq!(problem(&m), None, "no engine is no problem here");
        m.protection_missing = Some("bubblewrap is not installed".into());
        let p = problem(&m).unwrap();
        assert!(p.text.contains("never run unconfined"), "{}", p.text);
        assert_eq!(p.detail.as_deref(), Some("bubblewrap is not installed"));
        assert!(p.actions.contains(&("use_local", "Use Local instead")));
    }

    #[test]
    fn problems_are_plain_words_with_buttons_never_commands() {
        let mut m = running(Mode::Sandbox, BASIC_IMAGE);
        for engine in [
            EngineStatus::NotInstalled,
            EngineStatus::NotRunning,
            EngineStatus::PermissionDenied,
        ] {
            m.engine = Some(engine);
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
        m.engine = Some(EngineStatus::Connected);
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
}
