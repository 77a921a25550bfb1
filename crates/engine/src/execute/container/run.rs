//! Running one command in a sandbox container, with the same contract as a local run: argv
//! or shell string, cwd, env, stdout and stderr streamed apart, exit code or signal, timeout
//! and cancel that end the whole process tree inside the container, leftovers ended.
//!
//! The container's helper (its init, crates/sandbox-helper) does the process control; this
//! side sends it the run over the container's attached stream and relays what it says.

use std::time::{Duration, Instant};

use stigmer_sandbox_helper as wire;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::attach::{HelperConn, Reply};
use crate::error::{Error, ErrorCode, Result};
use crate::execute::{Chunk, ExecOutcome, ExecRequest};

/// TERM, then KILL this much later (as locally).
const KILL_GRACE: Duration = Duration::from_secs(1);
/// How long the helper may take to report the end after the tree was told to go.
const END_LIMIT: Duration = Duration::from_secs(10);

/// The container's helper cannot take the run: nothing ran (retry with a new container).
#[derive(Debug)]
pub struct ContainerGone;

fn bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.as_encoded_bytes().to_vec()
}

/// Run `req` through the helper behind `conn`.
pub async fn run(
    conn: &HelperConn,
    req: &ExecRequest,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
) -> std::result::Result<Result<ExecOutcome>, ContainerGone> {
    if !conn.alive() {
        return Err(ContainerGone);
    }
    let start = wire::Start {
        argv: req
            .command
            .to_argv_posix()
            .iter()
            .map(|a| bytes(a))
            .collect(),
        env: req
            .env
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        unset: req
            .unset_env
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect(),
        cwd: bytes(req.cwd.as_os_str()),
    };
    let started = Instant::now();
    let (id, mut replies) = conn.start(&start).await.map_err(|_| ContainerGone)?;
    let outcome = drive(conn, id, req, &mut replies, out, cancel, started).await;
    conn.forget(id);
    Ok(outcome)
}

async fn drive(
    conn: &HelperConn,
    id: u32,
    req: &ExecRequest,
    replies: &mut mpsc::UnboundedReceiver<Reply>,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
    started: Instant,
) -> Result<ExecOutcome> {
    let mut outcome = ExecOutcome::default();
    let deadline = async {
        match req.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut killed_at: Option<Instant> = None;
    let mut receiver_gone = false;
    loop {
        let give_up = async {
            match killed_at {
                Some(t) => tokio::time::sleep_until((t + END_LIMIT).into()).await,
                None => std::future::pending().await,
            }
        };
        let reply = tokio::select! {
            biased;
            reply = replies.recv() => reply,
            _ = &mut deadline, if killed_at.is_none() => {
                outcome.timed_out = true;
                conn.kill(id, KILL_GRACE).await;
                killed_at = Some(Instant::now());
                continue;
            }
            _ = cancel.cancelled(), if killed_at.is_none() => {
                outcome.cancelled = true;
                conn.kill(id, KILL_GRACE).await;
                killed_at = Some(Instant::now());
                continue;
            }
            _ = give_up => {
                return Err(Error::new(
                    ErrorCode::EngineUnavailable,
                    "the sandbox's helper did not report the end of a command it was told to stop",
                ));
            }
        };
        match reply {
            Some(Reply::Output(stream, data)) => {
                if !receiver_gone && !data.is_empty() {
                    receiver_gone = out.send(Chunk { stream, data }).await.is_err();
                }
            }
            Some(Reply::Exit(exit)) => {
                outcome.exit_code = exit.code;
                outcome.signal = exit.signal;
                break;
            }
            Some(Reply::Failed(why)) => return Err(Error::new(ErrorCode::SpawnFailed, why)),
            None => {
                return Err(Error::new(
                    ErrorCode::EngineUnavailable,
                    format!(
                        "the sandbox container's helper went away during the command ({}); \
                         the next command gets a new container",
                        conn.why_dead()
                    ),
                ))
            }
        }
    }
    outcome.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(outcome)
}
