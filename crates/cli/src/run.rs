//! `stigmer run`: through the running server when there is one, else in this process.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use stigmer_client::{Client, RunItem};
use stigmer_engine::events::EventBus;
use stigmer_engine::execute::container::Sandbox;
use stigmer_engine::execute::{ExecOutcome, Stream};
use stigmer_engine::paths::Paths;
use stigmer_engine::settings::{self, Key, Overrides, Settings};
use stigmer_engine::{Error, ErrorCode, Result};
use stigmer_protocol::run::{ArgvEncoding, RunRequest, RunState};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;

/// Exit code for stigmer's own failures.
pub const OWN_ERROR: i32 = 125;
/// Exit code when our stdout was closed by the reader (like a shell's SIGPIPE death).
const BROKEN_PIPE: i32 = 141;

/// The run the user asked for, as any client asks the server (or this process) for it. Mode
/// and image are sent only when a flag or the environment chose them: else the server's (or
/// the config file's) apply.
fn request(args: RunArgs) -> Result<RunRequest> {
    let invalid = |m: String| Error::new(ErrorCode::InvalidRequest, m);
    let (argv, argv_encoding, shell) = match (args.shell, args.argv.is_empty()) {
        (Some(shell), true) => (None, None, Some(shell)),
        (None, false) => {
            let (argv, encoding) = encode_argv(args.argv);
            (Some(argv), encoding, None)
        }
        _ => {
            return Err(invalid(
                "give either -c 'COMMAND' or -- PROGRAM [ARGS]".into(),
            ))
        }
    };
    let mut env = BTreeMap::new();
    for pair in args.env {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_string(), v.to_string());
            }
            _ => return Err(invalid(format!("--env `{pair}` must look like KEY=VALUE"))),
        }
    }
    // A bad flag is named as such before anything is asked of anyone.
    for (flag, key, name) in [
        (&args.mode, Key::Mode, "--mode"),
        (&args.image, Key::SandboxImage, "--image"),
    ] {
        if let Some(raw) = flag {
            key.parse(raw, name)?;
        }
    }
    let chosen = |flag: Option<String>, key: Key| {
        flag.or_else(|| std::env::var(key.env_var()).ok().filter(|v| !v.is_empty()))
    };
    Ok(RunRequest {
        argv,
        argv_encoding,
        shell,
        cwd: Some(resolve_cwd(args.cwd)?),
        env,
        timeout_secs: args.timeout,
        mode: chosen(args.mode, Key::Mode),
        image: chosen(args.image, Key::SandboxImage),
        client: Some("stigmer-cli".into()),
        // Where `stigmer run` was started: a sandboxed run may work in its project.
        workspace: std::env::current_dir().ok(),
    })
}

/// Arguments as text when they all are, else each as base64 of its bytes.
fn encode_argv(argv: Vec<OsString>) -> (Vec<String>, Option<ArgvEncoding>) {
    if argv.iter().all(|a| a.to_str().is_some()) {
        let text = argv.into_iter().filter_map(|a| a.into_string().ok());
        return (text.collect(), None);
    }
    let b64 = argv
        .iter()
        .map(|a| base64::engine::general_purpose::STANDARD.encode(a.as_encoded_bytes()))
        .collect();
    (b64, Some(ArgvEncoding::Base64))
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
    // Settings from the environment and the config file are checked first, whichever way the
    // run goes: a bad one names where it came from.
    let resolved = match settings::resolve(paths, &Overrides::default()) {
        Ok(r) => r,
        Err(e) => return own_error(&e),
    };
    for w in &resolved.warnings {
        eprintln!("stigmer: warning: {w}");
    }
    let request = match request(args) {
        Ok(r) => r,
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
        Some(client) => through_server(&client, &request).await,
        None => in_process(request, &resolved.settings, paths).await,
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

async fn in_process(request: RunRequest, settings: &Settings, paths: &Paths) -> Result<i32> {
    let bus = EventBus::default();
    let sandbox = Sandbox::new(paths, &format!("cli-{}", std::process::id()), bus.clone());
    // The server's pipeline, with nobody to ask (a client whose rule is `ask` is refused).
    let (approved, _) = stigmer_engine::admission::check(request, settings, &sandbox)?
        .admit()
        .await?
        .approve(
            &stigmer_engine::admission::Nobody,
            std::time::Duration::ZERO,
        )
        .await?;
    let interrupt = Interrupt::watch();
    let progress = crate::sandbox::show_image_progress(bus.subscribe());
    let (tx, mut rx) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let exec = approved.spawn(tx, cancel.clone());
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
    let outcome = outcome??;
    network_note(&outcome);
    Ok(exit_code(&outcome, out.broken, &interrupt))
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

/// What the sandbox's network policy refused, on stderr after the command's own output.
fn network_note(o: &ExecOutcome) {
    let note = stigmer_engine::mcp::render::network_note(o);
    for line in note.lines().filter(|l| !l.is_empty()) {
        eprintln!("stigmer: {line}");
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

async fn through_server(client: &Client, request: &RunRequest) -> Result<i32> {
    let interrupt = Interrupt::watch();
    let mut stream = client.start_run(request).await?;
    let run_id = stream.run_id().map(str::to_string);
    let mut out = Output { broken: false };
    let mut cancelled = false;
    loop {
        let item = tokio::select! {
            item = stream.next() => item?,
            _ = interrupt.token.cancelled(), if !cancelled => {
                cancelled = true;
                if let Some(id) = &run_id {
                    let _ = client.cancel_run(id).await;
                }
                continue;
            }
        };
        match item {
            Some(RunItem::Output(s, data)) => {
                out.write(s, &data);
                if out.broken {
                    // Dropping the stream hangs up, which cancels the run on the server.
                    return Ok(BROKEN_PIPE);
                }
            }
            Some(RunItem::Finished(run)) => {
                if let (RunState::Failed, Some(e)) = (run.state, run.error.clone()) {
                    return Err(e);
                }
                if let Some(e) = run.error.filter(|e| e.code == ErrorCode::CancelledByUser) {
                    if interrupt.exit_code().is_none() {
                        eprintln!("stigmer: stopped by the user [{}]", e.code);
                    }
                }
                let outcome = run.outcome.unwrap_or_default();
                network_note(&outcome);
                return Ok(exit_code(&outcome, false, &interrupt));
            }
            Some(RunItem::Started(_) | RunItem::Heartbeat) => {}
            None => {
                return Err(Error::new(
                    ErrorCode::ServerUnavailable,
                    "lost the connection to the server during the run (the stream ended before the run finished)",
                ))
            }
        }
    }
}
