//! The tools inside the server: runs go straight to the run registry, and the MCP endpoint is
//! served over Streamable HTTP at `/mcp`, behind the same Host, Origin and token checks as the
//! rest of the API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::api;
use super::AppState;
use crate::error::Error;
use crate::execute::BoxFuture;
use crate::execute::Stream;
use crate::mcp::{Backend, StigmerMcp};
use crate::runs::{RunEvent, RunSummary};
use crate::spool::OutputPage;
use stigmer_protocol::run::RunRequest;
use stigmer_protocol::status::{Status, ToolReport};

/// A session nobody used for this long is closed (the client starts a new one).
const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

pub struct InServer {
    pub state: Arc<AppState>,
}

impl Backend for InServer {
    fn run(&self, body: RunRequest) -> BoxFuture<'_, crate::error::Result<RunSummary>> {
        Box::pin(async move {
            let mut started = super::clients::start(&self.state, body).await?;
            // Output is kept by the registry; the reply only needs the summary at the end.
            while let Some(event) = started.events.recv().await {
                if let RunEvent::Finished(run) = event {
                    return Ok(run);
                }
            }
            Err(Error::internal(
                "the run ended without a result; see the server log",
            ))
        })
    }

    fn output(
        &self,
        run_id: String,
        stream: Stream,
        offset: u64,
        limit: u64,
    ) -> BoxFuture<'_, crate::error::Result<OutputPage>> {
        Box::pin(async move { self.state.runs.read_output(&run_id, stream, offset, limit) })
    }

    fn diff(
        &self,
        run_id: String,
    ) -> BoxFuture<'_, crate::error::Result<stigmer_protocol::changes::RunDiff>> {
        Box::pin(async move {
            let runs = self.state.runs.clone();
            tokio::task::spawn_blocking(move || runs.diff(&run_id))
                .await
                .map_err(|e| Error::internal(format!("the diff failed: {e}")))?
        })
    }

    fn status(&self) -> BoxFuture<'_, crate::error::Result<Status>> {
        Box::pin(async move { Ok(api::status_of(&self.state).await) })
    }

    fn tools(&self) -> BoxFuture<'_, crate::error::Result<ToolReport>> {
        Box::pin(async move { Ok(api::tool_report(&self.state, false).await) })
    }

    fn default_cwd(&self) -> Option<PathBuf> {
        None
    }
}

/// The `/mcp` endpoint: one MCP session per client, all on the server's runs.
pub fn http_service(
    state: Arc<AppState>,
) -> StreamableHttpService<StigmerMcp, LocalSessionManager> {
    let shutdown = state.shutdown.child_token();
    let backend: Arc<dyn Backend> = Arc::new(InServer { state });
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_IDLE);
    StreamableHttpService::new(
        move || Ok(StigmerMcp::new(backend.clone())),
        Arc::new(sessions),
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown),
    )
}
