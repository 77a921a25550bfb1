//! `stigmer server start|stop|status|logs`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use stigmer_protocol::routes;

use serde_json::json;
use stigmer_engine::discovery::{server_lock_held, Discovery};
use stigmer_engine::logging::current_log_file;
use stigmer_engine::paths::Paths;
use stigmer_engine::server::{serve, ServeOptions};
use stigmer_engine::settings::{self, Overrides};
use stigmer_engine::{Error, ErrorCode, Result};
use stigmer_protocol::mode::Mode;
use stigmer_protocol::status::Status;

use crate::cli::{ServerCommand, StartArgs};
use stigmer_client::Client;

/// How long `server start` waits for a background server to be ready.
const READY_LIMIT: Duration = Duration::from_secs(15);
/// How long `server stop` waits for the server to exit before forcing it.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// Exit code of `server status` when no server runs (the LSB convention).
pub const NOT_RUNNING: i32 = 3;

pub async fn server(cmd: ServerCommand, paths: &Paths) -> Result<i32> {
    match cmd {
        ServerCommand::Start(args) if args.foreground => foreground(args, paths).await,
        ServerCommand::Start(args) => background(args, paths).await,
        ServerCommand::Stop => stop(paths).await,
        ServerCommand::Status { json } => status(paths, json).await,
        ServerCommand::Logs { follow, lines } => logs(paths, follow, lines).await,
        ServerCommand::Token => {
            println!("{}", stigmer_engine::discovery::read_token(paths)?);
            Ok(0)
        }
    }
}

async fn foreground(args: StartArgs, paths: &Paths) -> Result<i32> {
    let resolved = settings::resolve(
        paths,
        &Overrides {
            mode: args.mode,
            image: args.image,
        },
    )?;
    if !args.detached {
        for w in &resolved.warnings {
            eprintln!("stigmer: warning: {w}");
        }
    }
    serve(ServeOptions {
        paths: paths.clone(),
        settings: resolved.settings,
        port: args.port,
        log_to_stderr: !args.detached,
        warnings: resolved.warnings,
        stop: args.exit_with_parent.then(parent_gone),
        linger: args.linger.map(Duration::from_secs),
        lifeline: args.exit_with_parent.then(parent_pid).flatten(),
    })
    .await?;
    Ok(0)
}

/// The process that started us.
fn parent_pid() -> Option<u32> {
    #[cfg(unix)]
    {
        // SAFETY: getppid cannot fail.
        u32::try_from(unsafe { libc::getppid() }).ok()
    }
    #[cfg(not(unix))]
    None
}

/// Cancelled when the process that started us is gone (the desktop app crashed or was killed):
/// a supervised server must not outlive its supervisor.
fn parent_gone() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    #[cfg(unix)]
    {
        // SAFETY: getppid cannot fail.
        let parent = unsafe { libc::getppid() };
        let t = token.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                // SAFETY: as above.
                if unsafe { libc::getppid() } != parent {
                    t.cancel();
                    return;
                }
            }
        });
    }
    token
}

/// Start a detached server and return once it is ready (its discovery file is written).
async fn background(args: StartArgs, paths: &Paths) -> Result<i32> {
    if let Some(d) = Discovery::find_running(paths) {
        println!(
            "stigmer server is already running at {} (pid {}, mode {})",
            d.url, d.pid, d.mode
        );
        return Ok(0);
    }
    // Validate settings here, so a bad value is reported to the user and not to a log file.
    let resolved = settings::resolve(
        paths,
        &Overrides {
            mode: args.mode.clone(),
            image: args.image.clone(),
        },
    )?;
    for w in &resolved.warnings {
        eprintln!("stigmer: warning: {w}");
    }
    let started = Instant::now();
    match spawn_detached(paths, &args, false).await? {
        Spawned::Started(d) => {
            println!(
                "stigmer server started at {} (pid {}, mode {}) in {} ms",
                d.url,
                d.pid,
                d.mode,
                started.elapsed().as_millis()
            );
            println!("logs: {}", d.log_dir.display());
        }
        Spawned::AlreadyRunning(d) => println!(
            "stigmer server is already running at {} (pid {}, mode {})",
            d.url, d.pid, d.mode
        ),
    }
    Ok(0)
}

/// What [`spawn_detached`] found.
pub enum Spawned {
    Started(Discovery),
    /// Another start won the race.
    AlreadyRunning(Discovery),
}

/// Start a server process in its own session (its output to the log folder) and wait until it
/// is ready. With `exit_with_parent` it stops when this process is gone.
pub async fn spawn_detached(
    paths: &Paths,
    args: &StartArgs,
    exit_with_parent: bool,
) -> Result<Spawned> {
    Paths::ensure_private_dir(&paths.log_dir)?;
    let out_file = paths.server_output_file();
    let out = std::fs::File::create(&out_file).map_err(|e| {
        Error::new(
            ErrorCode::ConfigError,
            format!("cannot create {}: {e}", out_file.display()),
        )
    })?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find the stigmer executable: {e}")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["server", "start", "--foreground", "--detached", "--port"])
        .arg(args.port.to_string());
    if exit_with_parent {
        cmd.arg("--exit-with-parent");
    }
    if let Some(secs) = args.linger {
        cmd.args(["--linger", &secs.to_string()]);
    }
    if let Some(m) = &args.mode {
        cmd.args(["--mode", m]);
    }
    if let Some(i) = &args.image {
        cmd.args(["--image", i]);
    }
    cmd.stdin(Stdio::null())
        .stdout(
            out.try_clone()
                .map_err(|e| Error::internal(e.to_string()))?,
        )
        .stderr(out);
    detach(&mut cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(
            ErrorCode::ServerUnavailable,
            format!("cannot start the server: {e}"),
        )
    })?;
    let pid = child.id();
    loop {
        if let Some(d) = Discovery::read(paths).filter(|d| d.pid == pid) {
            return Ok(Spawned::Started(d));
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = last_lines(&out_file, 5).join("\n");
            // Lost a race with another start: report the winner.
            if let Some(d) = Discovery::find_running(paths) {
                return Ok(Spawned::AlreadyRunning(d));
            }
            return Err(Error::new(
                ErrorCode::ServerUnavailable,
                format!("the server exited during start-up ({status}): {tail}"),
            ));
        }
        if started.elapsed() > READY_LIMIT {
            let _ = child.kill();
            return Err(Error::new(
                ErrorCode::ServerUnavailable,
                format!(
                    "the server was not ready after {} s; see {}",
                    READY_LIMIT.as_secs(),
                    out_file.display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Run the server in its own session: no terminal signals, survives the terminal closing.
fn detach(cmd: &mut std::process::Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and touches only the new process.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
}

async fn stop(paths: &Paths) -> Result<i32> {
    let Some(client) = Client::find(paths)? else {
        println!("stigmer server is not running");
        return Ok(0);
    };
    let pid = client.discovery.pid;
    let asked = client.post_empty(routes::SHUTDOWN).await;
    if asked.is_err() {
        terminate(pid);
    }
    let started = Instant::now();
    // Stopped when the lock is free: the OS releases it as the process exits.
    while server_lock_held(paths) {
        if started.elapsed() > STOP_LIMIT {
            if server_lock_held(paths) {
                terminate(pid);
            }
            return Err(Error::new(
                ErrorCode::ServerUnavailable,
                format!(
                    "the server (pid {pid}) did not stop within {} s; sent SIGTERM",
                    STOP_LIMIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("stigmer server stopped (pid {pid})");
    Ok(0)
}

fn terminate(pid: u32) {
    #[cfg(unix)]
    // SAFETY: sends SIGTERM to the server's pid, read from its own discovery file.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

async fn status(paths: &Paths, as_json: bool) -> Result<i32> {
    let Some(client) = Client::find(paths)? else {
        if as_json {
            println!("{}", json!({ "running": false }));
        } else {
            println!("stigmer server is not running (start it with `stigmer server start`)");
        }
        return Ok(NOT_RUNNING);
    };
    let st = client.status().await?;
    if as_json {
        #[derive(serde::Serialize)]
        struct Running<'a> {
            running: bool,
            #[serde(flatten)]
            status: &'a Status,
        }
        let running = Running {
            running: true,
            status: &st,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&running).unwrap_or_default()
        );
        return Ok(0);
    }
    println!("stigmer server is running");
    println!("  url:      {}", st.url);
    println!("  pid:      {}", st.pid);
    println!("  version:  {}", st.version);
    println!("  uptime:   {:.0} s", st.uptime_secs);
    println!("  mode:     {} ({})", st.mode, st.tier.as_str());
    if st.mode == Mode::Sandbox {
        println!("  image:    {}", st.image);
    }
    println!("  runs:     {} active", st.active_runs);
    println!("  logs:     {}", st.log_dir.display());
    Ok(0)
}

async fn logs(paths: &Paths, follow: bool, lines: usize) -> Result<i32> {
    let Some(mut file) = current_log_file(&paths.log_dir) else {
        return Err(Error::new(
            ErrorCode::ServerUnavailable,
            format!(
                "no server log in {} yet; start the server with `stigmer server start`",
                paths.log_dir.display()
            ),
        ));
    };
    let mut stdout = std::io::stdout();
    for line in last_lines(&file, lines) {
        let _ = writeln!(stdout, "{line}");
    }
    if !follow {
        return Ok(0);
    }
    let mut pos = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Daily rotation starts a new file: continue from its beginning.
        if let Some(newest) = current_log_file(&paths.log_dir).filter(|f| *f != file) {
            file = newest;
            pos = 0;
        }
        pos = copy_from(&file, pos, &mut stdout);
    }
}

fn copy_from(file: &PathBuf, pos: u64, out: &mut impl Write) -> u64 {
    let Ok(mut f) = std::fs::File::open(file) else {
        return pos;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(pos);
    let start = if len < pos { 0 } else { pos };
    if f.seek(SeekFrom::Start(start)).is_err() {
        return pos;
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let _ = out.write_all(&buf);
    let _ = out.flush();
    start + buf.len() as u64
}

fn last_lines(file: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(file).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
