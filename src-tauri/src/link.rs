//! The window process's side of the desktop link: it finds the tray process (starting it when
//! none runs), forwards the page's calls that belong to it, and passes what it sends on to the
//! page. The window lives while its tray process does: when that quits, the window goes too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::Value;
use stigmer_client::desktop::{self as transport, Stream};
use stigmer_client::Client;
use stigmer_protocol::desktop::{self as wire, beside, Call, Request, ToWindow, TRAY_BIN};
use stigmer_protocol::local::Paths;
use stigmer_protocol::{Error, ErrorCode, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// How long a tray process has to start and listen (an old one may be finishing its exit).
const START_LIMIT: Duration = Duration::from_secs(20);

type Waiting = Mutex<HashMap<u64, oneshot::Sender<Result<Value>>>>;

/// The window's connection to its tray process, and to the server for the rest.
pub struct Link {
    pub paths: Paths,
    out: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    ready: tokio::sync::Notify,
    waiting: Waiting,
    next: AtomicU64,
}

impl Link {
    pub fn new(paths: Paths) -> Link {
        Link {
            paths,
            out: Mutex::new(None),
            ready: tokio::sync::Notify::new(),
            waiting: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }

    /// The server's API, for what the window asks it directly.
    pub fn api(&self) -> Result<Client> {
        Client::find(&self.paths)?.ok_or_else(|| {
            Error::new(
                ErrorCode::ServerUnavailable,
                "the server is not running: start it first",
            )
        })
    }

    /// Ask the tray process (waiting for the connection while the window starts).
    pub async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let started = Instant::now();
        let out = loop {
            let ready = self.ready.notified();
            if let Some(out) = self.out.lock().clone() {
                break out;
            }
            if started.elapsed() > START_LIMIT {
                return Err(gone());
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), ready).await;
        };
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(id, tx);
        if out.send(wire::line(&Request { seq: id, call })).is_err() {
            self.waiting.lock().remove(&id);
            return Err(gone());
        }
        let value = rx.await.map_err(|_| gone())??;
        serde_json::from_value(value).map_err(|e| Error::internal(e.to_string()))
    }

    fn settle(&self, id: u64, result: Result<Value>) {
        if let Some(tx) = self.waiting.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }
}

fn gone() -> Error {
    Error::new(
        ErrorCode::ServerUnavailable,
        "Stigmer's tray app is not running: start Stigmer again",
    )
}

/// Connect to the tray process, starting it when none answers.
pub async fn connect(paths: &Paths) -> std::io::Result<Stream> {
    if let Ok(s) = transport::connect(paths).await {
        return Ok(s);
    }
    let mut tray = start_tray()?;
    let started = Instant::now();
    let result = loop {
        match transport::connect(paths).await {
            Ok(s) => break Ok(s),
            Err(e) if started.elapsed() > START_LIMIT => break Err(e),
            Err(e) => {
                // Ended at once (a library missing, no desktop session): say so now.
                if let Ok(Some(status)) = tray.try_wait() {
                    if !status.success() {
                        break Err(std::io::Error::new(
                            e.kind(),
                            format!(
                                "it ended at once ({status}); start stigmer-tray from a \
                                 terminal to see why"
                            ),
                        ));
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await
            }
        }
    };
    // Reaped when it ends.
    std::thread::spawn(move || tray.wait());
    result
}

/// The tray process (`stigmer-tray` next to this program), in a process group of its own so
/// that what ends the window (its driver, a terminal's Ctrl-C) does not end it.
pub fn start_tray() -> std::io::Result<std::process::Child> {
    let exe = beside(&std::env::current_exe()?, TRAY_BIN);
    let mut command = std::process::Command::new(&exe);
    command.stdin(std::process::Stdio::null());
    // What the window set for its own WebKit, and a WebDriver's hook into this window, are
    // not the tray's (nor the server's it starts).
    for var in crate::OWN_ENV_VARS.get().into_iter().flatten() {
        command.env_remove(var);
    }
    command.env_remove("WEBKIT_INSPECTOR_SERVER");
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", exe.display())))
}

/// Follow the tray process over `stream`: replies settle calls, the rest goes to `on` (an
/// event for the page, Show, Exit). Returns when the tray process has gone.
pub async fn follow(link: &Link, stream: Stream, on: impl Fn(ToWindow)) {
    let (read, mut write) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    *link.out.lock() = Some(tx);
    link.ready.notify_waiters();
    read_all(link, read, on).await;
    *link.out.lock() = None;
    for (_, tx) in link.waiting.lock().drain() {
        let _ = tx.send(Err(gone()));
    }
}

async fn read_all(link: &Link, read: impl AsyncRead + Unpin, on: impl Fn(ToWindow)) {
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<ToWindow>(&line) {
            Ok(ToWindow::Reply { seq, ok, err }) => {
                link.settle(seq, err.map_or_else(|| Ok(ok.unwrap_or(Value::Null)), Err))
            }
            Ok(message) => on(message),
            Err(e) => tracing::warn!("the tray process sent what is not a message: {e}"),
        }
    }
}
