//! Keeps the allowlist's proxy process running: starts it on the internal network's gateway,
//! sends it the allowlist, reads what it refused, and restarts it on the same address when it
//! dies. While it is down, sandboxes on the internal network reach nothing: there is no
//! other way out, so nothing ever falls back to the open network.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Told of every refused connection.
pub type OnBlocked = Arc<dyn Fn(Blocked) + Send + Sync>;

use super::proxy::{Control, Report};
use crate::error::{Error, ErrorCode, Result};

/// How long a starting proxy has to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a run's end waits for the proxy's last reports.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between restarts of a proxy that keeps dying.
const RESTART_PAUSE: Duration = Duration::from_millis(250);

/// A refused connection, from the proxy.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub peer: IpAddr,
    pub host: String,
    pub port: u16,
    pub reason: String,
    pub can_allow: bool,
}

struct Running {
    listen: SocketAddr,
    pid: Option<u32>,
    control: mpsc::UnboundedSender<String>,
}

pub struct ProxySupervisor {
    exe: PathBuf,
    running: tokio::sync::Mutex<Option<Running>>,
    allow: Mutex<Vec<String>>,
    /// How many times the proxy was (re)started: a run that sees it change lost its network
    /// for a moment.
    generation: AtomicU64,
    on_blocked: OnBlocked,
    /// Pings waiting for their pong, by number.
    pongs: Pongs,
    next_ping: AtomicU64,
    me: Weak<ProxySupervisor>,
}

type Pongs = Arc<Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>>>;

impl ProxySupervisor {
    pub fn new(on_blocked: OnBlocked) -> Arc<ProxySupervisor> {
        let exe = std::env::var_os("STIGMER_PROXY_EXE")
            .map(PathBuf::from)
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| PathBuf::from("stigmer"));
        Arc::new_cyclic(|me| ProxySupervisor {
            exe,
            running: tokio::sync::Mutex::new(None),
            allow: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            on_blocked,
            pongs: Pongs::default(),
            next_ping: AtomicU64::new(0),
            me: me.clone(),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The proxy's process id, while it runs.
    pub async fn pid(&self) -> Option<u32> {
        self.running.lock().await.as_ref().and_then(|r| r.pid)
    }

    /// The address of a proxy listening on `gateway`, started if needed, with `allow` as its
    /// list.
    pub async fn ensure(&self, gateway: IpAddr, allow: &[String]) -> Result<SocketAddr> {
        self.set_allow(allow).await;
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref() {
            if r.listen.ip() == gateway && !r.control.is_closed() {
                return Ok(r.listen);
            }
        }
        let started = self.start(SocketAddr::new(gateway, 0)).await?;
        let listen = started.listen;
        *running = Some(started);
        Ok(listen)
    }

    /// Wait (briefly) until every refusal the proxy made so far has been handled: a run's
    /// own refusals arrive before it is reported as ended.
    pub async fn sync(&self) {
        let n = self.next_ping.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pongs.lock().insert(n, tx);
        let sent = match self.running.lock().await.as_ref() {
            Some(r) => r.control.send(ping_line(n)).is_ok(),
            None => false,
        };
        if sent {
            let _ = tokio::time::timeout(SYNC_TIMEOUT, rx).await;
        }
        self.pongs.lock().remove(&n);
    }

    /// Give the running proxy a new list (connections judged from now on use it).
    pub async fn set_allow(&self, allow: &[String]) {
        {
            let mut have = self.allow.lock();
            if *have == allow {
                return;
            }
            *have = allow.to_vec();
        }
        if let Some(r) = self.running.lock().await.as_ref() {
            let _ = r.control.send(control_line(allow));
        }
    }

    async fn start(&self, listen: SocketAddr) -> Result<Running> {
        let failed = |why: String| {
            Error::new(
                ErrorCode::EngineUnavailable,
                format!(
                    "the sandbox's network proxy could not start on {listen} ({why}); the \
                     allowlist policy needs a container engine on this computer (Docker Engine \
                     on Linux). Choose the open or no network instead, or restart Stigmer"
                ),
            )
        };
        let mut child = Command::new(&self.exe)
            .args(["sandbox", "proxy", "--listen", &listen.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("{}: {e}", self.exe.display())))?;
        let pid = child.id();
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(failed("no pipes".into()));
        };
        let first = control_line(&self.allow.lock().clone());
        stdin
            .write_all(first.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        let bound = match ready {
            Ok(Ok(Some(line))) => match serde_json::from_str::<Report>(&line) {
                Ok(Report::Listening(a)) => a,
                _ => return Err(failed(format!("it said {line:?}"))),
            },
            Ok(_) => {
                let mut err = String::new();
                let _ =
                    tokio::io::AsyncReadExt::read_to_string(&mut BufReader::new(stderr), &mut err)
                        .await;
                return Err(failed(err.trim().to_string()));
            }
            Err(_) => return Err(failed("it did not answer".into())),
        };
        let (control, mut control_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = control_rx.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        self.generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(listen = %bound, pid = ?pid, "sandbox network proxy started");
        let me = self.me.clone();
        let blocked = self.on_blocked.clone();
        tokio::spawn(watch(child, lines, stderr, blocked, me, bound));
        Ok(Running {
            listen: bound,
            pid,
            control,
        })
    }

    /// The proxy died: start it again on the same address (the containers' proxy settings
    /// name it), until that works or the server goes. Boxed: it starts the watcher that
    /// calls it.
    fn restart(
        self: Arc<Self>,
        listen: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            self.generation.fetch_add(1, Ordering::SeqCst);
            loop {
                let mut running = self.running.lock().await;
                if running.as_ref().is_some_and(|r| r.listen != listen) {
                    return; // replaced meanwhile
                }
                match self.start(listen).await {
                    Ok(r) => {
                        *running = Some(r);
                        return;
                    }
                    Err(e) => tracing::error!("{}", e.message),
                }
                drop(running);
                tokio::time::sleep(RESTART_PAUSE).await;
            }
        })
    }
}

fn control_line(allow: &[String]) -> String {
    let mut line = serde_json::to_string(&Control {
        allow: Some(allow.to_vec()),
        ping: None,
    })
    .unwrap_or_default();
    line.push('\n');
    line
}

fn ping_line(n: u64) -> String {
    let mut line = serde_json::to_string(&Control {
        allow: None,
        ping: Some(n),
    })
    .unwrap_or_default();
    line.push('\n');
    line
}

async fn watch(
    mut child: Child,
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::process::ChildStderr,
    blocked: OnBlocked,
    me: Weak<ProxySupervisor>,
    listen: SocketAddr,
) {
    let pongs = me.upgrade().map(|m| m.pongs.clone()).unwrap_or_default();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            tracing::warn!("sandbox network proxy: {l}");
        }
    });
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str(&line) {
            Ok(Report::Blocked {
                peer,
                host,
                port,
                reason,
                can_allow,
            }) => blocked(Blocked {
                peer,
                host,
                port,
                reason,
                can_allow,
            }),
            Ok(Report::Pong(n)) => {
                if let Some(tx) = pongs.lock().remove(&n) {
                    let _ = tx.send(());
                }
            }
            _ => {}
        }
    }
    let status = child.wait().await;
    let Some(me) = me.upgrade() else { return };
    tracing::error!(
        ?status,
        "the sandbox network proxy stopped; sandboxes on the allowlist reach nothing until it is back; restarting it"
    );
    me.restart(listen).await;
}
