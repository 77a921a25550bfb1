//! The tray process's side of the desktop link: it listens where windows connect (a Unix
//! socket in Stigmer's private data folder), answers each window's calls with the same
//! functions the tray's items use, and passes every change to every window connected
//! ([`crate::state::emit`]).

use serde_json::{json, Value};
use stigmer_client::desktop::{self as link, Stream};
use stigmer_protocol::desktop::{self as wire, save_prefs, Call, Request, ToWindow};
use stigmer_protocol::{Error, ErrorCode, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::state::{shared, AppHandle};
use crate::{actions, approvals, updates, windows};

/// Listen for windows. The caller holds the tray's lock, so a socket left by a tray process
/// that died is stale and is replaced.
pub fn listen(app: &AppHandle) -> std::io::Result<()> {
    // Bound here, so a failure says so at start.
    let mut listener = link::bind(&shared(app).paths)?;
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    tokio::spawn(connection(app.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!("window connection not accepted: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

async fn connection(app: AppHandle, stream: Stream) {
    let (read, mut write) = tokio::io::split(stream);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    // A view asked for while this window started.
    if let Some(view) = windows::connected(&app) {
        let _ = tx.send(wire::line(&ToWindow::Show { view: Some(view) }));
    }
    shared(&app).windows.lock().push(tx.clone());
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let (app, tx) = (app.clone(), tx.clone());
        tokio::spawn(async move {
            let (seq, result) = match serde_json::from_str::<Request>(&line) {
                Ok(r) => (r.seq, answer(&app, r.call).await),
                // A call this version does not know: say so, so the window does not wait.
                Err(e) => (
                    serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|v| v["seq"].as_u64())
                        .unwrap_or(0),
                    Err(Error::new(
                        ErrorCode::InvalidRequest,
                        format!("the tray app does not know this call ({e}): restart Stigmer"),
                    )),
                ),
            };
            let reply = match result {
                Ok(ok) => ToWindow::Reply {
                    seq,
                    ok: Some(ok),
                    err: None,
                },
                Err(err) => ToWindow::Reply {
                    seq,
                    ok: None,
                    err: Some(err),
                },
            };
            let _ = tx.send(wire::line(&reply));
        });
    }
    // Gone: nothing more is sent to it (its writer ends with the last sender).
    shared(&app).windows.lock().retain(|w| !w.same_channel(&tx));
}

fn value(v: impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::internal(e.to_string()))
}

async fn answer(app: &AppHandle, call: Call) -> Result<Value> {
    let s = shared(app);
    match call {
        Call::GetModel => value(s.model()),
        Call::StartServer => value(actions::start(app).await?),
        Call::StopServer => value(actions::stop(app).await?),
        Call::SetMode { tier, image } => value(actions::set_mode(app, tier, image).await?),
        Call::SetNetwork { policy } => value(actions::set_network(app, policy).await?),
        Call::AnswerApproval { id, decision } => {
            value(approvals::answer(app, &id, decision).await?)
        }
        Call::GetLogs => Ok(json!({
            "lines": s.logs(),
            "log_dir": s.paths.log_dir,
            "log_file": stigmer_protocol::local::current_log_file(&s.paths.log_dir),
        })),
        Call::GetPrefs => value(s.prefs.lock().clone()),
        Call::SetPrefs { prefs } => {
            save_prefs(&s.paths, &prefs).map_err(|e| {
                Error::new(
                    ErrorCode::ConfigError,
                    format!("cannot save preferences: {e}"),
                )
            })?;
            *s.prefs.lock() = prefs.clone();
            value(prefs)
        }
        Call::RefreshStatus => value(actions::refresh(app).await?),
        Call::CheckUpdate => {
            updates::check(app).await?;
            value(s.model())
        }
        Call::UpdateProgress { update } => {
            updates::progress(app, update);
            Ok(Value::Null)
        }
        Call::Relaunch => {
            updates::relaunch(app).await;
            Ok(Value::Null)
        }
        Call::Quit => {
            actions::quit(app).await;
            Ok(Value::Null)
        }
    }
}
