//! The agent runner: an HTTP+JSON API on 127.0.0.1 that runs commands and streams their output.

pub mod api;
pub mod clients;
pub mod frames;
pub mod guard;
pub mod images;
mod mcp;
pub mod network;
pub mod reply;
pub mod usage;
pub mod workspaces;

use std::future::IntoFuture;
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::discovery::{load_or_create_token, Discovery, ServerLock};
use crate::error::{Error, ErrorCode, Result};
use crate::events::EventBus;
use crate::execute::container::Sandbox;
use crate::paths::Paths;
use crate::runs::RunRegistry;
use crate::settings::Settings;
use crate::tools::ToolReport;

/// Request bodies above this are refused (BODY_TOO_LARGE).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// How long a stopping server waits for cancelled runs to end.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often idle sandbox containers are checked against their TTL.
const REAP_EVERY: Duration = Duration::from_secs(5);
/// How long a stopping server waits, once its runs ended, for clients to read what is left.
const CONNECTION_GRACE: Duration = Duration::from_secs(2);

pub struct AppState {
    pub paths: Paths,
    pub token: String,
    pub url: String,
    pub port: u16,
    pub started: Instant,
    pub started_at: u64,
    pub settings: RwLock<Settings>,
    /// Serializes config-file writes from concurrent mode changes.
    pub settings_write_lock: tokio::sync::Mutex<()>,
    pub runs: Arc<RunRegistry>,
    /// Commands waiting for the user's approval.
    pub approvals: Arc<crate::approvals::Approvals>,
    pub sandbox: Arc<Sandbox>,
    pub bus: EventBus,
    pub tools: tokio::sync::Mutex<Option<ToolReport>>,
    pub shutdown: CancellationToken,
    /// Requests and streams in flight, and when the server was last used.
    pub usage: usage::Usage,
    /// The process whose end stops this server at once (see [`Discovery::lifeline`]).
    pub lifeline: Option<u32>,
}

impl AppState {
    pub fn settings(&self) -> Settings {
        self.settings.read().clone()
    }

    fn discovery(&self) -> Discovery {
        let s = self.settings();
        Discovery {
            pid: std::process::id(),
            url: self.url.clone(),
            port: self.port,
            version: crate::VERSION.to_string(),
            mode: s.mode,
            image: s.sandbox_image,
            started_at: self.started_at,
            log_dir: self.paths.log_dir.clone(),
            lifeline: self.lifeline,
        }
    }

    pub fn write_discovery(&self) {
        if let Err(e) = self.discovery().write(&self.paths) {
            tracing::error!("{e}");
        }
    }
}

pub struct ServeOptions {
    pub paths: Paths,
    pub settings: Settings,
    /// 0 picks any free port.
    pub port: u16,
    /// Also log to stderr (foreground use).
    pub log_to_stderr: bool,
    /// Warnings from settings resolution, logged once logging is up.
    pub warnings: Vec<String>,
    /// Cancelled from outside to stop the server (like SIGTERM).
    pub stop: Option<CancellationToken>,
    /// With `stop`: once it is cancelled, keep serving while clients use the server, and stop
    /// only after this long unused (no request, no open stream, no run).
    pub linger: Option<Duration>,
    /// The process whose end cancels `stop` (written to the discovery file when there is no
    /// linger, so no client attaches to a server that is about to stop).
    pub lifeline: Option<u32>,
}

/// Build the router (used by [`serve`] and by tests that want an in-process server).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/status", get(api::status))
        .route("/v1/mode", get(api::get_mode).put(api::put_mode))
        .route("/v1/tools", get(api::tools))
        .route("/v1/sandbox", get(api::sandbox))
        .route("/v1/sandbox/cancel-download", post(api::cancel_download))
        .route("/v1/sandbox/network", get(network::get).post(network::set))
        .route("/v1/sandbox/network/allow", post(network::allow))
        .route("/v1/sandbox/network/disallow", post(network::disallow))
        .route("/v1/sandbox/images", get(images::list))
        .route("/v1/sandbox/images/remove", post(images::remove))
        .route("/v1/sandbox/images/remake", post(images::remake))
        .route("/v1/sandbox/images/local", get(images::local))
        .route("/v1/sandbox/images/build", post(images::build))
        .route(
            "/v1/workspaces",
            get(workspaces::list).post(workspaces::add),
        )
        .route("/v1/workspaces/remove", post(workspaces::remove))
        .route("/v1/runs", post(api::start_run).get(api::list_runs))
        .route("/v1/runs/{id}", get(api::get_run))
        .route("/v1/runs/{id}/output", get(api::run_output))
        .route("/v1/runs/{id}/cancel", post(api::cancel_run))
        .route("/v1/runs/stop-all", post(api::stop_all_runs))
        .route("/v1/clients", get(clients::list).post(clients::set))
        .route("/v1/approvals", get(clients::pending))
        .route("/v1/approvals/{id}", post(clients::answer))
        .route("/v1/events", get(api::events))
        .route("/v1/openapi.json", get(api::openapi))
        .route("/v1/shutdown", post(api::shutdown))
        .nest_service("/mcp", mcp::http_service(state.clone()))
        .fallback(reply::not_found)
        .method_not_allowed_fallback(reply::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            usage::track,
        ))
        .with_state(state)
}

/// Run the server until it is asked to stop (API, SIGTERM or Ctrl-C). Writes the discovery
/// file once it accepts connections and removes it on the way out.
pub async fn serve(opts: ServeOptions) -> Result<()> {
    let paths = opts.paths;
    // Before anything is written: logs, history, kept output and scratch are the user's alone.
    crate::private::make_private(&paths);
    let lock = ServerLock::acquire(&paths)?;
    let token = load_or_create_token(&paths)?;
    crate::execute::detach_from_terminal();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::ServerUnavailable,
                format!(
                    "cannot listen on 127.0.0.1:{}: {e}; choose another port with --port (0 picks a free one)",
                    opts.port
                ),
            )
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))?
        .port();
    let bus = EventBus::default();
    let sandbox = Sandbox::new(
        &paths,
        &format!("server-{}", std::process::id()),
        bus.clone(),
    );
    let _log_guard = crate::logging::init(&paths.log_dir, opts.log_to_stderr, bus.clone())?;
    for w in &opts.warnings {
        tracing::warn!("{w}");
    }
    let spool = crate::spool::Spool::open(&paths)
        .map_err(|e| tracing::warn!("run output will not be kept: {}", e.message))
        .ok();
    let history_file = paths.history_file();
    let (history, opened) = crate::history::History::open(
        opts.settings.history_keep.then_some(history_file.as_path()),
        opts.settings.retention(),
    );
    for w in &opened.warnings {
        tracing::warn!("{w}");
        eprintln!("stigmer: warning: {w}");
    }
    let state = Arc::new(AppState {
        token,
        url: format!("http://127.0.0.1:{port}"),
        port,
        started: Instant::now(),
        started_at: crate::util::now_secs(),
        settings: RwLock::new(opts.settings),
        settings_write_lock: tokio::sync::Mutex::new(()),
        runs: RunRegistry::new(bus.clone(), history, spool),
        approvals: crate::approvals::Approvals::new(bus.clone()),
        sandbox,
        bus,
        tools: tokio::sync::Mutex::new(None),
        shutdown: CancellationToken::new(),
        usage: usage::Usage::default(),
        lifeline: opts.lifeline.filter(|_| opts.linger.is_none()),
        paths,
    });
    spawn_signal_watch(state.shutdown.clone());
    if let Some(stop) = opts.stop {
        let state = state.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            if let Some(linger) = opts.linger {
                tracing::info!(
                    "the process that started the server is gone; stopping once unused for {} s",
                    linger.as_secs()
                );
                state.usage.wait_unused(linger, &state.runs).await;
            }
            state.shutdown.cancel();
        });
    }
    let app = router(state.clone());
    state.discovery().write(&state.paths)?;
    let s = state.settings();
    tracing::info!(url = %state.url, mode = %s.mode, version = crate::VERSION, "server ready");
    spawn_sandbox_housekeeping(state.clone());
    // A stopping server takes new clients no more: the next one starts a server of its own,
    // which waits for this one to let go of the lock.
    let stopping = state.clone();
    tokio::spawn(async move {
        stopping.shutdown.cancelled().await;
        Discovery::remove_own(&stopping.paths);
    });

    let stop = state.shutdown.clone();
    let runs = state.runs.clone();
    let approvals = state.approvals.clone();
    // No Nagle: a run's stream is many small writes that must not wait for ACKs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop.cancelled().await;
        // Runs end first, so their streams finish and connections can close.
        runs.close();
        approvals.close();
    });
    // A client that stops reading must not keep the server from stopping.
    let (stop, runs) = (state.shutdown.clone(), state.runs.clone());
    let deadline = async move {
        stop.cancelled().await;
        runs.wait_idle(STOP_GRACE).await;
        tokio::time::sleep(CONNECTION_GRACE).await;
    };
    let result = tokio::select! {
        r = serving.into_future() => r,
        _ = deadline => {
            tracing::warn!("clients still connected after the runs ended; closing their connections");
            Ok(())
        }
    };
    state.runs.close();
    state.runs.wait_idle(STOP_GRACE).await;
    let removed = state.sandbox.reap(true).await;
    if removed > 0 {
        tracing::info!(removed, "sandbox containers removed on stop");
    }
    Discovery::remove_own(&state.paths);
    tracing::info!("server stopped");
    drop(lock);
    result.map_err(|e| Error::internal(format!("server error: {e}")))
}

/// After start: remove containers a crashed server left (when an engine is there at all), then
/// remove containers idle past their TTL, until the server stops.
fn spawn_sandbox_housekeeping(state: Arc<AppState>) {
    tokio::spawn(async move {
        match state.sandbox.remove_orphans().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "removed sandbox containers left by an earlier server"
            ),
            Err(e) => tracing::debug!("no orphan check: {}", e.message),
        }
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(REAP_EVERY) => {}
            }
            state.sandbox.reap(false).await;
        }
    });
}

fn spawn_signal_watch(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            // Later signals are absorbed: the stop is already bounded in time.
            loop {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
                    _ = int.recv() => tracing::info!("interrupt received, stopping"),
                }
                shutdown.cancel();
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        }
    });
}
