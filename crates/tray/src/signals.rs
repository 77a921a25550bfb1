//! The end a process is asked for from outside: SIGTERM (logout, `kill`) or SIGINT (Ctrl-C).

/// Wait for SIGTERM or SIGINT (never returns if they cannot be watched).
#[cfg(unix)]
pub async fn ended() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
}
