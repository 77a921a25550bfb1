//! Sandbox images, made present once: used if present; the basic image pulled (with progress)
//! or, if that fails, built from the Dockerfile embedded in stigmer; a custom image pulled if
//! it can be, never built behind the user's back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::query_parameters::{BuildImageOptions, CreateImageOptions};
use bollard::Docker;
use futures_util::StreamExt;

pub use stigmer_protocol::events::ImageAction;

use super::engine_error::engine_error;
use super::progress::{build_step, Phase, Progress, PullProgress};
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};
use crate::settings::Tier;
use tokio_util::sync::CancellationToken;

pub use super::context::{BASIC_DOCKERFILE, BASIC_REQUIREMENTS, BUILD_CONTEXT_ENV};
/// Build arguments for that build, `NAME=VALUE` separated by spaces, e.g. bases from a mirror:
/// `PYTHON_IMAGE=mirror/python:3.12-slim NODE_IMAGE=mirror/node:24-slim`.
pub const BUILD_ARGS_ENV: &str = "STIGMER_SANDBOX_BUILD_ARGS";
/// The command users run to build a custom image from the reference Dockerfile.
pub const FULL_BUILD_COMMAND: &str =
    "docker build -f sandbox/Dockerfile.sandbox.full -t my-custom-sandbox:latest sandbox/";
/// A pull with no progress for this long is given up.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// Progress events are published at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Whether `image` is present in the engine.
pub async fn present(docker: &Docker, image: &str) -> Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(engine_error(e)),
    }
}

/// Size in bytes of a present image.
pub async fn size(docker: &Docker, image: &str) -> Option<u64> {
    docker
        .inspect_image(image)
        .await
        .ok()?
        .size
        .map(|s| s.max(0) as u64)
}

/// Make `image` present, the way its tier allows. Runs nothing else.
pub async fn ensure(
    docker: &Docker,
    image: &str,
    tier: Tier,
    auto_pull: bool,
    bus: &EventBus,
    cancel: &CancellationToken,
) -> Result<()> {
    if present(docker, image).await? {
        return Ok(());
    }
    if !auto_pull {
        return Err(Error::new(
            ErrorCode::ImageNotFound,
            format!(
                "the sandbox image {image} is not on this machine and automatic download is off \
                 (sandbox.auto_pull = false). Run `stigmer sandbox pull`{}",
                if tier == Tier::Basic {
                    " or `stigmer sandbox build`"
                } else {
                    ""
                }
            ),
        ));
    }
    match (pull(docker, image, bus, cancel).await, tier) {
        (Ok(()), _) => Ok(()),
        // The user said stop: no build behind their back either.
        (Err(_), _) if cancel.is_cancelled() => Err(Error::new(
            ErrorCode::ImageNotFound,
            format!("the download of {image} was cancelled; nothing was run"),
        )),
        (Err(pull_error), Tier::Basic) => build_basic(docker, image, bus, cancel).await.map_err(|build_error| {
            Error::new(
                ErrorCode::ImageNotFound,
                format!(
                    "the basic sandbox image {image} could not be downloaded ({}) nor built from \
                     its Dockerfile ({}). Check your network and that the container engine can \
                     reach the registry, then retry; or use local mode: `stigmer config set mode local`",
                    pull_error.message, build_error.message
                ),
            )
        }),
        (Err(pull_error), _) => Err(Error::new(
            ErrorCode::ImageNotFound,
            format!(
                "the sandbox image {image} is not on this machine and could not be pulled ({}). \
                 Build it first, e.g. `{FULL_BUILD_COMMAND}` with `-t {image}`, or set \
                 STIGMER_SANDBOX_IMAGE to an image you have",
                pull_error.message
            ),
        )),
    }
}

/// The reference to pull, always with its tag (`:latest` when none) or digest: the pull API
/// gets it whole in `fromImage` and no `tag` (Podman 4 appends `tag` to a reference that
/// already has one, which is then invalid; Docker pulls every tag when there is none).
fn pull_reference(image: &str) -> String {
    let slash = image.rfind('/').unwrap_or(0);
    match image.rfind(':') {
        _ if image.contains('@') => image.to_string(),
        Some(c) if c > slash => image.to_string(),
        _ => format!("{image}:latest"),
    }
}

/// Pull `image`, publishing aggregated progress.
pub async fn pull(
    docker: &Docker,
    image: &str,
    bus: &EventBus,
    cancel: &CancellationToken,
) -> Result<()> {
    bus.publish(Event::ImageStarted {
        image: image.to_string(),
        action: ImageAction::Pull,
    });
    tracing::info!(image, "pulling sandbox image");
    let options = CreateImageOptions {
        from_image: Some(pull_reference(image)),
        tag: None,
        ..Default::default()
    };
    let started = Instant::now();
    let mut progress = PullProgress::new(started);
    let mut last_sent = started - PROGRESS_EVERY;
    let mut stream = docker.create_image(Some(options), None, None);
    let mut failure = None;
    // A download that makes no progress for STALL_LIMIT fails instead of hanging (the engine
    // may retry a dead registry for minutes, saying "Retrying in N seconds").
    let mut last_marker = (0, 0);
    let mut last_change = Instant::now();
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(STALL_LIMIT, stream.next()) => n,
            _ = cancel.cancelled() => {
                // Dropping the stream ends the request: the engine stops pulling.
                failure = Some(cancelled(image));
                break;
            }
        };
        let item = match next {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                failure = Some(stalled(image));
                break;
            }
        };
        match item {
            Ok(info) => {
                let detail = info.progress_detail.as_ref();
                progress.update(
                    info.status.as_deref().unwrap_or_default(),
                    info.id.as_deref(),
                    detail.and_then(|d| d.current),
                    detail.and_then(|d| d.total),
                );
                let now = Instant::now();
                let marker = progress.marker();
                if marker != last_marker {
                    (last_marker, last_change) = (marker, now);
                } else if now.duration_since(last_change) >= STALL_LIMIT {
                    failure = Some(stalled(image));
                    break;
                }
                if now.duration_since(last_sent) >= PROGRESS_EVERY {
                    last_sent = now;
                    publish_progress(bus, image, ImageAction::Pull, progress.snapshot(now));
                }
            }
            Err(e) => {
                failure = Some(pull_error(image, e));
                break;
            }
        }
    }
    // A pull that ended without error must have produced the image.
    if failure.is_none() && !present(docker, image).await? {
        failure = Some(Error::new(
            ErrorCode::ImagePullFailed,
            format!("the pull of {image} ended but the image is not there"),
        ));
    }
    finish(bus, image, ImageAction::Pull, started, failure)
}

fn cancelled(image: &str) -> Error {
    Error::new(
        ErrorCode::ImagePullFailed,
        format!("the download of {image} was cancelled"),
    )
}

fn stalled(image: &str) -> Error {
    Error::new(
        ErrorCode::ImagePullFailed,
        format!(
            "pulling {image} stalled: no progress for {} s (registry unreachable or network down)",
            STALL_LIMIT.as_secs()
        ),
    )
}

/// What an image is built from.
pub enum BuildSource {
    /// The basic image's Dockerfile (embedded, or from [`BUILD_CONTEXT_ENV`]), with the build
    /// arguments of [`BUILD_ARGS_ENV`].
    Basic,
    /// A Dockerfile the user chose; its folder is the build context.
    File(PathBuf),
}

/// Build the basic image from its Dockerfile (embedded, or from [`BUILD_CONTEXT_ENV`]).
pub async fn build_basic(
    docker: &Docker,
    image: &str,
    bus: &EventBus,
    cancel: &CancellationToken,
) -> Result<()> {
    build(docker, image, &BuildSource::Basic, bus, cancel).await
}

/// Build `image` from `source`, publishing the steps as progress.
pub async fn build(
    docker: &Docker,
    image: &str,
    source: &BuildSource,
    bus: &EventBus,
    cancel: &CancellationToken,
) -> Result<()> {
    bus.publish(Event::ImageStarted {
        image: image.to_string(),
        action: ImageAction::Build,
    });
    let started = Instant::now();
    let (made, dockerfile, buildargs, what) = match source {
        BuildSource::Basic => (
            super::context::basic(),
            "Dockerfile.sandbox.basic".to_string(),
            build_args(),
            "its Dockerfile".to_string(),
        ),
        BuildSource::File(path) => {
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            let made = tokio::task::spawn_blocking(move || super::context::folder(&dir))
                .await
                .unwrap_or_else(|e| Err(Error::new(ErrorCode::Internal, e.to_string())));
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            (made, name.into_owned(), None, path.display().to_string())
        }
    };
    let context = match made {
        Ok(c) => c,
        Err(e) => return finish(bus, image, ImageAction::Build, started, Some(e)),
    };
    tracing::info!(image, "building a sandbox image from {what}");
    let options = BuildImageOptions {
        dockerfile,
        t: Some(image.to_string()),
        buildargs,
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut failure = None;
    let mut last_line = String::new();
    loop {
        let item = tokio::select! {
            i = stream.next() => match i { Some(i) => i, None => break },
            _ = cancel.cancelled() => {
                failure = Some("cancelled".to_string());
                break;
            }
        };
        match item {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    failure = Some(e);
                    break;
                }
                if let Some(line) = info.stream {
                    let line = line.trim_end().to_string();
                    if let Some((n, m, step)) = build_step(&line) {
                        publish_progress(
                            bus,
                            image,
                            ImageAction::Build,
                            Progress {
                                phase: Phase::Building,
                                percent: Some((1000.0 * (n - 1) as f64 / m as f64).round() / 10.0),
                                bytes_done: 0,
                                bytes_total: 0,
                                rate_bytes_per_sec: 0,
                                elapsed_ms: started.elapsed().as_millis() as u64,
                                detail: Some(step),
                            },
                        );
                    }
                    if !line.trim().is_empty() {
                        tracing::debug!(image, "build: {line}");
                        last_line = line;
                    }
                }
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let failure = match failure {
        Some(f) => Some(f),
        None if !present(docker, image).await? => {
            Some(format!("the build ended without an image ({last_line})"))
        }
        None => None,
    };
    let failure = failure.map(|f| {
        Error::new(
            ErrorCode::ImageBuildFailed,
            format!("building {image} from {what} failed: {}", f.trim()),
        )
    });
    finish(bus, image, ImageAction::Build, started, failure)
}

fn finish(
    bus: &EventBus,
    image: &str,
    action: ImageAction,
    started: Instant,
    failure: Option<Error>,
) -> Result<()> {
    let secs = started.elapsed().as_secs_f64();
    match &failure {
        None => tracing::info!(image, ?action, secs, "sandbox image ready"),
        Some(e) => tracing::warn!(image, ?action, "sandbox image not made: {}", e.message),
    }
    bus.publish(Event::ImageFinished {
        image: image.to_string(),
        action,
        ok: failure.is_none(),
        error: failure.clone(),
        duration_ms: (secs * 1000.0) as u64,
    });
    match failure {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn publish_progress(bus: &EventBus, image: &str, action: ImageAction, progress: Progress) {
    bus.publish(Event::ImageProgress {
        image: image.to_string(),
        action,
        progress,
    });
}

/// The build arguments of [`BUILD_ARGS_ENV`], if any.
fn build_args() -> Option<std::collections::HashMap<String, String>> {
    let raw = std::env::var(BUILD_ARGS_ENV).ok()?;
    let args: std::collections::HashMap<String, String> = raw
        .split_whitespace()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (!args.is_empty()).then_some(args)
}

fn pull_error(image: &str, e: bollard::errors::Error) -> Error {
    let text = match &e {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    Error::new(
        ErrorCode::ImagePullFailed,
        format!("pulling {image} failed: {}", text.trim()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_pulled_whole_with_a_tag() {
        assert_eq!(pull_reference("alpine"), "alpine:latest");
        assert_eq!(
            pull_reference("127.0.0.1:5000/a/b:test"),
            "127.0.0.1:5000/a/b:test"
        );
        assert_eq!(
            pull_reference("127.0.0.1:5000/a/b"),
            "127.0.0.1:5000/a/b:latest"
        );
        assert_eq!(pull_reference("a@sha256:00"), "a@sha256:00");
    }
}
