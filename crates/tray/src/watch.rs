//! Following the server: its health (the engine's state for the tray; an attached server that
//! goes away) and its event stream (mode changes, downloads, runs and logs), passed to the
//! window in bounded batches.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use stigmer_protocol::routes;

use stigmer_client::Client;
use stigmer_protocol::events::{Event, ImageAction};
use stigmer_protocol::mode::Tier;

use crate::model::{Download, ServerState};
use crate::notify;
use crate::state::{emit, log_line, shared, update, AppHandle};

/// Events reach the window at most this often, in batches (never one event per byte).
const BATCH_EVERY: Duration = Duration::from_millis(100);
/// Output bytes forwarded to the window per batch; the rest is counted, not sent.
const BATCH_OUTPUT_BYTES: usize = 32 * 1024;

/// Follow the server's health: the container engine's state (the tray says when a sandbox tier
/// cannot run), and for a server the app attached to, notice when it goes away (an owned one
/// is watched through its process).
pub async fn health(app: AppHandle, api: Client, generation: u64, owned: bool) {
    let mut failures = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if shared(&app).generation.load(Ordering::SeqCst) != generation
            || !shared(&app).model().running()
        {
            return;
        }
        match api.status().await {
            Ok(status) => {
                failures = 0;
                let m = shared(&app).model();
                if m.engine != Some(status.engine.state)
                    || m.engine_message != status.engine.message
                {
                    update(&app, |m| {
                        m.engine = Some(status.engine.state);
                        m.engine_message = status.engine.message.clone();
                    });
                }
            }
            Err(_) => failures += 1,
        }
        if failures >= 2 && !owned {
            server_ended(&app, generation, "the server no longer answers".into());
            return;
        }
    }
}

/// Follow the server's event stream: mode changes, downloads (tray, notifications), runs and
/// logs for the window, sent in bounded batches.
pub async fn events(app: AppHandle, api: Client, generation: u64) {
    // As an approver: while the app follows the server, commands that need the user's
    // approval wait for it here.
    let mut stream = match api.events_as_approver().await {
        Ok(s) => s,
        Err(e) => return log_line(&app, format!("no event stream: {}", e.message)),
    };
    // Those that waited before this stream opened (the app was restarted).
    if let Ok(view) = api
        .get::<stigmer_protocol::clients::ApprovalsView>(routes::APPROVALS)
        .await
    {
        for approval in &view.pending {
            notify::ask(&app, approval);
        }
        update(&app, |m| m.waiting = view.pending);
    }
    let mut batch: Vec<Event> = Vec::new();
    let (mut batch_bytes, mut dropped) = (0usize, 0u64);
    let mut last_flush = Instant::now();
    loop {
        match tokio::time::timeout(BATCH_EVERY, stream.next()).await {
            Ok(Ok(Some(event))) => match &event {
                Event::Heartbeat => {}
                Event::RunOutput { data, .. } => {
                    if batch_bytes + data.len() > BATCH_OUTPUT_BYTES {
                        dropped += data.len() as u64;
                    } else {
                        batch_bytes += data.len();
                        batch.push(event);
                    }
                }
                _ => {
                    on_event(&app, &event);
                    batch.push(event);
                }
            },
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) => {}
        }
        if last_flush.elapsed() >= BATCH_EVERY && (!batch.is_empty() || dropped > 0) {
            emit(
                &app,
                "stigmer://events",
                &EventBatch {
                    events: std::mem::take(&mut batch),
                    dropped_output_bytes: dropped,
                },
            );
            (batch_bytes, dropped, last_flush) = (0, 0, Instant::now());
        }
    }
    if shared(&app).generation.load(Ordering::SeqCst) == generation
        && !shared(&app).stopping.load(Ordering::SeqCst)
    {
        // The stream ended without a stop: for an owned server the process watcher reports it.
        let owned = matches!(
            shared(&app).model().server,
            ServerState::Running { owned: true, .. }
        );
        if !owned {
            server_ended(
                &app,
                generation,
                "the server closed its event stream".into(),
            );
        }
    }
}

/// What the window receives ten times a second at most.
#[derive(serde::Serialize, Clone)]
struct EventBatch {
    events: Vec<Event>,
    dropped_output_bytes: u64,
}

fn on_event(app: &AppHandle, event: &Event) {
    let s = shared(app);
    let tier = s.model().tier();
    match event {
        Event::RunStarted { .. } => update(app, |m| m.active_runs += 1),
        Event::RunFinished { .. } => {
            update(app, |m| m.active_runs = m.active_runs.saturating_sub(1))
        }
        Event::ApprovalRequested { approval } => {
            notify::ask(app, approval);
            update(app, |m| {
                if !m.waiting.iter().any(|a| a.id == approval.id) {
                    m.waiting.push(approval.clone());
                }
            });
        }
        // Events were lost: what waits is asked again, so no prompt is missed or left stale.
        Event::Lagged { .. } => {
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(api) = shared(&app).api() else { return };
                if let Ok(view) = api
                    .get::<stigmer_protocol::clients::ApprovalsView>(routes::APPROVALS)
                    .await
                {
                    update(&app, |m| m.waiting = view.pending);
                }
            });
        }
        Event::ApprovalEnded { id, .. } => {
            update(app, |m| m.waiting.retain(|a| a.id != *id));
        }
        Event::NetworkChanged { policy, .. } => update(app, |m| m.network = *policy),
        Event::ModeChanged { mode, image, .. } => update(app, |m| {
            m.mode = *mode;
            m.image = image.clone();
            m.image_problem = None;
        }),
        Event::ImageStarted { image, action } => {
            // Told only if it is still going a moment later: a quick one says nothing.
            let id = notify::notifier(app).image_started(image, *action);
            let app2 = app.clone();
            tokio::spawn(async move {
                tokio::time::sleep(notify::QUIET_START).await;
                let note = notify::notifier(&app2).still_preparing(id);
                if let Some(note) = note {
                    notify::show(note);
                }
            });
            update(app, |m| {
                m.image_problem = None;
                m.download = Some(Download::started(image, *action));
            });
        }
        Event::ImageProgress {
            image,
            action,
            progress,
        } => {
            notify::notifier(app).image_progress(progress.bytes_total);
            update(app, |m| {
                m.download = Some(Download::of(image, *action, progress))
            })
        }
        Event::ImageFinished {
            image,
            action,
            ok,
            error,
            ..
        } => {
            let note = notify::notifier(app).image_finished(image, *action, *ok, tier);
            if let Some(note) = note {
                notify::show(note);
            }
            // A failed download of the basic image is followed by a build: not a failure yet.
            let fallback = !ok && *action == ImageAction::Pull && tier == Tier::Basic;
            update(app, |m| {
                m.download = None;
                if !ok && !fallback {
                    m.image_problem = Some(
                        error
                            .as_ref()
                            .map(|e| e.message.clone())
                            .unwrap_or_default(),
                    );
                }
            });
        }
        // A server the app started writes its log to the app directly (its output): only an
        // attached server's lines come from here, so each line shows once.
        Event::Log { level, message, .. }
            if !matches!(s.model().server, ServerState::Running { owned: true, .. }) =>
        {
            log_line(app, format!("{level} {message}"))
        }
        _ => {}
    }
}

pub(crate) fn server_ended(app: &AppHandle, generation: u64, reason: String) {
    let s = shared(app);
    if s.generation.load(Ordering::SeqCst) != generation {
        return;
    }
    *s.child.lock() = None;
    if s.stopping.load(Ordering::SeqCst) {
        log_line(app, "server stopped".into());
        update(app, |m| {
            m.server = ServerState::Stopped;
            m.download = None;
        });
        return;
    }
    log_line(app, format!("server stopped unexpectedly: {reason}"));
    if let Some(note) = notify::notifier(app).server_crashed(&reason) {
        notify::show(note);
    }
    update(app, |m| {
        m.server = ServerState::Crashed { reason };
        m.download = None;
    });
}
