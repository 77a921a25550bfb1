//! The allowlist's proxy, offered on the container's loopback: an allowlist container has no
//! network, and its only way out is the proxy's socket that stigmer mounted in (its door).
//! Tools expect an HTTP proxy at an address (`HTTP_PROXY`), so each connection to that
//! address is carried to the socket, byte for byte; the proxy does every check. The protected
//! tier offers it the same way, in the run's own network namespace (`stigmer protected-exec`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

/// Connections carried at once (each takes two threads of the container's process limit).
const MOST_AT_ONCE: usize = 128;

/// Listen on `listen` (before any command runs, so no command can take the address) and carry
/// every connection to `door`.
pub fn offer(listen: &str, door: PathBuf) -> std::io::Result<()> {
    carry_all(TcpListener::bind(listen)?, door);
    Ok(())
}

/// Carry every connection to `listener` to `door`, on threads of their own.
pub fn carry_all(listener: TcpListener, door: PathBuf) {
    let open = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if open.fetch_add(1, Ordering::SeqCst) >= MOST_AT_ONCE {
                open.fetch_sub(1, Ordering::SeqCst);
                refuse(conn, "too many connections to the proxy at once");
                continue;
            }
            let (door, open) = (door.clone(), open.clone());
            thread::spawn(move || {
                carry(conn, &door);
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
}

fn carry(client: TcpStream, door: &PathBuf) {
    let upstream = match UnixStream::connect(door) {
        Ok(u) => u,
        Err(e) => {
            return refuse(
                client,
                &format!(
                    "the sandbox's network proxy cannot be reached ({e}); it may be restarting"
                ),
            )
        }
    };
    let (Ok(mut client_in), Ok(mut upstream_out)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let up = thread::spawn(move || {
        copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    copy(&mut upstream_in, &mut client_out);
    let _ = client_out.shutdown(Shutdown::Write);
    let _ = up.join();
}

fn copy(from: &mut dyn Read, to: &mut dyn Write) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn refuse(mut conn: TcpStream, why: &str) {
    let text = format!("stigmer: {why}\n");
    let _ = write!(
        conn,
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}
