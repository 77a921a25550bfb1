//! Following the server: its health (the engine's state for the tray; an attached server that
//! goes away) and its event stream (mode changes, downloads, runs and logs), passed to the
//! window in bounded batches.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use stigmer_engine::settings::{Mode, Tier};
use tauri::{AppHandle, Emitter};

use crate::actions::{log_line, server_ended, shared, update};
use crate::api::Api;
use crate::model::{Download, ServerState};
use crate::notify;

/// Events reach the window at most this often, in batches (never one event per byte).
const BATCH_EVERY: Duration = Duration::from_millis(100);
/// Output bytes forwarded to the window per batch; the rest is counted, not sent.
const BATCH_OUTPUT_BYTES: usize = 32 * 1024;

/// Follow the server's health: the container engine's state (the tray says when a sandbox tier
/// cannot run), and for a server the app attached to, notice when it goes away (an owned one
/// is watched through its process).
pub async fn health(app: AppHandle, api: Api, generation: u64, owned: bool) {
    let mut failures = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if shared(&app).generation.load(Ordering::SeqCst) != generation
            || !shared(&app).model().running()
        {
            return;
        }
        match api.get::<Value>("/v1/status").await {
            Ok(status) => {
                failures = 0;
                let engine = status["engine"]["state"].as_str().unwrap_or("unknown");
                let message = status["engine"]["message"].as_str().unwrap_or_default();
                let m = shared(&app).model();
                if m.engine != engine || m.engine_message != message {
                    update(&app, |m| {
                        m.engine = engine.to_string();
                        m.engine_message = message.to_string();
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
pub async fn events(app: AppHandle, api: Api, generation: u64) {
    let resp = match api
        .send(api.request(reqwest::Method::GET, "/v1/events"))
        .await
    {
        Ok(r) => r,
        Err(e) => return log_line(&app, format!("no event stream: {}", e.message)),
    };
    let mut stream = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut batch: Vec<Value> = Vec::new();
    let (mut batch_bytes, mut dropped) = (0usize, 0u64);
    let mut last_flush = Instant::now();
    loop {
        let next = tokio::time::timeout(BATCH_EVERY, stream.next()).await;
        match next {
            Ok(Some(Ok(bytes))) => pending.extend_from_slice(&bytes),
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => {}
        }
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            match event["type"].as_str().unwrap_or_default() {
                "heartbeat" => {}
                "run_output" => {
                    let size = event["data"].as_str().map_or(0, str::len);
                    if batch_bytes + size > BATCH_OUTPUT_BYTES {
                        dropped += size as u64;
                    } else {
                        batch_bytes += size;
                        batch.push(event);
                    }
                }
                _ => {
                    on_event(&app, &event);
                    batch.push(event);
                }
            }
        }
        if last_flush.elapsed() >= BATCH_EVERY && (!batch.is_empty() || dropped > 0) {
            let _ = app.emit(
                "stigmer://events",
                json!({ "events": batch, "dropped_output_bytes": dropped }),
            );
            (batch, batch_bytes, dropped, last_flush) = (Vec::new(), 0, 0, Instant::now());
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

fn on_event(app: &AppHandle, event: &Value) {
    let s = shared(app);
    let str_of = |k: &str| event[k].as_str().unwrap_or_default().to_string();
    let tier = s.model().tier();
    match event["type"].as_str().unwrap_or_default() {
        "mode_changed" => update(app, |m| {
            if let Ok(mode) = serde_json::from_value::<Mode>(event["mode"].clone()) {
                m.mode = mode;
            }
            m.image = str_of("image");
            m.image_problem = None;
        }),
        "image_started" => {
            let note = s
                .notifier
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .image_started(&str_of("image"), &str_of("action"), tier);
            notify::show(note);
            update(app, |m| {
                m.image_problem = None;
                m.download = Some(Download {
                    image: str_of("image"),
                    action: str_of("action"),
                    phase: "resolving".into(),
                    percent: None,
                    bytes_done: 0,
                    bytes_total: 0,
                    rate_bytes_per_sec: 0,
                })
            });
        }
        "image_progress" => update(app, |m| {
            let p = &event["progress"];
            m.download = Some(Download {
                image: str_of("image"),
                action: str_of("action"),
                phase: p["phase"].as_str().unwrap_or_default().to_string(),
                percent: p["percent"].as_f64(),
                bytes_done: p["bytes_done"].as_u64().unwrap_or(0),
                bytes_total: p["bytes_total"].as_u64().unwrap_or(0),
                rate_bytes_per_sec: p["rate_bytes_per_sec"].as_u64().unwrap_or(0),
            })
        }),
        "image_finished" => {
            let ok = event["ok"].as_bool().unwrap_or(false);
            let error = event["error"]["message"].as_str().unwrap_or_default();
            let note = s
                .notifier
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .image_finished(&str_of("image"), &str_of("action"), ok, tier);
            notify::show(note);
            // A failed download of the basic image is followed by a build: not a failure yet.
            let fallback = !ok && str_of("action") == "pull" && tier == Tier::Basic;
            update(app, |m| {
                m.download = None;
                if !ok && !fallback {
                    m.image_problem = Some(error.to_string());
                }
            });
        }
        // A server the app started writes its log to the app directly (its output): only an
        // attached server's lines come from here, so each line shows once.
        "log" if !matches!(s.model().server, ServerState::Running { owned: true, .. }) => {
            log_line(app, format!("{} {}", str_of("level"), str_of("message")))
        }
        _ => {}
    }
}
