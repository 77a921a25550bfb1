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
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use stigmer_protocol::routes::{self, Method};
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
    // Every route and method of the table, each with its handler ([`endpoint`]).
    let mut api = Router::new();
    for route in routes::ALL {
        let mut methods = MethodRouter::new();
        for m in route.methods {
            methods = methods.merge(endpoint(route.path, *m));
        }
        api = api.route(route.path, methods);
    }
    api.nest_service("/mcp", mcp::http_service(state.clone()))
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

/// The handler of one route and method of [`routes::ALL`]. A route in the table without a
/// handler stops the server at its start (every test that starts one would fail).
fn endpoint(path: &str, method: Method) -> MethodRouter<Arc<AppState>> {
    use routes::*;
    use Method::{Get, Post, Put};
    match (path, method) {
        (STATUS, Get) => get(api::status),
        (MODE, Get) => get(api::get_mode),
        (MODE, Put) => put(api::put_mode),
        (TOOLS, Get) => get(api::tools),
        (SANDBOX, Get) => get(api::sandbox),
        (CANCEL_DOWNLOAD, Post) => post(api::cancel_download),
        (NETWORK, Get) => get(network::get),
        (NETWORK, Post) => post(network::set),
        (NETWORK_ALLOW, Post) => post(network::allow),
        (NETWORK_DISALLOW, Post) => post(network::disallow),
        (IMAGES, Get) => get(images::list),
        (IMAGES_REMOVE, Post) => post(images::remove),
        (IMAGES_REMAKE, Post) => post(images::remake),
        (IMAGES_LOCAL, Get) => get(images::local),
        (IMAGES_BUILD, Post) => post(images::build),
        (WORKSPACES, Get) => get(workspaces::list),
        (WORKSPACES, Post) => post(workspaces::add),
        (WORKSPACES_REMOVE, Post) => post(workspaces::remove),
        (RUNS, Get) => get(api::list_runs),
        (RUNS, Post) => post(api::start_run),
        (RUN, Get) => get(api::get_run),
        (RUN_OUTPUT, Get) => get(api::run_output),
        (RUN_CHANGES, Get) => get(api::run_changes),
        (RUN_DIFF, Get) => get(api::run_diff),
        (RUN_UNDO, Post) => post(api::undo_run),
        (RUN_CANCEL, Post) => post(api::cancel_run),
        (STOP_ALL, Post) => post(api::stop_all_runs),
        (CLIENTS, Get) => get(clients::list),
        (CLIENTS, Post) => post(clients::set),
        (APPROVALS, Get) => get(clients::pending),
        (APPROVAL, Post) => post(clients::answer),
        (EVENTS, Get) => get(api::events),
        (OPENAPI, Get) => get(api::openapi),
        (SHUTDOWN, Post) => post(api::shutdown),
        _ => panic!("no handler for {method:?} {path}"),
    }
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
    // What runs change is kept beside the history, when the history is on disk.
    let recorder = (opts.settings.history_keep && opts.settings.history_changes).then(|| {
        crate::changes::record::Recorder::with_limits(
            paths.data_dir.join("changes"),
            opts.settings.changes_max_files as usize,
            opts.settings.changes_max_file_bytes(),
        )
    });
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
        runs: RunRegistry::new(bus.clone(), history, spool, recorder),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document describes exactly the routes and methods the router serves (the
    /// router is built from the same table), and every route has a handler.
    #[test]
    fn the_openapi_document_describes_every_route_and_method() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut described = std::collections::BTreeSet::new();
        for (path, item) in paths {
            for m in ["get", "post", "put", "delete", "patch"] {
                if item.get(m).is_some() {
                    described.insert(format!("{m} {path}"));
                }
            }
        }
        let mut served = std::collections::BTreeSet::new();
        for route in routes::ALL {
            for m in route.methods {
                let _ = endpoint(route.path, *m); // panics when it has no handler
                served.insert(format!("{} {}", m.as_str(), route.path));
            }
        }
        assert_eq!(served, described);
    }
}
