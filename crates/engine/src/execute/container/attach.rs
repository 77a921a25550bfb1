//! One stream per container: every run goes to the container's helper over its attached
//! stdin, and its output and end come back over the container's stdout, framed
//! (crates/sandbox-helper). A warm run costs one write and the replies: no exec.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::query_parameters::AttachContainerOptions;
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use stigmer_sandbox_helper as wire;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::engine_error::engine_error;
use crate::error::{Error, ErrorCode, Result};
use crate::execute::Stream;

/// How long a new helper may take to answer its first ping.
const READY_LIMIT: Duration = Duration::from_secs(15);

/// What the helper says about one run.
#[derive(Debug)]
pub enum Reply {
    Output(Stream, Bytes),
    Exit(wire::Exit),
    /// It could not start; nothing ran.
    Failed(String),
}

/// The stream to one container's helper.
pub struct HelperConn {
    container: String,
    input: tokio::sync::Mutex<Pin<Box<dyn AsyncWrite + Send>>>,
    runs: Mutex<HashMap<u32, mpsc::UnboundedSender<Reply>>>,
    pong: Mutex<Option<oneshot::Sender<String>>>,
    next_id: AtomicU32,
    dead: CancellationToken,
    why_dead: Mutex<String>,
    /// What the helper saw at each mounted path before any command ran.
    mounted: Mutex<Vec<Option<crate::execute::held::Identity>>>,
}

impl HelperConn {
    /// Attach to container `id` (started with the helper as its init) and check it answers,
    /// telling what it sees at each of `mounts` (the workspace first).
    pub async fn attach(
        docker: &Docker,
        id: &str,
        mounts: &[&std::path::Path],
    ) -> Result<Arc<HelperConn>> {
        let options = AttachContainerOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            stream: true,
            logs: false,
            ..Default::default()
        };
        let AttachContainerResults { output, input } = docker
            .attach_container(id, Some(options))
            .await
            .map_err(engine_error)?;
        let conn = Arc::new(HelperConn {
            container: super::containers::short(id).to_string(),
            input: tokio::sync::Mutex::new(input),
            runs: Mutex::default(),
            pong: Mutex::default(),
            next_id: AtomicU32::new(1),
            dead: CancellationToken::new(),
            why_dead: Mutex::default(),
            mounted: Mutex::default(),
        });
        tokio::spawn(read_replies(conn.clone(), output));
        let (tx, rx) = oneshot::channel();
        *conn.pong.lock() = Some(tx);
        let paths: Vec<&[u8]> = mounts
            .iter()
            .map(|p| p.as_os_str().as_encoded_bytes())
            .collect();
        conn.write(wire::frame(wire::PING, 0, &paths.join(&0u8)))
            .await?;
        match tokio::time::timeout(READY_LIMIT, rx).await {
            Ok(Ok(me)) => {
                let rest: Vec<&str> = me.split_whitespace().skip(2).collect();
                *conn.mounted.lock() = rest
                    .chunks(2)
                    .map(|pair| crate::execute::held::Identity::parse(&pair.join(" ")))
                    .collect();
                tracing::debug!(container = %conn.container, helper = %me, "sandbox helper ready");
                Ok(conn)
            }
            _ => Err(Error::new(
                ErrorCode::EngineUnavailable,
                format!(
                    "stigmer's helper in the sandbox container did not start ({}): the image \
                     may be for another architecture, or the engine cannot run it",
                    conn.why_dead()
                ),
            )),
        }
    }

    /// The device and inode the helper saw at each mounted path when it started.
    pub fn mounted(&self) -> Vec<Option<crate::execute::held::Identity>> {
        self.mounted.lock().clone()
    }

    pub fn alive(&self) -> bool {
        !self.dead.is_cancelled()
    }

    /// Why the stream ended, in words for the user.
    pub fn why_dead(&self) -> String {
        let why = self.why_dead.lock().clone();
        if why.is_empty() {
            "it gave no answer".into()
        } else {
            why
        }
    }

    /// Start a run: its id and the helper's replies about it.
    pub async fn start(
        &self,
        start: &wire::Start,
    ) -> Result<(u32, mpsc::UnboundedReceiver<Reply>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.runs.lock().insert(id, tx);
        if let Err(e) = self
            .write(wire::frame(wire::START, id, &start.encode()))
            .await
        {
            self.runs.lock().remove(&id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// End run `id`'s process tree: TERM, then KILL after `grace`.
    pub async fn kill(&self, id: u32, grace: Duration) {
        let ms = (grace.as_millis() as u32).to_be_bytes();
        if let Err(e) = self.write(wire::frame(wire::KILL, id, &ms)).await {
            tracing::warn!(container = %self.container, "stopping a sandbox run failed: {}", e.message);
        }
    }

    /// Stop listening for run `id` (its caller is gone).
    pub fn forget(&self, id: u32) {
        self.runs.lock().remove(&id);
    }

    async fn write(&self, frame: Vec<u8>) -> Result<()> {
        let mut input = self.input.lock().await;
        let written = async {
            input.write_all(&frame).await?;
            input.flush().await
        }
        .await;
        written.map_err(|e| {
            self.die(format!("writing to it failed: {e}"));
            Error::new(
                ErrorCode::EngineUnavailable,
                format!("the sandbox container's helper cannot be reached: {e}"),
            )
        })
    }

    /// The stream is over: every run waiting on it learns so (its channel closes).
    fn die(&self, why: String) {
        {
            let mut w = self.why_dead.lock();
            if w.is_empty() {
                *w = why;
            }
        }
        self.dead.cancel();
        self.runs.lock().clear();
        self.pong.lock().take();
    }

    fn dispatch(&self, f: wire::Frame) {
        let reply = match f.kind {
            wire::STDOUT => Reply::Output(Stream::Stdout, Bytes::from(f.payload)),
            wire::STDERR => Reply::Output(Stream::Stderr, Bytes::from(f.payload)),
            wire::EXIT => match wire::Exit::decode(&f.payload) {
                Ok(exit) => Reply::Exit(exit),
                Err(e) => Reply::Failed(e),
            },
            wire::FAILED => Reply::Failed(String::from_utf8_lossy(&f.payload).into_owned()),
            wire::PONG => {
                if let Some(tx) = self.pong.lock().take() {
                    let _ = tx.send(String::from_utf8_lossy(&f.payload).into_owned());
                }
                return;
            }
            other => {
                tracing::warn!(container = %self.container, "unknown frame kind {other} from the sandbox helper");
                return;
            }
        };
        let last = matches!(reply, Reply::Exit(_) | Reply::Failed(_));
        let mut runs = self.runs.lock();
        if let Some(tx) = runs.get(&f.id) {
            let _ = tx.send(reply);
        }
        if last {
            runs.remove(&f.id);
        }
    }
}

type Output = Pin<
    Box<
        dyn futures_util::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>>
            + Send,
    >,
>;

async fn read_replies(conn: Arc<HelperConn>, mut output: Output) {
    let mut decoder = wire::Decoder::default();
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                decoder.push(&message);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(f)) => conn.dispatch(f),
                        Ok(None) => break,
                        Err(e) => return conn.die(format!("its stream is corrupt ({e})")),
                    }
                }
            }
            Ok(LogOutput::StdErr { message }) => {
                tracing::warn!(container = %conn.container, "sandbox helper: {}", String::from_utf8_lossy(&message).trim_end());
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => return conn.die(format!("the engine's stream broke ({e})")),
        }
    }
    conn.die("it stopped: the container ended or was removed".into());
}
