//! The MCP face of stigmer: tools an agent calls to run commands where the user chose (local
//! or sandbox), read back long output, and learn what the environment offers.
//!
//! The tools reach runs through a [`Backend`]: in the server, the run registry itself
//! (`server::mcp`, served over Streamable HTTP at `/mcp`); in `stigmer mcp`, the server's HTTP
//! API. Either way a run is an ordinary run: it shows in the app's activity with the agent's
//! name. Agents cannot change the mode or the image: no tool takes them.

pub mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, RoleServer, ServerHandler};
use serde::Deserialize;

use crate::error::{Error, ErrorCode, Result};
use crate::execute::BoxFuture;
use crate::execute::Stream;
use crate::runs::RunSummary;
use crate::spool::{OutputPage, MAX_PAGE};
use stigmer_protocol::run::RunRequest;
use stigmer_protocol::status::{Status, ToolReport};

/// Seconds a command may run when the agent does not say.
pub const AGENT_DEFAULT_TIMEOUT_SECS: f64 = 120.0;
/// The longest timeout an agent may ask for.
pub const AGENT_MAX_TIMEOUT_SECS: f64 = 3600.0;
/// Bytes of output in one `get_run_output` page when the agent does not say.
pub const AGENT_DEFAULT_PAGE: u64 = 32 * 1024;

/// Where the tools get runs, output and the environment from.
pub trait Backend: Send + Sync + 'static {
    /// Start a run and wait for its end. Dropping the future cancels the run.
    fn run(&self, body: RunRequest) -> BoxFuture<'_, Result<RunSummary>>;
    /// A page of a run's whole output.
    fn output(
        &self,
        run_id: String,
        stream: Stream,
        offset: u64,
        limit: u64,
    ) -> BoxFuture<'_, Result<OutputPage>>;
    /// What a run changed, as diffs (`GET /v1/runs/{id}/diff`).
    fn diff(&self, run_id: String) -> BoxFuture<'_, Result<stigmer_protocol::changes::RunDiff>>;
    /// The server's status (`GET /v1/status`).
    fn status(&self) -> BoxFuture<'_, Result<Status>>;
    /// Tools detected on this machine (`GET /v1/tools`).
    fn tools(&self) -> BoxFuture<'_, Result<ToolReport>>;
    /// The working directory of a command that names none; `None` leaves it to the server
    /// (the home folder in local mode, a scratch folder in sandbox mode).
    fn default_cwd(&self) -> Option<PathBuf>;
}

/// Arguments of `run_command`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCommandArgs {
    /// A shell command line, run with `/bin/sh -c` (pipes, `&&`, redirections and globs
    /// work). Give this or `argv`.
    pub command: Option<String>,
    /// The program and its arguments, run without a shell (no quoting needed). Give this or
    /// `command`.
    pub argv: Option<Vec<String>>,
    /// Working directory: an absolute path, or a path relative to the default working
    /// directory (see `get_environment`). Must exist.
    pub cwd: Option<String>,
    /// Extra environment variables for this command only.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds before the command is stopped (default 120, at most 3600). A command that
    /// times out is reported with the output it printed until then.
    pub timeout_secs: Option<f64>,
    /// Not offered: the mode is the user's choice. Present so that an agent that tries gets
    /// a clear answer instead of "unknown field".
    #[serde(default)]
    #[schemars(skip)]
    pub mode: Option<serde_json::Value>,
    #[serde(default)]
    #[schemars(skip)]
    pub image: Option<serde_json::Value>,
}

/// Arguments of `get_run_output`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRunOutputArgs {
    /// The run id that `run_command` returned (`run_...`).
    pub run_id: String,
    /// `stdout` (default) or `stderr`.
    pub stream: Option<OutputStream>,
    /// Byte offset to start from (default 0). The omitted-part marker of `run_command` gives
    /// the offset where the cut begins.
    pub offset: Option<u64>,
    /// At most this many bytes (default 32768, at most 1048576).
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Arguments of `get_run_changes`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRunChangesArgs {
    /// The run id that `run_command` returned (`run_...`).
    pub run_id: String,
}

/// Arguments of `get_environment` (none).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// The MCP server: one per session, all sharing the backend.
#[derive(Clone)]
pub struct StigmerMcp {
    backend: Arc<dyn Backend>,
    tool_router: ToolRouter<Self>,
}

const INSTRUCTIONS: &str = "Stigmer runs shell commands for you on the user's computer, either \
directly (local mode) or inside a container (sandbox mode); the user chooses the mode, you \
cannot change it. Call get_environment first to see the mode, the working directory and which \
tools exist. Commands run non-interactively: stdin is closed, there is no terminal, pagers and \
prompts are turned off, so pass flags such as -y where a tool would ask. Long output is cut in \
the middle with an exact count of what was left out; read the rest with get_run_output.";

#[tool_router]
impl StigmerMcp {
    pub fn new(backend: Arc<dyn Backend>) -> StigmerMcp {
        StigmerMcp {
            backend,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Run a command on the user's computer, in the mode the user chose (local, or a sandbox container), and wait for it to end. Returns the exit code, whether it timed out, the duration, the mode it ran in, and stdout and stderr. Long output is cut in the middle (the first and last 8 KiB of each stream are kept) with an exact \"N bytes / M lines omitted\" marker; the whole output can be read with get_run_output using the returned run id. stdin is closed and there is no terminal: interactive prompts fail instead of waiting.",
        annotations(
            title = "Run a command",
            destructive_hint = true,
            open_world_hint = true
        )
    )]
    async fn run_command(
        &self,
        Parameters(args): Parameters<RunCommandArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let body = match self.run_body(args, client_name(&ctx)) {
            Ok(b) => b,
            Err(e) => return Ok(tool_error(&e)),
        };
        let result = tokio::select! {
            r = self.backend.run(body) => r,
            // The agent cancelled the call: dropping the run stops the command.
            _ = ctx.ct.cancelled() => Err(Error::new(ErrorCode::InvalidRequest, "the call was cancelled; the command was stopped")),
        };
        Ok(match result {
            Ok(run) => render::run_result(&run),
            Err(e) => tool_error(&e),
        })
    }

    #[tool(
        description = "Read a page of the whole output of an earlier run_command call, by run id: use it for the part cut from the middle of a long output. Returns the text and the offset of the next page; `eof` is true at the end.",
        annotations(title = "Read a run's output", read_only_hint = true)
    )]
    async fn get_run_output(
        &self,
        Parameters(args): Parameters<GetRunOutputArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let stream = match args.stream.unwrap_or(OutputStream::Stdout) {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        };
        let limit = args.max_bytes.unwrap_or(AGENT_DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Ok(tool_error(&Error::new(
                ErrorCode::InvalidRequest,
                format!("max_bytes must be between 1 and {MAX_PAGE}"),
            )));
        }
        let page = self
            .backend
            .output(args.run_id, stream, args.offset.unwrap_or(0), limit)
            .await;
        Ok(match page {
            Ok(page) => render::output_page(&page),
            Err(e) => tool_error(&e),
        })
    }

    #[tool(
        description = "What an earlier run_command call changed in its folder (the project or workspace it ran in), by run id: each file added, removed, modified, renamed or whose mode changed, and for text files a unified diff of the change. Use it to see the effect of a command that printed nothing. Undoing a run is the user's choice, in Stigmer: no tool does it.",
        annotations(title = "Read what a run changed", read_only_hint = true)
    )]
    async fn get_run_changes(
        &self,
        Parameters(args): Parameters<GetRunChangesArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        Ok(match self.backend.diff(args.run_id).await {
            Ok(d) => render::run_diff(&d),
            Err(e) => tool_error(&e),
        })
    }

    #[tool(
        description = "Where commands run and what is available there: the mode (local or sandbox) and sandbox image the user chose, the container engine's state, the default working directory, the default environment, and which developer tools (git, python3, node, terraform, aws, ...) are installed, with versions. Call it before assuming a tool exists.",
        annotations(title = "Describe the environment", read_only_hint = true)
    )]
    async fn get_environment(
        &self,
        Parameters(_): Parameters<NoArgs>,
    ) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
        let (status, tools) = tokio::join!(self.backend.status(), self.backend.tools());
        Ok(match (status, tools) {
            (Ok(status), Ok(tools)) => {
                render::environment(&status, &tools, self.backend.default_cwd())
            }
            (Err(e), _) | (_, Err(e)) => tool_error(&e),
        })
    }
}

impl StigmerMcp {
    /// The API request for `args`. Refuses what the API would refuse, with an agent's words.
    fn run_body(&self, args: RunCommandArgs, client: Option<String>) -> Result<RunRequest> {
        let invalid = |m: &str| Error::new(ErrorCode::InvalidRequest, m);
        if args.mode.is_some() || args.image.is_some() {
            return Err(Error::new(
                ErrorCode::InvalidMode,
                "agents cannot choose the mode or the sandbox image: the user does, in the stigmer app, its tray menu or with `stigmer config set mode`; get_environment shows the current one. Nothing was run",
            ));
        }
        let (argv, shell) = match (args.argv, args.command) {
            (Some(_), Some(_)) => return Err(invalid("give either `command` or `argv`, not both")),
            (None, None) => {
                return Err(invalid(
                    "give the command to run: `command` (a shell command line) or `argv` (a list)",
                ))
            }
            (argv, shell) => (argv, shell),
        };
        let timeout = args.timeout_secs.unwrap_or(AGENT_DEFAULT_TIMEOUT_SECS);
        if !(timeout > 0.0 && timeout <= AGENT_MAX_TIMEOUT_SECS) {
            return Err(invalid(&format!(
                "timeout_secs must be more than 0 and at most {AGENT_MAX_TIMEOUT_SECS}"
            )));
        }
        let base = self.backend.default_cwd();
        // The session's own folder (where the agent started `stigmer mcp`) is allowed for
        // sandboxed runs; the agent's `cwd` must lie in it or in a workspace the user added.
        let workspace = base.clone();
        let cwd = match (args.cwd, base) {
            (Some(c), Some(base)) => Some(base.join(c)),
            // Relative paths need a base: the server refuses them with a clear message.
            (Some(c), None) => Some(PathBuf::from(c)),
            (None, base) => base,
        };
        Ok(RunRequest {
            argv,
            shell,
            cwd,
            env: args.env,
            timeout_secs: Some(timeout),
            mode: None,
            image: None,
            client,
            workspace,
            ..RunRequest::default()
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for StigmerMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("stigmer", crate::VERSION))
            .with_instructions(INSTRUCTIONS)
    }
}

/// How a run from this agent is labelled in the app's activity: the name the client gave.
fn client_name(ctx: &RequestContext<RoleServer>) -> Option<String> {
    let name = ctx
        .client_info()
        .map(|i| i.name)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "agent".to_string());
    let clean: String = name.chars().filter(|c| !c.is_control()).take(90).collect();
    Some(format!("{clean} (MCP)"))
}

/// A failure the agent should read: the stable code and what to do.
fn tool_error(e: &Error) -> CallToolResult {
    let mut r = CallToolResult::error(vec![ContentBlock::text(format!(
        "{}: {}",
        e.code, e.message
    ))]);
    r.structured_content = Some(serde_json::json!({ "error": e }));
    r
}
