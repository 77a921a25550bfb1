//! The HTTP+JSON API. Described by `openapi.json` (served at `/v1/openapi.json`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::reply::{ApiError, ApiJson, ApiQuery};
use super::{frames, AppState};
use stigmer_protocol::replies::{Cancelled, Stopped, Stopping};
use stigmer_protocol::run::{
    OutputPage, RunList, RunQuery, RunRequest, RunStreamLine, RunSummary, Stream,
};
use stigmer_protocol::status::{ModeChange, ModeView, SandboxStatus, Status, ToolReport};

use crate::error::{Error, ErrorCode};
use crate::events::Event;
use crate::execute::container::SandboxSpec;
use crate::execute::Chunk;
use crate::runs::RunEvent;
use crate::settings::{self, Key};
use crate::tools::{detect, user_path};

/// Bytes of output in one page when the client does not say.
pub const DEFAULT_PAGE: u64 = 64 * 1024;
/// Streams send a heartbeat line after this long without anything else.
const HEARTBEAT: Duration = Duration::from_secs(2);

type ApiResult<T> = Result<T, ApiError>;

/// Engine, image and containers of sandbox mode (for the configured image).
pub async fn sandbox(State(state): State<Arc<AppState>>) -> Json<SandboxStatus> {
    let spec = SandboxSpec::from_settings(&state.settings());
    Json(state.sandbox.status(&spec).await)
}

/// Cancel the sandbox image download (or build) in progress.
pub async fn cancel_download(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Cancelled>) {
    state.sandbox.cancel_downloads();
    let cancelled = Cancelled {
        id: None,
        cancelled: true,
    };
    (StatusCode::ACCEPTED, Json(cancelled))
}

pub async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

pub async fn status(State(state): State<Arc<AppState>>) -> Json<Status> {
    Json(status_of(&state).await)
}

pub async fn status_of(state: &AppState) -> Status {
    let s = state.settings();
    let target = crate::execute::target(&s, None, None, &state.sandbox);
    let engine = state.sandbox.engine_state().await;
    let protection = crate::execute::protected::protection().await;
    let command_env = s.command_env();
    // Counted on disk once (then kept up to date): off the async threads.
    let runs = state.runs.clone();
    let kept_contents_bytes = tokio::task::spawn_blocking(move || runs.kept_contents_bytes())
        .await
        .ok()
        .flatten();
    Status {
        version: crate::VERSION.to_string(),
        pid: std::process::id(),
        url: state.url.clone(),
        uptime_secs: state.started.elapsed().as_secs_f64(),
        mode: s.mode,
        tier: s.tier(),
        image: s.sandbox_image,
        engine,
        active_runs: state.runs.active_count(),
        config_file: state.paths.config_file(),
        data_dir: state.paths.data_dir.clone(),
        log_dir: state.paths.log_dir.clone(),
        command_env,
        default_cwd: target.default_cwd(),
        workspaces: s.sandbox_workspaces,
        confinement: target.confinement(),
        allowed_folders: target.allowed_folders(),
        network: s.sandbox_network,
        protection,
        kept_contents_bytes,
    }
}

fn mode_view(s: &settings::Settings) -> Json<ModeView> {
    Json(ModeView {
        mode: s.mode,
        image: s.sandbox_image.clone(),
        tier: s.tier(),
    })
}

pub async fn get_mode(State(state): State<Arc<AppState>>) -> Json<ModeView> {
    mode_view(&state.settings())
}

/// Change the mode and/or the image live. Validated first, persisted to the config file (only
/// the fields given), then applied; on any error nothing changes.
pub async fn put_mode(
    State(state): State<Arc<AppState>>,
    ApiJson(change): ApiJson<ModeChange>,
) -> ApiResult<Json<ModeView>> {
    change_mode(&state, &change).await
}

/// Validate, save and apply a mode change (`PUT /v1/mode`, and a custom image once built).
pub(super) async fn change_mode(
    state: &Arc<AppState>,
    change: &ModeChange,
) -> ApiResult<Json<ModeView>> {
    let mut values = Vec::new();
    if let Some(mode) = change.mode {
        values.push(settings::Value::Mode(mode));
    }
    if let Some(raw) = &change.image {
        values.push(Key::SandboxImage.parse(raw, "image")?);
    }
    if values.is_empty() {
        return Err(ApiError(Error::new(
            ErrorCode::InvalidRequest,
            "give `mode` (`local` or `sandbox`), `image`, or both",
        )));
    }
    let s = {
        let _write = state.settings_write_lock.lock().await;
        let (mut file, _) = settings::ConfigFile::load(&state.paths.config_file())?;
        for v in &values {
            file.set(v);
        }
        file.save()?;
        {
            let mut s = state.settings.write();
            for v in values {
                s.apply(v);
            }
        }
        state.write_discovery();
        state.settings()
    };
    tracing::info!(mode = %s.mode, image = %s.sandbox_image, "mode changed");
    state.bus.publish(Event::ModeChanged {
        mode: s.mode,
        image: s.sandbox_image.clone(),
        tier: s.tier(),
    });
    // A sandbox tier starts preparing its image now, not at the first command (which then
    // waits for this same attempt). Progress and the outcome are events; nothing else waits.
    // Back to local: a download or build still going is of no use any more.
    if s.mode == settings::Mode::Sandbox {
        let (sandbox, spec) = (state.sandbox.clone(), SandboxSpec::from_settings(&s));
        tokio::spawn(async move {
            if let Err(e) = sandbox.ensure_image(&spec).await {
                tracing::info!("the sandbox image is not ready: {}", e.message);
            }
        });
    } else if change.mode.is_some() {
        state.sandbox.cancel_downloads();
    }
    Ok(mode_view(&s))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsQuery {
    #[serde(default)]
    pub refresh: bool,
}

pub async fn tools(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<ToolsQuery>,
) -> Json<ToolReport> {
    Json(tool_report(&state, q.refresh).await)
}

/// The tools on this machine, detected once and then cached until `refresh`.
pub async fn tool_report(state: &AppState, refresh: bool) -> ToolReport {
    let mut cache = state.tools.lock().await;
    match &*cache {
        Some(report) if !refresh => report.clone(),
        _ => {
            let (path, from_login) = user_path();
            let report = detect(path, *from_login).await;
            *cache = Some(report.clone());
            report
        }
    }
}

/// Start a run and stream its output. Every check happens before the command starts; a
/// refused request runs nothing. Hanging up cancels the run.
pub async fn start_run(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RunRequest>,
) -> ApiResult<Response> {
    let framing = Framing::from_headers(&headers);
    let started = super::clients::start(&state, body).await?;
    let body = stream::unfold(started.events, move |mut rx| async move {
        let event = tokio::select! {
            e = rx.recv() => Some(e?),
            _ = tokio::time::sleep(HEARTBEAT) => None,
        };
        let bytes = match &event {
            None => framing.json(&RunStreamLine::Heartbeat),
            Some(RunEvent::Started(run)) => framing.json(&RunStreamLine::Started {
                run: Box::new(run.clone()),
            }),
            Some(RunEvent::Output(chunk)) => framing.output(chunk),
            Some(RunEvent::Finished(run)) => framing.json(&RunStreamLine::Finished {
                run: Box::new(run.clone()),
            }),
        };
        Some((Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    Ok((
        [
            (CONTENT_TYPE, framing.content_type()),
            (CACHE_CONTROL, "no-cache"),
            (
                axum::http::HeaderName::from_static("x-run-id"),
                started.id.as_str(),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// How a stream is framed, chosen by the request's `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// One JSON object per line (the default).
    Ndjson,
    /// Server-Sent Events: `data: <json>` and a blank line.
    Sse,
    /// Binary frames with raw output bytes (see [`frames`]).
    Frames,
}

impl Framing {
    fn from_headers(headers: &HeaderMap) -> Framing {
        let accept = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if accept.contains(frames::MEDIA_TYPE) {
            Framing::Frames
        } else if accept.contains("text/event-stream") {
            Framing::Sse
        } else {
            Framing::Ndjson
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Framing::Ndjson => "application/x-ndjson",
            Framing::Sse => "text/event-stream",
            Framing::Frames => frames::MEDIA_TYPE,
        }
    }

    fn json<T: Serialize>(self, value: &T) -> Bytes {
        match self {
            Framing::Ndjson => encode_line(value, false),
            Framing::Sse => encode_line(value, true),
            // Serializing our own types cannot fail.
            Framing::Frames => frames::encode(
                frames::KIND_JSON,
                &serde_json::to_vec(value).unwrap_or_default(),
            ),
        }
    }

    fn output(self, chunk: &Chunk) -> Bytes {
        match self {
            Framing::Frames => {
                let kind = match chunk.stream {
                    Stream::Stdout => frames::KIND_STDOUT,
                    Stream::Stderr => frames::KIND_STDERR,
                };
                frames::encode(kind, &chunk.data)
            }
            _ => self.json(&RunStreamLine::Output {
                stream: chunk.stream,
                data: base64::engine::general_purpose::STANDARD.encode(&chunk.data),
            }),
        }
    }
}

fn encode_line<T: Serialize>(value: &T, sse: bool) -> Bytes {
    let mut out = Vec::with_capacity(128);
    if sse {
        out.extend_from_slice(b"data: ");
    }
    // Serializing our own types cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(if sse { b"\n\n" } else { b"\n" });
    Bytes::from(out)
}

pub async fn list_runs(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> ApiResult<Json<RunList>> {
    let limit = q.limit.unwrap_or(50);
    if limit > crate::runs::HISTORY_LEN {
        return Err(ApiError(Error::new(
            ErrorCode::InvalidRequest,
            format!(
                "limit is at most {} runs a page; `before` gives the next page",
                crate::runs::HISTORY_LEN
            ),
        )));
    }
    let query = crate::history::Query {
        limit,
        before: q.before,
        client: q.client,
        state: q.state,
        text: q.q,
    };
    let runs = state.runs.list(&query)?;
    let next_before = (runs.len() == limit)
        .then(|| runs.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(RunList { runs, next_before }))
}

pub async fn get_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunSummary>> {
    state
        .runs
        .get(&id)?
        .map(Json)
        .ok_or_else(|| ApiError(Error::run_not_found(&id)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputQuery {
    stream: Option<Stream>,
    offset: Option<u64>,
    limit: Option<u64>,
}

/// A page of a run's whole output (what the head and tail of the summary left out, too).
pub async fn run_output(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<OutputQuery>,
) -> ApiResult<Json<OutputPage>> {
    let page = state.runs.read_output(
        &id,
        q.stream.unwrap_or(Stream::Stdout),
        q.offset.unwrap_or(0),
        q.limit.unwrap_or(DEFAULT_PAGE),
    )?;
    Ok(Json(page))
}

/// What a run changed in its folder (or why it was not recorded).
pub async fn run_changes(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<stigmer_protocol::changes::RunChanges>> {
    Ok(Json(state.runs.changes(&id)?))
}

/// Put back what a run changed (only the user: agents reach the API through MCP, which has no
/// undo).
pub async fn undo_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<stigmer_protocol::changes::UndoRequest>,
) -> ApiResult<Json<stigmer_protocol::changes::UndoReport>> {
    Ok(Json(state.runs.undo(&id, body.later).await?))
}

/// What a run changed, as readable diffs of its text files.
pub async fn run_diff(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<stigmer_protocol::changes::RunDiff>> {
    let runs = state.runs.clone();
    let diff = tokio::task::spawn_blocking(move || runs.diff(&id))
        .await
        .map_err(|e| Error::internal(format!("the diff failed: {e}")))??;
    Ok(Json(diff))
}

pub async fn cancel_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    // Whoever asks here is the user (the window, the tray, `stigmer runs stop`, Ctrl-C in
    // `stigmer run`): the run's record and its client say so.
    let was_running = state.runs.stop(&id)?;
    let status = if was_running {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let cancelled = Cancelled {
        id: Some(id),
        cancelled: was_running,
    };
    Ok((status, Json(cancelled)).into_response())
}

/// Stop every running command for the user (the tray's "Stop all running commands").
pub async fn stop_all_runs(State(state): State<Arc<AppState>>) -> Json<Stopped> {
    let stopped = state.runs.stop_all();
    tracing::info!(stopped, "the user stopped every running command");
    Json(Stopped {
        stopped: stopped as u64,
    })
}

/// Everything that happens in the server, as NDJSON or SSE, until the server stops.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// The caller can ask the user to approve commands (the desktop app).
    #[serde(default)]
    approver: bool,
}

pub async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Response {
    // The event stream is JSON only: binary frames are for a run's own output.
    let framing = match Framing::from_headers(&headers) {
        Framing::Sse => Framing::Sse,
        _ => Framing::Ndjson,
    };
    let rx = state.bus.subscribe();
    let shutdown = state.shutdown.clone();
    // Counted while the stream is open: the app that reads it can be asked.
    let approver = q.approver.then(|| state.approvals.approver());
    let body = stream::unfold(
        (rx, shutdown, approver),
        move |(mut rx, shutdown, approver)| async move {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return None,
                e = rx.recv() => match e {
                    Ok(e) => e,
                    Err(RecvError::Lagged(missed)) => Event::Lagged { missed },
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(HEARTBEAT) => Event::Heartbeat,
            };
            Some((
                Ok::<_, std::convert::Infallible>(framing.json(&event)),
                (rx, shutdown, approver),
            ))
        },
    );
    (
        [
            (CONTENT_TYPE, framing.content_type()),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

pub async fn shutdown(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Stopping>) {
    tracing::info!("shutdown requested through the API");
    state.shutdown.cancel();
    (StatusCode::ACCEPTED, Json(Stopping { stopping: true }))
}
