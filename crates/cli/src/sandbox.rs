//! `stigmer sandbox status|pull|build|prune`, and the download progress every command shows.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use stigmer_engine::events::{Event, EventBus};
use stigmer_engine::execute::container::progress::Progress;
use stigmer_engine::execute::container::{Sandbox, SandboxSpec};
use stigmer_engine::paths::Paths;
use stigmer_engine::settings::{self, Overrides, Tier, BASIC_IMAGE};
use stigmer_engine::Result;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::cli::SandboxCommand;

pub async fn sandbox(cmd: SandboxCommand, paths: &Paths) -> Result<i32> {
    // The proxy reads no settings: the server gives it the allowlist.
    if let SandboxCommand::Proxy { dir } = cmd {
        return Ok(
            match stigmer_engine::network::proxy::run_stdio(&dir).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cannot serve the doors in {}: {e}", dir.display());
                    1
                }
            },
        );
    }
    let resolved = settings::resolve(paths, &Overrides::default())?;
    for w in &resolved.warnings {
        eprintln!("stigmer: warning: {w}");
    }
    let spec = SandboxSpec::from_settings(&resolved.settings);
    let bus = EventBus::default();
    let sandbox = Sandbox::new(paths, &format!("cli-{}", std::process::id()), bus.clone());
    match cmd {
        SandboxCommand::Status { json } => {
            let status = sandbox.status(&spec).await;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                println!(
                    "engine:     {} ({})",
                    status.engine.state, status.engine.message
                );
                let tier = match status.tier {
                    Tier::Basic => "basic sandbox",
                    _ => "custom image",
                };
                println!("image:      {} ({tier})", status.image);
                let present = match (status.image_present, status.image_size_bytes) {
                    (Some(true), Some(size)) => format!("yes, {}", human_bytes(size)),
                    (Some(true), None) => "yes".into(),
                    (Some(false), _) => {
                        "no (downloaded or built on first use, or `stigmer sandbox pull`)".into()
                    }
                    (None, _) => "unknown (no engine)".into(),
                };
                println!("present:    {present}");
                println!("containers: {}", status.containers.len());
                for c in &status.containers {
                    println!(
                        "  {} {} {} {} ({})",
                        c.id, c.state, c.image, c.workspace, c.owner
                    );
                }
            }
            Ok(if status.engine.engine.is_some() { 0 } else { 1 })
        }
        SandboxCommand::Pull { image } => {
            let image = image.unwrap_or(spec.image);
            settings::Key::SandboxImage.parse(&image, "image")?;
            let progress = show_image_progress(bus.subscribe());
            let result = sandbox.pull(&image).await;
            finish_progress(progress).await;
            result?;
            println!("{image} is ready");
            Ok(0)
        }
        SandboxCommand::Build { image } => {
            let image = image.unwrap_or_else(|| BASIC_IMAGE.to_string());
            settings::Key::SandboxImage.parse(&image, "--image")?;
            let progress = show_image_progress(bus.subscribe());
            let result = sandbox.build(&image).await;
            finish_progress(progress).await;
            result?;
            println!("{image} is ready (built from sandbox/Dockerfile.sandbox.basic)");
            Ok(0)
        }
        SandboxCommand::Proxy { .. } => unreachable!("handled above"),
        SandboxCommand::Prune => {
            let n = sandbox.prune().await?;
            println!("removed {n} sandbox container(s)");
            Ok(0)
        }
    }
}

async fn finish_progress(progress: JoinHandle<()>) {
    // Let the last events (finished) reach the display.
    tokio::time::sleep(Duration::from_millis(50)).await;
    progress.abort();
    let _ = progress.await;
}

/// Show image downloads and builds on stderr: a progress bar in a terminal, a plain line
/// every few seconds otherwise (logs, CI).
pub fn show_image_progress(mut events: broadcast::Receiver<Event>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let terminal = std::io::stderr().is_terminal();
        let mut bar: Option<ProgressBar> = None;
        let mut last_line = Instant::now() - Duration::from_secs(60);
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            match event {
                Event::ImageStarted { image, action } => {
                    let what = format!("{action:?}").to_lowercase();
                    if terminal {
                        let b = ProgressBar::new(100);
                        b.set_style(
                            ProgressStyle::with_template(
                                "{msg:<40} [{bar:30}] {percent:>3}% {prefix}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        b.set_message(format!("{what}ing {image}"));
                        bar = Some(b);
                    } else {
                        eprintln!("stigmer: {what}ing {image} (one time)");
                    }
                }
                Event::ImageProgress { progress, .. } => {
                    let line = describe(&progress);
                    match &bar {
                        Some(b) => {
                            b.set_position(progress.percent.unwrap_or(0.0) as u64);
                            b.set_prefix(line);
                        }
                        None if last_line.elapsed() >= Duration::from_secs(2) => {
                            last_line = Instant::now();
                            eprintln!("stigmer: {line}");
                        }
                        None => {}
                    }
                }
                Event::ImageFinished {
                    image,
                    ok,
                    error,
                    duration_ms,
                    ..
                } => {
                    if let Some(b) = bar.take() {
                        b.finish_and_clear();
                    }
                    if ok {
                        eprintln!(
                            "stigmer: {image} ready in {:.1} s",
                            duration_ms as f64 / 1000.0
                        );
                    } else if let Some(e) = error {
                        eprintln!("stigmer: {}", e.message);
                    }
                }
                _ => {}
            }
        }
    })
}

fn describe(p: &Progress) -> String {
    let phase = format!("{:?}", p.phase).to_lowercase();
    let percent = p.percent.map(|v| format!(" {v:.0}%")).unwrap_or_default();
    if let Some(detail) = &p.detail {
        return format!("{phase}{percent}: {detail}");
    }
    if p.bytes_total > 0 {
        format!(
            "{phase}{percent}, {} of {}, {}/s",
            human_bytes(p.bytes_done),
            human_bytes(p.bytes_total),
            human_bytes(p.rate_bytes_per_sec)
        )
    } else {
        format!("{phase}{percent}")
    }
}

pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", n / (1024.0 * 1024.0 * 1024.0))
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.0} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}
