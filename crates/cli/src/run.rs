//! `stigmer run`: through the running server when there is one, else in this process.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use stigmer_engine::events::EventBus;
use stigmer_engine::exec::{timeout_from_secs, CommandSpec, ExecOutcome, ExecRequest, Stream};
use stigmer_engine::paths::Paths;
use stigmer_engine::runner::{spawn_execute, Target};
use stigmer_engine::runs::{RunState, RunSummary};
use stigmer_engine::sandbox::Sandbox;
use stigmer_engine::server::frames;
use stigmer_engine::settings::{self, Mode, Overrides, Source};
use stigmer_engine::{Error, ErrorCode, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::client::Client;

/// Exit code for stigmer's own failures.
pub const OWN_ERROR: i32 = 125;
/// Exit code when our stdout was closed by the reader (like a shell's SIGPIPE death).
const BROKEN_PIPE: i32 = 141;

/// Everything the user asked for, validated.
struct Prepared {
    target: Target,
    /// Mode and image to send to the server: only when flag or environment chose them.
    chosen_mode: Option<Mode>,
    chosen_image: Option<String>,
    request: ExecRequest,
    /// Where `stigmer run` was started: a sandboxed run may work in it.
    session: Option<PathBuf>,
}

fn prepare(args: RunArgs, paths: &Paths) -> Result<Prepared> {
    let invalid = |m: String| Error::new(ErrorCode::InvalidRequest, m);
    let mut overrides = Overrides {
        mode: args.mode.clone(),
        image: args.image.clone(),
    };
    if args.image.is_some() {
        match args.mode.as_deref().map(str::parse::<Mode>) {
            Some(Ok(Mode::Local)) => {
                return Err(Error::new(
                    ErrorCode::InvalidSetting,
                    "--image applies to sandbox mode only; drop --mode local or --image",
                ))
            }
            None => overrides.mode = Some("sandbox".into()),
            _ => {}
        }
    }
    let resolved = settings::resolve(paths, &overrides)?;
    for w in &resolved.warnings {
        eprintln!("stigmer: warning: {w}");
    }
    let chosen = |key| matches!(resolved.sources[&key], Source::Flag | Source::Env);
    let s = resolved.settings;
    let command = match (args.shell, args.argv.is_empty()) {
        (Some(shell), true) => CommandSpec::Shell(shell),
        (None, false) => CommandSpec::Argv(args.argv),
        _ => {
            return Err(invalid(
                "give either -c 'COMMAND' or -- PROGRAM [ARGS]".into(),
            ))
        }
    };
    let cwd = resolve_cwd(args.cwd)?;
    let mut env = BTreeMap::new();
    for pair in args.env {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_string(), v.to_string());
            }
            _ => return Err(invalid(format!("--env `{pair}` must look like KEY=VALUE"))),
        }
    }
    let timeout = args
        .timeout
        .map(|t| timeout_from_secs(t, "--timeout"))
        .transpose()?;
    let request = ExecRequest {
        unset_env: Vec::new(),
        command,
        cwd,
        env,
        timeout,
    };
    request.validate()?;
    let session = std::env::current_dir().ok();
    Ok(Prepared {
        chosen_mode: chosen(settings::Key::Mode).then_some(s.mode),
        chosen_image: chosen(settings::Key::SandboxImage).then(|| s.sandbox_image.clone()),
        target: Target::from_settings(&s).with_session_workspace(session.clone()),
        request,
        session,
    })
}

/// The working directory as an absolute path (relative ones are taken from here).
fn resolve_cwd(cwd: Option<PathBuf>) -> Result<PathBuf> {
    let here = std::env::current_dir().map_err(|e| {
        Error::new(
            ErrorCode::CwdNotFound,
            format!("the current directory is not usable ({e}); pass --cwd DIR"),
        )
    })?;
    let path = match cwd {
        None => return Ok(here),
        Some(p) if p.is_absolute() => p,
        Some(p) => here.join(p),
    };
    std::fs::canonicalize(&path).map_err(|e| {
        Error::new(
            ErrorCode::CwdNotFound,
            format!(
                "the working directory {} does not exist ({e})",
                path.display()
            ),
        )
    })
}

/// Writes the command's output to ours, exactly. Remembers a closed stdout.
struct Output {
    broken: bool,
}

impl Output {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        if self.broken {
            return;
        }
        let result = match stream {
            Stream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(data).and_then(|_| o.flush())
            }
            Stream::Stderr => {
                let mut e = std::io::stderr().lock();
                e.write_all(data).and_then(|_| e.flush())
            }
        };
        if result.is_err() {
            self.broken = true;
        }
    }
}

pub async fn run(args: RunArgs, paths: &Paths) -> i32 {
    let no_server = args.no_server;
    let prepared = match prepare(args, paths) {
        Ok(p) => p,
        Err(e) => return own_error(&e),
    };
    let client = if no_server {
        None
    } else {
        match Client::find(paths) {
            Ok(c) => c,
            Err(e) => return own_error(&e),
        }
    };
    let result = match client {
        Some(client) => through_server(&client, prepared).await,
        None => in_process(prepared, paths).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => own_error(&e),
    }
}

fn own_error(e: &Error) -> i32 {
    eprintln!("stigmer: {} [{}]", e.message, e.code);
    OWN_ERROR
}

async fn in_process(p: Prepared, paths: &Paths) -> Result<i32> {
    let bus = EventBus::default();
    let sandbox = Sandbox::new(paths, &format!("cli-{}", std::process::id()), bus.clone());
    p.target
        .admit(&sandbox, &p.request, Some("stigmer-cli"))
        .await?;
    let interrupt = Interrupt::watch();
    let progress = crate::sandbox::show_image_progress(bus.subscribe());
    let (tx, mut rx) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let exec = spawn_execute(p.target, p.request, tx, cancel.clone(), sandbox.clone());
    let mut out = Output { broken: false };
    loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(c) => {
                    out.write(c.stream, &c.data);
                    if out.broken { cancel.cancel(); }
                }
                None => break,
            },
            _ = interrupt.token.cancelled(), if !cancel.is_cancelled() => cancel.cancel(),
        }
    }
    let outcome = exec
        .await
        .map_err(|e| Error::internal(format!("run task failed: {e}")));
    progress.abort();
    // Without a server nothing would remove the container later.
    sandbox.reap(true).await;
    Ok(exit_code(&outcome??, out.broken, &interrupt))
}

/// SIGINT, SIGTERM and SIGHUP (Ctrl-C on Windows) while a run is going: the command must not
/// outlive us. Handlers are installed once, before the run starts, so no signal is missed.
struct Interrupt {
    token: CancellationToken,
    signal: Arc<AtomicI32>,
}

impl Interrupt {
    fn watch() -> Interrupt {
        let token = CancellationToken::new();
        let signal = Arc::new(AtomicI32::new(0));
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal as listen, SignalKind};
            for (kind, number) in [
                (SignalKind::interrupt(), libc::SIGINT),
                (SignalKind::terminate(), libc::SIGTERM),
                (SignalKind::hangup(), libc::SIGHUP),
            ] {
                if let Ok(mut stream) = listen(kind) {
                    let (token, signal) = (token.clone(), signal.clone());
                    tokio::spawn(async move {
                        if stream.recv().await.is_some() {
                            signal.store(number, Ordering::SeqCst);
                            token.cancel();
                        }
                    });
                }
            }
        }
        #[cfg(not(unix))]
        {
            let (token, signal) = (token.clone(), signal.clone());
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    signal.store(2, Ordering::SeqCst);
                    token.cancel();
                }
            });
        }
        Interrupt { token, signal }
    }

    /// 128 + the signal that interrupted us, if one did.
    fn exit_code(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Some(128 + n),
        }
    }
}

fn exit_code(outcome: &ExecOutcome, broken: bool, interrupt: &Interrupt) -> i32 {
    if broken {
        BROKEN_PIPE
    } else if let (Some(code), true) = (interrupt.exit_code(), outcome.cancelled) {
        code
    } else {
        outcome.shell_exit_code()
    }
}

/// A JSON frame of a run's stream.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Started {},
    Heartbeat,
    Finished { run: Box<RunSummary> },
}

async fn through_server(client: &Client, p: Prepared) -> Result<i32> {
    let (argv, shell) = match &p.request.command {
        CommandSpec::Argv(a) => (Some(a.clone()), None),
        CommandSpec::Shell(s) => (None, Some(s.clone())),
    };
    let body = json!({
        "argv": argv,
        "shell": shell,
        "cwd": p.request.cwd,
        "env": p.request.env,
        "timeout_secs": p.request.timeout.map(|t| t.as_secs_f64()),
        "mode": p.chosen_mode,
        "image": p.chosen_image,
        "client": "stigmer-cli",
        "workspace": p.session,
    });
    let interrupt = Interrupt::watch();
    let resp = client.start_run(&body).await?;
    let run_id = resp
        .headers()
        .get("x-run-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut stream = resp.bytes_stream();
    let mut decoder = frames::Decoder::default();
    let mut out = Output { broken: false };
    let mut cancelled = false;
    let lost = |e: String| {
        Error::new(
            ErrorCode::ServerUnavailable,
            format!("lost the connection to the server during the run ({e})"),
        )
    };
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = interrupt.token.cancelled(), if !cancelled => {
                cancelled = true;
                cancel(client, run_id.as_deref()).await;
                continue;
            }
        };
        let Some(bytes) = next else {
            return Err(lost("the stream ended before the run finished".into()));
        };
        decoder.push(&bytes.map_err(|e| lost(e.to_string()))?);
        while let Some((kind, payload)) = decoder.next_frame() {
            let stream = match kind {
                frames::KIND_STDOUT => Stream::Stdout,
                frames::KIND_STDERR => Stream::Stderr,
                _ => {
                    let line: Line = serde_json::from_slice(&payload)
                        .map_err(|e| lost(format!("unreadable stream frame: {e}")))?;
                    match line {
                        Line::Started { .. } | Line::Heartbeat => {}
                        Line::Finished { run } => {
                            if let (RunState::Failed, Some(e)) = (run.state, run.error) {
                                return Err(e);
                            }
                            let outcome = run.outcome.unwrap_or_default();
                            return Ok(exit_code(&outcome, false, &interrupt));
                        }
                    }
                    continue;
                }
            };
            out.write(stream, &payload);
            if out.broken {
                // Dropping the response cancels the run on the server.
                return Ok(BROKEN_PIPE);
            }
        }
    }
}

async fn cancel(client: &Client, run_id: Option<&str>) {
    if let Some(id) = run_id {
        let _ = client
            .send(client.request(reqwest::Method::POST, &format!("/v1/runs/{id}/cancel")))
            .await;
    }
}
