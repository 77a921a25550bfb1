//! The server's logs: a daily-rotated file in the log dir (a week kept), stderr when attached to
//! a terminal or a supervising app, and log lines on the event stream.

use std::fmt::Write as _;
use std::path::Path;
pub use stigmer_protocol::local::{current_log_file, LOG_PREFIX, LOG_SUFFIX};

use tracing::field::{Field, Visit};
use tracing::{Event as TracingEvent, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};
use crate::util::now_ms;

/// Install the server's subscriber. Keep the guard alive: dropping it flushes the file.
pub fn init(log_dir: &Path, to_stderr: bool, bus: EventBus) -> Result<WorkerGuard> {
    std::fs::create_dir_all(log_dir).map_err(|e| {
        Error::new(
            ErrorCode::ConfigError,
            format!("cannot create log directory {}: {e}", log_dir.display()),
        )
    })?;
    let appender = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_PREFIX)
        .filename_suffix(LOG_SUFFIX)
        .max_log_files(7)
        .build(log_dir)
        .map_err(|e| Error::new(ErrorCode::ConfigError, format!("cannot open log file: {e}")))?;
    let (file_writer, guard) = tracing_appender::non_blocking(appender);
    let filter =
        || EnvFilter::try_from_env("STIGMER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let file_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(file_writer)
        .with_filter(filter());
    let stderr_layer = to_stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .with(EventLayer { bus }.with_filter(filter()))
        .try_init();
    Ok(guard)
}

/// Publishes each log record on the event bus.
struct EventLayer {
    bus: EventBus,
}

impl<S: Subscriber> Layer<S> for EventLayer {
    fn on_event(&self, event: &TracingEvent<'_>, _ctx: Context<'_, S>) {
        if !self.bus.has_subscribers() {
            return;
        }
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        self.bus.publish(Event::Log {
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: visitor.text,
            time_ms: now_ms(),
        });
    }
}

#[derive(Default)]
struct MessageVisitor {
    text: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.push_str(value);
        } else {
            let _ = write!(self.text, " {}={value}", field.name());
        }
    }
}
