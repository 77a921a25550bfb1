//! Whether anybody uses the server: requests and response streams in flight (a run's output,
//! the app's event stream, an MCP session's stream) and when the last one ended. A server
//! started for an agent's session stays up while others use it after the session ends.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use super::AppState;
use crate::runs::RunRegistry;
use crate::util::now_ms;

#[derive(Debug, Default)]
pub struct Usage {
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Usage {
    /// Return once nothing has used the server for `quiet`: no request or stream in flight, no
    /// run going, and the last one ended at least `quiet` ago.
    pub async fn wait_unused(&self, quiet: Duration, runs: &RunRegistry) {
        loop {
            let idle_ms = now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed));
            let busy = self.in_flight.load(Ordering::Relaxed) > 0 || runs.active_count() > 0;
            if !busy && idle_ms >= quiet.as_millis() as u64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn leave(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one request as in flight until its response body has been sent or dropped.
struct InFlight(Arc<AppState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.usage.leave();
    }
}

/// A response body that holds its request's [`InFlight`]; everything else (frames, size, end)
/// is the inner body's, so a sized response keeps its Content-Length.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    state.usage.enter();
    let in_flight = InFlight(state);
    let (parts, inner) = next.run(req).await.into_parts();
    let body = Tracked {
        inner,
        _in_flight: in_flight,
    };
    Response::from_parts(parts, Body::new(body))
}
