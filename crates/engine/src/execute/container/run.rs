//! Running one command in a sandbox container, with the same contract as a local run: argv
//! or shell string, cwd, env, stdout and stderr streamed apart, exit code, timeout and cancel
//! that kill the whole process tree inside the container, background leftovers terminated.
//!
//! The command is started by a small POSIX-sh wrapper: it runs the command in a session of its
//! own (`setsid`), so the command's process group id is known, writes that id to the
//! container's private run dir, waits, and terminates whatever the command left in its group.
//! A timeout or cancel runs a second exec that signals that group.

use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::containers::RUN_DIR;
use super::engine_error::engine_error;
use crate::error::{Error, ErrorCode, Result};
use crate::execute::{Chunk, ExecOutcome, ExecRequest, Stream};

/// `sh -c WRAPPER stigmer RUN_KEY t|b PROGRAM ARGS...`; with `b` every argument is a printf
/// format of its bytes (the engine's API carries UTF-8 text only, a file name can be any bytes).
const WRAPPER: &str = r#"key=$1; shift
if [ "$1" = b ]; then shift; n=$#
  for a; do v=$(printf "$a"; echo x); set -- "$@" "${v%x}"; done; shift "$n"; else shift; fi
dir=/run/stigmer
[ -w "${HOME:-/}" ] || export HOME=/tmp
if command -v setsid >/dev/null 2>&1; then setsid "$@" & else "$@" & fi
pid=$!
echo "$pid" > "$dir/$key" 2>/dev/null
wait "$pid" 2>/dev/null; status=$?
if kill -0 -"$pid" 2>/dev/null; then
  kill -TERM -"$pid" 2>/dev/null; i=0
  while kill -0 -"$pid" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done
  kill -KILL -"$pid" 2>/dev/null
fi
rm -f "$dir/$key"
exit $status"#;

/// `sh -c KILLER stigmer RUN_KEY`: TERM the run's group, a short grace, then KILL.
const KILLER: &str = r#"f=/run/stigmer/$1; i=0
while [ ! -s "$f" ] && [ $i -lt 40 ]; do sleep 0.05; i=$((i+1)); done
pid=$(cat "$f" 2>/dev/null) || exit 0
kill -TERM -"$pid" 2>/dev/null; i=0
while kill -0 -"$pid" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done
kill -KILL -"$pid" 2>/dev/null
exit 0"#;

/// The arguments as text for the engine's API, behind the wrapper's `t` when they are UTF-8,
/// else all of them as printf formats behind `b` (octal escapes for other bytes), which the
/// wrapper turns back into the same bytes.
fn posix_args(argv: Vec<std::ffi::OsString>) -> Vec<String> {
    if argv.iter().all(|a| a.to_str().is_some()) {
        let mut out = vec!["t".to_string()];
        out.extend(
            argv.into_iter()
                .map(|a| a.into_string().unwrap_or_default()),
        );
        return out;
    }
    let mut out = vec!["b".to_string()];
    out.extend(argv.iter().map(|a| {
        let mut f = String::new();
        for &b in a.as_encoded_bytes() {
            match b {
                b'\\' => f.push_str("\\\\"),
                b'%' => f.push_str("%%"),
                0x20..=0x7e => f.push(b as char),
                _ => f.push_str(&format!("\\{b:03o}")),
            }
        }
        f
    }));
    out
}

/// How long output is still read after the tree was killed (a process that escaped the group
/// may hold the stream open).
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The exec could not even be created: the container is gone (retry with a new one).
#[derive(Debug)]
pub struct ContainerGone;

/// Run `req` in container `id` as `user`. `key` names the run inside the container.
pub async fn run(
    docker: &Docker,
    id: &str,
    user: Option<&str>,
    req: &ExecRequest,
    key: &str,
    out: &mpsc::Sender<Chunk>,
    cancel: &CancellationToken,
) -> std::result::Result<Result<ExecOutcome>, ContainerGone> {
    debug_assert!(
        RUN_DIR == "/run/stigmer",
        "the wrapper scripts hard-code the run dir"
    );
    let mut cmd = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        WRAPPER.into(),
        "stigmer".into(),
        key.into(),
    ];
    cmd.extend(posix_args(req.command.to_argv_posix()));
    let env: Vec<String> = req.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let options = CreateExecOptions {
        cmd: Some(cmd),
        env: Some(env),
        working_dir: Some(req.cwd.display().to_string()),
        user: user.map(str::to_string),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        ..Default::default()
    };
    let exec = match docker.create_exec(id, options).await {
        Ok(e) => e,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => return Err(ContainerGone),
        Err(e) => return Ok(Err(engine_error(e))),
    };
    let started = Instant::now();
    let stream = match docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                output_capacity: Some(256 * 1024),
                ..Default::default()
            }),
        )
        .await
    {
        Ok(StartExecResults::Attached { output, .. }) => output,
        Ok(StartExecResults::Detached) => {
            return Ok(Err(Error::internal("the exec started detached")))
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => return Err(ContainerGone),
        Err(e) => return Ok(Err(engine_error(e))),
    };
    Ok(drive(
        docker, id, user, req, key, stream, &exec.id, out, cancel, started,
    )
    .await)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    docker: &Docker,
    id: &str,
    user: Option<&str>,
    req: &ExecRequest,
    key: &str,
    mut stream: std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>>
                + Send,
        >,
    >,
    exec_id: &str,
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
        let drain_over = async {
            match killed_at {
                Some(t) => tokio::time::sleep_until((t + DRAIN_LIMIT).into()).await,
                None => std::future::pending().await,
            }
        };
        let item = tokio::select! {
            biased;
            item = stream.next() => item,
            _ = &mut deadline, if killed_at.is_none() => {
                outcome.timed_out = true;
                kill_tree(docker, id, user, key).await;
                killed_at = Some(Instant::now());
                continue;
            }
            _ = cancel.cancelled(), if killed_at.is_none() => {
                outcome.cancelled = true;
                kill_tree(docker, id, user, key).await;
                killed_at = Some(Instant::now());
                continue;
            }
            _ = drain_over => break,
        };
        let (stream_kind, data): (Stream, Bytes) = match item {
            None => break,
            Some(Ok(LogOutput::StdOut { message })) | Some(Ok(LogOutput::Console { message })) => {
                (Stream::Stdout, message)
            }
            Some(Ok(LogOutput::StdErr { message })) => (Stream::Stderr, message),
            Some(Ok(LogOutput::StdIn { .. })) => continue,
            Some(Err(e)) => {
                // The engine went away mid-run: the command may still run there; stop it if we can.
                kill_tree(docker, id, user, key).await;
                return Err(engine_error(e));
            }
        };
        if !receiver_gone && !data.is_empty() {
            receiver_gone = out
                .send(Chunk {
                    stream: stream_kind,
                    data,
                })
                .await
                .is_err();
        }
    }
    outcome.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The stream ends as the wrapper exits; its exit code may take a moment to be recorded.
    for attempt in 0..200u64 {
        let inspect = docker.inspect_exec(exec_id).await.map_err(engine_error)?;
        if inspect.running != Some(true) {
            outcome.exit_code = inspect.exit_code.map(|c| c as i32);
            break;
        }
        tokio::time::sleep(Duration::from_millis(1 + attempt.min(9))).await;
    }
    if outcome.exit_code.is_none() && !(outcome.timed_out || outcome.cancelled) {
        return Err(Error::new(
            ErrorCode::Internal,
            "the command's exit code could not be read from the container engine",
        ));
    }
    Ok(outcome)
}

/// Kill the run's process group inside the container (TERM, grace, KILL), waiting for it.
async fn kill_tree(docker: &Docker, id: &str, user: Option<&str>, key: &str) {
    let options = CreateExecOptions {
        cmd: Some(vec![
            "/bin/sh".to_string(),
            "-c".into(),
            KILLER.into(),
            "stigmer".into(),
            key.into(),
        ]),
        user: user.map(str::to_string),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let result = async {
        let exec = docker.create_exec(id, options).await?;
        if let StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await?
        {
            while output.next().await.is_some() {}
        }
        Ok::<_, bollard::errors::Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(container = %super::containers::short(id), "stopping a sandbox run failed: {e}");
    }
}
