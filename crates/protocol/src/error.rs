//! Errors with stable codes. The code travels unchanged from the engine through the HTTP API to
//! the CLI and the desktop UI, so clients can branch on it; the message says what to do.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. The serialized names are part of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// An execution mode that is not `local` or `sandbox`.
    InvalidMode,
    /// A setting (flag, environment variable or config file entry) with an invalid value.
    InvalidSetting,
    /// The config file could not be read or written.
    ConfigError,
    /// The working directory of a run does not exist or is not a directory.
    CwdNotFound,
    /// A request that is well-formed JSON but asks for something invalid.
    InvalidRequest,
    /// A request body that is not valid JSON.
    InvalidJson,
    /// A request body over the size limit.
    BodyTooLarge,
    /// A request body that is not `application/json`.
    UnsupportedMediaType,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// A request HTTP itself forbids, such as one with two `Host` headers.
    InvalidHeader,
    /// A request whose Host header is not a loopback name.
    ForbiddenHost,
    /// A request sent by a web browser (it carries an Origin).
    ForbiddenOrigin,
    /// No such API route.
    NotFound,
    /// The HTTP method is not allowed on this route.
    MethodNotAllowed,
    /// No run with this id.
    RunNotFound,
    /// In sandbox mode, a working directory outside the workspaces the user allowed, or a
    /// folder that is never mounted (system folders, the home folder and its dot-folders...).
    WorkspaceNotAllowed,
    /// In sandbox mode, the folder to mount changed between its check and the container's
    /// start (renamed, or replaced by a link): nothing ran, the container was removed.
    WorkspaceChanged,
    /// The container engine cannot be reached.
    EngineUnavailable,
    /// The protected tier cannot confine commands on this system (the message says which
    /// feature is missing): nothing ran, and nothing runs unconfined instead.
    ProtectionUnavailable,
    /// The sandbox image does not exist.
    ImageNotFound,
    /// Downloading the sandbox image failed.
    ImagePullFailed,
    /// Building the sandbox image failed.
    ImageBuildFailed,
    /// The stigmer server is not running or not answering.
    ServerUnavailable,
    /// The server is already running.
    ServerAlreadyRunning,
    /// An agent's configuration file does not parse; stigmer leaves it as it is.
    AgentConfigUnreadable,
    /// The command could not be started.
    SpawnFailed,
    /// The user stopped the command (the window's Stop, the tray, `stigmer runs stop`).
    CancelledByUser,
    /// The user refused the command: they denied it, did not answer in time, or refuse this
    /// client's commands.
    DeniedByUser,
    /// The command needs the user's approval and no Stigmer app is open to ask them.
    ApprovalUnavailable,
    /// The server stopped (crashed, was killed) while the command ran; how it ended is unknown.
    Interrupted,
    /// The run's changes cannot be undone: none were recorded (the message says why).
    NothingToUndo,
    /// A command is working in the folder: an undo waits until it has ended.
    FolderBusy,
    /// An unexpected internal failure.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMode => "INVALID_MODE",
            ErrorCode::InvalidSetting => "INVALID_SETTING",
            ErrorCode::ConfigError => "CONFIG_ERROR",
            ErrorCode::CwdNotFound => "CWD_NOT_FOUND",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::BodyTooLarge => "BODY_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::InvalidHeader => "INVALID_HEADER",
            ErrorCode::ForbiddenHost => "FORBIDDEN_HOST",
            ErrorCode::ForbiddenOrigin => "FORBIDDEN_ORIGIN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::RunNotFound => "RUN_NOT_FOUND",
            ErrorCode::WorkspaceNotAllowed => "WORKSPACE_NOT_ALLOWED",
            ErrorCode::WorkspaceChanged => "WORKSPACE_CHANGED",
            ErrorCode::EngineUnavailable => "ENGINE_UNAVAILABLE",
            ErrorCode::ProtectionUnavailable => "PROTECTION_UNAVAILABLE",
            ErrorCode::ImageNotFound => "IMAGE_NOT_FOUND",
            ErrorCode::ImagePullFailed => "IMAGE_PULL_FAILED",
            ErrorCode::ImageBuildFailed => "IMAGE_BUILD_FAILED",
            ErrorCode::ServerUnavailable => "SERVER_UNAVAILABLE",
            ErrorCode::ServerAlreadyRunning => "SERVER_ALREADY_RUNNING",
            ErrorCode::AgentConfigUnreadable => "AGENT_CONFIG_UNREADABLE",
            ErrorCode::SpawnFailed => "SPAWN_FAILED",
            ErrorCode::CancelledByUser => "CANCELLED_BY_USER",
            ErrorCode::Interrupted => "INTERRUPTED",
            ErrorCode::DeniedByUser => "DENIED_BY_USER",
            ErrorCode::ApprovalUnavailable => "APPROVAL_UNAVAILABLE",
            ErrorCode::NothingToUndo => "NOTHING_TO_UNDO",
            ErrorCode::FolderBusy => "FOLDER_BUSY",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status the API answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidHeader => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::ForbiddenHost
            | ErrorCode::ForbiddenOrigin
            | ErrorCode::WorkspaceNotAllowed
            | ErrorCode::DeniedByUser => 403,
            ErrorCode::NotFound | ErrorCode::RunNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::ServerAlreadyRunning
            | ErrorCode::CancelledByUser
            | ErrorCode::WorkspaceChanged
            | ErrorCode::FolderBusy => 409,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidMode
            | ErrorCode::InvalidSetting
            | ErrorCode::InvalidRequest
            | ErrorCode::CwdNotFound
            | ErrorCode::AgentConfigUnreadable
            | ErrorCode::ImageNotFound
            | ErrorCode::NothingToUndo => 422,
            ErrorCode::ImagePullFailed
            | ErrorCode::EngineUnavailable
            | ErrorCode::ProtectionUnavailable
            | ErrorCode::ApprovalUnavailable
            | ErrorCode::ServerUnavailable => 503,
            ErrorCode::ConfigError
            | ErrorCode::SpawnFailed
            | ErrorCode::ImageBuildFailed
            | ErrorCode::Interrupted
            | ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code and a message that tells the user what to do; where it comes
/// from another error (the container engine's, a file's), that one is kept as its source for
/// logs and callers (it never goes on the wire).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip)]
    pub source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Two errors are the same when their code and message are (the source is for diagnosis).
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        (self.code, &self.message) == (other.code, &other.message)
    }
}

impl Eq for Error {}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, keeping `source` as where it came from.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Internal, message)
    }

    /// What a stopped run's client reads (an agent, most often: words that make it stop).
    pub fn cancelled_by_user() -> Self {
        Error::new(
            ErrorCode::CancelledByUser,
            "the user stopped this command from Stigmer (its window, tray or `stigmer runs stop`); \
             its processes were ended. Do not run it again unless the user asks you to",
        )
    }

    /// The record of a run the server did not see end (it crashed or was killed).
    pub fn interrupted() -> Self {
        Error::new(
            ErrorCode::Interrupted,
            "the Stigmer server stopped (it crashed or was killed) while this command ran; \
             how it ended is unknown. Its output up to then is kept",
        )
    }

    pub fn run_not_found(id: &str) -> Self {
        Error::new(
            ErrorCode::RunNotFound,
            format!("no run with id `{id}`; `GET /v1/runs` lists the recent ones"),
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
