//! `stigmer mcp`: the MCP server over stdio, as agent configs launch it.
//!
//! The tools run commands through the stigmer server, so runs use the mode the user chose and
//! show in the app. When no server runs, one is started for the session; it stops after the
//! session, once nobody else uses it either.

use std::path::PathBuf;
use std::sync::Arc;
use stigmer_protocol::routes;

use rmcp::ServiceExt;
use stigmer_engine::execute::BoxFuture;
use stigmer_engine::mcp::{Backend, StigmerMcp};
use stigmer_engine::paths::Paths;
use stigmer_engine::{Error, ErrorCode, Result};
use stigmer_protocol::run::{OutputPage, RunRequest, RunSummary, Stream};
use stigmer_protocol::status::{Status, ToolReport};
use tokio::sync::Mutex;

use crate::cli::{McpArgs, StartArgs};
use crate::server::spawn_detached;
use stigmer_client::Client;

/// A server started for this session stops this long after the session ended and nobody else
/// (the app, another agent) uses it.
const SESSION_SERVER_LINGER_SECS: u64 = 10;

pub async fn mcp(args: McpArgs, paths: &Paths) -> Result<i32> {
    let default_cwd = default_cwd(args.cwd)?;
    let remote = Remote {
        paths: paths.clone(),
        client: Mutex::new(None),
        default_cwd,
    };
    // Fail now, with a message on stderr, rather than on the agent's first call.
    remote.client().await?;
    let service = StigmerMcp::new(Arc::new(remote))
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::internal(format!("MCP session could not start: {e}")))?;
    service
        .waiting()
        .await
        .map_err(|e| Error::internal(format!("MCP session failed: {e}")))?;
    Ok(0)
}

/// The working directory of commands that name none: `--cwd`, else where the agent started us
/// (its project). Started in `/` or in the home folder (some apps start servers there), the
/// server decides: the home folder in local mode, a scratch folder in sandbox mode (which never
/// mounts the home folder).
fn default_cwd(flag: Option<PathBuf>) -> Result<Option<PathBuf>> {
    let here = std::env::current_dir().ok();
    let dir = match flag {
        Some(d) => here.map(|h| h.join(&d)).unwrap_or(d),
        None => {
            let home = stigmer_engine::paths::user_home();
            return Ok(here.filter(|h| h.parent().is_some() && *h != home));
        }
    };
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorCode::CwdNotFound,
            format!("--cwd {}: no such directory", dir.display()),
        ));
    }
    Ok(Some(dir))
}

/// The tools' backend: the running server's HTTP API.
struct Remote {
    paths: Paths,
    /// The server in use; looked up again when it went away (restarted from the app).
    client: Mutex<Option<Arc<Client>>>,
    default_cwd: Option<PathBuf>,
}

impl Remote {
    /// The running server, started for this session when there is none.
    async fn client(&self) -> Result<Arc<Client>> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            if stigmer_engine::discovery::Discovery::find_running(&self.paths)
                .is_some_and(|d| d.pid == c.discovery.pid)
            {
                return Ok(c.clone());
            }
        }
        let client = match Client::find(&self.paths)? {
            Some(c) => c,
            None => {
                let start = StartArgs {
                    foreground: false,
                    port: 0,
                    mode: None,
                    image: None,
                    detached: false,
                    exit_with_parent: false,
                    linger: Some(SESSION_SERVER_LINGER_SECS),
                };
                spawn_detached(&self.paths, &start, true).await?;
                Client::find(&self.paths)?.ok_or_else(|| {
                    Error::new(
                        ErrorCode::ServerUnavailable,
                        "the server started but cannot be found; see `stigmer server logs`",
                    )
                })?
            }
        };
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }
}

impl Backend for Remote {
    fn run(&self, body: RunRequest) -> BoxFuture<'_, stigmer_engine::Result<RunSummary>> {
        // Dropping this future drops the stream, which cancels the run.
        Box::pin(async move { self.client().await?.start_run(&body).await?.finish().await })
    }

    fn output(
        &self,
        run_id: String,
        stream: Stream,
        offset: u64,
        limit: u64,
    ) -> BoxFuture<'_, stigmer_engine::Result<OutputPage>> {
        Box::pin(async move {
            self.client()
                .await?
                .run_output(&run_id, stream, offset, limit)
                .await
        })
    }

    fn diff(
        &self,
        run_id: String,
    ) -> BoxFuture<'_, stigmer_engine::Result<stigmer_protocol::changes::RunDiff>> {
        Box::pin(async move { self.client().await?.run_diff(&run_id).await })
    }

    fn status(&self) -> BoxFuture<'_, stigmer_engine::Result<Status>> {
        Box::pin(async move { self.client().await?.status().await })
    }

    fn tools(&self) -> BoxFuture<'_, stigmer_engine::Result<ToolReport>> {
        Box::pin(async move { self.client().await?.get(routes::TOOLS).await })
    }

    fn default_cwd(&self) -> Option<PathBuf> {
        self.default_cwd.clone()
    }
}
