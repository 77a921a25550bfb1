//! The server process this app starts: `stigmer server start --foreground` from the program
//! next to this one, its output shown as the log, its end reported, and ended on request.

use std::process::Stdio;
use std::time::{Duration, Instant};

use stigmer_client::Client;
use stigmer_protocol::local::Discovery;
use stigmer_protocol::{Error, ErrorCode, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::model::ServerState;
use crate::state::{log_line, shared, AppHandle, ServerChild};

/// How long a started server has to become ready.
const READY_LIMIT: Duration = Duration::from_secs(20);

fn spawn_error(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::ServerUnavailable,
        format!("cannot start the server: {e}"),
    )
}

/// Start the server and wait until it is ready.
pub async fn spawn(app: &AppHandle, generation: u64) -> Result<Client> {
    let s = shared(app);
    let exe = std::env::current_exe().map_err(spawn_error)?;
    let program = stigmer_protocol::desktop::beside(&exe, "stigmer");
    let mut child = tokio::process::Command::new(&program)
        .args([
            "server",
            "start",
            "--foreground",
            "--exit-with-parent",
            "--port",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(format!("{}: {e}", program.display())))?;
    let pid = child.id().unwrap_or(0);
    let (kill, killed) = tokio::sync::oneshot::channel();
    *s.child.lock() = Some(ServerChild { kill });
    // The server's output is its log: show it.
    for out in [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let app = app.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log_line(&app, strip_ansi(line.trim_end()));
            }
        });
    }
    // Its end is the server's end.
    let watcher = app.clone();
    tokio::spawn(async move {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = killed => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let how = match status {
            Ok(st) => describe(st),
            Err(e) => e.to_string(),
        };
        crate::watch::server_ended(
            &watcher,
            generation,
            format!("the server process ended ({how})"),
        );
    });
    let started = Instant::now();
    loop {
        if let (Some(d), Some(api)) = (
            Discovery::read(&s.paths),
            Client::find(&s.paths).ok().flatten(),
        ) {
            if d.pid == pid {
                return Ok(api);
            }
        }
        if started.elapsed() > READY_LIMIT || s.model.lock().server != ServerState::Starting {
            return Err(spawn_error(format!(
                "it was not ready after {} s; see its log",
                READY_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return format!("signal {sig}");
    }
    match status.code() {
        Some(c) => format!("exit code {c}"),
        None => "unknown reason".into(),
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
