//! Keeps the allowlist's proxy process running: starts it, sends it the allowlist, opens a
//! door (a Unix socket in a private folder) for each allowlist container, reads what it
//! refused, and restarts it when it dies, with the same doors. While it is down, sandboxes on
//! the allowlist reach nothing: they have no network, so nothing ever falls back to the open
//! network.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
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

use super::proxy::{Control, Report, SOCKET_NAME};

/// How old a door folder with no listener must be before it is taken for a crashed run's.
const ORPHAN_AGE: Duration = Duration::from_secs(60);
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
    /// The door (container) it came through.
    pub door: String,
    pub host: String,
    pub port: u16,
    pub reason: String,
    pub can_allow: bool,
}

struct Running {
    pid: Option<u32>,
}

pub struct ProxySupervisor {
    exe: PathBuf,
    /// Where the doors' folders are.
    dir: PathBuf,
    running: tokio::sync::Mutex<Option<Running>>,
    /// The running proxy's stdin, one line per message.
    control: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// The doors open, opened again by a restarted proxy.
    doors: Mutex<HashSet<String>>,
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
    pub fn new(dir: PathBuf, on_blocked: OnBlocked) -> Arc<ProxySupervisor> {
        let exe = std::env::var_os("STIGMER_PROXY_EXE")
            .map(PathBuf::from)
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| PathBuf::from("stigmer"));
        Arc::new_cyclic(|me| ProxySupervisor {
            exe,
            dir,
            running: tokio::sync::Mutex::new(None),
            control: Mutex::default(),
            doors: Mutex::default(),
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

    /// The proxy running, with `allow` as its list.
    pub async fn ensure(&self, allow: &[String]) -> Result<()> {
        self.set_allow(allow).await;
        let mut running = self.running.lock().await;
        if running.is_some() && self.control.lock().as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        *running = Some(self.start().await?);
        Ok(())
    }

    /// Remove the door folders a crashed server or CLI run left: those whose socket nobody
    /// listens on any more, made over a minute ago (a door being opened right now has no
    /// socket yet). A live run's door answers, and stays.
    pub fn remove_orphan_doors(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let folder = e.path();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > ORPHAN_AGE);
            if !old
                || !e.file_type().is_ok_and(|t| t.is_dir())
                || self
                    .doors
                    .lock()
                    .contains(&e.file_name().to_string_lossy().into_owned())
            {
                continue;
            }
            #[cfg(unix)]
            let answers = std::os::unix::net::UnixStream::connect(folder.join(SOCKET_NAME)).is_ok();
            #[cfg(not(unix))]
            let answers = false;
            if !answers && std::fs::remove_dir_all(&folder).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// A new door, for one container: the folder to mount into it, holding the socket the
    /// proxy listens on. Closed, and its folder removed, when the last holder drops it.
    pub async fn open_door(&self) -> Result<Door> {
        let name = crate::util::random_hex(12)?;
        let folder = self.dir.join(&name);
        crate::private::private_dir(&folder)
            .map_err(|e| Error::internal(format!("cannot make {}: {e}", folder.display())))?;
        let door = Door {
            name: name.clone(),
            folder: folder.clone(),
            owner: self.me.clone(),
        };
        self.doors.lock().insert(name.clone());
        self.send(line(&Control {
            open: Some(name),
            ..Default::default()
        }));
        self.sync().await;
        if !folder.join(SOCKET_NAME).exists() {
            return Err(Error::new(
                ErrorCode::EngineUnavailable,
                "the sandbox's network proxy did not open the container's way out (see the \
                 log); choose the open or no network instead, or restart Stigmer",
            ));
        }
        Ok(door)
    }

    fn close_door(&self, name: &str) {
        self.doors.lock().remove(name);
        self.send(line(&Control {
            close: Some(name.to_string()),
            ..Default::default()
        }));
    }

    fn send(&self, line: String) -> bool {
        self.control
            .lock()
            .as_ref()
            .is_some_and(|c| c.send(line).is_ok())
    }

    /// Wait (briefly) until every refusal the proxy made so far has been handled: a run's
    /// own refusals arrive before it is reported as ended.
    pub async fn sync(&self) {
        let n = self.next_ping.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pongs.lock().insert(n, tx);
        let sent = self.send(line(&Control {
            ping: Some(n),
            ..Default::default()
        }));
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
        self.send(line(&Control {
            allow: Some(allow.to_vec()),
            ..Default::default()
        }));
    }

    async fn start(&self) -> Result<Running> {
        let failed = |why: String| {
            Error::new(
                ErrorCode::EngineUnavailable,
                format!(
                    "the sandbox's network proxy could not start ({why}); the allowlist \
                     policy needs a container engine on this computer (Docker Engine or Podman \
                     on Linux). Choose the open or no network instead, or restart Stigmer"
                ),
            )
        };
        let mut child = Command::new(&self.exe)
            .args(["sandbox", "proxy", "--dir"])
            .arg(&self.dir)
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
        let first = line(&Control {
            allow: Some(self.allow.lock().clone()),
            ..Default::default()
        });
        stdin
            .write_all(first.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        match ready {
            Ok(Ok(Some(said))) => match serde_json::from_str::<Report>(&said) {
                Ok(Report::Ready) => {}
                _ => return Err(failed(format!("it said {said:?}"))),
            },
            Ok(_) => {
                let mut err = String::new();
                let _ =
                    tokio::io::AsyncReadExt::read_to_string(&mut BufReader::new(stderr), &mut err)
                        .await;
                return Err(failed(err.trim().to_string()));
            }
            Err(_) => return Err(failed("it did not answer".into())),
        }
        let (control, mut control_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = control_rx.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        // The doors of the containers there are (after a restart), then new ones.
        for name in self.doors.lock().iter() {
            let _ = control.send(line(&Control {
                open: Some(name.clone()),
                ..Default::default()
            }));
        }
        *self.control.lock() = Some(control);
        self.generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(pid = ?pid, "sandbox network proxy started");
        let me = self.me.clone();
        let blocked = self.on_blocked.clone();
        tokio::spawn(watch(child, lines, stderr, blocked, me));
        Ok(Running { pid })
    }

    /// The proxy died: start it again, with the same doors (the containers' sockets are
    /// made again in the folders mounted into them), until that works or the server goes.
    /// Boxed: it starts the watcher that calls it.
    fn restart(self: Arc<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            self.generation.fetch_add(1, Ordering::SeqCst);
            *self.control.lock() = None;
            loop {
                let mut running = self.running.lock().await;
                match self.start().await {
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

fn line(control: &Control) -> String {
    let mut line = serde_json::to_string(control).unwrap_or_default();
    line.push('\n');
    line
}

/// A container's way out: its folder (mounted into it) and the socket in it.
#[derive(Debug)]
pub struct Door {
    pub name: String,
    pub folder: PathBuf,
    owner: Weak<ProxySupervisor>,
}

impl Door {
    /// The folder holding the socket.
    pub fn folder(&self) -> &Path {
        &self.folder
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.close_door(&self.name);
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

async fn watch(
    mut child: Child,
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::process::ChildStderr,
    blocked: OnBlocked,
    me: Weak<ProxySupervisor>,
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
                door,
                host,
                port,
                reason,
                can_allow,
            }) => blocked(Blocked {
                door,
                host,
                port,
                reason,
                can_allow,
            }),
            Ok(Report::DoorFailed { door, error }) => {
                tracing::error!(door = %door, "the sandbox network proxy could not open a door: {error}")
            }
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
    me.restart().await;
}
