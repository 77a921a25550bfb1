//! What the server says about itself: its status, the mode, the container engine, the sandbox,
//! the workspaces sandboxed commands may use, and the tools found.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::events::RefusedRun;
use crate::mode::{Mode, Tier};
use crate::run::CommandEnv;

/// `GET /v1/status`: the server, where commands run, the engine, the files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub url: String,
    pub uptime_secs: f64,
    pub mode: Mode,
    pub image: String,
    pub tier: Tier,
    pub engine: EngineState,
    pub active_runs: usize,
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The environment every command starts from (agent-ready defaults and `[env]`).
    pub command_env: CommandEnv,
    /// Where a run that names no `cwd` runs, in the current mode.
    pub default_cwd: PathBuf,
    /// The folders sandboxed commands may work in (read-write in their container), besides the
    /// scratch folder and the folder of the client's session.
    pub workspaces: Vec<PathBuf>,
    /// What a command can see and change, in words for a person or a model (where commands
    /// run decides it).
    pub confinement: String,
    /// The folders a run may be in: none listed when any folder may be used (local mode), else
    /// the user's workspaces and the scratch folder.
    pub allowed_folders: Vec<PathBuf>,
    /// What sandboxes may reach (`sandbox.network`).
    #[serde(default)]
    pub network: crate::network::NetworkPolicy,
    /// Whether the protected tier can confine commands on this computer.
    #[serde(default)]
    pub protection: Protection,
    /// Disk space the file contents kept for undo take (none: changes are not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_contents_bytes: Option<u64>,
}

/// Whether the protected tier can confine commands here; if not, which feature is missing (a
/// protected run is then refused, never run unconfined).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Protection {
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// The mode as applied (`GET`/`PUT /v1/mode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeView {
    pub mode: Mode,
    pub image: String,
    pub tier: Tier,
}

/// The body of `PUT /v1/mode`: either field or both.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeChange {
    pub mode: Option<Mode>,
    pub image: Option<String>,
}

/// The engine stigmer talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// `docker` or `podman`.
    pub kind: String,
    pub endpoint: String,
    pub version: String,
    pub api_version: String,
    pub os: String,
    pub arch: String,
}

/// Why there is no engine, for the UI: each has its own fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    NotInstalled,
    NotRunning,
    PermissionDenied,
}

/// Where the container engine stands: connected, or why not (each has its own fix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineStatus {
    Connected,
    NotInstalled,
    NotRunning,
    PermissionDenied,
}

impl From<Unavailable> for EngineStatus {
    fn from(u: Unavailable) -> Self {
        match u {
            Unavailable::NotInstalled => EngineStatus::NotInstalled,
            Unavailable::NotRunning => EngineStatus::NotRunning,
            Unavailable::PermissionDenied => EngineStatus::PermissionDenied,
        }
    }
}

impl EngineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineStatus::Connected => "connected",
            EngineStatus::NotInstalled => "not_installed",
            EngineStatus::NotRunning => "not_running",
            EngineStatus::PermissionDenied => "permission_denied",
        }
    }

    /// The state in a word or two, after "Container engine:".
    pub fn label(self) -> &'static str {
        match self {
            EngineStatus::Connected => "connected",
            EngineStatus::NotInstalled => "not installed",
            EngineStatus::NotRunning => "not running",
            EngineStatus::PermissionDenied => "no access for this user",
        }
    }

    /// What is wrong, in a few words (the tray, a tier's label); None when connected.
    pub fn short_problem(self) -> Option<&'static str> {
        match self {
            EngineStatus::Connected => None,
            EngineStatus::NotInstalled => Some("no container engine installed"),
            EngineStatus::NotRunning => Some("container engine not running"),
            EngineStatus::PermissionDenied => Some("no access to the container engine"),
        }
    }

    /// What is wrong and what to do, for a person who does not use a terminal (the window,
    /// notifications); None when connected.
    pub fn problem(self) -> Option<&'static str> {
        match self {
            EngineStatus::Connected => None,
            EngineStatus::NotInstalled => Some(
                "The sandbox needs Docker or Podman, and neither is installed on this computer. \
                 Commands will not run until one is; they never run on this computer instead.",
            ),
            EngineStatus::NotRunning => Some(
                "The sandbox needs Docker or Podman, and it is not running. Start Docker Desktop \
                 (or the Docker or Podman service), then try again. Commands never run on this \
                 computer instead.",
            ),
            EngineStatus::PermissionDenied => Some(
                "Stigmer is not allowed to use Docker on this computer. Whoever manages it can \
                 give you access, or you can use Podman. Commands never run on this computer \
                 instead.",
            ),
        }
    }
}

impl std::fmt::Display for EngineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine as last seen: connected, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    pub state: EngineStatus,
    pub message: String,
    pub engine: Option<EngineInfo>,
}

/// `GET /v1/workspaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacesView {
    /// The folders the user allowed (read-write in a sandbox container).
    pub workspaces: Vec<PathBuf>,
    /// Where sandboxed runs that name no folder run; always allowed.
    pub scratch: PathBuf,
    /// Requests refused lately because of their folder, newest first.
    pub refused: Vec<RefusedRun>,
}

/// The body of `POST /v1/workspaces` and `POST /v1/workspaces/remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderBody {
    pub path: PathBuf,
}

/// What `GET /v1/sandbox` and `stigmer sandbox status` show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    pub engine: EngineState,
    pub image: String,
    pub tier: Tier,
    /// None when the engine cannot be asked.
    pub image_present: Option<bool>,
    pub image_size_bytes: Option<u64>,
    pub containers: Vec<ContainerView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerView {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub image: String,
    pub workspace: String,
    pub state: String,
}

/// One tool, as found (or not) on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub category: String,
    pub found: bool,
    pub path: Option<PathBuf>,
    /// The version the tool reported, when it answered in time.
    pub version: Option<String>,
    pub in_basic: bool,
    pub in_full: bool,
}

/// The result of one detection pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolReport {
    /// When detection ran, seconds since the Unix epoch.
    pub detected_at: u64,
    /// How long detection took, in milliseconds.
    pub duration_ms: f64,
    /// Whether PATH came from the user's login shell (app not started from a terminal).
    pub path_from_login_shell: bool,
    pub tools: Vec<ToolInfo>,
}

/// One image Stigmer uses (the basic image, the custom image, an agent's custom image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageView {
    pub image: String,
    /// What it is for, in words: `Basic sandbox`, `Custom image`, `Custom image of NAME`.
    pub used_for: Vec<String>,
    /// None when the engine cannot be asked.
    pub present: Option<bool>,
    pub size_bytes: Option<u64>,
    /// When a command last started in it (from the run history).
    pub last_used_ms: Option<u64>,
    /// It can be built from the Dockerfile embedded in stigmer (the basic image), else only
    /// downloaded.
    pub buildable: bool,
}

/// `GET /v1/sandbox/images`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesView {
    pub images: Vec<ImageView>,
}

/// `POST /v1/sandbox/images/remove` and `/remake`: one of the images listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageBody {
    pub image: String,
}

/// One tagged image of the container engine, for the custom tier's picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalImage {
    pub image: String,
    pub size_bytes: u64,
    /// When it was made (milliseconds since the Unix epoch).
    pub created_ms: u64,
}

/// `GET /v1/sandbox/images/local`: every tagged image the engine has, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalImagesView {
    pub images: Vec<LocalImage>,
}

/// `POST /v1/sandbox/images/build`: build `image` from a Dockerfile the user chose (its
/// folder is the build context); once built it becomes the custom image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildBody {
    /// Absolute path of the Dockerfile.
    pub dockerfile: String,
    pub image: String,
}
