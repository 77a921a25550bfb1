//! The allowlist's way out: an HTTP proxy (CONNECT for TLS, absolute-form requests for plain
//! HTTP) that lets a sandbox reach only the hosts the user listed, on ports 80 and 443.
//!
//! It runs as its own process (`stigmer sandbox proxy`), started and restarted by the
//! server's [`super::supervisor`], listening on the gateway of the sandboxes' internal Docker
//! network, their only way out. Its stdin carries the allowlist, one JSON line per change
//! (end of input: it exits, so it never outlives its server); its stdout carries what it
//! refused, one JSON line each.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::policy;

/// Test-only: `name=ip,...` resolved without DNS (tests name their own servers).
pub const TEST_HOSTS_VAR: &str = "STIGMER_PROXY_TEST_HOSTS";
/// The largest request head read (a CONNECT line and its headers are far smaller).
const HEAD_LIMIT: usize = 64 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const COPY_BUF: usize = 64 * 1024;
/// A tunnel with no byte either way for this long is closed (a held-open tunnel is a way out
/// that outlives the allowlist's changes).
const IDLE_LIMIT: Duration = Duration::from_secs(300);

/// A line of the proxy's stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// Ready: the address it listens on.
    Listening(SocketAddr),
    /// A refused connection, and from which container address.
    Blocked {
        peer: IpAddr,
        host: String,
        port: u16,
        reason: String,
        can_allow: bool,
    },
    /// The answer to a ping: every report made before the ping was asked is out.
    Pong(u64),
}

/// A line of the proxy's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Control {
    /// A new allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Answer with [`Report::Pong`] after the reports queued so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<u64>,
}

struct State {
    allow: RwLock<Vec<String>>,
    hosts: HashMap<String, IpAddr>,
    reports: mpsc::UnboundedSender<Report>,
}

/// Serve on `listen` until stdin ends. The first stdin line (the allowlist) is read before
/// anything is accepted, so no connection is ever judged against an empty list by mistake.
pub async fn run_stdio(listen: SocketAddr) -> std::io::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let first = stdin.next_line().await?.unwrap_or_default();
    let control: Control = serde_json::from_str(&first)
        .map_err(|e| std::io::Error::other(format!("bad control line: {e}")))?;
    let socket = if listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted proxy takes the same port while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    let listener = socket.listen(1024)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        allow: RwLock::new(control.allow.unwrap_or_default()),
        hosts: test_hosts(),
        reports: tx.clone(),
    });
    let _ = tx.send(Report::Listening(listener.local_addr()?));
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
    let control_state = state.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdin.next_line().await {
            if let Ok(c) = serde_json::from_str::<Control>(&line) {
                if let Some(allow) = c.allow {
                    *control_state.allow.write() = allow;
                }
                if let Some(n) = c.ping {
                    let _ = control_state.reports.send(Report::Pong(n));
                }
            }
        }
        std::process::exit(0);
    });
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move { handle(conn, peer.ip(), &state).await });
    }
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

/// What a client asked for.
struct Target {
    host: String,
    port: u16,
    /// For plain HTTP: the head to send upstream (origin-form, one request per connection).
    forward: Option<Vec<u8>>,
}

async fn handle(mut conn: TcpStream, peer: IpAddr, state: &State) {
    let Ok(Ok((head, rest))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut conn)).await
    else {
        return;
    };
    let target = match parse(&head) {
        Ok(t) => t,
        Err(why) => {
            let _ = respond(&mut conn, "400 Bad Request", &format!("stigmer: {why}\n")).await;
            return;
        }
    };
    let upstream = match open(state, peer, &target).await {
        Ok(s) => s,
        Err((status, text)) => {
            let _ = respond(&mut conn, status, &text).await;
            return;
        }
    };
    let mut upstream = upstream;
    let sent = match &target.forward {
        None => conn
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_ok(),
        Some(head) => upstream.write_all(head).await.is_ok(),
    };
    if !sent || upstream.write_all(&rest).await.is_err() {
        return;
    }
    relay(conn, upstream, IDLE_LIMIT).await;
}

/// Copy one way until the reader ends, or nothing moved either way for `idle`.
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    last: Arc<std::sync::atomic::AtomicU64>,
    start: tokio::time::Instant,
    idle: Duration,
) {
    use std::sync::atomic::Ordering;
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

/// Copy both ways until either side ends or nothing moves for `idle`. 64 KiB buffers, not
/// tokio's 8 KiB: a fraction of the system calls on big downloads.
async fn relay(a: TcpStream, b: TcpStream, idle: Duration) {
    use std::sync::atomic::AtomicU64;
    let start = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let up = pipe(ar, bw, last.clone(), start, idle);
    let down = pipe(br, aw, last.clone(), start, idle);
    tokio::join!(up, down);
}

/// Decide, resolve, check the addresses, connect. An error is the status and text to answer.
async fn open(
    state: &State,
    peer: IpAddr,
    t: &Target,
) -> Result<TcpStream, (&'static str, String)> {
    let block = |reason: String, can_allow: bool| {
        let _ = state.reports.send(Report::Blocked {
            peer,
            host: t.host.clone(),
            port: t.port,
            reason: reason.clone(),
            can_allow,
        });
        let hint = if can_allow {
            format!(
                " The user can allow it in Stigmer's window (Sandbox, Network) or with `stigmer config allow {}`.",
                t.host
            )
        } else {
            String::new()
        };
        (
            "403 Forbidden",
            format!(
                "stigmer: the sandbox's network policy blocked {}:{} ({reason}).{hint}\n",
                t.host, t.port
            ),
        )
    };
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

/// The request head (through the blank line) and any bytes read past it.
async fn read_head(conn: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
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

fn parse(head: &[u8]) -> Result<Target, String> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("not an HTTP proxy request".into()),
    }
    let (method, path) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
    // The host that is checked is the host that is reached: a `Host` naming another one (a CDN
    // fronting another site) is refused.
    let named: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)
        .collect();
    if named.len() > 1 {
        return Err("two Host headers".into());
    }
    let same_host = |host: &str, default: u16| -> Result<(), String> {
        let Some(value) = named.first() else {
            return Ok(());
        };
        let value = std::str::from_utf8(value).map_err(|_| "a Host that is not text")?;
        let (h, _) = host_port(value.trim(), default)?;
        if h.trim_end_matches('.') == host.trim_end_matches('.') {
            Ok(())
        } else {
            Err(format!(
                "the request is for {host} but its Host header names {h}: a request goes only \
                 to the host it names"
            ))
        }
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = host_port(path, 443)?;
        same_host(&host, port)?;
        return Ok(Target {
            host,
            port,
            forward: None,
        });
    }
    let Some(rest) = path.strip_prefix("http://") else {
        return Err(format!(
            "`{path}`: a proxy request names its URL in full (http://host/path), or uses CONNECT"
        ));
    };
    let (authority, origin) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let (host, port) = host_port(authority, 80)?;
    same_host(&host, port)?;
    let mut out = format!("{method} {origin} HTTP/1.1\r\n").into_bytes();
    // The Host sent is the one checked.
    let authority = match (host.contains(':'), port) {
        (true, 80) => format!("[{host}]"),
        (true, p) => format!("[{host}]:{p}"),
        (false, 80) => host.clone(),
        (false, p) => format!("{host}:{p}"),
    };
    out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name.starts_with("proxy-")
            || name == "connection"
            || name == "keep-alive"
            || name == "host"
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // One request per upstream connection: a next request may be for another host.
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Target {
        host,
        port,
        forward: Some(out),
    })
}

/// `host[:port]` or `[v6]:port`.
fn host_port(authority: &str, default: u16) -> Result<(String, u16), String> {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("an unclosed [ in the host")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
        None => default,
    };
    if host.is_empty() {
        return Err("no host named".into());
    }
    Ok((host.to_ascii_lowercase(), port))
}

async fn respond(conn: &mut TcpStream, status: &str, text: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nX-Stigmer-Policy: blocked\r\n\r\n{text}",
        text.len()
    );
    conn.write_all(msg.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_their_target() {
        let t = parse(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.forward.is_none()),
            ("pypi.org", 443, true)
        );
        let t = parse(
            b"GET http://Example.com/a?b HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("example.com", 80));
        let fwd = String::from_utf8(t.forward.unwrap()).unwrap();
        assert_eq!(
            fwd,
            "GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        // Fronting: the Host header must name the host of the request line.
        for bad in [
            &b"GET http://allowed.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n"[..],
            b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n",
            b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: other.test\r\n\r\n",
        ] {
            let e = parse(bad).err().unwrap();
            assert!(e.contains("Host"), "{e}");
        }
        // No Host: the checked one is sent.
        let t = parse(b"GET http://allowed.test:80/x HTTP/1.1\r\n\r\n").unwrap();
        assert!(String::from_utf8(t.forward.unwrap())
            .unwrap()
            .starts_with("GET /x HTTP/1.1\r\nHost: allowed.test\r\n"));
        let t = parse(b"GET http://[::1]:8080 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        let t = parse(b"GET http://a.com?x=1 HTTP/1.1\r\n\r\n").unwrap();
        assert!(String::from_utf8(t.forward.unwrap())
            .unwrap()
            .starts_with("GET /?x=1 "));
        for bad in [
            &b"GET /local HTTP/1.1\r\n\r\n"[..],
            b"GET https://a.com/ HTTP/1.1\r\n\r\n",
            b"CONNECT a.com:x HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
