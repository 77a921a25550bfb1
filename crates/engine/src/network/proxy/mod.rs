//! The allowlist's way out: an HTTP proxy (CONNECT for TLS, absolute-form requests for plain
//! HTTP) that lets a sandbox reach only the hosts the user listed, on ports 80 and 443.
//!
//! It runs as its own process (`stigmer sandbox proxy`), started and restarted by the
//! server's [`super::supervisor`]. It listens on no network at all: each allowlist container
//! (which has no network either) gets a door of its own, a Unix socket in a private folder
//! mounted into that container only, so only stigmer's runs reach it, and a refusal names the
//! container it came from. Its stdin carries the allowlist and the doors to open and close, one
//! JSON line each (end of input: it exits, so it never outlives its server); its stdout
//! carries what it refused, one JSON line each.

// Doors are Unix sockets: elsewhere the proxy only says it cannot serve, and its serving
// code is unused.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

mod forward;
mod request;
mod sni;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Test-only: `name=ip,...` resolved without DNS (tests name their own servers).
pub const TEST_HOSTS_VAR: &str = "STIGMER_PROXY_TEST_HOSTS";
/// A door's socket, inside its folder.
pub const SOCKET_NAME: &str = "proxy.sock";
/// The largest request head read (a CONNECT line and its headers are far smaller).
const HEAD_LIMIT: usize = 64 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections at once through one door, and through all: a container that opens thousands
/// gets its own refused, never the other containers' way out.
const PER_DOOR: usize = 256;
const IN_ALL: usize = 4096;

/// A line of the proxy's stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// Ready: doors can be opened.
    Ready,
    /// A refused connection, and through which door (container) it came.
    Blocked {
        door: String,
        host: String,
        port: u16,
        reason: String,
        can_allow: bool,
    },
    /// A door could not be opened.
    DoorFailed { door: String, error: String },
    /// The answer to a ping: every control line before it was applied, every report made
    /// before it is out.
    Pong(u64),
}

/// A line of the proxy's stdin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Control {
    /// A new allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Open the door named so: listen on `NAME/proxy.sock` in the proxy's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<String>,
    /// Close that door.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<String>,
    /// Answer with [`Report::Pong`] after the reports queued so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<u64>,
}

/// A door's name: letters and digits only, so it is one folder inside the proxy's.
pub fn valid_door(name: &str) -> bool {
    (8..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

struct State {
    /// Connections being served, in all.
    slots: Arc<tokio::sync::Semaphore>,
    allow: RwLock<Vec<String>>,
    hosts: HashMap<String, IpAddr>,
    reports: mpsc::UnboundedSender<Report>,
}

/// Serve the doors opened in `dir` until stdin ends. The first stdin line (the allowlist) is
/// read before any door opens, so no connection is ever judged against an empty list by
/// mistake. Socket paths are relative to `dir` (the proxy works in it), so a long data folder
/// never meets the 108-byte limit of a socket's path.
pub async fn run_stdio(dir: &Path) -> std::io::Result<()> {
    crate::private::private_dir(dir)?;
    std::env::set_current_dir(dir)?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let first = stdin.next_line().await?.unwrap_or_default();
    let control: Control = serde_json::from_str(&first)
        .map_err(|e| std::io::Error::other(format!("bad control line: {e}")))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    raise_open_files();
    let state = Arc::new(State {
        slots: Arc::new(tokio::sync::Semaphore::new(IN_ALL)),
        allow: RwLock::new(control.allow.unwrap_or_default()),
        hosts: test_hosts(),
        reports: tx.clone(),
    });
    let _ = tx.send(Report::Ready);
    tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(r) = rx.recv().await {
            let mut line = serde_json::to_vec(&r).unwrap_or_default();
            line.push(b'\n');
            if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
                std::process::exit(0); // the server is gone
            }
        }
    });
    // In order: a ping is answered once every line before it was applied.
    let mut doors: HashMap<String, JoinHandle<()>> = HashMap::new();
    while let Ok(Some(line)) = stdin.next_line().await {
        let Ok(c) = serde_json::from_str::<Control>(&line) else {
            continue;
        };
        if let Some(allow) = c.allow {
            *state.allow.write() = allow;
        }
        if let Some(name) = c.close {
            if let Some(task) = doors.remove(&name) {
                task.abort();
            }
            if valid_door(&name) {
                let _ = std::fs::remove_file(Path::new(&name).join(SOCKET_NAME));
            }
        }
        if let Some(name) = c.open {
            match open_door(&name, state.clone()) {
                Ok(task) => {
                    if let Some(old) = doors.insert(name, task) {
                        old.abort();
                    }
                }
                Err(e) => {
                    let _ = state.reports.send(Report::DoorFailed {
                        door: name,
                        error: e.to_string(),
                    });
                }
            }
        }
        if let Some(n) = c.ping {
            let _ = state.reports.send(Report::Pong(n));
        }
    }
    std::process::exit(0);
}

/// Listen on door `name` (its folder made by the server), replacing a socket left by a proxy
/// that died.
#[cfg(unix)]
fn open_door(name: &str, state: Arc<State>) -> std::io::Result<JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    use tokio::net::UnixListener;
    if !valid_door(name) {
        return Err(std::io::Error::other(format!(
            "`{name}` is not a door's name"
        )));
    }
    let path: PathBuf = Path::new(name).join(SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let door = name.to_string();
    let mine = Arc::new(tokio::sync::Semaphore::new(PER_DOOR));
    Ok(tokio::spawn(async move {
        loop {
            let conn = match listener.accept().await {
                Ok((c, _)) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over either limit: closed at once (the client sees the connection end).
            let (Ok(one), Ok(all)) = (
                mine.clone().try_acquire_owned(),
                state.slots.clone().try_acquire_owned(),
            ) else {
                continue;
            };
            let (state, door) = (state.clone(), door.clone());
            tokio::spawn(async move {
                handle(conn, &door, &state).await;
                drop((one, all));
            });
        }
    }))
}

/// As many open files as the system lets this process have: each connection takes two.
fn raise_open_files() {
    #[cfg(unix)]
    // SAFETY: reading and setting this process's own limit.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

#[cfg(not(unix))]
fn open_door(_: &str, _: Arc<State>) -> std::io::Result<JoinHandle<()>> {
    Err(std::io::Error::other(
        "the allowlist's proxy needs Unix sockets (a container engine on Linux)",
    ))
}

fn test_hosts() -> HashMap<String, IpAddr> {
    let raw = std::env::var(TEST_HOSTS_VAR).unwrap_or_default();
    raw.split(',')
        .filter_map(|pair| {
            let (name, ip) = pair.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), ip.trim().parse().ok()?))
        })
        .collect()
}

async fn handle<S>(mut conn: S, door: &str, state: &State)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(Ok((head, rest))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut conn)).await
    else {
        return;
    };
    let target = match request::parse(&head) {
        Ok(t) => t,
        Err(why) => {
            let _ = respond(&mut conn, "400 Bad Request", &format!("stigmer: {why}\n")).await;
            return;
        }
    };
    let block = |reason: String, can_allow: bool| {
        forward::refusal(state, door, &target.host, target.port, reason, can_allow)
    };
    // A tunnel carries TLS to port 443, checked below; plain HTTP goes as a proxy request,
    // whose Host is checked. A tunnel to port 80 would carry unchecked requests.
    if target.forward.is_none() && target.port != 443 {
        let (status, text) = block(
            "a tunnel (CONNECT) goes to port 443 only; plain HTTP goes as a proxy request".into(),
            false,
        );
        let _ = respond(&mut conn, status, &text).await;
        return;
    }
    let mut upstream = match forward::open(state, &target, &block).await {
        Ok(s) => s,
        Err((status, text)) => {
            let _ = respond(&mut conn, status, &text).await;
            return;
        }
    };
    match &target.forward {
        Some((head, body)) => {
            if upstream.write_all(head).await.is_err() {
                return;
            }
            forward::request_then_answer(conn, rest, *body, upstream).await;
        }
        None => {
            if conn
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            // The tunnel's first record: a TLS handshake must ask for the host checked.
            let Some(first) = forward::first_record(&mut conn, rest).await else {
                return;
            };
            // Only a TLS handshake that names the host checked goes through: anything else
            // (plain text, another record first, no name, another name) could reach another
            // site behind the same address.
            let refusal = match sni::client_hello(&first) {
                Ok(sni::Hello::Name(Some(name)))
                    if name.trim_end_matches('.') == target.host.trim_end_matches('.') =>
                {
                    None
                }
                Ok(sni::Hello::Name(Some(name))) => Some(format!(
                    "its TLS handshake asks for {name}: a tunnel goes only to the host it names"
                )),
                Ok(sni::Hello::Name(None)) => {
                    Some("its TLS handshake names no server: a tunnel must name its host".into())
                }
                Ok(sni::Hello::NotTls) => {
                    Some("a tunnel carries TLS only, starting with its handshake".into())
                }
                Ok(sni::Hello::Partial) => Some("an incomplete TLS handshake".into()),
                Err(why) => Some(format!("an unreadable TLS handshake ({why})")),
            };
            if let Some(reason) = refusal {
                block(reason, false);
                return;
            }
            if upstream.write_all(&first).await.is_err() {
                return;
            }
            forward::relay(conn, upstream).await;
        }
    }
}

/// The request head (through the blank line) and any bytes read past it.
async fn read_head<S: AsyncRead + Unpin>(conn: &mut S) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + at + 4;
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > HEAD_LIMIT {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    conn: &mut S,
    status: &str,
    text: &str,
) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nX-Stigmer-Policy: blocked\r\n\r\n{text}",
        text.len()
    );
    conn.write_all(msg.as_bytes()).await?;
    conn.shutdown().await
}
