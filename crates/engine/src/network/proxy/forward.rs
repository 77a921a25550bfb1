//! The proxy's way to the host: decide, resolve, check the addresses, connect; then move bytes
//! (a tunnel both ways, or one plain request and its answer), ending idle tunnels.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::Target;
use super::sni;
use super::{Report, State};
use crate::network::policy;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const COPY_BUF: usize = 64 * 1024;
/// A tunnel with no byte either way for this long is closed (a held-open tunnel is a way out
/// that outlives the allowlist's changes).
const IDLE_LIMIT: Duration = Duration::from_secs(300);
/// How long a tunnel's client has to send its first record.
const FIRST_RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer refused: the status and text for the client.
pub(super) type Refusal = (&'static str, String);

/// Report a refusal (the server tells the window and the run) and word it for the client.
pub(super) fn refusal(
    state: &State,
    door: &str,
    host: &str,
    port: u16,
    reason: String,
    can_allow: bool,
) -> Refusal {
    let _ = state.reports.send(Report::Blocked {
        door: door.to_string(),
        host: host.to_string(),
        port,
        reason: reason.clone(),
        can_allow,
    });
    let hint = if can_allow {
        format!(
            " The user can allow it in Stigmer's window (Sandbox, Network) or with `stigmer config allow {host}`."
        )
    } else {
        String::new()
    };
    (
        "403 Forbidden",
        format!("stigmer: the sandbox's network policy blocked {host}:{port} ({reason}).{hint}\n"),
    )
}

/// Decide, resolve, check the addresses, connect.
pub(super) async fn open(
    state: &State,
    t: &Target,
    block: &(dyn Fn(String, bool) -> Refusal + Sync),
) -> Result<TcpStream, Refusal> {
    let allow = state.allow.read().clone();
    let matched =
        policy::decide(&t.host, t.port, &allow).map_err(|r| block(r.reason, r.can_allow))?;
    let addrs: Vec<IpAddr> = match state.hosts.get(&t.host.to_ascii_lowercase()) {
        Some(ip) => vec![*ip],
        None => match tokio::net::lookup_host((t.host.as_str(), t.port)).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(e) => {
                return Err((
                    "502 Bad Gateway",
                    format!("stigmer: {} could not be resolved: {e}\n", t.host),
                ))
            }
        },
    };
    let mut last_refusal = None;
    let mut last_error = None;
    for ip in addrs {
        if let Err(r) = policy::check_address(ip, matched) {
            last_refusal = Some(r);
            continue;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, t.port))).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last_error = Some(e.to_string()),
            Err(_) => last_error = Some("timed out".into()),
        }
    }
    match (last_error, last_refusal) {
        (Some(e), _) => Err((
            "502 Bad Gateway",
            format!("stigmer: {}:{} could not be reached: {e}\n", t.host, t.port),
        )),
        (None, Some(r)) => Err(block(r.reason, r.can_allow)),
        (None, None) => Err((
            "502 Bad Gateway",
            format!("stigmer: {} has no address\n", t.host),
        )),
    }
}

/// The tunnel's first record (what was read past the request, then more until a whole TLS
/// record is in), or None when the client went.
pub(super) async fn first_record<S: AsyncRead + Unpin>(
    conn: &mut S,
    mut buf: Vec<u8>,
) -> Option<Vec<u8>> {
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match sni::client_hello(&buf) {
                Ok(sni::Hello::Partial) if buf.len() < sni::RECORD_LIMIT => {}
                _ => return Some(buf),
            }
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(FIRST_RECORD_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

/// One plain-HTTP request: `rest` and then the client's bytes up to `body` in all go upstream
/// (a request pipelined behind it never does), and the answer comes back until upstream ends.
pub(super) async fn request_then_answer<S, U>(conn: S, rest: Vec<u8>, body: u64, upstream: U)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut cr, mut cw) = tokio::io::split(conn);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let up = async move {
        let first = rest.len().min(body as usize);
        if uw.write_all(&rest[..first]).await.is_err() {
            return;
        }
        let mut left = body - first as u64;
        let mut buf = vec![0u8; COPY_BUF];
        while left > 0 {
            let want = buf.len().min(left as usize);
            match tokio::time::timeout(IDLE_LIMIT, cr.read(&mut buf[..want])).await {
                Ok(Ok(n)) if n > 0 => {
                    if uw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                _ => return,
            }
        }
        // Kept open (not shut down): some servers take a half-close for an abort.
        std::future::pending::<()>().await;
    };
    let down = async move {
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            match tokio::time::timeout(IDLE_LIMIT, ur.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
        let _ = cw.shutdown().await;
    };
    // The answer's end ends the request.
    tokio::select! {
        _ = down => {}
        _ = async { up.await; std::future::pending::<()>().await } => {}
    }
}

/// Copy both ways until either side ends or nothing moves for the idle limit. 64 KiB
/// buffers, not tokio's 8 KiB: a fraction of the system calls on big downloads.
pub(super) async fn relay<A, B>(a: A, b: B)
where
    A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let up = pipe(ar, bw, last.clone(), start, IDLE_LIMIT);
    let down = pipe(br, aw, last.clone(), start, IDLE_LIMIT);
    tokio::join!(up, down);
}

/// Copy one way until the reader ends, or nothing moved either way for `idle`.
async fn pipe<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut r: R,
    mut w: W,
    last: Arc<AtomicU64>,
    start: tokio::time::Instant,
    idle: Duration,
) {
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        match tokio::time::timeout(idle, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            Err(_) => {
                let quiet = start.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                if quiet >= idle.as_millis() as u64 {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_pipelined_behind_the_checked_one_never_goes_upstream() {
        let (client, mut client_far) = tokio::io::duplex(1 << 16);
        let (upstream, mut upstream_far) = tokio::io::duplex(1 << 16);
        // Read past the head: its body, then a second request for another host.
        let rest = b"hello".to_vec();
        let task = tokio::spawn(request_then_answer(client, rest, 8, upstream));
        client_far
            .write_all(b"!!!GET / HTTP/1.1\r\nHost: other.test\r\n\r\n")
            .await
            .unwrap();
        let mut got = vec![0u8; 64];
        let mut seen = Vec::new();
        while seen.len() < 8 {
            let n = upstream_far.read(&mut got).await.unwrap();
            seen.extend_from_slice(&got[..n]);
        }
        upstream_far
            .write_all(b"HTTP/1.1 200 OK\r\n\r\nok")
            .await
            .unwrap();
        drop(upstream_far.shutdown().await);
        let mut answer = Vec::new();
        client_far.read_to_end(&mut answer).await.unwrap();
        task.await.unwrap();
        // The proxy's side is gone: everything it ever sent upstream is in.
        upstream_far.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, b"hello!!!");
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\nok");
    }
}
