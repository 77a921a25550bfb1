//! The one client of the stigmer server's HTTP API, used by the CLI, `stigmer mcp` and the
//! desktop app: it finds the running server (discovery file, lock, token), sends requests with
//! the token, turns answers into the protocol's types and errors into the API's errors, and
//! decodes a run's stream (binary frames) and the event stream (NDJSON).

pub mod desktop;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use stigmer_protocol::clients::{Approval, Decision, DecisionBody};
use stigmer_protocol::events::Event;
use stigmer_protocol::frames;
use stigmer_protocol::local::{read_token, Discovery, Paths};
use stigmer_protocol::replies::{Cancelled, ErrorBody, Stopped};
use stigmer_protocol::routes;
use stigmer_protocol::run::{
    OutputPage, RunList, RunQuery, RunRequest, RunStreamLine, RunSummary, Stream,
};
use stigmer_protocol::status::{ModeChange, ModeView, Status};
use stigmer_protocol::{Error, ErrorCode, Result};

#[derive(Clone)]
pub struct Client {
    pub discovery: Discovery,
    base: String,
    token: String,
    http: reqwest::Client,
}

/// One item of a run's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum RunItem {
    Started(RunSummary),
    /// Output bytes, exactly as the command wrote them.
    Output(Stream, Bytes),
    Finished(RunSummary),
    Heartbeat,
}

impl Client {
    /// A client for the server running for `paths`, or None when none runs.
    pub fn find(paths: &Paths) -> Result<Option<Client>> {
        let Some(discovery) = Discovery::find_running(paths) else {
            return Ok(None);
        };
        let token = read_token(paths)?;
        // Loopback only: a proxy in the environment must never see the token.
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Some(Client {
            base: discovery.url.trim_end_matches('/').to_string(),
            discovery,
            token,
            http,
        }))
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub fn pid(&self) -> u32 {
        self.discovery.pid
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorCode::ServerUnavailable,
            format!(
                "the stigmer server at {} (pid {}) is not answering ({e})",
                self.base, self.discovery.pid
            ),
        )
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Send, and turn a non-2xx answer into the API's error.
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await.map_err(|e| self.unavailable(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        Err(api_error(status.as_u16(), &body))
    }

    async fn json<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T> {
        let resp = self.send(rb).await?;
        resp.json().await.map_err(|e| self.unavailable(e))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.json(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// A POST with a body whose answer is only its status (202 Accepted and the like).
    pub async fn post_json_accepted(&self, path: &str, body: &impl Serialize) -> Result<()> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
            .map(|_| ())
    }

    /// A POST without a body whose answer does not matter (cancel, shutdown).
    pub async fn post_empty(&self, path: &str) -> Result<()> {
        self.send(self.request(reqwest::Method::POST, path))
            .await
            .map(|_| ())
    }

    pub async fn status(&self) -> Result<Status> {
        self.get(routes::STATUS).await
    }

    pub async fn set_mode(&self, change: &ModeChange) -> Result<ModeView> {
        self.json(
            self.request(reqwest::Method::PUT, routes::MODE)
                .json(change),
        )
        .await
    }

    /// Stop one run (its whole process tree); `cancelled` says whether it was still going.
    pub async fn cancel_run(&self, id: &str) -> Result<Cancelled> {
        if !valid_run_id(id) {
            return Err(Error::run_not_found(id));
        }
        let path = routes::with_id(routes::RUN_CANCEL, id);
        self.json(self.request(reqwest::Method::POST, &path)).await
    }

    /// Stop every running command for the user: how many were stopped.
    pub async fn stop_all_runs(&self) -> Result<u64> {
        let answer: Stopped = self
            .json(self.request(reqwest::Method::POST, routes::STOP_ALL))
            .await?;
        Ok(answer.stopped)
    }

    /// Runs from the history, newest first.
    pub async fn list_runs(&self, query: &RunQuery) -> Result<RunList> {
        self.json(
            self.request(reqwest::Method::GET, routes::RUNS)
                .query(query),
        )
        .await
    }

    /// One run's record.
    pub async fn get_run(&self, id: &str) -> Result<RunSummary> {
        if !valid_run_id(id) {
            return Err(Error::run_not_found(id));
        }
        self.get(&routes::with_id(routes::RUN, id)).await
    }

    /// What a run changed in its folder.
    pub async fn run_changes(&self, id: &str) -> Result<stigmer_protocol::changes::RunChanges> {
        if !valid_run_id(id) {
            return Err(Error::run_not_found(id));
        }
        self.get(&routes::with_id(routes::RUN_CHANGES, id)).await
    }

    /// What a run changed, as diffs of its text files.
    pub async fn run_diff(&self, id: &str) -> Result<stigmer_protocol::changes::RunDiff> {
        if !valid_run_id(id) {
            return Err(Error::run_not_found(id));
        }
        self.get(&routes::with_id(routes::RUN_DIFF, id)).await
    }

    /// Put back what a run changed (the user's doing: agents have no undo).
    pub async fn undo_run(
        &self,
        id: &str,
        later: stigmer_protocol::changes::Later,
    ) -> Result<stigmer_protocol::changes::UndoReport> {
        if !valid_run_id(id) {
            return Err(Error::run_not_found(id));
        }
        let body = stigmer_protocol::changes::UndoRequest { later };
        self.post(&routes::with_id(routes::RUN_UNDO, id), &body)
            .await
    }

    /// A page of a run's whole output.
    pub async fn run_output(
        &self,
        id: &str,
        stream: Stream,
        offset: u64,
        limit: u64,
    ) -> Result<OutputPage> {
        if !valid_run_id(id) {
            return Err(Error::run_not_found(id));
        }
        self.get(&format!(
            "{}?stream={}&offset={offset}&limit={limit}",
            routes::with_id(routes::RUN_OUTPUT, id),
            stream.name()
        ))
        .await
    }

    /// Start a run; its stream comes in binary frames (raw output bytes). Dropping the stream
    /// hangs up, which cancels the run.
    pub async fn start_run(&self, request: &RunRequest) -> Result<RunStream> {
        let resp = self
            .send(
                self.request(reqwest::Method::POST, routes::RUNS)
                    .header(reqwest::header::ACCEPT, frames::MEDIA_TYPE)
                    .json(request),
            )
            .await?;
        let id = resp
            .headers()
            .get("x-run-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(RunStream {
            id,
            body: Box::pin(resp.bytes_stream()),
            decoder: frames::Decoder::default(),
        })
    }

    /// Everything that happens in the server, until it stops.
    pub async fn events(&self) -> Result<EventStream> {
        self.event_stream(routes::EVENTS).await
    }

    /// [`Client::events`] for an app that asks the user to approve commands: while this
    /// stream is open, commands of clients whose rule is `ask` wait for its answer.
    pub async fn events_as_approver(&self) -> Result<EventStream> {
        self.event_stream(&format!("{}?approver=true", routes::EVENTS))
            .await
    }

    /// The user's answer to a command that waits.
    pub async fn answer_approval(&self, id: &str, decision: Decision) -> Result<Approval> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("no command waits for approval with id `{id}`"),
            ));
        }
        self.post(
            &routes::with_id(routes::APPROVAL, id),
            &DecisionBody { decision },
        )
        .await
    }

    async fn event_stream(&self, path: &str) -> Result<EventStream> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        Ok(EventStream {
            body: Box::pin(resp.bytes_stream()),
            pending: Vec::new(),
        })
    }
}

type Body =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + Sync>>;

fn lost(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::ServerUnavailable,
        format!("lost the connection to the server during the run ({e})"),
    )
}

/// A run's stream, decoded.
pub struct RunStream {
    id: Option<String>,
    body: Body,
    decoder: frames::Decoder,
}

impl RunStream {
    /// The run's id (known before any output).
    pub fn run_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The next item; None once the stream ended after `Finished`, an error when it ended
    /// before.
    pub async fn next(&mut self) -> Result<Option<RunItem>> {
        loop {
            if let Some((kind, payload)) = self.decoder.next_frame() {
                return Ok(Some(match kind {
                    frames::KIND_STDOUT => RunItem::Output(Stream::Stdout, payload),
                    frames::KIND_STDERR => RunItem::Output(Stream::Stderr, payload),
                    _ => match serde_json::from_slice::<RunStreamLine>(&payload)
                        .map_err(|e| lost(format!("unreadable stream frame: {e}")))?
                    {
                        RunStreamLine::Started { run } => RunItem::Started(*run),
                        RunStreamLine::Finished { run } => RunItem::Finished(*run),
                        RunStreamLine::Heartbeat | RunStreamLine::Output { .. } => {
                            RunItem::Heartbeat
                        }
                    },
                }));
            }
            match self.body.next().await {
                Some(bytes) => self.decoder.push(&bytes.map_err(lost)?),
                None => return Ok(None),
            }
        }
    }

    /// Wait for the run's end, skipping its output (the server keeps it): the final summary.
    pub async fn finish(mut self) -> Result<RunSummary> {
        while let Some(item) = self.next().await? {
            if let RunItem::Finished(run) = item {
                return Ok(run);
            }
        }
        Err(lost("the stream ended before the run finished"))
    }
}

/// The server's event stream, decoded.
pub struct EventStream {
    body: Body,
    pending: Vec<u8>,
}

impl EventStream {
    /// The next event; None when the server closed the stream. Lines that are not events of
    /// this version are skipped.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                if let Ok(event) = serde_json::from_slice::<Event>(&line) {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.body.next().await {
                Some(bytes) => self.pending.extend_from_slice(&bytes.map_err(lost)?),
                None => return Ok(None),
            }
        }
    }
}

/// Run ids are `run_` and hex: anything else is no run (and never a path).
pub fn valid_run_id(id: &str) -> bool {
    id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The API's `{"error": {...}}` body as an [`Error`].
pub fn api_error(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(w) => w.error,
        Err(_) => Error::new(
            ErrorCode::ServerUnavailable,
            format!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        ),
    }
}
